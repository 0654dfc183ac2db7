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
    """The woq-rewrite note's figures: the s20 decode profiles (raw JSON) and the H200 campaign's records."""
    import json

    note = next(n for n in NOTES if n["id"] == "inductor-woq-rewrite")
    m, raw = note["measured"], catalog_dir().parent / "measurements" / "h200" / "raw"
    on = json.loads((raw / "2026-11-28-s20-b" / "profile-int8wo-b8.json").read_text())
    off = json.loads((raw / "2026-11-28-s20-e" / "profile-int8wo-b8-nowoq-nocache.json").read_text())
    off_7b = json.loads((raw / "2026-11-28-s20-d" / "profile-7b-int8wo-b8-nowoq.json").read_text())
    assert on["torch_version"] == m["torch_version"] and m["card"] in on["device"]
    assert on["batch_size"] == off["batch_size"] == off_7b["batch_size"] == 8 and note["batch_size_min"] == 2
    assert m["rewrites"] == on["dynamo_counters"]["inductor"]["woq_matcher_count"]
    [kernel] = [r for r in on["top"] if "weight_int8pack_mm_kernel" in r["name"]]
    assert (m["kernel_ms"], m["gpu_busy_ms"], m["tps_on"]) == (kernel["device_total_ms"], on["gpu_busy_ms"],
                                                               on["tokens_per_s"])
    for p in (off, off_7b):  # kept out: no rewrite counted, no float32 kernel among the top rows
        assert not p["dynamo_counters"].get("inductor", {}).get("woq_matcher_count")
        assert not any("weight_int8pack" in r["name"] for r in p["top"])
    assert (m["tps_off"], m["tps_off_7b"]) == (off["tokens_per_s"], off_7b["tokens_per_s"])
    assert m["profiled_model"].lower().replace("-", "") in on["model"].replace("-", "")
    tps = {}
    for line in (catalog_dir().parent / "measurements" / "h200" / "campaign.jsonl").read_text().splitlines():
        r = json.loads(line)
        if (r["engine"], r["batch_size"], r["prompt_tokens"], r["output_tokens"], r["status"]) == (
                "hf-compiled", 8, 256, 128, "ok") and r["model"] in (on["model"], off_7b["model"]):
            tps.setdefault((r["model"], r["quant"]), []).append(r["tokens_per_s"])
    assert m["tps_campaign_7b"] == pytest.approx(round(tps[(off_7b["model"], "torchao-int8-wo")][0], 2))
    assert m["tps_bf16"] == pytest.approx(round(tps[(on["model"], "bf16")][0], 2))
    assert m["tps_bf16_7b"] == pytest.approx(round(tps[(off_7b["model"], "bf16")][0], 2))
