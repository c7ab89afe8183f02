"""Self-BLEU speed against nltk: 1,000 samples of 128 tokens, each against the other 999.

nltk recounts all 999 references for every hypothesis, so its full run takes minutes; it is
timed on the first ``K_NLTK`` hypotheses (every hypothesis costs the same) and extrapolated.
Skipped by default (``slow`` marker, ``--benchmark-skip``); run
``pytest tests/test_bench_selfbleu.py -m slow -s`` for the ratio, and
``pytest tests/test_bench_selfbleu.py -m slow --benchmark-only`` for the pytest-benchmark table.
"""

import random
import time
import warnings

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from tmbench.metrics.selfbleu import self_bleu

pytestmark = pytest.mark.slow

N, L, V, K_NLTK = 1000, 128, 2000, 10


def _corpus():
    rng = random.Random(0)
    return [[rng.randrange(V) for _ in range(L)] for _ in range(N)]


def _nltk_seconds_per_hypothesis(seqs):
    f = SmoothingFunction().method1
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = [sentence_bleu(seqs[:i] + seqs[i + 1:], seqs[i], smoothing_function=f)
               for i in range(K_NLTK)]
    return (time.perf_counter() - t0) / K_NLTK, ref


def test_self_bleu_is_20x_faster_than_nltk():
    seqs = _corpus()
    t0 = time.perf_counter()
    sent, _ = self_bleu(seqs)
    ours = time.perf_counter() - t0
    per_hyp, ref = _nltk_seconds_per_hypothesis(seqs)
    assert max(abs(a - b) for a, b in zip(sent, ref)) <= 1e-9
    ratio = per_hyp * N / ours
    print(f"\nself-BLEU {N}x{L}: tmbench {ours:.3f} s, nltk {per_hyp * N:.1f} s "
          f"(extrapolated from {K_NLTK}), ratio {ratio:.0f}x")
    assert ratio >= 20


def test_benchmark_self_bleu(benchmark):
    seqs = _corpus()
    sent, _ = benchmark.pedantic(self_bleu, args=(seqs,), rounds=3, iterations=1)
    benchmark.extra_info["nltk_seconds_extrapolated"] = _nltk_seconds_per_hypothesis(seqs)[0] * N
    assert len(sent) == N
