"""The model to train and its tokenizer: from scratch (the config's backbone) or from an
``init_from`` (a model folder, or SmolLM2-135M), with the initialisation DESIGN 3.3 found to
work when TM starts from an AR model."""

from __future__ import annotations

import torch

from tmbench.models.build import build_from
from tmbench.training.config import TrainConfig


def build_for_training(cfg: TrainConfig, tokenizer=None):
    """The model to train (and its tokenizer), from scratch or from ``init_from``."""
    from tmbench.data.tokenizers import load_tokenizer
    from tmbench.models.shipped import build_backbone, build_model

    if cfg.init_from:
        return build_from(cfg.kind, cfg.init_from, cfg.tm, cfg.name, cfg.seed)
    tok = tokenizer or load_tokenizer(cfg.data.tokenizer)
    with torch.random.fork_rng(devices=[]):  # initial weights from the config seed only
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.kind, build_backbone(cfg.backbone), tok.vocab_size, cfg.tm, tok,
                            cfg.name)
    return model.train(), tok
