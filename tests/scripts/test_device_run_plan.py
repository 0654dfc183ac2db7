"""scripts/device_run_plan.sh: the steps of a plan for the lent card, in order, handed to one run of the runner
(which chains them per GPU) within the call's time; and every step of the shipped plan expands to cells."""

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


def _fake_env(tmp_path: Path, gpu_name: str, dry_run_sleep_s: float | None = None) -> dict[str, str]:
    """A PATH with an `nvidia-smi` that lists two GPUs of `gpu_name`, and a runner that logs its arguments, the
    environment the plan gives it and the steps file's lines. With `dry_run_sleep_s`, a `python3` on PATH that
    takes that long and fails, so each step's `--dry-run` count takes that long and gives nothing (the step runs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\necho "GPU 0: NVIDIA {gpu_name} (UUID: GPU-a)"\necho "GPU 1: NVIDIA {gpu_name} (UUID: GPU-b)"\n')
    smi.chmod(0o755)
    if dry_run_sleep_s is not None:
        py = bin_dir / "python3"
        py.write_text(f"#!/bin/sh\nsleep {dry_run_sleep_s}\nexit 1\n")
        py.chmod(0o755)
    runner = tmp_path / "runner.sh"
    log = tmp_path / "runs.log"
    runner.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s|" "$DEADLINE_S" "$EXPECT_GPU" "$SELFCHECK" "$@" >> {log}\necho >> {log}\n'
        f'[ "$1" = --steps ] && sed "s/^/  /" "$2" >> {log}\n'
        "exit ${RUNNER_RC:-0}\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RUN_MULTI": str(runner),
           "OUT": str(tmp_path / "out")}
    for var in ("MIN_STEP_S", "SELFCHECK", "SKIP_STORES", "RUNNER_RC"):
        env.pop(var, None)
    return env


PLAN = """# comment
'NVIDIA H200' grids/a.yaml stores/h200.jsonl --set 'engines=[hf-compiled]'

  # an indented comment, then a line too short to be a step, then a blank line of spaces
H100 grids/only-two.yaml
   \t
'NVIDIA H100' grids/b.yaml stores/rep.jsonl
'NVIDIA H100' grids/c.yaml stores/camp.jsonl --set 'workloads=["1024/256"]' --set 'models=[a,b]'
"""


def _runs(tmp_path: Path) -> list[dict]:
    """The runner's runs: DEADLINE_S, EXPECT_GPU, SELFCHECK, its arguments and the steps it was given."""
    log = tmp_path / "runs.log"
    runs: list[dict] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("  "):
            runs[-1]["steps"].append(shlex.split(line))
        else:
            deadline, expect, selfcheck, *args = line.split("|")[:-1]
            runs.append({"deadline": int(deadline), "expect": expect, "selfcheck": selfcheck, "args": args,
                         "steps": []})
    return runs


def test_hands_the_steps_of_the_lent_card_in_order_to_one_chained_run_with_the_time_left(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN)
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    (run,) = _runs(tmp_path)
    assert "skip (NVIDIA H200 step" in out.stdout and "malformed line" in out.stdout
    assert run["expect"] == "NVIDIA H100" and 495 <= run["deadline"] <= 500
    assert run["args"][0] == "--steps" and run["args"][2] == str(run["deadline"] - 80)
    # quoted --set values arrive as single arguments, unchanged
    assert run["steps"] == [["grids/b.yaml", "stores/rep.jsonl"],
                            ["grids/c.yaml", "stores/camp.jsonl", "--set", 'workloads=["1024/256"]', "--set",
                             "models=[a,b]"]]
    assert "plan: step 1: grids/b.yaml -> stores/rep.jsonl" in out.stdout
    assert "plan: step 2: grids/c.yaml -> stores/camp.jsonl" in out.stdout
    assert "plan: 2 step(s) with" in out.stdout and "chained per GPU" in out.stdout


def test_crlf_plan_files_and_the_exit_status(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN.replace("\n", "\r\n"))
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100", "RUNNER_RC": "3"}
    res = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True)
    (run,) = _runs(tmp_path)
    assert run["steps"][1][-1] == "models=[a,b]"  # no carriage return left on the last argument
    assert res.returncode == 3  # the runner's status


def test_the_self_check_runs_once_and_not_with_two_stores(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("'NVIDIA H100' grids/b.yaml stores/camp.jsonl\n'NVIDIA H100' grids/c.yaml stores/camp.jsonl\n")
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100", "SELFCHECK": "1"}
    subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    (run,) = _runs(tmp_path)  # one run, whose last GPU runs the self-check before its first step
    assert run["selfcheck"] == "1" and [s[0] for s in run["steps"]] == ["grids/b.yaml", "grids/c.yaml"]
    two = tmp_path / "two.txt"
    two.write_text(PLAN)
    res = subprocess.run(["bash", str(PLAN_SCRIPT), str(two)], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "more than 8 files" in res.stdout and len(_runs(tmp_path)) == 1


def test_no_step_is_selected_with_less_than_min_step_left(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN)
    # each step's dry-run count takes 3 s: the second step would have had ~101 s
    env = _fake_env(tmp_path, "H100 80GB HBM3", dry_run_sleep_s=3) | {"DEADLINE_S": "104", "MIN_STEP_S": "102"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    (run,) = _runs(tmp_path)
    assert [s[0] for s in run["steps"]] == ["grids/b.yaml"]
    assert "below MIN_STEP_S=102: stop" in out.stdout


def test_a_card_without_steps_runs_nothing(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text(PLAN)
    env = _fake_env(tmp_path, "A100-SXM4-40GB") | {"DEADLINE_S": "500"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    assert _runs(tmp_path) == [] and "plan: 0 step(s)" in out.stdout and out.returncode == 0


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
    (run,) = _runs(tmp_path)
    assert "nothing left of measure/grids/h200-campaign.yaml" in out.stdout
    assert len(run["steps"]) == 1 and "engines=[hf-compiled]" in run["steps"][0] and run["expect"] == "NVIDIA H200"


def test_skip_stores_leaves_out_the_steps_whose_store_matches(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("'NVIDIA H100' grids/x.yaml stores/experiments/x.jsonl\n"
                    "'NVIDIA H100' grids/b.yaml stores/rep.jsonl\n"
                    "'NVIDIA H100' grids/c.yaml stores/camp.jsonl\n")
    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100",
                                                   "SKIP_STORES": "experiments/ rep.jsonl"}
    out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], env=env, capture_output=True, text=True, check=True)
    (run,) = _runs(tmp_path)
    assert [s[0] for s in run["steps"]] == ["grids/c.yaml"]
    assert "stores/experiments/x.jsonl matches SKIP_STORES 'experiments/'" in out.stdout
    assert "stores/rep.jsonl matches SKIP_STORES 'rep.jsonl'" in out.stdout


def test_the_anchor_step_is_skipped_when_every_gpu_of_the_machine_has_its_cells(tmp_path):
    """The machine-anchors grid (`resume_per: gpu`) counts its cells per GPU of `nvidia-smi -L`: with both
    fake GPUs' anchors in the store the step is skipped; with one GPU's only, it runs."""
    from measure.grid import expand, load_grid

    grid = "measure/grids/machine-anchors.yaml"
    cells = {c.content_hash for c in expand(load_grid(REPO / grid))}
    rows = [json.loads(ln) for ln in (REPO / "datasets" / "measurements" / "h100" / "campaign.jsonl").read_text()
            .splitlines()]
    anchors = {r["cell_hash"]: r for r in rows if r["cell_hash"] in cells and r["status"] == "ok"}
    assert len(anchors) == 2

    def store_for(*uuids):
        store = tmp_path / f"anchors-{len(uuids)}.jsonl"
        store.write_text("".join(json.dumps(r | {"gpu_uuid": u, "record_id": f"{u}-{h}"}) + "\n"
                                 for u in uuids for h, r in anchors.items()))
        return store

    env = _fake_env(tmp_path, "H100 80GB HBM3") | {"DEADLINE_S": "500", "MIN_STEP_S": "100"}
    for uuids, runs in ((("GPU-a", "GPU-b"), 0), (("GPU-a",), 1)):
        plan = tmp_path / "plan.txt"
        plan.write_text(f"'NVIDIA H100' {grid} {store_for(*uuids)}\n")
        out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], cwd=REPO, env=env, capture_output=True,
                             text=True, check=True)
        assert len(_runs(tmp_path)) == runs, out.stdout
        assert ("nothing left of measure/grids/machine-anchors.yaml" in out.stdout) == (runs == 0)


def test_a_step_whose_cheapest_cell_does_not_fit_the_worker_budget_is_skipped(tmp_path):
    """s27-d: a call with a 163 s worker budget started no cell of its steps. The dry run's `first_cell_budget_s`
    (the least budget that starts a pending cell, from the store's records) decides it before the runner starts:
    compiled int8 weight-only at batch 32 (the H200's slow path, several minutes a cell) is skipped with 255 s left
    and handed to the runner with 900 s."""
    lines = (REPO / "datasets" / "measurements" / "h200" / "campaign.jsonl").read_text().splitlines(keepends=True)
    slow = [ln for ln in lines if (r := json.loads(ln))["engine"] == "hf-compiled"
            and r["quant"] == "torchao-int8-wo" and r["batch_size"] == 32]
    assert slow
    store = tmp_path / "h200.jsonl"  # the committed store without those cells: they are pending
    store.write_text("".join(ln for ln in lines if ln not in slow))
    plan = tmp_path / "plan.txt"
    plan.write_text(f"'NVIDIA H200' measure/grids/h200-campaign.yaml {store} --set 'engines=[hf-compiled]' "
                    "--set 'quants=[torchao-int8-wo]' --set 'batch_sizes=[32]' --set 'workloads=[\"256/128\"]'\n")
    for deadline, runs in (("255", 0), ("900", 1)):
        (tmp_path / deadline).mkdir()
        env = _fake_env(tmp_path / deadline, "H200") | {"DEADLINE_S": deadline, "MIN_STEP_S": "100"}
        out = subprocess.run(["bash", str(PLAN_SCRIPT), str(plan)], cwd=REPO, env=env, capture_output=True,
                             text=True, check=True)
        assert len(_runs(tmp_path / deadline)) == runs, out.stdout
        assert ("fits the" in out.stdout and "worker budget left (the cheapest needs" in out.stdout) == (runs == 0)
