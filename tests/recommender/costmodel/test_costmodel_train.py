"""The trainer: whole-file rejection, atomic artifact, determinism, conformal maths, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender.costmodel import train as T


def test_malformed_file_is_rejected_whole(tmp_path, record_factory, records_writer):
    path = records_writer(tmp_path / "bad.jsonl", [record_factory(0), record_factory(1)])
    with path.open("a") as fh:
        fh.write('{"cell_hash": "x", "model": "m"}\n')  # missing required fields
        fh.write("not json\n")
        fh.write(record_factory(2).to_json() + "\n")
    with pytest.raises(T.MeasurementFileError) as exc:
        T.read_records(path)
    msg = str(exc.value)
    assert "2 malformed record(s)" in msg and "line 3" in msg and "line 4" in msg and "rejected" in msg
    with pytest.raises(T.MeasurementFileError):
        T.load_training_data([path], use_public=False, default_measurements=False)


def test_cli_reports_the_rejected_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema_version": "9.9"}\n')
    rc = T.main(["--measurements", str(bad), "--no-public", "--no-default-measurements", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "bad.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_torn_last_line_is_not_an_error(tmp_path, record_factory, records_writer):
    path = records_writer(tmp_path / "t.jsonl", [record_factory(0)])
    with path.open("a") as fh:
        fh.write('{"cell_hash": "half-writ')
    records, torn = T.read_records(path)
    assert len(records) == 1 and torn == 1


def test_records_become_rows(tmp_path, record_factory, records_writer, catalog):
    path = records_writer(tmp_path / "r.jsonl", [
        record_factory(0), record_factory(1, status="skipped", error="unsupported", tokens_per_s=None,
                                          decode_energy_per_token_j=None, energy_total_j=None, duration_s=None),
        record_factory(2, gpu_id=None, gpu_name="NVIDIA A100-SXM4-40GB")])
    data, _ = T.load_training_data([path], use_public=False, default_measurements=False)
    f = data.frame
    assert f["gpu_id"].tolist() == ["h100-sxm", "a100-sxm-40gb"]
    assert f["scope_id"].unique().tolist() == ["gpu-counter"]
    assert f["memory_gb"].iloc[0] == pytest.approx(16.8e9 / 2**30)
    assert data.skipped == {"ours: status skipped": 1}
    assert data.files[0]["records"] == 3 and len(data.files[0]["sha256"]) == 64


def test_no_rows_is_a_user_error(tmp_path, capsys):
    rc = T.main(["--no-public", "--no-default-measurements", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no training rows" in capsys.readouterr().err


def test_write_artifact_is_atomic(tmp_path):
    out = tmp_path / "models"
    T.write_artifact(out, {"a.txt": b"one", "metadata.json": b"{}"})
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.sha256", "a.txt", "metadata.json"]
    with pytest.raises(TypeError):
        T.write_artifact(out, {"a.txt": b"two", "b.txt": "not bytes"})
    assert (out / "a.txt").read_bytes() == b"one"  # the old artifact is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["models"]  # no temporary folder left behind
    T.write_artifact(out, {"c.txt": b"three"})
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.sha256", "c.txt"]


def test_conformal_offset():
    s = np.arange(1, 11, dtype=float)  # n = 10: ceil(11 x 0.8) = 9th smallest
    assert T.conformal_offset(s, alpha=0.2) == 9.0
    assert T.conformal_offset(np.array([np.nan])) == 0.0


def test_training_is_deterministic(tmp_path, trained_dir):
    """Same data and seed -> byte-identical boosters and CV predictions (trained_dir: same arguments)."""
    assert T.main(["--no-cv", "--no-default-measurements", "--out", str(tmp_path / "b")]) == 0
    for name in ("energy_per_token_j.p50.txt", "tokens_per_s.p10.txt", "cv_predictions.csv"):
        assert (trained_dir / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ma, mb = (json.loads((d / "metadata.json").read_text()) for d in (trained_dir, tmp_path / "b"))
    assert ma["validation"] == mb["validation"] and ma["data"] == mb["data"] and ma["seed"] == T.DEFAULT_SEED


def test_metadata_records_what_was_trained(trained_dir):
    from recommender.costmodel import features as F

    meta = json.loads((trained_dir / "metadata.json").read_text())
    assert meta["feature_names"] == list(F.FEATURE_NAMES)
    assert meta["targets"]["accuracy_delta"]["kind"] == "analytic"
    e = meta["targets"]["energy_per_token_j"]
    assert e["files"] == {q: f"energy_per_token_j.{q}.txt" for q in ("p10", "p50", "p90")}
    logo = meta["validation"]["energy_per_token_j"]["logo"]
    assert logo["groups"] >= 3 and 0.5 < logo["coverage_p10_p90"] <= 1.0
    assert {"lightgbm", "numpy", "scikit-learn", "python"} <= set(meta["versions"])
    assert all(len(f["sha256"]) == 64 for f in meta["data"]["files"])
    card = (trained_dir / "MODEL_CARD.md").read_text()
    assert "leave-one-GPU-out" in card and str(logo["median_ape_pct"]) in card


def test_validation_groups(catalog):
    """LOGO groups merge catalogue ids of identical silicon; LOMO groups merge identical shapes."""
    data, cat = T.load_training_data(default_measurements=False)
    d = T.design(data.frame, cat)
    groups = set(d.gpu_group)
    assert "a100-pcie-40gb+a100-sxm-40gb" in groups and "h100-sxm" in groups
    f = data.frame
    arch = dict(zip(f["model"], d.arch_group, strict=True))
    assert arch.get("llama-3.1-8b-instruct", "llama-3-8b") == arch["llama-3-8b"]  # same shape, one group
    rows = T.target_rows(d, "tokens_per_s")
    folds = T._folds("random", d, rows, T.DEFAULT_SEED)
    seen: dict[str, int] = {}
    for k, (_, test, _) in enumerate(folds):
        for c in set(d.twin_group[test]):
            assert seen.setdefault(c, k) == k  # a cell never straddles two folds, on whatever cards it was measured
    twins = [c for c in set(d.twin_group[rows]) if len(set(d.gpu_group[rows][d.twin_group[rows] == c])) > 1]
    assert twins  # the public data holds cells measured on several cards, so the check above is not vacuous


def test_training_coverage_lists_cards_per_method_and_engine():
    import pandas as pd

    from recommender.costmodel.train import training_coverage

    frame = pd.DataFrame({
        "quant": ["bf16", "bf16", "bf16", "bnb-nf4"], "engine": ["hf-eager", "hf-eager", "vllm", "hf-eager"],
        "gpu_id": ["h100-sxm", "a40", "a40", "h100-sxm"], "batch_size": [1, 32, 8, 8],
        "origin": ["ours", "public:x", "public:x", "ours"]})
    cov = training_coverage(frame)
    assert cov["bf16"]["hf-eager"] == {"gpus": ["a40", "h100-sxm"], "rows": 2, "batch_max": 32,
                                        "batch_max_by_gpu": {"a40": 32, "h100-sxm": 1},
                                        "origins": ["ours", "public:x"]}
    assert set(cov["bf16"]) == {"hf-eager", "vllm"} and cov["bnb-nf4"]["hf-eager"]["batch_max"] == 8


def test_training_coverage_counts_slow_path_flags_per_card_and_batch():
    """Our records' `slow_path_suspected` (True, False or None when not judged) is counted per card and batch;
    public rows (NaN) and unjudged records count in neither number."""
    import pandas as pd

    from recommender.costmodel.train import training_coverage

    frame = pd.DataFrame({
        "quant": ["torchao-int8-wo"] * 6, "engine": ["hf-compiled"] * 6,
        "gpu_id": ["h200", "h200", "h200", "h200", "a100-sxm-40gb", "h200"], "batch_size": [1, 1, 32, 32, 32, 8],
        "origin": ["ours"] * 4 + ["public:x", "ours"],
        "slow_path_suspected": [False, True, True, True, np.nan, None]})
    cov = training_coverage(frame)["torchao-int8-wo"]["hf-compiled"]
    assert cov["slow_path_by_gpu"] == {"h200": {"1": [1, 2], "32": [2, 2]}}
    assert cov["rows"] == 6 and cov["gpus"] == ["a100-sxm-40gb", "h200"]


def test_slow_path_ratios_against_the_best_unquantized_twin():
    """Flagged records only, each against the lower bf16/fp16 J/token and the higher tokens/s of the same card,
    model, engine, batch, workload and scope; medians per card and batch; a flagged record without a twin and an
    unflagged one count nowhere; coverage carries the ratios of its method and engine."""
    import pandas as pd

    from recommender.costmodel.train import slow_path_ratios, training_coverage

    def row(quant, gpu, model, batch, j, tps, slow):
        return {"quant": quant, "engine": "hf-compiled", "gpu_id": gpu, "model": model, "batch_size": batch,
                "prompt_tokens": 256.0, "output_tokens": 128.0, "scope_id": "gpu-counter", "origin": "ours",
                "decode_energy_per_token_j": j, "tokens_per_s": tps, "slow_path_suspected": slow}

    frame = pd.DataFrame([
        row("bf16", "h200", "a", 8, 0.20, 1000.0, False), row("fp16", "h200", "a", 8, 0.25, 1200.0, False),
        row("bf16", "h200", "b", 8, 0.40, 500.0, False),
        row("torchao-int8-wo", "h200", "a", 8, 2.0, 60.0, True),    # x10 J/token, x20 slower
        row("torchao-int8-wo", "h200", "b", 8, 2.0, 100.0, True),   # x5, x5
        row("torchao-int8-wo", "h200", "c", 8, 9.0, 1.0, True),     # no twin: not counted
        row("torchao-int8-wo", "h200", "a", 1, 1.0, 100.0, False),  # not flagged
        row("torchao-int8-wo", "h100-sxm", "a", 8, 3.0, 10.0, True),  # no twin on this card
    ])
    got = slow_path_ratios(frame)
    assert got == {("torchao-int8-wo", "hf-compiled"): {
        "h200": {"8": {"energy_per_token_j": 7.5, "tokens_per_s": 12.5, "pairs": 2}}}}
    cov = training_coverage(frame)
    assert cov["torchao-int8-wo"]["hf-compiled"]["slow_path_ratio_by_gpu"] == got[("torchao-int8-wo", "hf-compiled")]
    assert "slow_path_ratio_by_gpu" not in cov["bf16"]["hf-compiled"]
    assert slow_path_ratios(frame.drop(columns=["model"])) == {}  # a frame without the twin keys: none


def test_between_groups_conformal_offset_takes_the_cards_as_the_units():
    """Each group's own split-conformal offset, then the ceil((K + 1)(1 - alpha))-th smallest of the K: with
    K = 4 groups (at alpha 0.2) the 4th, the largest; with K = 9 the 8th. A group under min_rows is left out,
    and the unseen-card offset is the largest of pooled, card-weighted and between-groups."""
    rng = np.random.default_rng(0)
    need = [0.1, 0.2, 0.3, 1.5]   # what each group alone needs: its scores uniform below it
    scores = np.concatenate([rng.uniform(0, v, 40) for v in need])
    groups = np.repeat(["a", "b", "c", "d"], 40)
    per = [T.conformal_offset(scores[groups == g]) for g in "abcd"]
    assert T.conformal_offset_between_groups(scores, groups) == pytest.approx(max(per))
    assert max(per) > T.conformal_offset_by_group(scores, groups)   # wider than every card's rows weighed once
    assert T.unseen_card_offset(scores, groups) == pytest.approx(max(per))
    # nine groups: the 8th smallest of their offsets, not the largest
    nine = np.concatenate([np.full(30, float(v)) for v in range(1, 10)])
    assert T.conformal_offset_between_groups(nine, np.repeat(list("abcdefghi"), 30)) == 8.0
    # a group of fewer than min_rows rows does not count as a card; none at all: 0
    small = np.concatenate([np.full(30, 1.0), np.full(5, 9.0)])
    assert T.conformal_offset_between_groups(small, np.array(["a"] * 30 + ["b"] * 5)) == 1.0
    assert T.conformal_offset_between_groups(np.full(5, 9.0), np.array(["b"] * 5)) == 0.0


def test_served_offsets_are_the_median_over_the_seed_runs():
    """`seed_median_offsets`: each run's pooled and unseen-card offsets from its own out-of-fold quantiles, and the
    median over the runs served; one run far off (a seed's draw) does not set it, and without cards the unseen-card
    offset is the pooled one."""
    rng = np.random.default_rng(1)
    n = 200
    rows = np.arange(n)
    y = rng.normal(0, 0.1, n)
    cards = np.repeat(["a", "b", "c", "d"], n // 4)
    runs = [{"p10": y - w, "p90": y + w} for w in (-0.05, -0.10, -0.07)]  # intervals that miss every y by w
    runs.append({"p10": y + 0.9, "p90": y + 1.0})   # a run whose p10 sits 0.9 above every y
    pooled, unseen, per, per_unseen = T.seed_median_offsets(y, runs, rows, cards)
    assert per == pytest.approx([0.05, 0.10, 0.07, 0.9])
    assert pooled == pytest.approx(0.085)   # the median of four: halfway between 0.07 and 0.10, not the 0.9 run
    assert per_unseen == pytest.approx([T.unseen_card_offset(np.maximum(r["p10"] - y, y - r["p90"]), cards)
                                        for r in runs])
    assert unseen == pytest.approx(float(np.median(per_unseen)))
    pooled_only = T.seed_median_offsets(y, runs, rows, None)
    assert pooled_only[1] == pooled_only[0] == pytest.approx(0.085) and pooled_only[3] == pooled_only[2]
    # one run: its own offsets, as before s32
    assert T.seed_median_offsets(y, runs[:1], rows, cards)[:2] == pytest.approx((0.05, per_unseen[0]))


def test_card_weighted_conformal_offset_weighs_every_group_once():
    """Group A: 8 small scores, group B: 2 large ones. Pooled, the 80 % quantile falls in B's smaller score;
    with each group weighing one half, A's rows cover only 50 % and B's larger score is needed. Equal
    groups give the weighted empirical quantile."""
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 5.0, 6.0])
    groups = np.array(["a"] * 8 + ["b"] * 2)
    assert T.conformal_offset(scores) == 5.0
    assert T.conformal_offset_by_group(scores, groups, min_rows=1) == 6.0
    # a small group weighs in proportion to its rows: with min_rows 8, b's 2 rows weigh 1/4 of a's 8, so a's
    # rows alone hold 80 % of the weight (the served offset is never below the pooled one: `max` in training)
    assert T.conformal_offset_by_group(scores, groups, min_rows=8) == 0.8
    assert T.conformal_offset_by_group(np.arange(1.0, 11.0), np.array(["a"] * 5 + ["b"] * 5), min_rows=1) == 8.0
    assert T.conformal_offset_by_group(np.array([np.nan, 1.0]), np.array(["a", "b"])) == 1.0
    assert T.conformal_offset_by_group(np.array([]), np.array([])) == 0.0


def test_rank_correlation_reports_groups_of_three_methods_apart():
    """A two-method group ranked backwards (-1) and a three-method group ranked right (+1): the mean over all
    groups is 0, over the groups of at least three methods 1; the analytic figure is computed alike."""
    from types import SimpleNamespace

    d = SimpleNamespace(rank_group=np.array(["a", "a", "b", "b", "b"], dtype=object),
                        cell_group=np.array(["a|fp16", "a|bf16", "b|bf16", "b|nf4", "b|int8"], dtype=object))
    rows = np.arange(5)
    meas = np.array([1.0, 2.0, 1.0, 2.0, 3.0])
    pred = np.array([2.0, 1.0, 1.0, 2.0, 3.0])
    base = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    f = T.rank_correlation(d, rows, pred, meas, base)
    assert f["rank_groups"] == 2 and f["rank_groups_3plus"] == 1
    assert f["spearman_quant_rank"] == pytest.approx(0.0)
    assert f["spearman_quant_rank_3plus"] == pytest.approx(1.0)
    assert f["analytic_spearman_quant_rank"] == pytest.approx(0.0)
    assert f["analytic_spearman_quant_rank_3plus"] == pytest.approx(-1.0)


def test_leave_one_gpu_out_is_reported_per_held_out_card(trained_dir):
    """The per-card split of the pooled LOGO figures agrees with the out-of-fold predictions written to
    cv_predictions.csv, covers every pooled row once, and is rendered in the model card."""
    import pandas as pd

    meta = json.loads((trained_dir / "metadata.json").read_text())
    logo = meta["validation"]["energy_per_token_j"]["logo"]
    by = logo["by_held_out"]
    assert len(by) == logo["groups"] >= 3
    assert sum(f["n"] for f in by.values()) == logo["n"]
    cv = pd.read_csv(trained_dir / "cv_predictions.csv")
    cv = cv[(cv["scheme"] == "logo") & (cv["target"] == "energy_per_token_j")]
    for g, f in by.items():
        rows = cv[cv["held_out"] == g]
        assert len(rows) == f["n"]
        ape = ((rows["p50"] - rows["measured"]).abs() / rows["measured"] * 100).median()
        ape_an = ((rows["analytic"] - rows["measured"]).abs() / rows["measured"] * 100).median()
        inside = ((rows["measured"] >= rows["p10"]) & (rows["measured"] <= rows["p90"])).mean()
        assert f["median_ape_pct"] == pytest.approx(ape, abs=1e-3)
        assert f["analytic_median_ape_pct"] == pytest.approx(ape_an, abs=1e-3)
        assert f["coverage_p10_p90"] == pytest.approx(inside, abs=1e-3)
    keys = ["model", "quant", "engine", "batch_size", "prompt_tokens", "output_tokens", "scope_id"]
    cv["twin"] = cv[keys].astype(str).agg("|".join, axis=1)
    for g, f in by.items():
        held, others = cv[cv["held_out"] == g], cv[cv["held_out"] != g]
        with_twin = held["twin"].isin(set(others["twin"]))
        assert f["n_with_twin"] == int(with_twin.sum()) and f["n_with_twin"] + f["n_without_twin"] == f["n"]
        if with_twin.any():
            rows = held[with_twin]
            ape = ((rows["p50"] - rows["measured"]).abs() / rows["measured"] * 100).median()
            assert f["median_ape_pct_with_twin"] == pytest.approx(ape, abs=1e-3)
    assert any(f["n_with_twin"] for f in by.values()) and any(f["n_without_twin"] for f in by.values())
    assert logo["coverage_mean_over_held_out"] == pytest.approx(np.mean([f["coverage_p10_p90"] for f in by.values()]),
                                                                abs=1e-3)
    weighted = [f["coverage_p10_p90_card_weighted"] for f in by.values()]
    assert logo["coverage_mean_over_held_out_card_weighted"] == pytest.approx(np.mean(weighted), abs=1e-3)
    # the card-weighted offset is never below the pooled one, so no card loses coverage by it; the unseen-card
    # offset is never below either
    assert all(f["coverage_p10_p90_card_weighted"] >= f["coverage_p10_p90"] for f in by.values())
    assert all(f["coverage_p10_p90_unseen_card"] >= f["coverage_p10_p90_card_weighted"] for f in by.values())
    assert logo["coverage_mean_over_held_out_unseen_card"] == pytest.approx(
        np.mean([f["coverage_p10_p90_unseen_card"] for f in by.values()]), abs=1e-3)
    card = (trained_dir / "MODEL_CARD.md").read_text()
    section = card.split("### Leave-one-GPU-out, by held-out card", 1)[1].split("\n## ", 1)[0]
    for g, f in by.items():
        assert (f"| energy_per_token_j | {g} | {f['n']} | {f['median_ape_pct']} | {f['analytic_median_ape_pct']} | "
                f"{f['coverage_p10_p90']} | {f['coverage_p10_p90_card_weighted']} | "
                f"{f['coverage_p10_p90_unseen_card']} ({f['unseen_card_log_offset']}) |") in section


def test_peak_memory_is_served_analytic_but_still_validated():
    """The shipped artifact validates a learned peak memory and serves the analytic one (SERVED_ANALYTIC):
    `recommend` decides the fit from the analytic estimate, and the memory it shows must agree with that."""
    meta = json.loads((Path(__file__).resolve().parents[3] / "models" / "metadata.json").read_text())
    spec = meta["targets"]["memory_gb"]
    assert spec["kind"] == "analytic" and "fit check" in spec["reason"] and "files" not in spec
    assert meta["validation"]["memory_gb"]["logo"]["median_ape_pct"] is not None
    assert "memory_gb" in T.SERVED_ANALYTIC


def test_offsets_per_engine_are_each_engines_own_quantile():
    """Group-conditional conformal: each engine with at least min_rows scores gets its own split-conformal
    offset; a smaller one is left out and takes the pooled offset in `row_offsets`."""
    scores = np.concatenate([np.arange(1.0, 11.0), np.arange(101.0, 111.0), [7.0, 8.0]])
    groups = np.array(["a"] * 10 + ["b"] * 10 + ["c"] * 2, dtype=object)
    by = T.conformal_offsets_by_group(scores, groups, min_rows=10)
    assert by == {"a": 9.0, "b": 109.0}
    assert list(T.row_offsets(np.array(["b", "c", "a"]), 5.0, by)) == [109.0, 5.0, 9.0]
    assert T.conformal_offsets_by_group(np.array([np.nan] * 10), np.array(["a"] * 10), min_rows=10) == {}


def test_evaluate_reports_coverage_by_engine_as_served_and_with_offsets_per_engine():
    """Two cards (the folds), two engines: e1's residuals sit well inside the quantile band, e2's spread five
    times wider. One pooled offset (what is served) covers all of e1 and too few of e2; an offset per engine
    (reported, not served) brings e2 near 80 %. The served figures stay the pooled offset's."""
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    n = 400
    engine = np.array((["e1"] * 100 + ["e2"] * 100) * 2, dtype=object)
    y = np.where(engine == "e1", rng.uniform(-0.05, 0.05, n), rng.uniform(-0.5, 0.5, n))
    d = SimpleNamespace(measured={"t": np.exp(y)}, base={"t": np.ones(n)}, engine_group=engine,
                        rank_group=np.arange(n).astype(str).astype(object),
                        cell_group=np.arange(n).astype(str).astype(object))
    oof = {"p10": np.full(n, -0.1), "p50": np.zeros(n), "p90": np.full(n, 0.1),
           "fold": np.array(["a"] * 200 + ["b"] * 200, dtype=object)}
    fig, _ = T.evaluate(d, "t", np.arange(n), oof)
    by = fig["coverage_by_engine"]
    assert by["e1"]["n"] == by["e2"]["n"] == 200
    assert by["e1"]["coverage_p10_p90"] == 1.0 and by["e2"]["coverage_p10_p90"] < 0.7
    assert 0.75 <= by["e2"]["coverage_p10_p90_engine_offsets"] <= 0.85
    assert by["e1"]["coverage_p10_p90_engine_offsets"] < 1.0   # narrowed to its own rows' quantile
    assert fig["coverage_p10_p90"] == pytest.approx((by["e1"]["coverage_p10_p90"] + by["e2"]["coverage_p10_p90"]) / 2)
    no_engines = SimpleNamespace(**{**vars(d), "engine_group": None})
    plain, _ = T.evaluate(no_engines, "t", np.arange(n), oof)
    assert "coverage_by_engine" not in plain and plain["coverage_p10_p90"] == fig["coverage_p10_p90"]
