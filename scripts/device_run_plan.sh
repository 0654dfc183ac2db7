#!/usr/bin/env bash
# Run the steps of a measurement plan in one device call, one after another, until the call's time is
# used: a step that runs out of cells early (session s6's first call ended after 251 of its 550 s, the four
# GPUs then idle) hands the rest of the call to the next step instead of wasting it.
#   DEADLINE_S=550 bash scripts/device_run_plan.sh measure/plans/next.txt
# Plan file: one step per line, `CARD GRID STORE_IN_REPO [--set key=value ...]` (shell quoting), # comments.
# CARD is a substring every GPU name must contain ('NVIDIA H100 80GB HBM3', 'NVIDIA H200': quote it; a bare
# H200 would match a GH200 too): steps for another card are skipped, so one plan serves whichever machine
# the device tool lends. Each step is scripts/device_run_multi.sh with the time left (DEADLINE_S) and
# EXPECT_GPU=CARD; steps share $OUT (a store written by an earlier step is resumed, grid.log is appended).
# No step starts with less than MIN_STEP_S (default 150) seconds left; a step whose store holds every cell
# of its selection already (`measure grid --dry-run` `pending_in_out` 0) is skipped. SELFCHECK=1 applies to the first step
# only; $OUT returns at most 8 files (the 5 set-up/log files plus one per store, plus 2 for the self-check),
# so a plan whose steps for one card write two stores must not ask for the self-check (refused).
# SKIP_STORES (space-separated substrings) skips every step whose STORE contains one of them, so a machine too
# small for some steps runs the rest of the same plan (SKIP_STORES=experiments/ leaves out the experiment steps).
# Exit status: the worst of the steps' (0 when none ran). RUN_MULTI overrides the step runner (tests).
set -uo pipefail
plan=$1
t0=$(date +%s); deadline=${DEADLINE_S:-560}; min_step=${MIN_STEP_S:-150}
runner=${RUN_MULTI:-$(dirname "$0")/device_run_multi.sh}
gpus=$(nvidia-smi -L 2>/dev/null | grep '^GPU')
[ -n "$gpus" ] || { echo "plan: no GPU listed by nvidia-smi -L"; exit 4; }
mine=$(mktemp)
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}; line="${line#"${line%%[![:space:]]*}"}"   # CRLF files, indented lines
  case "$line" in ''|'#'*) continue ;; esac
  eval "set -- $line"
  if [ $# -lt 3 ]; then echo "plan: malformed line (CARD GRID STORE [--set ...]): $line"; continue; fi
  if echo "$gpus" | grep -qvF "$1"; then echo "plan: skip ($1 step; GPUs: $(echo "$gpus" | cut -d'(' -f1 | sort -u | paste -sd';'))"; continue; fi
  skip=""; for pat in ${SKIP_STORES:-}; do case "$3" in *"$pat"*) skip=$pat ;; esac; done
  if [ -n "$skip" ]; then echo "plan: skip ($3 matches SKIP_STORES '$skip')"; continue; fi
  printf '%s\n' "$line" >> "$mine"
done < "$plan"
if [ "${SELFCHECK:-0}" = 1 ] && [ "$(while IFS= read -r l; do eval "set -- $l"; echo "$3"; done < "$mine" | sort -u | wc -l)" -gt 1 ]; then
  echo "plan: SELFCHECK=1 with two stores would return more than 8 files; run the self-check alone"; rm -f "$mine"; exit 2
fi
step=0; worst=0
while IFS= read -r line; do
  eval "set -- $line"
  card=$1; grid=$2; store=$3; shift 3
  left=$((deadline - ($(date +%s) - t0)))
  if [ "$left" -lt "$min_step" ]; then echo "plan: $left s left, below MIN_STEP_S=$min_step: stop"; break; fi
  # a step with no cell left in its store (the one an earlier step left in $OUT, else the repository's) is
  # skipped without the set-up of a run; when the count cannot be had, the step runs
  src="$OUT/$(basename "$store" .jsonl).jsonl"; [ -s "$src" ] || src=$store
  pending=$(python3 -m measure.cli grid "$grid" --dry-run --out "$src" "$@" 2>/dev/null | python3 -c \
    'import json, sys; t = sys.stdin.read(); print(json.loads(t[t.index("{"):]).get("pending_in_out", ""))' \
    2>/dev/null)
  if [ "$pending" = "0" ]; then echo "plan: nothing left of $grid $* in $src: skip"; continue; fi
  step=$((step + 1))
  echo "plan: step $step with $left s left: $grid -> $store $*"
  sc=0; [ "$step" = 1 ] && sc=${SELFCHECK:-0}
  PLAN_STEP=$step SELFCHECK=$sc DEADLINE_S=$left EXPECT_GPU=$card bash "$runner" "$grid" $((left - 80)) "$store" "$@" \
    < /dev/null
  rc=$?; echo "plan: step $step exit $rc"; [ "$rc" -gt "$worst" ] && worst=$rc
done < "$mine"
rm -f "$mine"
echo "plan: $step step(s) in $(( $(date +%s) - t0 )) s"
exit "$worst"
