"""`measure` CLI: a grid split between two processes by a claim directory, then merged."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from measure.cli import cli
from measure.store import Store

GRID = "measure/grids/smoke-cpu.yaml"


def test_grid_shared_by_claim_dir_then_merge(tmp_path):
    claims, a, b, merged = tmp_path / "claims", tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "all.jsonl"
    common = ["grid", GRID, "--device", "cpu", "--meter", "fake", "--no-progress", "--claim-dir", str(claims)]
    # the first process stops after one cell: it owns the fp32 block, the second must leave that block alone
    r1 = CliRunner().invoke(cli, [*common, "--out", str(a), "--claim-owner", "gpu0", "--stop-after", "1"])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(cli, [*common, "--out", str(b), "--claim-owner", "gpu1"])
    assert r2.exit_code == 0, r2.output
    assert "2 left to other processes" in r2.output
    # restarted with the same owner, the first worker finishes the block it took
    r3 = CliRunner().invoke(cli, [*common, "--out", str(a), "--claim-owner", "gpu0"])
    assert r3.exit_code == 0, r3.output
    quants = {p: sorted((r.quant, r.batch_size) for r in Store(p).records()) for p in (a, b)}
    assert quants[a] == [("fp32", 1), ("fp32", 2)] and quants[b] == [("bf16", 1), ("bf16", 2)]

    m = CliRunner().invoke(cli, ["merge", str(merged), str(a), str(b)])
    assert m.exit_code == 0 and "4 record(s) added" in m.output
    again = CliRunner().invoke(cli, ["merge", str(merged), str(a), str(b)])
    assert "0 record(s) added" in again.output
    assert len(Store(merged).records()) == 4


def test_merge_refuses_an_invalid_source_with_a_message(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"cell_hash": "x", "model": "tiny-test"}) + "\n")
    res = CliRunner().invoke(cli, ["merge", str(tmp_path / "t.jsonl"), str(bad)], standalone_mode=False)
    assert res.exit_code != 0
    assert "nothing was merged" in str(res.exception) or "nothing was merged" in res.output
    assert not (tmp_path / "t.jsonl").exists() or (tmp_path / "t.jsonl").read_text() == ""


def test_grid_dry_run_counts_the_cells_left_in_the_store(tmp_path):
    """`--dry-run` with an existing --out reports `pending_in_out`: cells without a finished record there."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    store = tmp_path / "h200.jsonl"
    # the committed H200 store without its compiled records, so the compiled cells are pending whatever lands later
    lines = (repo / "datasets" / "measurements" / "h200" / "campaign.jsonl").read_text().splitlines(keepends=True)
    store.write_text("".join(ln for ln in lines if json.loads(ln)["engine"] != "hf-compiled"))
    grid = str(repo / "measure" / "grids" / "h200-campaign.yaml")
    sel = ["--set", "models=[qwen2.5-7b-instruct]", "--set", "quants=[bf16]"]

    def report(*more):
        res = CliRunner().invoke(cli, ["grid", grid, "--dry-run", *more])
        assert res.exit_code == 0, res.output
        return json.loads(res.output[res.output.index("{"):])

    eager = report("--out", str(store), *sel, "--set", "engines=[hf-eager]")
    assert eager["cells"] == 3 and eager["pending_in_out"] == 0  # batch 1/8/32, all measured on the H200
    compiled = report("--out", str(store), *sel, "--set", "engines=[hf-compiled]")
    assert compiled["pending_in_out"] == compiled["cells"] == 3
    assert "pending_in_out" not in report("--out", str(tmp_path / "new.jsonl"), *sel)
    # and the least time budget that would start one of the pending cells (none pending: None)
    from measure.executor import BUDGET_SAFETY, _Estimator, engine_bases
    from measure.grid import expand, load_grid
    from measure.record import Record

    recs = [Record.from_dict(json.loads(ln)) for ln in store.read_text().splitlines()]
    cells = expand(load_grid(grid, [*sel[1::2], "engines=[hf-compiled]"]))
    est = _Estimator(recs, engine_bases())
    want = min(est.estimate_cell(c, True) for c in cells) * BUDGET_SAFETY
    assert compiled["first_cell_budget_s"] == pytest.approx(want, abs=0.05) and want > 0
    assert eager["first_cell_budget_s"] is None


def test_grid_dry_run_counts_cells_per_gpu_for_a_resume_per_gpu_grid(tmp_path):
    """A `resume_per: gpu` grid's cells are pending for every GPU (`--gpu-uuid`) that has not recorded them."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    grid = str(repo / "measure" / "grids" / "machine-anchors.yaml")
    campaign = (repo / "datasets" / "measurements" / "h100" / "campaign.jsonl").read_text().splitlines()
    anchors = [json.loads(ln) for ln in campaign]
    from measure.grid import expand, load_grid

    cells = {c.content_hash for c in expand(load_grid(grid))}
    # the campaign's records of the two anchor cells, all made on one GPU
    mine = [r for r in anchors if r["cell_hash"] in cells and r["status"] == "ok"]
    uuid = mine[0]["gpu_uuid"]
    store = tmp_path / "anchors.jsonl"
    store.write_text("".join(json.dumps(r) + "\n" for r in mine if r["gpu_uuid"] == uuid))
    done_here = {r["cell_hash"] for r in mine if r["gpu_uuid"] == uuid}

    def pending(*uuids):
        args = ["grid", grid, "--dry-run", "--out", str(store)] + [a for u in uuids for a in ("--gpu-uuid", u)]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        return json.loads(res.output[res.output.index("{"):])["pending_in_out"]

    assert pending(uuid) == 2 - len(done_here)
    assert pending(uuid, "GPU-new") == 2 - len(done_here) + 2
    assert pending() == 2  # no GPU named: what a GPU that has recorded nothing would run


def test_record_failed_marks_one_pending_cell_with_its_reason_and_grid_then_passes_over_it(tmp_path):
    """`measure record-failed`: the selection's one pending cell gets a failed record (reason, command, GPU name as
    the resume key, the grid file), which validates; the cell is then no longer pending, and a selection leaving
    more than --max-cells cells pending, or none, is refused without writing."""
    store = tmp_path / "s.jsonl"
    base = ["record-failed", GRID, "--out", str(store), "--gpu-name", "NVIDIA H200"]
    reason = "ran past 560 s in two calls without a record (s21-c, s22-b)"
    wide = CliRunner().invoke(cli, [*base, "--reason", reason, "--set", "quants=[bf16]"])
    assert wide.exit_code != 0 and "2 cells pending" in wide.output and not store.exists()
    one = ["--set", "quants=[bf16]", "--set", "batch_sizes=[2]"]
    res = CliRunner().invoke(cli, [*base, "--reason", reason, *one])
    assert res.exit_code == 0, res.output
    (rec,) = list(Store(store).iter_records())
    rec.validate()
    assert (rec.status, rec.error, rec.gpu_name, rec.quant, rec.batch_size) == ("failed", reason, "NVIDIA H200",
                                                                                 "bf16", 2)
    assert rec.command.startswith("measure record-failed") and rec.grid_file == GRID and rec.gpu_id == "h200"
    again = CliRunner().invoke(cli, [*base, "--reason", reason, *one])
    assert again.exit_code != 0 and "no cell of this selection is pending" in again.output
    assert len(list(Store(store).iter_records())) == 1
    dry = CliRunner().invoke(cli, ["grid", GRID, "--dry-run", "--out", str(store), *one])
    assert json.loads(dry.output[dry.output.index("{"):])["pending_in_out"] == 0
    retry = CliRunner().invoke(cli, ["grid", GRID, "--dry-run", "--out", str(store), "--retry-failed", *one])
    assert json.loads(retry.output[retry.output.index("{"):])["pending_in_out"] == 1


def test_record_failed_on_a_resume_per_gpu_grid_needs_and_records_the_gpu(tmp_path):
    """For a `resume_per: gpu` grid (the machine anchors) a cell is pending per GPU: record-failed refuses without
    --gpu-uuid, marks the cell for that GPU only (the record carries the UUID), and another GPU still has it
    pending."""
    from pathlib import Path

    from measure.grid import expand, load_grid

    grid = str(Path(__file__).resolve().parents[2] / "measure" / "grids" / "machine-anchors.yaml")
    one = ["--set", "batch_sizes=[1]"]
    assert len(expand(load_grid(grid, ["batch_sizes=[1]"]))) == 1
    store = tmp_path / "anchors.jsonl"
    base = ["record-failed", grid, "--out", str(store), "--gpu-name", "NVIDIA H200", "--reason", "killed at 600 s", *one]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code != 0 and "--gpu-uuid" in refused.output and not store.exists()
    res = CliRunner().invoke(cli, [*base, "--gpu-uuid", "GPU-a"])
    assert res.exit_code == 0, res.output
    (rec,) = list(Store(store).iter_records())
    rec.validate()
    assert (rec.status, rec.gpu_uuid) == ("failed", "GPU-a") and "--gpu-uuid GPU-a" in rec.command
    again = CliRunner().invoke(cli, [*base, "--gpu-uuid", "GPU-a"])
    assert again.exit_code != 0 and "no cell of this selection is pending" in again.output
    other = CliRunner().invoke(cli, [*base, "--gpu-uuid", "GPU-b"])  # another GPU of the card: still pending there
    assert other.exit_code == 0, other.output
    assert [r.gpu_uuid for r in Store(store).iter_records()] == ["GPU-a", "GPU-b"]

    def pending(*uuids):
        args = ["grid", grid, "--dry-run", "--out", str(store), *one] + [a for u in uuids for a in ("--gpu-uuid", u)]
        out = CliRunner().invoke(cli, args).output
        return json.loads(out[out.index("{"):])["pending_in_out"]

    assert (pending("GPU-a"), pending("GPU-b"), pending("GPU-c")) == (0, 0, 1)
