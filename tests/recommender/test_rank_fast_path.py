"""The two-pass ranking (p50 of the ranking targets for every row, everything for the rows shown) gives
the same output as computing every quantile of every target for every row."""

from __future__ import annotations

import numpy as np
import pytest

from recommender import rank, render
from recommender.catalog import load_catalog


@pytest.fixture(scope="module")
def real():
    cat = load_catalog()
    if not len(cat.engines):
        pytest.skip("catalogue incomplete")
    return cat, rank._load_cost_model(None)


QUERIES = [
    {"models": ("all",)},  # the whole catalogue (bench_rank.py)
    {"gpus": ("rtx4060ti",), "priority": "energy"},  # bench_cold_start.py
    {"models": ("all",), "priority": "latency", "gpus": ("h100", "l4", "a100")},
    {"profile": "edge"},
    {"profile": "datacenter", "max_latency_ms": 3000, "priority": "balanced"},
    {"gpus": ("rtx4060ti",), "min_accuracy": 60, "max_energy_wh": 50, "priority": "accuracy"},
]


@pytest.mark.parametrize("kw", QUERIES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_top10_json_equals_full_computation(real, kw):
    cat, cm = real
    q = rank.Query(**kw)
    fast = rank.recommend(q, cat, cm)
    full = rank.recommend(q, cat, cm, full=True)
    assert not fast.full.all() or len(fast.order) <= 10
    assert np.array_equal(fast.order, full.order) and np.array_equal(fast.code, full.code)
    js_fast = render.to_json(fast, render.rows(fast, 10, False), render.explanation(fast))
    js_full = render.to_json(full, render.rows(full, 10, False), render.explanation(full))
    assert js_fast == js_full
    assert render.to_csv(render.rows(fast, 10, False)) == render.to_csv(render.rows(full, 10, False))


def test_ranking_pass_predicts_only_what_it_needs(real):
    cat, cm = real
    res = rank.recommend(rank.Query(gpus=("rtx4060ti",)), cat, cm)
    if hasattr(cm, "predict_p50"):
        assert res.p50_targets == {"energy_per_token_j", "prefill_energy_j", "accuracy_delta"}
    assert set(rank.ranking_targets("energy", [])) == {"energy_per_token_j", "prefill_energy_j", "accuracy_delta"}
    assert set(rank.ranking_targets("latency", [])) == {"energy_per_token_j", "prefill_energy_j", "accuracy_delta",
                                                        "tokens_per_s", "ttft_ms"}
    con = rank.Constraint(rank.LATENCY, "latency_ms", "max", 100.0, "--max-latency-ms 100")
    assert {"tokens_per_s", "ttft_ms"} <= set(rank.ranking_targets("energy", [con]))
    # shown rows are completed on demand
    top = res.order[:3]
    assert not res.full[top].any() and np.isnan(res.metrics["energy_wh"].p10[top]).all()
    render.rows(res, 3, False)
    assert res.full[top].all() and np.isfinite(res.metrics["energy_wh"].p10[top]).all()
    assert np.isfinite(res.metrics["latency_s"].p50[top]).all()
