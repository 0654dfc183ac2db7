"""datasets/catalog/setup_notes.yaml: every note matches the catalogue, formats, and its figures are the ones
the committed records give."""

from __future__ import annotations

import pytest

yaml = pytest.importorskip("yaml")

from recommender.catalog import load_catalog  # noqa: E402
from recommender.paths import catalog_dir  # noqa: E402

NOTES = yaml.safe_load((catalog_dir() / "setup_notes.yaml").read_text())


def test_every_note_names_catalogue_methods_and_engines_and_formats():
    cat = load_catalog()
    assert NOTES and len({n["id"] for n in NOTES}) == len(NOTES)
    for note in NOTES:
        for q in note["quants"]:
            cat.quant(q)  # raises for an unknown method
        assert set(note["engines"]) <= set(cat.engines.ids())
        text = note["text"].format(**(note.get("measured") or {}))
        assert "{" not in text and note["source"].strip()


def test_the_torchao_settings_figures_are_the_records():
    pytest.importorskip("pandas")
    from notebooks import campaign_analysis as ca

    note = next(n for n in NOTES if n["id"] == "torchao-inductor-settings")
    m = note["measured"]
    experiments = ca.load_records(ca.EXPERIMENTS, sessions=ca.MEASUREMENTS)
    t = ca.torchao_settings_comparison(experiments, ca.load_records())
    assert set(t["quant"]) == set(note["quants"]) and set(t["engine"]) == set(note["engines"])
    same = t[t["same_machine"]]  # the note's figures are the same-machine pairs only
    assert m["cells"] == len(same)
    assert len(m["models"].split(", ")) == same["model"].nunique()
    for b in (1, 8):
        r = same[same["batch_size"] == b]["energy_ratio"]
        for stat in ("min", "median", "max"):
            assert m[f"energy_ratio_b{b}_{stat}"] == pytest.approx(round(float(getattr(r, stat)()), 2)), (b, stat)
    b8 = same[same["batch_size"] == 8]
    assert m["speed_ratio_b8_median"] == pytest.approx(round(float(b8["speed_ratio"].median()), 2))
    assert m["compile_ratio_min"] == pytest.approx(round(float(same["compile_ratio"].min()), 2))
    assert m["compile_ratio_max"] == pytest.approx(round(float(same["compile_ratio"].max()), 2))
    across = ca.settings_off_across_machines(experiments)
    assert m["machine_ratio_min"] == pytest.approx(round(float(across["energy_ratio"].min()), 2))
    assert m["machine_ratio_max"] == pytest.approx(round(float(across["energy_ratio"].max()), 2))
    # shown up to batch 8, the largest batch measured with both settings on one machine
    assert note["batch_size_max"] == same["batch_size"].max()


def test_the_inductor_rewrite_figures_are_the_profiles_and_records():
    """The woq-rewrite note's figures: the s20 decode profile (raw JSON), and the switch measured as cells (the
    experiment store, with compiled bf16 measured the same way) against the H200 campaign's cells with the
    rewrite, as `woq_switch_comparison` pairs them."""
    import json

    note = next(n for n in NOTES if n["id"] == "inductor-woq-rewrite")
    m, h200 = note["measured"], catalog_dir().parent / "measurements" / "h200"
    on = json.loads((h200 / "raw" / "2026-11-28-s20-b" / "profile-int8wo-b8.json").read_text())
    assert on["torch_version"] == m["torch_version"] and m["card"] in on["device"] and on["batch_size"] == 8
    assert m["rewrites"] == on["dynamo_counters"]["inductor"]["woq_matcher_count"]
    [kernel] = [r for r in on["top"] if "weight_int8pack_mm_kernel" in r["name"]]
    assert (m["kernel_ms"], m["gpu_busy_ms"]) == (kernel["device_total_ms"], on["gpu_busy_ms"])
    assert m["profiled_model"].lower().replace("-", "") in on["model"].replace("-", "")

    pytest.importorskip("pandas")
    from notebooks import campaign_analysis as ca

    campaign = ca.load_records(h200)
    woq = ca.load_records(h200 / "experiments", sessions=h200)
    switch = woq[woq["slice"] == "compiled-int8wo-woq"]
    assert (switch["engine_params"].apply(lambda p: p["woq_lowering"] is False and p["woq_rewrites_warmup"] == 0)
            .all())
    t = ca.woq_switch_comparison(switch, campaign[campaign["slice"] == "campaign"])
    assert set(t["workload"]) == {"256/128"} and set(t["gpu_id"]) == {"h200"}
    assert m["switch_models"] == t["model"].nunique()
    batched, single = t[t["batch_size"] >= 8].dropna(subset=["speedup_vs_rewrite"]), t[t["batch_size"] == 1]
    assert set(batched["batch_size"]) == {8, 32} and len(single) == single["speedup_vs_rewrite"].notna().sum()
    assert (m["speedup_min"], m["speedup_max"]) == (pytest.approx(round(batched["speedup_vs_rewrite"].min(), 1)),
                                                    pytest.approx(round(batched["speedup_vs_rewrite"].max(), 1)))
    assert (m["speedup_b1_min"], m["speedup_b1_max"]) == (pytest.approx(round(single["speedup_vs_rewrite"].min(), 2)),
                                                          pytest.approx(round(single["speedup_vs_rewrite"].max(), 2)))
    paired = t.dropna(subset=["energy_vs_bf16"])
    named = m["bf16_models"].split(", ")
    models = load_catalog().models
    assert len(named) == paired["model"].nunique()
    assert {models.get(n).id for n in named} == set(paired["model"])  # the catalogue's name look-up
    assert (m["bf16_pairs"], m["beyond_noise"]) == (len(paired), int(paired["beyond_noise"].sum()))
    assert (m["ej_vs_bf16_min"], m["ej_vs_bf16_max"]) == (pytest.approx(round(paired["energy_vs_bf16"].min(), 2)),
                                                          pytest.approx(round(paired["energy_vs_bf16"].max(), 2)))
    assert (paired["energy_vs_bf16"] > 1).all()  # the note's "cost more energy per token than bf16"


def test_the_static_cache_kv_copy_figures_are_the_profile_and_records():
    """The K/V-copy note's figures: the s23 decode profile (the expansion and attention kernels' share of the
    compiled step, `compiled_step_attention`) and the H200's compiled/eager 16-bit pairs at batch 32 and 1024/256
    (`engine_effect`), split by attention as the note's `attention` key matches models."""
    pytest.importorskip("pandas")
    from notebooks import campaign_analysis as ca

    note = next(n for n in NOTES if n["id"] == "static-cache-gqa-kv-copy")
    m, cat = note["measured"], load_catalog()
    raw = ca.H200_MEASUREMENTS / "raw" / "2026-11-28-s23-a" / "profile-hf-compiled-b32-p1024.json"
    prof = ca.load_decode_profile(raw, ca.load_catalog_tables(ca.ROOT / "datasets" / "catalog")["models"])
    assert m["card"] in prof["device"] and cat.models.get(m["profiled_model"]).id == prof["model"]
    assert (m["profiled_batch"], m["profiled_prompt"]) == (prof["batch_size"], prof["prompt_tokens"])
    assert m["share_pct"] == pytest.approx(round(ca.compiled_step_attention(prof)["share"] * 100, 1))
    att = prof["attention"]
    assert (att["mask"] & ~att["grouped"]).any()  # the decode steps' masked calls ran on expanded K/V

    ee = ca.engine_effect(ca.method_records(ca.load_cards()))
    ee = ee[ee["gpu_id"] == "h200"]
    pairs = ca.pd.concat([ca.engine_effect_per_architecture(ee, q) for q in ("bf16", "fp16")])
    pairs = pairs[(pairs["batch_size"] == note["batch_size_min"]) & (pairs["workload"] == "1024/256")]
    pairs = pairs.assign(ratio=1 - pairs["energy_reduction_pct"] / 100,
                         attention=pairs["model"].map(lambda i: cat.model(i).attention))
    gqa, mha = pairs[pairs["attention"] == note["attention"]], pairs[pairs["attention"] != note["attention"]]
    assert (m["gqa_models"], m["cells"]) == (gqa["model"].nunique(), len(gqa))
    assert m["beyond"] == int((gqa["ratio"] > 1.25).sum()) and not pairs["same_machine"].any()
    for key, value in (("ratio_min", gqa["ratio"].min()), ("ratio_max", gqa["ratio"].max()),
                       ("mha_min", mha["ratio"].min()), ("mha_max", mha["ratio"].max())):
        assert m[key] == pytest.approx(round(float(value), 2)), key


def test_the_sdpa_gqa_force_figures_are_the_experiment_and_profiles():
    """The forced-grouped-SDPA note's figures: the compiled-gqa-attention experiment's `sdpa_gqa: force` cells of
    grouped-query models at the note's batch sizes, each against its same-machine default compiled and eager twins
    (`attention_comparison`), and the two decode profiles' compiled steps (s23 default, s24 forced)."""
    pd = pytest.importorskip("pandas")
    from notebooks import campaign_analysis as ca

    note = next(n for n in NOTES if n["id"] == "static-cache-gqa-sdpa-force")
    m, cat = note["measured"], load_catalog()
    exp = ca.load_records(ca.H200_MEASUREMENTS / "experiments", sessions=ca.H200_MEASUREMENTS)
    t = ca.attention_comparison(exp[exp["slice"] == "compiled-gqa-attention"])
    t = t[(t["variant"] == "sdpa_gqa=force") & (t["status"] == "ok")]
    t = t.assign(attention=t["model"].map(lambda i: cat.model(i).attention))
    gqa = t[(t["attention"] == note["attention"]) & (t["batch_size"] >= note["batch_size_min"])]
    assert set(gqa["gpu_id"]) == {"h200"} and gqa["machine"].nunique() == 1 and set(gqa["quant"]) == {"bf16"}
    assert (m["cells"], m["models"]) == (len(gqa), gqa["model"].nunique())
    assert gqa["beyond_noise"].all() and gqa["energy_vs_compiled"].notna().all()

    def at(b, w):
        d = gqa[(gqa["batch_size"] == b) & (gqa["workload"] == w)]
        assert len(d), (b, w)
        return d

    for key, d, col in (("b32_long", at(32, "1024/256"), "energy_vs_compiled"),
                        ("b32_long_eager", at(32, "1024/256"), "energy_vs_eager"),
                        ("b8_long", at(8, "1024/256"), "energy_vs_compiled"),
                        ("b32_short", at(32, "256/128"), "energy_vs_compiled"),
                        ("speed", gqa, "speed_vs_compiled")):
        assert m[f"{key}_min"] == pytest.approx(round(float(d[col].min()), 2)), key
        assert m[f"{key}_max"] == pytest.approx(round(float(d[col].max()), 2)), key
    single = t[(t["attention"] == note["attention"]) & (t["batch_size"] == 1)]  # why batch 1 is left out
    assert len(single) and (single["energy_vs_compiled"] > 0.95).all()

    models = ca.load_catalog_tables(ca.ROOT / "datasets" / "catalog")["models"]
    raw = ca.H200_MEASUREMENTS / "raw"
    default = ca.load_decode_profile(raw / "2026-11-28-s23-a" / "profile-hf-compiled-b32-p1024.json", models)
    forced = ca.load_decode_profile(
        raw / "2026-11-28-s24-e" / "profile-hf-compiled-sdpa-gqa-force-b32-p1024-top60.json", models)
    assert forced["attention"]["grouped"].all() and forced["attention"]["mask"].any()
    assert m["step_default_ms"] == pytest.approx(round(ca.compiled_step_attention(default)["step_ms"], 2))
    assert m["step_forced_ms"] == pytest.approx(round(ca.compiled_step_attention(forced, kv_copy=False)["step_ms"], 2))
    # NF4 with the setting: the campaign's hf-compiled-gqa cells against hf-compiled's same cells (other machines)
    records = ca.method_records(ca.load_records(ca.H200_MEASUREMENTS))
    anchors = ca.machine_anchors(pd.concat([records, exp], ignore_index=True))
    v = ca.variant_campaign_effect(records[records["slice"] == "campaign"], anchors, baselines=("hf-compiled",))
    nf4 = v[(v["quant"] == "bnb-nf4") & (v["batch_size"] == 32) & (v["workload"] == "1024/256")]
    assert m["nf4_models"] == nf4["model"].nunique() and not nf4["same_machine"].any()
    assert m["nf4_b32_long_min"] == pytest.approx(round(float(nf4["energy_ratio"].min()), 2))
    assert m["nf4_b32_long_max"] == pytest.approx(round(float(nf4["energy_ratio"].max()), 2))
    short = v[(v["quant"] == "bnb-nf4") & (v["batch_size"] == 32) & (v["workload"] == "256/128")]
    assert short["model"].nunique() == m["nf4_models"] and not short["same_machine"].any()
    assert m["nf4_b32_short_min"] == pytest.approx(round(float(short["energy_ratio"].min()), 2))
    assert m["nf4_b32_short_max"] == pytest.approx(round(float(short["energy_ratio"].max()), 2))


def test_the_variants_setup_figures_are_its_records():
    """hf-compiled-gqa's how-to note: the records that the catalogue reads as that engine (the experiment's
    hf-compiled with `sdpa_gqa: force`, the campaign's hf-compiled-gqa), of the grouped-query models the note and
    the engine apply to; a cell measured in both stores counts once."""
    from measure.store import Store
    from recommender.paths import catalog_dir as cdir

    note = next(n for n in NOTES if n["id"] == "hf-compiled-gqa-setup")
    m, cat = note["measured"], load_catalog()
    h200 = cdir().parent / "measurements" / "h200"
    recs = [r for f in (h200 / "experiments" / "compiled-gqa-attention.jsonl", h200 / "campaign.jsonl")
            for r in Store(f).iter_records() if r.status == "ok"
            and cat.record_engine(r.engine, r.engine_params).id in note["engines"]
            and cat.model(r.model).attention == note["attention"]]
    quants = [q.strip() for q in m["quant"].replace(" and ", ", ").split(",")]
    assert {r.gpu_name for r in recs} == {"NVIDIA H200"} and {r.quant for r in recs} == set(quants)
    assert (m["cells"], m["models"]) == (len({(r.model, r.quant, r.batch_size, r.prompt_tokens) for r in recs}),
                                         len({r.model for r in recs}))
    assert (m["batch_min"], m["batch_max"]) == (min(r.batch_size for r in recs), max(r.batch_size for r in recs))
    assert cat.engines.get("hf-compiled-gqa").attention == note["attention"]
