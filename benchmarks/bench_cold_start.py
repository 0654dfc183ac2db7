"""Cold start of the whole `recommend` process (hyperfine-style: warm-up runs, then N timed runs).

    python benchmarks/bench_cold_start.py [--runs 20] [--warmup 3] [-- ARGS...]

Default command: `recommend --gpu rtx4060ti --priority energy` (the installed console script when on
PATH, else `python -m recommender.cli`), output to /dev/null. Prints median, mean, min and max wall time.
Budget (issue): median <= 1.0 s on a 2-core machine, goal 0.3 s. `--importtime` also prints the slowest
imports of one run (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

DEFAULT_ARGS = ["--gpu", "rtx4060ti", "--priority", "energy"]


def command(args: list[str], module: bool) -> list[str]:
    script = shutil.which("recommend")
    if script and not module:
        return [script, *args]
    return [sys.executable, "-m", "recommender.cli", *args]


def time_runs(cmd: list[str], runs: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        if out.returncode != 0:
            raise SystemExit(f"command failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
        if i >= warmup:
            times.append(dt)
    return times


def importtime(args: list[str], top: int = 15) -> None:
    code = f"import sys; from recommender.cli import main; sys.argv[0] = 'recommend'; main({args!r})"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    rows = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = line.split("|")
            try:
                rows.append((int(cum), name.rstrip()))
            except ValueError:
                continue
    print("slowest imports (cumulative, us) of one run:")
    for cum, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cum:>9,d}  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--module", action="store_true", help="run `python -m recommender.cli` even if installed")
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("args", nargs="*", help="arguments for recommend (after --)")
    ns = ap.parse_args()
    args = ns.args or DEFAULT_ARGS
    cmd = command(args, ns.module)
    times = time_runs(cmd, ns.runs, ns.warmup)
    print(f"command: {' '.join(cmd)}")
    print(f"cpus: {os.cpu_count()}  runs: {ns.runs}  warmup: {ns.warmup}")
    print(f"median {statistics.median(times):.3f} s  mean {statistics.mean(times):.3f} s  "
          f"min {min(times):.3f} s  max {max(times):.3f} s")
    if ns.importtime:
        importtime(args)


if __name__ == "__main__":
    main()
