"""The run lock: exactly one process holds a run folder, from scratch and over a stale lock file
(many processes racing for it), and SIGTERM stops a run cleanly, releasing it."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tmbench.results import RunLock

PROCS, TRIALS = 8, 500


def _contend(root: str, trials: int, barrier, out) -> None:
    """Race for the lock of trial folders 0..trials-1: all processes try at once (a barrier),
    and nobody releases until everyone has tried, so a correct lock has exactly one holder."""
    won = []
    for t in range(trials):
        lock = RunLock(Path(root) / str(t))
        barrier.wait()
        won.append(lock.acquire())
        barrier.wait()
        lock.release()
    out.put(won)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def holders_per_trial(root: Path, trials: int) -> list[int]:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(PROCS), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(root), trials, barrier, out))
             for _ in range(PROCS)]
    for p in procs:
        p.start()
    won = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return [sum(w[t] for w in won) for t in range(trials)]


@pytest.mark.slow
@pytest.mark.parametrize("stale", [False, True], ids=["from-scratch", "stale-lock"])
def test_exactly_one_of_many_processes_holds_the_lock(tmp_path, stale):
    """8 processes x 500 races (before flock: 1-13 races with two holders from scratch, 2-34
    over a stale lock file, varying with the machine's load)."""
    if stale:  # each folder holds the lock file of a process that died
        pid = dead_pid()
        for t in range(TRIALS):
            (tmp_path / str(t)).mkdir()
            (tmp_path / str(t) / ".lock").write_text(str(pid))
    counts = holders_per_trial(tmp_path, TRIALS)
    double = sum(c > 1 for c in counts)
    assert double == 0, f"{double} of {TRIALS} trials had two or more holders"
    assert all(c == 1 for c in counts), counts
    assert not list(tmp_path.rglob(".lock"))  # released locks leave no file


@pytest.mark.parametrize("content", ["", "dead"], ids=["pid-not-yet-written", "dead-pid"])
def test_a_held_lock_is_never_taken_over_whatever_its_file_says(tmp_path, content):
    """The two ways two processes came to hold one lock: the file read before its holder wrote
    its pid (empty), or a stale lock taken over twice (the second taker reads a dead pid while
    the first already holds it). The kernel's lock decides, not the file's content."""
    a, b = RunLock(tmp_path), RunLock(tmp_path)
    assert a.acquire()
    (tmp_path / ".lock").write_text(str(dead_pid()) if content else "")
    assert not b.acquire()
    a.release()
    assert b.acquire()
    b.release()


def test_a_held_lock_names_its_owner_and_is_released(tmp_path):
    a, b = RunLock(tmp_path), RunLock(tmp_path)
    assert a.acquire() and not b.acquire()
    assert b.owner() == os.getpid()
    a.release()
    assert not (tmp_path / ".lock").exists()
    assert b.acquire()
    b.release()


def test_lock_without_fcntl_writes_its_pid_before_the_file_appears(tmp_path, monkeypatch):
    """Where fcntl is missing, the lock file is created with its pid already inside (a hard
    link of a written temp file), so nobody reads it empty and takes it for stale."""
    import tmbench.results as results

    monkeypatch.setattr(results, "fcntl", None)
    a, b = RunLock(tmp_path), RunLock(tmp_path)
    assert a.acquire() and (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not b.acquire()
    a.release()
    (tmp_path / ".lock").write_text(str(dead_pid()))  # stale: taken over
    assert b.acquire()
    b.release()
    assert not list(tmp_path.iterdir())


SLOW_SUITE = """name: term
version: 1
dataset: {source: bbc, split: test, n_prompts: 48, prompt_len: 6, reference_len: 12}
max_new_tokens: 8
batch_size: 1
seeds: [0]
models: [toy-random]
human_row: false
decoders: [{name: greedy, label: greedy}]
metrics: [{name: repetition}]
"""


@pytest.mark.slow
def test_sigterm_stops_cleanly_releases_the_lock_and_the_rerun_resumes(tmp_path):
    (tmp_path / "s.yaml").write_text(SLOW_SUITE)
    args = [sys.executable, "-m", "tmbench", "run", "--suite", "s.yaml", "--out", "runs",
            "--no-progress", "--threads", "1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("TMBENCH_FAULT", None)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not any(p.stat().st_size for p in (tmp_path / "runs").glob("*/v*/*/partial.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last == ("tmbench: run toy-random/greedy seed 0 interrupted by SIGTERM; its finished "
                    "batches are kept, and rerunning the same command resumes it"), err[-2000:]
    (folder,) = (tmp_path / "runs").glob("*/v*/*")
    assert not (folder / ".lock").exists() and not (folder / "record.json").exists()
    assert (folder / "partial.jsonl").exists()
    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming toy-random/greedy seed 0: " in again.stderr
    import json

    rec = json.loads((folder / "record.json").read_text())
    assert [s["prompt_index"] for s in rec["samples"]] == list(range(48))
    assert sorted(p.name for p in folder.iterdir()) == ["record.json"]


def test_sigterm_raises_terminated_inside_the_block_only():
    from tmbench.interrupt import Terminated, exit_status, message, sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as e:
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before
    assert exit_status(e.value) == 143 and exit_status(KeyboardInterrupt()) == 130
    e.value.run = "m/greedy seed 0"
    assert message(e.value, "run").startswith("tmbench: run m/greedy seed 0 interrupted by SIGTERM")
    assert message(KeyboardInterrupt(), "train") == "tmbench: train interrupted by SIGINT (Ctrl-C)"
