"""scripts/device_call_collect.py: a device call's returned stores replace the repository's, its set-up files
and the tool's reply land in the call's raw folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
collect_mod = load_script(REPO / "scripts" / "device_call_collect.py")

OUTPUT = ("plan: step 1 with 549 s left: ...\ngpu0 [1/115] a ok\ngrid wall 139 s on 2 GPUs; records: 222\n"
          "plan: step 1 exit 0\nplan: step 2 with 400 s left\ngrid wall 369 s on 2 GPUs; records: 231\n")


def _store(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"record_id": i}) + "\n" for i in range(n)), encoding="utf-8")
    return path


@pytest.fixture
def call(tmp_path):
    meas = tmp_path / "measurements"
    _store(meas / "h100" / "campaign.jsonl", 5)
    _store(meas / "h200" / "campaign.jsonl", 2)
    _store(meas / "h200" / "rejected" / "campaign.jsonl", 1)  # never a target
    back = tmp_path / "device" / "2"
    _store(back / "campaign.jsonl", 4)
    for name, text in (("doctor.json", "{}"), ("grid.log", "log\n"), ("host.txt", "32\n")):
        (back / name).write_text(text, encoding="utf-8")
    reply = {"rc": 0, "wall_s": 445.2, "warm": False, "device": "2 NVIDIA H200 GPUs of one host",
             "output_tail": OUTPUT, "files": [str(back / n) for n in ("campaign.jsonl", "doctor.json", "grid.log",
                                                                       "host.txt")],
             "files_left_out": ["pip-versions.txt (count)"],
             "lease": {"held_s": 486.5, "budget_left_s": 1313, "warm": True}}
    return meas, back, reply


def test_the_returned_store_replaces_the_named_one_and_the_reply_is_filed(call, tmp_path):
    meas, back, reply = call
    raw = tmp_path / "raw" / "2026-11-27-s11-a"
    done = collect_mod.collect(reply, raw, kind="nvidia-h200-x2", needs_h200=True, command="DEADLINE_S=550 bash x",
                               timeout_s=600, session="s11", stores=["h200/campaign.jsonl"], measurements=meas)
    assert done["stores"] == [(str(meas / "h200" / "campaign.jsonl"), 2, 4)]
    assert (meas / "h200" / "campaign.jsonl").read_text() == (back / "campaign.jsonl").read_text()
    assert len((meas / "h100" / "campaign.jsonl").read_text().splitlines()) == 5  # the other card's untouched
    assert sorted(p.name for p in raw.iterdir()) == ["device-call.json", "doctor.json", "grid.log", "host.txt"]
    rec = json.loads((raw / "device-call.json").read_text())
    assert rec["grid_wall_s_per_step"] == [139, 369] and rec["grid_wall_s"] == 369
    assert (rec["rc"], rec["wall_s"], rec["warm"], rec["lease_held_s"], rec["lease_budget_left_s"]) == (
        0, 445.2, False, 486.5, 1313)
    assert rec["kind_asked"] == "nvidia-h200-x2" and rec["needs_h200"] is True and rec["timeout_s"] == 600
    assert rec["command"] == "DEADLINE_S=550 bash x" and "session s11" in rec["source"]
    assert rec["files_left_out"] == ["pip-versions.txt (count)"]  # what did not come back is on file


def test_an_ambiguous_store_name_or_a_shorter_store_is_refused_before_anything_is_written(call, tmp_path):
    meas, back, reply = call
    raw = tmp_path / "raw" / "x"
    with pytest.raises(SystemExit, match="2 stores named campaign.jsonl"):  # h100 and h200, not rejected/
        collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600, measurements=meas)
    _store(back / "campaign.jsonl", 1)  # the call returned fewer records than the repository holds
    with pytest.raises(SystemExit, match="fewer than the 2"):
        collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                            stores=["h200/campaign.jsonl"], measurements=meas)
    assert not raw.exists() and len((meas / "h200" / "campaign.jsonl").read_text().splitlines()) == 2


def test_a_store_without_the_repositorys_records_is_refused_however_long(call, tmp_path):
    meas, back, reply = call
    # the call ran on a tree without the repository's last two records: as many records and more, not those
    back_store = back / "campaign.jsonl"
    back_store.write_text("".join(json.dumps({"record_id": f"other-{i}"}) + "\n" for i in range(4)), encoding="utf-8")
    raw = tmp_path / "raw" / "z"
    with pytest.raises(SystemExit, match=r"lacks 2 of the 2 records .* measure.cli merge"):
        collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                            stores=["h200/campaign.jsonl"], measurements=meas)
    assert not raw.exists() and len((meas / "h200" / "campaign.jsonl").read_text().splitlines()) == 2
    # one of them kept, in another place: still refused; both kept, in any order: filed
    back_store.write_text("".join(json.dumps({"record_id": r}) + "\n" for r in ("other", 1)), encoding="utf-8")
    with pytest.raises(SystemExit, match="lacks 1 of the 2"):
        collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                            stores=["h200/campaign.jsonl"], measurements=meas)
    back_store.write_text("".join(json.dumps({"record_id": r}) + "\n" for r in (1, 0, "new")), encoding="utf-8")
    done = collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                               stores=["h200/campaign.jsonl"], measurements=meas)
    assert done["stores"][0][1:] == (2, 3)


def test_the_command_line_reads_a_saved_reply(call, tmp_path, monkeypatch, capsys):
    meas, _, reply = call
    monkeypatch.setattr(collect_mod, "MEASUREMENTS", meas)
    (tmp_path / "reply.json").write_text(json.dumps({**reply, "output_tail": "no grid ran"}), encoding="utf-8")
    raw = tmp_path / "raw" / "y"
    assert collect_mod.main([str(tmp_path / "reply.json"), "--raw-dir", str(raw), "--kind", "nvidia-h100-x1",
                             "--command", "c", "--store", "h200/campaign.jsonl"]) == 0
    rec = json.loads((raw / "device-call.json").read_text())
    assert rec["grid_wall_s"] is None and rec["grid_wall_s_per_step"] == [] and rec["needs_h200"] is False
    assert rec["grid_wall_source"] is None  # neither the output nor the returned grid.log has a grid wall line
    assert "2 -> 4 records" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("the tool said: busy", encoding="utf-8")
    with pytest.raises(SystemExit, match="not JSON"):
        collect_mod.main([str(tmp_path / "bad.json"), "--raw-dir", str(raw), "--kind", "k", "--command", "c"])


def test_grid_walls_come_from_the_returned_grid_log_where_the_reply_has_none(call, tmp_path):
    meas, back, reply = call
    (back / "grid.log").write_text("gpu0 [1/75] a ok\ngrid wall 396 s on 4 GPUs; records: 310\n"
                                   "== plan step 2\ngrid wall 57 s on 4 GPUs; records: 314\n", encoding="utf-8")
    raw = tmp_path / "raw" / "z"
    collect_mod.collect({**reply, "output_tail": "plan: 2 step(s) in 463 s"}, raw, kind="k", needs_h200=False,
                        command="c", timeout_s=600, stores=["h200/campaign.jsonl"], measurements=meas)
    rec = json.loads((raw / "device-call.json").read_text())
    assert rec["grid_wall_s_per_step"] == [396, 57] and rec["grid_wall_s"] == 57
    assert rec["grid_wall_source"] == "grid.log"
    # a tail cut before the first step's line: grid.log holds both steps and wins
    collect_mod.collect({**reply, "output_tail": "grid wall 57 s on 4 GPUs; records: 314\n"}, raw, kind="k",
                        needs_h200=False, command="c", timeout_s=600, stores=["h200/campaign.jsonl"],
                        measurements=meas)
    rec = json.loads((raw / "device-call.json").read_text())
    assert rec["grid_wall_s_per_step"] == [396, 57] and rec["grid_wall_source"] == "grid.log"
    # the reply's lines win where they are more (a grid.log of a call before the change holds none of them)
    (back / "grid.log").write_text("gpu0 [1/75] a ok\ngrid wall 396 s on 4 GPUs; records: 310\n", encoding="utf-8")
    collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                        stores=["h200/campaign.jsonl"], measurements=meas)
    rec = json.loads((raw / "device-call.json").read_text())
    assert rec["grid_wall_s_per_step"] == [139, 369] and rec["grid_wall_source"] == "output_tail"


def test_the_idle_gpu_time_of_a_chained_run_is_filed_from_the_output_or_grid_log(call, tmp_path):
    meas, back, reply = call
    line = "workers done after: gpu0 343 s, gpu1 405 s (idle 62 of 810 GPU-s before the last one ended)\n"
    raw = tmp_path / "raw" / "idle"
    collect_mod.collect({**reply, "output_tail": OUTPUT + line}, raw, kind="k", needs_h200=False, command="c",
                        timeout_s=600, stores=["h200/campaign.jsonl"], measurements=meas)
    assert json.loads((raw / "device-call.json").read_text())["idle_gpu_s"] == [[62, 810]]
    (back / "grid.log").write_text(line + "grid wall 405 s on 2 GPUs; records: 9\n", encoding="utf-8")
    collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                        stores=["h200/campaign.jsonl"], measurements=meas)  # the reply's tail lacks it
    assert json.loads((raw / "device-call.json").read_text())["idle_gpu_s"] == [[62, 810]]
    (back / "grid.log").write_text("log\n", encoding="utf-8")
    collect_mod.collect(reply, raw, kind="k", needs_h200=False, command="c", timeout_s=600,
                        stores=["h200/campaign.jsonl"], measurements=meas)
    assert json.loads((raw / "device-call.json").read_text())["idle_gpu_s"] == []  # a run before chaining
