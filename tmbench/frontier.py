"""Quality-diversity frontiers from leaderboard rows, and comparisons at matched quality.

One point per configuration (a leaderboard row): a quality value (judge gen-ppl, MAUVE,
coherence) against a diversity value (Dist-2, Rep-2, Self-BLEU, compression ratio), the same
cells the leaderboard shows with their 95% intervals. A decoder family (the decoder's
registry name: greedy with and without a penalty is one family) traces a Pareto frontier: the
points no other point of the family beats on both axes (Generative Frontiers, arXiv
2604.02718; a single quality number is gamed by lowering entropy, arXiv 2606.08417).

Matched quality (:func:`matched`): a named row's quality is located on each family's frontier,
the frontier's diversity there is read by linear interpolation between the neighbouring
frontier points (no extrapolation), and the row's diversity is compared with it. The
interval comes from a bootstrap over prompts: each replicate resamples the prompts all rows
scored, recomputes every row's values, the family's frontier and the interpolation. Verdict
per family: ``dominated`` (a family point is at least as good on both axes and better on one,
or the row lies behind the interpolated frontier: the interval of its diversity difference is
below 0), ``dominates`` (beyond the frontier: the interval is above 0; or, outside the
family's quality range, the row dominates some of its points), ``on the frontier`` (the
interval holds 0), ``not comparable`` (outside the family's quality range and no dominance
either way). Where an axis has no per-prompt values (MAUVE, corpus-level metrics) there is no
interval and the sign of the difference decides; the evidence says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tmbench.aggregate import HUMAN, N_BOOT, Cell, Row, Table
from tmbench.cells import stream
from tmbench.render import WORD, find_column


@dataclass(frozen=True)
class Axis:
    name: str  # short name on the figure and in tables
    family: str  # metric family
    want: tuple  # (param, accepted values) pairs for find_column
    higher_is_better: bool

    def column(self, columns: list[str]) -> str | None:
        return find_column(columns, self.family, **dict(self.want))


# per-prompt variants first: they carry intervals on both axes and pair across rows; a
# corpus-level variant stands in where a table has only that
QUALITY = [
    [Axis("gen-ppl", "gen_ppl", (("agg", ("pooled", None)),), False)],
    [Axis("MAUVE", "mauve", (), True)],
    [Axis("coherence", "coherence", (("def", ("judge-logprob",)),), True),
     Axis("coherence (embed)", "coherence", (("def", ("embed-cos",)),), True)],
]
DIVERSITY = [
    [Axis("Dist-2 (sample)", "distinct", (("n", "2"), ("scope", "sample"), ("unit", WORD)), True),
     Axis("Dist-2", "distinct", (("n", "2"), ("scope", "corpus"), ("unit", WORD)), True)],
    [Axis("seq-Rep-2", "seq_rep", (("n", "2"), ("unit", WORD)), False),
     Axis("Rep-2", "rep", (("n", "2"), ("unit", WORD)), False)],
    [Axis("Self-BLEU", "self_bleu", (("level", "sentence"), ("n", "4"), ("refs", "all"),
                                     ("unit", WORD)), False)],
    [Axis("compression (sample)", "compression_ratio", (("scope", "sample"),), False),
     Axis("compression", "compression_ratio", (("scope", "corpus"),), False)],
]


def axes(t: Table, choices: list[list[Axis]]) -> list[tuple[Axis, str]]:
    """(axis, column) for each choice the table has, its first variant present."""
    out = []
    for variants in choices:
        got = next(((a, c) for a in variants if (c := a.column(t.columns))), None)
        if got:
            out.append(got)
    return out


# ---- Pareto sets and interpolation, on "goodness" (higher is better on both axes) ---------

def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, by increasing quality."""
    keep = [i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
    return sorted(keep, key=lambda i: (points[i][0], -points[i][1]))


def interpolate(frontier: list[tuple[float, float]], q: float) -> float | None:
    """Diversity of the frontier (points by increasing quality) at quality ``q``, linear
    between neighbours; None outside the frontier's quality range."""
    if not frontier or q < frontier[0][0] or q > frontier[-1][0]:
        return None
    for (q0, d0), (q1, d1) in zip(frontier, frontier[1:]):
        if q0 <= q <= q1:
            return d0 if q1 == q0 else d0 + (d1 - d0) * (q - q0) / (q1 - q0)
    return frontier[0][1]  # a frontier of one point, at exactly its quality


# ---- points ---------------------------------------------------------------------------------

@dataclass
class Point:
    row: Row
    x: Cell  # diversity
    y: Cell  # quality

    @property
    def family(self) -> str:
        return self.row.decoder_name or self.row.decoder


def points(t: Table, xkey: str, ykey: str, models: list[str] | None = None) -> list[Point]:
    return [Point(r, r.cells[xkey], r.cells[ykey]) for r in t.rows
            if r.model != HUMAN and (models is None or r.model in models)
            and xkey in r.cells and ykey in r.cells]


def human_point(t: Table, xkey: str, ykey: str) -> Point | None:
    r = next((r for r in t.rows if r.model == HUMAN), None)
    return Point(r, r.cells[xkey], r.cells[ykey]) if r and xkey in r.cells and ykey in r.cells else None


def family_frontiers(pts: list[Point], qa: Axis, da: Axis) -> dict[tuple[str, str], list[Point]]:
    """(model, family) -> its frontier points, by increasing quality goodness."""
    groups: dict[tuple[str, str], list[Point]] = {}
    for p in pts:
        groups.setdefault((p.row.model, p.family), []).append(p)
    out = {}
    for k, ps in groups.items():
        g = [(_good(qa, p.y.mean), _good(da, p.x.mean)) for p in ps]
        out[k] = [ps[i] for i in pareto(g)]
    return out


def _good(a: Axis, v: float) -> float:
    return v if a.higher_is_better else -v


# ---- matched quality --------------------------------------------------------------------------

@dataclass
class Match:
    model: str
    family: str
    quality: str  # axis names
    diversity: str
    frontier: list[str]  # the family's frontier rows
    verdict: str
    evidence: str
    at: float | None = None  # the frontier's diversity at the row's quality
    diff: float | None = None  # row's diversity minus that (metric units)
    lo: float | None = None  # bootstrap 95% interval of diff
    hi: float | None = None
    agreement: float | None = None  # share of replicates giving the same verdict
    n: int = 0  # prompts resampled


@dataclass
class Matched:
    row: str
    quality: str
    diversity: str
    verdict: str  # over the families
    families: list[Match] = field(default_factory=list)


def _replicates(cell: Cell, prompts: list[int], idx: np.ndarray) -> np.ndarray | None:
    """The cell's value on each bootstrap resample of ``prompts`` (idx: (B, n)) -> (B,)."""
    if cell.kind == "ratio":
        num = np.array([cell.parts[i][0] for i in prompts])
        den = np.array([cell.parts[i][1] for i in prompts])
        return np.exp(num[idx].sum(1) / den[idx].sum(1))
    if cell.kind == "prompt":
        return np.array([cell.per_prompt[i] for i in prompts])[idx].mean(1)
    return None


def _prompts(cells: list[Cell]) -> list[int]:
    sets = [set(c.parts) if c.kind == "ratio" else set(c.per_prompt) for c in cells]
    return sorted(set.intersection(*sets)) if sets else []


def frontier_at(fam: list[tuple[float, float]], q: float) -> float | None:
    """The diversity goodness of the family's Pareto frontier at quality goodness ``q``."""
    return interpolate([fam[i] for i in pareto(fam)], q)


def _verdict(r: tuple[float, float], fam: list[tuple[float, float]], names: list[str],
             lo_hi: tuple[float, float] | None, what: str = "") -> tuple[str, str]:
    """(verdict, evidence) of the row's point ``r`` against the family's points (goodness)."""
    by = [n for n, p in zip(names, fam) if dominates(p, r)]
    if by:
        return "dominated", f"dominated by {', '.join(by)}"
    at = frontier_at(fam, r[0])
    if at is not None:
        if lo_hi is None:
            d = r[1] - at
            v = "dominates" if d > 0 else "dominated" if d < 0 else "on the frontier"
            return v, what or "sign of the difference at matched quality"
        lo, hi = lo_hi
        v = "dominates" if lo > 0 else "dominated" if hi < 0 else "on the frontier"
        return v, "95% interval of the difference at matched quality"
    over = [n for n, p in zip(names, fam) if dominates(r, p)]
    if over:
        return "dominates", f"outside the family's quality range; dominates {', '.join(over)}"
    return "not comparable", "outside the family's quality range; dominates none of its points"


def match_family(row: Row, fam: list[Row], qa: Axis, qkey: str, da: Axis, dkey: str,
                 n_boot: int = N_BOOT) -> Match:
    """The row against one family's rows at matched quality (see the module docstring)."""
    r = (_good(qa, row.cells[qkey].mean), _good(da, row.cells[dkey].mean))
    pts = [(_good(qa, f.cells[qkey].mean), _good(da, f.cells[dkey].mean)) for f in fam]
    names = [f"{f.model}/{f.decoder}" for f in fam]
    cells = [x.cells[k] for x in [row, *fam] for k in (qkey, dkey)]
    prompts = _prompts(cells) if all(c.kind != "corpus" for c in cells) else []
    diffs, verdicts = [], []
    if len(prompts) >= 2:
        rng = stream("matched", row.key, [f.key for f in fam], qkey, dkey)
        idx = rng.integers(0, len(prompts), size=(n_boot, len(prompts)))  # (B, n)
        reps = [(_good(qa, _replicates(x.cells[qkey], prompts, idx)),
                 _good(da, _replicates(x.cells[dkey], prompts, idx))) for x in [row, *fam]]
        for b in range(n_boot):
            rb = (float(reps[0][0][b]), float(reps[0][1][b]))
            fb = [(float(q[b]), float(d[b])) for q, d in reps[1:]]
            verdicts.append(_verdict(rb, fb, names, None)[0])
            at_b = frontier_at(fb, rb[0])
            if at_b is not None:
                diffs.append(rb[1] - at_b)
    lo_hi = None
    if len(diffs) >= max(2, n_boot // 2):  # defined in most replicates
        lo_hi = (float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5)))
    no_ci = "sign of the difference at matched quality (" + (
        "no per-prompt values: no interval)" if not prompts else
        f"defined in {len(diffs)} of {n_boot} replicates: no interval)")
    verdict, evidence = _verdict(r, pts, names, lo_hi, no_ci)
    m = Match(fam[0].model, fam[0].decoder_name or fam[0].decoder, qa.name, da.name,
              [names[i] for i in pareto(pts)], verdict, evidence, n=len(prompts))
    sign = 1 if da.higher_is_better else -1  # goodness -> metric units
    at = frontier_at(pts, r[0])
    if at is not None:
        m.at, m.diff = sign * at, sign * (r[1] - at)
        if lo_hi is not None:
            m.lo, m.hi = sorted((sign * lo_hi[0], sign * lo_hi[1]))
    if verdicts:
        point_v = _verdict(r, pts, names, None)[0]
        m.agreement = sum(v == point_v for v in verdicts) / len(verdicts)
    return m


def overall(verdicts: list[str]) -> str:
    """Over the families: dominated by any; else dominates every comparable one; else on the
    frontier (or not comparable with any)."""
    got = [v for v in verdicts if v != "not comparable"]
    if not got:
        return "not comparable"
    if "dominated" in got:
        return "dominated"
    return "dominates" if all(v == "dominates" for v in got) else "on the frontier"


def matched(t: Table, row: Row, models: list[str], n_boot: int = N_BOOT) -> list[Matched]:
    """The row against every decoder family of ``models`` (the row itself left out), for each
    quality and diversity axis the table has."""
    out = []
    for qa, qkey in axes(t, QUALITY):
        for da, dkey in axes(t, DIVERSITY):
            if qkey not in row.cells or dkey not in row.cells:
                continue
            fams: dict[tuple[str, str], list[Row]] = {}
            for p in points(t, dkey, qkey, models):
                if p.row is not row:
                    fams.setdefault((p.row.model, p.family), []).append(p.row)
            ms = [match_family(row, rows, qa, qkey, da, dkey, n_boot) for rows in fams.values()]
            if ms:
                out.append(Matched(f"{row.model}/{row.decoder}", qa.name, da.name,
                                   overall([m.verdict for m in ms]), ms))
    return out


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
