"""Prospective check: how a trained artifact predicted cells that were measured after it was trained.

    python -m recommender.costmodel.prospective --artifact models --out notebooks/prospective/NAME.csv

Cross-validation holds out cells the model was never shown, but the campaign picks the next cells itself
(the cheapest remaining ones, other workloads, other engines), so it is worth checking, before each
retrain, how the committed artifact predicted the records that arrived since. The rows are the `ok`
records whose `created_at` is after the artifact's (`metadata.json` `created_at`, or `--since`); each
carries the artifact's served p10/p50/p90 (`LearnedCostModel.predict`: the model, never the measured
look-up), the analytic model's value and the measured value, per target. A cell measured before the
artifact was trained (`cell_seen_before`, same card/model/method/engine/batch/workload, among the given
files: pass the whole stores, not only the new records) is marked: its record is a repeat, not a new cell.
Records without `created_at` are skipped and counted.

Predictions depend on the catalogue (method overheads, engine constants): run the check before refitting
them, or the figures describe a model that was never served (`catalog_matches_artifact` says which).

The same check reads an experiment store the artifact never trained on (`--measurements FILE --since 2000-01-01`),
e.g. the records of an engine variant (`--engine hf-compiled-gqa`: records of hf-compiled run with its engine
params, as `Catalog.record_engine` reads them) before any record of it is served; such checks are kept in
notebooks/heldout/, apart from the prospective ones (cost_model_validation.ipynb, "Held-out check").
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recommender.costmodel.train import TARGETS

#: target -> column of `train.record_rows` holding our measured value (the trainer's own mapping)
MEASURED = {t: ours for t, (ours, _, _) in TARGETS.items()}
KEY = ["gpu_id", "model", "quant", "engine", "batch_size", "prompt_tokens", "output_tokens"]


def _time(s: str | None) -> datetime | None:
    """An ISO time; one without a zone is taken as UTC (records and artifacts write UTC with +00:00)."""
    if not s:
        return None
    t = datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def prospective_frame(artifact: Path, files: list[Path], since: str | None = None, catalog=None):
    """One row per `ok` record created after `since` (default: the artifact's `created_at`): its cell,
    measured values, and the artifact's p10/p50/p90 and the analytic value of every target. Returns
    (frame, info); info holds the cut-off, the artifact name and whether the catalogue still matches it."""
    import pandas as pd

    from recommender.candidates import Candidates
    from recommender.costmodel.analytic import AnalyticCostModel
    from recommender.costmodel.learned import LearnedCostModel
    from recommender.costmodel.train import read_records, record_rows, training_catalog

    model = LearnedCostModel(Path(artifact))
    if catalog is None:
        catalog = training_catalog()
    cut = _time(since or model.meta.get("created_at"))
    if cut is None:
        raise ValueError(f"{artifact}: metadata.json has no created_at; pass --since")
    new_rows, seen, undated = [], set(), 0
    for path in files:
        records, _ = read_records(Path(path))
        for r in records:
            created = _time(r.created_at)
            rows, _ = record_rows([r], catalog, Path(path).name)
            if not rows:
                continue
            if created is None:
                undated += 1
                continue
            row = rows[0]
            key = tuple(row[k] for k in KEY)
            if created <= cut:
                seen.add(key)
            else:
                row.update(record_id=r.record_id, created_at=r.created_at, gpu_uuid=r.gpu_uuid, _key=key)
                new_rows.append(row)
    info = {"artifact": model.name, "since": cut.isoformat(), "rows": len(new_rows),
            "catalog_matches_artifact": not model.stale_catalog_files(catalog), "undated_records_skipped": undated}
    cols = ["record_id", "created_at", "data_file", "gpu_uuid", *KEY, "cell_seen_before", "catalog_matches_artifact"]
    if not new_rows:
        return pd.DataFrame(columns=cols), info
    frame = pd.DataFrame(new_rows)
    frame["cell_seen_before"] = [k in seen for k in frame.pop("_key")]
    frame["catalog_matches_artifact"] = info["catalog_matches_artifact"]
    cands = Candidates.from_ids(catalog, frame["gpu_id"], frame["model"], frame["quant"], frame["engine"],
                                frame["batch_size"], frame["prompt_tokens"], frame["output_tokens"])
    pred = model.predict(cands)
    base = AnalyticCostModel().predict(cands)
    out = frame[cols].copy()
    out.insert(0, "artifact", model.name)
    for t, col in MEASURED.items():
        out[f"measured_{t}"] = frame[col].to_numpy(float)
        out[f"analytic_{t}"] = base[t].p50
        for q in ("p10", "p50", "p90"):
            out[f"predicted_{q}_{t}"] = getattr(pred[t], q)
    return out, info


def summarize(frame) -> dict[str, dict]:
    """Per target: rows with a positive measured value and p50, median and p90 absolute % error of p50, the
    analytic model's median, and the share of measured values inside p10-p90."""
    out = {}
    for t in MEASURED:
        if f"measured_{t}" not in frame:
            continue
        m = frame[f"measured_{t}"].to_numpy(float)
        p50 = frame[f"predicted_p50_{t}"].to_numpy(float)
        ok = np.isfinite(m) & (m > 0) & np.isfinite(p50) & (p50 > 0)
        if not ok.any():
            continue
        p50 = p50[ok]
        ape = np.abs(p50 / m[ok] - 1) * 100
        ana = np.abs(frame[f"analytic_{t}"].to_numpy(float)[ok] / m[ok] - 1) * 100
        ana = ana[np.isfinite(ana)]
        lo, hi = frame[f"predicted_p10_{t}"].to_numpy(float)[ok], frame[f"predicted_p90_{t}"].to_numpy(float)[ok]
        out[t] = {"rows": int(ok.sum()), "median_ape_pct": float(np.median(ape)),
                  "p90_ape_pct": float(np.percentile(ape, 90)), "analytic_median_ape_pct": float(np.median(ana)) if len(ana) else None,
                  "coverage_p10_p90": float(np.mean((m[ok] >= lo) & (m[ok] <= hi))),
                  "median_log_ratio": float(np.median(np.log(p50 / m[ok])))}
    return out


def by_interval_width(frame, target: str, bins: int = 4):
    """Whether a wider served interval flagged a larger error: the rows with a positive measured value, p10, p50
    and p90 of `target`, in `bins` equal-count bins of the interval's width ln(p90 / p10) (narrowest first). Per
    bin: rows, median width as p90 / p10, median absolute % error of p50, share inside p10-p90. Also returns
    Spearman's rank correlation of width and |ln(p50 / measured)| over all those rows (NaN with fewer than 3).
    -> (DataFrame indexed by bin, rho)."""
    import pandas as pd

    m, lo, mid, hi = (frame[f"{c}_{target}"].to_numpy(float) for c in
                      ("measured", "predicted_p10", "predicted_p50", "predicted_p90"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(np.log(m) + np.log(lo) + np.log(mid) + np.log(hi))
    m, lo, mid, hi = m[ok], lo[ok], mid[ok], hi[ok]
    width, err = np.log(hi / lo), np.abs(np.log(mid / m))
    rank = pd.Series(width).rank(method="min").to_numpy() - 1
    # Spearman: Pearson's correlation of the (average) ranks; NaN where either side has nothing to rank
    r_width, r_err = pd.Series(width).rank().to_numpy(), pd.Series(err).rank().to_numpy()
    rho = (float(np.corrcoef(r_width, r_err)[0, 1]) if len(m) >= 3 and np.ptp(r_width) > 0 and np.ptp(r_err) > 0
           else float("nan"))
    # equal-count bins by rank, ties in width kept in one bin (pandas qcut would refuse duplicate edges)
    b = np.minimum((rank * bins / max(len(m), 1)).astype(int), bins - 1)
    t = pd.DataFrame({"bin": b, "width_ratio": np.exp(width), "ape_pct": np.abs(mid / m - 1) * 100,
                      "inside": (m >= lo) & (m <= hi)})
    out = t.groupby("bin").agg(rows=("ape_pct", "size"), median_p90_over_p10=("width_ratio", "median"),
                               median_ape_pct=("ape_pct", "median"), coverage_p10_p90=("inside", "mean"))
    return out, rho


def main(argv: list[str] | None = None) -> int:
    from recommender.costmodel.train import measurement_files
    from recommender.errors import UserError

    p = argparse.ArgumentParser(prog="python -m recommender.costmodel.prospective", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", type=Path, default=Path("models"), help="artifact folder (default: models)")
    p.add_argument("--measurements", type=Path, nargs="*", default=None,
                   help="JSONL files (default: the shipped datasets/measurements files)")
    p.add_argument("--since", default=None, help="ISO time; default: the artifact's created_at")
    p.add_argument("--out", type=Path, default=None, help="CSV to write (one row per new record)")
    p.add_argument("--engine", action="append", default=None,
                   help="keep the rows of this catalogue engine only (repeatable; default: every engine)")
    a = p.parse_args(argv)
    try:
        files = list(a.measurements) if a.measurements else measurement_files(None, True)
        frame, info = prospective_frame(a.artifact, files, a.since)
        if a.engine:
            frame = frame[frame["engine"].isin(a.engine)]
            info = {**info, "rows": len(frame), "engines": list(a.engine)}
    except (UserError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(frame)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(a.out, index=False, float_format="%.6g")
    print(json.dumps({**info, "targets": summary}, indent=1))
    if not info["catalog_matches_artifact"]:
        print("warning: the catalogue changed since the artifact was trained; these are not the served "
              "predictions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
