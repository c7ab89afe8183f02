"""Peak memory of one run, measured so that run order cannot change it.

CUDA: the allocator's peak statistics are reset at entry and read at exit. CPU: resident
memory (``/proc/self/statm``) is sampled every few milliseconds by a background thread; the run's
peak is the highest sample minus the resident memory at entry (the process's lifetime
high-water mark, ``ru_maxrss``, would climb with every earlier run).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.result()`` ->
    {"kind": ..., "bytes": peak above entry, "baseline_bytes": at entry}."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.005):
        self.cuda = str(device).startswith("cuda")
        self.interval = interval_s
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self.peak = rss_bytes() or 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            r = rss_bytes()
            if r is not None and r > self.peak:
                self.peak = r

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        r = rss_bytes()
        if r is not None:
            self.peak = max(self.peak, r)

    def result(self) -> dict[str, Any]:
        kind = "cuda_peak_allocated_above_entry" if self.cuda else "cpu_peak_rss_above_entry"
        return {"kind": kind, "bytes": max(0, self.peak - self.base), "baseline_bytes": self.base}
