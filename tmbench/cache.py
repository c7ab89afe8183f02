"""What tmbench caches on disk, with a content check.

:func:`cache_root` is where tmbench keeps files it derives from installed packages (judges
assembled from chunk wheels, GGUF models converted once, the machine's peaks, checked arrays).

Each array file is the ``.npy`` bytes of the array followed by their sha256 digest (32 bytes), written
atomically. A truncated or garbled file fails the check, is reported once by name, deleted and
recomputed by the caller; it is never silently used.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import numpy as np

from tmbench.fileio import atomic_write

_reported: set[str] = set()


def cache_root() -> Path:
    """Where tmbench keeps files it derives from installed packages: ``$TMBENCH_CACHE`` or
    ``~/.cache/tmbench``."""
    env = os.environ.get("TMBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tmbench"


def save_array(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    data = buf.getvalue()
    atomic_write(path, data + hashlib.sha256(data).digest())


def load_array(path: Path, warn=None) -> np.ndarray | None:
    """The cached array, or None when absent or corrupt (then the file is removed)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    data, digest = raw[:-32], raw[-32:]
    ok = len(raw) > 32 and hashlib.sha256(data).digest() == digest
    if ok:
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            ok = False
    if str(path) not in _reported:
        _reported.add(str(path))
        (warn or (lambda m: print(m, file=sys.stderr)))(
            f"warning: cache file {path} is corrupt (content check failed); recomputing it")
    path.unlink(missing_ok=True)
    return None
