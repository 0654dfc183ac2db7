"""Physics features: compute paths, bytes, FLOPs, the 16-bit reference axes and the feature contract."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.candidates import Candidates
from recommender.costmodel import features as F


def _cands(cat, gpus, quants, batch=(1,), model="qwen2.5-7b-instruct", engine="hf-eager", prompt=128, output=64):
    return Candidates.grid(cat, list(gpus), [model], list(quants), [engine], list(batch), prompt, output)


def test_feature_matrix_matches_the_declared_names(catalog):
    c = _cands(catalog, ["h100-sxm", "rtx4060ti-16gb", "v100-32gb"], ["bf16", "bnb-nf4", "torchao-fp8"], (1, 16))
    X = F.build(c)
    assert X.shape == (len(c), len(F.FEATURE_NAMES))
    assert X.dtype == np.float64 and X.flags["F_CONTIGUOUS"]  # column-major: LightGBM reads it without a copy
    assert not np.isinf(X).any()
    assert len(set(F.FEATURE_NAMES)) == len(F.FEATURE_NAMES)


def test_compute_path_follows_the_card(catalog):
    c = Candidates.from_ids(catalog, ["a100-sxm-40gb", "h100-sxm", "v100-32gb", "h100-sxm", "h100-sxm"],
                            ["qwen2.5-7b-instruct"] * 5, ["torchao-fp8", "torchao-fp8", "bf16", "torchao-int8-dyn",
                                                          "bnb-nf4"], ["hf-eager"] * 5, [1] * 5, [128] * 5, [64] * 5)
    ph = F.physics(c)
    paths = [F.COMPUTE_PATHS[int(p)] for p in ph.compute_path]
    # fp8 needs sm_89+: the A100 falls back to bf16; V100 has no bf16 tensor cores (emulated via fp32)
    assert paths == ["bf16", "fp8", "fp32", "int8", "bf16"]
    assert ph.dtype_fallback.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    h100 = catalog.gpu("h100-sxm")
    assert ph.peak_flops[1] == pytest.approx(h100.fp8_tensor_tflops * 1e12)
    assert ph.peak_flops[3] == pytest.approx(h100.int8_tensor_tops * 1e12)
    assert ph.peak_flops[4] == pytest.approx(h100.bf16_tensor_tflops * 1e12)  # weight-only computes in bf16


def test_fp16_and_bf16_look_the_same_where_the_card_runs_both(catalog):
    # The same bytes at the same tensor-core rate: the learned model must not be able to tell them apart
    # (it used to, by where its rows came from). Where bf16 is emulated (V100) the features differ.
    c = _cands(catalog, ["h100-sxm", "l4", "rtx4060ti-16gb", "v100-32gb"], ["fp16", "bf16"], (1, 64),
               engine="vllm")
    X = F.build(c)
    for gpu in ("h100-sxm", "l4", "rtx4060ti-16gb", "v100-32gb"):
        on = c.gpu_idx == catalog.gpus.index[gpu]
        fp16 = X[on & (c.quant_idx == catalog.quants.index["fp16"])]
        bf16 = X[on & (c.quant_idx == catalog.quants.index["bf16"])]
        same = np.array_equal(fp16, bf16, equal_nan=True)
        assert same == (gpu != "v100-32gb"), gpu
    assert "path_16bit" in F.FEATURE_NAMES and "path_fp16" not in F.FEATURE_NAMES


def test_bytes_and_flops_follow_the_shape(catalog):
    c = _cands(catalog, ["h100-sxm"], ["bf16", "torchao-int8-wo", "bnb-nf4"], (1, 8))
    ph = F.physics(c)
    bf16, int8, nf4 = (ph.weight_bytes[c.quant_idx == catalog.quants.index[q]][0]
                       for q in ("bf16", "torchao-int8-wo", "bnb-nf4"))
    m = catalog.model("qwen2.5-7b-instruct")
    assert bf16 == pytest.approx(m.params_b * 1e9 * 2, rel=1e-6)  # every weight at 2 bytes
    assert nf4 < int8 < bf16
    # KV read per step: batch x (prompt + output/2) x 2 x layers x kv_heads x head_dim x 2 bytes
    kv1 = 1 * (128 + 32) * 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2
    assert ph.kv_bytes[(c.batch_size == 1) & (c.quant_idx == catalog.quants.index["bf16"])][0] == pytest.approx(kv1)
    assert ph.kv_bytes[c.batch_size == 8].min() == pytest.approx(8 * kv1)
    # decode FLOPs: ~2 x params per token (the input embedding lookup excluded) + attention
    tied = m.vocab_size * m.hidden_size
    assert ph.flops_step[0] == pytest.approx(2 * (m.params_b * 1e9 - tied) + 4 * m.num_layers * 28 * 128 * 160, rel=1e-6)
    assert np.all(ph.flops_prefill > ph.flops_step)


def test_compiled_decode_reads_the_whole_static_cache_expanded_to_every_query_head(catalog):
    """hf-compiled (engines.yaml decode_kv_read: expanded-whole-cache) reads the whole static cache, prompt +
    output, and for a grouped-query model writes and reads it again copied out to every query head; the dynamic
    cache's engine reads the mean context, grouped; vLLM's paged attention is not expanded."""
    assert catalog.engine("hf-compiled").analytic["decode_kv_read"] == F.KV_READ_EXPANDED
    gqa, mha = catalog.model("qwen2.5-7b-instruct"), catalog.model("phi-3-mini-4k-instruct")
    assert gqa.num_kv_heads < gqa.num_attention_heads and mha.num_kv_heads == mha.num_attention_heads
    c = Candidates.from_ids(catalog, ["h200"] * 6, [gqa.id, gqa.id, gqa.id, mha.id, mha.id, mha.id], ["bf16"] * 6,
                            ["hf-eager", "hf-compiled", "vllm"] * 2, [32] * 6, [1024] * 6, [256] * 6)
    ph = F.physics(c)
    kv = ph.kv_step_bytes
    # the features' KV (the mean context, grouped) is the same for every engine
    np.testing.assert_allclose(ph.kv_bytes[[1, 2, 4, 5]], ph.kv_bytes[[0, 0, 3, 3]])
    np.testing.assert_allclose(ph.t_mem_step * ph.bandwidth - kv, (ph.t_mem_step * ph.bandwidth - kv)[[0, 0, 0, 3, 3, 3]])
    for i, m in ((0, gqa), (3, mha)):
        per_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2  # K and V, 2 bytes
        assert kv[i] == pytest.approx(32 * (1024 + 128) * per_token)  # eager: the mean context
        assert kv[i + 2] == pytest.approx(kv[i])  # vllm: the same (paged, grouped)
        groups = m.num_attention_heads / m.num_kv_heads
        factor = 1 + 2 * groups if groups > 1 else 1
        assert kv[i + 1] == pytest.approx(32 * (1024 + 256) * per_token * factor)
    assert kv[1] / kv[0] > 10 and kv[4] / kv[3] == pytest.approx(1280 / 1152)


def test_the_grouped_sdpa_variant_reads_the_whole_static_cache_once_and_shares_its_engines_one_hot(catalog):
    """hf-compiled-gqa (decode_kv_read: grouped-whole-cache): the whole static cache, prompt + output, read once,
    grouped (no copy); every other feature but the memory-bound step time is hf-compiled's (its one-hot, constants
    and, for a method the variant has no method_overhead row of its own for, e.g. LLM.int8, the method row)."""
    v = catalog.engine("hf-compiled-gqa")
    assert v.analytic["decode_kv_read"] == F.KV_READ_GROUPED_WHOLE and v.base_id == "hf-compiled"
    rows = {(r["quant_id"], r["engine_id"]): r for r in catalog.method_overhead}
    assert "engine variant" in rows[("bnb-int8", "hf-compiled-gqa")]["source"]  # inherited, no fit of its own
    m = catalog.model("qwen2.5-7b-instruct")
    c = Candidates.from_ids(catalog, ["h200"] * 4, [m.id] * 4, ["bf16", "bf16", "bnb-int8", "bnb-int8"],
                            ["hf-compiled", "hf-compiled-gqa"] * 2, [32] * 4, [1024] * 4, [256] * 4)
    ph = F.physics(c)
    per_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2
    assert ph.kv_step_bytes[1] == pytest.approx(32 * (1024 + 256) * per_token)
    assert ph.kv_step_bytes[0] == pytest.approx(ph.kv_step_bytes[1] * (1 + 2 * m.num_attention_heads / m.num_kv_heads))
    np.testing.assert_allclose(ph.method_overhead_s[[1, 3]], ph.method_overhead_s[[0, 2]])
    X = F.build(c)
    names = list(F.FEATURE_NAMES)
    differ = {names[j] for j in range(X.shape[1]) if not np.allclose(X[[1, 3], j], X[[0, 2], j], equal_nan=True)}
    # only the decode step's memory time and what the analytic model derives from it (speed, power, energy)
    assert "ref16_log_t_mem_step_ms" in differ and differ <= {
        "ref16_log_t_mem_step_ms", "ref16_log_t_step_ms", "ref16_log_mem_over_comp", "ref16_overhead_fraction",
        "ref16_analytic_power_fraction", "ref16_log_analytic_j_per_token", "ref16_log_analytic_tokens_per_s",
        "q_log_analytic_speedup", "q_log_analytic_energy_ratio"}, differ
    assert X[1, names.index("engine_hf-compiled")] == 1 and X[1, names.index("engine_hf-eager")] == 0


def test_a_variants_own_method_row_is_used_where_its_records_fitted_one(catalog):
    """NF4 with hf-compiled-gqa has a method_overhead.csv row of its own since s25's records (fit_method_overhead.py):
    the variant's per-layer decode overhead is that row's, not hf-compiled's."""
    rows = {(r["quant_id"], r["engine_id"]): r for r in catalog.method_overhead}
    own, base = rows[("bnb-nf4", "hf-compiled-gqa")], rows[("bnb-nf4", "hf-compiled")]
    assert "engine variant" not in own["source"] and float(own["per_layer_overhead_ms"]) != float(
        base["per_layer_overhead_ms"])
    m = catalog.model("qwen2.5-7b-instruct")
    c = Candidates.from_ids(catalog, ["h200"] * 2, [m.id] * 2, ["bnb-nf4"] * 2, ["hf-compiled", "hf-compiled-gqa"],
                            [32] * 2, [1024] * 2, [256] * 2)
    ph = F.physics(c)

    def at_32(r):  # ms per layer at batch 32: the batch-1 value and, where fitted, its line in the batch
        return float(r["per_layer_overhead_ms"]) + float(r.get("per_layer_per_seq_ms") or 0) * 31

    assert ph.method_overhead_s[1] / ph.method_overhead_s[0] == pytest.approx(at_32(own) / at_32(base))


def test_kv_cache_bits_override(catalog):
    c = _cands(catalog, ["h100-sxm"], ["bf16"], (4,))
    full = F.physics(c).kv_bytes
    half = F.physics(c, kv_cache_bits=np.array([8.0])).kv_bytes
    assert half == pytest.approx(full / 2)


def test_reference_axes_are_shared_across_quant_methods(catalog):
    """Within one (card, model, batch, engine) only quant features and q_* ratios may differ."""
    c = _cands(catalog, ["rtx4090"], ["fp16", "bf16", "torchao-int8-wo", "bnb-nf4"], (1,))
    X = F.build(c)
    names = list(F.FEATURE_NAMES)
    ref = [i for i, n in enumerate(names) if n.startswith("ref16_")]
    assert np.allclose(X[:, ref], X[0, ref], equal_nan=True)
    fp16 = int(np.flatnonzero(c.quant_idx == catalog.quants.index["fp16"])[0])
    for n in ("q_log_weight_bytes_ratio", "q_log_peak_flops_ratio", "q_log_analytic_speedup",
              "q_log_analytic_prefill_ratio"):
        assert X[fp16, names.index(n)] == 0.0
    nf4 = int(np.flatnonzero(c.quant_idx == catalog.quants.index["bnb-nf4"])[0])
    assert X[nf4, names.index("q_log_weight_bytes_ratio")] < np.log(0.4)


def test_consumer_card_sits_on_the_same_axes(catalog):
    """An RTX 4060 Ti is ~11.7x slower in bandwidth than an H100: the memory-roofline axis says so."""
    c = _cands(catalog, ["h100-sxm", "rtx4060ti-16gb"], ["bf16"])
    X = F.build(c)
    i = list(F.FEATURE_NAMES).index("ref16_log_t_mem_step_ms")
    ratio = np.exp(X[1, i] - X[0, i])
    assert ratio == pytest.approx(catalog.gpu("h100-sxm").bandwidth_gbs / catalog.gpu("rtx4060ti-16gb").bandwidth_gbs)


def test_rows_are_independent(catalog):
    """Vectorised features equal row-by-row features."""
    c = _cands(catalog, ["h100-sxm", "a40", "t4"], ["bf16", "torchao-int4-wo"], (1, 32))
    X = F.build(c)
    for i in (0, 5, len(c) - 1):
        Xi = F.build(c.take(np.array([i])))
        assert np.allclose(Xi[0], X[i], equal_nan=True)


def test_scopes(catalog):
    c = _cands(catalog, ["h100-sxm"], ["bf16"], (1, 2))
    X = F.build(c, scope=["gpu-counter", "mlenergy-v2"])
    names = list(F.FEATURE_NAMES)
    assert X[:, names.index("scope_includes_prefill")].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="unknown measurement scope"):
        F.build(c, scope="guess")


def test_bnb_4bit_reads_packed_weights_up_to_4_tokens_and_dequantizes_above(catalog):
    """quants.yaml: bitsandbytes 4-bit keeps its fused kernel (0.5 byte per weight) for at most 4 tokens per
    matmul and dequantizes above: 4 more bytes per quantized (non-lm_head) weight per step; the prefill always
    has more tokens. A method without the rule reads its weights the same way at every batch."""
    q = catalog.quant("bnb-nf4")
    assert q.dequantize_above_tokens == 4 and q.dequantize_extra_bytes_per_weight == 4 and q.dequantize_source
    m = catalog.model("qwen2.5-7b-instruct")
    c = Candidates.grid(catalog, ["h100-sxm"], [m.id], ["bnb-nf4", "torchao-int4-wo"], ["hf-eager"], [1, 4, 5, 8],
                        256, 128)
    ph = F.physics(c)
    quant, batch = c.ids("quant"), c.batch_size
    kv = ph.kv_bytes / ph.bandwidth
    mem_weights = ph.t_mem_step - kv  # seconds of weight traffic per step
    nf4 = quant == "bnb-nf4"
    mt = F._model_table(c)
    j = catalog.models.index[m.id]
    assert mt["head_params"][j] > 0
    extra = (mt["matmul_params"][j] - mt["head_params"][j]) * 4.0 / ph.bandwidth[0]
    base = mem_weights[nf4 & (batch == 1)][0]
    np.testing.assert_allclose(mem_weights[nf4 & (batch <= 4)], base)
    np.testing.assert_allclose(mem_weights[nf4 & (batch > 4)], base + extra, rtol=1e-9)
    int4 = ~nf4
    np.testing.assert_allclose(mem_weights[int4], mem_weights[int4][0])  # no rule: flat in batch
    # prefill: 256 tokens per matmul at any batch, so always the dequantize path
    pre_kv = batch * 256 * (ph.kv_bytes / (batch * (256 + 64)))  # KV bytes of the prompt
    pre_weights = ph.t_mem_prefill - pre_kv / ph.bandwidth
    np.testing.assert_allclose(pre_weights[nf4], base + extra, rtol=1e-9)


def test_dequantize_rule_only_on_its_cards_and_methods(catalog):
    """The rule holds from compute capability 9.0 (quants.yaml): an RTX 4090 (8.9) reads packed 4-bit weights at
    every batch; bnb-fp4 carries the rule like nf4; no other method changes with batch."""
    quants = ["bnb-nf4", "bnb-fp4", "bf16", "bnb-int8", "torchao-int8-wo", "torchao-int4-wo", "torchao-fp8"]
    c = Candidates.grid(catalog, ["h100-sxm", "rtx4090"], ["qwen2.5-7b-instruct"], quants, ["hf-eager"], [1, 8], 256,
                        128)
    ph = F.physics(c)
    weights = ph.t_mem_step - ph.kv_bytes / ph.bandwidth
    gpu, quant, batch = c.ids("gpu"), c.ids("quant"), c.batch_size
    assert catalog.gpu("rtx4090").compute_capability < 9.0 <= catalog.gpu("h100-sxm").compute_capability
    for g in ("h100-sxm", "rtx4090"):
        for q in quants:
            w1, w8 = (weights[(gpu == g) & (quant == q) & (batch == b)][0] for b in (1, 8))
            grows = g == "h100-sxm" and q in ("bnb-nf4", "bnb-fp4")
            assert (w8 > w1 * 1.5) if grows else w8 == pytest.approx(w1), (g, q)
