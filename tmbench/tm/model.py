"""The reference Token Maturation model (Naparstek, arXiv 2601.04854), as DESIGN section 3 fixes it.

A causal backbone over input vectors, plus
- an embedding matrix E (V, d) whose rows all have norm R (default sqrt(d));
- maturity conditioning: h += MLP(sinusoidal(alpha)) at every position (prefix alpha = 1);
- tail-length conditioning: FiLM h = (1 + gamma_K) * h + beta_K from a learned embedding of K,
  on tail positions (``film: tail``, default), every position (``all``) or at the input of
  every block on tail positions (``blocks``, native GPT only);
- a vector head (Linear(C -> d) after the backbone's final norm), no softmax head;
- readout ``next`` (slot t predicted at position t - 1, the paper's Eq. 1) or ``self`` (slot t
  predicted at position t, which sees its own current vector: denoising);
- the induced distribution p(i | z) = softmax(scale * cos(z, e_i)) (DESIGN 3.5), which gives
  TM a perplexity.
Commitment is the nearest embedding: argmax_i <z, e_i> = argmax_i cos(z, e_i) (equal norms).

One deviation from the letter of DESIGN 3.3's "init that worked": the backbone first sees
AR-scale inputs through a learned scalar ``input_scale`` on every input vector (initialised to
mean AR row norm / R), not through the FiLM gamma, because FiLM acts on tail positions only by
default and the prefix must be rescaled too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

READOUTS = ("next", "self")
COMMITS = ("inner", "l2", "cosine")
FILMS = ("tail", "all", "blocks")
GEOMETRIES = ("sphere", "tied")


@dataclass
class TMConfig:
    vocab_size: int = 8192
    radius: float | None = None  # R; None = sqrt(d)
    readout: str = "next"  # next | self
    k_max: int = 16  # largest tail length the K embedding knows (longer tails reuse it)
    film: str = "tail"  # tail | all | blocks
    n_freq: int = 32  # sinusoidal features of alpha: 2 * n_freq inputs to the alpha MLP
    logit_scale: float = 20.0  # scale of the induced distribution (training InfoNCE scale)
    freeze_embeddings: bool = False
    input_scale: float = 1.0  # initial value of the learned scalar on every input vector
    # sphere: rows of E on the sphere of radius R, commit and induced p by cosine (the paper);
    # tied: a pretrained AR model's own tied embeddings, unnormalised, commit and induced p by
    # inner product, so that an untrained TM equals its AR parent at alpha_max 1 (DESIGN 3.1)
    geometry: str = "sphere"
    # commit rule, the decision in embedding space: the largest inner product <z, e_i>, the
    # nearest row by L2 distance, or the nearest by cosine (all three agree under ``sphere``)
    commit: str = "inner"
    # learn the induced distribution's logit scale (a positive scalar, starting at logit_scale).
    # Under ``tied`` the vector head's output is then divided by the constant logit_scale, so
    # the untrained TM still equals its AR parent while its predictions sit at embedding scale
    # (the MSE of DESIGN 3.3 needs that). A constant divisor rather than a head initialised at
    # identity / logit_scale: Adam's per-weight steps would move such a head logit_scale times
    # further relative to its size (measured: the CE rose from 4.3 to 6.1 in 20 warm-up steps)
    learn_logit_scale: bool = False

    def __post_init__(self):
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.film not in FILMS:
            raise ValueError(f"film must be one of {FILMS}, got {self.film!r}")
        if self.commit not in COMMITS:
            raise ValueError(f"commit must be one of {COMMITS}, got {self.commit!r}")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale!r}")
        if self.k_max < 1:
            raise ValueError(f"k_max must be an integer >= 1, got {self.k_max!r}")


def sinusoidal(alpha: torch.Tensor, n_freq: int) -> torch.Tensor:
    """(...,) in [0, 1] -> (..., 2 * n_freq); DDPM-style timestep features of 1000 * alpha."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(n_freq, device=alpha.device) / n_freq)
    ang = 1000.0 * alpha.float()[..., None] * freqs  # (..., n_freq)
    return torch.cat([ang.sin(), ang.cos()], -1)


def tail_mask(key_real: torch.Tensor, T: int, tail_start: int | None = None,
              tail_only: torch.Tensor | bool = False) -> torch.Tensor:
    """(B, T, S + T) bool attention mask for the last T of S + T positions.

    key_real (B, S + T): 1 = real token, 0 = left pad. Causal; pads are never attended to
    (a pad query sees itself so that its softmax is defined). With ``tail_only`` (bool or (B,)),
    queries at or after absolute index ``tail_start`` see only keys at or after it: the
    unconditional pass of classifier-free guidance."""
    B, L = key_real.shape
    S = L - T
    q = torch.arange(S, L, device=key_real.device)[:, None]  # (T, 1) absolute query index
    k = torch.arange(L, device=key_real.device)[None, :]  # (1, L)
    mask = (k <= q) & key_real.bool()[:, None, :]  # (B, T, L)
    mask = mask | (k == q)
    if tail_start is not None:
        hide = (q >= tail_start) & (k < tail_start)  # (T, L)
        only = torch.as_tensor(tail_only, device=key_real.device).reshape(-1, 1, 1)
        mask = mask & ~(hide & only)
    return mask


class MaturationModel(nn.Module):
    kind = "tm"

    def __init__(self, backbone: nn.Module, cfg: TMConfig, tokenizer: Any = None,
                 name: str = "tm", content_hash: str | None = None):
        super().__init__()
        self.config = cfg
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.name = name
        self.content_hash = content_hash
        C = backbone.n_embd
        self.d = C  # the embedding width equals the backbone width (inputs_embeds)
        self.vocab_size = cfg.vocab_size
        self.radius = float(cfg.radius or math.sqrt(C))
        self._logit_scale = float(cfg.logit_scale)
        self.log_scale = (nn.Parameter(torch.tensor(math.log(cfg.logit_scale)))
                          if cfg.learn_logit_scale else None)
        # the head's constant output divisor (see TMConfig.learn_logit_scale)
        self.head_divisor = (float(cfg.logit_scale)
                             if cfg.geometry == "tied" and cfg.learn_logit_scale else 1.0)
        self.eos_token_id = getattr(tokenizer, "eos_token_id", None)
        self.emb = nn.Parameter(torch.randn(cfg.vocab_size, C),
                                requires_grad=not cfg.freeze_embeddings)
        self.input_scale = nn.Parameter(torch.tensor(float(cfg.input_scale)))
        self.alpha_mlp = nn.Sequential(
            nn.Linear(2 * cfg.n_freq, C), nn.GELU(), nn.Linear(C, C))  # MLP(sinusoidal(alpha))
        self.film = nn.Embedding(cfg.k_max + 1, 2 * C)  # K -> (gamma, beta)
        self.head = nn.Linear(C, C)  # vector head after the backbone's final norm
        with torch.no_grad():
            nn.init.zeros_(self.alpha_mlp[2].weight)  # conditioning starts as a no-op
            nn.init.zeros_(self.alpha_mlp[2].bias)
            nn.init.zeros_(self.film.weight)
            self.head.weight.copy_(torch.eye(C))
            nn.init.zeros_(self.head.bias)
            self.renorm_()

    # ---- small helpers --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.emb.device

    @property
    def dtype(self) -> torch.dtype:
        return self.emb.dtype

    @property
    def tied(self) -> bool:
        return self.config.geometry == "tied"

    @property
    def logit_scale(self):
        """The induced distribution's scale: a float, or a 0-d tensor when it is learned."""
        return self._logit_scale if self.log_scale is None else self.log_scale.exp()

    @torch.no_grad()
    def renorm_(self) -> None:
        """Put every embedding row back on the sphere of radius R (after each optimizer step);
        nothing to do under ``tied`` geometry, whose rows keep their pretrained norms."""
        if self.tied:
            return
        self.emb.copy_(F.normalize(self.emb.float(), dim=-1).to(self.emb.dtype) * self.radius)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "tm", "class": type(self).__name__,
                "content_hash": self.content_hash, "readout": self.config.readout,
                "geometry": self.config.geometry, "commit": self.config.commit,
                "dtype": str(self.dtype).replace("torch.", "")}

    def unit_emb(self) -> torch.Tensor:
        """(V, d) float32 rows of E scaled to norm 1 (``sphere``) or as they are (``tied``);
        cached while E is unchanged and no gradient is wanted (decoding), recomputed otherwise."""
        prep = (lambda e: e.float()) if self.tied else (lambda e: F.normalize(e.float(), dim=-1))
        if torch.is_grad_enabled() and self.emb.requires_grad:
            return prep(self.emb)
        key = (self.emb._version, self.emb.data_ptr(), self.emb.dtype, self.emb.device)
        if getattr(self, "_unit_key", None) != key:
            self._unit = prep(self.emb.detach())
            self._unit_key = key
        return self._unit

    def induced_logits(self, z: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """(..., d) -> (..., V), the logits of the induced distribution: scale * cos(z, e_i)
        under ``sphere``; scale * <z, e_i> under ``tied`` (scale 1 = the AR parent's logits)."""
        s = self.logit_scale if scale is None else scale
        if self.tied:
            return s * (z.float() @ self.unit_emb().T)
        return s * F.normalize(z.float(), dim=-1) @ self.unit_emb().T

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (...,) long: the committed token by the config's commit rule: argmax_i
        <z, e_i> (``inner``), argmin_i ||z - e_i|| (``l2``: argmax <z, e_i> - ||e_i||^2 / 2) or
        argmax_i cos(z, e_i) (``cosine``). Under ``sphere`` all three are the cosine nearest
        neighbour, since all rows share R."""
        rule = self.config.commit
        if rule == "inner" or not self.tied:
            return (z.float() @ self.unit_emb().T).max(-1).indices  # first maximum, as argmax
        if rule == "cosine":
            return (z.float() @ self._emb_dir().T).max(-1).indices
        return (z.float() @ self.unit_emb().T - 0.5 * self._emb_sq()).max(-1).indices

    def _emb_dir(self) -> torch.Tensor:
        """(V, d) float32 rows of E scaled to norm 1 (cached like ``unit_emb``)."""
        key = (self.emb._version, self.emb.data_ptr(), self.emb.device)
        if getattr(self, "_dir_key", None) != key:
            self._dir = F.normalize(self.emb.detach().float(), dim=-1)
            self._dir_key = key
        return self._dir

    def _emb_sq(self) -> torch.Tensor:
        """(V,) squared row norms of E."""
        return (self.emb.detach().float() ** 2).sum(-1)

    def expected_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d) float32: sum_i p(i | z) e_i under the induced distribution, the
        conditional-mean reading of a tail state (decoder ``feed: expected``)."""
        p = torch.softmax(self.induced_logits(z), -1)  # (..., V)
        return p @ self.emb.detach().float()

    def training_tail_norm(self, alpha: torch.Tensor, sigma_embryo: float = 0.1) -> torch.Tensor:
        """(K,) expected norm of the tail inputs the training objective builds at maturity alpha,
        ||alpha e_x + (1 - alpha) n|| with n of norm sigma_embryo * R (DESIGN 3.3), taking
        E ||e_x||^2 as the mean squared row norm of E: sqrt(a^2 m2 + (1 - a)^2 (sigma R)^2).
        The reference of ``tail_norm_ratio``."""
        m2 = float((self.emb.detach().float() ** 2).sum(-1).mean())
        a = alpha.float()
        return (a ** 2 * m2 + (1 - a) ** 2 * (sigma_embryo * self.radius) ** 2).sqrt()

    def alpha_profile(self, K: int, alpha_max: float) -> torch.Tensor:
        """(K,) maturity of tail slots j = 0 (front) .. K-1 (newest): alpha_max * (K - j) / K."""
        return alpha_max * (K - torch.arange(K, device=self.device, dtype=torch.float32)) / K

    # ---- the network f --------------------------------------------------------------------
    def forward(self, z, alpha, tail, k, positions, mask=None, cache=None):
        """z (B, T, d) input vectors; alpha (B, T) maturity (1 = committed); tail (B, T) bool;
        k (B,) long tail length (clamped to k_max for the FiLM lookup); positions (B, T);
        mask (B, T, S + T) bool or None (causal);
        cache: the backbone's KV cache of S earlier positions (extended in place).
        Returns the vector head output at every position (B, T, d) and the cache; which
        position predicts which slot is the readout's business (see ``readout_shift``)."""
        cfg = self.config
        z = z.to(self.dtype)  # decode states may arrive in float32 (eta, noise) over bf16 weights
        feats = sinusoidal(alpha, cfg.n_freq).to(self.alpha_mlp[0].weight.dtype)  # (B, T, 2F)
        h = self.input_scale * z + self.alpha_mlp(feats).to(z.dtype)
        # tails longer than k_max (decode-time sweeps) reuse the k_max embedding
        gamma, beta = self.film(k.clamp(max=cfg.k_max)).to(z.dtype)[:, None, :].chunk(2, -1)
        film = None
        if cfg.film == "tail":
            h = torch.where(tail[..., None], (1 + gamma) * h + beta, h)
        elif cfg.film == "all":
            h = (1 + gamma) * h + beta
        else:  # blocks: at the input of every block, tail positions
            film = (gamma, beta, tail[..., None])
        out, cache = self.backbone(h, positions, mask, cache, film=film)  # (B, T, C)
        z_hat = self.head(out)
        if self.head_divisor != 1.0:
            z_hat = z_hat / self.head_divisor
        return z_hat, cache  # (B, T, d)

    @property
    def readout_shift(self) -> int:
        """Slot t is read at position t - shift: 1 for ``next``, 0 for ``self``."""
        return 1 if self.config.readout == "next" else 0

    # ---- decoding ---------------------------------------------------------------------------
    def context_length(self) -> int:
        """Positions the backbone can attend over (its learned positions)."""
        return int(self.backbone.block_size)

    def new_cache(self):
        """An empty KV cache of the backbone (the native GPT's is preallocated, cropped in
        place)."""
        return self.backbone.new_cache(static=True)

    def crop_cache(self, cache, n: int):
        """Keep the first ``n`` positions of ``cache`` (in place); return it."""
        return self.backbone.crop_cache(cache, n)

    def select_cache(self, cache, index: torch.Tensor):
        """The cache of batch rows ``index`` (a row may repeat)."""
        return self.backbone.select_cache(cache, index)

    def prefill(self, ids: torch.Tensor, key_real: torch.Tensor, positions: torch.Tensor,
                cache=None, k: int = 1):
        """Committed tokens (exact embeddings, alpha = 1) into the KV cache.
        ids, key_real, positions (B, S); key_real covers only these S positions when ``cache``
        is None. Returns the cache."""
        B, S = ids.shape
        cache = cache if cache is not None else self.new_cache()
        mask = tail_mask(key_real, S)
        z = self.emb[ids]  # (B, S, d)
        alpha = torch.ones(B, S, device=self.device)
        kk = torch.full((B,), k, dtype=torch.long, device=self.device)
        _, cache = self(z, alpha, torch.zeros(B, S, dtype=torch.bool, device=self.device), kk,
                        positions, mask, cache)
        return cache

    def tail_step(self, pending: torch.Tensor, tail_z: torch.Tensor, alpha: torch.Tensor,
                  key_real: torch.Tensor, positions: torch.Tensor, cache,
                  tail_only: torch.Tensor | bool = False, as_text: bool = False):
        """One maturation forward: the last committed token (not yet in the cache) and the tail.

        pending (B,) long; tail_z (B, K, d); alpha (K,) maturity profile; key_real (B, S) for the
        S cached positions; positions (B,) position id of the pending token; tail_only (bool or
        (B,) bool): rows whose tail slots see only the tail (guidance's unguided pass);
        as_text: read the tail as committed text (alpha 1, no tail conditioning), the reference
        of ``tail_readability`` when ``tail_z`` holds exact embeddings.
        Returns z_hat (B, K, d) for every tail slot and the cache extended by the forwarded
        positions (the caller crops it back to S or S + 1). Under ``readout: next`` the newest
        slot's own vector predicts nothing inside the tail, so it is not forwarded."""
        B, K, d = tail_z.shape
        shift = self.readout_shift
        n_tail = K - shift  # tail slots that must go through the network
        z = torch.cat([self.emb[pending][:, None], tail_z[:, :n_tail]], 1)  # (B, 1 + n_tail, d)
        T = 1 + n_tail
        a = torch.cat([alpha.new_ones(1), alpha[:n_tail]])[None].expand(B, T)  # (B, T)
        tail = torch.arange(T, device=self.device)[None].expand(B, T) >= 1
        if as_text:
            a, tail = torch.ones_like(a), torch.zeros_like(tail)
        pos = positions[:, None] + torch.arange(T, device=self.device)[None]  # (B, T)
        S = key_real.shape[1]
        real = torch.cat([key_real, key_real.new_ones(B, T)], 1)  # (B, S + T)
        mask = tail_mask(real, T, tail_start=S + 1, tail_only=tail_only)
        kk = torch.full((B,), K, dtype=torch.long, device=self.device)
        out, cache = self(z, a, tail, kk, pos, mask, cache)  # (B, T, d)
        return out[:, 1 - shift: 1 - shift + K], cache  # (B, K, d)

    # ---- scoring ----------------------------------------------------------------------------
    def clean_logprobs(self, ids: torch.Tensor, scale: float | None = None,
                       tail_len: int | None = None) -> torch.Tensor:
        """ids (B, T) -> (B, T - 1) log p(x_t | x_<t) under readout ``next``, teacher-forced on
        clean history (every position committed, alpha = 1), one forward for the batch."""
        assert self.config.readout == "next"
        B, T = ids.shape
        kk = torch.full((B,), tail_len or self.config.k_max, dtype=torch.long, device=self.device)
        ones = torch.ones(B, T, device=self.device)
        no_tail = torch.zeros(B, T, dtype=torch.bool, device=self.device)
        pos = torch.arange(T, device=self.device)[None].expand(B, T)
        zhat, _ = self(self.emb[ids], ones, no_tail, kk, pos)  # (B, T, d)
        lp = torch.log_softmax(self.induced_logits(zhat[:, :-1], scale), -1)  # (B, T - 1, V)
        return lp.gather(-1, ids[:, 1:, None])[..., 0]

    @torch.no_grad()
    def token_logprobs(self, seqs: list[list[int]], scale: float | None = None,
                       tail_len: int | None = None, alpha_max: float = 0.75) -> list[torch.Tensor]:
        """log p(x_t | x_<t) for t = 1..T-1 under the induced distribution (DESIGN 3.5).

        ``next``: teacher-forced on clean history, one forward per sequence. ``self``: token t
        is scored from clean x_<t plus a zero embryo in slot t at the newest-slot maturity
        alpha_max / K; all T - 1 embryos go through one forward with a mask that lets embryo t
        see x_<t and itself only. ``tail_len`` (default k_max) only matters for FiLM on
        prefix positions (film 'all')."""
        K = tail_len or self.config.k_max
        out = []
        for s in seqs:
            if len(s) < 2:
                out.append(torch.zeros(0))
                continue
            ids = torch.tensor(s, device=self.device)
            if self.config.readout == "next":
                out.append(self.clean_logprobs(ids[None], scale, K)[0].cpu())
                continue
            n, dev = len(s) - 1, self.device  # n clean positions, then n embryos
            z = torch.cat([self.emb[ids[:-1]], self.emb.new_zeros(n, self.d)])[None]  # (1, 2n, d)
            alpha = torch.cat([torch.ones(n), torch.full((n,), alpha_max / K)])[None]
            tail = torch.cat([torch.zeros(n), torch.ones(n)]).bool()[None]
            pos = torch.cat([torch.arange(n), torch.arange(1, n + 1)])[None]
            q = torch.arange(2 * n)[:, None]
            kx = torch.arange(2 * n)[None, :]
            clean = (kx < n) & (kx <= q)  # clean history, causal
            # embryo for slot t = q - n + 1 sees clean x_<t and itself
            mask = torch.where(q >= n, ((kx < q - n + 1) & (kx < n)) | (kx == q), clean)
            kk = torch.full((1,), K, dtype=torch.long, device=dev)
            zhat, _ = self(z, alpha.to(dev), tail.to(dev), kk, pos.to(dev), mask[None].to(dev))
            lp = torch.log_softmax(self.induced_logits(zhat[0, n:], scale), -1)  # (n, V)
            out.append(lp.gather(-1, ids[1:, None])[:, 0].cpu())
        return out
