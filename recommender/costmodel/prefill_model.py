"""Fit an engine's prefill constants (engines.yaml `analytic.prefill_efficiency`, `prefill_overhead_ms`) on our
records' measured time to first token.

The analytic model (`analytic.py`) times a prefill (one forward pass over the whole batch's prompt) as

    t_prefill = roofline / prefill_efficiency + prefill_overhead                 (s)

with roofline = max(bytes / bandwidth, FLOPs / peak) of the prefill. Without these keys it reuses the decode
step's `roofline_efficiency` and `per_token_overhead_ms`, fitted on bandwidth-bound decode steps, which put the
compute-bound prefill of our 16-bit records at about 0.68x its measured time (hf-eager: efficiency 1.0 for
the decode against about 0.6 for the prefill).

Fitted per engine on our ok 16-bit/fp32 records with a measured TTFT (`ttft_ms`), stable or not (the prefill is
timed on its own): 1 / efficiency and overhead by least squares in relative terms (residual (t_fit - t) / t); an
efficiency above 1 is fixed at 1 and a negative overhead at 0, the other refitted alone. An engine with fewer
than MIN_ROWS such records keeps the decode constants. Used by datasets/catalog/tools/fit_prefill_model.py
(writes engines.yaml) and by the trainer's per-fold refit (`engine_constants.py`). Quantized methods are not
fitted here: their prefill is the 16-bit one times method_overhead.csv's `prefill_time_ratio`
(fit_method_overhead.py, run after).

The prefill power keeps the decode's floor and slope. A prefill power fit of its own (the same law on
prefill_energy_j / TTFT) was tried in session s15: it cut the analytic prefill energy error from 44 to 15 %
but made the learned prefill energy worse in every cross-validation (docs/experiments/prefill-power-s15.md;
measured before `method_overhead.modelled_prefill_ms` used these constants, in both arms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender.costmodel import engine_overhead as EO
from recommender.costmodel import power_model as PM

MIN_ROWS = 20
#: the fields of a prefill row (parallel lists): card id, model, quant, batch, prompt and output tokens and the
#: measured TTFT (s)
FIELDS = ("gpu", "model", "quant", "batch", "prompt", "output", "ttft_s")


@dataclass
class PrefillFit:
    engine: str
    n: int
    gpus: list[str]
    efficiency: float
    overhead_ms: float
    time_median_ape_pct: float  # of the fitted TTFT
    time_p80_factor: float
    default_time_median_ape_pct: float  # the decode constants on the same rows


def prefill_rows(catalog, files: list[Path]) -> dict[str, dict[str, list]]:
    """Per engine: our float-weight ok records with a measured TTFT (lists of FIELDS)."""
    return PM.float_record_rows(catalog, files, "ttft_s", lambda r: EO._float(r.get("ttft_ms")) / 1e3)


def roofline(catalog, engine: str, rows: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    """(prefill roofline time s, the decode constants' prefill time s) per row, as `analytic.estimate` computes
    them with `catalog` (the second: what it does without this fit)."""
    from recommender.candidates import Candidates
    from recommender.costmodel.features import physics

    n = len(rows["ttft_s"])
    cands = Candidates.from_ids(catalog, rows["gpu"], rows["model"], rows["quant"], [engine] * n, rows["batch"],
                                rows["prompt"], rows["output"])
    ph = physics(cands, np.full(n, np.nan))
    roof = np.maximum(ph.t_mem_prefill, ph.t_comp_prefill)
    return roof, roof / np.where(np.isnan(ph.efficiency), 1.0, ph.efficiency) + ph.overhead_s


def fit_time(roof: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(efficiency, overhead s) of t = roof / efficiency + overhead, relative least squares, efficiency <= 1
    and overhead >= 0."""
    A = np.stack([roof / t, 1.0 / t], axis=1)
    b = np.ones_like(t)
    (a, o), *_ = np.linalg.lstsq(A, b, rcond=None)
    if a < 1.0:  # faster than the roofline: efficiency fixed at 1
        a = 1.0
        o = float(np.linalg.lstsq(A[:, 1:], b - A[:, 0], rcond=None)[0][0])
    if o < 0.0:
        o = 0.0
        a = max(1.0, float(np.linalg.lstsq(A[:, :1], b, rcond=None)[0][0]))
    return 1.0 / a, float(o)


def fit_engine(catalog, engine: str, rows: dict[str, list], precomputed: tuple | None = None) -> PrefillFit:
    """Efficiency and overhead of one engine's prefill on its rows (`precomputed`: `roofline(catalog, engine,
    rows)` when already computed)."""
    roof, default = roofline(catalog, engine, rows) if precomputed is None else precomputed
    t = np.asarray(rows["ttft_s"], dtype=np.float64)
    ok = np.isfinite(roof) & (roof > 0)
    eff, overhead = fit_time(roof[ok], t[ok])
    t_fit = roof / eff + overhead
    med, p80 = PM.errors(t_fit[ok], t[ok])
    gpus = sorted({g for g, k in zip(rows["gpu"], ok, strict=True) if k})
    return PrefillFit(engine, int(ok.sum()), gpus, float(eff), overhead * 1e3, med, p80,
                      PM.errors(default[ok], t[ok])[0])
