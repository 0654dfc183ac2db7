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
    t = ca.torchao_settings_comparison(ca.load_records(ca.EXPERIMENTS, sessions=ca.MEASUREMENTS), ca.load_records())
    assert set(t["quant"]) == set(note["quants"]) and set(t["engine"]) == set(note["engines"])
    assert m["cells"] == len(t)
    b1, b32 = t[t["batch_size"] == 1], t[t["batch_size"] == 32]
    for key, values in (("energy_ratio_b1", b1["energy_ratio"]), ("speed_ratio_b1", b1["speed_ratio"]),
                        ("energy_ratio_b32", b32["energy_ratio"])):
        assert m[f"{key}_min"] == pytest.approx(round(float(values.min()), 2)), key
        assert m[f"{key}_max"] == pytest.approx(round(float(values.max()), 2)), key
    # measured at batch 1 and 32 only (the text says batch 8 is not): shown up to batch_size_max, never at 32,
    # where the settings made no difference
    assert set(t["batch_size"]) == {1, 32} and note["batch_size_max"] < 32 and "batch 8 is not measured" in note["text"]
    # the text says the two sides ran on different machines while they do
    assert (not t["same_machine"].any()) == ("different machines" in note["text"])
