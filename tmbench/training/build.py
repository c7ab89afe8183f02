"""The model to train and its tokenizer: from scratch (the config's backbone) or from an
``init_from`` (a model folder, or SmolLM2-135M), with the initialisation DESIGN 3.3 found to
work when TM starts from an AR model."""

from __future__ import annotations

import torch

from tmbench.training.config import TrainConfig


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


def build_for_training(cfg: TrainConfig, tokenizer=None):
    """The model to train (and its tokenizer), from scratch or from ``init_from``."""
    from tmbench.data.tokenizers import load_tokenizer
    from tmbench.models.shipped import build_backbone, build_model

    if cfg.init_from:
        backbone, E, tok, src = _source(cfg.init_from)
        if src is not None and src.kind == "tm" and cfg.kind == "tm":
            src.name = cfg.name
            return src.train(), tok
        if src is not None and src.kind == "tm":
            raise ValueError("init_from a TM model works only for kind 'tm'")
        tm = dict(cfg.tm)
        tied = tm.get("geometry") == "tied"
        if tied and cfg.kind == "tm" and tm.get("radius") is None:
            tm["radius"] = round(float(E.norm(dim=-1).mean()), 4)  # embryo noise scale
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.kind, backbone, E.shape[0], tm, tok, cfg.name)
        with torch.no_grad():
            if cfg.kind == "ar":
                model.wte.copy_(E)
            elif tied:  # the AR parent's own embeddings, as they are (DESIGN 3.3, third round)
                model.emb.copy_(E)
            else:  # DESIGN 3.3 "init that worked"
                model.emb.copy_(E)
                model.renorm_()
                model.input_scale.fill_(float(E.norm(dim=-1).mean()) / model.radius)
        return model.train(), tok
    tok = tokenizer or load_tokenizer(cfg.data.tokenizer)
    with torch.random.fork_rng(devices=[]):  # initial weights from the config seed only
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.kind, build_backbone(cfg.backbone), tok.vocab_size, cfg.tm, tok,
                            cfg.name)
    return model.train(), tok
