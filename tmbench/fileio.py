"""Atomic writes and sha256 digests: the one implementation every writer and hasher uses.

A file is written to a temporary file beside its destination (named ``.<name>.<random>.tmp``,
with the usual permissions), flushed and fsynced, then moved over the destination with
``os.replace``: a reader, or a process killed at any instant, sees the old file or the new one,
never a half-written one. A folder is built under a temporary name and renamed into place the
same way (:func:`make_dir_tmp`, :func:`replace_dir`). No torch here: the results and leaderboard
code imports this without loading a model stack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

Writer = Callable[[Path], None]  # writes the whole file at the path it is given


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: str | bytes | Writer, *,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write ``data`` (text as UTF-8, bytes, or a function that writes the file at the path it
    is given, e.g. a safetensors saver) to ``path`` atomically. ``before_replace`` runs after
    the sync and before the rename (fault injection)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)  # may recreate the file
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_dir_tmp(path: str | Path) -> Path:
    """A fresh temporary folder beside ``path`` (usual permissions), to be moved into place
    with :func:`replace_dir`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


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


def sha256_file(paths: str | Path | Iterable[str | Path]) -> str:
    """Hex sha256 of a file, or of several files read one after another in the order given
    (streamed, 1 MiB at a time)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


_HASHED: dict[tuple, str] = {}  # ((resolved path, size, mtime_ns), ...) -> sha256


def sha256_file_cached(paths: str | Path | Iterable[str | Path]) -> str:
    """:func:`sha256_file`, remembered within the process per (resolved path, size,
    modification time) of every file: the one cache of content hashes, so that a large
    checkpoint hashes once however often plan-time checks and loads ask."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    key = tuple((str(p.resolve()), (st := p.stat()).st_size, st.st_mtime_ns) for p in paths)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(paths)
    return _HASHED[key]


def sha256_text(text: str) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
