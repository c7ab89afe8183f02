"""Best-of-n reranking: a compute-matched baseline for Token Maturation.

A sampling decoder draws ``n`` continuations per prompt; the one with the highest mean
log-probability per token (under the generating model, or under a named scorer that shares its
tokenizer) is kept. The later version of the Token Maturation paper compares against
best-of-16 at matched compute: TM with a tail of K = 16 slots forwards every committed token
16 times, best-of-16 forwards 16 candidate continuations.

The base decoder is one of the sampling decoders (``tmbench.decoders.sampling``); a named
scorer comes from the decoder context (``ctx.load_model``), so its identity is recorded.

Candidate i of prompt b draws from its own generator, seeded by the i-th of n seeds that prompt
b's generator gives, so a prompt's candidates never depend on the other rows of the batch. All
n candidates of every prompt are decoded as one batch (prompt-major rows), and with the scorer
``self`` their log-probabilities are collected while decoding, so reranking costs no forward.
"""

from __future__ import annotations

import torch

from tmbench.decoders import _loop, sampling
from tmbench.params import resolve_params
from tmbench.scoring import mean_logprob
from tmbench.types import DecodeContext, DecodeOutput, first_token_clock, model_kind

BASES = ("sample", "top_k", "nucleus", "typical", "min_p", "epsilon", "eta")  # in sampling.py


def _scorer(name: str, model, ctx: DecodeContext | None):
    """The named scorer, loaded through the decoder context (recorded in the record's judges)."""
    if ctx is None:
        raise ValueError(f"scorer {name!r} is a model loaded by name, through the runner's decoder "
                         "context: pass ctx=DecodeContext(load_model=...) or use scorer 'self'")
    sc = ctx.load_model(name)
    if getattr(sc.tokenizer, "name", None) != getattr(model.tokenizer, "name", None) \
            or sc.vocab_size != model.vocab_size:
        raise ValueError(f"scorer {name!r} must share the generating model's tokenizer "
                         f"({getattr(model.tokenizer, 'name', '?')}); use scorer 'self' or a "
                         "model with the same vocabulary")
    return sc


@model_kind("ar")
def best_of_n(model, prompts: list[list[int]], *, max_new_tokens: int, generator,
              n: int = 16, base: str = "nucleus", base_params: dict | None = None,
              scorer: str = "self", ctx: DecodeContext | None = None) -> DecodeOutput:
    """Draw ``n`` continuations per prompt with the sampling decoder ``base`` (its settings in
    ``base_params``, e.g. {p: 0.95}) and keep the one with the highest mean token
    log-probability under ``scorer`` ('self' = the generating model, or a registered model
    with the same tokenizer, loaded through ``ctx``). ``info["best_index"]`` and
    ``info["best_logprob"]`` say which."""
    _loop.check("n", n, 1, integer=True)
    if base not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)}, got {base!r}")
    if base_params is not None and not isinstance(base_params, dict):
        raise ValueError(f"base_params must be a mapping of the base decoder's settings, "
                         f"got {base_params!r}")
    if not isinstance(scorer, str):
        raise ValueError(f"scorer must be 'self' or a model name, got {scorer!r}")
    fn = getattr(sampling, base)
    params = resolve_params(fn, dict(base_params or {}), f"best_of_n base {base}")
    gens = generator if isinstance(generator, (list, tuple)) else [generator] * len(prompts)
    sc = None if scorer == "self" else _scorer(scorer, model, ctx)
    sub = [torch.Generator(device=g.device).manual_seed(int(seed))
           for g in gens for seed in torch.randint(2 ** 62, (n,), generator=g, device=g.device)]
    rows = [p for p in prompts for _ in range(n)]  # row b * n + i = candidate i of prompt b
    # a candidate's first token is not the output's: the nested clock keeps it from the run's
    with _loop.chosen_logprobs() as steps, first_token_clock():
        cand = fn(model, rows, max_new_tokens=max_new_tokens, generator=sub, **params)
    cand = [list(c) for c in (cand.tokens if isinstance(cand, DecodeOutput) else cand)]
    if sc is None and steps:
        lp = torch.stack(steps, 1).cpu()  # (B * n, T): log p of each chosen token
        scores = [float(lp[r, :len(c)].double().mean()) if c else float("-inf")
                  for r, c in enumerate(cand)]
    else:  # a named scorer, or a base decoder that does not run the shared loop
        scores = mean_logprob(sc or model, rows, cand)
    best, best_i, best_lp = [], [], []
    for b in range(len(prompts)):
        i = max(range(n), key=lambda j: scores[b * n + j])  # the first of equal scores
        best.append(cand[b * n + i])
        best_i.append(i)
        best_lp.append(scores[b * n + i])
    return DecodeOutput(best, {"best_index": best_i, "best_logprob": best_lp})
