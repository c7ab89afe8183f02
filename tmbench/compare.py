"""Paired comparisons of one row against a named reference row of any model (a suite's
``compare: [{row: MODEL/LABEL, to: MODEL/LABEL}]``): row minus reference per headline metric,
a paired bootstrap 95% interval over the prompts both scored, a two-sided bootstrap p-value,
and Holm's correction over the metrics of the table.

The interval is the one :func:`tmbench.cells.paired_bootstrap` gives (the same draws from the
same stream); the p-value comes from those replicates: p = 2 min(#(d* <= 0) + 1,
#(d* >= 0) + 1) / (B + 1), capped at 1 (the +1 keeps it above 0 with B replicates; Davison &
Hinkley 1997, ch. 4). Holm 1979: the i-th smallest of m p-values is multiplied by m - i + 1,
then made monotone. Corpus-level cells (one value per record: MAUVE, corpus Dist-n, corpus
Rep-n) have nothing to pair; the table shows their difference without a test and tests their
per-prompt counterpart where the table has one (rep -> seq_rep, scope=corpus -> scope=sample).
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmbench.aggregate import N_BOOT, Cell, Row, Table
from tmbench.cells import is_human, parse_key, stream
from tmbench.results import iter_records
from tmbench.suites import split_row


@dataclass
class Difference:
    metric: str  # the metric key
    row: float  # the row's value
    ref: float  # the reference's value
    diff: float
    lo: float | None = None  # paired bootstrap 95% interval; None: nothing to pair
    hi: float | None = None
    n: int = 0  # prompts both rows scored
    p: float | None = None
    p_holm: float | None = None


def paired_replicates(a: Cell, b: Cell, rng: np.random.Generator,
                      n_boot: int = N_BOOT) -> tuple[float, np.ndarray, int] | None:
    """(a - b, bootstrap replicates of a - b (n_boot,), prompts) over the prompts both cells
    scored, the draws of :func:`tmbench.cells.paired_bootstrap`; None without 2 common prompts
    or per-prompt values."""
    if a.kind == "ratio" and b.kind == "ratio":
        common = sorted(set(a.parts) & set(b.parts))
        if len(common) < 2:
            return None
        an, ad = (np.array([a.parts[i][j] for i in common]) for j in (0, 1))
        bn, bd = (np.array([b.parts[i][j] for i in common]) for j in (0, 1))
        idx = rng.integers(0, len(common), size=(n_boot, len(common)))  # (B, n)
        reps = np.exp(an[idx].sum(1) / ad[idx].sum(1)) - np.exp(bn[idx].sum(1) / bd[idx].sum(1))
        return math.exp(an.sum() / ad.sum()) - math.exp(bn.sum() / bd.sum()), reps, len(common)
    if a.kind == "corpus" or b.kind == "corpus":
        return None
    common = sorted(set(a.per_prompt) & set(b.per_prompt))
    if len(common) < 2:
        return None
    d = np.array([a.per_prompt[i] - b.per_prompt[i] for i in common])  # (n,)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))  # (B, n)
    return float(d.mean()), d[idx].mean(1), len(common)


def bootstrap_p(reps: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from bootstrap replicates (n_boot,)."""
    below, above = int((reps <= 0).sum()), int((reps >= 0).sum())
    return min(1.0, 2 * (min(below, above) + 1) / (len(reps) + 1))


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the order given; None entries are not tests."""
    tested = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m, out, running = len(tested), list(ps), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def counterpart(key: str, columns: list[str]) -> str | None:
    """The per-prompt counterpart of a corpus-level key, where the table has one."""
    fam, params = parse_key(key)
    if fam == "rep":
        fam = "seq_rep"
    elif params.get("scope") == "corpus":
        params = {**params, "scope": "sample"}
    else:
        return None
    want = f"{fam}[{','.join(f'{k}={v}' for k, v in params.items())}]" if params else fam
    return want if want in columns else None


def find_row(t: Table, ref: str) -> Row | None:
    """The row ``MODEL/LABEL`` of a table (by the suite's label; of several rows of one label,
    the one that keeps it unadorned)."""
    model, label = split_row(ref)
    hits = [r for r in t.rows if r.model == model and r.config.get("label", r.decoder) == label]
    hits.sort(key=lambda r: (r.decoder != label, -len(r.records), r.key))
    return hits[0] if hits else None


def differences(t: Table, row: Row, ref: Row, metrics: list[str],
                n_boot: int = N_BOOT) -> list[Difference]:
    """Row minus reference on ``metrics`` (each corpus-level one followed by its per-prompt
    counterpart), Holm over the tested ones."""
    keys: list[str] = []
    for k in metrics:
        keys += [x for x in (k, counterpart(k, t.columns)) if x and x not in keys]
    out = []
    for k in keys:
        a, b = row.cells.get(k), ref.cells.get(k)
        if a is None or b is None:
            continue
        d = Difference(k, a.mean, b.mean, a.mean - b.mean)
        got = paired_replicates(a, b, stream("compare", row.key, ref.key, k), n_boot)
        if got is not None:
            d.diff, reps = got[0], got[1]
            d.lo, d.hi = float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))
            d.n, d.p = got[2], bootstrap_p(reps)
        out.append(d)
    for d, p in zip(out, holm([d.p for d in out])):
        d.p_holm = p
    return out


@dataclass
class Comparison:
    row: str  # MODEL/LABEL
    to: str
    diffs: list[Difference]
    note: str = ""  # why there are no differences (a row without records, other prompts)


def comparisons(t: Table, pairs: tuple[tuple[str, str], ...], metrics: list[str]) -> list[Comparison]:
    out = []
    for a, b in pairs:
        row, ref = find_row(t, a), find_row(t, b)
        if row is None or ref is None:
            missing = " and ".join(x for x, r in ((a, row), (b, ref)) if r is None)
            out.append(Comparison(a, b, [], f"no records of {missing} yet"))
        elif (row.config.get("prompts"), row.n_prompts) != (ref.config.get("prompts"), ref.n_prompts):
            out.append(Comparison(a, b, [], "the rows scored different prompt sets: nothing to pair"))
        else:
            out.append(Comparison(a, b, differences(t, row, ref, metrics)))
    return out


def suite_pairs(name: str, warn=print) -> tuple[tuple[str, str], ...]:
    """The ``compare:`` pairs of the suite file of that name (none when there is no such file
    or it does not load; the latter is reported through ``warn``)."""
    from tmbench.suites import find_suite, load_suite

    try:
        find_suite(name)
    except ValueError:
        return ()
    try:
        return load_suite(name).compare
    except ValueError as e:
        warn(f"warning: suite {name}: its comparisons are left out: {e}")
        return ()


def reference_labels(root: Path, suite: str | None = None) -> list[str]:
    """The decoder labels a ``--reference`` may name: those of the rows of these records (the
    human row aside, which is compared with nothing)."""
    recs = [rec for _, rec in iter_records(root, warn=lambda m: None)
            if suite is None or rec["spec"]["suite"]["name"] == suite]
    return sorted({rec["spec"]["decoder"]["label"] for rec in recs if not is_human(rec)})


def check_reference(root: Path, suite: str | None, reference: str) -> None:
    """Refuse a ``--reference`` that is the label of no row: it would silently mark nothing."""
    import difflib

    labels = reference_labels(root, suite)
    if reference not in labels:
        close = next(iter(difflib.get_close_matches(reference, labels, n=1, cutoff=0.5)), None)
        raise ValueError(f"--reference {reference!r} is the decoder label of no row under "
                         f"{root}{f' (suite {suite})' if suite else ''}"
                         f"{f'; did you mean {close!r}?' if close else ''}; accepted: "
                         f"{', '.join(labels) or '(none: no records)'}")


# ---- rendering ----------------------------------------------------------------------------------

def _num(x: float | None) -> str:
    from tmbench.render import fmt

    return "–" if x is None else fmt(x)


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


CAPTION = ("Row minus reference on the prompts both scored: per-prompt values paired, "
           f"{N_BOOT} bootstrap resamples of the prompts (95% percentile interval); p: two-sided "
           "bootstrap p-value; Holm: adjusted over the tested metrics of the table (`*`: "
           "Holm p < 0.05). Corpus-level metrics have no per-prompt values to pair: their "
           "difference is shown untested, next to the per-prompt counterpart that is tested.")


def _lines(c: Comparison, t: Table) -> list[list[str]]:
    rows = []
    for d in c.diffs:
        ci = "–" if d.lo is None else f"[{_num(d.lo)}, {_num(d.hi)}]"
        star = "*" if d.p_holm is not None and d.p_holm < 0.05 else ""
        rows.append([f"{d.metric} {t.arrows.get(d.metric, '')}".strip(), _num(d.row), _num(d.ref),
                     f"{_num(d.diff)}{star}", ci, _p(d.p), _p(d.p_holm), str(d.n or "–")])
    return rows


HEAD = ["metric", "row", "reference", "difference", "95% CI", "p", "p (Holm)", "n"]


def to_markdown(t: Table, comps: list[Comparison]) -> str:
    out = []
    for c in comps:
        out += [f"### {t.suite} v{t.version} — {c.row} minus {c.to}", ""]
        if not c.diffs:
            out += [f"({c.note or 'no metric both rows have'})", ""]
            continue
        out += [CAPTION, "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        out += ["| " + " | ".join(x.replace("|", "\\|") for x in line) + " |" for line in _lines(c, t)]
        out.append("")
    return "\n".join(out)


def to_html(t: Table, comps: list[Comparison]) -> str:
    e = html.escape
    out = []
    for c in comps:
        out.append(f"<h3>{e(c.row)} minus {e(c.to)}</h3>")
        if not c.diffs:
            out.append(f"<p class='note'>{e(c.note or 'no metric both rows have')}</p>")
            continue
        out.append(f"<p class='note'>{e(CAPTION)}</p><table><tr>"
                   + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr>"
                   + "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in line) + "</tr>"
                             for line in _lines(c, t)) + "</table>")
    return "".join(out)


CSV_HEADER = ["suite", "version", "row", "reference", "metric", "direction", "row_mean",
              "reference_mean", "diff", "ci_low", "ci_high", "p", "p_holm", "n"]


def to_csv(t: Table, comps: list[Comparison], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(CSV_HEADER)
    num = lambda x: "" if x is None else repr(x)  # noqa: E731
    for c in comps:
        for d in c.diffs:
            w.writerow([t.suite, t.version, c.row, c.to, d.metric, t.arrows.get(d.metric, ""),
                        repr(d.row), repr(d.ref), repr(d.diff), num(d.lo), num(d.hi), num(d.p),
                        num(d.p_holm), d.n])
    return buf.getvalue()


def table_comparisons(t: Table, warn=print) -> list[Comparison]:
    """The comparisons the table's suite file asks for, on its headline metrics."""
    from tmbench.render import headline

    pairs = suite_pairs(t.suite, warn)
    if not pairs or t.fingerprint is not None:
        return []
    chosen = t.facts.get("headline")  # the suite's headline: choice, where the table carries it
    return comparisons(t, pairs, headline(t.columns, chosen) if chosen else headline(t.columns))


def write_differences(t: Table, comps: list[Comparison], stem: Path) -> Path | None:
    """``<stem>-differences.csv`` when there are comparisons; the path written."""
    from tmbench.results import atomic_write_text

    if not comps:
        return None
    path = stem.with_name(stem.name + "-differences.csv")
    atomic_write_text(path, to_csv(t, comps))
    return path
