"""Fit a quantization method's decode overhead per layer on an engine, from measured step times.

HF transformers without vLLM-class kernels run a quantized method's extra kernels (quantize the
activations, dequantize or split outliers, rescale) in every layer; at decode these are small and bound by
kernel launches, so the extra time per step is about the same per layer at any model size. For each
(method, engine) with at least MIN_PAIRS pairs, every cell of the method is paired with the 16-bit cell of
the same card, model, engine, batch size and workload (bf16, else fp16: the same bytes), and the overhead
is the median over the pairs of what the analytic model leaves unexplained per layer, in ms:

    ((t_step(method) - t_step(16-bit)) - (modelled(method) - modelled(16-bit))) / num_layers

with `modelled` the analytic step time without method overheads (`modelled_step_ms`), which already
charges the method's fewer weight bytes and, above a few tokens per matmul, its dequantized copy
(quants.yaml `dequantize_*`). Fitting the raw difference instead mixed that copy into the per-layer
figure: bnb-nf4 compiled measured -0.02 ms/layer at batch 1 and 0.16-0.57 at batch 8-64, growing with
the layer's weights; the unexplained part is a median 0.063 at batch 1 and 0.02-0.06 at batch 8 and 32
(2026-11-27 records), though 0.30-0.34 at batch 64, which the dequantized copy's bytes do not explain
either (one median over every batch size is fitted: 0.052). Negative medians are
written as 0. The 16-bit methods and fp32 have none by definition. Used by
datasets/catalog/tools/fit_method_overhead.py (writes datasets/catalog/method_overhead.csv) and by the
trainer, which refits it inside every cross-validation fold so held-out rows never inform it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np

UNQUANTIZED = ("fp32", "fp16", "bf16")
REFERENCES = ("bf16", "fp16")  # the 16-bit cell a method is compared with, in order of preference
MIN_PAIRS = 3

#: a cell: (gpu, model, quant, engine, batch, prompt, output)
CellKey = tuple


def fit(step_ms: Mapping[CellKey, float], layers: Callable[[str], float | None],
        modelled_ms: Mapping[CellKey, float] | None = None) -> list[dict]:
    """Rows {quant_id, engine_id, per_layer_overhead_ms, p10_ms, p90_ms, n_pairs, n_models, gpus} from the
    median decode step time (ms) of each cell; `layers(model)` gives a model's number of layers.

    With `modelled_ms` (`modelled_step_ms`: the analytic step time of each cell without any method overhead)
    a pair's overhead is what the analytic model leaves unexplained: the measured difference minus the
    modelled one (fewer weight bytes, a dequantized copy), per layer."""
    per: dict[tuple[str, str], list[tuple[float, str, str]]] = defaultdict(list)
    for key, t in step_ms.items():
        gpu, model, quant, engine, batch, prompt, output = key
        if quant in UNQUANTIZED:
            continue
        ref_key = next((k for q in REFERENCES if (k := (gpu, model, q, engine, batch, prompt, output)) in step_ms),
                       None)
        n = layers(str(model))
        if ref_key is None or not n:
            continue
        ref = step_ms[ref_key]
        if modelled_ms is not None:
            if key not in modelled_ms or ref_key not in modelled_ms:
                continue  # a cell the catalogue cannot model (an id it does not know)
            t, ref = t - modelled_ms[key], ref - modelled_ms[ref_key]
        per[(str(quant), str(engine))].append(((t - ref) / n, str(model), str(gpu)))
    out = []
    for (quant, engine), pairs in sorted(per.items()):
        if len(pairs) < MIN_PAIRS:
            continue
        d = np.array([p[0] for p in pairs])
        out.append({
            "quant_id": quant, "engine_id": engine,
            "per_layer_overhead_ms": round(max(0.0, float(np.median(d))), 4),
            "p10_ms": round(float(np.percentile(d, 10)), 4), "p90_ms": round(float(np.percentile(d, 90)), 4),
            "n_pairs": len(pairs), "n_models": len({p[1] for p in pairs}),
            "gpus": ";".join(sorted({p[2] for p in pairs})),
        })
    return out


def step_times(cells: list[CellKey], tokens_per_s: list[float], batch: list[float]) -> dict[CellKey, float]:
    """Median decode step time (ms, batch / tokens_per_s) per cell key over its rows; rows without a
    positive throughput are left out."""
    times: dict[CellKey, list[float]] = defaultdict(list)
    for key, tps, b in zip(cells, tokens_per_s, batch, strict=True):
        if tps is not None and np.isfinite(tps) and tps > 0 and b:
            times[key].append(1000.0 * float(b) / float(tps))
    return {k: float(np.median(v)) for k, v in times.items()}


def modelled_step_ms(catalog, cells: list[CellKey]) -> dict[CellKey, float]:
    """The analytic decode step time (ms) of each cell (catalogue ids) without any method overhead: the
    roofline time of its weight, dequantized-copy and KV bytes (or FLOPs) / the engine's efficiency + the
    engine's per-step overhead (`recommender.costmodel.analytic`). Cells with an id the catalogue does not
    know are left out."""
    from recommender.candidates import Candidates
    from recommender.costmodel import features as F

    tables = (catalog.gpus, catalog.models, catalog.quants, catalog.engines)
    cells = [c for c in cells if all(t.find(str(x)) is not None for t, x in zip(tables, c[:4], strict=True))]
    if not cells:
        return {}
    cols = list(zip(*cells, strict=True))
    cands = Candidates.from_ids(catalog, cols[0], cols[1], cols[2], cols[3], np.asarray(cols[4], float),
                                np.asarray(cols[5], float), np.asarray(cols[6], float))
    ph = F.physics(cands)
    t = np.maximum(ph.t_mem_step, ph.t_comp_step) / ph.efficiency + ph.overhead_s
    return {k: float(v) * 1e3 for k, v in zip(cells, t, strict=True)}
