"""datasets/catalog/tools/fit_prefill_model.py and recommender/costmodel/prefill_model.py: engines.yaml holds
what the script fits from the committed records, the fit recovers a known prefill time (and keeps efficiency
<= 1, overhead >= 0), rewriting is idempotent next to the other two tools', and the analytic model uses the
prefill constants where an engine has them and the decode step's where not."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures.scripts import load_script

CAT = Path(__file__).resolve().parents[2] / "datasets" / "catalog"
KEYS = ("prefill_efficiency", "prefill_overhead_ms")


def _tool(name: str):
    return load_script(CAT / "tools" / f"{name}.py")


@pytest.fixture(scope="module")
def fitted():
    mod = _tool("fit_prefill_model")
    return mod, mod.fit_all()


def test_engines_yaml_holds_the_fit(fitted):
    mod, fits = fitted
    engines = {e["id"]: e["analytic"] for e in yaml.safe_load((CAT / "engines.yaml").read_text(encoding="utf-8"))}
    assert {f.engine for f in fits} == {"hf-eager", "hf-compiled"}
    for f in fits:
        a = engines[f.engine]
        for key, attr, digits in mod.KEYS:
            assert a[key] == pytest.approx(round(getattr(f, attr), digits)), (
                f"{f.engine}.{key}: engines.yaml is stale; run python datasets/catalog/tools/fit_prefill_model.py")
        assert mod.FIT_MARKER in " ".join(a["source"].split()) and f"{f.n} ok" in " ".join(a["source"].split())
        assert 0 < f.efficiency <= 1 and f.overhead_ms >= 0
        # the prefill's own constants beat the decode step's on its rows
        assert f.time_median_ape_pct < f.default_time_median_ape_pct, f.engine
    assert not set(KEYS) & set(engines["vllm"])  # no records of ours: the decode step's constants


def test_the_three_tools_rewrite_idempotently_and_keep_each_other(fitted):
    mod, fits = fitted
    feo = sys.modules.get("fit_engine_overhead") or _tool("fit_engine_overhead")
    power = _tool("fit_power_model")
    text = (CAT / "engines.yaml").read_text(encoding="utf-8")
    assert mod.update_yaml(text, fits) == text
    assert power.update_yaml(text, power.fit_all()) == text  # the power refit keeps the prefill keys in place
    assert feo.update_yaml(text, feo.fit_all()[0]) == text
    stripped = "\n".join(line for line in text.split("\n") if not line.strip().startswith(tuple(f"{k}:" for k in KEYS)))
    new = mod.update_yaml(stripped, fits)
    added = [line for line in new.split("\n") if line not in stripped.split("\n")]
    assert sum(line.strip().startswith("prefill_efficiency:") for line in added) == len(fits)
    assert new == text  # the same place and the same sentence
    no_power = "\n".join(line for line in text.split("\n") if not line.strip().startswith("power_slope:"))
    with pytest.raises(SystemExit, match="fit_power_model.py first"):
        mod.update_yaml(no_power, fits)


def _rows(cat, engine):
    from recommender.costmodel import prefill_model as PF

    rows = {k: [] for k in PF.FIELDS}
    for m in ("qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "phi-3-mini-4k-instruct"):
        for b in (1.0, 8.0, 32.0):
            for p in (64.0, 256.0, 1024.0):
                for k, v in (("gpu", "h100-sxm"), ("model", m), ("quant", "bf16"), ("batch", b), ("prompt", p),
                             ("output", 128.0), ("ttft_s", 1.0)):
                    rows[k].append(v)
    return rows


def test_the_fit_recovers_a_known_prefill_law():
    from recommender.catalog import load_catalog
    from recommender.costmodel import prefill_model as PF

    cat = load_catalog()
    rows = _rows(cat, "hf-eager")
    roof, default = PF.roofline(cat, "hf-eager", rows)
    t = roof / 0.6 + 0.012
    assert (roof / t).min() < 0.3 < (roof / t).max()  # leverage to separate efficiency and overhead
    rows["ttft_s"] = list(t)
    f = PF.fit_engine(cat, "hf-eager", rows)
    assert f.efficiency == pytest.approx(0.6, rel=1e-6) and f.overhead_ms == pytest.approx(12.0, rel=1e-6)
    assert f.time_median_ape_pct == pytest.approx(0.0, abs=1e-6) and f.n == len(t)
    assert f.default_time_median_ape_pct > 1.0  # the decode constants' prefill is another law
    assert PF.fit_engine(cat, "hf-eager", rows, precomputed=(roof, default)) == f


def test_the_time_fit_keeps_efficiency_at_most_1_and_overhead_at_least_0():
    from recommender.costmodel import prefill_model as PF

    roof = np.array([0.001, 0.01, 0.1, 1.0])
    assert PF.fit_time(roof, roof / 0.5 + 0.02) == (pytest.approx(0.5), pytest.approx(0.02))
    eff, o = PF.fit_time(roof, roof / 1.3 + 0.02)  # faster than the roofline
    assert eff == 1.0 and o > 0
    eff, o = PF.fit_time(roof, np.maximum(roof / 0.5 - 0.0005, 1e-4))  # a negative intercept
    assert o == 0.0 and 0 < eff <= 1


def test_the_analytic_prefill_uses_the_prefill_constants_and_falls_back_to_the_decodes():
    from recommender.candidates import Candidates
    from recommender.catalog import load_catalog
    from recommender.costmodel import analytic
    from recommender.costmodel import engine_constants as EC
    from recommender.costmodel.features import physics

    cat = load_catalog()
    n = 3
    args = (["h100-sxm"] * n, ["qwen2.5-7b-instruct"] * n, ["bf16"] * n, ["hf-eager"] * n, [1.0, 8.0, 32.0],
            [256.0] * n, [128.0] * n)
    base = {k: v for k, v in (dict(e.analytic or {}) for e in cat.engines if e.id == "hf-eager").__next__().items()
            if k in EC.DIGITS}

    def est(values):
        c = Candidates.from_ids(EC.with_constants(cat, {"hf-eager": EC.EngineFit(values)}), *args)
        ph = physics(c, np.full(n, np.nan))
        return ph, analytic.estimate(ph, c)

    tdp = 700.0
    idle = analytic.PARAMS["idle_fraction_of_tdp"] * tdp

    def power(t):  # the decode step's floor and slope, at the prefill's u
        return idle + (tdp - idle) * np.minimum(1.0, base["power_floor"] + base["power_slope"] * roof / t)

    ph, e = est(base | {"prefill_efficiency": 0.5, "prefill_overhead_ms": 10.0})
    roof = np.maximum(ph.t_mem_prefill, ph.t_comp_prefill)
    t = roof / 0.5 + 0.010
    np.testing.assert_allclose(e.t_prefill, t)
    np.testing.assert_allclose(e.prefill_power_w, power(t))
    ph, e = est(base | {k: None for k in KEYS})  # no prefill constants: the decode step's
    t = roof / base["roofline_efficiency"] + base["per_token_overhead_ms"] / 1e3
    np.testing.assert_allclose(e.t_prefill, t)
    np.testing.assert_allclose(e.prefill_power_w, power(t))
