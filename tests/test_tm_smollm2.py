"""Token Maturation over SmolLM2-135M: tied geometry, LoRA deltas, the shipped models."""

import json
from pathlib import Path

import pytest
import torch

from tmbench.registry import DECODERS

ASSETS = Path(__file__).resolve().parents[1] / "tmbench" / "assets" / "models"
PROMPTS = ["The government said on Monday that", "Shares in the company rose after",
           "The band's new album, released", "England's coach named his squad for"]
LEARNED = {"geometry": "tied", "logit_scale": 12.8, "learn_logit_scale": True}


@pytest.fixture(scope="module")
def smollm2():
    from tmbench.models.hf import load_smollm2

    return load_smollm2()


@pytest.fixture(scope="module")
def tm_init():
    from tmbench.models.delta import load_tm_smollm2_init

    return load_tm_smollm2_init()


@pytest.mark.slow
def test_learned_scale_untrained_is_still_smollm2(smollm2):
    """Under tied geometry with a learned logit scale the head's output is divided by the
    scale and the logits multiplied by it: the untrained model is SmolLM2 (induced
    distribution and greedy tokens), while its predictions sit at embedding scale."""
    from tmbench.models.delta import build_over_base

    m = build_over_base("tm", "smollm2-135m", LEARNED, "tm-learned").eval()
    ids = [smollm2.tokenizer.encode(p) for p in PROMPTS]
    gen = [torch.Generator().manual_seed(i) for i in range(len(ids))]
    with torch.inference_mode():
        ar = DECODERS.get("greedy")(smollm2, ids, max_new_tokens=8, generator=gen)
        tm = DECODERS.get("maturation")(m, ids, max_new_tokens=8, generator=gen,
                                        alpha_max=1.0).tokens
        x = torch.tensor([ids[0]])
        ref = torch.log_softmax(smollm2.model(x).logits[0, :-1].float(), -1)
        got = m.clean_logprobs(x)[0]
    assert tm == ar
    torch.testing.assert_close(got, ref.gather(-1, x[0, 1:, None])[:, 0], atol=1e-3, rtol=1e-3)


def test_untrained_tied_tm_is_smollm2_at_alpha_max_1(smollm2, tm_init):
    ids = [smollm2.tokenizer.encode(p) for p in PROMPTS]
    gen = [torch.Generator().manual_seed(i) for i in range(len(ids))]
    with torch.inference_mode():
        ar = DECODERS.get("greedy")(smollm2, ids, max_new_tokens=12, generator=gen)
        tm = DECODERS.get("maturation")(tm_init, ids, max_new_tokens=12, generator=gen,
                                        alpha_max=1.0).tokens
    assert tm == ar
    # and the induced distribution is SmolLM2's next-token distribution
    x = torch.tensor([ids[0]])
    with torch.no_grad():
        ref = torch.log_softmax(smollm2.model(x).logits[0, :-1].float(), -1)
        ref = ref.gather(-1, x[0, 1:, None])[:, 0]
        got = tm_init.clean_logprobs(x)[0]
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def _perturbed(kind: str, tm: dict | None = None):
    from tmbench.models.delta import apply_adapter, build_over_base

    tm = (tm or {"geometry": "tied", "logit_scale": 1.0}) if kind == "tm" else None
    m = build_over_base(kind, "smollm2-135m", tm, f"{kind}-test")
    apply_adapter(m, {"kind": "lora", "r": 2, "lora_alpha": 4, "seed": 0,
                      "target_modules": ["q_proj", "v_proj"]})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.requires_grad:  # LoRA B starts at 0: move every trained tensor off its init
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    return m.eval()


@pytest.mark.slow
@pytest.mark.parametrize("kind,tm", [("tm", None), ("tm", LEARNED), ("ar", None)])
def test_delta_round_trip_and_wrong_base_is_refused(tmp_path, kind, tm):
    from tmbench.models.delta import load_delta, save_delta

    m = _perturbed(kind, tm)
    if tm == LEARNED:  # the learned scale is trained, so the delta must carry it
        assert m.log_scale.requires_grad
    ids = torch.tensor([[1, 504, 2315, 314, 253, 1176]])
    with torch.no_grad():
        want = m.clean_logprobs(ids) if kind == "tm" else m.logits(ids)[..., :8]
    save_delta(m, tmp_path / "d", base="smollm2-135m", adapter={
        "kind": "lora", "r": 2, "lora_alpha": 4, "seed": 0, "target_modules": ["q_proj", "v_proj"]},
        dtype=None)
    back = load_delta(tmp_path / "d")
    with torch.no_grad():
        got = back.clean_logprobs(ids) if kind == "tm" else back.logits(ids)[..., :8]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"not the base")
    with pytest.raises(ValueError, match="applies to base smollm2-135m with sha256"):
        load_delta(tmp_path / "d", base_path=other)


@pytest.mark.parametrize("name", ["tm-smollm2", "tm-smollm2-ce", "ar-smollm2"])
def test_shipped_delta_reproduces_its_recorded_logits(name):
    """The shipped deltas carry log-probabilities computed when they were exported."""
    from tmbench.models.delta import load_delta

    path = ASSETS / name
    if not (path / "delta.safetensors").exists():
        pytest.skip(f"{name} is not shipped in this checkout")
    ref = json.loads((path / "reference.json").read_text())
    m = load_delta(path)
    ids = torch.tensor([ref["ids"]])
    with torch.no_grad():
        got = (m.clean_logprobs(ids)[0] if m.kind == "tm"
               else torch.log_softmax(m.logits(ids)[0, :-1].float(), -1)
               .gather(-1, ids[0, 1:, None])[:, 0])
    torch.testing.assert_close(got, torch.tensor(ref["logprobs"]), atol=1e-4, rtol=1e-4)
    assert (path / "delta.safetensors").stat().st_size <= 20 * 2**20


@pytest.mark.parametrize("name", ["tm-smollm2", "tm-smollm2-ce", "ar-smollm2"])
def test_shipped_delta_refuses_a_different_base(tmp_path, name):
    from tmbench.models.delta import load_delta

    path = ASSETS / name
    if not (path / "delta.safetensors").exists():
        pytest.skip(f"{name} is not shipped in this checkout")
    other = tmp_path / "other.gguf"
    other.write_bytes(b"a different base file")
    with pytest.raises(ValueError, match="applies to base smollm2-135m with sha256"):
        load_delta(path, base_path=other)
