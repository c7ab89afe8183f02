"""Run records: one JSON file per run, keyed by a hash of everything that determines it.

Layout under a results directory::

    <root>/<suite>/v<version>/<run key>/record.json    # complete runs only (atomic rename)
    <root>/<suite>/v<version>/<run key>/partial.jsonl  # finished batches of an interrupted run
    <root>/<suite>/v<version>/<run key>/.lock          # held by the process generating it

A record carries ``schema_version`` and a ``record_hash`` over its own content; a record that
fails either check is reported once and regenerated, never used.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tmbench.faults import fault_point
from tmbench.fileio import atomic_write, sha256_text

SCHEMA_VERSION = 2  # 2: run key = hash of the resolved spec; metric_runs; decode_info


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def run_key(spec: dict[str, Any]) -> str:
    """Hash of the run spec: suite+version+hash, model identity, decoder and resolved params,
    seed, max_new_tokens, batch size, dtype, device type, tmbench version, prompt set hash."""
    return sha256_text(canonical(spec))[:20]


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`tmbench.fileio.atomic_write` with the ``record`` fault point between the sync
    and the rename."""
    atomic_write(path, text, before_replace=lambda: fault_point("record"))


def safe_join(root: Path, *parts: str) -> Path:
    """Join names from configs under ``root``; refuse anything that escapes it."""
    p = root.joinpath(*parts).resolve()
    if not p.is_relative_to(root.resolve()):
        raise ValueError(f"path {'/'.join(parts)!r} escapes the results directory {root}")
    return p


def run_dir(root: Path, suite: str, version: int, key: str) -> Path:
    return safe_join(root, suite, f"v{version}", key)


def with_hash(record: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in record.items() if k != "record_hash"}
    return {**body, "record_hash": sha256_text(canonical(body))}


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(with_hash(record), indent=1, ensure_ascii=False, default=str))


class CorruptRecord(Exception):
    """A record file that exists but cannot be trusted."""


def read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptRecord(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None
    if not isinstance(rec, dict) or rec.get("schema_version") != SCHEMA_VERSION:
        raise CorruptRecord(f"{path}: schema_version is {rec.get('schema_version') if isinstance(rec, dict) else None!r}, "
                            f"expected {SCHEMA_VERSION}")
    if with_hash(rec)["record_hash"] != rec.get("record_hash"):
        raise CorruptRecord(f"{path}: content hash mismatch (edited or truncated)")
    return rec


def iter_records(root: Path, warn=print) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every valid record under ``root``; corrupt ones are reported once and skipped."""
    for path in sorted(Path(root).glob("*/v*/*/record.json")):
        try:
            yield path, read_record(path)
        except CorruptRecord as e:
            warn(f"warning: ignoring corrupt record {e}")


# ---- partial generation (resume inside a run) ---------------------------------------------

def append_partial(path: Path, batch: dict[str, Any]) -> None:
    """One finished batch per line, with its own hash; fsync so a kill loses at most the
    batch being generated."""
    line = canonical(with_hash(batch))
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_partial(path: Path, warn=print) -> dict[int, dict[str, Any]]:
    """Finished batches by start index; a torn or garbled line (killed mid-write) is dropped."""
    out: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            b = json.loads(line)
            if with_hash(b)["record_hash"] != b.get("record_hash"):
                raise ValueError("hash mismatch")
        except (json.JSONDecodeError, ValueError, AttributeError, TypeError):
            warn(f"warning: {path}:{n + 1}: dropping a damaged batch line; it will be regenerated")
            continue
        out[b["start"]] = b
    return out


try:  # POSIX: an advisory lock that the kernel drops when its process dies, however it dies
    import fcntl
except ImportError:  # Windows: the pid-file fallback of RunLock
    fcntl = None


class RunLock:
    """An exclusive claim on a run folder: its ``.lock`` file, holding the owner's pid (for
    messages), locked with ``fcntl.flock`` and kept open for as long as the run lasts.

    The kernel drops a flock when its holder dies (SIGKILL included), so a lock file a dead
    process left behind is simply locked again: there is no stale-lock takeover to race on, and
    no moment when the file exists but its lock is up for grabs. Release unlinks the file while
    still holding it; a process that opened the file before the unlink and locks it after sees
    that the path no longer names its file, and tries again on the path's new file.

    Without fcntl (Windows) the lock is the file itself: it appears with the pid already inside
    (a hard link of a written temp file, which fails if the lock exists), and a lock whose pid
    is no longer alive is stale and taken over; two processes taking over the same stale lock
    at the same instant can both succeed there.
    """

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no live process holds it (False: another one does)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self._acquire_file()
        for _ in range(100):  # each retry means another holder released between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                st, mine = os.stat(self.path), os.fstat(fd)
                same = (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._fd, self.held = fd, True
                return True
            os.close(fd)  # locked a file its holder had unlinked on release
        return False

    def _acquire_file(self) -> bool:
        for _ in range(2):
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lock.", suffix=".tmp")
            try:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.link(tmp, self.path)  # atomic; the pid is inside before anyone can read it
                self.held = True
                return True
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)
            finally:
                os.unlink(tmp)
        return False

    def owner(self) -> int | None:
        """The pid written in the lock file (None: no file, or no pid in it yet)."""
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _stale(self) -> bool:
        pid = self.owner()
        if pid is None or pid <= 0:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)  # before closing: nobody holds an unlinked lock
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.held = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
