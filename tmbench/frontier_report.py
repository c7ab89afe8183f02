"""Frontier figures (SVG and PNG per suite view), matched-quality tables, the report's
frontier section and ``tmbench frontier``.

A view is a set of models drawn together: the two models of each ``compare:`` pair of the
suite that are different models (a TM model against its twin), and every other model alone.
One figure per view: a grid of panels, quality axes down, diversity axes across, one point
per configuration with its 95% intervals, each decoder family's Pareto frontier as a line,
the human row as a star where it has both values.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

from tmbench.aggregate import HUMAN, Table
from tmbench.compare import find_row, suite_pairs
from tmbench.frontier import (DIVERSITY, QUALITY, Matched, axes, family_frontiers, human_point,
                              matched, points)
from tmbench.render import fmt

MARKERS = "os^DvPX<>p"
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 8,
      "ytick.labelsize": 8, "legend.fontsize": 8, "figure.dpi": 100}  # no text under 8 pt


def views(t: Table, pairs: tuple[tuple[str, str], ...],
          extra: list[list[str]] | None = None) -> list[list[str]]:
    """Model sets drawn together: ``extra``, each compare pair of two models, then every other
    model alone."""
    out: list[list[str]] = [v for v in extra or [] if len(v) > 1]
    for a, b in pairs:
        ma, mb = a.rpartition("/")[0], b.rpartition("/")[0]
        if ma != mb and HUMAN not in (ma, mb) and [ma, mb] not in out:
            out.append([ma, mb])
    covered = {m for v in out for m in v}
    out += [[m] for m in dict.fromkeys(r.model for r in t.rows)
            if m != HUMAN and m not in covered]
    return out


def _err(c) -> list[list[float]]:
    import numpy as np

    if c.lo is not None and c.hi is not None and np.isfinite([c.lo, c.hi]).all():
        return [[max(c.mean - c.lo, 0.0)], [max(c.hi - c.mean, 0.0)]]
    s = c.spread or 0.0
    return [[s], [s]]


def figure(t: Table, models: list[str]):
    """The view's grid of panels (Figure, has_human) or (None, False) with under 2 points."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    sparse = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")  # log minor ticks
    qs, ds = axes(t, QUALITY), axes(t, DIVERSITY)
    rows = [r for r in t.rows if r.model in models]
    if not qs or not ds or len(rows) < 2:
        return None, False
    fams = sorted({r.decoder_name or r.decoder for r in rows})
    mk = {f: MARKERS[i % len(MARKERS)] for i, f in enumerate(fams)}
    col = {m: f"C{i}" for i, m in enumerate(models)}
    has_human = False
    with plt.rc_context(RC):
        fig, grid = plt.subplots(len(qs), len(ds), figsize=(min(11.0, 2.5 * len(ds) + 1.8),
                                                            2.3 * len(qs) + 0.8),
                                 squeeze=False, layout="constrained")
        for i, (qa, qkey) in enumerate(qs):
            for j, (da, dkey) in enumerate(ds):
                ax = grid[i][j]
                pts = points(t, dkey, qkey, models)
                for p in pts:
                    ax.errorbar(p.x.mean, p.y.mean, xerr=_err(p.x), yerr=_err(p.y),
                                fmt=mk[p.family], color=col[p.row.model], ms=5, mec="black",
                                mew=0.4, elinewidth=0.6)
                for (model, _), front in family_frontiers(pts, qa, da).items():
                    if len(front) >= 2:
                        ax.plot([p.x.mean for p in front], [p.y.mean for p in front],
                                color=col[model], lw=1, alpha=0.8)
                h = human_point(t, dkey, qkey)
                if h is not None:
                    has_human = True
                    ax.scatter([h.x.mean], [h.y.mean], marker="*", s=120, color="black", zorder=5)
                if qa.family == "gen_ppl":
                    ax.set_yscale("log")
                    ax.yaxis.set_major_formatter(plain)
                    ax.yaxis.set_minor_formatter(sparse)
                ax.set_xlabel(f"{da.name} {'↑' if da.higher_is_better else '↓'}")
                ax.set_ylabel(f"{qa.name} {'↑' if qa.higher_is_better else '↓'}")
                ax.grid(alpha=0.3)
        handles = [Line2D([], [], color=col[m], lw=1, marker="o", label=m) for m in models]
        handles += [Line2D([], [], ls="", marker=mk[f], color="#555555", label=f) for f in fams]
        if has_human:
            handles.append(Line2D([], [], ls="", marker="*", ms=10, color="black", label="human"))
        fig.legend(handles=handles, loc="outside right upper")
        fig.suptitle(f"{t.suite} v{t.version}: {' vs '.join(models)}", fontsize=9)
    return fig, has_human


def caption(has_human: bool) -> str:
    human = (" The star is the human continuations (in the panels where it has both values)."
             if has_human else "")
    return ("One point per configuration (colour = model, marker = decoder family), bars: 95% "
            "bootstrap intervals over prompts (± sd over seeds for corpus-level values; none with "
            "one seed); lines: each family's Pareto frontier (the points no other point of the "
            "family beats on both axes; arrows give the better direction). Per-sample variants "
            "(Dist-2, seq-Rep-2 = per-sample Rep-2, compression) carry intervals; MAUVE has none. "
            "On gen-ppl lower counts as better, which degenerate text games: read it next to "
            f"diversity.{human}")


def slug(models: list[str]) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-vs-".join(models))


def write_figures(t: Table, dest: Path, pairs: tuple[tuple[str, str], ...],
                  extra: list[list[str]] | None = None) -> list[Path]:
    """``<dest>/<suite>-v<version>-frontier-<view>.{svg,png}`` per view; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tmbench.results import atomic_write_text

    written = []
    for models in views(t, pairs, extra):
        fig, _ = figure(t, models)
        if fig is None:
            continue
        stem = dest / f"{t.suite}-v{t.version}-frontier-{slug(models)}"
        buf = io.StringIO()
        with plt.rc_context({"svg.hashsalt": "tmbench"}):  # the same ids on every write
            fig.savefig(buf, format="svg", metadata={"Date": None})
        atomic_write_text(stem.with_suffix(".svg"), buf.getvalue())
        fig.savefig(stem.with_suffix(".png"), dpi=100, metadata={"Software": None})
        plt.close(fig)
        written += [stem.with_suffix(".svg"), stem.with_suffix(".png")]
    return written


# ---- matched quality as text --------------------------------------------------------------------

def matched_for(t: Table, pairs: tuple[tuple[str, str], ...], rows: list[str] | None = None,
                against: list[str] | None = None) -> list[Matched]:
    """Matched-quality comparisons: each named row (default: the rows of the compare pairs
    whose reference is not the human row) against the families of ``against`` models, else of
    its reference's model, else its own model's other families. A named row that is in no
    table is an error; a compare pair's row without records yet is left out."""
    if against:
        return [m for a in rows or [a for a, _ in pairs] if (row := find_row(t, a))
                for m in matched(t, row, against)]
    wanted: dict[str, list[str]] = {}
    for a, b in pairs:
        ma, mb = a.rpartition("/")[0], b.rpartition("/")[0]
        if HUMAN not in (ma, mb) and (rows is None or a in rows):
            wanted.setdefault(a, []).append(mb)
    for a in rows or []:
        wanted.setdefault(a, [a.rpartition("/")[0]])
    out = []
    for a, models in wanted.items():
        row = find_row(t, a)
        if row is None and a not in (rows or []):
            continue  # a compare: pair whose row has no records yet (a suite run row by row)
        if row is None:
            raise ValueError(f"row {a!r} is in no table of suite {t.suite} v{t.version}; "
                             f"accepted: {', '.join(f'{r.model}/{r.decoder}' for r in t.rows)}")
        out += matched(t, row, list(dict.fromkeys(models)))
    return out


HEAD = ["row", "quality", "diversity", "verdict", "family", "frontier", "at row's quality",
        "difference [95% CI]", "family verdict", "agreement", "evidence"]
MATCH_NOTE = ("Each family's Pareto frontier read at the row's quality (linear between "
              "frontier points, no extrapolation); difference = the row's diversity minus the "
              "frontier's there (metric units; the arrow of the diversity axis says which sign is "
              "better), 95% bootstrap interval over prompts (every row and the frontier recomputed "
              "per resample); agreement = share of resamples whose verdict by sign is the same. "
              "Verdict over families: dominated by any, dominates every comparable one, else on "
              "the frontier.")


def _cells(m) -> list[list[str]]:
    out = []
    for f in m.families:
        diff = "–" if f.diff is None else fmt(f.diff) + (
            f" [{fmt(f.lo)}, {fmt(f.hi)}]" if f.lo is not None else "")
        out.append([m.row, m.quality, m.diversity, m.verdict, f"{f.model} {f.family}",
                    "; ".join(f.frontier), "–" if f.at is None else fmt(f.at), diff, f.verdict,
                    "–" if f.agreement is None else f"{f.agreement:.2f}", f.evidence])
    return out


def matched_markdown(ms: list[Matched]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(x.replace("|", "\\|") for x in c) + " |" for m in ms for c in _cells(m)]
    return "\n".join(lines) + "\n"


def matched_html(ms: list[Matched]) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in c) + "</tr>"
                      for m in ms for c in _cells(m)) + "</table>")


def report_section(t: Table, warn=print) -> str:
    """HTML for the report: the frontier figures, matched quality and the paired
    differences the suite's compare: pairs ask for."""
    import base64

    import matplotlib.pyplot as plt

    from tmbench import compare

    pairs = suite_pairs(t.suite, warn)
    out, humans = [], False
    for models in views(t, pairs):
        fig, has_human = figure(t, models)
        if fig is None:
            continue
        humans |= has_human
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode()
        out.append(f'<img alt="frontier {html.escape(" vs ".join(models))}" '
                   f'src="data:image/png;base64,{data}">')
    if not out:
        return ""
    body = ["<h2>Quality-diversity frontiers</h2>",
            f"<p class='note'>{html.escape(caption(humans))}</p>", *out]
    ms = matched_for(t, pairs)
    if ms:
        body += ["<h3>Matched quality</h3>", f"<p class='note'>{html.escape(MATCH_NOTE)}</p>",
                 matched_html(ms)]
    comps = compare.table_comparisons(t, warn)
    if comps:
        body += ["<h2>Paired differences</h2>", compare.to_html(t, comps)]
    return "\n".join(body)


def add_frontier_cli(sub: Any) -> None:
    p = sub.add_parser("frontier", help="quality-diversity frontier figures (SVG, PNG) and "
                                        "comparisons at matched quality, from run records")
    p.add_argument("--out", default="runs", help="results directory with records")
    p.add_argument("--dest", help="where to write the figures (default: <out>/leaderboards)")
    p.add_argument("--suite", help="only this suite")
    p.add_argument("--row", action="append", help="MODEL/LABEL to compare at matched quality "
                                                  "(repeatable; default: the suite's compare: rows)")
    p.add_argument("--against", action="append", help="compare with the decoder families of "
                                                      "this model (repeatable; default: the "
                                                      "model of the row's compare: reference)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_frontier)


def _cmd_frontier(args) -> int:
    import json
    import sys
    from dataclasses import asdict

    from tmbench.aggregate import tables_from_records
    from tmbench.results import iter_records

    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"results directory {out} does not exist; run `tmbench run` first or pass --out")
    warn = lambda m: print(m, file=sys.stderr)  # noqa: E731
    recs = [r for _, r in iter_records(out, warn=warn)
            if args.suite is None or r["spec"]["suite"]["name"] == args.suite]
    tables = [t for t in tables_from_records(recs) if t.fingerprint is None]
    if not tables:
        raise ValueError(f"no run records under {out}" + (f" for suite {args.suite!r}" if args.suite else ""))
    for a in args.row or []:  # a row no table has is a typo, not an empty comparison
        if not any(find_row(t, a) for t in tables):
            have = sorted({f"{r.model}/{r.config.get('label', r.decoder)}" for t in tables
                           for r in t.rows if r.model != HUMAN})
            raise ValueError(f"--row {a!r} is the row of no table under {out}; accepted: "
                             f"{', '.join(have) or '(none)'}")
    dest = Path(args.dest) if args.dest else out / "leaderboards"
    dest.mkdir(parents=True, exist_ok=True)
    result = []
    for t in tables:
        pairs = suite_pairs(t.suite, warn)
        rows = [a for a in args.row if find_row(t, a)] if args.row else None
        extra = [list(dict.fromkeys([a.rpartition("/")[0], *args.against]))
                 for a in rows or []] if args.against else None
        written = write_figures(t, dest, pairs, extra)
        ms = matched_for(t, pairs, rows, args.against) if (rows or pairs and not args.row) else []
        result.append({"suite": t.suite, "version": t.version, "figures": [str(p) for p in written],
                       "matched": [asdict(m) for m in ms]})
        if not args.json:
            print(f"### {t.suite} v{t.version}\n")
            if ms:
                print(MATCH_NOTE + "\n\n" + matched_markdown(ms))
            print("wrote " + (", ".join(map(str, written)) or "no figure (under 2 points per view)"))
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0
