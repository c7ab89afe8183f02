"""Apply the rule of tasks/sweep-smollm2.yaml to its records and print the sweep table.

    python scripts/choose_tm_setting.py --out runs [--markdown sweep.md]

Rule (fixed in the suite file before the sweep ran): among TM settings with alpha_max < 1, keep
those whose pooled generation perplexity under the independent judge is at most 2x the twin's
greedy row and whose MAUVE is at least the twin greedy's minus 0.05; choose the lowest
token-level rep-2 among them; if none qualifies, keep the DESIGN default (a0.75).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tmbench.results import iter_records

COLUMNS = [("rep-2 tok", "rep[n=2,unit=token]"), ("rep-2 w", "rep[n=2,unit=wordpunct]"),
           ("rep-3 w", "rep[n=3,unit=wordpunct]"), ("Loop% w", "loop[n=3,unit=wordpunct]"),
           ("dist-2 w", "distinct[n=2,scope=corpus,unit=wordpunct]"),
           ("gen-ppl", "gen_ppl[agg=pooled,judge=gemma3-270m]"),
           ("MAUVE", "mauve[c=5,featurizer=all-minilm-l6-v2]")]
PPL_FACTOR, MAUVE_MARGIN, DEFAULT = 2.0, 0.05, "a0.75"


def rows(out: Path, suite: str = "sweep-smollm2") -> dict[str, dict[str, float]]:
    got = {}
    for _, rec in iter_records(out, warn=lambda m: print(m, file=sys.stderr)):
        if rec["spec"]["suite"]["name"] != suite:
            continue
        label = f"{rec['row']['model']} {rec['row']['decoder']}"
        got[label] = {k: rec["metrics"][k]["value"] for _, k in COLUMNS if k in rec["metrics"]}
        got[label]["_params"] = rec["spec"]["decoder"]["params"]
    return got


def choose(table: dict[str, dict[str, float]]) -> tuple[str, list[str]]:
    ref = table.get("ar-smollm2 greedy")
    if ref is None:
        raise ValueError("the sweep needs the ar-smollm2 greedy row")
    ppl_max = PPL_FACTOR * ref[COLUMNS[5][1]]
    mauve_min = ref[COLUMNS[6][1]] - MAUVE_MARGIN
    tm = sorted({k.split()[0] for k in table if k.startswith("tm-")})  # the swept TM model
    if len(tm) != 1:
        raise ValueError(f"the sweep should hold one TM model, found {tm or 'none'}")
    ok = [k for k, r in table.items() if k.startswith(f"{tm[0]} ")
          and r["_params"].get("alpha_max", 0.75) < 1.0
          and r[COLUMNS[5][1]] <= ppl_max and r[COLUMNS[6][1]] >= mauve_min]
    if not ok:
        return f"{tm[0]} {DEFAULT}", ok
    return min(ok, key=lambda k: table[k][COLUMNS[0][1]]), ok


def markdown(table, chosen, ok) -> str:
    lines = ["| row | " + " | ".join(c for c, _ in COLUMNS) + " | passes quality terms |",
             "|---|" + "---|" * (len(COLUMNS) + 1)]
    for k, r in sorted(table.items(), key=lambda kv: (kv[0] != 'human reference', kv[0])):
        cells = [f"{r[key]:.3f}" if key in r else "–" for _, key in COLUMNS]
        mark = "**chosen**" if k == chosen else ("yes" if k in ok else "")
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {mark} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs", help="results directory with the sweep's records")
    p.add_argument("--markdown", help="also write the table to this file")
    a = p.parse_args(argv)
    table = rows(Path(a.out))
    chosen, ok = choose(table)
    md = markdown(table, chosen, ok)
    print(md)
    print(f"\nchosen: {chosen} (rule: gen-ppl <= {PPL_FACTOR}x twin greedy, MAUVE >= twin greedy "
          f"- {MAUVE_MARGIN}, then lowest token rep-2; default {DEFAULT} if none qualifies)")
    if a.markdown:
        Path(a.markdown).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
