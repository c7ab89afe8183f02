"""Peak memory of one run, measured so that run order cannot change it.

CUDA: the allocator's peak statistics are reset at entry (``torch.cuda.reset_peak_memory_stats``)
and read at exit (``torch.cuda.max_memory_allocated``). CPU: resident memory
(``/proc/self/statm``) is sampled every ``interval_s`` by a background thread, and once more at
entry and at exit. The process's lifetime high-water mark (``ru_maxrss``) is not used: it climbs
with every earlier run, so a run scored after a bigger one would inherit its peak.

``result()``: ``bytes`` = the run's own peak above the memory in use at entry (what the run
added: weights loaded before it are not counted), ``peak_bytes`` = the absolute peak during the
run, ``baseline_bytes`` = at entry, ``kind`` names the measure. Where ``/proc`` is unavailable
(not Linux) the CPU figures are None and ``kind`` says so.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CPU_KIND = "cpu_peak_rss_above_entry"
CUDA_KIND = "cuda_peak_allocated_above_entry"


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.result()`` ->
    ``{"kind", "bytes", "peak_bytes", "baseline_bytes"}`` (see the module docstring)."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.005):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        self.interval = interval_s
        self.base: int | None = None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self.peak = rss_bytes()
        if self.base is not None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._see(rss_bytes())

    def _see(self, r: int | None) -> None:
        if r is not None and (self.peak is None or r > self.peak):
            self.peak = r

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._see(rss_bytes())

    def result(self) -> dict[str, Any]:
        if self.base is None or self.peak is None:
            return {"kind": "unavailable (no /proc/self/statm)", "bytes": None,
                    "peak_bytes": None, "baseline_bytes": None}
        return {"kind": CUDA_KIND if self.cuda else CPU_KIND,
                "bytes": max(0, self.peak - self.base), "peak_bytes": self.peak,
                "baseline_bytes": self.base}
