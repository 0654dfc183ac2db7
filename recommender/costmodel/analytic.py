"""The analytic cost model: roofline + launch overhead + a power model between idle and TDP.

Per decode step (one token for each of `batch` sequences):

    t_step = max(t_mem, t_comp) / efficiency + overhead + num_layers x method overhead per layer
    t_mem  = (weight bytes + KV bytes read) / bandwidth        t_comp = FLOPs / peak FLOP/s at the dtype

`efficiency` and `overhead` are the engine's `analytic` block in engines.yaml (roofline_efficiency,
per_token_overhead_ms), fitted together per engine by datasets/catalog/tools/fit_engine_overhead.py on
batch-1 rows (a null overhead counts as 0). The method overhead is datasets/catalog/method_overhead.csv
(fitted on our records by datasets/catalog/tools/fit_method_overhead.py; 0 for 16-bit and fp32 and where
nothing was fitted; per_layer_overhead_ms + per_layer_per_seq_ms x (batch - 1) since s27); it is a decode-step overhead and is not added to the prefill, whose quantized kernels
run on large activations (adding it there made the prefill targets worse in cross-validation).
tokens/s = batch / t_step. Prefill: the same with the prefill FLOPs and one
pass over the weights (+ the KV written), one launch overhead, times the method's prefill time ratio on the
engine; TTFT = t_prefill:

    t_prefill = (max(t_mem, t_comp) / efficiency + overhead) x prefill_time_ratio

where an engine has the prefill's own constants (engines.yaml `prefill_efficiency`, `prefill_overhead_ms`,
fitted on our 16-bit records' TTFT by datasets/catalog/tools/fit_prefill_model.py: the compute-bound prefill
runs further from its roofline than the bandwidth-bound decode step) they replace the decode step's
efficiency and overhead here. The prefill power keeps the decode step's floor and slope (a prefill power fit
of its own was tried in session s15 and made the learned prefill energy worse: docs/experiments/).

The ratio is method_overhead.csv's `prefill_time_ratio` (fit_method_overhead.py: the median over our
same-cell pairs of the measured TTFT ratio to the 16-bit cell / the modelled one; 1 for 16-bit and fp32 and
where nothing was fitted): the roofline credits torchao-fp8 the fp8 tensor rate and weight-only methods
their fewer bytes, while their quantize/dequantize kernels make every measured prefill slower than bf16's.
The prefill power follows from the longer time (u = roofline time / t_prefill below), as the decode power
does from the method overhead, so the prefill energy grows by less than the ratio (as measured); the prefill
energy is then multiplied by the method's `prefill_energy_ratio` (same file and tool: the median over the
same-cell pairs of the measured prefill energy ratio to the 16-bit cell / the one modelled so far; 1 where
nothing was fitted). Where the fit found knots (since s28: the same medians per token count of the batch,
`prefill_ratio_by_tokens`, `prefill_energy_ratio_by_tokens`) both ratios follow batch x prompt tokens
(`method_overhead.ratio_at_tokens`) instead of the one median.

Power: P = P_idle + (TDP - P_idle) x min(1, floor + slope x u), u = (max(t_mem, t_comp) + busy x t_method) / t
(the fraction of the step spent at the roofline, plus the busy share of the method's per-layer overhead time
t_method); floor and slope are the engine's fitted `power_floor` / `power_slope` (engines.yaml) where it has them,
else `PARAMS`; busy is method_overhead.csv's `decode_busy_fraction` (fit_method_overhead.py: per same-cell pair
with the 16-bit cell, the share that brings the modelled power to the measured one net of the machine's offset,
median per method and engine; 0 where nothing was fitted, so the overhead counts as idle gaps). The torchao
weight-only methods' overhead is arithmetic and draws power (docs/experiments/decode-busy-share-s29.md).
Energy per output token = P x t_step / batch; prefill energy = P x t_prefill. Memory = `recommender.memory.estimate`
(weights + KV + activations + runtime overhead, plus the fitted residual on the engines we measure).
Accuracy change = mean of the cited `quant_accuracy.csv` deltas for that method (model-specific rows when
there are any, else all rows of the method); 0 for unquantized dtypes, NaN where nothing is cited.

Every constant is in `PARAMS` with where it comes from. p10/p90 = p50 ÷/x `INTERVAL_FACTOR[target]`,
the 80th percentile of |log(measured / analytic)| over the public + our rows (see its comment).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.candidates import Candidates
from recommender.costmodel.base import TARGETS, Quantiles
from recommender.costmodel.features import Physics, physics

#: Model parameters, each calibrated on a named measurement (docs are in /work/shared/docs, copied to
#: the repo's docs where the lead keeps them).
PARAMS = {
    # Idle power as a fraction of TDP. Calibrated on h100-first-measurements.md: 72.7 W idle on the
    # 700 W H100 SXM (72.7 / 700 = 0.104). Assumed to carry over to other cards as a fraction of TDP.
    "idle_fraction_of_tdp": 72.7 / 700.0,
    # Power fraction of the (TDP - idle) span per unit of roofline utilisation u. Calibrated on
    # h100-first-measurements.md, bf16 eager batch 1 (Qwen2.5-7B architecture): 214 W at 49.0 tokens/s.
    # Roofline time of that cell: 15.23 GB of weights per step / 3,360 GB/s = 4.53 ms, so
    # u = 4.53 ms / 20.4 ms = 0.222 and the power fraction (214 - 72.7) / (700 - 72.7) = 0.225:
    # slope = 0.225 / 0.222 = 1.015. (Check on the same page: compiled, batch 1, u = 0.443 ->
    # 354 W predicted vs 322 W measured.)
    "power_slope": 1.015,
    # Power fraction at zero roofline utilisation (a launch-bound step still draws power above idle).
    # 0 here: the single calibration cell above cannot separate it from the slope. Engines with enough of
    # our records carry a fitted floor and slope in engines.yaml (`analytic.power_floor`, `power_slope`,
    # datasets/catalog/tools/fit_power_model.py), which replace both defaults for their rows. The decode fit
    # is applied to the prefill too (its u is mostly near 1, where floor and slope matter little).
    "power_floor": 0.0,
}

#: p90/p50 = p50/p10 per target: exp(80th percentile of |log(measured / analytic p50)|) over the rows of
#: datasets/public (2026-11-26 import: 392 energy, 1,026 throughput, 18 TTFT rows on A100, A40, V100,
#: H100, GH200), as printed by `train-cost-model --analytic-report --no-default-measurements` (every GPU
#: pooled; per-GPU factors are in models/MODEL_CARD.md), recomputed with the engine efficiencies and
#: overheads of datasets/catalog/tools/fit_engine_overhead.py (before that fit: 3.05, 2.78, 1.13; the
#: tokens/s factor recomputed on 2026-11-27 with the engine and power fits of session s9: 1.72 -> 1.59, the
#: energy and TTFT factors unchanged at 3.16 and 1.44).
#: prefill_energy_j and memory_gb have no public rows: their factors are project priors (prefill energy:
#: the decode-energy factor; memory: 1.25); our H100 records now carry both, and the report including
#: them (without --no-default-measurements) is the place to replace the priors from.
INTERVAL_FACTOR = {
    "energy_per_token_j": 3.16,
    "tokens_per_s": 1.59,
    "ttft_ms": 1.44,
    "prefill_energy_j": 3.16,  # prior: no public rows
    "memory_gb": 1.25,  # prior: no public rows
}

_UNQUANTIZED = ("fp32", "fp16", "bf16")


@dataclass
class Estimate:
    """Analytic point estimates per row (SI units unless named)."""

    t_step: np.ndarray
    t_prefill: np.ndarray
    #: the prefill time with the method's median prefill time ratio instead of its knots (s): what the trees'
    #: `q_log_analytic_prefill_ratio` feature reads (features.py)
    t_prefill_median_ratio: np.ndarray
    #: J per output token with no busy share of the method overhead (`power_w_unbusy`): what the trees'
    #: `q_log_analytic_energy_ratio` reads (features.py), so a change of the share moves the baseline, not them
    energy_per_token_j_unscaled: np.ndarray
    #: decode power (W) with no busy share of the method overhead, and the watts one unit of share adds (uncapped):
    #: what method_overhead.fit_decode_busy_fraction fits the share against
    power_w_unbusy: np.ndarray
    power_w_per_busy_share: np.ndarray
    tokens_per_s: np.ndarray
    power_fraction: np.ndarray  # 0..1 of the (TDP - idle) span, decode
    power_w: np.ndarray  # decode
    prefill_power_w: np.ndarray
    energy_per_token_j: np.ndarray  # decode, whole batch energy / all output tokens
    ttft_ms: np.ndarray
    prefill_energy_j: np.ndarray
    memory_gb: np.ndarray
    output_tokens: np.ndarray
    batch: np.ndarray

    def end_to_end(self) -> tuple[np.ndarray, np.ndarray]:
        """(output tokens/s, J per output token) of a whole generate call, prefill included.

        This is what the public datasets report (their timers and meters span prefill + decode); the
        trainer uses it as the analytic baseline of rows whose measurement scope includes prefill.
        """
        out = self.output_tokens
        t = self.t_prefill + out * self.t_step
        energy = self.prefill_energy_j + out * self.power_w * self.t_step
        return self.batch * out / t, energy / (self.batch * out)


def estimate(ph: Physics, cands: Candidates) -> Estimate:
    """Analytic estimates from the physics of each row."""
    p = PARAMS
    with np.errstate(divide="ignore", invalid="ignore"):
        roof = np.maximum(ph.t_mem_step, ph.t_comp_step)
        t_step = roof / ph.efficiency + ph.overhead_s + ph.method_overhead_s
        roof_pre = np.maximum(ph.t_mem_prefill, ph.t_comp_prefill)
        # the prefill's own constants where the engine has them (prefill_model.py), else the decode step's
        t_pre_unscaled = roof_pre / ph.prefill_efficiency + ph.prefill_overhead_s
        t_pre = t_pre_unscaled * ph.prefill_time_ratio
        tdp = cands.col("gpu_tdp_w")
        idle = p["idle_fraction_of_tdp"] * tdp
        floor = np.where(np.isnan(ph.power_floor), p["power_floor"], ph.power_floor)
        slope = np.where(np.isnan(ph.power_slope), p["power_slope"], ph.power_slope)
        frac = np.minimum(1.0, floor + slope * (roof + ph.decode_busy_fraction * ph.method_overhead_s) / t_step)
        power_unbusy = idle + (tdp - idle) * np.minimum(1.0, floor + slope * roof / t_step)
        frac_pre = np.minimum(1.0, floor + slope * roof_pre / t_pre)
        power = idle + (tdp - idle) * frac
        power_pre = idle + (tdp - idle) * frac_pre
        batch = cands.batch_size
        return Estimate(
            t_step=t_step, t_prefill=t_pre, t_prefill_median_ratio=t_pre_unscaled * ph.prefill_time_ratio_median,
            energy_per_token_j_unscaled=power_unbusy * t_step / batch, power_w_unbusy=power_unbusy,
            power_w_per_busy_share=(tdp - idle) * slope * ph.method_overhead_s / t_step,
            tokens_per_s=batch / t_step, power_fraction=frac, power_w=power,
            prefill_power_w=power_pre, energy_per_token_j=power * t_step / batch, ttft_ms=t_pre * 1e3,
            prefill_energy_j=power_pre * t_pre * ph.prefill_energy_ratio, memory_gb=ph.memory_gb, output_tokens=cands.output_tokens,
            batch=batch,
        )


def accuracy_delta(cands: Candidates) -> Quantiles:
    """Cited accuracy change per row: p50 = mean of the cited deltas, p10/p90 = their min/max.

    Model-specific rows of `quant_accuracy.csv` are used when the candidate's model has any for that
    method; otherwise every row of the method (any model, or general). Unquantized dtypes: 0.
    """
    cat = cands.catalog
    nq, nm = len(cat.quants), len(cat.models)
    p10, p50, p90 = (np.full((nq, nm), np.nan) for _ in range(3))
    by_quant: dict[str, dict[str, list[float]]] = {}
    for row in cat.quant_accuracy:
        try:
            d = float(row.get("delta_abs"))
        except (TypeError, ValueError):
            continue
        if np.isfinite(d):
            per_model = by_quant.setdefault(row.get("quant_id") or "", {})
            per_model.setdefault((row.get("model_id") or "").strip(), []).append(d)
    for qj, q in enumerate(cat.quants.rows):
        if q.id in _UNQUANTIZED:
            p10[qj], p50[qj], p90[qj] = 0.0, 0.0, 0.0
            continue
        per_model = by_quant.get(q.id)
        if not per_model:
            continue
        general = np.array([d for ds in per_model.values() for d in ds])
        p10[qj], p50[qj], p90[qj] = general.min(), general.mean(), general.max()
        for mid, ds in per_model.items():
            mj = cat.models.index.get(mid)
            if mj is not None:
                own = np.array(ds)
                p10[qj, mj], p50[qj, mj], p90[qj, mj] = own.min(), own.mean(), own.max()
    qi, mi = cands.quant_idx, cands.model_idx
    return Quantiles(p10[qi, mi], p50[qi, mi], p90[qi, mi])


def _band(p50: np.ndarray, factor: float) -> Quantiles:
    return Quantiles(p50 / factor, p50, p50 * factor)


def point_estimates(est: Estimate) -> dict[str, np.ndarray]:
    """The analytic p50 of every multiplicative target (all but accuracy_delta)."""
    return {"energy_per_token_j": est.energy_per_token_j, "tokens_per_s": est.tokens_per_s,
            "ttft_ms": est.ttft_ms, "prefill_energy_j": est.prefill_energy_j, "memory_gb": est.memory_gb}


class AnalyticCostModel:
    """Roofline + overhead + power model; the fallback when no trained artifact is present."""

    name = "analytic-v1"

    def __init__(self) -> None:
        self.labels = {t: self.name for t in TARGETS}

    def predict(self, cands: Candidates, phys: Physics | None = None, est: Estimate | None = None
                ) -> dict[str, Quantiles]:
        """Every target for every row; `phys`/`est` of the same rows are reused when given."""
        ph = phys if phys is not None else physics(cands)
        est = est if est is not None else estimate(ph, cands)
        out = {t: _band(v, INTERVAL_FACTOR[t]) for t, v in point_estimates(est).items()}
        out["accuracy_delta"] = accuracy_delta(cands)
        return out

    def predict_p50(self, cands: Candidates, targets=None) -> dict[str, np.ndarray]:
        """p50 only of `targets` (default: all), equal to `predict(cands)[t].p50`; for ranking."""
        targets = tuple(TARGETS) if targets is None else tuple(targets)
        out: dict[str, np.ndarray] = {}
        if any(t != "accuracy_delta" for t in targets):
            points = point_estimates(estimate(physics(cands), cands))
            out = {t: points[t] for t in targets if t in points}
        if "accuracy_delta" in targets:
            out["accuracy_delta"] = accuracy_delta(cands).p50
        return out
