"""measure/worker_processes.py: worker processes rebuilt from records' GPU, command and time."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from measure.record import Record
from measure.worker_processes import session_starts, worker_processes

T0 = datetime.fromisoformat("2026-11-27T08:00:00+00:00")


def _rec(name, minute, *, gpu="GPU-a", command="c1"):
    return {"record_id": name, "gpu_uuid": gpu, "command": command,
            "created_at": (T0 + timedelta(minutes=minute)).isoformat()}


def _ids(processes):
    return [[r["record_id"] if isinstance(r, dict) else r.record_id for r in p] for p in processes]


def test_records_of_one_gpu_and_command_come_in_time_order():
    rs = [_rec("late", 5), _rec("early", 1), _rec("mid", 3)]
    assert _ids(worker_processes(rs, 900)) == [["early", "mid", "late"]]


def test_two_commands_or_two_gpus_are_two_processes():
    rs = [_rec("a1", 0), _rec("b1", 1, command="c2"), _rec("g1", 2, gpu="GPU-b"), _rec("a2", 3)]
    assert _ids(worker_processes(rs, 900)) == [["a1", "a2"], ["b1"], ["g1"]]


def test_a_gap_longer_than_gap_s_starts_another_process():
    rs = [_rec("1", 0), _rec("2", 15), _rec("3", 31)]  # 15 min: the same call; 16 min: another
    assert _ids(worker_processes(rs, 900)) == [["1", "2"], ["3"]]


def test_records_without_gpu_or_time_are_left_out():
    no_gpu, no_time = _rec("no-gpu", 1, gpu=None), _rec("no-time", 2)
    no_time["created_at"] = None
    assert _ids(worker_processes([_rec("1", 0), no_gpu, no_time], 900)) == [["1"]]


@pytest.mark.parametrize("make", [
    lambda d: Record(cell_hash="h", model="m", quant="bf16", engine="hf-eager", batch_size=1, prompt_tokens=8,
                     output_tokens=8, record_id=d["record_id"], gpu_uuid=d["gpu_uuid"], command=d["command"],
                     created_at=d["created_at"]),
    lambda d: SimpleNamespace(**d),
], ids=["Record", "object"])
def test_objects_are_read_by_attribute(make):
    rs = [make(_rec("2", 3)), make(_rec("1", 0)), make(_rec("3", 40))]
    assert _ids(worker_processes(rs, 900)) == [["1", "2"], ["3"]]


def test_session_split_bridges_one_gpus_gap_with_another_gpus_records():
    # GPU-a idles 20 min while GPU-b works: one session (no 10-min gap among all records), two processes by GPU
    rs = [_rec("a1", 0), _rec("b1", 5, gpu="GPU-b"), _rec("b2", 14, gpu="GPU-b"), _rec("a2", 20)]
    assert _ids(worker_processes(rs, 600)) == [["a1"], ["a2"], ["b1", "b2"]]
    assert _ids(worker_processes(rs, 600, split="session")) == [["a1", "a2"], ["b1", "b2"]]


def test_a_session_gap_splits_a_process_and_gpu_less_records_still_bridge_it():
    rs = [_rec("1", 0), _rec("2", 40)]
    assert _ids(worker_processes(rs, 1800, split="session")) == [["1"], ["2"]]
    bridge = _rec("x", 20, gpu=None)
    assert _ids(worker_processes([*rs, bridge], 1800, split="session")) == [["1", "2"]]


def test_session_starts_maps_each_dated_record_to_its_sessions_first_time():
    rs = [_rec("1", 0), _rec("2", 10, gpu=None), _rec("3", 50), _rec("4", 55)]
    no_time = _rec("5", 0)
    no_time["created_at"] = None
    starts = session_starts([*rs, no_time], 1800)
    assert [starts[id(r)] - starts[id(rs[0])] for r in rs] == [0, 0, 50 * 60, 50 * 60]
    assert id(no_time) not in starts
