"""MaturationModel, GPT backbone and transformers adapter: masks, caches, induced
distribution, scoring, checkpoints."""

from functools import partial

import pytest
import torch

from helpers import tiny_tm
from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.models.shipped import load_model_dir, save_model_dir
from tmbench.tm.model import MaturationModel, TMConfig, tail_mask

torch.set_num_threads(1)
V, C = 61, 32


# the file's TM: helpers.tiny_tm (V 61, width 32, 64 positions) with k_max 8 and random
# conditioning and head, so every path of the network matters in the tests
tm_model = partial(tiny_tm, k_max=8, randomize=True)


def run(m, z, alpha, tail, mask=None):
    B, T, _ = z.shape
    pos = torch.arange(T)[None].expand(B, T)
    return m(z, alpha, tail, torch.full((B,), 4), pos, mask)[0]


def inputs(B=2, T=12, K=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, C, generator=g) * 3
    alpha = torch.ones(B, T)
    alpha[:, T - K:] = torch.linspace(0.8, 0.2, K)
    tail = torch.zeros(B, T, dtype=torch.bool)
    tail[:, T - K:] = True
    return z, alpha, tail


@pytest.mark.parametrize("backbone", ["gpt", "hf"])
def test_tail_only_mask_hides_the_prefix(backbone):
    m = tm_model(backbone=backbone)
    z, alpha, tail = inputs()
    T, K = 12, 4
    mask = tail_mask(torch.ones(2, T), T, tail_start=T - K, tail_only=True)
    a = run(m, z, alpha, tail, mask)
    z2 = z.clone()
    z2[:, : T - K] = torch.randn(2, T - K, C)  # another prefix
    b = run(m, z2, alpha, tail, mask)
    assert torch.allclose(a[:, T - K:], b[:, T - K:], atol=1e-5)  # tail blind to the prefix
    assert not torch.allclose(a[:, : T - K], b[:, : T - K])
    # per-row: only the row marked tail_only is blind
    mask_row = tail_mask(torch.ones(2, T), T, tail_start=T - K, tail_only=torch.tensor([True, False]))
    c, d = run(m, z, alpha, tail, mask_row), run(m, z2, alpha, tail, mask_row)
    assert torch.allclose(c[0, T - K:], d[0, T - K:], atol=1e-5)
    assert not torch.allclose(c[1, T - K:], d[1, T - K:])


@pytest.mark.parametrize("backbone,film", [("gpt", "tail"), ("gpt", "all"), ("gpt", "blocks"),
                                           ("hf", "tail")])
def test_causal_later_inputs_never_change_earlier_outputs(backbone, film):
    m = tm_model(backbone=backbone, film=film)
    z, alpha, tail = inputs()
    a = run(m, z, alpha, tail)
    for t in (3, 9, 11):
        z2 = z.clone()
        z2[:, t] += 5.0
        b = run(m, z2, alpha, tail)
        assert torch.allclose(a[:, :t], b[:, :t], atol=1e-5)
        assert not torch.allclose(a[:, t:], b[:, t:])


@pytest.mark.parametrize("backbone", ["gpt", "hf"])
@pytest.mark.parametrize("readout", ["next", "self"])
def test_cached_tail_step_equals_uncached_forward(backbone, readout):
    """tail_step (prefix in the KV cache, left padding) = one full forward of the sequence."""
    m = tm_model(readout=readout, backbone=backbone)
    K, d = 4, C
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    g = torch.Generator().manual_seed(3)
    tail = torch.randn(2, K, d, generator=g)
    alpha = m.alpha_profile(K, 0.75)
    S = max(len(p) for p in prompts) - 1
    ids = torch.zeros(2, S, dtype=torch.long)
    real = torch.zeros(2, S, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, S - len(p) + 1:] = torch.tensor(p[:-1])
        real[b, S - len(p) + 1:] = 1
    pos = (real.cumsum(-1) - 1).clamp(min=0)
    cache = m.prefill(ids, real, pos)
    pending = torch.tensor([p[-1] for p in prompts])
    zhat, _ = m.tail_step(pending, tail, alpha, real, torch.tensor([len(p) - 1 for p in prompts]), cache)
    for b, p in enumerate(prompts):
        n = len(p)
        z = torch.cat([m.emb[torch.tensor(p)], tail[b]])[None]  # (1, n + K, d)
        a = torch.cat([torch.ones(n), alpha])[None]
        t = torch.cat([torch.zeros(n), torch.ones(K)]).bool()[None]
        pos1 = torch.arange(n + K)[None]
        full, _ = m(z, a, t, torch.tensor([K]), pos1)
        sh = m.readout_shift
        ref = full[0, n - sh: n - sh + K]
        assert torch.allclose(zhat[b], ref, atol=1e-4), (b, (zhat[b] - ref).abs().max())


@pytest.mark.parametrize("static", [False, True])
def test_gpt_kv_cache_equals_uncached(static):
    torch.manual_seed(0)
    bb = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=C, block_size=128)).eval()
    x = torch.randn(2, 80, C)
    pos = torch.arange(80)[None].expand(2, 80)
    full, _ = bb(x, pos)
    cache = bb.new_cache(static=static)
    parts = []
    for lo, hi in ((0, 4), (4, 5), (5, 70), (70, 80)):  # the static buffer grows past 64
        h, cache = bb(x[:, lo:hi], pos[:, lo:hi], cache=cache)
        parts.append(h)
    assert len(cache) == 80
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    # crop and extend again: a wrong continuation leaves no trace
    cache.crop(70)
    bb(torch.randn(2, 6, C), pos[:, 70:76], cache=cache)
    cache.crop(70)
    h, _ = bb(x[:, 70:80], pos[:, 70:80], cache=cache)
    assert torch.allclose(h, full[:, 70:80], atol=1e-5)
    with pytest.raises(ValueError, match="context"):
        bb(torch.randn(1, 1, C), torch.tensor([[128]]))


def test_induced_distribution_sums_to_one_and_nearest_is_argmax():
    m = tm_model()
    z = torch.randn(3, 5, C)
    for scale in (1.0, 20.0, None):
        p = torch.softmax(m.induced_logits(z, scale), -1)
        assert p.shape == (3, 5, V)
        assert torch.allclose(p.sum(-1), torch.ones(3, 5), atol=1e-5)
    assert torch.equal(m.nearest(z), (z @ m.emb.T).argmax(-1))  # rows share the radius
    assert torch.allclose(m.emb.norm(dim=-1), torch.full((V,), m.radius), atol=1e-4)


def test_alpha_profile():
    m = tm_model()
    a = m.alpha_profile(4, 0.8)
    assert torch.allclose(a, torch.tensor([0.8, 0.6, 0.4, 0.2]))
    assert torch.allclose(m.alpha_profile(1, 0.75), torch.tensor([0.75]))


@pytest.mark.parametrize("readout", ["next", "self"])
@torch.no_grad()
def test_token_logprobs_match_explicit_forwards(readout):
    m = tm_model(readout=readout)
    seq = [3, 14, 15, 9, 26, 5, 35]
    lp = m.token_logprobs([seq, [7]])
    assert lp[0].shape == (len(seq) - 1,) and lp[1].shape == (0,)
    K, a_new = m.config.k_max, 0.75 / m.config.k_max
    for t in range(1, len(seq)):
        if readout == "next":
            z = m.emb[torch.tensor(seq[:t])][None]
            out = run_k(m, z, torch.ones(1, t), torch.zeros(1, t, dtype=torch.bool), K)[0, -1]
        else:  # clean x_<t, then a zero embryo at the newest-slot maturity
            z = torch.cat([m.emb[torch.tensor(seq[:t])], torch.zeros(1, C)])[None]
            alpha = torch.cat([torch.ones(t), torch.tensor([a_new])])[None]
            tail = torch.cat([torch.zeros(t), torch.ones(1)]).bool()[None]
            out = run_k(m, z, alpha, tail, K)[0, -1]
        ref = torch.log_softmax(m.induced_logits(out), -1)[seq[t]]
        assert abs(float(ref) - float(lp[0][t - 1])) < 1e-4


def run_k(m, z, alpha, tail, K):
    T = z.shape[1]
    return m(z, alpha, tail, torch.tensor([K]), torch.arange(T)[None])[0]


@pytest.mark.parametrize("backbone", ["gpt", "hf"])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, backbone):
    m = tm_model(backbone=backbone)
    m.name = "tm-test"
    save_model_dir(m, tmp_path / "tm")
    m2 = load_model_dir(tmp_path / "tm")
    sd1, sd2 = m.state_dict(), m2.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    ident = m2.identity()
    assert ident["kind"] == "tm" and ident["name"] == "tm-test" and len(ident["content_hash"]) == 16
    z, alpha, tail = inputs()
    assert torch.equal(run(m, z, alpha, tail), run(m2, z, alpha, tail))


def test_checkpoint_io_refuses_pickles_and_missing_files(tmp_path):
    from tmbench import checkpoint

    (tmp_path / "w.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="pickle"):
        checkpoint.load_tensors(tmp_path / "w.bin")
    with pytest.raises(ValueError, match="lacks"):
        load_model_dir(tmp_path)
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    checkpoint.save_tensors(t, tmp_path / "t.safetensors")
    back = checkpoint.load_tensors(tmp_path / "t.safetensors")
    assert all(torch.equal(t[k], back[k]) for k in t)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_shipped_loader_missing_files_is_a_clear_error(monkeypatch, tmp_path):
    from tmbench.models import shipped

    monkeypatch.setattr(shipped, "ASSETS", tmp_path)
    with pytest.raises(ValueError, match="missing its files"):
        shipped.load_tm_bbc_tiny()


def test_bad_config_values_raise():
    with pytest.raises(ValueError, match="readout"):
        TMConfig(readout="middle")
    with pytest.raises(ValueError, match="film"):
        TMConfig(film="everywhere")


def test_maturation_decodes_with_bfloat16_weights():
    """bf16 weights (GPU --dtype bfloat16): float32 decode states and alpha features are cast."""
    from tmbench.registry import DECODERS

    torch.manual_seed(0)
    m = MaturationModel(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=64)),
                        TMConfig(vocab_size=50, k_max=4)).eval().to(torch.bfloat16)
    out = DECODERS.get("maturation")(m, [[1, 2, 3], [4]], max_new_tokens=5, tail_len=4,
                                     generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert [len(t) for t in out.tokens] == [5, 5]
