"""Model folders: build, save and load TM and AR models; the two shipped tiny BBC models.

A model folder holds ``model.safetensors`` (weights), ``config.json`` (kind, backbone, TM
settings, tokenizer name) and ``tokenizer.json`` (a `tokenizers` file). The shipped pair lives
in ``tmbench/assets/models/<name>/`` (fp16 weights); see TRAINING.md beside it.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tmbench import checkpoint
from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.data.tokenizers import EOS, BPETokenizer
from tmbench.fileio import sha256_file
from tmbench.models.native_ar import NativeARModel
from tmbench.tm.model import MaturationModel, TMConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
FORMAT = "tmbench-model"


def _dataclass_from(cls, spec: dict, what: str):
    known = {f.name for f in fields(cls)}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown {what} field(s) {sorted(unknown)}; accepted: {sorted(known)}")
    return cls(**spec)


def build_backbone(spec: dict) -> nn.Module:
    """{kind: gpt, n_layer, n_head, n_embd, block_size, ...} -> GPT;
    {kind: hf, source: smollm2-135m | <local folder>} -> pretrained transformers backbone;
    {kind: hf, hf_config: {...}} -> randomly initialised transformers backbone (loading)."""
    spec = dict(spec)
    kind = spec.pop("kind", "gpt")
    if kind == "gpt":
        return GPT(_dataclass_from(GPTConfig, spec, "backbone"))
    if kind == "hf":
        from transformers import AutoConfig, AutoModelForCausalLM

        from tmbench.backbones.hf_adapter import HFBackbone

        if spec.get("hf_config") is not None:
            hc = dict(spec["hf_config"])
            lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(hc.pop("model_type"), **hc))
        elif spec.get("source") == "smollm2-135m":
            from tmbench.models.hf import load_smollm2

            lm = load_smollm2().model
        elif spec.get("source"):
            lm = AutoModelForCausalLM.from_pretrained(spec["source"], dtype=torch.float32)
        else:
            raise ValueError("a 'hf' backbone needs 'source' (smollm2-135m or a local folder) "
                             "or 'hf_config'")
        return HFBackbone(lm)  # float32: load_smollm2 dequantises to it
    raise ValueError(f"unknown backbone kind {kind!r}; accepted: gpt, hf")


def backbone_spec(backbone: nn.Module) -> dict:
    if isinstance(backbone, GPT):
        return {"kind": "gpt", **asdict(backbone.config)}
    return {"kind": "hf", "hf_config": backbone.config.to_dict()}


def build_model(kind: str, backbone: nn.Module, vocab_size: int, tm: dict | None = None,
                tokenizer: Any = None, name: str | None = None):
    if kind == "ar":
        return NativeARModel(backbone, vocab_size, tokenizer, name or "ar")
    if kind == "tm":
        cfg = _dataclass_from(TMConfig, {**(tm or {}), "vocab_size": vocab_size}, "tm")
        return MaturationModel(backbone, cfg, tokenizer, name or "tm")
    raise ValueError(f"unknown model kind {kind!r}; accepted: ar, tm")


def _backend_tokenizer(tok: Any):
    """(tokenizers.Tokenizer, eos token string) of any tokenizer we know how to save."""
    if isinstance(tok, BPETokenizer):
        return tok.tok, tok.eos_token
    inner = getattr(tok, "tok", None)  # tmbench.models.hf.HFTokenizer
    if inner is not None and hasattr(inner, "backend_tokenizer"):
        return inner.backend_tokenizer, inner.eos_token
    raise ValueError(f"cannot save tokenizer of type {type(tok).__name__}")


def save_model_dir(model, path: str | Path, dtype: torch.dtype | None = None,
                   extra: dict | None = None) -> None:
    """Write weights (optionally cast, e.g. float16), config.json and tokenizer.json; the
    folder appears complete or not at all."""
    path = Path(path)
    tmp = checkpoint.make_dir_tmp(path)
    try:
        sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
              for k, v in model.state_dict().items()}
        checkpoint.save_tensors(sd, tmp / "model.safetensors")
        cfg = {"format": FORMAT, "version": 1, "kind": model.kind, "name": model.name,
               "vocab_size": model.vocab_size, "backbone": backbone_spec(model.backbone),
               **(extra or {})}
        if model.kind == "tm":
            cfg["tm"] = {k: v for k, v in asdict(model.config).items() if k != "vocab_size"}
        cfg["weights_sha256"] = sha256_file(tmp / "model.safetensors")
        if model.tokenizer is not None:
            backend, eos = _backend_tokenizer(model.tokenizer)
            checkpoint.write_text(backend.to_str(), tmp / "tokenizer.json")
            cfg["tokenizer"] = {"name": model.tokenizer.name, "eos_token": eos}
        checkpoint.write_json(cfg, tmp / "config.json")
        checkpoint.replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_model_dir(path: str | Path, device: str = "cpu", dtype: str = "float32",
                   name: str | None = None):
    """A TM or AR model from a folder written by :func:`save_model_dir`."""
    from tmbench.models.hf import content_hash_of

    path = Path(path)
    files = [path / "model.safetensors", path / "config.json"]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise ValueError(f"model folder {path} lacks {', '.join(missing)}; train it with "
                         "`tmbench train` (see TRAINING.md) or pass a complete folder")
    cfg = checkpoint.read_json(path / "config.json")
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path / 'config.json'} is not a tmbench model config")
    tok = None
    if (path / "tokenizer.json").exists():
        t = cfg.get("tokenizer", {})
        tok = BPETokenizer.from_file(path / "tokenizer.json", t.get("name", path.name),
                                     t.get("eos_token", EOS))
    model = build_model(cfg["kind"], build_backbone(cfg["backbone"]), cfg["vocab_size"],
                        cfg.get("tm"), tok, name or cfg.get("name") or path.name)
    want = cfg.get("weights_sha256")
    if want is not None and sha256_file(path / "model.safetensors") != want:
        raise ValueError(f"checkpoint {path / 'model.safetensors'} is corrupt: its sha256 differs from "
                         f"the one recorded in config.json; restore or retrain it")
    sd = checkpoint.load_tensors(path / "model.safetensors")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.content_hash = content_hash_of([path / "model.safetensors"])
    return cast_model(model, device, dtype)


def cast_model(model, device: str, dtype: str):
    """Move a loaded model to ``device`` and ``dtype`` (float32 | float16 | bfloat16), eval mode."""
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be one of float32, float16, bfloat16, got {dtype!r}")
    return model.to(device=device, dtype=getattr(torch, dtype)).eval()


def _load_shipped(name: str, device: str, dtype: str):
    path = ASSETS / name
    if not (path / "model.safetensors").exists():
        raise ValueError(f"the shipped model {name!r} is missing its files in {path}; "
                         "reinstall tmbench or retrain it with the commands in "
                         f"{ASSETS / 'TRAINING.md'}")
    return load_model_dir(path, device, dtype, name)


def load_ar_bbc_tiny(device: str = "cpu", dtype: str = "float32") -> NativeARModel:
    """The tiny AR twin (d 256, 4 layers) trained on BBC train; fair pair of tm-bbc-tiny."""
    return _load_shipped("ar-bbc-tiny", device, dtype)


def load_tm_bbc_tiny(device: str = "cpu", dtype: str = "float32") -> MaturationModel:
    """The tiny TM model, initialised from the AR twin and trained for the same extra steps."""
    return _load_shipped("tm-bbc-tiny", device, dtype)
