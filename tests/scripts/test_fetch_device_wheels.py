"""scripts/fetch_device_wheels.sh pins the versions the latest device session recorded (raw/*/pip-versions.txt),
so a rebuilt .whl/ carries what the committed records were measured with."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "fetch_device_wheels.sh"
PINS = {"bitsandbytes": "BITSANDBYTES", "torchao": "TORCHAO", "nvidia-ml-py": "NVIDIA_ML_PY"}


def _latest_session_versions() -> tuple[Path, dict[str, str]]:
    """(file, {package: version}) of the newest raw session folder named <date>-s<N>-<call>."""
    found = []
    for f in (REPO / "datasets" / "measurements").glob("*/raw/*/pip-versions.txt"):
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d)-s(\d+)-([a-z])", f.parent.name)
        if m:
            found.append(((m.group(1), int(m.group(2)), m.group(3)), f))
    assert found, "no raw/<date>-s<N>-<call>/pip-versions.txt"
    path = max(found)[1]
    versions = dict(line.split()[:2] for line in path.read_text().splitlines() if len(line.split()) >= 2)
    return path, versions


def test_pins_match_the_latest_recorded_versions():
    text = SCRIPT.read_text()
    path, recorded = _latest_session_versions()
    for package, var in PINS.items():
        pin = re.search(rf"^{var}=(\S+)$", text, re.M)
        assert pin, f"{var} not set in {SCRIPT.name}"
        assert recorded.get(package) == pin.group(1), f"{package}: {path} records {recorded.get(package)}"
        assert f"{package}==${var}" in text or f'"{package}==${var}"' in text  # the pin is what gets downloaded


def test_it_slims_bitsandbytes_as_the_plan_says():
    text = SCRIPT.read_text()
    plan = (REPO / "measure" / "plans" / "next.txt").read_text()
    for drop in ("'bitsandbytes/libbitsandbytes_rocm*'", "'bitsandbytes/libbitsandbytes_cuda1[12]*'"):
        assert f"--drop {drop}" in text and drop in plan
