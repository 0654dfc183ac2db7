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
