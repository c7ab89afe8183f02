"""Fault injection for the reliability tests.

``TMBENCH_FAULT=<point>:<n>`` makes the process SIGKILL itself the n-th time it reaches the
named point (1-based). Points: ``batch`` (a batch was appended to the partial file),
``scoring`` (generation finished, before metrics), ``record`` (the record's temp file is
written and synced, before the rename), ``checkpoint`` (training checkpoint written). Unset
in normal use, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get("TMBENCH_FAULT")
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
