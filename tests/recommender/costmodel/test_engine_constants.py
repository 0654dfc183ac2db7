"""The engines' analytic constants refitted per cross-validation fold (recommender/costmodel/engine_constants.py):
with nothing held out the refit is engines.yaml; a fold's baseline never sees the held-out rows."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from recommender.costmodel import engine_constants as EC
from recommender.costmodel import engine_overhead as EO
from recommender.paths import catalog_dir


@pytest.fixture(scope="module")
def shipped():
    from recommender.costmodel import train as T

    data, catalog = T.load_training_data()
    return T, data.frame, catalog, EC.ToolRows(catalog)


def test_nothing_held_out_refits_engines_yaml(shipped):
    _, _, catalog, tools = shipped
    fits = tools.refit(catalog, EC.HeldOut())
    engines = {e["id"]: e.get("analytic") or {} for e in yaml.safe_load((catalog_dir() / "engines.yaml").read_text())}
    assert set(fits) == set(EO.ENGINES)
    for eng, f in fits.items():
        assert not f.kept, eng
        for k in EC.DIGITS:
            assert f.values[k] == engines[eng].get(k), (
                f"{eng}.{k}: the all-row refit differs from engines.yaml (stale? run the tools)")
    assert fits["hf-eager"].n_power >= 20 and fits["vllm"].n_power == 0  # vllm keeps analytic.PARAMS' power
    assert fits["hf-compiled"].n_prefill >= 20 and fits["vllm"].n_prefill == 0  # and the decode's prefill time
    assert fits["vllm"].values["prefill_efficiency"] is None


def test_the_trainers_refit_of_every_row_is_the_shipped_design(shipped):
    T, frame, catalog, tools = shipped
    d = T.design(frame, catalog)
    assert d.refit.engine_constants and d.refit.method_overhead
    X, base = d.refit(np.arange(len(frame)))
    np.testing.assert_array_equal(X, d.X)
    for t, v in d.base.items():
        np.testing.assert_array_equal(base[t], v, err_msg=t)


def _perturbed(catalog, card: str, factor: float) -> EC.ToolRows:
    """The tools' rows with every measurement of `card` scaled (step times, TTFT and power)."""
    tools = EC.ToolRows(catalog)
    for rows in tools.overhead.values():
        rows.seconds = [s * factor if g == card else s for g, s in zip(rows.gpu, rows.seconds, strict=True)]
    for rows in tools.power.values():
        rows["power"] = [p * factor if g == card else p for g, p in zip(rows["gpu"], rows["power"], strict=True)]
    for rows in tools.prefill.values():
        rows["ttft_s"] = [t * factor if g == card else t for g, t in zip(rows["gpu"], rows["ttft_s"], strict=True)]
    return tools


@pytest.mark.parametrize("card", ["h200", "a40"])
def test_a_logo_folds_baseline_never_sees_the_held_out_cards_measurements(shipped, card):
    """Scaling the held-out card's tool rows moves the all-row fit (the constants shipped in engines.yaml)
    but not the baseline of the fold that holds the card out."""
    T, frame, catalog, tools = shipped
    d = T.design(frame, catalog)
    train = np.flatnonzero(d.gpu_group != card)
    assert 0 < len(train) < len(frame)
    tps = d.measured["tokens_per_s"]
    plain = T._fold_refit(frame, catalog, tps, tool_rows=tools)
    moved = T._fold_refit(frame, catalog, tps, tool_rows=_perturbed(catalog, card, 1.3))
    X0, base0 = plain(train)
    X1, base1 = moved(train)
    np.testing.assert_array_equal(X1, X0)
    for t in base0:
        np.testing.assert_array_equal(base1[t], base0[t], err_msg=t)
    _, all0 = plain(np.arange(len(frame)))
    _, all1 = moved(np.arange(len(frame)))
    assert not np.allclose(all1["tokens_per_s"], all0["tokens_per_s"])  # the card's rows inform the all-row fit
    if card == "h200":  # the prefill constants: fitted on our records only (H100 and H200)
        assert not np.allclose(all1["ttft_ms"], all0["ttft_ms"], equal_nan=True)
    # and the fold's constants are not the shipped ones
    held = np.ones(len(frame), dtype=bool)
    held[train] = False
    fold = tools.refit(catalog, EC.HeldOut.of(T._frame_keys(frame, catalog), held))
    assert EC.constants_key(fold) != EC.constants_key(tools.refit(catalog, EC.HeldOut()))


def test_held_out_keys_are_those_no_training_row_has():
    keys = EC.RowKeys(silicon=["A", "A", "B", "C"], arch=["m1", "m2", "m1", "m3"], twin=["c1", "c2", "c1", "c3"])
    out = EC.HeldOut.of(keys, np.array([False, False, True, True]))
    assert out.silicon == {"B", "C"} and out.arch == {"m3"} and out.twin == {"c3"}
    tool = EC.RowKeys(silicon=["A", "B", "A", "A", None], arch=["m1", "m1", "m3", "m2", None],
                      twin=["c1", "c1", "c9", "c3", None])
    # by card (B), by architecture (m3), by cell without the card (c3); unresolved keys: kept
    assert out.drops(tool).tolist() == [False, True, True, True, False]
    assert not EC.HeldOut.of(keys, np.zeros(4, dtype=bool))


def test_the_stable_only_rule_is_decided_on_the_rows_kept(shipped):
    """Our rows of an engine: stable ones only where at least MIN_STABLE of the rows kept are stable."""
    _, _, catalog, _ = shipped
    rows = EO.Rows()
    for i, (gpu, stable) in enumerate([("h100-sxm", True)] * 3 + [("h200", True), ("h200", False)]):
        rows.add(gpu=gpu, model="qwen2.5-7b-instruct", quant="bf16", batch=1.0, prompt=128.0 + i, output=128.0,
                 kv_bits=float("nan"), seconds=0.01, e2e=False, origin="t", scope=EO.OWN_SCOPE, stable=stable)
    assert EO.stable_rule(rows) == ([0, 1, 2, 3], True)
    tools = EC.ToolRows.__new__(EC.ToolRows)
    tools.overhead, tools.own = {"hf-compiled": rows}, {"hf-compiled": np.ones(len(rows), dtype=bool)}
    tools.overhead_keys = {"hf-compiled": EC.RowKeys.of(
        catalog, rows.gpu, rows.model, rows.quant, ["hf-compiled"] * len(rows), rows.batch, rows.prompt,
        rows.output, rows.scope, rows.kv_bits)}
    h100 = EC.silicon(catalog)["h100-sxm"]
    assert tools.overhead_selection("hf-compiled", EC.HeldOut(silicon=frozenset({h100}))).tolist() == [3, 4]
    assert tools.overhead_selection("hf-compiled", EC.HeldOut()).tolist() == [0, 1, 2, 3]


def test_a_shared_tool_rows_refits_each_fold_as_a_fresh_one(shipped):
    """The trainer shares one ToolRows (and its fit caches) across folds: each fold's constants equal those a
    fresh ToolRows fits for it, whatever folds ran before (H100 held out: the compiled constants from H200 rows)."""
    T, frame, catalog, tools = shipped
    d = T.design(frame, catalog)
    keys = T._frame_keys(frame, catalog)
    folds = [g for g in ("h100-sxm", "a40", "h200") if g in set(d.gpu_group)]
    assert len(folds) == 3
    shared = [EC.constants_key(tools.refit(catalog, EC.HeldOut.of(keys, d.gpu_group == g))) for g in folds]
    for g, got in zip(reversed(folds), reversed(shared), strict=True):  # another order, fresh caches
        fresh = EC.ToolRows(catalog)
        assert EC.constants_key(fresh.refit(catalog, EC.HeldOut.of(keys, d.gpu_group == g))) == got, g
    assert len(set(shared)) == 3  # each card's rows move its fold's constants
    with pytest.raises(ValueError, match="other than the one"):
        tools.refit(T.load_training_data()[1], EC.HeldOut())


def test_an_engine_left_with_too_few_fittable_rows_keeps_its_constants():
    """The row count that decides whether an engine is refitted is taken after fit_engine's own drop of rows
    measured faster than the roofline: a fold whose remaining rows are mostly such keeps the catalogue values."""
    from recommender.costmodel import train as T

    data, catalog = T.load_training_data()
    tools = EC.ToolRows(catalog)
    assert not tools.refit(catalog, EC.HeldOut())["hf-compiled"].kept
    fittable = tools._fittable["hf-compiled"]
    fittable[np.flatnonzero(fittable)[EO.MIN_FIT_ROWS - 1:]] = False  # only MIN_FIT_ROWS - 1 rows left to fit
    fit = tools.refit(catalog, EC.HeldOut())["hf-compiled"]
    assert {"roofline_efficiency", "per_token_overhead_ms"} <= set(fit.kept)
    assert fit.n_overhead > EO.MIN_FIT_ROWS  # the rows were there; too few of them could be fitted
