"""Per-run peak memory: a run's figure does not depend on what ran before it."""

import time

import numpy as np
import pytest

from tmbench import memory
from tmbench.memory import PeakMemory

MB = 2**20
linux_only = pytest.mark.skipif(memory.rss_bytes() is None, reason="needs /proc/self/statm")


def _block(mb: int) -> dict:
    with PeakMemory("cpu") as pm:
        a = np.ones(mb * MB // 8)  # touched pages: resident
        time.sleep(0.05)  # several sampling intervals while it is held
        del a
    return pm.result()


@linux_only
def test_second_identical_block_reports_the_same_peak():
    first, second = _block(96), _block(96)
    assert first["kind"] == second["kind"] == "cpu_peak_rss_above_entry"
    assert 0.8 * 96 * MB <= first["bytes"] <= 1.3 * 96 * MB
    assert abs(second["bytes"] - first["bytes"]) <= 0.15 * first["bytes"]
    assert second["peak_bytes"] >= second["baseline_bytes"] + second["bytes"] - 1


@linux_only
def test_a_smaller_run_after_a_bigger_one_reports_its_own_peak():
    # both above glibc's largest mmap threshold (32 MiB), so each block gets fresh pages whatever
    # the process freed before (a smaller block may reuse resident heap pages and read ~0)
    big, small = _block(256), _block(64)
    assert small["bytes"] <= 0.4 * big["bytes"]  # ru_maxrss would report the big run's peak
    assert 0.8 * 64 * MB <= small["bytes"] <= 1.5 * 64 * MB


@linux_only
def test_the_sampler_catches_a_peak_freed_before_exit():
    with PeakMemory("cpu", interval_s=0.002) as pm:
        a = np.ones(64 * MB // 8)
        time.sleep(0.05)
        del a
        time.sleep(0.02)  # back near the entry level at exit
    assert pm.result()["bytes"] >= 0.8 * 64 * MB


def test_cuda_resets_at_entry_and_reads_the_peak_at_exit(monkeypatch):
    calls = []
    fake = {"synchronize": lambda d=None: calls.append("sync"),
            "reset_peak_memory_stats": lambda d=None: calls.append(("reset", d)),
            "memory_allocated": lambda d=None: 1000,
            "max_memory_allocated": lambda d=None: calls.append(("max", d)) or 5000}
    for name, fn in fake.items():
        monkeypatch.setattr(memory.torch.cuda, name, fn)
    with PeakMemory("cuda:0") as pm:
        assert ("reset", "cuda:0") in calls and ("max", "cuda:0") not in calls
    assert ("max", "cuda:0") in calls
    assert pm.result() == {"kind": "cuda_peak_allocated_above_entry", "bytes": 4000,
                           "peak_bytes": 5000, "baseline_bytes": 1000}


def test_without_proc_the_figure_is_unavailable(monkeypatch):
    monkeypatch.setattr(memory, "rss_bytes", lambda: None)
    with PeakMemory("cpu") as pm:
        pass
    r = pm.result()
    assert r["bytes"] is None and r["kind"].startswith("unavailable")
    with pytest.raises(ValueError, match="interval_s"):
        PeakMemory("cpu", interval_s=0)
