"""scripts/device_run_plan.sh: the steps of a plan for the lent card, in order, within the call's time; and
every step of the shipped plan expands to cells."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAN_SCRIPT = REPO / "scripts" / "device_run_plan.sh"


def _fake_env(tmp_path: Path, gpu_name: str, runner_sleep_s: float = 0.0) -> dict[str, str]:
    """A PATH with an `nvidia-smi` that lists two GPUs of `gpu_name`, and a step runner that logs its
    arguments and the environment the plan gives it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\necho "GPU 0: NVIDIA {gpu_name} (UUID: GPU-a)"\necho "GPU 1: NVIDIA {gpu_name} (UUID: GPU-b)"\n')
    smi.chmod(0o755)
    runner = tmp_path / "runner.sh"
    log = tmp_path / "runs.log"
    runner.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s|" "$PLAN_STEP" "$DEADLINE_S" "$EXPECT_GPU" "$SELFCHECK" "$@" >> {log}\necho >> {log}\n'
        f"sleep {runner_sleep_s}\nexit ${{RUNNER_RC:-0}}\n")
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RUN_MULTI": str(runner),
            "OUT": str(tmp_path / "out")}


PLAN = """# comment
'NVIDIA H200' grids/a.yaml stores/h200.jsonl --set 'engines=[hf-compiled]'

  # an indented comment, then a line too short to be a step, then a blank line of spaces
H100 grids/only-two.yaml
   \t
'NVIDIA H100' grids/b.yaml stores/rep.jsonl
'NVIDIA H100' grids/c.yaml stores/camp.jsonl --set 'workloads=["1024/256"]' --set 'models=[a,b]'
"""


def _runs(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "runs.log"
    return [line.split("|")[:-1] for line in log.read_text().splitlines()] if log.exists() else []


def test_runs_the_steps_of_the_lent_card_in_order_with_the_time_left(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN)
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    runs = _runs(tmp_path)
    assert [r[0] for r in runs] == ["1", "2"] and "skip (NVIDIA H200 step" in out.stdout
    assert "malformed line" in out.stdout
    step1, step2 = runs
    assert step1[2] == "NVIDIA H100" and step1[4:] == ["grids/b.yaml", str(int(step1[1]) - 80), "stores/rep.jsonl"]
    assert 495 <= int(step1[1]) <= 500
    # quoted --set values arrive as single arguments, unchanged
    assert step2[4:] == ["grids/c.yaml", str(int(step2[1]) - 80), "stores/camp.jsonl", "--set",
                         'workloads=["1024/256"]', "--set", "models=[a,b]"]


def test_crlf_plan_files_and_the_exit_status(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN.replace("\n", "\r\n"))
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100", "RUNNER_RC": "3"}
    res = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True)
    runs = _runs(tmp_path)
    assert runs[1][-1] == "models=[a,b]"  # no carriage return left on the last argument
    assert res.returncode == 3  # the worst step's status


def test_the_self_check_runs_in_the_first_step_only_and_not_with_two_stores(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("'NVIDIA H100' grids/b.yaml stores/camp.jsonl\n'NVIDIA H100' grids/c.yaml stores/camp.jsonl\n")
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100", "SELFCHECK": "1"}
    subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    assert [r[3] for r in _runs(tmp_path)] == ["1", "0"]
    two = tmp_path / "two.txt"
    two.write_text(PLAN)
    res = subprocess.run(["bash", str(PLAN_SCRIPT), str(two)], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "more than 8 files" in res.stdout and len(_runs(tmp_path)) == 2


def test_stops_when_less_than_min_step_is_left(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN)
    env = _fake_env(tmp_path, "H100 80GB HBM3", runner_sleep_s=3) | {"DEADLINE_S": "104", "MIN_STEP_S": "102"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    assert [r[4] for r in _runs(tmp_path)] == ["grids/b.yaml"]  # the second step would have had ~101 s
    assert "below MIN_STEP_S=102: stop" in out.stdout


def test_a_card_without_steps_runs_nothing(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN)
    env = _fake_env(tmp_path, "A100-SXM4-40GB") | {"DEADLINE_S": "500"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    assert _runs(tmp_path) == [] and "plan: 0 step(s)" in out.stdout


@pytest.mark.parametrize("line", [ln for ln in (REPO / "measure" / "plans" / "next.txt").read_text().splitlines()
                                  if ln.strip() and not ln.startswith("#")])
def test_every_step_of_the_shipped_plan_expands_to_cells(line, tmp_path):
    """A typo in a step's grid, store or --set would cost a device call: dry-run each against the store. A
    store the repository does not hold yet (the device script starts it empty) must be the one its grid file
    names, so a misspelt store cannot start a new one unnoticed."""
    import json

    card, grid, store, *sets = shlex.split(line)
    assert card in ("NVIDIA H100 80GB HBM3", "NVIDIA H200")
    store_copy = tmp_path / "store.jsonl"
    if (REPO / store).exists():
        store_copy.write_bytes((REPO / store).read_bytes())
    else:
        assert (REPO / store).parent.is_dir() and store in (REPO / grid).read_text(), f"{store}: not in {grid}"
        store_copy.write_text("")
    res = subprocess.run([sys.executable, "-m", "measure.cli", "grid", str(REPO / grid), "--dry-run",
                          "--out", str(store_copy), *sets], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["cells"] > 0 and not summary["unsupported"], summary


def test_a_step_with_nothing_left_in_its_store_is_skipped(tmp_path):
    """H200 eager bf16 of Qwen2.5-7B is all in the H200 store: that step is skipped, the next one runs."""
    # the committed H200 store without its compiled records: the eager cells are all there, the compiled ones pending
    lines = (REPO / "datasets" / "measurements" / "h200" / "campaign.jsonl").read_text().splitlines(keepends=True)
    store = tmp_path / "h200-eager.jsonl"
    store.write_text("".join(ln for ln in lines if json.loads(ln)["engine"] != "hf-compiled"))
    plan = tmp_path / "plan.txt"
    plan.write_text(
        f"'NVIDIA H200' measure/grids/h200-campaign.yaml {store} "
        "--set 'engines=[hf-eager]' --set 'models=[qwen2.5-7b-instruct]' --set 'quants=[bf16]'\n"
        f"'NVIDIA H200' measure/grids/h200-campaign.yaml {store} "
        "--set 'engines=[hf-compiled]' --set 'models=[qwen2.5-7b-instruct]' --set 'quants=[bf16]'\n")
    env = _fake_env(tmp_path, "H200") | {"DEADLINE_S": "500", "MIN_STEP_S": "100"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True)
    runs = _runs(tmp_path)
    assert "nothing left of measure/grids/h200-campaign.yaml" in out.stdout
    assert len(runs) == 1 and "engines=[hf-compiled]" in runs[0]


def test_skip_stores_leaves_out_the_steps_whose_store_matches(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("'NVIDIA H100' grids/x.yaml stores/experiments/x.jsonl\n"
                    "'NVIDIA H100' grids/b.yaml stores/rep.jsonl\n"
                    "'NVIDIA H100' grids/c.yaml stores/camp.jsonl\n")
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100",
                                                   "SKIP_STORES": "experiments/ rep.jsonl"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    assert [r[4] for r in _runs(tmp_path)] == ["grids/c.yaml"]
    assert "stores/experiments/x.jsonl matches SKIP_STORES 'experiments/'" in out.stdout
    assert "stores/rep.jsonl matches SKIP_STORES 'rep.jsonl'" in out.stdout
