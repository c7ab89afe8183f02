"""A small GPT that maps input vectors to hidden states (nanoGPT-style, one file).

Pre-LN blocks, SDPA attention, learned absolute positions, final LayerNorm. Unlike nanoGPT it
takes input *vectors* (B, T, C) rather than token ids, because Token Maturation feeds
continuous tail states; the AR model looks its ids up itself. An optional boolean attention
mask (B, T, S + T) replaces the causal mask (the tail-only mask of classifier-free guidance,
left padding), and a :class:`KVCache` holds keys and values of the committed prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256  # hidden width C (= embedding width d of the models built on it)
    block_size: int = 128  # number of learned positions
    dropout: float = 0.0
    bias: bool = True


def causal_mask(T: int, S: int = 0, device=None) -> torch.Tensor:
    """(T, S + T) bool, True = may attend: query i (absolute position S + i) sees keys <= S + i."""
    q = torch.arange(T, device=device)[:, None] + S
    k = torch.arange(S + T, device=device)[None, :]
    return k <= q


class KVCache:
    """Keys and values per layer, each (B, n_head, S, head_dim). ``forward`` appends to it in
    place; ``crop`` drops trailing positions (TM keeps the committed token, drops the tail)."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def update(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[i] is not None:
            k = torch.cat([self.k[i], k], 2)  # (B, nh, S + T, hd)
            v = torch.cat([self.v[i], v], 2)
        self.k[i], self.v[i] = k, v
        return k, v

    def crop(self, n: int) -> "KVCache":
        self.k = [None if k is None else k[:, :, :n] for k in self.k]
        self.v = [None if v is None else v[:, :, :n] for v in self.v]
        return self

    def copy(self) -> "KVCache":
        """A new cache object sharing the (immutable) tensors: extending it leaves self as is."""
        out = KVCache(len(self.k))
        out.k, out.v = list(self.k), list(self.v)
        return out

    def select(self, index: torch.Tensor) -> "KVCache":
        out = KVCache(len(self.k))
        out.k = [None if k is None else k[index] for k in self.k]
        out.v = [None if v is None else v[index] for v in self.v]
        return out


class StaticKVCache:
    """Like :class:`KVCache`, but keys and values are written into preallocated buffers (grown
    by doubling), so extending by T positions costs O(T), not a copy of the whole cache; the
    maturation decoder extends and crops its cache every step. Extending writes in place: two
    branches must not extend the same cache (use ``select`` to copy)."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.n = [0] * n_layer  # filled length per layer

    def __len__(self) -> int:
        return self.n[0]

    def update(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        S, T = self.n[i], k.shape[2]
        if self.k[i] is None or S + T > self.k[i].shape[2]:
            B, nh, _, hd = k.shape
            cap = max(64, 2 * (S + T))
            nk, nv = k.new_empty(B, nh, cap, hd), v.new_empty(B, nh, cap, hd)
            if S:
                nk[:, :, :S], nv[:, :, :S] = self.k[i][:, :, :S], self.v[i][:, :, :S]
            self.k[i], self.v[i] = nk, nv
        self.k[i][:, :, S:S + T] = k
        self.v[i][:, :, S:S + T] = v
        self.n[i] = S + T
        return self.k[i][:, :, :S + T], self.v[i][:, :, :S + T]  # (B, nh, S + T, hd) views

    def crop(self, n: int) -> "StaticKVCache":
        self.n = [min(x, n) for x in self.n]
        return self

    def select(self, index: torch.Tensor) -> "StaticKVCache":
        out = StaticKVCache(len(self.k))
        out.n = list(self.n)
        out.k = [None if k is None else k[index] for k in self.k]
        out.v = [None if v is None else v[index] for v in self.v]
        return out


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, cache: KVCache | None, layer: int):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, S + T, hd)
        drop = self.dropout if self.training else 0.0
        if mask is None:  # plain causal self-attention without a cache: the fast kernel
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, mask, cache, layer):
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Input vectors (B, T, C) + position ids (B, T) -> final-LayerNorm hidden states (B, T, C)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.n_embd = cfg.n_embd
        self.block_size = cfg.block_size
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def new_cache(self, static: bool = False) -> KVCache | StaticKVCache:
        return StaticKVCache(len(self.h)) if static else KVCache(len(self.h))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | StaticKVCache | None = None, film=None):
        """x (B, T, C); positions (B, T) long; mask (B, T, S + T) bool or None (causal);
        cache holds S earlier positions and is extended in place by T.
        ``film`` = (gamma, beta, where) applies h = (1 + gamma) * h + beta at the input of
        every block on the positions where ``where`` (B, T, 1) is True."""
        B, T, C = x.shape
        if int(positions.max()) >= self.block_size:
            raise ValueError(f"position {int(positions.max())} is beyond this model's context of "
                             f"{self.block_size} positions; shorten prompt + max_new_tokens")
        S = len(cache) if cache is not None else 0
        if mask is None and S > 0:
            mask = causal_mask(T, S, x.device).expand(B, T, S + T)
        h = self.drop(x + self.wpe(positions))  # (B, T, C)
        for i, block in enumerate(self.h):
            if film is not None:
                gamma, beta, where = film
                h = torch.where(where, (1 + gamma) * h + beta, h)
            h = block(h, mask, cache, i)
        return self.ln_f(h), cache  # (B, T, C)

    @staticmethod
    def crop_cache(cache: KVCache, n: int) -> KVCache:
        return cache.crop(n)

    @staticmethod
    def select_cache(cache: KVCache, index: torch.Tensor) -> KVCache:
        return cache.select(index)
