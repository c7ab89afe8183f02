"""Checkpoint I/O: safetensors for tensors, JSON for everything else, atomic writes.

Every file goes through :func:`tmbench.fileio.atomic_write` (temporary file beside the
destination, fsync, ``os.replace``), so a crash never leaves a half-written file under the final
name. Pickle-based formats (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are refused:
loading one can run arbitrary code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tmbench.fileio import atomic_write, make_dir_tmp, replace_dir

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


__all__ = ["PICKLE_SUFFIXES", "load_tensors", "make_dir_tmp", "optimizer_from_tensors",
           "optimizer_to_tensors", "read_json", "replace_dir", "save_tensors", "write_json",
           "write_text"]


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to a safetensors file atomically (tensors made contiguous, on CPU)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=metadata))


def load_tensors(path: str | Path, device: str | torch.device = "cpu",
                 allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a safetensors file. Pickle-based formats (.bin, .pt, ...) can run arbitrary code
    and are refused unless ``allow_pickle=True``; even then only tensors are unpickled
    (``torch.load(weights_only=True)``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint file {path} does not exist")
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(f"refusing to load {path}: pickle-based checkpoints can run arbitrary "
                             "code; convert it to .safetensors or pass allow_pickle=True "
                             "(--allow-pickle) if you trust its source")
        return torch.load(path, map_location=device, weights_only=True)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"checkpoint file {path} is corrupt or truncated ({e})") from None


def write_json(obj: Any, path: str | Path) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"file {path} does not exist")
    return json.loads(path.read_text())


def write_text(text: str, path: str | Path) -> None:
    atomic_write(path, text)


# ---- optimizer state without pickles -------------------------------------------------------
def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``opt.state_dict()`` into tensors (safetensors) and JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           rest: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    for key, v in rest["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
