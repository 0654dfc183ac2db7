"""Backtest of `measure.executor._Estimator.prior_cost`, the store-only estimate of a pending cell's wall
time that `--set order=cheapest` sorts by, against the previous (workload- and batch-blind) method.

    python benchmarks/bench_cell_cost_estimate.py [STORE.jsonl ...]

For every ok record of a store (default: the H100 and H200 campaign stores), leave-one-out: an estimator
is built from all the other records of the same file (same GPU, as `run_grid` does), asked for the record's
cell, and compared with `record_cost_s(record)`, the wall time the cell took (seconds). Printed per store and
subset: n, the median |ln(estimate / actual)| (0.69 = off by 2x) and Spearman's rank correlation (what
matters for ordering cells cheapest-first), old vs new.

`1024/256 cross-workload` is the case that misled the last GPU run: the 1024/256-token records are
estimated from a store without any 1024/256 record (only the 256/128 ones), so the estimate must come from
scaling other workloads. `prospective` is what a session actually faces: each record is estimated from the
records of earlier sessions only (a session = records less than SESSION_GAP_S apart in `created_at`), so
cells measured twice, or the rest of the same session, cannot leak into the estimate. Leave-one-out excludes
only the record itself and so flatters both methods.

`budget replay` checks the time budget's `estimate_cell` (not `prior_cost`) for cells continuing a model
group: built from earlier sessions' records, told the block's earlier cells of the session, median ratio of
estimate to actual wall time, old (compile time batch-blind, never below the blind `estimate`) vs new.
Compiled cells are split by whether earlier sessions' records of the method show compile times varying with
the batch size (`varies`: the new model applies) or not (`unknown`: e.g. the first session to run a method
at batch 32, whose estimate stays as before).

`budget replay, group start` checks `estimate_cell` for cells starting a model group (the first cell of a
block in its session): built from earlier sessions' records, told the session's earlier ok cells of the same
GPU (by UUID: each worker keeps its own estimator; block starts as starting a group), median and lowest
ratio of estimate to actual wall time and how many fell below 1.0, old (`OldModelBlindEstimator`: this run's
cells scaled by shape only, whatever their model) vs new (also by the models' per-model factors, and never
below `prior_cost` of the cell). The lowest ratios are of methods no earlier session ran (no store model:
`estimate` alone, unchanged). Both replays take a block's cells for one process's (a session's cells of one
block on several GPUs too), so their `new` column judges cells that compiled in another process as
continuing.

`worker replay` checks `estimate_cell` as each worker process met its cells (a session's records of one GPU
and one `command`, in `created_at` order; a new model group where the cell's group differs from the
previous cell's, as `run_grid` decides), split by whether the cell compiled (`_compiled`: graphs compiled in
its warm-up, or a warm-up more than 5 s over its calls): old (`PositionBlindEstimator`: the estimate blind
to compilation) vs new (a cell that `will_compile` estimated at least at a high compile time). Also: how
often `will_compile` agrees with the record, and `end of budget`: each such worker's cells against budgets
of 180-600 s (a worker ends at the first cell the check passes over or at a cell that overruns the hard
stop HARD_STOP_S after the budget): cells run (and their seconds), cells killed (and the GPU seconds they
took until killed), cells passed over (and how many of those would have ended before the hard stop: the
cost of pessimism).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from measure.cell import Cell
from measure.executor import BUDGET_SAFETY, _compiled, _Estimator, _layer_ratio, record_cost_s
from measure.record import Record
from measure.store import Store
from measure.worker_processes import session_starts, worker_processes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STORES = ("datasets/measurements/h100/campaign.jsonl", "datasets/measurements/h200/campaign.jsonl")
SESSION_GAP_S = 30 * 60  # device sessions lie hours apart; the calls of one session minutes apart
COOLDOWN_S = 8.0  # the cooldown between a worker's cells (the H100 campaign logs: 8 s)
# scripts/device_run_multi.sh stops a worker 30 s after its budget, counted from its launch (Python's start-up
# comes out of those 30 s)
HARD_STOP_S = 30.0
BUDGETS_S = tuple(range(180, 601, 60))  # the budgets the end-of-budget simulation tries (s)


class OldEstimator:
    """`_Estimator.prior_cost` before it followed workload and batch size: the mean cost of the method's
    records x the model's mean ratio to its methods' means (or its layers' ratio)."""

    def __init__(self, prior_records: Sequence[Record]):
        self.prior: dict[tuple, list[float]] = {}
        costs = [(r, v) for r in prior_records if (v := record_cost_s(r))]
        for r, v in costs:
            self.prior.setdefault((r.engine, r.quant), []).append(v)
        self.model_ratio: dict[tuple, list[float]] = {}
        self.method_models: dict[tuple, list[str]] = {}
        for r, v in costs:
            method = self.prior[(r.engine, r.quant)]
            self.model_ratio.setdefault((r.model, r.engine), []).append(v / (sum(method) / len(method)))
            self.method_models.setdefault((r.engine, r.quant), []).append(r.model)

    def prior_cost(self, cell: Cell) -> float | None:
        def mean(xs):
            return sum(xs) / len(xs) if xs else None

        base = mean(self.prior.get((cell.engine, cell.quant), []))
        if base is None:
            return None
        ratio = mean(self.model_ratio.get((cell.model, cell.engine), []))
        if ratio is None:
            ratio = _layer_ratio(cell.model, self.method_models.get((cell.engine, cell.quant), []))
        return base * ratio


class OldBudgetEstimator(_Estimator):
    """`_Estimator` before compile time followed the batch size: the method's mean compile time at every
    batch size, and `estimate_cell` never below `estimate` (the floor kept for compiled cells too), blind to
    whether a cell compiles."""

    def _compile_s(self, engine, quant, batch):
        obs = self.calls.get((engine, quant)) or []
        return sum(o.compile_s for o in obs) / len(obs) if obs else 0.0

    def _compile_varies(self, engine, quant):
        return False

    def will_compile(self, cell, new_group):  # nor told compiling cells apart
        return False


class PositionBlindEstimator(_Estimator):
    """`_Estimator` before it told cells that will compile apart: `estimate_cell` is `_shaped_estimate`
    whatever the cell's place in its model group (the `worker replay`'s "old")."""

    def will_compile(self, cell, new_group):
        return False


class OldModelBlindEstimator(_Estimator):
    """`_Estimator.estimate_cell` before it followed the model: this run's cells scaled to the pending
    cell's shape only (a 0.5B model's group start taken for a 7B one's), no `prior_cost` for group starts."""

    def estimate_cell(self, cell, new_group):
        base = self.estimate(new_group, cell.engine, cell.quant)
        engine, quant = cell.engine, cell.quant
        if not self.calls.get((engine, quant)):
            return base
        shape = (cell.prompt_tokens, cell.output_tokens, cell.batch_size, cell.warmup + cell.repetitions)
        want = self._shape_cost(engine, quant, shape, new_group)
        scaled_walls = []
        for wall, seen_shape, _model in self.shaped.get((engine, quant, new_group), []):
            had = self._shape_cost(engine, quant, seen_shape, new_group)
            if want is not None and had and had > 0:
                scaled_walls.append(wall * want / had)
        if scaled_walls:
            scaled = sum(scaled_walls) / len(scaled_walls)
        else:
            scaled = self.prior_cost(cell)
            full = self._shape_cost(engine, quant, shape, True)
            if scaled is not None and want is not None and full:
                scaled *= want / full
        if base is None or scaled is None:
            return scaled if base is None else base
        if not new_group and self._compile_varies(engine, quant):
            return scaled
        return max(base, scaled)


# what the runner adds to a record's engine params (measure/record.py), not part of the grid's cell
RUNNER_ENGINE_KEYS = ("compiled", "warmup_tokens", "note", "traceback_tail", "batch_sizes_before",
                      "graphs_compiled_warmup", "graphs_compiled_timed", "inductor_overrides")


def cell_of(r: Record) -> Cell:
    return Cell(model=r.model, quant=r.quant, engine=r.engine, batch_size=r.batch_size,
                prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens, weights=r.weights,
                repetitions=r.repetitions, warmup=r.warmup, seed=r.seed, quant_params=dict(r.quant_params),
                engine_params={k: v for k, v in r.engine_params.items() if k not in RUNNER_ENGINE_KEYS})


def ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1  # ties: mean rank
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va and vb else float("nan")


def backtest(records: list[Record], targets: Callable[[Record], bool],
             history: Callable[[Record, Record], bool] = lambda r, target: r is not target
             ) -> list[tuple[Record, float, float, float]]:
    """(record, actual s, old estimate s, new estimate s) for each ok target with both estimates."""
    rows = []
    for rec in records:
        actual = record_cost_s(rec)
        if not actual or not targets(rec):
            continue
        prior = [r for r in records if r.gpu_name == rec.gpu_name and history(r, rec)]
        cell = cell_of(rec)
        old, new = OldEstimator(prior).prior_cost(cell), _Estimator(prior).prior_cost(cell)
        if old and new:
            rows.append((rec, actual, old, new))
    return rows


def summarise(rows) -> tuple[int, float, float, float, float]:
    actual = [a for _, a, _, _ in rows]
    old = [o for _, _, o, _ in rows]
    new = [n for _, _, _, n in rows]

    def err(est):
        return statistics.median(abs(math.log(e / a)) for e, a in zip(est, actual, strict=True))

    return len(rows), err(old), err(new), spearman(old, actual), spearman(new, actual)


def budget_replay(records: Sequence[Record]) -> dict[str, list[tuple[float, float]]]:
    """Replay of the time budget's `estimate_cell` for cells continuing a model group: for each ok record
    with a smaller batch size of the same block (model, method, engine, workload, GPU) in its session, an
    estimator built from the records of earlier sessions observes the block's earlier ok cells (the first
    as starting the group) and estimates the record's cell. Returns per subset the (old, new) ratios of
    estimate / `record_cost_s` (1.0 = exact, seconds over seconds)."""
    starts = session_starts(records, SESSION_GAP_S)

    def block(r):
        return (starts.get(id(r)), r.gpu_name, r.model, r.quant, r.engine, r.prompt_tokens, r.output_tokens)

    out: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        actual = record_cost_s(rec)
        if not actual or id(rec) not in starts:
            continue
        earlier = sorted((r for r in records if block(r) == block(rec) and r.batch_size < rec.batch_size),
                         key=lambda r: r.batch_size)
        if not earlier:  # it started its block
            continue
        prior = [r for r in records if r.gpu_name == rec.gpu_name and id(r) in starts
                 and starts[id(r)] < starts[id(rec)]]
        ratios, known = [], _Estimator(prior)._compile_varies(rec.engine, rec.quant)
        for cls in (OldBudgetEstimator, _Estimator):
            est = cls(prior)
            for r in earlier:
                if (wall := record_cost_s(r)) is not None:
                    est.add(wall, r is earlier[0], r.engine, r.quant, cell=cell_of(r))
            value = est.estimate_cell(cell_of(rec), False)
            ratios.append(value / actual if value else None)
        if None in ratios:
            continue
        kind = "compiled" if "compiled" in (rec.engine or "") else "eager"
        label = f"{kind} b>=32" if rec.batch_size >= 32 else f"{kind} b<32"
        if kind == "compiled":  # whether earlier sessions' records show compile time varying with batch
            label += " (varies)" if known else " (unknown)"
        out.setdefault(label, []).append((ratios[0], ratios[1]))
    return out


def group_start_replay(records: Sequence[Record]) -> dict[str, list[tuple[float, float, Record]]]:
    """Replay of the time budget's `estimate_cell` for cells starting a model group: for each ok record that
    is the first of its block (model, method, engine, workload, GPU) in its session, an estimator built from
    the records of earlier sessions observes the session's earlier ok cells of that GPU (`gpu_uuid`, by `created_at`;
    those first in their block as starting a group) and estimates the record's cell as starting one. Returns
    per subset (eager, compiled) the (old, new, record) with old and new the ratios of estimate /
    `record_cost_s` (1.0 = exact)."""
    from datetime import datetime

    starts = session_starts(records, SESSION_GAP_S)

    def block(r):
        return (starts.get(id(r)), r.gpu_name, r.model, r.quant, r.engine, r.prompt_tokens, r.output_tokens)

    def t(r):
        return datetime.fromisoformat(r.created_at).timestamp()

    first: dict[tuple, Record] = {}
    for r in sorted((r for r in records if id(r) in starts), key=lambda r: (t(r), r.batch_size)):
        first.setdefault(block(r), r)
    out: dict[str, list[tuple[float, float, Record]]] = {}
    for rec in records:
        actual = record_cost_s(rec)
        if not actual or id(rec) not in starts or first.get(block(rec)) is not rec:
            continue
        prior = [r for r in records if r.gpu_name == rec.gpu_name and id(r) in starts
                 and starts[id(r)] < starts[id(rec)]]
        seen = sorted((r for r in records if (r.gpu_name, r.gpu_uuid) == (rec.gpu_name, rec.gpu_uuid)
                       and id(r) in starts and starts[id(r)] == starts[id(rec)] and t(r) < t(rec)
                       and record_cost_s(r)), key=t)  # this worker's (GPU's) own cells, as `run_grid` adds them
        ratios = []
        for cls in (OldModelBlindEstimator, _Estimator):
            est = cls(prior)
            for r in seen:
                est.add(record_cost_s(r), first.get(block(r)) is r, r.engine, r.quant, cell=cell_of(r))
            value = est.estimate_cell(cell_of(rec), True)
            ratios.append(value / actual if value else None)
        if None in ratios:
            continue
        kind = "compiled" if "compiled" in (rec.engine or "") else "eager"
        out.setdefault(kind, []).append((ratios[0], ratios[1], rec))
    return out


def _prior_of(records: Sequence[Record], first: Record, starts: dict[int, float]) -> list[Record]:
    """The records `run_grid` would estimate `first`'s worker from: earlier sessions' of its GPU model."""
    return [r for r in records if r.gpu_name == first.gpu_name and id(r) in starts
            and starts[id(r)] < starts[id(first)]]


def _feed(est: _Estimator, rec: Record, new_group: bool) -> None:
    """Tell `est` of a cell its worker ran, as `run_grid` does."""
    wall = record_cost_s(rec)
    est.add(wall or 0.0, new_group, rec.engine, rec.quant, cell=cell_of(rec) if wall else None,
            failed=rec.status == "failed")


def worker_replay(records: Sequence[Record]) -> list[tuple[str, bool, bool, float, float]]:
    """Replay of the time budget's `estimate_cell` as each worker process met its cells: the worker's
    estimator is built from earlier sessions' records of the GPU and told the worker's earlier cells (a cell
    starts a model group when its `group_key` differs from the worker's previous cell's, as in `run_grid`).
    Returns for each ok cell (kind "compiled" or "eager", whether it compiled (`_compiled`), whether the new
    estimator's `will_compile` said so, old / actual, new / actual) with old `PositionBlindEstimator`, new
    `_Estimator` and actual `record_cost_s` (1.0 = exact)."""
    starts = session_starts(records, SESSION_GAP_S)
    rows = []
    for seq in worker_processes(records, SESSION_GAP_S, split="session"):
        prior = _prior_of(records, seq[0], starts)
        old, new = PositionBlindEstimator(prior), _Estimator(prior)
        last = None
        for rec in seq:
            new_group = rec_group(rec) != last
            actual, cell = record_cost_s(rec), cell_of(rec)
            if actual:
                o, n = old.estimate_cell(cell, new_group), new.estimate_cell(cell, new_group)
                if o and n:
                    kind = "compiled" if "compiled" in (rec.engine or "") else "eager"
                    rows.append((kind, _compiled(rec), new.will_compile(cell, new_group), o / actual, n / actual))
            for est in (old, new):
                _feed(est, rec, new_group)
            last = rec_group(rec)
    return rows


def rec_group(r: Record) -> tuple:
    """The record's cell's `group_key` (what `run_grid` compares to tell a new model group)."""
    return cell_of(r).group_key


def end_of_budget(records: Sequence[Record], cls: type[_Estimator], budgets: Sequence[float] = BUDGETS_S
                  ) -> dict[str, float]:
    """The cells of each worker that ran a compiled cell, replayed against each budget (s) with `cls`'s
    `estimate_cell` (x BUDGET_SAFETY, plus COOLDOWN_S between cells, as `_fits`), actual times
    `record_cost_s`. A worker ends at the first cell the check passes over (`passed`; `passed_fit`: it would
    have ended before the hard deadline, the budget + HARD_STOP_S) or at the first started cell that
    overruns the hard deadline (`killed`, `lost_s`: its seconds on the GPU until killed). `ran`, `ran_s`:
    cells completed and their seconds; `workers`: worker x budget runs."""
    starts = session_starts(records, SESSION_GAP_S)
    out = {"workers": 0, "ran": 0, "ran_s": 0.0, "passed": 0, "passed_fit": 0, "killed": 0, "lost_s": 0.0}
    for seq in worker_processes(records, SESSION_GAP_S, split="session"):
        if not any(record_cost_s(r) and "compiled" in (r.engine or "") for r in seq):
            continue  # eager workers: their estimates did not change
        prior = _prior_of(records, seq[0], starts)
        for budget in budgets:
            est, t, last, ran = cls(prior), 0.0, None, 0
            out["workers"] += 1
            for rec in seq:
                new_group = rec_group(rec) != last
                actual = record_cost_s(rec) or 0.0
                wait = COOLDOWN_S if ran else 0.0
                value = est.estimate_cell(cell_of(rec), new_group)
                fits = t < budget and (t + wait < budget if value is None
                                       else t + wait + value * BUDGET_SAFETY <= budget)
                if not fits:
                    out["passed"] += 1
                    out["passed_fit"] += t + wait + actual <= budget + HARD_STOP_S
                    break
                if t + wait + actual > budget + HARD_STOP_S:
                    out["killed"] += 1
                    out["lost_s"] += max(budget + HARD_STOP_S - t - wait, 0.0)
                    break
                t += wait + actual
                ran += 1
                out["ran_s"] += actual
                _feed(est, rec, new_group)
                last = rec_group(rec)
            out["ran"] += ran
    return out


def is_long(r: Record) -> bool:
    return (r.prompt_tokens, r.output_tokens) == (1024, 256)


def main(argv: Sequence[str] | None = None) -> None:
    paths = list(argv if argv is not None else sys.argv[1:]) or [str(REPO / p) for p in DEFAULT_STORES]
    header = f"{'store':<10} {'subset':<28} {'n':>4}  {'med|ln| old':>11} {'new':>6}  {'spearman old':>12} {'new':>6}"
    print(header)
    print("-" * len(header))
    for path in paths:
        records = list(Store(path).iter_records())
        name = Path(path).parent.name or Path(path).stem
        subsets = [
            ("all (leave-one-out)", backtest(records, lambda r: True)),
            ("1024/256 (leave-one-out)", backtest(records, is_long)),
            ("1024/256 cross-workload", backtest(records, is_long, lambda r, target: not is_long(r))),
        ]
        starts = session_starts(records, SESSION_GAP_S)

        def earlier(r, target, starts=starts):
            return id(r) in starts and id(target) in starts and starts[id(r)] < starts[id(target)]

        subsets += [("all (prospective)", backtest(records, lambda r: True, earlier)),
                    ("1024/256 (prospective)", backtest(records, is_long, earlier))]
        for label, rows in subsets:
            if not rows:
                print(f"{name:<10} {label:<28} {0:>4}  (no records)")
                continue
            n, e_old, e_new, s_old, s_new = summarise(rows)
            print(f"{name:<10} {label:<28} {n:>4}  {e_old:>11.3f} {e_new:>6.3f}  {s_old:>12.3f} {s_new:>6.3f}")
        for label, hist in (("leave-one-out", lambda r, target: r is not target), ("prospective", earlier)):
            long_b32 = [row for row in backtest(records, lambda r: is_long(r) and r.batch_size == 32, hist)
                        if row[0].quant == "fp32"]
            if long_b32:
                a = statistics.median(x[1] for x in long_b32)
                o = statistics.median(x[2] for x in long_b32)
                w = statistics.median(x[3] for x in long_b32)
                print(f"{name:<10} fp32 1024/256 b32 ({label}, {len(long_b32)}): median actual {a:.0f} s, "
                      f"old estimate {o:.0f} s, new {w:.0f} s")
        replay = budget_replay(records)
        for label in sorted(replay):
            rows = replay[label]
            old, new, _, _, under_old, under_new = ratio_stats(rows, 0, 1)
            print(f"{name:<10} budget replay, continuing {label:<24} n={len(rows):>3}: median estimate_cell / "
                  f"actual old {old:.2f}, new {new:.2f}; under 1.0 old {under_old}, new {under_new}")
        groups = group_start_replay(records)
        for label in sorted(groups):
            rows = groups[label]
            old, new, lo_old, lo_new, under_old, under_new = ratio_stats(rows, 0, 1)
            print(f"{name:<10} budget replay, group start {label:<21} n={len(rows):>3}: median estimate_cell / "
                  f"actual old {old:.2f}, new {new:.2f}; lowest old {lo_old:.2f}, new {lo_new:.2f}; "
                  f"under 1.0 old {under_old}, new {under_new}")
        rows = worker_replay(records)
        for label, pick in (("compiled, compiling", lambda k, c: k == "compiled" and c),
                            ("compiled, reusing", lambda k, c: k == "compiled" and not c),
                            ("eager", lambda k, c: k == "eager")):
            sel = [x for x in rows if pick(x[0], x[1])]
            if not sel:
                continue
            old, new, lo_old, lo_new, under_old, under_new = ratio_stats(sel, 3, 4)
            print(f"{name:<10} worker replay, {label:<20} n={len(sel):>3}: median estimate_cell / actual old "
                  f"{old:.2f}, new {new:.2f}; lowest old {lo_old:.2f}, new {lo_new:.2f}; under 1.0 old "
                  f"{under_old}, new {under_new}")
        compiled = [x for x in rows if x[0] == "compiled"]
        if compiled:
            hit = sum(x[1] == x[2] for x in compiled)
            print(f"{name:<10} worker replay, will_compile agrees with the record (compiled or not) for {hit} "
                  f"of {len(compiled)} compiled-engine cells")
            for label, cls in (("old", PositionBlindEstimator), ("new", _Estimator)):
                e = end_of_budget(records, cls)
                print(f"{name:<10} end of budget {label} ({e['workers']} worker x budget runs, budgets "
                      f"{BUDGETS_S[0]}-{BUDGETS_S[-1]} s): cells run {e['ran']} ({e['ran_s']:.0f} s), killed at "
                      f"the hard stop {e['killed']} ({e['lost_s']:.0f} GPU-s lost), passed over {e['passed']} (of "
                      f"which would have finished before the hard stop {e['passed_fit']})")


def ratio_stats(rows: Sequence[Sequence], i_old: int, i_new: int) -> tuple:
    """Estimate / actual ratios at positions `i_old` and `i_new` of each row: median old, median new, lowest
    old, lowest new, and how many old and new fell below 1.0."""
    olds, news = [x[i_old] for x in rows], [x[i_new] for x in rows]
    return (statistics.median(olds), statistics.median(news), min(olds), min(news),
            sum(v < 1.0 for v in olds), sum(v < 1.0 for v in news))


if __name__ == "__main__":
    main()
