"""Move records to a model's new registered name, checked by content hash.

    python scripts/rename_model.py --out results/runs --from tm-smollm2 --to tm-smollm2-ce [--suite standard] [--dry-run]

When the weights a record was made with are registered under another name (a shipped model
renamed when a new one takes its name), the record's model name is the only thing that is
wrong. This script loads the model registered under ``--to`` and renames only the records of
``--from`` whose model content hash equals its hash; the rest are listed and left alone. Each
renamed record gets its new run key (the key hashes the model identity, name included), its
folder, and a recomputed record hash; a note in the record says what was renamed. Tokens,
samples and metrics are unchanged, since the weights are the same.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tmbench.registry import MODELS
from tmbench.results import iter_records, run_dir, run_key, write_record
from tmbench.stages.record import key_part


def registered_hash(name: str) -> str:
    model = MODELS.get(name)()
    return model.identity()["content_hash"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results directory")
    ap.add_argument("--from", dest="old", required=True, help="the name the records carry")
    ap.add_argument("--to", dest="new", required=True, help="the registered name of their weights")
    ap.add_argument("--suite", help="only this suite")
    ap.add_argument("--dry-run", action="store_true", help="list, change nothing")
    a = ap.parse_args(argv)
    if a.new not in MODELS:
        ap.error(f"--to {a.new!r} is not a registered model (known: {', '.join(MODELS.names())})")
    want = registered_hash(a.new)
    moved = 0
    for path, rec in list(iter_records(a.out, warn=lambda m: print(m, file=sys.stderr))):
        spec = rec["spec"]
        if spec["model"].get("name") != a.old or (a.suite and spec["suite"]["name"] != a.suite):
            continue
        where = f"{spec['suite']['name']} {rec['row'].get('decoder')} seed {spec['seed']}"
        if spec["model"].get("content_hash") != want:
            print(f"left: {where}: content hash {spec['model'].get('content_hash')} is not "
                  f"{a.new}'s {want}")
            continue
        spec["model"] = {**spec["model"], "name": a.new}
        rec["row"] = {**rec["row"], "model": a.new}
        rec["key"] = run_key(key_part(spec))
        rec["notes"] = [*rec.get("notes", []),
                        f"model renamed {a.old} -> {a.new} (same weights, content hash {want})"]
        dest = run_dir(a.out, spec["suite"]["name"], spec["suite"]["version"], rec["key"])
        print(f"{'would rename' if a.dry_run else 'renamed'}: {where} -> {dest.name}")
        if a.dry_run:
            continue
        dest.mkdir(parents=True, exist_ok=False)
        write_record(dest / "record.json", rec)
        shutil.rmtree(path.parent)
        moved += 1
    print(f"{moved} record(s) renamed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
