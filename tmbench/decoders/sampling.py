"""Sampling decoders: ancestral sampling and the truncation samplers built on it.

Each draws ``torch.multinomial(softmax(logits), 1, generator=generator)`` after the fixed
filter order of ``filters.process`` (penalties, temperature, truncation). ``generator`` is one
``torch.Generator`` for the batch, or one per prompt; see ``_loop.sampler`` for what each
guarantees about a prompt's tokens not depending on the other rows.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from tmbench.decoders import _loop, filters
from tmbench.types import model_kind


def _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
          frequency_penalty, presence_penalty,
          truncate: Callable[[torch.Tensor], torch.Tensor] | None) -> list[list[int]]:
    _loop.check_common(prompts, max_new_tokens, repetition_penalty, frequency_penalty,
                       presence_penalty)
    _loop.check("temperature", temperature, 0, lo_open=True)
    return _loop.run(model, prompts, max_new_tokens, _loop.sampler(generator, len(prompts)),
                     repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
                     presence_penalty=presence_penalty, temperature=temperature,
                     truncate=truncate)


@model_kind("ar")
def sample(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
           temperature: float = 1.0, repetition_penalty: float = 1.0,
           frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Ancestral sampling from the full (tempered) distribution."""
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, None)


@model_kind("ar")
def top_k(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
          k: int = 50, temperature: float = 1.0, repetition_penalty: float = 1.0,
          frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Top-k sampling (Fan et al. 2018): sample among the ``k`` most likely tokens."""
    _loop.check("k", k, 1, integer=True)
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, partial(filters.top_k, k=k))


@model_kind("ar")
def nucleus(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
            p: float = 0.95, temperature: float = 1.0, repetition_penalty: float = 1.0,
            frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Nucleus (top-p) sampling (Holtzman et al. 2020)."""
    _loop.check("p", p, 0, 1, lo_open=True)
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, partial(filters.top_p, p=p))


@model_kind("ar")
def typical(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
            p: float = 0.95, temperature: float = 1.0, repetition_penalty: float = 1.0,
            frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Locally typical sampling (Meister et al. 2023)."""
    _loop.check("p", p, 0, 1, lo_open=True, hi_open=True)
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, partial(filters.typical, p=p))


@model_kind("ar")
def min_p(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
          p: float = 0.1, temperature: float = 1.0, repetition_penalty: float = 1.0,
          frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Min-p sampling (Nguyen et al. 2024): cutoff at ``p`` times the top probability."""
    _loop.check("p", p, 0, 1)
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, partial(filters.min_p, p=p))


@model_kind("ar")
def epsilon(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
            epsilon: float = 3e-4, temperature: float = 1.0, repetition_penalty: float = 1.0,
            frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Epsilon sampling (Hewitt et al. 2022): drop tokens with probability below ``epsilon``."""
    _loop.check("epsilon", epsilon, 0, 1, lo_open=True, hi_open=True)
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, partial(filters.epsilon, epsilon=epsilon))


@model_kind("ar")
def eta(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
        eta: float = 3e-4, temperature: float = 1.0, repetition_penalty: float = 1.0,
        frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> list[list[int]]:
    """Eta sampling (Hewitt et al. 2022): entropy-dependent cutoff
    ``min(eta, sqrt(eta) * exp(-H))``; ``eta`` is the paper's epsilon hyperparameter."""
    _loop.check("eta", eta, 0, 1, lo_open=True, hi_open=True)
    return _draw(model, prompts, max_new_tokens, generator, temperature, repetition_penalty,
                 frequency_penalty, presence_penalty, partial(filters.eta, epsilon=eta))
