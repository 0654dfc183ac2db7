"""NVIDIA GPUs through NVML (package `nvidia-ml-py`, module `pynvml`, imported lazily).

Energy: `nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load; Volta and newer).
Power: field `NVML_FI_DEV_POWER_INSTANT` where the driver has it, else `nvmlDeviceGetPowerUsage`
(which averages over 1 s on Ampere and newer, except GA100). Power-capped time: `nvmlDeviceGetViolationStatus`
with `NVML_PERF_POLICY_POWER` (ns held below application clocks by the power limit, cumulative). NVML is thread-safe; each meter holds one
`nvmlInit` reference and releases it in `close()`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from measure.meter.base import EnergyCounterUnsupported, GpuMeter, GpuProcess, MeterUnavailable

_FAKE_HINT = "pass --meter fake to try the tools without a GPU"


def _s(x: Any) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def load_nvml() -> Any:
    """Import pynvml and initialise NVML (one reference); MeterUnavailable with a reason otherwise."""
    try:
        import pynvml
    except ImportError as e:
        raise MeterUnavailable(f"nvidia-ml-py is not installed (pip install nvidia-ml-py); {_FAKE_HINT}") from e
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise MeterUnavailable(f"NVML could not start ({e}): no NVIDIA driver or GPU here; {_FAKE_HINT}") from e
    return pynvml


def _field_value(v: Any) -> float:
    u = v.value
    return float((u.dVal, u.uiVal, u.ulVal, u.ullVal, u.sllVal, u.siVal, u.usVal)[v.valueType])


def _process_name(nv: Any, pid: int) -> str:
    try:
        return Path(_s(nv.nvmlSystemGetProcessName(pid))).name
    except Exception:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return "?"


class NvidiaGpuMeter(GpuMeter):
    """One NVIDIA GPU by NVML index."""

    kind = "nvidia"

    def __init__(self, index: int = 0):
        nv = load_nvml()
        self._nv, self._closed = nv, False
        try:
            count = nv.nvmlDeviceGetCount()
            if not 0 <= index < count:
                raise MeterUnavailable(f"no GPU with index {index}: NVML sees {count} GPU(s)")
            self._h = h = nv.nvmlDeviceGetHandleByIndex(index)
            self.index = index
            self.name = _s(nv.nvmlDeviceGetName(h))
            self.uuid = _s(nv.nvmlDeviceGetUUID(h))
            self.driver_version = _s(nv.nvmlSystemGetDriverVersion())
            self.nvml_version = _s(nv.nvmlSystemGetNVMLVersion())
            cuda = self._try(nv.nvmlSystemGetCudaDriverVersion)
            self.cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None
            limit_mw = self._try(nv.nvmlDeviceGetEnforcedPowerLimit, h) or self._try(
                nv.nvmlDeviceGetPowerManagementLimit, h)
            self.power_limit_w = limit_mw / 1000.0 if limit_mw else None
            cc = self._try(nv.nvmlDeviceGetCudaComputeCapability, h)
            self.compute_capability = f"{cc[0]}.{cc[1]}" if cc else None
            mem = self._try(nv.nvmlDeviceGetMemoryInfo, h)
            self.memory_total_gb = mem.total / 1e9 if mem else None
            self.energy_counter_note: str | None = None
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(h)
                self.supports_energy_counter = True
            except nv.NVMLError as e:
                self.supports_energy_counter = False
                self.energy_counter_note = str(e)
            self._has_instant = self._instant_power_mw() is not None
            # ...EventReasons is the current name; ...ThrottleReasons goes away with CUDA 14's NVML
            candidates = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None),
                          getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
            self._reasons_fn = next((f for f in candidates if f is not None and self._try(f, h) is not None), None)
        except Exception:
            self.close()
            raise

    @staticmethod
    def _try(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            return None

    def _instant_power_mw(self) -> float | None:
        nv = self._nv
        if not hasattr(nv, "NVML_FI_DEV_POWER_INSTANT"):
            return None
        try:
            v = nv.nvmlDeviceGetFieldValues(self._h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
        except nv.NVMLError:
            return None
        if v.nvmlReturn != nv.NVML_SUCCESS:
            return None
        mw = _field_value(v)
        return mw if mw > 0 else None

    # -- readings -----------------------------------------------------------------------------
    def energy_mj(self) -> int:
        if not self.supports_energy_counter:
            raise EnergyCounterUnsupported(f"{self.name}: {self.energy_counter_note or 'no energy counter'}")
        try:
            return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h))
        except self._nv.NVMLError_NotSupported as e:
            raise EnergyCounterUnsupported(f"{self.name}: {e}") from e

    def power_w(self) -> float:
        if self._has_instant:
            mw = self._instant_power_mw()
            if mw is not None:
                return mw / 1000.0
        return self.power_avg_w()

    def power_avg_w(self) -> float:
        return self._nv.nvmlDeviceGetPowerUsage(self._h) / 1000.0

    def temperature_c(self) -> float:
        return float(self._nv.nvmlDeviceGetTemperature(self._h, self._nv.NVML_TEMPERATURE_GPU))

    def sm_clock_mhz(self) -> float:
        return float(self._nv.nvmlDeviceGetClockInfo(self._h, self._nv.NVML_CLOCK_SM))

    def mem_clock_mhz(self) -> float:
        return float(self._nv.nvmlDeviceGetClockInfo(self._h, self._nv.NVML_CLOCK_MEM))

    def utilization_pct(self) -> float:
        return float(self._nv.nvmlDeviceGetUtilizationRates(self._h).gpu)

    def throttle_mask(self) -> int:
        if self._reasons_fn is None:
            raise RuntimeError(f"{self.name}: clocks-event reasons not supported")
        return int(self._reasons_fn(self._h))

    def power_capped_ns(self) -> int | None:
        nv = self._nv
        try:
            return int(nv.nvmlDeviceGetViolationStatus(self._h, nv.NVML_PERF_POLICY_POWER).violationTime)
        except (nv.NVMLError, AttributeError):  # not supported on this card or driver, or an older pynvml
            return None

    def memory_used_gb(self) -> float:
        return self._nv.nvmlDeviceGetMemoryInfo(self._h).used / 1e9

    def processes(self) -> list[GpuProcess]:
        nv, seen = self._nv, {}
        for fn in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                procs = fn(self._h)
            except nv.NVMLError:
                continue
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                if p.pid not in seen:
                    seen[p.pid] = GpuProcess(int(p.pid), _process_name(nv, p.pid),
                                             used / 1e9 if used is not None else None)
        return list(seen.values())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._nv.nvmlShutdown()


def nvidia_meters(indices: list[int] | None = None) -> list[NvidiaGpuMeter]:
    """Meters for the given NVML indices (all GPUs if None)."""
    nv = load_nvml()  # hold one NVML reference while the meters take theirs
    meters: list[NvidiaGpuMeter] = []
    try:
        count = nv.nvmlDeviceGetCount()
        if count == 0:
            raise MeterUnavailable(f"NVML started but sees no GPU; {_FAKE_HINT}")
        for i in range(count) if indices is None else indices:
            meters.append(NvidiaGpuMeter(i))
    except Exception:
        for m in meters:
            m.close()
        raise
    finally:
        nv.nvmlShutdown()
    return meters


def nvml_index_for_cuda(cuda_index: int, visible: str | None = None) -> int:
    """NVML index of CUDA device `cuda_index`, honouring CUDA_VISIBLE_DEVICES (indices or GPU UUIDs).

    NVML always numbers every GPU in PCI bus order; CUDA numbers only the visible ones, in PCI bus order when
    CUDA_DEVICE_ORDER=PCI_BUS_ID (set it on multi-GPU hosts: CUDA's default order may differ from NVML's).
    """
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is None or not visible.strip():
        return cuda_index
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if not 0 <= cuda_index < len(entries):
        raise MeterUnavailable(f"cuda:{cuda_index} is not visible (CUDA_VISIBLE_DEVICES={visible})")
    entry = entries[cuda_index]
    if entry.lstrip("-").isdigit():
        return int(entry)
    if entry.startswith("MIG-"):
        raise MeterUnavailable(f"{entry}: MIG instances have no energy counter of their own; meter the whole GPU")
    nv = load_nvml()
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            if _s(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))).startswith(entry):
                return i
    finally:
        nv.nvmlShutdown()
    raise MeterUnavailable(f"no GPU with UUID {entry} (CUDA_VISIBLE_DEVICES={visible})")
