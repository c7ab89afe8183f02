"""scripts/gpu_bench.py at tiny sizes on the CPU, so that the prepared GPU check cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_bench.py"


def test_gpu_bench_smoke(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert rec["smoke"] and rec["device"].startswith("cpu")
    assert [(a["decoder"], a["batch"]) for a in rec["ar"]] == [
        ("greedy", 1), ("nucleus", 1), ("greedy", 4), ("nucleus", 4)]
    for a in rec["ar"]:
        assert a["tmbench_tokens_per_s"] > 0 and a["transformers_tokens_per_s"] > 0
        assert a["same_tokens"] is (True if a["decoder"] == "greedy" else None)
    assert [(t["batch"], t["guidance"]) for t in rec["tm"]] == [(1, 1.0), (1, 2.0), (4, 1.0),
                                                                (4, 2.0)]
    assert all(t["tm_ms_per_token"] > 0 and t["ar_ms_per_token"] > 0 and t["floor_ms"] > 0
               for t in rec["tm"])
    table = (tmp_path / "gpu_bench.md").read_text()
    assert "| greedy | 1 | bfloat16 |" in table and "| 4 | 4 | 2 | bf16 autocast |" in table


def test_gpu_bench_budget_skips_cases(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--budget-s", "0", "--out",
                        str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert all("skipped" in row for row in rec["ar"] + rec["tm"])
    assert "skipped: budget" in (tmp_path / "gpu_bench.md").read_text()
