#!/usr/bin/env bash
# Run one grid over every GPU of a lent multi-GPU machine (the project's `device` tool), no Ray needed:
# one `measure grid` process per GPU (CUDA_VISIBLE_DEVICES=i), sharing the work through a claim directory
# (a block = one model x method x engine), each resuming from STORE_IN_REPO; their stores are merged into
# $OUT/<store name>.jsonl at the end (`measure merge`, by record id).
#   bash scripts/device_run_multi.sh GRID.yaml BUDGET_S STORE_IN_REPO [--set key=value ...]
# SELFCHECK=1: the last GPU first runs the meter self-check (about 80 s), then joins the grid.
# EXPECT_GPU=H200: stop before measuring unless every GPU's name contains it (a lent machine of another
# kind would otherwise fill a store meant for one card with another card's cells).
# DEADLINE_S (default 560): seconds from this script's start by which every worker is stopped (a cell that
# overruns its estimate is lost, the cells before it are kept), leaving time to merge before the device
# call's limit. The per-GPU stores live under $OUT/parts until merged, so even a killed call returns what
# it measured; logs and claims stay in /tmp (the device tool returns at most 8 files).
set -uo pipefail
grid=$1; budget=$2; resume=$3; shift 3
t0=$(date +%s); deadline=${DEADLINE_S:-560}
. "$(dirname "$0")/device_setup.sh"
export OMP_NUM_THREADS=8
parts=$OUT/parts; work=/tmp/multi.$$; mkdir -p "$parts" "$work/claims"
python3 -m measure.cli doctor --json > "$OUT/doctor.json" 2> "$work/doctor.err"; echo "doctor rc=$?"
if [ -n "${EXPECT_GPU:-}" ] && nvidia-smi -L | grep '^GPU' | grep -qv "$EXPECT_GPU"; then
  echo "expected only $EXPECT_GPU GPUs, found:"; nvidia-smi -L; exit 4
fi
n=$(nvidia-smi -L | grep -c '^GPU')
name=$(basename "$resume" .jsonl)
start=$(date +%s)
stop_at=$((t0 + deadline - 25))   # workers are stopped then; 25 s kept for the merge
left=$((stop_at - start))
[ "$budget" -gt $((left - 10)) ] && budget=$((left - 10))
echo "setup took $((start - t0)) s; worker budget $budget s, hard stop after $left s"
for i in $(seq 0 $((n - 1))); do
  cp "$resume" "$parts/gpu$i.jsonl"
  pre=true; b=$budget
  if [ "${SELFCHECK:-0}" = 1 ] && [ "$i" = $((n - 1)) ]; then
    pre="python3 -m measure.meter.selfcheck --out $OUT --index $i"; b=$((budget - 100))
  fi
  ( $pre > "$work/selfcheck$i.log" 2>&1
    CUDA_VISIBLE_DEVICES=$i timeout -s INT -k 10 $((stop_at - $(date +%s))) python3 -m measure.cli grid "$grid" --device cuda:0 --out "$parts/gpu$i.jsonl" \
      --claim-dir "$work/claims" --claim-owner "gpu$i" --time-budget-s "$b" "$@" > "$work/gpu$i.log" 2>&1 ) &
done
wait
cp "$resume" "$OUT/$name.jsonl"
python3 -m measure.cli merge "$OUT/$name.jsonl" "$parts"/gpu*.jsonl && rm -rf "$parts"
for i in $(seq 0 $((n - 1))); do
  grep -vE "Warning|warn\(|_pytree|register_constant|^\s*$" "$work/gpu$i.log" | sed "s/^/gpu$i /"
done > "$OUT/grid.log"
[ -s "$work/doctor.err" ] && sed "s/^/doctor stderr: /" "$work/doctor.err" >> "$OUT/grid.log"
cat "$work"/selfcheck*.log | tail -n 25
grep -E "J/tok|failed|skipped" "$OUT/grid.log" | cut -c1-200 | tail -n 60; grep -h "already done" "$work"/gpu*.log
echo "grid wall $(( $(date +%s) - start )) s on $n GPUs; records: $(wc -l < "$OUT/$name.jsonl")"
