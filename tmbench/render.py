"""Leaderboard tables as Markdown, CSV and HTML, rendered from :mod:`tmbench.aggregate` tables
alone: what a table shows (labels, decoder defaults, judges) comes from the records, never from
the live registries, so an old record renders the same on any machine, with or without a plugin.

The HTML table is explorable offline (one small inline script, nothing fetched): click a header
to sort, type in the model/decoder boxes to filter, a button shows the non-headline columns, and
every cell's title gives its interval, n and seeds. The page state lives in the URL fragment:
``page.html#sort=<column>&desc=1&model=<text>&decoder=<text>&all=1`` (``filter=<text>`` matches
model or decoder).
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
from typing import Any

from tmbench.aggregate import N_BOOT, Cell, Paired, Row, Table, parse_key
from tmbench.glossary import base_name, gloss, short_names
from tmbench.results import canonical
from tmbench.tm.health import HEALTHY, failures, is_healthy

WORD = ("wordpunct", "word")  # the metrics' word unit: the new name first, the old one accepted
MAX_HEADLINE = 12  # a table a researcher reads at a glance; every column is in the CSV
# Default headline columns, in order, where a suite names none (its ``headline:`` field):
# (metric family, {param: accepted values, preferred first}). None accepts the parameter's
# absence. Keys that differ only in an accepted value show once, the preferred one; keys that
# differ in anything unconstrained (another judge) each show. The first MAX_HEADLINE found show.
HEADLINE: list[tuple[str, dict[str, tuple]]] = [
    ("rep", {"n": ("2",), "unit": WORD}), ("loop", {"n": ("3",), "unit": WORD}),
    ("distinct", {"n": ("2",), "scope": ("corpus",), "unit": WORD}),
    ("self_bleu", {"level": ("sentence",), "n": ("4",), "refs": ("all",), "unit": WORD}),
    ("mauve", {}), ("gen_ppl", {"agg": ("pooled", None)}), ("coherence", {"def": ("judge-logprob",)}),
    ("heldout_ppl", {"unit": WORD}), ("bits_per_byte", {}),
    ("tail_copy_rate", {}), ("tail_readability", {}), ("k1_agree", {"mode": ("position",)}),
    ("coherence", {"def": ("embed-cos",)}), ("agree_front_argmax", {}),
    ("tail_norm_ratio", {}), ("tail_distinct", {}),
    ("tokens_per_s", {}), ("ttft_ms", {"q": ("50",)}), ("step_ms", {"q": ("50",)}),
    ("roofline_share", {"phase": ("decode",)}), ("peak_mem_mb", {}),
]
MARKS = {"significant": "*", "unreliable": "†", "self_judged": "§"}
UNHEALTHY = "‡"  # a TM row whose tail fails a health threshold (tmbench.tm.health)
FIXED = ["model", "decoder", "params", "seeds", "n", "max_new_tokens"]
FROZEN = {"model": ' class="fz"', "decoder": ' class="fz fz2"'}  # stay put while scrolling sideways


def _rank(params: dict[str, str], want: dict[str, tuple]) -> tuple | None:
    rank = []
    for p, accepted in want.items():
        v = params.get(p)
        if v not in accepted:
            return None
        rank.append(accepted.index(v))
    return tuple(rank)


def find_columns(columns: list[str], family: str, **want: Any) -> list[str]:
    """The columns of ``family`` matching ``want`` (a value or a tuple of accepted values,
    preferred first), one per unconstrained variant."""
    want = {k: v if isinstance(v, tuple) else (v,) for k, v in want.items()}
    best: dict[str, tuple[tuple, str]] = {}
    for c in columns:
        fam, params = parse_key(c)
        rank = _rank(params, want) if fam == family else None
        if rank is None:
            continue
        sig = canonical({k: v for k, v in params.items() if k not in want})
        if sig not in best or rank < best[sig][0]:
            best[sig] = (rank, c)
    chosen = {c for _, c in best.values()}
    return [c for c in columns if c in chosen]


def find_column(columns: list[str], family: str, **want: Any) -> str | None:
    found = find_columns(columns, family, **want)
    return found[0] if found else None


def headline(columns: list[str], chosen: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The first MAX_HEADLINE columns of ``chosen`` (metric keys or short names, in the
    suite's order; a short name without its disambiguating suffix names every column it
    starts), else of the default list, else of the table."""
    out: list[str] = []
    if chosen:
        names = short_names(columns)
        for want in chosen:
            hits = ([c for c in columns if c == want] or [c for c in columns if names[c] == want]
                    or [c for c in columns if base_name(c) == want])
            out += [c for c in hits if c not in out]
    if not out:
        for family, want in HEADLINE:
            out += [c for c in find_columns(columns, family, **want) if c not in out]
    return (out or columns)[:MAX_HEADLINE]


def table_headline(t: Table) -> list[str]:
    """The headline columns of a table: the suite's choice where its tables carry one
    (``t.facts["headline"]``), else the default."""
    return headline(t.columns, t.facts.get("headline"))


# ---- cells -------------------------------------------------------------------------------------

def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    a = abs(x)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}" if a >= 100 else f"{x:.3f}"


def _has_ci(c: Cell) -> bool:
    return c.lo is not None and c.hi is not None and not (math.isnan(c.lo) or math.isnan(c.hi))


def marks(c: Cell | None, p: Paired | None = None) -> str:
    if c is None:
        return ""
    got = [MARKS["significant"]] if p is not None and p.significant else []
    got += [MARKS[f] for f in ("unreliable", "self_judged") if f in c.flags]
    return "".join(got)


def cell_text(c: Cell | None, p: Paired | None = None) -> str:
    if c is None:
        return "–"
    s = fmt(c.mean)
    if _has_ci(c):
        s += f" [{fmt(c.lo)}, {fmt(c.hi)}]"
    elif c.spread:  # several seeds that disagree; identical seeds need no ± 0
        s += f" ± {fmt(c.spread)}"
    extra = []
    if "n" in c.info:
        extra.append(f"n={c.info['n']}")
    if "kmeans_sd" in c.info:
        extra.append(f"k-means sd {fmt(c.info['kmeans_sd'])}")
    if "bound" in c.info:
        extra.append(c.info["bound"])
    if extra:
        s += f" ({', '.join(extra)})"
    m = marks(c, p)
    return f"{s} {m}" if m else s


def cell_title(c: Cell, p: Paired | None = None, runs: bool = False) -> str:
    """Everything behind a cell, for the HTML title attribute."""
    seeds = f"{c.seeds} seed{'s' if c.seeds != 1 else ''}"
    if runs:
        out = [f"mean over {c.n} run{'s' if c.n != 1 else ''}"]
    elif c.kind == "prompt":
        out = [f"mean of {c.n} per-prompt means ({seeds} averaged per prompt)"]
    elif c.kind == "ratio":
        out = [f"pooled over tokens: exp(total NLL / total tokens) over {c.n} prompts x {seeds}"]
    else:
        out = [f"corpus-level value over n = {c.n} prompts; mean over {seeds}"]
    if _has_ci(c):
        out.append(f"95% bootstrap CI over prompts [{fmt(c.lo)}, {fmt(c.hi)}]")
    if c.spread is not None:
        out.append(f"sd over {'runs' if runs else 'seeds'} {fmt(c.spread)}")
    if "n" in c.info:
        out.append(f"MAUVE n = {c.info['n']} per side")
    if "buckets" in c.info:
        out.append(f"buckets {c.info['buckets']}")
    if "bound" in c.info:
        out.append(f"share of the machine's {c.info['bound']} limit")
    if "kmeans_range" in c.info:
        lo, hi = c.info["kmeans_range"]
        out.append(f"k-means seeds sd {fmt(c.info.get('kmeans_sd'))}, range {fmt(lo)}–{fmt(hi)}")
    if p is not None:
        out.append(f"vs reference: {fmt(p.diff)} [{fmt(p.lo)}, {fmt(p.hi)}] over {p.n} prompts")
    if "unreliable" in c.flags:
        out.append("unreliable (see †)")
    if "self_judged" in c.flags:
        out.append("judged by the generator itself (see §)")
    return "; ".join(out)


def shown_params(r: Row) -> dict[str, Any]:
    """Settings that differ from the decoder's defaults as recorded in the run; every setting
    when the record names no defaults."""
    if r.defaults is None:
        return dict(r.params)
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return {k: v for k, v in r.params.items() if k not in r.defaults or norm(r.defaults[k]) != norm(v)}


def params_text(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or "defaults"


def tail_failures(r: Row) -> list[str]:
    """The tail-health thresholds (DESIGN 3.4 item 8) a TM row fails; [] when its tail is healthy
    or was not measured."""
    values = {k: r.cells[k].mean for k in HEALTHY if k in r.cells}
    return failures(values) if is_healthy(values) is False else []


def _fixed(t: Table, r: Row) -> list[str]:
    n = len(r.records) if t.fingerprint else r.n_prompts
    mnt = r.max_new_tokens
    decoder = r.decoder + (f" {UNHEALTHY}" if tail_failures(r) else "")
    return [r.model, decoder, params_text(shown_params(r)), r.seeds_shown, str(n),
            "–" if mnt is None else str(mnt)]


# ---- captions -----------------------------------------------------------------------------------

def title(t: Table) -> str:
    head = f"{t.suite} v{t.version}"
    return head + (f" — throughput, machine {t.fingerprint}" if t.fingerprint else "")


def caption(t: Table, shown: list[str]) -> str:
    more = "" if shown == t.columns else f" Headline columns; all {len(t.columns)} metrics are in the CSV."
    if t.fingerprint:
        mem = t.facts.get("memory") or []
        mem_text = (f" peak_mem_mb is what each run recorded (measure: {', '.join(mem)})." if mem else "")
        return ("Mean ± sd over runs (batches and seeds), only runs on this machine fingerprint: "
                "timings from different machines are not comparable. n = runs; max_new_tokens = "
                f"continuation length.{mem_text}{more}")
    rng = "; ".join(r.split("; sampling decoders share")[0] for r in t.facts.get("rng") or []) \
        or "one random stream per prompt and seed"
    free = (" seeds any: the decoder draws nothing from its generator at the row's settings, so "
            "one run stands for every seed." if any(r.seed_free for r in t.rows) else "")
    return (f"Mean [95% bootstrap CI over prompts]: per-prompt means over seeds, then {N_BOOT} "
            "bootstrap resamples of the prompts (stream seeded from the row and metric). Perplexities "
            "pooled over tokens (gen_ppl = exp(total NLL / total tokens) where recorded) resample "
            "prompts the same way. Corpus-level metrics without per-prompt values show mean ± sd over "
            f"seeds.{free} Behind each row: n prompts x seeds, continuations of up to max_new_tokens tokens; "
            "a row pools only runs with the same prompts, length, model weights, decoder settings, "
            "dtype, device and judges, and a label in parentheses says how rows of one name differ. "
            "params = settings that differ from the decoder's defaults as recorded in the run. "
            f"Sampling decoders use common random numbers ({rng}), the same streams for every "
            "decoder: decoders that keep the same candidate tokens give identical samples on the same "
            f"model (e.g. nucleus-0.95 and typical-0.95).{more}")


def roofline_notes(t: Table, shown: list[str]) -> list[str]:
    """The glossary line of the roofline column where it is shown, with the machine's peaks
    from the table's records."""
    if not any(parse_key(c)[0] == "roofline_share" for c in shown):
        return []
    peaks = next((p for r in t.rows for rec in r.records
                  if (p := rec.get("environment", {}).get("fingerprint", {}).get("peaks"))), {})
    flops = ", ".join(f"{v / 1e9:.3g} GFLOP/s {d}" for d, v in (peaks.get("flops") or {}).items())
    bw = peaks.get("bandwidth")
    machine = (f"; this machine's measured peaks: {flops}; {bw / 1e9:.3g} GB/s" if flops and bw
               else "")
    return ["`roofline_share`: the share of the machine's binding limit that the timed decoding "
            "steps reached (phase=prefill, the time to first token, is in the CSV), named in "
            "the cell: bandwidth (weight bytes + KV-cache bytes read per step at its context, "
            "per second, over the measured memory bandwidth) when the step's FLOPs per byte "
            "are below the ridge point (peak FLOP/s / bandwidth), else compute (2 x parameters "
            "x tokens + attention FLOPs per second over the measured peak FLOP/s of the "
            "model's dtype); one position per row per step unless the decoder reports more "
            f"(tmbench.roofline); above 1 is impossible and marked †{machine}"]


def footnotes(t: Table, shown: list[str]) -> list[str]:
    used = set("".join(marks(r.cells.get(c), r.paired.get(c)) for r in t.rows for c in shown))
    ref = t.facts.get("reference", "greedy")
    notes = {
        "*": f"differs from the same model's {ref} row (paired bootstrap over prompts, 95%)",
        "†": "unreliable: MAUVE from fewer than 500 samples per side (its authors use 5,000; the "
             "cell shows n and the sd over k-means seeds), or a score its metric marked unreliable",
        "§": "self-judged: the judge is the generator itself, which favours its own text",
    }
    out = [f"`{m}` {notes[m]}" for m in ("*", "†", "§") if m in used]
    if any(tail_failures(r) for r in t.rows):
        lo_read, hi_copy = HEALTHY["tail_readability"][0], HEALTHY["tail_copy_rate"][1]
        lo_norm, hi_norm = HEALTHY["tail_norm_ratio"]
        out.append(f"`{UNHEALTHY}` unhealthy tail (DESIGN 3.4 item 8: tail_readability >= "
                   f"{lo_read}, tail_copy_rate <= {hi_copy}, tail_norm_ratio in [{lo_norm}, "
                   f"{hi_norm}]): the tail collapses onto one token, is fed vectors unlike those "
                   "training built, or is not read the way the model reads text, so the row says "
                   "little about maturation itself")
    return out


def _meta(t: Table, key: str) -> dict:
    """The score meta the table's first record with ``key`` stored (what a metric without a
    glossary entry says about itself)."""
    return next(((rec["metrics"][key].get("meta") or {}) for r in t.rows for rec in r.records
                 if key in rec["metrics"]), {})


def glossary(t: Table, cols: list[str]) -> list[tuple[str, str]]:
    """(short name with its arrow, definition; direction; unit; source; `full key`) per column
    (the tail-health lines: DESIGN 3.4 item 8, tmbench.tm.health)."""
    names = short_names(t.columns)
    return [(f"{names[c]} {t.arrows.get(c, '')}".strip(), gloss(c, t.arrows.get(c, ""), _meta(t, c)))
            for c in cols]


# ---- Markdown and CSV ---------------------------------------------------------------------------

def to_markdown(t: Table, all_columns: bool = False) -> str:
    """The table (headline columns under their short names, or all), its footnotes, and a
    glossary of its columns with their full keys."""
    cols = t.columns if all_columns else table_headline(t)
    names = short_names(t.columns)
    head = FIXED + [f"{names[c]} {t.arrows.get(c, '')}".strip() for c in cols]
    lines = [f"### {title(t)}", "", caption(t, cols), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in t.rows:
        cells = _fixed(t, r) + [cell_text(r.cells.get(c), r.paired.get(c)) for c in cols]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    notes = footnotes(t, cols) + roofline_notes(t, cols)
    if notes:
        lines += [""] + [f"{n}." if i == len(notes) - 1 else f"{n};" for i, n in enumerate(notes)]
    lines += ["", "Columns:", ""] + [f"- **{n}**: {g}" for n, g in glossary(t, cols)]
    return "\n".join(lines) + "\n"


CSV_HEADER = ["suite", "version", "fingerprint", "model", "decoder", "decoder_name", "params",
              "seeds", "n_prompts", "max_new_tokens", "metric", "metric_name", "direction", "aggregation", "mean",
              "ci_low", "ci_high", "seed_sd", "n", "flags", "reference", "diff_vs_reference",
              "diff_ci_low", "diff_ci_high", "significant", "run_keys"]


def run_keys(r: Row) -> list[str]:
    """The keys of the records behind a row, by seed (``tmbench show KEY`` opens one)."""
    return [rec["key"] for rec in sorted(r.records, key=lambda x: (x["spec"]["seed"], x["key"]))]


def to_csv(t: Table, header: bool = True) -> str:
    """One line per cell with every resolved parameter; all metrics, headline or not."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(CSV_HEADER)
    num = lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(x)  # noqa: E731
    names = short_names(t.columns)
    for r in t.rows:
        for c in t.columns:
            cell = r.cells.get(c)
            if cell is None:
                continue
            p = r.paired.get(c)
            pc = [r.reference or "", "", "", "", ""] if p is None else [
                r.reference, repr(p.diff), repr(p.lo), repr(p.hi), p.significant]
            w.writerow([t.suite, t.version, t.fingerprint or "", r.model, r.decoder, r.decoder_name,
                        canonical(r.params), r.seeds_shown, r.n_prompts,
                        "" if r.max_new_tokens is None else r.max_new_tokens, c, names[c],
                        t.arrows.get(c, ""),
                        "runs" if t.fingerprint else cell.kind, repr(cell.mean), num(cell.lo),
                        num(cell.hi), num(cell.spread), cell.n, " ".join(sorted(cell.flags))]
                       + pc + [" ".join(run_keys(r))])
    return buf.getvalue()


def to_rows(t: Table, all_columns: bool = False) -> dict[str, Any]:
    """The rows the Markdown table shows (headline columns, or all), as plain data for
    ``tmbench leaderboard --json``: labels, settings, run keys and each cell's numbers."""
    num = lambda x: None if x is None or math.isnan(x) else float(x)  # noqa: E731
    cols = t.columns if all_columns else table_headline(t)
    names = short_names(t.columns)

    def cell(c: Cell, p: Paired | None) -> dict[str, Any]:
        out = {"mean": num(c.mean), "ci_low": num(c.lo), "ci_high": num(c.hi),
               "seed_sd": num(c.spread), "n": int(c.n), "flags": sorted(c.flags),
               "text": cell_text(c, p)}
        if p is not None:
            out |= {"diff_vs_reference": num(p.diff), "diff_ci_low": num(p.lo),
                    "diff_ci_high": num(p.hi), "significant": bool(p.significant)}
        return out

    rows = [{"model": r.model, "decoder": r.decoder, "decoder_name": r.decoder_name,
             "params": shown_params(r), "seeds": sorted(set(r.seeds)), "seed_free": r.seed_free,
             "n": len(r.records) if t.fingerprint else r.n_prompts,
             "max_new_tokens": r.max_new_tokens, "run_keys": run_keys(r),
             "reference": r.reference,
             "cells": {c: cell(r.cells[c], r.paired.get(c)) for c in cols if c in r.cells}}
            for r in t.rows]
    return {"suite": t.suite, "version": t.version, "fingerprint": t.fingerprint,
            "title": title(t), "columns": cols, "names": {c: names[c] for c in cols}, "rows": rows}


# ---- HTML ---------------------------------------------------------------------------------------

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}tr.human td{background:#f7fbff}td.sig{font-weight:600}
table.lb th{cursor:pointer;user-select:none}table.lb th[aria-sort=ascending]::after{content:" \\25B2"}
table.lb th[aria-sort=descending]::after{content:" \\25BC"}table.lb:not(.all) .x{display:none}
tr[hidden]{display:none}.controls{margin:.6em 0 .2em;font-size:13px}.controls input{margin-right:1em}
.scroll{overflow-x:auto}.sample{white-space:pre-wrap;max-width:60em}img{max-width:100%;margin:.5em 0}
.note{color:#555;font-size:12px}code{background:#f3f3f3;padding:0 3px}
table.lb .fz{position:sticky;left:0;z-index:1;background:#fff}table.lb th.fz{z-index:3;background:#f3f3f3}
table.lb tr.human td.fz{background:#f7fbff}table.lb .fz2{box-shadow:inset -2px 0 #ccc}
button.jump{font-size:10px;padding:0 3px;margin-left:3px}ul.gloss{margin:.3em 0;padding-left:1.4em}"""

SCRIPT = """(function () {
  var state = {sort: null, desc: false, model: "", decoder: "", filter: "", all: false};
  function readHash() {
    var q = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.sort = q.get("sort");
    state.desc = q.get("desc") === "1" || q.get("dir") === "desc";
    state.model = q.get("model") || "";
    state.decoder = q.get("decoder") || "";
    state.filter = q.get("filter") || "";
    state.all = q.get("all") === "1";
  }
  function writeHash() {
    var q = new URLSearchParams();
    if (state.sort) { q.set("sort", state.sort); if (state.desc) q.set("desc", "1"); }
    ["model", "decoder", "filter"].forEach(function (k) { if (state[k]) q.set(k, state[k]); });
    if (state.all) q.set("all", "1");
    history.replaceState(null, "", "#" + q.toString());
  }
  function value(td, kind) {
    var v = td.getAttribute("data-v");
    if (kind === "num") { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return (v === null ? td.textContent : v).toLowerCase();
  }
  function has(text, part) { return text.toLowerCase().indexOf(part.toLowerCase()) >= 0; }
  function apply(table) {
    var ths = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var i = -1;
    ths.forEach(function (th, j) { if (th.getAttribute("data-col") === state.sort) i = j; });
    var kind = i >= 0 ? ths[i].getAttribute("data-kind") : null;
    rows.sort(function (a, b) {
      var ha = a.classList.contains("human"), hb = b.classList.contains("human");
      if (ha !== hb) return ha ? -1 : 1;  // the human row stays first
      if (i >= 0) {
        var x = value(a.cells[i], kind), y = value(b.cells[i], kind);
        if (x === null && y !== null) return 1;
        if (y === null && x !== null) return -1;
        if (x !== y) { var c = x < y ? -1 : 1; return state.desc ? -c : c; }
      }
      return a.getAttribute("data-i") - b.getAttribute("data-i");
    });
    rows.forEach(function (r) {
      body.appendChild(r);
      var m = r.getAttribute("data-model"), d = r.getAttribute("data-decoder");
      r.hidden = !(has(m, state.model) && has(d, state.decoder) &&
                   (has(m, state.filter) || has(d, state.filter)));
    });
    ths.forEach(function (th, j) {
      th.setAttribute("aria-sort", j === i ? (state.desc ? "descending" : "ascending") : "none");
    });
    table.classList.toggle("all", state.all);
    var box = table.parentNode.previousElementSibling;
    if (box && box.classList.contains("controls")) {
      box.querySelectorAll("input[data-filter]").forEach(function (inp) {
        var k = inp.getAttribute("data-filter");
        if (inp.value !== state[k]) inp.value = state[k];
      });
      var btn = box.querySelector("button[data-toggle]");
      if (btn) btn.textContent = state.all ? "headline columns only" : btn.getAttribute("data-label");
    }
  }
  function freeze(table) {  // the decoder column sticks right of the model column
    var first = table.tHead.rows[0].cells[0];
    if (!first) return;
    var w = first.getBoundingClientRect().width + "px";
    table.querySelectorAll(".fz2").forEach(function (c) { c.style.left = w; });
  }
  function applyAll() {
    document.querySelectorAll("table.lb").forEach(function (t) { apply(t); freeze(t); });
  }
  window.addEventListener("resize", applyAll);
  document.querySelectorAll("table.lb th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () {
      var col = th.getAttribute("data-col");
      if (state.sort === col) state.desc = !state.desc;
      else { state.sort = col; state.desc = th.getAttribute("data-first") === "desc"; }
      applyAll(); writeHash();
    });
  });
  document.querySelectorAll(".controls input[data-filter]").forEach(function (inp) {
    inp.addEventListener("input", function () {
      state[inp.getAttribute("data-filter")] = inp.value; applyAll(); writeHash();
    });
  });
  document.querySelectorAll(".controls button[data-toggle]").forEach(function (btn) {
    btn.addEventListener("click", function () { state.all = !state.all; applyAll(); writeHash(); });
  });
  window.addEventListener("hashchange", function () { readHash(); applyAll(); });
  readHash(); applyAll();
})();"""


def _code(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def table_html(t: Table, samples: str | None = None) -> str:
    """Caption, filter boxes and the sortable table (headline columns first under their short
    names, the full key in each header's title, the rest hidden behind a toggle; model and
    decoder frozen while the table scrolls sideways), then the footnotes and the glossary.
    ``samples``: the id of a samples browser on the page; each row then gets a button that
    shows its texts there."""
    head = table_headline(t)
    rest = [c for c in t.columns if c not in head]
    names = short_names(t.columns)
    e = html.escape
    ths = [f'<th data-col="{c}" data-kind="{"num" if c in ("seeds", "n", "max_new_tokens") else "text"}"'
           f'{FROZEN.get(c, "")}>{c}</th>' for c in FIXED]
    for c in head + rest:
        arrow = t.arrows.get(c, "")
        cls = ' class="x"' if c in rest else ""
        first = ' data-first="desc"' if arrow == "↑" else ""
        tip = e(f"{c}: {gloss(c, arrow, _meta(t, c)).rsplit('; `', 1)[0]}")
        ths.append(f'<th data-col="{e(c)}" data-kind="num" title="{tip}"{first}{cls}>'
                   f'{e(f"{names[c]} {arrow}".strip())}</th>')
    out = [f'<p class="note">{_code(caption(t, head))}</p>',
           '<div class="controls"><label>model <input type="search" data-filter="model" '
           'placeholder="filter"></label><label>decoder <input type="search" data-filter="decoder" '
           'placeholder="filter"></label>'
           + (f'<button type="button" data-toggle data-label="show all {len(t.columns)} metrics">'
              f'show all {len(t.columns)} metrics</button>' if rest else "") + "</div>",
           '<div class="scroll"><table class="lb"><thead><tr>' + "".join(ths) + "</tr></thead><tbody>"]
    for i, r in enumerate(t.rows):
        fixed = _fixed(t, r)
        tds = ""
        for c, x in zip(FIXED, fixed):
            jump = (f' <button type="button" class="jump" data-samples="{e(samples)}" data-row="{i}" '
                    f'title="read this row\'s texts in the samples browser">texts</button>'
                    if samples and c == "decoder" else "")
            tds += f'<td data-v="{e(x)}"{FROZEN.get(c, "")}>{e(x)}{jump}</td>'
        for c in head + rest:
            cell, p = r.cells.get(c), r.paired.get(c)
            cls = [*(["x"] if c in rest else []), *(["sig"] if p is not None and p.significant else [])]
            attr = f' class="{" ".join(cls)}"' if cls else ""
            if cell is None:
                tds += f"<td{attr}>–</td>"
                continue
            tip = cell_title(cell, p, runs=bool(t.fingerprint))
            tds += (f'<td{attr} data-v="{cell.mean!r}" title="{e(tip)}">{e(cell_text(cell, p))}</td>')
        human = ' class="human"' if r.model == "human" else ""
        out.append(f'<tr{human} data-i="{i}" data-model="{e(r.model)}" data-decoder="{e(r.decoder)}">'
                   f"{tds}</tr>")
    out.append("</tbody></table></div>")
    notes = footnotes(t, head + rest) + roofline_notes(t, head + rest)
    if notes:
        out.append('<p class="note">' + "<br>".join(_code(n) for n in notes) + "</p>")

    def items(cols):
        return "".join(f"<li><b>{e(n)}</b>: {_code(g)}</li>" for n, g in glossary(t, cols))

    out.append(f'<ul class="gloss note">{items(head)}</ul>')
    if rest:
        out.append(f'<details class="note"><summary>the other {len(rest)} columns</summary>'
                   f'<ul class="gloss">{items(rest)}</ul></details>')
    return "\n".join(out)


def page_html(page_title: str, body: str, css: str = "", script: str = "") -> str:
    """A self-contained page: inline style and one inline script (the table's, then
    ``script``), nothing fetched."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(page_title)}</title>"
            f"<style>{CSS}{css and chr(10) + css}</style></head><body>{body}"
            f"<script>{SCRIPT}{script and chr(10) + script}</script></body></html>")


# ---- where the time went -------------------------------------------------------------------------

def time_rows(recs: list[dict]) -> list[dict]:
    """Generation, scoring and model-load seconds per (machine, model, decoder), summed over
    the runs of the records, and a total per machine. Read from the records' timings; records
    written before loading was timed on its own count it inside scoring (``load_s`` None)."""
    from collections import defaultdict

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        fp = r.get("environment", {}).get("fingerprint", {}).get("id", "?")
        groups[(fp, r["spec"]["model"]["name"], r["spec"]["decoder"]["label"])].append(r)

    def row(fp, model, decoder, rs):
        t = [r.get("timings", {}) for r in rs]
        gen, sc = sum(x.get("generation_s", 0.0) for x in t), sum(x.get("scoring_s", 0.0) for x in t)
        load = sum(x["load_s"] for x in t) if all("load_s" in x for x in t) else None
        # a resumed (or sharded) run's generation includes batches of other processes, which
        # its wall time does not: clamped at 0
        other = sum(max(0.0, x["wall_s"] - x.get("generation_s", 0.0) - x.get("scoring_s", 0.0)
                        - x.get("load_s", 0.0)) for x in t) if all("wall_s" in x for x in t) else None
        return {"machine": fp, "model": model, "decoder": decoder, "runs": len(rs),
                "generation_s": gen, "scoring_s": sc, "load_s": load, "other_s": other,
                "share": sc / gen if gen else None}

    out = []
    for fp in sorted({k[0] for k in groups}):
        keys = sorted(k for k in groups if k[0] == fp)
        out += [row(*k, groups[k]) for k in keys]
        out.append(row(fp, "all", "", [r for k in keys for r in groups[k]]))
    return out


TIME_NOTE = ("Seconds summed over each row's runs, per machine fingerprint, from the records' "
             "timings: generation, scoring (every metric's compute) and loading judges and "
             "featurizers during scoring (paid once per session; `-` where a record counts it "
             "inside scoring). score/gen is scoring over generation time; the target is at most "
             "0.25.")


TIME_HEAD = ("machine", "model", "decoder", "runs", "generation s", "scoring s", "load s",
             "score/gen")
# shown where some record stores its wall time (records from before it was stored: no column)
OTHER_NOTE = ("other s: each run's wall time in the process that wrote its record (from before "
              "its model was loaded to the record) minus generation, scoring and load: the "
              "generator's load (first run of a model in a session), the warm-up and "
              "time-to-first-token decodes of throughput runs, planning and writing; `-` where a "
              "record has no wall time.")


def _has_other(rows: list[dict]) -> bool:
    return any(r.get("other_s") is not None for r in rows)


def _time_head(rows: list[dict]) -> tuple[str, ...]:
    return TIME_HEAD[:7] + ("other s",) + TIME_HEAD[7:] if _has_other(rows) else TIME_HEAD


def _time_cells(r: dict, other: bool = False) -> list[str]:
    o = r.get("other_s")
    return [r["machine"], r["model"], r["decoder"], str(r["runs"]), f"{r['generation_s']:.1f}",
            f"{r['scoring_s']:.1f}", "-" if r["load_s"] is None else f"{r['load_s']:.1f}",
            *([("-" if o is None else f"{o:.1f}")] if other else []),
            "-" if r["share"] is None else f"{r['share']:.3f}"]


def time_markdown(rows: list[dict]) -> str:
    head, other = _time_head(rows), _has_other(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = _time_cells(r, other)
        if r["model"] == "all":
            c[1] = f"**{c[1]}**"
        lines.append("| " + " | ".join(c) + " |")
    return "\n".join(lines) + "\n" + (f"\n{OTHER_NOTE}\n" if other else "")


def time_html(rows: list[dict]) -> str:
    other = _has_other(rows)
    cells = ["<tr>" + "".join(f"<th>{h}</th>" for h in _time_head(rows)) + "</tr>"]
    cells += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _time_cells(r, other))
              + "</tr>" for r in rows]
    note = TIME_NOTE + (" " + OTHER_NOTE if other else "")
    return f"<p>{html.escape(note)}</p><table class='time'>{''.join(cells)}</table>"
