"""The evidence level behind each candidate's numbers (recommender/evidence.py) and its JSON field."""

from __future__ import annotations

import json

import pytest

from recommender.evidence import LEVELS, coverage_of, evidence

COVERAGE = {
    "bnb-nf4": {"hf-eager": {"gpus": ["h100-sxm"], "rows": 36, "batch_max": 32, "batch_max_by_gpu": {"h100-sxm": 32},
                             "origins": ["ours"]}},
    "fp16": {"vllm": {"gpus": ["a100-sxm-40gb", "h100-sxm"], "rows": 80, "batch_max": 64,
                      "batch_max_by_gpu": {"a100-sxm-40gb": 64, "h100-sxm": 8}, "origins": ["public"]}},
}


@pytest.mark.parametrize(("gpu", "quant", "engine", "batch", "measured", "level"), [
    ("h100-sxm", "bnb-nf4", "hf-eager", 8, True, "measured"),
    ("h100-sxm", "bnb-nf4", "hf-eager", 8, False, "same_card"),
    ("rtx4090", "bnb-nf4", "hf-eager", 8, False, "other_cards"),
    ("rtx4090", "bnb-nf4", "hf-compiled", 8, False, "other_engines"),
    ("rtx4090", "torchao-fp8", "hf-eager", 8, False, "none"),
])
def test_levels(gpu, quant, engine, batch, measured, level):
    ev = evidence(COVERAGE, gpu, quant, engine, batch, measured)
    assert ev["level"] == level and level in LEVELS
    assert ev["text"].startswith("measured" if measured else "predicted")


def test_texts_name_what_was_measured():
    other = evidence(COVERAGE, "l4", "fp16", "vllm", 8, False)
    assert other["measured_on"] == ["a100-sxm-40gb", "h100-sxm"] and "a100-sxm-40gb, h100-sxm only" in other["text"]
    assert "hf-eager" in evidence(COVERAGE, "l4", "bnb-nf4", "vllm", 8, False)["text"]
    beyond = evidence(COVERAGE, "h100-sxm", "bnb-nf4", "hf-eager", 64, False)
    assert "batch 64 is above the largest measured (32)" in beyond["text"]
    assert "above" not in evidence(COVERAGE, "h100-sxm", "bnb-nf4", "hf-eager", 32, False)["text"]
    # on the card itself its own largest batch counts; elsewhere the largest on any card
    assert "batch 32 is above the largest measured (8)" in evidence(COVERAGE, "h100-sxm", "fp16", "vllm", 32,
                                                                    False)["text"]
    assert "above" not in evidence(COVERAGE, "l4", "fp16", "vllm", 32, False)["text"]


def test_without_coverage_the_level_is_unknown():
    assert evidence(None, "h100-sxm", "fp16", "vllm", 1, False)["level"] == "unknown"
    assert evidence(None, "h100-sxm", "fp16", "vllm", 1, True)["level"] == "measured"

    class Analytic:  # no artifact metadata
        pass

    assert coverage_of(Analytic()) is None


def test_shipped_recommendation_carries_evidence(capsys):
    from recommender.cli import main
    from recommender.costmodel.learned import load_default

    assert coverage_of(load_default()) is not None, "the shipped artifact records no training coverage"
    with pytest.raises(SystemExit) as done:
        main(["--gpu", "h100-sxm", "--gpu", "rtx4090", "--model", "qwen2.5-7b-instruct", "--quant", "bnb-nf4",
              "--quant", "bf16", "--engine", "hf-eager", "--batch-size", "1", "--batch-size", "64", "--all",
              "--format", "json"])
    assert done.value.code in (0, None)
    cands = json.loads(capsys.readouterr().out)["candidates"]
    by = {(c["gpu"], c["quant"], c["batch_size"]): c for c in cands}
    assert by[("h100-sxm", "bnb-nf4", 1)]["evidence"]["level"] == "measured"
    assert by[("h100-sxm", "bnb-nf4", 1)]["source"] == "measured"
    h64 = by[("h100-sxm", "bnb-nf4", 64)]["evidence"]
    assert h64["level"] == "same_card" and "above the largest measured" in h64["text"]
    r1 = by[("rtx4090", "bnb-nf4", 1)]["evidence"]
    assert r1["level"] == "other_cards" and "h100-sxm" in r1["measured_on"]


def test_explain_names_the_evidence_of_a_predicted_top_choice(capsys):
    from recommender.cli import main
    from recommender.costmodel.learned import load_default

    assert coverage_of(load_default()) is not None, "the shipped artifact records no training coverage"
    with pytest.raises(SystemExit):
        main(["--gpu", "rtx4060ti", "--priority", "energy", "--explain", "--top", "1"])
    out = capsys.readouterr().out
    assert "predicted by" in out and "Evidence: predicted; " in out


def test_csv_flattens_the_evidence_with_joined_card_lists():
    from recommender.render import flatten

    flat = flatten({"source": "predicted", "notes": [], "evidence": evidence(COVERAGE, "l4", "fp16", "vllm", 8, False)})
    assert flat["evidence_level"] == "other_cards"
    assert flat["evidence_measured_on"] == "a100-sxm-40gb;h100-sxm"
    assert list(flat)[-4:] == ["evidence_level", "evidence_measured_on", "evidence_text",
                               "evidence_outside_training_range"]


def test_a_card_outside_the_trained_range_is_flagged():
    from recommender.catalog import load_catalog
    from recommender.evidence import outside_training_range

    cat = load_catalog()
    rng = {"bandwidth_gbs": [695.8, 4000.0], "compute_capability": [7.0, 9.0], "tdp_w": [250.0, 700.0]}
    small = outside_training_range(rng, cat.gpu("rtx4060ti-16gb"))
    assert small == ["bandwidth_gbs 288 GB/s < 695.8", "tdp_w 165 W < 250"]
    assert outside_training_range(rng, cat.gpu("a100-sxm-40gb")) == []
    assert outside_training_range(rng, cat.gpu("b200"))[0].startswith("bandwidth_gbs 8000 GB/s > 4000")
    assert outside_training_range(None, cat.gpu("b200")) == []
    ev = evidence(COVERAGE, "rtx4060ti-16gb", "fp16", "vllm", 8, False, small)
    assert ev["outside_training_range"] == small and "outside the trained cards' range" in ev["text"]
    assert evidence(COVERAGE, "h100-sxm", "bnb-nf4", "hf-eager", 8, True, small)["outside_training_range"] == []


def test_shipped_artifact_records_the_trained_card_range():
    from recommender.costmodel.learned import load_default
    from recommender.evidence import card_range_of

    rng = card_range_of(load_default())
    assert rng is not None and rng["compute_capability"][0] <= 9.0 <= rng["compute_capability"][1]
    assert all(lo <= hi for lo, hi in rng.values())


def test_accuracy_basis_says_where_the_accuracy_change_comes_from():
    from types import SimpleNamespace

    from recommender.evidence import ACCURACY_BASES, accuracy_basis

    cat = SimpleNamespace(quant_accuracy=[
        {"quant_id": "torchao-int4-wo", "model_id": "m1", "delta_abs": "-0.01"},
        {"quant_id": "bnb-int8", "model_id": "", "delta_abs": "0.0"},
        {"quant_id": "bnb-fp4", "model_id": "m1", "delta_abs": ""},  # no value: not a citation of a change
    ])
    assert accuracy_basis(cat, "m1", "bf16") == "unquantized"
    assert accuracy_basis(cat, "m1", "torchao-int4-wo") == "cited for this model"
    assert accuracy_basis(cat, "m2", "torchao-int4-wo") == "cited for other models"
    assert accuracy_basis(cat, "m1", "bnb-int8") == "cited for other models"
    assert accuracy_basis(cat, "m1", "bnb-fp4") == "none"
    assert accuracy_basis(cat, "m1", "bnb-int8", learned=True) == "predicted by the learned accuracy model"
    assert {accuracy_basis(cat, "m1", q) for q in ("bf16", "torchao-int4-wo", "bnb-int8", "bnb-fp4")} <= set(
        ACCURACY_BASES)


def test_shipped_candidates_carry_their_accuracy_basis(capsys):
    from recommender.cli import main

    with pytest.raises(SystemExit):
        main(["--gpu", "h100-sxm", "--model", "llama-3-8b-instruct", "--quant", "torchao-int4-wo", "--quant",
              "bf16", "--quant", "bnb-fp4", "--engine", "hf-eager", "--batch-size", "8", "--all", "--format", "json"])
    cands = {c["quant"]: c for c in json.loads(capsys.readouterr().out)["candidates"]}
    assert cands["bf16"]["accuracy_basis"] == "unquantized"
    assert cands["torchao-int4-wo"]["accuracy_basis"] == "cited for this model"  # auto-round's Llama-3-8B rows
    assert cands["bnb-fp4"]["accuracy_basis"] == "none" and cands["bnb-fp4"]["accuracy"]["p50"] is None
