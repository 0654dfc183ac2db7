"""`measure meter -- CMD`: a real subprocess metered with the replay device."""

from __future__ import annotations

import json
import sys

import pytest

from measure.meter import FakeGpuMeter, RealClock
from measure.metercmd import meter_main, render_meter, run_metered
from recommender.errors import UserError
from tests.fixtures.rapl import rapl_zone


def test_run_metered_measures_a_real_command(tmp_path):
    rapl = rapl_zone(tmp_path, energy_uj=1_000_000)
    clock = RealClock()
    meters = [FakeGpuMeter(clock, 200.0), FakeGpuMeter(clock, 100.0, index=1)]
    # the command sleeps 0.3 s and "uses" 2.5 J of CPU by bumping the fake RAPL counter
    code = f"import time; time.sleep(0.3); open({str(rapl / 'energy_uj')!r}, 'w').write('3500000')"
    r = run_metered([sys.executable, "-c", code], meters, clock, sample_hz=20, rapl_root=tmp_path)
    assert r.exit_code == 0 and r.method == "counter" and r.meter_kind == "fake"
    assert 0.3 <= r.duration_s < 2.0
    g0, g1 = r.gpus
    # the counter moves in 100 ms steps: within one step of power x duration
    assert abs(g0.energy_j - 200 * g0.duration_s) <= 200 * 0.1 + 1e-6
    assert g0.energy_sampled_j == pytest.approx(200 * g0.duration_s, rel=0.01)
    assert r.energy_j == pytest.approx(g0.energy_j + g1.energy_j)
    assert g0.too_short and g0.samples_n >= 5
    assert r.cpu_energy_j == pytest.approx(2.5) and r.cpu_energy_note == "rapl: package-0"
    text = render_meter(r, ["Fake A", "Fake B"])
    assert "exit 0" in text and "Fake A" in text and "all" in text and "minimum window" in text


def test_run_metered_returns_the_exit_code_and_signal(tmp_path):
    meters = [FakeGpuMeter(RealClock(), 80.0)]
    r = run_metered([sys.executable, "-c", "import sys; sys.exit(3)"], meters, rapl_root=tmp_path)
    assert r.exit_code == 3 and r.energy_j > 0  # tiny window: sampled, never zero
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert run_metered(["--", sys.executable, "-c", kill], meters, rapl_root=tmp_path).exit_code == 128 + 15
    with pytest.raises(UserError, match="cannot run"):
        run_metered(["/nonexistent/tool"], meters, rapl_root=tmp_path)
    with pytest.raises(UserError, match="no command"):
        run_metered(["--"], meters)


def test_meter_main_prints_table_and_json(capfd):
    assert meter_main(["--", sys.executable, "-c", "print('hello')"], "fake", json=True, sample_hz=10) == 0
    out, err = capfd.readouterr()
    assert out.startswith("hello\n")
    assert json.loads(out[len("hello\n"):])["exit_code"] == 0
    assert "Fake GPU" in err and "energy J" in err
    assert meter_main([sys.executable, "-c", "raise SystemExit(5)"], "fake") == 5
    assert meter_main([], "fake") == 2
