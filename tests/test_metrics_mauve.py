"""MAUVE: same number as mauve-text called directly on the same features; feature cache;
human row skipped; small-n note recorded."""

import numpy as np
import pytest

from helpers import HashFeaturizer, ctx, sample

mauve_pkg = pytest.importorskip("mauve", reason="mauve-text is not installed")

from tmbench.metrics.mauve import embed_cached, mauve  # noqa: E402


def _samples(n=24):
    return [sample(f"model text {i} about things", prompt_index=i, ref=f"human text {i} on topics")
            for i in range(n)]


def test_equals_compute_mauve_on_same_features(tmp_path):
    feat = HashFeaturizer()
    c = ctx(load_model=lambda name, **kw: feat, cache_dir=str(tmp_path))
    ss = _samples()
    s = mauve(ss, ctx=c, kmeans_seeds=(1,))["mauve[c=5,featurizer=all-minilm-l6-v2]"]
    p = feat.embed([x.reference_text for x in ss])
    q = feat.embed([x.text for x in ss])
    direct = mauve_pkg.compute_mauve(p_features=p, q_features=q, seed=1).mauve
    assert s.value == pytest.approx(direct, abs=1e-12) and s.meta["per_seed"] == [s.value]
    assert s.meta["num_buckets"] == 2  # 'auto' = max(2, round(24 / 10))
    assert s.meta["scaling_factor"] == 5.0 and s.meta["scale"] == "0-1"
    assert s.meta["n_p"] == 24 and s.meta["n_q"] == 24 and s.meta["n"] == 24
    assert any("below the few thousand" in n for n in c.notes)
    assert 0.0 <= s.value <= 1.0 and s.per_sample is None


def test_several_kmeans_seeds_mean_and_spread(tmp_path):
    feat = HashFeaturizer()
    ss = _samples()
    s = mauve(ss, ctx=ctx(load_model=lambda name, **kw: feat, cache_dir=str(tmp_path)))
    s = s["mauve[c=5,featurizer=all-minilm-l6-v2]"]
    p = feat.embed([x.reference_text for x in ss])
    q = feat.embed([x.text for x in ss])
    direct = [mauve_pkg.compute_mauve(p_features=p, q_features=q, seed=sd).mauve for sd in range(1, 6)]
    assert s.meta["kmeans_seeds"] == [1, 2, 3, 4, 5]  # five by default
    assert s.meta["per_seed"] == pytest.approx(direct, abs=1e-12)
    assert s.value == pytest.approx(np.mean(direct), abs=1e-12)
    assert s.meta["std"] == pytest.approx(np.std(direct, ddof=1), abs=1e-12)
    assert (s.meta["min"], s.meta["max"]) == (min(direct), max(direct))


def test_reliable_only_from_min_n():
    feat = HashFeaturizer()
    ss = _samples()
    c = ctx(load_model=lambda name, **kw: feat)
    small = mauve(ss, ctx=c, kmeans_seeds=(1,))["mauve[c=5,featurizer=all-minilm-l6-v2]"]
    assert small.meta["min_n"] == 500 and small.meta["reliable"] is False
    assert any("marked unreliable" in n for n in c.notes)
    ok = mauve(ss, ctx=ctx(load_model=lambda name, **kw: feat), kmeans_seeds=(1,), min_n=24)
    assert ok["mauve[c=5,featurizer=all-minilm-l6-v2]"].meta["reliable"] is True
    with pytest.raises(ValueError, match="min_n"):
        mauve(ss, ctx=c, min_n=0)


def test_old_seeds_name_is_accepted_once():
    feat = HashFeaturizer()
    c = ctx(load_model=lambda name, **kw: feat)
    out = mauve(_samples(), ctx=c, seeds=[2, 3])
    assert next(iter(out.values())).meta["kmeans_seeds"] == [2, 3]
    assert any("old name of 'kmeans_seeds'" in n for n in c.notes)
    with pytest.raises(ValueError, match="kmeans_seeds"):
        mauve(_samples(), ctx=c, seeds=[2], kmeans_seeds=[3])
    with pytest.raises(ValueError, match="kmeans_seeds"):
        mauve(_samples(), ctx=c, kmeans_seeds=[])


def test_feature_cache_is_used(tmp_path):
    feat = HashFeaturizer()
    texts = ["one", "two", "three"]
    a = embed_cached(feat, texts, 16, str(tmp_path))
    calls = feat.calls
    b = embed_cached(feat, texts[::-1], 16, str(tmp_path))
    assert feat.calls == calls and np.array_equal(a[::-1], b)
    assert len(list(tmp_path.rglob("*.arr"))) == 3 and not list(tmp_path.rglob("*.tmp"))
    embed_cached(feat, texts, 32, str(tmp_path))  # another max length is another cache entry
    assert feat.calls == calls + 1


def test_human_row_is_skipped_and_params_checked():
    c = ctx(load_model=lambda name, **kw: HashFeaturizer())
    ss = [sample("same", ref="same"), sample("also", ref="also")]
    assert mauve(ss, ctx=c) == {} and "human row" in c.notes[0]
    with pytest.raises(ValueError, match="num_buckets"):
        mauve(_samples(4), ctx=c, num_buckets=1)


def test_references_deduplicated_per_prompt(tmp_path):
    feat = HashFeaturizer()
    ss = [sample(f"model {i}", prompt_index=i // 2, ref=f"human {i // 2}") for i in range(20)]
    out = mauve(ss, ctx=ctx(load_model=lambda n, **kw: feat, cache_dir=str(tmp_path)), kmeans_seeds=(1,))
    meta = next(iter(out.values())).meta
    assert meta["n_p"] == 10 and meta["n_q"] == 20 and meta["n"] == 10
