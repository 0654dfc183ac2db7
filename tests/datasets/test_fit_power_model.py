"""datasets/catalog/tools/fit_power_model.py: engines.yaml holds what the script fits from the committed
records, the fit recovers a known power law, rewriting is idempotent next to fit_engine_overhead.py's, and
the analytic model uses the fitted floor and slope."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures.scripts import load_script

CAT = Path(__file__).resolve().parents[2] / "datasets" / "catalog"


def _tool(name: str):
    return load_script(CAT / "tools" / f"{name}.py")


@pytest.fixture(scope="module")
def fitted():
    mod = _tool("fit_power_model")
    return mod, mod.fit_all()


def test_engines_yaml_holds_the_fit(fitted):
    mod, fits = fitted
    engines = {e["id"]: e["analytic"] for e in yaml.safe_load((CAT / "engines.yaml").read_text(encoding="utf-8"))}
    assert {f.engine for f in fits} == {"hf-eager", "hf-compiled"}
    for f in fits:
        a = engines[f.engine]
        assert a["power_floor"] == pytest.approx(round(f.floor, 3)), (
            f"{f.engine}: engines.yaml is stale; run python datasets/catalog/tools/fit_power_model.py")
        assert a["power_slope"] == pytest.approx(round(f.slope, 3)), f.engine
        assert mod.FIT_MARKER in " ".join(a["source"].split()) and f"{f.n} ok" in " ".join(a["source"].split())
        assert 0 <= f.floor < 0.5 and 0 < f.slope < 2
        assert f.median_ape_pct < f.default_median_ape_pct, f.engine  # the fit beats the defaults on its rows
    # engines without records of ours keep the analytic defaults
    assert "power_floor" not in engines["vllm"] and "power_slope" not in engines["vllm"]


def test_both_tools_rewrite_idempotently_and_keep_each_other(fitted):
    mod, fits = fitted
    feo = sys.modules.get("fit_engine_overhead") or _tool("fit_engine_overhead")
    text = (CAT / "engines.yaml").read_text(encoding="utf-8")
    assert mod.update_yaml(text, fits) == text
    engine_fits, _ = feo.fit_all()
    assert feo.update_yaml(text, engine_fits) == text  # the engine refit keeps the power sentence in place
    # from a file without a power fit: only the two values and the appended sentence are added
    stripped = "\n".join(line for line in text.split("\n")
                         if not line.strip().startswith(("power_floor:", "power_slope:")))
    new = mod.update_yaml(stripped, fits)
    added = [line for line in new.split("\n") if line not in stripped.split("\n")]
    assert sum(line.strip().startswith("power_floor:") for line in added) == len(fits)
    assert all(line.strip().startswith(("power_floor:", "power_slope:")) or line.startswith("      ")
               for line in added)
    assert yaml.safe_load(new) is not None


def test_the_fit_recovers_a_known_power_law(fitted):
    mod, _ = fitted
    from recommender.catalog import load_catalog

    cat = load_catalog()
    models = ["qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "phi-3-mini-4k-instruct"]
    rows = {"gpu": [], "model": [], "quant": [], "batch": [], "prompt": [], "output": [], "power": []}
    for m in models:
        for b in (1.0, 8.0, 32.0, 64.0):
            for k, v in (("gpu", "h100-sxm"), ("model", m), ("quant", "bf16"), ("batch", b), ("prompt", 256.0),
                         ("output", 128.0), ("power", 0.0)):
                rows[k].append(v)
    u, idle, tdp = mod.utilisation(cat, "hf-compiled", rows)
    assert u.min() < 0.3 < u.max() < 1.0  # leverage to separate floor and slope
    rows["power"] = list(idle + (tdp - idle) * (0.12 + 0.7 * u))
    f = mod.fit_engine(cat, "hf-compiled", rows)
    assert (f.floor, f.slope) == (pytest.approx(0.12, abs=1e-6), pytest.approx(0.7, abs=1e-6))
    assert f.median_ape_pct == pytest.approx(0.0, abs=1e-6)


def test_analytic_power_uses_the_engines_fit():
    from recommender.candidates import Candidates
    from recommender.catalog import load_catalog
    from recommender.costmodel import analytic
    from recommender.costmodel.features import physics

    cat = load_catalog()
    c = Candidates.grid(cat, ["h100-sxm"], ["qwen2.5-7b-instruct"], ["bf16"], ["hf-eager", "vllm"], [1], 256, 128)
    ph = physics(c)
    est = analytic.estimate(ph, c)
    a = {e.id: e.analytic for e in cat.engines}
    tdp = c.col("gpu_tdp_w")
    idle = analytic.PARAMS["idle_fraction_of_tdp"] * tdp
    u = np.maximum(ph.t_mem_step, ph.t_comp_step) / est.t_step
    eager = a["hf-eager"]
    want_eager = idle[0] + (tdp[0] - idle[0]) * min(1.0, eager["power_floor"] + eager["power_slope"] * u[0])
    want_vllm = idle[1] + (tdp[1] - idle[1]) * min(1.0, analytic.PARAMS["power_floor"]
                                                   + analytic.PARAMS["power_slope"] * u[1])
    assert est.power_w[0] == pytest.approx(want_eager) and est.power_w[1] == pytest.approx(want_vllm)
    # the measured H100 cell (h100-first-measurements.md: 214 W, bf16 eager batch 1) within 25 %
    assert est.power_w[0] == pytest.approx(214.0, rel=0.25)


def test_a_negative_floor_is_fixed_at_zero_and_the_slope_refitted(fitted):
    mod, _ = fitted
    from recommender.catalog import load_catalog

    cat = load_catalog()
    rows = {"gpu": [], "model": [], "quant": [], "batch": [], "prompt": [], "output": [], "power": []}
    for m in ("qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct"):
        for b in (1.0, 8.0, 32.0):
            for k, v in (("gpu", "h100-sxm"), ("model", m), ("quant", "bf16"), ("batch", b), ("prompt", 256.0),
                         ("output", 128.0), ("power", 0.0)):
                rows[k].append(v)
    u, idle, tdp = mod.utilisation(cat, "hf-compiled", rows)
    rows["power"] = list(idle + (tdp - idle) * np.maximum(0.0, -0.05 + 0.9 * u))  # a free fit gives floor < 0
    f = mod.fit_engine(cat, "hf-compiled", rows)
    assert f.floor == 0.0 and 0.5 < f.slope < 0.9  # the slope takes up what the floor cannot
