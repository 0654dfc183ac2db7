"""Ranking the whole catalogue in-process: every GPU x every model (`--model all`) x every quantization
x every engine x 4 batch sizes, with the default cost model.

    python benchmarks/bench_rank.py [--runs 15] [--model-dir DIR]

Prints the candidate count and the median time of: building + excluding + predicting + ranking
(`rank.recommend`: p50 of the targets the priority needs, for every fitting row), and of turning the top
10 into dicts (which computes their p10/p50/p90 of every target: `Result.complete`). Catalogue and
cost-model loading are timed once, separately (they are cached per process). Budget (issue): <= 200 ms
for the ranking. `--all` predicts every quantile of every row at once (`full=True`).
"""

from __future__ import annotations

import argparse
import statistics
import time

from recommender import rank, render
from recommender.catalog import load_catalog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--model-dir", default=None)
    ns = ap.parse_args()

    t = time.perf_counter()
    cat = load_catalog()
    t_cat = time.perf_counter() - t
    t = time.perf_counter()
    cm = rank._load_cost_model(ns.model_dir)
    t_cm = time.perf_counter() - t
    query = rank.Query(models=("all",), batch_sizes=rank.DEFAULT_BATCH_SIZES)

    rank.recommend(query, cat, cm)  # warm caches (catalogue column arrays)
    t_rank, t_rows, t_all = [], [], []
    for _ in range(ns.runs):
        t = time.perf_counter()
        res = rank.recommend(query, cat, cm)
        t_rank.append(time.perf_counter() - t)
        t = time.perf_counter()
        render.rows(res, 10, False)
        t_rows.append(time.perf_counter() - t)
    for _ in range(max(3, ns.runs // 3)):
        t = time.perf_counter()
        rank.recommend(query, cat, cm, predict_excluded=True)
        t_all.append(time.perf_counter() - t)

    q = res.query
    print(f"catalogue: {len(q['gpus'])} GPUs x {len(q['models'])} models x {len(q['quants'])} quants x "
          f"{len(q['engines'])} engines x {len(q['batch_sizes'])} batch sizes = {q['candidates_total']:,} "
          f"candidates, {q['candidates_ranked']:,} ranked; cost model {q['cost_model']}")
    print(f"load catalogue (once): {t_cat * 1e3:.1f} ms; load cost model (once): {t_cm * 1e3:.1f} ms")
    print(f"rank whole catalogue: median {statistics.median(t_rank) * 1e3:.1f} ms "
          f"(min {min(t_rank) * 1e3:.1f}, max {max(t_rank) * 1e3:.1f}; {ns.runs} runs)")
    print(f"same, predicting excluded rows too (--all): median {statistics.median(t_all) * 1e3:.1f} ms")
    print(f"top 10 -> dicts: median {statistics.median(t_rows) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
