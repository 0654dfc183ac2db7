"""Deterministic replay device and virtual clock, for tests and for machines without a GPU.

`FakeGpuMeter` integrates a power trace and mimics what NVML does on an H100: the energy counter and
the power reading refresh only every `update_period_s` (sample-and-hold), and the "average" power is
the mean over the last `avg_window_s` (1 s on Ampere and newer), so 1 Hz readings lag a rising load.
`FakeClock` is a virtual clock: `sleep()` advances time instantly and fires callbacks registered with
`every()` (the sampler uses this instead of a thread), so tests never sleep for real.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from measure.meter.base import Clock, EnergyCounterUnsupported, GpuMeter, GpuProcess, encode_throttle_reasons

PowerTrace = float | Callable[[float], float] | Sequence[tuple[float, float]]


# -- virtual clock ------------------------------------------------------------------------------
@dataclass(eq=False)
class _Timer:
    start_s: float
    period_s: float
    fn: Callable[[], object]
    k: int = 1
    cancelled: bool = False

    @property
    def due_s(self) -> float:
        return self.start_s + self.k * self.period_s

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock(Clock):
    """Virtual time in seconds. `sleep(s)`/`advance(s)` move it forward and run due callbacks in order."""

    virtual = True

    def __init__(self, start_s: float = 0.0):
        self._t = float(start_s)
        self._timers: list[_Timer] = []
        self._lock = threading.RLock()

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            target = self._t + max(0.0, float(seconds))
            while True:
                live = [tm for tm in self._timers if not tm.cancelled and tm.due_s <= target]
                if not live:
                    break
                tm = min(live, key=lambda x: x.due_s)
                self._t = max(self._t, tm.due_s)
                tm.k += 1
                tm.fn()
            self._timers = [tm for tm in self._timers if not tm.cancelled]
            self._t = target

    def every(self, period_s: float, fn: Callable[[], object]) -> _Timer:
        """Call `fn` every `period_s` of virtual time, first at now + period_s. Returns a cancellable."""
        if period_s <= 0:
            raise ValueError("period must be > 0")
        tm = _Timer(self._t, float(period_s), fn)
        with self._lock:
            self._timers.append(tm)
        return tm


# -- replay device ------------------------------------------------------------------------------
def _as_function(trace: PowerTrace | None, idle_power_w: float) -> Callable[[float], float]:
    if trace is None:
        return lambda t: idle_power_w
    if isinstance(trace, int | float):
        w = float(trace)
        return lambda t: w
    if callable(trace):
        return trace
    pts = sorted((float(t), float(w)) for t, w in trace)
    if not pts:
        raise ValueError("empty power trace")
    ts, ws = [p[0] for p in pts], [p[1] for p in pts]

    def interp(t: float) -> float:  # linear between samples, held beyond the ends
        if t <= ts[0]:
            return ws[0]
        if t >= ts[-1]:
            return ws[-1]
        i = bisect.bisect_right(ts, t)
        return ws[i - 1] + (ws[i] - ws[i - 1]) * (t - ts[i - 1]) / (ts[i] - ts[i - 1])

    return interp


class FakeGpuMeter(GpuMeter):
    """A GPU whose power follows `trace` (W as a function of seconds since the meter was made).

    `trace`: None (idle), a constant in W, a callable `t -> W`, or `(t, W)` samples (linear in
    between). Before t = 0 the card is assumed idle. `utilization_pct` and `temperature_c` are
    constants or callables of t; utilisation defaults to 100 % while power exceeds 1.1 x idle.
    The card counts as power-capped (`power_capped_ns`) while the trace is at or above `power_limit_w` (never
    with `power_limit_w` None).
    Inject other processes with `add_process()` and clock-event reasons with `set_throttle_reasons()`.
    """

    kind = "fake"

    def __init__(self, clock: Clock | None = None, trace: PowerTrace | None = None, *,
                 idle_power_w: float = 60.0, update_period_s: float = 0.1, counter_phase_s: float = 0.0,
                 avg_window_s: float = 1.0, has_instant_power: bool = True,
                 supports_energy_counter: bool = True,
                 temperature_c: float | Callable[[float], float] = 40.0,
                 utilization_pct: float | Callable[[float], float] | None = None,
                 throttle_reasons: Iterable[str] = (), index: int = 0, name: str = "Fake GPU",
                 uuid: str | None = None, power_limit_w: float = 700.0, compute_capability: str = "9.0",
                 memory_total_gb: float = 80.0, memory_used_gb: float = 0.5, sm_clock_mhz: float = 1980.0,
                 mem_clock_mhz: float = 2619.0, integration_step_s: float = 0.001,
                 energy_offset_mj: int = 1_000_000_000):
        from measure.meter.base import RealClock

        self.clock = clock or RealClock()
        self.epoch_s = self.clock.now()
        self.power_fn = _as_function(trace, idle_power_w)
        self.idle_power_w = float(idle_power_w)
        self.update_period_s, self.counter_phase_s = float(update_period_s), float(counter_phase_s)
        self.avg_window_s, self.has_instant_power = float(avg_window_s), has_instant_power
        self._temp, self._util = temperature_c, utilization_pct
        self._throttle = encode_throttle_reasons(throttle_reasons)
        self._procs: list[GpuProcess] = []
        self._sm, self._mem_clock, self._mem_used = sm_clock_mhz, mem_clock_mhz, memory_used_gb
        self._h = float(integration_step_s)
        self._cum = [0.0]  # energy (J) at grid points k * h
        self._capped = [0.0]  # time (s) at or above the power limit up to grid points k * h
        self._lock = threading.Lock()
        self._offset_mj = int(energy_offset_mj)
        # identity
        self.name, self.index = name, index
        self.uuid = uuid or f"GPU-fake-{index:04d}"
        self.driver_version, self.cuda_version, self.nvml_version = "fake", None, "fake"
        self.power_limit_w = power_limit_w
        self.supports_energy_counter = supports_energy_counter
        self.compute_capability = compute_capability
        self.memory_total_gb = memory_total_gb

    # -- the simulated physics --------------------------------------------------------------------
    def t(self) -> float:
        """Seconds since the meter was made (the trace's time axis)."""
        return self.clock.now() - self.epoch_s

    def energy_at_j(self, t: float) -> float:
        """Exact-ish integral of the trace from 0 to t, J (idle power before 0)."""
        if t <= 0:
            return self.idle_power_w * t
        h, p = self._h, self.power_fn
        k = int(t / h)
        base = self._grid_sum(self._cum, k, lambda j: h * (p(j * h) + p((j + 1) * h)) / 2)
        dt = t - k * h
        return base + dt * (p(k * h) + p(t)) / 2

    def capped_at_s(self, t: float) -> float:
        """Time from 0 to t the trace spent at or above `power_limit_w`, s (on the integration grid)."""
        if t <= 0 or self.power_limit_w is None:
            return 0.0
        h, p, limit = self._h, self.power_fn, self.power_limit_w
        k = int(t / h)
        base = self._grid_sum(self._capped, k, lambda j: h if p((j + 0.5) * h) >= limit else 0.0)
        return base + ((t - k * h) if p((k + 0.5) * h) >= limit else 0.0)  # the step's own midpoint: monotonic

    def _grid_sum(self, cum: list[float], k: int, step) -> float:
        """`cum[k]`, the running sum of `step(j)` over the grid steps j < k, extended as far as k (cached)."""
        with self._lock:
            while len(cum) <= k:
                cum.append(cum[-1] + step(len(cum) - 1))
            return cum[k]

    def _tick(self, t: float) -> float:
        """Time of the last counter/power refresh at or before t."""
        ph, per = self.counter_phase_s, self.update_period_s
        return ph + math.floor((t - ph) / per + 1e-9) * per

    # -- GpuMeter -----------------------------------------------------------------------------
    def energy_mj(self) -> int:
        if not self.supports_energy_counter:
            raise EnergyCounterUnsupported(f"{self.name}: no energy counter (simulated pre-Volta card)")
        return self._offset_mj + int(self.energy_at_j(self._tick(self.t())) * 1000.0)

    def power_w(self) -> float:
        if not self.has_instant_power:
            return self.power_avg_w()
        return float(self.power_fn(max(0.0, self._tick(self.t()))))

    def power_avg_w(self) -> float:
        tk = self._tick(self.t())
        return (self.energy_at_j(tk) - self.energy_at_j(tk - self.avg_window_s)) / self.avg_window_s

    def temperature_c(self) -> float:
        return float(self._temp(self.t()) if callable(self._temp) else self._temp)

    def sm_clock_mhz(self) -> float:
        return float(self._sm)

    def mem_clock_mhz(self) -> float:
        return float(self._mem_clock)

    def utilization_pct(self) -> float:
        if self._util is None:
            return 100.0 if self.power_fn(max(0.0, self.t())) > 1.1 * self.idle_power_w else 0.0
        return float(self._util(self.t()) if callable(self._util) else self._util)

    def throttle_mask(self) -> int:
        return self._throttle

    def power_capped_ns(self) -> int | None:
        return int(round(self.capped_at_s(self.t()) * 1e9))

    def memory_used_gb(self) -> float:
        return float(self._mem_used)

    def processes(self) -> list[GpuProcess]:
        return list(self._procs)

    # -- injection ----------------------------------------------------------------------------
    def add_process(self, pid: int, name: str = "python", used_gb: float | None = 1.0) -> None:
        self._procs.append(GpuProcess(int(pid), name, used_gb))

    def clear_processes(self) -> None:
        self._procs.clear()

    def set_throttle_reasons(self, names: Iterable[str]) -> None:
        self._throttle = encode_throttle_reasons(names)
