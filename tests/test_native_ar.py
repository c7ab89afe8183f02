"""NativeARModel on the GPT backbone through the shared ARModel prefill/step interface."""

import pytest
import torch

from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.models.native_ar import NativeARModel
from tmbench.models.shipped import load_model_dir, save_model_dir

torch.set_num_threads(1)
V, C = 53, 32
PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return NativeARModel(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=C, block_size=64)), V).eval()


def full_argmax(m, seq):
    with torch.no_grad():
        return int(m.logits(torch.tensor([seq]))[0, -1].argmax())


def test_greedy_via_prefill_step_equals_uncached_argmax(model):
    n = 8
    out = model.prefill(PROMPTS)
    toks = [[] for _ in PROMPTS]
    for _ in range(n):
        nxt = out.logits.argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            toks[b].append(t)
        out = model.step(out.state, nxt)
    for p, got in zip(PROMPTS, toks):
        seq, want = list(p), []
        for _ in range(n):
            want.append(full_argmax(model, seq))
            seq.append(want[-1])
        assert got == want


def test_cached_logits_equal_uncached(model):
    seq = [3, 4, 5, 6, 7, 8, 9]
    with torch.no_grad():
        full = model.logits(torch.tensor([seq]))[0]
    out = model.prefill([seq[:4]])
    got = [out.logits[0]]
    for t in seq[4:]:
        out = model.step(out.state, torch.tensor([t]))
        got.append(out.logits[0])
    assert torch.allclose(torch.stack(got), full[3:], atol=1e-4)


def test_step_does_not_mutate_the_incoming_state(model):
    out = model.prefill([PROMPTS[0]])
    a = model.step(out.state, torch.tensor([1])).logits
    model.step(out.state, torch.tensor([2]))
    b = model.step(out.state, torch.tensor([1])).logits
    assert torch.equal(a, b)
    sel = model.select(out.state, torch.tensor([0, 0]))
    assert model.step(sel, torch.tensor([1, 2])).logits.shape == (2, V)


def test_causal_and_token_logprobs(model):
    seq = [3, 4, 5, 6, 7, 8]
    with torch.no_grad():
        a = model.logits(torch.tensor([seq]))
        b = model.logits(torch.tensor([seq[:3] + [40, 41, 42]]))
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)
    lp = model.token_logprobs([seq])[0]
    ref = torch.log_softmax(a[0, :-1], -1).gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
    assert torch.allclose(lp, ref, atol=1e-5)


def test_round_trip_and_identity(tmp_path, model):
    model.name = "ar-test"
    save_model_dir(model, tmp_path / "ar")
    m2 = load_model_dir(tmp_path / "ar")
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in model.state_dict().items())
    ident = m2.identity()
    assert ident["kind"] == "ar" and ident["dtype"] == "float32" and ident["content_hash"]
    save_model_dir(model, tmp_path / "ar16", dtype=torch.float16)
    assert (tmp_path / "ar16" / "model.safetensors").stat().st_size < \
        (tmp_path / "ar" / "model.safetensors").stat().st_size * 0.6


def test_works_with_the_greedy_decoder(model):
    greedy = pytest.importorskip("tmbench.decoders.greedy").greedy
    out = greedy(model, PROMPTS, max_new_tokens=5, generator=torch.Generator())
    toks = out.tokens if hasattr(out, "tokens") else out
    assert [len(t) for t in toks] == [5, 5, 5]
