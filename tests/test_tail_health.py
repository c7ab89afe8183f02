"""Tail health (DESIGN 3.4 item 8): the pure functions on hand-computed cases, the decoder's
``feed`` field, the trace's health entries and the ``dynamics`` metric keys built from them."""

import math
from functools import partial

import pytest
import torch

from helpers import tiny_tm
from tmbench.metrics.dynamics import dynamics
from tmbench.tm.decode import maturation
from tmbench.tm.health import agree_share, copy_share, distinct_share, is_healthy
from tmbench.tm.model import TMConfig
from tmbench.types import MetricContext, Sample

torch.set_num_threads(1)
V, C = 61, 32
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]


# the file's TM: helpers.tiny_tm (V 61, width 32, k_max 16) with random conditioning and
# head, so outputs depend on everything
make = partial(tiny_tm, randomize=True)


def samples_of(r) -> list[Sample]:
    return [Sample(i, 0, "", [], "", t, "", {"tail": h, "agree_front_argmax": a})
            for i, (t, h, a) in enumerate(zip(r.tokens, r.info["tail"],
                                               r.info["agree_front_argmax"]))]


def ctx(m) -> MetricContext:
    return MetricContext(model=m, tokenizer=None, load_model=None)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_copy_distinct_agree_by_hand():
    tok = torch.tensor([[5, 5, 7, 7], [1, 2, 3, 4], [9, 9, 9, 9]])
    assert copy_share(tok).tolist() == pytest.approx([2 / 3, 0.0, 1.0])
    assert distinct_share(tok).tolist() == pytest.approx([0.5, 1.0, 0.25])
    other = torch.tensor([[5, 6, 7, 0], [1, 2, 3, 4], [0, 9, 0, 9]])
    assert agree_share(tok, other).tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert agree_share(tok, other, first=1).tolist() == pytest.approx([1 / 3, 1.0, 2 / 3])
    assert math.isnan(float(copy_share(torch.tensor([[3]]))[0]))  # K = 1: no slot behind
    assert math.isnan(float(agree_share(tok[:, :1], other[:, :1], first=1)[0]))


def test_is_healthy_thresholds():
    ok = {"tail_readability": 0.5, "tail_copy_rate": 0.3, "tail_norm_ratio": 2.0}
    assert is_healthy(ok) is True
    assert is_healthy(ok | {"tail_copy_rate": 0.31}) is False
    assert is_healthy(ok | {"tail_norm_ratio": 0.49}) is False
    assert is_healthy(ok | {"tail_readability": float("nan")}) is None


def test_training_tail_norm_by_hand():
    m = make()
    with torch.no_grad():
        m.emb.zero_()
        m.emb[:, 0] = 3.0  # every row has norm 3 (m2 = 9)
    R = m.radius
    a = torch.tensor([1.0, 0.5, 0.0])
    want = [3.0, math.sqrt(0.25 * 9 + 0.25 * (0.1 * R) ** 2), 0.1 * R]
    assert m.training_tail_norm(a).tolist() == pytest.approx(want, rel=1e-6)


def test_commit_rules_by_hand():
    m = make(geometry="tied", commit="inner")
    with torch.no_grad():
        m.emb.zero_()
        m.emb[0, 0], m.emb[1, 0], m.emb[1, 1] = 1.0, 3.0, 3.0  # rows (1, 0) and (3, 3)
    z = torch.zeros(1, C)
    z[0, 0] = 1.0  # <z, e0> = 1, <z, e1> = 3; ||z - e0|| = 0, cos(z, e0) = 1
    assert int(m.nearest(z)) == 1
    m.config.commit = "l2"
    assert int(m.nearest(z)) == 0
    m.config.commit = "cosine"
    assert int(m.nearest(z)) == 0
    with pytest.raises(ValueError, match="commit must be one of"):
        TMConfig(commit="dot")


@pytest.mark.parametrize("readout", ["next", "self"])
@pytest.mark.parametrize("feed", ["state", "expected", "nearest"])
def test_trace_and_health_do_not_change_tokens(readout, feed):
    """The readability forward runs on the window's cache and crops it back: tokens with the
    trace equal tokens without it, for every feed, with and without guidance."""
    m = make(readout)
    for guidance in (1.0, 1.5):
        kw = dict(max_new_tokens=10, tail_len=4, feed=feed, guidance=guidance)
        a = maturation(m, PROMPTS, generator=gen(3), **kw)
        b = maturation(m, PROMPTS, generator=gen(3), trace=True, **kw)
        c = maturation(m, PROMPTS, generator=gen(3), health=True, **kw)
        assert c.tokens == a.tokens and c.info["tail"] == b.info["tail"]
        assert "trace" not in c.info
        assert a.tokens == b.tokens
        assert a.info["agree_front_argmax"] == b.info["agree_front_argmax"]
        for h, toks in zip(b.info["tail"], b.tokens):
            assert len(h["copy"]) == len(h["readable"]) == len(h["distinct"]) == len(toks)
            assert all(0 <= x <= 1 for x in h["copy"] + h["readable"] + h["distinct"])


def test_feed_changes_what_the_network_reads():
    m = make()
    out = {f: maturation(m, PROMPTS, generator=gen(3), max_new_tokens=12, tail_len=6,
                         feed=f).tokens for f in ("state", "expected", "nearest")}
    assert out["state"] != out["nearest"] or out["state"] != out["expected"]
    with pytest.raises(ValueError, match="feed must be one of"):
        maturation(m, PROMPTS, generator=gen(3), max_new_tokens=2, feed="text")


def test_readability_is_one_when_the_tail_reads_as_text():
    """No-op conditioning (alpha MLP and FiLM at zero), alpha_max 1 and K = 2 under readout
    next: slot 1 is predicted at slot 0, whose input under ``feed: nearest`` is 1 x its nearest
    embedding, which is exactly the text the reference forward feeds. Readability must be 1."""
    m = tiny_tm()
    r = maturation(m, PROMPTS, generator=gen(1), max_new_tokens=8, tail_len=2, alpha_max=1.0,
                   feed="nearest", trace=True)
    for h in r.info["tail"]:
        assert h["readable"] == [1.0] * len(h["readable"])
    # the same model fed its raw states (noise-mixed vectors) does not read them as text
    s = maturation(m, PROMPTS, generator=gen(1), max_new_tokens=8, tail_len=2, alpha_max=0.5,
                   feed="state", health=True)
    assert min(sum(h["readable"]) / len(h["readable"]) for h in s.info["tail"]) < 1.0


def test_norm_ratio_of_nearest_feed_by_hand():
    """``feed: nearest`` feeds alpha_j e_tok; with every row of norm 3 and K = 1 at alpha_max
    1, the fed norm is 3 and the training norm sqrt(9 + 0) = 3: the ratio is exactly 1."""
    m = make(readout="self")
    with torch.no_grad():
        m.emb.copy_(torch.nn.functional.normalize(m.emb, dim=-1) * 3.0)
    r = maturation(m, PROMPTS, generator=gen(1), max_new_tokens=5, tail_len=1, alpha_max=1.0,
                   feed="nearest", trace=True)
    scores = dynamics(samples_of(r), ctx=ctx(m))
    assert scores["tail_norm_ratio"].value == pytest.approx(1.0, rel=1e-5)
    assert "tail_copy_rate" not in scores  # K = 1: no slot behind the front


def test_dynamics_metric_has_the_four_health_keys():
    m = make()
    r = maturation(m, PROMPTS, generator=gen(1), max_new_tokens=6, tail_len=4, health=True)
    scores = dynamics(samples_of(r), ctx=ctx(m))
    for key in ("tail_norm_ratio", "tail_copy_rate", "tail_readability", "tail_distinct"):
        assert key in scores and len(scores[key].per_sample) == 3
    t = r.info["tail"][0]
    assert scores["tail_copy_rate"].per_sample[0] == pytest.approx(sum(t["copy"]) / len(t["copy"]))
    want = sum(t["fed_norm"]) / len(t["fed_norm"]) / t["train_norm"]
    assert scores["tail_norm_ratio"].per_sample[0] == pytest.approx(want)


def test_failures_name_each_threshold_missed_and_a_missing_value_fails():
    from tmbench.tm.health import failures, is_healthy

    edge = {"tail_readability": 0.5, "tail_copy_rate": 0.3, "tail_norm_ratio": 2.0}
    assert failures(edge) == [] and is_healthy(edge) is True  # each threshold met at its edge
    bad = {"tail_readability": 0.49, "tail_copy_rate": 0.31, "tail_norm_ratio": 0.49}
    assert failures(bad) == ["tail_readability", "tail_copy_rate", "tail_norm_ratio"]
    assert is_healthy(bad) is False
    half = {"tail_readability": 0.9, "tail_copy_rate": float("nan")}
    assert failures(half) == ["tail_copy_rate", "tail_norm_ratio"] and is_healthy(half) is None
