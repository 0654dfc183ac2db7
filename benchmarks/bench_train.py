"""Wall time of a full retrain (`train-cost-model`, all CV schemes) into a temporary folder.

    python benchmarks/bench_train.py [--repeats 3] [--no-cv]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-cv", action="store_true")
    args = ap.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"m{i}"
            cmd = [sys.executable, "-m", "recommender.costmodel.train", "--out", str(out)]
            if args.no_cv:
                cmd.append("--no-cv")
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
        meta = json.loads((out / "metadata.json").read_text())
    rows = meta["data"]["rows"]
    learned = [t for t, m in meta["targets"].items() if m["kind"] == "learned"]
    print(f"cpu cores: {os.cpu_count()}; {rows} training rows; learned targets: {', '.join(learned)}")
    print(f"full retrain ({'LOGO only' if args.no_cv else 'LOGO + LOMO + random CV'}), process wall time: "
          f"median {statistics.median(times):.1f} s over {args.repeats} (min {min(times):.1f}, max {max(times):.1f}); "
          f"in-process training {meta['train_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
