"""Resolve a query, build candidates, exclude what cannot run, predict, constrain, rank.

Everything is vectorised over `Candidates` (numpy); only the rows shown become dicts.
Exclusions are integer codes per row (`EXCLUDED`), turned into one-line reasons only for shown rows.
Priorities: energy -> EOR (desc), accuracy -> score (desc), latency -> latency_s (asc),
balanced -> TWEOR (desc); ties break on EOR, then energy.

Two passes (ranking the whole catalogue within ~200 ms with the learned model): ranking and constraints
use p50 only, so `recommend` asks the cost model for the p50 of just the targets the priority, the
tie-breakers and the constraints need (`ranking_targets`; `predict_p50` where the model has it, which
runs one LightGBM booster per target instead of three). p10/p90, and p50 of the other targets, are
computed by `Result.complete(rows)` for the rows that are output (`candidate_dicts` and `explain` call
it), with the full `CostModel.predict`; the p50 values are the same in both passes. `full=True` computes
everything for every row at once (what `--all` needs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recommender.candidates import Candidates
from recommender.catalog import Catalog, load_catalog
from recommender.costmodel.base import CostModel, Quantiles
from recommender.errors import UserError
from recommender.evidence import (
    MIN_EVIDENCE_LEVELS,
    accuracy_basis,
    accuracy_is_learned,
    card_range_of,
    coverage_of,
    evidence,
    meets_min_evidence,
    outside_training_range,
)
from recommender.memory import BREAKDOWN_KEYS as MEMORY_BREAKDOWN_KEYS
from recommender.memory import MemoryEstimate, describe_misfit, estimate, tight_fit, tight_fit_mask
from recommender.workload import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    DEFAULT_REQUESTS,
    Workload,
    evaluate,
)
from recommender.workload import baseline_score as _baseline_score

PRIORITIES = ("energy", "accuracy", "latency", "balanced")
#: priority -> (metric, higher is better)
PRIORITY_METRIC = {"energy": ("eor", True), "accuracy": ("accuracy", True),
                   "latency": ("latency_s", False), "balanced": ("tweor", True)}
DEFAULT_BATCH_SIZES = (1, 8, 32, 64)
DEFAULT_PRIORITY = "energy"
TEST_MODEL = "tiny-test"
UNQUANTIZED = ("fp32", "fp16", "bf16")

# exclusion codes, in the order they are checked (the first that applies is reported)
OK, NO_SPECS, COMPUTE_CAP, BF16, ENGINE, CONTEXT, MEMORY, NO_PREDICTION, ACCURACY, LATENCY, ENERGY = range(11)
MEASURED_FAILURE = 11  # checked after MEMORY: the exact cell failed every time we measured it
ENGINE_HARDWARE = 12  # the engine does not run on this GPU (engines.yaml `hardware`)
BATCH = 13  # the method does not run at this batch size on this engine (quants.yaml `min_batch_size`)
EVIDENCE = 14  # its numbers rest on less evidence than --min-evidence asks (recommender/evidence.py)
ENGINE_MODEL = 15  # the engine changes nothing for this model (engines.yaml `attention`: a variant for some models)
#: exclusions that no constraint caused (the candidate cannot run or has no prediction)
HARDWARE_CODES = (NO_SPECS, BF16, COMPUTE_CAP, ENGINE, ENGINE_HARDWARE, ENGINE_MODEL, BATCH, CONTEXT, MEMORY,
                  MEASURED_FAILURE, NO_PREDICTION)
EXCLUDED = {NO_SPECS: "GPU or model specs unknown", COMPUTE_CAP: "compute capability too low",
            BF16: "no bf16 on this GPU", ENGINE: "engine does not support the quantization",
            CONTEXT: "context longer than the model's max positions", MEMORY: "does not fit in memory",
            MEASURED_FAILURE: "failed when measured", NO_PREDICTION: "no cost-model prediction",
            ENGINE_HARDWARE: "engine does not run on this GPU",
            BATCH: "method does not run at this batch size on this engine",
            ACCURACY: "below the accuracy floor",
            LATENCY: "above the latency ceiling", ENERGY: "above the energy ceiling",
            EVIDENCE: "less evidence than --min-evidence",
            ENGINE_MODEL: "engine variant changes nothing for this model"}


class NoCandidateError(UserError):
    """Every candidate was excluded by the hardware or the constraints (message says which). `warnings`: the
    query's warnings (e.g. a stale catalogue), which the CLI prints before the error."""

    def __init__(self, message: str, warnings: list[str] | None = None):
        super().__init__(message)
        self.warnings = list(warnings or [])


@dataclass
class Query:
    """What the user asked for (names as typed; None = default)."""

    gpus: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    quants: tuple[str, ...] = ()
    engines: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    requests: int = DEFAULT_REQUESTS
    profile: str | None = None
    priority: str | None = None
    min_accuracy: float | None = None  # absolute, 0-100 score
    max_latency_ms: float | None = None  # one request
    max_energy_wh: float | None = None  # the whole workload
    price_kwh: float | None = None
    grid_gco2_kwh: float | None = None
    region: str | None = None
    pue: float | None = None
    model_dir: str | None = None
    #: keep only candidates whose numbers rest on at least this evidence (evidence.MIN_EVIDENCE_LEVELS)
    min_evidence: str | None = None


@dataclass
class Constraint:
    """A bound on one metric's p50: `metric >= bound` (min) or `metric <= bound` (max)."""

    code: int
    metric: str  # accuracy | latency_ms | energy_wh | accuracy_rel
    kind: str  # min | max
    bound: float
    label: str  # e.g. "--max-latency-ms 5" or "profile 'edge' (max_latency_ms 500)"


@dataclass
class Result:
    """A ranked recommendation. Arrays are aligned with `cands` (all candidate rows)."""

    catalog: Catalog
    query: dict[str, Any]
    priority: str
    workload: Workload
    cands: Candidates
    mem: MemoryEstimate
    code: np.ndarray
    metrics: dict[str, Quantiles]
    measured: np.ndarray
    baseline: np.ndarray  # baseline score per row (0-100)
    tasks: list[tuple[str, ...]]  # per catalogue model index
    constraints: list[Constraint]
    order: np.ndarray  # ranked feasible rows, best first
    cost_model_name: str
    extra: dict[str, Any] = field(default_factory=dict)
    cost_model: CostModel | None = None
    #: rows whose metrics are complete (p10/p50/p90 of everything); the others have p50 of the ranking
    #: targets only (NaN elsewhere) until `complete(rows)`
    full: np.ndarray | None = None
    #: rows the cost model was asked about (fitting rows, or all with predict_excluded)
    predicted: np.ndarray | None = None
    #: cost-model targets whose p50 the ranking pass computed for every predicted row
    p50_targets: frozenset = frozenset()
    #: measured values found for the predicted rows ({target: Quantiles}, NaN where not measured), looked up
    #: once by the ranking pass and reused by `complete` (what ranked is what is shown)
    measured_values: dict | None = None
    #: the --min-evidence level asked for (None: no evidence filter)
    min_evidence: str | None = None

    def complete(self, rows) -> None:
        """Compute p10/p50/p90 of every target and metric for `rows` (those of them predicted in the
        ranking pass and not complete yet)."""
        if self.full is None or self.cost_model is None:
            return
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if self.predicted is not None:
            rows = rows[self.predicted[rows]]
        rows = rows[~self.full[rows]]
        if len(rows):
            _fill(self, rows, None)
            self.full[rows] = True

    @property
    def excluded(self) -> np.ndarray:
        return np.flatnonzero(self.code != OK)

    def excluded_counts(self) -> dict[str, int]:
        """Excluded rows by reason category."""
        counts = Counter(self.code[self.code != OK].tolist())
        return {EXCLUDED[k]: v for k, v in sorted(counts.items())}

    def priority_values(self, rows) -> np.ndarray:
        name, _ = PRIORITY_METRIC[self.priority]
        return self.metrics[name].p50[rows]

    def reason(self, i: int) -> str | None:
        """One-line reason why row `i` is excluded, or None."""
        code = int(self.code[i])
        if code == OK:
            return None
        c, cat = self.cands, self.catalog
        gpu = cat.gpus.rows[c.gpu_idx[i]]
        model = cat.models.rows[c.model_idx[i]]
        quant = cat.quants.rows[c.quant_idx[i]]
        engine = cat.engines.rows[c.engine_idx[i]]
        if code in (MEMORY, NO_SPECS):
            return describe_misfit(self.mem, i, gpu.id)
        if code == BF16:
            what = "bf16" if quant.id == "bf16" else f"{quant.id} computes in bf16, which"
            return f"{what} needs compute capability >= 8.0 (Ampere or newer); {gpu.id} has {gpu.compute_capability}"
        if code == COMPUTE_CAP:
            bf16 = " (no bf16 before Ampere)" if quant.id == "bf16" else ""
            return f"{quant.hardware_reason(gpu)}{bf16}"
        if code == ENGINE:
            return f"engine {engine.id} does not support quantization {quant.id}"
        if code == ENGINE_HARDWARE:
            return engine.hardware_reason(gpu) or EXCLUDED[code]
        if code == BATCH:
            return quant.batch_reason(engine.id, int(c.batch_size[i])) or EXCLUDED[code]
        if code == ENGINE_MODEL:
            return engine.model_reason(model) or EXCLUDED[code]
        if code == EVIDENCE:
            ev = evidence(coverage_of(self.cost_model), gpu.id, quant.id, engine.id, int(c.batch_size[i]),
                          bool(self.measured[i]), base_engine=engine.base_id)
            return f"--min-evidence {self.min_evidence} not met: {ev['text']}"
        if code == MEASURED_FAILURE:
            return _measured_failures(c).get(int(i), EXCLUDED[code])
        if code == CONTEXT:
            p, o = int(c.prompt_tokens[i]), int(c.output_tokens[i])
            return f"context {p}+{o}={p + o} tokens > {model.max_position_embeddings} max positions of {model.id}"
        if code == NO_PREDICTION:
            missing = [f"{gpu.id} {k}" for k in ("tdp_w", "bandwidth_gbs", "fp16_tensor_tflops")
                       if getattr(gpu, k) is None]
            hint = f" (unknown: {', '.join(missing)})" if missing else ""
            return f"cost model {self.cost_model_name} has no prediction for this combination{hint}"
        for con in self.constraints:
            if con.code == code:
                v = _constraint_value(self, con, np.array([i]))[0]
                if not np.isfinite(v):
                    why = (f"no cited scores for {model.id}" if not np.isfinite(self.baseline[i])
                           else f"no cited accuracy change for {quant.id}")
                    return f"{_fmt_metric(con.metric, v)} ({why}), needed by {con.label}"
                return f"{_fmt_metric(con.metric, v)} {'<' if con.kind == 'min' else '>'} {con.label}"
        return EXCLUDED[code]


# ---------------------------------------------------------------------------------------------
def _resolve(catalog: Catalog, q: Query):
    """Names -> catalogue ids; defaults; profile; workload. Raises UserError for unknown names."""
    profile = catalog.profile(q.profile) if q.profile else None
    if q.gpus:
        gpus = list(dict.fromkeys(catalog.gpu(g).id for g in q.gpus))
    else:
        segs = set(profile.segments) if profile and profile.segments else None
        gpus = [g.id for g in catalog.gpus if segs is None or g.segment in segs]
    if not q.models:
        models = [m.id for m in catalog.models if m.in_paper] or [m.id for m in catalog.models if m.id != TEST_MODEL]
    elif any(m.lower() == "all" for m in q.models):
        models = [m.id for m in catalog.models if m.id != TEST_MODEL]
    else:
        models = list(dict.fromkeys(catalog.model(m).id for m in q.models))
    quants = list(dict.fromkeys(catalog.quant(x).id for x in q.quants)) if q.quants else catalog.quants.ids()
    engines = list(dict.fromkeys(catalog.engine(x).id for x in q.engines)) if q.engines else catalog.engines.ids()
    batch = sorted(set(q.batch_sizes)) if q.batch_sizes else list(DEFAULT_BATCH_SIZES)

    grid, grid_source = q.grid_gco2_kwh, "--grid-gco2-kwh" if q.grid_gco2_kwh is not None else None
    if grid is None and q.region:
        region = catalog.region(q.region)
        grid, grid_source = region.grid_gco2_per_kwh, f"region {region.id} ({region.source or 'regions.csv'})"
    if grid is None:
        world = catalog.regions.find("world")
        if world is not None and world.grid_gco2_per_kwh is not None:
            grid, grid_source = world.grid_gco2_per_kwh, f"default: region {world.id} (world average)"
    pue = q.pue if q.pue is not None else (profile.pue if profile and profile.pue else 1.0)
    w = Workload(q.prompt_tokens, q.output_tokens, q.requests, pue, q.price_kwh, grid)
    priority = q.priority or (profile.default_priority if profile and profile.default_priority else DEFAULT_PRIORITY)
    if priority not in PRIORITIES:
        raise UserError(f"unknown priority {priority!r} (profile {profile.id}); choose one of {', '.join(PRIORITIES)}")
    return profile, gpus, models, quants, engines, batch, w, priority, grid_source


def _constraints(q: Query, profile) -> list[Constraint]:
    out = []
    pname = f"profile '{profile.id}'" if profile else ""
    if q.min_accuracy is not None:
        out.append(Constraint(ACCURACY, "accuracy", "min", q.min_accuracy, f"--min-accuracy {q.min_accuracy:g}"))
    elif profile and profile.accuracy_floor_rel:
        f = profile.accuracy_floor_rel
        out.append(Constraint(ACCURACY, "accuracy_rel", "min", f,
                              f"{f:.0%} of the model's baseline ({pname} accuracy_floor_rel {f:g})"))
    if q.max_latency_ms is not None:
        out.append(Constraint(LATENCY, "latency_ms", "max", q.max_latency_ms, f"--max-latency-ms {q.max_latency_ms:g}"))
    elif profile and profile.max_latency_ms:
        out.append(Constraint(LATENCY, "latency_ms", "max", profile.max_latency_ms,
                              f"{pname} max_latency_ms {profile.max_latency_ms:g}"))
    if q.max_energy_wh is not None:
        out.append(Constraint(ENERGY, "energy_wh", "max", q.max_energy_wh, f"--max-energy-wh {q.max_energy_wh:g}"))
    return out


def _hardware_codes(cands: Candidates, mem: MemoryEstimate) -> np.ndarray:
    """Exclusion code per row from the hardware, the engine and the model (no predictions needed)."""
    cat = cands.catalog
    cc = cands.col("gpu_compute_capability")
    quants = cat.quants.rows
    q_bf16 = np.array([q.needs_bf16 for q in quants])
    q_mincc = np.array([q.min_compute_capability or 0.0 for q in quants], dtype=np.float64)
    support = np.array([[e.supports(q.id) for q in quants] for e in cat.engines], dtype=bool)
    runs_on = np.array([[e.hardware_reason(g) is None for g in cat.gpus] for e in cat.engines], dtype=bool)
    min_batch = np.array([[q.min_batch(e.id) or 0 for e in cat.engines] for q in quants], dtype=np.float64)
    applies = np.array([[e.model_reason(m) is None for m in cat.models] for e in cat.engines], dtype=bool)
    ctx = cands.prompt_tokens + cands.output_tokens
    maxpos = cands.col("model_max_position_embeddings")
    with np.errstate(invalid="ignore"):
        checks = [
            (NO_SPECS, ~np.isfinite(mem.total_gb) | ~np.isfinite(mem.usable_gb)),
            (COMPUTE_CAP, cc < q_mincc[cands.quant_idx]),
            (BF16, q_bf16[cands.quant_idx] & (cc < 8.0)),
            (ENGINE_HARDWARE, ~runs_on[cands.engine_idx, cands.gpu_idx]),
            (ENGINE, ~support[cands.engine_idx, cands.quant_idx]),
            (ENGINE_MODEL, ~applies[cands.engine_idx, cands.model_idx]),
            (BATCH, cands.batch_size < min_batch[cands.quant_idx, cands.engine_idx]),
            (CONTEXT, ctx > maxpos),
            (MEMORY, ~mem.fits),
        ]
    failures = _measured_failures(cands)
    if failures:
        failed = np.zeros(len(cands), dtype=bool)
        failed[list(failures)] = True
        checks.append((MEASURED_FAILURE, failed))
    code = np.zeros(len(cands), dtype=np.int8)
    for c, bad in reversed(checks):  # earlier checks win
        code[bad] = c
    return code


def _measured_failures(cands: Candidates) -> dict[int, str]:
    """Rows whose exact cell failed when we measured it (row -> recorded reason); {} without the lookup."""
    try:
        from recommender.costmodel.learned import measured_failures
    except ImportError:
        return {}
    return measured_failures(cands)


#: cost-model targets (`costmodel.base.TARGETS`) and the workload metrics derived from them
PREDICTED = ("energy_per_token_j", "tokens_per_s", "ttft_ms", "prefill_energy_j", "memory_gb", "accuracy_delta")
METRICS = ("latency_s", "workload_time_s", "energy_wh", "wh_per_1k_requests", "usd_per_1m_tokens",
           "gco2e_per_1m_tokens", "eor", "tweor")
#: cost-model targets each ranking metric needs
_METRIC_TARGETS = {
    "energy_wh": ("energy_per_token_j", "prefill_energy_j"),
    "latency_s": ("ttft_ms", "tokens_per_s"),
    "accuracy": ("accuracy_delta",),
}
_METRIC_TARGETS["eor"] = _METRIC_TARGETS["energy_wh"] + _METRIC_TARGETS["accuracy"]
_METRIC_TARGETS["tweor"] = _METRIC_TARGETS["eor"] + _METRIC_TARGETS["latency_s"]
_CONSTRAINT_METRIC = {"accuracy": "accuracy", "accuracy_rel": "accuracy", "latency_ms": "latency_s",
                      "energy_wh": "energy_wh"}


def ranking_targets(priority: str, constraints: list[Constraint]) -> tuple[str, ...]:
    """Cost-model targets whose p50 the ranking needs: the priority metric, the tie-breakers (EOR, then
    energy) and the constrained metrics; peak memory never (the fit uses `recommender.memory`)."""
    needed = {PRIORITY_METRIC[priority][0], "eor", "energy_wh"}
    needed |= {_CONSTRAINT_METRIC[c.metric] for c in constraints}
    return tuple(t for t in PREDICTED if any(t in _METRIC_TARGETS[m] for m in needed))


def _predict_p50(cm: CostModel, cands: Candidates, targets) -> tuple[dict[str, Quantiles], frozenset]:
    """({target: Quantiles with p50 only}, targets computed) from `cm.predict_p50` where the model has
    it, else from the full `cm.predict` (then every target it returns, with p10/p90)."""
    fn = getattr(cm, "predict_p50", None)
    if fn is None:
        got = cm.predict(cands)
        return got, frozenset(got)
    nan = np.full(len(cands), np.nan)
    nan.setflags(write=False)
    got = {t: Quantiles(nan, np.asarray(v, dtype=np.float64), nan) for t, v in fn(cands, targets).items()}
    return got, frozenset(got)


def _fill(res: Result, rows: np.ndarray, targets) -> None:
    """Predict `rows` and derive their metrics into `res.metrics`: every target with p10/p50/p90 when
    `targets` is None, else the p50 of those targets (the ranking pass). Measured values replace
    predictions where they are finite."""
    cat, cands, w = res.catalog, res.cands, res.workload
    sub = cands.take(rows)
    m = res.metrics
    if targets is None:
        got = res.cost_model.predict(sub)
        done, p50_only = frozenset(got), False
    else:
        got, done = _predict_p50(res.cost_model, sub, targets)
        p50_only = True
        res.p50_targets = done
    if res.measured_values is None:
        mask, values = _measured(sub)
        res.measured_values = {}
        if mask.any():
            n, hit = len(cands), rows[mask]
            for k, v in values.items():
                arrs = [np.full(n, np.nan) for _ in range(3)]
                for arr, a in zip(arrs, ("p10", "p50", "p90"), strict=True):
                    arr[hit] = np.asarray(getattr(v, a), dtype=np.float64)[mask]
                res.measured_values[k] = Quantiles(*arrs)
    else:
        mask = res.measured[rows]
        values = {k: v.take(rows) for k, v in res.measured_values.items()}
    qs = ("p50",) if p50_only else ("p10", "p50", "p90")
    local: dict[str, Quantiles] = {}
    nan = np.full(len(rows), np.nan)
    for k in PREDICTED:
        q = got.get(k)
        vals = [np.array(getattr(q, a), dtype=np.float64) if q is not None else nan.copy()
                for a in ("p10", "p50", "p90")]
        if k in values and k in done and mask.any():
            _overlay_measured(vals, values[k], mask)
        local[k] = Quantiles(*vals)
    res.measured[rows[mask]] = True

    # unquantized methods lose nothing by definition
    unq_ids = [cat.quants.index[x] for x in UNQUANTIZED if x in cat.quants.index]
    unq = np.isin(sub.quant_idx, unq_ids)
    delta = local["accuracy_delta"]
    for a in qs:
        arr = getattr(delta, a)
        arr[unq & ~np.isfinite(arr)] = 0.0
    baseline = res.baseline[rows]
    score = Quantiles(baseline + 100 * delta.p10, baseline + 100 * delta.p50, baseline + 100 * delta.p90)
    derived = evaluate(local, score, sub.batch_size, w, p50_only=p50_only)
    mem_q = local["memory_gb"]
    total = res.mem.total_gb[rows]
    for a in qs:
        arr = getattr(mem_q, a)
        fill = ~np.isfinite(arr)
        arr[fill] = total[fill]
    for k, q in (*local.items(), ("accuracy", score), *derived.items()):
        for a in qs:
            getattr(m[k], a)[rows] = getattr(q, a)


def _overlay_measured(vals: list[np.ndarray], measured: Quantiles, mask: np.ndarray) -> None:
    """Measured p10/p50/p90 replace the predicted ones in the rows of `mask`, each only where the measured
    value is finite (a record that did not measure a target keeps the prediction); the interval is then
    widened to contain p50 where a measured p50 fell outside a predicted end."""
    replaced = np.zeros(len(mask), dtype=bool)
    for j, a in enumerate(("p10", "p50", "p90")):
        mv = np.asarray(getattr(measured, a), dtype=np.float64)
        sel = mask & np.isfinite(mv)
        vals[j][sel] = mv[sel]
        replaced |= sel
    if replaced.any():
        with np.errstate(invalid="ignore"):
            vals[0][replaced] = np.fmin(vals[0][replaced], vals[1][replaced])
            vals[2][replaced] = np.fmax(vals[2][replaced], vals[1][replaced])


def _load_cost_model(model_dir) -> CostModel:
    try:
        from recommender.costmodel import default_cost_model

        return default_cost_model(model_dir)
    except ImportError:
        from recommender.costmodel.analytic import AnalyticCostModel

        return AnalyticCostModel()


def _measured(cands: Candidates) -> tuple[np.ndarray, dict[str, Quantiles]]:
    """Measured cells from `recommender.costmodel.learned.measured_lookup`, if that exists.

    Accepts `(mask, {target: Quantiles})`, an object with `.mask` and `.values`, a bare
    `{target: Quantiles}` (NaN where not measured: a row counts as measured where any p50 is finite),
    or None.
    """
    none = np.zeros(len(cands), dtype=bool), {}
    try:
        from recommender.costmodel.learned import measured_lookup
    except ImportError:
        return none
    res = measured_lookup(cands)
    if res is None:
        return none
    if isinstance(res, tuple):
        mask, values = res
    elif isinstance(res, dict):
        values = res
        mask = np.zeros(len(cands), dtype=bool)
        for qt in values.values():
            mask |= np.isfinite(np.asarray(qt.p50, dtype=np.float64))
    else:
        mask, values = res.mask, res.values
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(cands),):
        raise ValueError(f"measured_lookup returned a mask of shape {mask.shape} for {len(cands)} rows")
    return mask, dict(values)


def _scores(catalog: Catalog, model_ids) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Baseline score (0-100) and contributing tasks per catalogue model index (NaN/() when unused)."""
    base = np.full(len(catalog.models), np.nan)
    tasks: list[tuple[str, ...]] = [()] * len(catalog.models)
    for mid in model_ids:
        j = catalog.models.index[mid]
        base[j], tasks[j] = _baseline_score(catalog.baseline_scores(mid))
    return base, tasks


def _constraint_value(res: Result, con: Constraint, rows) -> np.ndarray:
    m = res.metrics
    if con.metric == "accuracy":
        return m["accuracy"].p50[rows]
    if con.metric == "accuracy_rel":
        with np.errstate(divide="ignore", invalid="ignore"):
            return m["accuracy"].p50[rows] / res.baseline[rows]
    if con.metric == "latency_ms":
        return m["latency_s"].p50[rows] * 1000.0
    return m["energy_wh"].p50[rows]


def _fmt_metric(metric: str, v: float) -> str:
    if not np.isfinite(v):
        return f"{metric.split('_')[0]} unknown"
    return {"accuracy": f"accuracy {v:.1f}", "accuracy_rel": f"accuracy {v:.1%} of baseline",
            "latency_ms": f"latency {v:.0f} ms", "energy_wh": f"energy {v:.3g} Wh"}[metric]


def _passes(values: np.ndarray, con: Constraint) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return values >= con.bound if con.kind == "min" else values <= con.bound


def _order(res: Result, rows: np.ndarray) -> np.ndarray:
    """Rows sorted best first by the priority metric (NaN last), ties by EOR then energy."""
    name, higher = PRIORITY_METRIC[res.priority]
    key = res.metrics[name].p50[rows]
    key = np.where(np.isfinite(key), -key if higher else key, np.inf)
    eor = res.metrics["eor"].p50[rows]
    tie1 = np.where(np.isfinite(eor), -eor, np.inf)
    tie2 = np.nan_to_num(res.metrics["energy_wh"].p50[rows], nan=np.inf)
    # = rows[np.lexsort((tie2, tie1, key))], faster: a stable sort on the key, then the tie-breakers only
    # among rows whose keys tie (they fill the same positions, in the same stable order)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    eq = sk[1:] == sk[:-1]
    if eq.any():
        tied = np.zeros(len(order), dtype=bool)
        tied[1:] |= eq
        tied[:-1] |= eq
        pos = np.flatnonzero(tied)
        sub = order[pos]
        order[pos] = sub[np.lexsort((tie2[sub], tie1[sub], key[sub]))]
    return rows[order]


def recommend(q: Query, catalog: Catalog | None = None, cost_model: CostModel | None = None,
              predict_excluded: bool = False, full: bool | None = None) -> Result:
    """Rank every candidate for query `q`. Raises UserError on unknown names, NoCandidateError when
    nothing survives (unless `predict_excluded`, used by `--all`, which returns the excluded rows).

    `full`: compute p10/p50/p90 of every target for every predicted row now (default: only with
    `predict_excluded`); otherwise the ranking pass computes the p50s it needs and `Result.complete`
    the rest for the rows that are output."""
    catalog = catalog or load_catalog()
    if q.min_evidence is not None and q.min_evidence not in MIN_EVIDENCE_LEVELS:
        raise UserError(f"unknown --min-evidence {q.min_evidence!r}; use one of {', '.join(MIN_EVIDENCE_LEVELS)}")
    profile, gpus, models, quants, engines, batch, w, priority, grid_source = _resolve(catalog, q)
    cands = Candidates.grid(catalog, gpus, models, quants, engines, batch, w.prompt_tokens, w.output_tokens)
    headroom = (profile.memory_headroom_frac or 0.0) if profile else 0.0
    mem = estimate(cands, headroom)
    code = _hardware_codes(cands, mem)
    cm = cost_model or _load_cost_model(q.model_dir)

    n = len(cands)
    full = predict_excluded if full is None else full
    rows = np.flatnonzero(code == OK) if not predict_excluded else np.arange(n)
    preds = {k: Quantiles(*(np.full(n, np.nan) for _ in range(3))) for k in PREDICTED}
    metrics: dict[str, Quantiles] = dict(preds)
    for k in ("accuracy", *METRICS):
        metrics[k] = Quantiles(*(np.full(n, np.nan) for _ in range(3)))
    base_by_model, tasks = _scores(catalog, models)
    baseline = base_by_model[cands.model_idx]
    constraints = _constraints(q, profile)
    predicted = np.zeros(n, dtype=bool)
    predicted[rows] = True
    if not predict_excluded:  # rows never predicted: unquantized methods keep the baseline, memory = estimate
        idle = ~predicted
        unq = idle & np.isin(cands.quant_idx, [catalog.quants.index[x] for x in UNQUANTIZED if x in catalog.quants.index])
        for a in ("p10", "p50", "p90"):
            getattr(preds["accuracy_delta"], a)[unq] = 0.0
            getattr(metrics["accuracy"], a)[unq] = baseline[unq]
            getattr(preds["memory_gb"], a)[idle] = mem.total_gb[idle]
    res = Result(catalog, {}, priority, w, cands, mem, code, metrics, np.zeros(n, dtype=bool), baseline, tasks,
                 constraints, np.array([], dtype=np.int64), cm.name, cost_model=cm, full=np.zeros(n, dtype=bool),
                 predicted=predicted)
    if len(rows):
        if full:
            _fill(res, rows, None)
            res.full[rows] = True
        else:
            _fill(res, rows, ranking_targets(priority, constraints))

    with np.errstate(invalid="ignore"):
        nopred = ~np.isfinite(metrics["energy_wh"].p50)
        lat = metrics["latency_s"].p50
        # latency is checked where it was computed: the analytic and learned models derive the latency and
        # the energy from the same step and prefill times, so a finite energy means a finite latency
        known = res.full | bool({"ttft_ms", "tokens_per_s"} <= res.p50_targets)
        nopred |= known & ~np.isfinite(lat)
    code[(code == OK) & nopred] = NO_PREDICTION
    if q.min_evidence not in (None, "none"):
        res.min_evidence = q.min_evidence
        live = np.flatnonzero(code == OK)
        code[live[~_meets_min_evidence(res, live, q.min_evidence)]] = EVIDENCE
    for con in constraints:
        live = np.flatnonzero(code == OK)
        bad = ~_passes(_constraint_value(res, con, live), con)
        code[live[bad]] = con.code
    res.order = _order(res, np.flatnonzero(code == OK))
    res.query = _query_dict(q, res, profile, gpus, models, quants, engines, batch, grid_source)
    if len(res.order) == 0 and not predict_excluded:
        raise NoCandidateError(why_empty(res), res.query["warnings"])
    return res


def _meets_min_evidence(res: Result, rows: np.ndarray, minimum: str) -> np.ndarray:
    """`evidence.meets_min_evidence` for `rows`, computed once per (card, method, engine, batch, measured)."""
    c = res.cands
    coverage = coverage_of(res.cost_model)
    keys = np.stack([c.gpu_idx[rows], c.quant_idx[rows], c.engine_idx[rows], c.batch_size[rows].astype(np.int64),
                     res.measured[rows].astype(np.int64)], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    cat = res.catalog
    ok = np.array([meets_min_evidence(coverage, cat.gpus.rows[g].id, cat.quants.rows[qi].id, cat.engines.rows[e].id,
                                      int(b), bool(m), minimum) for g, qi, e, b, m in uniq], dtype=bool)
    return ok[inv.ravel()] if len(uniq) else np.zeros(0, dtype=bool)


def _query_dict(q: Query, res: Result, profile, gpus, models, quants, engines, batch, grid_source) -> dict:
    w = res.workload
    return {
        "gpus": gpus, "models": models, "quants": quants, "engines": engines, "batch_sizes": batch,
        "prompt_tokens": w.prompt_tokens, "output_tokens": w.output_tokens, "requests": w.requests,
        "profile": profile.id if profile else None, "priority": res.priority,
        "priority_metric": PRIORITY_METRIC[res.priority][0],
        "constraints": [c.label for c in res.constraints],
        "memory_headroom_frac": res.mem.headroom_frac,
        "pue": w.pue, "price_per_kwh": w.price_per_kwh, "grid_gco2_per_kwh": w.grid_gco2_per_kwh,
        "grid_source": grid_source, "cost_model": res.cost_model_name, "model_dir": q.model_dir,
        "score": "mean of the paper's tasks available for the model (mmlu, arc_challenge, truthfulqa_mc2, "
                 "gsm8k, hellaswag), percent 0-100, plus the predicted accuracy change",
        "candidates_total": int(len(res.cands)), "candidates_ranked": int(len(res.order)),
        "excluded": res.excluded_counts(),
        "warnings": catalog_warnings(res.cost_model, res.catalog),
        "min_evidence": q.min_evidence or "none",
    }


def catalog_warnings(cost_model, catalog) -> list[str]:
    """One warning when catalogue files the features read changed since the cost model was trained: its
    corrections were learned on features computed from other numbers (e.g. a refitted engines.yaml)."""
    stale = getattr(cost_model, "stale_catalog_files", lambda _catalog: [])(catalog)
    if not stale:
        return []
    return [f"{', '.join(stale)} changed since the cost model {cost_model.name} was trained; its predictions "
            "combine corrections learned on the old files with features from the new ones: run "
            "`train-cost-model` (and pass --model-dir to use the new model)"]


# ---------------------------------------------------------------------------------------------
def _smaller_batch_hint(res: Result, i: int) -> str:
    """For a candidate that does not fit: the largest batch size (halving from its own) at which the same model,
    method, engine, card and workload would fit, as a suggestion; else what is left to change."""
    c = res.cands
    b = int(c.batch_size[i]) // 2
    while b >= 1:
        trial = Candidates(c.catalog, c.gpu_idx[[i]], c.model_idx[[i]], c.quant_idx[[i]], c.engine_idx[[i]],
                           np.array([float(b)]), c.prompt_tokens[[i]], c.output_tokens[[i]])
        est = estimate(trial, headroom_frac=res.mem.headroom_frac)
        if est.fits[0]:
            return f"; at batch {b} it would need {est.total_gb[0]:.1f} GB: try --batch-size {b}"
        b //= 2
    at_one = "; it does not fit at batch 1 either" if c.batch_size[i] > 1 else ""
    bits = c.catalog.quants.rows[c.quant_idx[i]].weight_bits
    four_bit = "a 4-bit method (--quant bnb-nf4 or torchao-int4-wo), " if bits is None or bits > 4 else ""
    return f"{at_one}; try {four_bit}a shorter --prompt-tokens, or a card with more memory"


def why_empty(res: Result) -> str:
    """Which constraint removed everything, with the best value that the fitting candidates reach."""
    code = res.code
    runnable = np.flatnonzero(~np.isin(code, HARDWARE_CODES))
    fitting = runnable[code[runnable] != EVIDENCE]
    if len(runnable) and len(fitting) == 0:
        return _why_no_evidence(res, runnable)
    if len(fitting) == 0:
        counts = "; ".join(f"{k}: {v}" for k, v in res.excluded_counts().items())
        mem_rows = np.flatnonzero(code == MEMORY)
        hint = ""
        c = res.cands
        if len(mem_rows):
            i = mem_rows[np.nanargmin(res.mem.total_gb[mem_rows] - res.mem.usable_gb[mem_rows])]
            hint = (f"; the smallest ({c.ids('model')[i]} {c.ids('quant')[i]} batch {int(c.batch_size[i])}) "
                    f"{res.reason(i)}{_smaller_batch_hint(res, i)}")
        elif len(code):
            common = Counter(code.tolist()).most_common(1)[0][0]
            i = int(np.flatnonzero(code == common)[0])
            hint = f"; e.g. {c.ids('model')[i]} {c.ids('quant')[i]} {c.ids('engine')[i]}: {res.reason(i)}"
        return f"no candidate can run: all {len(code)} excluded ({counts}){hint}"
    among = f" (among candidates meeting --min-evidence {res.min_evidence})" if res.min_evidence else ""
    best = {"accuracy": ("the most accurate fitting candidate scores", np.nanmax),
            "accuracy_rel": ("the best fitting candidate keeps", np.nanmax),
            "latency_ms": ("the fastest fitting candidate needs", np.nanmin),
            "energy_wh": ("the most frugal fitting candidate needs", np.nanmin)}
    for con in res.constraints:
        vals = _constraint_value(res, con, fitting)
        if not _passes(vals, con).any():
            text, f = best[con.metric]
            v = f(vals) if np.isfinite(vals).any() else np.nan
            shown = _fmt_metric(con.metric, v).split(" ", 1)[1]
            return f"no candidate meets {con.label}: {text} {shown}{among}"
    labels = " and ".join(c.label for c in res.constraints)
    for con in res.constraints:  # best value on one constraint among rows meeting all the others
        others = [o for o in res.constraints if o is not con]
        rows = fitting
        for o in others:
            rows = rows[_passes(_constraint_value(res, o, rows), o)]
        vals = _constraint_value(res, con, rows)
        if len(rows) and np.isfinite(vals).any():
            text, f = best[con.metric]
            shown = _fmt_metric(con.metric, f(vals)).split(" ", 1)[1]
            return (f"no candidate meets {labels} together: among those meeting "
                    f"{' and '.join(o.label for o in others)}, {text.replace(' fitting', '')} {shown}{among}")
    return f"no candidate meets {labels} together (each alone leaves some){among}; relax one of them"


def _why_no_evidence(res: Result, rows: np.ndarray) -> str:
    """--min-evidence removed every candidate that can run: the best level that any of them meets."""
    c, cat = res.cands, res.catalog
    coverage = coverage_of(res.cost_model)
    best, example = len(MIN_EVIDENCE_LEVELS) - 1, None
    for g, qi, e, b, m in sorted({(int(c.gpu_idx[i]), int(c.quant_idx[i]), int(c.engine_idx[i]),
                                   int(c.batch_size[i]), bool(res.measured[i])) for i in rows}):
        gid, qid, eid = cat.gpus.rows[g].id, cat.quants.rows[qi].id, cat.engines.rows[e].id
        level = next(k for k, lvl in enumerate(MIN_EVIDENCE_LEVELS)
                     if meets_min_evidence(coverage, gid, qid, eid, b, m, lvl))
        if example is None or level < best:
            best = level
            ev = evidence(coverage, gid, qid, eid, b, m, base_engine=cat.engines.rows[e].base_id)
            example = f"{qid} on {eid}, batch {b}: {ev['text']}"
    return (f"no candidate meets --min-evidence {res.min_evidence}: the best of the {len(rows)} that can run meets "
            f"'{MIN_EVIDENCE_LEVELS[best]}' (e.g. {example}); lower --min-evidence or measure the configuration")


def explain(res: Result) -> list[str]:
    """Why the top choice wins, what binds, what was excluded; plain-text lines."""
    lines: list[str] = []
    name, higher = PRIORITY_METRIC[res.priority]
    c = res.cands
    res.complete(res.order[:2])  # their intervals are quoted
    if len(res.order):
        top = res.order[0]
        label = _label(res, top)
        val = res.metrics[name].p50[top]
        lines.append(f"Top choice: {label} ranked by {name} ({res.priority} priority) = {_num(val)}.")
        lines += [f"Setup: {n}." for n in setup_notes(res.catalog.gpus.rows[c.gpu_idx[top]],
                                                        res.catalog.quants.rows[c.quant_idx[top]],
                                                        res.catalog.engines.rows[c.engine_idx[top]].id,
                                                        int(c.batch_size[top]), res.catalog.setup_notes,
                                                        res.catalog.models.rows[c.model_idx[top]],
                                                        int(c.prompt_tokens[top]))]
        if not np.isfinite(val):
            lines.append(f"Its {name} is unknown (no cited accuracy), so it was ranked by the tie-breakers: "
                         "EOR, then lowest energy (Wh).")
        if len(res.order) > 1:
            nxt = res.order[1]
            v2 = res.metrics[name].p50[nxt]
            if np.isfinite(v2) and np.isfinite(val) and v2 != 0:
                margin = f"margin {abs(val - v2) / abs(v2) * 100:.1f}% ({'higher' if higher else 'lower'} is better)"
            else:
                e1, e2 = res.metrics["energy_wh"].p50[top], res.metrics["energy_wh"].p50[nxt]
                margin = f"energy {_num(e1)} vs {_num(e2)} Wh"
            lines.append(f"Runner-up: {_label(res, nxt)} with {_num(v2)}; {margin}.")
        binding = []
        for con in res.constraints:
            removed = np.flatnonzero(res.code == con.code)
            if len(removed):
                pv = res.metrics[name].p50[removed]
                with np.errstate(invalid="ignore"):
                    better = removed[(pv > val) if higher else (pv < val)]
                if len(better):
                    b = _order(res, better)[0]
                    binding.append(f"{con.label} binds: it removed {len(better)} candidate(s) that would rank higher "
                                   f"(best: {_label(res, b)}, {res.reason(b)}).")
        lines += binding or ["No constraint binds: the top choice would also win without the constraints."]
        for con in res.constraints:
            v = _constraint_value(res, con, np.array([top]))[0]
            lines.append(f"Top choice vs {con.label}: {_fmt_metric(con.metric, v)}.")
        if (tight := tight_fit(res.mem, c, top)) is not None:
            lines.append(f"Memory: {tight}.")
        src = "measured" if res.measured[top] else f"predicted by {res.cost_model_name}"
        lo, hi = res.metrics[name].p10[top], res.metrics[name].p90[top]
        lines.append(f"Its numbers are {src}; {name} interval p10-p90 [{_num(lo)}, {_num(hi)}]"
                     + (" (intervals overlap the runner-up's)" if len(res.order) > 1 and _overlap(res, name) else "")
                     + ".")
        if not res.measured[top]:
            ev = evidence(coverage_of(res.cost_model), c.ids("gpu")[top], c.ids("quant")[top],
                          c.ids("engine")[top], int(c.batch_size[top]), False,
                          outside_training_range(card_range_of(res.cost_model), res.catalog.gpus.rows[c.gpu_idx[top]]),
                          base_engine=res.catalog.engines.rows[c.engine_idx[top]].base_id)
            lines.append(f"Evidence: {ev['text']}.")
            lines += _best_on_this_card(res, top, name)
        top_quant = c.ids("quant")[top]
        basis = accuracy_basis(res.catalog, c.ids("model")[top], top_quant, accuracy_is_learned(res.cost_model))
        if basis != "unquantized":
            lines.append(f"Its accuracy change under {top_quant}: {basis}.")
    ranked = res.order
    no_acc = ranked[~np.isfinite(res.metrics["accuracy"].p50[ranked])]
    if len(no_acc) and res.priority != "latency":
        no_score = ~np.isfinite(res.baseline[no_acc])
        why = []
        if no_score.any():
            why.append("no cited score for " + ", ".join(sorted(set(c.ids("model")[no_acc[no_score]]))))
        if (~no_score).any():
            why.append("no cited accuracy change for " + ", ".join(sorted(set(c.ids("quant")[no_acc[~no_score]]))))
        lines.append(f"{len(no_acc)} ranked candidates have no cited accuracy ({'; '.join(why)}): their "
                     f"{name} is unknown, so they rank last.")
    counts = res.excluded_counts()
    if counts:
        lines.append(f"Excluded {sum(counts.values())} of {len(c)}: "
                     + "; ".join(f"{k}: {v}" for k, v in counts.items()) + " (use --all to list them).")
    return lines


def _best_on_this_card(res: Result, top: int, name: str) -> list[str]:
    """When the predicted top choice is not backed by measurements of its card within the measured batch
    sizes (`--min-evidence same_card`), the best-ranked candidate that is, and how far behind it ranks."""
    c, cat = res.cands, res.catalog
    if coverage_of(res.cost_model) is None:
        return []
    # res.order[0] is the top choice; the rest in rank order, this card only
    backed = _meets_min_evidence(res, res.order, "same_card") & (c.gpu_idx[res.order] == c.gpu_idx[top])
    if backed[0]:
        return []
    card = cat.gpus.rows[c.gpu_idx[top]].id
    hits = np.flatnonzero(backed)
    if not len(hits):
        return [f"No ranked candidate on {card} is backed by its measurements (--min-evidence same_card)."]
    i = int(res.order[hits[0]])
    res.complete([i])
    v, v_top = res.metrics[name].p50[i], res.metrics[name].p50[top]
    gap = f", {abs(v - v_top) / abs(v_top) * 100:.1f}% behind" if np.isfinite(v) and np.isfinite(v_top) and v_top != 0 \
        else ""
    return [f"Best choice backed by measurements on {card} (--min-evidence same_card): rank {hits[0] + 1}, "
            f"{_label(res, i)} with {name} {_num(v)}{gap}."]


def _overlap(res: Result, name: str) -> bool:
    a, b = res.order[0], res.order[1]
    m = res.metrics[name]
    return bool(max(m.p10[a], m.p10[b]) <= min(m.p90[a], m.p90[b]))


def _label(res: Result, i: int) -> str:
    c = res.cands
    return (f"{c.ids('gpu')[i]} / {c.ids('model')[i]} / {c.ids('quant')[i]} / {c.ids('engine')[i]} / "
            f"batch {int(c.batch_size[i])}")


def _num(v) -> str:
    return f"{v:.4g}" if np.isfinite(v) else "n/a"


def pareto_front(energy: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Mask of points not dominated in (lower energy, higher accuracy); NaN points are never on it."""
    ok = np.isfinite(energy) & np.isfinite(accuracy)
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((-accuracy[idx], energy[idx]))]
    front = np.zeros(len(energy), dtype=bool)
    best = -np.inf
    for i in order:  # ascending energy; keep strictly better accuracy
        if accuracy[i] > best:
            front[i], best = True, accuracy[i]
    return front


def shown_rows(res: Result, top: int | None, include_excluded: bool) -> list[int]:
    """Rows to show: the ranked top (all ranked when top is None), then the excluded ones if asked."""
    ranked = res.order if top is None else res.order[:top]
    rows = [int(i) for i in ranked]
    if include_excluded:
        rows += [int(i) for i in res.excluded]
    return rows


QUANTITIES = ("memory_gb", "energy_per_token_j", "tokens_per_s", "ttft_ms", "prefill_energy_j", "latency_s",
              "workload_time_s", "energy_wh", "wh_per_1k_requests", "usd_per_1m_tokens", "gco2e_per_1m_tokens",
              "accuracy", "accuracy_delta", "eor", "tweor")


def _pylist(a: np.ndarray) -> list:
    """Float array -> list of Python floats with None for NaN/inf."""
    return [v if v == v and v not in (np.inf, -np.inf) else None for v in np.asarray(a, dtype=np.float64).tolist()]


def candidate_dicts(res: Result, rows, ranks) -> list[dict[str, Any]]:
    """Candidates `rows` as JSON-safe dicts (predicted quantities as {p10, p50, p90}), built column-wise."""
    rows = np.asarray(rows, dtype=np.int64)
    res.complete(rows)
    c, cat, m, w = res.cands, res.catalog, res.metrics, res.workload
    skip = {"usd_per_1m_tokens": w.price_per_kwh is None, "gco2e_per_1m_tokens": w.grid_gco2_per_kwh is None}
    qcols = {k: [_pylist(getattr(m[k], a)[rows]) for a in ("p10", "p50", "p90")] for k in QUANTITIES if not skip.get(k)}
    mem = res.mem
    mem_cols = {k: _pylist(np.round(getattr(mem, k)[rows], 3)) for k in MEMORY_BREAKDOWN_KEYS}
    gi, mi, qi, ei = (getattr(c, f)[rows].tolist() for f in ("gpu_idx", "model_idx", "quant_idx", "engine_idx"))
    batch, prompt, output = (getattr(c, f)[rows].astype(int).tolist() for f in
                             ("batch_size", "prompt_tokens", "output_tokens"))
    fits, measured = mem.fits[rows].tolist(), res.measured[rows].tolist()
    tight = tight_fit_mask(mem, c, rows).tolist()
    base = _pylist(res.baseline[rows])
    codes = res.code[rows].tolist()
    coverage, card_range = coverage_of(res.cost_model), card_range_of(res.cost_model)
    outside: dict[str, list[str]] = {}
    basis: dict[tuple[int, int], str] = {}
    acc_learned = accuracy_is_learned(res.cost_model)
    out = []
    for j, i in enumerate(rows.tolist()):
        gpu = cat.gpus.rows[gi[j]]
        quant, engine = cat.quants.rows[qi[j]].id, cat.engines.rows[ei[j]].id
        if gpu.id not in outside:
            outside[gpu.id] = outside_training_range(card_range, gpu)
        q = {k: {"p10": v[0][j], "p50": v[1][j], "p90": v[2][j]} for k, v in qcols.items()}
        out.append({
            "rank": ranks[j],
            "gpu": gpu.id,
            "gpu_name": gpu.name,
            "model": cat.models.rows[mi[j]].id,
            "quant": quant,
            "engine": engine,
            "batch_size": batch[j],
            "prompt_tokens": prompt[j],
            "output_tokens": output[j],
            "fits": fits[j],
            "memory_gb": q["memory_gb"],
            "memory_estimate_gb": {k: v[j] for k, v in mem_cols.items()},
            **{k: q.get(k) for k in QUANTITIES[1:11]},
            "accuracy": q["accuracy"],
            "accuracy_baseline": base[j],
            "accuracy_delta": q["accuracy_delta"],
            "accuracy_tasks": list(res.tasks[mi[j]]),
            "eor": q["eor"],
            "tweor": q["tweor"],
            "source": "measured" if measured[j] else "predicted",
            "excluded_reason": None if codes[j] == OK else res.reason(i),
            "gpu_specs_derived": gpu.derived,
            "notes": setup_notes(gpu, cat.quants.rows[qi[j]], engine, batch[j], cat.setup_notes,
                                 cat.models.rows[mi[j]], prompt[j]),
            # added after the first release: last, so that CSV columns keep their positions
            "evidence": evidence(coverage, gpu.id, quant, engine, batch[j], measured[j], outside[gpu.id],
                                 cat.engines.get(engine).base_id),
            "accuracy_basis": basis.setdefault((mi[j], qi[j]), accuracy_basis(
                cat, cat.models.rows[mi[j]].id, quant, acc_learned)),
            # fits by the estimate, but not at the 90th percentile of our records' memory residual (memory.tight_fit)
            "memory_tight_fit": tight[j],
        })
    return out


def setup_notes(gpu, quant, engine_id: str | None = None, batch_size: int | None = None,
                rules: Sequence[dict[str, Any]] = (), model=None, prompt_tokens: int | None = None) -> list[str]:
    """What the user must or may set for this (card, method, engine, batch size; model, prompt tokens) beyond the
    defaults: the compute dtype of a bf16 method on a card without bf16, and every measured note of `rules` (the
    catalogue's setup_notes.yaml rows) whose methods, engines and batch-size range (`batch_size_min`,
    `batch_size_max`, both inclusive, each optional) match, and, where a rule names them, the model's attention
    (`attention: grouped-query`: fewer K/V heads than query heads) and the prompt length (`prompt_tokens_min`,
    inclusive); a rule naming either does not match when the model or the prompt length is not given."""
    notes = []
    if (quant.computes_in_bf16 and quant.can_compute_in_fp16 and gpu.compute_capability is not None
            and gpu.compute_capability < 8.0):
        notes.append(f"{quant.id} must compute in float16 on {gpu.id} (no bf16 before compute capability 8.0), "
                     "e.g. bnb_4bit_compute_dtype=torch.float16; predictions assume its bf16 kernels")
    for rule in rules:
        if quant.id not in rule.get("quants", ()) or engine_id not in rule.get("engines", ()):
            continue
        if rule.get("batch_size_max") is not None and (batch_size is None or batch_size > rule["batch_size_max"]):
            continue
        if rule.get("batch_size_min") is not None and (batch_size is None or batch_size < rule["batch_size_min"]):
            continue
        if rule.get("prompt_tokens_min") is not None and (prompt_tokens is None
                                                          or prompt_tokens < rule["prompt_tokens_min"]):
            continue
        if rule.get("attention") is not None and (model is None or model.attention != rule["attention"]):
            continue
        notes.append(" ".join(str(rule["text"]).split()).format(**(rule.get("measured") or {})))
    return notes


def candidate_dict(res: Result, i: int, rank: int | None) -> dict[str, Any]:
    """One candidate as a JSON-safe dict (see `candidate_dicts`)."""
    return candidate_dicts(res, [i], [rank])[0]


def _clean(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None
