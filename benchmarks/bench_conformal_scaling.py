"""Additive vs width-scaled conformal offsets: does scaling the offset by the quantile models' own interval width
cover the widest intervals better?

    python benchmarks/bench_conformal_scaling.py [--targets tokens_per_s energy_per_token_j] [--seed N]

Question (s26): prospectively the served tokens/s intervals in the widest quarter held 72 % for a nominal 80 %
(`cost_model_validation.ipynb`, "Does a wider interval flag a larger error?"). The trainer widens the quantile
models' p10/p90 by one additive log offset (conformalized quantile regression, `train.conformal_offset`). The
alternative here divides each conformity score by the row's own width ln(p90 / p10) and multiplies the offset
back by it, so wide intervals widen more.

Method, per target and split (`train.cross_validate`, all three quantile models; leave-one-GPU-out and random
folds): each fold's offset from the other folds' scores, as `train.evaluate` does. Printed: coverage of p10-p90
in four equal-count quarters by the raw width (narrowest first), overall, the median interval p90 / p10, and for
leave-one-GPU-out the mean coverage over held-out cards (each card once; pooled offset, not the unseen-card one).
About 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def intervals(target: str, scheme: str, seed: int, d):
    """Out-of-fold log(measured / base) and the raw quantiles (ordered around the median), with the folds."""
    from recommender.costmodel import train as T

    rows = T.target_rows(d, target)
    o = T.cross_validate(d, target, rows, scheme, seed)
    y = np.log(d.measured[target][rows] / d.base[target][rows])
    q10, q50, q90, fold = (o[k][rows] for k in ("p10", "p50", "p90", "fold"))
    ok = np.isfinite(q50)
    return y[ok], np.minimum(q10, q50)[ok], np.maximum(q90, q50)[ok], fold[ok]


def calibrated(y, lo, hi, fold, scaled: bool):
    """p10/p90 widened per fold by the other folds' conformal offset, additive or scaled by each row's width."""
    from recommender.costmodel import train as T

    scale = np.maximum(hi - lo, 1e-3) if scaled else np.ones_like(lo)
    score = np.maximum(lo - y, y - hi) / scale
    lo, hi = lo.copy(), hi.copy()
    for lab in set(fold):
        sel = fold == lab
        off = T.conformal_offset(score[~sel])
        lo[sel] -= off * scale[sel]
        hi[sel] += off * scale[sel]
    return lo, hi


def main() -> None:
    from recommender.costmodel import train as T

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=["tokens_per_s", "energy_per_token_j"])
    ap.add_argument("--seed", type=int, default=T.DEFAULT_SEED)
    ns = ap.parse_args()
    data, cat = T.load_training_data()
    d = T.design(data.frame, cat)
    print("| target | split | offset | coverage by width quarter (narrowest first) | coverage | median p90/p10 | "
          "mean over held-out cards |")
    print("|---|---|---|---|---|---|---|")
    for target in ns.targets:
        for scheme in ("logo", "random"):
            y, lo, hi, fold = intervals(target, scheme, ns.seed, d)
            quarter = pd.qcut(pd.Series(hi - lo).rank(method="first"), 4, labels=False).to_numpy()
            for name, scaled in (("additive", False), ("scaled", True)):
                lo_c, hi_c = calibrated(y, lo, hi, fold, scaled)
                inside = (y >= lo_c) & (y <= hi_c)
                by_q = ", ".join(f"{inside[quarter == k].mean():.2f}" for k in range(4))
                cards = (f"{np.mean([inside[fold == lab].mean() for lab in set(fold)]):.3f}" if scheme == "logo"
                         else "")
                print(f"| {target} | {scheme} | {name} | {by_q} | {inside.mean():.3f} | "
                      f"{np.median(np.exp(hi_c - lo_c)):.2f} | {cards} |")


if __name__ == "__main__":
    main()
