"""The maturation trace (DESIGN 3.4, item 7): what the decoder records with ``trace=True``.

The format is the contract :class:`tmbench.types.Trace` (the ``dynamics`` metric reads it):
per sample and committed token, one entry per update of the token's last K updates in the
tail. The decoder calls :meth:`Recorder.update` after every tail update and
:meth:`Recorder.commit` when the front slot is committed.
"""

from __future__ import annotations

import torch

from tmbench.tm.health import agree_share, copy_share, distinct_share
from tmbench.types import Trace


class Recorder:
    """Per tail slot, the history of its updates; per sample, the finished :class:`Trace`."""

    def __init__(self, model, B: int, K: int, scales: list[float]):
        self.model, self.K, self.scales = model, K, scales
        self.hist: list[list[dict]] = [[] for _ in range(K)]  # per slot: per-update records
        self.traces: list[Trace] = [
            {"entropy": {f"{s:g}": [] for s in scales}, "displacement": [], "cos_final": [],
             "top": []} for _ in range(B)]

    def update(self, old: torch.Tensor, new: torch.Tensor) -> None:
        """Append this update's entropies, displacement and state to every slot's history.
        old, new (B, K, d): the tail before and after the update."""
        disp = (new - old).float().norm(dim=-1) / self.model.radius  # (B, K)
        ent = {}
        unit = self.model.induced_logits(new, 1.0)  # (B, K, V) one product for every scale
        for s in self.scales:
            logp = torch.log_softmax(s * unit, -1)  # (B, K, V)
            ent[f"{s:g}"] = -(logp.exp() * logp).sum(-1)  # (B, K)
        for j, h in enumerate(self.hist):
            h.append({"z": new[:, j].float(), "disp": disp[:, j],
                      "ent": {k: v[:, j] for k, v in ent.items()}})

    def commit(self, tok: torch.Tensor, live: torch.Tensor) -> None:
        """The front slot became ``tok`` (B,): turn its history into trace entries of the live
        rows (B,) bool, and open an empty history for the new embryo at the back."""
        recs = self.hist.pop(0)[-self.K:]
        e = self.model.emb[tok].float()  # (B, d)
        cos = torch.stack([torch.cosine_similarity(r["z"], e, dim=-1) for r in recs], 1)  # (B, K)
        disp = torch.stack([r["disp"] for r in recs], 1)
        top = self.model.induced_logits(recs[-1]["z"]).topk(5, -1).indices  # (B, 5)
        for b in torch.nonzero(live)[:, 0].tolist():
            t = self.traces[b]
            for key in t["entropy"]:
                t["entropy"][key].append([float(r["ent"][key][b]) for r in recs])
            t["displacement"].append(disp[b].tolist())
            t["cos_final"].append(cos[b].tolist())
            t["top"].append(top[b].tolist())
        self.hist.append([])


def training_norm(model, alpha: torch.Tensor, sigma_embryo: float) -> float:
    """The reference of ``tail_norm_ratio``: the mean norm of the tail inputs the model's
    training builds at maturities ``alpha`` where the model says so (``training_tail_norm``,
    outside the protocol), else the mean norm of its embedding rows."""
    own = getattr(model, "training_tail_norm", None)
    if own is not None:
        return float(own(alpha, sigma_embryo).mean())
    return float(model.emb.detach().float().norm(dim=-1).mean())


class TailHealth:
    """Per sample, the tail's health at every committing step (``Sample.info["tail"]``; the
    format is described in :class:`tmbench.types.TailHealth`)."""

    def __init__(self, model, B: int):
        self.model = model
        self.rows = [{"fed_norm": [], "train_norm": None, "copy": [], "distinct": [],
                      "readable": []} for _ in range(B)]

    def health(self, inputs: torch.Tensor, states: torch.Tensor, z_hat: torch.Tensor,
               text_tok: torch.Tensor, alpha: torch.Tensor, sigma_embryo: float,
               live: torch.Tensor) -> None:
        """One committing step's tail health (``tmbench.tm.health``), per live row (B,) bool.
        inputs (B, K, d): what the slots fed the network this step; states (B, K, d): the tail
        after the update; z_hat (B, K, d): the predictions; text_tok (B, K): the predictions'
        tokens with the tail's nearest tokens fed as exact embeddings; alpha (K,) maturity."""
        m, shift = self.model, self.model.readout_shift
        n_fed = inputs.shape[1] - shift  # under ``next`` the newest slot is not forwarded
        norm = inputs[:, :n_fed].float().norm(dim=-1).mean(-1) if n_fed else None  # (B,)
        ref = training_norm(m, alpha[:n_fed], sigma_embryo) if n_fed else None
        tok = m.nearest(states)  # (B, K)
        # under ``next`` the front slot's prediction is read from committed history only
        readable = agree_share(m.nearest(z_hat), text_tok, first=shift)
        copy, distinct = copy_share(tok), distinct_share(tok)
        for b in torch.nonzero(live.cpu())[:, 0].tolist():
            t = self.rows[b]
            t["train_norm"] = ref
            if norm is not None:
                t["fed_norm"].append(float(norm[b]))
            t["copy"].append(float(copy[b]))
            t["distinct"].append(float(distinct[b]))
            t["readable"].append(float(readable[b]))
