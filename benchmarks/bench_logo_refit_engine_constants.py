"""How optimistic is leave-one-GPU-out because the analytic model's engine constants saw the held-out card?

    python benchmarks/bench_logo_refit_engine_constants.py [--targets energy_per_token_j tokens_per_s]
        [--seed N] [--seeds K] [--power-fallback previous|defaults]

The analytic baseline the learned model corrects uses four constants per engine (datasets/catalog/engines.yaml,
`analytic` block): `roofline_efficiency` and `per_token_overhead_ms` (fitted by
datasets/catalog/tools/fit_engine_overhead.py on batch-1 16-bit rows of ours and of ML.ENERGY v1 / Argonne)
and `power_floor` / `power_slope` (datasets/catalog/tools/fit_power_model.py, our 16-bit/fp32 records of
hf-eager and hf-compiled). They are fitted once on every card, so in `train-cost-model`'s leave-one-GPU-out
(LOGO) the held-out card has informed its own baseline through them. Only the method overheads
(method_overhead.csv) are refitted per fold (`Design.refit`).

Method (rows and GPU groups as `train-cost-model` builds them: `load_training_data`, `design`, `target_rows`,
Design.gpu_group; GPU ids of identical silicon are one group). For every held-out card C:

1. The two tools' own functions (`fit_engine_overhead.read_public`, `read_ours`, `fit_engine`;
   `fit_power_model.power_rows`, `fit_engine`) refit the constants on their row sets with C's rows removed
   (rows matched to C by silicon, as the groups are), in the tools' order: efficiency + overhead first, then
   the power fit on a catalogue holding those (its utilisation u depends on them). Values are rounded as the
   tools write engines.yaml (3 decimals; overhead 2), so a fold whose removal changes nothing reproduces
   today's figures exactly. An engine left with too few rows (overhead fit: < 3 rows, as `fit_all`; power
   fit: < fit_power_model.MIN_ROWS) keeps its all-card values (efficiency/overhead always; power by default,
   or the analytic.PARAMS defaults with --power-fallback defaults); the constants table flags each such case.
2. A catalogue copy holding those constants rebuilds the feature matrix and the analytic baseline of every
   row, with the method overheads refitted on the rows outside C (the fold step of `train.cross_validate`,
   `_method_overhead_refit` on that catalogue), the p50 booster is trained on every card but C and predicts C.

Reported per target and held-out card: median APE % of (a) the learned p50 with all-card constants (today's
LOGO, `train.cross_validate(..., "logo", quantiles={"p50": 0.5})`; reproduces models/cv_predictions.csv),
(b) the learned p50 with the constants refitted without C, (c) the analytic baseline alone with all-card
constants (as C's fold saw it: method overheads refitted without C) and (d) the analytic baseline alone with
the refitted constants; then the mean over cards (each card once) and the pooled median over all held-out
rows. The refitted constants of every fold are printed next to the all-card fit. With --seeds K the learned
columns are repeated for LightGBM seeds seed .. seed+K-1: the seed alone moves one card's median APE by
several points (A40 energy 4 to 20 %), more than most b-a differences, so read b-a averaged over seeds.

Caveats:
  * Leak that cannot be removed: where C's removal leaves an engine without rows (hf-compiled and, for power,
    hf-compiled when H100 is held out: our hf-compiled records are all H100) the all-card value stays, which is
    C's own fit; --power-fallback defaults replaces it by analytic.PARAMS (floor 0, slope 1.015), itself
    calibrated on one H100 cell. Those rows of C stay optimistic whichever is chosen.
  * The stable-only rule of read_ours (an engine's stable records only where it has >= MIN_STABLE of them) is
    decided on every card; the script checks it would be decided alike without C and says so if not.
  * Other catalogue values fitted on measurements (analytic.INTERVAL_FACTOR, the p10/p90 bands, quantization
    dequantize thresholds, GPU specs) are not refitted; only the p50 is compared here.
  * The power fit reads our records only (H100 and H200), so it moves only when one of those is held out;
    the public-only cards (A100, A40, V100, GH200) move only the efficiency/overhead of their engines.

Runtime on a 2-core machine: about 3 s (1 s to load; the constant refits and feature rebuilds take well under
a second; one p50 LOGO pass per target for (a) plus one p50 booster per card and target for (b)); about 7 s
with --seeds 5.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
TOOLS = REPO / "datasets" / "catalog" / "tools"
P50_ONLY = {"p50": 0.5}
#: engines.yaml keys refitted here and the decimals the tools write them with
DIGITS = {"roofline_efficiency": 3, "per_token_overhead_ms": 2, "power_floor": 3, "power_slope": 3}
SHORT = {"roofline_efficiency": "eff", "per_token_overhead_ms": "ovh ms", "power_floor": "floor",
         "power_slope": "slope"}


def _tool(name: str):
    """A catalogue tool imported from its file (as tests/datasets/test_fit_*.py do)."""
    if name in sys.modules:
        return sys.modules[name]
    if str(TOOLS) not in sys.path:  # fit_power_model imports fit_engine_overhead by name
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


# ---- refitting the engine constants without a card ------------------------------------------------
class ToolRows:
    """The two tools' row sets, read once, and the silicon each GPU id belongs to."""

    def __init__(self, catalog):
        self.feo = _tool("fit_engine_overhead")
        self.fpm = _tool("fit_power_model")
        files = self.feo.measurement_files()
        self.public, _ = self.feo.read_public(catalog)
        self.ours, self.stable_only = self.feo.read_ours(catalog, files)
        self.power = self.fpm.power_rows(catalog, files)
        self.silicon = {r.id: (r.bandwidth_gbs, r.memory_gb, r.fp16_tensor_tflops) for r in catalog.gpus}
        # (engine, gpu id, is_stable) of the records read_ours considers, to recheck its stable-only rule
        self.own = []
        for r, _ in self.feo.ok_records(files):
            if (r.get("engine") in self.feo.OWN_ENGINES and r.get("quant") in self.feo.FLOAT_QUANTS
                    and r.get("batch_size") == 1):
                gpu = catalog.gpus.find(r.get("gpu_id") or "") or catalog.gpus.find(r.get("gpu_name") or "")
                if gpu is not None:
                    self.own.append((r["engine"], gpu.id, r.get("is_stable") is True))

    def _out(self, card_ids: set[str]):
        """gpu id -> True when the id is of the held-out card's silicon."""
        sil = {self.silicon[g] for g in card_ids}
        return lambda gid: self.silicon.get(gid) in sil

    def overhead_rows(self, engine: str, held_out) -> object:
        feo = self.feo
        rows = feo.Rows()
        for src in (self.public.get(engine), self.ours.get(engine)):
            if src is None:
                continue
            keep = [i for i, g in enumerate(src.gpu) if not held_out(g)]
            for k in rows.__dataclass_fields__:
                getattr(rows, k).extend(getattr(src, k)[i] for i in keep)
        return rows

    def power_rows(self, engine: str, held_out) -> dict[str, list]:
        src = self.power.get(engine)
        if src is None:
            return {"power": []}
        keep = [i for i, g in enumerate(src["gpu"]) if not held_out(g)]
        return {k: [v[i] for i in keep] for k, v in src.items()}

    def stable_rule_changes(self, held_out) -> list[str]:
        """Engines whose read_ours stable-only decision would differ without the held-out card."""
        out = []
        for eng, was in self.stable_only.items():
            n = sum(1 for e, g, s in self.own if e == eng and s and not held_out(g))
            if (n >= self.feo.MIN_STABLE) != was:
                out.append(eng)
        return out

    def refit(self, catalog, card_ids: set[str], power_fallback: str) -> tuple[object, dict, list[str]]:
        """(catalogue copy with the engine constants refitted without `card_ids`' silicon, {engine: {key:
        value, "n_ovh": rows, "n_pow": rows}}, notes)."""
        feo, fpm = self.feo, self.fpm
        held_out = self._out(card_ids)
        base = {e.id: dict(e.analytic or {}) for e in catalog.engines}
        fitted = {e: {} for e in feo.ENGINES}
        notes = [f"{e}: read_ours' stable-only rule would change without the card (kept as on all cards)"
                 for e in self.stable_rule_changes(held_out) if len(self.overhead_rows(e, held_out))]
        for eng in feo.ENGINES:
            rows = self.overhead_rows(eng, held_out)
            fitted[eng]["n_ovh"] = len(rows)
            if len(rows) >= 3:  # as fit_engine_overhead.fit_all
                f = feo.fit_engine(catalog, eng, rows, None, self.stable_only.get(eng))
                fitted[eng]["roofline_efficiency"] = round(f.efficiency, 3)
                fitted[eng]["per_token_overhead_ms"] = round(f.overhead_ms, 2)
            elif len(self.overhead_rows(eng, lambda g: False)) >= 3:
                notes.append(f"{eng}: {len(rows)} overhead-fit rows without the card: efficiency and overhead "
                             "kept at their all-card values")
        cat = with_constants(catalog, {e: {**base[e], **{k: v for k, v in f.items() if k in DIGITS}}
                                       for e, f in fitted.items() if e in base})
        for eng in feo.ENGINES:
            rows = self.power_rows(eng, held_out)
            fitted[eng]["n_pow"] = len(rows["power"])
            if len(rows["power"]) >= fpm.MIN_ROWS:
                f = fpm.fit_engine(cat, eng, rows)
                fitted[eng]["power_floor"] = round(f.floor, 3)
                fitted[eng]["power_slope"] = round(f.slope, 3)
            elif len(self.power_rows(eng, lambda g: False)["power"]) >= fpm.MIN_ROWS:
                if power_fallback == "defaults":
                    fitted[eng]["power_floor"] = fitted[eng]["power_slope"] = None
                    notes.append(f"{eng}: {len(rows['power'])} power-fit rows without the card (< "
                                 f"{fpm.MIN_ROWS}): floor and slope set to the analytic.PARAMS defaults")
                else:
                    notes.append(f"{eng}: {len(rows['power'])} power-fit rows without the card (< "
                                 f"{fpm.MIN_ROWS}): floor and slope kept at their all-card values")
        new = {}
        for e in base:
            a = dict(base[e])
            for k, v in fitted.get(e, {}).items():
                if k not in DIGITS:
                    continue
                if v is None:
                    a.pop(k, None)
                else:
                    a[k] = v
            new[e] = a
            if e in fitted:  # report the values the fold uses; `kept`: those not refitted without the card
                fitted[e]["kept"] = {k for k in DIGITS if k not in fitted[e] and a.get(k) is not None}
                fitted[e].update({k: a.get(k) for k in DIGITS})
        return with_constants(catalog, new), fitted, notes


def with_constants(catalog, analytic: dict[str, dict]):
    """A shallow catalogue copy whose engines carry the given `analytic` blocks (others untouched)."""
    cat = copy.copy(catalog)
    rows = [dataclasses.replace(e, analytic=analytic.get(e.id, e.analytic)) for e in catalog.engines]
    cat.engines = type(catalog.engines)(catalog.engines.kind, rows)
    return cat


# ---- one leave-one-GPU-out fold with a given catalogue ---------------------------------------------
def fold_predict(d, frame, catalog, target: str, rows: np.ndarray, card: str, seed: int):
    """(learned p50, analytic baseline) of `card`'s rows among `rows`, trained on the other cards' rows with
    X and the baseline built from `catalog`: the fold step of train.cross_validate, on that catalogue."""
    from recommender.costmodel import train as T

    test = rows[d.gpu_group[rows] == card]
    train = rows[d.gpu_group[rows] != card]
    outside = np.flatnonzero(d.gpu_group != card)
    if catalog.method_overhead:
        X, base = T._method_overhead_refit(frame, catalog, d.measured["tokens_per_s"])(outside)
    else:
        X, base = T._features_and_base(frame, catalog)
    y = np.log(d.measured[target] / base[target])
    m = T.fit_quantiles(X[train], y[train], seed, P50_ONLY)["p50"]
    return test, base[target][test] * np.exp(m.predict(X[test])), base[target][test]


# ---- report -----------------------------------------------------------------------------------------
def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred / meas - 1.0) * 100.0


def show_constants(all_fit: dict, folds: dict, shipped: dict) -> None:
    engines = list(all_fit)
    print("\n## Engine constants: all cards vs refitted without each card\n")
    print("eff = roofline_efficiency, ovh = per_token_overhead_ms, floor/slope = power_floor/power_slope; "
          "n = rows of the overhead fit / of the power fit; '=' = refitted, same value as on all cards; "
          "'-' = none (analytic.PARAMS defaults); '*' = too few rows without the card, all-card value kept\n")
    print("| fit | " + " | ".join(f"{e} eff / ovh / floor / slope (n)" for e in engines) + " |")
    print("|---|" + "---|" * len(engines))

    def cell(f: dict, ref: dict | None) -> str:
        vals = []
        for k in DIGITS:
            v = f.get(k)
            if v is None:
                vals.append("-")
            elif k in f.get("kept", ()) and ref is not None:
                vals.append(f"{v:.{DIGITS[k]}f}*")
            elif ref is not None and ref.get(k) == v:
                vals.append("=")
            else:
                vals.append(f"{v:.{DIGITS[k]}f}")
        return " / ".join(vals) + f" ({f.get('n_ovh', 0)} / {f.get('n_pow', 0)})"

    print("| engines.yaml | " + " | ".join(cell({**shipped[e], "n_ovh": "", "n_pow": ""}, None).replace(
        " ( / )", "") for e in engines) + " |")
    print("| all cards (refit) | " + " | ".join(cell(all_fit[e], None) for e in engines) + " |")
    for card, (fit, _) in folds.items():
        print(f"| without {card} | " + " | ".join(cell(fit[e], all_fit[e]) for e in engines) + " |")
    notes = [(c, n) for c, (_, ns) in folds.items() for n in ns]
    if notes:
        print("\nFallbacks (the held-out card's rows were all an engine had):")
        for c, n in notes:
            print(f"  * without {c}: {n}")


def show_target(target: str, res: list[dict], pooled: dict[str, np.ndarray], seconds: float) -> None:
    cols = ("a", "b", "c", "d")
    print(f"\n## {target}  (leave-one-GPU-out, p50; {seconds:.1f} s)\n")
    print("median APE %: (a) learned, all-card constants (today's LOGO); (b) learned, constants refitted "
          "without the card; (c) analytic, all-card constants; (d) analytic, refitted constants. "
          "b-a, d-c: how optimistic today's figure is (positive = today's is too good).\n")
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


def compare(d, frame, fold_catalog: dict, target: str, seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Per held-out card {card, n, a, b, c, d: median APE %} and the pooled APEs of every held-out row."""
    from recommender.costmodel import train as T

    rows = T.target_rows(d, target)
    o = T.cross_validate(d, target, rows, "logo", seed, quantiles=P50_ONLY)
    meas = d.measured[target]
    learned_a = d.base[target] * np.exp(o["p50"])  # p50 = d.base x exp(q50)
    res = []
    pooled = {k: [] for k in "abcd"}
    for card in sorted(set(o["fold"][rows]) - {""}):
        test, learned_b, analytic_d = fold_predict(d, frame, fold_catalog[card], target, rows, card, seed)
        m = meas[test]
        e = {"a": ape(learned_a[test], m), "b": ape(learned_b, m), "c": ape(o["base"][test], m),
             "d": ape(analytic_d, m)}
        for k, v in e.items():
            pooled[k].append(v)
        res.append({"card": card, "n": len(test), **{k: float(np.median(v)) for k, v in e.items()}})
    return res, {k: np.concatenate(v) for k, v in pooled.items()}


def show_seeds(d, frame, fold_catalog: dict, target: str, seeds: list[int], res0: list[dict], pooled0) -> None:
    """b-a (learned, refitted minus all-card constants) per LightGBM seed, and the mean over seeds."""
    runs = [(res0, pooled0)] + [compare(d, frame, fold_catalog, target, s) for s in seeds[1:]]
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
    from recommender.costmodel import train as T

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=list(T.HEADLINE), choices=list(T.TARGETS))
    ap.add_argument("--seed", type=int, default=T.DEFAULT_SEED)
    ap.add_argument("--power-fallback", choices=("previous", "defaults"), default="previous",
                    help="power floor/slope of an engine left with too few rows: its all-card values "
                         "(default) or analytic.PARAMS' defaults")
    ap.add_argument("--seeds", type=int, default=1,
                    help="also repeat with seeds seed .. seed+K-1 and print b-a per seed and its mean (LightGBM's "
                         "seed alone moves a card's median APE by several points)")
    ns = ap.parse_args()
    t0 = time.perf_counter()
    data, catalog = T.load_training_data()
    frame = data.frame
    d = T.design(frame, catalog)
    tools = ToolRows(catalog)
    print(f"training rows: {len(frame)}; seed {ns.seed}; power fallback: {ns.power_fallback}; "
          f"load {time.perf_counter() - t0:.1f} s")

    t1 = time.perf_counter()
    shipped = {e.id: {k: (e.analytic or {}).get(k) for k in DIGITS} for e in catalog.engines
               if e.id in tools.feo.ENGINES}
    _, all_fit, all_notes = tools.refit(catalog, set(), ns.power_fallback)
    mismatch = [f"{e}.{k}: engines.yaml {shipped[e][k]}, refit {all_fit[e].get(k)}" for e in shipped for k in DIGITS
                if shipped[e][k] is not None and all_fit[e].get(k) is not None
                and abs(float(shipped[e][k]) - all_fit[e][k]) > 1e-9]
    folds, fold_catalog = {}, {}
    for g in sorted(set(d.gpu_group)):
        fold_catalog[g], fit, notes = tools.refit(catalog, set(g.split("+")), ns.power_fallback)
        folds[g] = (fit, notes)
    refit_s = time.perf_counter() - t1
    show_constants(all_fit, folds, shipped)
    if mismatch or all_notes:
        print("\nWARNING: the all-card refit differs from engines.yaml (is it stale?): " + "; ".join(mismatch + all_notes))
    else:
        print("\nThe all-card refit equals engines.yaml (the tools reproduce it), so any difference below comes "
              "from the held-out card's rows alone.")
    print(f"(constants refitted for {len(folds)} cards in {refit_s:.1f} s)")

    for target in ns.targets:
        t2 = time.perf_counter()
        res, pooled = compare(d, frame, fold_catalog, target, ns.seed)
        show_target(target, res, pooled, time.perf_counter() - t2)
        if ns.seeds > 1:
            show_seeds(d, frame, fold_catalog, target, [ns.seed + i for i in range(ns.seeds)], res, pooled)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
