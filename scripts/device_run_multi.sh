#!/usr/bin/env bash
# Run grids over every GPU of a lent multi-GPU machine (the project's `device` tool), no Ray needed: one worker
# per GPU (CUDA_VISIBLE_DEVICES=i) runs the steps in order, one `measure grid` process per step, and moves on to
# its next step as soon as its grid returns (no cell of the step left that another GPU has not claimed, or its
# time budget stopped it): no GPU waits for the others between steps.
#   bash scripts/device_run_multi.sh GRID.yaml BUDGET_S STORE_IN_REPO [--set key=value ...]   (one step)
#   bash scripts/device_run_multi.sh --steps STEPS_FILE BUDGET_S   (scripts/device_run_plan.sh)
# STEPS_FILE: one step a line, `GRID STORE_IN_REPO [--set key=value ...]` (shell quoting), in the order to run.
# The GPUs share the work through one claim directory per store (a block = one model x method x engine; steps
# that write the same store share it, so no block is measured twice in one call, and the GPU that claimed a
# block in one step does that block's cells of the later steps). Each GPU writes one store per store name in
# /tmp, started from $OUT/<store name>.jsonl when an earlier run of the same call left it there, else from
# STORE_IN_REPO (else empty); they are merged into $OUT/<store name>.jsonl (`measure merge`, by record id)
# every MERGE_EVERY_S (default 30) seconds while the workers run, so a killed call still returns what it had
# measured by the last merge, and at the end.
# Time: DEADLINE_S (default 560) seconds from this script's start, less 25 s kept for the merge, is the hard
# stop: `timeout -s INT` stops every grid process then (a cell that overruns its estimate is lost, the cells
# before it are kept). BUDGET_S is the worker budget for the whole chain, counted from the end of the set-up
# and cut to end 30 s before the hard stop (Python's import of torch comes before the grid's own clock):
# each step's grid gets what is left of it (--time-budget-s). A worker starts no step with less than
# MIN_STEP_S (default 90) seconds left before the hard stop.
# SELFCHECK=1: the last GPU first runs the meter self-check (about 80 s), then its steps.
# EXPECT_GPU=H200: stop before measuring unless every GPU's name contains it (a lent machine of another kind
# would otherwise fill a store meant for one card with another card's cells).
# grid.log ($OUT, appended to what an earlier run of the call left): per step a `== plan step K: ...` header
# (with --steps, or PLAN_STEP=K for one step) and each GPU's log lines of that step prefixed `gpuI `, then
# each GPU's chain (when it ran which step), then the `workers done after: ... (idle X of Y GPU-s ...)` line and one
# `grid wall N s on G GPUs; records: ...` line for the run.
# Logs and claims stay in /tmp ($TMPDIR); $OUT holds at most 8 files (the device tool returns no more):
# doctor.json, nvidia-smi.csv, host.txt, pip-versions.txt, grid.log, one store per store name and, with
# SELFCHECK=1, selfcheck.json and timeline_10s.csv. Exit status 0 once the workers ran (2 bad steps, 3 set-up
# failed, 4 another GPU).
set -uo pipefail
t0=$(date +%s); deadline=${DEADLINE_S:-560}; min_step=${MIN_STEP_S:-90}
work=${TMPDIR:-/tmp}/multi.$$; mkdir -p "$work"
if [ "${1:-}" = --steps ]; then
  if [ $# -ne 3 ] || [ ! -f "$2" ]; then echo "usage: $0 --steps STEPS_FILE BUDGET_S"; exit 2; fi
  cp "$2" "$work/steps"; budget=$3; first=1
else
  [ $# -ge 3 ] || { echo "usage: $0 GRID BUDGET_S STORE_IN_REPO [--set ...] | --steps STEPS_FILE BUDGET_S"; exit 2; }
  grid=$1; budget=$2; store=$3; shift 3
  { printf '%q %q' "$grid" "$store"; [ $# -gt 0 ] && printf ' %q' "$@"; echo; } > "$work/steps"
  first=${PLAN_STEP:-}   # one step: a grid.log header only as a plan's step
fi
nsteps=0; names=(); declare -A path_of
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}; case "$line" in ''|'#'*) continue ;; esac
  eval "set -- $line"
  if [ $# -lt 2 ]; then echo "steps: malformed line (GRID STORE [--set ...]): $line"; continue; fi
  name=$(basename "$2" .jsonl)
  if [ -z "${path_of[$name]:-}" ]; then names+=("$name"); path_of[$name]=$2
  elif [ "${path_of[$name]}" != "$2" ]; then   # $OUT/<name>.jsonl is one store: two paths cannot share it
    echo "steps: two stores named $name.jsonl: ${path_of[$name]} and $2"; exit 2
  fi
  nsteps=$((nsteps + 1)); step_line[nsteps]=$line; step_grid[nsteps]=$1; step_name[nsteps]=$name
  shift 2; step_sets[nsteps]="$*"
done < "$work/steps"
[ "$nsteps" -gt 0 ] || { echo "steps: none in the steps file"; exit 2; }
. "$(dirname "$0")/device_setup.sh"
export OMP_NUM_THREADS=8
python3 -m measure.cli doctor --json > "$OUT/doctor.json" 2> "$work/doctor.err"; echo "doctor rc=$?"
if [ -n "${EXPECT_GPU:-}" ] && nvidia-smi -L | grep '^GPU' | grep -qv "$EXPECT_GPU"; then
  echo "expected only $EXPECT_GPU GPUs, found:"; nvidia-smi -L; exit 4
fi
n=$(nvidia-smi -L | grep -c '^GPU')
start=$(date +%s)
stop_at=$((t0 + deadline - 25))   # workers are stopped then; 25 s kept for the merge
left=$((stop_at - start))
# the grid's own clock starts after Python has imported torch and opened the meter: keep 30 s for that
[ "$budget" -gt $((left - 30)) ] && budget=$((left - 30))
budget_end=$((start + budget))
echo "setup took $((start - t0)) s; worker budget $budget s for $nsteps step(s) chained per GPU, hard stop after $left s"
files=$((5 + ${#names[@]})); [ "${SELFCHECK:-0}" = 1 ] && files=$((files + 2))
[ "$files" -gt 8 ] && echo "warning: $OUT will hold $files files, more than the 8 the device tool returns"
# an earlier run of the same device call (a plan step before the steps chained) may have filled $OUT's store
# already: resume from it then, never overwrite it with the older copy in the repository
for name in "${names[@]}"; do
  if [ ! -s "$OUT/$name.jsonl" ]; then
    if [ -f "${path_of[$name]}" ]; then cp "${path_of[$name]}" "$OUT/$name.jsonl"
    else echo "new store: ${path_of[$name]}"; : > "$OUT/$name.jsonl"; fi
  fi
done
if [ -f "$OUT/grid.log" ]; then cp "$OUT/grid.log" "$work/grid.before"; else : > "$work/grid.before"; fi

chain() {   # GPU $1 runs the steps in order; $work/gpu$1.chain says when it ran which
  local i=$1 k d b rc t
  if [ "${SELFCHECK:-0}" = 1 ] && [ "$i" = $((n - 1)) ]; then
    d=$((stop_at - $(date +%s)))
    timeout -s INT -k 10 "$d" python3 -m measure.meter.selfcheck --out "$OUT" --index "$i" \
      > "$work/selfcheck$i.log" 2>&1 < /dev/null
    echo "self-check 0-$(( $(date +%s) - start )) s" >> "$work/gpu$i.chain"
  fi
  for k in $(seq 1 "$nsteps"); do
    eval "set -- ${step_line[k]}"; shift 2
    t=$(date +%s); d=$((stop_at - t)); b=$((budget_end - t))
    # `timeout 0` would mean no limit, a negative one is an error: hence the 5 s
    if [ "$d" -lt "$min_step" ] || [ "$d" -lt 5 ] || [ "$b" -lt 1 ]; then
      echo "step $k and after not started at $((t - start)) s: $d s left before the hard stop" \
        "(MIN_STEP_S $min_step), budget $b s" >> "$work/gpu$i.chain"
      break
    fi
    CUDA_VISIBLE_DEVICES=$i timeout -s INT -k 10 "$d" python3 -m measure.cli grid "${step_grid[k]}" --device cuda:0 \
      --out "$work/gpu$i-${step_name[k]}.jsonl" --claim-dir "$work/claims-${step_name[k]}" --claim-owner "gpu$i" \
      --time-budget-s "$b" "$@" > "$work/gpu$i.step$k.log" 2>&1 < /dev/null
    rc=$?
    echo "step $k $((t - start))-$(( $(date +%s) - start )) s (budget $b s, exit $rc)" >> "$work/gpu$i.chain"
  done
  echo "done $(( $(date +%s) - start ))" >> "$work/gpu$i.chain"
}
merge_all() {   # every store's per-GPU files into $OUT/<store name>.jsonl
  local name i files
  for name in "${names[@]}"; do
    files=(); for i in $(seq 0 $((n - 1))); do files+=("$work/gpu$i-$name.jsonl"); done
    python3 -m measure.cli merge "$OUT/$name.jsonl" "${files[@]}"
  done
}
run_log() {   # this run's part of grid.log: each step's lines by GPU, then each GPU's chain
  local k i
  for k in $(seq 1 "$nsteps"); do
    [ -n "$first" ] && echo "== plan step $((first + k - 1)): ${step_grid[k]} -> ${step_name[k]}.jsonl ${step_sets[k]}"
    for i in $(seq 0 $((n - 1))); do
      [ -f "$work/gpu$i.step$k.log" ] || continue
      grep -vE "Warning|warn\(|_pytree|register_constant|^\s*$" "$work/gpu$i.step$k.log" | sed "s/^/gpu$i /"
    done
  done
  for i in $(seq 0 $((n - 1))); do grep -v '^done ' "$work/gpu$i.chain" 2>/dev/null | sed "s/^/gpu$i chain: /"; done
  [ -s "$work/doctor.err" ] && sed "s/^/doctor stderr: /" "$work/doctor.err"
  return 0
}

workers=""
for i in $(seq 0 $((n - 1))); do
  for name in "${names[@]}"; do cp "$OUT/$name.jsonl" "$work/gpu$i-$name.jsonl"; done
  : > "$work/gpu$i.chain"
  chain "$i" &
  workers="$workers $!"
done
( k=0   # merge while the workers run; stops within a second of the stop file (never mid-merge)
  while [ ! -e "$work/stop" ]; do
    sleep 1; k=$((k + 1))
    if [ $((k % ${MERGE_EVERY_S:-30})) = 0 ]; then
      merge_all > /dev/null 2>&1
      { cat "$work/grid.before"; run_log; } > "$work/grid.now" 2>/dev/null && cat "$work/grid.now" > "$OUT/grid.log"
    fi
  done ) &
merger=$!
# shellcheck disable=SC2086
wait $workers
touch "$work/stop"; wait "$merger"
merge_all
run_log > "$work/run.log"
cat "$work/grid.before" "$work/run.log" > "$OUT/grid.log"
[ -f "$work/selfcheck$((n - 1)).log" ] && tail -n 25 "$work/selfcheck$((n - 1)).log"
for k in $(seq 1 "$nsteps"); do   # per step: its cells by GPU, then each GPU's summary line
  [ -n "$first" ] && echo "== plan step $((first + k - 1)): ${step_grid[k]} -> ${step_name[k]}.jsonl ${step_sets[k]}"
  for i in $(seq 0 $((n - 1))); do
    [ -f "$work/gpu$i.step$k.log" ] && grep -E "J/tok|failed|skipped" "$work/gpu$i.step$k.log" | grep -v "already done" \
      | sed "s/^/gpu$i /"
  done | cut -c1-200 | tail -n 60
  for i in $(seq 0 $((n - 1))); do
    [ -f "$work/gpu$i.step$k.log" ] && grep -h "already done" "$work/gpu$i.step$k.log" | sed "s/^/gpu$i /"
  done
done
grep "chain: " "$work/run.log"
done_at=""; last=0; sum=0   # when each GPU's chain ended, and the GPU time idle until the last one's end
for i in $(seq 0 $((n - 1))); do
  e=$(sed -n 's/^done //p' "$work/gpu$i.chain"); e=${e:-0}; done_at="$done_at gpu$i $e s,"
  sum=$((sum + e)); [ "$e" -gt "$last" ] && last=$e
done
# into grid.log too: the call's raw folder keeps the idle GPU time (s17's were in the tool's reply only)
echo "workers done after:${done_at%,} (idle $((n * last - sum)) of $((n * last)) GPU-s before the last one ended)" \
  | tee -a "$OUT/grid.log"
records=""; for name in "${names[@]}"; do records="$records $(wc -l < "$OUT/$name.jsonl") ($name.jsonl),"; done
# one line for the run, also into grid.log, so that the call's grid wall time comes back in $OUT even where the
# tool's reply is not saved (scripts/device_call_collect.py reads it)
echo "grid wall $(( $(date +%s) - start )) s on $n GPUs; records:${records%,}" | tee -a "$OUT/grid.log"
