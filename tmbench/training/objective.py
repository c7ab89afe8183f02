"""The training loss of either kind: cross-entropy for AR, :func:`tmbench.tm.objective.tm_loss`
for TM, and both as one module that DistributedDataParallel can wrap."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tmbench.tm.objective import tm_loss
from tmbench.training.config import TrainConfig


def ar_loss(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = model.logits(x[:, :-1])  # (B, T-1, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
    return {"loss": loss}


class Objective(torch.nn.Module):
    """The training loss as a module, so DistributedDataParallel can hook its forward. Every
    rank draws the whole global batch from the step's generator and keeps its own rows."""

    def __init__(self, model, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x: torch.Tensor, gen: torch.Generator,
                rows: slice) -> dict[str, torch.Tensor]:
        if self.cfg.kind == "ar":
            return ar_loss(self.model, x[rows])
        return tm_loss(self.model, x, self.cfg.objective, gen, rows=rows)
