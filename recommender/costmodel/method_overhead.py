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
either. Where the per-batch medians rise (compiled torchao int4 weight-only 0.15 / 0.20 / 0.53 ms per layer
at batch 1 / 8 / 32, compiled int8 weight-only's slow path 0.26 / 3.97 / 13.97; s27 records) the overhead is a
line in the batch (`_batch_line`: per_layer_overhead_ms at batch 1, per_layer_per_seq_ms per further
sequence); elsewhere one median over every batch size (tried in s17 and s18, not shipped; shipped in s27:
docs/experiments/method-overhead-batch-slope-s17.md). Negative medians are
written as 0. The 16-bit methods and fp32 have none by definition. Used by
datasets/catalog/tools/fit_method_overhead.py (writes datasets/catalog/method_overhead.csv) and by the
trainer, which refits it inside every cross-validation fold so held-out rows never inform it.

The prefill counterpart (`fit_prefill`) is a ratio, not an overhead per layer: the roofline times a
method's prefill at its compute dtype (torchao-fp8 at the fp8 tensor rate, 2x bf16) and its fewer weight
bytes, yet our H100/H200 records time every quantized method's prefill slower than bf16's (torchao-fp8
eager x3.2, torchao-int4-wo x13, bnb-int8 x3.2, bnb-nf4 x1.16 median TTFT over same-cell pairs): the
activation quantization, dequantization and unfused kernels run on large activations here, and their cost
grows with the tokens, not with the layers. Per (method, engine) with at least MIN_PAIRS pairs of TTFT
(`ttft_ms`), the ratio is the median over the pairs of

    (ttft(method) / ttft(16-bit)) / (modelled(method) / modelled(16-bit))

with `modelled` the analytic prefill time without this ratio (`modelled_prefill_ms`), so the speed-up the
roofline already credits (fp8 tensor rate, fewer bytes) is taken back by the ratio, not twice. The
analytic model multiplies the method's prefill time by it (`recommender.costmodel.analytic`); its prefill
power then follows from the longer time like any other time off the roofline (u = roofline time / time),
so the prefill energy grows by less than the ratio, as measured (prefill energy ratio / TTFT ratio to
16-bit: median 0.6-0.7 for bnb-int8, torchao-fp8, torchao-int4-wo, torchao-int8-dyn; 1.0 for bnb-nf4/fp4,
torchao-int8-wo). A ratio is never written below PREFILL_RATIO_FLOOR (see there). The power model undershoots
that energy, so `fit_prefill_energy` fits a second ratio the same way, on the measured prefill energy against
the analytic one with the time ratio in place (`modelled_prefill_energy_j`; no floor), which the analytic model
multiplies into the prefill energy.

Both ratios move with the prefill's tokens (batch x prompt tokens), not along one line (compiled torchao int4
weight-only x4.3 at 256 tokens, x14 at 1024-2048, x16 from 8192; torchao fp8 x4.8 falling to x2.1; bnb
LLM.int8 x3.3 to x1.9; 2026-11-29 records). Since s28 each fit also writes knots, the median per token count
with at least MIN_PAIRS pairs (`_tokens_knots`; columns `prefill_ratio_by_tokens`,
`prefill_energy_ratio_by_tokens`, "tokens:ratio;..."), which the analytic model interpolates in log-log and
holds flat beyond the end knots (`ratio_at_tokens`); the median still serves a (method, engine) with fewer than
two such token counts. Judged with five seeds against the median alone
(docs/experiments/prefill-ratio-by-tokens-s28.md): TTFT forward in time 15-29 points better on the two
latest cut-offs. s11 had tried lines in log tokens (Theil-Sen), better in cross-validation but worse forward,
and not shipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np

UNQUANTIZED = ("fp32", "fp16", "bf16")
REFERENCES = ("bf16", "fp16")  # the 16-bit cell a method is compared with, in order of preference
MIN_PAIRS = 3
#: The smallest prefill time ratio written. 1: a ratio below 1 says a method's prefill beats the 16-bit
#: one by more than the roofline credits it (its fp8/int8 rate or fewer bytes), which no (method, engine)
#: median of our records shows (2026-11-27 fit: the smallest are bnb-fp4 and bnb-nf4 on hf-compiled, x1.03 and
#: x1.06; every other x1.14 to x17). Of the 455 pairs, 23 are below 1, all bnb 4-bit and 15 at batch 1
#: (13 of the 23 hf-compiled batch-1 pairs; the others within 3% of 1): a launch-bound prefill of a few
#: hundred tokens where the model's credit for the 4-bit bytes (the weight pass is most of its time) does
#: not appear. So the floor binds on no
#: shipped value; it keeps a fold with few pairs from crediting a method with a speed-up no median shows.
PREFILL_RATIO_FLOOR = 1.0
#: the columns the prefill fit adds to method_overhead.csv (empty where a method has too few pairs)
PREFILL_COLUMNS = ("prefill_time_ratio", "prefill_p10", "prefill_p90", "prefill_n_pairs")
#: the prefill time ratio as a curve in the batch's prompt tokens (`_tokens_knots`): "tokens:ratio;..." knots, the
#: ratio interpolated in log-log between them and held flat beyond them; empty where the pairs give no curve
PREFILL_KNOTS_COLUMN = "prefill_ratio_by_tokens"
#: the same for the prefill energy ratio (`fit_prefill_energy`)
PREFILL_ENERGY_KNOTS_COLUMN = "prefill_energy_ratio_by_tokens"
#: the columns of the prefill energy fit (`fit_prefill_energy`; empty where a method has too few pairs)
PREFILL_ENERGY_COLUMNS = ("prefill_energy_ratio", "prefill_energy_p10", "prefill_energy_p90",
                          "prefill_energy_n_pairs")

#: the columns of the decode power's busy share fit (`fit_decode_busy_fraction`; empty where a method has too few
#: pairs)
DECODE_BUSY_COLUMNS = ("decode_busy_fraction", "decode_busy_p10", "decode_busy_p90", "decode_busy_n_pairs")
#: the largest busy fraction served
BUSY_MAX = 1.5

#: a cell: (gpu, model, quant, engine, batch, prompt, output)
CellKey = tuple


def fit(step_ms: Mapping[CellKey, float], layers: Callable[[str], float | None],
        modelled_ms: Mapping[CellKey, float] | None = None) -> list[dict]:
    """Rows {quant_id, engine_id, per_layer_overhead_ms, per_layer_per_seq_ms, p10_ms, p90_ms, n_pairs,
    n_models, gpus} from the median decode step time (ms) of each cell; `layers(model)` gives a model's number
    of layers. The overhead of a step at batch b is per_layer_overhead_ms + per_layer_per_seq_ms x (b - 1) per
    layer (`_batch_line`; the slope is 0 and the first the median over all pairs where the pairs show no
    growth with batch). p10/p90 are over all pairs, whatever their batch.

    With `modelled_ms` (`modelled_step_ms`: the analytic step time of each cell without any method overhead)
    a pair's overhead is what the analytic model leaves unexplained: the measured difference minus the
    modelled one (fewer weight bytes, a dequantized copy), per layer."""
    per: dict[tuple[str, str], list[tuple[float, str, str, float]]] = defaultdict(list)
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
        per[(str(quant), str(engine))].append(((t - ref) / n, str(model), str(gpu), float(batch)))
    out = []
    for (quant, engine), pairs in sorted(per.items()):
        if len(pairs) < MIN_PAIRS:
            continue
        d = np.array([p[0] for p in pairs])
        at_one, per_seq = max(0.0, float(np.median(d))), 0.0
        line = _batch_line([(p[3], p[0]) for p in pairs])
        if line is not None:
            at_one, per_seq = line
        out.append({
            "quant_id": quant, "engine_id": engine,
            "per_layer_overhead_ms": round(at_one, 4), "per_layer_per_seq_ms": round(per_seq, 5),
            "p10_ms": round(float(np.percentile(d, 10)), 4), "p90_ms": round(float(np.percentile(d, 90)), 4),
            "n_pairs": len(pairs), "n_models": len({p[1] for p in pairs}),
            "gpus": ";".join(sorted({p[2] for p in pairs})),
        })
    return out


def _batch_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(overhead at batch 1, added per further sequence), ms per layer, from (batch, per-layer overhead) pairs:
    the least-squares line through the median of each batch size with at least MIN_PAIRS pairs, weighted by the
    square root of their counts; None (one batch-independent median instead) with fewer than two such batch
    sizes or a slope not above 0. s17's prospective check found compiled torchao int4 weight-only at 0.16,
    0.20 and 0.54 ms per layer at batch 1, 8 and 32 (the int4 kernels' cost grows with the rows they
    dequantize for), where one median (0.27) had over-charged batch 1 and under-charged batch 32."""
    by: dict[float, list[float]] = defaultdict(list)
    for b, d in points:
        by[b].append(d)
    pts = [(b, float(np.median(v)), len(v)) for b, v in sorted(by.items()) if len(v) >= MIN_PAIRS]
    if len(pts) < 2:
        return None
    b, m, n = (np.array(x, dtype=float) for x in zip(*pts, strict=True))
    slope, at_one = np.polyfit(b - 1.0, m, 1, w=np.sqrt(n))
    if not slope > 0:
        return None
    return max(0.0, float(at_one)), float(slope)


def _reference(key: CellKey, cells: Mapping[CellKey, float]) -> CellKey | None:
    """The 16-bit cell (bf16, else fp16) of the same card, model, engine, batch and workload as `key`."""
    gpu, model, _, engine, batch, prompt, output = key
    return next((k for q in REFERENCES if (k := (gpu, model, q, engine, batch, prompt, output)) in cells), None)


def _pair_ratios(measured: Mapping[CellKey, float],
                 modelled: Mapping[CellKey, float]) -> dict[tuple, list[tuple[float, float]]]:
    """Per (method, engine): (ratio, prompt tokens of the batch) of every same-cell pair with the 16-bit cell
    (`_reference`) where all four values are positive and the catalogue models both; the ratio is (measured /
    measured 16-bit) / (modelled / modelled 16-bit), the tokens batch x prompt tokens."""
    per: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for key, v in measured.items():
        quant, engine = key[2], key[3]
        if quant in UNQUANTIZED:
            continue
        ref_key = _reference(key, measured)
        if ref_key is None or key not in modelled or ref_key not in modelled:
            continue  # no 16-bit cell, or a cell the catalogue cannot model
        ref, m, m_ref = measured[ref_key], modelled[key], modelled[ref_key]
        if not (v > 0 and ref > 0 and m > 0 and m_ref > 0):
            continue
        per[(str(quant), str(engine))].append(((v / ref) / (m / m_ref), float(key[4]) * float(key[5])))
    return per


def _ratio_rows(per: dict[tuple, list[tuple[float, float]]], columns: tuple[str, ...],
                floor: float | None) -> list[dict]:
    """{quant_id, engine_id, columns[0]: median (never below `floor`), columns[1..2]: p10/p90 (unclipped),
    columns[3]: pairs} per (method, engine) with at least MIN_PAIRS pairs."""
    out = []
    for (quant, engine), pairs in sorted(per.items()):
        if len(pairs) < MIN_PAIRS:
            continue
        r = np.array([p[0] for p in pairs])
        med = float(np.median(r))
        out.append({"quant_id": quant, "engine_id": engine,
                    columns[0]: round(med if floor is None else max(floor, med), 4),
                    columns[1]: round(float(np.percentile(r, 10)), 4),
                    columns[2]: round(float(np.percentile(r, 90)), 4), columns[3]: len(r)})
    return out


def _tokens_knots(pairs: list[tuple[float, float]], floor: float | None) -> str:
    """The "tokens:ratio;..." knots of a (method, engine)'s prefill ratio from its (ratio, tokens) pairs: the
    median ratio of each token count (batch x prompt tokens) with at least MIN_PAIRS pairs, never below
    `floor`; empty with fewer than two such counts. Our records show the ratio move with the tokens, not
    along one line: compiled torchao int4 weight-only x4.3 at 256 tokens, x14 at 1024-2048 and x16 from 8192
    (our reading, not profiled: its kernels suit a decode step's few rows, not a prefill's thousands); torchao fp8 x4.8 at 256,
    x2.1 from 8192; bnb LLM.int8 x3.3 to x1.9; bnb 4-bit x1.2-1.4 to x1.0 (2026-11-29 records)."""
    by: dict[float, list[float]] = defaultdict(list)
    for r, t in pairs:
        by[t].append(r)
    knots = [(t, float(np.median(v))) for t, v in sorted(by.items()) if len(v) >= MIN_PAIRS]
    if len(knots) < 2:
        return ""
    return ";".join(f"{t:g}:{round(r if floor is None else max(floor, r), 4):g}" for t, r in knots)


def parse_knots(text) -> tuple[np.ndarray, np.ndarray] | None:
    """(tokens, ratios) of a `prefill_ratio_by_tokens` value ("256:4.33;2048:14.3"); None where empty or
    malformed (the median `prefill_time_ratio` then serves)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        pts = sorted((float(t), float(r)) for t, r in (k.split(":") for k in text.split(";")))
    except ValueError:
        return None
    t, r = (np.array(x) for x in zip(*pts, strict=True))
    if len(t) < 2 or not (np.all(t > 0) and np.all(r > 0) and np.all(np.diff(t) > 0)):
        return None
    return t, r


def ratio_at_tokens(knots: tuple[np.ndarray, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """The prefill ratio at `tokens` (batch x prompt tokens): interpolated in log tokens and log ratio between
    the knots, the end knots' ratio beyond them."""
    t, r = knots
    x = np.log(np.maximum(np.asarray(tokens, dtype=float), 1.0))
    return np.exp(np.interp(x, np.log(t), np.log(r)))


def fit_prefill(ttft_ms: Mapping[CellKey, float], modelled_ms: Mapping[CellKey, float]) -> list[dict]:
    """Rows {quant_id, engine_id, prefill_time_ratio, prefill_p10, prefill_p90, prefill_n_pairs,
    prefill_ratio_by_tokens} from the median measured TTFT (ms) of each cell and its analytic prefill time
    without the ratio (`modelled_prefill_ms`): per (method, engine) with at least MIN_PAIRS same-cell pairs with
    the 16-bit cell, the median over the pairs of (measured ratio to 16-bit) / (modelled ratio to 16-bit), never
    below PREFILL_RATIO_FLOOR; p10/p90 are the pairs' spread, unclipped; the knots (`_tokens_knots`) the same
    median per token count of the batch, which the analytic model interpolates where there are two or more."""
    per = _pair_ratios(ttft_ms, modelled_ms)
    rows = _ratio_rows(per, PREFILL_COLUMNS, PREFILL_RATIO_FLOOR)
    for row in rows:
        row[PREFILL_KNOTS_COLUMN] = _tokens_knots(per[(row["quant_id"], row["engine_id"])], PREFILL_RATIO_FLOOR)
    return rows


def fit_prefill_energy(energy_j: Mapping[CellKey, float], modelled_j: Mapping[CellKey, float]) -> list[dict]:
    """Rows {quant_id, engine_id, prefill_energy_ratio, prefill_energy_p10, prefill_energy_p90,
    prefill_energy_n_pairs} from the median measured prefill energy (J) of each cell and its analytic prefill
    energy with the prefill time ratios but without this ratio (`modelled_prefill_energy_j`): the median over
    the same-cell pairs with the 16-bit cell of (measured ratio) / (modelled ratio), no floor (a longer prefill
    at lower power can cost less than the power model says, or more). The analytic prefill energy is
    multiplied by it; where two or more token counts of the batch have MIN_PAIRS pairs, by its knots instead
    (`prefill_energy_ratio_by_tokens`, `_tokens_knots`: torchao fp8 x0.8-0.9 up to 1024 tokens, x1.6 from 8192;
    torchao int8 weight-only x1.4 at 256, x1.1 from 2048; 2026-11-29 records with the time knots in place)."""
    per = _pair_ratios(energy_j, modelled_j)
    rows = _ratio_rows(per, PREFILL_ENERGY_COLUMNS, None)
    for row in rows:
        row[PREFILL_ENERGY_KNOTS_COLUMN] = _tokens_knots(per[(row["quant_id"], row["engine_id"])], None)
    return rows


def fit_decode_busy_fraction(power_w: Mapping[CellKey, float], parts: Mapping[CellKey, tuple[float, float]]) -> list[dict]:
    """Rows {quant_id, engine_id, DECODE_BUSY_COLUMNS}: the share of a method's per-layer
    overhead time the decode power counts as busy (at the roofline's power per unit of utilisation). Per
    same-cell pair with the 16-bit cell: the method cell's measured decode power divided by the 16-bit cell's
    measured / modelled power (the machine's offset), minus the modelled power with no busy share (`parts`[0]),
    over the modelled watts per unit of busy share (`parts`[1]); pairs whose overhead adds under 1 W per unit are
    left out. Median per (method, engine) with at least MIN_PAIRS pairs, clipped to [0, BUSY_MAX]; p10/p90 the pairs'
    spread, unclipped."""
    per: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for key, v in power_w.items():
        if key[2] in UNQUANTIZED or key not in parts:
            continue
        ref_key = _reference(key, power_w)
        if ref_key is None or ref_key not in parts:
            continue
        p0, dw = parts[key]
        ref_model = parts[ref_key][0]
        if not (v > 0 and power_w[ref_key] > 0 and ref_model > 0 and dw > 1.0):
            continue
        per[(str(key[2]), str(key[3]))].append(((v / (power_w[ref_key] / ref_model) - p0) / dw,
                                                 float(key[4]) * float(key[5])))
    rows = _ratio_rows(per, DECODE_BUSY_COLUMNS, 0.0)
    for r in rows:
        r[DECODE_BUSY_COLUMNS[0]] = min(r[DECODE_BUSY_COLUMNS[0]], BUSY_MAX)
    return rows


def merge(decode: list[dict], prefill: list[dict], prefill_energy: list[dict] | None = None,
          decode_busy: list[dict] | None = None) -> list[dict]:
    """The rows of method_overhead.csv: each decode row (`fit`) with its (method, engine)'s prefill columns
    (`fit_prefill`) and, given `prefill_energy` / `decode_busy`, its prefill energy columns (`fit_prefill_energy`)
    / decode busy share columns (`fit_decode_busy_fraction`), empty ("") where a fit has too few pairs; a (method,
    engine) with a prefill fit and no decode fit gets a row of its own with empty decode columns. Sorted by
    (method, engine)."""
    def with_knots(rows: list[dict], columns: tuple[str, ...], knots: str):
        return ({(r["quant_id"], r["engine_id"]): r for r in rows},
                columns + ((knots,) if any(knots in r for r in rows) else ()))

    parts = [with_knots(prefill, PREFILL_COLUMNS, PREFILL_KNOTS_COLUMN)]
    if prefill_energy is not None:
        parts.append(with_knots(prefill_energy, PREFILL_ENERGY_COLUMNS, PREFILL_ENERGY_KNOTS_COLUMN))
    if decode_busy is not None:
        parts.append(({(r["quant_id"], r["engine_id"]): r for r in decode_busy}, DECODE_BUSY_COLUMNS))
    decode_cols = list(decode[0]) if decode else ["quant_id", "engine_id", "per_layer_overhead_ms",
                                                   "per_layer_per_seq_ms"]
    rows = {(r["quant_id"], r["engine_id"]): dict(r) for r in decode}
    for fitted, _ in parts:
        for k in fitted:
            rows.setdefault(k, {**dict.fromkeys(decode_cols, ""), "quant_id": k[0], "engine_id": k[1]})
    for k, row in rows.items():
        for fitted, cols in parts:
            row.update({c: fitted[k][c] if k in fitted else "" for c in cols})
    return [rows[k] for k in sorted(rows)]


def median_per_cell(cells: list[CellKey], values: list[float | None]) -> dict[CellKey, float]:
    """Median of the positive, finite values (ms, J) per cell key; None and the rest are left out."""
    per: dict[CellKey, list[float]] = defaultdict(list)
    for key, v in zip(cells, values, strict=True):
        if v is not None and np.isfinite(v) and v > 0:
            per[key].append(float(v))
    return {k: float(np.median(v)) for k, v in per.items()}


def prefill_times(cells: list[CellKey], ttft_ms: list[float]) -> dict[CellKey, float]:
    """Median measured TTFT (ms) per cell key over its rows; rows without a positive TTFT are left out."""
    return median_per_cell(cells, ttft_ms)


def step_times(cells: list[CellKey], tokens_per_s: list[float], batch: list[float]) -> dict[CellKey, float]:
    """Median decode step time (ms, batch / tokens_per_s) per cell key over its rows; rows without a
    positive throughput are left out."""
    return median_per_cell(cells, [1000.0 * float(b) / float(tps)
                                    if tps is not None and np.isfinite(tps) and tps > 0 and b else None
                                    for tps, b in zip(tokens_per_s, batch, strict=True)])


def _physics(catalog, cells: list[CellKey]):
    """(the cells whose ids the catalogue knows, their Candidates, their features.Physics); None if none."""
    from recommender.candidates import Candidates
    from recommender.costmodel import features as F

    tables = (catalog.gpus, catalog.models, catalog.quants, catalog.engines)
    cells = [c for c in cells if all(t.find(str(x)) is not None for t, x in zip(tables, c[:4], strict=True))]
    if not cells:
        return None
    cols = list(zip(*cells, strict=True))
    cands = Candidates.from_ids(catalog, cols[0], cols[1], cols[2], cols[3], np.asarray(cols[4], float),
                                np.asarray(cols[5], float), np.asarray(cols[6], float))
    return cells, cands, F.physics(cands)


def _modelled(catalog, cells: list[CellKey], prefill: bool) -> dict[CellKey, float]:
    got = _physics(catalog, cells)
    if got is None:
        return {}
    cells, _, ph = got
    if prefill:  # the prefill's own efficiency and overhead where the engine has them (prefill_model.py)
        t = np.maximum(ph.t_mem_prefill, ph.t_comp_prefill) / ph.prefill_efficiency + ph.prefill_overhead_s
    else:
        t = np.maximum(ph.t_mem_step, ph.t_comp_step) / ph.efficiency + ph.overhead_s
    return {k: float(v) * 1e3 for k, v in zip(cells, t, strict=True)}


def modelled_step_ms(catalog, cells: list[CellKey]) -> dict[CellKey, float]:
    """The analytic decode step time (ms) of each cell (catalogue ids) without any method overhead: the
    roofline time of its weight, dequantized-copy and KV bytes (or FLOPs) / the engine's efficiency + the
    engine's per-step overhead (`recommender.costmodel.analytic`). Cells with an id the catalogue does not
    know are left out."""
    return _modelled(catalog, cells, prefill=False)


def modelled_prefill_energy_j(catalog, cells: list[CellKey]) -> dict[CellKey, float]:
    """The analytic prefill energy (J) of each cell (catalogue ids) as `recommender.costmodel.analytic` gives
    it with the catalogue's prefill time ratios, without its prefill energy ratio. Cells with an id the
    catalogue does not know are left out."""
    from recommender.costmodel import analytic

    got = _physics(catalog, cells)
    if got is None:
        return {}
    cells, cands, ph = got
    e = analytic.estimate(ph, cands).prefill_energy_j / ph.prefill_energy_ratio
    return {k: float(v) for k, v in zip(cells, e, strict=True)}


def modelled_decode_power_parts(catalog, cells: list[CellKey]) -> dict[CellKey, tuple[float, float]]:
    """Per cell (catalogue ids): (the analytic decode power in W with no busy share of the method overhead, the
    watts one unit of busy share adds, uncapped; `analytic.Estimate.power_w_unbusy`, `power_w_per_busy_share`).
    Cells with an id the catalogue does not know are left out."""
    from recommender.costmodel import analytic

    got = _physics(catalog, cells)
    if got is None:
        return {}
    cells, cands, ph = got
    with np.errstate(divide="ignore", invalid="ignore"):
        est = analytic.estimate(ph, cands)
    return {k: (float(a), float(b)) for k, a, b in zip(cells, est.power_w_unbusy, est.power_w_per_busy_share,
                                                      strict=True)}


def decode_power_w(j_per_token, tokens_per_s) -> float | None:
    """One row's decode power (W): its decode J per output token x its tokens/s; None unless both are numbers."""
    ok = all(isinstance(x, (int, float)) for x in (j_per_token, tokens_per_s))
    return float(j_per_token) * float(tokens_per_s) if ok else None


def decode_powers(cells: list[CellKey], j_per_token: list[float], tokens_per_s: list[float]) -> dict[CellKey, float]:
    """Median measured decode power (W, `decode_power_w` of each row) per cell key."""
    return median_per_cell(cells, [decode_power_w(e, t) for e, t in zip(j_per_token, tokens_per_s, strict=True)])


def modelled_prefill_ms(catalog, cells: list[CellKey]) -> dict[CellKey, float]:
    """The analytic prefill time (ms) of each cell (catalogue ids) without the method's prefill time ratio:
    the roofline time of the prefill FLOPs or of one pass over the weights (+ a dequantized copy, + the KV
    written) / the engine's prefill efficiency + its prefill overhead (engines.yaml `prefill_efficiency`,
    `prefill_overhead_ms`, else the decode step's; `recommender.costmodel.analytic`).
    Cells with an id the catalogue does not know are left out."""
    return _modelled(catalog, cells, prefill=True)
