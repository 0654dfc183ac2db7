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

Independently of the level, `slow_path` lists the cards where the method and engine were measured on a slow
path near the candidate's batch size (most of a card's records at the nearest measured batch flagged
`slow_path_suspected`: decode below half the unquantized cell's on the same engine; measure/runner.py).
Compiled torchao int8 weight-only on the H200 decoded no faster at batch 8 and 32 than at batch 1, which no
roofline foresees, so a prediction of it for another card comes with that warning.

`outside_training_range` lists the card's specs that lie outside the range of the cards the model was trained
on (`metadata.json` "card_range"): trees cannot extrapolate, so there the learned correction is that of the
nearest trained cards (on a held-out V100, below every trained card's compute capability, it was further off
than the analytic model alone; models/MODEL_CARD.md).
"""

from __future__ import annotations

import math
from typing import Any

LEVELS = ("measured", "same_card", "other_cards", "other_engines", "none", "unknown")


def coverage_of(cost_model) -> dict | None:
    """The training coverage a cost model's artifact records, or None."""
    meta = getattr(cost_model, "meta", None)
    return meta.get("coverage") if isinstance(meta, dict) else None


def accuracy_is_learned(cost_model) -> bool:
    """Whether the cost model serves `accuracy_delta` from a learned booster (else the cited table)."""
    return "accuracy_delta" in (getattr(cost_model, "boosters", None) or {})


def card_range_of(cost_model) -> dict | None:
    """{spec: [min, max]} of the cards the artifact was trained on (`train.training_card_range`), or None."""
    meta = getattr(cost_model, "meta", None)
    return meta.get("card_range") if isinstance(meta, dict) else None


_SPEC_UNITS = {"bandwidth_gbs": "GB/s", "fp16_tensor_tflops": "TFLOPS", "tdp_w": "W", "memory_gb": "GB",
               "compute_capability": ""}


def outside_training_range(card_range: dict | None, gpu) -> list[str]:
    """Where `gpu`'s specs lie outside the trained cards' range, e.g. "bandwidth_gbs 288 < 696"; empty when
    inside, unknown, or no range is recorded."""
    out = []
    for spec, (lo, hi) in (card_range or {}).items():
        v = getattr(gpu, spec, None)
        if v is None:
            continue
        unit = _SPEC_UNITS.get(spec, "")
        if v < lo:
            out.append(f"{spec} {v:g}{' ' + unit if unit else ''} < {lo:g}")
        elif v > hi:
            out.append(f"{spec} {v:g}{' ' + unit if unit else ''} > {hi:g}")
    return out


def evidence(coverage: dict | None, gpu: str, quant: str, engine: str, batch_size: int,
             measured: bool, outside: list[str] | None = None, base_engine: str | None = None) -> dict[str, Any]:
    """{level, measured_on, text, outside_training_range, slow_path} for one candidate. `measured_on`: this card for
    `measured`, the cards with training rows of this method and engine for `same_card` / `other_cards`,
    else empty. `outside`: the card's specs outside the trained range (`outside_training_range`). `slow_path`:
    `slow_path_near`, of the engine and, for an engine variant, of the engine it runs as (`base_engine`)."""
    ev = _evidence(coverage, gpu, quant, engine, batch_size, measured)
    slow = slow_path_near(coverage, quant, engine, batch_size, base_engine)
    if slow:
        ev["text"] += (f"; a slow path was measured near batch {batch_size} ("
                       + ", ".join(f"{s['gpu']} batch {s['batch_size']}"
                                   + (f" with {s['engine']}" if "engine" in s else "")
                                   + f": {s['flagged']} of {s['records']} records"
                                   for s in slow)
                       + " decoded below half the unquantized speed"
                       + "".join(f"; {s['gpu']} at x{s['energy_vs_unquantized']:.3g} its decode J/token"
                                 for s in slow if "energy_vs_unquantized" in s)
                       + ")")
        if not measured and gpu not in ev["measured_on"] and any("energy_vs_unquantized" in s for s in slow):
            ev["text"] += "; this card never ran the method on this engine, so its interval allows for that slow path"
    ev["outside_training_range"] = [] if measured else list(outside or [])
    if ev["outside_training_range"]:
        ev["text"] += ("; the card lies outside the trained cards' range (" + ", ".join(ev["outside_training_range"])
                       + "), where the learned correction extrapolates")
    ev["slow_path"] = slow  # last: CSV columns follow the keys' order, and this one came after the others
    return ev


def _evidence(coverage: dict | None, gpu: str, quant: str, engine: str, batch_size: int,
              measured: bool) -> dict[str, Any]:
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
        top = _batch_limit(cov, gpu, on_card=level == "same_card")
        if top is not None and batch_size > top:
            text += f"; batch {batch_size} is above the largest measured ({top})"
        return {"level": level, "measured_on": gpus, "text": text}
    if by_engine:
        return {"level": "other_engines", "measured_on": [],
                "text": f"predicted; {quant} was measured only with {', '.join(sorted(by_engine))}, never with {engine}"}
    return {"level": "none", "measured_on": [],
            "text": f"predicted; {quant} was never measured: a roofline estimate and the learned correction's "
                    "extrapolation only"}


def slow_path_near(coverage: dict | None, quant: str, engine: str, batch_size: int,
                   base_engine: str | None = None) -> list[dict[str, Any]]:
    """[{gpu, batch_size, flagged, records[, energy_vs_unquantized, slowdown_vs_unquantized, engine]}] per card where
    `quant` on `engine` ran a slow path at the measured batch size nearest `batch_size` (log scale; the smaller on a
    tie): more than half of the card's records at that batch that carry the flag were flagged (coverage
    `slow_path_by_gpu`, `train.slow_path_counts`). The two ratios, where the artifact records them (coverage
    `slow_path_ratio_by_gpu`, `train.slow_path_ratios`): the flagged records' median decode J/token over their
    best unquantized twin's, and that twin's tokens/s over theirs. An engine variant (`base_engine`: the engine it
    runs as, catalogue `Engine.base_id`) also gets that engine's slow paths, each with `engine` naming it, on the
    cards where the variant's own records say nothing of the method (no `slow_path_by_gpu` entry of its own): it
    compiles the method's kernels as that engine does (hf-compiled-gqa changes attention only). Empty without such
    coverage."""
    out = _slow_paths(coverage, quant, engine, batch_size)
    if base_engine and base_engine != engine:
        own = ((coverage or {}).get(quant) or {}).get(engine) or {}
        seen = set(own.get("slow_path_by_gpu") or {})
        out += [{**s, "engine": base_engine} for s in _slow_paths(coverage, quant, base_engine, batch_size)
                if s["gpu"] not in seen]
    return out


def _slow_paths(coverage: dict | None, quant: str, engine: str, batch_size: int) -> list[dict[str, Any]]:
    """`slow_path_near` of one engine."""
    cov = ((coverage or {}).get(quant) or {}).get(engine) or {}
    out = []
    for gpu, by_batch in sorted((cov.get("slow_path_by_gpu") or {}).items()):
        batches = sorted(int(b) for b in by_batch)
        if not batches:
            continue
        near = min(batches, key=lambda b: (abs(math.log(b) - math.log(max(batch_size, 1))), b))
        flagged, records = by_batch[str(near)]
        if records and flagged * 2 > records:
            entry = {"gpu": gpu, "batch_size": near, "flagged": int(flagged), "records": int(records)}
            ratio = ((cov.get("slow_path_ratio_by_gpu") or {}).get(gpu) or {}).get(str(near)) or {}
            if ratio.get("energy_per_token_j") is not None:
                entry["energy_vs_unquantized"] = ratio["energy_per_token_j"]
            if ratio.get("tokens_per_s") is not None:
                entry["slowdown_vs_unquantized"] = ratio["tokens_per_s"]
            out.append(entry)
    return out


#: levels a user can ask for with `recommend --min-evidence` (best first; "none" keeps every candidate)
MIN_EVIDENCE_LEVELS = LEVELS[:-1]


def meets_min_evidence(coverage: dict | None, gpu: str, quant: str, engine: str, batch_size: int,
                       measured: bool, minimum: str) -> bool:
    """Whether a candidate's numbers rest on at least `minimum` (a MIN_EVIDENCE_LEVELS entry). A measured
    cell meets every level. `same_card` and `other_cards` also need the batch size to be no larger than the
    largest measured for the method and engine (on this card, or on any card): a larger batch is an
    extrapolation even where the method was measured. Without recorded coverage only measured cells meet a
    level above "none"."""
    if minimum == "none" or measured:
        return True
    if minimum == "measured" or coverage is None:
        return False
    level = _evidence(coverage, gpu, quant, engine, batch_size, False)["level"]
    if LEVELS.index(level) > LEVELS.index(minimum):
        return False
    if minimum in ("same_card", "other_cards"):
        # the level is same_card or other_cards, so this entry exists
        top = _batch_limit(coverage[quant][engine], gpu, on_card=minimum == "same_card")
        return top is not None and batch_size <= top
    return True


def _batch_limit(cov: dict, gpu: str, on_card: bool) -> int | None:
    """The largest batch measured for a method and engine: on `gpu` when `on_card` (falling back to any
    card's where the coverage has no per-card figure), else on any card; None when not recorded."""
    top = (cov.get("batch_max_by_gpu") or {}).get(gpu) if on_card else None
    return cov.get("batch_max") if top is None else top


#: where a candidate's accuracy change comes from (`accuracy_basis`), for the cited-table accuracy model
ACCURACY_BASES = ("unquantized", "cited for this model", "cited for other models", "none")


def accuracy_basis(catalog, model: str, quant: str, learned: bool = False) -> str:
    """Where the accuracy change of `quant` on `model` comes from: `unquantized` (no change by definition),
    `cited for this model` (quant_accuracy.csv rows of this model), `cited for other models` (the method's
    rows on other models or none named: their average stands in), or `none` (no cited row of the method);
    with a learned accuracy model, "predicted by the learned accuracy model" instead of the cited ones."""
    if quant in ("fp32", "fp16", "bf16"):
        return "unquantized"
    rows = [r for r in catalog.quant_accuracy if r.get("quant_id") == quant and _finite(r.get("delta_abs"))]
    if not rows:
        return "none"
    if learned:
        return "predicted by the learned accuracy model"
    if any((r.get("model_id") or "").strip() == model for r in rows):
        return "cited for this model"
    return "cited for other models"


def _finite(v) -> bool:
    try:
        return float(v) == float(v) and abs(float(v)) != float("inf")
    except (TypeError, ValueError):
        return False
