#!/usr/bin/env bash
# Run measure on a lent GPU machine (the project's `device` tool): install carried wheels, then
# doctor, the meter self-check (optional) and a grid with a time budget. Results land in $OUT.
#   bash scripts/device_run.sh GRID.yaml BUDGET_S [selfcheck|no] [STORE_IN_REPO] [--set key=value ...]
# STORE_IN_REPO (optional): an existing JSONL store to resume from (copied to $OUT first).
# Extra arguments are passed to `measure grid` (e.g. --set 'engines=[hf-eager]').
set -uo pipefail
grid=$1; budget=$2; selfcheck=${3:-no}; resume=${4:-}; shift $(( $# < 4 ? $# : 4 ))
. "$(dirname "$0")/device_setup.sh"
python3 -m measure.cli doctor --json > "$OUT/doctor.json" 2> "$OUT/doctor.err"; echo "doctor rc=$?"
if [ "$selfcheck" = "selfcheck" ]; then
  python3 -m measure.meter.selfcheck --out "$OUT" 2>&1 | tail -25
fi
store="$OUT/$( [ -n "$resume" ] && basename "$resume" .jsonl || basename "$grid" .yaml).jsonl"
[ -n "$resume" ] && [ -f "$resume" ] && cp "$resume" "$store"
start=$(date +%s)
python3 -m measure.cli grid "$grid" --out "$store" --time-budget-s "$budget" --no-progress "$@" 2>&1 \
  | grep -vE "Warning|warn\(|_pytree|register_constant" | tee "$OUT/grid.log" | tail -60
echo "grid wall $(( $(date +%s) - start )) s; records: $(wc -l < "$store")"
