"""`measure meter -- CMD ARGS`: run a command and report the GPU (and CPU) energy of its lifetime."""

from __future__ import annotations

import contextlib
import json as _json
import shlex
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from measure.meter.base import (
    Clock,
    GpuMeter,
    MeterSession,
    MeterUnavailable,
    RealClock,
    WindowResult,
    check_isolation,
)
from measure.meter.rapl import POWERCAP_ROOT, open_rapl
from recommender.errors import UserError


@dataclass
class MeterResult:
    command: list[str]
    exit_code: int  # the command's; 128 + N if killed by signal N
    duration_s: float
    energy_j: float | None  # all GPUs: counter difference (sampled where a card has no counter)
    avg_power_w: float | None  # all GPUs
    energy_1hz_j: float | None  # all GPUs, the paper's eq. (1)
    energy_1hz_error_pct: float | None
    energy_sampled_j: float | None  # all GPUs, trapezoid over the fast sampler
    method: str  # counter | sampled | mixed
    cpu_energy_j: float | None  # CPU packages (RAPL), None if unreadable
    cpu_energy_note: str
    other_gpu_processes: int  # seen on the GPUs before the command started
    meter_kind: str
    gpus: list[WindowResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sum(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) or not values else float(sum(values))


def _poll_every(rapl: Any, stop: threading.Event, period_s: float) -> None:
    while not stop.wait(period_s):
        rapl.poll()


def run_metered(cmd: Sequence[str], meters: Sequence[GpuMeter], clock: Clock | None = None,
                sample_hz: float = 10.0, rapl_root: Path | str = POWERCAP_ROOT, **popen: Any) -> MeterResult:
    """Run `cmd` (inheriting stdio) and meter every GPU in `meters` over its lifetime."""
    cmd = list(cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UserError("no command to meter: use `measure meter -- CMD ARGS`")
    clock = clock or RealClock()
    others = 0
    for m in meters:
        with contextlib.suppress(Exception):  # a failed process query must not stop the command
            others += len(check_isolation(m))
    sessions = [MeterSession(m, clock, sample_hz=sample_hz).start() for m in meters]
    windows = [s.window("command") for s in sessions]
    rapl, rapl_note = open_rapl(rapl_root)
    stop = threading.Event()
    poller = None
    try:
        if rapl is not None:
            rapl.start()
            # fold RAPL deltas every 10 s so a counter wrap during a long command is not lost
            poller = threading.Thread(target=_poll_every, args=(rapl, stop, 10.0), daemon=True)
            poller.start()
        for w in windows:
            w.begin()
        t0 = clock.now()
        try:
            proc = subprocess.Popen(cmd, **popen)
        except OSError as e:
            raise UserError(f"cannot run {cmd[0]!r}: {e.strerror or e}") from e
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT; let it finish and still report
            code = proc.wait()
        duration = clock.now() - t0
        results = [w.end() for w in windows]
        cpu_j = rapl.energy_j() if rapl is not None else None
    finally:
        stop.set()
        if poller is not None:
            poller.join(1.0)
        for s in sessions:
            s.stop()
    energy = _sum([r.energy_j for r in results])
    e1hz = _sum([r.energy_1hz_j for r in results])
    methods = {r.method for r in results}
    return MeterResult(
        command=cmd, exit_code=code if code >= 0 else 128 - code, duration_s=duration,
        energy_j=energy, avg_power_w=energy / duration if energy is not None and duration > 0 else None,
        energy_1hz_j=e1hz,
        energy_1hz_error_pct=(e1hz - energy) / energy * 100 if energy and e1hz is not None else None,
        energy_sampled_j=_sum([r.energy_sampled_j for r in results]),
        method=methods.pop() if len(methods) == 1 else ("mixed" if methods else "none"),
        cpu_energy_j=cpu_j, cpu_energy_note=rapl_note, other_gpu_processes=others,
        meter_kind=meters[0].kind if meters else "none", gpus=results,
    )


def _n(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render_meter(r: MeterResult, names: Sequence[str] = ()) -> str:
    """One short table, like `codecarbon monitor`."""
    head = f"{'GPU':<4}{'name':<24}{'energy J':>11}{'avg W':>9}{'eq.(1) 1 Hz J':>15}{'err %':>8}{'sampled J':>11}  method"
    lines = [f"{shlex.join(r.command)}  ->  exit {r.exit_code}, {r.duration_s:.2f} s  [meter: {r.meter_kind}]",
             head]
    for i, g in enumerate(r.gpus):
        name = (names[i] if i < len(names) else "")[:22]
        lines.append(f"{g.gpu_index!s:<4}{name:<24}{_n(g.energy_j, '.1f'):>11}{_n(g.avg_power_w, '.1f'):>9}"
                     f"{_n(g.energy_1hz_j, '.1f'):>15}{_n(g.energy_1hz_error_pct, '+.1f'):>8}"
                     f"{_n(g.energy_sampled_j, '.1f'):>11}  {g.method}")
    if len(r.gpus) > 1:
        lines.append(f"{'all':<28}{_n(r.energy_j, '.1f'):>11}{_n(r.avg_power_w, '.1f'):>9}"
                     f"{_n(r.energy_1hz_j, '.1f'):>15}{_n(r.energy_1hz_error_pct, '+.1f'):>8}"
                     f"{_n(r.energy_sampled_j, '.1f'):>11}  {r.method}")
    cpu = f"{r.cpu_energy_j:.1f} J ({r.cpu_energy_note})" if r.cpu_energy_j is not None else r.cpu_energy_note
    lines.append(f"CPU energy: {cpu}")
    if r.gpus and r.gpus[0].too_short:
        lines.append(f"note: ran {r.duration_s:.2f} s, under the {r.gpus[0].min_window_s:.1f} s minimum window "
                     "(10 counter updates): the energy is coarse")
    if r.other_gpu_processes:
        lines.append(f"note: {r.other_gpu_processes} other process(es) were on the GPU(s) and are counted too")
    return "\n".join(lines)


def meter_main(cmd: list[str], meter_kind: str = "auto", json: bool = False, sample_hz: float = 10.0) -> int:
    """CLI body of `measure meter`: returns the command's exit code (2 if no meter / bad command).

    The table goes to stderr (stdout stays the command's); `json=True` prints the result to stdout.
    """
    from measure.meter.factory import opened_meters

    try:
        with opened_meters(meter_kind) as meters:
            result = run_metered(cmd, meters, sample_hz=sample_hz)
    except (MeterUnavailable, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render_meter(result, [m.name for m in meters]), file=sys.stderr)
    if json:
        print(_json.dumps(result.to_dict(), indent=2))
    return result.exit_code


if __name__ == "__main__":  # python -m measure.metercmd [--meter=KIND] [--json] -- CMD ARGS
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    opts, command = argv[:split], argv[split + 1:]
    kind = next((o.split("=", 1)[1] for o in opts if o.startswith("--meter=")), "auto")
    sys.exit(meter_main(command, kind, "--json" in opts))
