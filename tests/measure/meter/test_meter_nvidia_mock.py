"""NvidiaGpuMeter against a mocked NVML (the real pynvml module with its C calls replaced)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

pynvml = pytest.importorskip("pynvml")

from measure.meter import EnergyCounterUnsupported, MeterUnavailable  # noqa: E402
from measure.meter.nvidia import NvidiaGpuMeter, nvidia_meters  # noqa: E402


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Two H100s; GPU 1 plays a counter-less card without the instant-power field."""
    state = SimpleNamespace(inits=0, energy=[10_000_000, 0], instant=[312_345, None])
    nv = pynvml

    def energy(h):
        if h == 1:
            raise nv.NVMLError(nv.NVML_ERROR_NOT_SUPPORTED)
        state.energy[h] += 1234
        return state.energy[h]

    def fields(h, ids):
        vals = (nv.c_nvmlFieldValue_t * len(ids))()
        for v, fid in zip(vals, ids, strict=True):
            v.fieldId = fid
            if state.instant[h] is None:
                v.nvmlReturn = nv.NVML_ERROR_NOT_SUPPORTED
            else:
                v.nvmlReturn, v.valueType = nv.NVML_SUCCESS, nv.NVML_VALUE_TYPE_UNSIGNED_INT
                v.value.uiVal = state.instant[h]
        return vals

    def init():
        state.inits += 1

    def shutdown():
        state.inits -= 1

    procs = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=int(3e9)), SimpleNamespace(pid=777, usedGpuMemory=None)]

    def violation(h, policy):  # GPU 1 does not report it
        if h == 1 or policy != nv.NVML_PERF_POLICY_POWER:
            raise nv.NVMLError(nv.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(referenceTime=1, violationTime=2_500_000_000)
    fakes = {
        "nvmlInit": init, "nvmlShutdown": shutdown, "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetName": lambda h: "NVIDIA H100 80GB HBM3", "nvmlDeviceGetUUID": lambda h: f"GPU-{h}",
        "nvmlSystemGetDriverVersion": lambda: "580.159.04", "nvmlSystemGetNVMLVersion": lambda: "13.580.159.04",
        "nvmlSystemGetCudaDriverVersion": lambda: 13000,
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700_000,
        "nvmlDeviceGetCudaComputeCapability": lambda h: (9, 0),
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=int(80e9), used=int(2.5e9), free=0),
        "nvmlDeviceGetTotalEnergyConsumption": energy, "nvmlDeviceGetFieldValues": fields,
        "nvmlDeviceGetPowerUsage": lambda h: 250_000,
        "nvmlDeviceGetTemperature": lambda h, sensor: 45,
        "nvmlDeviceGetClockInfo": lambda h, kind: {nv.NVML_CLOCK_SM: 1980, nv.NVML_CLOCK_MEM: 2619}[kind],
        "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(gpu=97, memory=40),
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: 0x1 | 0x4,
        "nvmlDeviceGetComputeRunningProcesses": lambda h: procs,
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: procs[1:],
        "nvmlSystemGetProcessName": lambda pid: "/usr/bin/python3",
        "nvmlDeviceGetViolationStatus": violation,
    }
    for name, fn in fakes.items():
        monkeypatch.setattr(nv, name, fn)
    return state


def test_nvidia_meter_reads_identity_and_values(nvml):
    meters = nvidia_meters()
    m0, m1 = meters
    assert nvml.inits == 2  # one NVML reference per meter, the factory's own released
    assert m0.info() == {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_uuid": "GPU-0", "gpu_index": 0,
                         "driver_version": "580.159.04", "cuda_version": "13.0",
                         "nvml_version": "13.580.159.04", "power_limit_w": 700.0, "compute_capability": "9.0"}
    assert m0.supports_energy_counter and m0.memory_total_gb == 80.0
    assert m0.energy_mj() - m0.energy_mj() == -1234
    assert m0.power_w() == pytest.approx(312.345)  # instantaneous field
    assert m0.power_avg_w() == 250.0
    assert m0.throttle_reasons() == ["gpu_idle", "sw_power_cap"]
    assert m0.other_processes() == [(777, "python3", None)]  # ours excluded, duplicates merged
    assert (m0.temperature_c(), m0.sm_clock_mhz(), m0.mem_clock_mhz(), m0.utilization_pct()) == (45, 1980, 2619, 97)
    assert m0.memory_used_gb() == 2.5
    assert m0.power_capped_ns() == 2_500_000_000 and m1.power_capped_ns() is None  # the power policy's time
    assert m0.sample(1.0).energy_mj is None  # the slow counter read is opt-in
    s = m0.sample(1.0, energy=True)
    assert s.energy_mj is not None and s.power_w == pytest.approx(312.345) and s.throttle_mask == 5

    assert not m1.supports_energy_counter and "Not Supported" in m1.energy_counter_note
    with pytest.raises(EnergyCounterUnsupported):
        m1.energy_mj()
    assert m1.power_w() == 250.0  # no instant field: the average
    assert m1.sample(0.0, energy=True).energy_mj is None
    for m in meters:
        m.close()
        m.close()
    assert nvml.inits == 0


def test_nvidia_meter_errors_are_clear(nvml, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(MeterUnavailable, match="no GPU with index 5: NVML sees 2"):
        NvidiaGpuMeter(5)
    assert nvml.inits == 0

    def no_lib():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_lib)
    with pytest.raises(MeterUnavailable, match="NVML could not start .*--meter fake"):
        nvidia_meters()


def test_nvidia_meter_falls_back_to_the_old_throttle_call(nvml, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", lambda h: 0x40)
    with NvidiaGpuMeter(0) as m:
        assert m.throttle_reasons() == ["hw_thermal"]
    monkeypatch.delattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons")
    with NvidiaGpuMeter(0) as m:
        assert m.sample(0.0).throttle_mask is None  # unsupported reading: the sample survives
    assert nvml.inits == 0


def test_cuda_index_maps_to_nvml_index_through_visible_devices(nvml):
    from measure.meter.nvidia import nvml_index_for_cuda

    assert nvml_index_for_cuda(1, visible="") == 1
    assert nvml_index_for_cuda(0, visible="1") == 1
    assert nvml_index_for_cuda(1, visible="1,0") == 0
    assert nvml_index_for_cuda(0, visible="GPU-1") == 1  # UUIDs (prefixes too), as CUDA accepts them
    assert nvml_index_for_cuda(0, visible="GPU-0,GPU-1") == 0 and nvml.inits == 0
    with pytest.raises(MeterUnavailable, match="not visible"):
        nvml_index_for_cuda(1, visible="0")
    with pytest.raises(MeterUnavailable, match="no GPU with UUID"):
        nvml_index_for_cuda(0, visible="GPU-9")
    with pytest.raises(MeterUnavailable, match="MIG"):
        nvml_index_for_cuda(0, visible="MIG-abc")
