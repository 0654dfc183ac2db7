"""Worker processes rebuilt from measurement records.

A record does not name the process that wrote it; one worker of a (multi-GPU) measurement call is told apart by
its records: the same GPU unit (`gpu_uuid`) and the same `command`, in `created_at` order, a long enough gap
starting another call. Two rules for that gap are in use, so both are offered:

  * `split="process"`: a gap of more than `gap_s` between two consecutive records of the same GPU and command;
  * `split="session"`: a gap of more than `gap_s` between two consecutive records of all of them (a device
    session: `session_starts`); a process ends only with its session, other GPUs' records bridging its idle time.

Records are `measure.record.Record`s or their JSON dicts alike. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal, TypeVar

R = TypeVar("R")


def field_of(record: Any, name: str) -> Any:
    """`record`'s field `name`: a dict's key or an object's attribute, None when absent."""
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def created_s(record: Any) -> float:
    """`record`'s `created_at` (ISO 8601) in epoch seconds."""
    return datetime.fromisoformat(field_of(record, "created_at")).timestamp()


def session_starts(records: Iterable[Any], gap_s: float) -> dict[int, float]:
    """id(record) -> the start (epoch s) of its session: the records with a `created_at` in time order, a new
    session after a gap of more than `gap_s`."""
    out: dict[int, float] = {}
    start = last = None
    for r in sorted((r for r in records if field_of(r, "created_at")), key=created_s):
        t = created_s(r)
        if last is None or t - last > gap_s:
            start = t
        out[id(r)] = start
        last = t
    return out


def worker_processes(records: Iterable[R], gap_s: float, *,
                     split: Literal["process", "session"] = "process") -> list[list[R]]:
    """The records of each worker process in the order it wrote them (`created_at`), a gap of more than
    `gap_s` starting another process by the `split` rule (see the module). Records without `gpu_uuid` or
    `created_at` are left out. Processes come in the order their GPU and command first appear in `records`
    (with `split="session"`: their session, GPU and command), those of one GPU and command in time order."""
    records = list(records)
    starts = session_starts(records, gap_s) if split == "session" else {}  # a record without GPU still bridges a gap
    groups: dict[tuple, list[R]] = {}
    for r in (r for r in records if field_of(r, "gpu_uuid") and field_of(r, "created_at")):
        groups.setdefault((starts.get(id(r)), field_of(r, "gpu_uuid"), field_of(r, "command")), []).append(r)
    out: list[list[R]] = []
    for rs in groups.values():
        rs.sort(key=created_s)
        if split == "session":
            out.append(rs)
            continue
        out.append(rs[:1])
        for prev, r in pairwise(rs):
            if created_s(r) - created_s(prev) > gap_s:
                out.append([])
            out[-1].append(r)
    return out
