"""Workload metrics: energy of a batched workload, latency, EOR/TWEOR (paper §3.3), cost and carbon."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender.costmodel.base import Quantiles
from recommender.workload import (
    PAPER_TASKS,
    Workload,
    baseline_score,
    energy_wh,
    eor,
    evaluate,
    latency_s,
    n_batches,
    per_million_tokens,
    tweor,
)


def test_defaults_and_validation():
    w = Workload()
    assert (w.prompt_tokens, w.output_tokens, w.requests, w.pue) == (256, 128, 1000, 1.0)
    assert w.price_per_kwh is None and w.grid_gco2_per_kwh is None
    for bad in ({"prompt_tokens": 0}, {"output_tokens": -1}, {"requests": 0}, {"pue": 0}):
        with pytest.raises(ValueError):
            Workload(**bad)


def test_baseline_score_percent_and_tasks():
    s, tasks = baseline_score({"mmlu": 0.7, "gsm8k": 0.5, "ifeval": 0.9})
    assert s == pytest.approx(60.0) and tasks == ("mmlu", "gsm8k")
    s, tasks = baseline_score({t: 0.5 for t in PAPER_TASKS})
    assert s == pytest.approx(50.0) and tasks == PAPER_TASKS
    s, tasks = baseline_score({"truthfulqa_mc1": 0.4, "mmlu": 0.6})
    assert tasks == ("mmlu", "truthfulqa_mc1") and s == pytest.approx(50.0)
    s, tasks = baseline_score({"truthfulqa_mc1": 0.4, "truthfulqa_mc2": 0.6})
    assert tasks == ("truthfulqa_mc2",) and s == pytest.approx(60.0)
    s, tasks = baseline_score({})
    assert math.isnan(s) and tasks == ()


def test_batches_latency_energy():
    b = np.array([1.0, 8.0, 64.0])
    assert n_batches(1000, b).tolist() == [1000, 125, 16]
    lat = latency_s(np.array([50.0] * 3), np.array([20.0, 150.0, 1000.0]), b, 128)
    np.testing.assert_allclose(lat, 0.05 + 128 * b / np.array([20.0, 150.0, 1000.0]))
    w = Workload(requests=1000, output_tokens=128, pue=1.5)
    wh = energy_wh(np.array([10.0] * 3), np.array([2.0, 0.4, 0.1]), b, w)
    expect = np.array([1000, 125, 16]) * (10 + np.array([2.0, 0.4, 0.1]) * b * 128) * 1.5 / 3600
    np.testing.assert_allclose(wh, expect)


def test_eor_tweor_exactly_paper():
    assert eor(np.array([70.0]), np.array([35.0]))[0] == 2.0
    assert tweor(np.array([70.0]), np.array([35.0]), np.array([4.0]))[0] == 0.5
    assert np.isnan(eor(np.array([np.nan]), np.array([1.0]))[0])


def test_per_million_tokens():
    w = Workload(requests=1000, output_tokens=100)
    # 100 Wh for 100k tokens -> 1 kWh per 1M tokens
    assert per_million_tokens(np.array([100.0]), w, 0.25)[0] == pytest.approx(0.25)
    assert np.isnan(per_million_tokens(np.array([100.0]), w, None)[0])


def test_evaluate_quantiles_ordered_and_p50_consistent():
    n = 4
    b = np.array([1.0, 8.0, 32.0, 64.0])

    def q(x, f=1.5):
        x = np.full(n, x) if np.isscalar(x) else x
        return Quantiles(x / f, x, x * f)

    preds = {"ttft_ms": q(40.0), "tokens_per_s": q(20.0 * b), "energy_per_token_j": q(5.0 / b),
             "prefill_energy_j": q(12.0 * b)}
    score = Quantiles(np.full(n, 60.0), np.full(n, 62.0), np.full(n, 64.0))
    w = Workload(price_per_kwh=0.3, grid_gco2_per_kwh=400)
    m = evaluate(preds, score, b, w)
    for k, v in m.items():
        assert np.all(v.p10 <= v.p50 + 1e-12) and np.all(v.p50 <= v.p90 + 1e-12), k
    np.testing.assert_allclose(m["eor"].p50, score.p50 / m["energy_wh"].p50)
    np.testing.assert_allclose(m["tweor"].p50, score.p50 / (m["energy_wh"].p50 * m["workload_time_s"].p50))
    np.testing.assert_allclose(m["workload_time_s"].p50, n_batches(1000, b) * m["latency_s"].p50)
    np.testing.assert_allclose(m["wh_per_1k_requests"].p50, m["energy_wh"].p50)  # requests = 1000
