"""Leaderboard cells: one row's records and one metric key -> value, interval and marks.

A cell takes its value and its interval from the same aggregation:

- ``prompt``: the score's ``per_sample`` values (aligned with ``samples[i]``, which carry
  ``prompt_index`` and ``seed``) are averaged per prompt over seeds; the value is the mean of the
  per-prompt means, the 95% interval a percentile bootstrap over prompts.
- ``ratio``: a score whose meta carries ``per_sample_nll`` (total NLL of each sample, nats) and
  ``per_sample_tokens`` (its token count) is a perplexity pooled over tokens: exp(sum NLL / sum
  tokens) over the row's samples; the bootstrap resamples prompts and recomputes the pooled
  ratio. ``meta["pooled"] == "ratio"`` says so explicitly; a key that names another aggregation
  (``gen_ppl[agg=sample-mean,...]``) keeps its own, even with the fields.
- ``corpus``: a score with one value per record (MAUVE, corpus distinct-n, corpus Self-BLEU,
  held-out perplexity) shows the mean over seeds and, with several seeds, their standard
  deviation.

Every bootstrap stream is seeded from a hash of (row key, metric key), so a cell's interval does
not depend on which other rows exist. Marks come from score meta and record identities: MAUVE
below ``MAUVE_MIN_N`` samples per side or ``meta["reliable"] is False`` is unreliable; a judge
that is the generator (``meta["self_judged"]``, or equal identities) is self-judged.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmbench.results import canonical
from tmbench.types import HUMAN

N_BOOT = 1000
MAUVE_MIN_N = 500  # below this MAUVE is marked unreliable (its authors use 5,000 per side)


@dataclass
class Cell:
    mean: float
    lo: float | None = None
    hi: float | None = None
    n: int = 0  # prompts behind the value (runs, in a throughput table)
    seeds: int = 0  # records that contributed
    kind: str = "prompt"  # "prompt" | "ratio" | "corpus"
    spread: float | None = None  # standard deviation over seeds (corpus cells, >= 2 seeds)
    per_prompt: dict[int, float] = field(default_factory=dict)
    parts: dict[int, tuple[float, float]] = field(default_factory=dict)  # ratio: (NLL, tokens)
    info: dict[str, Any] = field(default_factory=dict)  # MAUVE: n, buckets, k-means spread
    flags: set[str] = field(default_factory=set)  # "unreliable", "self_judged"


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


def is_human(rec: dict) -> bool:
    m = rec["spec"]["model"]
    return m.get("kind") == HUMAN or m.get("name") == HUMAN


# ---- cells ---------------------------------------------------------------------------------------

def stream(*parts: Any) -> np.random.Generator:
    """A bootstrap stream that depends only on ``parts`` (row key, metric key)."""
    h = hashlib.sha256(canonical(list(parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``values`` (n,)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))  # (n_boot, n)
    means = values[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, rng: np.random.Generator,
                    n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile interval of exp(sum num / sum den) with prompts (rows of num, den) resampled."""
    if len(num) < 2:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))  # (n_boot, n)
    vals = np.exp(num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _aligned(rec: dict, values: Any) -> bool:
    return isinstance(values, list) and len(values) == len(rec["samples"])


def _ratio_fields(m: dict, rec: dict, key: str) -> tuple[list, list] | None:
    """NLL and token counts per sample, when the score is pooled over tokens. A key that names
    another aggregation (``gen_ppl[agg=sample-mean,...]``) keeps it, even with the fields."""
    meta = m.get("meta") or {}
    num, den = meta.get("per_sample_nll"), meta.get("per_sample_tokens")
    if not (_aligned(rec, num) and _aligned(rec, den)):
        return None
    agg = _params(key).get("agg")
    return (num, den) if meta.get("pooled") == "ratio" or agg in (None, "pooled") else None


def _params(key: str) -> dict[str, str]:
    return parse_key(key)[1]


def aggregate_cell(records: list[dict], key: str, row_key: str, n_boot: int = N_BOOT) -> Cell | None:
    scored = [(r, r["metrics"][key]) for r in records if key in r["metrics"]]
    scored = [(r, m) for r, m in scored if _finite(m.get("value")) or _ratio_fields(m, r, key)
              or _aligned(r, m.get("per_sample"))]
    if not scored:
        return None
    rng = stream(row_key, key)
    cell = None
    if all(_ratio_fields(m, r, key) for r, m in scored):
        cell = _ratio_cell(scored, key, rng, n_boot)
    if cell is None and any(_aligned(r, m.get("per_sample")) for r, m in scored):
        cell = _prompt_cell(scored, rng, n_boot)
    if cell is None:
        cell = _corpus_cell(scored)
    if cell is not None:
        _annotate(cell, key, scored)
    return cell


def _prompt_cell(scored, rng, n_boot) -> Cell | None:
    per: dict[int, list[float]] = defaultdict(list)
    used = 0
    for r, m in scored:
        ps = m.get("per_sample")
        if not _aligned(r, ps):
            continue
        used += 1
        for s, v in zip(r["samples"], ps):
            if _finite(v):
                per[s["prompt_index"]].append(float(v))
    if not per:
        return None
    pp = {i: float(np.mean(v)) for i, v in sorted(per.items())}
    arr = np.array(list(pp.values()))
    lo, hi = bootstrap_ci(arr, rng, n_boot)
    return Cell(float(arr.mean()), lo, hi, len(arr), used, "prompt", per_prompt=pp)


def _ratio_cell(scored, key, rng, n_boot) -> Cell | None:
    parts: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r, m in scored:
        num, den = _ratio_fields(m, r, key)
        for s, a, b in zip(r["samples"], num, den):
            if _finite(a) and _finite(b) and b > 0:
                parts[s["prompt_index"]][0] += float(a)
                parts[s["prompt_index"]][1] += float(b)
    if not parts:
        return None
    idx = sorted(parts)
    num = np.array([parts[i][0] for i in idx])
    den = np.array([parts[i][1] for i in idx])
    lo, hi = bootstrap_ratio(num, den, rng, n_boot)
    return Cell(float(math.exp(num.sum() / den.sum())), lo, hi, len(idx), len(scored), "ratio",
                parts={i: (parts[i][0], parts[i][1]) for i in idx})


def _corpus_cell(scored) -> Cell | None:
    vals = [float(m["value"]) for _, m in scored if _finite(m.get("value"))]
    if not vals:
        return None
    n = min(int(r["spec"].get("prompts", {}).get("n") or len({s["prompt_index"] for s in r["samples"]}))
            for r, _ in scored)
    spread = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return Cell(float(np.mean(vals)), None, None, n, len(vals), "corpus", spread)


def runs_cell(records: list[dict], key: str) -> Cell | None:
    """Mean and sd over runs of a score with one value per run (timings); n = runs. A run's
    score marked unreliable (a roofline share above 1) flags the cell; the limit a roofline
    share is of (its meta ``bound``) goes to ``info["bound"]``."""
    scored = [(r, r["metrics"][key]) for r in records if key in r["metrics"]]
    cell = _corpus_cell(scored)
    if cell is not None:
        cell.n = cell.seeds
        metas = [m.get("meta") or {} for _, m in scored]
        if any(meta.get("reliable") is False for meta in metas):
            cell.flags.add("unreliable")
        bounds = sorted({meta["bound"] for meta in metas if meta.get("bound")})
        if bounds:
            cell.info["bound"] = "/".join(bounds)
    return cell


def _family(key: str) -> str:
    return key.split("[", 1)[0]


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """``"rep[n=2,unit=word]" -> ("rep", {"n": "2", "unit": "word"})``."""
    if "[" not in key or not key.endswith("]"):
        return key, {}
    family, inner = key[:-1].split("[", 1)
    params, depth, cur = {}, 0, ""
    for ch in inner + ",":
        if ch == "," and depth == 0:
            k, _, v = cur.partition("=")
            params[k.strip()] = v.strip()
            cur = ""
            continue
        depth += 1 if ch in "[(" else -1 if ch in "])" else 0
        cur += ch
    return family, params


def _annotate(cell: Cell, key: str, scored: list[tuple[dict, dict]]) -> None:
    """Reliability, k-means spread and self-judging, from score meta and record identities."""
    metas = [m.get("meta") or {} for _, m in scored]
    if any(meta.get("reliable") is False for meta in metas):
        cell.flags.add("unreliable")
    if _family(key) == "mauve":
        ns = [meta.get("n") or min(meta.get("n_p_human") or 0, meta.get("n_q_model") or 0) or None
              for meta in metas]
        ns = [int(n) for n in ns if n]
        if ns:
            cell.info["n"] = min(ns)
            if min(ns) < MAUVE_MIN_N:
                cell.flags.add("unreliable")
        buckets = {meta.get("buckets", meta.get("num_buckets")) for meta in metas} - {None}
        if buckets:
            cell.info["buckets"] = "/".join(str(b) for b in sorted(buckets, key=str))
        stds = [meta["std"] for meta in metas if _finite(meta.get("std"))]
        if stds:
            cell.info["kmeans_sd"] = float(np.mean(stds))
        mins = [meta["min"] for meta in metas if _finite(meta.get("min"))]
        maxs = [meta["max"] for meta in metas if _finite(meta.get("max"))]
        if mins and maxs:
            cell.info["kmeans_range"] = (float(min(mins)), float(max(maxs)))
    if any(self_judged(r, m, key) for r, m in scored):
        cell.flags.add("self_judged")


def self_judged(rec: dict, m: dict, key: str) -> bool:
    """The score's judge is the generator: meta says so, or a judge's identity is the model's."""
    meta = m.get("meta") or {}
    if meta.get("self_judged") is True:
        return True
    if "self_judged" in meta or is_human(rec):
        return False
    judges = [meta.get(k) for k in ("judge", "featurizer") if isinstance(meta.get(k), dict)]
    for k, v in _params(key).items():
        if k in ("judge", "featurizer") and isinstance(rec.get("judges", {}).get(v), dict):
            judges.append(rec["judges"][v])
    model = rec["spec"]["model"]
    # the same model: equal content hashes where both have one, else equal names
    return any((j.get("content_hash") == model.get("content_hash")) if j.get("content_hash")
               and model.get("content_hash") else j.get("name") == model.get("name") for j in judges)


# ---- paired comparison --------------------------------------------------------------------------

def paired_bootstrap(a: Cell, b: Cell, rng: np.random.Generator, n_boot: int = N_BOOT) -> Paired | None:
    if a.kind == "ratio" and b.kind == "ratio":
        common = sorted(set(a.parts) & set(b.parts))
        if len(common) < 2:
            return None
        an, ad = (np.array([a.parts[i][j] for i in common]) for j in (0, 1))
        bn, bd = (np.array([b.parts[i][j] for i in common]) for j in (0, 1))
        idx = rng.integers(0, len(common), size=(n_boot, len(common)))
        d = np.exp(an[idx].sum(1) / ad[idx].sum(1)) - np.exp(bn[idx].sum(1) / bd[idx].sum(1))
        diff = math.exp(an.sum() / ad.sum()) - math.exp(bn.sum() / bd.sum())
        return Paired(diff, float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)), len(common))
    common = sorted(set(a.per_prompt) & set(b.per_prompt))
    if len(common) < 2:
        return None
    d = np.array([a.per_prompt[i] - b.per_prompt[i] for i in common])
    lo, hi = bootstrap_ci(d, rng, n_boot)
    return Paired(float(d.mean()), lo, hi, len(common))
