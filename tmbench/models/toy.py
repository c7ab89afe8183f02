"""``toy-random``: a seeded, randomly initialised 2-layer Llama over bytes.

Not a language model of anything; it exists so that the harness (runner, records, CLI,
plugins) can be exercised end to end in seconds without any weights on disk.
"""

from __future__ import annotations

import torch

from tmbench.models.hf import HFModel


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; id 256 is EOS."""

    name = "bytes"
    eos_token_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def load_toy(device: str = "cpu", dtype: str = "float32", seed: int = 0) -> HFModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=256, bos_token_id=256, pad_token_id=256)
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model = model.to(dtype=getattr(torch, dtype))
    return HFModel(model, ByteTokenizer(), "toy-random", f"toy-seed{seed}").to(device)
