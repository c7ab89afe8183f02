"""The machine's own peaks for the roofline of throughput rows, measured once per fingerprint.

Two micro-benchmarks, a few seconds in all: matrix-multiply FLOP/s per dtype (square products
large enough to be compute-bound: 2 n^3 FLOPs over 3 n^2 elements moved; float32, bfloat16
where the CPU has native bfloat16 instructions, and float16 as well on CUDA) and memory
bandwidth (a copy of a tensor several times the last-level cache, bytes read + written per
second, and a sum of it, bytes read per second; the larger is the bandwidth). Each is the best
of a few timed repeats after a warm-up. The peaks are cached under the tmbench cache
(``$TMBENCH_CACHE``, else ``~/.cache/tmbench``) by fingerprint id, as a checked array
(:mod:`tmbench.cache`), so a second run on the same machine does not measure again; delete
``peaks/<id>-v1.npy`` there to measure again (e.g. after a run on a loaded machine).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tmbench.cache import cache_root, load_array, save_array

VERSION = 1  # of the measurement: a changed one is a new cache file
DTYPES = ("float32", "bfloat16", "float16")
FIELDS = tuple(f"flops_{d}" for d in DTYPES) + ("copy_bandwidth", "read_bandwidth")
# (matmul side n, elements of the bandwidth tensor, repeats) per device type
SIZES = {"cpu": (1024, 2 ** 25, 5), "cuda": (8192, 2 ** 28, 10)}


def cpu_has_bf16() -> bool:
    """Native bfloat16 arithmetic (x86 AVX512-BF16 or AMX-BF16, Arm BF16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def _best(fn: Callable[[], None], repeats: int, sync: Callable[[], None], budget_s: float) -> float:
    """Seconds of the fastest of ``repeats`` calls after one warm-up call (fewer when the
    calls, warm-up included, pass ``budget_s``: a loaded machine stays within seconds)."""
    t0 = time.perf_counter()
    fn()
    sync()
    best, spent = math.inf, time.perf_counter() - t0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def measure(device: str, n: int | None = None, elems: int | None = None,
            repeats: int | None = None, budget_s: float = 0.3) -> dict[str, float | None]:
    """Peak FLOP/s per dtype (None where not measured) and bandwidths in bytes/s on ``device``;
    ``n``, ``elems``, ``repeats`` override the device type's sizes (tests)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    dn, de, dr = SIZES[kind]
    n, elems, repeats = n or dn, elems or de, repeats or dr
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if kind == "cuda" else (lambda: None)
    out: dict[str, float | None] = dict.fromkeys(FIELDS)
    chain = 4 if kind == "cuda" else 1  # products per timed call: launches amortised on a GPU
    g = torch.Generator().manual_seed(0)
    for name in DTYPES:
        if name == "float16" and kind == "cpu" or name == "bfloat16" and kind == "cpu" and not cpu_has_bf16():
            continue
        dt = getattr(torch, name)
        a = torch.randn(n, n, generator=g).to(dev, dt)
        b = torch.randn(n, n, generator=g).to(dev, dt)
        c = torch.empty(n, n, device=dev, dtype=dt)

        def mm() -> None:
            for _ in range(chain):
                torch.mm(a, b, out=c)

        with torch.inference_mode():
            out[f"flops_{name}"] = chain * 2 * n ** 3 / _best(mm, repeats, sync, budget_s)
        del a, b, c
    src = torch.ones(elems, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    nbytes = src.numel() * src.element_size()
    with torch.inference_mode():
        out["copy_bandwidth"] = 2 * nbytes / _best(lambda: dst.copy_(src), repeats, sync, budget_s)
        out["read_bandwidth"] = nbytes / _best(lambda: src.sum(), repeats, sync, budget_s)
    return out


def describe(device: str) -> str:
    n, elems, repeats = SIZES["cuda" if device.startswith("cuda") else "cpu"]
    return (f"v{VERSION}: best of {repeats} after a warm-up; matmul {n}x{n} (2 n^3 FLOPs); "
            f"copy of {elems * 4 // 2 ** 20} MiB float32 (bytes read + written) and sum of it "
            "(bytes read); bandwidth = the larger")


def machine_peaks(device: str, fingerprint_id: str, cache: Path | None = None,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The peaks of the machine ``fingerprint_id`` names: from the cache, or measured now (once)
    and cached. ``{"flops": {dtype: FLOP/s}, "bandwidth", "copy_bandwidth", "read_bandwidth"
    (bytes/s), "how"}``."""
    if cache is None:
        cache = cache_root()
    log = log or (lambda m: print(m, file=sys.stderr))  # stdout may be a --json answer
    path = Path(cache) / "peaks" / f"{fingerprint_id}-v{VERSION}.npy"
    arr = load_array(path, warn=log)
    if arr is None or arr.shape != (len(FIELDS),):
        log(f"measuring this machine's peak FLOP/s and memory bandwidth on {device} "
            f"(once per machine; cached in {path}) ...")
        got = measure(device)
        arr = np.array([math.nan if got[f] is None else got[f] for f in FIELDS], dtype=np.float64)
        save_array(path, arr)
    v = {f: None if math.isnan(x) else float(x) for f, x in zip(FIELDS, arr.tolist())}
    return {"flops": {d: v[f"flops_{d}"] for d in DTYPES if v[f"flops_{d}"] is not None},
            "bandwidth": max(v["copy_bandwidth"], v["read_bandwidth"]),
            "copy_bandwidth": v["copy_bandwidth"], "read_bandwidth": v["read_bandwidth"],
            "how": describe(device)}
