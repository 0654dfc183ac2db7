"""Backtest of the memory residual (recommender/costmodel/memory_residual.py) forward in time and across cards.

    python benchmarks/bench_memory_residual.py

The residual is fitted on our records created before a cut-off (or on one card's records) and judged on the
records after it (or on the other card's): the share of records whose measured NVML peak lies above the
estimate, and the median |log(measured / estimate)|, without the residual (the component estimate) and with
it. A residual that only describes the records it was fitted on would not carry to later sessions' cells or
to another card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from recommender.costmodel import memory_residual as MR  # noqa: E402
from recommender.costmodel import train as T  # noqa: E402

CUTOFFS = ("2026-11-27T12:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-28T12:00:00+00:00",
           "2026-11-29T00:00:00+00:00")


def _created_at() -> dict[str, str]:
    """record_id -> created_at over the training's measurement files."""
    out = {}
    for path in T.measurement_files(None, True):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                out[str(r.get("record_id") or r.get("cell_hash"))] = r.get("created_at") or ""
    return out


def _judge(name: str, frame, catalog, comp: np.ndarray, fit_rows: np.ndarray, test_rows: np.ndarray) -> None:
    rows = MR.fit_frame(frame, catalog, comp, rows=fit_rows)
    with_r = (comp + MR.frame_residual_gb(frame, catalog, rows))[test_rows]
    measured = frame["memory_gb"].to_numpy(float)[test_rows]
    quantized = ~np.isin(frame["quant"].to_numpy(object)[test_rows], ["bf16", "fp16", "fp32"])
    for label, sel in (("16-bit/fp32", ~quantized), ("quantized", quantized)):
        if not sel.any():
            continue
        m, c, w = measured[sel], comp[test_rows][sel], with_r[sel]
        print(f"{name:34s} {label:11s} n={sel.sum():4d}  above {np.mean(m > c):.2f} -> {np.mean(m > w):.2f}   "
              f"median |log| {np.median(np.abs(np.log(m / c))):.3f} -> {np.median(np.abs(np.log(m / w))):.3f}")


def main() -> int:
    data, catalog = T.load_training_data()
    frame = data.frame
    comp = MR.frame_components_gb(frame, catalog)
    created = _created_at()
    ids = [rid.split(":", 1)[1] for rid in frame["row_id"]]
    when = np.array([created.get(i, "") for i in ids], dtype=object)
    applies = {e.id for e in catalog.engines if MR.applies_to(e)}
    ours = ((frame["origin"] == "ours").to_numpy() & np.isfinite(frame["memory_gb"].to_numpy(float))
            & np.isin(frame["engine"].to_numpy(object), list(applies)))
    for cut in CUTOFFS:
        before, after = np.flatnonzero(ours & (when < cut) & (when != "")), np.flatnonzero(ours & (when >= cut))
        _judge(f"forward: fit < {cut[:16]} ({len(before)})", frame, catalog, comp, before, after)
    gpu = frame["gpu_id"].to_numpy(object)
    for fit_gpu, test_gpu in (("h100-sxm", "h200"), ("h200", "h100-sxm")):
        _judge(f"across cards: fit {fit_gpu}, judge {test_gpu}", frame, catalog, comp,
               np.flatnonzero(ours & (gpu == fit_gpu)), np.flatnonzero(ours & (gpu == test_gpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
