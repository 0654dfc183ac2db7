"""How optimistic was leave-one-GPU-out while the analytic model's engine constants saw the held-out card?

    python benchmarks/bench_logo_refit_engine_constants.py [--targets energy_per_token_j tokens_per_s]
        [--seed N] [--seeds K] [--power-fallback catalogue|defaults]

The analytic baseline the learned model corrects uses four constants per engine (datasets/catalog/engines.yaml,
`analytic` block): `roofline_efficiency` and `per_token_overhead_ms` (fitted by
datasets/catalog/tools/fit_engine_overhead.py on batch-1 16-bit rows of ours and of ML.ENERGY v1 / Argonne)
and `power_floor` / `power_slope` (datasets/catalog/tools/fit_power_model.py, our 16-bit/fp32 records of
hf-eager and hf-compiled). The tools fit them once on every card. `train-cost-model` now refits them inside
every cross-validation fold without the held-out rows (`train._fold_refit`, recommender/costmodel/
engine_constants.py), so its figures answer this benchmark's question; this compares them with the old
practice, the all-card constants, on leave-one-GPU-out (LOGO).

Method (rows and GPU groups as `train-cost-model` builds them). For every held-out card C, the fold step of
`train.cross_validate` (p50 only) with
  (a) `design(..., refit_engine_constants=False)`: the all-card engine constants (only the method overheads
      refitted without C; what the trainer reported before), and
  (b) `design(...)`: the trainer's default, the engine constants refitted without C's rows (the tools' rows
      of C's silicon, of an architecture or of a cell measured on C only), efficiency + overhead first, then
      the power fit on a catalogue holding them, rounded as the tools write engines.yaml; an engine left with
      too few rows keeps its all-card values (power: or analytic.PARAMS' defaults with --power-fallback
      defaults); the constants table flags each such case.

Reported per target and held-out card: median APE % of (a) the learned p50 with all-card constants, (b) the
learned p50 with the constants refitted without C (the trainer's figure now), (c) the analytic baseline alone
with all-card constants and (d) with the refitted constants; then the mean over cards (each card once) and
the pooled median over all held-out rows. The refitted constants of every fold are printed next to the
all-card fit. With --seeds K the learned columns are repeated for LightGBM seeds seed .. seed+K-1: the seed
alone moves one card's median APE by several points, more than most b-a differences, so read b-a averaged
over seeds.

Caveats:
  * Where C's removal leaves an engine with too few rows the all-card value stays, which is partly C's own
    fit; those rows of C stay optimistic whichever fallback is chosen.
  * Other catalogue values fitted on measurements (analytic.INTERVAL_FACTOR, quantization dequantize
    thresholds, GPU specs) are not refitted; only the p50 is compared here.

Runtime on a 2-core machine: a few seconds (two p50 LOGO passes per target and seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
P50_ONLY = {"p50": 0.5}


def _digits():
    from recommender.costmodel.engine_constants import DIGITS

    return DIGITS


def fold_constants(T, frame, catalog, d, tools, power_fallback: str) -> tuple[dict, dict]:
    """(all-card refit, {card: the refit without it}) as `EngineFit`s per engine."""
    from recommender.costmodel import engine_constants as EC

    keys = T._frame_keys(frame, catalog)
    all_fit = tools.refit(catalog, EC.HeldOut(), power_fallback)
    folds = {g: tools.refit(catalog, EC.HeldOut.of(keys, d.gpu_group == g), power_fallback)
             for g in sorted(set(d.gpu_group))}
    return all_fit, folds


# ---- report -----------------------------------------------------------------------------------------
def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred / meas - 1.0) * 100.0


def show_constants(all_fit: dict, folds: dict, shipped: dict) -> None:
    digits = _digits()
    engines = list(all_fit)
    print("\n## Engine constants: all cards vs refitted without each card\n")
    print("eff = roofline_efficiency, ovh = per_token_overhead_ms, floor/slope = power_floor/power_slope; "
          "n = rows of the overhead fit / of the power fit; '=' = refitted, same value as on all cards; "
          "'-' = none (analytic.PARAMS defaults); '*' = too few rows without the card, all-card value kept\n")
    print("| fit | " + " | ".join(f"{e} eff / ovh / floor / slope (n)" for e in engines) + " |")
    print("|---|" + "---|" * len(engines))

    def cell(values: dict, kept=(), ref: dict | None = None, n: str = "") -> str:
        vals = []
        for k in digits:
            v = values.get(k)
            if v is None:
                vals.append("-")
            elif k in kept and ref is not None:
                vals.append(f"{v:.{digits[k]}f}*")
            elif ref is not None and ref.get(k) == v:
                vals.append("=")
            else:
                vals.append(f"{v:.{digits[k]}f}")
        return " / ".join(vals) + n

    print("| engines.yaml | " + " | ".join(cell(shipped[e]) for e in engines) + " |")
    print("| all cards (refit) | " + " | ".join(
        cell(f.values, n=f" ({f.n_overhead} / {f.n_power})") for f in all_fit.values()) + " |")
    notes = []
    for card, fit in folds.items():
        print(f"| without {card} | " + " | ".join(
            cell(fit[e].values, fit[e].kept, all_fit[e].values, f" ({fit[e].n_overhead} / {fit[e].n_power})")
            for e in engines) + " |")
        notes += [f"without {card}: {e}: {', '.join(f.kept)} kept (too few rows)" for e, f in fit.items() if f.kept]
    if notes:
        print("\nFallbacks (the held-out card's rows were (nearly) all an engine had):")
        for n in notes:
            print(f"  * {n}")


def show_target(target: str, res: list[dict], pooled: dict[str, np.ndarray], seconds: float) -> None:
    cols = ("a", "b", "c", "d")
    print(f"\n## {target}  (leave-one-GPU-out, p50; {seconds:.1f} s)\n")
    print("median APE %: (a) learned, all-card constants (the trainer before the per-fold refit); (b) learned, "
          "constants refitted without the card (the trainer now); (c) analytic, all-card constants; (d) "
          "analytic, refitted constants. b-a, d-c: how optimistic the all-card figure was (positive = too good).\n")
    print("| held-out card | rows | (a) learned all-card | (b) learned refit | b-a | (c) analytic all-card | "
          "(d) analytic refit | d-c |")
    print("|---|---|---|---|---|---|---|---|")
    for r in res:
        print(f"| {r['card']} | {r['n']} | {r['a']:.1f} | {r['b']:.1f} | {r['b'] - r['a']:+.1f} | {r['c']:.1f} | "
              f"{r['d']:.1f} | {r['d'] - r['c']:+.1f} |")
    mean = {k: float(np.mean([r[k] for r in res])) for k in cols}
    med = {k: float(np.median(pooled[k])) for k in cols}
    for name, v in (("mean over cards", mean), ("pooled median", med)):
        print(f"| {name} | {len(pooled['a']) if name == 'pooled median' else ''} | {v['a']:.1f} | {v['b']:.1f} | "
              f"{v['b'] - v['a']:+.1f} | {v['c']:.1f} | {v['d']:.1f} | {v['d'] - v['c']:+.1f} |")


def compare(T, d_all, d_refit, target: str, seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Per held-out card {card, n, a, b, c, d: median APE %} and the pooled APEs of every held-out row."""
    rows = T.target_rows(d_all, target)
    oa = T.cross_validate(d_all, target, rows, "logo", seed, quantiles=P50_ONLY)
    ob = T.cross_validate(d_refit, target, rows, "logo", seed, quantiles=P50_ONLY)
    meas = d_all.measured[target]
    # out-of-fold p50 = d.base x exp(q50) (cross_validate shifts every fold's prediction back to d.base)
    learned_a = d_all.base[target] * np.exp(oa["p50"])
    learned_b = d_refit.base[target] * np.exp(ob["p50"])
    res = []
    pooled = {k: [] for k in "abcd"}
    for card in sorted(set(oa["fold"][rows]) - {""}):
        test = rows[oa["fold"][rows] == card]
        m = meas[test]
        e = {"a": ape(learned_a[test], m), "b": ape(learned_b[test], m), "c": ape(oa["base"][test], m),
             "d": ape(ob["base"][test], m)}
        for k, v in e.items():
            pooled[k].append(v)
        res.append({"card": card, "n": len(test), **{k: float(np.median(v)) for k, v in e.items()}})
    return res, {k: np.concatenate(v) for k, v in pooled.items()}


def show_seeds(T, d_all, d_refit, target: str, seeds: list[int], res0: list[dict], pooled0) -> None:
    """b-a (learned, refitted minus all-card constants) per LightGBM seed, and the mean over seeds."""
    runs = [(res0, pooled0)] + [compare(T, d_all, d_refit, target, s) for s in seeds[1:]]
    print(f"\n{target}: learned median APE %, (a) all-card / (b) refitted constants, and b-a, per LightGBM seed "
          "(the analytic columns do not depend on the seed)\n")
    print("| held-out card | " + " | ".join(f"seed {s}: a / b / b-a" for s in seeds) + " | mean a | mean b | "
          "mean b-a |")
    print("|---|" + "---|" * (len(seeds) + 3))
    names = [r["card"] for r in res0] + ["mean over cards", "pooled median"]
    for i, name in enumerate(names):
        ab = []
        for res, pooled in runs:
            if i < len(res0):
                ab.append((res[i]["a"], res[i]["b"]))
            elif name == "mean over cards":
                ab.append((np.mean([r["a"] for r in res]), np.mean([r["b"] for r in res])))
            else:
                ab.append((float(np.median(pooled["a"])), float(np.median(pooled["b"]))))
        cells = " | ".join(f"{a:.1f} / {b:.1f} / {b - a:+.1f}" for a, b in ab)
        ma, mb = np.mean([a for a, _ in ab]), np.mean([b for _, b in ab])
        print(f"| {name} | {cells} | {ma:.1f} | {mb:.1f} | {mb - ma:+.1f} |")


def main() -> None:
    from recommender.costmodel import engine_constants as EC
    from recommender.costmodel import train as T

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=list(T.HEADLINE), choices=list(T.TARGETS))
    ap.add_argument("--seed", type=int, default=T.DEFAULT_SEED)
    ap.add_argument("--power-fallback", choices=("catalogue", "defaults"), default="catalogue",
                    help="power floor/slope of an engine left with too few rows: its all-card values "
                         "(default, as the trainer) or analytic.PARAMS' defaults")
    ap.add_argument("--seeds", type=int, default=1,
                    help="also repeat with seeds seed .. seed+K-1 and print b-a per seed and its mean (LightGBM's "
                         "seed alone moves a card's median APE by several points)")
    ns = ap.parse_args()
    t0 = time.perf_counter()
    data, catalog = T.load_training_data()
    frame = data.frame
    tools = EC.ToolRows(catalog)
    d_all = T.design(frame, catalog, refit_engine_constants=False)
    d_refit = dataclasses.replace(d_all, refit=T._fold_refit(frame, catalog, d_all.measured["tokens_per_s"],
                                                             power_fallback=ns.power_fallback, tool_rows=tools))
    print(f"training rows: {len(frame)}; seed {ns.seed}; power fallback: {ns.power_fallback}; "
          f"load {time.perf_counter() - t0:.1f} s")

    t1 = time.perf_counter()
    digits = _digits()
    shipped = {e.id: {k: (e.analytic or {}).get(k) for k in digits} for e in catalog.engines
               if e.id in EC.EO.ENGINES}
    all_fit, folds = fold_constants(T, frame, catalog, d_all, tools, ns.power_fallback)
    mismatch = [f"{e}.{k}: engines.yaml {shipped[e][k]}, refit {all_fit[e].values.get(k)}" for e in shipped
                for k in digits if shipped[e][k] != all_fit[e].values.get(k)]
    refit_s = time.perf_counter() - t1
    show_constants(all_fit, folds, shipped)
    if mismatch:
        print("\nWARNING: the all-card refit differs from engines.yaml (is it stale?): " + "; ".join(mismatch))
    else:
        print("\nThe all-card refit equals engines.yaml (the tools reproduce it), so any difference below comes "
              "from the held-out card's rows alone.")
    print(f"(constants refitted for {len(folds)} cards in {refit_s:.1f} s)")

    for target in ns.targets:
        t2 = time.perf_counter()
        res, pooled = compare(T, d_all, d_refit, target, ns.seed)
        show_target(target, res, pooled, time.perf_counter() - t2)
        if ns.seeds > 1:
            show_seeds(T, d_all, d_refit, target, [ns.seed + i for i in range(ns.seeds)], res, pooled)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
