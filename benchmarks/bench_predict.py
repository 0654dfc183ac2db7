"""Prediction speed of the cost models (median of repeats, warm process).

    python benchmarks/bench_predict.py [--n 10000] [--repeats 15] [--model-dir models]

Prints ms for: the learned model (ctypes LightGBM) on --n candidates, the analytic model on the same
rows and on 200,000 rows, `measured_lookup` on --n rows, and the cold `import` + first prediction of
the learned model in a fresh process (the part of `recommend`'s start-up the cost model owns).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from recommender.candidates import Candidates
from recommender.catalog import load_catalog
from recommender.costmodel.analytic import AnalyticCostModel
from recommender.costmodel.learned import load_default, measured_lookup


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--model-dir", default=None)
    args = ap.parse_args()
    cat = load_catalog()
    grid = Candidates.grid(cat, cat.gpus.ids(), cat.models.ids(), cat.quants.ids(), cat.engines.ids(),
                           [1, 2, 4, 8, 16, 32, 64], 256, [128, 256])
    rng = np.random.default_rng(0)
    sub = grid.take(np.sort(rng.choice(len(grid), args.n, replace=False)))
    big = grid.take(np.sort(rng.choice(len(grid), min(200_000, len(grid)), replace=False)))
    learned = load_default(args.model_dir)
    analytic = AnalyticCostModel()
    print(f"cpu cores: {os.cpu_count()}, grid {len(grid):,} candidates, cost model {learned.name}")
    print(f"learned  predict {args.n:>7,} candidates: {_median_ms(lambda: learned.predict(sub), args.repeats):8.1f} ms")
    print(f"analytic predict {args.n:>7,} candidates: {_median_ms(lambda: analytic.predict(sub), args.repeats):8.1f} ms")
    print(f"analytic predict {len(big):>7,} candidates: {_median_ms(lambda: analytic.predict(big), 5):8.1f} ms")
    print(f"measured_lookup  {args.n:>7,} candidates: {_median_ms(lambda: measured_lookup(sub), args.repeats):8.1f} ms")
    md = repr(args.model_dir)
    code = ("import time; t0 = time.perf_counter()\n"
            "from recommender.catalog import load_catalog\n"
            "from recommender.candidates import Candidates\n"
            "from recommender.costmodel.learned import load_default\n"
            f"m = load_default({md})\n"
            "c = Candidates.grid(load_catalog(), ['h100-sxm'], ['qwen2.5-7b-instruct'], ['bf16'], ['vllm'], [1], 256, 128)\n"
            "m.predict(c); print((time.perf_counter() - t0) * 1e3)")
    cold = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(5)]
    print(f"cold import + load + first predict (fresh process): {statistics.median(cold):8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
