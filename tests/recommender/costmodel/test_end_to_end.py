"""Records -> train-cost-model --measurements --out tmp -> the learned model predicts, and
measured_lookup serves the measured cells as measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.candidates import Candidates
from recommender.costmodel import learned as L
from recommender.costmodel import train as T

CELLS = [  # (quant, batch, tokens/s, J/token) in the range of shared/docs/h100-first-measurements.md
    ("bf16", 1, 49.0, 4.37), ("bf16", 8, 381.0, 0.606), ("fp16", 1, 48.6, 4.42),
    ("bnb-int8", 1, 14.3, 10.49), ("bnb-int8", 8, 94.4, 1.65), ("bnb-nf4", 1, 36.0, 5.19),
    ("bnb-nf4", 8, 222.0, 1.11), ("torchao-int8-wo", 1, 28.9, 13.1), ("torchao-int8-wo", 8, 229.0, 1.69),
]


def test_records_train_predict_and_serve_as_measured(tmp_path, record_factory, records_writer, catalog):
    recs = [record_factory(i, quant=q, batch_size=b, tokens_per_s=tps, decode_energy_per_token_j=ept)
            for i, (q, b, tps, ept) in enumerate(CELLS)]
    mdir = tmp_path / "measurements"
    mdir.mkdir()
    records_writer(mdir / "h100.jsonl", recs)
    out = tmp_path / "model"
    assert T.main(["--measurements", str(mdir / "h100.jsonl"), "--out", str(out), "--no-cv",
                   "--no-default-measurements"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["data"]["rows_by_origin"]["ours"] == len(CELLS)
    assert any(f["path"].endswith("h100.jsonl") and f["rows"] == len(CELLS) for f in meta["data"]["files"])

    model = L.load_default(out)
    assert isinstance(model, L.LearnedCostModel)
    quants = [q for q, *_ in CELLS]
    batches = [b for _, b, *_ in CELLS]
    c = Candidates.from_ids(catalog, ["h100-sxm"] * len(CELLS), ["qwen2.5-7b-instruct"] * len(CELLS), quants,
                            ["hf-eager"] * len(CELLS), batches, [128] * len(CELLS), [64] * len(CELLS))
    pred = model.predict(c)
    assert np.isfinite(pred["energy_per_token_j"].p50).all()
    # trained on these very cells (our scope): the p10-p90 band covers most of them
    e = pred["energy_per_token_j"]
    meas = np.array([x[3] for x in CELLS])
    assert np.mean((meas >= e.p10) & (meas <= e.p90)) >= 0.6

    mask, vals = L.measured_lookup(c, dirs=[mdir])
    assert mask.all()
    assert vals["tokens_per_s"].p50 == pytest.approx([x[2] for x in CELLS])
    assert vals["energy_per_token_j"].p50 == pytest.approx(meas)


# ---- the real loop: measure runner (CPU, fake meter) -> train-cost-model -> recommend ----------------------
FAKE_GPU = "NVIDIA H100 80GB HBM3"  # the fake meter's name resolves to the catalogue's h100-sxm
RUN_CELLS = [("fp32", 1), ("fp32", 2)]  # tiny-test, hf-eager, 16 prompt + 32 output tokens


def test_runner_records_train_and_are_served_as_measured(tmp_path, monkeypatch, catalog):
    """Records of `measure.runner.CellRunner` (tiny-test on CPU, fake meter) -> `train-cost-model
    --measurements FILE --out DIR` -> `recommend --model-dir DIR --model tiny-test --format json` ranks with
    the new artifact and shows the measured cells as measured. Fake-meter records carry
    `measurement_scope: simulated`: trained on and served only because they are named explicitly
    (--measurements, RECOMMENDER_MEASUREMENTS), never from datasets/measurements."""
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from measure.cell import Cell
    from measure.meter.factory import get_meters
    from measure.runner import CellRunner, RunContext
    from recommender.cli import cli
    from tests.fixtures.cpu_timing import run_resolved

    # windows of at least 0.5 s (10 update periods; with 0.2 s, 2 of 8 runs under load failed DecodeNotResolved:
    # a CPU scheduler stall, see run_resolved, which measures such a cell again; any other failure fails the test)
    meter = get_meters("fake", trace=250.0, idle_power_w=60.0, utilization_pct=0.0, name=FAKE_GPU,
                       update_period_s=0.05)[0]
    runner = CellRunner(meter, device="cpu", context=RunContext(idle_seconds=0.1, command="pytest e2e"))
    try:
        recs = [run_resolved(runner, Cell("tiny-test", q, "hf-eager", b, 16, 32, repetitions=3)) for q, b in RUN_CELLS]
    finally:
        runner.close()
    assert all(r.status == "ok" for r in recs), [(r.status, r.error) for r in recs]
    assert {r.gpu_id for r in recs} == {"h100-sxm"}
    assert all(r.measurement_scope == "simulated" and r.source == "simulated:fake-meter" for r in recs)
    data = tmp_path / "runs"
    data.mkdir()
    records = data / "cpu-fake.jsonl"
    records.write_text("".join(r.to_json() + "\n" for r in recs), encoding="utf-8")

    out = tmp_path / "model"
    assert T.main(["--measurements", str(records), "--out", str(out), "--no-public", "--no-default-measurements",
                   "--no-cv"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["data"]["rows_by_origin"] == {"ours": len(RUN_CELLS)}
    assert meta["data"]["simulated_rows"] == len(RUN_CELLS)  # marked: a test artifact, not one to ship
    assert "simulated" in (out / "MODEL_CARD.md").read_text()
    # the shipped data never trains on simulated records: the same file inside datasets/measurements is skipped
    rows, skipped = T.record_rows(T.read_records(records)[0], catalog, "x.jsonl")  # allow_simulated=False
    assert rows == [] and sum(skipped.values()) == len(RUN_CELLS)

    monkeypatch.setenv("RECOMMENDER_MEASUREMENTS", str(records))
    args = ["--model-dir", str(out), "--gpu", "h100", "--model", "tiny-test", "--quant", "fp32", "--quant", "bf16",
            "--engine", "hf-eager", "--batch-size", "1", "--batch-size", "2", "--prompt-tokens", "16",
            "--output-tokens", "32", "--format", "json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["query"]["cost_model"] == L.load_default(out).name  # served from the new artifact
    assert got["query"]["models"] == ["tiny-test"]
    cells = {(c["quant"], c["batch_size"]): c for c in got["candidates"]}
    assert len(cells) == 4
    for r in recs:
        c = cells[(r.quant, r.batch_size)]
        assert c["source"] == "measured"
        assert c["tokens_per_s"]["p50"] == pytest.approx(r.tokens_per_s)
        assert c["energy_per_token_j"]["p50"] == pytest.approx(r.decode_energy_per_token_j)
        assert c["ttft_ms"]["p50"] == pytest.approx(r.ttft_ms)
    assert {c["source"] for k, c in cells.items() if k[0] == "bf16"} == {"predicted"}

    # without naming the file, nothing is served as measured
    monkeypatch.delenv("RECOMMENDER_MEASUREMENTS")
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert {c["source"] for c in json.loads(res.output)["candidates"]} == {"predicted"}
