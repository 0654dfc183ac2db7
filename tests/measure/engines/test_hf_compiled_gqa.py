"""measure/engines/hf_compiled_gqa.py: hf-compiled with grouped-query SDPA forced, the catalogue's engine variant
hf-compiled-gqa (tiny local llama, 4 query heads and 2 K/V heads; CPU)."""

from __future__ import annotations

import pytest

from measure.engines import COMPILING_ENGINES, get_engine, measurable
from recommender.catalog import load_catalog

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from measure.engines import attention  # noqa: E402
from measure.engines.hf_compiled_gqa import HfCompiledGqa  # noqa: E402


def test_the_variant_is_measurable_compiling_and_forces_what_the_catalogue_says():
    cat = load_catalog()
    engine = cat.engines.get("hf-compiled-gqa")
    assert engine.engine_params == {"sdpa_gqa": "force"} and engine.variant_of == "hf-compiled"
    assert "hf-compiled-gqa" in measurable() and "hf-compiled-gqa" in COMPILING_ENGINES and engine.measurable
    e = get_engine("hf-compiled-gqa", mode="max-autotune")
    assert isinstance(e, HfCompiledGqa) and e.forced == engine.engine_params  # read from the catalogue
    assert e.params == {"mode": "max-autotune", "sdpa_gqa": "force"}
    assert e.generate_kwargs()["compile_config"].mode == "max-autotune"  # hf-compiled's compile config


def test_params_that_contradict_the_variant_are_refused():
    with pytest.raises(ValueError, match="use hf-compiled"):
        get_engine("hf-compiled-gqa", sdpa_gqa="auto")
    assert get_engine("hf-compiled-gqa", sdpa_gqa="force").params == {"sdpa_gqa": "force"}


def test_prepare_forces_grouped_sdpa_and_the_record_says_so(tiny, grouped_with_mask):
    own = grouped_with_mask()
    e = get_engine("hf-compiled-gqa")
    e.prepare(tiny)
    assert grouped_with_mask() is True
    assert e.describe(tiny) == {"attn_implementation_used": "sdpa", "sdpa_gqa": "force"}
    get_engine("hf-compiled").prepare(tiny)  # the next cell on the same model: transformers' own decision
    assert grouped_with_mask() == own


def test_a_cell_of_the_variant_runs_on_cpu_and_records_its_engine_and_setting():
    from measure.cell import Cell
    from measure.meter.fake import FakeGpuMeter
    from measure.runner import CellRunner, RunContext
    from tests.fixtures.cpu_timing import run_resolved

    meter = FakeGpuMeter(trace=250.0, idle_power_w=60.0, utilization_pct=0.0, name="NVIDIA H200")
    r = CellRunner(meter, device="cpu", context=RunContext(idle_seconds=0.3, command="pytest",
                                                           rapl_root="/nonexistent-powercap"))
    try:
        rec = run_resolved(r, Cell("tiny-test", "fp32", "hf-compiled-gqa", 2, 16, 32, repetitions=2))
    finally:
        r.close()
        import transformers.integrations.sdpa_attention as sdpa

        own = attention._TRANSFORMERS_DECISION.get("use_gqa_in_sdpa")
        if own is not None:
            sdpa.use_gqa_in_sdpa = own  # the other tests' transformers decision back
    assert rec.status == "ok", rec.error
    assert rec.engine == "hf-compiled-gqa" and rec.engine_params["sdpa_gqa"] == "force"
    assert rec.engine_params["compiled"] is False  # a CPU does not compile (recorded as such)
