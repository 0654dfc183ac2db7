"""How often the memory fit check's estimate falls below what a measured run needed, and by how much.

    python benchmarks/bench_memory_fit.py [--against REV]

`recommend` marks a candidate as fitting when `recommender.memory.estimate`'s total (components + the fitted
residual) is within the card's usable memory. A run needed at least its allocated peak
(`peak_mem_allocated_gb`, what tensors held; the caching allocator returns its other cached blocks before
failing) plus the memory a process holds outside the allocator (`PARAMS["runtime_overhead_gb"]`, measured as
NVML's peak minus the reserved peak). Over our ok records on the engines the residual applies to, this prints per
engine and prompt length: the share of records whose estimate lies below that need, the largest shortfall (GiB),
and the median |log(NVML peak / estimate)|.

`--against REV`: the same for `recommender/memory.py` and `datasets/catalog/memory_residual.csv` as they were at a
git revision (read with `git show`), beside this checkout's. Nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from recommender.candidates import Candidates  # noqa: E402
from recommender.costmodel import train as T  # noqa: E402
from recommender.costmodel.learned import measurement_files_in  # noqa: E402
from recommender.paths import data_root  # noqa: E402

GIB_PER_GB = 1e9 / 2**30


def allocated_gib(frame) -> np.ndarray:
    """Each training-frame row's `peak_mem_allocated_gb` (GB in the records) in GiB, NaN where absent."""
    by_id = {}
    for path in measurement_files_in(data_root() / "measurements"):
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by_id[r.get("record_id")] = r.get("peak_mem_allocated_gb")
    ids = [str(x).split(":", 1)[-1] for x in frame["row_id"]]
    return np.array([np.nan if by_id.get(i) is None else by_id[i] * GIB_PER_GB for i in ids], dtype=np.float64)


def _module_at(rev: str, path: str, name: str):
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location(name, tmp)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _residual_rows_at(rev: str) -> list[dict]:
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:datasets/catalog/memory_residual.csv"],
                         check=True, capture_output=True, text=True).stdout
    return list(csv.DictReader(io.StringIO(src)))


def report(label: str, frame, cands, total: np.ndarray, need: np.ndarray, nvml: np.ndarray) -> None:
    print(f"{label}:")
    for e in sorted(set(frame["engine"])):
        for pt in sorted(set(frame["prompt_tokens"])):
            s = (frame["engine"].to_numpy() == e) & (frame["prompt_tokens"].to_numpy() == pt) & np.isfinite(need)
            if not s.any():
                continue
            short = need[s] - total[s]
            print(f"  {e:16s} prompt {int(pt):5d}  n={int(s.sum()):4d}  below the need {np.mean(short > 0):5.1%}  "
                  f"(by > 1 GiB {np.mean(short > 1):5.1%})  largest shortfall {max(short.max(), 0):5.2f} GiB  "
                  f"median |log(NVML / estimate)| {np.median(np.abs(np.log(nvml[s] / total[s]))):.3f}")
    s = np.isfinite(need)
    short = need[s] - total[s]
    print(f"  all: n={int(s.sum())}  below the need {np.mean(short > 0):.1%} (by > 1 GiB {np.mean(short > 1):.1%}); "
          f"largest shortfall {max(short.max(), 0):.2f} GiB; median |log(NVML / estimate)| "
          f"{np.median(np.abs(np.log(nvml[s] / total[s]))):.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default=None, help="a git revision to compare with (e.g. HEAD)")
    args = ap.parse_args()
    from recommender import memory as M
    from recommender.costmodel.memory_residual import applies_to

    data, catalog = T.load_training_data()
    f = data.frame
    engines = {e.id: e for e in catalog.engines}
    keep = ((f["origin"] == "ours") & np.isfinite(f["memory_gb"].to_numpy(float))
            & f["engine"].map(lambda e: applies_to(engines[e]) if e in engines else False)).to_numpy()
    f = f[keep].reset_index(drop=True)
    cands = Candidates.from_ids(catalog, f["gpu_id"], f["model"], f["quant"], f["engine"],
                                f["batch_size"].to_numpy(float), f["prompt_tokens"].to_numpy(float),
                                f["output_tokens"].to_numpy(float))
    need = allocated_gib(f) + M.PARAMS["runtime_overhead_gb"]
    nvml = f["memory_gb"].to_numpy(float)
    if args.against:
        old = _module_at(args.against, "recommender/memory.py", "memory_at_rev")
        rows = catalog.memory_residual
        catalog.memory_residual = _residual_rows_at(args.against)
        try:
            report(f"{args.against}", f, cands, old.estimate(cands).total_gb, need, nvml)
        finally:
            catalog.memory_residual = rows
    report("this checkout", f, cands, M.estimate(cands).total_gb, need, nvml)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
