"""Run a grid over a Ray cluster: one actor per GPU, results appended by the driver into ONE store.

    summary = run_grid_ray(spec, "datasets/measurements/cluster.jsonl", address="auto",
                           runner_factory=my_factory)

Each actor holds one `CellRunner` for its whole life (so the runner's model cache works) and is fed cells
by the driver one at a time, a model group (`Cell.group_key`) at a time; when the queue runs dry an idle
actor takes the back half of the busiest actor's group. Workers never touch the store: they return the
record and the driver appends it (fsync'ed) before giving that actor its next cell. Resume works as on one
GPU: a cell is skipped when the store has it for the device name the actor reports.

Heterogeneous clusters. A cell with `cell.gpu` set (grid key `gpus:`) only goes to actors of that GPU
type. An actor of type `g` (a catalogue GPU id such as `h100-sxm`) is placed with

- Ray's accelerator type, when `accelerator_types` maps `g` to it, e.g. `{"h100-sxm": "H100",
  "a100-sxm4-80gb": "A100"}` (Ray detects `accelerator_type:H100` on NVIDIA nodes by itself), or
- otherwise a custom resource named exactly `g`, one unit per GPU, which you declare when starting each
  node: `ray start --address=... --num-gpus=8 --resources='{"h100-sxm": 8}'`.

The runner factory is called inside the actor as `runner_factory(ctx)` with a `WorkerContext` (slot,
catalogue GPU id or None, Ray GPU ids); it must be picklable (a module-level function or class, or a
`functools.partial` of one). The device name for the resume key is `runner.device_name` if the runner has
it, else `runner.meter.name`, else the NVML name of the actor's first GPU, else "cpu".
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import socket
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from measure.cell import Cell
from measure.executor import (
    BUDGET_SAFETY,
    Cooldown,
    Summary,
    _count,
    _make_progress,
    default_log,
    failed_record,
    finish_record,
    prog_is_tty,
    safe_run,
)
from measure.grid import CooldownSpec, GridSpec, expand, order_cells
from measure.record import Record
from measure.store import Store, done_keys


@dataclass(frozen=True)
class WorkerContext:
    """What a runner factory learns about the actor it runs in."""

    slot: int
    gpu_id: str | None  # catalogue GPU id the actor was placed for, None when unpinned
    ray_gpu_ids: tuple = ()  # ray.get_gpu_ids() inside the actor (CUDA_VISIBLE_DEVICES is set to them)
    host: str = ""


def _detect_device_name(ray_gpu_ids: Sequence[Any]) -> str:
    if not ray_gpu_ids:
        return "cpu"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(int(ray_gpu_ids[0])))
        finally:
            pynvml.nvmlShutdown()
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - fall back to torch
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return "cpu"


class CellWorker:
    """The body of one Ray actor (wrapped with `ray.remote` at run time): a runner plus its cooldown."""

    def __init__(self, runner_factory: Callable[[WorkerContext], Any], slot: int, gpu_id: str | None,
                 cooldown: CooldownSpec):
        import ray

        gpu_ids = tuple(ray.get_gpu_ids()) if ray.is_initialized() else ()
        self.ctx = WorkerContext(slot=slot, gpu_id=gpu_id, ray_gpu_ids=gpu_ids, host=socket.gethostname())
        self.runner = runner_factory(self.ctx)
        meter = getattr(self.runner, "meter", None)
        self.device_name = (getattr(self.runner, "device_name", None) or getattr(meter, "name", None)
                            or _detect_device_name(gpu_ids))
        self.cooldown = Cooldown(cooldown, meter)
        self.cooldown.start()
        self.n = 0

    def info(self) -> dict[str, Any]:
        return {"slot": self.ctx.slot, "gpu_id": self.ctx.gpu_id, "device_name": self.device_name,
                "host": self.ctx.host, "pid": os.getpid(), "ray_gpu_ids": list(self.ctx.ray_gpu_ids)}

    def run(self, cell: Cell, grid_file: str | None = None) -> tuple[dict[str, Any], float, float]:
        import time

        waited = self.cooldown.wait() if self.n else 0.0
        t0 = time.monotonic()
        rec = safe_run(self.runner, cell)
        wall = time.monotonic() - t0
        self.n += 1
        if rec.host is None:
            rec.host = self.ctx.host
        if rec.gpu_index is None and self.ctx.ray_gpu_ids:
            with contextlib.suppress(TypeError, ValueError):
                rec.gpu_index = int(self.ctx.ray_gpu_ids[0])
        finish_record(rec, device_name=self.device_name, cooldown_s=waited, grid_file=grid_file)
        return rec.to_dict(), wall, waited

    def close(self) -> None:
        self.runner.close()


@dataclass
class _Slot:
    index: int
    gpu_id: str | None
    actor: Any = None
    device_name: str | None = None
    queue: collections.deque = field(default_factory=collections.deque)  # cells of the current group
    inflight: Cell | None = None
    restarts: int = 0
    dead: bool = False

    def eligible(self, cell: Cell) -> bool:
        return cell.gpu is None or cell.gpu == self.gpu_id


def _units(num_gpus_per_cell: float) -> float:
    return num_gpus_per_cell if num_gpus_per_cell > 0 else 1


def _plan_slots(pinned: set[str], have_unpinned: bool, *, num_workers: int | Mapping[Any, int] | None,
                num_gpus_per_cell: float, num_cpus_per_cell: float, accelerator_types: Mapping[str, str],
                ) -> list[str | None]:
    """GPU id (or None) of each actor to start."""
    import ray

    if isinstance(num_workers, int):
        if pinned:
            raise ValueError("cells are pinned to GPU types (grid `gpus:`); give num_workers as a mapping "
                             "{gpu_id: count}")
        return [None] * num_workers
    if isinstance(num_workers, Mapping):
        return [None if k in (None, "any", "*") else str(k) for k, n in num_workers.items() for _ in range(n)]

    res = ray.cluster_resources()
    out: list[str | None] = []
    for g in sorted(pinned):
        if g in accelerator_types:
            key = f"accelerator_type:{accelerator_types[g]}"
            gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in ray.nodes()
                       if n.get("Alive") and key in n.get("Resources", {}))
            count = int(gpus // num_gpus_per_cell) if num_gpus_per_cell > 0 else int(gpus)
        else:
            count = int(res.get(g, 0) // _units(num_gpus_per_cell))
        out += [g] * count
    if have_unpinned:
        if num_gpus_per_cell > 0:
            total = int(res.get("GPU", 0) // num_gpus_per_cell)
        else:
            total = int(res.get("CPU", 0) // max(num_cpus_per_cell, 1e-9))
        out += [None] * max(0, total - len(out))
    return out


def _cap_plan(plan: list[str | None], cells: Sequence[Cell]) -> list[str | None]:
    """No more actors of a type than cells they could run."""
    unpinned = sum(1 for c in cells if c.gpu is None)
    out: list[str | None] = []
    for g in plan:
        limit = unpinned + (sum(1 for c in cells if c.gpu == g) if g is not None else 0)
        if out.count(g) < limit:
            out.append(g)
    return out


def run_grid_ray(spec: GridSpec, store_path: str | os.PathLike[str], *, address: str | None = None,
                 num_gpus_per_cell: float = 1, runner_factory: Callable[[WorkerContext], Any] | None = None,
                 accelerator_types: Mapping[str, str] | None = None, num_cpus_per_cell: float | None = None,
                 num_workers: int | Mapping[Any, int] | None = None, retry_failed: bool = False,
                 cells: Sequence[Cell] | None = None, catalog: Any = None, stop_after: int | None = None,
                 time_budget_s: float | None = None, progress: bool = True, max_restarts: int = 2,
                 runtime_env: Mapping[str, Any] | None = None,
                 log: Callable[[str], None] | None = None) -> Summary:
    """Run the grid's pending cells on a Ray cluster; one store, written by this (driver) process only.

    - `address`: Ray cluster address ("auto", "ray://..."); None starts/uses a local Ray.
    - `runner_factory(ctx: WorkerContext) -> CellRunner`, called once inside each actor (picklable).
    - `num_gpus_per_cell`: GPUs per actor (0 for CPU workers in tests); `num_cpus_per_cell` default 1.
    - `accelerator_types`: catalogue GPU id -> Ray accelerator type for pinned cells (see module doc).
    - `num_workers`: actors to start (int, or {gpu_id | None: count}); default from cluster resources.
    - `stop_after` / `time_budget_s`: stop handing out cells after that many / when the next would not
      fit (cells in flight are awaited and recorded).
    - `max_restarts`: actor restarts per slot after the actor process dies (its cell is recorded failed).
    """
    if spec.resume_per == "gpu":
        from measure.grid import GridError

        raise GridError(f"{spec.source_path or spec.name}: resume_per: gpu (every GPU measures every cell) is for "
                        "one `measure grid` process per GPU (scripts/device_run_multi.sh); the Ray scheduler "
                        "gives each cell to one GPU. Set resume_per: card to spread the cells over the cluster")
    import ray

    if runner_factory is None:
        raise ValueError("run_grid_ray needs a runner_factory(ctx) -> CellRunner (picklable)")
    import time

    t_start = time.monotonic()
    accelerator_types = dict(accelerator_types or {})
    num_cpus = 1.0 if num_cpus_per_cell is None else float(num_cpus_per_cell)
    started_ray = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": True}
        if runtime_env:
            kw["runtime_env"] = dict(runtime_env)
        ray.init(**kw)
        started_ray = True

    all_cells = list(cells) if cells is not None else expand(spec, catalog)
    ordered = order_cells(all_cells, spec.order, spec.order_seed, spec.shuffle_within_group)
    uniq: dict[str, Cell] = {}
    for c in ordered:
        uniq.setdefault(c.content_hash, c)
    ordered = list(uniq.values())

    store = Store(store_path)
    done = done_keys(store.iter_records(), retry_failed)
    pinned = {c.gpu for c in ordered if c.gpu}
    plan = _plan_slots(pinned, any(c.gpu is None for c in ordered), num_workers=num_workers,
                       num_gpus_per_cell=num_gpus_per_cell, num_cpus_per_cell=num_cpus,
                       accelerator_types=accelerator_types)
    plan = _cap_plan(plan, ordered)
    summary = Summary(device_name=None)
    if not plan:
        raise RuntimeError("no Ray worker can be placed: the cluster has no matching GPU/CPU resources "
                           f"(num_gpus_per_cell={num_gpus_per_cell}, pinned GPU types={sorted(pinned) or 'none'})")

    remote_cls = ray.remote(CellWorker)

    def start(slot: _Slot) -> None:
        opts: dict[str, Any] = {"num_gpus": num_gpus_per_cell, "num_cpus": num_cpus, "max_concurrency": 1}
        if slot.gpu_id is not None:
            if slot.gpu_id in accelerator_types:
                opts["accelerator_type"] = accelerator_types[slot.gpu_id]
            else:
                opts["resources"] = {slot.gpu_id: _units(num_gpus_per_cell)}
        slot.actor = remote_cls.options(**opts).remote(runner_factory, slot.index, slot.gpu_id, spec.cooldown)

    slots = [_Slot(i, g) for i, g in enumerate(plan)]
    for s in slots:
        start(s)
    try:
        infos = ray.get([s.actor.info.remote() for s in slots])
    except Exception:
        for s in slots:
            ray.kill(s.actor)
        if started_ray:
            ray.shutdown()
        raise
    for s, info in zip(slots, infos, strict=True):
        s.device_name = info["device_name"]
    summary.device_name = ", ".join(sorted({s.device_name or "?" for s in slots}))

    # pending cells: not done for any device name of an actor that may run them
    groups: collections.OrderedDict[tuple, collections.deque] = collections.OrderedDict()
    total = 0
    for c in ordered:
        names = {s.device_name for s in slots if s.eligible(c)}
        if not names:
            summary.other_device += 1
            continue
        total += 1
        if any((c.content_hash, n) in done for n in names):
            summary.already_done += 1
            continue
        groups.setdefault((c.gpu, c.group_key), collections.deque()).append(c)
    if summary.other_device:
        warnings.warn(f"{summary.other_device} cells are pinned to GPU types with no Ray worker; not run",
                      RuntimeWarning, stacklevel=2)
    summary.total = total
    todo = sum(len(q) for q in groups.values())

    emit = log
    prog = _make_progress(progress)
    if emit is None and progress and (prog.disable and not prog_is_tty()):
        emit = default_log
    elif emit is None and not prog.disable:
        def emit(msg: str) -> None:
            prog.console.print(msg, markup=False, highlight=False)
    task = prog.add_task(f"grid {spec.name} on {len(slots)} workers", total=todo)

    walls: list[float] = []
    stopping: str | None = None

    def next_cell(slot: _Slot) -> Cell | None:
        if slot.queue:
            return slot.queue.popleft()
        # a group for this slot: pinned to its type first, then unpinned
        for want_pinned in (True, False):
            for key in list(groups):
                gpu = key[0]
                if (gpu is not None) == want_pinned and (gpu is None or gpu == slot.gpu_id):
                    slot.queue = groups.pop(key)
                    return slot.queue.popleft()
        # steal the back half of the busiest eligible group
        victims = [s for s in slots if s is not slot and len(s.queue) >= 2 and slot.eligible(s.queue[0])]
        if victims:
            v = max(victims, key=lambda s: len(s.queue))
            k = len(v.queue) // 2
            stolen = [v.queue.pop() for _ in range(k)][::-1]
            slot.queue = collections.deque(stolen)
            return slot.queue.popleft()
        return None

    def fits() -> bool:
        if stop_after is not None and summary.ran + len(inflight) >= stop_after:
            return False
        if time_budget_s is None:
            return True
        elapsed = time.monotonic() - t_start
        est = (sum(walls) / len(walls)) * BUDGET_SAFETY if walls else 0.0
        return elapsed + est <= time_budget_s

    inflight: dict[Any, _Slot] = {}

    def dispatch(slot: _Slot) -> None:
        nonlocal stopping
        if slot.dead or stopping:
            return
        if not fits():
            stopping = "stop_after" if (stop_after is not None
                                        and summary.ran + len(inflight) >= stop_after) else "time_budget"
            return
        cell = next_cell(slot)
        if cell is None:
            return
        slot.inflight = cell
        inflight[slot.actor.run.remote(cell, spec.source_path)] = slot

    try:
        with prog:
            for s in slots:
                dispatch(s)
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                ref = ready[0]
                slot = inflight.pop(ref)
                cell, slot.inflight = slot.inflight, None
                try:
                    rec_dict, wall, _waited = ray.get(ref)
                    rec = Record.from_dict(rec_dict)
                    walls.append(wall)
                except Exception as e:  # noqa: BLE001 - the actor died (segfault, OOM kill) or bad record
                    rec = failed_record(cell, f"worker failed: {type(e).__name__}: {str(e)[:1500]}")
                    finish_record(rec, device_name=slot.device_name, cooldown_s=None,
                                  grid_file=spec.source_path)
                    _restart(ray, slot, start, max_restarts, groups)
                store.append(rec)
                summary.ran += 1
                _count(summary, cell, rec)
                summary.cooldown_s += rec.cooldown_s or 0.0
                prog.advance(task)
                if emit:
                    emit(f"[{summary.ran}/{todo}] {slot.device_name} #{slot.index} {cell.label()} {rec.status}"
                         + (f": {(rec.error or '')[:160]}" if rec.status != "ok" else
                            f" {rec.tokens_per_s:.1f} tok/s {rec.decode_energy_per_token_j:.4g} J/tok"))
                dispatch(slot)
                for s in slots:  # idle slots may find work now (stealing from a busy group)
                    if s.inflight is None:
                        dispatch(s)
    except KeyboardInterrupt:
        stopping = "interrupted"
    finally:
        store.close()
        _shutdown(ray, slots)
        if started_ray:
            ray.shutdown()
    summary.stopped = stopping
    summary.remaining = todo - summary.ran
    summary.elapsed_s = time.monotonic() - t_start
    return summary


def _restart(ray: Any, slot: _Slot, start: Callable[[_Slot], None], max_restarts: int,
             groups: collections.OrderedDict) -> None:
    """After a failure: restart a dead actor (bounded); give its group back when it stays dead."""
    with contextlib.suppress(Exception):
        ray.get(slot.actor.info.remote(), timeout=30)
        return  # still alive: only that call failed
    with contextlib.suppress(Exception):
        ray.kill(slot.actor)
    if slot.restarts < max_restarts:
        slot.restarts += 1
        start(slot)
        return
    slot.dead = True
    if slot.queue:
        first = slot.queue[0]
        groups[(first.gpu, first.group_key, "returned", slot.index)] = slot.queue
        groups.move_to_end((first.gpu, first.group_key, "returned", slot.index), last=False)
        slot.queue = collections.deque()


def _shutdown(ray: Any, slots: Sequence[_Slot]) -> None:
    refs = []
    for s in slots:
        if s.actor is not None and not s.dead:
            with contextlib.suppress(Exception):
                refs.append(s.actor.close.remote())
    if refs:
        with contextlib.suppress(Exception):
            ray.get(refs, timeout=60)
    for s in slots:
        if s.actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(s.actor)


def cluster_gpu_counts(accelerator_types: Mapping[str, str] | None = None) -> dict[str, float]:
    """GPUs per catalogue GPU id visible to Ray (custom resources or mapped accelerator types)."""
    import ray

    res = ray.cluster_resources()
    out = {k: v for k, v in res.items() if not k.startswith(("node:", "accelerator_type:"))
           and k not in ("CPU", "GPU", "memory", "object_store_memory") and not math.isnan(v)}
    for g, accel in (accelerator_types or {}).items():
        key = f"accelerator_type:{accel}"
        out[g] = sum(n.get("Resources", {}).get("GPU", 0) for n in ray.nodes()
                     if n.get("Alive") and key in n.get("Resources", {}))
    return out
