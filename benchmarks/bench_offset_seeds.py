"""Time-split replay of the served conformal offsets: one seed's against the median of GATE_SEEDS seeds'.

    python benchmarks/bench_offset_seeds.py --cutoff 2026-11-28T00:00:00+00:00 [--cutoff ...] [--seeds 1 2 3]

Since s32 `train` serves the median over GATE_SEEDS seeds' leave-one-GPU-out cross-validations of each offset
(`seed_median_offsets`); before, the offset of the training seed's cross-validation alone, which one seed's
LightGBM column sample moved by as much as a new card's records did. Per cut-off and trainer seed, as
`bench_time_split.py` does: a copy of `datasets/` with the records up to the cut-off, the catalogue tools
refitted, an artifact trained (`--no-cv`: the calibration split and the seed runs only); then the records
created after the cut-off (`prospective_frame`, ok records) scored with the served intervals (the median) and
with the training seed's own offsets (`conformal_log_offset_seeds[0]`, and the unseen-card one on cards outside
the target's training cards): the p10 and p90 moved by the difference in log space and kept on their side of the
p50 (serving's slow-path widening moves with them, an approximation). Printed per target: over the seeds, the
mean and standard deviation of the offsets, of the p10-p90 coverage and of the median p90/p10, per arm. Nothing
in the repository is written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_time_split import score_after_cutoff  # noqa: E402

TARGETS = ("energy_per_token_j", "tokens_per_s", "ttft_ms", "prefill_energy_j")

#: run inside the truncated copy (RECOMMENDER_DATA_DIR): both arms' coverage and width on the later records
_SCORE = r"""
import json, sys
from pathlib import Path
import numpy as np
from recommender.costmodel.prospective import prospective_frame

art, cutoff, files = Path(sys.argv[1]), sys.argv[2], [Path(p) for p in sys.argv[3:]]
meta = json.loads((art / "metadata.json").read_text())
frame, _ = prospective_frame(art, files, cutoff)
out = {}
for t in %(targets)r:
    spec = meta["targets"][t]
    if spec.get("kind") != "learned":
        out[t] = {"kind": spec.get("kind")}
        continue
    f = frame[np.isfinite(frame["measured_" + t]) & np.isfinite(frame["predicted_p50_" + t])]
    seen = f["gpu_id"].isin(spec["gpus"]).to_numpy()
    served = np.where(seen, spec["conformal_log_offset"], spec["conformal_log_offset_unseen_card"])
    single = np.where(seen, spec["conformal_log_offset_seeds"][0], spec["conformal_log_offset_unseen_card_seeds"][0])
    p10, p50, p90, m = (f[c + t].to_numpy(float) for c in ("predicted_p10_", "predicted_p50_", "predicted_p90_",
                                                          "measured_"))
    s10, s90 = np.minimum(p10 * np.exp(served - single), p50), np.maximum(p90 * np.exp(single - served), p50)
    out[t] = {"n": int(len(f)), "unseen_rows": int((~seen).sum()),
              "offset": {"median": spec["conformal_log_offset"], "single": spec["conformal_log_offset_seeds"][0]},
              "offset_unseen": {"median": spec["conformal_log_offset_unseen_card"],
                                "single": spec["conformal_log_offset_unseen_card_seeds"][0]},
              "coverage": {"median": float(np.mean((m >= p10) & (m <= p90))),
                           "single": float(np.mean((m >= s10) & (m <= s90)))},
              "width": {"median": float(np.median(p90 / p10)), "single": float(np.median(s90 / s10))}}
print(json.dumps(out))
"""


def replay(cutoff: str, seed: int) -> dict:
    """Train on the records up to `cutoff` at `seed` and score both arms on the later records (module docstring)."""
    kept, result = score_after_cutoff(cutoff, _SCORE % {"targets": TARGETS}, seed)
    return {"cutoff": cutoff, "seed": seed, "train_records": sum(kept.values()), **result}


def _ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def summarize(runs: list[dict]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{target: {quantity: {arm: [value per run]}}} over one cut-off's seeds (learned targets only)."""
    out: dict = {}
    for t in TARGETS:
        got = [r[t] for r in runs if "coverage" in r[t]]
        if got:
            out[t] = {k: {arm: [g[k][arm] for g in got] for arm in ("single", "median")}
                      for k in ("offset", "offset_unseen", "coverage", "width")}
            out[t]["n"] = got[0]["n"]
            out[t]["unseen_rows"] = got[0]["unseen_rows"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoff", action="append", required=True, help="ISO time (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4], help="trainer seeds (default 1 2 3 4)")
    ap.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    args = ap.parse_args()
    every = []
    for c in args.cutoff:
        runs = [replay(c, s) for s in args.seeds]
        every += runs
        print(f"cut-off {c}: trained on {runs[0]['train_records']} records, seeds {args.seeds}")
        for t, s in summarize(runs).items():
            print(f"  {t} (n={s['n']}, {s['unseen_rows']} on cards outside training):")
            for k in ("offset", "offset_unseen", "coverage", "width"):
                print(f"    {k:14s} single seed {_ms(s[k]['single'])}   median of seeds {_ms(s[k]['median'])}")
    if args.json:
        args.json.write_text(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
