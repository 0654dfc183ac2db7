"""datasets/catalog/tools/fit_engine_overhead.py: engines.yaml holds what the script fits from the
committed rows, rewriting it changes only the fitted lines, and the analytic model uses the overhead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures.scripts import load_script

CAT = Path(__file__).resolve().parents[2] / "datasets" / "catalog"


def _tool():
    return load_script(CAT / "tools" / "fit_engine_overhead.py")


@pytest.fixture(scope="module")
def fitted():
    mod = _tool()
    fits, files = mod.fit_all()
    return mod, fits, files


def test_engines_yaml_holds_the_fit(fitted):
    mod, fits, _ = fitted
    engines = {e["id"]: e["analytic"] for e in yaml.safe_load((CAT / "engines.yaml").read_text(encoding="utf-8"))}
    assert {f.engine for f in fits} == set(mod.ENGINES)
    for f in fits:
        a = engines[f.engine]
        assert a["roofline_efficiency"] == pytest.approx(round(f.efficiency, 3)), (
            f"{f.engine}: engines.yaml is stale; run python datasets/catalog/tools/fit_engine_overhead.py")
        assert a["per_token_overhead_ms"] == pytest.approx(round(f.overhead_ms, 2)), f.engine
        assert mod.FIT_MARKER in " ".join(a["source"].split()) and f"{f.n} batch-1" in a["source"]
        assert 0 < f.efficiency <= 1 and f.overhead_ms >= 0
        assert f.median_ape_pct < 25, f.engine  # the fit describes its rows


def test_rewriting_is_idempotent_and_local(fitted):
    mod, fits, _ = fitted
    text = (CAT / "engines.yaml").read_text(encoding="utf-8")
    assert mod.update_yaml(text, fits) == text  # the committed file is the script's output
    # from a file without a fit: only the two values and the appended sentence change
    old = text.replace(mod.FIT_MARKER, "OLD MARKER")
    new = mod.update_yaml(old, fits)
    changed = [line for line in new.split("\n") if line not in old.split("\n")]
    assert all(line.strip().startswith(("roofline_efficiency:", "per_token_overhead_ms:")) or
               line.startswith("      ") for line in changed)
    assert yaml.safe_load(new) is not None


def test_only_ok_unquantized_batch1_rows(fitted, tmp_path, monkeypatch):
    mod, fits, _ = fitted
    for f in fits:
        assert all(r["quant"] in mod.FLOAT_QUANTS for r in f.rows)
    rec = {"status": "ok", "engine": "hf-eager", "quant": "bf16", "batch_size": 1, "model": "qwen2.5-7b-instruct",
           "gpu_id": "h100-sxm", "tokens_per_s": 40.0, "prompt_tokens": 256, "output_tokens": 128, "is_stable": True,
           "measurement_scope": "gpu-counter", "source": "measured:x"}
    import json

    lines = [rec, {**rec, "status": "failed"}, {**rec, "quant": "bnb-nf4"}, {**rec, "batch_size": 8},
             {**rec, "measurement_scope": "simulated", "source": "simulated:fake-meter"}]
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows, stable_only = mod.read_ours(mod._catalog(), [path])
    assert len(rows["hf-eager"]) == 1 and stable_only["hf-eager"] is False  # 1 stable < MIN_STABLE: all ok ones


def test_a_cap_outside_the_decode_keeps_a_row_stable(fitted, tmp_path):
    """Rows flagged only for the power cap count as stable when the decode spent at most 5 % of its time capped
    (schema 1.2), and stay unstable without the share or above it."""
    import json

    mod, _, _ = fitted
    rec = {"status": "ok", "engine": "hf-eager", "quant": "bf16", "batch_size": 1, "model": "qwen2.5-7b-instruct",
           "gpu_id": "h100-sxm", "tokens_per_s": 40.0, "prompt_tokens": 256, "output_tokens": 128,
           "is_stable": False, "unstable_reason": "throttled: sw_power_cap", "measurement_scope": "gpu-counter",
           "source": "measured:x"}
    fracs = [0.02] * mod.MIN_STABLE + [0.2, None]
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps({**rec, "decode_power_capped_frac": f}) + "\n" for f in fracs))
    from recommender.costmodel.engine_overhead import own_rows

    rows = own_rows(mod._catalog(), [path])["hf-eager"]
    assert rows.stable == [True] * mod.MIN_STABLE + [False, False]
    kept, stable_only = mod.read_ours(mod._catalog(), [path])
    assert stable_only["hf-eager"] is True and len(kept["hf-eager"]) == mod.MIN_STABLE


def test_analytic_model_uses_the_overhead():
    from recommender.candidates import Candidates
    from recommender.catalog import load_catalog
    from recommender.costmodel.analytic import estimate
    from recommender.costmodel.features import physics

    cat = load_catalog()
    c = Candidates.grid(cat, ["h100-sxm"], ["qwen2.5-7b-instruct"], ["bf16"], ["hf-eager", "hf-compiled"], [1], 256, 128)
    ph = physics(c)
    est = estimate(ph, c)
    a = {e.id: e.analytic for e in cat.engines}
    roof = np.maximum(ph.t_mem_step, ph.t_comp_step)
    for i, eng in enumerate(("hf-eager", "hf-compiled")):
        want = roof[i] / a[eng]["roofline_efficiency"] + a[eng]["per_token_overhead_ms"] / 1e3
        assert est.t_step[i] == pytest.approx(want)
    # the measured H100 cells (h100/campaign.jsonl: 22.7 ms eager, 8.2 ms compiled per step) within 25 %
    assert est.t_step[0] * 1e3 == pytest.approx(22.7, rel=0.25)
    assert est.t_step[1] * 1e3 == pytest.approx(8.2, rel=0.25)


def test_efficiency_above_one_is_fixed_at_one(fitted):
    """Rows at the roofline for a big model and roofline + 10 ms for small ones: a free line through them has a
    slope under 1 (efficiency above 1, faster than the datasheet); the fit fixes it at 1 and fits the overhead."""
    mod, _, _ = fitted
    cat = mod._catalog()
    rows = mod.Rows()
    for model in ("qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct"):
        rows.add(gpu="h100-sxm", model=model, quant="bf16", batch=1.0, prompt=256.0, output=128.0,
                 kv_bits=float("nan"), seconds=1.0, e2e=False, origin="test")
    X, _ = mod.design(cat, rows)
    extra = np.array([0.010, 0.006, 0.002, 0.0])  # seconds above the roofline, shrinking with size
    rows.seconds = list(X + extra)
    f = mod.fit_engine(cat, "hf-eager", rows, None, None)
    assert f.efficiency_capped and f.efficiency == 1.0
    # the same as the bounded relative least squares (1 / efficiency >= 1, overhead >= 0)
    from scipy.optimize import lsq_linear

    X, Z = mod.design(cat, rows)
    y = np.asarray(rows.seconds)
    sol = lsq_linear(np.stack([X / y, Z / y], axis=1), np.ones(len(y)), bounds=([1.0, 0.0], [np.inf, np.inf]))
    assert 1.0 / sol.x[0] == pytest.approx(f.efficiency)
    assert sol.x[1] * 1e3 == pytest.approx(f.overhead_ms, rel=1e-6)
    assert 0 < f.overhead_ms < 10
    assert "efficiency above 1, fixed at 1" in mod.describe(f)
    # a free fit with an efficiency below 1 is left alone
    rows.seconds = list(X / 0.8 + 0.005)
    f = mod.fit_engine(cat, "hf-eager", rows, None, None)
    assert not f.efficiency_capped
    assert f.efficiency == pytest.approx(0.8) and f.overhead_ms == pytest.approx(5.0)
