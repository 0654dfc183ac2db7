"""Fit the memory the component model misses on the engines we measure: the measured peak minus the estimate.

`recommender.memory.estimate` adds weights, KV cache, activations and a runtime overhead, the last
calibrated on NVML's device memory less the caching allocator's reserved memory (the CUDA context and
libraries). NVML's peak also holds what the allocator reserved and did not hand out at the peak (freed
blocks it keeps for reuse, fragmentation): over our H100 and H200 campaign records the timed phase's reserved
peak exceeds its allocated peak by a median 0.5 GB for 16-bit methods and 0.8-1.4 GB for quantized ones
(the dequantization and quantization temporaries), with a tail to several GB (eager attention at batch 32).
So the estimate fell under the measured peak in 88 % of the 16-bit records and 95 % of the quantized ones
(median measured / estimate x1.03 and x1.11; s30).

The residual is that gap per quantization method and engine: the median over our ok records of the
(method, engine) (on the engines we measure, `engines.yaml` `measurable`) of

    peak_mem_nvml (GiB) - the component estimate (GiB)

with its 10th and 90th percentiles, where at least MIN_RECORDS records exist; and per method over all those
engines (the row with an empty `engine_id`), which serves an engine without a row of its own (after the
engine a variant runs as). Eager engines keep more than compiled ones (bf16 0.37 against 0.15 GiB, torchao
fp8 1.50 against 0.98; s30). A method without MIN_RECORDS records keeps the component estimate.
`recommender.memory.estimate` adds it on the engines it applies to only (`applies_to`: measurable, without a
paged KV pool; vLLM reserves its pool up front, TensorRT-LLM and llama.cpp manage their own, none measured). Written to datasets/catalog/memory_residual.csv by
datasets/catalog/tools/fit_memory_residual.py and refitted by the trainer inside every cross-validation
fold, so a held-out card's records never inform its memory baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: a method needs this many records with a measured peak for a residual of its own
MIN_RECORDS = 10
COLUMNS = ("quant_id", "engine_id", "residual_gb", "residual_p10_gb", "residual_p90_gb", "n_records", "n_models",
           "gpus", "source")


def fit(quants: Sequence[str], engines: Sequence[str], measured_gb: Sequence[float], modelled_gb: Sequence[float],
        models: Sequence[str], gpus: Sequence[str], source: str = "") -> list[dict]:
    """One row per (method, engine), and per method over every engine (`engine_id` ""), with at least
    MIN_RECORDS finite (measured, modelled) pairs: the median, p10 and p90 of measured - modelled (GiB), the
    counts and the cards; sorted by method, the method's row first."""
    measured, modelled = np.asarray(measured_gb, float), np.asarray(modelled_gb, float)
    quants, engines, models, gpus = (np.asarray(a, dtype=object) for a in (quants, engines, models, gpus))
    ok = np.isfinite(measured) & np.isfinite(modelled)
    rows = []
    for q in sorted(set(quants[ok])):
        for e in ["", *sorted(set(engines[ok & (quants == q)]))]:
            sel = ok & (quants == q) & ((engines == e) if e else True)
            if sel.sum() < MIN_RECORDS:
                continue
            gap = measured[sel] - modelled[sel]
            rows.append({
                "quant_id": q, "engine_id": e, "residual_gb": round(float(np.median(gap)), 4),
                "residual_p10_gb": round(float(np.percentile(gap, 10)), 4),
                "residual_p90_gb": round(float(np.percentile(gap, 90)), 4),
                "n_records": int(sel.sum()), "n_models": len(set(models[sel])),
                "gpus": ";".join(sorted(set(gpus[sel]))), "source": source,
            })
    return rows


def applies_to(engine) -> bool:
    """Whether the residual applies to a catalogue engine: one we measure (`measurable`) whose memory is the
    caching allocator's, not a paged KV pool reserved up front (`kv_cache: paged`, e.g. vLLM, whose
    reservation `recommender.memory` models with `paged_memory_utilization`)."""
    return bool(engine.measurable) and (engine.kv_cache or "") != "paged"


def residual_table(rows: Sequence[dict], quant_ids: Sequence[str], engines: Sequence,
                   column: str = "residual_gb") -> np.ndarray:
    """The residual (GiB) per (catalogue method, catalogue engine), `quant_ids` x `engines` (catalogue Engine
    rows), from memory_residual.csv rows: the (method, engine) row, else the (method, the engine a variant runs
    as) row, else the method's row over every engine; 0 on an engine the residual does not apply to
    (`applies_to`) and where a method has no row. `column`: the median (default) or `residual_p90_gb` etc."""
    by_key = {}
    for r in rows:
        try:
            by_key[(r["quant_id"], r.get("engine_id") or "")] = float(r[column])
        except (KeyError, TypeError, ValueError):
            continue
    out = np.zeros((len(quant_ids), len(engines)))
    for j, e in enumerate(engines):
        if not applies_to(e):
            continue
        for i, q in enumerate(quant_ids):
            for key in ((q, e.id), (q, e.base_id), (q, "")):
                if key in by_key:
                    out[i, j] = by_key[key]
                    break
    return out


def frame_residual_gb(frame, catalog, rows: Sequence[dict]) -> np.ndarray:
    """The residual (GiB) `residual_table` gives each row of a training frame, from memory_residual.csv `rows`
    (0 where it does not apply): the frame's components plus this are the estimate `recommend` serves."""
    table = residual_table(rows, catalog.quants.ids(), catalog.engines.rows)
    return table[[catalog.quants.index[q] for q in frame["quant"]], [catalog.engines.index[e] for e in frame["engine"]]]


def frame_components_gb(frame, catalog) -> np.ndarray:
    """The component estimate (GiB, `recommender.memory.estimate` without the residual) of every row of a
    training frame (`recommender.costmodel.train`)."""
    from recommender.candidates import Candidates
    from recommender.memory import estimate

    cands = Candidates.from_ids(catalog, frame["gpu_id"], frame["model"], frame["quant"], frame["engine"],
                                frame["batch_size"].to_numpy(float), frame["prompt_tokens"].to_numpy(float),
                                frame["output_tokens"].to_numpy(float))
    return estimate(cands, residual=False).total_gb


def fit_frame(frame, catalog, components_gb: np.ndarray | None = None, rows: np.ndarray | None = None,
              source: str = "") -> list[dict]:
    """`fit` on a training frame's rows of ours (`origin` "ours") with a measured `memory_gb` (GiB) on an
    engine the residual applies to (`applies_to`); `rows`: only these row indices (a cross-validation fold's training rows);
    `components_gb`: `frame_components_gb`, when already computed."""
    comp = frame_components_gb(frame, catalog) if components_gb is None else components_gb
    measurable = {e.id for e in catalog.engines if applies_to(e)}
    use = (frame["origin"].to_numpy(str) == "ours") & np.isin(frame["engine"].to_numpy(object), list(measurable))
    if rows is not None:
        keep = np.zeros(len(frame), dtype=bool)
        keep[rows] = True
        use &= keep
    idx = np.flatnonzero(use)
    return fit(frame["quant"].to_numpy(object)[idx], frame["engine"].to_numpy(object)[idx],
               frame["memory_gb"].to_numpy(float)[idx], comp[idx],
               frame["model"].to_numpy(object)[idx], frame["gpu_id"].to_numpy(object)[idx], source)
