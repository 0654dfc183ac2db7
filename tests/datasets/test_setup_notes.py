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
    """The woq-rewrite note's figures: the s20 decode profile (raw JSON), the switch measured as cells (the
    experiment store) and the H200 campaign's records of the same cells with the rewrite, and of compiled bf16."""
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

    def cells(records, quant):  # {batch size: [record dicts]} of the profiled model's compiled 256/128 ok cells
        r = records[(records["model"] == on["model"]) & (records["quant"] == quant) & (records["status"] == "ok")
                    & (records["engine"] == "hf-compiled") & (records["workload"] == "256/128")]
        return {b: g.to_dict("records") for b, g in r.groupby("batch_size")}

    campaign = ca.load_records(h200)
    woq = ca.load_records(h200 / "experiments", sessions=h200)
    off = cells(woq[woq["slice"] == "compiled-int8wo-woq"], "torchao-int8-wo")
    with_rewrite = cells(campaign[campaign["slice"] == "campaign"], "torchao-int8-wo")
    bf16 = cells(campaign[campaign["slice"] == "campaign"], "bf16")
    ratios = []
    for b in (8, 32):
        [o], [w], [f] = off[b], with_rewrite[b], bf16[b]
        assert o["engine_params"]["woq_lowering"] is False and o["engine_params"]["woq_rewrites_warmup"] == 0
        assert b >= note["batch_size_min"]
        assert m[f"tps_off_b{b}"] == pytest.approx(round(o["tokens_per_s"], 1))
        assert m[f"ej_off_b{b}"] == pytest.approx(round(o["decode_energy_per_token_j"], 4))
        assert m[f"tps_on_b{b}"] == pytest.approx(round(w["tokens_per_s"], 1))
        assert m[f"ej_on_b{b}"] == pytest.approx(round(w["decode_energy_per_token_j"], 4))
        ratios.append(o["decode_energy_per_token_j"] / f["decode_energy_per_token_j"])
    assert m["cv_off_b32"] == pytest.approx(round(off[32][0]["energy_cv"], 3))
    assert (m["ej_vs_bf16_min"], m["ej_vs_bf16_max"]) == (pytest.approx(round(min(ratios), 2)),
                                                          pytest.approx(round(max(ratios), 2)))
