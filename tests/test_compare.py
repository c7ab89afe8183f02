"""Paired comparisons against a named reference row: Holm, bootstrap p-values and intervals on
hand-computed cases, the suite's compare: field, and the differences table with the tables."""

import csv

import numpy as np
import pytest

from tmbench.cells import Cell, paired_bootstrap, stream
from tmbench.compare import bootstrap_p, counterpart, holm, paired_replicates
from tmbench.suites import load_suite


def test_holm_against_a_hand_computation():
    # m = 4 tests: sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.5;
    # monotone: 0.04, 0.09, 0.09, 0.5; the untested entry stays None
    assert holm([0.01, 0.04, 0.03, None, 0.5]) == pytest.approx([0.04, 0.09, 0.09, None, 0.5])
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert holm([0.9, 0.02]) == pytest.approx([0.9, 0.04])
    assert holm([None]) == [None] and holm([]) == []


def test_bootstrap_p_value_by_hand():
    assert bootstrap_p(np.full(99, 0.5)) == pytest.approx(2 * 1 / 100)  # no replicate <= 0
    assert bootstrap_p(np.array([-1.0, 1.0] * 50)) == 1.0
    # 9 of 99 replicates at or below 0: 2 (9 + 1) / 100
    assert bootstrap_p(np.array([-1.0] * 9 + [1.0] * 90)) == pytest.approx(0.2)


def _cell(values, kind="prompt"):
    return Cell(float(np.mean(values)), n=len(values), kind=kind,
                per_prompt={i: float(v) for i, v in enumerate(values)})


def test_paired_interval_is_the_leaderboards_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 2000):
        base = rng.normal(0, 1, n)  # a per-prompt effect both rows share: pairing removes it
        a, b = _cell(base + 0.3 + rng.normal(0, 0.2, n)), _cell(base)
        diff, reps, m = paired_replicates(a, b, stream("t", n))
        ref = paired_bootstrap(a, b, stream("t", n))
        lo, hi = np.percentile(reps, 2.5), np.percentile(reps, 97.5)
        assert m == n and diff == pytest.approx(ref.diff)
        assert (lo, hi) == pytest.approx((ref.lo, ref.hi))
        assert lo <= diff <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 5  # ~ 1 / sqrt(n): a tenth


def test_pooled_ratio_cells_pair_by_prompt():
    a = Cell(0.0, kind="ratio", parts={0: (2.0, 2.0), 1: (4.0, 2.0), 2: (3.0, 2.0)})
    b = Cell(0.0, kind="ratio", parts={0: (1.0, 2.0), 1: (1.0, 2.0), 2: (1.0, 2.0), 3: (9.0, 1.0)})
    diff, reps, n = paired_replicates(a, b, stream("r"))
    assert n == 3 and diff == pytest.approx(np.exp(9 / 6) - np.exp(3 / 6))
    assert reps.shape == (1000,)
    assert paired_replicates(Cell(1.0, kind="corpus"), b, stream("r")) is None


def test_corpus_keys_have_per_prompt_counterparts():
    cols = ["rep[n=2,unit=wordpunct]", "seq_rep[n=2,unit=wordpunct]",
            "distinct[n=2,scope=corpus,unit=wordpunct]", "distinct[n=2,scope=sample,unit=wordpunct]",
            "mauve[c=5]"]
    assert counterpart(cols[0], cols) == cols[1]
    assert counterpart(cols[2], cols) == cols[3]
    assert counterpart("mauve[c=5]", cols) is None


SUITE = """name: cmp-test
version: 1
dataset: {source: bbc, split: test, n_prompts: 4, prompt_len: 6, reference_len: 8}
max_new_tokens: 6
batch_size: 4
models: [toy-random]
metrics: [{name: repetition, params: {ns: [2], units: [wordpunct]}}]
decoders:
  - {name: greedy}
  - {name: nucleus, sweep: {p: [0.5]}}
"""


@pytest.mark.parametrize("compare,needle", [
    ("[{row: toy-random/nucleus-p0.5, to: ar-smollm2/greedy}]", "not in the suite's models"),
    ("[{row: toy-random/nucleus-0.5, to: toy-random/greedy}]", "accepted: greedy, nucleus-p0.5"),
    ("[{row: toy-random, to: toy-random/greedy}]", "is not MODEL/LABEL"),
    ("[{row: toy-random/greedy}]", "must be a mapping {row"),
    ("[{row: toy-random/greedy, to: toy-random/greedy}]", "with itself"),
    ("{row: toy-random/greedy}", "must be a list"),
])
def test_bad_compare_entries_name_the_problem(tmp_path, compare, needle):
    p = tmp_path / "s.yaml"
    p.write_text(SUITE + f"compare: {compare}\n")
    with pytest.raises(ValueError, match="compare") as e:
        load_suite(str(p))
    assert needle in str(e.value)


def test_differences_table_is_written_with_the_leaderboards(tmp_path, monkeypatch):
    from tmbench.leaderboard import write_leaderboards
    from tmbench.runner import Runner

    (tmp_path / "tasks").mkdir()
    path = tmp_path / "tasks" / "cmp-test.yaml"
    path.write_text(SUITE + "compare:\n  - {row: toy-random/nucleus-p0.5, to: toy-random/greedy}\n"
                            "  - {row: toy-random/greedy, to: human/reference}\n")
    monkeypatch.chdir(tmp_path)  # the suite is found by the name its records carry
    s = load_suite("cmp-test")
    assert s.compare == (("toy-random/nucleus-p0.5", "toy-random/greedy"),
                         ("toy-random/greedy", "human/reference"))
    Runner(s, tmp_path / "runs", progress=False, log=lambda *a: None).run()
    written = write_leaderboards(tmp_path / "runs", tmp_path / "lb", warn=pytest.fail)
    md = (tmp_path / "lb" / "cmp-test-v1.md").read_text()
    assert "toy-random/nucleus-p0.5 minus toy-random/greedy" in md
    assert "toy-random/greedy minus human/reference" in md
    diffs = tmp_path / "lb" / "cmp-test-v1-differences.csv"
    assert diffs in written
    rows = list(csv.DictReader(diffs.open()))
    tested = [r for r in rows if r["metric"] == "seq_rep[n=2,unit=wordpunct]"]
    assert len(tested) == 2 and all(r["n"] == "4" and r["p_holm"] for r in tested)
    assert all(not r["p"] for r in rows if r["metric"] == "rep[n=2,unit=wordpunct]")  # corpus-level
    html = (tmp_path / "lb" / "cmp-test-v1.html").read_text()
    assert "paired differences" in html
    # the paper table's differences follow the pairs (a human reference aside)
    from tmbench.leaderboard import paper_table

    paper = paper_table(tmp_path / "runs", "cmp-test", ("toy-random",), ("greedy", "nucleus-p0.5"))
    assert "Each row minus its reference in the suite's compare:" in paper
    assert "| toy-random | nucleus-p0.5 | toy-random/greedy |" in paper
    assert "human/reference |" not in paper
