"""Scoring continuations with a judge LM: shared by ``gen_ppl`` and judge-logprob coherence.

Protocol (recorded in ``meta``): the prompt and the continuation texts are re-encoded
separately with the judge's tokenizer and concatenated; only continuation tokens are scored.
A judge whose tokenizer starts every text with BOS (Gemma) declares it in ``score_prefix``
and gets that BOS before every window; otherwise there is no BOS (an empty prompt becomes the
judge's BOS, else EOS). Human-row references are the words after the prompt without their
separating space, so one space is put back. A sequence longer than ``window`` is scored in
chunks of ``stride`` continuation tokens, each chunk seeing up to ``window`` tokens (so every
scored token has at least ``window - stride`` tokens of context, or all of them).

AR judges are scored in left-padded batches (several samples per forward, about 2x faster on
CPU than one sequence at a time), up to ``batch_tokens`` padded tokens per forward; a judge
with ``target_logprobs`` (large vocabularies, :mod:`tmbench.models.judges`) computes the
log-softmax in chunks of positions instead of materialising (B, T, V) logits. Any other judge
goes through its ``token_logprobs``. Per-sample log-probabilities are cached on disk per judge
identity, protocol, window, stride and text pair, so ``gen_ppl`` and coherence with the same
judge share one forward per sample.

Self-judging: ``meta["self_judged"]`` is True when the judge is the generator (same content
hash; same name when either has no hash), so a table can mark the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tmbench.cache import load_array, save_array
from tmbench.fileio import sha256_text
from tmbench.scoring import token_logprobs_batched, windows
from tmbench.types import MetricContext, Sample

PROTOCOL = 2  # bump when the scoring protocol changes, so cached scores are not reused


def judge_logprobs(jm: Any, samples: list[Sample], ctx: MetricContext, *, window: int,
                   stride: int, batch_tokens: int = 2048) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Per sample, the judge's log-probabilities (nats, float64) of the continuation tokens
    given the prompt; and the protocol for ``meta``."""
    pre = list(getattr(jm, "score_prefix", None) or [])
    check_window(window, stride, len(pre))
    human = ctx.model is None or bool(ctx.decode_info.get("human"))
    ident = judge_identity(jm)
    pairs = []
    for s in samples:
        prompt, cont = s.prompt_text, s.text
        if human and prompt and cont and not prompt[-1].isspace() and not cont[0].isspace():
            cont = " " + cont  # references are the words after the prompt, without the space
        pairs.append((prompt, cont))
    cache = _Cache(ctx.cache_dir, ident, window, stride)
    out: list[np.ndarray | None] = [cache.get(p) for p in pairs]
    todo = [i for i, o in enumerate(out) if o is None]
    if todo:
        scored = _score_pairs(jm, [pairs[i] for i in todo], pre, window, stride, batch_tokens)
        for i, lp in zip(todo, scored):
            out[i] = lp
            cache.put(pairs[i], lp)
    empty = sum(len(o) == 0 for o in out)
    if empty:
        ctx.notes.append(f"{empty} samples have an empty continuation; they get no judge score")
    gen = ctx.model.identity() if ctx.model is not None and hasattr(ctx.model, "identity") else None
    self_judged = is_self_judged(ident, gen)
    if self_judged:
        ctx.notes.append("the judge is the generator itself; its scores are not independent")
    meta = {"judge": ident, "self_judged": self_judged, "window": window, "stride": stride,
            "retokenisation": "prompt_text and text re-encoded separately with the judge "
                              "tokenizer, concatenated, "
                              + ("judge BOS before every window" if pre else "no BOS")
                              + "; prompt tokens not scored"
                              + ("; one space put between prompt and reference (human row)"
                                 if human else ""),
            "n_tokens": int(sum(len(o) for o in out))}
    return out, meta  # type: ignore[return-value]


def check_window(window: int, stride: int, n_prefix: int = 0) -> None:
    """Every window must leave context: 1 <= stride < window - n_prefix (the judge's BOS)."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (window, stride))
    if not ok or not 1 <= stride < window - n_prefix:
        raise ValueError(f"need integers 1 <= stride < window{' - 1 (BOS)' if n_prefix else ''}, "
                         f"got stride={stride!r}, window={window!r}")


def judge_identity(jm: Any) -> dict[str, Any]:
    return jm.identity() if hasattr(jm, "identity") else {"name": type(jm).__name__}


def is_self_judged(judge: dict[str, Any], generator: dict[str, Any] | None) -> bool:
    """Whether judge and generator are the same model: equal content hashes when both have
    one, else equal names. ``generator`` is None for the human row."""
    if not generator:
        return False
    a, b = judge.get("content_hash"), generator.get("content_hash")
    if a and b:
        return a == b
    return judge.get("name") is not None and judge.get("name") == generator.get("name")


def _score_pairs(jm: Any, pairs: list[tuple[str, str]], pre: list[int], window: int,
                 stride: int, batch_tokens: int) -> list[np.ndarray]:
    tok = jm.tokenizer
    prefix = getattr(tok, "bos_token_id", None)
    if prefix is None:
        prefix = getattr(getattr(tok, "tok", None), "bos_token_id", None)
    prefix = tok.eos_token_id if prefix is None else prefix
    jobs: list[tuple[int, list[int], int]] = []  # (pair index, input ids, scored tail length)
    for k, (prompt, cont) in enumerate(pairs):
        p_ids = list(tok.encode(prompt)) or ([] if pre else [prefix])
        for ids, n in windows(p_ids, list(tok.encode(cont)), pre, window, stride):
            jobs.append((k, ids, n))
    scores = token_logprobs_batched(jm, [j[1] for j in jobs], batch_tokens, [j[2] for j in jobs])
    parts: list[list[np.ndarray]] = [[] for _ in pairs]
    for (k, _, n), lp in zip(jobs, scores):
        parts[k].append(lp[len(lp) - n:])
    return [np.concatenate(p) if p else np.zeros(0) for p in parts]


class _Cache:
    """Judge scores on disk: one array per (judge identity, protocol, window, stride, prompt,
    text)."""

    def __init__(self, cache_dir: str | None, ident: dict, window: int, stride: int):
        self.folder = None
        if cache_dir is not None and ident.get("content_hash"):
            key = json.dumps([ident, PROTOCOL, window, stride], sort_keys=True, default=str)
            self.folder = Path(cache_dir) / "judge" / sha256_text(key)[:16]

    def _path(self, pair: tuple[str, str]) -> Path:
        digest = sha256_text("\0".join(pair))
        return self.folder / f"{digest}.arr"

    def get(self, pair: tuple[str, str]) -> np.ndarray | None:
        if self.folder is None:
            return None
        return load_array(self._path(pair))

    def put(self, pair: tuple[str, str], lp: np.ndarray) -> None:
        if self.folder is not None:
            save_array(self._path(pair), lp)
