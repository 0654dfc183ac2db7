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
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
for _p in (REPO, Path(__file__).resolve().parent):  # run as a script from anywhere in the repo
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import fit_engine_overhead as feo  # noqa: E402  (reads our records and engines.yaml the same way)

FIT_MARKER = feo.POWER_FIT_MARKER  # the sentence this script writes into engines.yaml (the other tool knows it)
MIN_ROWS = 20


@dataclass
class PowerFit:
    engine: str
    n: int
    gpus: list[str]
    floor: float
    slope: float
    median_ape_pct: float  # of the fitted power
    p80_factor: float
    default_median_ape_pct: float  # the defaults (floor 0, slope PARAMS) on the same rows
    default_p80_factor: float


def power_rows(catalog, files: list[Path]) -> dict[str, dict[str, list]]:
    """Per engine: the float-weight ok records (stable or not) with a measured decode power (lists of fields)."""
    out: dict[str, dict[str, list]] = {}
    for r, _ in feo.ok_records(files):
        if r.get("engine") not in feo.OWN_ENGINES or r.get("quant") not in feo.FLOAT_QUANTS:
            continue
        if r.get("measurement_scope") not in (None, "gpu-counter"):
            continue
        power = feo._float(r.get("decode_avg_power_w"))
        gpu = catalog.gpus.find(r.get("gpu_id") or "") or catalog.gpus.find(r.get("gpu_name") or "")
        if gpu is None or catalog.models.find(str(r.get("model"))) is None or not power > 0:
            continue
        d = out.setdefault(r["engine"], {k: [] for k in ("gpu", "model", "quant", "batch", "prompt", "output",
                                                          "power")})
        for k, v in (("gpu", gpu.id), ("model", r["model"]), ("quant", r["quant"]),
                     ("batch", float(r["batch_size"])), ("prompt", float(r["prompt_tokens"])),
                     ("output", float(r["output_tokens"])), ("power", power)):
            d[k].append(v)
    return out


def utilisation(catalog, engine: str, rows: dict[str, list]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, idle W, TDP W) per row, as `analytic.estimate` computes them with the catalogue's engine constants."""
    from recommender.candidates import Candidates
    from recommender.costmodel import analytic
    from recommender.costmodel.features import physics

    n = len(rows["power"])
    cands = Candidates.from_ids(catalog, rows["gpu"], rows["model"], rows["quant"], [engine] * n, rows["batch"],
                                rows["prompt"], rows["output"])
    ph = physics(cands, np.full(n, np.nan))
    est = analytic.estimate(ph, cands)
    u = np.maximum(ph.t_mem_step, ph.t_comp_step) / est.t_step
    tdp = cands.col("gpu_tdp_w")
    return u, analytic.PARAMS["idle_fraction_of_tdp"] * tdp, tdp


def _errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return (float(np.median(np.abs(pred - y) / y * 100.0)),
            float(np.exp(np.percentile(np.abs(np.log(pred / y)), 80))))


def fit_engine(catalog, engine: str, rows: dict[str, list]) -> PowerFit:
    from recommender.costmodel import analytic

    u, idle, tdp = utilisation(catalog, engine, rows)
    y = np.asarray(rows["power"], dtype=np.float64)
    span = tdp - idle
    ok = np.isfinite(u) & np.isfinite(span) & (span > 0)
    u, idle, span, y = u[ok], idle[ok], span[ok], y[ok]
    A = np.stack([span / y, span * u / y], axis=1)  # (idle + span (floor + slope u) - y) / y
    (floor, slope), *_ = np.linalg.lstsq(A, 1.0 - idle / y, rcond=None)
    if not 0.0 <= floor <= 1.0:  # not physical: fix the floor at the nearer bound and refit the slope alone
        floor = float(np.clip(floor, 0.0, 1.0))
        slope = float(np.linalg.lstsq(A[:, 1:], 1.0 - idle / y - A[:, 0] * floor, rcond=None)[0][0])
    pred = idle + span * np.minimum(1.0, floor + slope * u)
    default = idle + span * np.minimum(1.0, analytic.PARAMS["power_floor"] + analytic.PARAMS["power_slope"] * u)
    med, p80 = _errors(pred, y)
    dmed, dp80 = _errors(default, y)
    gpus = sorted({g for g, k in zip(rows["gpu"], ok, strict=True) if k})
    return PowerFit(engine, int(ok.sum()), gpus, floor, float(slope), med, p80, dmed, dp80)


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the fit, do not write engines.yaml")
    args = ap.parse_args(argv)
    fits = fit_all()
    print(f"{'engine':13s} {'rows':>4s} {'floor':>6s} {'slope':>6s} {'median err %':>12s} {'p80':>5s}   defaults: "
          "median err %, p80")
    for f in fits:
        print(f"{f.engine:13s} {f.n:4d} {f.floor:6.3f} {f.slope:6.3f} {f.median_ape_pct:12.1f} {f.p80_factor:5.2f}   "
              f"{f.default_median_ape_pct:.1f}, {f.default_p80_factor:.2f}   ({', '.join(f.gpus)})")
    if not args.dry_run:
        path = feo.ENGINES_YAML
        text = path.read_text(encoding="utf-8")
        new = update_yaml(text, fits)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
        else:
            print(f"{path.relative_to(REPO)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
