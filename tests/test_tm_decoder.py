"""The ``maturation`` decoder on tiny random TM models: determinism, batching, lengths, EOS,
the vector-greedy special case, guidance, traces, context sliding, parameter errors."""

from functools import partial

import pytest
import torch

from helpers import tiny_tm
from tmbench.registry import DECODERS
from tmbench.tm.decode import maturation
from tmbench.types import DecodeOutput

torch.set_num_threads(1)
V, C = 61, 32
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]


# the file's TM: helpers.tiny_tm (V 61, width 32, k_max 16) with random conditioning and
# head, so outputs depend on everything
make = partial(tiny_tm, randomize=True)


@pytest.fixture(scope="module", params=["next", "self"])
def model(request):
    return make(request.param)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registered_and_marked_tm():
    assert DECODERS.get("maturation") is maturation
    assert maturation.model_kind == "tm"


def test_deterministic_and_lengths(model):
    a = maturation(model, PROMPTS, max_new_tokens=9, generator=gen(1), tail_len=4)
    b = maturation(model, PROMPTS, max_new_tokens=9, generator=gen(1), tail_len=4)
    assert isinstance(a, DecodeOutput)
    assert a.tokens == b.tokens
    assert [len(t) for t in a.tokens] == [9, 9, 9]  # no EOS set on this model
    assert len(a.info["agree_front_argmax"]) == 3
    assert all(0.0 <= x <= 1.0 for x in a.info["agree_front_argmax"])
    z1 = maturation(model, PROMPTS, max_new_tokens=9, generator=gen(1), embryo="zeros")
    z2 = maturation(model, PROMPTS, max_new_tokens=9, generator=gen(2), embryo="zeros")
    assert z1.tokens == z2.tokens  # nothing random left


@pytest.mark.parametrize("guidance", [1.0, 1.5])
def test_batch_equals_one_by_one(model, guidance):
    """Different prompt lengths: left padding must not change any row (one generator per row,
    so the gaussian embryos are the same too)."""
    kw = dict(max_new_tokens=7, tail_len=5, guidance=guidance)
    batch = maturation(model, PROMPTS, generator=[gen(10 + i) for i in range(3)], **kw)
    for i, p in enumerate(PROMPTS):
        one = maturation(model, [p], generator=[gen(10 + i)], **kw)
        assert one.tokens[0] == batch.tokens[i]
        assert one.info["agree_front_argmax"][0] == batch.info["agree_front_argmax"][i]


def _two_pass_update(model, st, guidance, sigma_dyn, step, inputs=None):
    """Guidance as two forwards: the full-mask pass, then the tail-only pass over the same
    cache (the way the decoder ran before both passes shared one batch)."""
    win, S = st.win, st.win.key_real.shape[1]
    z_c, cache = model.tail_step(win.pending, st.tail, st.alpha, win.key_real, win.positions,
                                 win.cache)
    model.crop_cache(cache, S)
    z_u, cache = model.tail_step(win.pending, st.tail, st.alpha, win.key_real, win.positions,
                                 cache, tail_only=True)
    z_hat = z_u + guidance * (z_c - z_u)
    st.tail = st.tail + st.eta * (z_hat - st.tail)
    return z_hat, cache


def use_two_passes(mp) -> None:
    """Make ``maturation`` run guidance as two forwards over one cache (in ``mp``, a
    monkeypatch or its context): one cache copy, ``_two_pass_update`` per step."""
    from tmbench.tm import decode

    init = decode.init_state
    mp.setattr(decode, "init_state", lambda *a, **k: init(*a, **(k | {"guided": False})))
    mp.setattr(decode, "update", _two_pass_update)


@pytest.mark.parametrize("guidance", [0.0, 1.5, 3.0])
def test_guidance_in_one_batch_equals_two_passes(model, guidance, monkeypatch):
    """Both passes of classifier-free guidance in one forward of 2B rows (rows B.. under the
    tail-only mask, each with its own copy of the KV cache) give what two forwards give."""
    kw = dict(max_new_tokens=12, tail_len=4, guidance=guidance)
    one = maturation(model, PROMPTS, generator=gen(7), trace=True, **kw)
    use_two_passes(monkeypatch)
    two = maturation(model, PROMPTS, generator=gen(7), trace=True, **kw)
    assert one.tokens == two.tokens
    assert one.info["agree_front_argmax"] == two.info["agree_front_argmax"]
    for a, b in zip(one.info["trace"], two.info["trace"]):
        assert torch.allclose(torch.tensor(a["displacement"]), torch.tensor(b["displacement"]), atol=1e-5)


def test_guidance_in_one_batch_on_a_transformers_backbone(monkeypatch):
    """The same through a transformers backbone (its DynamicCache copied per pass)."""
    m = tiny_tm("next", seed=3, backbone="hf", k_max=8, randomize=True)
    kw = dict(max_new_tokens=10, tail_len=4, guidance=2.0)
    one = maturation(m, PROMPTS, generator=gen(5), trace=True, **kw)
    use_two_passes(monkeypatch)
    two = maturation(m, PROMPTS, generator=gen(5), trace=True, **kw)
    assert one.tokens == two.tokens
    for a, b in zip(one.info["trace"], two.info["trace"]):
        assert torch.allclose(torch.tensor(a["displacement"]), torch.tensor(b["displacement"]), atol=1e-5)


def test_guidance_with_one_token_prompts(model):
    """A one-token prompt leaves the cache empty (nothing committed before the pending token):
    the two passes' copies start from an empty cache, and rows still decode as they do alone."""
    kw = dict(max_new_tokens=6, tail_len=3, guidance=2.0)
    batch = maturation(model, [[5], [7, 8, 9]], generator=[gen(0), gen(1)], **kw)
    assert maturation(model, [[5]], generator=[gen(0)], **kw).tokens[0] == batch.tokens[0]
    assert maturation(model, [[7, 8, 9]], generator=[gen(1)], **kw).tokens[0] == batch.tokens[1]


def test_guidance_survives_a_context_slide():
    """Under guidance the window keeps two cache copies; a re-encoding from a later start
    (context overflow) rebuilds both, and rows still equal their one-by-one decodes."""
    m = make("next", block_size=16)
    kw = dict(max_new_tokens=20, tail_len=4, guidance=2.0)
    batch = maturation(m, PROMPTS, generator=[gen(20 + i) for i in range(3)], **kw)
    for i, p in enumerate(PROMPTS):
        assert maturation(m, [p], generator=[gen(20 + i)], **kw).tokens[0] == batch.tokens[i]


def test_eos_stops_a_row_and_is_included(model):
    ref = maturation(model, PROMPTS, max_new_tokens=12, generator=gen(3), tail_len=3)
    row = ref.tokens[0]
    eos = row[4]
    m = make(model.config.readout)
    m.eos_token_id = eos
    out = maturation(m, PROMPTS, max_new_tokens=12, generator=gen(3), tail_len=3)
    for got, full in zip(out.tokens, ref.tokens):
        want = full[: full.index(eos) + 1] if eos in full else full
        assert got == want
    assert out.tokens[0][-1] == eos and len(out.tokens[0]) <= 5


def vector_greedy(m, prompt, n):
    """No maturation: commit the nearest embedding of f(committed history) at each step."""
    seq = list(prompt)
    for _ in range(n):
        z = m.emb[torch.tensor(seq)][None]
        T = len(seq)
        out, _ = m(z, torch.ones(1, T), torch.zeros(1, T, dtype=torch.bool), torch.tensor([1]),
                   torch.arange(T)[None])
        seq.append(int(m.nearest(out[0, -1])))
    return seq[len(prompt):]


@pytest.mark.parametrize("K", [1, 4, 8])
def test_alpha_max_one_with_readout_next_is_vector_greedy(K):
    m = make("next")
    with torch.no_grad():
        out = maturation(m, PROMPTS, max_new_tokens=6, generator=gen(0), tail_len=K, alpha_max=1.0)
        for p, got in zip(PROMPTS, out.tokens):
            assert got == vector_greedy(m, p, 6)
    assert out.info["agree_front_argmax"] == [1.0, 1.0, 1.0]


def test_trace_format(model):
    K = 4
    out = maturation(model, PROMPTS[:2], max_new_tokens=6, generator=gen(0), tail_len=K, trace=True,
                     trace_scales=(1.0, 20.0))
    for toks, tr, h in zip(out.tokens, out.info["trace"], out.info["tail"]):
        assert set(tr) == {"entropy", "displacement", "cos_final", "top"}
        assert set(h) == {"fed_norm", "train_norm", "copy", "distinct", "readable"}
        assert all(len(h[k]) == len(toks) for k in ("fed_norm", "copy", "readable"))
        assert set(tr["entropy"]) == {"1", "20"}
        for key in ("displacement", "cos_final"):
            assert len(tr[key]) == len(toks) and all(len(r) == K for r in tr[key])
        for rows in tr["entropy"].values():
            assert len(rows) == len(toks) and all(len(r) == K for r in rows)
            assert all(0 <= v <= torch.log(torch.tensor(float(V))) + 1e-4 for r in rows for v in r)
        assert [t[0] for t in tr["top"]] == toks  # commit = nearest = top-1 of the final state
        assert all(-1 - 1e-5 <= v <= 1 + 1e-5 for r in tr["cos_final"] for v in r)


def test_stochastic_variants_depend_on_the_generator(model):
    kw = dict(max_new_tokens=10, tail_len=4, sample_commit=True, sigma_dyn=0.5, embryo="zeros")
    a = maturation(model, PROMPTS, generator=gen(1), **kw)
    b = maturation(model, PROMPTS, generator=gen(1), **kw)
    c = maturation(model, PROMPTS, generator=gen(2), **kw)
    assert a.tokens == b.tokens and a.tokens != c.tokens


def test_tails_longer_than_k_max_are_accepted():
    m = make("next")  # k_max 16, context 64
    out = maturation(m, PROMPTS, max_new_tokens=5, generator=gen(0), tail_len=40, trace=True)
    assert [len(t) for t in out.tokens] == [5, 5, 5]
    assert all(len(r) == 40 for r in out.info["trace"][0]["displacement"])


def test_decoding_past_the_context_slides_the_window():
    m = make("next", block_size=24)
    out = maturation(m, PROMPTS, max_new_tokens=40, generator=[gen(i) for i in range(3)], tail_len=8)
    assert [len(t) for t in out.tokens] == [40, 40, 40]
    one = maturation(m, [PROMPTS[1]], max_new_tokens=40, generator=[gen(1)], tail_len=8)
    assert one.tokens[0] == out.tokens[1]


@pytest.mark.parametrize("kw,name", [
    ({"tail_len": 0}, "tail_len"), ({"tail_len": 64}, "tail_len"), ({"tail_len": 2.5}, "tail_len"),
    ({"alpha_max": 0.0}, "alpha_max"), ({"alpha_max": 1.5}, "alpha_max"),
    ({"guidance": -1.0}, "guidance"), ({"eta_schedule": "linear"}, "eta_schedule"),
    ({"embryo": "uniform"}, "embryo"), ({"sigma_embryo": -0.1}, "sigma_embryo"),
    ({"sigma_dyn": float("nan")}, "sigma_dyn"), ({"sample_commit": 1}, "sample_commit"),
    ({"trace_scales": ()}, "trace_scales"), ({"trace_scales": (0.0,)}, "trace_scales"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
])
def test_bad_params_raise_value_error(model, kw, name):
    args = {"max_new_tokens": 3, **kw}
    with pytest.raises(ValueError, match=name):
        maturation(model, PROMPTS, generator=gen(0), **args)


def test_bad_prompts_and_generators_raise(model):
    with pytest.raises(ValueError, match="prompts"):
        maturation(model, [[1], []], max_new_tokens=2, generator=gen(0))
    with pytest.raises(ValueError, match="generator"):
        maturation(model, PROMPTS, max_new_tokens=2, generator=[gen(0)])
