"""The prospective check: an artifact's served predictions against records measured after it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender.candidates import Candidates
from recommender.costmodel import prospective
from recommender.costmodel.learned import LearnedCostModel


def test_rows_are_the_records_after_the_artifact_with_its_served_predictions(
        tmp_path, trained_dir, record_factory, records_writer, catalog):
    before = record_factory(1, created_at="2020-01-01T00:00:00+00:00", batch_size=8)
    repeat = record_factory(2, created_at="2099-01-01T00:00:00+00:00", batch_size=8)  # same cell as `before`
    new = record_factory(3, created_at="2099-01-02T00:00:00+00:00", batch_size=32, quant="fp16",
                         decode_energy_per_token_j=0.5)
    failed = record_factory(4, created_at="2099-01-03T00:00:00+00:00", status="failed", error="OOM")
    path = records_writer(tmp_path / "m.jsonl", [before, repeat, new, failed])

    frame, info = prospective.prospective_frame(trained_dir, [path], catalog=catalog)

    assert list(frame["record_id"]) == ["rec0002", "rec0003"]
    assert list(frame["cell_seen_before"]) == [True, False]
    assert info["rows"] == 2 and info["catalog_matches_artifact"]
    model = LearnedCostModel(trained_dir)
    assert info["artifact"] == model.name and set(frame["artifact"]) == {model.name}
    cands = Candidates.from_ids(catalog, ["h100-sxm"] * 2, ["qwen2.5-7b-instruct"] * 2, ["bf16", "fp16"],
                                ["hf-eager"] * 2, [8, 32], [128, 128], [64, 64])
    served = model.predict(cands)["energy_per_token_j"]
    np.testing.assert_allclose(frame["predicted_p50_energy_per_token_j"], served.p50)
    np.testing.assert_allclose(frame["predicted_p90_energy_per_token_j"], served.p90)
    np.testing.assert_allclose(frame["measured_energy_per_token_j"], [4.37, 0.5])


def test_since_overrides_the_artifact_time(tmp_path, trained_dir, record_factory, records_writer, catalog):
    recs = [record_factory(1, created_at="2026-01-01T00:00:00+00:00"),
            record_factory(2, created_at="2026-06-01T00:00:00+00:00", batch_size=8)]
    path = records_writer(tmp_path / "m.jsonl", recs)
    frame, info = prospective.prospective_frame(trained_dir, [path], since="2026-03-01T00:00:00+00:00",
                                                catalog=catalog)
    assert list(frame["record_id"]) == ["rec0002"] and info["since"].startswith("2026-03-01")
    empty, info = prospective.prospective_frame(trained_dir, [path], since="2027-01-01T00:00:00+00:00",
                                                catalog=catalog)
    assert empty.empty and info["rows"] == 0
    naive, _ = prospective.prospective_frame(trained_dir, [path], since="2026-03-01T00:00:00", catalog=catalog)
    assert list(naive["record_id"]) == ["rec0002"]  # a time without zone is UTC, as the records' are


def test_summary_errors_and_coverage():
    t = "energy_per_token_j"
    frame = pd.DataFrame({f"measured_{t}": [1.0, 2.0, 4.0, np.nan], f"predicted_p50_{t}": [1.1, 1.0, 4.0, 1.0],
                          f"predicted_p10_{t}": [0.9, 1.5, 3.0, 0.5], f"predicted_p90_{t}": [1.2, 3.0, 5.0, 2.0],
                          f"analytic_{t}": [2.0, 2.0, 2.0, 2.0]})
    s = prospective.summarize(frame)[t]
    assert s["rows"] == 3
    assert s["median_ape_pct"] == pytest.approx(10.0)  # |errors| 10, 50, 0 %
    assert s["analytic_median_ape_pct"] == pytest.approx(50.0)  # 100, 0, 50 %
    assert s["coverage_p10_p90"] == pytest.approx(1.0)  # 1 in [0.9,1.2], 2 in [1.5,3], 4 in [3,5]
    assert "tokens_per_s" not in prospective.summarize(frame)


def test_cli_writes_the_csv_and_rejects_a_missing_artifact(tmp_path, trained_dir, record_factory, records_writer,
                                                            capsys):
    path = records_writer(tmp_path / "m.jsonl", [record_factory(1, created_at="2099-01-01T00:00:00+00:00")])
    out = tmp_path / "p.csv"
    assert prospective.main(["--artifact", str(trained_dir), "--measurements", str(path), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 1 and '"rows": 1' in capsys.readouterr().out
    assert prospective.main(["--artifact", str(tmp_path / "none"), "--measurements", str(path)]) == 2
    assert "error:" in capsys.readouterr().err
    assert prospective.main(["--artifact", str(trained_dir), "--measurements", str(path), "--since", "soon"]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_changed_catalogue_and_undated_records_are_reported(tmp_path, trained_dir, record_factory,
                                                               records_writer):
    """Predictions under a catalogue the artifact was not trained with are not the served ones: flagged in
    the info and in every row. Records without created_at cannot be placed before or after: counted."""
    import shutil

    from recommender.catalog import load_catalog_from
    from recommender.paths import catalog_dir

    changed = tmp_path / "catalog"
    shutil.copytree(catalog_dir(), changed)
    mo = changed / "method_overhead.csv"
    mo.write_text(mo.read_text().replace("bnb-int8,hf-eager,", "bnb-int8,hf-eager,9"), encoding="utf-8")
    recs = [record_factory(1, created_at="2099-01-01T00:00:00+00:00"), record_factory(2, created_at=None,
                                                                                      batch_size=8)]
    path = records_writer(tmp_path / "m.jsonl", recs)
    frame, info = prospective.prospective_frame(trained_dir, [path], catalog=load_catalog_from(changed))
    assert not info["catalog_matches_artifact"] and not frame["catalog_matches_artifact"].any()
    assert info["undated_records_skipped"] == 1 and list(frame["record_id"]) == ["rec0001"]
    same, info = prospective.prospective_frame(trained_dir, [path], catalog=load_catalog_from(catalog_dir()))
    assert info["catalog_matches_artifact"] and same["catalog_matches_artifact"].all()


def test_summary_skips_rows_without_a_prediction():
    t = "tokens_per_s"
    frame = pd.DataFrame({f"measured_{t}": [100.0, 100.0], f"predicted_p50_{t}": [110.0, np.nan],
                          f"predicted_p10_{t}": [90.0, np.nan], f"predicted_p90_{t}": [120.0, np.nan],
                          f"analytic_{t}": [100.0, 100.0]})
    s = prospective.summarize(frame)[t]
    assert s["rows"] == 1 and s["median_ape_pct"] == pytest.approx(10.0)


def test_a_record_run_with_a_variants_engine_params_is_predicted_as_the_variant(
        tmp_path, trained_dir, record_factory, records_writer, catalog):
    """hf-compiled with `sdpa_gqa: force` is the catalogue's hf-compiled-gqa (Catalog.record_engine): the
    experiment's records check the variant's predictions without relabelling them."""
    forced = record_factory(1, created_at="2099-01-01T00:00:00+00:00", batch_size=32, engine="hf-compiled",
                            engine_params={"sdpa_gqa": "force", "compiled": True})
    default = record_factory(2, created_at="2099-01-01T00:00:00+00:00", batch_size=32, engine="hf-compiled",
                             engine_params={"compiled": True})
    path = records_writer(tmp_path / "m.jsonl", [forced, default])
    frame, _ = prospective.prospective_frame(trained_dir, [path], catalog=catalog)
    assert list(frame["engine"]) == ["hf-compiled-gqa", "hf-compiled"]
    cands = Candidates.from_ids(catalog, ["h100-sxm"] * 2, ["qwen2.5-7b-instruct"] * 2, ["bf16"] * 2,
                                ["hf-compiled-gqa", "hf-compiled"], [32, 32], [128, 128], [64, 64])
    served = LearnedCostModel(trained_dir).predict(cands)["energy_per_token_j"]
    np.testing.assert_allclose(frame["predicted_p50_energy_per_token_j"], served.p50)
    assert served.p50[0] < served.p50[1]  # no K/V copy in the variant's physics
    out = tmp_path / "v.csv"
    assert prospective.main(["--artifact", str(trained_dir), "--measurements", str(path), "--engine",
                             "hf-compiled-gqa", "--out", str(out)]) == 0
    assert pd.read_csv(out)["record_id"].tolist() == ["rec0001"]


def test_by_interval_width_bins_rows_by_the_served_intervals_width_narrowest_first():
    t = "energy_per_token_j"
    width = np.array([1.2, 1.2, 1.5, 1.5, 2.0, 2.0, 3.0, 3.0])   # p90 / p10 around p50 = 1
    measured = np.array([1.01, 0.99, 1.1, 0.9, 1.3, 0.8, 2.5, 0.2])   # errors grow with width; the last two fall outside
    frame = pd.DataFrame({f"measured_{t}": measured, f"predicted_p50_{t}": 1.0,
                          f"predicted_p10_{t}": 1 / np.sqrt(width), f"predicted_p90_{t}": np.sqrt(width)})
    frame = pd.concat([frame, pd.DataFrame({f"measured_{t}": [0.0], f"predicted_p50_{t}": [1.0],
                                            f"predicted_p10_{t}": [0.5], f"predicted_p90_{t}": [2.0]})])  # unusable
    bins, rho = prospective.by_interval_width(frame, t)
    assert list(bins.index) == [0, 1, 2, 3] and bins["rows"].tolist() == [2, 2, 2, 2]
    assert bins["median_p90_over_p10"].tolist() == pytest.approx(width[::2])
    assert bins["median_ape_pct"].is_monotonic_increasing
    assert bins.loc[0, "median_ape_pct"] == pytest.approx(1.0, rel=1e-3)   # |1 / 1.01 - 1| and |1 / 0.99 - 1|
    assert bins["coverage_p10_p90"].tolist() == [1.0, 1.0, 1.0, 0.0]   # 2.5 > sqrt(3) and 0.2 < 1 / sqrt(3)
    assert rho > 0.8
    _, flat = prospective.by_interval_width(frame.assign(**{f"measured_{t}": 1.0}), t)
    assert flat != flat   # no error to rank: NaN, not a correlation
