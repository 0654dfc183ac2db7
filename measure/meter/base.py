"""GPU meter interface, energy windows and the measurement helpers built on them.

Modelled on Zeus (ml-energy/zeus): one `GpuMeter` per device behind a factory, results as dataclasses
with units in field names, and a replay device (`fake.FakeGpuMeter`) for tests. Energy comes from the
driver's cumulative counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ) where the card has one
(Volta and newer), else from integrating sampled power.

Typical use (the runner)::

    session = MeterSession(meter, sync=torch.cuda.synchronize).start()
    session.calibrate()                    # measures the counter's update period on this card
    with session.window("decode") as w:
        n = session.repeat_until(step)     # short phases: repeat until >= 10 update periods
    energy_per_call_j = w.energy_j / n
    session.stop()
"""

from __future__ import annotations

import math
import numbers
import os
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from measure.meter.sampler import MeterSample, Sampler, energy_1hz, integrate_trapezoid
from recommender.errors import UserError

DEFAULT_UPDATE_PERIOD_MS = 100.0  # what H100/A100 counters do; measure per card with `calibrate()`
MIN_WINDOW_PERIODS = 10  # a window must span >= 10 counter updates (quantisation error <= ~10 %)


# -- errors -------------------------------------------------------------------------------------
class MeterUnavailable(UserError):
    """No meter of the asked kind can run here (NVML missing, no GPU, bad index)."""


class EnergyCounterUnsupported(RuntimeError):
    """The card has no cumulative energy counter (pre-Volta); use sampled integration."""


# -- clocks -------------------------------------------------------------------------------------
class Clock:
    """Time source: `now()` in seconds (monotonic), `sleep(seconds)`. Virtual clocks set `virtual`."""

    virtual = False

    def now(self) -> float:
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        raise NotImplementedError


class RealClock(Clock):
    """Wall time: `time.perf_counter` and `time.sleep`."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


# -- throttle reasons ---------------------------------------------------------------------------
# Bits of nvmlDeviceGetCurrentClocksEventReasons (formerly ...ClocksThrottleReasons), from nvml.h.
THROTTLE_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock_setting",
}
BENIGN_THROTTLE = frozenset({"gpu_idle", "applications_clocks_setting", "display_clock_setting"})


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the set bits of a clocks-event-reasons bitmask, lowest bit first."""
    names, bit = [], 1
    while mask >= bit:
        if mask & bit:
            names.append(THROTTLE_BITS.get(bit, f"unknown_0x{bit:x}"))
        bit <<= 1
    return names


def encode_throttle_reasons(names: Iterable[str]) -> int:
    """Inverse of `decode_throttle_reasons` (for the fake device)."""
    by_name = {v: k for k, v in THROTTLE_BITS.items()}
    try:
        return sum(by_name[n] for n in set(names))
    except KeyError as e:
        raise ValueError(f"unknown throttle reason {e.args[0]!r}; known: {sorted(by_name)}") from None


def significant_throttle_reasons(names: Iterable[str]) -> list[str]:
    """Drop the benign reasons (idle, application clocks, display clock)."""
    return [n for n in names if n not in BENIGN_THROTTLE]


# -- the device interface -----------------------------------------------------------------------
class GpuProcess(NamedTuple):
    pid: int
    name: str
    used_gb: float | None  # GPU memory used by the process, GB (1e9 bytes); None if unknown


class GpuMeter(ABC):
    """One GPU. Identity is plain attributes; readings are methods (SI units in the names).

    Subclasses set every identity attribute in `__init__`.
    """

    kind = "abstract"
    name: str
    uuid: str
    index: int
    driver_version: str | None
    cuda_version: str | None
    nvml_version: str | None
    power_limit_w: float | None
    supports_energy_counter: bool
    compute_capability: str | None  # like "9.0"
    memory_total_gb: float | None

    @abstractmethod
    def energy_mj(self) -> int:
        """Cumulative energy counter, mJ. Raises EnergyCounterUnsupported on counter-less cards."""

    @abstractmethod
    def power_w(self) -> float:
        """Power now, W: instantaneous where the driver has it, else the driver's average."""

    def power_avg_w(self) -> float:
        """The driver's averaged power, W (1 s average on Ampere and newer; `nvidia-smi power.draw`)."""
        return self.power_w()

    @abstractmethod
    def temperature_c(self) -> float: ...

    @abstractmethod
    def sm_clock_mhz(self) -> float: ...

    @abstractmethod
    def mem_clock_mhz(self) -> float: ...

    @abstractmethod
    def utilization_pct(self) -> float:
        """Percent of the last sample period during which a kernel ran (0..100)."""

    @abstractmethod
    def throttle_mask(self) -> int:
        """Raw clocks-event-reasons bitmask."""

    @abstractmethod
    def memory_used_gb(self) -> float:
        """Device memory in use by all processes, GB (1e9 bytes)."""

    @abstractmethod
    def processes(self) -> list[GpuProcess]:
        """Every process with a context on this GPU, ours included."""

    def power_capped_ns(self) -> int | None:
        """Cumulative time the clocks were held below their application clocks by the power limit, ns (NVML's
        violation status of the power policy); None where the driver does not report it. A window's difference
        says how long inside it the card ran power-capped, which the clocks-event bit (`sw_power_cap`, set if
        it happened at any poll) cannot."""
        return None

    def throttle_reasons(self) -> list[str]:
        """Active clocks-event reasons by name (benign ones included; see BENIGN_THROTTLE)."""
        return decode_throttle_reasons(self.throttle_mask())

    def other_processes(self, exclude_pids: Iterable[int] = ()) -> list[GpuProcess]:
        """Processes on this GPU other than ours (and `exclude_pids`).

        In a container without the host's PID namespace NVML reports host PIDs, so our own process
        may show up here under another PID; `doctor` says so.
        """
        skip = {os.getpid(), *exclude_pids}
        return [p for p in self.processes() if p.pid not in skip]

    def sample(self, t_s: float, extended: bool = True, energy: bool = False) -> MeterSample:
        """One poll for the sampler: power first, then (optionally) the energy counter and the rest.

        The counter is off by default: on an H100 one `nvmlDeviceGetTotalEnergyConsumption` call
        takes ~3 ms (utilisation ~0.8 ms; the other readings a few us), and windows read it at their
        edges anyway.
        """
        s = MeterSample(t_s=t_s, power_w=self.power_w(), power_avg_w=self.power_avg_w())
        if energy and self.supports_energy_counter:
            s.energy_mj = self.energy_mj()
        if extended:
            for attr, fn in (("temp_c", self.temperature_c), ("sm_clock_mhz", self.sm_clock_mhz),
                             ("mem_clock_mhz", self.mem_clock_mhz), ("util_pct", self.utilization_pct),
                             ("mem_used_gb", self.memory_used_gb), ("throttle_mask", self.throttle_mask)):
                try:
                    setattr(s, attr, fn())
                except Exception:  # one unsupported reading must not lose the sample
                    setattr(s, attr, None)
        return s

    def info(self) -> dict[str, Any]:
        """Identity under the record's field names."""
        return {"gpu_name": self.name, "gpu_uuid": self.uuid, "gpu_index": self.index,
                "driver_version": self.driver_version, "cuda_version": self.cuda_version,
                "nvml_version": self.nvml_version, "power_limit_w": self.power_limit_w,
                "compute_capability": self.compute_capability}

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release driver resources (idempotent)."""

    def __enter__(self) -> GpuMeter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(index={self.index}, name={self.name!r})"


# -- windows ------------------------------------------------------------------------------------
def min_window_s(update_period_ms: float | None) -> float:
    """Shortest trustworthy window for a counter that updates every `update_period_ms`, s."""
    return MIN_WINDOW_PERIODS * (update_period_ms or DEFAULT_UPDATE_PERIOD_MS) / 1000.0


@dataclass
class WindowResult:
    """Energy over one timed window. Filled in when the window ends (fields are None before)."""

    name: str
    gpu_index: int | None = None
    start_s: float | None = None  # clock seconds (perf_counter, or virtual)
    end_s: float | None = None
    duration_s: float | None = None
    energy_j: float | None = None  # counter difference, or sampled if method == "sampled"
    avg_power_w: float | None = None  # energy_j / duration_s
    energy_1hz_j: float | None = None  # eq. (1): 1 Hz rectangle rule on NVML's averaged power
    energy_1hz_error_pct: float | None = None  # (energy_1hz_j - energy_j) / energy_j x 100
    energy_sampled_j: float | None = None  # trapezoid over the fast sampler's power
    samples_n: int = 0  # sampler readings inside the window
    method: str | None = None  # counter | sampled
    update_period_ms: float | None = None
    min_window_s: float | None = None
    too_short: bool | None = None  # duration_s < min_window_s: use repeat_until
    peak_power_w: float | None = None
    temp_start_c: float | None = None
    temp_end_c: float | None = None
    temp_max_c: float | None = None
    peak_mem_used_gb: float | None = None  # NVML, all processes
    throttle_reasons: list[str] = field(default_factory=list)  # significant ones seen in the window
    power_capped_s: float | None = None  # time held below application clocks by the power limit (None: unknown)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct_error(estimate: float | None, reference: float | None) -> float | None:
    if estimate is None or not reference:
        return None
    return (estimate - reference) / reference * 100.0


class EnergyWindow:
    """One timed window on a `MeterSession`.

    `with session.window("decode") as w:` yields the `WindowResult`, filled in on exit; or call
    `begin()` / `end()` explicitly. `sync` (e.g. `torch.cuda.synchronize`) runs at both edges so that
    queued GPU work is inside the window.
    """

    def __init__(self, session: MeterSession, name: str, sync: Callable[[], Any] | None = None):
        self.session, self.name = session, name
        self.sync = sync if sync is not None else session.sync
        self.result = WindowResult(name=name, gpu_index=session.meter.index)
        self._e0: int | None = None
        self._capped0: int | None = None
        self._open = False

    def begin(self) -> WindowResult:
        if self._open:
            raise RuntimeError(f"window {self.name!r} already open")
        s = self.session
        s.start()
        if self.sync:
            self.sync()
        self.result.start_s = s.clock.now()
        self._e0 = s.meter.energy_mj() if s.meter.supports_energy_counter else None
        self._capped0 = _power_capped_ns(s.meter)
        s.sampler.poll_now()
        self._open = True
        return self.result

    def end(self) -> WindowResult:
        if not self._open:
            raise RuntimeError(f"window {self.name!r} is not open")
        s, r = self.session, self.result
        if self.sync:
            self.sync()
        t1 = s.clock.now()
        e1 = s.meter.energy_mj() if self._e0 is not None else None
        capped1 = _power_capped_ns(s.meter) if self._capped0 is not None else None
        s.sampler.poll_now()
        self._open = False
        _fill(r, s, r.start_s, t1, self._e0, e1)
        if capped1 is not None and capped1 >= self._capped0:
            r.power_capped_s = (capped1 - self._capped0) / 1e9
        return r

    def __enter__(self) -> WindowResult:
        return self.begin()

    def __exit__(self, *exc) -> None:
        self.end()


def _power_capped_ns(meter: GpuMeter) -> int | None:
    """The meter's power-capped time, ns; None where it has none or the reading fails (never loses a window)."""
    try:
        return meter.power_capped_ns()
    except Exception:
        return None


def _fill(r: WindowResult, s: MeterSession, t0: float, t1: float, e0: int | None, e1: int | None) -> None:
    """Compute every figure of `r` from the counter readings and the sampler timeline."""
    inside = s.sampler.samples(t0, t1)
    around = s.sampler.samples(t0, t1, before=1)
    r.end_s, r.duration_s = t1, t1 - t0
    r.samples_n = len(inside)
    r.update_period_ms = s.update_period_ms
    r.min_window_s = s.min_window_s
    r.too_short = r.duration_s < r.min_window_s
    r.energy_sampled_j = integrate_trapezoid(around, t0, t1, "power_w")
    r.energy_1hz_j = energy_1hz(around, t0, t1, "power_avg_w")
    if e0 is not None and e1 is not None and e1 > e0:
        r.energy_j, r.method = (e1 - e0) / 1000.0, "counter"
    else:
        r.energy_j, r.method = r.energy_sampled_j, "sampled"
        if e0 is not None:
            r.note = "energy counter did not advance in this window (too short); used sampled power"
    if r.energy_j is not None and r.duration_s > 0:
        r.avg_power_w = r.energy_j / r.duration_s
    r.energy_1hz_error_pct = _pct_error(r.energy_1hz_j, r.energy_j)
    powers = [x.power_w for x in inside if x.power_w is not None]
    temps = [x.temp_c for x in inside if x.temp_c is not None]
    mems = [x.mem_used_gb for x in inside if x.mem_used_gb is not None]
    r.peak_power_w = max(powers, default=None)
    r.temp_start_c, r.temp_end_c = (temps[0], temps[-1]) if temps else (None, None)
    r.temp_max_c = max(temps, default=None)
    r.peak_mem_used_gb = max(mems, default=None)
    mask = 0
    for x in inside:
        mask |= x.throttle_mask or 0
    r.throttle_reasons = significant_throttle_reasons(decode_throttle_reasons(mask))


class MeterSession:
    """A meter plus its background sampler; opens `EnergyWindow`s.

    `sample_hz` is the sampler rate (10 Hz default; NVML refreshes about every 100 ms).
    `update_period_ms` is the counter's refresh period (100 ms unless given or `calibrate()`d).
    `extended` polls temperature, clocks, utilisation, memory and throttling besides power;
    `sample_energy` also records the counter in every sample (costly on NVIDIA, see `GpuMeter.sample`).
    """

    def __init__(self, meter: GpuMeter, clock: Clock | None = None, sample_hz: float = 10.0,
                 sync: Callable[[], Any] | None = None, update_period_ms: float | None = None,
                 extended: bool = True, sample_energy: bool = False):
        self.meter = meter
        self.clock = clock or RealClock()
        self.sync = sync
        self.update_period_ms = update_period_ms or DEFAULT_UPDATE_PERIOD_MS
        self.sampler = Sampler(meter, self.clock, hz=sample_hz, extended=extended, energy=sample_energy)

    @property
    def min_window_s(self) -> float:
        return min_window_s(self.update_period_ms)

    def calibrate(self, duration_s: float = 2.0) -> float:
        """Measure this card's counter update period (ms), keep it, return it."""
        period = detect_update_period_ms(self.meter, self.clock, duration_s)
        if period:
            self.update_period_ms = period
        return self.update_period_ms

    def start(self) -> MeterSession:
        self.sampler.start()
        return self

    def stop(self) -> None:
        self.sampler.stop()

    def __enter__(self) -> MeterSession:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def window(self, name: str = "window", sync: Callable[[], Any] | None = None) -> EnergyWindow:
        return EnergyWindow(self, name, sync)

    def repeat_until(self, fn: Callable[[], Any], min_window: float | None = None) -> int:
        """`repeat_until(fn, min_window or self.min_window_s)` on this session's clock."""
        return repeat_until(fn, self.min_window_s if min_window is None else min_window, self.clock)


# -- helpers ------------------------------------------------------------------------------------
def repeat_until(fn: Callable[[], Any], min_window_s: float, clock: Clock | None = None,
                 max_calls: int = 1_000_000) -> int:
    """Call `fn` at least once and until `min_window_s` seconds have passed; return the call count.

    Divide the window's energy by the count: a single short call would read a quantised (often zero)
    counter difference.
    """
    clock = clock or RealClock()
    t0, n = clock.now(), 0
    while True:
        fn()
        n += 1
        if clock.now() - t0 >= min_window_s:
            return n
        if n >= max_calls:
            raise RuntimeError(f"repeat_until: {n} calls took < {min_window_s} s; does fn take time?")


def detect_update_periods_ms(meters: Sequence[GpuMeter], clock: Clock | None = None,
                             duration_s: float = 2.0, poll_s: float = 0.0005) -> list[float | None]:
    """Median interval between value changes of each meter's energy counter, ms (all polled together).

    Cards without a counter are timed on their power reading instead. None if fewer than 3 changes.
    """
    clock = clock or RealClock()
    readers = [m.energy_mj if m.supports_energy_counter else m.power_w for m in meters]
    last: list[Any] = [r() for r in readers]
    changes: list[list[float]] = [[] for _ in meters]
    t_end = clock.now() + duration_s
    while clock.now() < t_end:
        clock.sleep(poll_s)
        for i, r in enumerate(readers):
            v = r()
            if v != last[i]:
                changes[i].append(clock.now())
                last[i] = v
    out: list[float | None] = []
    for ch in changes:
        gaps = [b - a for a, b in zip(ch, ch[1:], strict=False)]
        out.append(statistics.median(gaps) * 1000.0 if len(gaps) >= 2 else None)
    return out


def detect_update_period_ms(meter: GpuMeter, clock: Clock | None = None, duration_s: float = 2.0,
                            poll_s: float = 0.0005) -> float | None:
    """Median interval between energy-counter changes of one card, ms (None if it never changed)."""
    return detect_update_periods_ms([meter], clock, duration_s, poll_s)[0]


@dataclass
class IdleBaseline:
    power_w: float  # mean idle power, W
    temp_c: float | None  # mean temperature over the window, deg C
    duration_s: float
    method: str  # counter | sampled
    energy_j: float
    idle_reached: bool  # utilisation fell to the threshold before the window
    waited_s: float  # time spent waiting for idle


def measure_idle(meter: GpuMeter, clock: Clock | None = None, seconds: float = 5.0,
                 util_threshold_pct: float = 0.0, wait_timeout_s: float = 30.0, settle_s: float = 1.0,
                 sample_hz: float = 10.0) -> IdleBaseline:
    """Wait until the GPU shows no utilisation (up to `wait_timeout_s`), let power settle for
    `settle_s`, then measure `seconds` of idle energy with the counter (sampled without one)."""
    clock = clock or RealClock()
    t_wait = clock.now()
    idle = False
    while True:
        try:
            idle = meter.utilization_pct() <= util_threshold_pct
        except Exception:
            idle = True  # cannot tell: measure anyway
        if idle or clock.now() - t_wait >= wait_timeout_s:
            break
        clock.sleep(0.1)
    waited = clock.now() - t_wait
    clock.sleep(settle_s)
    session = MeterSession(meter, clock, sample_hz=sample_hz)
    with session, session.window("idle") as w:
        clock.sleep(seconds)
    temps = [s.temp_c for s in session.sampler.samples(w.start_s, w.end_s) if s.temp_c is not None]
    if w.energy_j is None or w.avg_power_w is None:
        raise RuntimeError("idle baseline: no energy reading (counter and power both unavailable)")
    return IdleBaseline(power_w=w.avg_power_w, temp_c=statistics.fmean(temps) if temps else None,
                        duration_s=w.duration_s, method=w.method, energy_j=w.energy_j,
                        idle_reached=idle, waited_s=waited)


def check_isolation(meter: GpuMeter, exclude_pids: Iterable[int] = ()) -> list[GpuProcess]:
    """Other processes holding this GPU; the caller flags the record (or refuses) if any."""
    return meter.other_processes(exclude_pids)


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample standard deviation / mean; None with fewer than 2 values or a zero mean."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(vals) < 2:
        return None
    mean = statistics.fmean(vals)
    return statistics.stdev(vals) / abs(mean) if mean else None


#: the repetition coefficient of variation above which a record is unstable (`stability`)
CV_THRESHOLD = 0.05


def stability(rep_energies: Sequence[float], rep_tps: Sequence[float], throttle_reasons: Iterable[str] = (),
              other_procs: int | Sequence[Any] = 0, cv_threshold: float = CV_THRESHOLD,
              ) -> tuple[bool, str | None, float | None, float | None]:
    """Judge a cell's repetitions: (is_stable, unstable_reason, energy_cv, tps_cv).

    Unstable when the energy or throughput CV exceeds `cv_threshold`, a significant throttle reason
    was seen, or other processes shared the GPU. Reasons are joined with "; ".
    """
    e_cv, t_cv = coefficient_of_variation(rep_energies), coefficient_of_variation(rep_tps)
    n_other = other_procs if isinstance(other_procs, int) else len(other_procs)
    reasons = []
    if e_cv is not None and e_cv > cv_threshold:
        reasons.append(f"energy CV {e_cv:.3f} > {cv_threshold}")
    if t_cv is not None and t_cv > cv_threshold:
        reasons.append(f"tokens/s CV {t_cv:.3f} > {cv_threshold}")
    throttled = significant_throttle_reasons(dict.fromkeys(throttle_reasons))
    if throttled:
        reasons.append("throttled: " + ",".join(throttled))
    if n_other:
        reasons.append(f"{n_other} other process(es) on the GPU")
    return (not reasons, "; ".join(reasons) or None, e_cv, t_cv)


POWER_CAP_ONLY = "throttled: sw_power_cap"
#: the largest share of the decode's time under the power cap that leaves its figures stable: the repetition CV
#: threshold of `stability`, since clocks slowed by any amount in a share f of the decode move its time by at most f
DECODE_CAPPED_SHARE_MAX = CV_THRESHOLD


def _real(v: Any) -> float | None:
    """A finite real number as float (numpy scalars included; bools and anything else: None)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        return None
    return float(v)


def _flag(v: Any) -> bool | None:
    """A bool, numpy's included; anything else (None, NaN, numbers): None."""
    if isinstance(v, bool):
        return v
    return bool(v) if getattr(getattr(v, "dtype", None), "kind", None) == "b" else None


def decode_capped_share(record: Mapping[str, Any]) -> float | None:
    """The largest share of one repetition's decode time that ran power-capped (0..1; schema 1.2): per repetition
    its generate call's capped time (`rep_power_capped_s`) less the prefill's (`prefill_power_capped_frac` x
    `ttft_ms`), at least 0, over its decode time (`rep_duration_s` less the prefill); the record's mean share
    (`decode_power_capped_frac`) where the per-repetition fields are missing; None where neither is known."""
    caps, durs = record.get("rep_power_capped_s"), record.get("rep_duration_s")
    pre_frac, ttft_ms = _real(record.get("prefill_power_capped_frac")), _real(record.get("ttft_ms"))
    if (isinstance(caps, Sequence) and isinstance(durs, Sequence) and 0 < len(caps) == len(durs)
            and pre_frac is not None and ttft_ms is not None):
        pre_s, shares = pre_frac * ttft_ms / 1000.0, []
        for cap, dur in zip(caps, durs, strict=True):
            cap, dur = _real(cap), _real(dur)
            if cap is None or dur is None or dur <= ttft_ms / 1000.0:
                shares = []
                break
            shares.append(min(1.0, max(0.0, cap - pre_s) / (dur - ttft_ms / 1000.0)))
        if shares:
            return max(shares)
    frac = _real(record.get("decode_power_capped_frac"))
    return frac if frac is not None and 0.0 <= frac <= 1.0 else None


def decode_is_stable(record: Mapping[str, Any], max_capped_share: float = DECODE_CAPPED_SHARE_MAX) -> bool:
    """Whether a record's decode figures (tokens/s, decode J/token) are stable: `is_stable`, or unstable only
    because the power cap was seen (`unstable_reason` exactly "throttled: sw_power_cap") while no repetition's
    decode spent more than `max_capped_share` of its time capped (`decode_capped_share`). Without the shares
    (records before schema 1.2, a driver that does not report them) the record's `is_stable` stands."""
    stable = _flag(record.get("is_stable"))
    if stable is not False:
        return bool(stable)
    if record.get("unstable_reason") != POWER_CAP_ONLY:
        return False
    share = decode_capped_share(record)
    return share is not None and share <= max_capped_share
