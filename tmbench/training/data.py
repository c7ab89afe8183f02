"""Training data: the train and valid token streams and the per-step generator.

Every random draw of step ``s`` comes from :func:`step_generator` seeded with (seed, s): the
data position is the step, so a resumed run draws what an uninterrupted one draws.
"""

from __future__ import annotations

import torch

from tmbench.training.config import DataConfig


class TokenData:
    """Train and valid token streams (documents joined by EOS) and the blocks drawn from them."""

    def __init__(self, cfg: DataConfig, tokenizer):
        texts = self._texts(cfg)
        eos = tokenizer.eos_token_id
        self.streams = {}
        for split, docs in texts.items():
            enc = (tokenizer.encode_batch(docs) if hasattr(tokenizer, "encode_batch")
                   else [tokenizer.encode(t) for t in docs])
            ids = [i for e in enc for i in (*e, eos)]
            self.streams[split] = torch.tensor(ids, dtype=torch.long)
        self.T = cfg.block_size

    @staticmethod
    def _texts(cfg: DataConfig) -> dict[str, list[str]]:
        if cfg.corpus == "bbc":
            from tmbench.data.bbc import load_bbc

            train = [a.text for a in load_bbc("train")][: cfg.max_docs]
            valid = [a.text for a in load_bbc("valid")][: cfg.max_docs]
            return {"train": train, "valid": valid}
        if cfg.corpus == "fineweb":
            try:
                from datasets import load_dataset

                ds = load_dataset("HuggingFaceFW/fineweb", name="sample-10BT", split="train",
                                  streaming=True)
                docs = [r["text"] for _, r in zip(range(cfg.fineweb_docs * 21 // 20), ds)]
            except Exception as e:
                raise ValueError(f"corpus 'fineweb' streams from the Hugging Face hub, which is "
                                 f"not reachable here ({type(e).__name__}); use corpus 'bbc'"
                                 ) from None
            n = cfg.fineweb_docs
            return {"train": docs[:n], "valid": docs[n:]}
        raise ValueError(f"unknown corpus {cfg.corpus!r}; accepted: bbc, fineweb")

    def batch(self, gen: torch.Generator, B: int) -> torch.Tensor:
        """(B, T) random blocks of the train stream."""
        s = self.streams["train"]
        starts = torch.randint(0, len(s) - self.T, (B,), generator=gen)
        return torch.stack([s[i:i + self.T] for i in starts.tolist()])

    def valid_blocks(self, n: int | None = None) -> torch.Tensor:
        """(N, T) consecutive non-overlapping blocks of the valid stream (the first n)."""
        s = self.streams["valid"]
        N = len(s) // self.T
        return s[: N * self.T].view(N, self.T)[:n]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)
