"""Leaderboard rows and tables from run records: which records pool into a row.

A **row** pools only records whose numbers are comparable (DESIGN section 6): the same suite
name and version, prompt set (hash, n, samples per prompt), max_new_tokens, model identity (name
and content hash), decoder (name, label, resolved params), the resolved parameters of every
metric, dtype, device type and batch size (these can change tokens; not for the human row),
judges of the same identity, and, where recorded, the same code identities (decoder, model and
metric implementations). Seeds of one
configuration pool into one row. Records that differ in anything else become separate rows whose
label names the difference (``nucleus-0.95 (n=4)``), never a silent average. Cells are computed
by :mod:`tmbench.cells`; tables are rendered by :mod:`tmbench.render`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tmbench.agreement import with_k1_agreement
from tmbench.cells import (HUMAN, N_BOOT, Cell, Paired, aggregate_cell, bootstrap_ci, is_human,
                           paired_bootstrap, parse_key, runs_cell, stream)
from tmbench.results import canonical

TIMING_METRICS = {"throughput"}
__all__ = ["N_BOOT", "HUMAN", "Cell", "Paired", "Row", "Table", "add_paired", "bootstrap_ci",
           "parse_key", "tables_from_records"]


@dataclass
class Row:
    model: str
    decoder: str  # the label shown: the suite's label plus what sets this row apart
    params: dict[str, Any]
    batch_size: int
    decoder_name: str = ""
    defaults: dict[str, Any] | None = None  # the decoder's keyword defaults, as recorded
    seeds: list[int] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    cells: dict[str, Cell] = field(default_factory=dict)
    paired: dict[str, Paired] = field(default_factory=dict)
    reference: str | None = None  # the row this one is compared with
    key: str = ""  # canonical comparability key; seeds this row's bootstrap streams
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model} / {self.decoder}"

    @property
    def seed_free(self) -> bool:
        """Every run of the row was planned as drawing nothing from its generator (one run
        stands for every seed; ``tmbench.types.seed_free``)."""
        return bool(self.records) and all(r["spec"]["decoder"].get("seed_free")
                                          for r in self.records)

    @property
    def seeds_shown(self) -> str:
        """The seeds cell of a table: how many seeds, or ``any`` for a seed-free row."""
        return "any" if self.seed_free else str(len(set(self.seeds)))

    @property
    def n_prompts(self) -> int:
        return int(self.config.get("n") or 0)

    @property
    def max_new_tokens(self) -> int | None:
        return self.config.get("max_new_tokens")


@dataclass
class Table:
    suite: str
    version: int
    columns: list[str]
    arrows: dict[str, str]
    rows: list[Row]
    fingerprint: str | None = None  # set for throughput tables
    facts: dict[str, Any] = field(default_factory=dict)  # what the caption states, from records


# ---- which records pool ------------------------------------------------------------------------

def config_of(rec: dict) -> dict[str, Any]:
    """Everything that must be equal for two records' numbers to pool."""
    sp = rec["spec"]
    pr = sp.get("prompts", {})
    cfg = {"suite": sp["suite"]["name"], "version": sp["suite"]["version"],
           "prompts": pr.get("hash"), "n": pr.get("n"), "samples_per_prompt": pr.get("samples_per_prompt", 1),
           "max_new_tokens": sp.get("max_new_tokens"),
           "model": sp["model"]["name"], "model_hash": sp["model"].get("content_hash"),
           "decoder": sp["decoder"]["name"], "label": sp["decoder"]["label"],
           "params": canonical(sp["decoder"].get("params", {})),
           "metrics": metric_params(rec)}
    if not is_human(rec):  # how the reference text would have been generated does not matter
        cfg |= {"dtype": sp.get("dtype"), "device": sp.get("device_type"), "batch_size": sp.get("batch_size")}
    code = code_of(rec)
    if code:  # only where recorded, so records from before code identities group as they did
        cfg["code"] = code
    return cfg


def code_of(rec: dict) -> str | None:
    """A short hash of the code identities that shaped the record (decoder, model, metrics),
    or None for a record that names none: runs of other code never pool."""
    sp = rec["spec"]
    code = {"decoder": sp["decoder"].get("code"), "model": sp["model"].get("code"),
            "metrics": {v["name"]: v.get("code") for v in (rec.get("metric_runs") or {}).values()}}
    if code["decoder"] is None and code["model"] is None and not any(code["metrics"].values()):
        return None
    return hashlib.sha256(canonical(code).encode()).hexdigest()[:8]


# Metric parameters that change how fast a number is computed, never the number itself.
SPEED_ONLY = frozenset({"batch_tokens"})


def metric_params(rec: dict) -> str:
    """The resolved parameters each metric of the record was computed with, by metric name
    (canonical JSON): records scored with other parameters never pool into one cell."""
    runs = rec.get("metric_runs") or {}
    return canonical({v["name"]: {k: p for k, p in (v.get("params") or {}).items()
                                  if k not in SPEED_ONLY} for v in runs.values()})


def judge_ids(rec: dict) -> dict[str, tuple]:
    return {name: (j.get("content_hash"), j.get("version"), j.get("dtype", "float32"))
            if isinstance(j, dict) else (str(j), None, None)
            for name, j in rec.get("judges", {}).items()}


def _fits(rec: dict, group: list[dict]) -> bool:
    """A record joins a group when no judge disagrees on identity and its seed is new there."""
    j = judge_ids(rec)
    for other in group:
        o = judge_ids(other)
        if any(o[k] != v for k, v in j.items() if k in o) or other["spec"]["seed"] == rec["spec"]["seed"]:
            return False
    return True


def group_records(recs: list[dict]) -> list[tuple[dict, list[dict]]]:
    """(config, records) per row; records sorted by creation so grouping is reproducible."""
    by_cfg: dict[str, list[list[dict]]] = defaultdict(list)
    cfgs: dict[str, dict] = {}
    for rec in sorted(recs, key=lambda r: (r.get("created", ""), r.get("key", ""))):
        cfg = config_of(rec)
        k = canonical(cfg)
        cfgs[k] = cfg
        groups = by_cfg[k]
        target = next((g for g in groups if _fits(rec, g)), None)
        if target is None:
            groups.append([rec])
        else:
            target.append(rec)
    out = []
    for k, groups in by_cfg.items():
        made = []
        for g in groups:
            judges: dict[str, list] = {}
            for r in g:
                judges.update({n: list(v) for n, v in judge_ids(r).items()})
            made.append((dict(cfgs[k], judges=canonical(judges)), g))
        seen = defaultdict(int)
        for cfg, _ in made:
            seen[cfg["judges"]] += 1
        for cfg, g in made:
            if seen[cfg["judges"]] > 1:  # one seed recorded twice (e.g. by two tmbench versions)
                cfg["runs"] = ",".join(sorted(r.get("key", "")[:8] for r in g))
            out.append((cfg, g))
    return out


def _row(cfg: dict, recs: list[dict]) -> Row:
    d = recs[0]["spec"]["decoder"]
    return Row(cfg["model"], cfg["label"], d.get("params", {}), recs[0]["spec"].get("batch_size", 0),
               d["name"], d.get("defaults"), sorted(r["spec"]["seed"] for r in recs), recs,
               key=canonical(cfg), config=cfg)


LABELS = {"n": "n", "prompts": "prompts", "samples_per_prompt": "samples/prompt",
          "max_new_tokens": "max_new_tokens", "model_hash": "weights", "decoder": "decoder",
          "dtype": "dtype", "device": "device"}


def label_differences(rows: list[Row], always_batch: bool = False) -> None:
    """Rows that share model and label: the one with the most runs keeps the label, every other
    row gets what sets it apart from that one appended (``nucleus-0.95 (n=4)``)."""
    by_name: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        by_name[(r.model, r.decoder)].append(r)
    # a row run in another dtype or on another device than most rows of the table says so
    usual = {f: Counter(r.config.get(f) for r in rows if f in r.config).most_common(1)
             for f in ("dtype", "device")}
    for (_, label), group in by_name.items():
        base = max(group, key=lambda r: (len(r.records), r.n_prompts, r.key))
        for r in group:
            parts = [] if r is base else _differences(r, base, skip_batch=always_batch)
            for f, common in usual.items():
                v = r.config.get(f)
                if common and f in r.config and v != common[0][0] and f"{f}={v}" not in parts:
                    parts.append(f"{f}={v}")
            name = f"{label} b{r.batch_size}" if always_batch and not is_human(r.records[0]) else label
            r.decoder = f"{name} ({', '.join(parts)})" if parts else name


def _differences(r: Row, base: Row, skip_batch: bool) -> list[str]:
    out = []
    for f in sorted(set(r.config) | set(base.config)):
        v, b = r.config.get(f), base.config.get(f)
        if v == b or f in ("suite", "version", "model", "label") or (f == "batch_size" and skip_batch):
            continue
        if f == "prompts" and r.config.get("n") != base.config.get("n"):
            continue  # a different n already says the prompt sets differ
        if f == "params":
            keys = sorted(set(r.params) | set(base.params))
            out += [f"{k}={r.params.get(k)}" for k in keys if r.params.get(k) != base.params.get(k)]
        elif f == "judges":
            mine, theirs = json.loads(v or "{}"), json.loads(b or "{}")
            for k in sorted(mine):
                if k in theirs and theirs[k] != mine[k]:
                    a, t = list(mine[k]) + [None] * 3, list(theirs[k]) + [None] * 3
                    out.append(f"judge {k}={str(a[0])[:8]}" if a[0] != t[0] else
                               f"judge {k} dtype={a[2]}" if a[2] != t[2] else f"judge {k} v{a[1]}")
        elif f == "metrics":
            mine, theirs = json.loads(v or "{}"), json.loads(b or "{}")
            for name in sorted(set(mine) | set(theirs)):
                if name not in mine or name not in theirs:
                    out.append(f"{'without' if name not in mine else 'with'} {name}")
                    continue
                keys = sorted(set(mine[name]) | set(theirs[name]))
                out += [f"{name} {k}={mine[name].get(k)}" for k in keys
                        if mine[name].get(k) != theirs[name].get(k)]
        elif f == "batch_size":
            out.append(f"b{v}")
        elif f == "runs":
            out.append(f"runs {v}")
        elif f == "code":
            out.append(f"code {v}" if v else "code unrecorded")
        else:
            out.append(f"{LABELS.get(f, f)}={str(v)[:8] if f in ('prompts', 'model_hash') else v}")
    return out


# ---- paired comparison with a reference row -----------------------------------------------------

SAME_SETUP = ("suite", "version", "prompts", "n", "samples_per_prompt", "max_new_tokens", "model",
              "model_hash", "dtype", "device")


def add_paired(table: Table, reference: str = "greedy") -> None:
    """Compare every row with the ``reference``-labelled row of the same model and setup
    (prompts, length, weights, dtype, device), prompt by prompt."""
    table.facts["reference"] = reference
    refs = [r for r in table.rows if r.config.get("label") == reference]
    for r in table.rows:
        same = [x for x in refs if all(x.config.get(k) == r.config.get(k) for k in SAME_SETUP)]
        same.sort(key=lambda x: (x.batch_size != r.batch_size, x.key))
        if not same or same[0] is r or r in same:
            continue
        ref = same[0]
        r.reference = ref.name
        for c, cell in r.cells.items():
            other = ref.cells.get(c)
            if other is not None:
                p = paired_bootstrap(cell, other, stream("paired", r.key, ref.key, c))
                if p:
                    r.paired[c] = p


# ---- tables --------------------------------------------------------------------------------------

def tables_from_records(recs: list[dict], reference: str = "greedy") -> list[Table]:
    """One quality table per suite version, plus one throughput table per machine fingerprint.
    Scores across a pair of runs (a TM run against its K = 1 run) are added first."""
    by_suite: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for rec in with_k1_agreement(recs):
        s = rec["spec"]["suite"]
        by_suite[(s["name"], s["version"])].append(rec)
    tables = []
    for (name, version), rs in sorted(by_suite.items()):
        tables.extend(_tables_for(name, version, rs))
    for t in tables:
        if t.fingerprint is None:
            add_paired(t, reference)
    return tables


def _columns(recs: list[dict]) -> tuple[list[str], list[str], dict[str, str]]:
    columns, timing, arrows = [], [], {}
    for rec in recs:
        for k, m in rec["metrics"].items():
            target = timing if m.get("metric") in TIMING_METRICS else columns
            if k not in target:
                target.append(k)
            hib = m.get("higher_is_better")
            arrows[k] = "↑" if hib is True else "↓" if hib is False else ""
    return columns, timing, arrows


def _facts(recs: list[dict], cols: list[str]) -> dict[str, Any]:
    rng = sorted({r.get("protocol", {}).get("rng") for r in recs} - {None})
    memory = sorted({str(r["metrics"][c]["meta"].get("memory")) for r in recs for c in cols
                     if c in r["metrics"] and (r["metrics"][c].get("meta") or {}).get("memory")})
    return {"rng": rng, "memory": memory}


def _tables_for(name: str, version: int, recs: list[dict]) -> list[Table]:
    columns, timing, arrows = _columns(recs)
    rows = [_row(cfg, g) for cfg, g in group_records(recs)]
    label_differences(rows)
    rows.sort(key=lambda r: (r.model != HUMAN, r.model, r.decoder, r.key))
    for r in rows:
        for c in columns:
            cell = aggregate_cell(r.records, c, r.key)
            if cell:
                r.cells[c] = cell
    out = [Table(name, version, columns, arrows, rows, facts=_facts(recs, columns))]
    by_fp: dict[str, list[dict]] = defaultdict(list)
    for rec in recs:
        if any(rec["metrics"].get(c, {}).get("metric") in TIMING_METRICS for c in timing):
            by_fp[rec["environment"]["fingerprint"]["id"]].append(rec)
    for fp, frecs in sorted(by_fp.items()):
        out.append(_timing_table(name, version, frecs, timing, arrows, fp))
    return out


def _timing_table(name, version, recs, cols, arrows, fingerprint) -> Table:
    """Timings: mean and spread over runs (batches and seeds), one machine only; n = runs."""
    rows = [_row(cfg, g) for cfg, g in group_records(recs)]
    label_differences(rows, always_batch=True)
    rows.sort(key=lambda r: (r.model, r.decoder, r.batch_size, r.key))
    for r in rows:
        for c in cols:
            cell = runs_cell(r.records, c)
            if cell:
                r.cells[c] = cell
    return Table(name, version, cols, arrows, rows, fingerprint, facts=_facts(recs, cols))
