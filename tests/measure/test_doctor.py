"""`measure doctor` on the replay device."""

from __future__ import annotations

import json
import sys

import pytest

from measure.doctor import doctor_main, render_doctor, resolve_catalogue_id, run_doctor
from measure.meter import FakeClock, FakeGpuMeter


def test_doctor_report_on_fake_gpus(tmp_path):
    clock = FakeClock()
    good = FakeGpuMeter(clock, 72.5, name="NVIDIA H100 80GB HBM3", counter_phase_s=0.011,
                        temperature_c=31.0)
    old = FakeGpuMeter(clock, lambda t: 40 + (t * 10 % 3), name="Tesla P100-PCIE-16GB", index=1,
                       supports_energy_counter=False, compute_capability="6.0", update_period_s=0.05)
    old.add_process(4242, "jupyter", 7.0)
    old.set_throttle_reasons(["gpu_idle", "hw_thermal"])
    report = run_doctor([good, old], clock, detect_s=1.0, rapl_root=tmp_path,
                        resolve=lambda name: "h100-sxm" if "H100" in name else None)
    g0, g1 = report.gpus
    assert (g0.catalogue_id, g0.energy_counter, g0.compute_capability) == ("h100-sxm", True, "9.0")
    assert g0.update_period_ms == pytest.approx(100, abs=1) and g0.min_window_s == pytest.approx(1.0, abs=0.01)
    assert g0.power_w == 72.5 and g0.temperature_c == 31.0 and g0.power_limit_w == 700.0
    assert g0.other_processes == [] and g0.throttle_reasons == []
    assert g1.catalogue_id is None and not g1.energy_counter
    assert g1.update_period_ms == pytest.approx(50, abs=1)  # timed on the power reading
    assert g1.other_processes == [{"pid": 4242, "name": "jupyter", "used_gb": 7.0}]
    assert g1.throttle_reasons == ["hw_thermal"]
    assert not report.rapl_readable and report.rapl_note == "no RAPL on this machine"
    warnings = "\n".join(report.warnings)
    for part in ("GPU 1: no energy counter", "GPU 1: 1 other process", "hw_thermal",
                 "'Tesla P100-PCIE-16GB' is not in the GPU catalogue"):
        assert part in warnings
    assert "GPU 0" not in warnings
    text = render_doctor(report)
    assert "catalogue id        h100-sxm" in text and "not in catalogue" in text
    assert "NO (sampled power)" in text and "4242 jupyter (7.00 GB)" in text
    assert json.loads(json.dumps(report.to_dict()))["gpus"][1]["energy_counter"] is False
    # the fake card reports its power-capped time; a card whose driver does not is named so
    assert g0.power_capped_time is True
    old.power_capped_ns = lambda: None
    report = run_doctor([good, old], clock, detect_s=1.0, rapl_root=tmp_path)
    assert report.gpus[1].power_capped_time is False
    assert "power-capped time   not reported" in render_doctor(report)


def test_default_catalogue_resolver_never_raises():
    for name in ("NVIDIA H100 80GB HBM3", "Fake GPU", ""):
        got = resolve_catalogue_id(name)
        assert got is None or isinstance(got, str)


def test_doctor_main_json_and_unavailable(capsys, monkeypatch):
    assert doctor_main(json=True, meter_kind="fake", detect_s=0.3) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meter_kind"] == "fake" and out["gpus"][0]["name"] == "Fake GPU"
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert doctor_main(meter_kind="nvidia") == 2
    assert "--meter fake" in capsys.readouterr().err
