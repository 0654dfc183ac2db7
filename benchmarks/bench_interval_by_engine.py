"""Time-split replay of an interval offset per engine for the cards in training (a lead of
docs/experiments/engine-conformal-s31.md), against the served one.

    python benchmarks/bench_interval_by_engine.py --cutoff 2026-11-28T00:00:00+00:00 [--cutoff ...]

Served (`train`): p10/p90 widened by one split-conformal log offset per target, calibrated on leave-one-GPU-out
out-of-fold residuals (on a card outside training, the wider unseen-card offset). The alternative, on the cards
in a target's training set only: the offset of the row's engine calibrated on random-fold residuals (engines
with at least `train.MIN_ENGINE_ROWS` rows; others the pooled random-fold offset), where an engine's rows are
exchangeable (there it held every engine at 79-82 %, s31). Per cut-off, as `bench_time_split.py` does: a copy
of `datasets/` with the records up to the cut-off, the catalogue tools refitted, an artifact trained (with
cross-validation); then random-fold residuals of J/token and tokens/s on that copy, and both intervals on the
records created after the cut-off (`prospective_frame`, ok records). Printed per target and engine: rows on
seen cards, coverage of p10-p90 and the median p90/p10, served vs alternative. Nothing in the repository is
written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_time_split import score_after_cutoff  # noqa: E402

TARGETS = ("energy_per_token_j", "tokens_per_s")

#: run inside the truncated copy (RECOMMENDER_DATA_DIR): the random-fold offsets per engine, then both intervals
_SCORE = r"""
import json, sys
from pathlib import Path
import numpy as np
from recommender.costmodel import train as T
from recommender.costmodel.prospective import prospective_frame

art, cutoff, files = Path(sys.argv[1]), sys.argv[2], [Path(p) for p in sys.argv[3:]]
meta = json.loads((art / "metadata.json").read_text())
data, catalog = T.load_training_data()
d = T.design(data.frame, catalog)
frame, _ = prospective_frame(art, files, cutoff)
out = {}
for t in %(targets)r:
    spec = meta["targets"][t]
    if spec.get("kind") != "learned":
        out[t] = {"kind": spec.get("kind"), "reason": spec.get("reason")}
        continue
    rows = T.target_rows(d, t)
    oof = T.cross_validate(d, t, rows, "random", meta["seed"])
    y = np.log(d.measured[t][rows] / d.base[t][rows])
    score = np.maximum(oof["p10"][rows] - y, y - oof["p90"][rows])
    pooled = T.conformal_offset(score)
    by = T.conformal_offsets_by_group(score, d.engine_group[rows])
    f = frame[np.isfinite(frame["measured_" + t]) & np.isfinite(frame["predicted_p50_" + t])]
    seen = f["gpu_id"].isin(spec["gpus"]).to_numpy()
    alt = T.row_offsets(f["engine"].to_numpy(object), pooled, by)
    served = float(spec["conformal_log_offset"])
    p10, p90, m = (f[c + t].to_numpy(float) for c in ("predicted_p10_", "predicted_p90_", "measured_"))
    shift = np.where(seen, alt - served, 0.0)  # unseen cards keep the served unseen-card offset
    a10, a90 = p10 * np.exp(-shift), p90 * np.exp(shift)
    a10, a90 = np.minimum(a10, f["predicted_p50_" + t]), np.maximum(a90, f["predicted_p50_" + t])
    res = {}
    for e in ["all", *sorted(set(f["engine"]))]:
        s = seen & ((f["engine"] == e).to_numpy() if e != "all" else True)
        if not s.any():
            continue
        res[e] = {"n": int(s.sum()),
                  "coverage": float(np.mean((m[s] >= p10[s]) & (m[s] <= p90[s]))),
                  "coverage_alt": float(np.mean((m[s] >= a10[s]) & (m[s] <= a90[s]))),
                  "width": float(np.median(p90[s] / p10[s])), "width_alt": float(np.median(a90[s] / a10[s]))}
    out[t] = {"served_offset": served, "random_pooled": pooled, "random_by_engine": by, "seen": res}
print(json.dumps(out))
"""


def replay(cutoff: str, seed: int | None = None) -> dict:
    """Train on the records up to `cutoff` (with cross-validation) and compare the intervals (module docstring)."""
    kept, result = score_after_cutoff(cutoff, _SCORE % {"targets": TARGETS}, seed, cv=True)
    return {"cutoff": cutoff, "train_records": sum(kept.values()), **result}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoff", action="append", required=True, help="ISO time (repeatable)")
    ap.add_argument("--seed", type=int, default=None, help="the trainer's seed (default: its own)")
    args = ap.parse_args()
    for c in args.cutoff:
        r = replay(c, args.seed)
        print(f"cut-off {r['cutoff']}: trained on {r['train_records']} records")
        for t in TARGETS:
            x = r[t]
            if "seen" not in x:
                print(f"  {t}: {x['kind']} ({x['reason']})")
                continue
            print(f"  {t}: served offset {x['served_offset']:.3f}, random-fold pooled {x['random_pooled']:.3f}, "
                  f"by engine {json.dumps({k: round(v, 3) for k, v in x['random_by_engine'].items()})}")
            for e, s in x["seen"].items():
                print(f"    {e:16s} n={s['n']:4d}  coverage {s['coverage']:.2f} -> {s['coverage_alt']:.2f}  "
                      f"median p90/p10 x{s['width']:.2f} -> x{s['width_alt']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
