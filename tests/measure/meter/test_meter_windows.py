"""Energy windows on the replay device: quantisation, eq. (1) error, update period, idle, fallback."""

from __future__ import annotations

import pytest

from measure.meter import (
    EnergyCounterUnsupported,
    FakeClock,
    FakeGpuMeter,
    MeterSession,
    detect_update_period_ms,
    detect_update_periods_ms,
    measure_idle,
    repeat_until,
)

PHASE = 0.037  # counter ticks at 0.037 + k x 0.1 s: never on the window edges below


def _session(trace, **kw):
    clock = FakeClock()
    meter = FakeGpuMeter(clock, trace, counter_phase_s=PHASE, **kw)
    return clock, meter, MeterSession(meter, clock).start()


def test_counter_is_quantised_and_repeat_until_extends_short_windows():
    clock, meter, s = _session(200.0)
    clock.sleep(0.5)
    with s.window("one call") as one:  # 0.33 s on a 100 ms counter: sees 3 ticks, not 3.3
        clock.sleep(0.33)
    assert one.too_short and one.method == "counter"
    assert one.energy_j == pytest.approx(200 * 0.3)  # counter moved 3 ticks
    assert abs(one.energy_j / (200 * 0.33) - 1) > 0.05  # ... a 9 % error on one short call

    with s.window("repeated") as rep:
        n = s.repeat_until(lambda: clock.sleep(0.33))
    assert n == 4 and rep.duration_s == pytest.approx(1.32)
    assert not rep.too_short and rep.min_window_s == pytest.approx(1.0)
    per_call = rep.energy_j / n  # 0.83 -> 2.15 s: the counter saw 14 ticks for 13.2 periods of work
    assert per_call == pytest.approx(200 * 0.33, rel=0.1 / 1.32)  # error <= 1 tick / window


def test_window_shorter_than_one_tick_never_reports_zero():
    clock, meter, s = _session(200.0)
    clock.sleep(0.45)
    with s.window("tiny") as w:  # 0.45 -> 0.50: no counter tick inside (ticks at 0.437, 0.537)
        clock.sleep(0.05)
    assert w.method == "sampled" and "did not advance" in w.note
    assert w.energy_j == pytest.approx(200 * 0.05, rel=1e-6)


def test_repeat_until_counts_calls_and_guards_against_timeless_fn():
    clock = FakeClock()
    assert repeat_until(lambda: clock.sleep(0.4), 1.0, clock) == 3
    assert repeat_until(lambda: clock.sleep(2.0), 1.0, clock) == 1
    with pytest.raises(RuntimeError, match="does fn take time"):
        repeat_until(lambda: None, 1.0, clock, max_calls=50)


def test_eq1_at_1hz_underestimates_a_rising_load_and_the_error_shrinks_with_window_length():
    # idle 60 W, load of 300 W from t = 1 s; windows start with the load, as a generate() call does
    results = {}
    for seconds in (3.0, 10.0):
        clock, meter, s = _session(lambda t: 300.0 if t >= 1.0 else 60.0, idle_power_w=60.0)
        clock.sleep(1.0)
        with s.window("load") as w:
            clock.sleep(seconds)
        results[seconds] = w
    short, long = results[3.0], results[10.0]
    # counter: ticks 0.937 -> 3.937 (0.063 s idle + 2.937 s load)
    assert short.energy_j == pytest.approx(0.063 * 60 + 2.937 * 300, abs=0.3)  # 1 ms integration grid
    # 1 Hz readings of NVML's 1 s average lag the step: 60 W, 284.9 W, 300 W, ...
    first, second = 60.0, 0.063 * 60 + 0.937 * 300
    assert short.energy_1hz_j == pytest.approx(first + second + 300, abs=0.3)
    assert long.energy_1hz_j == pytest.approx(first + second + 8 * 300, abs=0.3)
    assert short.energy_1hz_error_pct < -20  # the paper's method: badly low on short windows
    assert -10 < long.energy_1hz_error_pct < -5  # still low but better on 10 s
    assert long.energy_1hz_error_pct == pytest.approx(
        (first + second + 2400 - (0.063 * 60 + 9.937 * 300)) / (0.063 * 60 + 9.937 * 300) * 100, abs=0.05)
    # the 10 Hz trapezoid over instantaneous power is close to the true 900 J
    assert short.energy_sampled_j == pytest.approx(900, rel=0.03)


def test_update_period_detection_finds_the_configured_period():
    clock = FakeClock()
    fast = FakeGpuMeter(clock, 100.0, update_period_s=0.05, counter_phase_s=0.013)
    slow = FakeGpuMeter(clock, 100.0, update_period_s=0.1, counter_phase_s=0.029, index=1)
    p_fast, p_slow = detect_update_periods_ms([fast, slow], clock, duration_s=1.0)
    assert p_fast == pytest.approx(50, abs=1) and p_slow == pytest.approx(100, abs=1)
    assert clock.now() == pytest.approx(1.0, abs=0.01)  # virtual time: the test did not sleep
    no_counter = FakeGpuMeter(clock, lambda t: 100 + (t * 10 % 7), supports_energy_counter=False)
    assert detect_update_period_ms(no_counter, clock, 1.0) == pytest.approx(100, abs=1)


def test_calibrate_sets_the_min_window():
    clock, meter, s = _session(100.0, update_period_s=0.2)
    assert s.calibrate(2.0) == pytest.approx(200, abs=1)
    assert s.min_window_s == pytest.approx(2.0, abs=0.01)


def test_idle_baseline_waits_for_idle_then_measures():
    clock = FakeClock()
    meter = FakeGpuMeter(clock, lambda t: 250.0 if t < 2.0 else 55.0, idle_power_w=55.0,
                         counter_phase_s=PHASE, temperature_c=lambda t: 50 - t)
    idle = measure_idle(meter, clock, seconds=5.0)
    assert idle.idle_reached and idle.waited_s == pytest.approx(2.0, abs=0.11)
    assert idle.method == "counter" and idle.duration_s == pytest.approx(5.0)
    assert idle.power_w == pytest.approx(55.0, rel=0.005)  # the 1 s settle keeps the load's tail out
    assert 40 < idle.temp_c < 47


def test_idle_baseline_gives_up_waiting_after_timeout():
    clock = FakeClock()
    meter = FakeGpuMeter(clock, 300.0, idle_power_w=50.0)
    idle = measure_idle(meter, clock, seconds=1.0, wait_timeout_s=3.0)
    assert not idle.idle_reached and idle.waited_s >= 3.0
    assert idle.power_w == pytest.approx(300.0, rel=0.1)


def test_counterless_card_falls_back_to_sampled_integration():
    clock, meter, s = _session(lambda t: 100.0 + 50.0 * (t % 1.0), supports_energy_counter=False)
    with pytest.raises(EnergyCounterUnsupported):
        meter.energy_mj()
    clock.sleep(0.2)
    with s.window("w") as w:
        clock.sleep(3.0)
    assert w.method == "sampled" and w.energy_j == w.energy_sampled_j
    assert w.energy_j == pytest.approx(3 * 125.0, rel=0.03)  # mean of the saw-tooth is 125 W
    assert w.samples_n >= 31 and w.energy_1hz_j is not None  # 10 Hz + one poll at each edge


def test_sync_runs_at_both_edges_and_window_records_conditions():
    calls = []
    clock, meter, s = _session(150.0, temperature_c=lambda t: 30 + t)
    meter.set_throttle_reasons(["gpu_idle"])
    with s.window("w", sync=lambda: calls.append(clock.now())) as w:
        clock.sleep(1.0)
        meter.set_throttle_reasons(["gpu_idle", "sw_thermal"])
        clock.sleep(1.0)
    assert calls == [0.0, 2.0]
    assert w.throttle_reasons == ["sw_thermal"]  # benign gpu_idle dropped
    assert w.temp_start_c == pytest.approx(30) and w.temp_end_c == pytest.approx(32)
    assert w.peak_power_w == 150.0 and w.avg_power_w == pytest.approx(150.0, rel=0.06)
    assert w.to_dict()["name"] == "w"


def test_window_api_misuse_raises():
    clock, meter, s = _session(100.0)
    w = s.window("x")
    with pytest.raises(RuntimeError):
        w.end()
    w.begin()
    with pytest.raises(RuntimeError):
        w.begin()
    clock.sleep(1.5)
    assert w.end().energy_j == pytest.approx(150, rel=0.07)


def test_window_reports_how_long_the_card_was_power_capped():
    # at its 700 W limit from 1.0 to 2.0 s, below it otherwise; the window 0.5 -> 2.5 s holds that second
    clock, meter, s = _session(lambda t: 700.0 if 1.0 <= t < 2.0 else 300.0, power_limit_w=700.0)
    clock.sleep(0.5)
    with s.window("half capped") as w:
        clock.sleep(2.0)
    assert w.power_capped_s == pytest.approx(1.0, abs=0.002)
    with s.window("after") as later:  # 2.5 -> 3.5 s: below the limit throughout
        clock.sleep(1.0)
    assert later.power_capped_s == pytest.approx(0.0, abs=1e-9)
    # the fake's capped time never goes back, even within the integration step where the trace leaves the limit
    fake = FakeGpuMeter(FakeClock(), lambda t: 700.0 if t < 1.0004 else 300.0, power_limit_w=700.0)
    times = [1.0 + k * 0.0001 for k in range(20)]
    capped = [fake.capped_at_s(t) for t in times]
    assert all(b >= a for a, b in zip(capped, capped[1:], strict=False))


def test_a_meter_without_the_power_capped_time_leaves_it_unknown():
    clock, meter, s = _session(700.0)
    meter.power_capped_ns = lambda: None  # a driver that does not report it
    with s.window("unknown") as w:
        clock.sleep(1.0)
    assert w.power_capped_s is None and w.energy_j is not None

    def broken():
        raise RuntimeError("NVML went away")

    readings = iter([5_000_000_000, 1_000_000])  # the counter went back (a GPU reset inside the window)
    meter.power_capped_ns = lambda: next(readings)
    with s.window("reset") as w_reset:
        clock.sleep(1.0)
    assert w_reset.power_capped_s is None and w_reset.energy_j is not None

    meter.power_capped_ns = broken  # a failing read never loses the window
    with s.window("failing") as w2:
        clock.sleep(1.0)
    assert w2.power_capped_s is None and w2.energy_j == pytest.approx(700.0, rel=0.1)
