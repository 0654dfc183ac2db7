"""Background power sampler and the integration rules over its timeline.

The sampler polls one `GpuMeter` at a fixed rate (default 10 Hz: NVML refreshes power and the energy
counter about every 100 ms, so polling faster adds nothing) and keeps a time-ordered list of
`MeterSample`s. With a real clock it runs in a daemon thread; with a virtual clock (`clock.virtual`,
see `fake.FakeClock`) it registers a periodic callback instead, so tests are deterministic and never
sleep.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from measure.meter.base import Clock, GpuMeter


@dataclass(slots=True)
class MeterSample:
    """One poll of a GPU. `None` where the reading is unsupported or failed."""

    t_s: float  # clock time of the poll, seconds
    power_w: float | None = None  # instantaneous where the driver has it, else NVML's average
    power_avg_w: float | None = None  # NVML's averaged power (what `nvidia-smi power.draw` shows)
    energy_mj: int | None = None  # cumulative energy counter, millijoules (only if asked for)
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    util_pct: float | None = None
    mem_used_gb: float | None = None
    throttle_mask: int | None = None  # clocks-event-reasons bitmask


class Sampler:
    """Poll `meter` at `hz` in the background; `samples(t0, t1)` returns the timeline.

    `extended=False` polls only power (two cheap NVML calls); `energy=True` adds the energy counter
    (~3 ms per call on an H100). The timeline keeps the last `max_samples` (3 h at 10 Hz), dropping
    the oldest half when full. Failed polls are counted in `errors` (message in `last_error`), never raised.
    """

    def __init__(self, meter: GpuMeter, clock: Clock, hz: float = 10.0, extended: bool = True,
                 energy: bool = False, max_samples: int = 108_000):
        if hz <= 0:
            raise ValueError(f"sampler rate must be > 0 Hz, got {hz}")
        self.meter, self.clock, self.hz, self.extended, self.energy = meter, clock, float(hz), extended, energy
        self.period_s = 1.0 / self.hz
        self.max_samples = max_samples
        self.errors = 0
        self.last_error: str | None = None
        self._times: list[float] = []
        self._samples: list[MeterSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None or self._timer is not None

    def start(self) -> Sampler:
        """Start polling (idempotent). Takes one sample immediately."""
        if self.running:
            return self
        self._stop.clear()
        self.poll_now()
        if getattr(self.clock, "virtual", False):
            self._timer = self.clock.every(self.period_s, self.poll_now)
        else:
            self._thread = threading.Thread(target=self._run, name=f"gpu-sampler-{self.meter.index}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop polling and join the thread (idempotent)."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        next_t = self.clock.now()
        while not self._stop.is_set():
            next_t += self.period_s
            delay = next_t - self.clock.now()
            if delay < 0:  # fell behind (e.g. a slow NVML call): skip, don't burst
                next_t, delay = self.clock.now(), 0.0
            if self._stop.wait(delay):
                break
            self.poll_now()

    # -- data ---------------------------------------------------------------------------------
    def poll_now(self) -> MeterSample | None:
        """Take one sample now (thread-safe) and add it to the timeline."""
        try:
            s = self.meter.sample(self.clock.now(), extended=self.extended, energy=self.energy)
        except Exception as e:  # never let a poll kill the measurement
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            return None
        with self._lock:
            i = bisect.bisect_right(self._times, s.t_s)
            self._times.insert(i, s.t_s)
            self._samples.insert(i, s)
            if len(self._samples) > self.max_samples:
                drop = len(self._samples) - self.max_samples // 2
                del self._times[:drop], self._samples[:drop]
        return s

    def samples(self, t0: float | None = None, t1: float | None = None, before: int = 0) -> list[MeterSample]:
        """Samples with t0 <= t <= t1 (all if None), plus up to `before` samples just before t0."""
        with self._lock:
            lo = 0 if t0 is None else bisect.bisect_left(self._times, t0)
            hi = len(self._times) if t1 is None else bisect.bisect_right(self._times, t1)
            return self._samples[max(0, lo - before):hi]

    def __len__(self) -> int:
        return len(self._samples)


# -- integration rules --------------------------------------------------------------------------
def _series(samples: Sequence[MeterSample], attr: str) -> tuple[list[float], list[float]]:
    ts, vs = [], []
    for s in samples:
        v = getattr(s, attr)
        if v is not None:
            ts.append(s.t_s)
            vs.append(float(v))
    return ts, vs


def _interp(ts: list[float], vs: list[float], t: float) -> float:
    if t <= ts[0]:
        return vs[0]
    if t >= ts[-1]:
        return vs[-1]
    i = bisect.bisect_right(ts, t)
    t_a, t_b, v_a, v_b = ts[i - 1], ts[i], vs[i - 1], vs[i]
    return v_a if t_b == t_a else v_a + (v_b - v_a) * (t - t_a) / (t_b - t_a)


def integrate_trapezoid(samples: Sequence[MeterSample], t0: float, t1: float,
                        attr: str = "power_w") -> float | None:
    """Energy in J over [t0, t1]: trapezoid rule on the linearly interpolated power samples.

    Values are held constant before the first and after the last sample. None if no sample has `attr`.
    """
    ts, vs = _series(samples, attr)
    if not ts or t1 < t0:
        return None
    knots = [t0] + [t for t in ts if t0 < t < t1] + [t1]
    vals = [_interp(ts, vs, t) for t in knots]
    return sum((knots[i + 1] - knots[i]) * (vals[i] + vals[i + 1]) / 2 for i in range(len(knots) - 1))


def energy_1hz(samples: Sequence[MeterSample], t0: float, t1: float,
               attr: str = "power_avg_w") -> float | None:
    """The paper's eq. (1): sum of P_i x 1 s over readings taken every 1 s from t0, in J.

    Reading i is the latest sample at or before t0 + i (what a 1 Hz `nvidia-smi` poll would have seen);
    the last rectangle is clipped at t1 so that the estimate measures the sampling rate, not the
    rounding of the duration to whole seconds. Falls back to `power_w` if `attr` was never read.
    """
    ts, vs = _series(samples, attr)
    if not ts:
        ts, vs = _series(samples, "power_w")
    if not ts or t1 < t0:
        return None
    total = 0.0
    for k in range(max(0, math.ceil(t1 - t0 - 1e-9))):
        tk = t0 + k
        i = bisect.bisect_right(ts, tk + 1e-9)
        total += vs[max(0, i - 1)] * min(1.0, t1 - tk)
    return total
