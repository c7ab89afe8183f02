"""Progress for long work: ``tmbench run`` shows one bar for the whole suite (runs done / total,
generated tokens/s, ETA) besides the per-run bar of batches, and ends with a table of every run
and what happened to it. A tiny suite on the toy model, in a temporary folder."""

import io
import re

import pytest
import tqdm.auto

from helpers import run_tmbench
from tmbench.runner import Runner
from tmbench.suites import load_suite

SUITE = """name: progress
version: 1
dataset: {source: bbc, split: test, n_prompts: 4, prompt_len: 6, reference_len: 12}
max_new_tokens: 4
batch_size: 2
seeds: [0, 1]
models: [toy-random]
decoders:
  - {name: greedy, label: greedy, seeds: [0]}
  - {name: nucleus, label: nucleus-0.9, params: {p: 0.9}}
metrics: [{name: repetition}]
"""
# The human row, greedy seed 0, nucleus-0.9 seeds 0 and 1.
RUNS = [("human", "reference", 0), ("toy-random", "greedy", 0), ("toy-random", "nucleus-0.9", 0),
        ("toy-random", "nucleus-0.9", 1)]


@pytest.fixture
def suite_file(tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE)
    return tmp_path / "s.yaml"


@pytest.fixture
def bars(monkeypatch):
    """Every tqdm bar the run opens (the stages import ``tqdm.auto.tqdm`` when called), drawn
    into one string buffer instead of the terminal."""
    stream, made = io.StringIO(), []

    class Recorded(tqdm.auto.tqdm):
        def __init__(self, *a, **kw):
            super().__init__(*a, **{**kw, "file": stream, "mininterval": 0})
            made.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    return made, stream


def _suite_bar(made):
    (bar,) = [b for b in made if b.desc.startswith("suite ")]
    return bar


def test_suite_bar_counts_the_planned_runs_and_shows_tokens_per_second(suite_file, tmp_path, bars,
                                                                        one_thread):
    made, stream = bars
    runner = Runner(load_suite(str(suite_file)), tmp_path / "runs", log=lambda *a: None)
    planned = runner.plan()
    assert [(r["model"], r["decoder"], r["seed"]) for r in planned] == RUNS

    summary = runner.run()
    bar = _suite_bar(made)
    assert bar.desc == "suite progress v1" and bar.unit == "run"
    assert bar.total == len(planned) and bar.n == bar.total
    tok_s = float(re.fullmatch(r"tok_s=([\d.]+)", bar.postfix).group(1))
    assert tok_s > 0
    # one per-run bar of batches for each generated run: 4 prompts in batches of 2
    per_run = [b for b in made if b is not bar]
    assert len(per_run) == 3 and all(b.total == 2 and b.n == 2 for b in per_run)

    drawn = stream.getvalue()
    assert f"{len(planned)}/{len(planned)}" in drawn and "tok_s=" in drawn
    assert [(r["model"], r["decoder"], r["seed"], r["status"]) for r in summary.rows] == \
        [(*r, "written") for r in RUNS]
    generated = sum(r["tokens"] for r in summary.rows if r["model"] != "human")
    assert generated == 3 * 4 * 4  # runs x prompts x max_new_tokens (the toy model has no EOS)

    # Again: every run is found complete, the bar still reaches the total, nothing is generated.
    made.clear()
    again = runner.run()
    bar = _suite_bar(made)
    assert bar.total == bar.n == len(planned)
    assert [r["status"] for r in again.rows] == ["complete"] * len(RUNS)
    assert all(r["tokens"] == 0 for r in again.rows)


def _table(stdout: str) -> list[list[str]]:
    """The summary table's rows (header first), split on runs of two or more spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "decoder"])
    rows = []
    for line in lines[start:]:
        if line.startswith("suite "):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_cli_draws_the_suite_bar_and_prints_a_summary_of_every_run(suite_file, tmp_path):
    r = run_tmbench(["run", "--suite", suite_file.name, "--out", "res"], cwd=tmp_path)
    # tqdm redraws its line with carriage returns: the last drawing of the suite bar is final
    drawn = [s for s in re.split(r"[\r\n]", r.stderr) if s.startswith("suite progress v1")]
    assert drawn, r.stderr[-2000:]
    n = len(RUNS)
    assert all(f"/{n} " in s for s in drawn)  # the total is the number of planned runs
    last = drawn[-1]
    assert "100%" in last and f"{n}/{n}" in last, last
    assert float(re.search(r"tok_s=([\d.]+)", last).group(1)) > 0, last

    head, *rows = _table(r.stdout)
    assert head == ["model", "decoder", "seed", "status", "tokens", "gen s", "score s", "tok/s"]
    assert [tuple(x[:4]) for x in rows] == [(m, d, str(s), "written") for m, d, s in RUNS]
    for x in rows[1:]:  # generated runs: their tokens and a rate
        assert int(x[4]) == 16 and float(x[7]) > 0, x
    assert "suite progress v1: 4 run(s) written" in r.stdout
