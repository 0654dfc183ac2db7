"""`measure doctor`: what the meters can measure on this machine, and what would spoil a measurement."""

from __future__ import annotations

import json as _json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from measure.meter.base import (
    Clock,
    GpuMeter,
    MeterUnavailable,
    RealClock,
    detect_update_periods_ms,
    min_window_s,
    significant_throttle_reasons,
)
from measure.meter.rapl import POWERCAP_ROOT, open_rapl


@dataclass
class GpuCheck:
    index: int
    name: str
    uuid: str
    catalogue_id: str | None  # None: not in the catalogue
    compute_capability: str | None
    energy_counter: bool
    update_period_ms: float | None  # measured refresh period of the counter (or of power)
    min_window_s: float  # 10 x update period
    power_limit_w: float | None
    power_w: float | None
    power_avg_w: float | None
    temperature_c: float | None
    utilization_pct: float | None
    memory_used_gb: float | None
    memory_total_gb: float | None
    throttle_reasons: list[str] = field(default_factory=list)  # significant ones only
    other_processes: list[dict[str, Any]] = field(default_factory=list)
    power_capped_time: bool = False  # the driver reports the power-capped time (records' *_power_capped_frac)


@dataclass
class DoctorReport:
    meter_kind: str
    host: str
    python_version: str
    nvml_version: str | None
    driver_version: str | None
    cuda_version: str | None
    gpus: list[GpuCheck]
    rapl_readable: bool
    rapl_note: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_catalogue_id(gpu_name: str) -> str | None:
    """The catalogue id of an NVML device name, or None (no catalogue module, unknown name, any error)."""
    try:
        from recommender.catalog import load_catalog
    except ImportError:
        return None
    try:
        row = load_catalog().gpus.find(gpu_name)
    except Exception:
        return None
    return getattr(row, "id", None)


def _read(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def run_doctor(meters: Sequence[GpuMeter], clock: Clock | None = None, detect_s: float = 2.0,
               rapl_root: Path | str = POWERCAP_ROOT,
               resolve: Callable[[str], str | None] = resolve_catalogue_id) -> DoctorReport:
    """Inspect every meter (update periods are measured together, `detect_s` seconds) and RAPL."""
    clock = clock or RealClock()
    periods = detect_update_periods_ms(meters, clock, detect_s) if meters else []
    gpus, warnings = [], []
    for m, period in zip(meters, periods, strict=True):
        procs = _read(m.other_processes) or []
        g = GpuCheck(
            index=m.index, name=m.name, uuid=m.uuid, catalogue_id=_read(lambda m=m: resolve(m.name)),
            compute_capability=m.compute_capability, energy_counter=m.supports_energy_counter,
            update_period_ms=period, min_window_s=min_window_s(period), power_limit_w=m.power_limit_w,
            power_w=_read(m.power_w), power_avg_w=_read(m.power_avg_w), temperature_c=_read(m.temperature_c),
            utilization_pct=_read(m.utilization_pct), memory_used_gb=_read(m.memory_used_gb),
            memory_total_gb=m.memory_total_gb,
            throttle_reasons=significant_throttle_reasons(_read(m.throttle_reasons) or []),
            other_processes=[p._asdict() for p in procs],
            power_capped_time=_read(m.power_capped_ns) is not None,
        )
        gpus.append(g)
        tag = f"GPU {m.index}"
        if not g.energy_counter:
            warnings.append(f"{tag}: no energy counter; energy will be integrated from sampled power "
                            "(less accurate)")
        if period is None:
            warnings.append(f"{tag}: the {'counter' if g.energy_counter else 'power reading'} did not change "
                            f"in {detect_s:g} s; cannot tell its update period")
        if procs:
            warnings.append(f"{tag}: {len(procs)} other process(es) on the GPU; measurements will be flagged "
                            "unstable (in a container, NVML may list this process under its host PID)")
        if g.throttle_reasons:
            warnings.append(f"{tag}: clocks limited now: {', '.join(g.throttle_reasons)}")
        if g.catalogue_id is None:
            warnings.append(f"{tag}: {m.name!r} is not in the GPU catalogue; records will have gpu_id null")
    rapl, note = open_rapl(rapl_root)
    first = meters[0] if meters else None
    return DoctorReport(
        meter_kind=first.kind if first else "none", host=platform.node(),
        python_version=platform.python_version(),
        nvml_version=first.nvml_version if first else None,
        driver_version=first.driver_version if first else None,
        cuda_version=first.cuda_version if first else None,
        gpus=gpus, rapl_readable=rapl is not None, rapl_note=note, warnings=warnings,
    )


def _f(v: float | None, fmt: str = ".1f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{fmt}}{unit}"


def render_doctor(r: DoctorReport) -> str:
    """Human-readable report."""
    lines = [f"meter: {r.meter_kind}   host: {r.host}   python {r.python_version}",
             f"NVML {r.nvml_version or 'n/a'}   driver {r.driver_version or 'n/a'}   CUDA {r.cuda_version or 'n/a'}"]
    for g in r.gpus:
        counter = "yes" if g.energy_counter else "NO (sampled power)"
        lines += [
            f"GPU {g.index}: {g.name}  ({g.uuid})",
            f"  catalogue id        {g.catalogue_id or 'not in catalogue'}",
            f"  compute capability  {g.compute_capability or 'n/a'}",
            f"  energy counter      {counter}; updates every {_f(g.update_period_ms, '.0f', ' ms')}"
            f" -> min window {g.min_window_s:.2f} s",
            f"  power               {_f(g.power_w, '.1f', ' W')} now, {_f(g.power_avg_w, '.1f', ' W')} averaged;"
            f" limit {_f(g.power_limit_w, '.0f', ' W')}",
            f"  temperature         {_f(g.temperature_c, '.0f', ' C')}; utilisation {_f(g.utilization_pct, '.0f', ' %')}",
            f"  memory used         {_f(g.memory_used_gb, '.2f')} / {_f(g.memory_total_gb, '.1f', ' GB')}",
            f"  clocks limited by   {', '.join(g.throttle_reasons) or 'nothing'}",
            f"  power-capped time   {'reported' if g.power_capped_time else 'not reported (records: null)'}",
            "  other processes     " + (", ".join(f"{p['pid']} {p['name']} ({_f(p['used_gb'], '.2f', ' GB')})"
                                                 for p in g.other_processes) or "none"),
        ]
    if not r.gpus:
        lines.append("no GPU")
    lines.append(f"CPU energy (RAPL)     {'readable' if r.rapl_readable else 'unavailable'}: {r.rapl_note}")
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def doctor_main(json: bool = False, meter_kind: str = "auto", detect_s: float = 2.0) -> int:
    """CLI body of `measure doctor`: print the report (text or JSON); 0 if meters work, 2 if none."""
    from measure.meter.factory import opened_meters

    try:
        with opened_meters(meter_kind) as meters:
            report = run_doctor(meters, detect_s=detect_s)
    except MeterUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_json.dumps(report.to_dict(), indent=2) if json else render_doctor(report))
    return 0


if __name__ == "__main__":  # handy on a GPU box before the CLI is wired
    import argparse

    ap = argparse.ArgumentParser(prog="python -m measure.doctor")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--meter", default="auto", choices=("auto", "nvidia", "fake"))
    args = ap.parse_args()
    sys.exit(doctor_main(args.json, args.meter))
