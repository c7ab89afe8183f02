#!/usr/bin/env bash
# Train tm-smollm2 (tmbench/configs/smollm2-tm.yaml) with the learning-rate schedule its twin
# ar-smollm2 actually ran: planned for 960 steps, re-planned to 720 at step 100 and to 640 at
# step 540 (the twin's trained.rescheduled), so the pair differs only in objective and TM
# settings. Resumable: rerun the same command after an interruption.
#   scripts/train_tm_smollm2.sh OUT [THREADS] [CONFIG]
set -euo pipefail
OUT="${1:?usage: scripts/train_tm_smollm2.sh OUT [THREADS] [CONFIG]}"
THREADS="${2:-2}"
CONFIG="${3:-smollm2-tm}"
TM="${TMBENCH:-tmbench}"
step() { [ -f "$OUT/ckpt/state.json" ] && python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$OUT/ckpt/state.json" || echo 0; }
run() {  # run STEPS STOP
  local resume=(); [ -d "$OUT/ckpt" ] && resume=(--resume)
  "$TM" train "$CONFIG" --out "$OUT" --threads "$THREADS" --no-progress --steps "$1" \
    ${2:+--stop-at "$2"} "${resume[@]}"
}
s=$(step)
[ "$s" -lt 100 ] && run 960 100 && s=$(step)
[ "$s" -lt 540 ] && run 720 540 && s=$(step)
run 640
