"""Fit the memory residual per quantization method on the engines we measure (memory_residual.csv).

    python datasets/catalog/tools/fit_memory_residual.py            # print the fit and write the CSV
    python datasets/catalog/tools/fit_memory_residual.py --dry-run  # print only

`recommender.memory.estimate` adds weights, KV cache, activations and a runtime overhead; NVML's peak of our
records also holds memory the caching allocator reserved and did not hand out at the peak. Per method, and
per (method, engine), with at least `memory_residual.MIN_RECORDS` records: the median (p10, p90) over our ok
records on the engines it applies to (`memory_residual.applies_to`; the training frame's rows of ours with a
measured peak and no other process on the GPU) of NVML's peak (GiB) minus the component estimate;
`recommender.costmodel.memory_residual` says why and how it is used. Also printed (not written): the share
of our records above the estimate without and with the residual, and the median |log(measured / estimate)|.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
for _p in (REPO, Path(__file__).resolve().parent):  # the repo, and this folder for the sibling tool
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import fit_method_overhead as FMO  # noqa: E402  (its CSV writer)
import numpy as np  # noqa: E402

from recommender.costmodel import memory_residual as MR  # noqa: E402

OUT = REPO / "datasets" / "catalog" / "memory_residual.csv"
SCRIPT = "datasets/catalog/tools/fit_memory_residual.py"


def fit() -> tuple[list[dict], object, np.ndarray, object]:
    """The rows of memory_residual.csv, the training frame, its component estimates (GiB) and the catalogue the
    frame resolves against."""
    from recommender.costmodel import train as T

    data, catalog = T.load_training_data()
    frame = data.frame
    files = [f["path"].removeprefix("datasets/measurements/") for f in data.files if "measurements/" in f["path"]]
    source = (f"{SCRIPT} on {', '.join(files)} (ok records on engines without a paged KV pool, no other GPU process): median "
              "over the records of the method of peak_mem_nvml_gb (GiB) minus recommender.memory's component "
              "estimate")
    comp = MR.frame_components_gb(frame, catalog)
    return MR.fit_frame(frame, catalog, comp, source=source), frame, comp, catalog


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    args = ap.parse_args(argv)
    rows, frame, comp, catalog = fit()
    print("memory residual (GiB, measured NVML peak - component estimate) per method, and per engine:")
    for r in rows:
        print(f"  {r['quant_id']:17s} {r['engine_id'] or '(all)':16s} {r['residual_gb']:+7.3f} [p10 "
              f"{r['residual_p10_gb']:+.3f}, p90 {r['residual_p90_gb']:+.3f}] over {r['n_records']} records, "
              f"{r['n_models']} models ({r['gpus']})")
    ours = (frame["origin"] == "ours").to_numpy() & np.isfinite(frame["memory_gb"].to_numpy(float))
    measured = frame["memory_gb"].to_numpy(float)
    with_resid = comp + MR.frame_residual_gb(frame, catalog, rows)
    print("share of our records above the estimate, without -> with the residual; median |log(measured / "
          "estimate)|:")
    for name, sel in (("16-bit and fp32", frame["quant"].isin(["bf16", "fp16", "fp32"]).to_numpy()),
                      ("quantized", ~frame["quant"].isin(["bf16", "fp16", "fp32"]).to_numpy())):
        i = np.flatnonzero(ours & sel)
        print(f"  {name:16s} {np.mean(measured[i] > comp[i]):.2f} -> {np.mean(measured[i] > with_resid[i]):.2f}; "
              f"{np.median(np.abs(np.log(measured[i] / comp[i]))):.3f} -> "
              f"{np.median(np.abs(np.log(measured[i] / with_resid[i]))):.3f} ({len(i)} records)")
    if not args.dry_run:
        OUT.write_text(FMO.to_csv(rows, MR.COLUMNS), encoding="utf-8")
        print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
