"""How close a candidate's numbers are to a measurement: the evidence behind a prediction.

A prediction for a method and engine that were measured on the same card (other models or batch sizes)
rests on more than one for a method never measured with that engine, or never measured at all (then the
roofline estimate and the learned correction's extrapolation carry it alone). The cost-model artifact
records what its training rows cover (`metadata.json` "coverage": method -> engine -> cards, rows, largest
batch; `recommender.costmodel.train.training_coverage`); this module turns that into one level per
candidate, best first:

- ``measured``: this exact cell was measured (datasets/measurements), its numbers are the measurement;
- ``same_card``: the method and engine were measured on this card, not this model/batch/workload;
- ``other_cards``: the method and engine were measured, on other cards only;
- ``other_engines``: the method was measured, never with this engine;
- ``none``: the method was never measured;
- ``unknown``: the cost model records no coverage (the analytic fallback, or an older artifact).
"""

from __future__ import annotations

from typing import Any

LEVELS = ("measured", "same_card", "other_cards", "other_engines", "none", "unknown")


def coverage_of(cost_model) -> dict | None:
    """The training coverage a cost model's artifact records, or None."""
    meta = getattr(cost_model, "meta", None)
    return meta.get("coverage") if isinstance(meta, dict) else None


def evidence(coverage: dict | None, gpu: str, quant: str, engine: str, batch_size: int,
             measured: bool) -> dict[str, Any]:
    """{level, measured_on, text} for one candidate. `measured_on`: this card for `measured`, the cards
    with training rows of this method and engine for `same_card` / `other_cards`, else empty."""
    if measured:
        return {"level": "measured", "measured_on": [gpu], "text": "measured: this exact cell"}
    if coverage is None:
        return {"level": "unknown", "measured_on": [],
                "text": "predicted; the cost model records no training coverage"}
    by_engine = coverage.get(quant) or {}
    cov = by_engine.get(engine)
    if cov:
        gpus = list(cov.get("gpus") or [])
        if gpu in gpus:
            level, text = "same_card", f"predicted; {quant} on {engine} was measured on this card (other models, " \
                                       "batch sizes or workloads)"
        else:
            level, text = "other_cards", f"predicted; {quant} on {engine} was measured on {', '.join(gpus)} only"
        top = (cov.get("batch_max_by_gpu") or {}).get(gpu) if level == "same_card" else None
        top = cov.get("batch_max") if top is None else top
        if top is not None and batch_size > top:
            text += f"; batch {batch_size} is above the largest measured ({top})"
        return {"level": level, "measured_on": gpus, "text": text}
    if by_engine:
        return {"level": "other_engines", "measured_on": [],
                "text": f"predicted; {quant} was measured only with {', '.join(sorted(by_engine))}, never with {engine}"}
    return {"level": "none", "measured_on": [],
            "text": f"predicted; {quant} was never measured: a roofline estimate and the learned correction's "
                    "extrapolation only"}
