#!/usr/bin/env bash
# Regenerate the committed default-suite results from scratch with the shipped models:
# records in results/runs/, tables in results/, the report, and the README's table.
set -euo pipefail
cd "$(dirname "$0")/.."
TMBENCH="${TMBENCH:-.venv/bin/tmbench}"
"$TMBENCH" run --suite default --out results/runs --no-progress
"$TMBENCH" leaderboard --out results/runs --dest results --suite default --readme README.md
"$TMBENCH" report --out results/runs --dest results/report.html --suite default
