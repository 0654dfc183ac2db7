#!/usr/bin/env bash
# Run one grid over every GPU of a lent multi-GPU machine (the project's `device` tool), no Ray needed:
# one `measure grid` process per GPU (CUDA_VISIBLE_DEVICES=i), sharing the work through a claim directory
# (a block = one model x method x engine), each resuming from STORE_IN_REPO; their stores are merged into
# $OUT/<store name>.jsonl at the end (`measure merge`, by record id). If $OUT already holds that store (an
# earlier step of scripts/device_run_plan.sh in the same call), it resumes from there.
#   bash scripts/device_run_multi.sh GRID.yaml BUDGET_S STORE_IN_REPO [--set key=value ...]
# SELFCHECK=1: the last GPU first runs the meter self-check (about 80 s), then joins the grid.
# EXPECT_GPU=H200: stop before measuring unless every GPU's name contains it (a lent machine of another
# kind would otherwise fill a store meant for one card with another card's cells).
# DEADLINE_S (default 560): seconds from this script's start by which every worker is stopped (a cell that
# overruns its estimate is lost, the cells before it are kept), leaving time to merge before the device
# call's limit. The per-GPU stores live in /tmp and are merged into $OUT/<store name>.jsonl every
# MERGE_EVERY_S (default 30) seconds while the workers run, so a killed call still returns what it had
# measured by the last merge; logs and claims stay in /tmp. $OUT then holds at most 8 files (the device
# tool returns no more): doctor.json, nvidia-smi.csv, host.txt, pip-versions.txt, the store, grid.log and,
# with SELFCHECK=1, selfcheck.json and timeline_10s.csv.
set -uo pipefail
grid=$1; budget=$2; resume=$3; shift 3
t0=$(date +%s); deadline=${DEADLINE_S:-560}
. "$(dirname "$0")/device_setup.sh"
export OMP_NUM_THREADS=8
work=/tmp/multi.$$; mkdir -p "$work/claims"
python3 -m measure.cli doctor --json > "$OUT/doctor.json" 2> "$work/doctor.err"; echo "doctor rc=$?"
if [ -n "${EXPECT_GPU:-}" ] && nvidia-smi -L | grep '^GPU' | grep -qv "$EXPECT_GPU"; then
  echo "expected only $EXPECT_GPU GPUs, found:"; nvidia-smi -L; exit 4
fi
n=$(nvidia-smi -L | grep -c '^GPU')
name=$(basename "$resume" .jsonl)
start=$(date +%s)
stop_at=$((t0 + deadline - 25))   # workers are stopped then; 25 s kept for the merge
left=$((stop_at - start))
# the grid's own clock starts after Python has imported torch and opened the meter: keep 30 s for that
[ "$budget" -gt $((left - 30)) ] && budget=$((left - 30))
echo "setup took $((start - t0)) s; worker budget $budget s, hard stop after $left s"
# an earlier step of the same device call (scripts/device_run_plan.sh) may have filled $OUT's store already:
# resume from it then, never overwrite it with the older copy in the repository
if [ ! -s "$OUT/$name.jsonl" ]; then
  if [ -f "$resume" ]; then cp "$resume" "$OUT/$name.jsonl"; else echo "new store: $resume"; : > "$OUT/$name.jsonl"; fi
fi
for i in $(seq 0 $((n - 1))); do
  cp "$OUT/$name.jsonl" "$work/gpu$i.jsonl"; : > "$work/gpu$i.log"
  pre=true; b=$budget
  if [ "${SELFCHECK:-0}" = 1 ] && [ "$i" = $((n - 1)) ]; then
    pre="python3 -m measure.meter.selfcheck --out $OUT --index $i"; b=$((budget - 100))
  fi
  ( d=$((stop_at - $(date +%s)))
    timeout -s INT -k 10 "$d" $pre > "$work/selfcheck$i.log" 2>&1
    d=$((stop_at - $(date +%s)))   # `timeout 0` would mean no limit, a negative one is an error
    if [ "$d" -lt 5 ] || [ "$b" -lt 1 ]; then echo "gpu$i: no time left for the grid (budget $b s)"; exit 0; fi
    CUDA_VISIBLE_DEVICES=$i timeout -s INT -k 10 "$d" python3 -m measure.cli grid "$grid" --device cuda:0 \
      --out "$work/gpu$i.jsonl" --claim-dir "$work/claims" --claim-owner "gpu$i" --time-budget-s "$b" "$@" \
      > "$work/gpu$i.log" 2>&1 ) &
  workers="${workers:-} $!"
done
( k=0   # merge while the workers run; stops within a second of the stop file (never mid-merge)
  while [ ! -e "$work/stop" ]; do
    sleep 1; k=$((k + 1))
    if [ $((k % ${MERGE_EVERY_S:-30})) = 0 ]; then
      python3 -m measure.cli merge "$OUT/$name.jsonl" "$work"/gpu*.jsonl > /dev/null 2>&1
    fi
  done ) &
merger=$!
wait $workers
touch "$work/stop"; wait "$merger"
python3 -m measure.cli merge "$OUT/$name.jsonl" "$work"/gpu*.jsonl
{ [ -n "${PLAN_STEP:-}" ] && echo "== plan step $PLAN_STEP: $grid -> $name.jsonl $*"
  for i in $(seq 0 $((n - 1))); do
    grep -vE "Warning|warn\(|_pytree|register_constant|^\s*$" "$work/gpu$i.log" | sed "s/^/gpu$i /"
  done
  [ -s "$work/doctor.err" ] && sed "s/^/doctor stderr: /" "$work/doctor.err"; } > "$work/step.log"
cat "$work/step.log" >> "$OUT/grid.log"   # appended: the steps of one plan share $OUT
cat "$work"/selfcheck*.log | tail -n 25
grep -E "J/tok|failed|skipped" "$work/step.log" | cut -c1-200 | tail -n 60; grep -h "already done" "$work"/gpu*.log
# also into grid.log, so that the call's grid wall times come back in $OUT even where the tool's reply is not saved
echo "grid wall $(( $(date +%s) - start )) s on $n GPUs; records: $(wc -l < "$OUT/$name.jsonl")" | tee -a "$OUT/grid.log"
