"""Small fixtures shared by the metric tests: samples, a context, a tiny random Llama with a
BPE tokenizer trained on a few BBC articles, and a bigram judge."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from tmbench.types import MetricContext, Sample


def sample(text: str, tokens=None, prompt_index: int = 0, prompt: str = "p", ref: str = "r",
           info=None) -> Sample:
    toks = list(tokens) if tokens is not None else [hash(w) % 1000 for w in text.split()]
    return Sample(prompt_index, 0, prompt, [1, 2], text, toks, ref, dict(info or {}))


class Tok:
    def __init__(self, eos=None):
        self.eos_token_id, self.name = eos, "stub"


def ctx(model=None, tokenizer=None, load_model=None, **kw) -> MetricContext:
    return MetricContext(model, tokenizer, load_model or (lambda n, **kw: None), **kw)


@lru_cache(maxsize=1)
def tiny_llama():
    """(transformers model, PreTrainedTokenizerFast): random 2-layer Llama, byte-level BPE of
    400 tokens trained on 200 BBC train articles; eos = <eos>, no BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tmbench.data.bbc import load_bbc

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([a.text for a in load_bbc("train")[:200]], tr)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=128, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, pad_token_id=tok.eos_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval(), tok


def tiny_hfmodel():
    from tmbench.models.hf import HFModel, HFTokenizer

    m, tok = tiny_llama()
    return HFModel(m, HFTokenizer(tok, "tiny-bpe"), "tiny-llama")


class WordTok:
    """Whitespace tokenizer over a growing vocabulary (id 0 = eos)."""

    def __init__(self):
        self.vocab, self.eos_token_id, self.name = {"<eos>": 0}, 0, "words"

    def encode(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def decode(self, ids) -> str:
        inv = {v: k for k, v in self.vocab.items()}
        return " ".join(inv[i] for i in ids)


class BigramJudge:
    """log p(x_t | x_<t) depends on x_{t-1} only, so any windowing must give the same scores."""

    kind = "ar"

    def __init__(self, vocab: int = 64):
        self.tokenizer = WordTok()
        g = torch.Generator().manual_seed(0)
        self.table = torch.log_softmax(torch.randn(vocab, vocab, generator=g), -1)  # (V, V)

    def identity(self):
        return {"name": "bigram", "content_hash": "bigram0"}

    def token_logprobs(self, seqs):
        return [self.table[torch.tensor(s[:-1]), torch.tensor(s[1:])] if len(s) > 1
                else torch.zeros(0) for s in seqs]


class HashFeaturizer:
    """Deterministic fake featurizer: a text's vector is seeded by its hash, shifted by
    ``shift`` when the text starts with 'model'. Counts its embed calls."""

    name = "all-minilm-l6-v2"

    def __init__(self, dim: int = 8):
        self.dim, self.calls = dim, 0

    def identity(self):
        return {"name": "hash-fake", "dim": self.dim}

    def embed(self, texts, max_length=256):
        self.calls += 1
        out = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).normal(size=self.dim)
            if t.startswith("model"):
                v[0] += 3.0
            out.append(v)
        return np.array(out, dtype=np.float32).reshape(len(texts), self.dim)
