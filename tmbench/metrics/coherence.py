"""Coherence of a continuation with its prompt, under two definitions that are never mixed
(DESIGN 8.7); each key names its definition and its model:

- ``coherence[def=embed-cos,featurizer=F]``: cosine similarity of the featurizer embeddings of
  prompt and continuation (SimCTG, Su et al. 2022, used SimCSE; the offline default here is
  all-MiniLM-L6-v2, mean-pooled and normalised). In [-1, 1].
- ``coherence[def=judge-logprob,judge=J]``: mean log-probability (nats per judge token) of the
  continuation given the prompt under judge J with J's own tokenizer (Su & Collier 2023 used
  OPT-2.7B; the offline default is Gemma 3 270M, ``gemma3-270m``, which no row generates).
  At most 0. Scored exactly as ``gen_ppl`` and from the same cached judge forward (see
  :mod:`tmbench.metrics.judge` for retokenisation, windowing, the cache and
  ``meta["self_judged"]``).

Both per sample; higher is better (but degenerate repetition also scores a high judge
log-probability, so read it next to a diversity figure). A definition that fails fails the
metric (an ImportError, a featurizer or judge package not installed, makes the runner skip the
metric and a later run complete it), so a record never counts as complete with a definition
silently missing.
"""

from __future__ import annotations

import numpy as np

from tmbench.metrics.judge import check_window, judge_logprobs
from tmbench.types import MetricContext, Sample, Score, metric_key

DEFINITIONS = ("embed-cos", "judge-logprob")


def coherence(samples: list[Sample], *, ctx: MetricContext, defs=DEFINITIONS,
              featurizer: str = "all-minilm-l6-v2", judge: str = "gemma3-270m",
              max_text_length: int = 256, window: int = 1024, stride: int = 512,
              batch_tokens: int = 2048) -> dict[str, Score]:
    """Prompt coherence: embedding cosine (Su et al. 2022), judge log-prob (Su & Collier 2023).

    Higher is better; the two definitions are separate keys (module docstring)."""
    defs = (defs,) if isinstance(defs, str) else tuple(defs)
    bad = [d for d in defs if d not in DEFINITIONS]
    if bad or not defs:
        raise ValueError(f"unknown coherence definition(s) {bad or defs!r}; accepted: "
                         f"{', '.join(DEFINITIONS)}")
    if "judge-logprob" in defs:
        check_window(window, stride)
    if not samples:
        return {}
    out: dict[str, Score] = {}
    for d in defs:
        if d == "embed-cos":
            out.update(_embed_cos(samples, ctx, featurizer, max_text_length))
        else:
            out.update(_judge_logprob(samples, ctx, judge, window, stride, batch_tokens))
    return out


def _embed_cos(samples, ctx, featurizer: str, max_length: int) -> dict[str, Score]:
    from tmbench.metrics.mauve import embed_cached

    f = ctx.load_model(featurizer, featurizer=True)
    a = embed_cached(f, [s.prompt_text for s in samples], max_length, ctx.cache_dir)  # (N, D)
    b = embed_cached(f, [s.text for s in samples], max_length, ctx.cache_dir)  # (N, D)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    per = (a * b).sum(1).astype(np.float64).tolist()
    meta = {"featurizer": f.identity(), "max_text_length": max_length,
            "definition": "cosine(embed(prompt_text), embed(text)) (SimCTG used SimCSE)"}
    return {metric_key("coherence", **{"def": "embed-cos"}, featurizer=featurizer):
            Score(float(np.mean(per)), per, True, meta)}


def _judge_logprob(samples, ctx, judge: str, window: int, stride: int,
                   batch_tokens: int) -> dict[str, Score]:
    jm = ctx.load_model(judge)
    lps, meta = judge_logprobs(jm, samples, ctx, window=window, stride=stride,
                               batch_tokens=batch_tokens)
    per = [float(lp.mean()) if len(lp) else float("nan") for lp in lps]
    ok = [p for p in per if not np.isnan(p)]
    meta["definition"] = "mean log p_judge(continuation token | prompt, previous tokens), nats"
    return {metric_key("coherence", **{"def": "judge-logprob"}, judge=judge):
            Score(float(np.mean(ok)) if ok else float("nan"),
                  per if len(ok) == len(per) else None, True, meta)}
