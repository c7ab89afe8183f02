"""The autoregressive twin of the TM model: the same backbone class and size, tied embeddings
and an LM head (logits = h @ E^T), trained with cross-entropy (DESIGN 3.2).

``init_from`` copies backbone and embeddings from a trained checkpoint folder (the AR twin) or
from SmolLM2-135M (offline, through the transformers adapter backbone).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from tmbench.models.base import ARModel
from tmbench.tm.model import tail_mask


class NativeARModel(nn.Module, ARModel):
    kind = "ar"

    def __init__(self, backbone: nn.Module, vocab_size: int, tokenizer: Any = None,
                 name: str = "ar", content_hash: str | None = None):
        super().__init__()
        self.backbone = backbone
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        self.name = name
        self.content_hash = content_hash
        self.eos_token_id = getattr(tokenizer, "eos_token_id", None)
        self.wte = nn.Parameter(torch.randn(vocab_size, backbone.n_embd) * 0.02)  # tied E

    @property
    def device(self) -> torch.device:
        return self.wte.device

    @property
    def dtype(self) -> torch.dtype:
        return self.wte.dtype

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "ar", "class": type(self).__name__,
                "content_hash": self.content_hash, "dtype": str(self.dtype).replace("torch.", "")}

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Training path: ids (B, T) -> logits (B, T, V), plain causal attention, no cache."""
        pos = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids)
        h, _ = self.backbone(self.wte[ids], pos)  # (B, T, C)
        return h @ self.wte.T  # (B, T, V)

    def forward(self, input_ids, attention_mask, position_ids, cache):
        """ARModel backend: logits (B, T, V), last hidden (B, T, C) and the extended cache.
        The incoming cache is left untouched (decoders may branch from one state)."""
        B, T = input_ids.shape
        if cache is None:
            cache = self.backbone.new_cache()
        elif hasattr(cache, "copy"):  # native KVCache: extend a shallow copy
            cache = cache.copy()
        S = attention_mask.shape[1] - T
        mask = None if S == 0 and bool(attention_mask.all()) else tail_mask(attention_mask, T)
        h, cache = self.backbone(self.wte[input_ids], position_ids, mask, cache)
        return h @ self.wte.T, h, cache

    def select_cache(self, cache, index):
        return self.backbone.select_cache(cache, index)
