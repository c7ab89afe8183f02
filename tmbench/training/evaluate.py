"""Validation during and after training: AR cross-entropy, or TM's induced distribution on
clean history (DESIGN 3.5) plus the TM objective at fixed K and alpha_max."""

from __future__ import annotations

import math

import torch

from tmbench.tm.objective import tm_loss
from tmbench.training.config import TrainConfig
from tmbench.training.data import TokenData, step_generator
from tmbench.training.objective import ar_loss


@torch.no_grad()
def evaluate(model, data: TokenData, cfg: TrainConfig, n_blocks: int | None) -> dict[str, float]:
    """AR: validation CE and perplexity. TM: the induced distribution's CE and perplexity on
    clean history (DESIGN 3.5), plus the TM objective at K = k_max and eval_alpha_max."""
    was = model.training
    model.eval()
    blocks = data.valid_blocks(n_blocks).to(model.device)
    bs = cfg.optim.batch_size
    tot, n = 0.0, 0
    parts: dict[str, float] = {}
    for i in range(0, len(blocks), bs):
        x = blocks[i:i + bs]
        if model.kind == "ar":
            tot += float(ar_loss(model, x)["loss"]) * len(x)
        else:
            if model.config.readout == "next":
                lp = model.clean_logprobs(x)
            else:
                lp = torch.stack(model.token_logprobs(x.tolist()))
            tot += -float(lp.mean()) * len(x)
            o = cfg.objective
            kw = dict(K=min(o.k_max, x.shape[1] - 1), alpha_max=o.eval_alpha_max, p_uncond=0.0)
            r = tm_loss(model, x, o, step_generator(cfg.seed, i, 9), self_cond=False, **kw)
            for k in ("loss", "tail_nce", "tail_mse"):
                parts[f"val_tm_{k}"] = parts.get(f"val_tm_{k}", 0.0) + float(r[k]) * len(x)
            if o.p_self_cond > 0:  # the same tails, rebuilt from the model's own predictions
                r = tm_loss(model, x, o, step_generator(cfg.seed, i, 9), self_cond=True, **kw)
                for k in ("tail_nce", "tail_mse"):
                    parts[f"val_tm_sc_{k}"] = parts.get(f"val_tm_sc_{k}", 0.0) + float(r[k]) * len(x)
        n += len(x)
    model.train(was)
    key = "val_loss" if model.kind == "ar" else "val_induced_ce"
    out = {key: tot / n, "val_ppl": math.exp(tot / n), "val_blocks": n}
    out.update({k: v / n for k, v in parts.items()})
    return out
