"""Fit each engine's decode power model from our records (engines.yaml `analytic.power_floor`, `power_slope`).

    python datasets/catalog/tools/fit_power_model.py            # print the fit and write engines.yaml
    python datasets/catalog/tools/fit_power_model.py --dry-run  # print only

The analytic model (`recommender/costmodel/analytic.py`) predicts a decode step's GPU power as

    P = P_idle + (TDP - P_idle) x min(1, floor + slope x u)      u = roofline time / predicted step time

with P_idle = `PARAMS["idle_fraction_of_tdp"]` x TDP. Its defaults (floor 0, slope 1.015) come from one H100
cell; a launch-bound step (small u) still draws well above idle, which a zero floor misses. This script fits
floor and slope per engine by least squares in relative terms (residual (P_fit - P) / P) on our records'
measured decode power (`decode_avg_power_w`): ok records of the engine in 16-bit or fp32 (stable or not:
a CV above 5 % or a power-cap throttle leaves the mean power a measurement of what the card drew) (their step time has no method overhead, so u depends on the engine's fitted efficiency and overhead
alone: run `fit_engine_overhead.py` first), every batch size and workload, with u computed exactly as the
analytic model computes it. An engine with fewer than MIN_ROWS such records keeps the defaults. Public rows
are not used: they meter prefill and decode together.

Writing: `power_floor` and `power_slope` are set (or added after `per_token_overhead_ms`) in each fitted
engine's `analytic` block, and one sentence that starts with FIT_MARKER is appended to its `analytic.source`
(a previous one is replaced). Every other line of the file is kept.

The reading and fitting live in recommender/costmodel/power_model.py, which the trainer also uses to refit
floor and slope inside every cross-validation fold (recommender/costmodel/engine_constants.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
for _p in (REPO, Path(__file__).resolve().parent):  # run as a script from anywhere in the repo
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import fit_engine_overhead as feo  # noqa: E402  (reads our records and engines.yaml the same way)

from recommender.costmodel.power_model import (  # noqa: E402,F401  (the fitting core; re-exported for tests)
    MIN_ROWS,
    PowerFit,
    fit_engine,
    power_rows,
    utilisation,
)
from recommender.costmodel.power_model import errors as _errors  # noqa: E402,F401

FIT_MARKER = feo.POWER_FIT_MARKER  # the sentence this script writes into engines.yaml (the other tool knows it)


def fit_all(catalog=None) -> list[PowerFit]:
    catalog = catalog or feo._catalog()
    rows = power_rows(catalog, feo.measurement_files())
    return [fit_engine(catalog, e, r) for e, r in sorted(rows.items()) if len(r["power"]) >= MIN_ROWS]


def describe(f: PowerFit) -> str:
    return (f"{FIT_MARKER}: decode power = idle + (TDP - idle) x min(1, floor + slope x u) fitted by relative "
            f"least squares to {f.n} ok 16-bit/fp32 records of ours (every batch size) on {', '.join(f.gpus)}: "
            f"floor {f.floor:.3f}, slope {f.slope:.3f}; power error median {f.median_ape_pct:.1f} %, "
            f"80th-percentile factor {f.p80_factor:.2f} (the defaults: {f.default_median_ape_pct:.1f} %, "
            f"{f.default_p80_factor:.2f}).")


def update_yaml(text: str, fits: list[PowerFit]) -> str:
    """engines.yaml with each fitted engine's power_floor / power_slope and description; every other line kept."""
    def edit(f: PowerFit, line: str) -> list[str]:
        stripped = line.strip()
        if stripped.startswith(("power_floor:", "power_slope:")):
            return []  # rewritten after per_token_overhead_ms
        if stripped.startswith("per_token_overhead_ms:"):
            indent = line[: len(line) - len(line.lstrip())]
            return [line, f"{indent}power_floor: {f.floor:.3f}", f"{indent}power_slope: {f.slope:.3f}"]
        return [line]

    return feo.rewrite_analytic(text, {f.engine: f for f in fits}, edit, FIT_MARKER, describe)


def main(argv: list[str] | None = None) -> int:
    return feo.run_fit_tool(
        __doc__, fit_all,
        f"{'engine':13s} {'rows':>4s} {'floor':>6s} {'slope':>6s} {'median err %':>12s} {'p80':>5s}   defaults: "
        "median err %, p80",
        lambda f: (f"{f.engine:13s} {f.n:4d} {f.floor:6.3f} {f.slope:6.3f} {f.median_ape_pct:12.1f} "
                   f"{f.p80_factor:5.2f}   {f.default_median_ape_pct:.1f}, {f.default_p80_factor:.2f}   "
                   f"({', '.join(f.gpus)})"),
        update_yaml, argv)


if __name__ == "__main__":
    sys.exit(main())
