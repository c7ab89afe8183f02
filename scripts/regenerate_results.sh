#!/usr/bin/env bash
# Regenerate the committed results from scratch with the shipped models: the valid-split sweep
# that chose tm-smollm2-ce's decoding setting, the valid-split tail-health suite and its choice,
# the default suite's records in results/runs/, the tables in results/, the report, the
# README's tables (the paper table from `standard`) and the quality-diversity frontier figures.
# The standard suite takes hours on 2 CPU cores; its committed rows are completed row by row
# (`tmbench run --suite standard --out results/runs --model M --decoder D`), so this script
# only rebuilds its tables from the records that exist.
set -euo pipefail
cd "$(dirname "$0")/.."
TMBENCH="${TMBENCH:-.venv/bin/tmbench}"
PY="${PYTHON:-.venv/bin/python}"
"$TMBENCH" run --suite sweep-smollm2 --out results/runs --no-progress
"$PY" scripts/choose_tm_setting.py --out results/runs --markdown results/sweep-smollm2-choice.md
# tail health of the SmolLM2 TMs on valid prompts and the rule's choice (about 45 minutes; the
# committed records were generated with --dtype bfloat16)
"$TMBENCH" run --suite tail-smollm2 --out results/runs --dtype bfloat16 --no-progress
"$PY" scripts/choose_tm_healthy.py --out results/runs --markdown results/tail-smollm2-choice.md
"$TMBENCH" run --suite default --out results/runs --no-progress
"$TMBENCH" leaderboard --out results/runs --dest results
"$TMBENCH" leaderboard --out results/runs --dest results --suite default --readme README.md \
    --paper-suite standard
"$TMBENCH" report --out results/runs --dest results/report.html
"$TMBENCH" frontier --out results/runs --dest results    # results/<suite>-v<version>-frontier-*.{svg,png}
# the standard suite's rows read against the twin's frontiers at matched quality
"$TMBENCH" frontier --out results/runs --dest results --suite standard \
    > results/standard-v1-matched-quality.md
