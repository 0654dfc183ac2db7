"""JSONL store: atomic durable appends, torn-line repair, resume keys, Parquet export."""

from __future__ import annotations

import json
import os

import pytest

from measure.record import Record, SchemaError
from measure.store import Store, StoreError, export_parquet


def rec(h: str = "a" * 16, status: str = "ok", gpu: str | None = "NVIDIA H100 80GB HBM3", **kw) -> Record:
    r = Record(cell_hash=h, model="tiny-test", quant="fp32", engine="hf-eager", batch_size=1, prompt_tokens=16,
               output_tokens=8, status=status, gpu_name=gpu, quant_params={"group": 64},
               rep_energy_j=[1.0, 1.1, 0.9])
    if status == "ok":
        r.tokens_per_s, r.decode_energy_per_token_j, r.energy_total_j, r.duration_s = 100.0, 0.5, 10.0, 0.1
    else:
        r.error = "boom"
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_append_is_one_write_plus_fsync_per_record(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "m.jsonl"
    writes, syncs = [], []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, b: writes.append(bytes(b)) or real_write(fd, b))
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))
    with Store(path) as st:
        st.append(rec("1" * 16))
        n_sync = len(syncs)
        st.append(rec("2" * 16))
    assert len(writes) == 2 and all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in writes)
    assert len(syncs) - n_sync == 1  # exactly one fsync for the second append
    lines = path.read_text().splitlines()
    assert [json.loads(x)["cell_hash"] for x in lines] == ["1" * 16, "2" * 16]
    back = Store(path).records()
    assert back[0] == rec("1" * 16) and back[1].quant_params == {"group": 64}


def test_invalid_record_is_not_written(tmp_path):
    st = Store(tmp_path / "m.jsonl")
    bad = rec()
    bad.tokens_per_s = None
    with pytest.raises(SchemaError, match="tokens_per_s"):
        st.append(bad)
    assert not (tmp_path / "m.jsonl").exists() or (tmp_path / "m.jsonl").read_bytes() == b""
    assert st.records() == []


def test_missing_file_reads_empty(tmp_path):
    st = Store(tmp_path / "nothing.jsonl")
    assert st.records() == [] and st.done_hashes() == set() and len(st) == 0


def test_torn_last_line_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "m.jsonl"
    with Store(path) as st:
        st.append(rec("1" * 16))
        st.append(rec("2" * 16))
    full = rec("3" * 16).to_json().encode()
    with open(path, "ab") as f:  # a writer killed half-way through its line
        f.write(full[: len(full) // 2])

    reader = Store(path)
    assert [r.cell_hash for r in reader.records()] == ["1" * 16, "2" * 16]
    assert reader.torn_bytes == len(full) // 2 and reader.bad_lines == 0
    assert ("3" * 16, "NVIDIA H100 80GB HBM3") not in reader.done_hashes()

    with pytest.warns(RuntimeWarning, match="incomplete last line"), Store(path) as st:
        st.append(rec("3" * 16))
    text = path.read_bytes()
    assert text.endswith(b"\n") and text.count(b"\n") == 3
    assert [json.loads(x)["cell_hash"] for x in text.splitlines()] == ["1" * 16, "2" * 16, "3" * 16]
    assert (tmp_path / "m.jsonl.torn").read_bytes() == full[: len(full) // 2] + b"\n"
    # a second open finds nothing to repair
    assert Store(path).repair() == 0


def test_file_that_is_only_a_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"cell_hash": "ab')
    st = Store(path)
    assert st.records() == []
    with pytest.warns(RuntimeWarning):
        assert st.repair() == len(b'{"cell_hash": "ab')
    st.close()
    assert path.read_bytes() == b""


def test_corrupt_and_foreign_lines_are_skipped(tmp_path):
    path = tmp_path / "m.jsonl"
    good = rec("1" * 16).to_dict()
    lines = [json.dumps(good), "\x00\x00 garbage", "", "[1, 2]",
             json.dumps({**good, "cell_hash": "2" * 16, "brand_new_field": 1}),
             json.dumps({**rec("3" * 16).to_dict()})]
    path.write_text("\n".join(lines) + "\n")
    st = Store(path)
    with pytest.warns(RuntimeWarning):
        got = st.records()
    assert [r.cell_hash for r in got] == ["1" * 16, "3" * 16]
    assert st.bad_lines == 3
    with pytest.warns(RuntimeWarning), pytest.raises(SchemaError, match="brand_new_field"):
        st.records(strict=True)


def test_done_hashes_resume_key_is_hash_and_gpu(tmp_path):
    st = Store(tmp_path / "m.jsonl")
    st.append(rec("1" * 16))
    st.append(rec("1" * 16, gpu="NVIDIA H200"))
    st.append(rec("2" * 16, status="failed"))
    st.append(rec("3" * 16, status="skipped"))
    st.append(rec("4" * 16, status="failed"))
    st.append(rec("4" * 16, status="ok"))  # retried later
    h100, h200 = "NVIDIA H100 80GB HBM3", "NVIDIA H200"
    assert st.done_hashes() == {("1" * 16, h100), ("1" * 16, h200), ("2" * 16, h100), ("3" * 16, h100),
                                ("4" * 16, h100)}
    assert ("2" * 16, h100) not in st.done_hashes(retry_failed=True)
    assert ("4" * 16, h100) in st.done_hashes(retry_failed=True)
    assert ("1" * 16, "NVIDIA A100") not in st.done_hashes()
    latest = st.latest()
    assert latest[("4" * 16, h100)].status == "ok" and len(latest) == 5
    assert len(st) == 6


def test_only_one_writer(tmp_path):
    path = tmp_path / "m.jsonl"
    a, b = Store(path), Store(path)
    a.append(rec("1" * 16))
    with pytest.raises(StoreError, match="another process is writing"):
        b.append(rec("2" * 16))
    a.close()
    b.append(rec("2" * 16))  # free again once the first writer is gone
    b.close()
    assert [r.cell_hash for r in Store(path).records()] == ["1" * 16, "2" * 16]


def test_export_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    src, dst = tmp_path / "m.jsonl", tmp_path / "out" / "m.parquet"
    with Store(src) as st:
        st.append(rec("1" * 16))
        st.append(rec("2" * 16, status="failed", throttle_reasons=["sw_thermal"]))
    assert export_parquet(src, dst) == 2
    df = pd.read_parquet(dst)
    assert list(df["cell_hash"]) == ["1" * 16, "2" * 16]
    assert list(df["status"]) == ["ok", "failed"]
    assert json.loads(df["quant_params"][0]) == {"group": 64}
    assert list(df["rep_energy_j"][0]) == [1.0, 1.1, 0.9]
    assert list(df["throttle_reasons"][1]) == ["sw_thermal"]
    assert df["tokens_per_s"][0] == 100.0 and pd.isna(df["tokens_per_s"][1])


def test_merge_adds_only_missing_records_in_order(tmp_path):
    from measure.store import merge_stores

    target, a, b = tmp_path / "t.jsonl", tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    shared = rec("s" * 16, record_id="shared")
    with Store(target) as s:
        s.append(shared)
    with Store(a) as s:
        s.append(shared)
        s.append(rec("a" * 16, record_id="a1"))
    with Store(b) as s:
        s.append(rec("b" * 16, record_id="b1"))
        s.append(rec("a" * 16, record_id="a1"))  # the same record seen twice
    assert merge_stores(target, [a, b]) == 2
    assert [r.record_id for r in Store(target).records()] == ["shared", "a1", "b1"]
    assert merge_stores(target, [a, b, target]) == 0


def test_merge_rejects_a_bad_source_whole(tmp_path):
    from measure.store import merge_stores

    target, good, bad = tmp_path / "t.jsonl", tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    with Store(good) as s:
        s.append(rec(record_id="g1"))
    row = rec("c" * 16, record_id="c1").to_dict()
    row["batch_size"] = -3
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(SchemaError):
        merge_stores(target, [good, bad])
    assert not target.exists() or Store(target).records() == []


def test_records_of_schema_1_0_are_read_and_upgraded(tmp_path):
    from measure.record import SCHEMA_VERSION

    row = rec(record_id="old").to_dict()
    for f in ("cpu_model", "cpu_count", "load_avg_1m"):
        del row[f]
    row["schema_version"] = "1.0"
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (r,) = Store(path).records(strict=True)
    assert r.schema_version == SCHEMA_VERSION and r.cpu_model is None and r.record_id == "old"
    row = rec(record_id="v11").to_dict()  # 1.1: before the power-capped shares
    for f in ("prefill_power_capped_frac", "decode_power_capped_frac", "rep_power_capped_s"):
        del row[f]
    row["schema_version"] = "1.1"
    path.write_text(json.dumps(row) + "\n")
    (r,) = Store(path).records(strict=True)
    assert r.schema_version == SCHEMA_VERSION and r.decode_power_capped_frac is None and r.record_id == "v11"
    assert r.rep_power_capped_s is None
    row = rec(record_id="v12").to_dict()  # 1.2: before the host launch time
    del row["host_launch_us"]
    row["schema_version"] = "1.2"
    path.write_text(json.dumps(row) + "\n")
    (r,) = Store(path).records(strict=True)
    assert r.schema_version == SCHEMA_VERSION == "1.3" and r.host_launch_us is None and r.record_id == "v12"
    row["schema_version"] = "0.9"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(SchemaError, match="unsupported schema_version"):
        Store(path).records(strict=True)
