"""`tmbench report`: one self-contained HTML page (plots embedded as PNG data URIs) built from
run records. It needs no network: no scripts, fonts or styles are fetched.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tmbench.leaderboard import Table, build_tables, cell_text, fmt
from tmbench.results import atomic_write_text, iter_records

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}tr.human td{background:#f7fbff}td.sig{font-weight:600}
.scroll{overflow-x:auto}.sample{white-space:pre-wrap;max-width:60em}img{max-width:100%;margin:.5em 0}
.note{color:#666;font-size:12px}code{background:#f3f3f3;padding:0 3px}"""


def _fig_to_img(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pick(columns: list[str], pattern: str) -> str | None:
    rx = re.compile(pattern)
    return next((c for c in columns if rx.search(c)), None)


def table_html(t: Table, all_columns: bool = False) -> str:
    from tmbench.leaderboard import headline

    cols = t.columns if all_columns else headline(t.columns)
    head = ["model", "decoder", "params", "seeds", "n"] + [f"{c} {t.arrows.get(c, '')}" for c in cols]
    out = ['<div class="scroll"><table><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in t.rows:
        n = max((c.n for c in r.cells.values()), default=0)
        from tmbench.leaderboard import non_default_params, params_text

        params = params_text(non_default_params(r.decoder_name, r.params) if r.decoder_name else r.params)
        tds = [r.model, r.decoder, params, str(len(set(r.seeds))), str(n)]
        cls = ' class="human"' if r.model == "human" else ""
        row = "".join(f"<td>{html.escape(x)}</td>" for x in tds)
        for c in cols:
            p = r.paired.get(c)
            sig = ' class="sig"' if p is not None and p.significant else ""
            row += f"<td{sig}>{html.escape(cell_text(r.cells.get(c), p))}</td>"
        out.append(f"<tr{cls}>{row}</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _bars(t: Table, keys: list[str], title: str) -> str:
    import matplotlib.pyplot as plt

    keys = [k for k in keys if k]
    rows = [r for r in t.rows if any(k in r.cells for k in keys)]
    if not rows or not keys:
        return ""
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows) * len(keys) / 2 + 3), 3.6))
    w = 0.8 / len(keys)
    x = np.arange(len(rows))
    for i, k in enumerate(keys):
        vals = [r.cells[k].mean if k in r.cells else np.nan for r in rows]
        err = [[(r.cells[k].mean - r.cells[k].lo) if k in r.cells and r.cells[k].lo is not None else 0 for r in rows],
               [(r.cells[k].hi - r.cells[k].mean) if k in r.cells and r.cells[k].hi is not None else 0 for r in rows]]
        err = np.nan_to_num(np.array(err, dtype=float))
        ax.bar(x + i * w - 0.4 + w / 2, vals, w, yerr=err, capsize=2, label=k)
    ax.set_xticks(x, [r.name for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _fig_to_img(fig, title)


def _scatter(t: Table, xkey: str | None, ykey: str | None, title: str) -> str:
    import matplotlib.pyplot as plt

    if not xkey or not ykey:
        return ""
    pts = [(r.cells[xkey].mean, r.cells[ykey].mean, r.name) for r in t.rows
           if xkey in r.cells and ykey in r.cells]
    if not pts:
        return ""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for xv, yv, name in pts:
        ax.scatter(xv, yv, s=25)
        ax.annotate(name, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xkey)
    ax.set_ylabel(ykey)
    ax.set_title(title)
    return _fig_to_img(fig, title)


def _dynamics(recs: list[dict]) -> str:
    """Entropy (per readout scale), displacement and cosine to the committed embedding over
    the updates a token receives in the tail: the paper's Figure 2 from our own traces."""
    import matplotlib.pyplot as plt

    parts = []
    for rec in recs:
        traces = [s["info"]["trace"] for s in rec["samples"] if s.get("info", {}).get("trace")]
        if not traces:
            continue
        curves: dict[str, list] = defaultdict(list)
        for tr in traces:
            for scale, rows in tr.get("entropy", {}).items():
                curves[f"entropy (scale {scale})"].extend(rows)
            curves["displacement / R"].extend(tr.get("displacement", []))
            curves["cos to committed"].extend(tr.get("cos_final", []))
        fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2))
        for ax, (name, rows) in zip(np.atleast_1d(axes), curves.items()):
            arr = _ragged_mean(rows)
            ax.plot(np.arange(1, len(arr) + 1), arr, marker="o", ms=3)
            ax.set_xlabel("update in the tail")
            ax.set_title(name, fontsize=9)
        label = f"{rec['row']['model']} / {rec['row']['decoder']} seed {rec['spec']['seed']}"
        fig.suptitle(label, fontsize=10)
        parts.append(_fig_to_img(fig, f"maturation dynamics {label}"))
    return "\n".join(parts)


def _ragged_mean(rows: list[list[float]]) -> np.ndarray:
    n = max((len(r) for r in rows), default=0)
    acc, cnt = np.zeros(n), np.zeros(n)
    for r in rows:
        v = np.array(r, dtype=float)
        ok = np.isfinite(v)
        acc[: len(v)][ok] += v[ok]
        cnt[: len(v)][ok] += 1
    return acc / np.maximum(cnt, 1)


def _sweeps(t: Table) -> str:
    """Maturation rows that differ in one parameter (tail_len, guidance, alpha_max)."""
    import matplotlib.pyplot as plt

    tm = [r for r in t.rows if "tail_len" in r.params]
    keys = [k for k in (_pick(t.columns, r"^rep\[n=2.*word"), _pick(t.columns, r"^distinct\[n=2.*word"),
                        _pick(t.columns, r"^loop")) if k]
    out = []
    for param in ("tail_len", "guidance", "alpha_max"):
        groups = defaultdict(list)
        for r in (r for r in tm if param in r.params):
            rest = tuple(sorted((k, str(v)) for k, v in r.params.items() if k not in (param, "trace")))
            groups[(r.model, rest)].append(r)
        for (model, _), rows in groups.items():
            vals = sorted({r.params[param] for r in rows})
            if len(vals) < 2 or not keys:
                continue
            fig, ax = plt.subplots(figsize=(5.5, 3.4))
            for k in keys:
                pts = sorted((r.params[param], r.cells[k].mean) for r in rows if k in r.cells)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
            ax.set_xlabel(param)
            ax.set_title(f"{model}: sweep over {param}", fontsize=10)
            ax.legend(fontsize=7)
            out.append(_fig_to_img(fig, f"sweep {param}"))
    return "\n".join(out)


def _samples(recs: list[dict], prompt_index: int = 0) -> str:
    rows, prompt = [], None
    for rec in sorted(recs, key=lambda r: (r["row"]["model"] != "human", r["row"]["model"], r["row"]["decoder"])):
        if rec["spec"]["seed"] != min(r["spec"]["seed"] for r in recs if r["row"] == rec["row"]):
            continue
        s = next((s for s in rec["samples"] if s["prompt_index"] == prompt_index), None)
        if s is None:
            continue
        prompt = s["prompt_text"]
        rows.append(f"<tr><td>{html.escape(rec['row']['model'])}</td><td>{html.escape(rec['row']['decoder'])}</td>"
                    f"<td class='sample'>{html.escape(s['text'])}</td></tr>")
    if not rows:
        return ""
    return (f"<p><b>Prompt {prompt_index}:</b> {html.escape(prompt or '')}</p>"
            "<table><tr><th>model</th><th>decoder</th><th>continuation</th></tr>" + "".join(rows) + "</table>")


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


def build_report(root: Path, dest: Path, suite: str | None = None, reference: str = "greedy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    tables = build_tables(root, suite, warn=lambda m: None, reference=reference)
    if not tables:
        raise ValueError(f"no run records under {root}" + (f" for suite {suite!r}" if suite else ""))
    recs_by = defaultdict(list)
    for _, rec in iter_records(root, warn=lambda m: None):
        s = rec["spec"]["suite"]
        recs_by[(s["name"], s["version"])].append(rec)
    newest = max((r["created"] for rs in recs_by.values() for r in rs), default="?")
    body = [f"<h1>tmbench report</h1><p class='note'>Generated by <code>tmbench report</code> from run "
            f"records (newest {html.escape(newest)}); regenerate, do not edit.</p>"]
    for t in tables:
        if t.fingerprint:
            body.append(f"<h2>{html.escape(t.suite)} v{t.version}: throughput (machine {html.escape(t.fingerprint)})</h2>")
            body.append("<p class='note'>Only rows measured on this machine fingerprint are compared here.</p>")
            body.append(table_html(t))
            continue
        recs = recs_by[(t.suite, t.version)]
        cols = t.columns
        body.append(f"<h2>{html.escape(t.suite)} v{t.version}: leaderboard</h2>")
        body.append("<p class='note'>Mean [95% bootstrap CI over prompts]; bold with * = differs from the same "
                    f"model's {html.escape(reference)} row (paired bootstrap over prompts).</p>")
        body.append(table_html(t))
        rep = [_pick(cols, rf"^rep\[n={n},.*unit=word") for n in (2, 3, 4)] + [_pick(cols, r"^loop")]
        div = [_pick(cols, r"^distinct\[n=2.*word"), _pick(cols, r"^diversity"), _pick(cols, r"^self_bleu")]
        body.append("<h2>Repetition and diversity</h2>" + _bars(t, rep, "repetition (lower is less repetitive)")
                    + _bars(t, div, "diversity"))
        mauve_key = _pick(cols, r"^mauve")
        if mauve_key:
            body.append("<h2>MAUVE</h2><p class='note'>Error bars: 95% interval over k-means seeds and "
                        "prompts as recorded.</p>" + _bars(t, [mauve_key], "MAUVE"))
        div_key = _pick(cols, r"^diversity") or _pick(cols, r"^distinct\[n=2")
        q_key = mauve_key or _pick(cols, r"^gen_ppl")
        body.append("<h2>Quality against diversity</h2>" + _scatter(t, div_key, q_key, "quality vs diversity"))
        dyn = _dynamics(recs)
        if dyn:
            body.append("<h2>Maturation dynamics</h2><p class='note'>Mean over committed tokens; index i is "
                        "the i-th update a token received in the liquid tail.</p>" + dyn)
        sw = _sweeps(t)
        if sw:
            body.append("<h2>Tail-length, guidance and alpha sweeps</h2>" + sw)
        body.append("<h2>Samples</h2>" + _samples(recs))
        body.append("<h2>Environment</h2>" + _environment(recs))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tmbench report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    atomic_write_text(dest, page)
    return dest


def add_report_cli(sub: Any) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report from run records")
    p.add_argument("--out", default="runs", help="results directory with records")
    p.add_argument("--dest", help="output file (default: <out>/report.html)")
    p.add_argument("--suite")
    p.add_argument("--reference", default="greedy", help="decoder label rows are compared with")
    p.set_defaults(handler=_cmd_report)


def _cmd_report(args) -> int:
    dest = Path(args.dest) if args.dest else Path(args.out) / "report.html"
    path = build_report(Path(args.out), dest, args.suite, args.reference)
    print(f"wrote {path}")
    return 0


__all__ = ["build_report", "add_report_cli", "fmt"]
