"""The analytic model: calibration points, physics trends, intervals, accuracy deltas, speed."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.candidates import Candidates
from recommender.costmodel import analytic as A
from recommender.costmodel.base import TARGETS
from recommender.costmodel.features import physics


def test_reproduces_the_h100_calibration_point(catalog):
    """shared/docs/h100-first-measurements.md: bf16 eager batch 1, 49.0 tok/s, 214 W, 4.37 J/token.

    hf-eager's efficiency and overhead are no longer this one point's: fit_engine_overhead.py fits them to
    205 batch-1 rows (ML.ENERGY v1 + our H100 records, median error 10.6 %), and our campaign measured the
    same architecture at 44.0 tok/s (256 + 128 tokens). The model lies between the two: within 10 %.
    Nor is the power this point's: fit_power_model.py fits hf-eager's power floor and slope to 221 records
    (median power error 11 %, against 24 % for the one-point defaults), which put this cell 14 % high (our
    campaign's records of it: 199-214 W) and its energy per token 20 % high (inside the fit's 80th-percentile
    factor, 1.37): power within 20 %, energy within 25 %."""
    c = Candidates.from_ids(catalog, ["h100-sxm"], ["qwen2.5-7b-instruct"], ["bf16"], ["hf-eager"], [1], [128], [64])
    est = A.estimate(physics(c), c)
    assert est.tokens_per_s[0] == pytest.approx(49.0, rel=0.10)
    assert est.power_w[0] == pytest.approx(214.0, rel=0.20)
    assert est.energy_per_token_j[0] == pytest.approx(4.37, rel=0.25)


def test_batching_trades_power_for_energy_per_token(catalog):
    c = Candidates.grid(catalog, ["h100-sxm"], ["qwen2.5-7b-instruct"], ["bf16"], ["vllm"], [1, 8, 64], 256, 128)
    est = A.estimate(physics(c), c)
    assert np.all(np.diff(est.tokens_per_s) > 0)
    assert np.all(np.diff(est.energy_per_token_j) < 0)
    assert np.all(est.power_w <= catalog.gpu("h100-sxm").tdp_w)


def test_end_to_end_includes_prefill(catalog):
    c = Candidates.grid(catalog, ["a100-sxm-40gb"], ["llama-3-8b"], ["fp16"], ["vllm"], [16], 1024, 1024)
    est = A.estimate(physics(c), c)
    tps, ept = est.end_to_end()
    assert tps[0] < est.tokens_per_s[0]
    assert ept[0] > est.energy_per_token_j[0]


def test_predict_returns_every_target_with_ordered_intervals(catalog):
    c = Candidates.grid(catalog, ["h100-sxm", "rtx4060ti-16gb"], ["qwen2.5-7b-instruct"],
                        ["bf16", "bnb-nf4"], ["hf-eager"], [1, 4], 256, 128)
    out = A.AnalyticCostModel().predict(c)
    assert set(out) == set(TARGETS)
    for t, q in out.items():
        assert q.p50.shape == (len(c),)
        if t == "accuracy_delta":
            continue
        assert np.all(q.p10 < q.p50) and np.all(q.p50 < q.p90)
        assert q.p90 / q.p50 == pytest.approx(np.full(len(c), A.INTERVAL_FACTOR[t]))


def test_accuracy_delta_from_cited_rows(catalog):
    rows = [r for r in catalog.quant_accuracy if r["quant_id"] == "torchao-int4-wo" and r["model_id"] == "llama-2-7b-chat"]
    assert rows, "quant_accuracy.csv has cited torchao-int4-wo rows for llama-2-7b-chat"
    deltas = [float(r["delta_abs"]) for r in rows]
    c = Candidates.from_ids(catalog, ["h100-sxm"] * 3, ["llama-2-7b-chat"] * 3, ["bf16", "torchao-int4-wo", "bnb-nf4"],
                            ["hf-eager"] * 3, [1] * 3, [128] * 3, [64] * 3)
    q = A.accuracy_delta(c)
    assert (q.p10[0], q.p50[0], q.p90[0]) == (0.0, 0.0, 0.0)
    assert q.p50[1] == pytest.approx(np.mean(deltas))
    assert (q.p10[1], q.p90[1]) == (pytest.approx(min(deltas)), pytest.approx(max(deltas)))
    if not any(r["quant_id"] == "bnb-nf4" for r in catalog.quant_accuracy):
        assert np.isnan(q.p50[2])  # nothing cited -> unknown, never guessed


def test_whole_catalogue_predicts_in_one_pass(catalog):
    """The analytic model over 200,000 catalogue candidates at once (its speed is a benchmark's, not a test's:
    `python benchmarks/bench_predict.py`, the analytic model on 200,000 rows)."""
    c = Candidates.grid(catalog, catalog.gpus.ids(), catalog.models.ids(), catalog.quants.ids(),
                        catalog.engines.ids(), [1, 2, 4, 8, 16, 32, 64], 256, [128, 256])
    c = c.take(np.arange(min(len(c), 200_000)))
    out = A.AnalyticCostModel().predict(c)
    assert all(len(q.p50) == len(c) for q in out.values())
    assert np.isfinite(out["tokens_per_s"].p50).mean() > 0.5
