"""Nested leave-one-GPU-out test of blending the learned p50 with the analytic estimate on an unseen card.

    python benchmarks/bench_unseen_card_blend.py [--targets energy_per_token_j tokens_per_s] [--seed N]

Question: for a GPU the model never saw, does the geometric blend

    p50_blend = learned^(1 - w) x analytic^w        (log-space interpolation, w in 0, 0.25, 0.5, 0.75, 1)

predict better than the learned p50 alone (w = 0), when w is chosen without looking at that GPU?

Method, per target (rows and GPU groups as `train-cost-model` builds them: `load_training_data`, `design`,
`target_rows`, Design.gpu_group; GPU ids of identical silicon are one group):

1. Outer leave-one-GPU-out: `train.cross_validate(..., "logo", quantiles={"p50": 0.5})` gives every card C
   the p50 of a model trained on all cards but C (only the median booster is fitted: the p10/p90 boosters
   and the other CV schemes do not touch p50), and the analytic estimate as C's fold saw it (method
   overheads refitted without C, `Design.refit`).
2. Inner leave-one-GPU-out for each C, over the other cards only: for every inner card D a model trained on
   all cards but C and D predicts D (the method-overhead refit also leaves C out). The w of the grid with the
   lowest mean over the inner cards of the per-card median APE is chosen (ties: the smaller w).
3. That w is applied to C's outer predictions. Reported per outer card: the chosen w, the median absolute
   percentage error of the learned p50, of the analytic estimate and of the blend; and the mean over cards
   (each card counts once). The inner criterion per w is printed too, to judge whether the choice is stable.

The catalogue constants fitted on measurements (engines.yaml: roofline efficiency, per-token overhead,
power floor and slope; method_overhead.csv: decode overheads and prefill time ratios) are refitted inside
every fold by `train.design` (since session s10), without the rows held out in that fold, so neither the
"analytic" column nor the baseline the learned model corrects has seen the held-out card. Other catalogue
values (analytic.PARAMS, GPU specs, quants.yaml thresholds) are not refitted.

Runtime: about 10 s in all for both headline targets on a 2-core machine (1 s to load; one leave-one-GPU-out
pass per target outer plus one per outer card inner, each ~1 s with only the p50 booster fitted).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

W_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
P50_ONLY = {"p50": 0.5}
CAVEAT = ("note: the engines.yaml and method_overhead.csv constants are refitted inside each fold without its "
          "held-out rows (train.design); analytic.PARAMS, GPU specs and quants.yaml thresholds are not.")


def oof_logs(d, target: str, rows: np.ndarray, seed: int):
    """Leave-one-GPU-out out-of-fold (log learned p50, log analytic as the fold saw it, held-out group,
    log measured) of `rows`, keeping the rows whose group could be held out."""
    from recommender.costmodel import train as T

    o = T.cross_validate(d, target, rows, "logo", seed, quantiles=P50_ONLY)
    learned = np.log(d.base[target][rows]) + o["p50"][rows]  # p50 = d.base x exp(q50)
    analytic = np.log(o["base"][rows])
    ok = np.isfinite(learned) & np.isfinite(analytic)
    return learned[ok], analytic[ok], o["fold"][rows][ok].astype(str), np.log(d.measured[target][rows][ok])


def card_median_ape(learned, analytic, measured, folds, w: float) -> dict[str, float]:
    """{card: median APE % of the blend exp((1 - w) log learned + w log analytic)}."""
    ape = np.abs(np.expm1((1 - w) * learned + w * analytic - measured)) * 100
    return {c: float(np.median(ape[folds == c])) for c in sorted(set(folds))}


def without_card(d, card: str):
    """The design with `card`'s rows kept out of the catalogue refit too (inner folds never see it)."""
    if d.refit is None:
        return d
    keep = d.gpu_group != card
    refit = d.refit
    return dataclasses.replace(d, refit=lambda train: refit(train[keep[train]]))


def nested(d, target: str, seed: int) -> tuple[list[dict], float]:
    from recommender.costmodel import train as T

    rows = T.target_rows(d, target)
    t0 = time.perf_counter()
    learned, analytic, folds, measured = oof_logs(d, target, rows, seed)
    outer = {w: card_median_ape(learned, analytic, measured, folds, w) for w in W_GRID}
    out = []
    for card in sorted(set(folds)):
        inner_rows = rows[d.gpu_group[rows] != card]
        il, ia, ifo, im = oof_logs(without_card(d, card), target, inner_rows, seed)
        crit = {w: float(np.mean(list(card_median_ape(il, ia, im, ifo, w).values()))) for w in W_GRID}
        w_best = min(W_GRID, key=lambda w: (crit[w], w))
        out.append({"card": card, "n": int((folds == card).sum()), "inner_cards": len(set(ifo)), "w": w_best,
                    "learned": outer[0.0][card], "analytic": outer[1.0][card], "blend": outer[w_best][card],
                    "inner": crit, "fixed": {w: outer[w][card] for w in W_GRID}})
    return out, time.perf_counter() - t0


def show(target: str, res: list[dict], seconds: float) -> None:
    print(f"\n## {target}  (nested leave-one-GPU-out, {seconds:.1f} s)\n")
    print("| held-out card | rows | inner cards | chosen w | learned median APE % | analytic median APE % | "
          "blend (chosen w) median APE % |")
    print("|---|---|---|---|---|---|---|")
    for r in res:
        print(f"| {r['card']} | {r['n']} | {r['inner_cards']} | {r['w']:g} | {r['learned']:.1f} | "
              f"{r['analytic']:.1f} | {r['blend']:.1f} |")
    mean = {k: np.mean([r[k] for r in res]) for k in ("learned", "analytic", "blend")}
    print(f"| mean over cards | | | | {mean['learned']:.1f} | {mean['analytic']:.1f} | {mean['blend']:.1f} |")
    print("\nInner criterion (mean over the inner cards of the per-card median APE %) per w, and, for reference")
    print("only, the outer card's median APE % at every fixed w (not an honest choice):\n")
    ws = " | ".join(f"w={w:g}" for w in W_GRID)
    print(f"| held-out card | inner {ws} | outer {ws} |")
    print("|---|" + "---|" * (2 * len(W_GRID)))
    for r in res:
        inner = " | ".join(f"{r['inner'][w]:.1f}" for w in W_GRID)
        fixed = " | ".join(f"{r['fixed'][w]:.1f}" for w in W_GRID)
        print(f"| {r['card']} | {inner} | {fixed} |")
    fixed_mean = " | ".join(f"{np.mean([r['fixed'][w] for r in res]):.1f}" for w in W_GRID)
    print(f"| mean over cards |{' |' * len(W_GRID)} {fixed_mean} |")

def main() -> None:
    from recommender.costmodel import train as T

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=list(T.HEADLINE), choices=list(T.TARGETS))
    ap.add_argument("--seed", type=int, default=T.DEFAULT_SEED)
    ns = ap.parse_args()
    t0 = time.perf_counter()
    data, catalog = T.load_training_data()
    d = T.design(data.frame, catalog)
    print(f"training rows: {len(data.frame)}; w grid {', '.join(f'{w:g}' for w in W_GRID)}; "
          f"blend = learned^(1-w) x analytic^w; seed {ns.seed}")
    print(CAVEAT)
    for target in ns.targets:
        res, seconds = nested(d, target, ns.seed)
        show(target, res, seconds)
    print(f"\n{CAVEAT}")
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
