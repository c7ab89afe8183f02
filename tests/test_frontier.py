"""Frontiers on hand-computed cases: Pareto sets, interpolation, matched-quality verdicts with
their bootstrap intervals, the figures and their captions."""

import math

import numpy as np
import pytest

from tmbench.aggregate import Cell, Row, Table
from tmbench.frontier import (DIVERSITY, QUALITY, axes, dominates, interpolate, match_family,
                              matched, overall, pareto)

PPL = "gen_ppl[agg=pooled,judge=j]"
DIST = "distinct[n=2,scope=sample,unit=wordpunct]"
N = 40  # prompts


def test_pareto_set_of_a_few_points():
    # (quality, diversity), higher is better on both
    pts = [(1, 5), (2, 4), (3, 1), (1.5, 3), (3, 0.5), (2, 4)]
    # (1.5, 3) is beaten by (2, 4); (3, 0.5) by (3, 1); the two (2, 4) tie and both stay
    assert pareto(pts) == [0, 1, 5, 2]
    assert dominates((1, 2), (1, 1)) and not dominates((1, 1), (1, 1))
    assert pareto([(0, 0)]) == [0]


def test_linear_interpolation_between_frontier_points():
    front = [(1, 5), (2, 4), (3, 1)]
    assert interpolate(front, 2.5) == pytest.approx(2.5)  # 4 + (1 - 4) * 0.5
    assert interpolate(front, 1.25) == pytest.approx(4.75)
    assert interpolate(front, 1) == 5 and interpolate(front, 3) == 1
    assert interpolate(front, 0.5) is None and interpolate(front, 3.5) is None  # no extrapolation
    assert interpolate([(2, 4)], 2) == 4 and interpolate([(2, 4)], 2.1) is None


def _cell(values):
    v = np.asarray(values, dtype=float)
    return Cell(float(v.mean()), n=len(v), per_prompt={i: float(x) for i, x in enumerate(v)})


def _ppl_cell(ppl):
    """A pooled gen-ppl cell: per prompt 10 tokens with NLL 10 ln(ppl_i)."""
    ppl = np.broadcast_to(np.asarray(ppl, dtype=float), (N,))
    parts = {i: (10 * math.log(p), 10.0) for i, p in enumerate(ppl)}
    return Cell(float(math.exp(sum(a for a, _ in parts.values()) / (10.0 * N))), n=N,
                kind="ratio", parts=parts)


def _row(model, label, family, ppl, dist):
    d = np.broadcast_to(np.asarray(dist, dtype=float), (N,))
    return Row(model, label, {}, 1, family, cells={PPL: _ppl_cell(ppl), DIST: _cell(d)},
               key=f"{model}/{label}", config={"label": label, "n": N})


def _axes():
    t = Table("s", 1, [PPL, DIST], {}, [])
    (qa, qk), (da, dk) = axes(t, QUALITY)[0], axes(t, DIVERSITY)[0]
    assert (qa.name, da.name) == ("gen-ppl", "Dist-2 (sample)")
    return qa, qk, da, dk


# the family: gen-ppl 10 at Dist-2 0.8 and gen-ppl 20 at Dist-2 0.9 (lower gen-ppl is better),
# so its frontier at gen-ppl 15 has Dist-2 0.85
FAMILY = [_row("ar", "t-low", "sample", 10, 0.8), _row("ar", "t-high", "sample", 20, 0.9)]


def test_matched_quality_verdicts_by_hand():
    qa, qk, da, dk = _axes()
    beyond = match_family(_row("tm", "a", "maturation", 15, 0.95), FAMILY, qa, qk, da, dk)
    assert beyond.verdict == "dominates" and beyond.at == pytest.approx(0.85)
    assert beyond.diff == pytest.approx(0.10) and beyond.lo == pytest.approx(0.10)
    assert beyond.frontier == ["ar/t-high", "ar/t-low"] and beyond.agreement == 1.0
    # Dist-2 0.80 and 0.90 on alternate prompts: mean 0.85, on the frontier
    on = match_family(_row("tm", "b", "maturation", 15, [0.8, 0.9] * (N // 2)), FAMILY,
                      qa, qk, da, dk)
    assert on.verdict == "on the frontier" and on.diff == pytest.approx(0.0, abs=1e-12)
    assert on.lo < 0 < on.hi and on.evidence.startswith("95% interval")
    behind = match_family(_row("tm", "c", "maturation", 15, 0.83), FAMILY, qa, qk, da, dk)
    assert behind.verdict == "dominated" and behind.diff == pytest.approx(-0.02)
    beaten = match_family(_row("tm", "d", "maturation", 12, 0.7), FAMILY, qa, qk, da, dk)
    assert beaten.verdict == "dominated" and beaten.evidence == "dominated by ar/t-low"
    better = match_family(_row("tm", "e", "maturation", 9, 0.85), FAMILY, qa, qk, da, dk)
    assert better.verdict == "dominates" and "dominates ar/t-low" in better.evidence
    aside = match_family(_row("tm", "f", "maturation", 25, 0.95), FAMILY, qa, qk, da, dk)
    assert aside.verdict == "not comparable" and aside.at is None


def test_matched_interval_holds_the_difference_and_shrinks_with_prompts():
    qa, qk, da, dk = _axes()
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 320):
        global N
        N, old = n, N
        try:
            fam = [_row("ar", "t-low", "sample", 10, 0.8), _row("ar", "t-high", "sample", 20, 0.9)]
            row = _row("tm", "a", "maturation", 15, 0.9 + rng.normal(0, 0.05, n))
            m = match_family(row, fam, qa, qk, da, dk)
        finally:
            N = old
        assert m.lo <= m.diff <= m.hi
        widths.append(m.hi - m.lo)
    assert widths[1] < widths[0] / 2.5  # ~ 1 / sqrt(n): a quarter


def test_overall_verdict_over_families():
    assert overall(["dominates", "not comparable"]) == "dominates"
    assert overall(["dominates", "on the frontier"]) == "on the frontier"
    assert overall(["dominates", "dominated"]) == "dominated"
    assert overall(["not comparable"]) == "not comparable"


def _table(human=True):
    rows = [*FAMILY, _row("tm", "a", "maturation", 15, 0.95)]
    if human:
        rows.insert(0, Row("human", "reference", {}, 0, "reference",
                           cells={PPL: _ppl_cell(18), DIST: _cell([0.97] * N)}, key="h",
                           config={"label": "reference", "n": N}))
    return Table("s", 1, [PPL, DIST], {PPL: "", DIST: "↑"}, rows)


def test_matched_leaves_the_row_out_of_its_own_families():
    t = _table()
    got = matched(t, t.rows[-1], ["ar", "tm"])
    assert len(got) == 1 and [f.family for f in got[0].families] == ["sample"]
    assert got[0].verdict == "dominates"


def test_figures_svg_and_png_and_a_caption_that_promises_a_human_point_only_with_one(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from tmbench.frontier_report import caption, figure, views, write_figures

    assert views(_table(), (("tm/a", "ar/t-low"),)) == [["tm", "ar"]]
    assert views(_table(), ()) == [["ar"], ["tm"]]
    fig, has_human = figure(_table(), ["tm", "ar"])
    labels = {t.get_text() for t in fig.findobj(matplotlib.text.Text)}
    assert has_human and {"gen-ppl ↓", "Dist-2 (sample) ↑", "human"} <= labels
    _, no_human = figure(_table(human=False), ["tm", "ar"])
    assert not no_human and "star" not in caption(no_human) and "star" in caption(has_human)
    written = write_figures(_table(), tmp_path, (("tm/a", "ar/t-low"),))
    assert [p.name for p in written] == ["s-v1-frontier-tm-vs-ar.svg", "s-v1-frontier-tm-vs-ar.png"]
    first = written[0].read_text()
    assert write_figures(_table(), tmp_path, (("tm/a", "ar/t-low"),)) and written[0].read_text() == first


SUITE = """name: frontier-test
version: 1
dataset: {source: bbc, split: test, n_prompts: 4, prompt_len: 6, reference_len: 12}
max_new_tokens: 8
batch_size: 4
models: [toy-random]
metrics: [{name: repetition}, {name: diversity}, {name: test_fake_ppl}]
decoders:
  - {name: greedy}
  - {name: nucleus, sweep: {p: [0.5, 0.9]}}
compare:
  - {row: toy-random/greedy, to: toy-random/nucleus-p0.9}
"""


def test_frontier_command_and_report_section(tmp_path, monkeypatch, capsys):
    import json

    from tmbench.cli import main
    from tmbench.registry import register_metric
    from tmbench.report import build_report
    from tmbench.runner import Runner
    from tmbench.suites import load_suite
    from tmbench.types import Score, metric_key

    @register_metric("test_fake_ppl")
    def fake_ppl(samples, *, ctx):
        """A per-sample stand-in for a judge's perplexity (every row has it, the human row too)."""
        per = [1.0 + len(set(s.text.split())) for s in samples]
        return {metric_key("gen_ppl", agg="pooled", judge="none"): Score(float(np.mean(per)), per, None, {})}

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "frontier-test.yaml").write_text(SUITE)
    monkeypatch.chdir(tmp_path)  # the suite is found by the name its records carry
    Runner(load_suite("frontier-test"), tmp_path / "runs", progress=False, log=lambda *a: None).run()
    capsys.readouterr()
    assert main(["frontier", "--out", "runs", "--dest", "fig", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)[0]
    assert [m["row"] for m in got["matched"]][:1] == ["toy-random/greedy"]
    assert {f["family"] for m in got["matched"] for f in m["families"]} == {"nucleus"}
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "frontier-test-v1-frontier-toy-random.png", "frontier-test-v1-frontier-toy-random.svg"]
    assert main(["frontier", "--out", "runs", "--row", "toy-random/nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'toy-random/nope' is the row of no table" in err and "toy-random/greedy" in err
    assert len(err.splitlines()) == 1
    page = build_report(tmp_path / "runs", tmp_path / "report.html").read_text()
    for head in ("Quality-diversity frontiers", "Matched quality", "Paired differences"):
        assert head in page
    # a suite run row by row: a compare: pair whose row has no records yet is left out of the
    # matched-quality section, the rest of the report stands
    (tmp_path / "tasks" / "frontier-test.yaml").write_text(SUITE.replace(
        "  - {name: greedy}\n", "  - {name: greedy}\n  - {name: greedy, label: later, params: {repetition_penalty: 1.3}}\n")
        + "  - {row: toy-random/later, to: toy-random/greedy}\n")
    page = build_report(tmp_path / "runs", tmp_path / "report2.html").read_text()
    matched_section = page.split("Matched quality")[1].split("Paired differences")[0]
    assert "toy-random/greedy" in matched_section and "toy-random/later" not in matched_section
    assert main(["frontier", "--out", "runs", "--dest", "fig"]) == 0
