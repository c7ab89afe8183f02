"""Apply the rule of tasks/tail-smollm2.yaml to its records and print the table it reads.

    python scripts/choose_tm_healthy.py --out results/runs [--markdown results/tail-smollm2-choice.md]

Rule (fixed in the suite file before the sweep ran): a configuration is a (model, setting)
pair with alpha_max < 1 and K > 1; keep those whose model's induced validation CE is within
0.1 nat of the twin's, whose tail is healthy (tail_readability >= 0.5, tail_copy_rate <= 0.3,
tail_norm_ratio in [0.5, 2]) and whose judge gen-ppl is at most 2x and MAUVE at least the twin
greedy's minus 0.05; choose the lowest token rep-2. If no configuration is healthy, choose the
healthiest (fewest thresholds failed, then the highest readability) and say so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tmbench.models.delta import ASSETS
from tmbench.results import iter_records
from tmbench.tm.health import failures as failed, is_healthy

SUITE = "tail-smollm2"
COLUMNS = [("rep-2 tok", "rep[n=2,unit=token]"), ("rep-2 w", "rep[n=2,unit=wordpunct]"),
           ("Loop% w", "loop[n=3,unit=wordpunct]"),
           ("dist-2 w", "distinct[n=2,scope=corpus,unit=wordpunct]"),
           ("gen-ppl", "gen_ppl[agg=pooled,judge=gemma3-270m]"),
           ("MAUVE", "mauve[c=5,featurizer=all-minilm-l6-v2]"),
           ("norm ratio", "tail_norm_ratio"), ("copy", "tail_copy_rate"),
           ("readable", "tail_readability"), ("distinct", "tail_distinct"),
           ("agree front", "agree_front_argmax")]
PPL_FACTOR, MAUVE_MARGIN, CE_MARGIN, TWIN = 2.0, 0.05, 0.1, "ar-smollm2"


def valid_ce(model: str) -> float | None:
    """The model's validation CE as its training recorded it (induced CE for TM); None for a
    model that was not trained (tm-smollm2-init)."""
    cfg = ASSETS / model / "config.json"
    if not cfg.exists():
        return None
    t = json.loads(cfg.read_text()).get("trained", {})
    return t.get("val_induced_ce", t.get("val_loss"))


def rows(out: Path) -> dict[str, dict]:
    got = {}
    for _, rec in iter_records(out, warn=lambda m: print(m, file=sys.stderr)):
        if rec["spec"]["suite"]["name"] != SUITE:
            continue
        label = f"{rec['row']['model']} {rec['row']['decoder']}"
        r = {k: rec["metrics"][k]["value"] for _, k in COLUMNS if k in rec["metrics"]}
        r["_params"] = rec["spec"]["decoder"]["params"]
        r["_model"] = rec["row"]["model"]
        got[label] = r
    return got


def choose(table: dict[str, dict]) -> tuple[str, list[str], bool]:
    """(chosen row, rows passing every term, whether the chosen row is healthy)."""
    ref = table.get(f"{TWIN} greedy")
    if ref is None:
        raise ValueError(f"the sweep needs the {TWIN} greedy row")
    twin_ce = valid_ce(TWIN)
    cands = {k: r for k, r in table.items() if r["_params"].get("alpha_max", 0.75) < 1.0
             and r["_params"].get("tail_len", 16) > 1 and "tail_copy_rate" in r}
    if not cands:
        raise ValueError("the sweep has no TM configuration with alpha_max < 1 and K > 1")

    def ce_ok(r):
        ce = valid_ce(r["_model"])
        return ce is not None and twin_ce is not None and ce <= twin_ce + CE_MARGIN

    def quality_ok(r):
        return (r.get(COLUMNS[4][1], float("inf")) <= PPL_FACTOR * ref[COLUMNS[4][1]]
                and r.get(COLUMNS[5][1], -1.0) >= ref[COLUMNS[5][1]] - MAUVE_MARGIN)

    ok = [k for k, r in cands.items() if ce_ok(r) and is_healthy(r) and quality_ok(r)]
    if ok:
        return min(ok, key=lambda k: cands[k][COLUMNS[0][1]]), ok, True
    best = min(cands, key=lambda k: (len(failed(cands[k])), -cands[k].get("tail_readability", 0)))
    return best, ok, False


def markdown(table, chosen, ok) -> str:
    twin = valid_ce(TWIN)
    lines = ["| row | valid CE | " + " | ".join(c for c, _ in COLUMNS) + " | healthy | passes |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for k, r in sorted(table.items(), key=lambda kv: kv[0]):
        ce = valid_ce(r["_model"])
        cells = [f"{r[key]:.3f}" if key in r else "–" for _, key in COLUMNS]
        h = is_healthy(r) if "tail_copy_rate" in r else None
        mark = "**chosen**" if k == chosen else ("yes" if k in ok else "")
        lines.append(f"| {k} | {'–' if ce is None else f'{ce:.3f}'} | " + " | ".join(cells)
                     + f" | {'–' if h is None else ('yes' if h else 'no')} | {mark} |")
    lines.append("")
    lines.append(f"valid CE: the model's induced validation CE from training (twin {TWIN}: "
                 f"{twin:.3f}); healthy: tail_readability >= 0.5, tail_copy_rate <= 0.3, "
                 "tail_norm_ratio in [0.5, 2] (DESIGN 3.4 item 8).")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs", help="results directory with the sweep's records")
    p.add_argument("--markdown", help="also write the table and the choice to this file")
    a = p.parse_args(argv)
    table = rows(Path(a.out))
    chosen, ok, healthy = choose(table)
    md = markdown(table, chosen, ok)
    n_healthy = sum(bool(is_healthy(r)) for r in table.values() if "tail_copy_rate" in r)
    why = ("passes every term of the rule" if healthy else
           f"no configuration passes every term ({n_healthy} of the TM rows have a healthy tail); "
           f"the healthiest, chosen, fails {failed(table[chosen]) or 'no health threshold'}"
           + ("" if failed(table[chosen]) else
              f"; its model's valid CE is {valid_ce(table[chosen]['_model'])}"))
    md += f"\n\nchosen: {chosen} ({why})"
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
