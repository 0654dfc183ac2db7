"""datasets/measurements/tools/split_inductor_leak.py: which records ran under a torchao cell's leaked
inductor settings, and the shipped stores hold none of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.scripts import load_script

MEAS = Path(__file__).resolve().parents[2] / "datasets" / "measurements"


def _tool():
    return load_script(MEAS / "tools" / "split_inductor_leak.py")


def _rec(i, quant, engine="hf-compiled", *, minute, gpu="GPU-a", command="c1", status="ok", params=None):
    return {"record_id": str(i), "gpu_uuid": gpu, "command": command, "quant": quant, "engine": engine,
            "status": status, "created_at": f"2026-11-27T08:{minute:02d}:00+00:00", "engine_params": params or {}}


def test_leaked_records_follow_a_torchao_cell_in_their_process():
    rs = [_rec(1, "bf16", minute=0),                                  # before any torchao cell
          _rec(2, "torchao-int4-wo", "hf-eager", minute=1),           # eager: quantize_ ran all the same
          _rec(3, "fp16", minute=2),                                  # leaked
          _rec(4, "torchao-fp8", minute=3),                           # torchao itself: its own setting
          _rec(5, "bnb-nf4", "hf-eager", minute=4),                   # eager: no compile
          _rec(6, "bf16", minute=5, status="skipped"),                # no compile
          _rec(7, "bf16", minute=6, params={"inductor_overrides": {}}),  # a runner that restores the config
          _rec(8, "bf16", minute=7, gpu="GPU-b"),                     # another GPU: another process
          _rec(9, "bf16", minute=8, command="c2"),                    # another command: another process
          _rec(10, "bf16", minute=40)]                                # 32 minutes later: another call
    assert [r["record_id"] for r in _tool().leaked(rs)] == ["3"]


def test_a_torchao_skip_after_the_load_counts_and_one_before_it_does_not():
    before_load = _rec(1, "torchao-int8-dyn", minute=0, status="skipped")
    before_load["error"] = "torchao-int8-dyn on hf-compiled needs batch size >= 17"
    after_load = _rec(3, "torchao-int4-wo", minute=2, status="skipped")
    after_load["error"] = "prompt+output 1280 > the model's 1024 positions"
    rs = [before_load, _rec(2, "bf16", minute=1), after_load, _rec(4, "bf16", minute=3)]
    assert [r["record_id"] for r in _tool().leaked(rs)] == ["4"]


def test_the_shipped_stores_hold_no_leaked_record_and_the_rejected_file_holds_them():
    tool = _tool()
    stores = [json.loads(ln) for p in tool.STORES for ln in p.read_text().splitlines() if ln.strip()]
    assert tool.leaked(stores) == []
    rejected = [json.loads(ln) for ln in tool.REJECTED.read_text().splitlines() if ln.strip()]
    assert len(rejected) == 7 and all(r["engine"] == "hf-compiled" for r in rejected)
    assert len(tool.leaked(stores + rejected)) == 7  # put back, every one of them is found again


def test_the_dry_run_runs_as_a_plain_script_from_outside_the_repo(tmp_path):
    script = MEAS / "tools" / "split_inductor_leak.py"
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 record(s) ran after a torchao cell in their process"
