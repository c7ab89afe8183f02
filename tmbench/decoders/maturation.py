"""The ``maturation`` decoder: Token Maturation decoding (DESIGN 3.4).

Each new token starts as an embryo vector at the back of a liquid tail of K slots. Every step
runs one forward over the tail (the committed prefix sits in the KV cache), moves every slot
toward its prediction, z <- z + eta(alpha) * (z_hat - z), and, after K - 1 warm-up steps,
commits the front slot to its nearest embedding, appends that token to the prefix and a new
embryo to the tail. Maturity grows toward the front: alpha_j = alpha_max * (K - j) / K.

Guidance (scale s != 1) adds a pass with the tail-only mask: z_hat = z_u + s * (z_c - z_u).
Under ``readout: next`` the front slot's prediction is read at the last committed position,
which the tail-only mask does not touch, so guidance never changes the front slot's
prediction there; it acts through the other slots only.

Context: when a row's tail would run past the model's learned positions, its committed text
is re-encoded from a later start (a multiple of a quarter of the context), chosen from the
row's own length so that batching does not change a row's result.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from tmbench.decoders._loop import check
from tmbench.models.base import check_finite
from tmbench.types import DecodeOutput, model_kind

ETA = {
    "alpha": lambda a: a,  # the paper's choice: step size = maturity
    "sqrt": lambda a: a.sqrt(),  # larger early steps
    "one": lambda a: torch.ones_like(a),  # jump to the prediction (no averaging)
}
EMBRYOS = ("gaussian", "zeros")


def _check_params(model, prompts, max_new_tokens, tail_len, alpha_max, guidance, eta_schedule,
                  embryo, sigma_embryo, sigma_dyn, sample_commit, trace, trace_scales):
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token lists")
    check("max_new_tokens", max_new_tokens, 1, integer=True)
    ctx = model.context_length()
    check("tail_len", tail_len, 1, ctx - 1, integer=True)
    check("alpha_max", alpha_max, 0, 1, lo_open=True)
    check("guidance", guidance, 0)
    check("sigma_embryo", sigma_embryo, 0)
    check("sigma_dyn", sigma_dyn, 0)
    if eta_schedule not in ETA:
        raise ValueError(f"eta_schedule must be one of {', '.join(ETA)}, got {eta_schedule!r}")
    if embryo not in EMBRYOS:
        raise ValueError(f"embryo must be one of {', '.join(EMBRYOS)}, got {embryo!r}")
    for name, v in (("sample_commit", sample_commit), ("trace", trace)):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be true or false, got {v!r}")
    if (isinstance(trace_scales, (str, bytes)) or not isinstance(trace_scales, Sequence)
            or not trace_scales):
        raise ValueError(f"trace_scales must be a non-empty list of numbers > 0, got {trace_scales!r}")
    for s in trace_scales:
        check("trace_scales[i]", s, 0, lo_open=True)


class _Noise:
    """Gaussian draws of norm about ``sigma * R`` per vector, from one generator or one per row
    (then row b's draws never depend on the batch)."""

    def __init__(self, generator, B: int, d: int, radius: float, device):
        if isinstance(generator, (list, tuple)):
            if len(generator) != B:
                raise ValueError(f"generator must be one torch.Generator or one per prompt ({B}), "
                                 f"got a sequence of {len(generator)}")
        self.gen, self.B, self.d, self.R, self.device = generator, B, d, radius, device

    def __call__(self, n: int, sigma: float) -> torch.Tensor:  # (B, n, d)
        if isinstance(self.gen, (list, tuple)):
            x = torch.stack([torch.randn(n, self.d, generator=g) for g in self.gen])
        else:
            x = torch.randn(self.B, n, self.d, generator=self.gen)
        return (x * (sigma * self.R / math.sqrt(self.d))).to(self.device)

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:  # (B, V) -> (B,)
        probs = probs.cpu()
        if isinstance(self.gen, (list, tuple)):
            return torch.cat([torch.multinomial(probs[b:b + 1], 1, generator=g)[:, 0]
                              for b, g in enumerate(self.gen)]).to(self.device)
        return torch.multinomial(probs, 1, generator=self.gen)[:, 0].to(self.device)


class _Window:
    """The committed tokens of every row and the KV cache over all but the last of them."""

    def __init__(self, model, rows: list[list[int]], K: int):
        self.model, self.K = model, K
        self.ctx = model.context_length()
        self.stride = max(1, self.ctx // 4)
        self.rows = [list(r) for r in rows]
        self.starts = [self._start(len(r)) for r in self.rows]
        self.rebuild()

    def _start(self, n: int) -> int:
        # the pending token sits at position n - 1 - start and the forwarded tail slots after
        # it; under readout `next` the newest slot is not forwarded (it predicts nothing)
        over = n + self.K - self.model.readout_shift - self.ctx
        return 0 if over <= 0 else -(-over // self.stride) * self.stride

    def rebuild(self) -> None:
        m, dev = self.model, self.model.device
        prefix = [r[s:-1] for r, s in zip(self.rows, self.starts)]
        B, S = len(prefix), max(len(p) for p in prefix)
        ids = torch.zeros(B, S, dtype=torch.long)
        real = torch.zeros(B, S, dtype=torch.long)
        for b, p in enumerate(prefix):
            if p:
                ids[b, S - len(p):] = torch.tensor(p)
                real[b, S - len(p):] = 1
        ids, self.key_real = ids.to(dev), real.to(dev)
        pos = (self.key_real.cumsum(-1) - 1).clamp(min=0)
        self.cache = m.prefill(ids, self.key_real, pos) if S else m.new_cache()
        self.pending = torch.tensor([r[-1] for r in self.rows], device=dev)
        self.positions = torch.tensor([len(p) for p in prefix], device=dev)

    def commit(self, tokens: torch.Tensor) -> None:
        """Keep the pending token's keys/values (forwarded last step) and make ``tokens`` pending."""
        self.key_real = torch.cat([self.key_real, self.key_real.new_ones(len(tokens), 1)], 1)
        for r, t in zip(self.rows, tokens.tolist()):
            r.append(t)
        self.pending, self.positions = tokens, self.positions + 1
        starts = [self._start(len(r)) for r in self.rows]
        if starts != self.starts:
            self.starts = starts
            self.rebuild()


@model_kind("tm")
@torch.no_grad()
def maturation(model, prompts: list[list[int]], *, max_new_tokens: int, generator,
               tail_len: int = 16, alpha_max: float = 0.75, guidance: float = 1.0,
               eta_schedule: str = "alpha", embryo: str = "gaussian", sigma_embryo: float = 0.1,
               sigma_dyn: float = 0.0, sample_commit: bool = False, trace: bool = False,
               trace_scales: Sequence[float] = (1.0, 20.0)) -> DecodeOutput:
    """Token Maturation decoding of a batch of prompts (left-padded internally).

    tail_len K: slots in the tail (1 .. context - 1; K > the model's k_max reuses the k_max
    FiLM embedding, which training never paired with a longer tail); alpha_max: maturity of the front slot (0, 1];
    guidance: classifier-free guidance scale (1 = off); eta_schedule: step size from maturity
    (alpha | sqrt | one); embryo: initial tail vectors (gaussian of norm sigma_embryo * R, or
    zeros); sigma_dyn: Gaussian noise of norm ~sigma_dyn * R added to every update;
    sample_commit: draw the committed token from the induced distribution (model logit scale)
    instead of the nearest embedding; trace: record the dynamics (see below).
    ``generator``: one torch.Generator, or one per prompt (then a row never depends on the
    batch). Defaults are deterministic given the generator (the embryos are its only draw).

    Returns ``DecodeOutput(tokens, info)``; tokens stop at (and include) EOS. info
    ``agree_front_argmax``: per sample, the share of commits equal to the argmax of the front
    slot's final prediction z_hat. With ``trace``, info ``trace``: per sample, a
    :class:`tmbench.types.Trace` (the format is described there).
    """
    _check_params(model, prompts, max_new_tokens, tail_len, alpha_max, guidance, eta_schedule,
                  embryo, sigma_embryo, sigma_dyn, sample_commit, trace, trace_scales)
    B, K, d, R = len(prompts), tail_len, model.d, model.radius
    noise = _Noise(generator, B, d, R, model.device)
    alpha = model.alpha_profile(K, alpha_max)  # (K,) front .. newest
    eta = ETA[eta_schedule](alpha)[None, :, None]  # (1, K, 1)
    scales = [float(s) for s in trace_scales]

    def embryos(n: int) -> torch.Tensor:  # (B, n, d)
        if embryo == "zeros":
            return torch.zeros(B, n, d, device=model.device)
        return noise(n, sigma_embryo)

    win = _Window(model, prompts, K)
    tail = embryos(K).to(model.dtype)  # (B, K, d)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=model.device)
    agree = torch.zeros(B)
    hist = [[] for _ in range(K)] if trace else None  # per slot: list of per-update records
    traces = [{"entropy": {f"{s:g}": [] for s in scales}, "displacement": [], "cos_final": [],
               "top": []} for _ in range(B)] if trace else None
    crop = model.crop_cache

    for step in range(K - 1 + max_new_tokens):
        S = win.key_real.shape[1]
        z_hat, cache = model.tail_step(win.pending, tail, alpha, win.key_real, win.positions,
                                       win.cache)
        if guidance != 1.0:
            crop(cache, S)
            z_u, cache = model.tail_step(win.pending, tail, alpha, win.key_real, win.positions,
                                         cache, tail_only=True)
            z_hat = z_u + guidance * (z_hat - z_u)  # (B, K, d)
        check_finite(z_hat.flatten(1), model.name, f"in the tail predictions at maturation step {step}")
        new = tail + eta * (z_hat - tail)  # (B, K, d)
        if sigma_dyn > 0:
            new = new + noise(K, sigma_dyn).to(new.dtype)
        if trace:
            _record(model, hist, tail, new, scales, R)
        tail = new
        if step < K - 1:  # warm-up: no commitment yet
            win.cache = crop(cache, S)
            continue
        front = tail[:, 0]  # (B, d)
        if sample_commit:
            probs = torch.softmax(model.induced_logits(front), -1)
            tok = noise.multinomial(probs)
        else:
            tok = model.nearest(front)
        live = (~done).cpu()
        agree += (live & (tok == model.nearest(z_hat[:, 0])).cpu()).float()
        for b in torch.nonzero(live)[:, 0].tolist():
            out[b].append(int(tok[b]))
        if trace:
            _finish(model, hist.pop(0), tok, traces, live, K)
            hist.append([])
        if model.eos_token_id is not None:
            done |= tok == model.eos_token_id
        if bool(done.all()) or step == K - 2 + max_new_tokens:
            break
        win.cache = crop(cache, S + 1)
        win.commit(tok)
        tail = torch.cat([tail[:, 1:], embryos(1).to(tail.dtype)], 1)

    info = {"agree_front_argmax": [float(agree[b]) / max(1, len(out[b])) for b in range(B)]}
    if trace:
        info["trace"] = traces
    return DecodeOutput(out, info)


def _record(model, hist, old, new, scales, R) -> None:
    """Append this update's entropies, displacement and state to every slot's history."""
    disp = (new - old).float().norm(dim=-1) / R  # (B, K)
    ent = {}
    for s in scales:
        logp = torch.log_softmax(model.induced_logits(new, s), -1)  # (B, K, V)
        ent[f"{s:g}"] = -(logp.exp() * logp).sum(-1)  # (B, K)
    for j, h in enumerate(hist):
        h.append({"z": new[:, j].float(), "disp": disp[:, j],
                  "ent": {k: v[:, j] for k, v in ent.items()}})


def _finish(model, recs, tok, traces, live, K) -> None:
    """Turn the committed front slot's history into per-sample trace entries."""
    recs = recs[-K:]
    e = model.emb[tok].float()  # (B, d)
    cos = torch.stack([torch.cosine_similarity(r["z"], e, dim=-1) for r in recs], 1)  # (B, K)
    disp = torch.stack([r["disp"] for r in recs], 1)
    top = model.induced_logits(recs[-1]["z"]).topk(5, -1).indices  # (B, 5)
    for b in torch.nonzero(live)[:, 0].tolist():
        t = traces[b]
        for key in t["entropy"]:
            t["entropy"][key].append([float(r["ent"][key][b]) for r in recs])
        t["displacement"].append(disp[b].tolist())
        t["cos_final"].append(cos[b].tolist())
        t["top"].append(top[b].tolist())
