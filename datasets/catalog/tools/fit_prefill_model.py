"""Fit each engine's prefill constants from our records (engines.yaml `analytic.prefill_efficiency`,
`prefill_overhead_ms`).

    python datasets/catalog/tools/fit_prefill_model.py            # print the fit and write engines.yaml
    python datasets/catalog/tools/fit_prefill_model.py --dry-run  # print only

The analytic model times a prefill as roofline / efficiency + overhead. Without these keys it uses the decode
step's efficiency and overhead, fitted on bandwidth-bound decode steps. This script fits the two per engine on
our ok 16-bit/fp32 records' measured TTFT, as recommender/costmodel/prefill_model.py describes (the trainer refits them inside every cross-validation fold
with the same code, recommender/costmodel/engine_constants.py). Run it after fit_engine_overhead.py and
fit_power_model.py (its "before" figures use their constants) and before fit_method_overhead.py (whose
prefill ratios are relative to the 16-bit prefill this fit models). An engine with fewer than MIN_ROWS such
records is not written. Public rows are not used: they time prefill and decode together.

Writing: the two keys are set (or added after `power_slope`) in each fitted engine's `analytic` block, and
one sentence that starts with FIT_MARKER is appended to its `analytic.source` (a previous one is replaced).
Every other line of the file is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
for _p in (REPO, Path(__file__).resolve().parent):  # run as a script from anywhere in the repo
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import fit_engine_overhead as feo  # noqa: E402  (reads our records and engines.yaml the same way)

from recommender.costmodel.engine_constants import DIGITS, PREFILL  # noqa: E402
from recommender.costmodel.prefill_model import MIN_ROWS, PrefillFit, fit_engine, prefill_rows  # noqa: E402

FIT_MARKER = feo.PREFILL_FIT_MARKER
#: the keys written, in order, with the fit's field and the decimals the trainer's refit rounds them to
KEYS = tuple((key, attr, DIGITS[key]) for key, attr in PREFILL)


def fit_all(catalog=None) -> list[PrefillFit]:
    catalog = catalog or feo._catalog()
    rows = prefill_rows(catalog, feo.measurement_files())
    return [fit_engine(catalog, e, r) for e, r in sorted(rows.items()) if len(r["ttft_s"]) >= MIN_ROWS]


def describe(f: PrefillFit) -> str:
    return (f"{FIT_MARKER}: t_prefill = roofline / efficiency + overhead fitted by relative least squares to "
            f"{f.n} ok 16-bit/fp32 records of ours (measured TTFT) on {', '.join(f.gpus)}: efficiency "
            f"{f.efficiency:.3f}, overhead {f.overhead_ms:.2f} ms per prefill; TTFT error median "
            f"{f.time_median_ape_pct:.1f} %, 80th-percentile factor {f.time_p80_factor:.2f} (the decode step's "
            f"efficiency and overhead: {f.default_time_median_ape_pct:.1f} %).")


def update_yaml(text: str, fits: list[PrefillFit]) -> str:
    """engines.yaml with each fitted engine's prefill keys (after `power_slope`) and description; every other
    line kept. Refused for an engine whose analytic block has no `power_slope` (fit_power_model.py first)."""
    keys = tuple(k for k, _, _ in KEYS)

    def edit(f: PrefillFit, line: str) -> list[str]:
        stripped = line.strip()
        if stripped.startswith(tuple(f"{k}:" for k in keys)):
            return []  # rewritten after power_slope
        if stripped.startswith("power_slope:"):
            indent = line[: len(line) - len(line.lstrip())]
            return [line, *(f"{indent}{k}: {getattr(f, attr):.{d}f}" for k, attr, d in KEYS)]
        return [line]

    new = feo.rewrite_analytic(text, {f.engine: f for f in fits}, edit, FIT_MARKER, describe)
    import yaml

    written = {e["id"]: e.get("analytic") or {} for e in yaml.safe_load(new)}
    missing = [f.engine for f in fits if not set(keys) <= set(written.get(f.engine, {}))]
    if missing:
        raise SystemExit(f"fit_prefill_model: no power_slope in the analytic block of {', '.join(missing)}; "
                         "run datasets/catalog/tools/fit_power_model.py first")
    return new


def main(argv: list[str] | None = None) -> int:
    return feo.run_fit_tool(
        __doc__, fit_all,
        f"{'engine':13s} {'rows':>4s} {'eff':>6s} {'ovh ms':>7s} {'TTFT err %':>10s} {'p80':>5s}   the decode "
        "constants: TTFT err %",
        lambda f: (f"{f.engine:13s} {f.n:4d} {f.efficiency:6.3f} {f.overhead_ms:7.2f} {f.time_median_ape_pct:10.1f} "
                   f"{f.time_p80_factor:5.2f}   {f.default_time_median_ape_pct:.1f}   ({', '.join(f.gpus)})"),
        update_yaml, argv)


if __name__ == "__main__":
    sys.exit(main())
