"""CPU package energy from Linux powercap RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`).

The counters are in microjoules and wrap at `max_energy_range_uj` (minutes at full load on big
servers), so call `RaplMeter.poll()` at least every few minutes during long windows. Since Linux 5.10
`energy_uj` is readable by root only (CVE-2020-8694); then `open_rapl()` returns None and the reason.
AMD Zen CPUs expose the same interface.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    name: str  # e.g. "package-0"
    path: Path  # the zone's folder
    max_energy_range_uj: int  # the counter wraps to 0 past this value


def wrap_delta_uj(prev_uj: int, cur_uj: int, max_range_uj: int) -> int:
    """Counter increase between two reads, allowing for one wrap at `max_range_uj`."""
    return cur_uj - prev_uj if cur_uj >= prev_uj else cur_uj + max_range_uj - prev_uj


class RaplMeter:
    """Sum of the package zones' energy since `start()`, J. Thread-safe."""

    def __init__(self, zones: list[RaplZone]):
        self.zones = zones
        self._lock = threading.Lock()
        self._last: list[int] | None = None
        self._total_uj = 0

    @property
    def description(self) -> str:
        return "rapl: " + "+".join(z.name for z in self.zones)

    def read_uj(self) -> list[int]:
        return [int((z.path / "energy_uj").read_text()) for z in self.zones]

    def start(self) -> RaplMeter:
        with self._lock:
            self._last, self._total_uj = self.read_uj(), 0
        return self

    def poll(self) -> float:
        """Fold the counters' increase since the last read into the total; return the total, J."""
        with self._lock:
            if self._last is None:
                raise RuntimeError("RaplMeter.poll() before start()")
            cur = self.read_uj()
            for z, a, b in zip(self.zones, self._last, cur, strict=True):
                self._total_uj += wrap_delta_uj(a, b, z.max_energy_range_uj)
            self._last = cur
            return self._total_uj / 1e6

    def energy_j(self) -> float:
        return self.poll()


def open_rapl(root: Path | str = POWERCAP_ROOT) -> tuple[RaplMeter | None, str]:
    """(meter, description) when the package counters are readable, else (None, reason)."""
    root = Path(root)
    dirs = sorted(d for d in root.glob("intel-rapl:*") if d.name.count(":") == 1) if root.is_dir() else []
    if not dirs:
        return None, "no RAPL on this machine"
    zones: list[RaplZone] = []
    for d in dirs:
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            name = d.name
        try:
            int((d / "energy_uj").read_text())
        except PermissionError:
            return None, "not readable: permission denied (energy_uj is root-only since Linux 5.10)"
        except (OSError, ValueError) as e:
            return None, f"not readable: {e}"
        try:
            max_uj = int((d / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            max_uj = 2**32  # unknown: a wrap still yields a positive (approximate) delta
        zones.append(RaplZone(name, d, max_uj))
    packages = [z for z in zones if z.name.startswith("package")]
    # psys (platform) zones include the packages: never add both
    meter = RaplMeter(packages or zones)
    return meter, meter.description
