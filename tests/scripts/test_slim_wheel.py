"""scripts/slim_wheel.py: the dropped members and their RECORD lines go, every other member is kept byte for
byte."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.fixtures.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
slim_wheel = load_script(REPO / "scripts" / "slim_wheel.py")

RECORD = "pkg-1.0.dist-info/RECORD"


@pytest.fixture
def wheel(tmp_path) -> Path:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    members = {"pkg/__init__.py": b"x = 1\n", "pkg/lib_cuda118.so": b"\0" * 5000, "pkg/lib_cuda130.so": b"\1" * 3000,
               "pkg/lib_rocm64.so": b"\2" * 4000, "pkg-1.0.dist-info/METADATA": b"Name: pkg\n"}
    record = "".join(f"{n},sha256=abc,{len(d)}\n" for n, d in members.items()) + f"{RECORD},,\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
        z.writestr(RECORD, record)
    return path


def test_dropped_members_leave_the_wheel_and_its_record(wheel, tmp_path):
    dropped, before, after = slim_wheel.slim(wheel, ["pkg/lib_rocm*", "pkg/lib_cuda1[12]*"], tmp_path / "out.whl")
    assert sorted(dropped) == ["pkg/lib_cuda118.so", "pkg/lib_rocm64.so"]
    with zipfile.ZipFile(tmp_path / "out.whl") as z, zipfile.ZipFile(wheel) as orig:
        assert sorted(z.namelist()) == sorted(set(orig.namelist()) - set(dropped))
        assert all(z.read(n) == orig.read(n) for n in z.namelist() if n != RECORD)
        record = z.read(RECORD).decode()
    assert "lib_cuda118" not in record and "lib_rocm64" not in record and "pkg/lib_cuda130.so," in record
    assert len(record.splitlines()) == 4
    assert wheel.stat().st_size == before and (tmp_path / "out.whl").stat().st_size == after


def test_a_pattern_matching_nothing_or_the_dist_info_is_refused(wheel):
    with pytest.raises(SystemExit, match="matches nothing"):
        slim_wheel.slim(wheel, ["pkg/lib_cuda99*"])
    with pytest.raises(SystemExit, match="dist-info"):
        slim_wheel.slim(wheel, ["pkg-1.0.dist-info/*"])
    with zipfile.ZipFile(wheel) as z:  # refused before writing: the wheel is whole
        assert len(z.namelist()) == 6


def test_in_place_with_the_original_kept(wheel, tmp_path, capsys):
    assert slim_wheel.main([str(wheel), "--drop", "pkg/lib_rocm*", "--keep-original", str(tmp_path / "orig")]) == 0
    with zipfile.ZipFile(wheel) as z:
        assert "pkg/lib_rocm64.so" not in z.namelist()
    with zipfile.ZipFile(tmp_path / "orig" / wheel.name) as z:
        assert "pkg/lib_rocm64.so" in z.namelist()
    assert "1 members dropped" in capsys.readouterr().out
