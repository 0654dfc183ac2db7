"""Fit a quantization method's decode overhead per layer on an engine, from measured step times.

HF transformers without vLLM-class kernels run a quantized method's extra kernels (quantize the
activations, dequantize or split outliers, rescale) in every layer; at decode these are small and bound by
kernel launches, so the extra time per step is about the same per layer at any model size. For each
(method, engine) with at least MIN_PAIRS pairs, every cell of the method is paired with the 16-bit cell of
the same card, model, engine, batch size and workload (bf16, else fp16: the same bytes), and the overhead
is the median over the pairs of (t_step(method) - t_step(16-bit)) / num_layers in ms (negative medians:
0). The 16-bit methods and fp32 have none by definition. Used by
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


def fit(step_ms: Mapping[CellKey, float], layers: Callable[[str], float | None]) -> list[dict]:
    """Rows {quant_id, engine_id, per_layer_overhead_ms, p10_ms, p90_ms, n_pairs, n_models, gpus} from the
    median decode step time (ms) of each cell; `layers(model)` gives a model's number of layers."""
    per: dict[tuple[str, str], list[tuple[float, str, str]]] = defaultdict(list)
    for (gpu, model, quant, engine, batch, prompt, output), t in step_ms.items():
        if quant in UNQUANTIZED:
            continue
        ref = next((step_ms[k] for q in REFERENCES if (k := (gpu, model, q, engine, batch, prompt, output)) in step_ms),
                   None)
        n = layers(str(model))
        if ref is None or not n:
            continue
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
