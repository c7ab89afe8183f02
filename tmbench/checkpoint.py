"""Checkpoint I/O: safetensors for tensors, JSON for everything else, atomic writes.

Every file is written to a temporary file in the destination folder and moved into place with
``os.replace``, so a crash never leaves a half-written file under the final name. Pickle-based
formats (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are refused: loading one can run
arbitrary code.
"""

from __future__ import annotations

import hashlib

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_dir_tmp(path: Path) -> Path:
    """A fresh temporary folder beside ``path`` (usual permissions), to be moved into place
    with :func:`replace_dir`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to a safetensors file atomically (tensors made contiguous, on CPU)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = _atomic_target(path)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())  # save_file recreates the file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"file {path} does not exist")
    return json.loads(path.read_text())


def write_text(text: str, path: str | Path) -> None:
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``. A rename is atomic; an existing ``dst`` is
    first renamed aside, so at every instant either the old or the new folder is complete."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
