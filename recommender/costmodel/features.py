"""Physics-derived features of candidates, vectorised with numpy (shared by analytic, trainer and measure).

Trees cannot extrapolate in raw spec space (docs: "Why physics-derived features"): a model trained on
H100 rows says nothing about a 288 GB/s RTX 4060 Ti from `bandwidth_gbs` alone. So every row is put on
common physical axes first:

- bytes moved per decode step: the weights at the method's bits as `recommender.memory` counts them
  (quantization scales included; embeddings and lm_head at 16 bit, 32 for fp32; params x bytes as in
  engines.yaml's calibration of `roofline_efficiency`), and the KV cache read for batch x context,
  context = prompt + output / 2 (the mean over the decode), grouped; the decode step's time (`t_mem_step`) of an
  engine with `decode_kv_read: expanded-whole-cache` (hf-compiled) counts instead the whole static cache (prompt
  + output) and, for grouped-query models, its copy expanded to every query head, written and read each step
  (`kv_step_bytes`; the features keep the grouped mean-context KV: with the expanded one in them the TTFT and
  prefill-energy predictions got worse in session s22's seed benchmark, docs/experiments/kv-expanded-s22.md);
- FLOPs per decode step and per prefill (2 x params per token + attention);
- the card's throughput at the dtype the method really computes in (`compute_path`): fp8 tensor cores only
  where compute capability >= 8.9 and the card lists fp8; int8 tensor cores for int8-activation methods;
  weight-only methods compute in 16 bit; fp32 in fp32 (no TF32: PyTorch's default for matmul); bf16 on
  cards without bf16 tensor cores (V100, T4) is emulated through fp32 (`dtype_fallback` = 1);
- roofline times (memory- and compute-bound), arithmetic intensity vs. the card's ridge point, the
  engine's per-token launch overhead and roofline efficiency (engines.yaml `analytic` block), and the
  method's per-layer decode overhead on that engine (method_overhead.csv: the kernels a quantization
  method adds to every layer, launch-bound at decode, fitted on our records by
  datasets/catalog/tools/fit_method_overhead.py; 0 where none was fitted; since s27 a line in the batch where
  the fit found one, `per_layer_per_seq_ms`: the analytic step follows the batch, the feature
  `method_overhead_ms` keeps the batch-1 value), and its prefill time and energy
  ratios on that engine (method_overhead.csv `prefill_time_ratio`, `prefill_energy_ratio`, same tool; 1 where
  none was fitted; since s28 curves in the batch's prompt tokens where the fit found knots,
  `prefill_ratio_by_tokens`, `prefill_energy_ratio_by_tokens`), which the analytic prefill multiplies; one
  feature reads the time ratio's effect, `q_log_analytic_prefill_ratio` = log(the method's analytic prefill
  time / the 16-bit one's) with the (method, engine)'s median ratio, not its knots (five seeds in s28: with the
  knots in the feature, J/token was 0.4 point worse leave-one-GPU-out and leave-one-architecture-out;
  docs/experiments/prefill-ratio-by-tokens-s28.md) (the `ref16_*`
  prefill features are the 16-bit ones; added in s17: five seeds, paired, put prefill energy 0.3-1.2 points
  better in all three cross-validation splits, TTFT 0.6-0.7 in two of them and J/token 0.6 leave-one-GPU-out,
  nothing worse beyond 0.13 point, docs/experiments/prefill-ratio-feature-s17.md);
- memory fit margin (`recommender.memory`), card specs, model shape, quant/engine/scope one-hots.

The roofline axes are computed at the reference 16-bit method (`ref16_*`) and the quantization method
enters through its own features and ratios to that reference (`q_*`), so trees cannot reorder methods
through proxies such as "fewer bytes looks like a smaller model" (see `build`).

The learned model predicts log(measured / analytic) from these, so a card never seen in training is
still described by where it sits on these axes. `FEATURE_NAMES` is the contract with a trained artifact:
`learned.py` refuses an artifact whose feature list differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender.candidates import Candidates
from recommender.costmodel.method_overhead import (
    PREFILL_ENERGY_KNOTS_COLUMN,
    PREFILL_KNOTS_COLUMN,
    parse_knots,
    ratio_at_tokens,
)

#: Bump when the meaning of any feature changes (a trained artifact records it).
FEATURES_VERSION = "5"

ENGINE_IDS = ("hf-eager", "hf-compiled", "vllm", "tensorrt-llm", "llama.cpp")
SCHEMES = ("none", "weight-only", "dynamic", "static")
BACKENDS = ("bnb", "torchao")
#: Compute paths: which throughput column of gpus.csv a method runs its matmuls on.
COMPUTE_PATHS = ("fp32", "fp16", "bf16", "int8", "fp8")
#: The compute-path one-hots the learned model sees. fp16 and bf16 share one: where a card runs both
#: natively they move the same bytes at the same tensor-core rate, and where bf16 is emulated
#: (`dtype_fallback`) that feature and the throughput ratio say so. Two one-hots let the model split
#: them by where the rows came from (public vLLM rows are fp16, ours mostly bf16): before the merge it
#: predicted fp16 2x faster than bf16 at batch 64 on an H100 (features v1).
FEATURE_PATHS = {"fp32": "fp32", "fp16": "16bit", "bf16": "16bit", "int8": "int8", "fp8": "fp8"}

#: How a row was measured. Ours: NVML energy counter over the decode phase only (design.md). Public rows
#: (datasets/public/README.md) time and meter the whole generate call, prefill included.
SCOPES = {
    "gpu-counter": {"includes_prefill": 0.0, "sampled_power": 0.0,
                    "description": "ours: NVML energy counter, decode phase only, idle included, static batch"},
    "mlenergy-v1": {"includes_prefill": 1.0, "sampled_power": 0.0,
                    "description": "ML.ENERGY v1: Zeus/NVML counter, whole response (prefill+decode), HF batch 1"},
    "mlenergy-v2": {"includes_prefill": 1.0, "sampled_power": 0.0,
                    "description": "ML.ENERGY v2: Zeus/NVML counter, vLLM serving, batch = average running batch"},
    "argonne": {"includes_prefill": 1.0, "sampled_power": 1.0,
                "description": "Argonne LLM-Inference-Bench: one static batch timed end to end, polled power"},
}
DEFAULT_SCOPE = "gpu-counter"

_FP8_MIN_CC = 8.9  # Ada (sm_89) and Hopper (sm_90) are the first with fp8 tensor cores


@dataclass
class Physics:
    """Per-row physical quantities (SI units: bytes, FLOP, seconds, FLOP/s, bytes/s, W)."""

    params: np.ndarray
    weight_bits: np.ndarray  # mean bits per parameter read (quantized layers + scales + 16-bit embeddings)
    kv_bits: np.ndarray
    weight_bytes: np.ndarray  # read per decode step
    kv_bytes: np.ndarray  # KV read per decode step at the mean context, grouped (batch x context): the features'
    kv_step_bytes: np.ndarray  # KV bytes the engine moves per decode step (t_mem_step; expanded K/V, see `physics`)
    flops_step: np.ndarray  # one decode step of the whole batch
    flops_prefill: np.ndarray  # prefill of the whole batch
    compute_path: np.ndarray  # index into COMPUTE_PATHS
    dtype_fallback: np.ndarray  # 1 where the method's preferred path is missing on the card
    peak_flops: np.ndarray
    bandwidth: np.ndarray
    t_mem_step: np.ndarray
    t_comp_step: np.ndarray
    t_mem_prefill: np.ndarray
    t_comp_prefill: np.ndarray
    efficiency: np.ndarray  # engine roofline efficiency (0..1)
    overhead_s: np.ndarray  # the engine's launch overhead per decode step and per prefill (s); null = 0
    #: the method's per decode step at the row's batch: num_layers x method_overhead.csv's line (s); 0 = none
    method_overhead_s: np.ndarray
    #: the same at batch 1 (s): the trees' `method_overhead_ms` feature, a property of method, engine and model
    #: that the batch does not move (the batch has features of its own; a batch-dependent one made the prefill
    #: targets' forward-in-time errors worse in s17)
    method_overhead_batch1_s: np.ndarray
    #: multiplier on the method's analytic prefill time: method_overhead.csv `prefill_ratio_by_tokens` at the
    #: batch's prompt tokens where the (method, engine) has knots (since s28), else its `prefill_time_ratio`; 1 = none
    prefill_time_ratio: np.ndarray
    #: the (method, engine)'s median prefill time ratio whatever the tokens (method_overhead.csv
    #: `prefill_time_ratio`; 1 = none): the trees' `q_log_analytic_prefill_ratio` reads it, so the decode targets
    #: see the method's prefill cost as one figure per method and engine, as before the knots
    prefill_time_ratio_median: np.ndarray
    #: multiplier on the method's analytic prefill energy: `prefill_energy_ratio_by_tokens` at the batch's prompt
    #: tokens where there are knots, else `prefill_energy_ratio` (method_overhead.csv); 1 = none
    prefill_energy_ratio: np.ndarray
    #: share of the method overhead the decode power counts as busy (method_overhead.csv `decode_busy_fraction`)
    decode_busy_fraction: np.ndarray
    #: the engine's fitted power model (engines.yaml `analytic.power_floor` / `power_slope`); NaN = the
    #: analytic model's defaults (`analytic.PARAMS`)
    power_floor: np.ndarray
    power_slope: np.ndarray
    #: the prefill's efficiency (0..1) and launch overhead (s): the engine's fitted prefill constants
    #: (engines.yaml `analytic.prefill_efficiency`, `prefill_overhead_ms`; prefill_model.py) where it has them,
    #: else the decode step's `efficiency` and `overhead_s`
    prefill_efficiency: np.ndarray
    prefill_overhead_s: np.ndarray
    memory_gb: np.ndarray  # estimated peak need (recommender.memory), with the fitted residual
    card_memory_gb: np.ndarray
    memory_components_gb: np.ndarray  # the same without the residual: what the features read


def _quant_tables(cands: Candidates) -> dict[str, np.ndarray]:
    """Per-quant-row lookup arrays (indexed by cands.quant_idx)."""
    rows = cands.catalog.quants.rows
    out = {k: np.zeros(len(rows)) for k in ("abits", "path", "fp32", "deq_bytes", *(f"scheme_{s}" for s in SCHEMES),
                                            *(f"backend_{b}" for b in BACKENDS))}
    out["deq_above"] = np.full(len(rows), np.inf)
    out["deq_min_cc"] = np.zeros(len(rows))
    for j, q in enumerate(rows):
        if q.dequantize_above_tokens is not None and q.dequantize_extra_bytes_per_weight:
            out["deq_above"][j] = q.dequantize_above_tokens
            out["deq_bytes"][j] = q.dequantize_extra_bytes_per_weight
            out["deq_min_cc"][j] = q.dequantize_min_compute_capability or 0.0
        path = compute_path(q)
        fp32 = path == "fp32"
        out["abits"][j] = q.activation_bits if q.activation_bits is not None else (32.0 if fp32 else 16.0)
        out["path"][j] = COMPUTE_PATHS.index(path)
        out["fp32"][j] = float(fp32)
        scheme = q.scheme if q.scheme in SCHEMES else "none"
        out[f"scheme_{scheme}"][j] = 1.0
        for b in BACKENDS:
            out[f"backend_{b}"][j] = float((q.backend or "").lower().startswith(b))
    return out


def compute_path(q) -> str:
    """The dtype a quantization method's matmuls run in (one of COMPUTE_PATHS)."""
    cd = (q.compute_dtype or "").lower().replace("_", "").replace("-", "")
    qid = q.id.lower()
    if any(k in cd for k in ("fp8", "float8", "e4m3", "e5m2")):
        return "fp8"
    if "int8" in cd:
        return "int8"
    if cd in ("fp32", "float32", "float") or qid == "fp32":
        return "fp32"
    if "bf16" in cd or "bfloat16" in cd:
        return "bf16"
    if "fp16" in cd or "float16" in cd or "half" in cd:
        return "fp16"
    if qid in ("fp16", "bf16"):
        return qid
    return "bf16"  # weight-only methods with no stated compute dtype dequantize to bf16 (torchao default)


#: engines.yaml `analytic.decode_kv_read` of an engine whose decode attends over the whole static cache on K/V
#: expanded to every query head (hf-compiled; `physics`)
KV_READ_EXPANDED = "expanded-whole-cache"
#: ... and of one whose decode attends over the whole static cache on grouped K/V (hf-compiled-gqa: no copy)
KV_READ_GROUPED_WHOLE = "grouped-whole-cache"
#: engines.yaml `analytic` keys of the prefill's own constants (recommender/costmodel/prefill_model.py)
PREFILL_KEYS = ("prefill_efficiency", "prefill_overhead_ms")


def _engine_table(cands: Candidates) -> dict[str, np.ndarray]:
    rows = cands.catalog.engines.rows
    out = {"eff": np.full(len(rows), np.nan), "overhead_ms": np.full(len(rows), np.nan),
           "power_floor": np.full(len(rows), np.nan), "power_slope": np.full(len(rows), np.nan),
           **{k: np.full(len(rows), np.nan) for k in PREFILL_KEYS},
           "compiled": np.zeros(len(rows)), "paged": np.zeros(len(rows)), "static_kv": np.zeros(len(rows)),
           "kv_expanded": np.zeros(len(rows)), "kv_whole": np.zeros(len(rows)),
           **{f"engine_{e}": np.zeros(len(rows)) for e in ENGINE_IDS}}
    for j, e in enumerate(rows):
        a = e.analytic or {}
        out["eff"][j] = _f(a.get("roofline_efficiency"))
        out["overhead_ms"][j] = _f(a.get("per_token_overhead_ms"))
        out["power_floor"][j] = _f(a.get("power_floor"))
        out["power_slope"][j] = _f(a.get("power_slope"))
        for k in PREFILL_KEYS:
            out[k][j] = _f(a.get(k))
        out["compiled"][j] = float(bool(e.compiled))
        out["paged"][j] = float((e.kv_cache or "") == "paged")
        out["static_kv"][j] = float((e.kv_cache or "") == "static")
        out["kv_expanded"][j] = float(a.get("decode_kv_read") == KV_READ_EXPANDED)
        out["kv_whole"][j] = float(a.get("decode_kv_read") in (KV_READ_EXPANDED, KV_READ_GROUPED_WHOLE))
        if e.base_id in ENGINE_IDS:  # a variant (hf-compiled-gqa) is its engine's one-hot; physics tell them apart
            out[f"engine_{e.base_id}"][j] = 1.0
    # an engine without the prefill's own constants times its prefill with the decode step's
    out["prefill_efficiency"] = np.where(np.isnan(out["prefill_efficiency"]), out["eff"], out["prefill_efficiency"])
    out["prefill_overhead_ms"] = np.where(np.isnan(out["prefill_overhead_ms"]), np.nan_to_num(out["overhead_ms"]),
                                          out["prefill_overhead_ms"])
    return out


def _method_table(cands: Candidates, column: str, default: float, positive: bool = False) -> np.ndarray:
    """A method_overhead.csv column per (quant row, engine row) (datasets/catalog/tools/fit_method_overhead.py):
    `per_layer_overhead_ms` (per-layer decode overhead at batch 1, ms; `default` 0), `per_layer_per_seq_ms`
    (what each further sequence of the batch adds to it, ms; `default` 0), `prefill_time_ratio` or
    `prefill_energy_ratio` (multipliers; `default` 1, `positive`: only values above 0 count); `default` where
    nothing was fitted (an empty value)."""
    cat = cands.catalog
    out = np.full((len(cat.quants), len(cat.engines)), float(default))
    for row in cat.method_overhead:
        qj, ej = cat.quants.index.get(row.get("quant_id")), cat.engines.index.get(row.get("engine_id"))
        v = _f(row.get(column))
        if qj is not None and ej is not None and np.isfinite(v) and (v > 0 or not positive):
            out[qj, ej] = v
    return out


def _prefill_ratio(cands: Candidates, qi: np.ndarray, ei: np.ndarray, tokens: np.ndarray, median: np.ndarray,
                   knots_column: str) -> np.ndarray:
    """A method's prefill multiplier per candidate: its knots (method_overhead.csv `knots_column`,
    `prefill_ratio_by_tokens` or `prefill_energy_ratio_by_tokens`) at the batch's prompt tokens (`tokens`: batch x
    prompt) where its (method, engine) has them, else `median` (the candidates' `prefill_time_ratio` or
    `prefill_energy_ratio`, 1 where nothing was fitted)."""
    cat = cands.catalog
    out = np.array(median, dtype=float)
    n_engines = len(cat.engines)
    code = None
    for row in cat.method_overhead:
        knots = parse_knots(row.get(knots_column))
        qj, ej = cat.quants.index.get(row.get("quant_id")), cat.engines.index.get(row.get("engine_id"))
        if knots is None or qj is None or ej is None:
            continue
        code = qi * n_engines + ei if code is None else code
        sel = code == qj * n_engines + ej
        if sel.any():
            out[sel] = ratio_at_tokens(knots, tokens[sel])
    return out


def _model_table(cands: Candidates) -> dict[str, np.ndarray]:
    """Per-model-row shape quantities (indexed by cands.model_idx)."""
    t = cands.catalog.models
    layers, hidden, heads = t.array("num_layers"), t.array("hidden_size"), t.array("num_attention_heads")
    kv_heads = np.where(np.isfinite(t.array("num_kv_heads")), t.array("num_kv_heads"), heads)
    head_dim = np.where(np.isfinite(t.array("head_dim")), t.array("head_dim"), hidden / heads)
    head_params = t.array("vocab_size") * hidden
    params = t.array("params_b") * 1e9
    tied = np.nan_to_num(t.array("tie_word_embeddings"))
    return {
        "layers": layers,
        "params": params,
        "head_params": head_params,
        "matmul_params": params - head_params * (1.0 - tied),  # every weight but the input embedding lookup
        "kv_values_per_token": 2.0 * layers * kv_heads * head_dim,  # K and V, all layers
        "kv_groups": heads / kv_heads,  # query heads per K/V head (1: multi-head attention)
        "attn_per_ctx": 4.0 * layers * heads * head_dim,  # QK^T and AV: 2 FLOP per MAC, per context token
    }


def _gpu_paths(cands: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(path used, fallback flag, dense FLOP/s) per (gpu row, wanted compute path): arrays [n_gpus, n_paths]."""
    t = cands.catalog.gpus
    fp32, fp16, bf16 = t.array("fp32_tflops"), t.array("fp16_tensor_tflops"), t.array("bf16_tensor_tflops")
    fp8, int8, cc = t.array("fp8_tensor_tflops"), t.array("int8_tensor_tops"), t.array("compute_capability")
    rates = np.stack([fp32, fp16, bf16, int8, fp8], axis=1)  # COMPUTE_PATHS order
    idx = {p: i for i, p in enumerate(COMPUTE_PATHS)}
    ng, npaths = len(t), len(COMPUTE_PATHS)
    used = np.tile(np.arange(npaths), (ng, 1))
    has = np.isfinite(rates)
    for g in range(ng):
        for w in range(npaths):
            p = w
            if p == idx["fp8"] and not (has[g, p] and np.nan_to_num(cc[g]) >= _FP8_MIN_CC):
                p = idx["bf16"] if has[g, idx["bf16"]] else idx["fp16"]  # torchao falls back to 16 bit
            if p == idx["int8"] and not has[g, p]:
                p = idx["fp16"]
            if p == idx["bf16"] and not has[g, p]:
                p = idx["fp32"]  # V100/T4: bf16 emulated, no bf16 tensor cores
            if p == idx["fp16"] and not has[g, p]:
                p = idx["fp32"]
            used[g, w] = p
    peak = np.take_along_axis(rates, used, axis=1) * 1e12
    fallback = (used != np.arange(npaths)).astype(np.float64)
    return used.astype(np.float64), fallback, peak


def physics(cands: Candidates, kv_cache_bits: np.ndarray | None = None) -> Physics:
    """Physical quantities for every candidate row. `kv_cache_bits` overrides the KV dtype per row.

    Weight bytes per decode step follow engines.yaml's calibration contract (params x bytes per weight,
    embeddings included, at `recommender.memory`'s bits: 16-bit embeddings/lm_head and quantization scales
    for quantized methods), so the engines' `roofline_efficiency` applies unchanged. Everything is looked up
    per catalogue row first and indexed once per candidate (200k candidates in a few tens of ms).
    """
    from recommender.memory import GIB, estimate

    qt, et, mt = _quant_tables(cands), _engine_table(cands), _model_table(cands)
    qi, ei, mi, gi = cands.quant_idx, cands.engine_idx, cands.model_idx, cands.gpu_idx
    mem = estimate(cands)

    full_bits = np.where(qt["fp32"] > 0, 32.0, 16.0)[qi]
    kv_bits = full_bits if kv_cache_bits is None else np.where(np.isfinite(kv_cache_bits), kv_cache_bits, full_bits)
    batch, prompt, output = cands.batch_size, cands.prompt_tokens, cands.output_tokens
    ctx = prompt + output / 2.0
    kv_per_token = mt["kv_values_per_token"][mi] * kv_bits / 8.0
    weight_bytes = mem.weights_gb * GIB
    # methods that dequantize whole weights above a few tokens per matmul (quants.yaml `dequantize_*`, on
    # cards of at least `dequantize_min_compute_capability`) move that many more bytes per quantized weight
    # (the linear layers, not the 16-bit lm_head)
    cc = np.nan_to_num(cands.catalog.gpus.array("compute_capability")[gi])
    deq_above = np.where(cc >= qt["deq_min_cc"][qi], qt["deq_above"][qi], np.inf)
    deq_weight_bytes = (mt["matmul_params"][mi] - mt["head_params"][mi]) * qt["deq_bytes"][qi]
    deq_step = np.where(batch > deq_above, deq_weight_bytes, 0.0)
    deq_prefill = np.where(batch * prompt > deq_above, deq_weight_bytes, 0.0)
    kv_bytes = batch * ctx * kv_per_token
    # an engine whose decode step attends over its whole static cache with a mask, where transformers' SDPA path
    # copies grouped K/V out to every query head (engines.yaml `decode_kv_read`): the cache is read at its full
    # length to make the copy, which is written and read again (1 + 2 x groups; the cache alone for multi-head);
    # with grouped-query SDPA forced (`grouped-whole-cache`) the whole cache is read once, grouped
    groups = mt["kv_groups"][mi]
    expanded_factor = 1.0 + np.where((groups > 1.0) & (et["kv_expanded"][ei] > 0), 2.0 * groups, 0.0)
    kv_step_bytes = np.where(et["kv_whole"][ei] > 0,
                             batch * (prompt + output) * kv_per_token * expanded_factor, kv_bytes)
    matmul, head, attn = mt["matmul_params"][mi], mt["head_params"][mi], mt["attn_per_ctx"][mi]
    flops_step = batch * (2.0 * matmul + attn * ctx)
    flops_prefill = batch * (2.0 * (matmul - head) * prompt + 2.0 * head + attn * prompt * prompt / 2.0)

    used, fallback, peak_tab = _gpu_paths(cands)
    wanted = qt["path"].astype(np.intp)[qi]
    path, fb, peak = used[gi, wanted], fallback[gi, wanted], peak_tab[gi, wanted]
    bw = cands.catalog.gpus.array("bandwidth_gbs")[gi] * 1e9
    params = mt["params"][mi]
    layers = np.nan_to_num(mt["layers"][mi])
    batch1_ms = layers * _method_table(cands, "per_layer_overhead_ms", 0.0)[qi, ei]
    method_ms = batch1_ms + layers * _method_table(cands, "per_layer_per_seq_ms", 0.0)[qi, ei] * np.maximum(
        batch - 1.0, 0.0)
    tokens = batch * prompt  # the prefill's tokens, which its method ratios follow where they have knots
    time_median = _method_table(cands, "prefill_time_ratio", 1.0, positive=True)[qi, ei]
    energy_median = _method_table(cands, "prefill_energy_ratio", 1.0, positive=True)[qi, ei]
    with np.errstate(divide="ignore", invalid="ignore"):
        return Physics(
            params=params, weight_bits=weight_bytes * 8.0 / params, kv_bits=kv_bits, weight_bytes=weight_bytes,
            kv_bytes=kv_bytes, kv_step_bytes=kv_step_bytes, flops_step=flops_step, flops_prefill=flops_prefill, compute_path=path,
            dtype_fallback=fb, peak_flops=peak, bandwidth=bw,
            t_mem_step=(weight_bytes + deq_step + kv_step_bytes) / bw, t_comp_step=flops_step / peak,
            t_mem_prefill=(weight_bytes + deq_prefill + batch * prompt * kv_per_token) / bw,
            t_comp_prefill=flops_prefill / peak,
            efficiency=et["eff"][ei], overhead_s=np.nan_to_num(et["overhead_ms"][ei]) / 1e3,
            method_overhead_s=method_ms / 1e3, method_overhead_batch1_s=batch1_ms / 1e3,
            prefill_time_ratio=_prefill_ratio(cands, qi, ei, tokens, time_median, PREFILL_KNOTS_COLUMN),
            prefill_time_ratio_median=time_median,
            prefill_energy_ratio=_prefill_ratio(cands, qi, ei, tokens, energy_median, PREFILL_ENERGY_KNOTS_COLUMN),
            decode_busy_fraction=_method_table(cands, "decode_busy_fraction", 0.0)[qi, ei],
            power_floor=et["power_floor"][ei], power_slope=et["power_slope"][ei],
            prefill_efficiency=et["prefill_efficiency"][ei], prefill_overhead_s=et["prefill_overhead_ms"][ei] / 1e3,
            memory_gb=mem.total_gb, card_memory_gb=mem.card_gb, memory_components_gb=mem.components_gb,
        )


# ---- the feature matrix ------------------------------------------------------------------------
#: Quantization method the context features are computed at (see `build`).
REFERENCE_QUANT = "fp16"

_REF = ("ref16_log_weight_gb_step", "ref16_log_kv_gb_step", "ref16_kv_fraction", "ref16_log_gflop_step",
        "ref16_log_gflop_prefill", "ref16_log_t_mem_step_ms", "ref16_log_t_comp_step_ms", "ref16_log_t_step_ms",
        "ref16_overhead_fraction", "ref16_log_mem_over_comp", "ref16_log_arith_intensity",
        "ref16_log_intensity_over_ridge", "ref16_log_t_prefill_ms", "ref16_log_prefill_comp_over_mem",
        "ref16_log_analytic_tokens_per_s", "ref16_log_analytic_j_per_token", "ref16_analytic_power_fraction",
        "ref16_log_peak_tflops")
_RATIO = ("q_log_weight_bytes_ratio", "q_log_peak_flops_ratio", "q_log_analytic_speedup",
          "q_log_analytic_energy_ratio", "q_log_analytic_prefill_ratio", "fit_margin_gb", "fit_fraction")
_CARD = ("log_bandwidth_gbs", "log_memory_gb", "log_tdp_w", "log_fp16_tflops", "log_int8_tops", "has_fp8",
         "compute_capability", "tdp_w_per_tb_s")
_MODEL = ("log_params_b", "num_layers", "log_hidden_size", "gqa_ratio", "log_vocab_size", "mlp_gated")
_QUANT = ("weight_bits", "activation_bits", "dtype_fallback", "method_overhead_ms",
          *(f"path_{p}" for p in dict.fromkeys(FEATURE_PATHS.values())), *(f"scheme_{s}" for s in SCHEMES),
          *(f"backend_{b}" for b in BACKENDS))
_ENGINE = ("engine_compiled", "engine_paged_kv", "engine_static_kv", "engine_efficiency",
           "engine_overhead_ms", *(f"engine_{e}" for e in ENGINE_IDS))
_WORK = ("log_batch", "log_prompt", "log_output", "log_context")
_SCOPE = (*(f"scope_{s}" for s in SCOPES), "scope_includes_prefill", "scope_sampled_power")

FEATURE_NAMES: tuple[str, ...] = (*_REF, *_RATIO, *_CARD, *_MODEL, *_QUANT, *_ENGINE, *_WORK, *_SCOPE)


def scope_array(scope, n: int) -> np.ndarray:
    """A per-row array of scope ids from one id or a sequence (default: ours)."""
    if scope is None:
        scope = DEFAULT_SCOPE
    if isinstance(scope, str):
        if scope not in SCOPES:
            raise ValueError(f"unknown measurement scope(s) {[scope]}; known: {sorted(SCOPES)}")
        return np.full(n, scope, dtype=object)
    arr = np.asarray(scope, dtype=object)
    unknown = set(arr.tolist()) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown measurement scope(s) {sorted(unknown)}; known: {sorted(SCOPES)}")
    return arr


#: Model fields that the physics, the memory estimate and the features read. Catalogue models equal in all
#: of them (fine-tunes of one architecture) get identical feature rows, so `dedupe` predicts them once.
SHAPE_FIELDS = ("model_type", "num_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_kv_heads", "head_dim", "vocab_size", "tie_word_embeddings", "hidden_act", "mlp_gated",
                "attention_bias", "params_b")
_SHAPE_CACHE: dict[tuple, np.ndarray] = {}


def model_shape_index(catalog) -> np.ndarray:
    """Per catalogue model index: the index of the first model with the same SHAPE_FIELDS."""
    rows = catalog.models.rows
    key = (id(catalog), len(rows), tuple(id(m) for m in rows))
    if key not in _SHAPE_CACHE:
        if len(_SHAPE_CACHE) > 8:
            _SHAPE_CACHE.clear()
        first: dict[tuple, int] = {}
        _SHAPE_CACHE[key] = np.array([first.setdefault(tuple(getattr(m, f) for f in SHAPE_FIELDS), j)
                                      for j, m in enumerate(rows)], dtype=np.int64)
    return _SHAPE_CACHE[key]


def _compact(col: np.ndarray) -> tuple[np.ndarray, int]:
    """(codes 0..k-1, k) of a column's distinct values (any order), without sorting where values are
    small non-negative integers (ids, batch sizes, token counts)."""
    n = len(col)
    if n and bool(np.all(col == col[0])):
        return np.zeros(n, dtype=np.int64), 1
    ints = col if col.dtype.kind in "iu" else None
    if ints is None and col.dtype.kind == "f" and np.isfinite(col).all():
        as_int = col.astype(np.int64)
        if np.array_equal(as_int, col):
            ints = as_int
    if ints is not None and ints.min() >= 0 and ints.max() <= 4 * n + 4096:
        present = np.zeros(int(ints.max()) + 1, dtype=bool)
        present[ints] = True
        remap = np.cumsum(present, dtype=np.int64) - 1
        return remap[ints], int(remap[-1]) + 1
    vals, inv = np.unique(col, return_inverse=True)
    return inv.astype(np.int64).reshape(-1), len(vals)


def group_rows(*cols: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first row of each distinct combination, inverse: its group per row) over parallel columns, or
    None when every row is distinct already. O(rows) for the catalogue's columns (no sort)."""
    n = len(cols[0]) if cols else 0
    if n < 2:
        return None
    code = np.zeros(n, dtype=np.int64)
    span = 1
    for col in cols:
        c, k = _compact(np.asarray(col))
        if k == 1:
            continue
        if span * k >= 2**62:
            return None  # would overflow: do not group
        code += c * span
        span *= k
    if span <= max(4 * n, 1 << 16):
        present = np.zeros(span, dtype=bool)
        present[code] = True
        pos = np.cumsum(present, dtype=np.int64) - 1
        inverse = pos[code]
        m = int(pos[-1]) + 1
    else:
        _, inverse = np.unique(code, return_inverse=True)
        inverse = inverse.astype(np.int64).reshape(-1)
        m = int(inverse.max()) + 1
    if m == n:
        return None
    first = np.empty(m, dtype=np.int64)
    first[inverse[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)  # the last write wins: first occurrence
    return first, inverse


def dedupe(cands: Candidates) -> tuple[Candidates, np.ndarray | None]:
    """(distinct physical rows, inverse) where models of one shape (SHAPE_FIELDS) collapse into one row;
    (cands, None) when nothing repeats. Every feature, physics and analytic quantity of a row of the result
    equals that of the rows it stands for, so predictions can be made once and indexed with `inverse`."""
    shape = model_shape_index(cands.catalog)[cands.model_idx]
    g = group_rows(cands.gpu_idx, shape, cands.quant_idx, cands.engine_idx, cands.batch_size,
                   cands.prompt_tokens, cands.output_tokens)
    if g is None:
        return cands, None
    first, inverse = g
    return cands.take(first), inverse


def build(cands: Candidates, scope=None, kv_cache_bits: np.ndarray | None = None,
          phys: Physics | None = None, est=None) -> np.ndarray:
    """The float64 feature matrix (rows x FEATURE_NAMES), column-major (Fortran order), NaN where unknown.

    The roofline/context features (`ref16_*`) describe the row at the reference 16-bit method
    (REFERENCE_QUANT): within one (card, model, batch, workload, engine) every quantization method shares
    them, and the method enters only through the quant features and `q_*` ratios to the reference
    (bytes, peak FLOP/s, analytic speed-up and energy ratio). So a tree cannot mistake "fewer bytes" for
    "a smaller model" and reorder methods for which it has no data: it learns method effects from rows
    of that method (or of methods with the same bits/path elsewhere). `phys`/`est` (physics and
    `analytic.estimate` of the same rows) are reused when given.

    Speed: the reference physics is computed once per distinct (card, model, engine, batch, workload, KV
    bits), not per quantization method, and the matrix is filled one feature at a time in Fortran order (a
    contiguous write each); `learned.CBooster` hands it to LightGBM as column-major without a copy.
    """
    from recommender.costmodel import analytic

    n = len(cands)
    ph = phys if phys is not None else physics(cands, kv_cache_bits)
    est = est if est is not None else analytic.estimate(ph, cands)
    ref_q = cands.catalog.quants.index.get(REFERENCE_QUANT)
    ref_inv = None  # row of the reference quantities per candidate row (None: aligned already)
    if ref_q is None or bool(np.all(cands.quant_idx == ref_q)):
        pr, er = ph, est
    else:
        ref = Candidates(cands.catalog, cands.gpu_idx, cands.model_idx, np.full(n, ref_q, dtype=cands.quant_idx.dtype),
                         cands.engine_idx, cands.batch_size, cands.prompt_tokens, cands.output_tokens)
        kv = np.broadcast_to(np.asarray(ph.kv_bits, dtype=np.float64), (n,))
        g = group_rows(cands.gpu_idx, cands.model_idx, cands.engine_idx, cands.batch_size, cands.prompt_tokens,
                       cands.output_tokens, kv)
        if g is not None:
            first, ref_inv = g
            ref, kv = ref.take(first), kv[first]
        pr = physics(ref, kv)
        er = analytic.estimate(pr, ref)
    c = cands.col
    qt, et = _quant_tables(cands), _engine_table(cands)
    qi, ei = cands.quant_idx, cands.engine_idx
    one_scope = DEFAULT_SCOPE if scope is None else scope if isinstance(scope, str) else None
    scopes = scope_array(scope, n) if one_scope is None else scope_array(one_scope, 0)
    XT = np.empty((len(FEATURE_NAMES), n), dtype=np.float64)  # XT.T: rows x features, Fortran order
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}

    def put(name, values):
        XT[col[name]] = values

    def at_ref(values):  # a reference quantity per candidate row
        return values if ref_inv is None else values[ref_inv]

    def put_ref(name, values):  # a feature computed on the reference rows
        XT[col[name]] = at_ref(values)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        put_ref("ref16_log_weight_gb_step", np.log(pr.weight_bytes / 1e9))
        put_ref("ref16_log_kv_gb_step", np.log1p(pr.kv_bytes / 1e9))
        put_ref("ref16_kv_fraction", pr.kv_bytes / (pr.weight_bytes + pr.kv_bytes))
        put_ref("ref16_log_gflop_step", np.log(pr.flops_step / 1e9))
        put_ref("ref16_log_gflop_prefill", np.log(pr.flops_prefill / 1e9))
        put_ref("ref16_log_t_mem_step_ms", np.log(pr.t_mem_step * 1e3))
        put_ref("ref16_log_t_comp_step_ms", np.log(pr.t_comp_step * 1e3))
        put_ref("ref16_log_t_step_ms", np.log(er.t_step * 1e3))
        put_ref("ref16_overhead_fraction", pr.overhead_s / er.t_step)
        put_ref("ref16_log_mem_over_comp", np.log(pr.t_mem_step / pr.t_comp_step))
        intensity = pr.flops_step / (pr.weight_bytes + pr.kv_bytes)
        put_ref("ref16_log_arith_intensity", np.log(intensity))
        put_ref("ref16_log_intensity_over_ridge", np.log(intensity / (pr.peak_flops / pr.bandwidth)))
        put_ref("ref16_log_t_prefill_ms", np.log(er.t_prefill * 1e3))
        put_ref("ref16_log_prefill_comp_over_mem", np.log(pr.t_comp_prefill / pr.t_mem_prefill))
        put_ref("ref16_log_analytic_tokens_per_s", np.log(er.tokens_per_s))
        put_ref("ref16_log_analytic_j_per_token", np.log(er.energy_per_token_j))
        put_ref("ref16_analytic_power_fraction", er.power_fraction)
        put_ref("ref16_log_peak_tflops", np.log(pr.peak_flops / 1e12))

        put("q_log_weight_bytes_ratio", np.log(ph.weight_bytes / at_ref(pr.weight_bytes)))
        put("q_log_peak_flops_ratio", np.log(ph.peak_flops / at_ref(pr.peak_flops)))
        put("q_log_analytic_speedup", np.log(at_ref(er.t_step) / est.t_step))
        put("q_log_analytic_energy_ratio", np.log(est.energy_per_token_j_unscaled
                                                  / at_ref(er.energy_per_token_j_unscaled)))
        put("q_log_analytic_prefill_ratio", np.log(est.t_prefill_median_ratio / at_ref(er.t_prefill_median_ratio)))
        put("fit_margin_gb", ph.card_memory_gb - ph.memory_components_gb)
        put("fit_fraction", ph.memory_components_gb / ph.card_memory_gb)

        tdp = c("gpu_tdp_w")
        put("log_bandwidth_gbs", np.log(c("gpu_bandwidth_gbs")))
        put("log_memory_gb", np.log(c("gpu_memory_gb")))
        put("log_tdp_w", np.log(tdp))
        put("log_fp16_tflops", np.log(c("gpu_fp16_tensor_tflops")))
        put("log_int8_tops", np.log(c("gpu_int8_tensor_tops")))
        put("has_fp8", np.isfinite(c("gpu_fp8_tensor_tflops")).astype(np.float64))
        put("compute_capability", c("gpu_compute_capability"))
        put("tdp_w_per_tb_s", tdp / (c("gpu_bandwidth_gbs") / 1e3))

        heads = c("model_num_attention_heads")
        put("log_params_b", np.log(c("model_params_b")))
        put("num_layers", c("model_num_layers"))
        put("log_hidden_size", np.log(c("model_hidden_size")))
        put("gqa_ratio", np.where(np.isfinite(c("model_num_kv_heads")), c("model_num_kv_heads"), heads) / heads)
        put("log_vocab_size", np.log(c("model_vocab_size")))
        put("mlp_gated", c("model_mlp_gated"))

        put("weight_bits", ph.weight_bits)
        put("activation_bits", qt["abits"][qi])
        put("dtype_fallback", ph.dtype_fallback)
        for p in dict.fromkeys(FEATURE_PATHS.values()):
            on = [i for i, cp in enumerate(COMPUTE_PATHS) if FEATURE_PATHS[cp] == p]
            put(f"path_{p}", np.isin(ph.compute_path, on).astype(np.float64))
        for s in SCHEMES:
            put(f"scheme_{s}", qt[f"scheme_{s}"][qi])
        for b in BACKENDS:
            put(f"backend_{b}", qt[f"backend_{b}"][qi])

        put("engine_compiled", et["compiled"][ei])
        put("engine_paged_kv", et["paged"][ei])
        put("engine_static_kv", et["static_kv"][ei])
        put("engine_efficiency", ph.efficiency)
        put("engine_overhead_ms", ph.overhead_s * 1e3)
        put("method_overhead_ms", ph.method_overhead_batch1_s * 1e3)
        for e in ENGINE_IDS:
            put(f"engine_{e}", et[f"engine_{e}"][ei])

        put("log_batch", np.log(cands.batch_size))
        put("log_prompt", np.log(cands.prompt_tokens))
        put("log_output", np.log(cands.output_tokens))
        put("log_context", np.log(cands.prompt_tokens + cands.output_tokens / 2.0))

        if one_scope is not None:  # one scope for every row (predicting): constant columns
            for s in SCOPES:
                put(f"scope_{s}", float(s == one_scope))
            put("scope_includes_prefill", SCOPES[one_scope]["includes_prefill"])
            put("scope_sampled_power", SCOPES[one_scope]["sampled_power"])
        else:
            for s in SCOPES:
                put(f"scope_{s}", (scopes == s).astype(np.float64))
            put("scope_includes_prefill", _scope_flag(scopes, "includes_prefill"))
            put("scope_sampled_power", _scope_flag(scopes, "sampled_power"))
    np.copyto(XT, np.nan, where=~np.isfinite(XT))
    return XT.T


def _scope_flag(scopes: np.ndarray, key: str) -> np.ndarray:
    out = np.zeros(len(scopes))
    for s, spec in SCOPES.items():
        out[scopes == s] = spec[key]
    return out


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


#: catalogue files the features and the analytic baseline read: a model trained on other versions of them
#: computes its features differently from the code that serves it (the trainer records their hashes in
#: metadata.json; `LearnedCostModel.stale_catalog_files` and tests/recommender/costmodel/
#: test_validation_gate.py compare them with the files in use)
FEATURE_CATALOG_FILES = ("gpus.csv", "models.csv", "quants.yaml", "engines.yaml", "method_overhead.csv")


def catalog_file_hashes(catalog) -> dict[str, str]:
    """{file name: sha256} of FEATURE_CATALOG_FILES in the folder `catalog` was read from ({} if unknown)."""
    folder = getattr(catalog, "source_dir", None)
    if folder is None:
        return {}
    return {name: hashlib.sha256((Path(folder) / name).read_bytes()).hexdigest()
            for name in FEATURE_CATALOG_FILES if (Path(folder) / name).exists()}
