"""The workload being served and the paper's metrics (EOR, TWEOR, §3.3) plus cost and carbon.

Definitions (all vectorised over candidate rows):

- score: mean of the available tasks among the paper's five (mmlu, arc_challenge, truthfulqa_mc2,
  gsm8k, hellaswag) on the 0-100 percentage scale, plus the predicted accuracy change x 100. The paper
  does not state its score scale; it reports accuracy in percent ("98% baseline performance"), so we
  use percent. The paper names "TruthfulQA" without a variant: truthfulqa_mc2 is used, else
  truthfulqa_mc1 where a model's cited scores only have mc1. The tasks that contributed are listed per
  candidate (`accuracy_tasks`), so scores over different task sets can be told apart.
- the workload is `requests` requests of `prompt_tokens` in / `output_tokens` out, run as
  ceil(requests / batch) static batches (the last, partial batch costs a full batch).
- Wh = batches x (prefill energy of a batch + decode J/token x batch x output_tokens) x PUE / 3600.
- s = batches x latency_s, latency_s = ttft + output_tokens / (tokens_per_s / batch) (one request).
- EOR = score / Wh; TWEOR = score / (Wh x s)  (paper §3.3, exactly).
- $ and gCO2e per 1M output tokens use the all-in workload energy per output token (prefill
  amortised, PUE included).

The paper gives no prompt/output length for its deployment figures; the default workload is
256 prompt / 128 output tokens (a project choice, stated in every `--format json` query).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recommender.costmodel.base import Quantiles

#: The paper's five benchmark tasks (§3.4), in its order.
PAPER_TASKS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "gsm8k", "hellaswag")
#: Stand-ins, in order of preference, for a paper task a model has no cited score for.
TASK_FALLBACKS = {"truthfulqa_mc2": ("truthfulqa_mc1",)}
DEFAULT_PROMPT_TOKENS = 256
DEFAULT_OUTPUT_TOKENS = 128
DEFAULT_REQUESTS = 1000


@dataclass(frozen=True)
class Workload:
    """Requests to serve and the energy context. PUE multiplies GPU energy (1.0 = GPU only, as the paper)."""

    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    requests: int = DEFAULT_REQUESTS
    pue: float = 1.0
    price_per_kwh: float | None = None  # USD per kWh
    grid_gco2_per_kwh: float | None = None  # gCO2e per kWh

    def __post_init__(self):
        for name in ("prompt_tokens", "output_tokens", "requests", "pue"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def baseline_score(baseline: dict[str, float]) -> tuple[float, tuple[str, ...]]:
    """Mean of the paper's tasks present in `baseline` (0..1 values), as percent, and the tasks used."""
    tasks = []
    for task in PAPER_TASKS:
        found = [t for t in (task, *TASK_FALLBACKS.get(task, ())) if baseline.get(t) is not None]
        if found:
            tasks.append(found[0])
    if not tasks:
        return float("nan"), ()
    return 100.0 * sum(baseline[t] for t in tasks) / len(tasks), tuple(tasks)


def n_batches(requests: int, batch: np.ndarray) -> np.ndarray:
    """Static batches needed for `requests` requests."""
    return np.ceil(requests / batch)


def latency_s(ttft_ms, tokens_per_s, batch, output_tokens) -> np.ndarray:
    """Time of one request (s): prefill of its batch, then its output tokens at the per-sequence rate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return ttft_ms / 1000.0 + output_tokens * batch / tokens_per_s


def energy_wh(prefill_energy_j, energy_per_token_j, batch, w: Workload, requests: int | None = None) -> np.ndarray:
    """Energy of the workload (Wh, x PUE): per batch prefill + decode J/token x batch x output tokens."""
    per_batch = prefill_energy_j + energy_per_token_j * batch * w.output_tokens
    return n_batches(w.requests if requests is None else requests, batch) * per_batch * w.pue / 3600.0


def eor(score, wh) -> np.ndarray:
    """Energy Output Ratio = score / Wh (paper §3.3)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return score / wh


def tweor(score, wh, seconds) -> np.ndarray:
    """Time-Weighted Energy Output Ratio = score / (Wh x s) (paper §3.3)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return score / (wh * seconds)


def per_million_tokens(wh, w: Workload, rate: float | None) -> np.ndarray:
    """Cost (rate per kWh: USD or gCO2e) of 1M output tokens at the workload's all-in energy; NaN if no rate."""
    if rate is None:
        return np.full(np.shape(wh), np.nan)
    kwh_per_token = wh / 1000.0 / (w.requests * w.output_tokens)
    return kwh_per_token * 1e6 * rate


def evaluate(preds: dict[str, Quantiles], score: Quantiles, batch: np.ndarray, w: Workload,
             p50_only: bool = False) -> dict[str, Quantiles]:
    """Workload metrics with p10/p50/p90 from the cost model's quantiles.

    Interval ends combine the ends of the inputs that push a metric the same way (full correlation
    assumed, so the interval is conservative); p50 uses the p50 of every input, so EOR.p50 equals
    accuracy.p50 / energy_wh.p50 exactly. `p50_only`: compute p50 alone (p10/p90 are one shared
    read-only NaN array), for ranking; the p50 values are the same as in the full computation.
    """
    ttft, tps, ept, pre = (preds[k] for k in ("ttft_ms", "tokens_per_s", "energy_per_token_j", "prefill_energy_j"))
    if p50_only:
        return _evaluate_p50(ttft.p50, tps.p50, ept.p50, pre.p50, score.p50, batch, w)
    out = w.output_tokens
    lat = Quantiles(*(latency_s(t, r, batch, out) for t, r in ((ttft.p10, tps.p90), (ttft.p50, tps.p50),
                                                            (ttft.p90, tps.p10))))
    nb = n_batches(w.requests, batch)
    secs = Quantiles(nb * lat.p10, nb * lat.p50, nb * lat.p90)
    wh = Quantiles(*(energy_wh(p, e, batch, w) for p, e in ((pre.p10, ept.p10), (pre.p50, ept.p50),
                                                          (pre.p90, ept.p90))))
    wh1k = Quantiles(*(energy_wh(p, e, batch, w, 1000) for p, e in ((pre.p10, ept.p10), (pre.p50, ept.p50),
                                                                  (pre.p90, ept.p90))))
    return {
        "latency_s": lat,
        "workload_time_s": secs,
        "energy_wh": wh,
        "wh_per_1k_requests": wh1k,
        "usd_per_1m_tokens": Quantiles(*(per_million_tokens(x, w, w.price_per_kwh) for x in (wh.p10, wh.p50, wh.p90))),
        "gco2e_per_1m_tokens": Quantiles(*(per_million_tokens(x, w, w.grid_gco2_per_kwh)
                                           for x in (wh.p10, wh.p50, wh.p90))),
        "eor": Quantiles(eor(score.p10, wh.p90), eor(score.p50, wh.p50), eor(score.p90, wh.p10)),
        "tweor": Quantiles(tweor(score.p10, wh.p90, secs.p90), tweor(score.p50, wh.p50, secs.p50),
                           tweor(score.p90, wh.p10, secs.p10)),
    }


def _evaluate_p50(ttft, tps, ept, pre, score, batch, w: Workload) -> dict[str, Quantiles]:
    """`evaluate`'s p50s alone (the same expressions, so the same values)."""
    nan = np.full(np.shape(batch), np.nan)
    nan.setflags(write=False)
    lat = latency_s(ttft, tps, batch, w.output_tokens)
    secs = n_batches(w.requests, batch) * lat
    wh = energy_wh(pre, ept, batch, w)
    out = {
        "latency_s": lat,
        "workload_time_s": secs,
        "energy_wh": wh,
        "wh_per_1k_requests": energy_wh(pre, ept, batch, w, 1000),
        "usd_per_1m_tokens": per_million_tokens(wh, w, w.price_per_kwh),
        "gco2e_per_1m_tokens": per_million_tokens(wh, w, w.grid_gco2_per_kwh),
        "eor": eor(score, wh),
        "tweor": tweor(score, wh, secs),
    }
    return {k: Quantiles(nan, v, nan) for k, v in out.items()}
