"""Move the compiled records that ran under a torchao method's leaked compiler settings to rejected/.

torchao's `quantize_` sets torch inductor's coordinate-descent tuning (and two more settings) for the whole
process and never sets them back; until session s9 the runner did not either, so every compiled cell that ran
after a torchao cell in the same worker process compiled with them (not the campaign's setting; in s8 the
fp16 batch-1 cells among them used 1.32-1.57x the energy of the same machine's compiled bf16). A worker
process is told apart by its records (`measure.worker_processes`): the same GPU unit (`gpu_uuid`) and
`command`, in time order, a gap of more than 15 minutes starting another call. The grid logs (`raw/*/grid.log`) give the same seven records.

    python datasets/measurements/tools/split_inductor_leak.py            # dry run: list them
    python datasets/measurements/tools/split_inductor_leak.py --write    # move them

Moved records leave the store, so the grid measures those cells again (resumable by cell hash).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # run as a script from anywhere in the repo
    sys.path.insert(0, str(ROOT))

from measure.worker_processes import worker_processes  # noqa: E402

CARD = ROOT / "datasets" / "measurements" / "h100"
STORES = [CARD / "campaign.jsonl", CARD / "probe.jsonl", CARD / "repeats.jsonl"]
REJECTED = CARD / "rejected" / "2026-11-27-inductor-leak.jsonl"
NEW_CALL_GAP_S = 900.0


# skip reasons the runner gives after the model group was loaded and quantized (measure/runner.py)
SKIPPED_AFTER_LOAD = ("prompt+output", "refused:")


def _quantized(r: dict) -> bool:
    """Whether the record's method was applied in its process: every record but a skip decided before the
    load (a failure counts, though one at load time never reached quantize_: a conservative false alarm)."""
    return r["status"] != "skipped" or str(r.get("error") or "").startswith(SKIPPED_AFTER_LOAD)


def leaked(records: list[dict]) -> list[dict]:
    """The ok or failed hf-compiled records of a non-torchao method that follow a torchao record whose method
    was applied (`_quantized`; any engine) in the same worker process, written by a runner that did not restore the
    inductor config (no `engine_params.inductor_overrides`: before session s9)."""
    out = []
    for process in worker_processes(records, NEW_CALL_GAP_S):
        torchao_ran = False
        for r in process:
            restored = "inductor_overrides" in (r.get("engine_params") or {})
            if (torchao_ran and r["engine"] == "hf-compiled" and not r["quant"].startswith("torchao")
                    and r["status"] != "skipped" and not restored):
                out.append(r)
            if r["quant"].startswith("torchao") and _quantized(r):
                torchao_ran = True
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="move the records (default: list them)")
    args = ap.parse_args()
    lines = {p: [ln for ln in p.read_text().splitlines() if ln.strip()] for p in STORES if p.exists()}
    records = [json.loads(ln) for ls in lines.values() for ln in ls]
    bad = {r["record_id"] for r in leaked(records)}
    for r in records:
        if r["record_id"] in bad:
            print(r["created_at"], r["gpu_uuid"][:12], r["model"], r["quant"], r["engine"], f"b{r['batch_size']}")
    print(f"{len(bad)} record(s) ran after a torchao cell in their process")
    if not args.write or not bad:
        return
    moved = []
    for p, ls in lines.items():
        keep = [ln for ln in ls if json.loads(ln)["record_id"] not in bad]
        moved += [ln for ln in ls if json.loads(ln)["record_id"] in bad]
        if len(keep) != len(ls):
            p.write_text("".join(ln + "\n" for ln in keep))
    REJECTED.parent.mkdir(exist_ok=True)
    with REJECTED.open("a") as f:
        f.writelines(ln + "\n" for ln in moved)
    print(f"moved {len(moved)} to {REJECTED.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
