"""The whole measure path on CPU: tiny model -> quantize (where the CPU allows) -> run -> fake meter ->
record -> store -> resume."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("torch")

from measure.cell import Cell  # noqa: E402
from measure.executor import run_grid  # noqa: E402
from measure.grid import GridSpec  # noqa: E402
from measure.meter.fake import FakeGpuMeter  # noqa: E402
from measure.record import Record  # noqa: E402
from measure.runner import CellRunner, RunContext  # noqa: E402
from measure.store import Store, merge_stores  # noqa: E402
from tests.fixtures.cpu_timing import run_resolved  # noqa: E402
from tests.fixtures.rapl import rapl_zone  # noqa: E402


def _inductor_defaults() -> dict:
    import torch._inductor.config as inductor_config

    return inductor_config.get_config_copy()


_PRISTINE_INDUCTOR = _inductor_defaults()  # before any test of this module ran a torchao method


def _runner(power_w: float = 250.0) -> CellRunner:
    meter = FakeGpuMeter(trace=power_w, idle_power_w=60.0, utilization_pct=0.0, name="NVIDIA H100 80GB HBM3")
    return CellRunner(meter, device="cpu", context=RunContext(idle_seconds=0.3, command="pytest",
                                                             rapl_root="/nonexistent-powercap"))


@pytest.fixture(scope="module")
def runner():
    r = _runner()
    yield r
    r.close()


def _bare_record(status: str = "ok", error: str | None = None) -> Record:
    """A record of no real cell, for the tests of code that only fills or reads its fields."""
    return Record(cell_hash="h", model="m", quant="q", engine="e", batch_size=1, prompt_tokens=8, output_tokens=4,
                  status=status, error=error)


def test_run_resolved_measures_again_only_an_unresolved_decode():
    class Scripted:
        def __init__(self, outcomes):
            self.outcomes, self.calls = list(outcomes), 0

        def run(self, cell):
            self.calls += 1
            status, error = self.outcomes.pop(0)
            return _bare_record(status, error)

    unresolved = ("failed", "DecodeNotResolved: decode not resolvable: ...")
    r = Scripted([unresolved, unresolved, ("ok", None)])
    assert run_resolved(r, None).status == "ok" and r.calls == 3
    r = Scripted([unresolved, unresolved, unresolved, ("ok", None)])
    assert run_resolved(r, None).error.startswith("DecodeNotResolved") and r.calls == 3  # at most three runs
    r = Scripted([("failed", "runner raised RuntimeError: boom"), ("ok", None)])
    assert run_resolved(r, None).status == "failed" and r.calls == 1  # any other failure at once


def test_cell_record_is_complete_and_consistent(runner):
    rec = run_resolved(runner, Cell("tiny-test", "fp32", "hf-eager", 2, 16, 32, repetitions=3))
    assert rec.status == "ok", rec.error
    Record.from_dict(rec.to_dict())  # schema round trip
    assert rec.gpu_id == "h100-sxm" and rec.gpu_name == "NVIDIA H100 80GB HBM3"
    # the host CPU is recorded (eager decode is launch-bound: the CPU is part of the measurement)
    assert rec.cpu_model and rec.cpu_count and rec.cpu_count >= 1
    assert rec.load_avg_1m is None or rec.load_avg_1m >= 0
    assert rec.host_launch_us is None  # taken on CUDA only
    assert rec.source == "simulated:fake-meter" and rec.measurement_scope == "simulated"
    assert len(rec.rep_energy_j) == len(rec.rep_duration_s) == len(rec.rep_tokens_per_s) == 3
    # decode = generate - prefill, per output token of the whole batch (first token comes from prefill)
    assert rec.decode_energy_j == pytest.approx(rec.energy_total_j - rec.prefill_energy_j)
    assert rec.decode_energy_per_token_j == pytest.approx(rec.decode_energy_j / (2 * 31))
    # a constant 250 W fake card: every window's average power is 250 W, and so is the energy / time
    assert rec.avg_power_w == pytest.approx(250.0, rel=0.1)
    # the idle baseline is measured, not assumed: a card drawing 250 W at rest has a 250 W baseline
    assert rec.idle_power_w == pytest.approx(250.0, rel=0.1)
    assert rec.energy_active_j == pytest.approx(max(rec.energy_total_j - rec.idle_power_w * rec.duration_s, 0.0),
                                                abs=1e-6)
    # windows shorter than 10 counter periods are extended by repetition, never reported as tiny numbers
    assert rec.window_s >= 10 * rec.counter_update_period_ms / 1000 - 1e-9
    assert rec.tokens_per_s > 0 and rec.ttft_ms > 0 and rec.tpot_ms > 0
    assert rec.energy_1hz_j is not None and rec.energy_1hz_error_pct is not None
    assert rec.is_stable in (True, False) and rec.energy_cv is not None
    assert rec.cpu_energy_j is None and rec.cpu_energy_note  # no RAPL in the test's fake sysfs: a reason
    # 250 W on a card whose limit is 700 W: never power-capped, in either phase (measured, not unknown)
    assert rec.prefill_power_capped_frac == 0.0 and rec.decode_power_capped_frac == 0.0


def test_power_capped_shares_are_per_call_and_the_decode_share_excludes_the_prefill():
    rec = _bare_record()
    # per call: a 0.1 s prefill capped 0.05 s; generate calls of 0.5 s capped 0.25 s, so the 0.4 s decode 0.2 s
    pre = {"time_s": 0.1, "capped_s": 0.05}
    reps = [{"time_s": 0.5, "capped_s": 0.25}, {"time_s": 0.5, "capped_s": 0.25}]
    CellRunner._power_capped(rec, pre, reps, [0.4, 0.4])
    assert rec.prefill_power_capped_frac == pytest.approx(0.5) and rec.decode_power_capped_frac == pytest.approx(0.5)
    assert rec.rep_power_capped_s == [0.25, 0.25]
    # capped in the prefill window alone, never inside the generate calls: the decode share is 0, not negative
    rec = _bare_record()
    CellRunner._power_capped(rec, pre, [{"time_s": 0.5, "capped_s": 0.0}], [0.4])
    assert rec.prefill_power_capped_frac == pytest.approx(0.5) and rec.decode_power_capped_frac == 0.0
    # one generate window without the reading: the prefill's share stays, the decode's is unknown
    rec = _bare_record()
    CellRunner._power_capped(rec, pre, [{"time_s": 0.5, "capped_s": 0.25}, {"time_s": 0.5, "capped_s": None}],
                             [0.4, 0.4])
    assert rec.prefill_power_capped_frac == pytest.approx(0.5)
    assert rec.decode_power_capped_frac is None and rec.rep_power_capped_s is None


def test_a_card_at_its_power_limit_is_power_capped_in_both_phases():
    r = _runner(power_w=700.0)  # the fake card's limit is 700 W: capped whenever it runs
    rec = run_resolved(r, Cell("tiny-test", "fp32", "hf-eager", 1, 8, 32))
    r.close()
    assert rec.status == "ok", rec.error
    assert rec.prefill_power_capped_frac == pytest.approx(1.0, abs=0.02)
    assert rec.decode_power_capped_frac == pytest.approx(1.0, abs=0.02)


def test_cpu_package_energy_from_rapl(tmp_path):
    rapl_zone(tmp_path, energy_uj=1000)
    r = _runner()
    r.context.rapl_root = str(tmp_path)
    rec = run_resolved(r, Cell("tiny-test", "fp32", "hf-eager", 1, 8, 32))
    r.close()
    assert rec.status == "ok", rec.error
    # the counter never moved: zero CPU energy, but measured (not null), with the zone named
    assert rec.cpu_energy_j == 0.0 and "package-0" in rec.cpu_energy_note


@pytest.mark.parametrize("quant", ["bf16", "bnb-int8", "bnb-nf4", "torchao-int8-wo", "torchao-int8-dyn"])
def test_quantized_cells_run_on_cpu(runner, quant):
    rec = run_resolved(runner, Cell("tiny-test", quant, "hf-eager", 1, 8, 32))
    assert rec.status == "ok", rec.error
    assert rec.quantize_time_s is not None and rec.weights_gb > 0


def test_unsupported_method_is_a_recorded_skip(runner):
    rec = runner.run(Cell("tiny-test", "torchao-fp8", "hf-eager", 1, 8, 4))
    assert rec.status == "skipped" and "fp8" in rec.error


def test_too_long_context_is_skipped(runner):
    rec = runner.run(Cell("tiny-test", "fp32", "hf-eager", 1, 500, 100))  # tiny-test has 512 positions
    assert rec.status == "skipped" and "positions" in rec.error


def test_unresolvable_decode_is_a_failure_with_reason(runner, monkeypatch):
    import time

    from measure.engines.hf_eager import HfEager

    monkeypatch.setattr(HfEager, "prefill", lambda self, *a: time.sleep(0.02))
    monkeypatch.setattr(HfEager, "generate", lambda self, *a: time.sleep(0.01))  # "faster" than its prefill
    rec = runner.run(Cell("tiny-test", "fp32", "hf-eager", 1, 8, 4))
    monkeypatch.undo()
    assert rec.status == "failed" and "decode not resolvable" in rec.error


def test_failure_becomes_a_record_not_an_exception(runner):
    rec = runner.run(Cell("tiny-test", "bnb-int8", "hf-eager", 1, 8, 4, quant_params={"threshold": "x"}))
    assert rec.status == "failed" and rec.error


def test_one_cell_measured_in_the_same_second_on_two_gpus_keeps_both_records(runner, tmp_path, monkeypatch):
    import datetime as dt
    import types

    import measure.runner as runner_module

    frozen = dt.datetime(2026, 11, 28, 3, 53, 5, tzinfo=dt.UTC)  # s17's anchors: four GPUs started one cell at once
    clock = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda tz=None: frozen), UTC=dt.UTC)
    monkeypatch.setattr(runner_module, "_dt", clock)
    cell = Cell("tiny-test", "torchao-fp8", "hf-eager", 1, 8, 4)  # a quick recorded skip on CPU
    first, second = runner.run(cell), runner.run(cell)
    assert first.created_at == second.created_at == "2026-11-28T03:53:05+00:00"
    assert first.record_id != second.record_id and first.record_id.startswith(cell.content_hash)
    sources = []
    for i, rec in enumerate((first, second)):
        with Store(tmp_path / f"gpu{i}.jsonl") as store:
            store.append(rec)
        sources.append(tmp_path / f"gpu{i}.jsonl")
    assert merge_stores(tmp_path / "merged.jsonl", sources) == 2


def test_grid_store_and_resume(tmp_path):
    spec = GridSpec.from_dict({"name": "t", "models": ["tiny-test"], "quants": ["fp32", "bf16"],
                               "engines": ["hf-eager"], "batch_sizes": [1, 2],
                               "workloads": [{"prompt_tokens": 8, "output_tokens": 64}],
                               "repetitions": 3, "cooldown": {"mode": "none"}})
    path = tmp_path / "store.jsonl"
    r1 = _runner()
    with Store(path) as store:
        s1 = run_grid(spec, r1, store, device_name=r1.meter.name, progress=False, stop_after=2)
    assert s1.ran == 2 and s1.remaining == 2
    r2 = _runner()
    with Store(path) as store:
        s2 = run_grid(spec, r2, store, device_name=r2.meter.name, progress=False)
        recs = store.records()
    assert s2.already_done == 2 and s2.ran == 2
    assert len(recs) == 4 and len({r.cell_hash for r in recs}) == 4
    assert all(r.status == "ok" for r in recs), [(r.status, r.error) for r in recs]


def test_catalogue_hardware_rules_become_skips_before_any_work():
    from measure.backends import DeviceInfo
    from measure.runner import catalogue_hardware_reason

    pascal = DeviceInfo("cuda", 6.1, "NVIDIA GeForce GTX 1080 Ti")
    assert "bnb-int8 needs compute capability >= 7.5" in catalogue_hardware_reason("bnb-int8", "hf-eager", pascal)
    assert "engine hf-compiled needs compute capability >= 7" in catalogue_hardware_reason("fp16", "hf-compiled",
                                                                                           pascal)
    assert catalogue_hardware_reason("fp16", "hf-eager", pascal) is None
    h100 = DeviceInfo("cuda", 9.0, "NVIDIA H100 80GB HBM3")
    assert catalogue_hardware_reason("bnb-int8", "hf-compiled", h100) is None
    assert catalogue_hardware_reason("bnb-int8", "hf-compiled", DeviceInfo("cpu")) is None


def test_a_batch_the_catalogue_rules_out_is_a_recorded_skip():
    from measure.cell import Cell
    from measure.runner import catalogue_batch_reason

    def cell(batch, engine="hf-compiled"):
        return Cell(model="qwen2.5-7b-instruct", quant="torchao-int8-dyn", engine=engine, batch_size=batch,
                    prompt_tokens=256, output_tokens=128)

    assert catalogue_batch_reason(cell(8)).startswith("torchao-int8-dyn on hf-compiled needs batch size >= 17")
    assert catalogue_batch_reason(cell(32)) is None and catalogue_batch_reason(cell(1, "hf-eager")) is None


def _run_with_compiled_toy(monkeypatch, toy_step, cells, tries: int = 3):
    """Run `cells` with hf-compiled's generate preceded by `toy_step(ids)`, a torch.compile'd toy: a CPU run
    does not compile the model, so the toy is what dynamo compiles (dynamo's counters reset first). Where a
    record failed DecodeNotResolved (a scheduler stall on a busy CPU, `tests/fixtures/cpu_timing.py`), the whole
    sequence runs again from a fresh runner and a reset dynamo, at most `tries` times in all, so that what the
    cells compile and carry from one to the next is as in a first run."""
    import torch

    import measure.runner as R
    from measure.engines.hf_compiled import HfCompiled

    class ToyCompiled(HfCompiled):
        def generate(self, model, ids, mask, new_tokens):
            toy_step(ids)
            return super().generate(model, ids, mask, new_tokens)

    real = R.get_engine
    monkeypatch.setattr(R, "get_engine", lambda eid, **p: ToyCompiled(**p) if eid == "hf-compiled" else real(eid, **p))
    for _ in range(tries):
        torch._dynamo.reset()
        r = _runner()
        try:
            recs = [r.run(c) for c in cells]
        finally:
            r.close()
        if not any(x.status == "failed" and (x.error or "").startswith(f"{R.DecodeNotResolved.__name__}:")
                   for x in recs):
            break
    return recs


def test_compiled_cells_record_the_batch_sizes_and_graphs_before_them(monkeypatch):
    """Which graph a compiled cell times depends on what its loaded model ran before (torch's automatic
    dynamic shapes: static at the first batch size, a dynamic recompile at the second, reused after): each
    hf-compiled record says which batch sizes came before and how many graphs dynamo compiled in its warm-up
    and inside its timed windows."""
    import torch

    step = torch.compile(lambda x: x * 2 + 1, backend="eager")  # dynamo counts graphs without inductor
    *recs, other, eager = _run_with_compiled_toy(
        monkeypatch, lambda ids: step(torch.ones(ids.shape[0], 3)),
        [*(Cell("tiny-test", "fp32", "hf-compiled", b, 8, 8, repetitions=1) for b in (1, 2, 4, 2)),
         Cell("tiny-test", "bf16", "hf-compiled", 4, 8, 8, repetitions=1),  # a new model group
         Cell("tiny-test", "bf16", "hf-eager", 1, 8, 8, repetitions=1)])
    assert all(x.status == "ok" for x in [*recs, other, eager]), [x.error for x in recs]
    assert [x.engine_params["batch_sizes_before"] for x in recs] == [[], [1], [1, 2], [1, 2, 4]]
    # static graph at batch 1, a dynamic recompile at batch 2, reused at 4 and again at 2
    assert [x.engine_params["graphs_compiled_warmup"] for x in recs] == [1, 1, 0, 0]
    assert all(x.engine_params["graphs_compiled_timed"] == 0 for x in recs)
    assert not any("timed windows" in (x.unstable_reason or "") for x in recs)
    assert other.engine_params["batch_sizes_before"] == []  # the count restarts with every loaded model
    assert "batch_sizes_before" not in eager.engine_params


def test_eager_cells_of_the_same_loaded_model_do_not_count_as_batch_sizes_before(monkeypatch):
    """hf-eager and hf-compiled cells of one model and method share the loaded model; only the compiled
    cells compile graphs, so only they count in a later compiled cell's `batch_sizes_before`."""
    import torch

    step = torch.compile(lambda x: x * 2 + 1, backend="eager")
    first, eager, second = _run_with_compiled_toy(
        monkeypatch, lambda ids: step(torch.ones(ids.shape[0], 3)),
        [Cell("tiny-test", "fp32", "hf-compiled", 1, 8, 8, repetitions=1),
         Cell("tiny-test", "fp32", "hf-eager", 8, 8, 8, repetitions=1),
         Cell("tiny-test", "fp32", "hf-compiled", 2, 8, 8, repetitions=1)])
    assert all(x.status == "ok" for x in (first, eager, second)), [x.error for x in (first, eager, second)]
    assert second.engine_params["batch_sizes_before"] == [1]


def test_a_graph_compiled_inside_the_timed_windows_is_counted(monkeypatch):
    """A toy that sees a new static shape at every call compiles again while timed: the record says so."""
    import itertools

    import torch

    step = torch.compile(lambda x: x + 1, backend="eager", dynamic=False)
    calls = itertools.count(1)
    [rec] = _run_with_compiled_toy(monkeypatch, lambda ids: step(torch.ones(next(calls))),
                                   [Cell("tiny-test", "fp32", "hf-compiled", 1, 8, 8, repetitions=1)])
    assert rec.status == "ok", rec.error
    assert rec.engine_params["graphs_compiled_warmup"] == 1 and rec.engine_params["graphs_compiled_timed"] >= 1
    assert rec.is_stable is False  # its figures include compiling
    assert f"{rec.engine_params['graphs_compiled_timed']} graph(s) compiled inside the timed windows" in rec.unstable_reason


def test_hf_compiled_passes_its_params_to_the_compile_config():
    pytest.importorskip("transformers")
    from measure.engines.hf_compiled import HfCompiled

    default = HfCompiled().generate_kwargs()["compile_config"]
    assert default.dynamic is None and default.mode == "reduce-overhead" and default.fullgraph is False
    static = HfCompiled(dynamic=False, mode="default").generate_kwargs()["compile_config"]
    assert static.dynamic is False and static.mode == "default"


@pytest.fixture
def inductor_config_kept():
    """torch inductor's config as this process started with it during the test (the module's shared runner may
    still hold a torchao group, whose settings it sets back only when it unloads), and as it was after."""
    import torch._inductor.config as inductor_config

    saved = inductor_config.get_config_copy()
    inductor_config.load_config(_PRISTINE_INDUCTOR)
    yield inductor_config
    inductor_config.load_config(saved)


def test_a_methods_compiler_settings_stay_with_its_model_group(monkeypatch, inductor_config_kept):
    """torchao's quantize_ sets torch inductor's coordinate-descent tuning for the whole process; in session
    s8 it leaked into every later compiled cell of the process (fp16 batch 1: up to 1.57x the energy of the
    same machine's bf16). The runner records what a method changed and sets it back when the group unloads."""
    import torch
    import torch._inductor.config as inductor_config

    import measure.runner as R
    from measure.backends.dense import Fp16

    class TunesTheCompiler(Fp16):  # stands in for a torchao method
        def apply(self, model):
            inductor_config.coordinate_descent_tuning = True
            return super().apply(model)

    real = R.get_backend
    monkeypatch.setattr(R, "get_backend", lambda q, **p: TunesTheCompiler(**p) if q == "fp16" else real(q, **p))
    assert inductor_config.coordinate_descent_tuning is False
    seen = []
    step = torch.compile(lambda x: x + 1, backend="eager")
    method, later = _run_with_compiled_toy(
        monkeypatch, lambda ids: (seen.append(inductor_config.coordinate_descent_tuning), step(torch.ones(2))),
        [Cell("tiny-test", "fp16", "hf-compiled", 1, 8, 8, repetitions=1),
         Cell("tiny-test", "bf16", "hf-compiled", 1, 8, 8, repetitions=1)])
    assert method.status == later.status == "ok", (method.error, later.error)
    assert method.engine_params["inductor_overrides"] == {"coordinate_descent_tuning": True}
    assert later.engine_params["inductor_overrides"] == {}
    # the fp16 group's generate calls ran with its setting, the bf16 group's without it
    assert True in seen and seen[-1] is False
    assert inductor_config.coordinate_descent_tuning is False


def test_torchao_sets_compiler_settings_the_runner_records_and_restores(inductor_config_kept):
    pytest.importorskip("torchao")
    import torch._inductor.config as inductor_config

    before = inductor_config.get_config_copy()
    r = _runner()
    try:
        rec = run_resolved(r, Cell("tiny-test", "torchao-int8-wo", "hf-compiled", 1, 8, 4, repetitions=1))
    finally:
        r.close()
    assert rec.status == "ok", rec.error
    assert rec.engine_params["inductor_overrides"].get("coordinate_descent_tuning") is True
    assert inductor_config.get_config_copy() == before


def test_compiler_settings_are_restored_when_the_method_fails_after_setting_them(monkeypatch, inductor_config_kept):
    import measure.runner as R
    from measure.backends.dense import Fp16

    class FailsAfterTuning(Fp16):
        def apply(self, model):
            inductor_config_kept.coordinate_descent_tuning = True
            raise RuntimeError("quantization failed")

    real = R.get_backend
    monkeypatch.setattr(R, "get_backend", lambda q, **p: FailsAfterTuning(**p) if q == "fp16" else real(q, **p))
    r = _runner()
    try:
        rec = r.run(Cell("tiny-test", "fp16", "hf-compiled", 1, 8, 4, repetitions=1))
    finally:
        r.close()
    assert rec.status == "failed" and "quantization failed" in rec.error
    assert inductor_config_kept.coordinate_descent_tuning is False


def test_a_failed_restore_warns_and_still_unloads(monkeypatch, inductor_config_kept):
    import measure.runner as R

    def broken(saved):
        raise RuntimeError("config is read-only")

    r = _runner()
    try:
        assert run_resolved(r, Cell("tiny-test", "bf16", "hf-eager", 1, 8, 4, repetitions=1)).status == "ok"
        assert r._loaded is not None and r._inductor_before is not None
        monkeypatch.setattr(R, "_restore_inductor_config", broken)
        with pytest.warns(RuntimeWarning, match="could not restore"):
            r._unload()
        assert r._loaded is None and r._inductor_before is None
    finally:
        r.close()


def test_changed_keeps_only_plain_values_that_differ():
    from measure.runner import _changed

    before = {"a": False, "b": 1, "c": [1], "d": "x"}
    after = {"a": True, "b": 1, "c": [2], "d": "y", "e": 0.5}
    assert _changed(before, after) == {"a": True, "d": "y", "e": 0.5}  # the list is not a plain value
    assert _changed(None, after) == {}


def test_torchao_with_set_inductor_config_false_leaves_the_compiler_settings_alone(inductor_config_kept):
    """quant_params {set_inductor_config: false}: the control that separates a torchao method from the compiler
    settings its quantize_ would otherwise set."""
    pytest.importorskip("torchao")
    before = inductor_config_kept.get_config_copy()
    r = _runner()
    try:
        rec = run_resolved(r, Cell("tiny-test", "torchao-int8-wo", "hf-compiled", 1, 8, 4, repetitions=1,
                                   quant_params={"set_inductor_config": False}))
        assert inductor_config_kept.get_config_copy() == before  # while the group is still loaded
    finally:
        r.close()
    assert rec.status == "ok", rec.error
    assert rec.engine_params["inductor_overrides"] == {}
    assert rec.quant_params["set_inductor_config"] is False


def _woq_toy():
    """An int8 weight-only linear as torchao 0.18 writes it, `linear(x, w_int8.to(bf16)) * scale`, compiled with
    inductor: the pattern inductor's weight-only int8 lowering rewrites to aten._weight_int8pack_mm (on CPU as on
    CUDA). A step of it per generate call: (ids) -> None."""
    import torch

    w = torch.randint(-128, 127, (32, 64), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    s = torch.rand(32, dtype=torch.bfloat16) + 0.5
    linear = torch.compile(lambda x: torch.nn.functional.linear(x, w.to(x.dtype)) * s)
    return lambda ids: linear(torch.ones(2, 4, 64, dtype=torch.bfloat16))


@pytest.fixture
def mkldnn_kept():
    """torch.backends.mkldnn.enabled as it was before the test (hf-compiled's `woq_lowering: false` switches it
    off for the process)."""
    import torch

    saved = torch.backends.mkldnn.enabled
    yield
    torch.backends.mkldnn.enabled = saved


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor's CPU code needs a C++ compiler")
def test_compiled_cells_count_inductors_weight_only_int8_rewrites(monkeypatch, inductor_config_kept, mkldnn_kept):
    """Every compiled record counts the linears inductor rewrote to aten._weight_int8pack_mm in its warm-up (s20:
    the rewrite behind compiled int8 weight-only's slow path on CUDA): a real inductor compile of the pattern."""
    first, again = _run_with_compiled_toy(
        monkeypatch, _woq_toy(), [Cell("tiny-test", "fp32", "hf-compiled", b, 8, 8, repetitions=1) for b in (1, 2)])
    assert first.status == again.status == "ok", (first.error, again.error)
    assert first.engine_params["woq_rewrites_warmup"] == 1  # the toy's one linear, compiled in the first warm-up
    assert again.engine_params["woq_rewrites_warmup"] == 0  # nothing compiled again


def test_a_woq_lowering_false_cell_whose_warm_up_was_rewritten_fails_with_the_reason(monkeypatch, inductor_config_kept,
                                                                                       mkldnn_kept):
    """torch registers the rewrite once per process: where a `woq_lowering: false` cell's warm-up still counts
    rewrites (here a step that bumps inductor's counter as a rewriting compile does), the cell fails with the
    reason instead of measuring the rewritten graph; hf-compiled switched oneDNN and the FX graph cache off."""
    import torch
    from torch._dynamo.utils import counters

    bumped = []

    def rewriting_compile(ids):
        if not bumped:
            counters["inductor"]["woq_matcher_count"] += 7
            bumped.append(torch.backends.mkldnn.enabled)

    [rec] = _run_with_compiled_toy(monkeypatch, rewriting_compile, [
        Cell("tiny-test", "fp32", "hf-compiled", 1, 8, 8, repetitions=1, engine_params={"woq_lowering": False})])
    assert rec.status == "failed" and rec.engine_params["woq_rewrites_warmup"] == 7
    assert "rewrote 7 int8 weight-only linear(s)" in rec.error and "a process of its own" in rec.error
    assert bumped == [False]  # oneDNN was off before the warm-up compiled
    assert rec.engine_params["woq_lowering"] is False


_FRESH_PROCESS = """
import json, sys
sys.path.insert(0, {root!r})
import measure.runner as R
from measure.cell import Cell
from measure.engines.hf_compiled import HfCompiled
from tests.measure.test_runner import _runner, _woq_toy

step = _woq_toy()

class ToyCompiled(HfCompiled):
    def generate(self, model, ids, mask, new_tokens):
        step(ids)
        return super().generate(model, ids, mask, new_tokens)

R.get_engine = lambda eid, **p: ToyCompiled(**p)
r = _runner()
rec = r.run(Cell("tiny-test", "fp32", "hf-compiled", 1, 8, 8, repetitions=1, engine_params={params}))
import torch
print(json.dumps({{"status": rec.status, "error": rec.error, "rewrites": rec.engine_params.get("woq_rewrites_warmup"),
                  "mkldnn": torch.backends.mkldnn.enabled}}))
"""


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor's CPU code needs a C++ compiler")
@pytest.mark.parametrize("params, rewrites, onednn", [({"woq_lowering": False}, 0, False), ({}, 1, True)])
def test_woq_lowering_false_keeps_the_rewrite_out_of_a_fresh_process(tmp_path, params, rewrites, onednn):
    """In a process of its own, hf-compiled's `woq_lowering: false` compiles the int8 weight-only linear without
    the rewrite (0 in the record) and leaves oneDNN off; the same fresh process without it rewrites the linear."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    for attempt in range(3):  # a fresh process again where a scheduler stall failed the decode (cpu_timing.py)
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / f"inductor{attempt}")}  # no graph cached
        out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS.format(root=root, params=params)], cwd=root,
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        if not (got["error"] or "").startswith("DecodeNotResolved:"):
            break
    assert got["status"] == "ok", got["error"]
    assert (got["rewrites"], got["mkldnn"]) == (rewrites, onednn)


def test_host_launch_us_is_the_median_time_per_launch():
    """Each launch of a stand-in tensor sleeps 1 ms and one round of 20 is 20x slower (a stall): the
    median over the rounds is the time per launch in µs, not the mean; a real CPU tensor gives a small
    positive figure."""
    import time as _time

    import torch

    from measure.runner import host_launch_us

    class Tensor:
        calls = 0

        def add_(self, _):
            Tensor.calls += 1
            _time.sleep(0.02 if 22 <= Tensor.calls <= 41 else 0.001)  # the second round (after the untimed one)

    class FakeTorch:
        @staticmethod
        def zeros(*_, **__):
            return Tensor()

    us = host_launch_us(FakeTorch, "cpu", launches=20, rounds=3)
    assert 1000 <= us < 5000 and Tensor.calls == 61
    # measured again at every call (before each cell's warm-up), never served from a cache
    Tensor.calls = 100
    host_launch_us(FakeTorch, "cpu", launches=20, rounds=3)
    assert Tensor.calls == 161
    real = host_launch_us(torch, "cpu", launches=200, rounds=3)
    assert 0 < real < 1000
