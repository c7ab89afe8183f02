"""Diversity metrics: hand-computed cases, Self-BLEU parity with nltk, hypothesis properties."""

import math
import random
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

from helpers import ctx, sample
from tmbench.metrics.diversity import diversity
from tmbench.metrics.selfbleu import self_bleu


def test_distinct_scopes_hand_computed():
    ss = [sample("a b c e", prompt_index=0), sample("a b d e", prompt_index=0),
          sample("x y", prompt_index=1)]
    out = diversity(ss, ctx=ctx(), units=("wordpunct",))
    assert out["distinct[n=1,scope=sample,unit=wordpunct]"].per_sample == [1.0, 1.0, 1.0]
    assert out["distinct[n=1,scope=corpus,unit=wordpunct]"].value == pytest.approx(7 / 10)
    # prompt 0 pools {a,b,c,d,e} over 8 words; prompt 1 is 2/2
    assert out["distinct[n=1,scope=prompt,unit=wordpunct]"].per_sample == pytest.approx([5 / 8, 5 / 8, 1])
    assert out["distinct[n=2,scope=corpus,unit=wordpunct]"].value == pytest.approx(6 / 7)  # ab twice
    # SimCTG product: n=2 (3+3+1)/7, n=3 (2+2)/4, n=4 (1+1)/2
    assert out["div[unit=wordpunct]"].value == pytest.approx(1.0)
    assert out["novel[n=2,refs=prompt,unit=wordpunct]"].value == pytest.approx(2 / 3)  # 'a b' shared


def test_div_and_entropy_and_zipf():
    ss = [sample("a b a b")]
    out = diversity(ss, ctx=ctx(), units=("wordpunct",))
    assert out["ngram_entropy[n=1,scope=sample,unit=wordpunct]"].value == pytest.approx(math.log(2))
    h2 = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))  # ab twice, ba once
    assert out["ngram_entropy[n=2,scope=corpus,unit=wordpunct]"].value == pytest.approx(h2)
    # rep-2 1/3, rep-3 0, rep-4 0 -> (2/3) * 1 * 1
    assert out["div[unit=wordpunct]"].value == pytest.approx(2 / 3)
    # counts 12/r for r = 1..4 lie exactly on a line of slope -1 in log-log
    words = ["w1"] * 12 + ["w2"] * 6 + ["w3"] * 4 + ["w4"] * 3
    z = diversity([sample(" ".join(words))], ctx=ctx(), units=("wordpunct",))["zipf[unit=wordpunct]"]
    assert z.value == pytest.approx(1.0) and z.higher_is_better is None
    assert z.meta["r"] == pytest.approx(-1.0)


def test_punctuation_runs_are_not_one_word():
    """Whitespace words made '-1-1-1-1' one distinct word; split, its distinct-2 is 2/7."""
    out = diversity([sample("-1-1-1-1")], ctx=ctx(), units=("wordpunct",))
    assert out["distinct[n=1,scope=corpus,unit=wordpunct]"].value == pytest.approx(2 / 8)
    assert out["distinct[n=2,scope=corpus,unit=wordpunct]"].value == pytest.approx(2 / 7)
    assert out["div[unit=wordpunct]"].value == pytest.approx(2 / 7 * 2 / 6 * 2 / 5)
    assert not any("unit=word]" in k or "unit=word," in k for k in out)


def test_prompt_scope_needs_two_samples_per_prompt():
    c = ctx()
    out = diversity([sample("a b c d", prompt_index=0), sample("e f g h", prompt_index=1)], ctx=c)
    assert not any("scope=prompt" in k or "refs=prompt" in k for k in out)
    assert any("scope/refs=prompt skipped" in n for n in c.notes)


def _rand_corpus(rng, N, V, lo, hi):
    return [[rng.randrange(V) for _ in range(rng.randint(lo, hi))] for _ in range(N)]


@pytest.mark.parametrize("smoothing", ["method1", "method0"])
def test_self_bleu_matches_nltk(smoothing):
    f = getattr(SmoothingFunction(), smoothing)
    rng = random.Random(0)
    worst = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero counts under method0
        for trial in range(12):
            seqs = _rand_corpus(rng, rng.randint(2, 9), rng.choice([2, 4, 30]), 0, 14)
            group = [rng.randrange(2) for _ in seqs]
            for g in (None, group):
                sent, corp = self_bleu(seqs, g, smoothing=smoothing)
                refs = [[seqs[j] for j in range(len(seqs)) if j != i and (g is None or g[j] == g[i])]
                        for i in range(len(seqs))]
                has = [i for i in range(len(seqs)) if refs[i]]
                for i in has:
                    worst = max(worst, abs(sent[i] - sentence_bleu(refs[i], seqs[i], smoothing_function=f)))
                if has:
                    ref_c = corpus_bleu([refs[i] for i in has], [seqs[i] for i in has], smoothing_function=f)
                    worst = max(worst, abs(corp - ref_c))
                assert all(sent[i] is None for i in range(len(seqs)) if not refs[i])
    assert worst <= 1e-9


def test_self_bleu_words_match_nltk_through_metric():
    rng = random.Random(1)
    vocab = "the a of to in cat dog sat ran on mat. -1-1 dog, ... ran!".split()
    ss = [sample(" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 20)))) for _ in range(8)]
    out = diversity(ss, ctx=ctx(), units=("wordpunct",))
    words = [re.findall(r"\w+|[^\w\s]", s.text) for s in ss]  # words, single punctuation marks
    f = SmoothingFunction().method1
    ref = [sentence_bleu(words[:i] + words[i + 1:], words[i], smoothing_function=f) for i in range(8)]
    got = out["self_bleu[level=sentence,n=4,refs=all,unit=wordpunct]"]
    assert max(abs(a - b) for a, b in zip(got.per_sample, ref)) <= 1e-9
    corp = corpus_bleu([words[:i] + words[i + 1:] for i in range(8)], words, smoothing_function=f)
    assert abs(out["self_bleu[level=corpus,n=4,refs=all,unit=wordpunct]"].value - corp) <= 1e-9


# ---- properties ---------------------------------------------------------------------------------
texts = st.lists(st.lists(st.sampled_from("abcdef"), min_size=0, max_size=12).map(" ".join),
                 min_size=2, max_size=7)
POOLED = ("rep", "distinct[n=2,scope=corpus", "div", "zipf", "self_bleu", "ngram_entropy[n=2,scope=corpus")


def _run(ts, prompts=None):
    ss = [sample(t, prompt_index=(prompts[i] if prompts else i)) for i, t in enumerate(ts)]
    from tmbench.metrics.repetition import repetition

    c = ctx()
    return repetition(ss, ctx=c, units=("wordpunct",)) | diversity(ss, ctx=c, units=("wordpunct",))


@settings(max_examples=25, deadline=None, database=None)
@given(texts, st.randoms(use_true_random=False))
def test_pooled_metrics_ignore_sample_order(ts, rnd):
    a = _run(ts)
    perm = list(range(len(ts)))
    rnd.shuffle(perm)
    b = _run([ts[i] for i in perm])
    for k, s in a.items():
        if k.startswith(POOLED):
            v, w = s.value, b[k].value
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, abs=1e-12), k


@settings(max_examples=25, deadline=None, database=None)
@given(texts)
def test_ranges_and_per_sample_means(ts):
    for k, s in _run(ts).items():
        if k.startswith(("rep", "seq_rep", "distinct", "loop", "div", "self_bleu", "novel")):
            assert math.isnan(s.value) or -1e-12 <= s.value <= 1 + 1e-12, k
        if s.per_sample is not None:
            assert len(s.per_sample) == len(ts)
            assert s.value == pytest.approx(float(np.mean(s.per_sample))), k


@settings(max_examples=15, deadline=None, database=None)
@given(st.lists(st.sampled_from("abcdef"), min_size=4, max_size=12).map(" ".join), st.integers(2, 5))
def test_identical_samples_have_no_cross_sample_diversity(text, k):
    out = _run([text] * k, [0] * k)
    for refs in ("all", "prompt"):
        assert out[f"novel[n=2,refs={refs},unit=wordpunct]"].value == 0.0
        assert out[f"self_bleu[level=sentence,n=4,refs={refs},unit=wordpunct]"].value == pytest.approx(1.0)
        assert out[f"self_bleu[level=corpus,n=4,refs={refs},unit=wordpunct]"].value == pytest.approx(1.0)


def test_disjoint_samples_are_all_novel():
    out = _run(["a b c d", "e f g h", "i j k l"], [0, 0, 0])
    assert out["novel[n=2,refs=prompt,unit=wordpunct]"].value == 1.0
    assert out["self_bleu[level=sentence,n=4,refs=prompt,unit=wordpunct]"].value < 0.1
