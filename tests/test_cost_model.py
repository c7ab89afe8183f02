"""The committed cost-model report is what ``scripts/cost_model.py report`` makes of the committed
points and records (slow: it plans the ``full`` suite, about a minute)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_committed_cost_report_is_reproduced():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "cost_model.py"), "report",
                        "--out", str(ROOT / "results" / "cost"),
                        "--records", str(ROOT / "results" / "runs")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == (ROOT / "results" / "cost" / "model.md").read_text()
