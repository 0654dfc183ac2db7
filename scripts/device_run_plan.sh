#!/usr/bin/env bash
# Run the steps of a measurement plan in one device call, one after another, until the call's time is
# used: a step that runs out of cells early (session s6's first call ended after 251 of its 550 s, the four
# GPUs then idle) hands the rest of the call to the next step instead of wasting it.
#   DEADLINE_S=550 bash scripts/device_run_plan.sh measure/plans/next.txt
# Plan file: one step per line, `CARD GRID STORE_IN_REPO [--set key=value ...]` (shell quoting), # comments.
# CARD is a substring every GPU name must contain (H100, H200): steps for another card are skipped, so one
# plan serves whichever machine the device tool lends. Each step is scripts/device_run_multi.sh with the
# time left (DEADLINE_S) and EXPECT_GPU=CARD; steps share $OUT (a store written by an earlier step is
# resumed, grid.log is appended). No step starts with less than MIN_STEP_S (default 150) seconds left.
# $OUT returns at most 8 files: the 5 set-up/log files plus one per store, so keep SELFCHECK=1 (2 more files)
# to plans with a single store. RUN_MULTI overrides the step runner (tests).
set -uo pipefail
plan=$1
t0=$(date +%s); deadline=${DEADLINE_S:-560}; min_step=${MIN_STEP_S:-150}
runner=${RUN_MULTI:-$(dirname "$0")/device_run_multi.sh}
gpus=$(nvidia-smi -L 2>/dev/null | grep '^GPU')
[ -n "$gpus" ] || { echo "plan: no GPU listed by nvidia-smi -L"; exit 4; }
step=0
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in ''|'#'*) continue ;; esac
  eval "set -- $line"
  card=$1; grid=$2; store=$3; shift 3
  if echo "$gpus" | grep -qv "$card"; then echo "plan: skip ($card step, GPUs: $(echo "$gpus" | head -1))"; continue; fi
  left=$((deadline - ($(date +%s) - t0)))
  if [ "$left" -lt "$min_step" ]; then echo "plan: $left s left, below MIN_STEP_S=$min_step: stop"; break; fi
  step=$((step + 1))
  echo "plan: step $step with $left s left: $grid -> $store $*"
  PLAN_STEP=$step DEADLINE_S=$left EXPECT_GPU=$card bash "$runner" "$grid" $((left - 80)) "$store" "$@"
  echo "plan: step $step exit $?"
done < "$plan"
echo "plan: $step step(s) in $(( $(date +%s) - t0 )) s"
