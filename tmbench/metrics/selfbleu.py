"""Self-BLEU (Zhu et al. 2018, Texygen): each sample is a hypothesis, the other samples of its
group are its references. Counter-based and vectorised; equals nltk to float rounding.

nltk parity: sentence level = ``nltk.translate.bleu_score.sentence_bleu(others, hyp,
weights=(1/N,)*N, smoothing_function=SmoothingFunction().<method>)`` per hypothesis; corpus
level = ``corpus_bleu([others_i for i], hyps, same weights and smoothing)``. Smoothing
``method1`` (epsilon 0.1 added to zero numerators; Texygen's choice) or ``method0`` (none: a
zero precision becomes ``sys.float_info.min``, as nltk does).

Speed: nltk recounts every reference for every hypothesis, O(N^2 L). Here each n-gram's two
largest per-sample counts (per group) are found once with a sort; the clip count of sample i
is then the largest count among the *other* samples = top-2 when i holds the top-1 count, else
top-1. Total cost O(N L log(N L)).
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_left, bisect_right
from typing import Sequence

import numpy as np

from tmbench.metrics.ngrams import intern, ngram_occurrences

SMOOTHINGS = ("method0", "method1")


def _clip_counts(seqs: list[np.ndarray], group: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) clipped n-gram matches of each hypothesis against the other members of its group,
    and (N,) numbers of its n-grams."""
    N = len(seqs)
    gid, owner, G = ngram_occurrences(seqs, n)
    total = np.bincount(owner, minlength=N).astype(np.int64)
    if not G:
        return np.zeros(N, np.int64), total
    pairs, count = np.unique(owner * G + gid, return_counts=True)
    p_owner, p_gram = pairs // G, pairs % G
    key = group[p_owner] * G + p_gram  # the same n-gram within the same group
    order = np.lexsort((-count, key))  # by key, then count descending
    k, c = key[order], count[order]
    start = np.r_[True, k[1:] != k[:-1]]
    run = np.cumsum(start) - 1  # run index of each sorted pair
    first = np.flatnonzero(start)
    top1 = c[first]
    second_ok = (first + 1 < len(k)) & ~np.r_[start[1:], True][first]
    top2 = np.where(second_ok, c[np.minimum(first + 1, len(k) - 1)], 0)
    t1, t2 = top1[run], top2[run]
    max_other = np.where(c == t1, t2, t1)
    clipped = np.minimum(c, max_other)
    num = np.bincount(p_owner[order], weights=clipped, minlength=N).astype(np.int64)
    return num, total


def _closest_ref_lengths(lengths: np.ndarray, group: np.ndarray) -> list[int | None]:
    """nltk ``closest_ref_length`` against the other members of the group (ties: shorter)."""
    by_group: dict[int, list[int]] = {}
    for g, L in zip(group.tolist(), lengths.tolist()):
        by_group.setdefault(g, []).append(L)
    for v in by_group.values():
        v.sort()
    out: list[int | None] = []
    for g, h in zip(group.tolist(), lengths.tolist()):
        Ls = by_group[g]
        lo, hi = bisect_left(Ls, h), bisect_right(Ls, h)
        if hi - lo >= 2:  # another reference has exactly this length
            out.append(h)
            continue
        cands = ([Ls[lo - 1]] if lo > 0 else []) + ([Ls[hi]] if hi < len(Ls) else [])
        out.append(min(cands, key=lambda r: (abs(r - h), r)) if cands else None)
    return out


def _bleu(num: Sequence[int], den: Sequence[int], ref_len: int, hyp_len: int,
          weights: Sequence[float], smoothing: str, epsilon: float) -> float:
    """nltk's final step of ``corpus_bleu`` given pooled counts (same float operations)."""
    if num[0] == 0:
        return 0.0
    p_n: list[float] = []
    for a, b in zip(num, den):
        if a != 0:
            p_n.append(a / b)
        elif smoothing == "method1":
            p_n.append((a + epsilon) / b)
        else:
            p_n.append(sys.float_info.min)
    if hyp_len > ref_len:
        bp = 1.0
    elif hyp_len == 0:
        bp = 0.0
    else:
        bp = math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, p_n) if p > 0))


def self_bleu(seqs: Sequence[Sequence], group: Sequence[int] | None = None, *, max_n: int = 4,
              smoothing: str = "method1", epsilon: float = 0.1,
              ) -> tuple[list[float | None], float | None]:
    """Per-hypothesis sentence BLEU against the other members of its group, and the corpus
    BLEU over all hypotheses that have references. ``group`` (N,) defaults to one group.
    Hypotheses alone in their group get ``None``; uniform weights 1/max_n."""
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; accepted: {', '.join(SMOOTHINGS)}")
    N = len(seqs)
    if N == 0:
        return [], None
    ids = intern(seqs)
    group = np.zeros(N, np.int64) if group is None else np.asarray(group, dtype=np.int64)
    weights = (1.0 / max_n,) * max_n
    if max_n == 4:
        weights = (0.25, 0.25, 0.25, 0.25)  # nltk's literal default
    nums, dens = [], []
    for n in range(1, max_n + 1):
        num, tot = _clip_counts(ids, group, n)
        nums.append(num)
        dens.append(np.maximum(tot, 1))  # nltk: denominator = max(1, count)
    lengths = np.array([len(s) for s in ids], dtype=np.int64)
    refs = _closest_ref_lengths(lengths, group)
    num_t = np.stack(nums, 1).tolist()  # (N, max_n)
    den_t = np.stack(dens, 1).tolist()
    sent: list[float | None] = []
    pooled_num, pooled_den, H, R = [0] * max_n, [0] * max_n, 0, 0
    for i in range(N):
        if refs[i] is None:
            sent.append(None)
            continue
        sent.append(_bleu(num_t[i], den_t[i], refs[i], int(lengths[i]), weights, smoothing,
                          epsilon))
        pooled_num = [a + b for a, b in zip(pooled_num, num_t[i])]
        pooled_den = [a + b for a, b in zip(pooled_den, den_t[i])]
        H, R = H + int(lengths[i]), R + refs[i]
    has_refs = any(r is not None for r in refs)
    corpus = _bleu(pooled_num, pooled_den, R, H, weights, smoothing, epsilon) if has_refs else None
    return sent, corpus
