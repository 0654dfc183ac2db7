"""GPU energy meters (NVML, replay), energy windows, sampler and CPU RAPL. No heavy imports here."""

from measure.meter.base import (
    BENIGN_THROTTLE,
    DEFAULT_UPDATE_PERIOD_MS,
    Clock,
    EnergyCounterUnsupported,
    EnergyWindow,
    GpuMeter,
    GpuProcess,
    IdleBaseline,
    MeterSession,
    MeterUnavailable,
    RealClock,
    WindowResult,
    check_isolation,
    coefficient_of_variation,
    decode_throttle_reasons,
    detect_update_period_ms,
    detect_update_periods_ms,
    measure_idle,
    min_window_s,
    repeat_until,
    significant_throttle_reasons,
    stability,
)
from measure.meter.factory import METER_KINDS, get_meters
from measure.meter.fake import FakeClock, FakeGpuMeter
from measure.meter.rapl import RaplMeter, open_rapl
from measure.meter.sampler import MeterSample, Sampler, energy_1hz, integrate_trapezoid

__all__ = [
    "BENIGN_THROTTLE", "DEFAULT_UPDATE_PERIOD_MS", "METER_KINDS", "Clock", "EnergyCounterUnsupported",
    "EnergyWindow", "FakeClock", "FakeGpuMeter", "GpuMeter", "GpuProcess", "IdleBaseline", "MeterSample",
    "MeterSession", "MeterUnavailable", "RaplMeter", "RealClock", "Sampler", "WindowResult",
    "check_isolation", "coefficient_of_variation", "decode_throttle_reasons", "detect_update_period_ms",
    "detect_update_periods_ms", "energy_1hz", "get_meters", "integrate_trapezoid", "measure_idle",
    "min_window_s", "open_rapl", "repeat_until", "significant_throttle_reasons", "stability",
]
