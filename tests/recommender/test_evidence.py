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


SLOW = {"torchao-int8-wo": {"hf-compiled": {
    "gpus": ["h200"], "rows": 12, "batch_max": 32, "batch_max_by_gpu": {"h200": 32}, "origins": ["ours"],
    "slow_path_by_gpu": {"h200": {"1": [1, 3], "8": [4, 4], "32": [2, 2]}, "h100-sxm": {"32": [1, 2]}}}}}


@pytest.mark.parametrize(("batch", "near"), [(1, None), (2, None), (4, 8), (8, 8), (16, 8), (24, 32), (64, 32)])
def test_slow_path_is_named_at_the_nearest_measured_batch(batch, near):
    """h200 ran it slow at batch 8 and 32 (most records flagged), not at 1 (1 of 3); h100-sxm's 1 of 2 at batch 32
    is no majority. Batch 4 lies nearer 8 than 1 on the log scale, 2 nearer 1; 16 ties 8 and 32 (the smaller)."""
    from recommender.evidence import slow_path_near

    got = slow_path_near(SLOW, "torchao-int8-wo", "hf-compiled", batch)
    assert got == ([] if near is None else [{"gpu": "h200", "batch_size": near, "flagged": 4 if near == 8 else 2,
                                             "records": 4 if near == 8 else 2}])
    ev = evidence(SLOW, "h100-sxm", "torchao-int8-wo", "hf-compiled", batch, False)
    assert ev["slow_path"] == got and ev["level"] == "other_cards"
    assert ("slow path" in ev["text"]) == (near is not None)


def test_slow_path_carries_the_measured_slowdown_and_says_when_the_interval_allows_for_it():
    """With the artifact's ratios the entry carries them and the text gives the J/token one; a card that never ran
    the method on the engine is told its interval allows for the slow path, the card that ran it is not."""
    import copy

    from recommender.evidence import slow_path_near

    cov = copy.deepcopy(SLOW)
    cov["torchao-int8-wo"]["hf-compiled"]["slow_path_ratio_by_gpu"] = {
        "h200": {"32": {"energy_per_token_j": 17.697, "tokens_per_s": 42.25, "pairs": 2}}}
    got = slow_path_near(cov, "torchao-int8-wo", "hf-compiled", 32)
    assert got == [{"gpu": "h200", "batch_size": 32, "flagged": 2, "records": 2,
                    "energy_vs_unquantized": 17.697, "slowdown_vs_unquantized": 42.25}]
    other = evidence(cov, "h100-sxm", "torchao-int8-wo", "hf-compiled", 32, False)["text"]
    assert "h200 at x17.7 its decode J/token" in other and "its interval allows for that slow path" in other
    own = evidence(cov, "h200", "torchao-int8-wo", "hf-compiled", 32, False)["text"]
    assert "x17.7" in own and "allows" not in own
    # no ratio recorded at the nearest batch (8): the entry and the text stay as without ratios
    assert slow_path_near(cov, "torchao-int8-wo", "hf-compiled", 8) == slow_path_near(SLOW, "torchao-int8-wo",
                                                                                     "hf-compiled", 8)
    assert "allows" not in evidence(cov, "h100-sxm", "torchao-int8-wo", "hf-compiled", 8, False)["text"]


def test_an_engine_variant_is_told_of_its_engines_slow_path_on_every_card_even_the_one_that_ran_it():
    """hf-compiled-gqa compiles the method's kernels as hf-compiled does: hf-compiled's slow path on the h200 is
    named for the variant (with the engine it was measured with), and the h200 itself, which never ran the method on
    the variant, is told its interval allows for it; where the variant's own records say something of the method
    on a card, they replace the engine's there."""
    import copy

    from recommender.evidence import slow_path_near

    cov = copy.deepcopy(SLOW)
    cov["torchao-int8-wo"]["hf-compiled"]["slow_path_ratio_by_gpu"] = {
        "h200": {"32": {"energy_per_token_j": 17.697, "tokens_per_s": 42.25, "pairs": 2}}}
    assert slow_path_near(cov, "torchao-int8-wo", "hf-compiled-gqa", 32) == []  # without the engine it runs as
    got = slow_path_near(cov, "torchao-int8-wo", "hf-compiled-gqa", 32, "hf-compiled")
    assert got == [{**s, "engine": "hf-compiled"} for s in slow_path_near(cov, "torchao-int8-wo", "hf-compiled", 32)]
    ev = evidence(cov, "h200", "torchao-int8-wo", "hf-compiled-gqa", 32, False, base_engine="hf-compiled")
    assert "h200 batch 32 with hf-compiled: 2 of 2 records" in ev["text"]
    assert "its interval allows for that slow path" in ev["text"] and ev["level"] == "other_engines"
    cov["torchao-int8-wo"]["hf-compiled-gqa"] = {"gpus": ["h200"], "slow_path_by_gpu": {"h200": {"32": [0, 2]}}}
    cov["torchao-int8-wo"]["hf-compiled"]["slow_path_by_gpu"]["h100-sxm"] = {"32": [2, 2]}
    got = slow_path_near(cov, "torchao-int8-wo", "hf-compiled-gqa", 32, "hf-compiled")
    assert [(s["gpu"], s["engine"]) for s in got] == [("h100-sxm", "hf-compiled")]  # the h200's own run was not slow


def test_a_shipped_variant_candidate_on_the_card_of_its_engines_slow_path_gets_the_wide_interval():
    """Shipped artifact: compiled int8 weight-only ran slow on the h200 (hf-compiled); hf-compiled-gqa there is
    predicted with its J/token p90 reaching its bf16 p50 times the measured J/token ratio. Since s27 the p50 itself
    carries most of that slowdown: the analytic decode step charges the method's per-layer overhead along its
    fitted batch line (method_overhead.csv `per_layer_per_seq_ms`), which the variant inherits from hf-compiled."""
    from recommender.candidates import Candidates
    from recommender.catalog import load_catalog
    from recommender.costmodel import default_cost_model

    cat, model = load_catalog(), default_cost_model()
    c = Candidates.from_ids(cat, ["h200"] * 2, ["qwen2.5-7b-instruct"] * 2, ["torchao-int8-wo", "bf16"],
                            ["hf-compiled-gqa"] * 2, [32, 32], [256, 256], [128, 128])
    e = model.predict(c)["energy_per_token_j"]
    ratio = model.meta["coverage"]["torchao-int8-wo"]["hf-compiled"]["slow_path_ratio_by_gpu"]["h200"]["32"]
    slow = e.p50[1] * ratio["energy_per_token_j"]
    assert e.p90[0] >= slow * 0.999 and e.p50[0] > slow / 2


def test_slow_path_needs_the_coverage_field():
    assert evidence(COVERAGE, "h100-sxm", "bnb-nf4", "hf-eager", 8, False)["slow_path"] == []
    assert evidence(None, "h100-sxm", "bnb-nf4", "hf-eager", 8, True)["slow_path"] == []


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
    assert list(flat)[-5:] == ["evidence_level", "evidence_measured_on", "evidence_text",
                               "evidence_outside_training_range", "evidence_slow_path"]
    slow = flatten({"evidence": evidence(SLOW, "h100-sxm", "torchao-int8-wo", "hf-compiled", 32, False)})
    assert slow["evidence_slow_path"] == "gpu=h200,batch_size=32,flagged=2,records=2"


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


@pytest.mark.parametrize(("gpu", "quant", "engine", "batch", "measured", "passes"), [
    # measured cells meet every level
    ("rtx4090", "torchao-fp8", "hf-eager", 64, True, {"measured", "same_card", "other_cards", "other_engines", "none"}),
    # same card within its largest measured batch (32)
    ("h100-sxm", "bnb-nf4", "hf-eager", 32, False, {"same_card", "other_cards", "other_engines", "none"}),
    # same card above it: an extrapolation in batch, so neither same_card nor other_cards
    ("h100-sxm", "bnb-nf4", "hf-eager", 64, False, {"other_engines", "none"}),
    # on this card fp16/vllm reached batch 8 only; on another card 64: other_cards holds, same_card does not
    ("h100-sxm", "fp16", "vllm", 32, False, {"other_cards", "other_engines", "none"}),
    ("rtx4090", "bnb-nf4", "hf-eager", 8, False, {"other_cards", "other_engines", "none"}),
    ("rtx4090", "bnb-nf4", "hf-compiled", 8, False, {"other_engines", "none"}),
    ("rtx4090", "torchao-fp8", "hf-eager", 8, False, {"none"}),
])
def test_min_evidence(gpu, quant, engine, batch, measured, passes):
    from recommender.evidence import MIN_EVIDENCE_LEVELS, meets_min_evidence

    got = {lvl for lvl in MIN_EVIDENCE_LEVELS if meets_min_evidence(COVERAGE, gpu, quant, engine, batch, measured, lvl)}
    assert got == passes
    # without recorded coverage only measured cells pass a level above none
    assert meets_min_evidence(None, gpu, quant, engine, batch, measured, "other_engines") is measured


def test_shipped_min_evidence_filters_and_explains(capsys):
    """--min-evidence same_card keeps only measured cells or predictions for a method and engine measured on
    the card within their measured batch sizes; the others are excluded with the reason."""
    from recommender.cli import main

    def run(*args):
        try:
            main(["--gpu", "h100", "--model", "qwen2.5-7b-instruct", "--format", "json", *args])
        except SystemExit as exc:
            assert exc.code in (0, None)
        return json.loads(capsys.readouterr().out)

    every = run("--all")
    kept = run("--all", "--min-evidence", "same_card")
    assert kept["query"]["min_evidence"] == "same_card" and every["query"]["min_evidence"] == "none"
    ranked = [c for c in kept["candidates"] if c["rank"] is not None]
    assert ranked and all(c["evidence"]["level"] in ("measured", "same_card") and "above the largest measured"
                          not in c["evidence"]["text"] for c in ranked)
    dropped = [c for c in kept["candidates"] if (c["excluded_reason"] or "").startswith("--min-evidence same_card")]
    assert dropped and all(c["evidence"]["level"] not in ("measured",) for c in dropped)
    assert any("above the largest measured" in c["excluded_reason"] for c in dropped)  # batch extrapolation
    n_ranked = sum(c["rank"] is not None for c in every["candidates"])
    assert len(ranked) + len(dropped) == n_ranked  # nothing else changed
    only = run("--min-evidence", "measured", "--top", "50")
    assert only["candidates"] and all(c["source"] == "measured" for c in only["candidates"])


def test_min_evidence_without_coverage_says_why_nothing_is_left():
    from recommender.costmodel.analytic import AnalyticCostModel
    from recommender.rank import NoCandidateError, Query, recommend

    with pytest.raises(NoCandidateError, match="no candidate meets --min-evidence same_card: .* meets 'none'"):
        recommend(Query(gpus=("rtx4090",), models=("qwen2.5-7b-instruct",), min_evidence="same_card"),
                  cost_model=AnalyticCostModel())
    from recommender.errors import UserError

    with pytest.raises(UserError, match="unknown --min-evidence 'best'"):
        recommend(Query(gpus=("h100",), min_evidence="best"))


def _measured_batches(gpu_id: str, model: str, quant: str, engine: str) -> set[int]:
    """Batch sizes of the shipped ok records of one (card, model, method, engine) at 256/128."""
    from recommender.costmodel.learned import measurement_files_in, shipped_measurement_dirs

    out = set()
    for path in measurement_files_in(shipped_measurement_dirs()[0]):
        for line in path.read_text().splitlines():
            r = json.loads(line) if line.strip() else {}
            if (r.get("status"), r.get("gpu_id"), r.get("model"), r.get("quant"), r.get("engine"),
                    r.get("prompt_tokens"), r.get("output_tokens")) == ("ok", gpu_id, model, quant, engine, 256, 128):
                out.add(int(r["batch_size"]))
    return out


def test_explain_names_the_best_choice_backed_by_measurements_of_the_card(capsys):
    """Compiled NF4 on the H100 is measured up to some batch B (the shipped records): at 2B (more tokens per
    joule, so ranked first for energy) it is a batch extrapolation, and --explain names the batch-B candidate,
    the one --min-evidence same_card ranks first. With only unmeasured batch sizes it says none is backed, and
    the 'no candidate' message of the filter names the best level those meet."""
    from recommender.cli import main

    args = ["--gpu", "h100", "--model", "qwen2.5-7b-instruct", "--quant", "bnb-nf4", "--engine", "hf-compiled"]
    measured = _measured_batches("h100-sxm", "qwen2.5-7b-instruct", "bnb-nf4", "hf-compiled")
    assert measured, "the shipped records hold compiled NF4 Qwen2.5-7B cells on the H100"
    top = max(measured)

    def run(*more, code=0):
        try:
            main([*args, "--format", "json", "--top", "1", *more])
        except SystemExit as exc:
            assert exc.code in ((0, None) if code == 0 else (code,))
        captured = capsys.readouterr()
        return json.loads(captured.out) if code == 0 else captured.err

    # above the largest measured batch: extrapolations (a 7B model at 4-bit fits); the trees' predictions are not
    # monotonic in the batch, so the first of 2B, 3B, 4B that ranks above the measured batch B is the one used
    wins = [b for b in (2 * top, 3 * top, 4 * top)
            if run("--batch-size", str(top), "--batch-size", str(b))["candidates"][0]["batch_size"] == b]
    assert wins, "no batch above the measured ones ranks first: the premise of this test no longer holds"
    above = [wins[0], 5 * top]
    out = run("--batch-size", str(top), "--batch-size", str(above[0]), "--explain")
    assert out["candidates"][0]["batch_size"] == above[0]
    backed = [ln for ln in out["explanation"] if ln.startswith("Best choice backed by measurements on h100-sxm")]
    assert len(backed) == 1
    best = run("--batch-size", str(top), "--batch-size", str(above[0]), "--min-evidence", "same_card")["candidates"][0]
    assert best["batch_size"] == top
    assert f"{best['gpu']} / {best['model']} / {best['quant']} / {best['engine']} / batch {top}" in backed[0]
    lines = run("--batch-size", str(above[0]), "--batch-size", str(above[1]), "--explain")["explanation"]
    assert "No ranked candidate on h100-sxm is backed by its measurements (--min-evidence same_card)." in lines
    err = run("--batch-size", str(above[0]), "--min-evidence", "same_card", code=2)
    assert "no candidate meets --min-evidence same_card: the best of the 1 that can run meets 'other_engines'" in err


def test_shipped_recommendation_warns_of_a_measured_slow_path(capsys):
    """Compiled torchao int8 weight-only decoded no faster at batch 32 than at batch 1 on the H200 (s18): a
    prediction of it for the H100 names that measurement; eager int8 weight-only, which scaled, does not."""
    from recommender.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--gpu", "h100-sxm", "--model", "qwen2.5-7b-instruct", "--quant", "torchao-int8-wo", "--engine",
              "hf-compiled", "--engine", "hf-eager", "--batch-size", "32", "--all", "--format", "json"])
    assert done.value.code in (0, None)
    by = {c["engine"]: c["evidence"] for c in json.loads(capsys.readouterr().out)["candidates"]}
    assert [s["gpu"] for s in by["hf-compiled"]["slow_path"]] == ["h200"]
    assert "a slow path was measured near batch 32" in by["hf-compiled"]["text"]
    assert "its interval allows for that slow path" in by["hf-compiled"]["text"]
    assert by["hf-eager"]["slow_path"] == []
