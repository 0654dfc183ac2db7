"""Validate the catalogue data files in datasets/catalog (models, scores, quantization, engines, profiles, regions).

Pure file checks: csv / yaml only, plus the params tool. One optional test rebuilds every models.csv
architecture with transformers on the meta device (skipped when torch/transformers are absent).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from tests.fixtures.scripts import load_script

CAT = Path(__file__).resolve().parents[2] / "datasets" / "catalog"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

MODEL_COLS = [
    "id",
    "hf_id",
    "aliases",
    "family",
    "model_type",
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_kv_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
    "hidden_act",
    "mlp_gated",
    "attention_bias",
    "linear_modules_per_layer",
    "params_b",
    "is_distilled",
    "is_instruct",
    "in_paper",
    "architecture_of",
    "config_source",
    "notes",
]
SCORE_COLS = ["model_id", "task", "metric", "n_shot", "value", "source", "source_url", "licence"]
QA_COLS = [
    "quant_id",
    "model_id",
    "task",
    "baseline_value",
    "quant_value",
    "delta_abs",
    "source",
    "source_url",
    "licence",
    "notes",
]
REGION_COLS = ["id", "name", "grid_gco2_per_kwh", "year", "source", "source_url", "licence"]
OPTIONAL_QUANT_KEYS = {"alt_compute_dtypes", "min_batch_size", "min_batch_size_source", "dequantize_above_tokens",
                       "dequantize_extra_bytes_per_weight", "dequantize_min_compute_capability",
                       "dequantize_source"}
QUANT_KEYS = {
    "id",
    "name",
    "backend",
    "weight_bits",
    "activation_bits",
    "compute_dtype",
    "symmetric",
    "granularity",
    "scheme",
    "needs_calibration",
    "min_compute_capability",
    "paper_strategy",
    "description",
    "source",
}
QUANT_IDS = {
    "fp32",
    "fp16",
    "bf16",
    "bnb-int8",
    "bnb-nf4",
    "bnb-fp4",
    "torchao-int8-wo",
    "torchao-int8-dyn",
    "torchao-int4-wo",
    "torchao-fp8",
}
ENGINE_IDS = {"hf-eager", "hf-compiled", "hf-compiled-gqa", "vllm", "tensorrt-llm", "llama.cpp"}
PROFILE_KEYS = {
    "name",
    "accuracy_floor_rel",
    "max_latency_ms",
    "memory_headroom_frac",
    "pue",
    "default_priority",
    "segments",
    "paper_section",
    "notes",
}
PAPER_MODELS = {  # the paper's six models (section 3.4) -> catalogue id
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": "deepseek-r1-distill-qwen-7b",
    "mistralai/Mistral-7B-Instruct-v0.2": "mistral-7b-instruct-v0.2",
    "Intel/neural-chat-7b-v3-3": "neural-chat-7b-v3-3",
    "bigscience/bloomz-7b1": "bloomz-7b1",
    "01-ai/Yi-6B": "yi-6b",
}
PAPER_TASKS = {"mmlu", "arc_challenge", "truthfulqa_mc2", "gsm8k", "hellaswag"}


def _csv(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (CAT / name).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _yaml(name: str):
    with (CAT / name).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key(name: str) -> str:
    """Lookup key as the catalogue matches names: case/space/punctuation-insensitive."""
    return re.sub(r"[^a-z0-9.]", "", name.lower()).replace(".", "p")


def _tool(name: str):
    return load_script(CAT / "tools" / f"{name}.py")


@pytest.fixture(scope="module")
def models() -> list[dict[str, str]]:
    cols, rows = _csv("models.csv")
    assert cols == MODEL_COLS
    return rows


@pytest.fixture(scope="module")
def quants() -> list[dict]:
    return _yaml("quants.yaml")


# ---- models.csv -----------------------------------------------------------------------------------------
def test_model_ids_unique_lowercase(models):
    ids = [r["id"] for r in models]
    assert len(ids) == len(set(ids))
    assert all(ID_RE.match(i) for i in ids), [i for i in ids if not ID_RE.match(i)]


def test_model_rows_have_source_and_shape(models):
    for r in models:
        assert r["config_source"].strip(), r["id"]
        assert r["model_type"] in {"llama", "mistral", "qwen2", "qwen3", "bloom", "phi3", "gemma"}, r["id"]
        for col in (
            "num_layers",
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "vocab_size",
        ):
            assert int(r[col]) > 0, (r["id"], col)
        nh, nkv = int(r["num_attention_heads"]), int(r["num_kv_heads"])
        assert nh % nkv == 0, r["id"]
        for col in (
            "tie_word_embeddings",
            "mlp_gated",
            "attention_bias",
            "is_distilled",
            "is_instruct",
            "in_paper",
        ):
            assert r[col] in ("true", "false"), (r["id"], col)
        assert "computed from shape" in r["notes"], r["id"]


def test_params_b_matches_shape(models):
    tool = _tool("compute_params")
    for r in models:
        expected = tool.param_count(r) / 1e9
        assert float(r["params_b"]) == pytest.approx(expected, rel=1e-5), r["id"]
        if r["id"] != "tiny-test":
            assert 0.3 < float(r["params_b"]) < 20, r["id"]


def test_known_parameter_counts(models):
    tool = _tool("compute_params")
    by = {r["id"]: r for r in models}
    # exact counts of the transformers implementations (meta-device builds of these shapes)
    assert tool.param_count(by["qwen2.5-7b-instruct"]) == 7_615_616_512
    assert tool.param_count(by["bloomz-7b1"]) == 7_069_016_064
    assert tool.param_count(by["gemma-7b"]) == 8_537_680_896


def test_aliases_unique_across_rows(models):
    owner: dict[str, str] = {}
    for r in models:
        names = {r["id"], r["hf_id"], *[a for a in r["aliases"].split(";")]} - {""}
        for n in names:
            k = _key(n)
            assert owner.setdefault(k, r["id"]) == r["id"], f"{n!r} names both {owner[k]} and {r['id']}"


def test_paper_models_present(models):
    by_hf = {r["hf_id"]: r for r in models}
    for hf, mid in PAPER_MODELS.items():
        assert hf in by_hf, hf
        assert by_hf[hf]["id"] == mid
        assert by_hf[hf]["in_paper"] == "true"
    assert sum(r["in_paper"] == "true" for r in models) == len(PAPER_MODELS)


def test_architecture_of_points_to_identical_canonical_shape(models):
    by = {r["id"]: r for r in models}
    shape = (
        "model_type",
        "num_layers",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_kv_heads",
        "head_dim",
        "vocab_size",
        "tie_word_embeddings",
        "mlp_gated",
        "attention_bias",
        "linear_modules_per_layer",
        "params_b",
    )
    for r in models:
        target = r["architecture_of"]
        if not target:
            continue
        assert target in by and target != r["id"], r["id"]
        assert not by[target]["architecture_of"], f"{r['id']} -> {target} is a chain"
        for col in shape:
            assert r[col] == by[target][col], (r["id"], target, col)


def test_tiny_test_row(models):
    t = {r["id"]: r for r in models}["tiny-test"]
    assert (t["model_type"], t["num_layers"], t["hidden_size"], t["intermediate_size"]) == (
        "llama",
        "2",
        "64",
        "128",
    )
    assert (t["num_attention_heads"], t["num_kv_heads"], t["vocab_size"], t["max_position_embeddings"]) == (
        "4",
        "2",
        "512",
        "512",
    )
    assert t["config_source"] == "project test architecture"


def test_models_build_with_transformers(models):
    """Every row is enough for AutoConfig.for_model(model_type, **shape); parameter count matches the column."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    for r in models:
        kw = dict(
            num_hidden_layers=int(r["num_layers"]),
            hidden_size=int(r["hidden_size"]),
            num_attention_heads=int(r["num_attention_heads"]),
            vocab_size=int(r["vocab_size"]),
            tie_word_embeddings=r["tie_word_embeddings"] == "true",
        )
        if r["model_type"] != "bloom":
            kw.update(
                intermediate_size=int(r["intermediate_size"]),
                num_key_value_heads=int(r["num_kv_heads"]),
                head_dim=int(r["head_dim"]),
            )
        if r["model_type"] == "llama":
            kw["attention_bias"] = r["attention_bias"] == "true"
        cfg = transformers.AutoConfig.for_model(r["model_type"], **kw)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        n = sum(p.numel() for p in model.parameters())
        assert n / 1e9 == pytest.approx(float(r["params_b"]), rel=1e-5), r["id"]
        # the quantized matmuls per layer: every nn.Linear of the first decoder layer
        layer = next(m for name, m in model.named_modules() if name.endswith((".layers.0", ".h.0")))
        linears = sum(isinstance(m, torch.nn.Linear) for m in layer.modules())
        assert linears == int(r["linear_modules_per_layer"]), r["id"]


# ---- model_scores.csv -----------------------------------------------------------------------------------
def test_model_scores(models):
    cols, rows = _csv("model_scores.csv")
    assert cols == SCORE_COLS
    ids = {r["id"] for r in models}
    assert rows
    for r in rows:
        assert r["model_id"] in ids, r
        assert r["source"].strip() and r["licence"].strip() and r["metric"].strip(), r
        assert 0.0 <= float(r["value"]) <= 1.0, r
        assert r["n_shot"] == "" or int(r["n_shot"]) >= 0, r
    covered = {r["model_id"] for r in rows if r["task"] in PAPER_TASKS | {"truthfulqa_mc1"}}
    assert {"qwen2.5-7b-instruct", "mistral-7b-instruct-v0.2", "neural-chat-7b-v3-3"} <= covered


# ---- quants.yaml / quant_accuracy.csv -------------------------------------------------------------------
def test_quants_yaml(quants):
    assert {q["id"] for q in quants} == QUANT_IDS
    assert len(quants) == len(QUANT_IDS)
    for q in quants:
        assert QUANT_KEYS <= set(q) <= QUANT_KEYS | OPTIONAL_QUANT_KEYS, q["id"]
        assert q["scheme"] in {"weight-only", "dynamic", "static", "none"}, q["id"]
        assert q["paper_strategy"] in {"INT8", "FP16", "Dynamic", None}, q["id"]
        assert str(q["source"]).strip(), q["id"]
        assert 1 <= q["weight_bits"] <= 32 and 1 <= q["activation_bits"] <= 32, q["id"]
        if "min_batch_size" in q:  # {engine: int}, always with where it comes from
            assert all(isinstance(v, int) and v >= 1 for v in q["min_batch_size"].values()), q["id"]
            assert set(q["min_batch_size"]) <= {"hf-eager", "hf-compiled", "vllm", "tensorrt-llm", "llama.cpp"}
            assert str(q.get("min_batch_size_source") or "").strip(), q["id"]
        rule = {k for k in q if k.startswith("dequantize_")}
        assert not rule or rule == {"dequantize_above_tokens", "dequantize_extra_bytes_per_weight",
                                    "dequantize_min_compute_capability", "dequantize_source"}, q["id"]  # whole or none
        if rule:
            assert q["dequantize_above_tokens"] >= 1 and q["dequantize_extra_bytes_per_weight"] > 0, q["id"]
            assert str(q.get("dequantize_source") or "").strip(), q["id"]
    by = {q["id"]: q for q in quants}
    assert by["torchao-fp8"]["min_compute_capability"] == 8.9
    assert by["torchao-int8-dyn"]["paper_strategy"] == "Dynamic"
    assert by["bnb-int8"]["paper_strategy"] == "INT8"
    assert "64" in by["bnb-nf4"]["granularity"] and "128" in by["torchao-int4-wo"]["granularity"]
    assert by["bnb-int8"]["min_compute_capability"] == 7.5  # LLM.int8(): Turing or newer (bitsandbytes docs)
    assert all(set(q.get("alt_compute_dtypes", [])) <= {"float16", "bfloat16", "float32"} for q in quants)


def test_quant_accuracy(models, quants):
    cols, rows = _csv("quant_accuracy.csv")
    assert cols == QA_COLS
    qids = {q["id"] for q in quants}
    mids = {r["id"] for r in models}
    assert rows
    for r in rows:
        assert r["quant_id"] in qids, r
        assert r["model_id"] == "" or r["model_id"] in mids, r
        assert r["source"].strip() and r["licence"].strip() and "method=" in r["notes"], r
        b, q, d = float(r["baseline_value"]), float(r["quant_value"]), float(r["delta_abs"])
        assert 0 <= b <= 1 and 0 <= q <= 1, r
        assert d == pytest.approx(q - b, abs=1.5e-4), r


# ---- engines.yaml ---------------------------------------------------------------------------------------
def test_engines_yaml(quants):
    from recommender.catalog import _resolve_engine_variants

    raw = _yaml("engines.yaml")
    engines = _resolve_engine_variants(raw)  # a variant's row completed from its engine's (checked below too)
    qids = {q["id"] for q in quants}
    assert {e["id"] for e in engines} == ENGINE_IDS
    variants = [e for e in raw if e.get("variant_of")]
    assert [e["id"] for e in variants] == ["hf-compiled-gqa"]
    for v in variants:  # a variant states what makes it one, and no fitted constant of its own
        assert v["engine_params"] and v["analytic"]["decode_kv_read_source"].strip() and v["description"].strip()
        assert not {"roofline_efficiency", "per_token_overhead_ms", "power_floor", "power_slope"} & set(v["analytic"])
    for e in engines:
        assert e["kv_cache"] in {"dynamic", "static", "paged"}, e["id"]
        assert isinstance(e["compiled"], bool) and isinstance(e["measurable"], bool), e["id"]
        sq = e["supported_quants"]
        assert sq == "all" or (set(sq) <= qids and sq), e["id"]
        a = e["analytic"]
        assert {"roofline_efficiency", "per_token_overhead_ms", "source"} <= set(a), e["id"]
        assert str(a["source"]).strip(), e["id"]
        if a["roofline_efficiency"] is not None:
            assert 0 < a["roofline_efficiency"] <= 1, e["id"]
        hw = e["hardware"]  # where the engine runs, with the documentation it comes from
        assert hw["vendors"] == "all" or set(hw["vendors"]) <= {"nvidia", "amd", "intel", "apple"}, e["id"]
        assert hw["min_compute_capability"] is None or 3.0 <= hw["min_compute_capability"] <= 12.0, e["id"]
        assert str(hw["source"]).strip(), e["id"]
    by = {e["id"]: e for e in engines}
    assert by["tensorrt-llm"]["hardware"]["vendors"] == ["nvidia"]
    assert by["hf-compiled"]["hardware"]["min_compute_capability"] == 7.0  # Triton via inductor
    assert by["hf-eager"]["measurable"] and by["hf-compiled"]["measurable"]
    assert by["vllm"]["measurable"]  # measure/engines/vllm.py drives vllm.LLM (when installed, on CUDA)
    # Compiling removes per-step launch/dispatch cost. Since the efficiencies are fitted together with a
    # per-step overhead (tools/fit_engine_overhead.py), that shows up as a smaller overhead, not as a higher
    # efficiency: eager's batch-1 H100 step is ~80 % overhead, and its efficiency comes out near 1 from
    # the ML.ENERGY v1 rows on slower cards (an additive model of steps whose launches partly overlap the
    # GPU work), above hf-compiled's (3 H100 rows). What must hold is that the compiled step is the faster
    # one on the cells both were measured on (H100, Qwen2.5-0.5B/7B shapes, 16-bit, batch 1) and beyond.
    eager, compiled = by["hf-eager"]["analytic"], by["hf-compiled"]["analytic"]
    assert eager["per_token_overhead_ms"] > compiled["per_token_overhead_ms"]
    for roofline_ms in (0.3, 4.5, 9.0, 30.0):  # 0.5B / 7B bf16 / 7B fp32 on H100, 7B bf16 on a 500 GB/s card
        assert (roofline_ms / compiled["roofline_efficiency"] + compiled["per_token_overhead_ms"]
                < roofline_ms / eager["roofline_efficiency"] + eager["per_token_overhead_ms"])


# ---- profiles.yaml --------------------------------------------------------------------------------------
def test_profiles_yaml():
    profiles = _yaml("profiles.yaml")
    assert set(profiles) == {"datacenter", "enterprise", "edge"}
    floors = {"datacenter": 0.98, "enterprise": 0.99, "edge": 0.95}  # paper section 5
    for pid, p in profiles.items():
        assert set(p) == PROFILE_KEYS, pid
        assert p["accuracy_floor_rel"] == floors[pid]
        assert p["default_priority"] in {"energy", "accuracy", "latency", "balanced"}, pid
        assert p["pue"] is None or p["pue"] >= 1.0, pid
        assert p["memory_headroom_frac"] is None or 0 <= p["memory_headroom_frac"] < 1, pid
        assert set(p["segments"]) <= {"datacenter", "workstation", "consumer", "edge"}, pid
        assert str(p["paper_section"]).startswith("5"), pid
        assert "project default" in p["notes"], pid


# ---- regions.csv ----------------------------------------------------------------------------------------
def test_regions():
    cols, rows = _csv("regions.csv")
    assert cols == REGION_COLS
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) and "world" in ids
    assert len(rows) >= 31
    names = [_key(r["name"]) for r in rows]
    assert len(names) == len(set(names))
    for r in rows:
        assert ID_RE.match(r["id"]), r["id"]
        assert r["source"].strip() and r["licence"].strip(), r["id"]
        assert 0 <= float(r["grid_gco2_per_kwh"]) <= 1500, r["id"]
        assert r["year"] == "" or 2000 <= int(r["year"]) <= 2030, r["id"]


def test_catalog_loads_through_recommender():
    """The shipped catalogue parses with recommender.catalog and resolves the paper's names."""
    catalog = pytest.importorskip("recommender.catalog")
    cat = catalog.load_catalog_from(CAT)
    for hf, mid in PAPER_MODELS.items():
        assert cat.model(hf).id == mid
    assert cat.model("Qwen2.5-7B-Instruct").id == "qwen2.5-7b-instruct"
    assert cat.quant("torchao-int8-dyn").scheme == "dynamic"
    assert cat.engine("vllm").supports("torchao-fp8") and not cat.engine("vllm").supports("bnb-nf4")  # 0.33.0
    assert cat.profile("edge").accuracy_floor_rel == 0.95
    assert cat.region("world").grid_gco2_per_kwh > 0
    assert cat.baseline_scores("qwen2.5-7b-instruct")
