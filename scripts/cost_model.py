"""Suite wall time against prompts and new tokens, measured, and the projected time of a suite.

    python scripts/cost_model.py measure --out DIR [--prompts 64 128 256] [--tokens 32 64 128 256]
    python scripts/cost_model.py report --out DIR --records results/runs [--suite full] \
        [--markdown FILE]

``measure`` runs ``tasks/cost.yaml`` (ar-smollm2 greedy and the human row, every standard metric
but held-out perplexity, a once-per-model constant) once per point, each point a fresh ``tmbench run`` process with its own results folder (so no
judge score is reused from another point): prompt counts at 128 new tokens, and new-token counts
at the smallest prompt count. It writes DIR/points.json after every point, so an interrupted
measurement resumes at the next point. ``report`` fits wall, generation and scoring time as
a + b * (prompts x new tokens), and projects a suite (default ``full``) from the generation
rates of each (model, decoder) recorded under ``--records`` (the fastest record of each, at
its batch size), scaled to the suite's length by the measured per-token cost at that length, and
the fitted scoring cost per generated token. Rows without a recorded rate are listed as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _suite_copy(out: Path, tokens: int) -> Path:
    text = (ROOT / "tasks" / "cost.yaml").read_text()
    text = text.replace("max_new_tokens: 128", f"max_new_tokens: {tokens}")
    text = text.replace("name: cost\n", f"name: cost-L{tokens}\n")
    path = out / "suites" / f"cost-L{tokens}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _records(folder: Path) -> list[dict]:
    """The point's records, checked like every reader's (a broken one is reported, left out)."""
    from tmbench.results import iter_records

    return [rec for _, rec in iter_records(folder)]


def measure(out: Path, prompts: list[int], tokens: list[int], threads: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "points.json"
    points = json.loads(done_path.read_text()) if done_path.exists() else []
    have = {(p["prompts"], p["tokens"]) for p in points}
    grid = [(n, 128) for n in prompts] + [(min(prompts), L) for L in tokens]
    for n, L in dict.fromkeys(grid):
        if (n, L) in have:
            continue
        runs = out / "runs" / f"n{n}-L{L}"
        if runs.exists():
            raise SystemExit(f"{runs} exists but its point is not in {done_path}: an interrupted "
                             "point; delete that folder to measure it again")
        cmd = [sys.executable, "-m", "tmbench", "run", "--suite", str(_suite_copy(out, L)),
               "--limit", str(n), "--out", str(runs), "--threads", str(threads), "--no-progress"]
        print(f"point: {n} prompts x {L} new tokens", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        recs = _records(runs)
        gen = sum(r["timings"]["generation_s"] for r in recs)
        score = sum(r["timings"]["scoring_s"] for r in recs)
        new = sum(len(s["token_ids"]) for r in recs if r["row"]["model"] != "human"
                  for s in r["samples"])
        points.append({"prompts": n, "tokens": L, "wall_s": round(wall, 2),
                       "generation_s": round(gen, 2), "scoring_s": round(score, 2),
                       "new_tokens": new, "records": len(recs), "threads": threads})
        tmp = done_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(points, indent=1))
        os.replace(tmp, done_path)


def fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least squares y = a + b x, with R^2."""
    A = np.stack([np.ones_like(x), x], 1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = a + b * x
    ss = float(((y - y.mean()) ** 2).sum())
    return {"a": float(a), "b": float(b),
            "r2": 1.0 - float(((y - pred) ** 2).sum()) / ss if ss else 1.0}


def _rates(root: Path) -> dict[tuple[str, str], tuple[float, int, int, str]]:
    """(model, decoder label) -> (generated tokens/s, batch size, max_new_tokens, suite), from
    the fastest record (a record timed while the machine was loaded is slow, never fast)."""
    from tmbench.results import iter_records

    best: dict[tuple[str, str], tuple[float, int, int, str, int]] = {}
    for _, rec in iter_records(root, warn=lambda m: None):
        if rec["row"]["model"] == "human" or not rec["timings"].get("generation_s"):
            continue
        new = sum(len(s["token_ids"]) for s in rec["samples"])
        key = (rec["row"]["model"], rec["row"]["decoder"])
        sp = rec["spec"]
        got = (new / rec["timings"]["generation_s"], sp["batch_size"], sp["max_new_tokens"],
               f"{sp['suite']['name']} v{sp['suite']['version']}", new)
        if key not in best or got[0] > best[key][0]:
            best[key] = got
    return {k: v[:4] for k, v in best.items()}


def _decoder_names(root: Path) -> dict[tuple[str, str], str]:
    from tmbench.results import iter_records

    return {(r["row"]["model"], r["row"]["decoder"]): r["spec"]["decoder"]["name"]
            for _, r in iter_records(root, warn=lambda m: None) if r["row"]["model"] != "human"}


def _rate(rates: dict, names: dict, model: str, label: str, decoder: str):
    """The recorded rate of (model, label); else the same label on another model; else the
    same decoder (another label) on this model. Returns (rate or None, where it came from)."""
    if (model, label) in rates:
        return rates[(model, label)], None
    for (m, lab), r in sorted(rates.items()):
        if lab == label:
            return r, f"{m} / {lab}"
    for (m, lab), r in sorted(rates.items()):
        if m == model and names.get((m, lab)) == decoder:
            return r, f"{m} / {lab}"
    return None, None


def report(out: Path, records: Path, suite_name: str) -> str:
    points = json.loads((out / "points.json").read_text())
    work = np.array([p["prompts"] * p["tokens"] for p in points], dtype=float)
    fits = {k: fit(work, np.array([p[k] for p in points], dtype=float))
            for k in ("wall_s", "generation_s", "scoring_s")}
    # scoring of one record (the cost suite scores two per point: greedy and the human row)
    per_record = fit(work, np.array([p["scoring_s"] / p["records"] for p in points], dtype=float))
    lines = ["| prompts | new tokens | wall s | generation s | scoring s | scoring / generation |",
             "|---:|---:|---:|---:|---:|---:|"]
    for p in sorted(points, key=lambda p: (p["tokens"], p["prompts"])):
        lines.append(f"| {p['prompts']} | {p['tokens']} | {p['wall_s']:.0f} | "
                     f"{p['generation_s']:.0f} | {p['scoring_s']:.0f} | "
                     f"{p['scoring_s'] / max(p['generation_s'], 1e-9):.2f} |")
    lines.append("")
    for k, f in fits.items():
        lines.append(f"- {k.replace('_s', '')}: {f['a']:.1f} s + {f['b'] * 1000:.2f} ms x prompts x "
                     f"new tokens (R^2 {f['r2']:.4f})")
    # per-token generation cost at each length, relative to 128 (the records' length)
    by_len = {p["tokens"]: p["generation_s"] / max(p["new_tokens"], 1)
              for p in points if p["prompts"] == min(q["prompts"] for q in points)}
    lines += ["", "Generation time per token against length (at "
              f"{min(q['prompts'] for q in points)} prompts): "
              + ", ".join(f"{L}: {1000 * c:.2f} ms" for L, c in sorted(by_len.items())), ""]
    lines += _projection(suite_name, records, by_len, per_record["b"])
    return "\n".join(lines)


def _projection(suite_name: str, records: Path, per_token: dict[int, float],
                score_per_token: float) -> list[str]:
    from tmbench.plan import plan_runs
    from tmbench.registry import DECODERS
    from tmbench.suites import load_suite

    from tmbench.model_specs import load_model_spec

    suite = load_suite(suite_name)
    kinds = {m: getattr(load_model_spec(m), "kind", "ar") for m in suite.models}
    rates = _rates(records)
    names = _decoder_names(records)
    borrowed: set[str] = set()
    n, L = suite.dataset["n_prompts"], suite.max_new_tokens
    total_gen, total_score, missing = 0.0, 0.0, []
    rows = defaultdict(float)
    for plan in plan_runs(suite, None, None, None, log=lambda *a: None):
        kind = getattr(DECODERS.get(plan.decoder.name), "model_kind", "ar")
        if kind != kinds[plan.model]:
            continue
        tokens = n * L * suite.samples_per_prompt
        rate, via = _rate(rates, names, plan.model, plan.decoder.label, plan.decoder.name)
        score = score_per_token * tokens
        total_score += score
        if rate is None:
            missing.append(f"{plan.model} / {plan.decoder.label} seed {plan.seed}")
            continue
        if via:
            borrowed.add(f"{plan.model} / {plan.decoder.label} from {via}")
        gen = tokens / rate[0] * _length_scale(per_token, rate[2], L)
        total_gen += gen
        rows[f"{plan.model} / {plan.decoder.label}"] += gen + score
    out = [f"Projected `{suite.name}` v{suite.version} on this machine: {n} prompts x {L} new "
           f"tokens per run; generation {total_gen / 3600:.1f} h + scoring "
           f"{total_score / 3600:.1f} h = {(total_gen + total_score) / 3600:.1f} h "
           f"(generation rates of the records under {records.name}/, each scaled from its "
           f"length to {L} tokens by the measured per-token cost x{_length_scale(per_token, 128, L):.2f} "
           f"from 128; scoring {score_per_token * 1000:.2f} ms per generated token)."]
    if borrowed:
        out.append("Rates borrowed from a row of the same decoder (the models share one "
                   f"architecture): {'; '.join(sorted(borrowed))}.")
    if missing:
        out.append(f"Runs without a recorded rate (not in the total): {', '.join(missing)}.")
    out += ["", "| row (all seeds) | projected hours |", "|---|---:|"]
    out += [f"| {k} | {v / 3600:.2f} |" for k, v in sorted(rows.items(), key=lambda kv: -kv[1])]
    return out


def _length_scale(per_token: dict[int, float], have: int, want: int) -> float:
    """Per-token generation cost at length ``want`` relative to length ``have``, interpolated
    between the measured lengths, extended beyond the longest by the slope of the last two,
    never below the cost at the longest measured (decoding does not get cheaper per token as
    the context grows)."""
    if len(per_token) < 2:
        return 1.0
    xs = np.array(sorted(per_token), dtype=float)
    ys = np.array([per_token[int(x)] for x in xs])

    def at(L: float) -> float:
        if L <= xs[-1]:
            return float(np.interp(L, xs, ys))
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return float(ys[-1] + max(0.0, slope) * (L - xs[-1]))

    return at(want) / at(have)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--prompts", type=int, nargs="+", default=[64, 128, 256])
    m.add_argument("--tokens", type=int, nargs="+", default=[32, 64, 128, 256])
    m.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("report")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--records", type=Path, default=ROOT / "results" / "runs")
    r.add_argument("--suite", default="full")
    r.add_argument("--markdown", type=Path)
    a = p.parse_args()
    if a.cmd == "measure":
        measure(a.out, a.prompts, a.tokens, a.threads)
        return 0
    text = report(a.out, a.records, a.suite)
    print(text)
    if a.markdown:
        a.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
