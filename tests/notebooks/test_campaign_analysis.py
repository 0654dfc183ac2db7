"""notebooks/campaign_analysis.py on the committed H100 records (no GPU, no network)."""

from __future__ import annotations

import json
import math
import re

import pytest

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

from measure.grid import load_grid  # noqa: E402
from notebooks import campaign_analysis as ca  # noqa: E402 - after the optional-dependency skips

MODEL = "qwen2.5-7b-instruct"


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return ca.load_records()


@pytest.fixture(scope="module")
def cat() -> dict[str, pd.DataFrame]:
    return ca.load_catalog_tables()


@pytest.fixture(scope="module")
def q7(records) -> pd.DataFrame:
    return records[records["model"] == MODEL]


# --- loading -------------------------------------------------------------------------------------------
def test_records_load_every_line_and_keep_the_rejected_slice_apart(records):
    folder = ca.MEASUREMENTS
    lines = sum(1 for f in folder.glob("*.jsonl") for ln in f.read_text().splitlines() if ln.strip())
    assert len(records) == lines
    assert not records["rejected"].any()
    both = ca.load_records(include_rejected=True)
    rejected = sum(1 for f in (folder / "rejected").glob("*.jsonl") for ln in f.read_text().splitlines() if ln.strip())
    assert both["rejected"].sum() == rejected
    assert set(records["status"]) <= {"ok", "failed", "skipped"}


def test_strategy_mapping_matches_quants_yaml():
    yaml = pytest.importorskip("yaml")
    quants = yaml.safe_load((ca.CATALOG / "quants.yaml").read_text())
    for q in quants:
        assert ca.strategy_of(q["id"]) == q.get("paper_strategy"), q["id"]


# --- pairing and Table 2 ---------------------------------------------------------------------------------
def test_pairs_sign_convention_and_decomposition(q7):
    pairs = ca.paired_energy(q7, "fp32")
    assert len(pairs) > 0
    assert (pairs["baseline"] == "fp32").all() and "fp32" not in set(pairs["quant"])
    # positive = the method uses less energy than the baseline
    assert np.allclose(pairs["energy_reduction_pct"], (1 - pairs["e_method_j"] / pairs["e_base_j"]) * 100)
    saves = pairs["e_method_j"] < pairs["e_base_j"]
    assert ((pairs["energy_reduction_pct"] > 0) == saves).all()
    # J/token = W / (tokens/s) in every record, so the ratio decomposes exactly
    assert np.allclose(pairs["energy_ratio"], pairs["power_ratio"] / pairs["speedup"], rtol=1e-6)
    # every pair matches on model, engine, batch and workload
    for r in pairs.itertuples():
        base = q7[(q7["quant"] == "fp32") & (q7["engine"] == r.engine) & (q7["batch_size"] == r.batch_size)
                  & (q7["prompt_tokens"] == r.prompt_tokens) & (q7["output_tokens"] == r.output_tokens)
                  & (q7["status"] == "ok")]
        assert math.isclose(base["decode_energy_per_token_j"].iloc[-1], r.e_base_j)


def test_table2_has_one_row_per_strategy_with_paper_values(q7, cat):
    for baseline in ("fp32", "bf16"):
        pairs = ca.paired_energy(q7, baseline)
        t = ca.table2(pairs, cat["quant_accuracy"], MODEL)
        assert list(t.index) == list(ca.STRATEGIES)
        for s in ca.STRATEGIES:
            assert t.loc[s, "paper_energy_reduction_pct"] == ca.PAPER_TABLE2[s]["energy_reduction_pct"]
            p = ca.select_workload(pairs, ca.REFERENCE_WORKLOAD)  # the table's default workload
            p = p[p["quant"].isin(ca.STRATEGY_METHODS[s])]
            assert t.loc[s, "n_pairs"] == len(p)
            if len(p):
                assert t.loc[s, "energy_reduction_worst_pct"] <= t.loc[s, "energy_reduction_median_pct"] \
                    <= t.loc[s, "energy_reduction_best_pct"]
                assert math.isclose(t.loc[s, "energy_reduction_median_pct"], p["energy_reduction_pct"].median())


def test_table2_fp16_row_against_fp32_saves_energy(q7, cat):
    """Half precision against full precision: fewer bytes per token, so J/token must drop (a sanity check
    that the baseline and sign are right, not a claim about a particular number)."""
    t = ca.table2(ca.paired_energy(q7, "fp32"), cat["quant_accuracy"], MODEL)
    if t.loc["FP16", "n_pairs"] == 0:
        pytest.skip("no fp16/bf16 cells paired with fp32")
    assert t.loc["FP16", "energy_reduction_worst_pct"] > 0


def test_table2_handles_missing_accuracy(q7, cat):
    pairs = ca.paired_energy(q7, "bf16")
    t = ca.table2(pairs, cat["quant_accuracy"], MODEL)
    for s in ca.STRATEGIES:
        has_cited = any(ca.cited_accuracy_change(cat["quant_accuracy"], q, MODEL) for q in ca.STRATEGY_METHODS[s])
        if not has_cited:
            assert math.isnan(t.loc[s, "accuracy_loss_pp"]) and math.isnan(t.loc[s, "eor_improvement_pct"])
            assert t.loc[s, "accuracy_evidence"].startswith("missing")
    # no accuracy table at all: energy columns still there, accuracy NaN
    t0 = ca.table2(pairs, None, MODEL)
    assert t0["accuracy_loss_pp"].isna().all() and t0["eor_improvement_pct"].isna().all()
    assert t0["energy_reduction_median_pct"].notna().any()


def test_eor_improvement_uses_cited_accuracy_when_present(q7):
    """A synthetic cited row for bnb-int8 turns the INT8 EOR improvement on, with the right formula."""
    qa = pd.DataFrame([{"quant_id": "bnb-int8", "model_id": MODEL, "task": "mmlu", "baseline_value": 0.70,
                        "quant_value": 0.63, "delta_abs": -0.07, "source": "test", "notes": "method=test"}])
    pairs = ca.paired_energy(q7, "bf16")
    t = ca.table2(pairs, qa, MODEL)
    p = pairs[pairs["quant"] == "bnb-int8"]
    if p.empty:
        pytest.skip("no bnb-int8 pairs")
    assert math.isclose(t.loc["INT8", "accuracy_loss_pp"], 7.0)
    expected = ((0.63 / 0.70) / p["energy_ratio"] - 1).median() * 100
    assert math.isclose(t.loc["INT8", "eor_improvement_pct"], expected)
    assert "missing for torchao-int8-wo" in t.loc["INT8", "accuracy_evidence"]


def test_cited_accuracy_reads_the_catalogue(cat):
    a = ca.cited_accuracy_change(cat["quant_accuracy"], "torchao-int4-wo", MODEL)
    assert a is not None and a["n_tasks"] >= 1 and "auto-round" in a["source"]
    assert ca.cited_accuracy_change(cat["quant_accuracy"], "no-such-quant", MODEL) is None


def test_cited_accuracy_pools_every_model_for_the_strategy_claim():
    qa = pd.DataFrame([
        {"quant_id": "bnb-int8", "model_id": None, "task": "hellaswag", "delta_abs": -0.004, "source": "a"},
        {"quant_id": "torchao-int8-wo", "model_id": "yi-6b", "task": "lambada", "delta_abs": -0.02, "source": "b"},
        {"quant_id": "torchao-int8-dyn", "model_id": None, "task": "mmlu", "delta_abs": 0.001, "source": "a"},
    ])
    a = ca.cited_accuracy_any_model(qa, ca.STRATEGY_METHODS["INT8"])
    assert a["n_rows"] == 2 and a["n_sources"] == 2 and a["n_loss_above_1pp"] == 1
    assert math.isclose(a["loss_pp_min"], 0.4) and math.isclose(a["loss_pp_max"], 2.0)
    assert ca.cited_accuracy_any_model(qa, ca.STRATEGY_METHODS["FP16"]) is None
    ours, evidence, verdict, _ = ca._accuracy_finding(qa, MODEL)
    assert "INT8 (bnb-int8, torchao-int8-wo)" in ours and "FP16: no cited row" in ours
    assert "INT8: 1 of 2 cited losses within the paper's <1.0%" in verdict
    assert "Dynamic: 1 of 1" in verdict and "FP16: not checked (no cited row)" in verdict
    assert evidence.startswith("cited")
    # the paper's "<1.0%" is strict: a loss of exactly 1 pp is not within it
    edge = qa.assign(delta_abs=[-0.01, -0.02, 0.001])
    assert "INT8: 0 of 2" in ca._accuracy_finding(edge, MODEL)[2]
    assert ca._accuracy_finding(None, MODEL)[2] == "not checked"


def test_paper_consistency_flags_the_dynamic_row():
    t = ca.paper_consistency()
    assert abs(t.loc["INT8", "difference_pp"]) < 0.5 and abs(t.loc["FP16", "difference_pp"]) < 0.5
    assert math.isclose(t.loc["Dynamic", "paper_eor_improvement_pct"],
                        t.loc["Dynamic", "energy_only_eor_improvement_pct"], abs_tol=0.05)


# --- noise floor, 1 Hz error, failures, coverage ----------------------------------------------------------
def test_noise_table_covers_every_ok_cell(records):
    noise = ca.noise_table(records)
    okd = ca.ok(records)  # a cell measured in two sessions counts once (the latest)
    assert len(noise) == len(okd)
    assert noise["energy_cv"].notna().all() and noise["tokens_per_s_cv"].notna().all()
    for r in noise.itertuples():
        assert len(r.rep_energy_j) == r.repetitions == len(r.rep_tokens_per_s)
    s = ca.noise_summary(noise)
    assert s["cells"].sum() == len(okd)


def test_unstable_reasons_separate_spread_from_a_power_cap(records):
    cap, cv = "throttled: sw_power_cap", "energy CV 0.070 > 0.05"
    df = _cells(records, [  # 700 W limit; decode power = J/token x tokens/s (100 tokens/s)
        {"is_stable": True, "unstable_reason": None, "decode_energy_per_token_j": 3.0, "power_limit_w": 700.0},
        {"is_stable": False, "unstable_reason": cap, "decode_energy_per_token_j": 2.0, "power_limit_w": 700.0,
         "batch_size": 8},
        {"is_stable": False, "unstable_reason": f"{cv}; {cap}", "decode_energy_per_token_j": 4.0,
         "power_limit_w": 700.0, "batch_size": 32},
        {"is_stable": False, "unstable_reason": cv, "decode_energy_per_token_j": 1.0, "power_limit_w": 700.0,
         "batch_size": 64},
        {"is_stable": False, "unstable_reason": cap, "decode_energy_per_token_j": 7.0, "power_limit_w": 700.0,
         "prompt_tokens": LONG[0], "output_tokens": LONG[1]},
    ])
    t = ca.unstable_reasons(df)
    ref = t.xs(f"{SHORT[0]}/{SHORT[1]}", level="workload").iloc[0]
    assert ref["records"] == 4 and ref["flagged_share"] == 0.75
    assert ref["cv_share"] == 0.5 and ref["power_cap_share"] == 0.5 and ref["power_cap_only_share"] == 0.25
    assert ref["capped_decode_power_over_limit"] == pytest.approx(300 / 700)  # median of 200 and 400 W
    long = t.xs(f"{LONG[0]}/{LONG[1]}", level="workload").iloc[0]
    assert long["records"] == 1 and long["capped_decode_power_over_limit"] == pytest.approx(1.0)


def test_pairs_summary_counts_savings_and_costs_beyond_noise():
    pairs = pd.DataFrame({
        "gpu_id": ["h200"] * 4, "quant": ["bnb-nf4", "bnb-nf4", "bnb-nf4", "fp16"], "model": ["a", "b", "b", "a"],
        "energy_ratio": [0.8, 1.5, 0.97, 1.1], "within_noise": [False, False, True, True],
        "speedup": [1.2, 0.6, 1.0, 0.9]})
    t = ca.pairs_summary(pairs)
    nf4 = t.loc[("h200", "bnb-nf4")]
    assert nf4["pairs"] == 3 and nf4["architectures"] == 2 and nf4["lower"] == 2
    assert nf4["saves_beyond_noise"] == 1 and nf4["costs_beyond_noise"] == 1 and nf4["within_noise"] == 1
    assert nf4["energy_ratio_median"] == pytest.approx(0.97) and nf4["energy_ratio_max"] == pytest.approx(1.5)
    assert nf4["speedup_median"] == pytest.approx(1.0)
    fp16 = t.loc[("h200", "fp16")]
    assert fp16["lower"] == 0 and fp16["costs_beyond_noise"] == 0 and fp16["within_noise"] == 1


def test_power_capped_by_phase_places_the_cap(records):
    cap = "throttled: sw_power_cap"
    base = {"power_limit_w": 700.0, "prefill_energy_j": 70.0, "ttft_ms": 100.0}  # 700 W prefill: at the limit
    df = _cells(records, [
        {**base, "is_stable": True, "unstable_reason": None, "prefill_power_capped_frac": 0.0,
         "decode_power_capped_frac": 0.0},
        {**base, "is_stable": False, "unstable_reason": cap, "prefill_power_capped_frac": 0.9,
         "decode_power_capped_frac": 0.02, "batch_size": 8},  # forgiven for the decode fits
        {**base, "is_stable": False, "unstable_reason": cap, "prefill_power_capped_frac": 0.96,
         "decode_power_capped_frac": 0.2, "batch_size": 32, "prefill_energy_j": 35.0},  # the decode capped too
        {**base, "is_stable": False, "unstable_reason": f"energy CV 0.070 > 0.05; {cap}",
         "prefill_power_capped_frac": 0.5, "decode_power_capped_frac": 0.01, "batch_size": 64},  # a CV too
        {**base, "is_stable": False, "unstable_reason": cap, "batch_size": 128},  # before 1.2: no shares
    ])
    t = ca.power_capped_by_phase(df)
    r = t.xs(f"{SHORT[0]}/{SHORT[1]}", level="workload").iloc[0]
    assert r["records"] == 4 and r["flagged"] == 3
    assert r["prefill_capped_median"] == pytest.approx(0.9) and r["prefill_capped_max"] == pytest.approx(0.96)
    assert r["decode_capped_median"] == pytest.approx(0.02) and r["decode_capped_max"] == pytest.approx(0.2)
    assert r["unflagged_prefill_capped_max"] == 0.0
    assert r["flagged_prefill_power_over_limit"] == pytest.approx(1.0)  # median of 1.0, 0.5, 1.0
    assert r["decode_stable_by_share"] == 1
    no_shares = df.drop(columns=["prefill_power_capped_frac", "decode_power_capped_frac"])
    assert ca.power_capped_by_phase(no_shares).empty


def test_onehz_table_and_stale_reading_explanation(records):
    sc = ca.load_selfcheck()
    t = ca.onehz_table(records, sc)
    rec = t[t["origin"] != "meter self-check"]
    assert len(rec) == ca.ok(records)["energy_1hz_error_pct"].notna().sum()
    if sc:
        assert (t["origin"] == "meter self-check").sum() == len(sc["c_eq1"])
    r = np.corrcoef(rec["stale_reading_error_pct"], rec["error_pct"])[0, 1]
    assert r > 0.8
    summ = ca.onehz_summary(t)
    assert summ["windows"].sum() == len(t)


def test_failures_list_failed_records_and_grid_excludes(records):
    ex = ca.load_grid_excludes(ca.GRIDS / "h100-campaign.yaml")
    assert ex and all(e.get("reason") for e in ex)
    f = ca.failures(records, ex)
    failed = records[records["status"] != "ok"]
    assert (f["status"] != "excluded").sum() == len(failed)
    assert (f["status"] == "excluded").sum() == len(ex)
    assert f[f["status"] == "failed"]["reason"].str.len().gt(0).all()


def test_coverage_counts_against_the_grid(records):
    c = ca.coverage(records[records["slice"] == "campaign"], ca.GRIDS / "h100-campaign.yaml")
    assert c["measured"] == c["ok"] + c["failed"] + c["skipped"]
    assert c["remaining"] == c["grid_cells"] - c["measured"]
    assert c["per_model"]["measured"].sum() == c["measured"]
    campaign = records[records["slice"] == "campaign"]
    # a cell measured in two sessions counts once; the campaign records beyond the grid are exactly those of a
    # batch size the grid does not list (run with --set batch_sizes=...), counted apart
    spec = load_grid(ca.GRIDS / "h100-campaign.yaml")
    beyond = campaign[~campaign["batch_size"].isin(spec.batch_sizes)]
    assert c["outside_grid"] == beyond["cell_hash"].nunique()
    assert c["measured"] + c["outside_grid"] == campaign["cell_hash"].nunique()
    # another grid's records are not counted as outside this one
    assert ca.coverage(records, ca.GRIDS / "h100-probe.yaml")["outside_grid"] == 0


def test_coverage_counts_cells_beyond_the_grid(records):
    """A record whose cell the grid does not hold (a `--set batch_sizes=[64]` run) is no grid cell."""
    campaign = records[records["slice"] == "campaign"]
    one = campaign[campaign["status"] == "ok"].iloc[[0]].assign(cell_hash="not-a-grid-cell")
    c0 = ca.coverage(campaign, ca.GRIDS / "h100-campaign.yaml")
    c1 = ca.coverage(pd.concat([campaign, one]), ca.GRIDS / "h100-campaign.yaml")
    assert c1["measured"] == c0["measured"] and c1["outside_grid"] == c0["outside_grid"] + 1


# --- roofline, figure 4, co-optimisation, distillation -----------------------------------------------------
def test_roofline_matches_the_recorded_bandwidth_utilization(records, cat):
    roof = ca.roofline(records, cat["gpus"], cat["models"])
    assert len(roof) == len(ca.ok(records))
    assert (roof["utilization"] > 0).all() and (roof["utilization"] < 1).all()
    sixteen = roof[roof["quant"] != "fp32"]  # the runner assumes a 2-byte KV cache: same as ours except fp32
    assert np.allclose(sixteen["utilization"], sixteen["recorded_utilization"], rtol=1e-6)


def test_figure4_matrix_statuses(records):
    ex = ca.load_grid_excludes(ca.GRIDS / "h100-campaign.yaml")
    m = ca.figure4_matrix(records, MODEL, (256, 128), ex)
    st, e = m["status"], m["energy"]
    assert list(st.columns) == list(ca.METHOD_ORDER)
    assert ((st == "ok") == e.notna()).all().all()
    assert (st.isin(["ok", "failed", "skipped", "excluded", "not yet run"])).all().all()
    # fp32 compiled is excluded by the grid; the int8-dyn compiled batch-1 cell failed
    comp = [i for i in st.index if "hf-compiled" in i]
    assert all(st.loc[i, "fp32"] == "excluded" for i in comp)
    ok_bf16 = st["bf16"] == "ok"
    assert np.allclose(m["ratio"].loc[ok_bf16, "bf16"], 1.0)


def test_figure4_matrix_rows_group_each_engines_batches_in_a_fixed_order(records):
    """Eager first, then the other engines by name, each with its batches in order: the same whatever order the
    records come in (the rows came from a set, and two compiled engines once tied, so the order changed with
    the interpreter's hash seed between executions of the notebook)."""
    rows = [{"gpu_id": H200, "engine": e, "batch_size": b, "decode_energy_per_token_j": 0.1}
            for e in ("hf-compiled-gqa", "hf-compiled", "hf-eager") for b in (8, 1)]
    want = [f"{H200} · {e} · b{b}" for e in ("hf-eager", "hf-compiled", "hf-compiled-gqa") for b in (1, 8)]
    for shuffled in (rows, rows[::-1], rows[2:] + rows[:2]):
        assert list(ca.figure4_matrix(_card_rows(records, shuffled), MODEL)["status"].index) == want


def test_public_matrix_is_16bit_batch1_only():
    pub = ca.load_public()
    m = ca.public_figure4_matrix(pub)
    assert len(m) > 0
    assert (m.notna().sum(axis=1) >= 2).all()
    assert not any(r.startswith("mlenergy-v2") for r in m.index)
    sp = ca.public_card_spread(m)
    assert (sp["saving_best_vs_worst_pct"] >= 0).all()


def test_co_optimisation_uses_the_eager_bf16_baseline(q7):
    co = ca.co_optimisation(q7)
    assert (co["baseline"] == "bf16").all() and (co["baseline_engine"] == "hf-eager").all()
    assert not ((co["quant"] == "bf16") & (co["engine"] == "hf-eager")).any()
    assert co["energy_reduction_pct"].is_monotonic_decreasing


def test_layer_overhead_pairs_each_quantized_cell_with_its_16_bit_cell(records, cat):
    t = ca.layer_overhead(records, cat["models"])
    assert len(t) and not t["quant"].isin(["fp32", "fp16", "bf16"]).any()
    assert set(t["ref_quant"]) <= {"bf16", "fp16"}
    np.testing.assert_allclose(t["overhead_ms"], t["t_step_ms"] - t["t_ref_ms"])
    np.testing.assert_allclose(t["overhead_per_layer_ms"] * t["num_layers"], t["overhead_ms"])
    # per quantized matmul: over the layers x the architecture's linear modules (4 in BLOOMZ-7B1, 7 in Qwen2.5)
    per_layer = cat["models"].set_index("id")["linear_modules_per_layer"]
    np.testing.assert_allclose(t["linear_modules"], t["num_layers"] * t["model"].map(per_layer))
    np.testing.assert_allclose(t["overhead_per_linear_ms"] * t["linear_modules"], t["overhead_ms"])
    assert per_layer["bloomz-7b1"] == 4 and per_layer["qwen2.5-7b-instruct"] == 7
    # each row's step times are the cells' own: 1000 x batch / tokens_per_s of the method's records
    row = t.iloc[0]
    cell = ca.method_records(records)
    cell = cell[(cell["model"] == row["model"]) & (cell["quant"] == row["quant"]) & (cell["engine"] == "hf-eager")
                & (cell["batch_size"] == row["batch_size"]) & (cell["prompt_tokens"] == 256) & (cell["status"] == "ok")]
    assert row["t_step_ms"] == pytest.approx(1000 * row["batch_size"] / cell["tokens_per_s"].mean())
    s = ca.layer_overhead_summary(t, cat.get("method_overhead"))
    # the catalogue's fit takes the same pairs from every record file (repeats too): close, not equal
    for q in ("bnb-int8", "torchao-int8-wo"):
        assert s.loc[q, "per_layer_ms_median"] == pytest.approx(s.loc[q, "catalogue_fit_ms"], rel=0.15), q
    assert ca.layer_overhead(records.iloc[:0], cat["models"]).empty
    # LLM.int8 costs more per layer than the weight-only methods: the finding the section reports
    assert s.loc["bnb-int8", "per_layer_ms_median"] > 3 * s.loc["torchao-int8-wo", "per_layer_ms_median"]
    # the spread across models per matmul is the CV of the per-model medians of overhead_per_linear_ms
    g = t[t["quant"] == "bnb-int8"].groupby("model")["overhead_per_linear_ms"].median()
    assert s.loc["bnb-int8", "cv_across_models_per_linear"] == pytest.approx(g.std() / g.mean())
    assert s.loc["bnb-int8", "cv_across_models_per_linear"] != pytest.approx(s.loc["bnb-int8", "cv_across_models"])


def test_distillation_shapes_identical(cat):
    t = ca.distillation_check(cat["models"])
    assert t.attrs["architecture_of"] == MODEL
    assert t["identical"].all()


def test_key_findings_are_computed(records, cat):
    pub = ca.public_figure4_matrix(ca.load_public())
    kf = ca.key_findings(records, cat["models"], pub, MODEL, ca.load_selfcheck(), cat["quant_accuracy"])
    assert {"claim", "paper", "ours", "evidence", "verdict", "why"} <= set(kf.columns)
    acc = kf.set_index("claim").loc["Accuracy loss per strategy (Table 2)"]
    assert acc["evidence"].startswith("cited") and "cited rows" in acc["ours"]
    assert kf["ours"].str.len().gt(0).all()
    json.dumps(kf.to_dict(orient="records"))  # plain strings only


def test_plots_write_pngs(tmp_path, records, cat, q7):
    pytest.importorskip("matplotlib")
    ex = ca.load_grid_excludes(ca.GRIDS / "h100-campaign.yaml")
    paths = [
        ca.plot_table2(ca.paired_energy(q7, "bf16"), ca.paired_energy(q7, "fp32"), tmp_path / "t2.png"),
        ca.plot_energy_vs_batch(records, tmp_path / "evb.png"),
        ca.plot_roofline(ca.roofline(records, cat["gpus"], cat["models"]), tmp_path / "roof.png"),
        ca.plot_noise(ca.noise_table(records), tmp_path / "noise.png"),
        ca.plot_onehz(ca.onehz_table(records, ca.load_selfcheck()), tmp_path / "onehz.png"),
        ca.plot_layer_overhead(ca.layer_overhead(records, cat["models"]), tmp_path / "layer.png",
                               cat.get("method_overhead")),
        ca.plot_figure4(ca.figure4_matrix(records, MODEL, (256, 128), ex),
                        ca.public_figure4_matrix(ca.load_public()), tmp_path / "fig4.png"),
        ca.plot_engine_effect(ca.engine_effect(records), cat["models"], tmp_path / "engine.png"),
        ca.plot_workload_effect(ca.workload_effect(records, cat["models"]), tmp_path / "workload.png"),
        ca.plot_compiled_kv_copy(ca.engine_effect(records), cat["models"],
                                 {"step_ms": 10.0, "kv_expand_ms": 3.0, "attention_ms": 2.0, "share": 0.5},
                                 tmp_path / "kv_copy.png"),
    ]
    for p in paths:
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- machines, duplicate cells, reproducibility (synthetic folder) ------------------------------------
def _smi(path, uuids):
    path.mkdir(parents=True)
    lines = ["index, name, uuid, driver_version, power.limit [W], temperature.gpu, power.draw [W]"]
    lines += [f"{i}, NVIDIA H100 80GB HBM3, {u}, 580.159.04, 700.00 W, 40, 72.00 W" for i, u in enumerate(uuids)]
    (path / "nvidia-smi.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture()
def folder(tmp_path, records):
    """A 2-GPU machine seen in two sessions, a 1-GPU machine, one cell measured twice there and once again
    on the other machine (as a repeat)."""
    base = records[(records["status"] == "ok") & (records["slice"] == "campaign")].iloc[0]
    template = json.loads(base[[c for c in base.index if c not in ca.ADDED_COLUMNS]].to_json())
    _smi(tmp_path / "raw" / "s1", ["GPU-aaaaaaaa-1", "GPU-bbbbbbbb-2"])
    _smi(tmp_path / "raw" / "s2", ["GPU-bbbbbbbb-2", "GPU-aaaaaaaa-1"])
    _smi(tmp_path / "raw" / "s3", ["GPU-cccccccc-3"])

    def rec(uuid, energy, tps, when):
        return json.dumps({**template, "gpu_uuid": uuid, "decode_energy_per_token_j": energy, "tokens_per_s": tps,
                           "decode_avg_power_w": energy * tps, "created_at": when, "energy_cv": 0.01,
                           "repetitions": 3})

    (tmp_path / "campaign.jsonl").write_text(rec("GPU-cccccccc-3", 1.0, 100.0, "2026-11-26T18:00:00+00:00") + "\n"
                                             + rec("GPU-cccccccc-3", 3.0, 50.0, "2026-11-26T18:10:00+00:00") + "\n")
    (tmp_path / "repeats.jsonl").write_text(rec("GPU-bbbbbbbb-2", 2.2, 80.0, "2026-11-26T20:00:00+00:00") + "\n")
    return tmp_path


def test_machines_are_told_apart_by_their_gpu_sets(folder):
    m = ca.gpu_machines(folder)
    by_session = m.groupby("session")["machine"].first().to_dict()
    assert by_session["s1"] == by_session["s2"] == "2-GPU machine (aaaaaaaa)"
    assert by_session["s3"] == "1-GPU machine (cccccccc)"


def test_cell_means_average_a_cell_measured_twice(folder):
    df = ca.load_records(folder)
    means = ca.cell_means(ca.method_records(df))
    assert len(means) == 1  # the repeat is not a method record
    row = means.iloc[0]
    assert row["n_records"] == 2 and row["repetitions"] == 6
    assert row["decode_energy_per_token_j"] == pytest.approx(2.0) and row["tokens_per_s"] == pytest.approx(75.0)


def test_reproducibility_compares_a_repeat_with_the_mean_of_earlier_records(folder):
    t = ca.reproducibility(ca.load_records(folder))
    assert len(t) == 1
    r = t.iloc[0]
    assert r["energy_diff_pct"] == pytest.approx(10.0) and r["tokens_per_s_diff_pct"] == pytest.approx(80 / 75 * 100 - 100)
    assert r["comparison"] == "other machine (1 GPU)" and not r["same_gpu_unit"]
    assert r["workload"] == f"{r_prompt(folder)}/{r_output(folder)}"
    assert r["minutes_later"] == pytest.approx(110.0)
    assert bool(r["beyond_noise"])  # 10 % against two records of 1 % CV
    s = ca.reproducibility_summary(t)
    assert s.loc["all", "cells"] == 1 and s.loc["all", "energy_abs_diff_max_pct"] == pytest.approx(10.0)


def r_prompt(folder):
    return json.loads((folder / "repeats.jsonl").read_text())["prompt_tokens"]


def r_output(folder):
    return json.loads((folder / "repeats.jsonl").read_text())["output_tokens"]


def test_reproducibility_never_compares_two_workloads(folder):
    """A record of the same model/method/engine/batch at another workload is another cell (another hash)."""
    other = json.loads((folder / "campaign.jsonl").read_text().splitlines()[0])
    other.update(prompt_tokens=other["prompt_tokens"] * 4, output_tokens=other["output_tokens"] * 2,
                 cell_hash="another-workload", record_id="other", decode_energy_per_token_j=50.0)
    with (folder / "campaign.jsonl").open("a") as f:
        f.write(json.dumps(other) + "\n")
    r = ca.reproducibility(ca.load_records(folder)).iloc[0]
    assert r["energy_diff_pct"] == pytest.approx(10.0)


def test_reproducibility_leaves_out_records_made_after_the_repeat(folder):
    later = json.loads((folder / "campaign.jsonl").read_text().splitlines()[0])
    later.update(created_at="2026-11-26T21:00:00+00:00", decode_energy_per_token_j=9.0, record_id="later")
    with (folder / "campaign.jsonl").open("a") as f:
        f.write(json.dumps(later) + "\n")
    r = ca.reproducibility(ca.load_records(folder)).iloc[0]
    assert r["energy_diff_pct"] == pytest.approx(10.0) and r["minutes_later"] == pytest.approx(110.0)


# --- two workloads: nothing may mix them (synthetic records) -----------------------------------------------
LONG = ca.LONG_WORKLOAD
SHORT = ca.REFERENCE_WORKLOAD


def _cells(records: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """Synthetic ok records: every column of one real campaign record, each row overriding some fields.

    Defaults: model MODEL, quant bf16, engine hf-eager, batch 1, the reference workload, slice campaign, one GPU
    unit; decode power = J/token x tokens/s; each cell its own hash; no 1 Hz error (so no record enters the
    1 Hz statistics)."""
    base = records[(records["status"] == "ok") & (records["slice"] == "campaign")].iloc[0].to_dict()
    out = []
    for i, r in enumerate(rows):
        d = dict(base)
        d.update(model=MODEL, quant="bf16", engine="hf-eager", batch_size=1, prompt_tokens=SHORT[0],
                 output_tokens=SHORT[1], slice="campaign", rejected=False, gpu_uuid="GPU-synthetic-0",
                 gpu_unit="GPU-syntheti", machine="m", tokens_per_s=100.0, energy_cv=0.01, repetitions=3,
                 energy_1hz_error_pct=np.nan, created_at=f"2030-01-01T00:{i:02d}:00+00:00", record_id=f"syn-{i}")
        d.update(r)
        d["decode_avg_power_w"] = d["decode_energy_per_token_j"] * d["tokens_per_s"]
        d["cell_hash"] = "syn-" + "-".join(str(d[k]) for k in (*ca.CELL_KEYS, "quant"))
        out.append(d)
    return ca.add_labels(pd.DataFrame(out))


def test_paired_energy_never_pairs_across_workloads(records):
    df = _cells(records, [
        {"quant": "bf16", "decode_energy_per_token_j": 1.0},
        {"quant": "bf16", "decode_energy_per_token_j": 2.0, "prompt_tokens": LONG[0], "output_tokens": LONG[1]},
        {"quant": "bnb-int8", "decode_energy_per_token_j": 1.5},
        {"quant": "bnb-int8", "decode_energy_per_token_j": 3.0, "prompt_tokens": LONG[0], "output_tokens": LONG[1]},
        # a long-workload cell whose only bf16 cell is at the short workload: no pair
        {"quant": "bnb-nf4", "batch_size": 8, "decode_energy_per_token_j": 0.1, "prompt_tokens": LONG[0],
         "output_tokens": LONG[1]},
        {"quant": "bf16", "batch_size": 8, "decode_energy_per_token_j": 0.5},
        # compiled bf16 at the short workload only, against the eager baseline
        {"quant": "bf16", "engine": "hf-compiled", "decode_energy_per_token_j": 0.5},
    ])
    p = ca.paired_energy(df, "bf16")
    assert set(p["quant"]) == {"bnb-int8"} and len(p) == 2
    by_wl = p.set_index("workload")
    assert by_wl.loc[f"{SHORT[0]}/{SHORT[1]}", "e_base_j"] == pytest.approx(1.0)
    assert by_wl.loc[f"{LONG[0]}/{LONG[1]}", "e_base_j"] == pytest.approx(2.0)
    assert np.allclose(p["energy_reduction_pct"], -50.0)
    co = ca.paired_energy(df, "bf16", baseline_engine="hf-eager")
    comp = co[co["engine"] == "hf-compiled"]
    assert len(comp) == 1 and comp["e_base_j"].iloc[0] == pytest.approx(1.0)
    assert (co["prompt_tokens"] == co["workload"].str.split("/").str[0].astype(int)).all()


def test_table2_and_method_table_summarise_one_workload(q7, cat):
    pairs = ca.paired_energy(q7, "bf16")
    short = ca.select_workload(pairs, SHORT)
    # the same pairs again at the long workload, all saving 90 %: must not move the 256/128 table
    fake = short.assign(prompt_tokens=LONG[0], output_tokens=LONG[1], workload=f"{LONG[0]}/{LONG[1]}",
                        energy_ratio=0.1, energy_reduction_pct=90.0, e_method_j=short["e_base_j"] * 0.1)
    both = pd.concat([short, fake], ignore_index=True)
    pd.testing.assert_frame_equal(ca.table2(both, cat["quant_accuracy"], MODEL),
                                  ca.table2(short, cat["quant_accuracy"], MODEL))
    pd.testing.assert_frame_equal(ca.method_table(both, cat["quant_accuracy"], MODEL),
                                  ca.method_table(short, cat["quant_accuracy"], MODEL))
    pooled = ca.table2(both, cat["quant_accuracy"], MODEL, workload=None)
    assert pooled.loc["INT8", "n_pairs"] == 2 * ca.table2(short, cat["quant_accuracy"], MODEL).loc["INT8", "n_pairs"]


@pytest.mark.slow
def test_key_findings_ignore_cells_of_the_long_workload(records, cat):
    """Long-workload cells where INT8 and fp16 save 90 % must not change any of the paper-claim rows. (Batch 3:
    no real cell has it, so no synthetic record stands in for a real one.)"""
    long_ = {"prompt_tokens": LONG[0], "output_tokens": LONG[1], "batch_size": 3}
    extra = _cells(records, [
        {"quant": "bf16", "decode_energy_per_token_j": 10.0, **long_},
        {"quant": "bnb-int8", "decode_energy_per_token_j": 1.0, **long_},
        {"quant": "fp16", "decode_energy_per_token_j": 1.0, **long_},
        {"quant": "bf16", "engine": "hf-compiled", "decode_energy_per_token_j": 0.1, **long_},
    ])
    assert not records["batch_size"].eq(3).any()
    # the same cells at the reference workload do change the rows: the check below can fail
    short = extra.assign(prompt_tokens=SHORT[0], output_tokens=SHORT[1],
                         cell_hash=extra["cell_hash"] + "-short", record_id=extra["record_id"] + "-short")
    args0 = (cat["models"], None, MODEL, ca.load_selfcheck(), cat["quant_accuracy"])
    changed = ca.key_findings(pd.concat([records, ca.add_labels(short)], ignore_index=True), *args0)
    assert not changed.equals(ca.key_findings(records, *args0))
    args = (cat["models"], None, MODEL, ca.load_selfcheck(), cat["quant_accuracy"])
    before = ca.key_findings(records, *args)
    after = ca.key_findings(pd.concat([records, extra], ignore_index=True), *args)
    pd.testing.assert_frame_equal(before, after)


def test_energy_vs_batch_draws_one_line_per_workload(records, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    rows = [{"batch_size": b, "prompt_tokens": w[0], "output_tokens": w[1], "decode_energy_per_token_j": e / b}
            for w, e in ((SHORT, 1.0), (LONG, 2.0)) for b in (1, 8, 32)]
    figs = []
    monkeypatch.setattr(ca, "_save", lambda fig, path, top=1.0: figs.append(fig) or path)
    ca.plot_energy_vs_batch(_cells(records, rows), tmp_path / "evb.png")
    lines = [ln for ax in figs[0].axes for ln in ax.lines if len(ln.get_xdata()) > 1]
    assert len(lines) == 2  # one per workload, not one zigzag through both
    for ln in lines:
        x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
        assert (np.diff(x) > 0).all()
        assert np.allclose(y * x, y[0] * x[0])  # every point of a line from one workload
    assert {ln.get_linestyle() for ln in lines} == {"-", "--"}


def test_noise_roofline_and_first_repetition_keep_workloads_apart(records, cat):
    df = _cells(records, [{"decode_energy_per_token_j": 1.0},
                          {"decode_energy_per_token_j": 1.2, "prompt_tokens": LONG[0], "output_tokens": LONG[1]}])
    assert df["label"].nunique() == 2
    noise = ca.noise_table(df)
    assert set(noise["workload"]) == {f"{SHORT[0]}/{SHORT[1]}", f"{LONG[0]}/{LONG[1]}"}
    assert len(ca.noise_summary(noise)) == 2
    roof = ca.roofline(df, cat["gpus"], cat["models"]).set_index("workload")
    short, long_ = roof.loc[f"{SHORT[0]}/{SHORT[1]}"], roof.loc[f"{LONG[0]}/{LONG[1]}"]
    ctx = (LONG[0] + LONG[1] / 2) / (SHORT[0] + SHORT[1] / 2)
    assert long_["kv_gb_per_step"] == pytest.approx(short["kv_gb_per_step"] * ctx)
    assert set(ca.first_rep_ratio(df)["workload"]) == set(noise["workload"])


def test_layer_overhead_and_figure4_stay_on_one_workload(records, cat):
    df = _cells(records, [{"quant": "bf16", "decode_energy_per_token_j": 1.0},
                          {"quant": "bnb-nf4", "decode_energy_per_token_j": 2.0, "prompt_tokens": LONG[0],
                           "output_tokens": LONG[1]}])
    assert ca.layer_overhead(df, cat["models"]).empty
    assert ca.layer_overhead(df, cat["models"], workload=LONG).empty
    f4 = ca.figure4_matrix(df, MODEL, SHORT)
    assert f4["status"].loc[:, "bnb-nf4"].eq("not yet run").all() and f4["energy"].attrs["workload"] == SHORT


# --- engine effect and workload effect ---------------------------------------------------------------------
def test_engine_effect_pairs_the_same_method_and_workload(records):
    df = _cells(records, [
        {"engine": "hf-eager", "quant": "bf16", "decode_energy_per_token_j": 2.0, "tokens_per_s": 50.0},
        {"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "tokens_per_s": 150.0,
         "gpu_uuid": "GPU-other-unit"},
        {"engine": "hf-eager", "quant": "bnb-nf4", "decode_energy_per_token_j": 4.0, "tokens_per_s": 25.0},
        {"engine": "hf-compiled", "quant": "bnb-nf4", "decode_energy_per_token_j": 3.0, "tokens_per_s": 50.0},
        # compiled at the long workload, eager only at the short one: no pair
        {"engine": "hf-compiled", "quant": "bf16", "batch_size": 8, "decode_energy_per_token_j": 0.1,
         "prompt_tokens": LONG[0], "output_tokens": LONG[1]},
        {"engine": "hf-eager", "quant": "bf16", "batch_size": 8, "decode_energy_per_token_j": 0.3},
    ]).assign(gpu_unit=lambda d: d["gpu_uuid"].str[:12])
    t = ca.engine_effect(df).set_index("quant")
    assert set(t.index) == {"bf16", "bnb-nf4"}  # nf4 compiled against nf4 eager, not against bf16
    assert t.loc["bf16", "energy_reduction_pct"] == pytest.approx(50.0)
    assert t.loc["bf16", "speedup"] == pytest.approx(3.0) and t.loc["bf16", "power_ratio"] == pytest.approx(1.5)
    assert t.loc["bnb-nf4", "energy_reduction_pct"] == pytest.approx(25.0)
    assert not t.loc["bf16", "same_gpu_unit"] and t.loc["bnb-nf4", "same_gpu_unit"]
    # the noise of paired_energy: the bf16 pair is the same pair there
    pe = ca.paired_energy(df, "bf16", baseline_engine="hf-eager")
    pe = pe[(pe["engine"] == "hf-compiled") & (pe["quant"] == "bf16")]
    assert t.loc["bf16", "noise_pct"] == pytest.approx(pe["noise_pct"].iloc[0])
    assert t.loc["bf16", "within_noise"] == pe["within_noise"].iloc[0]


def test_engine_effect_summary_counts_each_architecture_once():
    t = pd.DataFrame({
        "model": ["a", "a", "b", "c"], "quant": "bf16", "batch_size": 1, "workload": "256/128",
        "slice": ["probe", "campaign", "campaign", "campaign"], "e_base_j": 1.0, "e_method_j": 1.0,
        "energy_reduction_pct": [80.0, 60.0, 10.0, -20.0], "noise_pct": [5.0, 5.0, 5.0, 30.0],
        "speedup": 2.0, "power_ratio": 1.5, "within_noise": [False, False, False, True],
        "same_gpu_unit": [True, False, False, False], "same_machine": [True, False, True, False]})
    s = ca.engine_effect_summary(t).iloc[0]
    assert s["architectures"] == 3
    assert s["energy_reduction_median_pct"] == pytest.approx(10.0)  # median of 70 (a: mean of two), 10, -20
    assert s["energy_reduction_max_pct"] == pytest.approx(70.0) and s["most_saving"] == "a"
    assert s["n_saves_beyond_noise"] == 2 and s["n_within_noise"] == 1 and s["n_costs_beyond_noise"] == 0
    assert s["n_same_gpu_unit"] == 0 and s["n_same_machine"] == 1


def test_method_cost_by_engine_reports_the_per_layer_overhead_of_each_engine(records, cat):
    layers = int(cat["models"].set_index("id").loc[MODEL, "num_layers"])
    df = _cells(records, [
        {"engine": "hf-eager", "quant": "bf16", "decode_energy_per_token_j": 2.0, "tokens_per_s": 50.0},
        {"engine": "hf-eager", "quant": "bnb-nf4", "decode_energy_per_token_j": 4.0, "tokens_per_s": 25.0},
        {"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "tokens_per_s": 100.0},
        {"engine": "hf-compiled", "quant": "bnb-nf4", "decode_energy_per_token_j": 1.0, "tokens_per_s": 100.0},
    ])
    r = ca.method_cost_by_engine(df, cat["models"]).iloc[0]
    assert r["quant"] == "bnb-nf4"
    assert r["overhead_per_layer_ms_eager"] == pytest.approx((1000 / 25 - 1000 / 50) / layers)
    assert r["overhead_per_layer_ms_compiled"] == pytest.approx(0.0)
    assert r["energy_reduction_pct_eager"] == pytest.approx(-100.0) and r["energy_reduction_pct_compiled"] == 0
    assert bool(r["same_machine_compiled"]) and bool(r["same_machine_eager"])  # _cells: one machine "m"
    apart = _cells(records, [
        {"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "machine": "m1"},
        {"engine": "hf-compiled", "quant": "bnb-nf4", "decode_energy_per_token_j": 1.0, "machine": "m2"},
        {"engine": "hf-eager", "quant": "bf16", "decode_energy_per_token_j": 2.0, "machine": "m3"},
        {"engine": "hf-eager", "quant": "bnb-nf4", "decode_energy_per_token_j": 4.0, "machine": "m3"},
    ])
    r = ca.method_cost_by_engine(apart, cat["models"]).iloc[0]
    assert not bool(r["same_machine_compiled"]) and bool(r["same_machine_eager"])


def test_compiled_method_summary_counts_each_methods_compiled_pairs():
    mc = pd.DataFrame({
        "model": ["a", "b", "c", "a", "a", "a"],
        "quant": ["torchao-int4-wo", "torchao-int4-wo", "torchao-int4-wo", "bf16", "torchao-fp8", "torchao-fp8"],
        "workload": ["256/128"] * 5 + ["1024/256"],
        "energy_reduction_pct_compiled": [20.0, -50.0, 2.0, 0.0, -10.0, 40.0],
        "within_noise_compiled": [False, False, True, False, False, False],
        "speedup_compiled": [1.1, 0.5, 0.9, 1.0, 0.6, 2.0]})
    s = ca.compiled_method_summary(mc)
    assert list(s.index) == ["torchao-int4-wo", "torchao-fp8"]  # bf16 is the baseline, not a method
    r = s.loc["torchao-int4-wo"]
    assert (r["pairs"], r["architectures"]) == (3, 3)
    assert r["energy_ratio_median"] == pytest.approx(0.98) and r["energy_ratio_min"] == pytest.approx(0.8)
    assert r["energy_ratio_max"] == pytest.approx(1.5)
    assert (r["saves_beyond_noise"], r["costs_beyond_noise"], r["within_noise"]) == (1, 1, 1)
    assert (r["speedup_min"], r["speedup_max"]) == (0.5, 1.1)
    assert s.loc["torchao-fp8", "pairs"] == 1  # the 1024/256 pair is another workload
    assert ca.compiled_method_summary(mc, workload=None).loc["torchao-fp8", "pairs"] == 2


def test_static_cache_kv_copy_counts_every_query_head_over_the_whole_cache(cat):
    m = cat["models"].set_index("id")
    copy = ca.static_cache_kv_copy_gb(cat["models"], 32, (1024, 256))
    r = m.loc[MODEL]  # grouped-query: its K/V is expanded to num_attention_heads
    assert r["num_kv_heads"] < r["num_attention_heads"]
    expected = r["num_layers"] * r["num_attention_heads"] * r["head_dim"] * 2 * 2 * 32 * (1024 + 256) / 1e9
    assert copy[MODEL] == pytest.approx(expected)
    assert copy["phi-3-mini-4k-instruct"] == 0.0  # multi-head: nothing to expand
    # linear in batch and cache length, twice the bytes for fp32's KV values
    assert ca.static_cache_kv_copy_gb(cat["models"], 8, (256, 128))[MODEL] == pytest.approx(
        expected * 8 / 32 * 384 / 1280)
    assert ca.static_cache_kv_copy_gb(cat["models"], 32, (1024, 256), "fp32")[MODEL] == pytest.approx(2 * expected)


def test_workload_effect_pairs_a_cell_with_itself_at_the_other_workload(records, cat):
    mha = "phi-3-mini-4k-instruct"  # num_kv_heads == num_attention_heads in models.csv
    m = cat["models"].set_index("id")
    assert m.loc[mha, "num_kv_heads"] == m.loc[mha, "num_attention_heads"]
    assert m.loc[MODEL, "num_kv_heads"] < m.loc[MODEL, "num_attention_heads"]
    rows = []
    for model in (MODEL, mha):
        rows += [{"model": model, "batch_size": 32, "decode_energy_per_token_j": 1.0, "ttft_ms": 100.0,
                  "prefill_energy_j": 10.0},
                 {"model": model, "batch_size": 32, "decode_energy_per_token_j": 1.5, "ttft_ms": 400.0,
                  "prefill_energy_j": 50.0, "tokens_per_s": 80.0, "prompt_tokens": LONG[0], "output_tokens": LONG[1]}]
    rows += [{"engine": "hf-compiled", "batch_size": 32, "decode_energy_per_token_j": 0.5},  # short only
             {"quant": "fp16", "batch_size": 8, "decode_energy_per_token_j": 9.0, "prompt_tokens": LONG[0],
              "output_tokens": LONG[1]}]  # long only
    t = ca.workload_effect(_cells(records, rows), cat["models"]).set_index("model")
    assert list(t.index.sort_values()) == sorted([MODEL, mha])
    for model in (MODEL, mha):
        assert t.loc[model, "energy_ratio"] == pytest.approx(1.5)
        assert t.loc[model, "tokens_per_s_ratio"] == pytest.approx(0.8)
        assert t.loc[model, "ttft_ratio"] == pytest.approx(4.0)
        assert t.loc[model, "prefill_energy_ratio"] == pytest.approx(5.0)
        assert t.loc[model, "bytes_ratio"] > 1
    assert t.loc[mha, "attention"] == "MHA" and t.loc[MODEL, "attention"] == "GQA"
    # with every head keeping its own K/V the longer context adds more bytes per step
    assert t.loc[mha, "kv_gb_per_step_long"] > t.loc[MODEL, "kv_gb_per_step_long"]
    s = ca.workload_effect_summary(t.reset_index(), by=("attention", "batch_size"))
    assert len(s) == 2 and np.allclose(s["energy_ratio_median"], 1.5)


def test_batch_trend_is_computed_not_assumed():
    t = pd.DataFrame({"batch_size": [8, 1, 32], "energy_reduction_median_pct": [30.0, 40.0, 20.0]})
    assert "shrinks" in ca._batch_trend(t) and "+40.0 % -> +30.0 % -> +20.0 %" in ca._batch_trend(t)
    assert "grows" in ca._batch_trend(t.assign(energy_reduction_median_pct=[30.0, 20.0, 40.0]))
    assert "does not move one way" in ca._batch_trend(t.assign(energy_reduction_median_pct=[50.0, 40.0, 45.0]))


# --- a second card type: the H200 against the H100 (synthetic records and the committed H200 records) -------
H100, H200 = "h100-sxm", "h200"


def _card_rows(records, rows):
    """`_cells` with a card per row (`gpu_id`, default H100; the H200 rows on their own GPU unit and machine)."""
    out = []
    for r in rows:
        r = {"gpu_id": H100, **r}
        if r["gpu_id"] == H200:
            r = {"gpu_uuid": "GPU-h200-unit-0", "gpu_unit": "GPU-h200-uni", "machine": "h200 machine", **r}
        out.append(r)
    return _cells(records, out)


def test_load_cards_holds_both_cards_and_their_machines():
    cards = ca.load_cards()
    assert {H100, H200} <= set(cards["gpu_id"])
    h200 = cards[cards["gpu_id"] == H200]
    lines = sum(1 for ln in (ca.H200_MEASUREMENTS / "campaign.jsonl").read_text().splitlines() if ln.strip())
    assert len(h200) == lines
    # gpu_machines reads the H200 sessions' nvidia-smi.csv (with an index column): every record with a GPU UUID gets
    # its machine, named by its GPU count and first GPU (the s5 and s12 4-GPU machines, the s10 and s11 2-GPU ones,
    # s25's 1-GPU one), no '?'; a record without one (`measure record-failed`'s, of a cell that never finished on
    # any machine) is '?'
    assert (h200.loc[h200["gpu_uuid"].isna(), "status"] == "failed").all()
    assert (h200.loc[h200["gpu_uuid"].isna(), "machine"] == "?").all()
    machines = set(h200.loc[h200["gpu_uuid"].notna(), "machine"])
    assert all(re.fullmatch(r"[1248]-GPU machine \([0-9a-f]{8}\)", m) for m in machines), machines
    # a machine's name counts the GPUs its sessions' nvidia-smi.csv list, and a GPU belongs to one machine
    smi = ca.gpu_machines(ca.H200_MEASUREMENTS)
    # every campaign machine is listed; a raw folder may list machines that wrote no campaign record: s19-d, a
    # decode profile on a 1-GPU machine, and s20-f, the first cells of an experiment store on a 2-GPU machine
    assert machines <= set(smi["machine"]) and len(machines) >= 2
    assert set(smi["machine"]) - machines == {"1-GPU machine (ea87fd5f)", "2-GPU machine (619b6e3c)"}
    assert (smi.groupby("uuid")["machine"].nunique() == 1).all()
    for m, uuids in smi.groupby("machine")["uuid"].nunique().items():
        assert int(m.split("-")[0]) == uuids, (m, uuids)
    assert not machines & set(cards.loc[cards["gpu_id"] == H100, "machine"])


def test_cell_means_and_paired_energy_never_mix_two_cards(records):
    df = _card_rows(records, [{"quant": "bf16", "decode_energy_per_token_j": 1.0},
                              {"quant": "bf16", "decode_energy_per_token_j": 3.0, "gpu_id": H200},
                              {"quant": "bnb-nf4", "decode_energy_per_token_j": 2.0, "gpu_id": H200}])
    means = ca.cell_means(df)
    assert len(means) == 3 and sorted(means["decode_energy_per_token_j"]) == [1.0, 2.0, 3.0]
    p = ca.paired_energy(df, "bf16")
    assert len(p) == 1 and p["e_base_j"].iloc[0] == pytest.approx(3.0)  # the H200 bf16, not the H100 one
    assert p["gpu_id"].iloc[0] == H200


def test_card_effect_ratios_noise_and_bandwidth_prediction(records, tmp_path, monkeypatch):
    """Asymmetric values throughout, so a swapped numerator / denominator or a swapped column fails."""
    rows = [
        # the H100 cell measured in two files on two machines: their mean (1.1 J/token, 110 tokens/s, 122 W)
        # is the baseline; energy CV 2 % and 4 % (root mean square 3.16 %)
        {"decode_energy_per_token_j": 1.0, "tokens_per_s": 100.0, "ttft_ms": 10.0, "prefill_energy_j": 5.0,
         "bandwidth_utilization": 0.5, "energy_cv": 0.02},
        {"decode_energy_per_token_j": 1.2, "tokens_per_s": 120.0, "ttft_ms": 10.0, "prefill_energy_j": 5.0,
         "bandwidth_utilization": 0.5, "energy_cv": 0.04, "slice": "probe", "machine": "m-other"},
        # the H200 cell: 0.88 J/token at 125 tokens/s = 110 W, energy CV 5 %; its own utilization must not be used
        {"decode_energy_per_token_j": 0.88, "tokens_per_s": 125.0, "ttft_ms": 8.0, "prefill_energy_j": 4.5,
         "bandwidth_utilization": 0.9, "energy_cv": 0.05, "gpu_id": H200},
        # an H100 cell without an H200 partner, and an H200 cell of the other workload: no pair
        {"quant": "bnb-nf4", "decode_energy_per_token_j": 2.0},
        {"decode_energy_per_token_j": 0.5, "gpu_id": H200, "prompt_tokens": LONG[0], "output_tokens": LONG[1]},
    ]
    gpus = pd.DataFrame({"id": [H100, H200], "bandwidth_gbs": [1000.0, 2000.0]})
    t = ca.card_effect(_card_rows(records, rows), H200, H100, gpus)
    assert len(t) == 1
    r = t.iloc[0]
    assert r["e_base_j"] == pytest.approx(1.1) and r["e_card_j"] == pytest.approx(0.88)
    assert r["energy_ratio"] == pytest.approx(0.8) and r["energy_change_pct"] == pytest.approx(-20.0)
    assert r["speedup"] == pytest.approx(125.0 / 110.0)
    # decode power = J/token x tokens/s: 0.88 x 125 = 110 W against mean(100, 144) = 122 W (the mean of the
    # powers, not energy_ratio x speedup = 0.909)
    assert r["power_ratio"] == pytest.approx(110.0 / 122.0)
    assert r["ttft_ratio"] == pytest.approx(0.8) and r["prefill_energy_ratio"] == pytest.approx(0.9)
    cv_base = math.sqrt((0.02 ** 2 + 0.04 ** 2) / 2)
    assert r["energy_cv_base"] == pytest.approx(cv_base) and r["energy_cv_card"] == pytest.approx(0.05)
    # 2 x sqrt(0.05^2 / 3 + cv_base^2 / 6) x 100 = 6.3 % (with the CVs swapped it would be 5.5 %)
    assert r["noise_pct"] == pytest.approx(2 * math.sqrt(0.05 ** 2 / 3 + cv_base ** 2 / 6) * 100)
    assert r["beyond_noise"] and r["n_records"] == "1/2"
    # every machine of the pooled H100 cell, not only the latest record's
    assert r["machine_card"] == "h200 machine" and r["machine_base"] == "m; m-other"
    # half the baseline step memory-bound, twice the bandwidth: 1 / (0.5 + 0.25)
    assert r["bandwidth_ratio"] == pytest.approx(2.0) and r["speedup_if_bandwidth"] == pytest.approx(4 / 3)
    assert r["bandwidth_utilization_base"] == pytest.approx(0.5)
    # a cell of several machines is its own group per machine, and in the plot's colours
    s = ca.card_effect_summary(t, by="machine_base")
    assert list(s.index) == [ca.SEVERAL_MACHINES] and s.loc[ca.SEVERAL_MACHINES, "cells"] == 1
    pytest.importorskip("matplotlib")
    figs = []
    monkeypatch.setattr(ca, "_save", lambda fig, path, top=1.0: figs.append(fig) or path)
    ca.plot_card_effect(t, tmp_path / "cards.png", machine_spread_pct=5.0, machine_spread_max_pct=20.0)
    texts = [x.get_text() for ax in figs[0].axes if ax.get_legend() for x in ax.get_legend().get_texts()]
    assert any(x.startswith(f"{H100} cell from {ca.SEVERAL_MACHINES}") for x in texts)
    assert any(x.startswith("+/-5.0 %: median") for x in texts) and any(x.startswith("+/-20.0 %: largest")
                                                                        for x in texts)
    ca._plt().close(figs[0])
    # the same change with noisy repetitions (CV 30 %) is within the noise
    noisy = _card_rows(records, [{**x, "energy_cv": 0.3} for x in rows])
    assert not ca.card_effect(noisy, H200, H100).iloc[0]["beyond_noise"]


def test_ok_keeps_the_record_of_each_card(records, cat):
    """The cards' files share a stem ('campaign') and the cell keys name no card: one record per card."""
    df = _card_rows(records, [{"decode_energy_per_token_j": 1.0, "energy_1hz_error_pct": 5.0},
                              {"decode_energy_per_token_j": 0.8, "energy_1hz_error_pct": 7.0, "gpu_id": H200}])
    assert sorted(ca.ok(df)["gpu_id"]) == [H100, H200]
    noise = ca.noise_table(df)
    assert sorted(noise["gpu_id"]) == [H100, H200]
    assert list(ca.noise_summary(noise).index.get_level_values("gpu_id")) == [H100, H200]
    assert ca.noise_summary(noise[noise["gpu_id"] == H100]).index.names == ["slice", "engine", "workload"]
    roof = ca.roofline(df, cat["gpus"], cat["models"]).set_index("gpu_id")
    bw = cat["gpus"].set_index("id")["bandwidth_gbs"]
    assert roof.loc[H100, "bandwidth_gbs"] == bw[H100] and roof.loc[H200, "bandwidth_gbs"] == bw[H200]
    assert sorted(ca.onehz_table(df)["error_pct"]) == [5.0, 7.0]


def test_ok_on_the_committed_records_of_both_cards():
    h100, h200 = ca.load_records(), ca.load_records(ca.H200_MEASUREMENTS)
    assert len(ca.ok(ca.load_cards())) == len(ca.ok(h100)) + len(ca.ok(h200))


def test_engine_effect_summaries_keep_two_cards_apart(records):
    rows = []
    for card, e_compiled in ((H100, 1.0), (H200, 1.8)):
        rows += [{"gpu_id": card, "engine": "hf-eager", "decode_energy_per_token_j": 2.0},
                 {"gpu_id": card, "engine": "hf-compiled", "decode_energy_per_token_j": e_compiled}]
    ee = ca.engine_effect(_card_rows(records, rows))
    assert sorted(ee["gpu_id"]) == [H100, H200]
    a = ca.engine_effect_per_architecture(ee).set_index("gpu_id")
    assert len(a) == 2 and (a["pairs"] == 1).all()
    assert a.loc[H100, "energy_reduction_pct"] == pytest.approx(50.0)
    assert a.loc[H200, "energy_reduction_pct"] == pytest.approx(10.0)
    s = ca.engine_effect_summary(ee).set_index("gpu_id")
    assert len(s) == 2 and (s["architectures"] == 1).all()
    assert s.loc[H100, "energy_reduction_median_pct"] == pytest.approx(50.0)
    assert s.loc[H200, "energy_reduction_median_pct"] == pytest.approx(10.0)


def test_method_cost_by_engine_keeps_two_cards_apart(records, cat):
    e = {H100: {("hf-eager", "bf16"): 2.0, ("hf-eager", "bnb-nf4"): 4.0, ("hf-compiled", "bf16"): 1.0,
                ("hf-compiled", "bnb-nf4"): 1.5},
         H200: {("hf-eager", "bf16"): 2.0, ("hf-eager", "bnb-nf4"): 3.0, ("hf-compiled", "bf16"): 1.0,
                ("hf-compiled", "bnb-nf4"): 1.1}}
    rows = [{"gpu_id": c, "engine": eng, "quant": q, "decode_energy_per_token_j": v}
            for c, cells in e.items() for (eng, q), v in cells.items()]
    t = ca.method_cost_by_engine(_card_rows(records, rows), cat["models"])
    t = t[t["quant"] == "bnb-nf4"].set_index("gpu_id")
    assert len(t) == 2  # not the four cross-card combinations
    assert t.loc[H100, "energy_reduction_pct_eager"] == pytest.approx(-100.0)
    assert t.loc[H100, "energy_reduction_pct_compiled"] == pytest.approx(-50.0)
    assert t.loc[H200, "energy_reduction_pct_eager"] == pytest.approx(-50.0)
    assert t.loc[H200, "energy_reduction_pct_compiled"] == pytest.approx(-10.0)


def test_energy_vs_params_keeps_the_card(records, cat, tmp_path):
    df = _card_rows(records, [{"decode_energy_per_token_j": 1.0}, {"decode_energy_per_token_j": 0.8, "gpu_id": H200}])
    t = ca.energy_vs_params(df, cat["models"])
    assert dict(zip(t["gpu_id"], t["decode_energy_per_token_j"], strict=True)) == {H100: 1.0, H200: 0.8}
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="one card"):
        ca.plot_energy_vs_params(t, tmp_path / "evp.png")


def test_reproducibility_compares_a_repeat_with_its_own_card_only(records):
    """The H200 record of a cell has the same cell hash as the H100 record: it must not enter the comparison."""
    df = _card_rows(records, [{"decode_energy_per_token_j": 1.0},
                              {"decode_energy_per_token_j": 2.0, "gpu_id": H200},
                              {"decode_energy_per_token_j": 1.1, "slice": "repeats", "machine": "m2"}])
    assert df["cell_hash"].nunique() == 1
    t = ca.reproducibility(df)
    assert len(t) == 1 and t.iloc[0]["gpu_id"] == H100
    assert t.iloc[0]["e_earlier_j"] == pytest.approx(1.0) and t.iloc[0]["energy_diff_pct"] == pytest.approx(10.0)


def test_card_effect_summary_counts_beyond_noise_and_machine_spread():
    t = pd.DataFrame({"model": ["a", "b", "c", "d"], "quant": ["bf16", "bf16", "bf16", "bnb-nf4"], "batch_size": 1,
                      "energy_ratio": [0.7, 0.9, 1.2, 0.95], "speedup": 1.1, "power_ratio": 1.0, "ttft_ratio": 0.9,
                      "prefill_energy_ratio": 0.9, "beyond_noise": [True, True, True, False]})
    t["energy_change_pct"] = (t["energy_ratio"] - 1) * 100
    s = ca.card_effect_summary(t, machine_spread_pct=15.0)
    assert list(s.index.get_level_values("quant")) == ["bf16", "bnb-nf4"]  # METHOD_ORDER
    bf = s.loc[("bf16", 1)]
    assert bf["cells"] == 3 and bf["energy_ratio_median"] == pytest.approx(0.9)
    assert bf["n_lower_beyond_noise"] == 2 and bf["n_higher_beyond_noise"] == 1
    assert bf["n_beyond_machine_spread"] == 2  # -30 % and +20 %, not -10 %
    a = ca.card_effect_summary(t, by=None).loc["all"]
    assert a["cells"] == 4 and a["energy_ratio_min"] == pytest.approx(0.7) and "n_beyond_machine_spread" not in a


def test_card_effect_vs_repeats_separates_the_baseline_machine(records):
    df = _card_rows(records, [
        {"decode_energy_per_token_j": 1.0},
        {"decode_energy_per_token_j": 0.8, "slice": "repeats", "machine": "another H100 machine"},
        {"decode_energy_per_token_j": 0.8, "gpu_id": H200},
    ])
    r = ca.card_effect_vs_repeats(df, H200, H100).iloc[0]
    assert r["energy_ratio_first"] == pytest.approx(0.8) and r["energy_ratio_repeat"] == pytest.approx(1.0)
    assert r["shift_pct"] == pytest.approx(25.0)
    assert r["machine_first"] == "m" and r["machine_repeat"] == "another H100 machine"


def test_hardware_method_cooptimisation_by_hand(records):
    e = {(H100, "bf16"): 1.0, (H100, "fp16"): 0.9, (H100, "bnb-nf4"): 0.95,
         (H200, "bf16"): 0.8, (H200, "fp16"): 0.85, (H200, "bnb-nf4"): 0.7}
    rows = [{"gpu_id": c, "quant": q, "decode_energy_per_token_j": v} for (c, q), v in e.items()]
    rows += [{"quant": "fp32", "decode_energy_per_token_j": 0.5},  # H100 only: must not compete
             {"quant": "bf16", "batch_size": 8, "decode_energy_per_token_j": 0.2},  # no H200 bf16 at batch 8
             {"quant": "fp16", "batch_size": 8, "decode_energy_per_token_j": 0.1, "gpu_id": H200}]
    t = ca.hardware_method_cooptimisation(_card_rows(records, rows))
    assert len(t) == 1
    r = t.iloc[0]
    assert r["methods"] == 3 and r["hardware_card"] == H200 and r["method"] == "fp16"
    assert (r["joint_card"], r["joint_method"]) == (H200, "bnb-nf4")
    assert r["hardware_saving_pct"] == pytest.approx(20.0) and r["method_saving_pct"] == pytest.approx(10.0)
    assert r["joint_saving_pct"] == pytest.approx(30.0)
    assert r["product_saving_pct"] == pytest.approx(28.0)  # 1 - 0.8 x 0.9
    assert r["joint_vs_hardware_pct"] == pytest.approx(12.5) and r["joint_vs_method_pct"] == pytest.approx(100 / 9 * 2)
    assert r["joint_beyond_noise"] and r["method_on_card_beyond_noise"]
    s = ca.cooptimisation_summary(t)
    assert s.loc["joint (best card and method)", "saving_max_pct"] == pytest.approx(30.0)
    assert s.loc["method alone (best method, baseline card)", "n_saving"] == 1


def test_method_rank_transfer_spearman_on_a_known_order(records):
    quants = ["bf16", "fp16", "bnb-nf4", "torchao-int8-wo"]
    rows = []
    for i, q in enumerate(quants):
        rows.append({"quant": q, "decode_energy_per_token_j": 1.0 + i})
        rows.append({"quant": q, "decode_energy_per_token_j": 2.0 + i, "gpu_id": H200})  # same order
        rows.append({"quant": q, "batch_size": 8, "decode_energy_per_token_j": 1.0 + i})
        rows.append({"quant": q, "batch_size": 8, "decode_energy_per_token_j": 9.0 - i, "gpu_id": H200})  # reversed
    rows += [{"quant": q, "batch_size": 32, "decode_energy_per_token_j": 1.0, "gpu_id": g}
             for q in quants[:2] for g in (H100, H200)]  # two methods only: left out
    t = ca.method_rank_transfer(_card_rows(records, rows)).set_index("batch_size")
    assert list(t.index) == [1, 8]
    assert t.loc[1, "spearman"] == pytest.approx(1.0) and t.loc[1, "same_best"]
    assert t.loc[8, "spearman"] == pytest.approx(-1.0) and not t.loc[8, "same_best"]
    assert t.loc[8, "best_card"] == "torchao-int8-wo" and t.loc[8, "order_card"].startswith("torchao-int8-wo < bnb-nf4")
    # where the cheapest changes: how much more the other card's cheapest costs on each card, against the noise
    noise = 2 * math.sqrt(2 * 0.01 ** 2 / 3) * 100
    assert t.loc[8, "gap_base_pct"] == pytest.approx(300.0)  # int8-wo 4.0 against bf16 1.0 on the H100
    assert t.loc[8, "gap_card_pct"] == pytest.approx(50.0)  # bf16 9.0 against int8-wo 6.0 on the H200
    assert t.loc[8, "noise_base_pct"] == pytest.approx(noise) and t.loc[8, "noise_card_pct"] == pytest.approx(noise)
    assert not t.loc[8, "change_within_noise"]
    assert t.loc[1, "gap_base_pct"] == 0 and t.loc[1, "gap_card_pct"] == 0 and t.loc[1, "change_within_noise"]
    # a change that one card's repetitions cannot resolve: the H200 cells' CV 40 %, its 50 % gap within the noise
    noisy = ca.method_rank_transfer(_card_rows(records, [{**r, "energy_cv": 0.4} if r.get("gpu_id") == H200 else r
                                                         for r in rows])).set_index("batch_size")
    assert noisy.loc[8, "gap_card_pct"] < noisy.loc[8, "noise_card_pct"] and noisy.loc[8, "change_within_noise"]


def test_ranking_verdict_branches():
    assert ca._ranking_verdict(0.943, 21, 11, 0) == (
        "not between these two cards: the method order broadly carries over (Spearman median 0.94); the cheapest "
        "method changes (11 of 21 cells) only within noise")
    assert ca._ranking_verdict(1.0, 4, 0, 0).endswith("(Spearman median 1.00); the cheapest method is the same in "
                                                      "every cell")
    assert ca._ranking_verdict(0.8, 21, 11, 3) == (
        "partly: the method order broadly carries over (Spearman median 0.80), but the cheapest method changes "
        "beyond noise in 3 of 21 cells")
    assert ca._ranking_verdict(0.5, 21, 11, 3).startswith("partly: the method order carries over only roughly "
                                                          "(Spearman median 0.50)")
    assert ca._ranking_verdict(-0.5, 2, 2, 2) == (
        "agrees: the method order changes with the card (Spearman median -0.50); the cheapest method changes in 2 "
        "of 2 cells, 2 beyond noise")


def _hardware_cells(records, e200: dict[str, float], u: float = 0.05) -> pd.DataFrame:
    """Two architectures x batch cells (batch 1 and 8) with bf16, fp16 and bnb-nf4 on both cards: the H100 at
    1.0 / 1.01 / 1.5 J/token and 100 tokens/s, the H200 at `e200` and 125 tokens/s, the H100 cells at a share
    `u` of the bandwidth roofline; plus one H100 bf16 repeat on another machine, 10 % off."""
    e100 = {"bf16": 1.0, "fp16": 1.01, "bnb-nf4": 1.5}
    rows = [{"gpu_id": c, "quant": q, "batch_size": b, "decode_energy_per_token_j": v, "bandwidth_utilization": u,
             "tokens_per_s": 125.0 if c == H200 else 100.0}
            for b in (1, 8) for c, e in ((H100, e100), (H200, e200)) for q, v in e.items()]
    rows.append({"quant": "bf16", "decode_energy_per_token_j": 1.1, "bandwidth_utilization": u, "slice": "repeats",
                 "machine": "m2"})
    return _card_rows(records, rows)


GPUS_1_2 = pd.DataFrame({"id": [H100, H200], "bandwidth_gbs": [1000.0, 2000.0]})


@pytest.mark.parametrize(("nf4", "verdict", "ranking"), [
    # the H200 nf4 costs more than its bf16: the method adds nothing to the card; the method order is the same
    (1.2, "smaller than claimed: up to 25 % (paper 40 %), mostly from the card, not the method (the method adds "
          "beyond noise in none of the 2 cells)",
     "not between these two cards: the method order broadly carries over (Spearman median 1.00); the cheapest "
     "method is the same in every cell"),
    # nf4 on the H200 saves 6.7 % over its bf16 (noise 1.6 %): the method adds beyond noise, the card still more
    (0.70, "smaller than claimed: up to 30 % (paper 40 %), mostly from the card, not the method (the method adds "
           "beyond noise in 2 of 2 cells)",
     "agrees: the method order changes with the card (Spearman median -0.50); the cheapest method changes in 2 of "
     "2 cells, 2 beyond noise"),
    # nf4 on the H200 saves a third over its bf16: more than the card alone (25 %)
    (0.50, "as large as claimed: up to 50 % (paper 40 %), mostly from the method (the method adds beyond noise in 2 "
           "of 2 cells)", None),
])
def test_hardware_findings_co_optimisation_and_ranking_verdicts(records, nf4, verdict, ranking):
    hw = ca._hardware_findings(_hardware_cells(records, {"bf16": 0.75, "fp16": 0.76, "bnb-nf4": nf4}), SHORT,
                               GPUS_1_2)
    assert hw["co"][2] == verdict
    # the card alone saves 25 % (bf16 0.75 against 1.0) in both cells
    assert "the card alone (bf16 on the best card) median 25.0 % (up to 25.0 %)" in hw["co"][0]
    if ranking:
        assert hw["ranking"][2] == ranking


@pytest.mark.parametrize(("u", "verdict"), [
    # 5 % of the roofline: the bandwidth predicts 1 / (0.95 + 0.025) = x1.026, measured x1.25
    (0.05, "the h200 uses less energy per token (median 25 %), and decodes faster by far more than the bandwidth "
           "model predicts (tokens/s x1.25 measured, x1.026 predicted from 2.00x the bandwidth, medians): mostly not "
           "the memory"),
    # half the step memory-bound: predicted x1.333, measured x1.25
    (0.5, "the h200 uses less energy per token (median 25 %), and decodes faster by about what the bandwidth model "
          "predicts (tokens/s x1.25 measured, x1.333 predicted from 2.00x the bandwidth, medians)"),
    # fully memory-bound: predicted x2
    (1.0, "the h200 uses less energy per token (median 25 %), and decodes faster by less than the bandwidth model "
          "predicts (tokens/s x1.25 measured, x2.000 predicted from 2.00x the bandwidth, medians)"),
])
def test_hardware_findings_hardware_verdict_against_the_bandwidth_model(records, u, verdict):
    hw = ca._hardware_findings(_hardware_cells(records, {"bf16": 0.75, "fp16": 0.76, "bnb-nf4": 1.2}, u), SHORT,
                               GPUS_1_2)
    ours, evidence, got, why = hw["hardware"]
    assert got == verdict
    assert evidence == f"measured ({H200}: one machine; {H100}: one machine)"
    # 6 cells; the repeat of the H100 bf16 b1 cell is 10 % off: the largest cross-machine difference
    assert "6 cells" in ours and "within the largest cross-machine difference of one h100-sxm cell (10 %)" in ours
    assert "median x0.75 against m)" in why


def test_figure4_matrix_rows_per_card_and_one_reference(records):
    df = _card_rows(records, [{"quant": "bf16", "decode_energy_per_token_j": 1.0},
                              {"quant": "bnb-nf4", "decode_energy_per_token_j": 2.0},
                              {"quant": "bf16", "decode_energy_per_token_j": 0.8, "gpu_id": H200},
                              {"quant": "bnb-nf4", "decode_energy_per_token_j": 1.5, "gpu_id": H200}])
    ex = ca.grid_scope_excludes(ca.GRIDS / "h200-campaign.yaml", H200)
    assert ex and set(ex[0]["quant"]) == {"fp32", "torchao-int8-dyn"}
    own = ca.figure4_matrix(df, MODEL, SHORT, ex)
    common = ca.figure4_matrix(df, MODEL, SHORT, ex, baseline_card=H100)
    h1, h2 = f"{H100} · hf-eager · b1", f"{H200} · hf-eager · b1"
    assert list(own["ratio"].index) == [h1, h2]
    assert own["ratio"].loc[h2, "bnb-nf4"] == pytest.approx(1.5 / 0.8)  # against the H200's own bf16
    assert common["ratio"].loc[h2, "bnb-nf4"] == pytest.approx(1.5)  # against the H100 bf16 of the cell
    assert common["ratio"].loc[h2, "bf16"] == pytest.approx(0.8)
    assert common["ratio"].loc[h1, "bnb-nf4"] == pytest.approx(2.0)
    # the H200 grid has no fp32: excluded there only
    assert own["status"].loc[h2, "fp32"] == "excluded" and own["status"].loc[h1, "fp32"] == "not yet run"


def test_selfchecks_of_both_cards_side_by_side():
    sc = {**ca.load_selfchecks(), **ca.load_selfchecks(ca.H200_MEASUREMENTS)}
    t = ca.selfcheck_table(sc)
    assert "NVIDIA H200" in set(t["gpu_name"]) and t["gpu_name"].str.startswith("NVIDIA H100").any()
    onehz = ca.onehz_table(ca.load_records().iloc[:0], sc)
    h200 = onehz[onehz["gpu_name"] == "NVIDIA H200"]
    assert len(h200) == 2 and (h200["origin"] == "meter self-check").all()


@pytest.mark.slow
def test_card_effect_and_key_findings_on_the_committed_records(cat, tmp_path):
    cards = ca.load_cards()
    t = ca.card_effect(ca.method_records(cards), gpus=cat["gpus"], engine="hf-eager")
    assert len(t) > 0 and (t["card"] == H200).all() and (t["baseline_card"] == H100).all()
    np.testing.assert_allclose(t["energy_ratio"], t["e_card_j"] / t["e_base_j"])
    assert (t["workload"] == f"{SHORT[0]}/{SHORT[1]}").all() and (t["engine"] == "hf-eager").all()
    # every engine by default, each cell paired within its engine; the compiled H200 cells (s10) pair too
    both = ca.card_effect(ca.method_records(cards), gpus=cat["gpus"])
    assert set(both["engine"]) == {"hf-eager", "hf-compiled"}
    assert len(both) == len(t) + len(ca.card_effect(ca.method_records(cards), engine="hf-compiled"))
    # the cards sit in different machines; the bandwidth prediction is between 1 and the bandwidth ratio
    assert not (t["machine_base"] == t["machine_card"]).any()
    assert ((t["speedup_if_bandwidth"] >= 1) & (t["speedup_if_bandwidth"] <= t["bandwidth_ratio"])).all()
    kf = ca.key_findings(ca.method_records(ca.load_records()), cat["models"], None, MODEL, ca.load_selfcheck(),
                         cat["quant_accuracy"], cards=cards, gpus=cat["gpus"]).set_index("claim")
    co = kf.loc["Hardware x quantization co-optimisation (s4.3)"]
    assert "h200" in co["ours"] and "not testable" not in co["verdict"]
    assert "bandwidth" in co["why"] and "predicts a median speedup" in co["why"]
    assert {"Hardware choice alone, measured (s4.2)", "The best strategy depends on the card (s4.3)"} <= set(kf.index)
    # the measured speedup is several times the bandwidth prediction: the verdict must not say "less than"
    hw = kf.loc["Hardware choice alone, measured (s4.2)", "verdict"]
    assert "far more than the bandwidth model predicts" in hw and "mostly not the memory" in hw
    assert "only within noise" in kf.loc["The best strategy depends on the card (s4.3)", "verdict"]
    # the 1 Hz row: the records of both cards, each named, like the self-checks
    onehz = kf.loc["Energy from 1 Hz nvidia-smi power (eq. 1)", "ours"]
    assert "H100 80GB HBM3 records" in onehz and "H200 records" in onehz
    assert "compiled (hf-compiled" in kf.loc["Hardware choice alone, measured (s4.2)", "ours"]
    pytest.importorskip("matplotlib")
    p = ca.plot_card_effect(t, tmp_path / "cards.png", machine_spread_pct=5.0)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compiled_pairs_side_by_side_compares_a_store_with_the_campaign(records, cat):
    """Compiled NF4 and bf16 measured again in one call (repeats) against the campaign's cross-machine pair."""
    df = _cells(records, [
        {"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "machine": "m1"},
        {"engine": "hf-compiled", "quant": "bnb-nf4", "decode_energy_per_token_j": 0.8, "machine": "m2"},
        {"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "slice": "repeats", "machine": "m3"},
        {"engine": "hf-compiled", "quant": "bnb-nf4", "decode_energy_per_token_j": 0.95, "slice": "repeats",
         "machine": "m3"},
        {"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "batch_size": 64,
         "slice": "repeats", "machine": "m3"},  # a baseline without its method: no row
    ])
    campaign = ca.method_cost_by_engine(df[df["slice"] == "campaign"], cat["models"])
    t = ca.compiled_pairs_side_by_side(df[df["slice"] == "repeats"], cat["models"], campaign)
    assert len(t) == 1 and t.loc[0, "quant"] == "bnb-nf4" and bool(t.loc[0, "same_machine_compiled"])
    assert t.loc[0, "energy_reduction_pct_compiled"] == pytest.approx(5.0)
    assert t.loc[0, "energy_reduction_pct_compiled_reference"] == pytest.approx(20.0)
    assert not bool(campaign.loc[campaign["quant"] == "bnb-nf4", "same_machine_compiled"].iloc[0])
    alone = ca.compiled_pairs_side_by_side(df[df["slice"] == "repeats"], cat["models"])
    assert np.isnan(alone.loc[0, "energy_reduction_pct_compiled_reference"])
    assert ca.compiled_pairs_side_by_side(df[df["engine"] == "hf-eager"], cat["models"]).empty


def test_compiled_pairs_side_by_side_prefers_the_campaign_figure(records, cat):
    """A pair held by the probe and the campaign alike: the reference figure is the campaign's."""
    rows = [{"engine": "hf-compiled", "quant": q, "decode_energy_per_token_j": e, "slice": sl}
            for sl, e_nf4 in (("probe", 0.5), ("campaign", 0.9)) for q, e in (("bf16", 1.0), ("bnb-nf4", e_nf4))]
    rows += [{"engine": "hf-compiled", "quant": "bf16", "decode_energy_per_token_j": 1.0, "slice": "repeats"},
             {"engine": "hf-compiled", "quant": "bnb-nf4", "decode_energy_per_token_j": 1.0, "slice": "repeats"}]
    df = _cells(records, rows)
    reference = ca.method_cost_by_engine(df[df["slice"] != "repeats"], cat["models"])
    for order in (reference, reference.iloc[::-1]):
        t = ca.compiled_pairs_side_by_side(df[df["slice"] == "repeats"], cat["models"], order)
        assert t.loc[0, "energy_reduction_pct_compiled_reference"] == pytest.approx(10.0)


def _shape_record(model, batch, dynamic, energy, speed, before, uuid="GPU-a", cv=0.01):
    params = {"compiled": True, "batch_sizes_before": before, "graphs_compiled_warmup": 1,
              "graphs_compiled_timed": 0}
    if dynamic is not None:
        params["dynamic"] = dynamic
    return {"status": "ok", "engine": "hf-compiled", "model": model, "quant": "bf16", "batch_size": batch,
            "workload": "256/128", "engine_params": params, "decode_energy_per_token_j": energy,
            "tokens_per_s": speed, "ttft_ms": 10.0, "energy_cv": cv, "repetitions": 3, "gpu_uuid": uuid,
            "created_at": "2026-11-27T08:00:00+00:00"}


def test_compile_shape_comparison_pairs_the_variants_and_divides_by_the_static_control():
    rows = [_shape_record("m", 1, None, 1.0, 100.0, []), _shape_record("m", 1, False, 1.1, 90.0, [], uuid="GPU-b"),
            _shape_record("m", 8, None, 0.5, 400.0, [1]), _shape_record("m", 8, False, 0.44, 500.0, [1], uuid="GPU-b"),
            _shape_record("m", 32, None, 0.2, 900.0, [1, 8])]  # no static partner: no row
    t = ca.compile_shape_comparison(pd.DataFrame(rows))
    assert list(t["batch_size"]) == [1, 8]
    b1, b8 = t.iloc[0], t.iloc[1]
    assert (b1["graph_auto"], b8["graph_auto"]) == ("static", "dynamic")
    assert b8["energy_ratio"] == pytest.approx(0.88) and b8["speed_ratio"] == pytest.approx(1.25)
    assert b8["control_energy_ratio"] == pytest.approx(1.1)
    assert b8["energy_ratio_vs_control"] == pytest.approx(0.8)
    assert bool(b8["beyond_noise"]) and not bool(b8["same_gpu_unit"])  # 12 % against ~1.6 % noise
    s = ca.compile_shape_summary(t)
    assert s.loc["dynamic", "cells"] == 1 and s.loc["static", "energy_abs_diff_median_pct"] == pytest.approx(10.0)


def test_compile_shape_comparison_takes_the_control_of_the_same_workload():
    rows = []
    for wl, ratio in (("256/128", 1.1), ("1024/256", 0.9)):
        rows += [_shape_record("m", 1, None, 1.0, 100.0, []), _shape_record("m", 1, False, ratio, 100.0, []),
                 _shape_record("m", 8, None, 0.5, 400.0, [1]), _shape_record("m", 8, False, 0.5, 400.0, [1])]
        for r in rows[-4:]:
            r["workload"] = wl
    t = ca.compile_shape_comparison(pd.DataFrame(rows)).set_index(["workload", "batch_size"])
    assert t.loc[("256/128", 1), "energy_ratio_vs_control"] == pytest.approx(1.0)
    assert t.loc[("1024/256", 1), "energy_ratio_vs_control"] == pytest.approx(1.0)
    assert t.loc[("1024/256", 8), "control_energy_ratio"] == pytest.approx(0.9)


def test_compile_shape_comparison_reads_only_its_own_store():
    rows = [_shape_record("m", 1, None, 1.0, 100.0, []), _shape_record("m", 1, False, 1.1, 90.0, []),
            _shape_record("m", 1, None, 5.0, 100.0, [])]  # a later automatic cell of another experiment store
    rows[2]["created_at"] = "2026-11-27T10:00:00+00:00"
    df = pd.DataFrame(rows).assign(slice=["compile-shapes", "compile-shapes", "compiled-fp16-pairs"])
    t = ca.compile_shape_comparison(df)
    assert t.loc[0, "e_auto_j"] == pytest.approx(1.0)
    assert ca.compile_shape_comparison(df.drop(columns="slice")).loc[0, "e_auto_j"] == pytest.approx(5.0)


def test_compile_shape_comparison_reads_the_shipped_experiment():
    df = ca.load_records(ca.EXPERIMENTS, sessions=ca.MEASUREMENTS)
    shapes = df[df["slice"] == "compile-shapes"]
    assert shapes["machine"].str.contains("b9a9f497").all()  # s8-a's machine, named from h100/raw/
    t = ca.compile_shape_comparison(df)
    assert len(t) == len(shapes) // 2  # every cell in both variants, nothing from the other stores
    assert set(t["graph_auto"]) == {"static", "dynamic"}
    assert (t["graphs_timed_auto"] == 0).all() and (t["graphs_timed_static"] == 0).all()
    # the automatic variant reuses its dynamic graph from its third batch size on; the static one compiles anew
    third = t[t["batch_size"] == 32]
    assert (third["graphs_warmup_auto"] == 0).all() and (third["graphs_warmup_static"] == 1).all()


def test_same_machine_baseline_pairs_only_cells_of_one_machine():
    def rec(quant, energy, speed, machine, batch=1, status="ok"):
        return {"status": status, "engine": "hf-compiled", "model": "m", "batch_size": batch, "workload": "256/128",
                "quant": quant, "machine": machine, "decode_energy_per_token_j": energy, "tokens_per_s": speed,
                "record_id": f"{quant}-{machine}-{batch}"}
    df = pd.DataFrame([rec("fp16", 1.5, 90.0, "A"), rec("torchao-fp8", 0.9, 50.0, "B"), rec("bf16", 1.0, 100.0, "A"),
                       rec("fp16", 2.0, 90.0, "A", batch=8)])
    ref = pd.DataFrame([rec("bf16", 1.0, 100.0, "A"), rec("bf16", 1.2, 90.0, "A"), rec("bf16", 1.0, 100.0, "C"),
                        rec("fp16", 1.0, 100.0, "A")])
    t = ca.same_machine_baseline(df, ref)
    assert len(t) == 1  # fp8 has no baseline on its machine, batch 8 none at its batch size, bf16 is the baseline
    r = t.iloc[0]
    assert (r["quant"], r["n_baseline"]) == ("fp16", 2)
    assert r["energy_ratio_min"] == pytest.approx(1.25) and r["energy_ratio_max"] == pytest.approx(1.5)
    assert r["speed_ratio_min"] == pytest.approx(0.9) and r["speed_ratio_max"] == pytest.approx(1.0)


def test_same_machine_baseline_reports_the_repetition_noise_of_the_ratio():
    def rec(quant, energy, cv):
        return {"status": "ok", "engine": "hf-compiled", "model": "m", "batch_size": 1, "workload": "256/128",
                "quant": quant, "machine": "A", "decode_energy_per_token_j": energy, "tokens_per_s": 1.0,
                "record_id": quant, "energy_cv": cv, "repetitions": 3}
    df = pd.DataFrame([rec("fp16", 1.1, 0.03), rec("bf16", 1.0, 0.04)])
    t = ca.same_machine_baseline(df, df)
    assert t.loc[0, "noise_pct"] == pytest.approx(ca.noise_pct(0.03, 3, 0.04, 3)) == pytest.approx(
        2 * math.sqrt((0.03 ** 2 + 0.04 ** 2) / 3) * 100)


def _cell(quant, energy, speed, *, batch=1, created="2026-11-27T08:00:00+00:00", machine="A", params=None,
          slice_="campaign", compile_s=100.0, cv=0.01):
    return {"status": "ok", "engine": "hf-compiled", "model": "m", "quant": quant, "batch_size": batch,
            "prompt_tokens": 256, "output_tokens": 128, "workload": "256/128", "gpu_id": "h100-sxm",
            "decode_energy_per_token_j": energy, "tokens_per_s": speed, "compile_time_s": compile_s,
            "energy_cv": cv, "repetitions": 3, "machine": machine, "created_at": created, "slice": slice_,
            "rejected": False, "quant_params": params or {}, "record_id": f"{quant}-{batch}-{created}",
            "engine_params": {"compiled": True}}


def test_torchao_settings_comparison_pairs_the_settings_off_cells_with_the_campaigns():
    records = pd.DataFrame([_cell("torchao-fp8", 3.0, 70.0), _cell("bf16", 2.5, 110.0),
                            _cell("torchao-fp8", 0.2, 2000.0, batch=32), _cell("bf16", 0.25, 2500.0, batch=32),
                            _cell("torchao-int4-wo", 2.0, 100.0)])  # no settings-off partner: no row
    off = {"set_inductor_config": False}
    experiments = pd.DataFrame([
        _cell("torchao-fp8", 2.4, 90.0, machine="B", params=off, slice_="compiled-torchao-settings", compile_s=40.0),
        _cell("torchao-fp8", 0.2, 2000.0, batch=32, machine="A", params=off, slice_="compiled-torchao-settings"),
        _cell("torchao-int4-wo", 1.0, 100.0, params={}, slice_="compiled-torchao-settings"),  # default settings
        _cell("torchao-int4-wo", 1.0, 100.0, params=off, slice_="another-store")])
    t = ca.torchao_settings_comparison(experiments, records).set_index("batch_size")
    assert list(t.index) == [1, 32] and set(t["quant"]) == {"torchao-fp8"}
    assert t.loc[1, "energy_ratio"] == pytest.approx(0.8) and t.loc[1, "speed_ratio"] == pytest.approx(90 / 70)
    assert t.loc[1, "compile_ratio"] == pytest.approx(0.4)
    assert bool(t.loc[1, "beyond_noise"]) and not bool(t.loc[32, "beyond_noise"])
    assert not bool(t.loc[1, "same_machine"]) and bool(t.loc[32, "same_machine"])
    assert t.loc[1, "energy_ratio_vs_bf16_with"] == pytest.approx(1.2)
    assert t.loc[1, "energy_ratio_vs_bf16_without"] == pytest.approx(0.96)


def test_remeasured_takes_only_later_records_of_the_same_cell():
    rejected = pd.DataFrame([_cell("fp16", 4.0, 100.0, machine="A"), _cell("bnb-nf4", 2.0, 100.0)])
    records = pd.DataFrame([_cell("fp16", 3.0, 110.0, created="2026-11-27T10:00:00+00:00", machine="B"),
                            _cell("fp16", 3.2, 110.0, created="2026-11-27T11:00:00+00:00", machine="A"),
                            _cell("bnb-nf4", 1.0, 100.0, created="2026-11-26T10:00:00+00:00")])  # earlier
    t = ca.remeasured(rejected, records)
    assert list(t["quant"]) == ["fp16"]
    r = t.iloc[0]
    assert r["n_new"] == 2 and bool(r["same_machine"])
    assert r["energy_ratio"] == pytest.approx(3.1 / 4.0) and r["speed_ratio"] == pytest.approx(1.1)


def test_the_shipped_torchao_settings_control_pairs_every_cell():
    experiments = ca.load_records(ca.EXPERIMENTS, sessions=ca.MEASUREMENTS)
    store = experiments[(experiments["slice"] == "compiled-torchao-settings") & (experiments["status"] == "ok")]
    t = ca.torchao_settings_comparison(experiments, ca.load_records())
    assert len(store) > 0 and len(t) == len(store)
    assert t["e_bf16_j"].notna().all()


def test_torchao_settings_comparison_prefers_the_default_store_on_the_same_machine():
    records = pd.DataFrame([_cell("torchao-fp8", 3.0, 70.0, machine="A"), _cell("bf16", 2.5, 110.0, machine="A")])
    off = {"set_inductor_config": False}
    experiments = pd.DataFrame([
        _cell("torchao-fp8", 2.4, 90.0, machine="B", params=off, slice_="compiled-torchao-settings"),
        _cell("torchao-fp8", 2.6, 80.0, machine="B", slice_="compiled-torchao-default"),
        _cell("torchao-fp8", 9.9, 80.0, machine="C", slice_="compiled-torchao-default"),  # another machine: unused
        _cell("bf16", 3.0, 100.0, machine="B", slice_="compiled-torchao-default"),
        _cell("bf16", 1.0, 100.0, machine="B", slice_="compile-shapes") | {"engine_params": {"dynamic": False}}])
    r = ca.torchao_settings_comparison(experiments, records).iloc[0]
    assert r["with_from"] == "compiled-torchao-default" and bool(r["same_machine"])
    assert r["energy_ratio"] == pytest.approx(2.4 / 2.6)
    assert bool(r["bf16_same_machine"]) and r["e_bf16_j"] == pytest.approx(3.0)  # not the static-graph record
    alone = ca.torchao_settings_comparison(experiments[experiments["machine"] != "B"].pipe(
        lambda d: pd.concat([d, experiments.iloc[[0]]])), records).iloc[0]
    assert alone["with_from"] == "campaign" and not bool(alone["same_machine"])
    assert not bool(alone["bf16_same_machine"]) and alone["e_bf16_j"] == pytest.approx(2.5)


def test_torchao_settings_comparison_reads_the_repeat_store_and_prefers_its_same_machine_pair():
    records = pd.DataFrame([_cell("torchao-fp8", 3.0, 70.0, machine="A"), _cell("bf16", 2.5, 110.0, machine="A")])
    off = {"set_inductor_config": False}
    experiments = pd.DataFrame([
        _cell("torchao-fp8", 2.4, 90.0, machine="B", params=off, slice_="compiled-torchao-settings"),
        _cell("torchao-fp8", 2.2, 95.0, machine="C", params=off, slice_="compiled-torchao-settings-repeat",
              created="2026-11-28T08:00:00+00:00"),
        _cell("torchao-fp8", 2.75, 80.0, machine="C", slice_="compiled-torchao-default",
              created="2026-11-28T08:10:00+00:00")])
    t = ca.torchao_settings_comparison(experiments, records)
    assert len(t) == 1  # one row per cell
    r = t.iloc[0]
    assert bool(r["same_machine"]) and r["with_from"] == "compiled-torchao-default"
    assert r["energy_ratio"] == pytest.approx(0.8)
    empty = ca.torchao_settings_comparison(experiments[experiments["slice"] == "compiled-torchao-default"], records)
    assert empty.empty and "energy_ratio" in empty.columns


def test_torchao_settings_summary_counts_each_direction_per_batch_and_machine_pairing():
    t = pd.DataFrame({"model": ["a", "b", "a", "a"], "batch_size": [1, 1, 8, 8],
                      "same_machine": [True, True, True, False], "energy_ratio": [0.7, 1.1, 0.9, 0.95],
                      "beyond_noise": [True, True, False, True], "speed_ratio": [1.3, 0.9, 1.2, 1.0],
                      "compile_ratio": [0.4, 0.5, 0.3, 0.6]})
    s = ca.torchao_settings_summary(t)
    one = s.loc[(True, 1)]
    assert one["cells"] == 2 and one["models"] == 2 and one["energy_ratio_median"] == pytest.approx(0.9)
    assert (one["lower_beyond_noise"], one["higher_beyond_noise"]) == (1, 1)
    assert s.loc[(True, 8), "lower_beyond_noise"] == 0 and s.loc[(False, 8), "lower_beyond_noise"] == 1
    assert s.loc[(True, 1), "compile_ratio_max"] == pytest.approx(0.5)


def test_settings_off_across_machines_pairs_one_cell_measured_on_two_machines():
    off = {"set_inductor_config": False}
    experiments = pd.DataFrame([
        _cell("torchao-fp8", 2.0, 100.0, machine="B", params=off, slice_="compiled-torchao-settings"),
        _cell("torchao-fp8", 2.5, 80.0, machine="C", params=off, slice_="compiled-torchao-settings-repeat",
              created="2026-11-28T08:00:00+00:00"),
        _cell("torchao-fp8", 9.0, 80.0, machine="C", slice_="compiled-torchao-default",  # the default: not a side
              created="2026-11-28T09:00:00+00:00"),
        _cell("torchao-int4-wo", 1.0, 100.0, machine="B", params=off, slice_="compiled-torchao-settings")])
    t = ca.settings_off_across_machines(experiments)
    assert len(t) == 1
    r = t.iloc[0]
    assert (r["machine_a"], r["machine_b"]) == ("B", "C")
    assert r["energy_ratio"] == pytest.approx(1.25) and r["speed_ratio"] == pytest.approx(0.8)
    assert bool(r["beyond_noise"])


def test_anchor_cells_are_the_anchor_grids():
    cells = ca.anchor_cells()
    assert len(cells) == 2 and set(cells["batch_size"]) == {1, 32} and set(cells["workload"]) == {"256/128"}
    assert set(cells["quant"]) == {"bf16"} and set(cells["engine"]) == {"hf-eager"}


def _anchor(energy, speed, *, machine, unit, card="h100-sxm", batch=1, quant="bf16", status="ok", cv=0.01):
    return {"status": status, "cell_hash": f"m-{quant}-{batch}", "model": "m", "quant": quant, "engine": "hf-eager",
            "batch_size": batch, "workload": "256/128", "gpu_id": card, "machine": machine, "gpu_unit": unit, "slice": "machine-anchors",
            "created_at": f"2026-11-28T0{len(unit)}:00:00+00:00", "decode_energy_per_token_j": energy,
            "tokens_per_s": speed, "decode_avg_power_w": energy * speed, "energy_cv": cv, "repetitions": 4}


def test_machine_anchors_compare_each_gpu_with_its_cards_typical_gpu():
    cells = pd.DataFrame([{"cell_hash": "m-bf16-1", "model": "m", "quant": "bf16", "engine": "hf-eager",
                           "batch_size": 1, "workload": "256/128"}])
    df = pd.DataFrame([
        _anchor(1.0, 100.0, machine="A", unit="a0"), _anchor(1.2, 100.0, machine="A", unit="a0"),  # unit mean 1.1
        _anchor(1.0, 80.0, machine="B", unit="b0"), _anchor(1.4, 50.0, machine="B", unit="b1"),
        _anchor(5.0, 10.0, machine="C", unit="c0", card="h200"),
        _anchor(9.0, 10.0, machine="A", unit="a0", quant="fp16"),  # not an anchor cell
        _anchor(9.0, 10.0, machine="A", unit="a0", status="failed")])
    t = ca.machine_anchors(df, cells)
    assert len(t) == 5
    h100 = t[t["gpu_id"] == "h100-sxm"]
    # per-unit means 1.1, 1.0 and 1.4: the card's typical GPU is 1.1
    assert sorted(h100["energy_vs_card"].round(6)) == pytest.approx(sorted([1.0 / 1.1, 1.2 / 1.1, 1.0 / 1.1,
                                                                          1.4 / 1.1]))
    assert t.loc[t["gpu_id"] == "h200", "energy_vs_card"].tolist() == [1.0]
    assert t["noise_pct"].iloc[0] == pytest.approx(200 * 0.01 / 2)
    s = ca.machine_anchor_summary(t)
    assert s.loc[("h100-sxm", "B"), "gpus"] == 2 and s.loc[("h100-sxm", "B"), "records"] == 2
    assert s.loc[("h100-sxm", "B"), "energy_vs_card_max"] == pytest.approx(1.4 / 1.1)
    assert s.loc[("h100-sxm", "A"), "energy_vs_card"] == pytest.approx(1.0)
    assert s.loc[("h100-sxm", "A"), "speed_vs_card"] == pytest.approx(100.0 / 80.0)
    assert t["quiet"].all() and s["quiet"].tolist() == s["records"].tolist()


def test_loud_anchors_are_shown_but_left_out_of_the_typical_gpu_and_the_summary():
    cells = pd.DataFrame([{"cell_hash": "m-bf16-1", "model": "m", "quant": "bf16", "engine": "hf-eager",
                           "batch_size": 1, "workload": "256/128"}])
    df = pd.DataFrame([
        _anchor(1.0, 100.0, machine="A", unit="a0"), _anchor(1.2, 90.0, machine="A", unit="a1"),
        _anchor(3.0, 30.0, machine="A", unit="a2", cv=0.16),  # a repetition lost its speed: 16 % noise, loud
        _anchor(1.1, 95.0, machine="B", unit="b0", cv=0.101),  # 10.1 % noise (4 repetitions): just loud
        _anchor(2.0, 10.0, machine="C", unit="c0", card="h200", cv=0.3)])  # the card's only record, loud
    t = ca.machine_anchors(df, cells)
    assert dict(zip(t["gpu_unit"], t["quiet"], strict=True)) == {"a0": True, "a1": True, "a2": False, "b0": False,
                                                                 "c0": False}
    assert ca.machine_anchors(pd.DataFrame([_anchor(1.0, 9.0, machine="A", unit="a0", cv=0.1)]), cells)["quiet"].all()
    h100 = t[t["gpu_id"] == "h100-sxm"].set_index("gpu_unit")
    # typical over the quiet units a0 and a1 only (median 1.1), not over all four (1.15)
    assert h100.loc["a2", "energy_vs_card"] == pytest.approx(3.0 / 1.1)
    assert h100.loc["a0", "energy_vs_card"] == pytest.approx(1.0 / 1.1)
    # a card with no quiet record keeps a reference: its loud records
    assert t.loc[t["gpu_id"] == "h200", "energy_vs_card"].tolist() == [1.0]
    s = ca.machine_anchor_summary(t)
    assert s.loc[("h100-sxm", "A"), "records"] == 3 and s.loc[("h100-sxm", "A"), "quiet"] == 2
    assert s.loc[("h100-sxm", "A"), "energy_vs_card_max"] == pytest.approx(1.2 / 1.1)  # a2 left out
    assert np.isnan(s.loc[("h100-sxm", "B"), "energy_vs_card"]) and s.loc[("h100-sxm", "B"), "gpus"] == 1


def test_woq_switch_comparison_pairs_the_switch_with_same_machine_bf16_and_the_campaigns_rewrite():
    """Per cell and machine: the switch's int8 record against bf16 of the same machine (none on another: NaN) and
    against the campaign's int8 cell with the rewrite; records without `woq_lowering: false` are not the switch."""
    off = {"compiled": True, "woq_lowering": False, "woq_rewrites_warmup": 0}

    def row(quant, energy, speed, machine, unit, batch=8, params=off, cv=0.01):
        return _cell(quant, energy, speed, batch=batch, machine=machine, cv=cv) | {
            "engine_params": params, "gpu_unit": unit, "slice": "compiled-int8wo-woq"}

    switch = pd.DataFrame([row("torchao-int8-wo", 0.6, 500.0, "A", "g0"), row("bf16", 0.4, 1000.0, "A", "g1"),
                           row("torchao-int8-wo", 0.5, 600.0, "B", "g2"),  # no bf16 on machine B
                           row("torchao-int8-wo", 0.41, 990.0, "A", "g0", batch=32, cv=0.2),
                           row("bf16", 0.40, 1000.0, "A", "g0", batch=32, cv=0.2),
                           row("torchao-int8-wo", 9.0, 50.0, "A", "g0", batch=1, params={"compiled": True})])
    campaign = pd.DataFrame([_cell("torchao-int8-wo", 3.0, 50.0, batch=8),
                             _cell("torchao-int8-wo", 2.0, 70.0, batch=8, machine="C"), _cell("bf16", 0.1, 2000.0, batch=8)])
    t = ca.woq_switch_comparison(switch, campaign)
    assert list(zip(t["batch_size"], t["machine"], strict=True)) == [(8, "A"), (8, "B"), (32, "A")]
    a, b, c = (t.iloc[i] for i in range(3))
    assert a["energy_vs_bf16"] == pytest.approx(1.5) and a["speed_vs_bf16"] == pytest.approx(0.5)
    assert bool(a["beyond_noise"]) and not bool(a["same_gpu"])
    assert a["decode_energy_per_token_j_rewrite"] == pytest.approx(2.5)  # median over the campaign's records
    assert a["speedup_vs_rewrite"] == pytest.approx(500 / 60) and a["energy_vs_rewrite"] == pytest.approx(0.6 / 2.5)
    assert np.isnan(b["energy_vs_bf16"]) and not bool(b["beyond_noise"]) and b["speedup_vs_rewrite"] == pytest.approx(10)
    assert bool(c["same_gpu"]) and not bool(c["beyond_noise"])  # 2.5 % apart with 20 % CVs
    assert np.isnan(c["speedup_vs_rewrite"])  # the campaign has no batch-32 cell


def test_decode_profiles_reads_each_filed_profile_with_its_calls_switch(tmp_path):
    """One row per `profile-*.json` under `<card>/raw/<call>/`: the rewrite count, the graph cache hit, the top
    kernel (profiler rows that are not kernels left out) and whether the call switched oneDNN off."""
    def profile(folder, name, command, **kw):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "device-call.json").write_text(json.dumps({"command": command}))
        d = {"model": "m", "quant": "torchao-int8-wo", "engine": "hf-compiled", "batch_size": 8, "tokens_per_s": 150.0,
             "gpu_busy_ms": 1000.0, "profiled_wall_ms": 1500.0,
             "top": [{"name": "Torch-Compiled Region: 0/0", "device_total_ms": 990.0},
                     {"name": "at::native::weight_int8pack_mm_kernel(float const*)", "device_total_ms": 900.0},
                     {"name": "aten::mm", "device_total_ms": 950.0},
                     {"name": "triton_poi_fused__to_copy_t_9", "device_total_ms": 20.0}],
             "dynamo_counters": {"inductor": {"woq_matcher_count": 196, "fxgraph_cache_hit": 1}}, **kw}
        (folder / name).write_text(json.dumps(d))

    profile(tmp_path / "h200" / "raw" / "c1", "profile-a.json", "python3 scripts/profile_decode.py ...")
    profile(tmp_path / "h200" / "raw" / "c2", "profile-b.json",
            "W='import torch; torch.backends.mkldnn.enabled = False; ...'", tokens_per_s=540.0,
            top=[{"name": "triton_poi_fused__to_copy_t_9", "device_total_ms": 27.0}], dynamo_counters={})
    (tmp_path / "h200" / "raw" / "c2" / "grid.log").write_text("not a profile")
    t = ca.decode_profiles(tmp_path)
    assert list(t["call"]) == ["c1", "c2"] and set(t["card"]) == {"h200"}
    assert list(t["onednn_off"]) == [False, True]
    assert list(t["woq_rewrites"]) == [196, 0] and list(t["graph_cache_hit"]) == [True, False]
    assert t["top_kernel"][0].startswith("at::native::weight_int8pack_mm_kernel")  # not the region, not aten::mm
    assert t["top_kernel_share"][0] == pytest.approx(0.9) and t["top_kernel_share"][1] == pytest.approx(0.027)
    assert ca.decode_profiles(tmp_path / "none").empty


def test_load_decode_profile_reads_kernels_per_decode_step_and_the_attention_paths(tmp_path, cat):
    layers = int(cat["models"].set_index("id").loc[MODEL, "num_layers"])
    prof = {"model": MODEL, "quant": "bf16", "engine": "hf-compiled", "batch_size": 32, "prompt_tokens": 1024,
            "new_tokens": 11, "tokens_per_s": 500.0, "gpu_busy_ms": 90.0, "profiled_wall_ms": 100.0,
            "top": [{"name": "kv_expand", "calls": 2 * layers * 10, "device_total_ms": 40.0},
                    {"name": "sdpa", "calls": layers * 10, "device_total_ms": 30.0}],
            "attention_calls": [{"mask": True, "kv_len": 1034, "kv_heads": 4, "grouped": False, "calls": layers}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(prof))
    p = ca.load_decode_profile(path, cat["models"])
    assert p["decode_steps"] == 10 and p["num_layers"] == layers and p["engine"] == "hf-compiled"
    k = p["kernels"].set_index("name")
    assert k.loc["kv_expand", "ms_per_step"] == pytest.approx(4.0)
    assert k.loc["kv_expand", "calls_per_layer_step"] == pytest.approx(2.0)
    assert k.loc["sdpa", "calls_per_layer_step"] == pytest.approx(1.0)
    assert p["attention"].to_dict("records") == prof["attention_calls"]
    del prof["attention_calls"]  # a profile of an engine without transformers' attention: an empty table
    path.write_text(json.dumps(prof))
    assert ca.load_decode_profile(path, cat["models"])["attention"].empty


def test_compiled_step_attention_finds_the_expansion_and_attention_kernels_by_name(tmp_path, cat):
    layers = int(cat["models"].set_index("id").loc[MODEL, "num_layers"])
    top = [{"name": "Torch-Compiled Region: 0/0", "calls": 10, "device_total_ms": 100.0},
           {"name": "triton_poi_fused_cat_clone_cos_expand_sin", "calls": 2 * layers * 10, "device_total_ms": 30.0},
           {"name": "cudnn_generated_fort_native_sdpa_sm80_flash_fprop", "calls": layers * 10, "device_total_ms": 20.0},
           {"name": "triton_per_fused_sdpa_softmax", "calls": layers * 10, "device_total_ms": 5.0}]  # not the kernel
    prof = {"model": MODEL, "new_tokens": 11, "top": top}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(prof))
    step = ca.compiled_step_attention(ca.load_decode_profile(path, cat["models"]))
    assert step["step_ms"] == pytest.approx(10.0) and step["kv_expand_ms"] == pytest.approx(3.0)
    assert step["attention_ms"] == pytest.approx(2.0) and step["share"] == pytest.approx(0.5)
    assert step["kv_expand_calls_per_layer_step"] == pytest.approx(2.0)
    path.write_text(json.dumps({**prof, "top": top[:1] + top[2:]}))  # an eager profile, say: no expansion kernel
    with pytest.raises(ValueError, match="K/V expansion kernel"):
        ca.compiled_step_attention(ca.load_decode_profile(path, cat["models"]))


def test_compiled_step_attention_reads_a_profile_without_the_copy_and_picks_the_decode_attention_kernel(tmp_path, cat):
    """Grouped-query SDPA forced (s24): no expansion kernel, reported as 0 ms; of two attention kernels the decode
    steps' (layers x steps calls), not the prefill's (once per layer), even where the prefill's took longer; a
    profile with the copy read as without it raises."""
    layers = int(cat["models"].set_index("id").loc[MODEL, "num_layers"])
    top = [{"name": "Torch-Compiled Region: 0/0", "calls": 10, "device_total_ms": 60.0},
           {"name": "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma", "calls": layers,
            "device_total_ms": 15.0},  # the prefill's
           {"name": "cudnn_generated_fort_native_sdpa_sm80_flash_fprop_wmma", "calls": layers * 10,
            "device_total_ms": 9.0}]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"model": MODEL, "new_tokens": 11, "top": top}))
    step = ca.compiled_step_attention(ca.load_decode_profile(path, cat["models"]), kv_copy=False)
    assert step["step_ms"] == pytest.approx(6.0) and step["attention_ms"] == pytest.approx(0.9)
    assert step["kv_expand_ms"] == 0 and step["kv_expand_calls_per_layer_step"] == 0
    assert step["share"] == pytest.approx(0.15)
    expand = {"name": "triton_poi_fused_cat_clone_cos_expand_sin", "calls": 2 * layers * 10, "device_total_ms": 30.0}
    path.write_text(json.dumps({"model": MODEL, "new_tokens": 11, "top": [*top, expand]}))
    with pytest.raises(ValueError, match="read as without the copy"):
        ca.compiled_step_attention(ca.load_decode_profile(path, cat["models"]), kv_copy=False)


def test_attention_variant_names_the_setting_from_engine_params():
    assert ca.attention_variant({}) == ca.attention_variant(None) == ca.attention_variant({"sdpa_gqa": "auto"}) == "default"
    assert ca.attention_variant({"sdpa_gqa": "force", "compiled": True}) == "sdpa_gqa=force"
    assert ca.attention_variant({"attn_implementation": "flex_attention"}) == "flex_attention"
    assert ca.attention_variant({"attn_implementation": "eager", "sdpa_gqa": "force"}) == "eager+sdpa_gqa=force"


def test_attention_comparison_pairs_each_setting_with_its_same_machine_twins_never_pooling_them():
    base = {"gpu_id": "h200", "model": "mistral-7b-instruct-v0.2", "quant": "bf16", "batch_size": 32,
            "workload": "1024/256", "status": "ok", "error": None, "energy_cv": 0.01, "repetitions": 3}
    rows = [
        {**base, "machine": "m1", "engine": "hf-compiled", "engine_params": {"compiled": True}, "tokens_per_s": 100.0,
         "decode_energy_per_token_j": 1.0},
        {**base, "machine": "m1", "engine": "hf-eager", "engine_params": {}, "tokens_per_s": 80.0,
         "decode_energy_per_token_j": 0.6},
        {**base, "machine": "m1", "engine": "hf-compiled", "engine_params": {"sdpa_gqa": "force"}, "tokens_per_s": 150.0,
         "decode_energy_per_token_j": 0.7},
        {**base, "machine": "m1", "engine": "hf-compiled", "engine_params": {"attn_implementation": "flex_attention"},
         "status": "failed", "error": "flex refused", "tokens_per_s": None, "decode_energy_per_token_j": None},
        {**base, "machine": "m2", "engine": "hf-compiled", "engine_params": {"sdpa_gqa": "force"}, "tokens_per_s": 140.0,
         "decode_energy_per_token_j": 0.8},  # no twin on this machine
        {**base, "machine": "m3", "engine": "hf-compiled", "engine_params": {}, "tokens_per_s": 50.0,
         "decode_energy_per_token_j": 3.0},  # another machine's default: never paired with m1's or m2's
    ]
    t = ca.attention_comparison(pd.DataFrame(rows)).set_index(["variant", "machine"])
    assert sorted(t.index) == [("flex_attention", "m1"), ("sdpa_gqa=force", "m1"), ("sdpa_gqa=force", "m2")]
    m1 = t.loc[("sdpa_gqa=force", "m1")]
    assert m1["energy_vs_compiled"] == pytest.approx(0.7) and m1["speed_vs_compiled"] == pytest.approx(1.5)
    assert m1["energy_vs_eager"] == pytest.approx(0.7 / 0.6) and m1["speed_vs_eager"] == pytest.approx(150 / 80)
    assert bool(m1["beyond_noise"]) and m1["noise_pct"] == pytest.approx(2 * math.sqrt(2 * 0.01 ** 2 / 3) * 100)
    assert math.isnan(t.loc[("sdpa_gqa=force", "m2"), "energy_vs_compiled"])
    flex = t.loc[("flex_attention", "m1")]
    assert flex["status"] == "failed" and flex["error"] == "flex refused"


def test_plot_sdpa_gqa_force_writes_a_png_of_the_forced_setting_only(tmp_path, cat):
    pytest.importorskip("matplotlib")
    base = {"gpu_id": "h200", "quant": "bf16", "batch_size": 32, "workload": "1024/256", "machine": "m1",
            "decode_energy_per_token_j_eager": 0.2, "decode_energy_per_token_j_compiled": 0.3}
    t = pd.DataFrame([{**base, "model": MODEL, "variant": "sdpa_gqa=force", "decode_energy_per_token_j": 0.1,
                       "energy_vs_compiled": 1 / 3},
                      {**base, "model": "phi-3-mini-4k-instruct", "variant": "sdpa_gqa=force",
                       "decode_energy_per_token_j": 0.29, "energy_vs_compiled": 0.29 / 0.3},
                      {**base, "model": MODEL, "variant": "flex_attention", "decode_energy_per_token_j": 9.0,
                       "energy_vs_compiled": 30.0}])  # another setting: left out
    steps = {"default": {"step_ms": 10.0, "kv_expand_ms": 3.0, "attention_ms": 2.0},
             "forced": {"step_ms": 6.0, "kv_expand_ms": 0.0, "attention_ms": 1.0}}
    p = ca.plot_sdpa_gqa_force(t, cat["models"], steps, tmp_path / "force.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_kind_tells_grouped_query_from_multi_head_models(cat):
    kind = ca.attention_kind(cat["models"])
    m = cat["models"].set_index("id")
    assert kind[MODEL] == "GQA" and m.loc[MODEL, "num_kv_heads"] < m.loc[MODEL, "num_attention_heads"]
    assert kind["phi-3-mini-4k-instruct"] == "MHA" and kind["bloomz-7b1"] == "MHA"


def test_variant_campaign_effect_pairs_each_baseline_engine_and_reads_the_machines_anchors(records):
    rows = []
    for b, (v, c, e) in {1: (0.9, 1.0, 1.5), 32: (0.1, 0.4, 0.2)}.items():
        rows += [{"gpu_id": H200, "engine": "hf-compiled-gqa", "batch_size": b, "decode_energy_per_token_j": v,
                  "machine": "V"},
                 {"gpu_id": H200, "engine": "hf-compiled", "batch_size": b, "decode_energy_per_token_j": c,
                  "machine": "C"},
                 {"gpu_id": H200, "engine": "hf-eager", "batch_size": b, "decode_energy_per_token_j": e,
                  "machine": "E"}]
    rows.append({"gpu_id": H200, "engine": "hf-compiled-gqa", "batch_size": 8, "decode_energy_per_token_j": 0.3,
                 "machine": "V"})  # no baseline cell at batch 8: no row
    anchors = pd.DataFrame([
        {"gpu_id": H200, "machine": "V", "batch_size": 1, "energy_vs_card": 0.8, "quiet": True},
        {"gpu_id": H200, "machine": "C", "batch_size": 1, "energy_vs_card": 1.0, "quiet": True},
        {"gpu_id": H200, "machine": "V", "batch_size": 32, "energy_vs_card": 1.2, "quiet": True},
        {"gpu_id": H200, "machine": "C", "batch_size": 32, "energy_vs_card": 1.0, "quiet": True},
        {"gpu_id": H200, "machine": "C", "batch_size": 32, "energy_vs_card": 9.0, "quiet": False},  # loud: left out
        {"gpu_id": H100, "machine": "E", "batch_size": 1, "energy_vs_card": 1.0, "quiet": True}])  # another card
    t = ca.variant_campaign_effect(_card_rows(records, rows), anchors).set_index(["baseline_engine", "batch_size"])
    assert sorted(t.index) == [("hf-compiled", 1), ("hf-compiled", 32), ("hf-eager", 1), ("hf-eager", 32)]
    assert t.loc[("hf-compiled", 32), "energy_ratio"] == pytest.approx(0.25)
    assert t.loc[("hf-eager", 32), "energy_ratio"] == pytest.approx(0.5)
    assert t.loc[("hf-compiled", 1), "machine_method"] == "V" and t.loc[("hf-compiled", 1), "machine_base"] == "C"
    # the variant's machine reads 0.8 of the card's typical GPU at batch 1 and 1.2 at batch 32, the baseline's 1.0
    assert t.loc[("hf-compiled", 1), "anchor_ratio"] == pytest.approx(0.8)
    assert t.loc[("hf-compiled", 1), "energy_ratio_anchored"] == pytest.approx(0.9 / 0.8)
    assert t.loc[("hf-compiled", 32), "energy_ratio_anchored"] == pytest.approx(0.25 / 1.2)
    assert t.loc[("hf-eager", 1), "anchor_ratio"] != t.loc[("hf-eager", 1), "anchor_ratio"]  # NaN: E has no H200 anchor
    s = ca.variant_campaign_summary(t.reset_index()).set_index(["baseline_engine", "batch_size"])
    assert s.loc[("hf-compiled", 32), "energy_ratio_median"] == pytest.approx(0.25)
    assert s.loc[("hf-compiled", 32), "anchored_pairs"] == 1 and s.loc[("hf-eager", 32), "anchored_pairs"] == 0
    assert s.loc[("hf-compiled", 32), "lower_beyond_noise"] == 1 and s.loc[("hf-compiled", 32), "higher_beyond_noise"] == 0


def test_plot_variant_campaign_draws_a_row_of_panels_per_workload(tmp_path):
    from PIL import Image

    rows = [{"engine": "hf-compiled-gqa", "gpu_id": H200, "baseline_engine": base, "workload": w, "quant": q,
             "batch_size": b, "energy_ratio": r, "energy_ratio_anchored": float("nan") if w == "256/128" else r * 1.1}
            for w, r in (("1024/256", 0.3), ("256/128", 0.6)) for base in ("hf-compiled", "hf-eager")
            for q in ("bf16", "bnb-nf4") for b in (1, 8, 32)]
    t = pd.DataFrame(rows)
    both = Image.open(ca.plot_variant_campaign(t, tmp_path / "both.png")).size
    one = Image.open(ca.plot_variant_campaign(t[t["workload"] == "256/128"], tmp_path / "one.png")).size
    assert both[0] == one[0] and both[1] > 1.8 * one[1]   # same two baseline columns, a second row of panels


def test_anchor_batch_is_one_for_batch_one_else_thirty_two():
    assert ca.anchor_batch(pd.Series([1, 2, 8, 32, 64])).tolist() == [1, 32, 32, 32, 32]
