"""Ray executor on a local CPU-only Ray: one store written by the driver, pinning, resume, worker death."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from measure.cell import Cell
from measure.executor import failed_record
from measure.grid import GridSpec
from measure.record import Record
from measure.store import Store

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
NAMES = {None: "cpu-fake", "h100-sxm": "NVIDIA H100 80GB HBM3", "a100-sxm4-80gb": "NVIDIA A100-SXM4-80GB"}


class FakeRunner:
    """Module level so Ray can pickle it. Records which actor ran the cell (gpu_index = slot) and
    whether it had to load the model (load_time_s > 0 when the group changed)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.device_name = NAMES[ctx.gpu_id]
        self.last_group = None

    def run(self, cell: Cell) -> Record:
        if cell.model == "die":
            os._exit(1)  # the actor process crashes (segfault, OOM kill)
        if cell.model == "boom":
            raise RuntimeError("kernel exploded")
        if cell.model == "oom":
            return failed_record(cell, "OOM: CUDA out of memory")
        new = cell.group_key != self.last_group
        self.last_group = cell.group_key
        time.sleep(0.02)
        return Record(cell_hash=cell.content_hash, model=cell.model, quant=cell.quant, engine=cell.engine,
                      batch_size=cell.batch_size, prompt_tokens=cell.prompt_tokens,
                      output_tokens=cell.output_tokens, tokens_per_s=10.0, decode_energy_per_token_j=0.1,
                      energy_total_j=1.0, duration_s=0.01, gpu_index=self.ctx.slot,
                      load_time_s=0.5 if new else 0.0)

    def close(self) -> None:
        pass


def factory(ctx):
    return FakeRunner(ctx)


@pytest.fixture(scope="module")
def local_ray():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *([old] if old else [])])
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, resources={"h100-sxm": 1, "a100-sxm4-80gb": 1},
             log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def spec() -> GridSpec:
    return GridSpec.from_dict({"name": "ray", "models": ["x"], "quants": ["fp32"], "engines": ["hf-eager"],
                               "batch_sizes": [1], "workloads": ["16/8"], "cooldown": "none"},
                              source="grids/ray.yaml")


def cells(models=("m0", "m1", "m2"), batches=(1, 2, 4, 8), gpu=None) -> list[Cell]:
    return [Cell(model=m, quant="fp32", engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8, gpu=gpu)
            for m in models for b in batches]


def lines(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(x) for x in raw.splitlines()]


def test_cpu_workers_one_store_resume_and_failures(local_ray, tmp_path):
    from measure.distributed import run_grid_ray

    grid = cells() + cells(models=("boom", "oom"), batches=(1,))
    path = tmp_path / "ray.jsonl"
    s = run_grid_ray(spec(), path, runner_factory=factory, num_gpus_per_cell=0, num_workers=2, cells=grid,
                     progress=False)
    assert (s.total, s.ran, s.ok, s.failed, s.remaining) == (14, 14, 12, 2, 0) and s.complete
    rows = lines(path)
    assert sorted(r["cell_hash"] for r in rows) == sorted(c.content_hash for c in grid)
    assert {r["gpu_name"] for r in rows} == {"cpu-fake"} and {r["grid_file"] for r in rows} == {"grids/ray.yaml"}
    by_model = {r["model"]: r for r in rows}
    assert "RuntimeError: kernel exploded" in by_model["boom"]["error"]
    assert by_model["oom"]["error"] == "OOM: CUDA out of memory"
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["gpu_index"] for r in ok} == {0, 1}  # both actors worked
    # groups stay on one actor: each of the 3 model groups is loaded about once (a steal may add one)
    assert 3 <= sum(1 for r in ok if r["load_time_s"] > 0) <= 5
    for m in ("m0", "m1", "m2"):
        mine = [r for r in ok if r["model"] == m]
        assert len(mine) == 4
    assert s.device_name == "cpu-fake"

    again = run_grid_ray(spec(), path, runner_factory=factory, num_gpus_per_cell=0, num_workers=2, cells=grid,
                         progress=False)
    assert (again.ran, again.already_done) == (0, 14)
    retry = run_grid_ray(spec(), path, runner_factory=factory, num_gpus_per_cell=0, num_workers=1, cells=grid,
                         progress=False, retry_failed=True)
    assert (retry.ran, retry.failed) == (2, 2)
    assert len(Store(path).records()) == 16


def test_pinned_cells_go_to_matching_actors_and_stop_after(local_ray, tmp_path):
    from measure.distributed import run_grid_ray

    grid = (cells(models=("h",), batches=(1, 2, 4), gpu="h100-sxm")
            + cells(models=("a",), batches=(1, 2, 4), gpu="a100-sxm4-80gb")
            + cells(models=("any",), batches=(1, 2)))
    path = tmp_path / "het.jsonl"
    # no num_workers: one actor per unit of the custom resources h100-sxm and a100-sxm4-80gb
    s = run_grid_ray(spec(), path, runner_factory=factory, num_gpus_per_cell=0, cells=grid, progress=False,
                     stop_after=3)
    assert (s.ran, s.stopped, s.remaining) == (3, "stop_after", 5)
    s2 = run_grid_ray(spec(), path, runner_factory=factory, num_gpus_per_cell=0, cells=grid, progress=False)
    assert (s2.ran, s2.already_done, s2.remaining) == (5, 3, 0)
    rows = lines(path)
    assert len(rows) == 8 == len({r["cell_hash"] for r in rows})
    for r in rows:
        if r["model"] == "h":
            assert r["gpu_name"] == NAMES["h100-sxm"]
        elif r["model"] == "a":
            assert r["gpu_name"] == NAMES["a100-sxm4-80gb"]
        else:
            assert r["gpu_name"] in (NAMES["h100-sxm"], NAMES["a100-sxm4-80gb"])
    assert set(s2.device_name.split(", ")) == {NAMES["h100-sxm"], NAMES["a100-sxm4-80gb"]}


def test_a_crashed_worker_is_recorded_and_replaced(local_ray, tmp_path):
    from measure.distributed import run_grid_ray

    grid = cells(models=("m0",), batches=(1, 2)) + cells(models=("die",), batches=(1,)) \
        + cells(models=("m1",), batches=(1, 2))
    path = tmp_path / "crash.jsonl"
    s = run_grid_ray(spec(), path, runner_factory=factory, num_gpus_per_cell=0, num_workers=1, cells=grid,
                     progress=False, max_restarts=1)
    assert (s.ran, s.ok, s.failed) == (5, 4, 1)
    died = [r for r in lines(path) if r["model"] == "die"][0]
    assert died["status"] == "failed" and "worker failed" in died["error"]


def test_plan_slots_from_cluster_resources(monkeypatch):
    from measure import distributed

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64, "GPU": 8, "h100-sxm": 4})
    monkeypatch.setattr(ray, "nodes", lambda: [
        {"Alive": True, "Resources": {"GPU": 4, "accelerator_type:A100": 1}},
        {"Alive": True, "Resources": {"GPU": 4, "h100-sxm": 4}},
        {"Alive": False, "Resources": {"GPU": 8, "accelerator_type:A100": 1}}])
    kw = {"num_workers": None, "num_cpus_per_cell": 1}
    plan = distributed._plan_slots({"h100-sxm", "a100"}, True, num_gpus_per_cell=1,
                                   accelerator_types={"a100": "A100"}, **kw)
    assert plan.count("a100") == 4 and plan.count("h100-sxm") == 4 and plan.count(None) == 0
    assert distributed._plan_slots(set(), True, num_gpus_per_cell=2, accelerator_types={}, **kw) == [None] * 4
    assert distributed._plan_slots(set(), True, num_gpus_per_cell=0, accelerator_types={},
                                   num_workers=None, num_cpus_per_cell=16) == [None] * 4
    assert distributed._plan_slots({"h100-sxm"}, True, num_gpus_per_cell=1, accelerator_types={},
                                   num_workers={"h100-sxm": 2, None: 1}, num_cpus_per_cell=1) \
        == ["h100-sxm", "h100-sxm", None]
    with pytest.raises(ValueError, match="mapping"):
        distributed._plan_slots({"h100-sxm"}, False, num_gpus_per_cell=1, accelerator_types={}, num_workers=2,
                                num_cpus_per_cell=1)
    assert distributed._cap_plan([None] * 8, cells(models=("m",), batches=(1, 2))) == [None, None]


def test_resume_per_gpu_is_refused_on_ray_with_a_suggestion(tmp_path):
    from measure.distributed import run_grid_ray
    from measure.grid import GridError

    with pytest.raises(GridError, match="one `measure grid` process per GPU"):
        run_grid_ray(spec().override(resume_per="gpu"), tmp_path / "s.jsonl", runner_factory=lambda ctx: None,
                     num_gpus_per_cell=0)
