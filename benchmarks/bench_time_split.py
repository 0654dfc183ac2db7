"""Time-split backtest of the cost model: train on the records measured up to a cut-off, score the rest.

    python benchmarks/bench_time_split.py --cutoff 2026-11-27T06:10:00+00:00 [--cutoff ...] [--csv DIR] [--seed S]

The prospective check (`recommender.costmodel.prospective`) scores the one artifact that was served; this
replays it for any cut-off and for the code in this checkout, so two modelling choices can be compared on
the cells the campaign measured next (other methods, engines, workloads), which cross-validation's random
and grouped folds do not imitate. Per cut-off, in a temporary copy of `datasets/`:

1. every measurement store keeps only its records created at or before the cut-off (undated: dropped);
2. the catalogue constants fitted on our records are refitted on those records, with this checkout's
   tools in the README's order: `fit_engine_overhead.py` (engines.yaml: efficiency, overhead),
   `fit_power_model.py` (engines.yaml: power floor and slope), `fit_prefill_model.py` (engines.yaml: the
   prefill's efficiency and overhead) and `fit_method_overhead.py` (method_overhead.csv: decode overheads,
   prefill time and energy ratios);
3. `train-cost-model --no-cv` trains an artifact on them (public rows included, as shipped; `--seed`: the
   trainer's seed, default its own);
4. `prospective_frame` scores that artifact on the records created after the cut-off, read from the
   full stores, and prints `summarize` of it (median and p90 absolute % error of p50, the analytic
   model's median, p10-p90 coverage per target).

Nothing in the repository is written. `--csv DIR` keeps each cut-off's per-record frame.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "datasets"
#: the catalogue tools in the order each reads the ones before it (README "Training the cost model"): the power fit
#: uses the engine constants' step times, the methods' prefill ratios the prefill and power constants
TOOLS = ("fit_engine_overhead.py", "fit_power_model.py", "fit_prefill_model.py", "fit_method_overhead.py")


def _created(line: str) -> datetime | None:
    from recommender.costmodel.prospective import _time

    try:
        return _time(json.loads(line).get("created_at"))
    except (ValueError, AttributeError):
        return None


def truncated_copy(dest: Path, cutoff: datetime) -> dict[str, int]:
    """Copy datasets/ to dest, every measurement store cut to the records created at or before `cutoff`
    (rejected/ and raw/ are left out). Returns records kept per store."""
    from recommender.costmodel.learned import measurement_files_in

    shutil.copytree(DATASETS, dest, ignore=shutil.ignore_patterns("raw", "rejected"))
    kept = {}
    for src in measurement_files_in(DATASETS / "measurements"):
        out = dest / src.relative_to(DATASETS)
        lines = [ln for ln in src.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and (t := _created(ln)) is not None and t <= cutoff]
        out.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        kept[str(src.relative_to(DATASETS / "measurements"))] = len(lines)
    return kept


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run a step; on failure raise with its stderr (the tools and the trainer say what went wrong there)."""
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res


def train_on_cutoff(tmp: Path, cut: datetime, seed: int | None = None, cv: bool = False) -> tuple[dict, dict, Path]:
    """In `tmp`: datasets/ cut to the records created at or before `cut` (`truncated_copy`), the catalogue tools
    refitted on them (TOOLS) and an artifact trained (`cv`: with cross-validation, which the conformal offsets
    need; `seed`: the trainer's, None its default). Returns (records kept per store, the environment that points
    the code at the copy, the artifact folder)."""
    data = tmp / "repo" / "datasets"  # the tools find the catalogue at <their folder>/../../..
    kept = truncated_copy(data, cut)
    env = {**os.environ, "RECOMMENDER_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    for tool in TOOLS:
        shutil.copy(REPO / "datasets/catalog/tools" / tool, data / "catalog/tools" / tool)
        _run([sys.executable, str(data / "catalog/tools" / tool)], env)
    art = tmp / "models"
    seed_args = [] if seed is None else ["--seed", str(seed)]
    _run([sys.executable, "-m", "recommender.costmodel.train", *([] if cv else ["--no-cv"]), "--out", str(art),
          *seed_args], env)
    return kept, env, art


def score_after_cutoff(cutoff: str, code: str, seed: int | None = None, cv: bool = False,
                       args: tuple[str, ...] = ()) -> tuple[dict[str, int], dict]:
    """`train_on_cutoff` in a temporary folder, then `code` (a Python script printing one JSON object) run in the
    copy's environment with argv [artifact folder, `cutoff`, *`args`, *every full measurement store], so it can
    score the records created after the cut-off. Returns (records kept per store, the parsed JSON)."""
    from recommender.costmodel.learned import measurement_files_in
    from recommender.costmodel.prospective import _time

    with tempfile.TemporaryDirectory() as tmp:
        kept, env, art = train_on_cutoff(Path(tmp), _time(cutoff), seed, cv)
        full = [str(p) for p in measurement_files_in(DATASETS / "measurements")]
        res = _run([sys.executable, "-c", code, str(art), cutoff, *args, *full], env)
    return kept, json.loads(res.stdout)


def backtest(cutoff: str, csv_dir: Path | None = None, seed: int | None = None) -> dict:
    """Train on the records up to `cutoff` and score the later ones (module docstring); `seed` the trainer's
    (None: its default)."""
    from recommender.costmodel.prospective import _time

    code = ("import json, sys\n"
            "from pathlib import Path\n"
            "from recommender.costmodel.prospective import prospective_frame, summarize\n"
            "frame, info = prospective_frame(Path(sys.argv[1]), [Path(p) for p in sys.argv[4:]], sys.argv[2])\n"
            "if sys.argv[3]: frame.to_csv(sys.argv[3], index=False, float_format='%.6g')\n"
            "print(json.dumps({**info, 'targets': summarize(frame)}))\n")
    out_csv = str(csv_dir / f"time-split-{_time(cutoff):%Y%m%dT%H%M}.csv") if csv_dir else ""
    kept, result = score_after_cutoff(cutoff, code, seed, args=(out_csv,))
    return {"cutoff": cutoff, "train_records": kept, **result}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoff", action="append", required=True, help="ISO time (repeatable)")
    ap.add_argument("--csv", type=Path, default=None, help="folder for each cut-off's per-record frame")
    ap.add_argument("--seed", type=int, default=None, help="the trainer's seed (default: its own)")
    args = ap.parse_args()
    if args.csv:
        args.csv.mkdir(parents=True, exist_ok=True)
    for c in args.cutoff:
        r = backtest(c, args.csv, args.seed)
        print(f"cut-off {r['cutoff']}: trained on {sum(r['train_records'].values())} records "
              f"({', '.join(f'{k} {v}' for k, v in r['train_records'].items())}); scored {r['rows']} later records")
        for t, s in r["targets"].items():
            ana = s["analytic_median_ape_pct"]
            print(f"  {t:20s} median APE {s['median_ape_pct']:5.1f} %  p90 {s['p90_ape_pct']:6.1f} %  "
                  f"analytic {ana if ana is None else round(ana, 1)} %  coverage {s['coverage_p10_p90']:.2f}  "
                  f"(n={s['rows']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
