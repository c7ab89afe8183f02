"""Kill -9 at several points, resume, and get exactly the uninterrupted result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_tmbench

SUITE = """name: kill
version: 1
dataset: {source: bbc, split: test, n_prompts: 6, prompt_len: 6, reference_len: 12}
max_new_tokens: 6
batch_size: 2
seeds: [0]
models: [toy-random]
decoders: [{name: greedy, label: greedy}, {name: top_k, label: top-k, params: {k: 20}}]
metrics: [{name: repetition}]
"""


def cli(args, cwd, fault=None, check=True):
    return run_tmbench(args, cwd, fault=fault, check=check)


def content(root: Path) -> dict:
    out = {}
    for p in sorted(root.glob("*/v*/*/record.json")):
        rec = json.loads(p.read_text())
        out[rec["key"]] = ([s["token_ids"] for s in rec["samples"]], [s["text"] for s in rec["samples"]],
                           {k: (m["value"], m["per_sample"]) for k, m in rec["metrics"].items()})
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    (tmp / "s.yaml").write_text(SUITE)
    cli(["run", "--suite", "s.yaml", "--out", "runs", "--no-progress", "--threads", "1"], tmp)
    return content(tmp / "runs")


@pytest.mark.parametrize("fault", ["batch:2", "scoring:1", "record:2", "batch:4"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, reference, fault):
    (tmp_path / "s.yaml").write_text(SUITE)
    args = ["run", "--suite", "s.yaml", "--out", "runs", "--no-progress", "--threads", "1"]
    r = cli(args, tmp_path, fault=fault, check=False)
    assert r.returncode == -9, r.stderr[-2000:]
    # whatever was left is never taken as complete: every record.json present is valid
    from tmbench.results import read_record

    for p in (tmp_path / "runs").glob("*/v*/*/record.json"):
        read_record(p)
    assert len(content(tmp_path / "runs")) < len(reference)
    cli(args, tmp_path)
    assert content(tmp_path / "runs") == reference
    leftovers = [p.name for p in (tmp_path / "runs").rglob("*") if p.is_file() and p.name != "record.json"]
    assert all(n.startswith(".record.json.") for n in leftovers), leftovers  # only dead temp files


def test_two_processes_share_a_results_directory(tmp_path, reference):
    (tmp_path / "s.yaml").write_text(SUITE)
    args = [sys.executable, "-m", "tmbench", "run", "--suite", "s.yaml", "--out", "runs",
            "--no-progress", "--threads", "1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("TMBENCH_FAULT", None)
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read().decode()[-2000:]
    assert content(tmp_path / "runs") == reference
    assert not list((tmp_path / "runs").rglob(".lock"))


def test_training_killed_after_a_checkpoint_resumes_to_the_same_model(tmp_path):
    import torch

    from tmbench.checkpoint import load_tensors

    args = ["train", "test", "--kind", "tm", "--steps", "6", "--threads", "1", "--no-progress",
            "--set", "ckpt_every=2", "--set", "eval_every=6"]
    cli([*args, "--out", "whole"], tmp_path)
    r = cli([*args, "--out", "cut"], tmp_path, fault="checkpoint:2", check=False)
    assert r.returncode == -9
    assert not (tmp_path / "cut" / "final").exists()
    cli([*args, "--out", "cut", "--resume"], tmp_path)
    a = load_tensors(tmp_path / "whole" / "final" / "model.safetensors")
    b = load_tensors(tmp_path / "cut" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_in_tm_vectors_stops_with_model_step_and_rows():
    import torch

    from tmbench.backbones.gpt import GPT, GPTConfig
    from tmbench.models.base import NonFiniteError
    from tmbench.tm.decode import maturation
    from tmbench.tm.model import MaturationModel, TMConfig

    torch.manual_seed(0)
    tm = MaturationModel(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32)),
                         TMConfig(vocab_size=40, k_max=4)).eval()
    with torch.no_grad():
        for p in tm.parameters():
            if p.dim() == 2 and p.shape[0] == 16 and p.shape[1] == 16:
                p.fill_(float("nan"))
                break
    with pytest.raises(NonFiniteError, match="produced NaN/inf in the tail predictions at maturation step 0"):
        maturation(tm, [[1, 2, 3], [4, 5]], max_new_tokens=3, generator=torch.Generator(), tail_len=4)


RESIZE = """name: resize
version: 1
dataset: {source: bbc, split: test, n_prompts: 32, prompt_len: 6, reference_len: 12}
max_new_tokens: 4
batch_size: BS
seeds: [0]
models: [toy-random]
human_row: false
decoders: [{name: top_k, label: top-k, params: {k: 20}}]
metrics: [{name: repetition}]
"""


@pytest.fixture(scope="module")
def resize_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resize")
    (tmp / "s.yaml").write_text(RESIZE.replace("BS", "8"))
    cli(["run", "--suite", "s.yaml", "--out", "runs", "--no-progress", "--threads", "1"], tmp)
    return content(tmp / "runs")


@pytest.mark.slow
@pytest.mark.parametrize("before,fault,after", [(4, "batch:2", 8), (8, "batch:1", 3),
                                                (5, "batch:3", 7)])
def test_resume_at_another_batch_size_generates_exactly_the_missing_prompts(
        tmp_path, resize_reference, before, fault, after):
    """The run key leaves out the batch size where it cannot change tokens, so a run cut at one
    batch size resumes at another: it generates exactly the prompts the partial file lacks, and
    the record equals a clean run's (every prompt once, in order)."""
    args = ["run", "--suite", "s.yaml", "--out", "runs", "--no-progress", "--threads", "1"]
    (tmp_path / "s.yaml").write_text(RESIZE.replace("BS", str(before)))
    assert cli(args, tmp_path, fault=fault, check=False).returncode == -9
    (tmp_path / "s.yaml").write_text(RESIZE.replace("BS", str(after)))
    cli(args, tmp_path)
    (path,) = (tmp_path / "runs").glob("*/v*/*/record.json")
    rec = json.loads(path.read_text())
    assert [s["prompt_index"] for s in rec["samples"]] == list(range(32))
    assert content(tmp_path / "runs") == resize_reference
