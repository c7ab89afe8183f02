"""torchrun with the gloo backend, 2 processes on CPU: generation equals a single process;
and the process-group set-up outside torchrun."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from helpers import run_tmbench

SUITE = """name: dist
version: 1
dataset: {source: bbc, split: test, n_prompts: 5, prompt_len: 6, reference_len: 12}
max_new_tokens: 6
batch_size: 2
seeds: [3]
models: [toy-random]
decoders: [{name: sample, label: sample}, {name: greedy, label: greedy}]
metrics: [{name: repetition}]
human_row: false
"""


def tokens(root: Path) -> dict:
    out = {}
    for p in sorted(root.glob("*/v*/*/record.json")):
        rec = json.loads(p.read_text())
        out[rec["key"]] = ([s["token_ids"] for s in rec["samples"]],
                           {k: m["value"] for k, m in rec["metrics"].items()})
    return out


def run(cmd, cwd):
    """cmd = [python, *rest]: run ``rest`` with the test environment, assert success."""
    return run_tmbench(cmd[1:], cwd, module=())


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not found")
def test_two_process_generation_equals_single_process(tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE)
    base = [sys.executable, "-m", "tmbench", "run", "--suite", "s.yaml", "--no-progress", "--threads", "1"]
    run(base + ["--out", "single"], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "tmbench", "run", "--suite", "s.yaml", "--no-progress", "--threads", "1"]
    run(torchrun + ["--out", "multi"], tmp_path)
    single, multi = tokens(tmp_path / "single"), tokens(tmp_path / "multi")
    assert len(single) == 2 and single == multi
    # Resume per shard: a second torchrun run finds everything complete.
    r = run(torchrun + ["--out", "multi", "--json"], tmp_path)
    assert json.loads(r.stdout)["skipped_complete"] == 2


@pytest.mark.parametrize("kind", ["ar", "tm"])
def test_two_process_training_matches_one_process(tmp_path, kind):
    """Same global batch (8): 2 ranks x 4 rows under DDP equal 1 process x 8 rows. For TM the
    2-process run stops at step 3 and a single process resumes it (any world size resumes)."""
    import torch

    from tmbench.checkpoint import load_tensors

    args = ["train", "test", "--kind", kind, "--steps", "6", "--threads", "1", "--no-progress",
            "--set", "ckpt_every=3", "--set", "eval_every=6"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run([sys.executable, "-m", "tmbench", *args, "--out", "one"], tmp_path)
    if kind == "ar":
        run([*torchrun, "-m", "tmbench", *args, "--out", "two"], tmp_path)
    else:
        run([*torchrun, "-m", "tmbench", *args, "--out", "two", "--stop-at", "3"], tmp_path)
        assert not (tmp_path / "two" / "final").exists()
        run([sys.executable, "-m", "tmbench", *args, "--out", "two", "--resume"], tmp_path)
    a = load_tensors(tmp_path / "one" / "final" / "model.safetensors")
    b = load_tensors(tmp_path / "two" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_init_distributed_outside_torchrun(monkeypatch):
    from tmbench.distributed import dist_info, init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == "cpu" and dist_info() == (0, 1)
