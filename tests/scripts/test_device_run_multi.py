"""scripts/device_run_multi.sh with a fake `nvidia-smi` and a fake `python3` (no GPU): a second run in the
same device call (a plan step) resumes the store the first run left in $OUT instead of overwriting it with
the repository's copy, and grid.log collects both steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "device_run_multi.sh"

FAKE_PYTHON = r'''#!/usr/bin/env bash
# stands in for `python3 -m measure.cli {doctor,grid,merge}` and `python3 -m pip`
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then exit 0; fi
if [ "$2" = "measure.cli" ] && [ "$3" = "doctor" ]; then echo '{}'; exit 0; fi
if [ "$2" = "measure.cli" ] && [ "$3" = "merge" ]; then
  out=$4; shift 4
  cat "$out" "$@" | sort -u > "$out.tmp" && mv "$out.tmp" "$out"; exit 0
fi
if [ "$2" = "measure.cli" ] && [ "$3" = "grid" ]; then
  grid=$4; shift 4; out=""; owner=""
  while [ $# -gt 0 ]; do
    case "$1" in --out) out=$2; shift ;; --claim-owner) owner=$2; shift ;; esac; shift
  done
  echo "{\"record_id\": \"$(basename "$grid" .yaml)-$owner\", \"seen_before\": $(wc -l < "$out")}" >> "$out"
  echo "[1/1] $(basename "$grid" .yaml) ok 1.0 tok/s 1.0 J/tok"
  exit 0
fi
exit 9
'''


def test_a_second_step_resumes_the_store_of_the_first(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text('#!/bin/sh\necho "GPU 0: NVIDIA H100 (UUID: GPU-a)"\n'
                                        'echo "GPU 1: NVIDIA H100 (UUID: GPU-b)"\n')
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    work = tmp_path / "checkout"
    (work / "stores").mkdir(parents=True)
    (work / "stores" / "camp.jsonl").write_text('{"record_id": "old"}\n')
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
           "DEADLINE_S": "120", "MERGE_EVERY_S": "1000"}
    for step, grid in ((1, "first.yaml"), (2, "second.yaml")):
        res = subprocess.run(["bash", str(SCRIPT), grid, "60", "stores/camp.jsonl"], cwd=work,
                             env=env | {"PLAN_STEP": str(step)}, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
    ids = {json.loads(line)["record_id"] for line in (out / "camp.jsonl").read_text().splitlines()}
    assert ids == {"old", "first-gpu0", "first-gpu1", "second-gpu0", "second-gpu1"}
    # the second step's workers started from the first step's merged store (old + 2 records)
    second = [json.loads(line) for line in (out / "camp.jsonl").read_text().splitlines()
              if json.loads(line)["record_id"].startswith("second")]
    assert {r["seen_before"] for r in second} == {3}
    log = (out / "grid.log").read_text()
    assert "== plan step 1: first.yaml" in log and "== plan step 2: second.yaml" in log
    # each step's grid wall line comes back in grid.log too, after its step's lines (the store then held 3, then 5)
    walls = re.findall(r"grid wall \d+ s on 2 GPUs; records: (\d+)", log)
    assert walls == ["3", "5"] and log.index("records: 3") < log.index("== plan step 2")
    assert (work / "stores" / "camp.jsonl").read_text() == '{"record_id": "old"}\n'  # the repository copy untouched
