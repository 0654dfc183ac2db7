"""Fixtures of the cost-model tests: a fresh catalogue, valid measurement records, a trained artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from measure.record import Record
from recommender.catalog import load_catalog_from
from recommender.paths import catalog_dir


@pytest.fixture()
def catalog():
    """A private catalogue instance (tests may extend it without touching the cached one)."""
    return load_catalog_from(catalog_dir())


def make_record(i: int = 0, **kw) -> Record:
    """A valid `ok` record of a catalogue GPU/model (numbers in the range of our H100 runs)."""
    base = dict(
        cell_hash=f"cell{i:04d}", record_id=f"rec{i:04d}", model="qwen2.5-7b-instruct", quant="bf16",
        engine="hf-eager", batch_size=1, prompt_tokens=128, output_tokens=64, gpu_name="NVIDIA H100 80GB HBM3",
        gpu_id="h100-sxm", tokens_per_s=49.0, decode_energy_per_token_j=4.37, energy_total_j=290.0,
        duration_s=1.4, ttft_ms=25.0, prefill_energy_j=5.5, decode_avg_power_w=214.0, peak_mem_nvml_gb=16.8,
        is_stable=True, created_at="2026-11-26T12:00:00+00:00",
    )
    base.update(kw)
    rec = Record(**base)
    rec.validate()
    return rec


def write_records(path: Path, records) -> Path:
    path.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def record_factory():
    return make_record


@pytest.fixture()
def records_writer():
    return write_records


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """An artifact trained on the committed public data (no extra CV), once per session."""
    from recommender.costmodel import train

    out = tmp_path_factory.mktemp("artifact") / "models"
    rc = train.main(["--out", str(out), "--no-cv", "--no-default-measurements"])
    assert rc == 0
    assert json.loads((out / "metadata.json").read_text())["targets"]["energy_per_token_j"]["kind"] == "learned"
    return out
