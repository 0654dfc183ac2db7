"""scripts/device_run_multi.sh with a fake `nvidia-smi` and a fake `python3` (no GPU): a second run in the
same device call (a plan step) resumes the store the first run left in $OUT instead of overwriting it with
the repository's copy, and grid.log collects both steps; with --steps each GPU chains the steps by itself
(no barrier between steps), steps of one store share its claims, and each store is merged into $OUT."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.fixtures.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "device_run_multi.sh"
PLAN_SCRIPT = REPO / "scripts" / "device_run_plan.sh"
collect_mod = load_script(REPO / "scripts" / "device_call_collect.py")

FAKE_PYTHON = r'''#!/usr/bin/env bash
# stands in for `python3 -m measure.cli {doctor,grid,merge}`, `python3 -m measure.meter.selfcheck` and
# `python3 -m pip`; each grid and self-check appends a JSON line of what it was given to $FAKE_LOG
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then exit 0; fi
if [ "$2" = "measure.cli" ] && [ "$3" = "doctor" ]; then echo '{}'; exit 0; fi
if [ "$2" = "measure.cli" ] && [ "$3" = "merge" ]; then
  out=$4; shift 4
  cat "$out" "$@" | sort -u > "$out.tmp" && mv "$out.tmp" "$out"; exit 0
fi
if [ "$2" = "measure.meter.selfcheck" ]; then
  t0=$(date +%s.%N); sleep "${FAKE_SELFCHECK_S:-0}"; out=$4
  echo '{}' > "$out/selfcheck.json"; echo 't' > "$out/timeline_10s.csv"
  echo "{\"ev\": \"selfcheck\", \"index\": $6, \"t0\": $t0, \"t1\": $(date +%s.%N)}" >> "${FAKE_LOG:-/dev/null}"
  exit 0
fi
if [ "$2" = "measure.cli" ] && [ "$3" = "grid" ]; then
  # --set cells=NAME:SECONDS,...: one record per cell not yet in --out whose claim (a file per cell name in
  # --claim-dir) it gets or already holds, after sleeping SECONDS; without cells: one record per run
  grid=$4; shift 4; out=""; owner=""; claims=""; budget=""; cells=""; nargs=$#
  while [ $# -gt 0 ]; do
    case "$1" in --out) out=$2; shift ;; --claim-owner) owner=$2; shift ;; --claim-dir) claims=$2; shift ;;
      --time-budget-s) budget=$2; shift ;; --set) case "$2" in cells=*) cells=${2#cells=} ;; esac; shift ;; esac
    shift
  done
  g=$(basename "$grid" .yaml); t0=$(date +%s.%N)
  if [ -z "$cells" ]; then
    echo "{\"record_id\": \"$g-$owner\", \"seen_before\": $(wc -l < "$out")}" >> "$out"
    echo "[1/1] $g ok 1.0 tok/s 1.0 J/tok"
  else
    ran=0; done=0; elsewhere=0; mkdir -p "$claims"
    for c in ${cells//,/ }; do
      name=${c%%:*}
      if grep -q "\"record_id\": \"$name\"" "$out"; then done=$((done + 1)); continue; fi
      if ! ( set -C; echo "$owner" > "$claims/$name" ) 2>/dev/null && [ "$(cat "$claims/$name")" != "$owner" ]; then
        elsewhere=$((elsewhere + 1)); continue
      fi
      c0=$(date +%s.%N); sleep "${c#*:}"; ran=$((ran + 1))
      echo "{\"record_id\": \"$name\", \"owner\": \"$owner\", \"grid\": \"$g\", \"t0\": $c0, \"t1\": $(date +%s.%N)}" >> "$out"
      echo "[$ran/?] $g $name ok 1.0 tok/s 1.0 J/tok"
    done
    echo "$ran run ($ran ok, 0 failed, 0 skipped), $done already done, 0 remaining, $elsewhere left to other processes"
  fi
  echo "{\"ev\": \"grid\", \"grid\": \"$g\", \"owner\": \"$owner\", \"gpu\": \"$CUDA_VISIBLE_DEVICES\", \"claims\": \"$claims\"," \
    "\"out\": \"$out\", \"budget\": $budget, \"nargs\": $nargs, \"t0\": $t0, \"t1\": $(date +%s.%N)}" >> "${FAKE_LOG:-/dev/null}"
  exit 0
fi
exit 9
'''


def _machine(tmp_path: Path, n_gpus: int = 2) -> tuple[dict[str, str], Path, Path]:
    """A fake `nvidia-smi` listing `n_gpus` H100s and the fake `python3` on PATH; a checkout with
    stores/camp.jsonl holding one record; returns the environment, the checkout and $OUT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\n" + "".join(
        f'echo "GPU {i}: NVIDIA H100 (UUID: GPU-{i})"\n' for i in range(n_gpus)))
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    work = tmp_path / "checkout"
    (work / "stores").mkdir(parents=True)
    (work / "stores" / "camp.jsonl").write_text('{"record_id": "old"}\n')
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
           "DEADLINE_S": "120", "MERGE_EVERY_S": "1000", "TMPDIR": str(tmp_path / "tmp"),
           "FAKE_LOG": str(tmp_path / "fake.log")}
    env.pop("MIN_STEP_S", None)
    env.pop("SELFCHECK", None)
    return env, work, out


def _run_steps(tmp_path: Path, env: dict[str, str], work: Path, steps: str, budget: int = 60):
    steps_file = tmp_path / "steps.txt"
    steps_file.write_text(steps)
    res = subprocess.run(["bash", str(SCRIPT), "--steps", str(steps_file), str(budget)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _events(tmp_path: Path, ev: str = "grid") -> list[dict]:
    log = tmp_path / "fake.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [e for e in map(json.loads, lines) if e["ev"] == ev]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_second_step_resumes_the_store_of_the_first(tmp_path):
    """The one-grid interface (GRID BUDGET_S STORE [--set ...]), run twice as two plan steps."""
    env, work, out = _machine(tmp_path)
    for step, grid in ((1, "first.yaml"), (2, "second.yaml")):
        res = subprocess.run(["bash", str(SCRIPT), grid, "60", "stores/camp.jsonl"], cwd=work,
                             env=env | {"PLAN_STEP": str(step)}, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
    ids = {r["record_id"] for r in _records(out / "camp.jsonl")}
    assert ids == {"old", "first-gpu0", "first-gpu1", "second-gpu0", "second-gpu1"}
    # the second step's workers started from the first step's merged store (old + 2 records)
    second = [r for r in _records(out / "camp.jsonl") if r["record_id"].startswith("second")]
    assert {r["seen_before"] for r in second} == {3}
    log = (out / "grid.log").read_text()
    assert "== plan step 1: first.yaml" in log and "== plan step 2: second.yaml" in log
    # each step's grid wall line comes back in grid.log too, after its step's lines (the store then held 3, then 5)
    walls = re.findall(r"grid wall \d+ s on 2 GPUs; records: (\d+)", log)
    assert walls == ["3", "5"] and log.index("records: 3") < log.index("== plan step 2")
    assert (work / "stores" / "camp.jsonl").read_text() == '{"record_id": "old"}\n'  # the repository copy untouched


def test_a_gpu_done_with_its_step_starts_the_next_while_another_is_still_in_its_step(tmp_path):
    env, work, out = _machine(tmp_path)
    res = _run_steps(tmp_path, env, work, "a.yaml stores/camp.jsonl --set cells=slow:2,fast:0.2\n"
                                          "b.yaml stores/camp.jsonl --set 'cells=n1:0.2,n2:0.2'\n")
    recs = {r["record_id"]: r for r in _records(out / "camp.jsonl")}
    assert set(recs) == {"old", "slow", "fast", "n1", "n2"}
    slow = recs["slow"]
    # the GPU that measured `fast` went on to step 2 and measured both of its cells while `slow` still ran
    assert recs["n1"]["owner"] == recs["n2"]["owner"] == recs["fast"]["owner"] != slow["owner"]
    assert recs["n2"]["t1"] < slow["t1"]
    grids = _events(tmp_path)
    assert len(grids) == 4 and {(e["grid"], e["gpu"]) for e in grids} == {("a", "0"), ("a", "1"), ("b", "0"), ("b", "1")}
    assert all(e["owner"] == f"gpu{e['gpu']}" for e in grids)
    # each step gets what is left of the worker's budget: the slow GPU's step 2 had about 2 s less than its step 1
    slow_gpu = [e for e in grids if e["owner"] == slow["owner"]]
    assert [e["grid"] for e in slow_gpu] == ["a", "b"] and slow_gpu[1]["budget"] <= slow_gpu[0]["budget"] - 2
    assert slow_gpu[0]["budget"] <= 60
    log = (out / "grid.log").read_text()
    step1, step2 = log.index("== plan step 1: a.yaml -> camp.jsonl"), log.index("== plan step 2: b.yaml -> camp.jsonl")
    assert step1 < log.index(f"{slow['owner']} [1/?] a slow ok") < step2 < log.index(f"{recs['n1']['owner']} [1/?] b n1 ok")
    assert len(re.findall(r"grid wall (\d+) s on 2 GPUs; records: 5 \(camp.jsonl\)", log)) == 1  # one per run
    assert collect_mod.grid_walls(log) == collect_mod.grid_walls(res.stdout) and len(collect_mod.grid_walls(log)) == 1
    assert "gpu0 chain: step 1 " in log and "gpu1 chain: step 2 " in log
    assert "== plan step 2: b.yaml" in res.stdout and f"{slow['owner']} [1/?] a slow ok" in res.stdout
    assert "chained per GPU" in res.stdout and "workers done after: gpu0 " in res.stdout
    idle = re.findall(r"workers done after: .*\(idle \d+ of \d+ GPU-s", log)
    assert len(idle) == 1 and idle[0] in res.stdout  # the raw folder keeps the idle GPU time too


def test_steps_of_one_store_share_its_claims_and_measure_no_block_twice(tmp_path):
    env, work, out = _machine(tmp_path)
    _run_steps(tmp_path, env, work, "a.yaml stores/camp.jsonl --set cells=x:0.5,y:0.5\n"
                                    "b.yaml stores/camp.jsonl --set cells=x:0.5,y:0.5,z:0.1\n")
    ids = [r["record_id"] for r in _records(out / "camp.jsonl")]
    assert sorted(ids) == ["old", "x", "y", "z"]  # x and y once each, though both steps select them
    grids = _events(tmp_path)
    assert len(grids) == 4 and len({e["claims"] for e in grids}) == 1
    assert len({e["out"] for e in grids}) == 2  # one store per GPU, both steps writing it


def test_two_stores_are_each_merged_into_out(tmp_path):
    env, work, out = _machine(tmp_path)
    (out / "camp.jsonl").write_text('{"record_id": "earlier"}\n')  # an earlier run of the call left it: resumed
    res = _run_steps(tmp_path, env, work, "a.yaml stores/camp.jsonl --set cells=c1:0.1,c2:0.1\n"
                                          "b.yaml stores/exp/new.jsonl --set cells=e1:0.1,e2:0.1,e3:0.1\n"
                                          "c.yaml stores/camp.jsonl --set cells=c3:0.1\n")
    assert "new store: stores/exp/new.jsonl" in res.stdout
    assert sorted(r["record_id"] for r in _records(out / "camp.jsonl")) == ["c1", "c2", "c3", "earlier"]
    assert sorted(r["record_id"] for r in _records(out / "new.jsonl")) == ["e1", "e2", "e3"]
    # per-GPU stores, logs and claims stay out of $OUT (the device tool returns 8 files at most)
    assert sorted(p.name for p in out.iterdir()) == ["camp.jsonl", "doctor.json", "grid.log", "host.txt",
                                                     "new.jsonl", "nvidia-smi.csv", "pip-versions.txt"]
    grids = _events(tmp_path)
    claims = {e["grid"]: e["claims"] for e in grids}
    assert claims["a"] == claims["c"] != claims["b"]
    log = (out / "grid.log").read_text()
    assert re.findall(r"grid wall \d+ s on 2 GPUs; records: (.*)", log) == ["4 (camp.jsonl), 3 (new.jsonl)"]


def test_a_worker_with_less_than_min_step_left_starts_no_further_step(tmp_path):
    env, work, out = _machine(tmp_path)
    # the hard stop comes 120 - 25 = 95 s after the start: the GPU that measured `slow` (4 s) has about 91 s
    # left, under MIN_STEP_S, the other about 94 s and goes on to step 2
    env |= {"MIN_STEP_S": "92"}
    _run_steps(tmp_path, env, work, "a.yaml stores/camp.jsonl --set cells=slow:4\n"
                                    "b.yaml stores/camp.jsonl --set cells=n1:0.1\n")
    recs = {r["record_id"]: r for r in _records(out / "camp.jsonl")}
    assert set(recs) == {"old", "slow", "n1"} and recs["slow"]["owner"] != recs["n1"]["owner"]
    slow_gpu = [e["grid"] for e in _events(tmp_path) if e["owner"] == recs["slow"]["owner"]]
    assert slow_gpu == ["a"]
    log = (out / "grid.log").read_text()
    assert f"{recs['slow']['owner']} chain: step 2 and after not started" in log and "(MIN_STEP_S 92)" in log


def test_the_self_check_runs_once_on_the_last_gpu_before_its_first_step(tmp_path):
    env, work, out = _machine(tmp_path, n_gpus=3)
    env |= {"SELFCHECK": "1", "FAKE_SELFCHECK_S": "0.5"}
    _run_steps(tmp_path, env, work, "a.yaml stores/camp.jsonl --set cells=a1:0.1\n"
                                    "b.yaml stores/camp.jsonl --set cells=b1:0.1\n")
    (check,) = _events(tmp_path, "selfcheck")
    assert check["index"] == 2
    last = [e for e in _events(tmp_path) if e["gpu"] == "2"]
    assert [e["grid"] for e in last] == ["a", "b"] and last[0]["t0"] >= check["t1"]
    assert len(list(out.iterdir())) == 8  # 5 set-up/log files, the store and the self-check's two


def test_the_plan_hands_its_steps_to_one_chained_run(tmp_path):
    """scripts/device_run_plan.sh with this runner: the steps file's quoting keeps each --set one argument."""
    env, work, out = _machine(tmp_path)
    plan = tmp_path / "plan.txt"
    plan.write_text("'NVIDIA H100' a.yaml stores/camp.jsonl --set 'cells=c1:0.1,c2:0.1' --set 'models=[a, b]'\n"
                    "'NVIDIA H200' h200.yaml stores/camp.jsonl --set cells=h:0.1\n"
                    "'NVIDIA H100' b.yaml stores/exp/new.jsonl --set 'workloads=[\"1024/256\"]' --set cells=e1:0.1\n")
    res = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], cwd=work, env=env | {"DEADLINE_S": "200"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(r["record_id"] for r in _records(out / "camp.jsonl")) == ["c1", "c2", "old"]
    assert sorted(r["record_id"] for r in _records(out / "new.jsonl")) == ["e1"]
    grids = _events(tmp_path)
    assert sorted(e["grid"] for e in grids) == ["a", "a", "b", "b"]  # each GPU ran both steps, once
    assert {e["nargs"] for e in grids} == {14}  # 10 of the runner's + two --set pairs
    log = (out / "grid.log").read_text()
    assert "== plan step 1: a.yaml -> camp.jsonl --set cells=c1:0.1,c2:0.1 --set models=[a, b]" in log
    assert '== plan step 2: b.yaml -> new.jsonl --set workloads=["1024/256"] --set cells=e1:0.1' in log
    assert "plan: 2 step(s) with" in res.stdout and "plan: steps exit 0" in res.stdout
