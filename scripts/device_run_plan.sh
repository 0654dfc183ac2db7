#!/usr/bin/env bash
# Run the steps of a measurement plan in one device call until the call's time is used, chained per GPU: each
# GPU runs the selected steps in order and moves on to its next step as soon as it has no cell of its step left
# (or its budget stopped it), so a GPU whose step runs out of cells does not idle while the others finish theirs.
#   DEADLINE_S=550 bash scripts/device_run_plan.sh measure/plans/next.txt
# Plan file: one step per line, `CARD GRID STORE_IN_REPO [--set key=value ...]` (shell quoting), # comments.
# CARD is a substring every GPU name must contain ('NVIDIA H100 80GB HBM3', 'NVIDIA H200': quote it; a bare
# H200 would match a GH200 too): steps for another card are skipped, so one plan serves whichever machine
# the device tool lends. A step whose store holds every cell of its selection already (`measure grid
# --dry-run` `pending_in_out` 0, against $OUT's copy of the store if there is one, else the repository's) is
# skipped, and so is one whose cheapest pending cell needs more than the worker budget left (`first_cell_budget_s`
# of the same dry run: the least time budget that starts one of its cells, from the store's records; since s27);
# no step is selected with less than MIN_STEP_S (default 150) seconds of DEADLINE_S left.
# SKIP_STORES (space-separated substrings) skips every step whose STORE contains one of them, so a machine too
# small for some steps runs the rest of the same plan (SKIP_STORES=experiments/ leaves out the experiment steps).
# The selected steps then go to ONE run of scripts/device_run_multi.sh --steps STEPS_FILE BUDGET_S (one
# `GRID STORE [--set ...]` line per step) with the time left (DEADLINE_S, budget 80 s less) and EXPECT_GPU=CARD
# (the first step's): there each GPU chains the steps (steps writing one store share its claims, so no block is
# measured twice) and starts no step with less than the runner's MIN_STEP_S (default 90; one given here applies
# there too) left. SELFCHECK=1 runs the self-check once, on the last GPU before its first step; $OUT returns at
# most 8 files (the 5 set-up/log files plus one per store, plus 2 for the self-check), so a plan whose steps for
# one card write two stores must not ask for the self-check (refused).
# Exit status: the runner's (0 when no step was selected). RUN_MULTI overrides the runner (tests).
set -uo pipefail
plan=$1
t0=$(date +%s); deadline=${DEADLINE_S:-560}; min_step=${MIN_STEP_S:-150}
runner=${RUN_MULTI:-$(dirname "$0")/device_run_multi.sh}
gpus=$(nvidia-smi -L 2>/dev/null | grep '^GPU')
[ -n "$gpus" ] || { echo "plan: no GPU listed by nvidia-smi -L"; exit 4; }
# this machine's GPUs by UUID: a grid with `resume_per: gpu` (the machine anchors) counts its cells pending for
# them, so a step whose cells every GPU here has measured is skipped like a finished one
uuid_args=(); for u in $(echo "$gpus" | sed -n 's/.*(UUID: \(GPU-[^)]*\)).*/\1/p'); do uuid_args+=(--gpu-uuid "$u"); done
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
steps=$(mktemp); step=0; worst=0; card=""
while IFS= read -r line; do
  eval "set -- $line"
  left=$((deadline - ($(date +%s) - t0)))
  if [ "$left" -lt "$min_step" ]; then echo "plan: $left s left, below MIN_STEP_S=$min_step: stop"; break; fi
  c=$1; grid=$2; store=$3; shift 3
  # a step with no cell left in its store (the one an earlier run of this call left in $OUT, else the
  # repository's) is skipped without the set-up of a run; when the count cannot be had, the step runs
  src="$OUT/$(basename "$store" .jsonl).jsonl"; [ -s "$src" ] || src=$store
  counts=$(python3 -m measure.cli grid "$grid" --dry-run --out "$src" "$@" ${uuid_args[@]+"${uuid_args[@]}"} 2>/dev/null < /dev/null \
    | python3 -c \
    'import json, math, sys; t = sys.stdin.read(); r = json.loads(t[t.index("{"):]); f = r.get("first_cell_budget_s")
print(r.get("pending_in_out", ""), "" if f is None else math.ceil(f))' \
    2>/dev/null)
  read -r pending first <<< "$counts"
  if [ "$pending" = "0" ]; then echo "plan: nothing left of $grid $* in $src: skip"; continue; fi
  # the runner's worker budget is the time left less 80 s; a step none of whose cells fits it is skipped (s27-d)
  if [ -n "${first:-}" ] && [ "$first" -gt $((left - 80)) ]; then
    echo "plan: no cell of $grid $* fits the $((left - 80)) s worker budget left (the cheapest needs $first s): skip"
    continue
  fi
  step=$((step + 1)); [ -n "$card" ] || card=$c   # every selected step's CARD matched every GPU
  echo "plan: step $step: $grid -> $store $*"
  { printf '%q %q' "$grid" "$store"; [ $# -gt 0 ] && printf ' %q' "$@"; echo; } >> "$steps"
done < "$mine"
rm -f "$mine"
if [ "$step" -gt 0 ]; then
  left=$((deadline - ($(date +%s) - t0)))
  echo "plan: $step step(s) with $left s left, chained per GPU: each GPU runs them in order and starts its next step" \
    "as soon as it has no cell of its step left (no barrier between steps)"
  SELFCHECK=${SELFCHECK:-0} DEADLINE_S=$left EXPECT_GPU=$card bash "$runner" --steps "$steps" $((left - 80)) < /dev/null
  worst=$?; echo "plan: steps exit $worst"
fi
rm -f "$steps"
echo "plan: $step step(s) in $(( $(date +%s) - t0 )) s"
exit "$worst"
