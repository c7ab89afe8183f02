"""Building a model over a source model the way training does (``init_from``: a model folder
written by ``tmbench train``, or SmolLM2-135M), with the initialisation DESIGN 3.3 found to work
when TM starts from an AR model; and the adapter settings a delta over a base may carry.

What loading a shipped delta needs (``tmbench.models.delta`` rebuilds the untrained model over
its base, then applies the delta), so loading a model never needs the trainer.
"""

from __future__ import annotations

import torch

# the models an adapter delta (tmbench.models.delta) can be trained over and applied to
BASES = ("smollm2-135m",)
ADAPTER_FIELDS = {"kind": str, "r": int, "lora_alpha": (int, float), "lora_dropout": (int, float),
                  "target_modules": list, "seed": int}


def check_adapter(spec: dict) -> dict:
    """Validate an adapter spec ({kind: lora, r, lora_alpha, target_modules, ...})."""
    bad = sorted(set(spec) - set(ADAPTER_FIELDS))
    if bad:
        raise ValueError(f"unknown adapter field(s) {bad}; accepted: {sorted(ADAPTER_FIELDS)}")
    if spec.get("kind", "lora") != "lora":
        raise ValueError(f"adapter kind must be 'lora', got {spec.get('kind')!r}")
    for k, typ in ADAPTER_FIELDS.items():
        if k in spec and not isinstance(spec[k], typ):
            raise ValueError(f"adapter field {k!r} has the wrong type: {spec[k]!r}")
    if int(spec.get("r", 16)) < 1:
        raise ValueError(f"adapter r must be >= 1, got {spec.get('r')!r}")
    return spec


def _source(init_from: str):
    """(backbone, input embeddings (V, C), tokenizer, source model) of an ``init_from``."""
    if init_from == "smollm2-135m":
        from tmbench.backbones.hf_adapter import HFBackbone
        from tmbench.models.hf import load_smollm2

        hf = load_smollm2()
        bb = HFBackbone(hf.model)  # dequantised to float32 by load_smollm2
        return bb, bb.input_embeddings().detach().clone(), hf.tokenizer, None
    from tmbench.models.shipped import load_model_dir

    src = load_model_dir(init_from)
    E = src.wte if src.kind == "ar" else src.emb
    return src.backbone, E.detach().clone(), src.tokenizer, src


def build_from(kind: str, init_from: str, tm: dict | None, name: str, seed: int = 0):
    """The untrained ``kind`` model (and its tokenizer) initialised from ``init_from``, in
    train mode; its new weights drawn from ``seed`` only."""
    from tmbench.models.shipped import build_model

    backbone, E, tok, src = _source(init_from)
    if src is not None and src.kind == "tm" and kind == "tm":
        src.name = name
        return src.train(), tok
    if src is not None and src.kind == "tm":
        raise ValueError("init_from a TM model works only for kind 'tm'")
    tm = dict(tm or {})
    tied = tm.get("geometry") == "tied"
    if tied and kind == "tm" and tm.get("radius") is None:
        tm["radius"] = round(float(E.norm(dim=-1).mean()), 4)  # embryo noise scale
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(kind, backbone, E.shape[0], tm, tok, name)
    with torch.no_grad():
        if kind == "ar":
            model.wte.copy_(E)
        elif tied:  # the AR parent's own embeddings, as they are (DESIGN 3.3, third round)
            model.emb.copy_(E)
        else:  # DESIGN 3.3 "init that worked"
            model.emb.copy_(E)
            model.renorm_()
            model.input_scale.fill_(float(E.norm(dim=-1).mean()) / model.radius)
    return model.train(), tok
