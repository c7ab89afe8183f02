"""The Token Maturation training objective (DESIGN 3.3).

A block's last K positions form a corrupted tail, z = alpha * e_x + (1 - alpha) * n, with the
maturity profile the decoder uses; the loss is w_mse * MSE / R^2 + lambda * InfoNCE on the
predictions (all positions under ``readout: next``, tail slots under ``self``).

Two options make training see what decoding feeds (DESIGN 3.3, fourth look): with probability
``p_self_cond`` a batch's tail is rebuilt from the model's own stop-gradient predictions of a
first pass, z = alpha * sg(z_hat) + (1 - alpha) * n (self-conditioning, as in analog-bits
diffusion, Chen et al. 2023); and ``tail_share`` gives tail targets a stated share of the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tmbench.tm.model import MaturationModel, tail_mask
from tmbench.training.config import ObjectiveConfig


def tm_loss(model: MaturationModel, x: torch.Tensor, obj: ObjectiveConfig, gen: torch.Generator,
            K: int | None = None, alpha_max: float | None = None, p_uncond: float | None = None,
            rows: slice | None = None, self_cond: bool | None = None):
    """DESIGN 3.3 on a block x (B, T): the last K positions form a corrupted tail.
    Returns the loss and its parts; ``tail_*`` are over tail slots only. ``rows``: draw every
    random quantity for the whole batch, then keep these rows (a data-parallel rank's share),
    so that any number of ranks sees exactly the draws of a single process. ``self_cond``
    forces self-conditioning on or off (validation) instead of drawing it."""
    B, T = x.shape
    dev, R, d = x.device, model.radius, model.d
    K = K or int(torch.randint(1, min(obj.k_max, T - 1) + 1, (1,), generator=gen))
    lo, hi = obj.alpha_max_range
    a_max = (alpha_max if alpha_max is not None
             else lo + (hi - lo) * float(torch.rand(1, generator=gen)))
    p_u = obj.p_uncond if p_uncond is None else p_uncond
    noise = torch.randn(B, K, d, generator=gen) * (obj.sigma_embryo * R / math.sqrt(d))
    uncond = torch.rand(B, generator=gen) < p_u  # (B,) guidance dropout
    # drawn after every older draw, and only when enabled, so older configs draw as before
    if self_cond is None:
        self_cond = obj.p_self_cond > 0 and float(torch.rand(1, generator=gen)) < obj.p_self_cond
    if rows is not None:
        x, noise, uncond = x[rows], noise[rows], uncond[rows]
        B = x.shape[0]

    e = model.emb[x]  # (B, T, d)
    alpha = torch.ones(B, T, device=dev)
    alpha[:, T - K:] = model.alpha_profile(K, a_max)  # front .. newest
    tail = torch.zeros(B, T, dtype=torch.bool, device=dev)
    tail[:, T - K:] = True
    at = alpha[:, T - K:, None]
    z = torch.cat([e[:, : T - K], at * e[:, T - K:] + (1 - at) * noise.to(dev, e.dtype)], 1)
    mask = None
    if bool(uncond.any()):
        mask = tail_mask(torch.ones(B, T, device=dev), T, tail_start=T - K,
                         tail_only=uncond.to(dev))
    kk = torch.full((B,), K, dtype=torch.long, device=dev)
    pos = torch.arange(T, device=dev)[None].expand(B, T)
    out, _ = model(z, alpha, tail, kk, pos, mask)  # (B, T, d)
    if self_cond:  # rebuild the tail from this pass's own predictions, then predict again
        shift = model.readout_shift
        guess = out[:, T - K - shift: T - shift].detach()  # (B, K, d) z_hat of every tail slot
        z = torch.cat([e[:, : T - K], at * guess.to(e.dtype)
                       + (1 - at) * noise.to(dev, e.dtype)], 1)
        out, _ = model(z, alpha, tail, kk, pos, mask)

    if model.config.readout == "next":  # slot t read at t - 1; every position
        pred, tgt, a_t, is_tail = out[:, :-1], x[:, 1:], alpha[:, 1:], tail[:, 1:]
    else:  # self: slot t read at t; tail slots only
        pred, tgt, a_t, is_tail = out[:, T - K:], x[:, T - K:], alpha[:, T - K:], tail[:, T - K:]
    pred = pred.float()
    target = model.emb[tgt].float()  # (B, P, d)
    if obj.stop_grad:
        target = target.detach()
    mse = ((pred - target) ** 2).sum(-1) / R**2  # (B, P)
    if obj.negatives == "all":  # InfoNCE over the vocabulary = CE of the induced distribution
        logits = model.induced_logits(pred)  # (B, P, V)
        nce = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), reduction="none").view_as(mse)
    else:  # N uniform negatives shared by the batch, the positive masked out
        neg = torch.randint(0, model.vocab_size, (int(obj.negatives),), generator=gen).to(dev)
        tied = model.config.geometry == "tied"  # inner products instead of cosines
        pn = pred if tied else F.normalize(pred, dim=-1)
        en = model.emb.float() if tied else F.normalize(model.emb.float(), dim=-1)
        pos_l = model.logit_scale * (pn * en[tgt]).sum(-1, keepdim=True)  # (B, P, 1)
        neg_l = model.logit_scale * pn @ en[neg].T  # (B, P, N)
        neg_l = neg_l.masked_fill(neg[None, None] == tgt[..., None], float("-inf"))
        nce = -torch.log_softmax(torch.cat([pos_l, neg_l], -1), -1)[..., 0]
    w = torch.ones_like(mse) if obj.weighting == "uniform" else (1 - a_t)
    tw = is_tail.float()
    if obj.tail_share is not None and bool((tw < 1).any()):  # tail targets get tail_share
        wt, wp = w * tw, w * (1 - tw)
        w = (obj.tail_share * wt / wt.sum().clamp(min=1e-8)
             + (1 - obj.tail_share) * wp / wp.sum().clamp(min=1e-8))
    per = obj.w_mse * mse + obj.infonce_weight * nce
    loss = (w * per).sum() / w.sum().clamp(min=1e-8)
    return {"loss": loss, "mse": mse.mean().detach(), "nce": nce.mean().detach(),
            "tail_nce": ((nce * tw).sum() / tw.sum()).detach(),
            "tail_mse": ((mse * tw).sum() / tw.sum()).detach(), "K": torch.tensor(K),
            "self_cond": torch.tensor(float(self_cond))}
