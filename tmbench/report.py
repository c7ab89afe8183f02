"""`tmbench report`: one self-contained HTML page built from run records: the sortable,
filterable leaderboard (:mod:`tmbench.render`), plots embedded as PNG data URIs, samples and
the environment. Nothing is fetched: the style and the small script are inline.

Plots are sized to be read at their natural size on a normal window (at most 11 in at 100 dpi,
so a 1200 px page never scales them down), with no text under 8 pt and no labels drawn over each
other: bar charts are horizontal small multiples with one row label per line, and the scatter
identifies points by marker (model) and colour (decoder) in legends instead of inline labels.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tmbench.aggregate import HUMAN, Cell, Table, tables_from_records
from tmbench.glossary import short_names
from tmbench.render import WORD, find_column, fmt, page_html, table_html
from tmbench.results import atomic_write_text, iter_records
from tmbench.samples_browser import CSS as BROWSER_CSS, SCRIPT as BROWSER_SCRIPT, browser_html, browser_id
from tmbench.suites import with_suite_headlines

DPI = 100
MAX_WIDTH_IN = 11.0
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8,
      "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8, "figure.dpi": DPI}
MARKERS = "os^DvPX<>p"


def _img(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _label(t: Table, key: str) -> str:
    """A metric's short name and direction, as in the table's header (tmbench.glossary)."""
    return f"{short_names(t.columns)[key]} {t.arrows.get(key, '')}".strip()


def _model_colors(t: Table) -> dict[str, str]:
    models = [m for m in dict.fromkeys(r.model for r in t.rows) if m != HUMAN]
    return {HUMAN: "#777777", **{m: f"C{i % 10}" for i, m in enumerate(models)}}


def _err(c: Cell) -> tuple[float, float]:
    """Error bar half-widths: the 95% CI, else the seed sd, else the k-means seed range."""
    if c.lo is not None and c.hi is not None and np.isfinite([c.lo, c.hi]).all():
        return max(c.mean - c.lo, 0.0), max(c.hi - c.mean, 0.0)
    if c.spread:
        return c.spread, c.spread
    if "kmeans_range" in c.info:
        lo, hi = c.info["kmeans_range"]
        return max(c.mean - lo, 0.0), max(hi - c.mean, 0.0)
    return 0.0, 0.0


def bars(t: Table, keys: list[str | None], title: str):
    """Horizontal bars, one panel per metric, rows on a shared axis (Figure or None)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in keys if k]
    rows = [r for r in t.rows if any(k in r.cells for k in keys)]
    if not rows or not keys:
        return None
    colors = _model_colors(t)
    width = min(MAX_WIDTH_IN, 2.4 + 2.2 * len(keys))
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, len(keys), figsize=(width, 0.24 * len(rows) + 1.5), sharey=True,
                                 squeeze=False, layout="constrained")
        y = np.arange(len(rows))
        for ax, k in zip(axes[0], keys):
            cells = [r.cells.get(k) for r in rows]
            vals = [c.mean if c else np.nan for c in cells]
            err = np.array([_err(c) if c else (0.0, 0.0) for c in cells]).T  # (2, rows)
            ax.barh(y, vals, 0.7, xerr=err, color=[colors[r.model] for r in rows],
                    error_kw={"lw": 0.8, "capsize": 2})
            ax.set_title(_label(t, k), fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.grid(axis="x", alpha=0.3)
        axes[0][0].set_yticks(y, [r.name for r in rows])
        axes[0][0].invert_yaxis()
        fig.suptitle(title, fontsize=10)
    return fig


def scatter(t: Table, xkey: str | None, ykey: str | None, title: str, logy: bool = False):
    """Diversity (x) against quality (y): marker = model, colour = decoder, legends outside the
    axes, and the human reference as a labelled star (or a labelled line where it has only x)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not xkey or not ykey:
        return None
    pts = [r for r in t.rows if r.model != HUMAN and xkey in r.cells and ykey in r.cells]
    if not pts:
        return None
    models = list(dict.fromkeys(r.model for r in pts))
    decoders = sorted({r.decoder for r in pts})
    cmap = plt.get_cmap("tab20")
    dcol = {d: cmap(i % 20) for i, d in enumerate(decoders)}
    mk = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    height = max(5.0, 0.19 * (len(models) + len(decoders)) + 2.2)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(9.5, height), layout="constrained")
        for r in pts:
            cx, cy = r.cells[xkey], r.cells[ykey]
            ax.errorbar(cx.mean, cy.mean, xerr=np.array(_err(cx))[:, None], yerr=np.array(_err(cy))[:, None],
                        fmt=mk[r.model], color=dcol[r.decoder], ms=7, mec="black", mew=0.5,
                        elinewidth=0.6, alpha=0.9)
        human = next((r for r in t.rows if r.model == HUMAN and xkey in r.cells), None)
        handles = [Line2D([], [], ls="", marker=mk[m], color="#555555", label=m) for m in models]
        if human is not None and ykey in human.cells:
            hx, hy = human.cells[xkey].mean, human.cells[ykey].mean
            ax.scatter([hx], [hy], marker="*", s=260, color="black", zorder=5)
            ax.annotate("human reference", (hx, hy), xytext=(12, 12), textcoords="offset points",
                        fontsize=9, fontweight="bold", arrowprops={"arrowstyle": "-", "lw": 0.7})
            handles.append(Line2D([], [], ls="", marker="*", ms=12, color="black", label="human reference"))
        elif human is not None:
            hx = human.cells[xkey].mean
            ax.axvline(hx, color="black", ls="--", lw=1)
            lo, hi = ax.get_xlim()
            right = hx > (lo + hi) / 2  # put the label on the side of the line with room
            ax.annotate(f"human reference (no {short_names(t.columns)[ykey]})", (hx, 0.5),
                        xycoords=("data", "axes fraction"), xytext=(-6 if right else 6, 0),
                        textcoords="offset points", ha="right" if right else "left", va="center",
                        rotation=90, fontsize=9, fontweight="bold")
            handles.append(Line2D([], [], ls="--", color="black", label="human reference"))
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(_label(t, xkey))
        ax.set_ylabel(_label(t, ykey))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.legend(handles=handles, title="model", loc="outside right upper")
        fig.legend(handles=[Line2D([], [], ls="", marker="o", color=dcol[d], mec="black", mew=0.5, label=d)
                            for d in decoders], title="decoder", loc="outside right lower")
    return fig


def dynamics(t: Table):
    """Entropy (per readout scale), displacement and cosine to the committed embedding over the
    updates a token receives in the tail, pooled over a row's seeds: the paper's Figure 2 from
    our own traces. Yields (row, Figure)."""
    import matplotlib.pyplot as plt

    for r in t.rows:
        traces = [s["info"]["trace"] for rec in r.records for s in rec["samples"]
                  if (s.get("info") or {}).get("trace")]
        if not traces:
            continue
        curves: dict[str, list] = defaultdict(list)
        for tr in traces:
            for scale, rows in tr.get("entropy", {}).items():
                curves[f"entropy (scale {scale})"].extend(rows)
            curves["displacement / R"].extend(tr.get("displacement", []))
            curves["cos to committed"].extend(tr.get("cos_final", []))
        curves = {k: v for k, v in curves.items() if v}
        ncols = 2 if len(curves) == 4 else min(len(curves), 3)
        nrows = -(-len(curves) // ncols)
        with plt.rc_context(RC):
            fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows + 0.5),
                                     squeeze=False, layout="constrained")
            for ax in axes.flat[len(curves):]:
                ax.set_visible(False)
            for ax, (name, rows) in zip(axes.flat, curves.items()):
                arr = _ragged_mean(rows)
                ax.plot(np.arange(1, len(arr) + 1), arr, marker="o", ms=3)
                ax.set_xlabel("update in the tail")
                ax.set_title(name)
            fig.suptitle(f"{r.name} ({len(set(r.seeds))} seeds)", fontsize=10)
        yield r, fig


def _ragged_mean(rows: list[list[float]]) -> np.ndarray:
    n = max((len(r) for r in rows), default=0)
    acc, cnt = np.zeros(n), np.zeros(n)
    for r in rows:
        v = np.array(r, dtype=float)
        ok = np.isfinite(v)
        acc[: len(v)][ok] += v[ok]
        cnt[: len(v)][ok] += 1
    return acc / np.maximum(cnt, 1)


def sweeps(t: Table):
    """Maturation rows that differ in one parameter (tail_len, guidance, alpha_max).
    Yields (parameter, Figure)."""
    import matplotlib.pyplot as plt

    tm = [r for r in t.rows if "tail_len" in r.params]
    keys = [k for k in (find_column(t.columns, "rep", n="2", unit=WORD),
                        find_column(t.columns, "distinct", n="2", scope="corpus", unit=WORD),
                        find_column(t.columns, "loop", n="3", unit=WORD)) if k]
    for param in ("tail_len", "guidance", "alpha_max"):
        groups = defaultdict(list)
        for r in (r for r in tm if param in r.params):
            rest = tuple(sorted((k, str(v)) for k, v in r.params.items() if k not in (param, "trace")))
            groups[(r.model, rest)].append(r)
        for (model, _), rows in groups.items():
            if len({r.params[param] for r in rows}) < 2 or not keys:
                continue
            with plt.rc_context(RC):
                fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
                for k in keys:
                    pts = sorted((r.params[param], r.cells[k].mean) for r in rows if k in r.cells)
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_label(t, k))
                ax.set_xlabel(param)
                ax.set_title(f"{model}: sweep over {param}")
                ax.legend(loc="best")
            yield param, fig


def figures(t: Table) -> list[tuple[str, str, Any]]:
    """Every plot of one quality table as (section, alt text, Figure)."""
    c = t.columns
    rep = [find_column(c, "rep", n=str(n), unit=WORD) for n in (2, 3, 4)] + [find_column(c, "loop", n="3", unit=WORD)]
    div_key = find_column(c, "div", unit=WORD) or find_column(c, "distinct", n="2", scope="corpus", unit=WORD)
    div = [find_column(c, "distinct", n="2", scope="corpus", unit=WORD), find_column(c, "div", unit=WORD),
           find_column(c, "self_bleu", level="sentence", n="4", refs="all", unit=WORD)]
    mauve = find_column(c, "mauve")
    ppl = find_column(c, "gen_ppl", agg=("pooled", None))
    out = [("rep", "repetition", bars(t, rep, "Repetition (lower is less repetitive)")),
           ("rep", "diversity", bars(t, div, "Diversity (distinct-2 and div: higher is more diverse; "
                                            "Self-BLEU: lower is)")),
           ("mauve", "MAUVE", bars(t, [mauve], "MAUVE against the human continuations")),
           ("qd", "diversity against generation perplexity",
            scatter(t, div_key, ppl, "Diversity against generation perplexity (closer to human is "
                                     "better)", logy=True)),
           ("qd", "diversity against MAUVE", scatter(t, div_key, mauve, "Diversity against MAUVE"))]
    out += [("dyn", f"maturation dynamics {r.name}", fig) for r, fig in dynamics(t)]
    out += [("sweep", f"sweep over {p}", fig) for p, fig in sweeps(t)]
    return [(s, a, f) for s, a, f in out if f is not None]


SECTIONS = {
    "rep": ("Repetition and diversity", "Error bars: 95% bootstrap CI over prompts where the metric "
            "has per-prompt values, otherwise ± sd over seeds."),
    "mauve": ("MAUVE", "Error bars: ± sd over generation seeds, or with one seed the range over "
              "k-means seeds. The n per side is in the table; below 500 MAUVE is unreliable (†)."),
    "qd": ("Quality against diversity", "Marker = model, colour = decoder; error bars as in the "
           "table."),
    "dyn": ("Maturation dynamics", "Mean over committed tokens and seeds; index i is the i-th "
            "update a token received in the liquid tail."),
    "sweep": ("Tail-length, guidance and alpha sweeps", ""),
}


def _environment(recs: list[dict]) -> str:
    envs = {}
    for r in recs:
        e = r.get("environment", {})
        envs[e.get("fingerprint", {}).get("id", "?")] = e
    items = []
    for fid, e in envs.items():
        pk = ", ".join(f"{k} {v}" for k, v in e.get("packages", {}).items() if v)
        fp = e.get("fingerprint", {})
        items.append(f"<li>machine <code>{html.escape(fid)}</code>: {html.escape(str(fp.get('device_name')))}, "
                     f"{fp.get('cpu_count')} CPUs, {fp.get('torch_threads')} torch threads; "
                     f"tmbench {html.escape(str(e.get('tmbench')))}, Python {html.escape(str(e.get('python')))}; "
                     f"{html.escape(pk)}</li>")
    judges = {}
    for r in recs:
        judges.update(r.get("judges", {}))
    jl = "".join(f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in judges.items())
    return f"<ul>{''.join(items)}</ul>" + (f"<p>Judges and featurizers:</p><ul>{jl}</ul>" if jl else "")


def _human_point(t: Table) -> bool:
    """Whether the quality-diversity figures draw a human star: a human row with the
    diversity column and a quality column of the figures."""
    c = t.columns
    x = find_column(c, "div", unit=WORD) or find_column(c, "distinct", n="2", scope="corpus", unit=WORD)
    ys = [find_column(c, "gen_ppl", agg=("pooled", None)), find_column(c, "mauve")]
    return any(r.model == HUMAN and x in r.cells and any(y in r.cells for y in ys if y) for r in t.rows)


def _plots(t: Table) -> str:
    by_section: dict[str, list[str]] = defaultdict(list)
    for section, alt, fig in figures(t):
        by_section[section].append(_img(fig, alt))
    out = []
    for section, imgs in by_section.items():
        head, note = SECTIONS[section]
        if section == "qd" and _human_point(t):  # promised only where the figures draw it
            note += " The human continuation is the reference point (the star)."
        out.append(f"<h2>{head}</h2>" + (f"<p class='note'>{html.escape(note)}</p>" if note else "")
                   + "\n".join(imgs))
    return "".join(out)


def build_report(root: Path, dest: Path, suite: str | None = None, reference: str = "greedy",
                 warn=print) -> Path:
    """The report page at ``dest``; a broken record is reported through ``warn`` and left out."""
    import matplotlib

    matplotlib.use("Agg")
    recs = [rec for _, rec in iter_records(root, warn=warn)
            if suite is None or rec["spec"]["suite"]["name"] == suite]
    tables = with_suite_headlines(tables_from_records(recs, reference), warn)
    if not tables:
        raise ValueError(f"no run records under {root}" + (f" for suite {suite!r}" if suite else ""))
    newest = max((r["created"] for r in recs), default="?")
    body = [f"<h1>tmbench report</h1><p class='note'>Generated by <code>tmbench report</code> from run "
            f"records (newest {html.escape(newest)}); regenerate, do not edit. Click a column header "
            "to sort, type in the boxes to filter; the address keeps the view.</p>"]
    for t in tables:
        head = f"{html.escape(t.suite)} v{t.version}"
        if t.fingerprint:
            body.append(f"<h2>{head}: throughput (machine {html.escape(t.fingerprint)})</h2>" + table_html(t))
            continue
        srecs = [r for r in recs if (r["spec"]["suite"]["name"], r["spec"]["suite"]["version"]) == (t.suite, t.version)]
        body.append(f"<h2>{head}: leaderboard</h2>" + table_html(t, samples=browser_id(t)))
        body.append(_plots(t))
        from tmbench.frontier_report import report_section  # frontiers; the suite's compare:

        body.append(report_section(t, warn))
        body.append("<h2>Samples</h2>" + browser_html(t))
        body.append("<h2>Environment</h2>" + _environment(srecs))
    atomic_write_text(dest, page_html("tmbench report", "".join(body), BROWSER_CSS, BROWSER_SCRIPT))
    return dest


def add_report_cli(sub: Any) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report from run records")
    p.add_argument("--out", default="runs", help="results directory with records")
    p.add_argument("--dest", help="output file (default: <out>/report.html)")
    p.add_argument("--suite")
    p.add_argument("--reference", help="decoder label rows are compared with (default greedy; "
                                       "must be the label of a row)")
    p.set_defaults(handler=_cmd_report)


def _cmd_report(args) -> int:
    import sys

    from tmbench.compare import check_reference

    if args.reference is not None:  # a label no row has would silently mark nothing
        check_reference(Path(args.out), args.suite, args.reference)
    dest = Path(args.dest) if args.dest else Path(args.out) / "report.html"
    path = build_report(Path(args.out), dest, args.suite, args.reference or "greedy",
                        warn=lambda m: print(m, file=sys.stderr))
    print(f"wrote {path}")
    return 0


__all__ = ["build_report", "add_report_cli", "figures", "fmt"]
