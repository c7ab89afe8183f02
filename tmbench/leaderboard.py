"""Leaderboard tables built from run records, never edited by hand.

One table per suite version (versions never mix). Rows are model x decoder (label, resolved
parameters, and batch size where a suite has several); cells are the mean over seeds with a 95%
bootstrap confidence interval over prompts (per-sample scores averaged over seeds first) and n.
Throughput columns are split into one table per machine fingerprint, since timings from
different machines are not comparable.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tmbench.results import atomic_write_text, canonical, iter_records

N_BOOT = 1000
TIMING_METRICS = {"throughput"}
# The columns a person reads first (SimCTG word-level conventions for repetition/diversity).
# Markdown and HTML tables show these when present; CSV and `--all-columns` show every metric.
HEADLINE = [
    r"^rep\[n=2,unit=word\]$", r"^rep\[n=4,unit=word\]$", r"^loop\[n=3,unit=word\]$",
    r"^distinct\[n=2,scope=corpus,unit=word\]$", r"^div\[unit=word\]$",
    r"^self_bleu\[level=corpus,n=4,refs=all,unit=word\]$", r"^zipf\[unit=word\]$",
    r"^coherence\[def=embed-cos", r"^coherence\[def=judge-logprob", r"^mauve\[",
    r"^gen_ppl\[", r"^heldout_ppl\[.*unit=token\]$", r"^k1_agree\[mode=position", r"^agree",
    r"^entropy_final\[scale=20\]$",
    r"^tokens_per_s$", r"^ttft_ms", r"^step_ms\[q=50\]$", r"^peak_mem_mb$",
]


def headline(columns: list[str]) -> list[str]:
    import re

    out = []
    for pat in HEADLINE:
        out += [c for c in columns if re.search(pat, c) and c not in out]
    return out or columns


@dataclass
class Cell:
    mean: float
    lo: float | None
    hi: float | None
    n: int
    per_prompt: dict[int, float] = field(default_factory=dict)


@dataclass
class Paired:
    """Paired bootstrap of (row - reference) over the prompts both rows scored."""

    diff: float
    lo: float
    hi: float
    n: int

    @property
    def significant(self) -> bool:
        return self.n >= 2 and (self.lo > 0 or self.hi < 0)


@dataclass
class Row:
    model: str
    decoder: str
    params: dict[str, Any]
    batch_size: int
    decoder_name: str = ""
    seeds: list[int] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    cells: dict[str, Cell] = field(default_factory=dict)
    paired: dict[str, Paired] = field(default_factory=dict)
    reference: str | None = None  # the row this one is compared with

    @property
    def name(self) -> str:
        return f"{self.model} / {self.decoder}"


@dataclass
class Table:
    suite: str
    version: int
    columns: list[str]
    arrows: dict[str, str]
    rows: list[Row]
    fingerprint: str | None = None  # set for throughput tables


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean."""
    if len(values) < 2:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _aggregate(records: list[dict], key: str, rng) -> Cell | None:
    got = [r["metrics"][key] for r in records if key in r["metrics"]]
    if not got:
        return None
    values = np.array([np.nan if g["value"] is None else g["value"] for g in got], dtype=float)
    if np.isnan(values).all():
        return None
    per: dict[int, list[float]] = defaultdict(list)
    for r, g in zip([r for r in records if key in r["metrics"]], got):
        ps = g.get("per_sample")
        if ps and len(ps) == len(r["samples"]):
            for s, v in zip(r["samples"], ps):
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    per[s["prompt_index"]].append(float(v))
    if per:
        pp = {i: float(np.mean(v)) for i, v in per.items()}
        arr = np.array([pp[i] for i in sorted(pp)])
        lo, hi = bootstrap_ci(arr, rng)
        return Cell(float(np.nanmean(values)), lo, hi, len(arr), pp)
    if len(values) >= 3:  # pooled metric, several seeds: interval over seeds
        lo, hi = bootstrap_ci(values, rng)
        return Cell(float(np.nanmean(values)), lo, hi, len(values))
    if len(values) == 2:  # too few seeds for an interval: the mean alone
        return Cell(float(np.nanmean(values)), None, None, 2)
    return Cell(float(values[0]), None, None, 1)


def paired_bootstrap(a: dict[int, float], b: dict[int, float], rng, n_boot: int = N_BOOT) -> Paired | None:
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    d = np.array([a[i] - b[i] for i in common])
    lo, hi = bootstrap_ci(d, rng, n_boot)
    return Paired(float(d.mean()), lo, hi, len(common))


def add_paired(table: Table, reference: str = "greedy", rng=None) -> None:
    """Compare every row with the same model's ``reference`` decoder row, prompt by prompt."""
    rng = rng or np.random.default_rng(1)
    refs = {r.model: r for r in table.rows if r.decoder.split(" b")[0] == reference}
    for r in table.rows:
        ref = refs.get(r.model)
        if ref is None or ref is r:
            continue
        r.reference = ref.name
        for c, cell in r.cells.items():
            other = ref.cells.get(c)
            if other and cell.per_prompt and other.per_prompt:
                p = paired_bootstrap(cell.per_prompt, other.per_prompt, rng)
                if p:
                    r.paired[c] = p


def build_tables(root: Path, suite: str | None = None, warn=print,
                 reference: str = "greedy") -> list[Table]:
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for _, rec in iter_records(root, warn=warn):
        s = rec["spec"]["suite"]
        if suite is None or s["name"] == suite:
            groups[(s["name"], s["version"])].append(rec)
    tables = []
    for (name, version), recs in sorted(groups.items()):
        tables.extend(_tables_for(name, version, recs))
    for t in tables:
        if t.fingerprint is None:
            add_paired(t, reference)
    return tables


def _row_key(rec: dict) -> tuple:
    sp = rec["spec"]
    return (sp["model"]["name"], sp["decoder"]["label"], canonical(sp["decoder"]["params"]),
            sp["batch_size"])


def _tables_for(name: str, version: int, recs: list[dict]) -> list[Table]:
    rng = np.random.default_rng(0)
    rows: dict[tuple, Row] = {}
    for rec in recs:
        k = _row_key(rec)
        if k not in rows:
            rows[k] = Row(k[0], k[1], rec["spec"]["decoder"]["params"], k[3],
                          rec["spec"]["decoder"]["name"])
        rows[k].records.append(rec)
        rows[k].seeds.append(rec["spec"]["seed"])
    batch_sizes = {r.batch_size for r in rows.values() if r.model != "human"}
    if len(batch_sizes) > 1:
        for r in rows.values():
            r.decoder = f"{r.decoder} b{r.batch_size}" if r.model != "human" else r.decoder
    columns, arrows, timing_cols = [], {}, []
    for rec in recs:
        for k, m in rec["metrics"].items():
            target = timing_cols if m.get("metric") in TIMING_METRICS else columns
            if k not in target:
                target.append(k)
            hib = m.get("higher_is_better")
            arrows[k] = "↑" if hib is True else "↓" if hib is False else ""
    ordered = sorted(rows.values(), key=lambda r: (r.model != "human", r.model, r.decoder))
    for r in ordered:
        for c in columns:
            cell = _aggregate(r.records, c, rng)
            if cell:
                r.cells[c] = cell
    out = [Table(name, version, columns, arrows, ordered)]
    if timing_cols:  # one throughput table per machine fingerprint
        by_fp: dict[str, list[dict]] = defaultdict(list)
        for rec in recs:
            if any(m.get("metric") in TIMING_METRICS for m in rec["metrics"].values()):
                by_fp[rec["environment"]["fingerprint"]["id"]].append(rec)
        for fp, frecs in sorted(by_fp.items()):
            t = _tables_for_timing(name, version, frecs, timing_cols, arrows, rng)
            t.fingerprint = fp
            out.append(t)
    return out


def _tables_for_timing(name, version, recs, cols, arrows, rng) -> Table:
    rows: dict[tuple, Row] = {}
    for rec in recs:
        k = _row_key(rec)
        rows.setdefault(k, Row(k[0], f"{k[1]} b{k[3]}", rec["spec"]["decoder"]["params"], k[3],
                               rec["spec"]["decoder"]["name"]))
        rows[k].records.append(rec)
        rows[k].seeds.append(rec["spec"]["seed"])
    ordered = sorted(rows.values(), key=lambda r: (r.model, r.decoder, r.batch_size))
    for r in ordered:
        for c in cols:
            cell = _aggregate(r.records, c, rng)
            if cell:
                r.cells[c] = cell
    return Table(name, version, cols, arrows, ordered)


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    a = abs(x)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}" if a >= 100 else f"{x:.3f}"


def cell_text(c: Cell | None, p: Paired | None = None) -> str:
    if c is None:
        return "–"
    mark = " *" if p is not None and p.significant else ""
    if c.lo is None or math.isnan(c.lo):
        return fmt(c.mean) + mark
    return f"{fmt(c.mean)} [{fmt(c.lo)}, {fmt(c.hi)}]{mark}"


def non_default_params(decoder: str, params: dict) -> dict:
    """The parameters that differ from the decoder's defaults (all of them if the decoder is
    not importable here); the CSV keeps every resolved value."""
    import inspect

    from tmbench.registry import DECODERS

    try:
        sig = inspect.signature(DECODERS.get(decoder))
    except Exception:  # noqa: BLE001 - a plugin that is not installed here
        return params
    out = {}
    for k, v in params.items():
        d = sig.parameters.get(k)
        default = None if d is None else d.default
        if isinstance(default, tuple):
            default = list(default)
        if d is None or default != v:
            out[k] = v
    return out


def params_text(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or "defaults"


def _title(t: Table) -> str:
    title = f"{t.suite} v{t.version}"
    return title + (f" — throughput, machine {t.fingerprint}" if t.fingerprint else "")


def to_markdown(t: Table, all_columns: bool = False) -> str:
    cols = t.columns if all_columns else headline(t.columns)
    head = ["model", "decoder", "params", "seeds", "n"] + [f"{c} {t.arrows.get(c, '')}".strip() for c in cols]
    shown = "" if all_columns or cols == t.columns else (
        f" Headline columns; all {len(t.columns)} metrics are in the CSV.")
    if t.fingerprint:
        caption = ("Mean over batches and seeds; only rows from this machine fingerprint. "
                   "n = runs. " + shown)
    else:
        caption = ("Mean [95% bootstrap CI over prompts]; n = prompts (seeds averaged per prompt); "
                   "params = settings that differ from the decoder's defaults. `*` = differs from "
                   "the same model's greedy row (paired bootstrap over prompts, 95%)." + shown)
    lines = [f"### {_title(t)}", "", caption, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in t.rows:
        n = max((c.n for c in r.cells.values()), default=0)
        params = non_default_params(r.decoder_name, r.params) if r.decoder_name else r.params
        cells = [r.model, r.decoder, params_text(params), str(len(set(r.seeds))), str(n)]
        cells += [cell_text(r.cells.get(c), r.paired.get(c)) for c in cols]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["suite", "version", "fingerprint", "model", "decoder", "params", "seeds", "metric",
                "direction", "mean", "ci_low", "ci_high", "n", "reference", "diff_vs_reference",
                "diff_ci_low", "diff_ci_high", "significant"])
    for r in t.rows:
        for c in t.columns:
            cell = r.cells.get(c)
            if cell:
                w.writerow([t.suite, t.version, t.fingerprint or "", r.model, r.decoder,
                            canonical(r.params), len(set(r.seeds)), c, t.arrows.get(c, ""),
                            repr(cell.mean), "" if cell.lo is None else repr(cell.lo),
                            "" if cell.hi is None else repr(cell.hi), cell.n]
                           + _paired_cols(r, c))
    return buf.getvalue()


def _paired_cols(r: Row, c: str) -> list:
    p = r.paired.get(c)
    if p is None:
        return [r.reference or "", "", "", "", ""]
    return [r.reference, repr(p.diff), repr(p.lo), repr(p.hi), p.significant]


def write_leaderboards(root: Path, dest: Path, suite: str | None = None, warn=print,
                       reference: str = "greedy") -> list[Path]:
    tables = build_tables(root, suite, warn=warn, reference=reference)
    by_suite: dict[tuple[str, int], list[Table]] = defaultdict(list)
    for t in tables:
        by_suite[(t.suite, t.version)].append(t)
    written = []
    for (name, version), ts in by_suite.items():
        stem = dest / f"{name}-v{version}"
        md = f"# Leaderboard: {name} v{version}\n\nGenerated by `tmbench leaderboard`; do not edit.\n\n"
        md += "\n".join(to_markdown(t) for t in ts)
        atomic_write_text(stem.with_suffix(".md"), md)
        atomic_write_text(stem.with_suffix(".csv"), "".join(
            to_csv(t) if i == 0 else to_csv(t).split("\n", 1)[1] for i, t in enumerate(ts)))
        from tmbench.report import CSS, table_html

        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{name} v{version}</title>"
                f"<style>{CSS}</style></head><body><h1>Leaderboard: {name} v{version}</h1>"
                + "".join(f"<h2>{_title(t)}</h2>" + table_html(t) for t in ts) + "</body></html>")
        atomic_write_text(stem.with_suffix(".html"), page)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".html")]
    return written


def iter_cells(tables: Iterable[Table]):
    for t in tables:
        for r in t.rows:
            for c, cell in r.cells.items():
                yield t, r, c, cell


START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def readme_block(root: Path, suite: str | None = None, reference: str = "greedy") -> str:
    tables = build_tables(root, suite, warn=lambda m: None, reference=reference)
    return "\n".join(to_markdown(t) for t in tables)


def update_readme(readme: Path, root: Path, suite: str | None = None, reference: str = "greedy") -> None:
    """Replace the text between the leaderboard markers of ``readme`` with generated tables."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no '{START}' ... '{END}' markers to put the tables between")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(readme, f"{head}{START}\n{readme_block(root, suite, reference)}{END}{tail}")
