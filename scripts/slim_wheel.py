"""Rewrite a wheel without the files a lent machine never loads, so that the carried wheels fit the device tool's
64 MiB limit (the working tree travels with them).

    python scripts/slim_wheel.py .whl/bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl \
        --drop 'bitsandbytes/libbitsandbytes_rocm*' --drop 'bitsandbytes/libbitsandbytes_cuda1[12]*'

Every member whose name matches a `--drop` pattern (fnmatch, on the path inside the wheel) is left out, and so is
its line in the dist-info RECORD; every other member is copied byte for byte (the RECORD's hashes of the kept
files stay true). The wheel is rewritten in place unless `--out` names another file; the original can be kept
with `--keep-original DIR`. Refused: a pattern that matches nothing (a typo would silently keep everything), or one
that matches the dist-info (the wheel would no longer install).

Session s11 (bitsandbytes 0.50.2, 43.1 -> 7.4 MB): the lent machines run torch 2.11.0+cu130, for which
bitsandbytes loads libbitsandbytes_cuda130.so; the CUDA 11.8-12.8 and ROCm libraries were dropped.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import tempfile
import zipfile
from pathlib import Path


def slim(wheel: Path, drop: list[str], out: Path | None = None) -> tuple[list[str], int, int]:
    """Write `wheel` without the members matching `drop` to `out` (default: in place); returns (dropped names,
    size before, size after) in bytes."""
    out = out or wheel
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        record = next((n for n in names if n.endswith(".dist-info/RECORD")), None)
        if record is None:
            raise SystemExit(f"slim: {wheel} has no dist-info RECORD: not a wheel")
        dropped = [n for n in names if any(fnmatch.fnmatch(n, p) for p in drop)]
        for p in drop:
            if not any(fnmatch.fnmatch(n, p) for n in names):
                raise SystemExit(f"slim: --drop {p!r} matches nothing in {wheel.name}")
        if any(".dist-info/" in n for n in dropped):
            raise SystemExit("slim: a --drop pattern matches the dist-info; the wheel would not install")
        gone = set(dropped)
        lines = z.read(record).decode("utf-8").splitlines(keepends=True)
        kept_record = "".join(ln for ln in lines if ln.split(",", 1)[0] not in gone)
        size_before = wheel.stat().st_size
        with (tempfile.NamedTemporaryFile(dir=out.parent, suffix=".whl", delete=False) as tmp,
              zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as w):
            for info in z.infolist():
                if info.filename in gone:
                    continue
                w.writestr(info, kept_record.encode("utf-8") if info.filename == record else z.read(info))
    Path(tmp.name).replace(out)
    return dropped, size_before, out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("--drop", action="append", required=True, help="fnmatch pattern of members to leave out")
    ap.add_argument("--out", type=Path, help="write here instead of in place")
    ap.add_argument("--keep-original", type=Path, metavar="DIR", help="copy the original wheel here first")
    args = ap.parse_args(argv)
    if args.keep_original:
        args.keep_original.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.wheel, args.keep_original / args.wheel.name)
    dropped, before, after = slim(args.wheel, args.drop, args.out)
    print(f"{args.out or args.wheel}: {len(dropped)} members dropped, {before / 1e6:.1f} -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
