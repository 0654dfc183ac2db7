"""Fit an engine's decode power floor and slope (engines.yaml `analytic.power_floor`, `power_slope`) on our
records' measured decode power.

The analytic model (`analytic.py`) predicts a decode step's GPU power (W) as

    P = P_idle + (TDP - P_idle) x min(1, floor + slope x u)      u = roofline time / predicted step time

with P_idle = `PARAMS["idle_fraction_of_tdp"]` x TDP. Floor and slope (dimensionless) are fitted per engine by
least squares in relative terms (residual (P_fit - P) / P) on `decode_avg_power_w` of our ok 16-bit/fp32
records of the engine (stable or not, every batch size and workload), u computed exactly as the analytic
model computes it with the catalogue's engine efficiency and overhead (so those are fitted first:
`engine_overhead.py`). An engine with fewer than MIN_ROWS records keeps the defaults. A floor outside [0, 1]
is fixed at the nearer bound and the slope refitted. Used by datasets/catalog/tools/fit_power_model.py
(writes engines.yaml) and by the trainer's per-fold refit (`engine_constants.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender.costmodel import engine_overhead as EO

MIN_ROWS = 20
#: the fields of a power row (parallel lists): card id, model, quant, batch, prompt and output tokens, watts
FIELDS = ("gpu", "model", "quant", "batch", "prompt", "output", "power")


@dataclass
class PowerFit:
    engine: str
    n: int
    gpus: list[str]
    floor: float
    slope: float
    median_ape_pct: float  # of the fitted power
    p80_factor: float
    default_median_ape_pct: float  # the defaults (floor 0, slope PARAMS) on the same rows
    default_p80_factor: float


def float_record_rows(catalog, files: list[Path], field: str, value) -> dict[str, dict[str, list]]:
    """Per engine of ours: the ok 16-bit/fp32 records (stable or not) of our own scope whose `value(record)` is
    positive, as parallel lists of the card id, model, quant, batch, prompt and output tokens and `field` (that
    value). Shared by the decode power rows here and the prefill rows of prefill_model.py."""
    out: dict[str, dict[str, list]] = {}
    for r, _ in EO.ok_records(files):
        if r.get("engine") not in EO.OWN_ENGINES or r.get("quant") not in EO.FLOAT_QUANTS:
            continue
        if r.get("measurement_scope") not in (None, EO.OWN_SCOPE):
            continue
        v = value(r)
        gpu = catalog.record_gpu(r)
        if gpu is None or catalog.models.find(str(r.get("model"))) is None or not v > 0:
            continue
        d = out.setdefault(r["engine"], {k: [] for k in (*FIELDS[:-1], field)})
        for k, x in (("gpu", gpu.id), ("model", r["model"]), ("quant", r["quant"]),
                     ("batch", float(r["batch_size"])), ("prompt", float(r["prompt_tokens"])),
                     ("output", float(r["output_tokens"])), (field, v)):
            d[k].append(x)
    return out


def power_rows(catalog, files: list[Path]) -> dict[str, dict[str, list]]:
    """Per engine: the float-weight ok records (stable or not) with a measured decode power (lists of FIELDS)."""
    return float_record_rows(catalog, files, "power", lambda r: EO._float(r.get("decode_avg_power_w")))


def utilisation(catalog, engine: str, rows: dict[str, list]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, idle W, TDP W) per row, as `analytic.estimate` computes them with the catalogue's engine constants."""
    from recommender.candidates import Candidates
    from recommender.costmodel import analytic
    from recommender.costmodel.features import physics

    n = len(rows["power"])
    cands = Candidates.from_ids(catalog, rows["gpu"], rows["model"], rows["quant"], [engine] * n, rows["batch"],
                                rows["prompt"], rows["output"])
    ph = physics(cands, np.full(n, np.nan))
    est = analytic.estimate(ph, cands)
    u = np.maximum(ph.t_mem_step, ph.t_comp_step) / est.t_step
    tdp = cands.col("gpu_tdp_w")
    return u, analytic.PARAMS["idle_fraction_of_tdp"] * tdp, tdp


def errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(median APE %, exp(80th percentile of |log(pred / y)|)): `engine_overhead.errors` without the max."""
    return EO.errors(pred, y)[:2]


def fit_engine(catalog, engine: str, rows: dict[str, list],
               util: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> PowerFit:
    """Floor and slope of one engine on its power rows, with u from `catalog`'s efficiency and overhead
    (`util`: `utilisation(catalog, engine, rows)` when already computed)."""
    from recommender.costmodel import analytic

    u, idle, tdp = utilisation(catalog, engine, rows) if util is None else util
    y = np.asarray(rows["power"], dtype=np.float64)
    span = tdp - idle
    ok = np.isfinite(u) & np.isfinite(span) & (span > 0)
    u, idle, span, y = u[ok], idle[ok], span[ok], y[ok]
    A = np.stack([span / y, span * u / y], axis=1)  # (idle + span (floor + slope u) - y) / y
    (floor, slope), *_ = np.linalg.lstsq(A, 1.0 - idle / y, rcond=None)
    if not 0.0 <= floor <= 1.0:  # not physical: fix the floor at the nearer bound and refit the slope alone
        floor = float(np.clip(floor, 0.0, 1.0))
        slope = float(np.linalg.lstsq(A[:, 1:], 1.0 - idle / y - A[:, 0] * floor, rcond=None)[0][0])
    pred = idle + span * np.minimum(1.0, floor + slope * u)
    default = idle + span * np.minimum(1.0, analytic.PARAMS["power_floor"] + analytic.PARAMS["power_slope"] * u)
    med, p80 = errors(pred, y)
    dmed, dp80 = errors(default, y)
    gpus = sorted({g for g, k in zip(rows["gpu"], ok, strict=True) if k})
    return PowerFit(engine, int(ok.sum()), gpus, floor, float(slope), med, p80, dmed, dp80)
