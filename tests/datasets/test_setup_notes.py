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
