"""Environment capture for run records and the machine fingerprint for throughput rows."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from tmbench.fileio import sha256_text
from tmbench.versions import dist_version



def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def fingerprint(device: str, peaks: bool = False) -> dict[str, Any]:
    """What must match for two throughput numbers to be comparable; with ``peaks``, also the
    machine's measured peak FLOP/s and bandwidth (:func:`tmbench.peaks.machine_peaks`, measured
    once per fingerprint id and cached), which are not part of the id."""
    fp = {
        "device_type": device.split(":")[0],
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    fp["id"] = sha256_text(repr(sorted(fp.items())))[:12]
    if peaks:
        from tmbench.peaks import machine_peaks

        fp["peaks"] = machine_peaks(device, fp["id"])
    return fp


def environment(device: str, peaks: bool = False) -> dict[str, Any]:
    import tmbench

    return {
        "tmbench": tmbench.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: dist_version(p, missing=None) for p in ("torch", "transformers", "tokenizers", "lm_eval",
                                              "mauve-text", "nltk", "datasets", "numpy")},
        "fingerprint": fingerprint(device, peaks),
    }
