"""The ranking fast path of the cost models: `predict_p50` equals `predict(...).p50` bit for bit, rows
of one architecture are predicted once, and the quantile ends never move p50."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.candidates import Candidates
from recommender.costmodel import features as F
from recommender.costmodel import learned as L
from recommender.costmodel.analytic import AnalyticCostModel
from recommender.costmodel.base import TARGETS


def _grid(cat):
    # qwen2.5-7b-instruct / deepseek-r1-distill-qwen-7b share one architecture; bloomz-7b1 has its own
    return Candidates.grid(cat, ["h100-sxm", "a100-sxm-80gb", "rtx4060ti-16gb", "v100-32gb"],
                           ["qwen2.5-7b-instruct", "deepseek-r1-distill-qwen-7b", "bloomz-7b1", "qwen2.5-0.5b-instruct"],
                           ["bf16", "fp16", "fp32", "torchao-int8-wo", "bnb-nf4", "torchao-fp8"],
                           ["hf-eager", "vllm", "llama.cpp"], [1, 8, 64], 256, 128)


def _models(trained_dir):
    return [AnalyticCostModel(), L.load_default(trained_dir)]


@pytest.mark.parametrize("which", [0, 1])
def test_predict_p50_equals_predict(trained_dir, catalog, which):
    m = _models(trained_dir)[which]
    c = _grid(catalog)
    full = m.predict(c)
    p50 = m.predict_p50(c)
    assert set(p50) == set(TARGETS)
    for t in TARGETS:
        assert np.array_equal(p50[t], full[t].p50, equal_nan=True), t
    some = m.predict_p50(c, ("energy_per_token_j", "accuracy_delta"))
    assert set(some) == {"energy_per_token_j", "accuracy_delta"}
    assert np.array_equal(some["energy_per_token_j"], full["energy_per_token_j"].p50, equal_nan=True)


def test_learned_quantile_ends_are_clamped_to_p50(trained_dir, catalog):
    m = L.load_default(trained_dir)
    out = m.predict(_grid(catalog))
    for t in m.boosters:
        q = out[t]
        ok = np.isfinite(q.p50)
        assert np.all(q.p10[ok] <= q.p50[ok]) and np.all(q.p50[ok] <= q.p90[ok])


def test_dedupe_gives_the_same_predictions(trained_dir, catalog, monkeypatch):
    m = L.load_default(trained_dir)
    c = _grid(catalog)
    u, inv = F.dedupe(c)
    assert inv is not None and len(u) < len(c)
    shape = F.model_shape_index(catalog)
    ids = catalog.models.ids()
    assert shape[ids.index("deepseek-r1-distill-qwen-7b")] == shape[ids.index("qwen2.5-7b-instruct")]
    assert shape[ids.index("bloomz-7b1")] != shape[ids.index("qwen2.5-7b-instruct")]
    fast = m.predict(c)
    monkeypatch.setattr(L, "dedupe", lambda cands: (cands, None))
    slow = m.predict(c)
    for t in TARGETS:
        for a in ("p10", "p50", "p90"):
            assert np.array_equal(getattr(fast[t], a), getattr(slow[t], a), equal_nan=True), (t, a)
    # the feature matrix of the distinct rows, expanded, is the feature matrix of every row
    assert np.array_equal(F.build(u)[inv], F.build(c), equal_nan=True)


def test_group_rows():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 500).astype(np.int32)
    b = rng.choice([1.0, 8.0, 32.5, np.nan], 500)
    c = np.full(500, 7.0)
    first, inv = F.group_rows(a, b, c)
    assert np.array_equal(a[first][inv], a) and np.array_equal(b[first][inv], b, equal_nan=True)
    assert len({(x, str(y)) for x, y in zip(a[first], b[first], strict=True)}) == len(first)
    assert np.all(first[inv] <= np.arange(500))  # the first occurrence stands for its group
    assert F.group_rows(np.arange(10), np.zeros(10)) is None  # all distinct


def test_small_predict_calls_use_one_thread():
    assert L._predict_params(10) == b"num_threads=1"
    assert L._predict_params(10**7) == L._PREDICT_PARAMS
