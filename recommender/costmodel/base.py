"""The cost-model interface shared by the analytic and the learned predictors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recommender.candidates import Candidates

#: Targets every cost model predicts, with units.
TARGETS = {
    "energy_per_token_j": "GPU energy per output token in decode (J), whole batch energy / all its output tokens",
    "tokens_per_s": "aggregate decode throughput of the whole batch (tokens/s)",
    "ttft_ms": "time to first token of one request, i.e. prefill of the batch (ms)",
    "prefill_energy_j": "GPU energy of the prefill of the whole batch (J)",
    "memory_gb": "peak GPU memory (GB)",
    "accuracy_delta": "change of the 0..1 task score versus the unquantized baseline (absolute)",
}


@dataclass
class Quantiles:
    """p10/p50/p90 arrays aligned with the candidate rows (NaN where unknown)."""

    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray

    def take(self, sel) -> Quantiles:
        return Quantiles(self.p10[sel], self.p50[sel], self.p90[sel])

    def as_dict(self, i: int) -> dict[str, float | None]:
        return {k: _clean(getattr(self, k)[i]) for k in ("p10", "p50", "p90")}


class CostModel(Protocol):
    name: str  # e.g. "analytic-v1" or "lightgbm-<hash>"

    def predict(self, cands: Candidates) -> dict[str, Quantiles]:
        """Predict every target in TARGETS for every candidate row."""
        ...


class FastCostModel(CostModel, Protocol):
    """A cost model that can also predict p50 alone (what ranking needs; `recommender.rank` uses it when
    present). `predict_p50(cands, targets)[t]` must equal `predict(cands)[t].p50` exactly."""

    def predict_p50(self, cands: Candidates, targets=None) -> dict[str, np.ndarray]:
        """p50 of `targets` (default: every target in TARGETS) for every candidate row."""
        ...


def _clean(v) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else v
