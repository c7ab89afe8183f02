"""``bigram-bbc``: a Witten-Bell bigram language model counted on BBC train, in SmolLM2's tokens.

A floor for every table: a model that sees one token of context. It speaks the AR model
contract (:class:`tmbench.models.base.ARModel`: ``forward`` and ``select_cache``) without a
neural network, so every AR decoder and every metric runs on it unchanged.

    p(w | v) = (c(v, w) + T(v) p1(w)) / (c(v) + T(v)),   p1(w) = (c(w) + 1) / (N + V)

c are counts over the training tokens (article by article, no bigram across articles), T(v) the
number of distinct tokens seen after v, N the number of tokens, V the vocabulary; a token never
seen as a context backs off to p1 alone (Witten and Bell 1991, interpolated). The "hidden state"
that contrastive search compares is a fixed random unit vector per token (seeded), since a
bigram model has no other representation.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np
import torch

from tmbench.models.base import ARModel

HIDDEN = 64


class BigramModel(ARModel):
    """Interpolated Witten-Bell bigram over token ids; counts from ``docs`` (token lists)."""

    def __init__(self, docs: Iterable[list[int]], vocab_size: int, tokenizer: Any, name: str,
                 eos_token_id: int | None = None, seed: int = 0):
        self.name, self.vocab_size, self.tokenizer = name, int(vocab_size), tokenizer
        self.eos_token_id, self.device = eos_token_id, torch.device("cpu")
        V = self.vocab_size
        uni = np.zeros(V, dtype=np.int64)
        pairs = []
        for d in docs:
            a = np.asarray(d, dtype=np.int64)
            if a.size and (a.min() < 0 or a.max() >= V):
                raise ValueError(f"token ids must be in [0, {V}), got {a.min()}..{a.max()}")
            uni += np.bincount(a, minlength=V)
            pairs.append(a[:-1] * V + a[1:])
        keys, counts = np.unique(np.concatenate(pairs) if pairs else np.zeros(0, np.int64),
                                 return_counts=True)
        rows, cols = keys // V, keys % V
        self.p1 = torch.from_numpy((uni + 1) / (uni.sum() + V)).float()  # (V,)
        ctx = np.bincount(rows, weights=counts, minlength=V)  # c(v) as a context
        types = np.bincount(rows, minlength=V)  # T(v)
        self.denominator = torch.from_numpy(ctx + types).float()  # (V,)
        self.types = torch.from_numpy(types).float()
        # c(v, w) in compressed rows: the followers of v are cols[ptr[v]:ptr[v + 1]]
        self.ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=V))])
        self.cols, self.vals = cols, counts.astype(np.float32)
        g = torch.Generator().manual_seed(seed)
        emb = torch.randn(V, HIDDEN, generator=g)
        self.emb = emb / emb.norm(dim=-1, keepdim=True)
        h = hashlib.sha256()
        for arr in (keys, counts, uni):
            h.update(np.ascontiguousarray(arr).tobytes())
        self.content_hash = h.hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "content_hash": self.content_hash, "dtype": "float32",
                "kind": "witten-bell bigram"}

    def to(self, device) -> "BigramModel":
        if torch.device(device).type != "cpu":
            raise ValueError(f"{self.name} runs on the CPU only, got device {device!r}")
        return self

    def probs(self, prev: torch.Tensor) -> torch.Tensor:
        """(N,) context tokens -> (N, V) next-token probabilities."""
        prev = prev.cpu()
        v = prev.numpy()
        starts, lens = self.ptr[v], self.ptr[v + 1] - self.ptr[v]
        rows = np.repeat(np.arange(len(v)), lens)
        at = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        dense = np.zeros((len(v), self.vocab_size), dtype=np.float32)
        dense[rows, self.cols[at]] = self.vals[at]
        dense = torch.from_numpy(dense)  # (N, V) c(v, w)
        t, den = self.types[prev][:, None], self.denominator[prev][:, None]
        mixed = (dense + t * self.p1[None]) / den.clamp(min=1)
        return torch.where(den > 0, mixed, self.p1[None].expand_as(mixed))

    def forward(self, input_ids, attention_mask, position_ids, cache):
        """Next-token log-probabilities after every input position (the logits), the token's
        fixed random vector (the hidden state); there is no cache."""
        B, T = input_ids.shape
        flat = input_ids.reshape(-1).clamp(min=0)
        logits = self.probs(flat).log().reshape(B, T, self.vocab_size)
        return logits, self.emb[flat].reshape(B, T, HIDDEN), None

    def select_cache(self, cache, index):
        return None


def load_bigram_bbc(device: str = "cpu", dtype: str = "float32") -> BigramModel:
    """Witten-Bell bigram LM in SmolLM2's tokens, counted on BBC train at load (about 30 s)."""
    from transformers import AutoTokenizer

    from tmbench.data.bbc import load_bbc
    from tmbench.models.gguf import converted
    from tmbench.models.hf import HFTokenizer, smollm2_path

    tok = HFTokenizer(AutoTokenizer.from_pretrained(converted(smollm2_path())), "smollm2-135m")
    docs = [tok.encode(a.text) for a in load_bbc("train")]
    model = BigramModel(docs, len(tok.tok), tok, "bigram-bbc", tok.eos_token_id)
    return model.to(device)
