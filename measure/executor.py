"""Run a grid on one device: resume, cooldown, time budget, progress; one record appended per cell.

    summary = run_grid(spec, runner, Store("datasets/measurements/h100.jsonl"), device_name="NVIDIA H100 80GB HBM3")

Cells already in the store for this device (resume key `(cell_hash, gpu_name)`) are skipped. Every other
cell is run and its record appended (fsync'ed) before the next cell starts, so a kill loses at most the
cell in progress. A cell whose runner raises is recorded as `failed` with the exception text and the grid
goes on. With `time_budget_s` the executor stops *before* a cell that would not fit (estimated from this
run's cell times, or, for the first cell, from the store's earlier records on this device).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from measure.cell import Cell
from measure.engines import COMPILING_ENGINES
from measure.grid import CooldownSpec, GridError, GridSpec, expand, order_cells
from measure.record import Record, SchemaError
from measure.store import Store, done_keys

BUDGET_SAFETY = 1.1  # a cell must fit with 10 % to spare
# the time budget's estimate of a cell that will compile (see `_Estimator.will_compile`)
COMPILE_QUANTILE = 0.9  # compile time assumed: this quantile of the method's records that compiled
COMPILE_MIN_RECORDS = 5  # fewer of the method: the engine's compiled records of every method instead
COMPILED_OVER_WARMUP_S = 5.0  # a record without graph counts compiled if its warm-up ran this much over its calls
# no compiled record on this device: about the 90th percentile of the H100 campaign's compiled cells (163 s
# over 96 cells in session s8, 89 after its leaked records were rejected); so with an empty store a budget
# under about 176 s (x BUDGET_SAFETY) starts no compiled cell
COMPILE_DEFAULT_S = 160.0
# a group's later compiling cell takes up to this many times its first one (the dynamic-shape recompile: on
# the H100, 0.8-2.25x the first cell's wall, median 1.65, over 42 pairs)
RECOMPILE_FACTOR = 2.0


class CellRunner(Protocol):
    def run(self, cell: Cell) -> Record: ...

    def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class Summary:
    device_name: str | None
    total: int = 0  # cells of the grid (for this device)
    already_done: int = 0  # skipped because the store has them
    ran: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # runner returned status "skipped"
    remaining: int = 0  # not started because the run stopped early
    other_device: int = 0  # cells pinned (cell.gpu) to another GPU type
    claimed_elsewhere: int = 0  # left to another process sharing the claim directory
    stopped: str | None = None  # None | "stop_after" | "time_budget" | "interrupted"
    elapsed_s: float = 0.0
    cooldown_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell label, error)
    # the cell an interrupt (Ctrl-C, a wrapper's hard deadline) stopped mid-measurement: nothing of it is
    # recorded, so the summary names it, with the seconds it had run and the time budget's estimate of it
    interrupted_cell: str | None = None
    interrupted_after_s: float | None = None
    interrupted_estimate_s: float | None = None

    @property
    def complete(self) -> bool:
        return self.remaining == 0 and self.stopped is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["complete"] = self.complete
        return d

    def line(self) -> str:
        s = (f"{self.ran} run ({self.ok} ok, {self.failed} failed, {self.skipped} skipped), "
             f"{self.already_done} already done, {self.remaining} remaining of {self.total}")
        if self.claimed_elsewhere:
            s += f", {self.claimed_elsewhere} left to other processes"
        if self.stopped:
            s += f"; stopped: {self.stopped}"
        if self.interrupted_cell:
            est = (f", estimated {self.interrupted_estimate_s:.0f} s" if self.interrupted_estimate_s is not None
                   else "")
            s += f" in {self.interrupted_cell} after {self.interrupted_after_s:.0f} s{est}, not recorded"
        return s + f"; {self.elapsed_s:.0f} s ({self.cooldown_s:.0f} s cooldown)"


# ------------------------------------------------------------------------------------------------
def failed_record(cell: Cell, error: str, *, status: str = "failed", **fields: Any) -> Record:
    """A schema-valid record for a cell that produced no measurement."""
    rec = Record(cell_hash=cell.content_hash, model=cell.model, quant=cell.quant, engine=cell.engine,
                 batch_size=cell.batch_size, prompt_tokens=cell.prompt_tokens,
                 output_tokens=cell.output_tokens, status=status, error=error or "unknown error",
                 weights=cell.weights, quant_params=dict(cell.quant_params),
                 engine_params=dict(cell.engine_params), warmup=cell.warmup,
                 repetitions=cell.repetitions, seed=cell.seed, gpu_id=cell.gpu)
    for k, v in fields.items():
        setattr(rec, k, v)
    return rec


def safe_run(runner: CellRunner, cell: Cell) -> Record:
    """`runner.run(cell)`, turning an unexpected exception or an invalid record into a failed record."""
    try:
        rec = runner.run(cell)
    except Exception as e:  # noqa: BLE001 - one broken cell must not stop the grid
        return failed_record(cell, f"runner raised {type(e).__name__}: {e}"[:2000])
    if not isinstance(rec, Record):
        return failed_record(cell, f"runner returned {type(rec).__name__}, not a Record")
    rec.cell_hash = cell.content_hash  # the resume key is the executor's, whatever the runner set
    try:
        rec.validate()
    except SchemaError as e:
        return failed_record(cell, f"runner returned an invalid record: {e}")
    return rec


def finish_record(rec: Record, *, device_name: str | None, cooldown_s: float | None,
                  grid_file: str | None) -> Record:
    """Fill the fields the executor owns (gpu_name when unset, cooldown, ids, timestamps)."""
    if rec.gpu_name is None:
        rec.gpu_name = device_name
    elif device_name is not None and rec.gpu_name != device_name:
        warnings.warn(f"runner recorded gpu_name {rec.gpu_name!r} but the executor runs as {device_name!r}; "
                      "resume matches on gpu_name, pass the same name", RuntimeWarning, stacklevel=2)
    rec.cooldown_s = cooldown_s
    if rec.grid_file is None:
        rec.grid_file = grid_file
    if rec.record_id is None:
        rec.record_id = uuid.uuid4().hex
    if rec.created_at is None:
        rec.created_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return rec


# ------------------------------------------------------------------------------------------------
class Cooldown:
    """Waits between cells. `start()` reads the idle temperature (adaptive mode); `wait()` returns the
    seconds actually waited. Adaptive without a usable thermometer falls back to fixed `seconds`
    (capped at `cap_s`)."""

    def __init__(self, spec: CooldownSpec, meter: Any = None, clock: Clock | None = None,
                 log: Callable[[str], None] | None = None):
        self.spec, self.meter, self.clock = spec, meter, clock or SystemClock()
        self.log = log or (lambda _msg: None)
        self.idle_c: float | None = None
        self.history: list[float] = []

    def _temp(self) -> float | None:
        if self.meter is None or not hasattr(self.meter, "temperature_c"):
            return None
        try:
            t = self.meter.temperature_c()
        except Exception:  # noqa: BLE001 - a flaky sensor must not stop the grid
            return None
        return float(t) if t is not None else None

    def start(self) -> None:
        if self.spec.mode == "adaptive":
            self.idle_c = self._temp()
            if self.idle_c is None:
                self.log(f"cooldown: no GPU temperature; using fixed {min(self.spec.seconds, self.spec.cap_s):g} s")

    def estimate(self) -> float:
        if self.spec.mode == "none":
            return 0.0
        if self.history:
            return sum(self.history) / len(self.history)
        if self.spec.mode == "fixed":
            return self.spec.seconds
        return 0.0 if self.idle_c is not None else min(self.spec.seconds, self.spec.cap_s)

    def wait(self) -> float:
        mode, clock = self.spec.mode, self.clock
        if mode == "none":
            return 0.0
        t0 = clock.now()
        if mode == "fixed" or self.idle_c is None:
            clock.sleep(self.spec.seconds if mode == "fixed" else min(self.spec.seconds, self.spec.cap_s))
        else:
            target = self.idle_c + self.spec.margin_c
            while True:
                t = self._temp()
                waited = clock.now() - t0
                if t is None or t <= target or waited >= self.spec.cap_s:
                    break
                clock.sleep(min(self.spec.poll_s, self.spec.cap_s - waited))
        waited = clock.now() - t0
        self.history.append(waited)
        return waited


def engine_bases(catalog: Any = None) -> dict[str, str]:
    """Engine variant -> the engine it runs as (the catalogue's `variant_of`; default: the shipped catalogue)."""
    if catalog is None:
        from recommender.catalog import load_catalog

        catalog = load_catalog()
    return {e.id: e.variant_of for e in catalog.engines if getattr(e, "variant_of", None)}


class _Estimator:
    """Wall time of the next cell, most specific evidence first: this run's cells of the same engine and
    method (those that started a new model group, load + quantize, or continued one); the store's records
    of that engine and method on this device; this run's cells of the engine; the store's of the engine;
    any. Compiled cells cost a compilation per new shape (tens of seconds on an H100) where eager ones cost
    seconds, and eager LLM.int8 or fp8 cells run 3-7x longer than 16-bit ones (session s3 lost a GPU's last
    400 s to a slow cell started on the strength of fast ones), so one mean over all would let a time
    budget start a cell it cannot finish.

    `prior_cost` (the store alone, for `order=cheapest`) also follows the cell's workload and batch size: a
    1024/256-token cell at batch 32 takes several times a 256/128 one at batch 1 (fp32 eager on an H100:
    120-146 s against 15 s), see `prior_cost`. `estimate` does not (it averages whatever shapes ran), so the
    time budget asks `estimate_cell`, which scales this run's cells of the method to the pending cell's
    shape and model by the store's model of them and never says less than `estimate` (session s4-a lost a
    fp32 batch-32 cell started near the end of its budget on the strength of a fast batch-1 one), except
    for a cell continuing a model group of a method whose compile time varies with the batch size (see
    `_shaped_estimate`); and a cell that will compile (`will_compile`: the first or second batch size of its
    model group in this run) at least a pessimistic compile time (`_compiling_cost`)."""

    def __init__(self, prior_records: Sequence[Record] = (), engine_bases: Mapping[str, str] | None = None):
        """`engine_bases`: engine variant -> the engine it runs as (catalogue `variant_of`, `engine_bases`); a
        variant without records of its own in the store is estimated from that engine's (hf-compiled-gqa runs
        hf-compiled's kernels, attention aside)."""
        self.seen: dict[tuple[str | None, str | None, bool], list[float]] = {}
        # this run's cells as (wall s, (prompt, output, batch, calls), model) per (engine, quant, new_group),
        # for `estimate_cell`; only cells whose shape `add` was told
        self.shaped: dict[tuple[str | None, str | None, bool],
                          list[tuple[float, tuple[int, int, int, int], str]]] = {}
        self.prior: dict[tuple[str | None, str | None], list[float]] = {}
        # the store's ok records per (engine, quant): what `prior_cost` models a cell's time from
        self.calls: dict[tuple[str | None, str | None], list[_Call]] = {}
        self._dur_cache: dict[tuple, float] = {}
        self._compile_cache: dict[tuple[str | None, str | None], list[tuple[int, float]]] = {}
        costs = [(r, v) for r in prior_records if (v := record_cost_s(r))]
        for r, v in costs:
            for key in ((r.engine, r.quant), (r.engine, None), (None, None)):
                self.prior.setdefault(key, []).append(v)
            self.calls.setdefault((r.engine, r.quant), []).append(_Call.of(r, v))
        self.method_models: dict[tuple[str | None, str | None], list[str]] = {}
        for r, _ in costs:
            self.method_models.setdefault((r.engine, r.quant), []).append(r.model)
        # how much slower or faster a model's cells ran than its method's estimate for the same workload and
        # batch size (the estimate averages over the method's models), in two passes: the first against the
        # plain means (`call_norm` empty) gives each model the factor `_call_s` then divides a record's call
        # time by, so the mean call of a workload that only some models ran is the method's mean model's; the
        # second, against those adjusted means, is `model_ratio`
        self.call_norm: dict[tuple[str, str | None], float] = {}
        self.call_norm = {k: sum(xs) / len(xs) for k, xs in self._model_ratios(costs).items()}
        self._dur_cache = {}  # the first pass's call means
        self.model_ratio: dict[tuple[str, str | None], list[float]] = self._model_ratios(costs)
        # compile_time_s (s) of the store's ok records that compiled, per (engine, quant) and per (engine, None);
        # and per (engine, quant, model), what `compile_high_s` floors a model's own compile time at
        self.compiled: dict[tuple[str | None, str | None], list[float]] = {}
        self.compiled_by_model: dict[tuple[str | None, str | None, str], list[float]] = {}
        for r, _ in costs:
            if _compiled(r):
                for key in ((r.engine, r.quant), (r.engine, None)):
                    self.compiled.setdefault(key, []).append(float(r.compile_time_s))
                self.compiled_by_model.setdefault((r.engine, r.quant, r.model), []).append(float(r.compile_time_s))
        for variant, base in (engine_bases or {}).items():
            if any(e == variant for e, _ in self.calls):
                continue  # its own records
            for table in (self.prior, self.calls, self.compiled, self.method_models):
                table.update({(variant, q): list(v) for (e, q), v in list(table.items()) if e == base})
            self.compiled_by_model.update({(variant, q, m): list(v) for (e, q, m), v
                                           in list(self.compiled_by_model.items()) if e == base})
            self.model_ratio.update({(m, variant): list(v) for (m, e), v in list(self.model_ratio.items())
                                     if e == base})
            self.call_norm.update({(m, variant): v for (m, e), v in list(self.call_norm.items()) if e == base})
        # the shapes (batch, prompt, output) this run's current model group ran per (engine, engine params)
        # on a compiling engine: what `will_compile` reads; and the wall times (s) of its cells that compiled
        self.group_shapes: dict[tuple[str | None, str], list[tuple[int, int, int]]] = {}
        self.group_compiled_s: list[float] = []

    def _model_ratios(self, costs: Sequence[tuple[Record, float]]) -> dict[tuple[str, str | None], list[float]]:
        """Per (model, engine): each of its records' cost (s) over `_method_cost` at the record's own method,
        workload, batch and calls (1.0 where that is 0)."""
        out: dict[tuple[str, str | None], list[float]] = {}
        for r, v in costs:
            base = self._method_cost(r.engine, r.quant, r.prompt_tokens, r.output_tokens, r.batch_size,
                                     r.warmup + r.repetitions)
            out.setdefault((r.model, r.engine), []).append(v / base if base else 1.0)
        return out

    def prior_cost(self, cell: Cell) -> float | None:
        """A pending cell's wall time from the store alone (seconds); None when its engine and method have
        no ok record.

            cost = model_ratio x (fixed + (warmup + repetitions) x call)

        - `fixed` (s): the mean over the method's records of load + quantize + eval time, plus the
          method's compile time at the cell's batch size (`_compile_s`: compiled engines pay tens of seconds
          at a block's first batch sizes, a few at later ones).
        - `call` (s): one generate call of the cell's batch size and workload. For each batch size the
          method has records of, the mean `duration_s` of those at the cell's (prompt, output) tokens, or,
          when none is, of all of them scaled to it: the prefill part (`ttft_ms`) x prompt-token ratio plus
          the rest (decode) x output-token ratio. Between two measured batch sizes, interpolated linearly in
          log(call) over log(batch); outside them, extrapolated from the nearest two with the exponent
          clipped to [0, 1] (a larger batch never takes less, at most proportionally more); one batch size
          measured: its value. Each record's call enters that mean divided by its model's factor from a first
          pass with plain means (over the mean factor of the method's records, `_call_norm`): a workload only
          fast models ran would otherwise set the method's mean call at a fast model's (session s31-b: compiled
          bnb-int8 at 1024/256 had three fast models' records; Qwen2.5-7B's cell, which the budget estimated at
          187 s, ran past 262 s and the hard stop killed it; now 225 s. Backtest,
          `benchmarks/bench_cell_cost_estimate.py`, prospective median |ln(estimate / actual)|: H200 0.202 ->
          0.189, its 1024/256 cells 0.164 -> 0.158; H100 0.225 -> 0.221, 1024/256 0.179 -> 0.161).
        - `model_ratio`: the mean, over the model's records on this engine, of record cost / this estimate
          for the record's own method, workload and batch (how much slower or faster the model ran than the
          method's mean model; the second pass's, against the adjusted means); a model without records: its
          layers over the mean layers of the method's models (decode is per layer), 1.0 when unknown.
        """
        base = self._method_cost(cell.engine, cell.quant, cell.prompt_tokens, cell.output_tokens,
                                 cell.batch_size, cell.warmup + cell.repetitions)
        if base is None:
            return None
        return base * self._model_factor(cell.model, cell.engine, cell.quant)

    def _model_factor(self, model: str, engine: str | None, quant: str | None) -> float:
        """`prior_cost`'s `model_ratio` (dimensionless): the mean of the model's record cost / method
        estimate on this engine; without records, its layers over the mean layers of the method's models
        (decode is per layer); 1.0 when unknown."""
        ratios = self.model_ratio.get((model, engine), [])
        if ratios:
            return sum(ratios) / len(ratios)
        return _layer_ratio(model, self.method_models.get((engine, quant), []))

    def _method_cost(self, engine: str | None, quant: str | None, prompt: int, output: int, batch: int,
                     calls: int) -> float | None:
        """The method's mean fixed time + `calls` x its call time at this workload and batch (s)."""
        obs = self.calls.get((engine, quant))
        if not obs:
            return None
        fixed = sum(o.fixed_s for o in obs) / len(obs)
        return fixed + self._compile_s(engine, quant, batch) + calls * self._call_s(engine, quant, prompt, output,
                                                                                     batch)

    def _compile_points(self, engine: str | None, quant: str | None) -> list[tuple[int, float]]:
        """(batch size, mean compile time s) per batch size of the method's store records, ascending; a
        record without compile time counts as 0 s."""
        key = (engine, quant)
        if key not in self._compile_cache:
            by_batch: dict[int, list[float]] = {}
            for o in self.calls.get(key, []):
                by_batch.setdefault(o.batch, []).append(o.compile_s)
            self._compile_cache[key] = [(b, sum(xs) / len(xs)) for b, xs in sorted(by_batch.items())]
        return self._compile_cache[key]

    def _compile_s(self, engine: str | None, quant: str | None, batch: int) -> float:
        """The method's compile time at `batch` (s): the mean of its records at that batch size; between two
        measured batch sizes, linear in log(batch); outside them, the nearest one's (0 with no record).
        Compiled engines pay tens of seconds at the first shapes of a block (batch 1 and 8 on an H100: 38-76
        s) but a few at later ones (batch 32 and 64: 3-6 s, reusing compiled graphs); eager ones pay 0."""
        points = self._compile_points(engine, quant)
        if not points:
            return 0.0
        if batch <= points[0][0]:
            return points[0][1]
        if batch >= points[-1][0]:
            return points[-1][1]
        i = next(j for j in range(len(points) - 1) if points[j][0] <= batch <= points[j + 1][0])
        (b0, c0), (b1, c1) = points[i], points[i + 1]
        return c0 + (c1 - c0) * math.log(batch / b0) / math.log(b1 / b0)

    def _compile_varies(self, engine: str | None, quant: str | None) -> bool:
        """Whether the method's store records show compile times that vary with the batch size (the
        largest per-batch mean over 2x the smallest and more than 5 s above it): then a batch- and
        workload-blind mean of this run's cells says little of the next cell's time."""
        means = [c for _, c in self._compile_points(engine, quant)]
        return len(means) > 1 and max(means) > 2 * min(means) and max(means) - min(means) > 5.0

    def _call_s(self, engine: str | None, quant: str | None, prompt: int, output: int, batch: int) -> float:
        """One generate call of the method at (prompt, output) tokens and `batch` sequences (s)."""
        key = (engine, quant, prompt, output, batch)
        if key in self._dur_cache:
            return self._dur_cache[key]
        by_batch: dict[int, list[_Call]] = {}
        obs = self.calls[(engine, quant)]
        for o in obs:
            by_batch.setdefault(o.batch, []).append(o)
        # each record's model factor, over their mean on the method's records: a method one model ran keeps
        # that model's plain mean
        center = sum(self._call_norm(o.model, engine) for o in obs) / len(obs)
        points = []
        for b in sorted(by_batch):
            same = [o for o in by_batch[b] if (o.prompt, o.output) == (prompt, output)]
            use = same or by_batch[b]
            points.append((b, sum(o.scaled_s(prompt, output) * center / self._call_norm(o.model, engine)
                                  for o in use) / len(use)))
        self._dur_cache[key] = value = _interp_log_log(points, batch)
        return value

    def _call_norm(self, model: str, engine: str | None) -> float:
        """What `_call_s` divides a record's call time by (dimensionless): its model's first-pass factor on
        this engine, clipped to [1/4, 4]; 1.0 before the first pass and for a model without one."""
        value = self.call_norm.get((model, engine), 1.0)
        return min(max(value, 0.25), 4.0) if value > 0 else 1.0

    def add(self, wall_s: float, new_group: bool, engine: str | None = None, quant: str | None = None,
            cell: Cell | None = None, failed: bool = False) -> None:
        """Record one cell of this run: its wall time (s), whether it started a model group, its engine and
        method; `cell` (its shape: prompt and output tokens, batch size, warmup + repetitions) lets
        `estimate_cell` scale it to other shapes and models (leave it out for a cell whose time says nothing
        of its shape, e.g. a failed or skipped one). `failed`: the cell failed, which may have unloaded the
        model (an OOM does): `will_compile` then takes the group's next cell for a fresh start."""
        self.seen.setdefault((engine, quant, new_group), []).append(wall_s)
        if new_group or failed:
            self.group_shapes, self.group_compiled_s = {}, []
        if cell is not None and not failed and cell.engine in COMPILING_ENGINES:
            if self.will_compile(cell, new_group):
                self.group_compiled_s.append(wall_s)
            shape = (cell.batch_size, cell.prompt_tokens, cell.output_tokens)
            self.group_shapes.setdefault(_params_key(cell), []).append(shape)
        if cell is not None:
            shape = (cell.prompt_tokens, cell.output_tokens, cell.batch_size, cell.warmup + cell.repetitions)
            self.shaped.setdefault((engine, quant, new_group), []).append((wall_s, shape, cell.model))

    def estimate_cell(self, cell: Cell, new_group: bool) -> float | None:
        """The wall time (seconds) the time budget expects of `cell`, which starts a model group or not
        (`new_group`): `_shaped_estimate`; for a cell that `will_compile`, at least `_compiling_cost`.

        Why: a compiling cell's time is mostly compilation, which the shape model averages away. On the H100,
        bf16 compiled 26-82 s at a group's first batch size, 42-90 s at its second (the dynamic-shape
        recompile: 0.8-2.25x the first cell, median 1.65x) and 0-2 s from the third on; torchao methods
        80-270 s. Scaling the group's first cell to the second, or the store's per-batch mean compile time,
        came out at ~0.6x the second's time, and a worker of session s8-b started such a cell that the hard
        deadline killed. Replayed per worker process (`benchmarks/bench_cell_cost_estimate.py`, `worker
        replay`, on the store of session s8 before its leaked records were rejected; 58 -> 14 of 85 after):
        compiling cells under their estimate 63 -> 17 of 92 (median estimate / actual 0.77 ->
        1.26); cells that do not compile keep `_shaped_estimate`."""
        value = self._shaped_estimate(cell, new_group)
        if not self.will_compile(cell, new_group):
            return value
        floor = self._compiling_cost(cell, new_group)
        return floor if value is None else max(value, floor)

    def will_compile(self, cell: Cell, new_group: bool) -> bool:
        """Whether `cell` will compile (torch.compile) before its warm-up ends, from its engine and what this
        run's model group ran (`add`): an engine of COMPILING_ENGINES, and the cell starts a model group (a
        fresh load; unloading resets dynamo), or its shape (batch, prompt tokens, output tokens) was not run
        by the group with the same engine params and either the engine is static per shape (`dynamic:
        False`) or the shape has a new value in a dimension that had one value so far (torch's automatic
        dynamic shapes compile the first shape static and recompile once when a dimension first changes, then
        reuse that graph: the first and second batch sizes of a group compile, later ones do not)."""
        if cell.engine not in COMPILING_ENGINES:
            return False
        if new_group:
            return True
        ran = self.group_shapes.get(_params_key(cell), [])
        shape = (cell.batch_size, cell.prompt_tokens, cell.output_tokens)
        if shape in ran:
            return False
        if not ran or cell.engine_params.get("dynamic") is False:
            return True
        return any(len(values := {s[i] for s in ran}) == 1 and shape[i] not in values for i in range(3))

    def compile_high_s(self, engine: str | None, quant: str | None, model: str | None = None) -> float:
        """The compile time (s) the budget assumes for a compiling cell: the COMPILE_QUANTILE (nearest rank)
        of `compile_time_s` over the method's store records that compiled, over the engine's of every method
        when the method has fewer than COMPILE_MIN_RECORDS; COMPILE_DEFAULT_S when the engine has none (a
        device's first compiled session). With `model`, never less than the longest compile time of that
        model's own store records of the method: one model can compile far beyond its method's quantile
        (session s30: torchao-fp8 Mistral-7B with hf-compiled-gqa compiled 463 s at batch 8 where the method's
        other fourteen records took 62-297 s; its batch-32 cell, estimated from the quantile at 341 s, was
        started with a 492 s budget and killed at the hard stop, the call measuring nothing)."""
        xs = self.compiled.get((engine, quant), [])
        if len(xs) < COMPILE_MIN_RECORDS:
            xs = self.compiled.get((engine, None), [])
        if not xs:
            value = COMPILE_DEFAULT_S
        else:
            xs = sorted(xs)
            value = xs[max(math.ceil(COMPILE_QUANTILE * len(xs)) - 1, 0)]
        own = self.compiled_by_model.get((engine, quant, model), []) if model is not None else []
        return max([value, *own])

    def _compiling_cost(self, cell: Cell, new_group: bool) -> float:
        """A compiling cell's pessimistic wall time (s). Continuing a model group that compiled before in
        this run: RECOMPILE_FACTOR x the wall of the group's first compiling cell (the model's own compile
        time: qwen2.5-14b bnb-nf4 compiled 89 s at batch 1, beyond its method's quantile). Otherwise
        `compile_high_s` (at least the model's own longest compile of the method) + the store's cost of the
        cell without its compile time (`_shape_cost`, load only for a group start, x the model factor; 0 when
        the method has no record)."""
        if not new_group and self.group_compiled_s:
            return RECOMPILE_FACTOR * self.group_compiled_s[0]
        value = self.compile_high_s(cell.engine, cell.quant, cell.model)
        shape = (cell.prompt_tokens, cell.output_tokens, cell.batch_size, cell.warmup + cell.repetitions)
        cost = self._shape_cost(cell.engine, cell.quant, shape, new_group)
        if cost is not None:
            rest = max(cost - self._compile_s(cell.engine, cell.quant, cell.batch_size), 0.0)
            value += rest * self._model_factor(cell.model, cell.engine, cell.quant)
        return value

    def _shaped_estimate(self, cell: Cell, new_group: bool) -> float | None:
        """`estimate_cell` blind to whether the cell compiles (seconds): the larger of `estimate` (workload-
        and batch-blind) and a shape-aware value, so it is never less than `estimate` and a budget check with
        it never starts a cell one with `estimate` would pass over. When the store has no ok record of the
        cell's engine and method, just `estimate` (None when nothing at all is known: `_fits` then starts the
        cell).

        The shape-aware value: the mean over this run's cells of the same engine, method and `new_group`
        (those `add` was given the shape of) of

            wall (s) x cost(cell's shape) / cost(that cell's shape) x factor(cell's model) / factor(its model)

        where cost is the method's store model (`_method_cost`: fixed + calls x one call at the workload and
        batch size, s), less the method's mean load + quantize time for a cell that continues a model group
        (it pays neither, so the ratio follows its calls), and factor is `prior_cost`'s per-model ratio
        (`_model_factor`, dimensionless: 1 when both cells are of one model, as in a continuing block). With
        no such cell of this run, `prior_cost(cell)` (for a continuing cell scaled by the same ratio without
        the load). For a cell starting a model group, the larger of that mean and `prior_cost(cell)` (the
        store's cost of this very cell, load, quantize and model included).

        Why the model factor and `prior_cost` for group starts: a group start's observations are other
        models' group starts, and the method's cost model is model-blind, so a 7B group start scaled from a
        0.5B one comes out far too short; near the end of its budget a worker could then start a cell the
        hard deadline kills, losing it and its device time. Replayed over the H100 logs
        (`benchmarks/bench_cell_cost_estimate.py`, `group_start_replay`): eager group starts estimated below
        their actual time 59 of 140 before, 47 now (median estimate / actual 1.09 -> 1.13); the worst (0.15)
        are methods no earlier session had run, where the store has no per-model factor to scale by.

        The exception to the floor: a cell that continues a model group (`new_group` False) of a method whose
        store records show compile times varying with the batch size (`_compile_varies`, e.g. hf-compiled:
        38-76 s at batch 1 and 8 on an H100, 3-6 s at batch 32 and 64) gets the shape-aware value alone.
        There `estimate` is the mean of this run's cells of the method, mostly batch-1 and 8 ones that paid
        a compilation, and would say 48-86 s for a batch-32 cell that takes 14-16 s; the shape-aware value
        models the compile time per batch size (`_compile_s`), so scaling those cells by it, or the store's
        cost when none ran, follows what a continuing cell pays. Eager methods (no compile time) and cells
        starting a model group keep the floor."""
        base = self.estimate(new_group, cell.engine, cell.quant)
        engine, quant = cell.engine, cell.quant
        if not self.calls.get((engine, quant)):
            return base
        shape = (cell.prompt_tokens, cell.output_tokens, cell.batch_size, cell.warmup + cell.repetitions)
        want = self._shape_cost(engine, quant, shape, new_group)
        scaled_walls = []
        for wall, seen_shape, seen_model in self.shaped.get((engine, quant, new_group), []):
            had = self._shape_cost(engine, quant, seen_shape, new_group)
            if want is not None and had and had > 0:
                scaled_walls.append(wall * want / had * self._model_scale(seen_model, cell.model, engine, quant))
        if scaled_walls:
            scaled = sum(scaled_walls) / len(scaled_walls)
            if new_group and (prior := self.prior_cost(cell)) is not None:
                scaled = max(scaled, prior)
        else:
            scaled = self.prior_cost(cell)
            full = self._shape_cost(engine, quant, shape, True)
            if scaled is not None and want is not None and full:
                scaled *= want / full
        if base is None or scaled is None:
            return scaled if base is None else base
        if not new_group and self._compile_varies(engine, quant):
            return scaled  # see the docstring: the blind mean is mostly other batch sizes' compilation
        return max(base, scaled)

    def _model_scale(self, seen: str, pending: str, engine: str | None, quant: str | None) -> float:
        """How many times longer `pending`'s cells take than `seen`'s of this engine and method by the
        store's per-model factors (dimensionless; 1.0 for one model or when a factor is unusable)."""
        if seen == pending:
            return 1.0
        had, want = self._model_factor(seen, engine, quant), self._model_factor(pending, engine, quant)
        return want / had if had > 0 and want > 0 else 1.0

    def _shape_cost(self, engine: str | None, quant: str | None, shape: tuple[int, int, int, int],
                    new_group: bool) -> float | None:
        """`_method_cost` at `shape` (prompt, output, batch, calls), less the method's mean load + quantize
        time when the cell continues a model group (s); None when the method has no ok record."""
        cost = self._method_cost(engine, quant, *shape)
        if cost is None or new_group:
            return cost
        obs = self.calls[(engine, quant)]  # not empty: `_method_cost` returned a cost
        return max(cost - sum(o.load_s for o in obs) / len(obs), 0.0)

    def estimate(self, new_group: bool, engine: str | None = None, quant: str | None = None) -> float | None:
        def mean(xs):
            return sum(xs) / len(xs) if xs else None

        def seen(match):
            return mean([v for k, xs in self.seen.items() if match(*k) for v in xs])

        same_method = lambda: seen(lambda e, q, ng: (e, q) == (engine, quant))  # noqa: E731
        method_prior = lambda: mean(self.prior.get((engine, quant), []))  # noqa: E731
        steps = (
            lambda: seen(lambda e, q, ng: (e, q, ng) == (engine, quant, new_group)),
            # a new model group pays load + quantize: the store's records (which include them) before this
            # run's continuing cells (which do not)
            *((method_prior, same_method) if new_group else (same_method, method_prior)),
            lambda: seen(lambda e, q, ng: (e, ng) == (engine, new_group)),
            lambda: seen(lambda e, q, ng: e == engine),
            lambda: mean(self.prior.get((engine, None), [])),
            lambda: seen(lambda e, q, ng: ng == new_group),
            lambda: seen(lambda e, q, ng: True),
            lambda: mean(self.prior.get((None, None), [])),
        )
        for step in steps:
            if (m := step()) is not None:
                return m
        return None


@dataclass(frozen=True)
class _Call:
    """What `_Estimator.prior_cost` uses of one ok record: its cell's shape and its times (s)."""

    model: str
    batch: int
    prompt: int
    output: int
    duration_s: float  # one generate call
    prefill_s: float  # its prefill (time to first token), 0 when not recorded
    fixed_s: float  # load + quantize + eval (compile apart: it depends on the batch size)
    compile_s: float = 0.0  # compile, 0 when not recorded
    load_s: float = 0.0  # load + quantize (part of fixed_s): what a cell continuing a model group does not pay

    @classmethod
    def of(cls, rec: Record, cost_s: float) -> _Call:
        dur = float(rec.duration_s or 0.0)
        prefill = min(max(rec.ttft_ms or 0.0, 0.0) / 1000.0, dur)
        compile_s = max(float(rec.compile_time_s or 0.0), 0.0)
        return cls(model=rec.model, batch=max(int(rec.batch_size or 1), 1),
                   prompt=max(int(rec.prompt_tokens or 1), 1), output=max(int(rec.output_tokens or 1), 1),
                   duration_s=dur, prefill_s=prefill, compile_s=compile_s,
                   load_s=sum(x for x in (rec.load_time_s, rec.quantize_time_s) if x),
                   fixed_s=max(cost_s - (rec.warmup + rec.repetitions) * dur - compile_s, 0.0))

    def scaled_s(self, prompt: int, output: int) -> float:
        """This call's duration at another workload, same batch: prefill x prompt ratio + decode x output
        ratio (s). Measured on an H100 the decode part's time per token hardly moves from 256/128 to 1024/256
        tokens except at fp32 and batch 32 (1.9x), so this errs low there."""
        if (prompt, output) == (self.prompt, self.output):
            return self.duration_s
        return (self.prefill_s * max(prompt, 1) / self.prompt
                + (self.duration_s - self.prefill_s) * max(output, 1) / self.output)


def _interp_log_log(points: Sequence[tuple[int, float]], batch: int) -> float:
    """`points` (batch size, seconds), ascending batch sizes, read at `batch`: linear in log-log between two
    points; outside them from the nearest two with the exponent clipped to [0, 1]; one point: its value."""
    if len(points) == 1:
        return points[0][1]
    x = math.log(max(batch, 1))
    xs = [math.log(b) for b, _ in points]
    ys = [math.log(max(v, 1e-9)) for _, v in points]
    if x <= xs[0]:
        i, anchor, clip = 0, 0, True
    elif x >= xs[-1]:
        i, anchor, clip = len(xs) - 2, len(xs) - 1, True
    else:
        i = next(j for j in range(len(xs) - 1) if xs[j] <= x <= xs[j + 1])
        anchor, clip = i, False
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    if clip:
        slope = min(max(slope, 0.0), 1.0)
    return math.exp(ys[anchor] + slope * (x - xs[anchor]))


def _layer_ratio(model: str, others: Sequence[str]) -> float:
    """`model`'s number of layers over the mean of `others`' (catalogue models.csv); 1.0 when unknown."""
    try:
        from recommender.catalog import load_catalog

        models = load_catalog().models
    except Exception:  # a measure-only install without the catalogue: no scaling
        return 1.0

    def layers(name: str) -> float | None:
        m = models.find(name)
        return float(m.num_layers) if m is not None and m.num_layers else None

    mine, theirs = layers(model), [x for x in map(layers, others) if x]
    return mine / (sum(theirs) / len(theirs)) if mine and theirs else 1.0


def _params_key(cell: Cell) -> tuple[str, str]:
    """(engine, engine params as JSON): cells of one compile configuration."""
    return (cell.engine, json.dumps(cell.engine_params, sort_keys=True, default=str))


def _compiled(rec: Record) -> bool:
    """Whether an ok record's cell compiled: dynamo graphs compiled in its warm-up where recorded
    (`engine_params.graphs_compiled_warmup`), else a warm-up (`compile_time_s`) more than
    COMPILED_OVER_WARMUP_S seconds over its warm-up calls (reusing cells: 0-2 s over)."""
    if not rec.compile_time_s:
        return False
    graphs = (rec.engine_params or {}).get("graphs_compiled_warmup")
    if isinstance(graphs, int | float):
        return graphs > 0
    return rec.compile_time_s - max(rec.warmup, 1) * (rec.duration_s or 0.0) > COMPILED_OVER_WARMUP_S


def record_cost_s(rec: Record) -> float | None:
    """Rough wall time a record's cell took: load + quantize + compile + eval + (warmup+reps) x call."""
    if rec.status != "ok" or not rec.duration_s:
        return None
    fixed = sum(v for v in (rec.load_time_s, rec.quantize_time_s, rec.compile_time_s, rec.eval_time_s) if v)
    return fixed + (rec.warmup + rec.repetitions) * rec.duration_s


# ------------------------------------------------------------------------------------------------
class ClaimDir:
    """Split one grid between processes that share a directory (one process per GPU of a host, no Ray).

    The unit of work is a block: the cells of one loaded model on one engine (`Cell.group_key` + engine),
    so a model is loaded and compiled by one process only. A process takes a block by creating its claim
    file with O_EXCL (atomic on a local or POSIX file system); a block already claimed by another process is
    skipped. Claims are never released; a process restarted with the same `owner` (e.g. host and GPU index)
    takes its own unfinished blocks back. Use a fresh directory for a new collective run.
    """

    def __init__(self, path: str | os.PathLike[str], owner: str | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.owner = (owner or f"{socket.gethostname()}:{os.getpid()}").replace(" ", "_")
        self.mine: set[str] = set()

    @staticmethod
    def block_key(cell: Cell) -> str:
        raw = json.dumps([cell.gpu, *cell.group_key, cell.engine, cell.engine_params], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def _owned_by_me(self, key: str) -> bool:
        if key in self.mine:
            return True
        try:
            owner = (self.path / key).read_text().split(" ", 1)[0]
        except FileNotFoundError:
            return False
        if owner == self.owner:
            self.mine.add(key)
            return True
        return False

    def taken_elsewhere(self, cell: Cell) -> bool:
        key = self.block_key(cell)
        return (self.path / key).exists() and not self._owned_by_me(key)

    def take(self, cell: Cell) -> bool:
        """True if this process owns the cell's block (now or already)."""
        key = self.block_key(cell)
        if key in self.mine:
            return True
        try:
            fd = os.open(self.path / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return self._owned_by_me(key)
        with os.fdopen(fd, "w") as f:
            f.write(f"{self.owner} {cell.label()}\n")
        self.mine.add(key)
        return True


def first_cell_budget_s(cells: Sequence[Cell], records: Sequence[Record], retry_failed: bool = False,
                        catalog: Any = None) -> float | None:
    """The smallest time budget (s) with which a fresh `run_grid` of `cells` on the card of `records` (a store
    holds one card's records) would start a cell: over the cells not yet recorded, the least
    `_Estimator.estimate_cell` of a cell starting a model group, times BUDGET_SAFETY; 0.0 where such a cell
    has no estimate (the budget starts it); None when no cell is pending. A call whose worker budget is below
    it measures nothing (s27-d spent 63 s of device time learning that), so the plan runner skips such a step
    and a session can check its last call before making it (`measure grid --dry-run`, `first_cell_budget_s`)."""
    names = [r.gpu_name for r in records]
    device_name = max(set(names), key=names.count) if names else None
    prior = [r for r in records if r.gpu_name == device_name]
    todo, _ = pending_cells(cells, done_keys(prior, retry_failed), device_name)
    if not todo:
        return None
    estimator = _Estimator(prior, engine_bases(catalog))
    costs = [estimator.estimate_cell(c, True) for c in todo]
    return 0.0 if any(c is None for c in costs) else min(costs) * BUDGET_SAFETY


def pending_cells(cells: Sequence[Cell], done: set[tuple[str, str | None]], device_name: str | None,
                  ) -> tuple[list[Cell], int]:
    """Cells not yet recorded for this device (duplicates dropped) and how many were already done."""
    out, seen, already = [], set(), 0
    for c in cells:
        h = c.content_hash
        if h in seen:
            continue
        seen.add(h)
        if (h, device_name) in done:
            already += 1
        else:
            out.append(c)
    return out, already


def resolve_gpu_id(device_name: str | None, catalog: Any = None) -> str | None:
    """The catalogue's GPU id of a device name (e.g. 'NVIDIA H200' -> 'h200'); None for no name or a name the
    catalogue does not know. `catalog` None: the packaged catalogue."""
    if device_name is None:
        return None
    try:
        if catalog is None:
            from recommender.catalog import load_catalog

            catalog = load_catalog()
        g = catalog.gpu(device_name)
    except Exception:  # noqa: BLE001 - unknown device: pinned cells are simply not ours
        return None
    return getattr(g, "id", None) or (g.get("id") if isinstance(g, dict) else None)


def _make_progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    disable=not (enabled and console.is_terminal), transient=False)


def run_grid(spec: GridSpec, runner: CellRunner, store: Store, *, device_name: str | None,
             meter: Any = None, clock: Clock | None = None, progress: bool = True,
             retry_failed: bool = False, stop_after: int | None = None, time_budget_s: float | None = None,
             cells: Sequence[Cell] | None = None, catalog: Any = None, gpu_id: str | None = None,
             close_runner: bool = True, log: Callable[[str], None] | None = None,
             claims: ClaimDir | None = None, device_uuid: str | None = None) -> Summary:
    """Run every cell of `spec` not yet in `store` for `device_name`; return a Summary.

    - `cells`: an already expanded list (skips `expand(spec, catalog)`); ordering follows `spec.order`.
    - `gpu_id`: this device's catalogue id; cells pinned to another GPU (`cell.gpu`) are left out. When
      None it is looked up from `device_name` in the catalogue.
    - `stop_after`: run at most this many cells; `time_budget_s`: stop before a cell that would not
      finish within this many seconds from the call (`_Estimator.estimate_cell` x 1.1 plus the expected
      cooldown).
    - `meter.temperature_c()` feeds adaptive cooldown; `clock` (`now()`, `sleep()`) is injectable.
    - Ctrl-C stops after recording nothing for the interrupted cell (`stopped="interrupted"`; the summary
      names the cell, how long it ran and its estimate: `interrupted_cell`, `interrupted_after_s`,
      `interrupted_estimate_s`).
    - `close_runner`: call `runner.close()` at the end.
    - `claims`: share the grid with other processes through a claim directory (see `ClaimDir`).
    - `device_uuid`: this GPU's NVML UUID; a grid with `resume_per: gpu` counts as done only the cells this
      GPU recorded (its records' `gpu_uuid`) and shares no claims, so every GPU measures every cell once.
    """
    clock = clock or SystemClock()
    t_start = clock.now()
    all_cells = list(cells) if cells is not None else expand(spec, catalog)
    pinned = any(c.gpu for c in all_cells)
    if pinned and gpu_id is None:
        gpu_id = resolve_gpu_id(device_name, catalog)
    mine = [c for c in all_cells if c.gpu is None or c.gpu == gpu_id]
    ordered = order_cells(mine, spec.order, spec.order_seed, spec.shuffle_within_group)

    prior_records = [r for r in store.iter_records() if r.gpu_name == device_name]
    done_records = prior_records
    if spec.resume_per == "gpu":
        if not device_uuid:
            raise GridError(f"{spec.source_path or spec.name}: resume_per: gpu needs the GPU's UUID (a GPU meter); "
                            "run it on a GPU, or set resume_per: card")
        done_records = [r for r in prior_records if r.gpu_uuid == device_uuid]
        claims = None  # every GPU measures every cell: a claim would hand a cell to one GPU only
    done = done_keys(done_records, retry_failed)
    todo, already = pending_cells(ordered, done, device_name)
    estimator = _Estimator(prior_records, engine_bases(catalog))
    if spec.order == "cheapest":  # the blocks this store's records say are quickest first
        todo = order_cells(todo, "cheapest", cost=estimator.prior_cost)
    summary = Summary(device_name=device_name, total=len(todo) + already, already_done=already,
                      other_device=len(all_cells) - len(mine))

    emit = log
    if emit is None and progress and not prog_is_tty():
        emit = default_log
    cooldown = Cooldown(spec.cooldown, meter, clock, log=lambda m: emit(m) if emit else None)
    prog = _make_progress(progress)
    if emit is None and not prog.disable:
        def emit(msg: str) -> None:
            prog.console.print(msg, markup=False, highlight=False)
    task = prog.add_task(f"grid {spec.name}", total=len(todo))
    last_group: tuple | None = None
    running: tuple[Cell, float, float | None] | None = None  # the cell being measured, its start, its estimate
    try:
        with prog:
            cooldown.start()
            for cell in todo:
                if stop_after is not None and summary.ran >= stop_after:
                    summary.stopped = "stop_after"
                    break
                if claims is not None and claims.taken_elsewhere(cell):
                    summary.claimed_elsewhere += 1
                    continue
                new_group = (cell.gpu, cell.group_key) != last_group
                wait_est = cooldown.estimate() if summary.ran else 0.0
                cell_est = estimator.estimate_cell(cell, new_group)
                # a cell that would overrun the budget is passed over, not the rest of the list: with per-method
                # estimates a slow LLM.int8 block must not keep a worker from the 16-bit cells after it
                if time_budget_s is not None and not _fits(clock.now() - t_start, wait_est, cell_est, time_budget_s):
                    summary.stopped = "time_budget"
                    continue
                waited = cooldown.wait() if summary.ran else 0.0
                summary.cooldown_s += waited
                if time_budget_s is not None and waited and not _fits(clock.now() - t_start, 0.0, cell_est,
                                                                      time_budget_s):
                    summary.stopped = "time_budget"
                    continue
                if claims is not None and not claims.take(cell):
                    summary.claimed_elsewhere += 1
                    continue
                prog.update(task, description=f"{cell.label()}")
                t0 = clock.now()
                running = (cell, t0, cell_est)
                rec = safe_run(runner, cell)
                wall = clock.now() - t0
                finish_record(rec, device_name=device_name, cooldown_s=waited, grid_file=spec.source_path)
                store.append(rec)
                running = None  # recorded: an interrupt from here on loses nothing of it
                # a failed or skipped cell's time says nothing of its shape's cost: not scaled to others
                estimator.add(wall, new_group, cell.engine, cell.quant, cell=cell if rec.status == "ok" else None,
                              failed=rec.status == "failed")
                last_group = (cell.gpu, cell.group_key)
                summary.ran += 1
                _count(summary, cell, rec)
                prog.advance(task)
                if emit:
                    emit(_cell_line(summary.ran, len(todo), cell, rec, wall, waited))
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        if running is not None:
            summary.interrupted_cell = running[0].label()
            summary.interrupted_after_s = clock.now() - running[1]
            summary.interrupted_estimate_s = running[2]
    finally:
        if close_runner:
            try:
                runner.close()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"runner.close() failed: {e}", RuntimeWarning, stacklevel=2)
    summary.remaining = len(todo) - summary.ran - summary.claimed_elsewhere
    summary.elapsed_s = clock.now() - t_start
    return summary


def _fits(elapsed: float, wait_est: float, cell_est: float | None, budget: float) -> bool:
    if elapsed >= budget:
        return False
    if cell_est is None:  # nothing to go by: start it
        return elapsed + wait_est < budget
    return elapsed + wait_est + cell_est * BUDGET_SAFETY <= budget


def _count(summary: Summary, cell: Cell, rec: Record) -> None:
    if rec.status == "ok":
        summary.ok += 1
    elif rec.status == "skipped":
        summary.skipped += 1
    else:
        summary.failed += 1
        summary.failures.append((cell.label(), rec.error or ""))


def _cell_line(n: int, total: int, cell: Cell, rec: Record, wall: float, waited: float) -> str:
    if rec.status == "ok":
        what = f"ok {rec.tokens_per_s:.1f} tok/s {rec.decode_energy_per_token_j:.4g} J/tok"
    else:
        what = f"{rec.status}: {(rec.error or '').splitlines()[0][:160] if rec.error else ''}"
    cd = f", cooldown {waited:.0f} s" if waited else ""
    return f"[{n}/{total}] {cell.label()} {what} ({wall:.1f} s{cd})"


def prog_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
