"""The optimizer (AdamW) and its learning-rate schedule (linear warmup, then cosine)."""

from __future__ import annotations

import math

import torch

from tmbench.training.config import OptimConfig


def configure_optimizer(model, opt: OptimConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices except the TM embedding (it lives on a sphere)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and name != "emb" else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opt.lr, betas=tuple(opt.betas))


def lr_at(step: int, opt: OptimConfig) -> float:
    """Linear warmup to lr, then cosine to min_lr at ``opt.steps``."""
    if step < opt.warmup:
        return opt.lr * (step + 1) / opt.warmup
    t = min(1.0, (step - opt.warmup) / max(1, opt.steps - opt.warmup))
    return opt.min_lr + 0.5 * (opt.lr - opt.min_lr) * (1 + math.cos(math.pi * t))
