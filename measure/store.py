"""Append-only JSONL store of `Record`s: atomic, durable appends and resume by (cell hash, GPU name).

Each append is one `os.write` of a whole line on an `O_APPEND` descriptor followed by `os.fsync`, so a
killed process leaves at most one incomplete *last* line. Readers ignore such a line; the next writer
moves its bytes to `<file>.torn` and truncates the file back to the last complete line before appending,
so a torn line is never duplicated, never glued to the next record and never crashes a reader. Only one
process may write a store at a time (an exclusive `flock`, released by the kernel even on SIGKILL).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from measure.record import Record, SchemaError

DONE_STATUSES = ("ok", "skipped")  # a `failed` record counts as done unless retry_failed=False


class StoreError(RuntimeError):
    """The store cannot be written (held by another process, not writable)."""


ResumeKey = tuple[str, str | None]  # (cell_hash, gpu_name)


def resume_key(rec: Record) -> ResumeKey:
    return (rec.cell_hash, rec.gpu_name)


class Store:
    """One JSONL file of records. Opening for writing is lazy (first `append`)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fd: int | None = None
        self.bad_lines = 0  # complete lines that could not be parsed (counted by the last read)
        self.torn_bytes = 0  # bytes of an incomplete last line seen by the last read or repair

    # ---------------------------------------------------------------------------------- writing
    def append(self, rec: Record) -> None:
        """Validate and append one record durably (one write + fsync)."""
        rec.validate()
        line = rec.to_json()
        if "\n" in line:  # json.dumps escapes newlines; a raw one would split the record
            raise SchemaError("a serialised record contains a newline")
        data = (line + "\n").encode()
        fd = self._open_for_append()
        written = os.write(fd, data)
        while written < len(data):  # a regular file only writes short on ENOSPC-like conditions
            n = os.write(fd, data[written:])
            if n <= 0:
                raise StoreError(f"{self.path}: short write")
            written += n
        os.fsync(fd)

    def _open_for_append(self) -> int:
        if self._fd is not None:
            return self._fd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _lock(fd, self.path)
            self._repair(fd)
        except BaseException:
            os.close(fd)
            raise
        if created:
            _fsync_dir(self.path.parent)
        self._fd = fd
        return fd

    def _repair(self, fd: int) -> None:
        """Cut an incomplete last line (from a killed writer) and keep its bytes in `<file>.torn`."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        end = _last_newline_end(fd, size)
        torn = os.pread(fd, size - end, end)
        with open(self.path.with_name(self.path.name + ".torn"), "ab") as f:
            f.write(torn + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.ftruncate(fd, end)
        os.fsync(fd)
        self.torn_bytes = len(torn)
        warnings.warn(f"{self.path}: removed an incomplete last line ({len(torn)} bytes, kept in "
                      f"{self.path.name}.torn); its cell will be measured again", RuntimeWarning, stacklevel=3)

    def repair(self) -> int:
        """Repair now (normally done on the first append); returns the bytes removed."""
        self.torn_bytes = 0
        if self.path.exists():
            self._open_for_append()
        return self.torn_bytes

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the flock
            self._fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    # ---------------------------------------------------------------------------------- reading
    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Raw dicts of the complete, parseable lines; a torn last line is skipped silently."""
        self.bad_lines = 0
        self.torn_bytes = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        if lines and lines[-1]:
            self.torn_bytes = len(lines[-1])
        for i, raw in enumerate(lines[:-1], 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError) as e:
                self.bad_lines += 1
                warnings.warn(f"{self.path}:{i}: skipping an unreadable line ({e})", RuntimeWarning,
                              stacklevel=2)
                continue
            yield obj

    def iter_records(self, *, strict: bool = False) -> Iterator[Record]:
        """Records in file order. Lines that break the schema are skipped with a warning (or raise
        SchemaError with `strict=True`)."""
        for d in self.iter_dicts():
            try:
                yield Record.from_dict(d)
            except (SchemaError, TypeError) as e:
                if strict:
                    raise SchemaError(f"{self.path}: {e}") from e
                self.bad_lines += 1
                warnings.warn(f"{self.path}: skipping a record that breaks the schema ({e})", RuntimeWarning,
                              stacklevel=2)

    def records(self, *, strict: bool = False) -> list[Record]:
        return list(self.iter_records(strict=strict))

    def latest(self) -> dict[ResumeKey, Record]:
        """The last record of each (cell hash, gpu name): a retried cell's newest outcome."""
        out: dict[ResumeKey, Record] = {}
        for r in self.iter_records():
            out[resume_key(r)] = r
        return out

    def done_hashes(self, retry_failed: bool = False) -> set[ResumeKey]:
        """Resume keys `(cell_hash, gpu_name)` of cells that need no new run. `ok` and `skipped` records
        count as done; `failed` ones too unless `retry_failed` (then only a later ok/skipped counts)."""
        return done_keys(self.iter_records(), retry_failed)

    def __len__(self) -> int:
        return sum(1 for _ in self.iter_dicts())


def done_keys(records: Iterable[Record], retry_failed: bool = False) -> set[ResumeKey]:
    """Resume keys of `records` that need no new run (see `Store.done_hashes`)."""
    return {resume_key(r) for r in records
            if r.status in DONE_STATUSES or (r.status == "failed" and not retry_failed)}


def merge_stores(target: str | os.PathLike[str], sources: Iterable[str | os.PathLike[str]]) -> int:
    """Append to `target` every record of `sources` whose `record_id` it lacks; return how many.

    All sources are read strictly (schema-validated) before anything is written, so a bad source adds
    nothing. Order is kept: sources in the order given, records in file order."""
    tgt = Store(target)
    seen = {d.get("record_id") for d in tgt.iter_dicts()} if tgt.path.exists() else set()
    new: list[Record] = []
    for src in sources:
        if Path(src).resolve() == tgt.path.resolve():
            continue
        for rec in Store(src).iter_records(strict=True):
            if rec.record_id in seen:
                continue
            seen.add(rec.record_id)
            new.append(rec)
    with tgt:
        for rec in new:
            tgt.append(rec)
    return len(new)


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise StoreError(f"{path}: another process is writing to this store") from None
        raise


def _last_newline_end(fd: int, size: int, chunk: int = 1 << 16) -> int:
    """Offset just after the last b'\\n' in the file (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        buf = os.pread(fd, pos - start, start)
        i = buf.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass
    finally:
        os.close(dfd)


def export_parquet(path_jsonl: str | os.PathLike[str], path_parquet: str | os.PathLike[str]) -> int:
    """Write the store's records to Parquet (needs pandas + pyarrow); returns the number of rows.

    Dict fields (quant_params, engine_params) become JSON strings; list fields stay lists.
    """
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise StoreError(f"Parquet export needs pandas and pyarrow (pip install 'energy-recommender[train]'): "
                         f"{e}") from e
    from measure.record import field_names

    rows = [r.to_dict() for r in Store(path_jsonl).iter_records()]
    for row in rows:
        for k, v in row.items():
            if isinstance(v, dict):
                row[k] = json.dumps(v, sort_keys=True)
    df = pd.DataFrame(rows, columns=field_names())
    table = pa.Table.from_pandas(df, preserve_index=False)
    out = Path(path_parquet)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return len(df)
