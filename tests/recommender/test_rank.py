"""Ranking, constraints, exclusions and metrics on a small in-memory catalogue with a fake cost model.

`fixture_catalog()` and `FakeCostModel` are reused by the other recommender tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import recommender.rank as rank_mod
from recommender.candidates import Candidates
from recommender.catalog import Catalog, Engine, Gpu, Model, Profile, Quant, Region, load_catalog
from recommender.costmodel.base import Quantiles
from recommender.errors import UnknownNameError, UserError
from recommender.rank import (
    BF16,
    COMPUTE_CAP,
    CONTEXT,
    ENGINE,
    MEMORY,
    NoCandidateError,
    Query,
    candidate_dict,
    candidate_dicts,
    explain,
    pareto_front,
    recommend,
    setup_notes,
)


def fixture_catalog() -> Catalog:
    """Three GPUs, two paper models + tiny-test, five quants, two engines, one profile, two regions."""
    gpus = [
        Gpu(id="rtx4060ti-16gb", name="NVIDIA GeForce RTX 4060 Ti 16GB", aliases=("rtx4060ti", "4060ti"),
            compute_capability=8.9, memory_gb=16, bandwidth_gbs=288, tdp_w=165, fp16_tensor_tflops=88,
            segment="consumer"),
        Gpu(id="a100-pcie-40gb", name="NVIDIA A100 PCIe 40GB", aliases=("a100",), compute_capability=8.0,
            memory_gb=40, bandwidth_gbs=1555, tdp_w=250, fp16_tensor_tflops=312, segment="datacenter"),
        Gpu(id="v100-32gb", name="NVIDIA Tesla V100 SXM2 32GB", aliases=("v100",), compute_capability=7.0,
            memory_gb=32, bandwidth_gbs=900, tdp_w=300, fp16_tensor_tflops=125, segment="datacenter"),
    ]
    models = [
        Model(id="qwen2.5-7b-instruct", hf_id="Qwen/Qwen2.5-7B-Instruct", aliases=("qwen2.5-7b",), num_layers=28,
              hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_kv_heads=4, head_dim=128,
              vocab_size=152064, max_position_embeddings=32768, params_b=7.62, in_paper=True),
        Model(id="bloomz-7b1", hf_id="bigscience/bloomz-7b1", num_layers=30, hidden_size=4096,
              intermediate_size=16384, num_attention_heads=32, num_kv_heads=32, vocab_size=250880,
              max_position_embeddings=2048, tie_word_embeddings=True, params_b=7.07, in_paper=True),
        Model(id="tiny-test", num_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_kv_heads=2, vocab_size=512, max_position_embeddings=512, params_b=0.0001),
    ]
    quants = [
        Quant(id="fp16", weight_bits=16, scheme="none", compute_dtype="fp16"),
        Quant(id="bf16", weight_bits=16, scheme="none", compute_dtype="bf16", min_compute_capability=8.0),
        Quant(id="bnb-int8", weight_bits=8, scheme="dynamic", compute_dtype="fp16"),
        Quant(id="bnb-nf4", weight_bits=4, scheme="weight-only", compute_dtype="fp16", granularity="block-64"),
        Quant(id="torchao-int4-wo", weight_bits=4, scheme="weight-only", compute_dtype="bf16",
              granularity="group-128"),
        Quant(id="torchao-fp8", weight_bits=8, activation_bits=8, scheme="dynamic", compute_dtype="bf16",
              min_compute_capability=8.9),
    ]
    engines = [
        Engine(id="hf-eager", kv_cache="dynamic", measurable=True, supported_quants="all"),
        Engine(id="vllm", kv_cache="paged", compiled=True, supported_quants=("fp16", "bf16", "bnb-nf4")),
    ]
    profiles = [Profile(id="edge", accuracy_floor_rel=0.95, max_latency_ms=60000, memory_headroom_frac=0.1,
                        pue=1.1, default_priority="energy", segments=("consumer",))]
    regions = [Region(id="world", name="World", grid_gco2_per_kwh=480.0),
               Region(id="fr", name="France", grid_gco2_per_kwh=56.0)]
    scores = [{"model_id": "qwen2.5-7b-instruct", "task": t, "value": v} for t, v in
              (("mmlu", 0.74), ("arc_challenge", 0.55), ("gsm8k", 0.80), ("hellaswag", 0.80),
               ("truthfulqa_mc2", 0.65), ("ifeval", 0.7))]
    scores += [{"model_id": "bloomz-7b1", "task": "mmlu", "value": 0.37}]
    return Catalog(gpus, models, quants, engines, profiles, regions, scores)


class FakeCostModel:
    """Roofline-ish numbers: decode bandwidth-bound, prefill compute-bound, power at 70% TDP."""

    name = "fake-v0"
    DELTA = {"bnb-int8": -0.003, "bnb-nf4": -0.012, "torchao-fp8": -0.002}
    BITS = {"fp16": 16, "bf16": 16, "bnb-int8": 8, "bnb-nf4": 4.5, "torchao-fp8": 8}

    def predict(self, cands: Candidates) -> dict[str, Quantiles]:
        c = cands.col
        bits = np.array([self.BITS.get(q.id, 16) for q in cands.catalog.quants])[cands.quant_idx]
        wbytes = c("model_params_b") * 1e9 * bits / 8
        b = cands.batch_size
        step_s = wbytes / (c("gpu_bandwidth_gbs") * 1e9 * 0.6) + 0.02  # per decode step
        tps = b / step_s
        power = c("gpu_tdp_w") * 0.7
        ept = power / tps
        ttft_s = 2 * c("model_params_b") * 1e9 * b * cands.prompt_tokens / (c("gpu_fp16_tensor_tflops") * 1e12 * 0.4)
        delta = np.array([self.DELTA.get(q.id, 0.0) for q in cands.catalog.quants])[cands.quant_idx]

        def q(x, spread=0.1):
            return Quantiles(x * (1 - spread), x, x * (1 + spread))

        return {"energy_per_token_j": q(ept), "tokens_per_s": q(tps), "ttft_ms": q(ttft_s * 1000),
                "prefill_energy_j": q(ttft_s * power), "memory_gb": q(np.full(len(cands), np.nan)),
                "accuracy_delta": Quantiles(delta * 1.5, delta, delta * 0.5)}


@pytest.fixture
def cat():
    return fixture_catalog()


def run(cat, full=None, **kw):
    return recommend(Query(**kw), catalog=cat, cost_model=FakeCostModel(), full=full)


def test_default_sets_and_priority(cat):
    res = run(cat, gpus=("rtx4060ti",))
    assert res.priority == "energy"
    assert res.query["models"] == ["qwen2.5-7b-instruct", "bloomz-7b1"]  # in_paper, not tiny-test
    assert res.query["batch_sizes"] == [1, 8, 32, 64]
    assert len(res.cands) == 1 * 2 * 6 * 2 * 4
    eor = res.metrics["eor"].p50[res.order]
    assert np.all(np.diff(eor) <= 0)
    assert res.query["grid_source"].startswith("default: region world")


def test_model_all_excludes_tiny(cat):
    res = run(cat, gpus=("a100",), models=("all",))
    assert "tiny-test" not in res.query["models"] and len(res.query["models"]) == 2


def test_tiny_test_when_named(cat):
    res = run(cat, gpus=("a100",), models=("tiny-test",), quants=("fp16",))
    assert res.query["models"] == ["tiny-test"] and len(res.order) > 0


@pytest.mark.parametrize("priority,metric,desc", [("energy", "eor", True), ("accuracy", "accuracy", True),
                                                  ("latency", "latency_s", False), ("balanced", "tweor", True)])
def test_priorities_sort(cat, priority, metric, desc):
    res = run(cat, priority=priority)
    v = res.metrics[metric].p50[res.order]
    v = v[np.isfinite(v)]
    assert np.all(np.diff(v) <= 1e-12) if desc else np.all(np.diff(v) >= -1e-12)


def test_eor_tweor_definitions(cat):
    res = run(cat, gpus=("a100",), requests=500)
    for i in res.order[:20]:
        d = candidate_dict(res, int(i), 1)
        s, wh, t = d["accuracy"]["p50"], d["energy_wh"]["p50"], d["workload_time_s"]["p50"]
        assert d["eor"]["p50"] == pytest.approx(s / wh, rel=1e-12)
        assert d["tweor"]["p50"] == pytest.approx(s / (wh * t), rel=1e-12)
        b = d["batch_size"]
        assert t == pytest.approx(math.ceil(500 / b) * d["latency_s"]["p50"], rel=1e-12)
        e = math.ceil(500 / b) * (d["prefill_energy_j"]["p50"] + d["energy_per_token_j"]["p50"] * b * 128) / 3600
        assert wh == pytest.approx(e, rel=1e-12)
        assert d["eor"]["p10"] <= d["eor"]["p50"] <= d["eor"]["p90"]


def test_exclusion_reasons(cat):
    res = run(cat, quants=("bf16", "torchao-fp8", "bnb-int8", "fp16", "torchao-int4-wo"))
    c = res.cands
    gpu, quant, eng, model = c.ids("gpu"), c.ids("quant"), c.ids("engine"), c.ids("model")
    v100 = gpu == "v100-32gb"
    assert np.all(res.code[v100 & (quant == "bf16")] == COMPUTE_CAP)
    i = int(np.flatnonzero(v100 & (quant == "torchao-int4-wo"))[0])
    assert res.code[i] == BF16 and res.reason(i) == (
        "torchao-int4-wo computes in bf16, which needs compute capability >= 8.0 (Ampere or newer); "
        "v100-32gb has 7.0")
    assert "bf16 needs compute capability >= 8.0" in res.reason(int(np.flatnonzero(v100 & (quant == "bf16"))[0]))
    i = int(np.flatnonzero((gpu == "a100-pcie-40gb") & (quant == "torchao-fp8"))[0])
    assert res.code[i] == COMPUTE_CAP and "needs compute capability >= 8.9" in res.reason(i)
    i = int(np.flatnonzero((eng == "vllm") & (quant == "bnb-int8") & (gpu == "a100-pcie-40gb"))[0])
    assert res.code[i] == ENGINE and res.reason(i) == "engine vllm does not support quantization bnb-int8"
    fp16_4060 = ((gpu == "rtx4060ti-16gb") & (quant == "fp16") & (model == "qwen2.5-7b-instruct")
                 & (c.batch_size >= 32))
    assert np.all(res.code[fp16_4060] == MEMORY)
    r = res.reason(int(np.flatnonzero(fp16_4060)[0]))
    assert r.startswith("needs ") and r.endswith("on rtx4060ti-16gb") and "> 16.0 GB" in r
    assert res.excluded_counts()["does not fit in memory"] >= 8


def test_context_exclusion(cat):
    res = run(cat, gpus=("a100",), models=("bloomz-7b1", "qwen2.5-7b"), prompt_tokens=2000, output_tokens=100)
    bloomz = res.cands.ids("model") == "bloomz-7b1"
    assert not np.isin(res.order, np.flatnonzero(bloomz)).any()
    i = int(np.flatnonzero(res.code == CONTEXT)[0])
    assert res.reason(i) == "context 2000+100=2100 tokens > 2048 max positions of bloomz-7b1"


def test_profile_applies_and_flags_override(cat):
    res = run(cat, profile="edge")
    assert res.query["gpus"] == ["rtx4060ti-16gb"]  # consumer segment only
    assert res.workload.pue == 1.1 and res.mem.headroom_frac == 0.1
    assert any("accuracy_floor_rel" in c for c in res.query["constraints"])
    res2 = run(cat, profile="edge", gpus=("a100",), pue=1.3, min_accuracy=10, priority="latency")
    assert res2.query["gpus"] == ["a100-pcie-40gb"] and res2.workload.pue == 1.3
    assert res2.query["constraints"][0] == "--min-accuracy 10" and res2.priority == "latency"


def test_accuracy_floor_excludes_lossy_quant(cat):
    res = run(cat, gpus=("a100",), models=("qwen2.5-7b",), min_accuracy=70.0)
    ranked_quants = set(res.cands.ids("quant")[res.order])
    assert "bnb-nf4" not in ranked_quants and "fp16" in ranked_quants


def test_impossible_latency_message(cat):
    with pytest.raises(NoCandidateError) as ei:
        run(cat, gpus=("a100",), max_latency_ms=5)
    msg = str(ei.value)
    assert msg.startswith("no candidate meets --max-latency-ms 5: the fastest fitting candidate needs ")
    assert msg.endswith(" ms")


def test_impossible_memory_message(cat):
    with pytest.raises(NoCandidateError, match=r"no candidate can run: all \d+ excluded .*needs .* GB"):
        run(cat, gpus=("rtx4060ti",), models=("qwen2.5-7b",), quants=("fp16",), engines=("hf-eager",),
            batch_sizes=(64,), prompt_tokens=2048)


def test_memory_message_suggests_the_largest_batch_that_fits(cat):
    """Halving from the asked batch: the first size that fits is suggested, and it does fit where the one above does
    not; where none does, the message names what is left to change (a 4-bit method only for a wider one)."""
    kw = dict(gpus=("rtx4060ti",), models=("qwen2.5-7b",), quants=("bnb-nf4",), engines=("hf-eager",), prompt_tokens=2048)
    with pytest.raises(NoCandidateError, match=r"at batch 16 it would need [\d.]+ GB: try --batch-size 16$"):
        run(cat, batch_sizes=(64,), **kw)
    with pytest.raises(NoCandidateError):
        run(cat, batch_sizes=(32,), **kw)
    assert len(run(cat, batch_sizes=(16,), **kw).order) == 1
    with pytest.raises(NoCandidateError, match=r"does not fit at batch 1 either; try a 4-bit method .*more memory$"):
        run(cat, gpus=("rtx4060ti",), models=("qwen2.5-7b",), quants=("fp16",), engines=("hf-eager",),
            batch_sizes=(8,), prompt_tokens=16384)
    with pytest.raises(NoCandidateError, match=r"either; try a shorter --prompt-tokens, or a card with more memory$"):
        run(load_catalog(), gpus=("rtx4060ti",), models=("qwen2.5-14b-instruct",), quants=("bnb-nf4",),
            engines=("hf-eager",), batch_sizes=(8,), prompt_tokens=16000)


def test_unknown_names(cat):
    with pytest.raises(UnknownNameError, match=r"unknown GPU 'rtx4060x'; did you mean 'rtx4060ti"):
        run(cat, gpus=("rtx4060x",))
    for kw in ({"models": ("qwen9",)}, {"quants": ("int3",)}, {"engines": ("vlm",)}, {"profile": "edg"},
               {"region": "mars"}):
        with pytest.raises(UserError, match="unknown"):
            run(cat, **kw)


def test_region_and_prices(cat):
    res = run(cat, gpus=("a100",), region="fr", price_kwh=0.2)
    i = int(res.order[0])
    d = candidate_dict(res, i, 1)
    tokens = 1000 * 128
    assert d["gco2e_per_1m_tokens"]["p50"] == pytest.approx(d["energy_wh"]["p50"] / 1000 / tokens * 1e6 * 56)
    assert d["usd_per_1m_tokens"]["p50"] == pytest.approx(d["energy_wh"]["p50"] / 1000 / tokens * 1e6 * 0.2)
    assert res.query["grid_gco2_per_kwh"] == 56.0
    d0 = candidate_dict(run(cat, gpus=("a100",)), i, 1)
    assert d0["usd_per_1m_tokens"] is None


def test_explain_mentions_margin_and_exclusions(cat):
    res = run(cat, gpus=("rtx4060ti", "v100"), max_latency_ms=40000)
    text = "\n".join(explain(res))
    assert "Top choice" in text and "margin" in text and "Excluded" in text and "predicted by fake-v0" in text


def test_all_keeps_excluded_rows(cat):
    res = recommend(Query(gpus=("rtx4060ti",), models=("qwen2.5-7b",), quants=("fp16",), engines=("hf-eager",),
                          batch_sizes=(64,), prompt_tokens=2048),
                    catalog=cat, cost_model=FakeCostModel(), predict_excluded=True)
    assert len(res.order) == 0 and np.all(res.code == MEMORY)
    d = candidate_dict(res, 0, None)
    assert d["fits"] is False and d["rank"] is None and d["excluded_reason"].startswith("needs ")


def test_pareto_front():
    e = np.array([1.0, 2.0, 3.0, 1.5, np.nan])
    a = np.array([50.0, 60.0, 55.0, 40.0, 99.0])
    assert pareto_front(e, a).tolist() == [True, True, False, False, False]


def test_measured_override(cat, monkeypatch):
    import recommender.rank as rank_mod

    def fake_measured(cands):
        mask = np.zeros(len(cands), dtype=bool)
        mask[0] = True
        v = np.full(len(cands), 0.5)
        return mask, {"energy_per_token_j": Quantiles(v, v, v)}

    monkeypatch.setattr(rank_mod, "_measured", fake_measured)
    res = run(cat, gpus=("a100",))
    assert res.measured.sum() == 1
    i = int(np.flatnonzero(res.measured)[0])
    d = candidate_dict(res, i, 1)
    assert d["source"] == "measured" and d["energy_per_token_j"] == {"p10": 0.5, "p50": 0.5, "p90": 0.5}


def test_measured_override_only_where_finite(cat, monkeypatch):
    """A record that did not measure a target (NaN) must not wipe the prediction of that target."""
    import recommender.rank as rank_mod

    plain = run(cat, gpus=("a100",), full=True)

    def fake_measured(cands):
        n = len(cands)
        mask = np.zeros(n, dtype=bool)
        mask[0] = True
        nan = np.full(n, np.nan)
        e = np.where(mask, 0.5, np.nan)
        ttft = np.where(mask, 40.0, np.nan)
        return mask, {"energy_per_token_j": Quantiles(e * 0.9, e, e * 1.1),  # measured
                      "tokens_per_s": Quantiles(nan, nan, nan),  # the record has no throughput
                      "ttft_ms": Quantiles(nan, ttft, nan)}  # a point without spread

    monkeypatch.setattr(rank_mod, "_measured", fake_measured)
    for full in (False, True):
        res = run(cat, gpus=("a100",), full=full)
        i = int(np.flatnonzero(res.measured)[0])
        d, ref = candidate_dict(res, i, 1), candidate_dict(plain, i, 1)
        assert d["source"] == "measured" and ref["source"] == "predicted"
        assert d["energy_per_token_j"] == pytest.approx({"p10": 0.45, "p50": 0.5, "p90": 0.55})
        assert d["tokens_per_s"] == ref["tokens_per_s"] and d["tokens_per_s"]["p50"] is not None
        assert d["ttft_ms"]["p50"] == 40.0
        assert d["ttft_ms"]["p10"] <= 40.0 <= d["ttft_ms"]["p90"]  # predicted ends, widened to hold p50
        assert d["latency_s"]["p50"] is not None


def test_whole_catalogue_ranks(cat):
    """Every model of the catalogue in one query (its speed is `python benchmarks/bench_rank.py`'s to measure)."""
    res = run(cat, models=("all",))
    assert res.query["models"] == [m for m in cat.models.ids() if m != "tiny-test"]  # the test model is never "all"
    assert res.query["candidates_ranked"] == len(res.order) > 0


@pytest.mark.parametrize("shape", ["tuple", "dict", "object"])
def test_measured_lookup_formats(cat, monkeypatch, shape):
    import sys
    import types

    def lookup(cands):
        n = len(cands)
        mask = np.arange(n) == 1
        v = np.where(mask, 0.25, np.nan)
        lo, hi = np.where(mask, 0.2, np.nan), np.where(mask, 0.3, np.nan)
        values = {"energy_per_token_j": Quantiles(lo, v, hi)}
        if shape == "tuple":
            return mask, values
        if shape == "dict":
            return values
        return types.SimpleNamespace(mask=mask, values=values)

    monkeypatch.setitem(sys.modules, "recommender.costmodel.learned", types.SimpleNamespace(measured_lookup=lookup))
    res = run(cat, gpus=("a100",))
    assert res.measured.sum() == 1
    d = candidate_dict(res, int(np.flatnonzero(res.measured)[0]), None)
    assert d["source"] == "measured" and d["energy_per_token_j"] == {"p10": 0.2, "p50": 0.25, "p90": 0.3}
    assert d["tokens_per_s"]["p50"] is not None  # unmeasured targets stay predicted


def test_shipped_whole_catalogue_ranks_every_candidate():
    """The shipped catalogue and cost model rank every GPU x model x method x engine x default batch at once. Its
    time is a benchmark's (`python benchmarks/bench_rank.py`, budget 200 ms), not asserted here: a loaded CI
    machine would make a timed test fail for no fault of the code."""
    real = load_catalog()
    if not len(real.engines):
        pytest.skip("catalogue incomplete")
    res = recommend(Query(models=("all",)), real, rank_mod._load_cost_model(None))
    assert len(res.cands) == len(real.gpus) * (len(real.models) - 1) * len(real.quants) * len(real.engines) * 4
    assert 0 < len(res.order) <= len(res.cands)


def test_contradictory_pair_message(cat):
    base = run(cat, gpus=("a100",), models=("qwen2.5-7b",), full=True)  # latency of every row, not only p50s ranked on
    lat = base.metrics["latency_s"].p50[base.order] * 1000
    acc = base.metrics["accuracy"].p50[base.order]
    bound = round((lat.min() + lat[acc >= 70.7].min()) / 2)
    assert lat.min() < bound < lat[acc >= 70.7].min()
    with pytest.raises(NoCandidateError) as ei:
        run(cat, gpus=("a100",), models=("qwen2.5-7b",), min_accuracy=70.7, max_latency_ms=bound)
    msg = str(ei.value)
    assert msg.startswith(f"no candidate meets --min-accuracy 70.7 and --max-latency-ms {bound} together: among "
                          "those meeting ")


def test_the_grouped_sdpa_variant_is_a_candidate_for_grouped_query_models_only():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel
    from recommender.rank import ENGINE_MODEL, HARDWARE_CODES

    cat = load_catalog()
    q = Query(gpus=("h200",), models=("qwen2.5-7b-instruct", "phi-3-mini-4k-instruct"),
              engines=("hf-compiled", "hf-compiled-gqa"), quants=("bf16",), batch_sizes=(32,), prompt_tokens=1024,
              output_tokens=256)
    res = recommend(q, cat, AnalyticCostModel())
    models, engines = res.cands.ids("model"), res.cands.ids("engine")
    phi = np.flatnonzero((models == "phi-3-mini-4k-instruct") & (engines == "hf-compiled-gqa"))
    assert len(phi) == 1 and res.code[phi[0]] == ENGINE_MODEL and ENGINE_MODEL in HARDWARE_CODES
    assert res.reason(int(phi[0])) == ("engine hf-compiled-gqa changes grouped-query attention only; "
                                       "phi-3-mini-4k-instruct is multi-head (use hf-compiled)")
    ranked = {(models[i], engines[i]) for i in res.order}
    assert ranked == {("qwen2.5-7b-instruct", "hf-compiled"), ("qwen2.5-7b-instruct", "hf-compiled-gqa"),
                      ("phi-3-mini-4k-instruct", "hf-compiled")}
    d = {(x["engine"]): x for x in candidate_dicts(res, res.order, list(range(1, len(res.order) + 1)))
         if x["model"] == "qwen2.5-7b-instruct"}
    # the analytic model charges the default engine the K/V copy, the variant not: it is faster and cheaper
    assert d["hf-compiled-gqa"]["tokens_per_s"]["p50"] > d["hf-compiled"]["tokens_per_s"]["p50"]
    assert d["hf-compiled-gqa"]["energy_per_token_j"]["p50"] < d["hf-compiled"]["energy_per_token_j"]["p50"]


def test_engine_hardware_requirements_exclude_with_the_documented_reason():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel
    from recommender.rank import ENGINE_HARDWARE, why_empty

    cat = load_catalog()
    e = {x.id: x for x in cat.engines}
    pascal, amd, turing = cat.gpu("gtx1080ti"), cat.gpu("mi300x"), cat.gpu("t4")
    assert e["hf-compiled"].hardware_reason(pascal) == (
        f"engine hf-compiled needs compute capability >= 7; {pascal.id} has 6.1")
    assert e["tensorrt-llm"].hardware_reason(amd) == "engine tensorrt-llm runs on nvidia GPUs only; mi300x is amd"
    assert e["tensorrt-llm"].hardware_reason(turing).startswith("engine tensorrt-llm needs compute capability >= 8")
    assert e["vllm"].hardware_reason(amd) is None and e["vllm"].hardware_reason(turing) is None
    assert e["hf-eager"].hardware_reason(pascal) is None and e["llama.cpp"].hardware_reason(amd) is None

    res = recommend(Query(gpus=("gtx1080ti",), models=("qwen2.5-7b-instruct",)), cat, AnalyticCostModel())
    engines = res.cands.ids("engine")
    blocked = np.isin(engines, ["hf-compiled", "vllm", "tensorrt-llm"])
    assert np.all(res.code[blocked] != 0)  # earlier checks (the quant's own minimum) may win; never runnable
    assert np.all(res.code[blocked & (res.cands.ids("quant") == "fp16")] == ENGINE_HARDWARE)
    assert not np.isin(res.cands.ids("engine")[res.order], ["hf-compiled", "vllm", "tensorrt-llm"]).any()
    # LLM.int8() needs Turing (7.5): excluded on Pascal by the quant's own minimum, not by the engine
    i = int(np.flatnonzero((res.cands.ids("quant") == "bnb-int8") & (engines == "hf-eager"))[0])
    assert res.code[i] == COMPUTE_CAP and "bnb-int8 needs compute capability >= 7.5" in res.reason(i)
    q = Query(gpus=("mi300x",), models=("qwen2.5-7b-instruct",), engines=("tensorrt-llm",))
    with pytest.raises(NoCandidateError, match="runs on nvidia GPUs only"):
        recommend(q, cat, AnalyticCostModel())
    assert "runs on nvidia GPUs only" in why_empty(recommend(q, cat, AnalyticCostModel(), predict_excluded=True))


def test_a_bf16_method_with_an_fp16_alternative_is_not_excluded_before_ampere():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel

    cat = load_catalog()
    assert "float16" in cat.quants.get("bnb-nf4").alt_compute_dtypes
    res = recommend(Query(gpus=("t4",), models=("qwen2.5-1.5b-instruct",), engines=("hf-eager",),
                          quants=("bnb-nf4", "bnb-fp4", "torchao-int4-wo", "bf16")), cat, AnalyticCostModel(),
                    predict_excluded=True)
    q = res.cands.ids("quant")
    assert np.all(res.code[np.isin(q, ["bnb-nf4", "bnb-fp4"])] != BF16)
    assert np.all(res.code[np.isin(q, ["torchao-int4-wo"])] == BF16)  # tinygemm: bf16 only
    assert np.all(res.code[q == "bf16"] == COMPUTE_CAP)


def test_setup_notes_tell_a_pre_ampere_user_to_compute_nf4_in_fp16():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel

    cat = load_catalog()
    res = recommend(Query(gpus=("t4",), models=("qwen2.5-1.5b-instruct",), engines=("hf-eager",),
                          quants=("bnb-nf4", "fp16")), cat, AnalyticCostModel())
    dicts = {d["quant"]: d for d in candidate_dicts(res, res.order, list(range(1, len(res.order) + 1)))}
    assert "bnb_4bit_compute_dtype=torch.float16" in dicts["bnb-nf4"]["notes"][0]
    assert dicts["fp16"]["notes"] == []
    on_ampere = recommend(Query(gpus=("a100",), models=("qwen2.5-1.5b-instruct",), engines=("hf-eager",),
                                quants=("bnb-nf4",)), cat, AnalyticCostModel())
    assert candidate_dicts(on_ampere, on_ampere.order[:1], [1])[0]["notes"] == []


def test_explain_says_why_accuracy_is_missing():
    """Candidates without accuracy are explained by cause: the model has no cited score, or the method no
    cited change. Every name the line gives must be of that cause (shipped catalogue, fake cost model)."""
    import re

    from recommender.catalog import load_catalog

    shipped = load_catalog()
    res = recommend(Query(gpus=("rtx4060ti",)), catalog=shipped, cost_model=FakeCostModel())
    line = next(x for x in explain(res) if "have no cited accuracy" in x)
    ids = {k: res.cands.ids(k) for k in ("model", "quant")}
    acc = res.metrics["accuracy"].p50
    if m := re.search(r"no cited score for ([^;)]+)", line):
        for model in m.group(1).split(", "):
            rows = ids["model"] == model
            assert rows.any() and not np.isfinite(res.baseline[rows]).any(), model
    if m := re.search(r"no cited accuracy change for ([^;)]+)", line):
        for quant in m.group(1).split(", "):
            rows = (ids["quant"] == quant) & np.isfinite(res.baseline)
            assert rows.any() and not np.isfinite(acc[rows]).any(), quant
    assert "no cited score for" in line or "no cited accuracy change for" in line


def test_a_method_too_small_a_batch_for_its_engine_is_excluded_with_the_measured_reason():
    """quants.yaml `min_batch_size`: torchao int8 dynamic under torch.compile lowers to torch._int_mm, which
    failed for every batch of at most 16 rows we measured; other engines and batch 32 stay."""
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel
    from recommender.rank import BATCH

    cat = load_catalog()
    q = cat.quants.find("torchao-int8-dyn")
    assert q.min_batch("hf-compiled") == 17 and q.min_batch("hf-eager") is None
    assert q.batch_reason("hf-compiled", 16).startswith("torchao-int8-dyn on hf-compiled needs batch size >= 17")
    assert q.batch_reason("hf-compiled", 17) is None and q.batch_reason("vllm", 1) is None
    assert "needs to be greater than 16" in q.min_batch_size_source  # the recorded error, cited
    res = recommend(Query(gpus=("a100",), models=("mistral-7b-instruct-v0.2",), quants=("torchao-int8-dyn", "bf16"),
                          engines=("hf-compiled", "hf-eager"), batch_sizes=(1, 8, 32)), cat, AnalyticCostModel())
    ids = {k: res.cands.ids(k) for k in ("quant", "engine")}
    small = (ids["quant"] == "torchao-int8-dyn") & (ids["engine"] == "hf-compiled") & (res.cands.batch_size < 17)
    assert small.sum() == 2 and np.all(res.code[small] == BATCH)
    assert res.reason(int(np.flatnonzero(small)[0])).startswith("torchao-int8-dyn on hf-compiled needs batch size")
    assert np.all(res.code[~small] != BATCH)


def test_setup_notes_add_the_measured_rules_that_match_method_engine_and_batch():
    from recommender.catalog import load_catalog

    cat = load_catalog()
    gpu, fp8, bf16 = cat.gpu("h100"), cat.quant("torchao-fp8"), cat.quant("bf16")
    rules = [{"quants": ["torchao-fp8"], "engines": ["hf-compiled"], "batch_size_max": 8,
              "text": "set it off: x{ratio:.2f}", "measured": {"ratio": 0.784}},
             {"quants": ["torchao-fp8"], "engines": ["hf-eager"], "text": "eager, any batch"}]
    assert setup_notes(gpu, fp8, "hf-compiled", 1, rules) == ["set it off: x0.78"]
    assert setup_notes(gpu, fp8, "hf-compiled", 8, rules) == ["set it off: x0.78"]
    assert setup_notes(gpu, fp8, "hf-compiled", 32, rules) == []  # above batch_size_max
    assert setup_notes(gpu, bf16, "hf-compiled", 1, rules) == []  # another method
    assert setup_notes(gpu, fp8, "hf-eager", 64, rules) == ["eager, any batch"]  # no batch_size_max: every batch
    above = [{"quants": ["torchao-fp8"], "engines": ["hf-compiled"], "batch_size_min": 2, "text": "from 2 up"}]
    assert setup_notes(gpu, fp8, "hf-compiled", 1, above) == []  # below batch_size_min
    assert setup_notes(gpu, fp8, "hf-compiled", 2, above) == setup_notes(gpu, fp8, "hf-compiled", 64, above) == [
        "from 2 up"]


def test_the_shipped_torchao_settings_note_reaches_json_and_explain():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel

    cat = load_catalog()
    res = recommend(Query(gpus=("h100",), models=("qwen2.5-7b-instruct",), engines=("hf-compiled", "hf-eager"),
                          quants=("torchao-fp8", "bf16"), batch_sizes=(1, 32)), cat, AnalyticCostModel())
    dicts = candidate_dicts(res, res.order, list(range(1, len(res.order) + 1)))
    noted = {(d["quant"], d["engine"], d["batch_size"]) for d in dicts
             if any("set_inductor_config=False" in n for n in d["notes"])}
    assert noted == {("torchao-fp8", "hf-compiled", 1)}
    top_fp8 = recommend(Query(gpus=("h100",), models=("qwen2.5-7b-instruct",), engines=("hf-compiled",),
                              quants=("torchao-fp8",), batch_sizes=(1,)), cat, AnalyticCostModel())
    assert any(line.startswith("Setup: torchao's quantize_") for line in explain(top_fp8))


def test_setup_notes_match_the_models_attention_and_the_prompt_length_where_a_rule_names_them():
    from recommender.catalog import load_catalog

    cat = load_catalog()
    gpu, bf16 = cat.gpu("h200"), cat.quant("bf16")
    gqa, mha = cat.model("qwen2.5-7b-instruct"), cat.model("phi-3-mini-4k-instruct")
    assert gqa.num_kv_heads < gqa.num_attention_heads and mha.num_kv_heads == mha.num_attention_heads
    rules = [{"quants": ["bf16"], "engines": ["hf-compiled"], "batch_size_min": 32, "prompt_tokens_min": 1024,
              "attention": "grouped-query", "text": "K/V copied"}]
    assert setup_notes(gpu, bf16, "hf-compiled", 32, rules, gqa, 1024) == ["K/V copied"]
    assert setup_notes(gpu, bf16, "hf-compiled", 32, rules, mha, 1024) == []  # multi-head: nothing to copy
    assert setup_notes(gpu, bf16, "hf-compiled", 32, rules, gqa, 256) == []  # shorter prompt than the rule's
    assert setup_notes(gpu, bf16, "hf-compiled", 8, rules, gqa, 4096) == []  # below batch_size_min
    assert setup_notes(gpu, bf16, "hf-compiled", 32, rules) == []  # model and prompt unknown: no match


def test_the_shipped_kv_copy_note_reaches_json_and_explain_for_grouped_query_models_at_long_prompts():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel

    cat = load_catalog()
    q = dict(gpus=("h200",), models=("qwen2.5-7b-instruct", "phi-3-mini-4k-instruct"), engines=("hf-compiled",
             "hf-eager"), quants=("bf16",), batch_sizes=(8, 32), prompt_tokens=1024, output_tokens=256)
    res = recommend(Query(**q), cat, AnalyticCostModel())
    dicts = candidate_dicts(res, res.order, list(range(1, len(res.order) + 1)))
    noted = {(d["model"], d["engine"], d["batch_size"]) for d in dicts if any("K/V out to every" in n for n in d["notes"])}
    assert noted == {("qwen2.5-7b-instruct", "hf-compiled", 32)}
    res = recommend(Query(**{**q, "prompt_tokens": 256}), cat, AnalyticCostModel())
    assert not any(any("K/V out to every" in n for n in d["notes"])
                   for d in candidate_dicts(res, res.order, list(range(1, len(res.order) + 1))))
    top = recommend(Query(**{**q, "models": ("qwen2.5-7b-instruct",), "engines": ("hf-compiled",),
                             "batch_sizes": (32,)}), cat, AnalyticCostModel())
    assert any(line.startswith("Setup: with the static KV cache") for line in explain(top))


def test_the_shipped_sdpa_force_note_reaches_compiled_grouped_query_candidates_from_batch_8_at_any_prompt():
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import AnalyticCostModel

    cat = load_catalog()
    q = dict(gpus=("h200",), models=("qwen2.5-7b-instruct", "phi-3-mini-4k-instruct"), engines=("hf-compiled",
             "hf-eager"), quants=("bf16", "bnb-nf4"), batch_sizes=(1, 8, 32), prompt_tokens=256, output_tokens=128)
    res = recommend(Query(**q), cat, AnalyticCostModel())
    dicts = candidate_dicts(res, res.order, list(range(1, len(res.order) + 1)))
    noted = {(d["model"], d["engine"], d["quant"], d["batch_size"]) for d in dicts
             if any("forcing grouped-query SDPA" in n for n in d["notes"])}
    assert noted == {("qwen2.5-7b-instruct", "hf-compiled", qu, b) for qu in ("bf16", "bnb-nf4") for b in (8, 32)}
    top = recommend(Query(**{**q, "models": ("qwen2.5-7b-instruct",), "engines": ("hf-compiled",),
                             "quants": ("bf16",), "batch_sizes": (8,)}), cat, AnalyticCostModel())
    assert any(line.startswith("Setup: these numbers are for transformers' default") for line in explain(top))
