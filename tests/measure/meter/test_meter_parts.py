"""Throttle decoding, isolation, stability, RAPL, sampler thread, factory, fake clock."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from measure.meter import (
    FakeClock,
    FakeGpuMeter,
    MeterUnavailable,
    RealClock,
    Sampler,
    check_isolation,
    decode_throttle_reasons,
    get_meters,
    open_rapl,
    significant_throttle_reasons,
    stability,
)
from measure.meter.base import decode_capped_share, decode_is_stable, encode_throttle_reasons
from measure.meter.rapl import wrap_delta_uj
from tests.fixtures.rapl import rapl_zone


# -- throttle reasons ---------------------------------------------------------------------------
def test_throttle_bitmask_decodes_to_names():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1 | 0x4 | 0x20) == ["gpu_idle", "sw_power_cap", "sw_thermal"]
    assert decode_throttle_reasons(0x8 | 0x40 | 0x80) == ["hw_slowdown", "hw_thermal", "hw_power_brake"]
    assert decode_throttle_reasons(0x2 | 0x1000) == ["applications_clocks_setting", "unknown_0x1000"]
    assert significant_throttle_reasons(["gpu_idle", "applications_clocks_setting", "hw_slowdown"]) == [
        "hw_slowdown"]
    assert decode_throttle_reasons(encode_throttle_reasons(["sw_thermal", "gpu_idle"])) == ["gpu_idle",
                                                                                           "sw_thermal"]
    with pytest.raises(ValueError, match="unknown throttle reason"):
        encode_throttle_reasons(["too_hot"])


def test_fake_meter_reports_injected_throttle_reasons():
    m = FakeGpuMeter(FakeClock(), throttle_reasons=["gpu_idle"])
    assert m.throttle_reasons() == ["gpu_idle"]
    m.set_throttle_reasons(["hw_power_brake"])
    assert m.throttle_mask() == 0x80 and m.throttle_reasons() == ["hw_power_brake"]


# -- isolation and stability --------------------------------------------------------------------
def test_isolation_lists_other_processes_but_not_ours():
    m = FakeGpuMeter(FakeClock())
    assert check_isolation(m) == []
    m.add_process(os.getpid(), "pytest", 2.0)
    assert check_isolation(m) == []  # our own context is not "another process"
    m.add_process(4242, "jupyter", 11.5)
    m.add_process(4343, "child", None)
    assert [(p.pid, p.name, p.used_gb) for p in check_isolation(m)] == [(4242, "jupyter", 11.5),
                                                                        (4343, "child", None)]
    assert [p.pid for p in check_isolation(m, exclude_pids=[4343])] == [4242]


def test_stability_flags_spread_throttling_and_neighbours():
    ok, reason, e_cv, t_cv = stability([100, 101, 99], [50, 50.5, 49.5], ["gpu_idle"], 0)
    assert ok and reason is None
    assert e_cv == pytest.approx(0.01) and t_cv == pytest.approx(0.01)
    ok, reason, e_cv, _ = stability([100, 120, 80], [50, 50, 50], [], [])
    assert not ok and e_cv == pytest.approx(0.2) and reason.startswith("energy CV 0.200 > 0.05")
    ok, reason, *_ = stability([100, 100], [40, 60], ["sw_thermal", "gpu_idle"], [("1", "x", 1.0)])
    assert not ok
    assert reason == "tokens/s CV 0.283 > 0.05; throttled: sw_thermal; 1 other process(es) on the GPU"
    ok, reason, e_cv, t_cv = stability([100], [50])  # one repetition: no CV, not unstable for that
    assert ok and e_cv is None and t_cv is None
    assert stability([100, 108], [1, 1], cv_threshold=0.1)[0]


def test_decode_is_stable_forgives_a_cap_that_held_little_of_the_decode():
    import numpy as np

    capped = {"is_stable": False, "unstable_reason": "throttled: sw_power_cap", "decode_power_capped_frac": 0.03}
    assert decode_is_stable({"is_stable": True, "unstable_reason": None})
    assert decode_is_stable({"is_stable": np.True_})  # numpy's bool, as a pandas row gives it
    assert decode_is_stable(capped)  # the cap took 3 % of the decode: moved it by at most 3 %
    assert decode_is_stable({**capped, "is_stable": np.False_})
    assert decode_is_stable({**capped, "decode_power_capped_frac": np.float32(0.04)})
    assert decode_is_stable({**capped, "decode_power_capped_frac": 0.05})  # at the threshold
    assert not decode_is_stable({**capped, "decode_power_capped_frac": 0.056})
    assert decode_is_stable({**capped, "decode_power_capped_frac": 0.08}, max_capped_share=0.1)
    for missing in (None, float("nan"), True, -0.1):  # before schema 1.2, unreadable, or not a share
        assert not decode_is_stable({**capped, "decode_power_capped_frac": missing}), missing
    assert not decode_is_stable({k: v for k, v in capped.items() if k != "decode_power_capped_frac"})
    assert not decode_is_stable({**capped, "unstable_reason": "tokens/s CV 0.073 > 0.05; throttled: sw_power_cap"})
    assert not decode_is_stable({**capped, "unstable_reason": "throttled: sw_power_cap,sw_thermal"})
    assert not decode_is_stable({**capped, "is_stable": None})  # not judged


def test_decode_capped_share_takes_the_worst_repetition():
    # prefill 0.5 s, capped 80 % (0.4 s); three generate calls of 10.5 s: decode 10 s each
    rec = {"prefill_power_capped_frac": 0.8, "ttft_ms": 500.0, "rep_duration_s": [10.5, 10.5, 10.5],
           "rep_power_capped_s": [0.6, 1.0, 0.1], "decode_power_capped_frac": 0.02}
    assert decode_capped_share(rec) == pytest.approx(0.06)  # (1.0 - 0.4) / 10, not the mean share 0.02
    assert decode_capped_share({**rec, "rep_power_capped_s": [0.1, 0.2, 0.3]}) == 0.0  # less than the prefill's
    assert decode_capped_share({**rec, "rep_power_capped_s": None}) == 0.02  # the mean share where reps are missing
    assert decode_capped_share({**rec, "rep_duration_s": [10.5, 0.4, 10.5]}) == 0.02  # a repetition unresolved
    assert decode_capped_share({"decode_power_capped_frac": None}) is None
    capped = {**rec, "is_stable": False, "unstable_reason": "throttled: sw_power_cap"}
    assert not decode_is_stable(capped)  # the worst repetition's 6 % decides, not the mean's 2 %
    assert decode_is_stable({**capped, "rep_power_capped_s": [0.6, 0.8, 0.1]})  # 4 % at most


# -- RAPL ---------------------------------------------------------------------------------------
def test_rapl_sums_packages_and_handles_wraparound(tmp_path: Path):
    max_uj = 262_143_328_850
    p0 = rapl_zone(tmp_path, "intel-rapl:0", "package-0", max_uj - 3_000_000, max_uj)
    p1 = rapl_zone(tmp_path, "intel-rapl:1", "package-1", 10_000_000, max_uj)
    rapl_zone(tmp_path, "intel-rapl:0:0", "core", 5, max_uj)  # subzone: part of package-0, not added
    rapl_zone(tmp_path, "intel-rapl:2", "psys", 7, max_uj)  # platform zone includes the packages
    rapl, note = open_rapl(tmp_path)
    assert note == "rapl: package-0+package-1"
    rapl.start()
    (p0 / "energy_uj").write_text(str(max_uj - 1_000_000))  # +2 J
    (p1 / "energy_uj").write_text("14000000")  # +4 J
    assert rapl.poll() == pytest.approx(6.0)
    (p0 / "energy_uj").write_text("500000")  # wrapped: +1 J to the top, +0.5 J after
    assert rapl.energy_j() == pytest.approx(7.5)
    assert wrap_delta_uj(10, 30, 100) == 20 and wrap_delta_uj(90, 5, 100) == 15


def test_rapl_reasons_when_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert open_rapl(tmp_path / "missing") == (None, "no RAPL on this machine")
    assert open_rapl(tmp_path) == (None, "no RAPL on this machine")
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1, 100)
    real_read = Path.read_text

    def deny(self: Path, *a, **kw):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real_read(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", deny)  # tests run as root here, so chmod would not bite
    rapl, reason = open_rapl(tmp_path)
    assert rapl is None and reason.startswith("not readable: permission denied")


# -- sampler ------------------------------------------------------------------------------------
def test_sampler_thread_polls_and_stops_cleanly():
    m = FakeGpuMeter(RealClock(), 120.0)
    s = Sampler(m, RealClock(), hz=100.0, energy=True)
    with s:
        thread = s._thread
        time.sleep(0.2)
    assert not thread.is_alive() and not s.running
    n = len(s)
    assert 10 <= n <= 25  # ~21 at 100 Hz
    time.sleep(0.05)
    assert len(s) == n  # nothing polls after stop
    assert all(x.power_w == 120.0 and x.energy_mj is not None for x in s.samples())
    assert [x.t_s for x in s.samples()] == sorted(x.t_s for x in s.samples())


def test_sampler_counts_failed_polls_without_raising():
    class Broken(FakeGpuMeter):
        def power_w(self) -> float:
            raise OSError("GPU is lost")

    clock = FakeClock()
    s = Sampler(Broken(clock), clock, hz=10).start()
    clock.sleep(1.0)
    s.stop()
    assert len(s) == 0 and s.errors == 11 and "GPU is lost" in s.last_error


def test_sampler_with_virtual_clock_is_deterministic_and_windowed():
    clock = FakeClock()
    s = Sampler(FakeGpuMeter(clock, lambda t: 100 + t), clock, hz=10, extended=False).start()
    clock.sleep(2.05)
    s.stop()
    clock.sleep(1.0)
    assert len(s) == 21
    inside = s.samples(0.5, 1.0)
    assert [round(x.t_s, 6) for x in inside] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert s.samples(0.5, 1.0, before=2)[0].t_s == pytest.approx(0.3)
    assert inside[0].temp_c is None  # extended=False reads power and energy only


def test_fake_clock_runs_timers_in_order_and_cancels():
    clock, seen = FakeClock(10.0), []
    a = clock.every(0.5, lambda: seen.append(("a", clock.now())))
    clock.every(0.75, lambda: seen.append(("b", clock.now())))
    clock.sleep(1.6)
    assert seen == [("a", 10.5), ("b", 10.75), ("a", 11.0), ("a", 11.5), ("b", 11.5)]
    a.cancel()
    clock.advance(0.7)
    assert seen[5:] == [("b", 12.25)] and clock.now() == pytest.approx(12.3)


def test_fake_power_average_lags_like_nvml():
    clock = FakeClock()
    m = FakeGpuMeter(clock, lambda t: 300.0 if t >= 1.0 else 60.0, idle_power_w=60.0)
    clock.sleep(1.5)
    assert m.power_w() == 300.0  # instantaneous (as of the last 100 ms refresh)
    assert m.power_avg_w() == pytest.approx(180.0, abs=0.2)  # mean of the last 1 s
    assert m.utilization_pct() == 100.0
    trace = FakeGpuMeter(clock, [(0.0, 100.0), (10.0, 200.0)], has_instant_power=False)
    clock.sleep(5.0)
    assert trace.power_w() == trace.power_avg_w() == pytest.approx(145.0, abs=0.1)


# -- factory ------------------------------------------------------------------------------------
def test_factory_fake_and_errors(monkeypatch: pytest.MonkeyPatch):
    meters = get_meters("fake", [0, 1], clock=FakeClock(), idle_power_w=42.0)
    assert [m.index for m in meters] == [0, 1] and meters[1].power_w() == 42.0
    assert meters[0].uuid != meters[1].uuid and meters[0].info()["gpu_index"] == 0
    with pytest.raises(MeterUnavailable, match="unknown meter kind"):
        get_meters("amd")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    for kind in ("auto", "nvidia"):
        with pytest.raises(MeterUnavailable, match="--meter fake"):
            get_meters(kind)
