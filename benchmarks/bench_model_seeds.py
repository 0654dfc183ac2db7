"""Seed spread of the cost model's validation: how far a modelling change must move an error to be more than
the trainer's seed moves it.

    python benchmarks/bench_model_seeds.py --seeds 1 2 3 4 5 --cutoff 2026-11-27T04:20:00+00:00 --json a.json
    python benchmarks/bench_model_seeds.py --compare a.json b.json

Per seed, in a temporary folder (nothing in the repository is written):
- `python -m recommender.costmodel.train --seed S --out TMP` and its cross-validated median absolute % error
  of the p50 per target and split (`metadata.json` `validation`: leave-one-GPU-out, leave-one-architecture-out,
  random; the seed draws LightGBM's column samples and the random split's folds);
- per `--cutoff`, `bench_time_split.backtest` with that seed (train on the records up to the cut-off, score
  the later ones).
It prints, per target and split, the mean and standard deviation over the seeds, and with `--json` writes
them with every seed's value.

`--compare A B` reads two such files (two checkouts run with the same seeds: a worktree per arm) and prints,
per target and split, B - A in percentage points: over the seeds both ran, the mean of the per-seed
differences and its standard error (sd / sqrt(n)); a `*` marks a mean difference beyond two standard errors.
Session s17 ran it for a batch-dependent method overhead, which it then did not ship
(docs/experiments/method-overhead-batch-slope-s17.md).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMES = ("logo", "lomo", "random")
TARGETS = ("energy_per_token_j", "tokens_per_s", "ttft_ms", "prefill_energy_j")


def cv_errors(seed: int) -> dict[str, float]:
    """{'<target> <scheme>': median APE %} of one cross-validated training at `seed` (this checkout's code
    and data)."""
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, "-m", "recommender.costmodel.train", "--seed", str(seed),
                              "--out", tmp], cwd=REPO, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"training at seed {seed} failed:\n{res.stderr[-3000:]}")
        val = json.loads((Path(tmp) / "metadata.json").read_text(encoding="utf-8"))["validation"]
    return {f"{t} {s}": val[t][s]["median_ape_pct"] for t in TARGETS if t in val for s in SCHEMES if s in val[t]}


def time_split_errors(seed: int, cutoffs: list[str]) -> dict[str, float]:
    """{'<target> after <cut-off>': median APE %} of `bench_time_split.backtest` at `seed`."""
    if str(REPO / "benchmarks") not in sys.path:  # once per process, not once per seed
        sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_time_split as ts

    out = {}
    for c in cutoffs:
        r = ts.backtest(c, None, seed)
        out.update({f"{t} after {c}": s["median_ape_pct"] for t, s in r["targets"].items() if t in TARGETS})
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return m, sd


def run(seeds: list[int], cutoffs: list[str]) -> dict:
    per_seed = {}
    for s in seeds:
        per_seed[str(s)] = {**cv_errors(s), **time_split_errors(s, cutoffs)}
        print(f"seed {s} done", file=sys.stderr, flush=True)
    keys = list(next(iter(per_seed.values())))
    summary = {k: dict(zip(("mean", "sd"), _mean_sd([v[k] for v in per_seed.values()]), strict=True)) for k in keys}
    return {"seeds": seeds, "cutoffs": cutoffs, "per_seed": per_seed, "summary": summary}


def compare(a: dict, b: dict) -> list[tuple[str, float, float, int]]:
    """(key, mean of B - A over the shared seeds, its standard error, seeds) per key both hold."""
    seeds = [s for s in a["per_seed"] if s in b["per_seed"]]
    rows = []
    for k in a["summary"]:
        if k not in b["summary"]:
            continue
        diffs = [b["per_seed"][s][k] - a["per_seed"][s][k] for s in seeds]
        m, sd = _mean_sd(diffs)
        rows.append((k, m, sd / math.sqrt(len(diffs)), len(diffs)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--cutoff", action="append", default=[], help="ISO time for a time split (repeatable)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-seed values and summary here")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="print B - A of two --json files")
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        for k, m, se, n in compare(a, b):
            flag = "*" if abs(m) > 2 * se else " "
            print(f"{k:60s} {m:+6.2f} pp  (se {se:.2f}, {n} seeds) {flag}")
        return 0
    result = run(args.seeds, args.cutoff)
    for k, v in result["summary"].items():
        print(f"{k:60s} {v['mean']:6.2f} %  (sd {v['sd']:.2f} over {len(args.seeds)} seeds)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
