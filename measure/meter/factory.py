"""Pick the meters for this machine: `get_meters("auto" | "nvidia" | "fake", indices)`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from measure.meter.base import Clock, GpuMeter, MeterUnavailable

METER_KINDS = ("auto", "nvidia", "fake")


def get_meters(kind: str = "auto", indices: list[int] | None = None, clock: Clock | None = None,
               **fake_options: Any) -> list[GpuMeter]:
    """One meter per GPU index (all GPUs if None; index 0 for "fake").

    "auto" uses NVIDIA if NVML starts, else raises MeterUnavailable suggesting `--meter fake`.
    `clock` and `fake_options` (see FakeGpuMeter) apply to the fake meter only.
    """
    kind = (kind or "auto").strip().lower()
    if kind == "fake":
        from measure.meter.fake import FakeGpuMeter

        return [FakeGpuMeter(clock, index=i, **fake_options) for i in (indices or [0])]
    if kind in ("nvidia", "auto"):
        from measure.meter.nvidia import nvidia_meters

        return nvidia_meters(indices)
    raise MeterUnavailable(f"unknown meter kind {kind!r}; choose one of {', '.join(METER_KINDS)}")


@contextlib.contextmanager
def opened_meters(kind: str = "auto", indices: list[int] | None = None) -> Iterator[list[GpuMeter]]:
    """`get_meters(kind, indices)`, each meter closed on exit (MeterUnavailable raised before any opens)."""
    meters = get_meters(kind, indices)
    try:
        yield meters
    finally:
        for m in meters:
            m.close()
