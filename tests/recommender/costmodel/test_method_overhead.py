"""The per-layer decode overhead and the prefill time ratio of quantization methods: the fits, their catalogue
file, their use in the analytic model (the overhead in decode only, the ratio in the prefill only), and
their refit inside every cross-validation fold."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.candidates import Candidates
from recommender.costmodel import analytic
from recommender.costmodel import features as F
from recommender.costmodel import method_overhead as MO

ROOT = Path(__file__).resolve().parents[3]


def _cell(model, quant, batch, engine="hf-eager", gpu="h100-sxm"):
    return (gpu, model, quant, engine, batch, 256, 128)


LAYERS = {"a": 10, "b": 20, "c": 40}.get


def test_fit_takes_the_median_per_layer_against_the_16_bit_cell():
    step = {}
    for model, n in (("a", 10), ("b", 20), ("c", 40)):
        step[_cell(model, "bf16", 1)] = 10.0
        step[_cell(model, "bnb-int8", 1)] = 10.0 + 2.0 * n  # 2 ms per layer at any size
        step[_cell(model, "torchao-int8-wo", 1)] = 10.0 + 0.5 * n
        step[_cell(model, "bnb-nf4", 1)] = 9.0  # faster than bf16: a negative overhead is written as 0
    step[_cell("a", "fp16", 8)] = 5.0  # fp16 stands in where bf16 is missing
    step[_cell("a", "bnb-int8", 8)] = 25.0
    rows = {(r["quant_id"], r["engine_id"]): r for r in MO.fit(step, LAYERS)}
    assert rows[("bnb-int8", "hf-eager")]["per_layer_overhead_ms"] == pytest.approx(2.0)
    assert rows[("bnb-int8", "hf-eager")]["n_pairs"] == 4 and rows[("bnb-int8", "hf-eager")]["n_models"] == 3
    assert rows[("torchao-int8-wo", "hf-eager")]["per_layer_overhead_ms"] == pytest.approx(0.5)
    assert rows[("bnb-nf4", "hf-eager")]["per_layer_overhead_ms"] == 0.0
    assert rows[("bnb-nf4", "hf-eager")]["p10_ms"] < 0  # the spread keeps the sign
    assert not any(q in ("bf16", "fp16", "fp32") for q, _ in rows)


def test_fit_with_modelled_times_keeps_only_what_the_analytic_model_leaves_unexplained():
    step, modelled = {}, {}
    for model, n in (("a", 10), ("b", 20), ("c", 40)):
        for b, deq in ((1, 0.0), (8, 6.0)):  # the model charges a dequantized copy above batch 1
            step[_cell(model, "bf16", b)], modelled[_cell(model, "bf16", b)] = 10.0, 9.0
            modelled[_cell(model, "bnb-nf4", b)] = 4.0 + deq
            step[_cell(model, "bnb-nf4", b)] = 5.0 + deq + 0.25 * n  # measured: the same bytes + 0.25 ms/layer
    raw = {r["quant_id"]: r for r in MO.fit(step, LAYERS)}
    res = {r["quant_id"]: r for r in MO.fit(step, LAYERS, modelled)}
    assert res["bnb-nf4"]["per_layer_overhead_ms"] == pytest.approx(0.25)
    assert res["bnb-nf4"]["p10_ms"] == pytest.approx(0.25) == res["bnb-nf4"]["p90_ms"]  # batch-independent
    assert raw["bnb-nf4"]["p90_ms"] - raw["bnb-nf4"]["p10_ms"] > 0.1  # without: the dequantized copy spreads it


def _estimate_without_method_fits(catalog, cells):
    """The analytic estimate of 256/128 `cells` with no method_overhead.csv row (no decode overhead, prefill
    ratios 1): what the modelled_* functions compare measurements with."""
    plain = copy.copy(catalog)
    plain.method_overhead = []
    c = Candidates.from_ids(plain, *[[k[i] for k in cells] for i in range(4)], [k[4] for k in cells], 256, 128)
    return analytic.estimate(F.physics(c), c)


def test_modelled_step_times_are_the_analytic_step_without_method_overheads(catalog, monkeypatch):
    cells = [("h100-sxm", "qwen2.5-7b-instruct", q, e, b, 256, 128)
             for q in ("bf16", "bnb-nf4", "bnb-int8") for e in ("hf-eager", "hf-compiled") for b in (1, 8)]
    got = MO.modelled_step_ms(catalog, cells)
    np.testing.assert_allclose([got[k] for k in cells], _estimate_without_method_fits(catalog, cells).t_step * 1e3)
    nf4 = [got[("h100-sxm", "qwen2.5-7b-instruct", "bnb-nf4", "hf-eager", b, 256, 128)] for b in (1, 8)]
    assert nf4[1] > nf4[0] + 1.0  # the dequantized bf16 copy above 4 tokens per matmul on an H100
    assert MO.modelled_step_ms(catalog, []) == {}
    monkeypatch.setattr(MO, "MIN_PAIRS", 1)
    unknown = ("h100-sxm", "some-new-model-7b", "bnb-nf4", "hf-eager", 8, 256, 128)
    with_unknown = MO.modelled_step_ms(catalog, [*cells, unknown, (*unknown[:1], "bf16", *unknown[2:])])
    assert unknown not in with_unknown and len(with_unknown) == len(cells)  # left out, not an error
    step = {k: 10.0 for k in cells} | {unknown: 12.0, ("h100-sxm", "some-new-model-7b", "bf16", "hf-eager", 8,
                                                       256, 128): 10.0}
    known = {k: v for k, v in step.items() if k in cells}
    rows = MO.fit(step, lambda m: 28, with_unknown)  # the unknown model's pair is skipped, the rest fitted
    assert rows and rows == MO.fit(known, lambda m: 28, with_unknown)


def test_an_overhead_that_grows_with_the_batch_gets_a_line_through_the_per_batch_medians():
    step = {}
    for model, n in (("a", 10), ("b", 20), ("c", 40)):
        for b, per_layer in ((1, 0.16), (8, 0.20), (32, 0.54)):  # s17's compiled int4 weight-only, per layer
            step[_cell(model, "bf16", b)] = 10.0
            step[_cell(model, "torchao-int4-wo", b)] = 10.0 + per_layer * n
            step[_cell(model, "bnb-int8", b)] = 10.0 + (2.0 if b < 32 else 1.9) * n  # no growth: one median
    rows = {r["quant_id"]: r for r in MO.fit(step, LAYERS)}
    int4 = rows["torchao-int4-wo"]
    slope, at_one = np.polyfit([0.0, 7.0, 31.0], [0.16, 0.20, 0.54], 1)  # equal counts: equal weights
    assert int4["per_layer_per_seq_ms"] == pytest.approx(slope, abs=1e-5) and slope > 0.01
    assert int4["per_layer_overhead_ms"] == pytest.approx(at_one, abs=1e-4)
    assert int4["p10_ms"] == pytest.approx(0.16) and int4["n_pairs"] == 9  # the spread is over every pair
    assert rows["bnb-int8"]["per_layer_per_seq_ms"] == 0.0
    assert rows["bnb-int8"]["per_layer_overhead_ms"] == pytest.approx(2.0)  # the median over all pairs


def test_a_batch_size_with_fewer_than_min_pairs_does_not_make_a_line():
    step = {}
    for model, n in (("a", 10), ("b", 20), ("c", 40)):
        step[_cell(model, "bf16", 1)], step[_cell(model, "torchao-int4-wo", 1)] = 10.0, 10.0 + 0.2 * n
    for model, n in (("a", 10), ("b", 20)):  # two pairs at batch 32: too few for a median of their own
        step[_cell(model, "bf16", 32)], step[_cell(model, "torchao-int4-wo", 32)] = 10.0, 10.0 + 0.6 * n
    (row,) = MO.fit(step, LAYERS)
    assert row["per_layer_per_seq_ms"] == 0.0 and row["per_layer_overhead_ms"] == pytest.approx(0.2)


def test_the_per_sequence_overhead_scales_the_decode_step_with_the_batch_not_the_feature(catalog):
    cat = copy.copy(catalog)
    cat.method_overhead = [{"quant_id": "torchao-int4-wo", "engine_id": "hf-compiled",
                            "per_layer_overhead_ms": "0.1", "per_layer_per_seq_ms": "0.01"}]
    plain = copy.copy(catalog)
    plain.method_overhead = []
    args = (["h100-sxm"], ["qwen2.5-7b-instruct"], ["torchao-int4-wo"], ["hf-compiled"], [1, 8, 32], 256, 128)
    c_with, c_without = Candidates.grid(cat, *args), Candidates.grid(plain, *args)
    e1, e0 = analytic.estimate(F.physics(c_with), c_with), analytic.estimate(F.physics(c_without), c_without)
    layers = catalog.model("qwen2.5-7b-instruct").num_layers
    expected = layers * (0.1 + 0.01 * (c_with.batch_size - 1.0)) * 1e-3
    np.testing.assert_allclose(e1.t_step - e0.t_step, expected)
    X = F.build(c_with)
    np.testing.assert_allclose(X[:, F.FEATURE_NAMES.index("method_overhead_ms")], layers * 0.1)  # batch 1's


def test_fit_needs_min_pairs_and_the_16_bit_cell():
    step = {_cell("a", "bf16", 1): 10.0, _cell("a", "bnb-int8", 1): 30.0, _cell("b", "bnb-int8", 1): 50.0,
            _cell("b", "bf16", 1): 10.0}
    assert MO.fit(step, LAYERS) == []  # 2 pairs < MIN_PAIRS
    step[_cell("c", "bnb-int8", 1)] = 90.0  # no bf16/fp16 cell for c: not a pair
    assert MO.fit(step, LAYERS) == []


def test_step_times_take_the_median_of_a_cells_rows():
    k = _cell("a", "bf16", 8)
    got = MO.step_times([k, k, k, _cell("b", "bf16", 1)], [800.0, 400.0, 1000.0, 0.0], [8, 8, 8, 1])
    assert got == {k: pytest.approx(10.0)}  # 10, 20, 8 ms -> 10; a zero throughput is left out


def test_the_catalogue_file_holds_what_the_tool_fits():
    spec = importlib.util.spec_from_file_location(
        "fit_method_overhead", ROOT / "datasets" / "catalog" / "tools" / "fit_method_overhead.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool
    spec.loader.exec_module(tool)
    committed = pd.read_csv(ROOT / "datasets" / "catalog" / "method_overhead.csv")
    fitted = pd.DataFrame(tool.fit())
    assert not fitted.empty
    cols = ["quant_id", "engine_id", "per_layer_overhead_ms", "n_pairs", "prefill_time_ratio", "prefill_n_pairs",
            "prefill_energy_ratio", "prefill_energy_n_pairs"]
    for c in cols[2:]:
        fitted[c] = pd.to_numeric(fitted[c], errors="coerce")  # "" (none fitted) reads back as NaN
    pd.testing.assert_frame_equal(committed[cols].reset_index(drop=True), fitted[cols].reset_index(drop=True),
                                  check_dtype=False, obj="method_overhead.csv is stale; run "
                                                        "python datasets/catalog/tools/fit_method_overhead.py")
    assert list(committed.columns) == list(tool.COLUMNS)
    assert (committed["prefill_time_ratio"].dropna() >= MO.PREFILL_RATIO_FLOOR).all()


def test_the_overhead_slows_decode_only(catalog):
    cat = copy.copy(catalog)
    cat.method_overhead = [{"quant_id": "bnb-int8", "engine_id": "hf-eager", "per_layer_overhead_ms": "2.0"}]
    plain = copy.copy(catalog)
    plain.method_overhead = []
    c_with = Candidates.grid(cat, ["h100-sxm"], ["qwen2.5-7b-instruct"], ["bnb-int8", "bf16"], ["hf-eager", "vllm"],
                             [1, 8], 256, 128)
    c_without = Candidates.grid(plain, ["h100-sxm"], ["qwen2.5-7b-instruct"], ["bnb-int8", "bf16"],
                                ["hf-eager", "vllm"], [1, 8], 256, 128)
    e1, e0 = analytic.estimate(F.physics(c_with), c_with), analytic.estimate(F.physics(c_without), c_without)
    layers = catalog.model("qwen2.5-7b-instruct").num_layers
    hit = (c_with.quant_idx == cat.quants.index["bnb-int8"]) & (c_with.engine_idx == cat.engines.index["hf-eager"])
    np.testing.assert_allclose(e1.t_step[hit] - e0.t_step[hit], layers * 2.0e-3)
    np.testing.assert_allclose(e1.t_step[~hit], e0.t_step[~hit])
    np.testing.assert_allclose(e1.t_prefill, e0.t_prefill)  # the prefill is not charged
    X = F.build(c_with)
    col = F.FEATURE_NAMES.index("method_overhead_ms")
    np.testing.assert_allclose(X[hit, col], layers * 2.0)
    assert (X[~hit, col] == 0).all()


def test_cross_validation_refits_the_overhead_without_the_held_out_rows(catalog):
    from recommender.costmodel import train as T

    models = ["qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct"]
    rows = []
    for m in models:
        n = catalog.model(m).num_layers
        # ms per layer: 1, 2, 3 for the others, 50 for the held-out model
        extra = {"qwen2.5-0.5b-instruct": 1.0, "qwen2.5-1.5b-instruct": 2.0, "qwen2.5-3b-instruct": 3.0}.get(m, 50.0)
        for quant, t_ms in (("bf16", 20.0), ("bnb-int8", 20.0 + extra * n)):
            rows.append({"gpu_id": "h100-sxm", "model": m, "quant": quant, "engine": "hf-eager", "batch_size": 1.0,
                         "prompt_tokens": 256.0, "output_tokens": 128.0, "kv_cache_bits": np.nan,
                         "scope_id": "gpu-counter", "origin": "ours", "tokens_per_s": 1000.0 / t_ms})
    frame = pd.DataFrame(rows)
    cat = copy.copy(catalog)
    cat.method_overhead = MO.fit(MO.step_times(
        [(r["gpu_id"], r["model"], r["quant"], r["engine"], r["batch_size"], r["prompt_tokens"],
          r["output_tokens"]) for r in rows], [r["tokens_per_s"] for r in rows], [1.0] * len(rows)),
        lambda m: catalog.model(m).num_layers)
    refit = T._fold_refit(frame, cat, frame["tokens_per_s"].to_numpy(float), refit_engine_constants=False)
    held_out = np.flatnonzero(frame["model"] == "qwen2.5-7b-instruct")
    train = np.flatnonzero(frame["model"] != "qwen2.5-7b-instruct")
    _, base_fold = refit(train)
    _, base_all = refit(np.arange(len(frame)))
    int8 = held_out[frame["quant"].to_numpy()[held_out] == "bnb-int8"]
    n7 = catalog.model("qwen2.5-7b-instruct").num_layers
    # the fold's fit saw 1, 2, 3 ms/layer (median 2); with every row the median moves towards the outlier
    t_fold = 1.0 / base_fold["tokens_per_s"][int8]
    t_all = 1.0 / base_all["tokens_per_s"][int8]
    assert np.all(t_all > t_fold)
    no_overhead = copy.copy(cat)
    no_overhead.method_overhead = []
    _, base_none = T._features_and_base(frame, no_overhead)
    # the fold's overhead: the median over the three training models of what the analytic model leaves
    # unexplained per layer (the measured 1, 2, 3 ms/layer plus the bytes bnb-int8 saves in the model)
    t_none = 1.0 / base_none["tokens_per_s"]
    unexplained = [extra - (t_none[i8] - t_none[b16]) * 1e3 / catalog.model(m).num_layers
                   for m, extra in zip(models[:3], (1.0, 2.0, 3.0), strict=True)
                   for i8, b16 in [(np.flatnonzero((frame["model"] == m) & (frame["quant"] == q))[0]
                                    for q in ("bnb-int8", "bf16"))]]
    assert all(u > e for u, e in zip(unexplained, (1.0, 2.0, 3.0), strict=True))  # int8 reads fewer bytes
    np.testing.assert_allclose(t_fold - t_none[int8], n7 * np.median(unexplained) * 1e-3, rtol=1e-4)  # the CSV keeps 4 decimals


@pytest.fixture(scope="module")
def shipped_design():
    from recommender.costmodel import train as T

    data, catalog = T.load_training_data()
    return T, T.design(data.frame, catalog)


def test_the_trainers_fit_on_every_row_is_the_catalogue_file(shipped_design):
    """Refitting the overheads on all our rows (as the trainer does per fold) reproduces method_overhead.csv:
    the features and baseline come out identical to the served ones."""
    T, d = shipped_design
    assert d.refit is not None
    X, base = d.refit(np.arange(len(d.X)))
    np.testing.assert_array_equal(X, d.X)
    for t, v in d.base.items():
        np.testing.assert_array_equal(base[t], v, err_msg=t)


def test_cross_validation_reports_predictions_against_the_shared_baseline(shipped_design):
    """A fold that sees a different analytic baseline (here: twice d.base) learns the log-ratio against it;
    the out-of-fold prediction is shifted back to d.base, so the predicted values are the same."""
    import dataclasses

    T, d = shipped_design
    rows = T.target_rows(d, "energy_per_token_j")
    plain = dataclasses.replace(d, refit=None)
    doubled = dataclasses.replace(d, refit=lambda train: (d.X, {k: 2.0 * v for k, v in d.base.items()}))
    a = T.cross_validate(plain, "energy_per_token_j", rows, "logo", 0)
    b = T.cross_validate(doubled, "energy_per_token_j", rows, "logo", 0)
    ok = np.isfinite(a["p50"][rows])
    assert ok.any()
    np.testing.assert_allclose(b["p50"][rows][ok], a["p50"][rows][ok], atol=1e-6)
    np.testing.assert_allclose(b["base"][rows][ok], 2.0 * d.base["energy_per_token_j"][rows][ok])
    figs, _ = T.evaluate(doubled, "energy_per_token_j", rows, b)
    figs_plain, _ = T.evaluate(plain, "energy_per_token_j", rows, a)
    assert figs["median_ape_pct"] == pytest.approx(figs_plain["median_ape_pct"], abs=1e-3)
    assert figs["analytic_median_ape_pct"] != figs_plain["analytic_median_ape_pct"]  # judged on the fold's base


@pytest.mark.parametrize("scheme, target", [("logo", "ttft_ms"), ("lomo", "prefill_energy_j"),
                                            ("random", "prefill_energy_j")])
def test_each_fold_refits_on_every_row_outside_its_held_out_group(shipped_design, scheme, target):
    """The fold's refit is given every row outside the held-out group, rows without this target included (the
    refit keeps our rows among them: a record of ours times its method whatever target it lacks), and never
    a row of the held-out group (by GPU, architecture or cell, per scheme)."""
    import dataclasses

    T, d = shipped_design
    rows = T.target_rows(d, target)
    seen = []

    def spy(informs):
        seen.append(np.asarray(informs))
        return d.X, d.base

    T.cross_validate(dataclasses.replace(d, refit=spy), target, rows, scheme, 0)
    folds = T._folds(scheme, d, rows, 0)
    group = T._group_of(scheme, d)
    assert len(seen) == len(folds) > 1
    without_target = np.setdiff1d(np.arange(len(d.X)), rows)
    assert len(without_target)
    for informs, (_, test, _) in zip(seen, folds, strict=True):
        held = set(group[test])
        assert not any(g in held for g in group[informs])
        np.testing.assert_array_equal(np.sort(informs), np.flatnonzero(~np.isin(group, list(held))))
        assert np.isin(without_target, informs).any()


# ---- the prefill time ratio -------------------------------------------------------------------------
def test_prefill_fit_takes_the_median_of_measured_over_modelled_ratios_to_the_16_bit_cell():
    ttft, modelled = {}, {}
    for model, measured_ratio in (("a", 3.0), ("b", 4.0), ("c", 6.0)):
        for b in (1, 8):
            ttft[_cell(model, "bf16", b)], modelled[_cell(model, "bf16", b)] = 100.0 * b, 80.0 * b
            # the model credits torchao-fp8 half the 16-bit time (its fp8 rate); measured: 3-6x slower
            ttft[_cell(model, "torchao-fp8", b)] = 100.0 * b * measured_ratio
            modelled[_cell(model, "torchao-fp8", b)] = 40.0 * b
            ttft[_cell(model, "bnb-nf4", b)], modelled[_cell(model, "bnb-nf4", b)] = 90.0 * b, 80.0 * b
    ttft[_cell("a", "fp16", 32)], modelled[_cell("a", "fp16", 32)] = 50.0, 50.0  # fp16 where bf16 is missing
    ttft[_cell("a", "bnb-int8", 32)], modelled[_cell("a", "bnb-int8", 32)] = 150.0, 50.0
    ttft[_cell("b", "bnb-int8", 32)] = 999.0  # no 16-bit cell: not a pair
    rows = {(r["quant_id"], r["engine_id"]): r for r in MO.fit_prefill(ttft, modelled)}
    fp8 = rows[("torchao-fp8", "hf-eager")]
    # pairs: (measured / 1) / (40 / 80) = 2 x measured ratio: 6, 6, 8, 8, 12, 12 -> median 8
    assert fp8["prefill_time_ratio"] == pytest.approx(8.0) and fp8["prefill_n_pairs"] == 6
    assert fp8["prefill_p10"] == pytest.approx(6.0) and fp8["prefill_p90"] == pytest.approx(12.0)
    # measured 0.9 x bf16 where the model has 1: the median 0.9 is clipped to the floor, the spread kept
    assert rows[("bnb-nf4", "hf-eager")]["prefill_time_ratio"] == MO.PREFILL_RATIO_FLOOR == 1.0
    assert rows[("bnb-nf4", "hf-eager")]["prefill_p10"] == pytest.approx(0.9)
    assert ("bnb-int8", "hf-eager") not in rows  # 1 pair < MIN_PAIRS
    assert not any(q in MO.UNQUANTIZED for q, _ in rows)
    del modelled[_cell("c", "bf16", 1)]  # a cell the catalogue cannot model is no pair
    assert {r["quant_id"]: r for r in MO.fit_prefill(ttft, modelled)}["torchao-fp8"]["prefill_n_pairs"] == 5


def test_the_prefill_ratio_gets_knots_per_token_count_of_the_batch():
    ttft, modelled = {}, {}
    # int4-like: x4 at batch 1 (256 tokens), x14 at batch 8 (2048), x16 at batch 32 (8192); three models each
    for model, jitter in (("a", 0.9), ("b", 1.0), ("c", 1.1)):
        for b, ratio in ((1, 4.0), (8, 14.0), (32, 16.0)):
            ttft[_cell(model, "bf16", b)], modelled[_cell(model, "bf16", b)] = 10.0 * b, 10.0 * b
            ttft[_cell(model, "torchao-int4-wo", b)] = 10.0 * b * ratio * jitter
            modelled[_cell(model, "torchao-int4-wo", b)] = 10.0 * b
    ttft[_cell("a", "torchao-int4-wo", 64)], modelled[_cell("a", "torchao-int4-wo", 64)] = 99.0, 1.0
    ttft[_cell("a", "bf16", 64)], modelled[_cell("a", "bf16", 64)] = 1.0, 1.0  # 1 pair at 16384: no knot
    row = MO.fit_prefill(ttft, modelled)[0]
    assert row["prefill_n_pairs"] == 10 and row["prefill_time_ratio"] == pytest.approx(14.2)  # (14 + 14.4) / 2
    assert row[MO.PREFILL_KNOTS_COLUMN] == "256:4;2048:14;8192:16"
    # knots are floored like the median; one token count with enough pairs makes no curve
    one = {k: v for k, v in ttft.items() if k[4] == 1}
    assert MO.fit_prefill(one, modelled)[0][MO.PREFILL_KNOTS_COLUMN] == ""
    low = {k: (v * 0.2 if k[2] != "bf16" and k[4] == 1 else v) for k, v in ttft.items()}
    assert MO.fit_prefill(low, modelled)[0][MO.PREFILL_KNOTS_COLUMN].startswith(f"256:{MO.PREFILL_RATIO_FLOOR:g};")


def test_the_prefill_energy_ratio_gets_knots_without_a_floor():
    energy, modelled = {}, {}
    for model in ("a", "b", "c"):
        for b, ratio in ((1, 0.8), (32, 1.6)):  # fp8-like: below 1 at 256 tokens, above from 8192
            energy[_cell(model, "bf16", b)], modelled[_cell(model, "bf16", b)] = 5.0 * b, 5.0 * b
            energy[_cell(model, "torchao-fp8", b)], modelled[_cell(model, "torchao-fp8", b)] = 5.0 * b * ratio, 5.0 * b
    row = MO.fit_prefill_energy(energy, modelled)[0]
    assert row[MO.PREFILL_ENERGY_KNOTS_COLUMN] == "256:0.8;8192:1.6"
    assert MO.PREFILL_ENERGY_KNOTS_COLUMN in MO.merge([], [], [row])[0]


def test_the_knots_interpolate_in_log_log_and_hold_beyond_the_ends():
    knots = MO.parse_knots("2048:14;256:4;8192:16")  # any order
    np.testing.assert_allclose(knots[0], [256, 2048, 8192])
    got = MO.ratio_at_tokens(knots, np.array([1.0, 256, 724.077, 2048, 4096, 8192, 1e6]))
    # halfway between 256 and 2048 in log tokens: the geometric mean of 4 and 14
    np.testing.assert_allclose(got, [4, 4, np.sqrt(4 * 14), 14, np.sqrt(14 * 16), 16, 16], rtol=1e-5)
    for bad in ("", None, float("nan"), "256:4", "256:4;x:3", "256:4;256:5", "256:0;512:3", "256-4;512-3"):
        assert MO.parse_knots(bad) is None, bad


def test_the_prefill_knots_set_the_ratios_by_the_batchs_prompt_tokens(catalog):
    base = {"quant_id": "torchao-int4-wo", "engine_id": "hf-eager", "per_layer_overhead_ms": "",
            "prefill_time_ratio": "10"}
    cat, plain = copy.copy(catalog), copy.copy(catalog)
    cat.method_overhead = [{**base, MO.PREFILL_KNOTS_COLUMN: "256:4;8192:16", "prefill_energy_ratio": "1.5",
                            MO.PREFILL_ENERGY_KNOTS_COLUMN: "256:0.8;8192:1.6"}]
    plain.method_overhead = [{**base, MO.PREFILL_KNOTS_COLUMN: "", "prefill_energy_ratio": "1.5"}]  # the medians
    args = (["h100-sxm"], ["qwen2.5-7b-instruct"], ["torchao-int4-wo", "bf16"], ["hf-eager", "hf-compiled"],
            [1, 8, 32, 64], 256, 128)
    c, c0 = Candidates.grid(cat, *args), Candidates.grid(plain, *args)
    ratio, median = F.physics(c).prefill_time_ratio, F.physics(c0).prefill_time_ratio
    hit = (c.quant_idx == cat.quants.index["torchao-int4-wo"]) & (c.engine_idx == cat.engines.index["hf-eager"])
    tokens = c.batch_size * 256.0
    np.testing.assert_allclose(ratio[hit], MO.ratio_at_tokens(MO.parse_knots("256:4;8192:16"), tokens[hit]))
    assert ratio[hit & (tokens == 256)] == pytest.approx(4.0) and ratio[hit & (tokens == 16384)] == pytest.approx(16)
    np.testing.assert_allclose(median[hit], 10.0)
    np.testing.assert_allclose(ratio[~hit], median[~hit])  # other methods and engines: unchanged (1 here)
    energy = F.physics(c).prefill_energy_ratio
    np.testing.assert_allclose(energy[hit], MO.ratio_at_tokens(MO.parse_knots("256:0.8;8192:1.6"), tokens[hit]))
    np.testing.assert_allclose(F.physics(c0).prefill_energy_ratio[hit], 1.5)
    np.testing.assert_allclose(energy[~hit], 1.0)
    e, e0 = analytic.estimate(F.physics(c), c), analytic.estimate(F.physics(c0), c0)
    np.testing.assert_allclose(e.t_prefill[hit] / e0.t_prefill[hit], ratio[hit] / 10.0)
    np.testing.assert_allclose(e.prefill_energy_j, e.prefill_power_w * e.t_prefill * F.physics(c).prefill_energy_ratio)
    # the trees' prefill ratio feature reads the median, not the knots: every feature is the same with and without
    np.testing.assert_array_equal(F.build(c), F.build(c0))
    np.testing.assert_allclose(e.t_step, e0.t_step)  # the decode step does not see it


def test_prefill_times_take_the_median_of_a_cells_rows():
    k = _cell("a", "bf16", 8)
    got = MO.prefill_times([k, k, k, _cell("b", "bf16", 1)], [100.0, 300.0, 200.0, float("nan")])
    assert got == {k: pytest.approx(200.0)}


def test_merge_extends_the_decode_rows_with_the_prefill_columns():
    decode = [{"quant_id": "bnb-int8", "engine_id": "hf-eager", "per_layer_overhead_ms": 2.0, "n_pairs": 4},
              {"quant_id": "bnb-nf4", "engine_id": "hf-eager", "per_layer_overhead_ms": 0.3, "n_pairs": 5}]
    prefill = [{"quant_id": "bnb-int8", "engine_id": "hf-eager", "prefill_time_ratio": 3.0, "prefill_p10": 2.0,
                "prefill_p90": 4.0, "prefill_n_pairs": 6},
               {"quant_id": "torchao-fp8", "engine_id": "hf-eager", "prefill_time_ratio": 4.0, "prefill_p10": 3.0,
                "prefill_p90": 5.0, "prefill_n_pairs": 3}]
    rows = {(r["quant_id"], r["engine_id"]): r for r in MO.merge(decode, prefill)}
    assert rows[("bnb-int8", "hf-eager")] == {**decode[0], **{k: v for k, v in prefill[0].items()
                                                              if k in MO.PREFILL_COLUMNS}}
    assert all(rows[("bnb-nf4", "hf-eager")][c] == "" for c in MO.PREFILL_COLUMNS)  # too few prefill pairs
    assert rows[("bnb-nf4", "hf-eager")]["per_layer_overhead_ms"] == 0.3
    fp8 = rows[("torchao-fp8", "hf-eager")]  # a prefill fit without a decode fit: empty decode columns
    assert fp8["prefill_time_ratio"] == 4.0 and fp8["per_layer_overhead_ms"] == "" and fp8["n_pairs"] == ""
    assert MO.merge([], []) == []


def test_modelled_prefill_times_are_the_analytic_prefill_without_the_ratio(catalog):
    cells = [("h100-sxm", "qwen2.5-7b-instruct", q, e, b, 256, 128)
             for q in ("bf16", "torchao-fp8", "bnb-int8") for e in ("hf-eager", "hf-compiled") for b in (1, 32)]
    got = MO.modelled_prefill_ms(catalog, cells)
    np.testing.assert_allclose([got[k] for k in cells], _estimate_without_method_fits(catalog, cells).t_prefill * 1e3)
    fp8, bf16 = (got[("h100-sxm", "qwen2.5-7b-instruct", q, "hf-eager", 32, 256, 128)] for q in ("torchao-fp8", "bf16"))
    assert fp8 < 0.7 * bf16  # the roofline credits fp8 its tensor rate: what the ratio takes back


def test_the_prefill_ratio_scales_the_prefill_only(catalog):
    cat = copy.copy(catalog)
    cat.method_overhead = [{"quant_id": "torchao-fp8", "engine_id": "hf-eager", "per_layer_overhead_ms": "",
                            "prefill_time_ratio": "2.5"},
                           {"quant_id": "bnb-int8", "engine_id": "hf-eager", "per_layer_overhead_ms": "1.0",
                            "prefill_time_ratio": ""}]  # empty: no ratio (1)
    plain = copy.copy(catalog)
    plain.method_overhead = [{"quant_id": "bnb-int8", "engine_id": "hf-eager", "per_layer_overhead_ms": "1.0"}]
    args = (["h100-sxm", "rtx4060ti-16gb"], ["qwen2.5-7b-instruct"], ["torchao-fp8", "bnb-int8", "bf16"],
            ["hf-eager", "hf-compiled"], [1, 32], 256, 128)
    c_with, c_without = Candidates.grid(cat, *args), Candidates.grid(plain, *args)
    e1, e0 = analytic.estimate(F.physics(c_with), c_with), analytic.estimate(F.physics(c_without), c_without)
    hit = (c_with.quant_idx == cat.quants.index["torchao-fp8"]) & (c_with.engine_idx == cat.engines.index["hf-eager"])
    assert hit.any() and (~hit).any()
    np.testing.assert_allclose(e1.t_prefill[hit], 2.5 * e0.t_prefill[hit])
    np.testing.assert_allclose(e1.ttft_ms[hit], 2.5 * e0.ttft_ms[hit])
    np.testing.assert_allclose(e1.prefill_energy_j, e1.prefill_power_w * e1.t_prefill)
    # the longer prefill spends less of its time at the roofline: its power never rises
    assert (e1.prefill_power_w[hit] <= e0.prefill_power_w[hit] + 1e-9).all()
    assert (e1.prefill_energy_j[hit] > e0.prefill_energy_j[hit]).all()
    for name in ("t_prefill", "ttft_ms", "prefill_energy_j", "prefill_power_w"):
        np.testing.assert_allclose(getattr(e1, name)[~hit], getattr(e0, name)[~hit], err_msg=name)
    for name in ("t_step", "tokens_per_s", "energy_per_token_j", "power_w", "memory_gb"):
        np.testing.assert_allclose(getattr(e1, name), getattr(e0, name), err_msg=name)  # decode unchanged
    # one feature reads the ratio, the method's analytic prefill time over the 16-bit one's, in log
    X1, X0 = F.build(c_with), F.build(c_without)
    col = F.FEATURE_NAMES.index("q_log_analytic_prefill_ratio")
    np.testing.assert_allclose(X1[hit, col] - X0[hit, col], np.log(2.5))
    np.testing.assert_allclose(X1[~hit, col], X0[~hit, col])
    others = [i for i in range(len(F.FEATURE_NAMES)) if i != col]
    np.testing.assert_array_equal(X1[:, others], X0[:, others])


def _prefill_frame(catalog, held_out_ttft: float = 50.0):
    """bf16 and torchao-fp8 rows of four models on an H100: fp8's TTFT is 3, 4, 5 x bf16's for three models
    and `held_out_ttft` x for the fourth (qwen2.5-7b, the held-out one)."""
    models = ["qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct"]
    rows = []
    for m, x in zip(models, (3.0, 4.0, 5.0, held_out_ttft), strict=True):
        for quant, ttft in (("bf16", 100.0), ("torchao-fp8", 100.0 * x)):
            rows.append({"gpu_id": "h100-sxm", "model": m, "quant": quant, "engine": "hf-eager", "batch_size": 32.0,
                         "prompt_tokens": 256.0, "output_tokens": 128.0, "kv_cache_bits": np.nan,
                         "scope_id": "gpu-counter", "origin": "ours", "tokens_per_s": 1000.0, "ttft_ms": ttft})
    return pd.DataFrame(rows)


def test_cross_validation_refits_the_prefill_ratio_without_the_held_out_rows(catalog):
    from recommender.costmodel import train as T

    cat = copy.copy(catalog)
    cat.method_overhead = [{"quant_id": "torchao-fp8", "engine_id": "hf-eager", "per_layer_overhead_ms": "",
                            "prefill_time_ratio": "1.0"}]  # something to refit
    frame = _prefill_frame(catalog)
    train = np.flatnonzero(frame["model"] != "qwen2.5-7b-instruct")
    held = np.flatnonzero(frame["model"] == "qwen2.5-7b-instruct")
    fp8 = held[frame["quant"].to_numpy()[held] == "torchao-fp8"]
    _, base_fold = T._fold_refit(frame, cat, frame["tokens_per_s"].to_numpy(float), refit_engine_constants=False)(train)
    # the held-out TTFTs moved (x50 -> x500, and its bf16 row too): the fold's baseline does not
    moved = _prefill_frame(catalog, held_out_ttft=500.0)
    moved.loc[held, "ttft_ms"] *= 7.0
    _, base_moved = T._fold_refit(moved, cat, moved["tokens_per_s"].to_numpy(float), refit_engine_constants=False)(train)
    for t in base_fold:
        np.testing.assert_array_equal(base_moved[t], base_fold[t], err_msg=t)
    # given every row, the held-out pair informs the ratio (the median of 4 moves towards it)
    _, base_all = T._fold_refit(frame, cat, frame["tokens_per_s"].to_numpy(float), refit_engine_constants=False)(np.arange(len(frame)))
    assert np.all(base_all["ttft_ms"][fp8] > base_fold["ttft_ms"][fp8])
    # the fold's ratio: the median over the three training models of measured / modelled ratio to bf16
    plain = copy.copy(cat)
    plain.method_overhead = []
    _, base_none = T._features_and_base(frame, plain)
    pre = base_none["ttft_ms"]
    ratios = [x / (pre[q] / pre[b]) for m, x in zip(frame["model"].unique()[:3], (3.0, 4.0, 5.0), strict=True)
              for q, b in [(np.flatnonzero((frame["model"] == m) & (frame["quant"] == qq))[0]
                            for qq in ("torchao-fp8", "bf16"))]]
    np.testing.assert_allclose(base_fold["ttft_ms"][fp8] / pre[fp8], np.median(ratios), rtol=1e-4)
    bf16 = held[frame["quant"].to_numpy()[held] == "bf16"]
    np.testing.assert_allclose(base_fold["ttft_ms"][bf16], pre[bf16])  # 16-bit: no ratio
    no_ttft = frame.assign(ttft_ms=np.nan)  # no prefill pairs: the same decode refit, no ratio
    _, base_no_ttft = T._fold_refit(no_ttft, cat, no_ttft["tokens_per_s"].to_numpy(float), refit_engine_constants=False)(train)
    np.testing.assert_allclose(base_no_ttft["ttft_ms"], pre)
    for t in ("tokens_per_s", "energy_per_token_j"):
        np.testing.assert_array_equal(base_fold[t], base_no_ttft[t], err_msg=t)  # decode untouched


def test_the_refit_fits_the_prefill_ratio_on_the_ttfts_it_is_given():
    """`_fold_refit` fits the prefill ratios on the measured TTFTs handed to it (the design's `ttft_ms`):
    doubling torchao-fp8's TTFTs moves fp8's analytic TTFT by the refitted ratio, and no 16-bit row's;
    the model card says the ratios are refitted per fold."""
    from recommender.costmodel import train as T

    data, catalog = T.load_training_data()
    frame = data.frame
    tps, ttft = frame["tokens_per_s"].to_numpy(float), frame["ttft_ms"].to_numpy(float)
    fp8 = (frame["quant"] == "torchao-fp8").to_numpy() & (frame["origin"] == "ours").to_numpy()
    every = np.arange(len(frame))
    _, base = T._fold_refit(frame, catalog, tps, refit_engine_constants=False, measured_ttft=ttft)(every)
    _, moved = T._fold_refit(frame, catalog, tps, refit_engine_constants=False,
                             measured_ttft=np.where(fp8, 2 * ttft, ttft))(every)
    ratio = moved["ttft_ms"] / base["ttft_ms"]
    sixteen = frame["quant"].isin(["bf16", "fp16"]).to_numpy()
    assert fp8.any() and np.allclose(ratio[sixteen], 1.0)
    assert np.all(ratio[fp8] > 1.5) and np.all(ratio[fp8] < 2.5)  # the median pair ratio doubled (floor at 1)
    text = " ".join(T._refit_paragraph([T.REFIT_ENGINE_CONSTANTS, T.REFIT_METHOD_OVERHEAD]))
    assert "prefill time ratios" in text



def test_prefill_energy_ratio_is_the_median_pair_ratio_without_a_floor():
    energy, modelled = {}, {}
    for model, measured in (("a", 0.8), ("b", 1.2), ("c", 1.5)):
        energy[_cell(model, "bf16", 8)], modelled[_cell(model, "bf16", 8)] = 100.0, 50.0
        energy[_cell(model, "torchao-int4-wo", 8)] = 100.0 * measured
        modelled[_cell(model, "torchao-int4-wo", 8)] = 50.0
    rows = {r["quant_id"]: r for r in MO.fit_prefill_energy(energy, modelled)}
    r = rows["torchao-int4-wo"]
    assert r["prefill_energy_ratio"] == pytest.approx(1.2) and r["prefill_energy_n_pairs"] == 3
    assert r["prefill_energy_p10"] == pytest.approx(0.88)  # unclipped spread
    energy[_cell("b", "torchao-int4-wo", 8)] = 10.0  # the median falls below 1: kept (no floor)
    assert MO.fit_prefill_energy(energy, modelled)[0]["prefill_energy_ratio"] == pytest.approx(0.8)
    merged = MO.merge([], [], MO.fit_prefill_energy(energy, modelled))
    assert merged[0]["prefill_time_ratio"] == "" and merged[0]["prefill_energy_ratio"] == pytest.approx(0.8)


def test_the_prefill_energy_ratio_scales_the_prefill_energy_only(catalog):
    cat = copy.copy(catalog)
    cat.method_overhead = [{"quant_id": "torchao-fp8", "engine_id": "hf-eager", "per_layer_overhead_ms": "",
                            "prefill_time_ratio": "2.5", "prefill_energy_ratio": "1.3"}]
    plain = copy.copy(catalog)
    plain.method_overhead = [{**cat.method_overhead[0], "prefill_energy_ratio": ""}]
    args = (["h100-sxm"], ["qwen2.5-7b-instruct"], ["torchao-fp8", "bf16"], ["hf-eager"], [1, 32], 256, 128)
    c1, c0 = Candidates.grid(cat, *args), Candidates.grid(plain, *args)
    e1, e0 = analytic.estimate(F.physics(c1), c1), analytic.estimate(F.physics(c0), c0)
    hit = c1.quant_idx == cat.quants.index["torchao-fp8"]
    np.testing.assert_allclose(e1.prefill_energy_j[hit], 1.3 * e0.prefill_energy_j[hit])
    np.testing.assert_allclose(e1.prefill_energy_j[~hit], e0.prefill_energy_j[~hit])
    for name in ("t_prefill", "ttft_ms", "prefill_power_w", "energy_per_token_j", "tokens_per_s"):
        np.testing.assert_allclose(getattr(e1, name), getattr(e0, name), err_msg=name)
    # what the fit compares with: the analytic prefill energy with the time ratio, without the energy ratio
    cells = [("h100-sxm", "qwen2.5-7b-instruct", q, "hf-eager", b, 256, 128) for q in ("torchao-fp8", "bf16")
             for b in (1, 32)]
    got = MO.modelled_prefill_energy_j(cat, cells)
    fp8 = ("h100-sxm", "qwen2.5-7b-instruct", "torchao-fp8", "hf-eager", 32, 256, 128)
    i = int(np.flatnonzero(hit & (c1.batch_size == 32))[0])
    assert got[fp8] == pytest.approx(e0.prefill_energy_j[i])


def _h200_held_out(column: str):
    """The committed training data with the H200 held out: (trainer module, catalogue, frame, its tokens/s, its
    `column`, held-out mask, training row indices, quantized-row mask)."""
    from recommender.costmodel import train as T

    data, catalog = T.load_training_data()
    frame = data.frame
    held = (frame["gpu_id"] == "h200").to_numpy()
    quant = ~frame["quant"].isin(["bf16", "fp16", "fp32"]).to_numpy()
    return (T, catalog, frame, frame["tokens_per_s"].to_numpy(float), frame[column].to_numpy(float), held,
            np.flatnonzero(~held), quant)


def test_a_folds_prefill_energy_ratio_ignores_the_held_out_prefill_energies():
    """Perturbing the held-out card's measured prefill energies leaves the fold's baseline as it was, while the
    same perturbation of every row moves the all-row fit."""
    T, catalog, frame, tps, pre, held, train, quant = _h200_held_out("prefill_energy_j")
    moved = np.where(held & quant, 3 * pre, pre)
    fit = lambda p: T._fold_refit(frame, catalog, tps, refit_engine_constants=False, measured_prefill_j=p)  # noqa: E731
    _, b0 = fit(pre)(train)
    _, b1 = fit(moved)(train)
    np.testing.assert_array_equal(b1["prefill_energy_j"], b0["prefill_energy_j"])
    _, a0 = fit(pre)(np.arange(len(frame)))
    _, a1 = fit(np.where(quant, 3 * pre, pre))(np.arange(len(frame)))
    assert not np.allclose(a1["prefill_energy_j"], a0["prefill_energy_j"])


# ---- the busy share of the method overhead in the decode power -------------------------------------------
def test_decode_busy_fraction_is_the_median_pair_value_net_of_the_machines_offset():
    power, parts = {}, {}
    for model, busy in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        # the 16-bit cell: modelled 380 W, measured 400 W on this machine (x1.05 its offset)
        power[_cell(model, "bf16", 8)], parts[_cell(model, "bf16", 8)] = 400.0, (380.0, 0.0)
        # the method: 250 W modelled without a busy share, +200 W per unit of share; measured = offset x that
        power[_cell(model, "torchao-int4-wo", 8)] = (400.0 / 380.0) * (250.0 + 200.0 * busy)
        parts[_cell(model, "torchao-int4-wo", 8)] = (250.0, 200.0)
        # a method whose overhead adds under 1 W per unit of share says nothing about it: left out
        power[_cell(model, "torchao-fp8", 8)], parts[_cell(model, "torchao-fp8", 8)] = 300.0, (290.0, 0.5)
        # one drawing less than modelled clips at 0
        power[_cell(model, "bnb-nf4", 8)], parts[_cell(model, "bnb-nf4", 8)] = 200.0, (300.0, 100.0)
    rows = {r["quant_id"]: r for r in MO.fit_decode_busy_fraction(power, parts)}
    assert rows["torchao-int4-wo"]["decode_busy_fraction"] == pytest.approx(0.3)
    assert rows["torchao-int4-wo"]["decode_busy_n_pairs"] == 3
    assert "torchao-fp8" not in rows
    assert rows["bnb-nf4"]["decode_busy_fraction"] == 0.0 and rows["bnb-nf4"]["decode_busy_p10"] < 0
    got = MO.decode_powers([_cell("a", "bf16", 8)] * 3, [0.5, 0.4, None], [1000.0, 1000.0, 900.0])
    assert got == {_cell("a", "bf16", 8): pytest.approx(450.0)}  # median of 500 and 400 W; a row without J left out


def test_the_busy_share_raises_the_decode_power_only_and_never_past_the_tdp(catalog):
    cat, plain = copy.copy(catalog), copy.copy(catalog)
    cat.method_overhead = [{"quant_id": "torchao-int4-wo", "engine_id": "hf-eager", "per_layer_overhead_ms": "0.3",
                            "decode_busy_fraction": "0.5"}]
    plain.method_overhead = [{"quant_id": "torchao-int4-wo", "engine_id": "hf-eager", "per_layer_overhead_ms": "0.3"}]
    args = (["h100-sxm", "rtx4060ti-16gb"], ["qwen2.5-7b-instruct"], ["torchao-int4-wo", "bf16"],
            ["hf-eager", "hf-compiled"], [1, 8, 32], 256, 128)
    c, c0 = Candidates.grid(cat, *args), Candidates.grid(plain, *args)
    e, e0 = analytic.estimate(F.physics(c), c), analytic.estimate(F.physics(c0), c0)
    hit = (c.quant_idx == cat.quants.index["torchao-int4-wo"]) & (c.engine_idx == cat.engines.index["hf-eager"])
    assert hit.any() and (~hit).any()
    cells = [("h100-sxm", "qwen2.5-7b-instruct", "torchao-int4-wo", "hf-eager", b, 256, 128) for b in (1, 8, 32)]
    parts = MO.modelled_decode_power_parts(plain, cells)
    with_share = MO.modelled_decode_power_parts(cat, cells)  # the fit's baseline has no busy share
    assert all(with_share[k] == pytest.approx(parts[k]) for k in cells)
    tdp = c.col("gpu_tdp_w")[hit][0]
    on = hit & (c.gpu_idx == cat.gpus.index["h100-sxm"])
    want = [min(tdp, parts[k][0] + 0.5 * parts[k][1]) for k in cells]
    np.testing.assert_allclose(e.power_w[on], want)
    assert (e.power_w[hit] > e0.power_w[hit]).all() and (e.power_w <= c.col("gpu_tdp_w") + 1e-9).all()
    np.testing.assert_allclose(e.energy_per_token_j, e.power_w * e.t_step / c.batch_size)
    for name in ("t_step", "tokens_per_s", "t_prefill", "ttft_ms", "prefill_power_w", "prefill_energy_j"):
        np.testing.assert_allclose(getattr(e, name), getattr(e0, name), err_msg=name)
    np.testing.assert_allclose(e.power_w[~hit], e0.power_w[~hit])
    # the trees' features read the power without the share: a change of the share moves the baseline only
    np.testing.assert_array_equal(F.build(c), F.build(c0))
    np.testing.assert_allclose(e.energy_per_token_j_unscaled, e0.energy_per_token_j)


def test_a_folds_decode_busy_fraction_ignores_the_held_out_decode_powers():
    """Tripling the held-out card's measured decode J/token of its quantized rows leaves the fold's J/token
    baseline as it was, while the same change on every row moves the all-row fit."""
    T, catalog, frame, tps, dec, held, train, quant = _h200_held_out("decode_energy_per_token_j")

    def fit(decode_j):
        f = frame.copy()
        f["decode_energy_per_token_j"] = decode_j
        return T._fold_refit(f, catalog, tps, refit_engine_constants=False)

    _, b0 = fit(dec)(train)
    _, b1 = fit(np.where(held & quant, 3 * dec, dec))(train)
    np.testing.assert_array_equal(b1["energy_per_token_j"], b0["energy_per_token_j"])
    _, a0 = fit(dec)(np.arange(len(frame)))
    _, a1 = fit(np.where(quant, 3 * dec, dec))(np.arange(len(frame)))
    assert not np.allclose(a1["energy_per_token_j"], a0["energy_per_token_j"])
