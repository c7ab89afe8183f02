"""Any `transformers` causal LM as a backbone: input vectors go in through ``inputs_embeds``.

This is the paper's setting (a GPT-2 Medium backbone fed continuous vectors). The boolean mask
(B, T, S + T) of the native GPT is turned into an additive 4D mask, which transformers passes
to the attention as-is; that is how the tail-only mask of guidance reaches the model. The KV
cache is a transformers ``DynamicCache``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from tmbench.backbones.gpt import causal_mask


class HFBackbone(nn.Module):
    """Wraps the base model (no LM head) of an ``AutoModelForCausalLM``."""

    def __init__(self, lm: Any):
        super().__init__()
        self.body = lm.base_model  # e.g. GPT2Model, LlamaModel: returns final-norm hidden states
        cfg = lm.config
        self.config = cfg
        self.n_embd = int(cfg.hidden_size)
        self.block_size = int(getattr(cfg, "n_positions", None)
                              or getattr(cfg, "max_position_embeddings", 1 << 20))
        params = inspect.signature(self.body.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def input_embeddings(self) -> torch.Tensor:
        """(V, C) the wrapped LM's input embedding matrix (for ``init_from``)."""
        return self.body.get_input_embeddings().weight

    def new_cache(self, static: bool = False):
        """A transformers ``DynamicCache`` (``static`` is accepted for the GPT's signature)."""
        from transformers import DynamicCache

        return DynamicCache(config=self.config)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None,
                cache=None, film=None):
        """Same contract as :meth:`tmbench.backbones.gpt.GPT.forward` (no per-block FiLM)."""
        if film is not None:
            raise ValueError("film 'blocks' needs the native GPT backbone; use film 'tail' or "
                             "'all' with a transformers backbone")
        B, T, _ = x.shape
        if cache is None:
            cache = self.new_cache()
        S = cache.get_seq_length()
        if mask is None:
            mask = causal_mask(T, S, x.device).expand(B, T, S + T)
        neg = torch.finfo(x.dtype).min
        add = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, neg)
        out = self.body(inputs_embeds=x, attention_mask=add[:, None], position_ids=positions,
                        use_cache=True, **{self._cache_kwarg: cache})
        new = getattr(out, "cache", None) or out.past_key_values
        return out.last_hidden_state, new  # (B, T, C)

    @staticmethod
    def crop_cache(cache, n: int):
        remove = cache.get_seq_length() - n
        if remove > 0:
            cache.crop(-remove)  # a negative count removes that many (transformers 4.x and 5.x)
        return cache

    @staticmethod
    def select_cache(cache, index: torch.Tensor):
        cache.reorder_cache(index)
        return cache
