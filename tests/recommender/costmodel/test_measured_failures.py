"""Cells that failed every time we measured them are excluded, with the recorded reason."""

from __future__ import annotations

import json

from recommender.candidates import Candidates
from recommender.catalog import load_catalog
from recommender.costmodel.learned import measured_failures


def _rec(status, batch, error=None, model="qwen2.5-7b-instruct"):
    return {"status": status, "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_id": "h100-sxm", "model": model,
            "quant": "torchao-int8-dyn", "engine": "hf-compiled", "batch_size": batch, "prompt_tokens": 256,
            "output_tokens": 128, "error": error, "created_at": "2026-11-26T19:00:00+00:00",
            "source": "measured:test", "measurement_scope": "gpu-counter"}


def test_failures_exclude_only_cells_that_never_succeeded(tmp_path):
    recs = [_rec("failed", 1, "RuntimeError: self.size(0) needs to be greater than 16, but got 1"),
            _rec("failed", 8, "OOM: first try"), _rec("ok", 8),  # failed once, then ok: not excluded
            _rec("failed", 32, "boom", model="yi-6b")]
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    cat = load_catalog()
    cands = Candidates.grid(cat, ["h100-sxm", "a100-pcie-40gb"], ["qwen2.5-7b-instruct", "deepseek-r1-distill-qwen-7b"],
                            ["torchao-int8-dyn", "bf16"], ["hf-compiled"], [1, 8, 32], 256, 128)
    out = measured_failures(cands, dirs=[tmp_path])
    rows = sorted(out)
    # batch 1 on the H100, for Qwen2.5-7B and for the model sharing its architecture; nothing else
    assert len(rows) == 2
    for i in rows:
        assert cands.ids("gpu")[i] == "h100-sxm" and cands.ids("quant")[i] == "torchao-int8-dyn"
        assert cands.batch_size[i] == 1 and "greater than 16" in out[i]
    assert set(cands.ids("model")[rows]) == {"qwen2.5-7b-instruct", "deepseek-r1-distill-qwen-7b"}
    assert not measured_failures(cands, dirs=[tmp_path / "nothing-here"])
