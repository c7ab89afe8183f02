"""Best-of-n reranking: a compute-matched baseline for Token Maturation.

A sampling decoder draws ``n`` continuations per prompt; the one with the highest mean
log-probability per token (under the generating model, or under a named scorer that shares its
tokenizer) is kept. The later version of the Token Maturation paper compares against
best-of-16 at matched compute: TM with a tail of K = 16 slots forwards every committed token
16 times, best-of-16 forwards 16 candidate continuations.

Draw i of prompt b comes from prompt b's own generator (after draws 0..i-1), so a prompt's
candidates never depend on the other rows of the batch.
"""

from __future__ import annotations

from typing import Any

import torch

from tmbench.decoders import _loop
from tmbench.types import DecodeOutput, model_kind

BASES = ("sample", "top_k", "nucleus", "typical", "min_p", "epsilon", "eta")
_SCORERS: dict[tuple[str, str], Any] = {}


def _scorer(name: str, model):
    if name == "self":
        return model
    key = (name, str(model.device))
    if key not in _SCORERS:
        from tmbench.registry import MODELS

        _SCORERS[key] = MODELS.get(name)(device=str(model.device))
    sc = _SCORERS[key]
    if getattr(sc.tokenizer, "name", None) != getattr(model.tokenizer, "name", None) \
            or sc.vocab_size != model.vocab_size:
        raise ValueError(f"scorer {name!r} must share the generating model's tokenizer "
                         f"({getattr(model.tokenizer, 'name', '?')}); use scorer 'self' or a "
                         "model with the same vocabulary")
    return sc


@torch.no_grad()
def mean_logprob(model, prompts: list[list[int]], conts: list[list[int]],
                 batch_size: int = 16) -> list[float]:
    """Mean log p(continuation token | everything before it) per pair, right-padded batches of
    one forward each (the model's ``forward(ids, mask, positions, cache)`` contract)."""
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        seqs = [p + c for p, c in zip(prompts[i:i + batch_size], conts[i:i + batch_size])]
        T = max(map(len, seqs))
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, :len(s)], mask[b, :len(s)] = torch.tensor(s), 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        pos = torch.arange(T, device=model.device)[None].expand_as(ids)
        logits, _, _ = model.forward(ids, mask, pos, None)  # (B, T, V)
        lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        for b, (p, c) in enumerate(zip(prompts[i:i + batch_size], conts[i:i + batch_size])):
            n = len(c)
            out.append(float(lp[b, len(p) - 1:len(p) - 1 + n].mean()) if n else float("-inf"))
    return out


@model_kind("ar")
def best_of_n(model, prompts: list[list[int]], *, max_new_tokens: int, generator,
              n: int = 16, base: str = "nucleus", base_params: dict | None = None,
              scorer: str = "self") -> DecodeOutput:
    """Draw ``n`` continuations per prompt with the sampling decoder ``base`` (its settings in
    ``base_params``, e.g. {p: 0.95}) and keep the one with the highest mean token
    log-probability under ``scorer`` ('self' = the generating model, or a registered model
    with the same tokenizer). ``info["best_index"]`` and ``info["best_logprob"]`` say which."""
    _loop.check("n", n, 1, integer=True)
    if base not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)}, got {base!r}")
    if base_params is not None and not isinstance(base_params, dict):
        raise ValueError(f"base_params must be a mapping of the base decoder's settings, "
                         f"got {base_params!r}")
    if not isinstance(scorer, str):
        raise ValueError(f"scorer must be 'self' or a model name, got {scorer!r}")
    from tmbench.plan import resolve_params
    from tmbench.registry import DECODERS

    fn = DECODERS.get(base)
    params = resolve_params(fn, dict(base_params or {}), f"best_of_n base {base}")
    gens = generator if isinstance(generator, (list, tuple)) else [generator] * len(prompts)
    sc = _scorer(scorer, model)
    best: list[list[int]] = [[] for _ in prompts]
    best_lp = [float("-inf")] * len(prompts)
    best_i = [0] * len(prompts)
    for i in range(n):
        cand = fn(model, prompts, max_new_tokens=max_new_tokens, generator=list(gens), **params)
        cand = cand.tokens if isinstance(cand, DecodeOutput) else cand
        for b, lp in enumerate(mean_logprob(sc, prompts, [list(c) for c in cand])):
            if lp > best_lp[b]:
                best[b], best_lp[b], best_i[b] = list(cand[b]), lp, i
    return DecodeOutput(best, {"best_index": best_i, "best_logprob": best_lp})
