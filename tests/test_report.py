import itertools
import re
import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import urlencode

import numpy as np
import pytest

from helpers import argmax_tokens
from tmbench.leaderboard import build_tables
from tmbench.registry import register_decoder, register_metric
from tmbench.render import WORD, find_column
from tmbench.report import DPI, build_report, figures, scatter
from tmbench.runner import Runner
from tmbench.suites import load_suite
from tmbench.types import DecodeOutput, Score, model_kind


@register_decoder("test_traced")
@model_kind("ar")
def traced(model, prompts, *, max_new_tokens, generator, tail_len: int = 4):
    toks = argmax_tokens(model, prompts, max_new_tokens)
    K = tail_len
    trace = {"entropy": {"1": [[5.0 - 0.5 * i for i in range(K)]] * max_new_tokens,
                         "20": [[3.0 - 0.6 * i for i in range(K)]] * max_new_tokens},
             "displacement": [[1.0 / (i + 1) for i in range(K)]] * max_new_tokens,
             "cos_final": [[0.5 + 0.1 * i for i in range(K)]] * max_new_tokens,
             "top": [[1, 2, 3, 4, 5]] * max_new_tokens}
    return DecodeOutput(toks, {"trace": [trace] * len(prompts), "agree_front_argmax": [1.0] * len(prompts)})


@register_metric("test_quality")
def quality(samples, *, ctx):
    """A per-sample score every row has (the human row too) and a corpus score it lacks."""
    per = [float(len(s.text)) for s in samples]
    out = {"quality": Score(float(np.mean(per)) if per else 0.0, per, True, {})}
    if not all(s.text == s.reference_text for s in samples):
        out["model_only"] = Score(float(len({s.text for s in samples})), None, True, {})
    return out


SUITE = """name: rep
version: 2
dataset: {source: bbc, split: test, n_prompts: 4, prompt_len: 6, reference_len: 20}
max_new_tokens: 8
batch_size: 4
seeds: [0, 1]
models: [toy-random]
decoders:
  - {name: greedy, label: greedy, seeds: [0]}
  - {name: nucleus, label: nucleus-0.95, params: {p: 0.95}}
  - {name: test_traced, label: traced-4, params: {tail_len: 4}, seeds: [0]}
  - {name: test_traced, label: traced-8, params: {tail_len: 8}, seeds: [0]}
metrics: [{name: repetition}, {name: diversity}, {name: test_quality}]
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "s.yaml").write_text(SUITE)
    Runner(load_suite(str(tmp / "s.yaml")), tmp / "runs", progress=False, log=lambda *a: None).run()
    return tmp / "runs"


@pytest.fixture(scope="module")
def report(runs):
    return build_report(runs, runs.parent / "report.html")


def test_report_is_self_contained_with_tables_and_plots(report):
    page = report.read_text()
    # the leaderboard table, its plots and the samples browser (texts drawn by the page's script)
    assert page.count("<table") >= 1 and page.count("data:image/png;base64,") >= 3
    assert " data-sb>" in page and "data-sb-data" in page
    assert "Maturation dynamics" in page and "Samples" in page and "Environment" in page
    assert "human" in page and "nucleus-0.95" in page
    # no network: one inline script, nothing fetched from anywhere
    assert "http://" not in page and "https://" not in page
    # one executable script; the samples browser's data rides in JSON blocks the page only reads
    code = [m for m in re.findall(r"<script[^>]*>", page) if 'type="application/json"' not in m]
    assert len(code) == 1 and not re.search(r"<script[^>]*\bsrc=", page) and "<link" not in page


def _legibility_problems(fig) -> list[str]:
    """Text under 8 pt, text boxes that overlap, text outside the figure, a figure wider than a
    1200 px page (it would be scaled down)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = [f"{fig.get_figwidth():.1f} in wide"] if fig.get_figwidth() * DPI > 1150 else []
    off_view = set()  # tick labels matplotlib keeps for ticks outside the view, never drawn
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lim), max(lim)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 * (hi - lo) <= tick.get_loc() <= hi + 1e-9 * (hi - lo):
                    off_view.update({id(tick.label1), id(tick.label2)})
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
             and id(t) not in off_view and (t.axes is None or t.axes.get_visible())]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    out += [f"{t.get_text()!r} is {t.get_fontsize()} pt" for t in texts if t.get_fontsize() < 8]
    for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
        w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
        h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
        if w > 0.5 and h > 0.5:
            out.append(f"{a!r} overlaps {b!r}")
    out += [f"{a!r} leaves the figure" for a, b in boxes
            if b.x0 < -1 or b.y0 < -1 or b.x1 > fig.bbox.x1 + 1 or b.y1 > fig.bbox.y1 + 1]
    return out


def test_plots_are_legible_and_show_the_human_reference(runs):
    import matplotlib

    matplotlib.use("Agg")
    t = build_tables(runs)[0]
    div = find_column(t.columns, "div", unit=WORD)
    figs = [(alt, fig) for _, alt, fig in figures(t)]
    assert {"repetition", "diversity"} <= {a for a, _ in figs} and any(a.startswith("maturation") for a, _ in figs)
    star, line = scatter(t, div, "quality", "q"), scatter(t, div, "model_only", "m")
    for alt, fig in figs + [("human star", star), ("human line", line)]:
        assert _legibility_problems(fig) == [], alt
    for fig in (star, line):
        assert "human reference" in {x.get_text().split(" (")[0] for x in fig.findobj(matplotlib.text.Text)}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian package "
                                                             "'chromium'); .ci/run installs it")


class LeaderboardRows(HTMLParser):
    """Columns and rows (model, hidden, data-v per cell) of the first sortable table."""

    def __init__(self):
        super().__init__()
        self.cols, self.rows, self.inside, self.done = [], [], False, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.done:
            return
        if tag == "table" and "lb" in (a.get("class") or "").split():
            self.inside = True
        elif self.inside and tag == "th":
            self.cols.append(a.get("data-col"))
        elif self.inside and tag == "tr" and "data-model" in a:
            self.rows.append({"model": a["data-model"], "hidden": "hidden" in a, "v": []})
        elif self.inside and tag == "td" and self.rows:
            self.rows[-1]["v"].append(a.get("data-v"))

    def handle_endtag(self, tag):
        if tag == "table" and self.inside:
            self.inside, self.done = False, True


def _dom(url: str, profile) -> LeaderboardRows:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table") >= 1 and dom.count("<img") >= 3 and "<td" in dom
    assert 'class="sb-col"' in dom  # the samples browser drew its columns
    parsed = LeaderboardRows()
    parsed.feed(dom)
    return parsed


@needs_chromium
def test_report_sorts_and_filters_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    plain = _dom(url, tmp_path / "p0")
    col = plain.cols.index("quality")
    assert plain.rows[0]["model"] == "human" and not any(r["hidden"] for r in plain.rows)

    ascending = _dom(f"{url}#{urlencode({'sort': 'quality'})}", tmp_path / "p1")
    assert ascending.rows[0]["model"] == "human"  # pinned first whatever the order
    vals = [float(r["v"][col]) for r in ascending.rows[1:]]
    assert vals == sorted(vals) and len(vals) == len(plain.rows) - 1

    view = _dom(f"{url}#{urlencode({'sort': 'quality', 'desc': '1', 'model': 'toy'})}", tmp_path / "p2")
    shown = [r for r in view.rows if not r["hidden"]]
    assert [r["model"] for r in view.rows if r["hidden"]] == ["human"]
    assert len(shown) >= 4 and {r["model"] for r in shown} == {"toy-random"}
    vals = [float(r["v"][col]) for r in shown]
    assert vals == sorted(vals, reverse=True)


@needs_chromium
def test_report_renders_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1280,2400", url]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.exists()
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]  # (H, W, 3) floats in [0, 1]
    # The plots draw the first model in matplotlib's default blue (#1f77b4); the table is grey.
    blue = np.abs(img - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.06
    assert blue.sum() > 500, "no plot pixels rendered"
    assert (img.mean(-1) < 0.5).sum() > 2000, "no text rendered"


def test_figures_use_the_short_names_and_promise_a_human_point_only_with_one(runs):
    import matplotlib

    from tmbench.report import _plots

    matplotlib.use("Agg")
    t = build_tables(runs)[0]
    texts = {x.get_text() for _, _, fig in figures(t) for x in fig.findobj(matplotlib.text.Text)}
    assert {"Rep-2 ↓", "Loop ↓", "Dist-2 ↑", "Self-BLEU ↓"} <= texts
    assert not any("[" in x and "=" in x for x in texts), "a metric key on a figure"
    assert "Quality against diversity" not in _plots(t) and "reference point" not in _plots(t)
    from pathlib import Path

    from tmbench.report import _human_point

    committed = build_tables(Path(__file__).resolve().parents[1] / "results" / "runs", "default")[0]
    assert _human_point(committed)  # the human row has Div and gen-ppl: the star is drawn
    committed.rows = [r for r in committed.rows if r.model != "human"]
    assert not _human_point(committed)
