"""Greedy decoding: the most likely token at every step (after the optional penalties)."""

from __future__ import annotations

import torch

from tmbench.decoders import _loop
from tmbench.types import model_kind, seed_free


@seed_free
@model_kind("ar")
def greedy(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
           repetition_penalty: float = 1.0, frequency_penalty: float = 0.0,
           presence_penalty: float = 0.0) -> list[list[int]]:
    """argmax of the (penalised) logits; ``generator`` is unused. Equals transformers
    ``generate(do_sample=False)`` token for token (tests check it; with ``repetition_penalty``
    only on unpadded batches, since transformers also penalises the left-pad id)."""
    _loop.check_common(prompts, max_new_tokens, repetition_penalty, frequency_penalty,
                       presence_penalty)
    return _loop.run(model, prompts, max_new_tokens, _loop.argmax,
                     repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
                     presence_penalty=presence_penalty)
