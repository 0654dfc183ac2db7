"""Memory fit per card, vectorised over `Candidates`.

Peak GPU memory = weights + KV cache + activations + runtime overhead, all in GB of 2**30 bytes
(the unit card memory sizes are quoted in: a "16 GB" card has 16 GiB).

- weights: non-embedding parameters at the method's weight bits plus its quantization scales
  (`SCALE_BITS`); embeddings (input, and output unless tied) stay at 16 bit for quantized methods,
  because bitsandbytes and torchao replace only `nn.Linear` layers and transformers skips `lm_head`.
  Unquantized dtypes (fp32/fp16/bf16) store everything at their width.
- KV cache: batch x (prompt + output) tokens x 2 (K, V) x layers x kv_heads x head_dim x 2 bytes.
- activations: peak live tensors of one layer in prefill (project parameter, see `PARAMS`) at the method's
  activation width (4 bytes in fp32, else 2), the fp32 logits of the last position, for weight-only methods one
  dequantized 16-bit weight matrix, and on the transformers engines (`memory_residual.applies_to`) one layer's
  prefill attention score matrix where the attention materialises it (`materializes_scores`: BLOOM's, and SDPA
  in fp32): batch x heads x prompt x key tokens x `score_bytes_per_element` (since s32).
- runtime overhead: CUDA context, cuBLAS workspace, allocator fragmentation on KV + activations and,
  for compiled / CUDA-graph engines, graph pools (project parameters to be calibrated against
  `peak_mem_nvml_gb` of our H100 measurements).
- residual (engines we measure without a paged KV pool, `memory_residual.applies_to`): what the components
  miss of the measured peak, per quantization method and engine (datasets/catalog/memory_residual.csv,
  fitted on our records by datasets/catalog/tools/fit_memory_residual.py: NVML's peak minus the components,
  median; mostly memory the caching allocator reserved and did not hand out at the peak;
  `recommender.costmodel.memory_residual`).

The usable capacity is memory_gb x (1 - headroom) x the engine's memory utilisation (vLLM and other
paged-KV engines reserve a fraction of the card: vLLM's default `gpu_memory_utilization` is 0.9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from recommender.candidates import Candidates
from recommender.costmodel.memory_residual import applies_to, residual_table

GIB = float(2**30)
#: the fields `recommend --format json` shows per candidate as `memory_estimate_gb` (GB), in this order
BREAKDOWN_KEYS = ("weights_gb", "kv_cache_gb", "activations_gb", "overhead_gb", "residual_gb", "total_gb", "usable_gb")

#: Project parameters (labelled as such; calibrate with measured peak memory).
PARAMS = {
    # GPU memory a PyTorch process holds outside its caching allocator: CUDA context, libraries' kernels
    # and handles (GB). Measured: peak_mem_nvml_gb - peak_mem_reserved_gb of our H100 records
    # (datasets/measurements/h100/*.jsonl, 180 hf-eager ok records, 2026-11-26, torch 2.11 + CUDA 13):
    # median 1.18 GiB (p10 1.16, p90 1.29). It was a 0.6 GB prior before those records; smaller cards and
    # older CUDA versions tend to need less, so this errs on the side of "does not fit".
    "runtime_overhead_gb": 1.18,
    # extra for engines that capture CUDA graphs / compile (GB).
    "compiled_overhead_gb": 0.4,
    # allocator fragmentation on dynamic allocations (KV + activations), fraction.
    "fragmentation_frac": 0.05,
    # peak live activation elements per prompt token in prefill: a*hidden + b*intermediate (16-bit).
    "act_hidden_mult": 4.0,
    "act_intermediate_mult": 3.0,
    # fraction of the card a paged-KV engine allows itself (vLLM default gpu_memory_utilization).
    "paged_memory_utilization": 0.9,
    # bytes per element of one layer's prefill attention score matrix where it is materialised
    # (`materializes_scores`): BLOOM computes the scores in the model's 16-bit dtype, its softmax in fp32 and
    # casts the probabilities back (transformers 5.24 `BloomAttention`): 2 + 4 + 2 bytes. Measured (s32,
    # `docs/experiments/attention-scores-memory-s32.md`): over our records at 1024-token prompts, batch 8 and 32,
    # the allocated peak above the other components is a median 7.8 bytes per element for BLOOMZ-7B1 (30 records,
    # every method) and 8.1 for SDPA in fp32 (16 records of 8 other architectures, their activations counted at
    # 4 bytes).
    "score_bytes_per_element": 8.0,
}

#: model types whose transformers attention has no fused (SDPA / flash) path and materialises the prefill score
#: matrix: BLOOM's ALiBi attention (`baddbmm` of the scores, then softmax)
SCORE_MATRIX_MODEL_TYPES = frozenset({"bloom"})
#: compute dtypes whose SDPA prefill materialised the score matrix on our records (fp32 on H100; fp16 and bf16
#: run a fused kernel: their records show no such term)
SCORE_MATRIX_DTYPES = frozenset({"float32"})

#: Quantization scale/zero-point overhead, extra bits per quantized weight.
#: bnb-nf4/fp4: one fp32 absmax per block of 64 weights (bitsandbytes default blocksize) = 0.5 bit;
#: torchao int4 weight-only: bf16 scale + zero per group of 128 (torchao default group_size) = 0.25 bit;
#: per-channel/row methods (bnb-int8, torchao int8, fp8): one scale per output row, negligible.
SCALE_BITS = {"bnb-nf4": 0.5, "bnb-fp4": 0.5, "torchao-int4-wo": 0.25}

_UNQUANTIZED_BITS = {"fp32": 32.0, "fp16": 16.0, "bf16": 16.0}


@dataclass
class MemoryEstimate:
    """Per-candidate memory components (GB of 2**30 bytes) and the fit against usable capacity."""

    weights_gb: np.ndarray
    kv_cache_gb: np.ndarray
    activations_gb: np.ndarray
    overhead_gb: np.ndarray
    total_gb: np.ndarray  # the components plus `residual_gb`
    card_gb: np.ndarray
    usable_gb: np.ndarray
    headroom_frac: float
    residual_gb: np.ndarray  # measured peak minus components, per method and engine, where it applies (else 0)
    #: weights + KV cache + activations + overhead, without the fitted residual (GB): what the cost model's
    #: features read, so a refit of the residual leaves the learned targets unchanged
    components_gb: np.ndarray

    @cached_property
    def fits(self) -> np.ndarray:
        """True where the total fits the usable capacity (False where either is unknown)."""
        with np.errstate(invalid="ignore"):
            return np.isfinite(self.total_gb) & np.isfinite(self.usable_gb) & (self.total_gb <= self.usable_gb)

    def take(self, sel) -> MemoryEstimate:
        return MemoryEstimate(*(getattr(self, f)[sel] for f in
                                ("weights_gb", "kv_cache_gb", "activations_gb", "overhead_gb", "total_gb",
                                 "card_gb", "usable_gb")), self.headroom_frac, self.residual_gb[sel],
                              self.components_gb[sel])

    def breakdown(self, i: int) -> dict[str, float | None]:
        """Components of row `i` for JSON output (GB)."""
        return {k: _round(getattr(self, k)[i]) for k in BREAKDOWN_KEYS}


def _quant_bits(cands: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per quant row: (weight bits incl. scales, embedding bits, 1.0 if weight-only) over the quant table."""
    quants = cands.catalog.quants.rows
    wbits, ebits, wonly = (np.full(len(quants), np.nan) for _ in range(3))
    for j, q in enumerate(quants):
        if q.id in _UNQUANTIZED_BITS or (q.scheme == "none"):
            bits = q.weight_bits or _UNQUANTIZED_BITS.get(q.id, 16.0)
            wbits[j], ebits[j], wonly[j] = bits, bits, 0.0
            continue
        bits = q.weight_bits if q.weight_bits is not None else np.nan
        extra = SCALE_BITS.get(q.id)
        if extra is None:
            m = re.search(r"(\d+)", q.granularity or "")
            extra = 32.0 / float(m.group(1)) if m and ("block" in q.granularity or "group" in q.granularity) else 0.0
        wbits[j], ebits[j] = bits + extra, 16.0
        wonly[j] = 1.0 if q.scheme == "weight-only" else 0.0
    return wbits, ebits, wonly


def estimate(cands: Candidates, headroom_frac: float = 0.0, residual: bool = True) -> MemoryEstimate:
    """Peak memory estimate and usable capacity for every candidate row (GB of 2**30 bytes); `residual`:
    add the catalogue's fitted residual per method and engine where it applies (`memory_residual.applies_to`;
    False: the components alone, as the residual's fit needs them)."""
    c = cands.col
    params = c("model_params_b") * 1e9
    hidden, inter = c("model_hidden_size"), c("model_intermediate_size")
    vocab = np.nan_to_num(c("model_vocab_size"))
    tied = np.nan_to_num(c("model_tie_word_embeddings"))
    embed = vocab * np.nan_to_num(hidden) * (2.0 - tied)
    wbits, ebits, wonly = (a[cands.quant_idx] for a in _quant_bits(cands))
    weights = (np.maximum(params - embed, 0.0) * wbits + embed * ebits) / 8.0

    layers, heads = c("model_num_layers"), c("model_num_attention_heads")
    kv_heads = np.where(np.isfinite(c("model_num_kv_heads")), c("model_num_kv_heads"), heads)
    head_dim = np.where(np.isfinite(c("model_head_dim")), c("model_head_dim"), hidden / heads)
    batch, ctx = cands.batch_size, cands.prompt_tokens + cands.output_tokens
    kv = batch * ctx * 2.0 * layers * kv_heads * head_dim * 2.0

    p = PARAMS
    act_bytes = np.array([4.0 if q.compute_dtype == "float32" else 2.0 for q in cands.catalog.quants])[cands.quant_idx]
    act = batch * cands.prompt_tokens * (p["act_hidden_mult"] * hidden + p["act_intermediate_mult"] * inter) * act_bytes
    act = act + batch * vocab * 4.0 + wonly * np.nan_to_num(hidden * inter) * 2.0
    static = np.array([(e.kv_cache or "") == "static" for e in cands.catalog.engines], dtype=bool)[cands.engine_idx]
    keys = np.where(static, ctx, cands.prompt_tokens)  # a static cache's attention spans its whole length
    act = act + materializes_scores(cands) * batch * heads * cands.prompt_tokens * keys * p["score_bytes_per_element"]

    compiled = np.nan_to_num(c("engine_compiled"))
    paged = _paged(cands)
    overhead = (p["runtime_overhead_gb"] + np.maximum(compiled, paged) * p["compiled_overhead_gb"]
                + (kv + act) * p["fragmentation_frac"] / GIB)
    resid = np.zeros(len(cands))
    if residual and cands.catalog.memory_residual:
        table = residual_table(cands.catalog.memory_residual, cands.catalog.quants.ids(), cands.catalog.engines.rows)
        resid = table[cands.quant_idx, cands.engine_idx]
    components = (weights + kv + act) / GIB + overhead
    total = components + resid
    card = c("gpu_memory_gb")
    util = np.where(paged > 0, p["paged_memory_utilization"], 1.0)
    usable = card * (1.0 - headroom_frac) * util
    return MemoryEstimate(weights / GIB, kv / GIB, act / GIB, overhead, total, card, usable, float(headroom_frac),
                          resid, components)


def materializes_scores(cands: Candidates) -> np.ndarray:
    """1.0 per row whose prefill attention materialises its score matrix: a transformers engine we measure
    (`memory_residual.applies_to`: not a paged-KV engine with its own kernels) running a model type of
    SCORE_MATRIX_MODEL_TYPES or a method whose compute dtype is in SCORE_MATRIX_DTYPES; else 0.0."""
    cat = cands.catalog
    model = np.array([(m.model_type or "") in SCORE_MATRIX_MODEL_TYPES for m in cat.models], dtype=bool)
    dtype = np.array([(q.compute_dtype or "") in SCORE_MATRIX_DTYPES for q in cat.quants], dtype=bool)
    engine = np.array([applies_to(e) for e in cat.engines], dtype=bool)
    return ((model[cands.model_idx] | dtype[cands.quant_idx]) & engine[cands.engine_idx]).astype(np.float64)


def _tight(est: MemoryEstimate, cands: Candidates, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For `rows`: whether each is a tight fit (`tight_fit`), its p90 residual (GB) and what that peak needs (GB)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not cands.catalog.memory_residual:
        zero = np.zeros(len(rows))
        return np.zeros(len(rows), dtype=bool), zero, zero
    p90 = residual_table(cands.catalog.memory_residual, cands.catalog.quants.ids(), cands.catalog.engines.rows,
                         "residual_p90_gb")[cands.quant_idx[rows], cands.engine_idx[rows]]
    need = est.components_gb[rows] + p90
    with np.errstate(invalid="ignore"):
        tight = est.fits[rows] & (p90 > est.residual_gb[rows]) & (need > est.usable_gb[rows])
    return tight, p90, need


def tight_fit_mask(est: MemoryEstimate, cands: Candidates, rows: np.ndarray) -> np.ndarray:
    """Per row of `rows`: True for a tight fit (`tight_fit`)."""
    return _tight(est, cands, rows)[0]


def tight_fit(est: MemoryEstimate, cands: Candidates, i: int) -> str | None:
    """For a fitting row `i`: a note when the peak at the 90th percentile of our records' residual for its
    method and engine (`memory_residual.csv` `residual_p90_gb`) would exceed the usable memory, i.e. the
    estimate fits but one record in ten of that method and engine ran above what the card allows; None
    otherwise (or where no residual applies)."""
    tight, p90, need = (a[0] for a in _tight(est, cands, np.array([i])))
    if not tight:
        return None
    quant, engine = cands.ids("quant")[i], cands.ids("engine")[i]
    return (f"a tight fit: {est.total_gb[i]:.1f} GB estimated of {est.usable_gb[i]:.1f} GB usable, but one in ten of "
            f"our {quant} records on {engine} peaked {p90:.1f} GB or more above the components (the estimate adds "
            f"{est.residual_gb[i]:.1f}), which would need {need:.1f} GB; leave headroom (a profile's "
            "memory_headroom_frac) or take a smaller batch")


def _paged(cands: Candidates) -> np.ndarray:
    vals = np.array([1.0 if (e.kv_cache or "") == "paged" else 0.0 for e in cands.catalog.engines], dtype=np.float64)
    return vals[cands.engine_idx] if len(vals) else np.zeros(len(cands))


def describe_misfit(est: MemoryEstimate, i: int, gpu_id: str) -> str:
    """One-line reason for a candidate that does not fit, e.g. 'needs 18.2 GB > 16.0 GB on rtx4060ti-16gb'."""
    total, usable, card = est.total_gb[i], est.usable_gb[i], est.card_gb[i]
    if not np.isfinite(card):
        return f"memory size of {gpu_id} unknown"
    if not np.isfinite(total):
        return "model shape unknown: cannot estimate memory"
    if abs(usable - card) < 1e-9:
        return f"needs {total:.1f} GB > {card:.1f} GB on {gpu_id}"
    return f"needs {total:.1f} GB > {usable:.1f} GB usable on {gpu_id} ({card:.1f} GB card)"


def _round(v) -> float | None:
    v = float(v)
    return round(v, 3) if np.isfinite(v) else None
