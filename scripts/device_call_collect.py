"""File what one device call returned: stores over the repository's, set-up files into a raw folder, and the
device tool's reply as the folder's `device-call.json`.

    python scripts/device_call_collect.py REPLY.json --raw-dir datasets/measurements/h200/raw/2026-11-27-s11-a \
        --kind nvidia-h200-x2 [--needs-h200] --command "DEADLINE_S=550 bash scripts/device_run_plan.sh ..." \
        [--timeout-s 600] [--session s11] [--store h200/campaign.jsonl ...]

REPLY.json is the tool's JSON reply to the call, saved as it came (`-` reads it from stdin). Every file the reply
lists under `files` (`files_at`) that is a measurement store (`*.jsonl`) replaces the repository's store of
the same name: the one given with `--store` (path under datasets/measurements/), else the only store of that
name under datasets/measurements/ (refused when none or several match). The other returned files (`doctor.json`,
`grid.log`, `host.txt`, `nvidia-smi.csv`, `pip-versions.txt`, a self-check's files) are copied into `--raw-dir`,
and `device-call.json` is written there: the call as asked (kind, needs_h200, command, timeout) and the reply's
`rc`, `wall_s`, `warm`, `device`, `files_left_out` (what $OUT held that did not come back) and lease, with `grid_wall_s_per_step` read from the output's `grid wall N s`
lines (the last one `grid_wall_s`; null when there is none; one line per scripts/device_run_multi.sh run: one per
plan step while the plan ran its steps one after another, one per call since the steps chain per GPU in one
run, so the list then holds one figure, the call's), or from the returned `grid.log`, into which
scripts/device_run_multi.sh writes the same lines (calls after s12), where it holds at least as many: the reply
keeps only the output's last 12,000 characters, so a long call's first steps can be cut from it, and a reply
may be saved in part (`grid_wall_source` says which). A store is never replaced by a shorter one (a resumable store
only grows), nor by one that lacks a record the repository's holds (by `record_id`: a call that ran on a working tree
without the last call's records, as s28-b did, returns as many records or more but not those): both are refused,
nothing written; merge such a store with `python -m measure.cli merge` instead.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEASUREMENTS = REPO / "datasets" / "measurements"
GRID_WALL = re.compile(r"grid wall (\d+(?:\.\d+)?) s")
IDLE = re.compile(r"workers done after:.*\(idle (\d+) of (\d+) GPU-s")


def grid_walls(output: str) -> list[float]:
    """The `grid wall N s` figures of a call's output, in order (one per scripts/device_run_multi.sh run: per plan
    step that ran a grid before the steps chained per GPU, one per call since)."""
    return [float(m) if "." in m else int(m) for m in GRID_WALL.findall(output or "")]


def idle_gpu_s(output: str) -> list[list[int]]:
    """[idle, total] GPU-seconds of each chained runner run in a call's output or grid.log (its `workers done
    after: ... (idle X of Y GPU-s ...)` line: the GPU time left idle before the last GPU's chain ended)."""
    return [[int(a), int(b)] for a, b in IDLE.findall(output or "")]


def _output_or_log(parse, output: str, grid_log: str) -> tuple[list, str]:
    """`parse` of the reply's output, or of the returned grid.log where that holds at least as many figures (the
    reply keeps only the output's tail): (figures, 'output_tail' or 'grid.log')."""
    values, from_log = parse(output), parse(grid_log)
    if from_log and len(from_log) >= len(values):
        return from_log, "grid.log"
    return values, "output_tail"


def call_record(reply: dict, *, kind: str, needs_h200: bool, command: str, timeout_s: int,
                session: str | None, grid_log: str = "") -> dict:
    """The `device-call.json` of a call from the tool's reply and what was asked; `grid_log` (the returned
    grid.log's text) gives the grid wall times and idle GPU-seconds where it holds at least as many as the
    reply's output."""
    output = reply.get("output_tail", "")
    walls, source = _output_or_log(grid_walls, output, grid_log)
    idle, _ = _output_or_log(idle_gpu_s, output, grid_log)
    lease = reply.get("lease") or {}
    return {
        "source": (f"the device tool's reply to this call{f' (session {session})' if session else ''}, filed by "
                   "scripts/device_call_collect.py: `wall_s` the command's run time, `grid_wall_s` the wrapper's "
                   "last 'grid wall N s' line (`grid_wall_s_per_step` one per runner run: per plan step that ran a "
                   "grid before the steps chained per GPU, one per call since), `idle_gpu_s` "
                   "[idle, total] GPU-seconds of each chained run (the runner's 'workers done after' line), "
                   "`lease_*` the session's device time held and left after the call"
                   + ("; asked with needs_h200 true" if needs_h200 else "")),
        "kind_asked": kind,
        "needs_h200": needs_h200,
        "command": command,
        "device": reply.get("device"),
        "rc": reply.get("rc"),
        "wall_s": reply.get("wall_s"),
        "grid_wall_s": walls[-1] if walls else None,
        "grid_wall_s_per_step": walls,
        "grid_wall_source": source if walls else None,
        "idle_gpu_s": idle,
        "timeout_s": timeout_s,
        "warm": reply.get("warm"),
        "files_left_out": reply.get("files_left_out") or [],
        "lease_held_s": lease.get("held_s"),
        "lease_budget_left_s": lease.get("budget_left_s"),
    }


def _record_ids(path: Path) -> list:
    """Each record's `record_id` (its line's text where it has none or is not JSON), in file order: one per
    non-empty line, so its length is the store's record count."""
    out = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.strip():
            try:
                rec = json.loads(ln)
            except ValueError:
                rec = None
            out.append(rec["record_id"] if isinstance(rec, dict) and "record_id" in rec else ln.strip())
    return out


def store_target(name: str, stores: list[str], measurements: Path) -> Path:
    """The repository store a returned `name` replaces: the `--store` path with that file name, else the only
    store of that name under `measurements` (rejected/ and raw/ left out)."""
    named = [measurements / s for s in stores if Path(s).name == name]
    if len(named) == 1:
        return named[0]
    if named:
        raise SystemExit(f"collect: --store names {name} twice")
    found = [p for p in measurements.rglob(name) if not {"rejected", "raw"} & set(p.relative_to(measurements).parts)]
    if len(found) != 1:
        where = ", ".join(str(p.relative_to(measurements)) for p in found) or "none"
        raise SystemExit(f"collect: {len(found)} stores named {name} under {measurements} ({where}); "
                         f"name the one it replaces with --store PATH (relative to datasets/measurements)")
    return found[0]


def collect(reply: dict, raw_dir: Path, *, kind: str, needs_h200: bool, command: str, timeout_s: int,
            session: str | None = None, stores: list[str] = (), measurements: Path | None = None) -> dict:
    """Do the filing (see the module docstring; `measurements` default: datasets/measurements); returns
    {"stores": [(target, lines before, after)], "raw": [names copied]}."""
    measurements = MEASUREMENTS if measurements is None else measurements
    files = [Path(f) for f in reply.get("files", [])]
    jsonl = [f for f in files if f.suffix == ".jsonl"]
    plan = []  # (returned store, the repository's, their record ids), each file read once
    for src in jsonl:
        dst = store_target(src.name, list(stores), measurements)
        plan.append((src, dst, _record_ids(src), _record_ids(dst) if dst.exists() else []))
    for src, dst, src_ids, dst_ids in plan:  # check them all before writing anything
        n_src, n_dst = len(src_ids), len(dst_ids)
        if n_src < n_dst:
            raise SystemExit(f"collect: returned {src.name} has {n_src} records, fewer than the "
                             f"{n_dst} of {dst}: not replaced (a resumable store only grows)")
        missing = set(dst_ids) - set(src_ids)
        if missing:
            raise SystemExit(f"collect: returned {src.name} lacks {len(missing)} of the {n_dst} records of {dst} "
                             "(did the call run on a tree without the last call's records?): not replaced; "
                             f"file it as the union: python -m measure.cli merge {dst} {src}")
    done = {"stores": [], "raw": []}
    for src, dst, src_ids, dst_ids in plan:
        shutil.copyfile(src, dst)
        done["stores"].append((str(dst), len(dst_ids), len(src_ids)))
    raw_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.suffix != ".jsonl":
            shutil.copyfile(f, raw_dir / f.name)
            done["raw"].append(f.name)
    log = next((f for f in files if f.name == "grid.log"), None)
    record = call_record(reply, kind=kind, needs_h200=needs_h200, command=command, timeout_s=timeout_s,
                         session=session, grid_log=log.read_text(encoding="utf-8", errors="replace") if log else "")
    (raw_dir / "device-call.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reply", help="the device tool's JSON reply, saved to a file (- for stdin)")
    ap.add_argument("--raw-dir", required=True, type=Path, help="the call's raw folder (created)")
    ap.add_argument("--kind", required=True, help="the kind asked for, e.g. nvidia-h200-x2")
    ap.add_argument("--needs-h200", action="store_true", help="the call passed needs_h200 true")
    ap.add_argument("--command", required=True, help="the command the call ran")
    ap.add_argument("--timeout-s", type=int, default=600, help="the call's timeout_s (default 600)")
    ap.add_argument("--session", help="a session label for the record's source, e.g. s11")
    ap.add_argument("--store", action="append", default=[],
                    help="a store a returned file replaces, relative to datasets/measurements (repeatable)")
    args = ap.parse_args(argv)
    text = sys.stdin.read() if args.reply == "-" else Path(args.reply).read_text(encoding="utf-8")
    try:
        reply = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"collect: the reply is not JSON ({e}); save the tool's reply as it came") from None
    done = collect(reply, args.raw_dir, kind=args.kind, needs_h200=args.needs_h200, command=args.command,
                   timeout_s=args.timeout_s, session=args.session, stores=args.store)
    for dst, before, after in done["stores"]:
        print(f"{dst}: {before} -> {after} records")
    print(f"{args.raw_dir}: {', '.join(done['raw'] + ['device-call.json'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
