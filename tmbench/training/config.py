"""Training configs: dataclasses, YAML loading with ``a.b=value`` overrides, and their checks.

A config is named (``tmbench/configs/<name>.yaml``) or a path; unknown fields are refused with
the list of accepted ones.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tmbench.models.build import BASES, check_adapter

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

@dataclass
class DataConfig:
    corpus: str = "bbc"  # bbc | fineweb (online only)
    block_size: int = 128  # tokens per training block
    tokenizer: dict = field(default_factory=lambda: {"kind": "bbc-bpe", "vocab_size": 8192})
    max_docs: int | None = None  # use only the first N documents of each split (tests)
    fineweb_docs: int = 20000  # documents streamed from FineWeb (train; valid takes 1/20 more)


@dataclass
class ObjectiveConfig:  # TM only (DESIGN 3.3)
    k_max: int = 16  # K drawn per batch from 1..k_max
    alpha_max_range: tuple = (0.25, 1.0)  # alpha_max jittered per batch
    sigma_embryo: float = 0.1  # embryo noise norm ~ sigma_embryo * R
    w_mse: float = 1.0
    infonce_weight: float = 1.0  # lambda
    negatives: Any = "all"  # "all" or a number N of shared uniform negatives
    stop_grad: bool = True  # MSE target sg(e): embeddings learn through InfoNCE
    p_uncond: float = 0.1  # guidance dropout: the tail sees only the tail
    weighting: str = "uniform"  # uniform | one_minus_alpha (the paper's)
    eval_alpha_max: float = 0.75  # alpha_max of the (deterministic) validation objective
    # self-conditioned corruption: with this probability per batch the tail is built from the
    # model's own stop-gradient first-pass predictions, alpha * sg(z_hat) + (1 - alpha) * n,
    # instead of from the ground-truth embeddings, so that training sees what decoding feeds
    p_self_cond: float = 0.0
    # share of the loss weight that tail targets get (the rest goes to prefix targets); None =
    # every target weighted as ``weighting`` says (then tail targets are ~K / T of the signal)
    tail_share: float | None = None


@dataclass
class OptimConfig:
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 50
    steps: int = 600
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    name: str = "run"
    kind: str = "ar"  # ar | tm
    seed: int = 0
    init_from: str | None = None  # model folder, or smollm2-135m
    data: DataConfig = field(default_factory=DataConfig)
    backbone: dict = field(default_factory=lambda: {"kind": "gpt", "n_layer": 4, "n_head": 4,
                                                    "n_embd": 256, "block_size": 128})
    tm: dict = field(default_factory=dict)  # TMConfig fields (readout, film, radius, ...)
    # LoRA adapters (peft) over a frozen pretrained backbone: {kind: lora, r, lora_alpha,
    # target_modules, seed}; with it, the result is saved as a small delta over its base
    adapter: dict | None = None
    autocast: str | None = None  # bfloat16: autocast on the training device (CPU or CUDA)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval_every: int = 100
    eval_blocks: int = 64  # validation blocks during training
    final_eval_blocks: int | None = None  # validation blocks at the end (None = all)
    ckpt_every: int = 100
    log_every: int = 10


def _build(cls, d: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    bad = set(d) - set(known)
    if bad:
        raise ValueError(f"unknown field(s) {sorted(bad)} in {where}; accepted: {sorted(known)}")
    kw = {}
    for k, v in d.items():
        sub = {DataConfig: "data", ObjectiveConfig: "objective", OptimConfig: "optim"}
        typ = next((c for c, n in sub.items() if n == k and cls is TrainConfig), None)
        kw[k] = _build(typ, v or {}, f"{where}.{k}") if typ else v
    return cls(**kw)


def config_from_dict(d: dict) -> TrainConfig:
    cfg = _build(TrainConfig, d, "config")
    if cfg.kind not in ("ar", "tm"):
        raise ValueError(f"kind must be 'ar' or 'tm', got {cfg.kind!r}")
    neg = cfg.objective.negatives
    if neg != "all" and not (isinstance(neg, int) and neg > 0):
        raise ValueError(f"objective.negatives must be 'all' or a positive integer, got {neg!r}")
    if cfg.autocast not in (None, "bfloat16", "float16"):
        raise ValueError(f"autocast must be bfloat16, float16 or null, got {cfg.autocast!r}")
    if cfg.adapter is not None:
        check_adapter(cfg.adapter)
        if cfg.init_from not in BASES:
            raise ValueError(f"an adapter needs init_from one of {', '.join(BASES)} (the base "
                             f"the delta applies to), got {cfg.init_from!r}")
    if cfg.objective.weighting not in ("uniform", "one_minus_alpha"):
        raise ValueError("objective.weighting must be uniform or one_minus_alpha, "
                         f"got {cfg.objective.weighting!r}")
    o = cfg.objective
    if not (isinstance(o.p_self_cond, (int, float)) and 0 <= o.p_self_cond <= 1):
        raise ValueError(f"objective.p_self_cond must be a number in [0, 1], got {o.p_self_cond!r}")
    if o.tail_share is not None and not (isinstance(o.tail_share, (int, float))
                                         and 0 < o.tail_share <= 1):
        raise ValueError(f"objective.tail_share must be null or a number in (0, 1], "
                         f"got {o.tail_share!r}")
    return cfg


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """A config by name (tmbench/configs/<name>.yaml) or path, with ``a.b=value`` overrides."""
    import yaml

    p = Path(name_or_path)
    if not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"unknown training config {name_or_path!r}; known: {', '.join(known)} "
                         "(or a path to a .yaml file)")
    d = yaml.safe_load(p.read_text()) or {}
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"override must look like section.key=value, got {o!r}")
        key, val = o.split("=", 1)
        node = d
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(val)
    return config_from_dict(d)


def jsonable(cfg: TrainConfig) -> dict:
    """The config as plain JSON (tuples as lists): what config.json and checkpoints hold."""
    return json.loads(json.dumps(asdict(cfg), default=list))
