"""Executor: resume, failures, cooldown, time budget, ordering, and kill-and-resume in a subprocess."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from measure.cell import Cell
from measure.executor import RECOMPILE_FACTOR, Cooldown, SystemClock, failed_record, run_grid
from measure.grid import CooldownSpec, GridSpec, order_cells
from measure.record import Record
from measure.store import Store

REPO = Path(__file__).resolve().parents[2]
DEV = "NVIDIA H100 80GB HBM3"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def ok_record(cell: Cell) -> Record:
    return Record(cell_hash=cell.content_hash, model=cell.model, quant=cell.quant, engine=cell.engine,
                  batch_size=cell.batch_size, prompt_tokens=cell.prompt_tokens, output_tokens=cell.output_tokens,
                  weights=cell.weights, repetitions=cell.repetitions, warmup=cell.warmup, tokens_per_s=50.0,
                  decode_energy_per_token_j=0.2, energy_total_j=30.0, duration_s=0.5)


class FakeRunner:
    """Returns ok records; `behaviour[label]` in {"raise", "fail", "skip", "invalid", "interrupt"}.
    Each cell advances the fake clock by `cost(cell, new_group)` seconds."""

    def __init__(self, clock: FakeClock | None = None, behaviour: dict | None = None, cost=None):
        self.clock, self.behaviour, self.cost = clock, behaviour or {}, cost
        self.calls: list[Cell] = []
        self.closed = False
        self._last_group = None

    def run(self, cell: Cell) -> Record:
        self.calls.append(cell)
        if self.clock is not None:
            new = cell.group_key != self._last_group
            self.clock.t += self.cost(cell, new) if self.cost else 1.0
        self._last_group = cell.group_key
        what = self.behaviour.get(cell.label())
        if what == "raise":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "fail":
            return failed_record(cell, "OOM: CUDA out of memory")
        if what == "skip":
            return failed_record(cell, "torchao-fp8 needs compute capability 8.9", status="skipped")
        rec = ok_record(cell)
        if what == "invalid":
            rec.tokens_per_s = -1.0
        return rec

    def close(self) -> None:
        self.closed = True


class FakeMeter:
    def __init__(self, temps):
        self.temps = list(temps)

    def temperature_c(self):
        return self.temps.pop(0) if len(self.temps) > 1 else self.temps[0]


def make_cells(models=("tiny-test", "other"), quants=("fp32", "bf16"), batches=(1, 2)) -> list[Cell]:
    return [Cell(model=m, quant=q, engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8)
            for m in models for q in quants for b in batches]


def make_spec(**kw) -> GridSpec:
    d = {"name": "t", "models": ["tiny-test"], "quants": ["fp32"], "engines": ["hf-eager"], "batch_sizes": [1],
         "workloads": ["16/8"], "cooldown": {"mode": "none"}}
    d.update(kw)
    return GridSpec.from_dict(d, source="grids/t.yaml")


def go(spec, runner, store, cells, **kw):
    kw.setdefault("clock", getattr(runner, "clock", None) or FakeClock())
    kw.setdefault("progress", False)
    return run_grid(spec, runner, store, device_name=kw.pop("device_name", DEV), cells=cells, **kw)


# ---------------------------------------------------------------------------------------------- basics
def test_runs_every_cell_once_and_resumes(tmp_path):
    cells = make_cells()
    store = Store(tmp_path / "m.jsonl")
    runner = FakeRunner(FakeClock())
    s = go(make_spec(), runner, store, cells)
    assert (s.total, s.ran, s.ok, s.already_done, s.remaining, s.stopped) == (8, 8, 8, 0, 0, None)
    assert s.complete and runner.closed
    assert [c.content_hash for c in runner.calls] == [c.content_hash for c in cells]
    recs = store.records()
    assert [r.cell_hash for r in recs] == [c.content_hash for c in cells]
    assert all(r.gpu_name == DEV and r.grid_file == "grids/t.yaml" and r.record_id and r.created_at
               for r in recs)
    assert all(r.cooldown_s == 0.0 for r in recs)

    again = FakeRunner(FakeClock())
    s2 = go(make_spec(), again, store, cells)
    assert (s2.ran, s2.already_done, s2.total) == (0, 8, 8) and again.calls == []
    # another GPU model: nothing is done there yet
    h200 = FakeRunner(FakeClock())
    s3 = go(make_spec(), h200, store, cells[:3], device_name="NVIDIA H200")
    assert s3.ran == 3 and len(store.records()) == 11


def test_duplicate_cells_run_once(tmp_path):
    cells = make_cells()[:2]
    runner = FakeRunner(FakeClock())
    s = go(make_spec(), runner, Store(tmp_path / "m.jsonl"), cells + cells)
    assert s.ran == 2 and len(runner.calls) == 2


def test_failures_are_recorded_and_the_grid_goes_on(tmp_path):
    cells = make_cells()
    labels = [c.label() for c in cells]
    behaviour = {labels[1]: "raise", labels[2]: "fail", labels[3]: "skip", labels[4]: "invalid"}
    store = Store(tmp_path / "m.jsonl")
    s = go(make_spec(), FakeRunner(FakeClock(), behaviour), store, cells)
    assert (s.ran, s.ok, s.failed, s.skipped) == (8, 4, 3, 1)
    by = {r.cell_hash: r for r in store.records()}
    raised = by[cells[1].content_hash]
    assert raised.status == "failed" and "RuntimeError: CUDA error: an illegal memory access" in raised.error
    assert raised.gpu_name == DEV and raised.model == cells[1].model and raised.batch_size == cells[1].batch_size
    assert by[cells[2].content_hash].error == "OOM: CUDA out of memory"
    assert by[cells[3].content_hash].status == "skipped"
    assert "invalid record" in by[cells[4].content_hash].error
    assert {lab for lab, _ in s.failures} == {labels[1], labels[2], labels[4]}

    # a plain rerun keeps the failures; retry_failed reruns exactly the failed (not the skipped) cells
    rerun = FakeRunner(FakeClock())
    assert go(make_spec(), rerun, store, cells).ran == 0
    s2 = go(make_spec(), rerun, store, cells, retry_failed=True)
    assert {c.label() for c in rerun.calls} == {labels[1], labels[2], labels[4]} and s2.ok == 3
    assert store.done_hashes(retry_failed=True) >= {(c.content_hash, DEV) for c in cells}


def test_interrupt_keeps_what_was_recorded(tmp_path):
    cells = make_cells()
    store = Store(tmp_path / "m.jsonl")
    s = go(make_spec(), FakeRunner(FakeClock(), {cells[3].label(): "interrupt"}), store, cells)
    assert s.stopped == "interrupted" and s.ran == 3 and s.remaining == 5
    assert len(store.records()) == 3
    # the summary names the cell the interrupt stopped (nothing of it is recorded) and how long it had run
    assert s.interrupted_cell == cells[3].label() and s.interrupted_after_s == pytest.approx(1.0)
    assert f"stopped: interrupted in {cells[3].label()} after 1 s" in s.line()
    assert s.to_dict()["interrupted_cell"] == cells[3].label()


def test_an_interrupt_between_cells_names_no_cell(tmp_path):
    cells = make_cells()

    class StopInCooldown(FakeClock):
        def sleep(self, seconds):
            raise KeyboardInterrupt

    spec = make_spec(cooldown={"mode": "fixed", "seconds": 5.0})
    s = go(spec, FakeRunner(StopInCooldown()), Store(tmp_path / "m.jsonl"), cells)
    assert s.stopped == "interrupted" and s.ran == 1 and s.interrupted_cell is None
    assert " in " not in s.line().split("stopped:")[1]


# ---------------------------------------------------------------------------------------------- cooldown
def test_fixed_cooldown_between_cells(tmp_path):
    clock = FakeClock()
    store = Store(tmp_path / "m.jsonl")
    s = go(make_spec(cooldown={"mode": "fixed", "seconds": 30}), FakeRunner(clock), store, make_cells()[:4])
    assert clock.sleeps == [30, 30, 30]
    assert [r.cooldown_s for r in store.records()] == [0.0, 30.0, 30.0, 30.0]
    assert s.cooldown_s == 90.0 and s.elapsed_s == pytest.approx(4 * 1.0 + 90.0)


def test_adaptive_cooldown_polls_until_near_idle(tmp_path):
    clock = FakeClock()
    # idle read at start = 40; before cell 2: 50, 47, 44, 43 (<= 40 + 3) -> 3 polls of 5 s
    meter = FakeMeter([40, 50, 47, 44, 43, 41])
    spec = make_spec(cooldown={"mode": "adaptive", "margin_c": 3, "cap_s": 300, "poll_s": 5})
    store = Store(tmp_path / "m.jsonl")
    go(spec, FakeRunner(clock), store, make_cells()[:3], meter=meter)
    assert [r.cooldown_s for r in store.records()] == [0.0, 15.0, 0.0]


def test_adaptive_cooldown_is_capped_and_falls_back_without_a_thermometer():
    clock = FakeClock()
    cd = Cooldown(CooldownSpec(mode="adaptive", margin_c=3, cap_s=12, poll_s=5), FakeMeter([40, 90]), clock)
    cd.start()
    assert cd.idle_c == 40 and cd.wait() == 12 and clock.sleeps == [5, 5, 2]
    clock2 = FakeClock()
    cd2 = Cooldown(CooldownSpec(mode="adaptive", seconds=60, cap_s=20), None, clock2)
    cd2.start()
    assert cd2.estimate() == 20 and cd2.wait() == 20
    cd3 = Cooldown(CooldownSpec(mode="none"), FakeMeter([40]), FakeClock())
    cd3.start()
    assert cd3.wait() == 0.0 and cd3.estimate() == 0.0


def test_system_clock_sleeps():
    c = SystemClock()
    t0 = c.now()
    c.sleep(0.01)
    assert c.now() - t0 >= 0.009


# ---------------------------------------------------------------------------------------------- stopping
def test_stop_after_then_finish(tmp_path):
    cells = make_cells()
    store = Store(tmp_path / "m.jsonl")
    s = go(make_spec(), FakeRunner(FakeClock()), store, cells, stop_after=3)
    assert (s.ran, s.remaining, s.stopped, s.complete) == (3, 5, "stop_after", False)
    runner = FakeRunner(FakeClock())
    s2 = go(make_spec(), runner, store, cells)
    assert (s2.ran, s2.already_done) == (5, 3) and runner.calls == cells[3:]
    assert sorted(r.cell_hash for r in store.records()) == sorted(c.content_hash for c in cells)


def test_time_budget_uses_group_start_and_continuation_times(tmp_path):
    # two groups of 3 cells; a group's first cell loads the model (20 s), the others take 5 s
    cells = make_cells(models=("a", "b"), quants=("fp32",), batches=(1, 2, 4))
    clock = FakeClock()
    runner = FakeRunner(clock, cost=lambda cell, new: 20.0 if new else 5.0)
    store = Store(tmp_path / "m.jsonl")
    s = go(make_spec(), runner, store, cells, time_budget_s=45)
    # a1 20 + a2 5 + a3 5 = 30; b1 would need 20 x 1.1 -> 52 > 45: stop before it
    assert (s.ran, s.stopped, s.remaining) == (3, "time_budget", 3)
    assert clock.t - 1000.0 == 30.0
    # without the group distinction the mean (10 s) would have let b1 start; a larger budget does
    s2 = go(make_spec(), FakeRunner(FakeClock(), cost=lambda cell, new: 20.0 if new else 5.0), store, cells,
            time_budget_s=60)
    assert s2.ran == 3 and s2.complete


def test_time_budget_counts_cooldown_and_uses_store_prior(tmp_path):
    cells = make_cells()
    store = Store(tmp_path / "m.jsonl")
    spec = make_spec(cooldown={"mode": "fixed", "seconds": 10})
    s = go(spec, FakeRunner(FakeClock(), cost=lambda c, n: 4.0), store, cells, time_budget_s=30)
    # c1 4 s (t=4); c2: 4 + 10 + 4.4 = 18.4 fits (t=18); c3: 18 + 10 + 4.4 = 32.4 > 30
    assert (s.ran, s.stopped) == (2, "time_budget")
    # a fresh process (new GPU call) has no in-run history: the store's records give the first estimate
    prior = ok_record(cells[0])
    prior.gpu_name, prior.load_time_s, prior.duration_s = DEV, 50.0, 5.0  # 50 + (1 + 3) x 5 = 70 s
    other = Store(tmp_path / "other.jsonl")
    other.append(prior)
    runner = FakeRunner(FakeClock())
    s2 = go(spec, runner, other, cells[1:], time_budget_s=60)
    assert (s2.ran, s2.stopped) == (0, "time_budget") and runner.calls == []
    assert go(spec, FakeRunner(FakeClock()), other, cells[1:2], time_budget_s=100).ran == 1


def test_time_budget_estimates_each_engine_on_its_own(tmp_path):
    eager = [Cell(model="m", quant="bf16", engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8)
             for b in (1, 2)]
    compiled = [Cell(model="m", quant="bf16", engine="hf-compiled", batch_size=b, prompt_tokens=16,
                     output_tokens=8) for b in (1, 2)]
    store = Store(tmp_path / "m.jsonl")
    prior = ok_record(compiled[0])  # an earlier compiled cell on this device: 90 s compile + 4 x 2.5 s
    prior.gpu_name, prior.compile_time_s, prior.duration_s = DEV, 90.0, 2.5
    prior.cell_hash = "f" * 16
    store.append(prior)
    fast = ok_record(eager[0])  # and an eager one: 4 x 1.25 s
    fast.gpu_name, fast.duration_s, fast.cell_hash = DEV, 1.25, "e" * 16
    store.append(fast)
    cost = {"hf-eager": 5.0, "hf-compiled": 100.0}
    runner = FakeRunner(FakeClock(), cost=lambda c, new: cost[c.engine])
    s = go(make_spec(), runner, store, eager + compiled, time_budget_s=60)
    # both eager cells run (5 s each); the compiled one is judged by compiled history (100 s), not by 5 s
    assert [c.engine for c in runner.calls] == ["hf-eager", "hf-eager"] and s.stopped == "time_budget"


def test_time_budget_estimates_each_method_on_its_own(tmp_path):
    fast = [Cell(model="m", quant="bf16", engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8)
            for b in (1, 2, 4)]
    slow = [Cell(model="m", quant="bnb-int8", engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8)
            for b in (1, 2)]
    store = Store(tmp_path / "m.jsonl")
    prior = ok_record(Cell(model="other", quant="bnb-int8", engine="hf-eager", batch_size=1, prompt_tokens=16,
                           output_tokens=8))  # LLM.int8 on another model, this device: 4 x 20 s
    prior.gpu_name, prior.duration_s, prior.cell_hash = DEV, 20.0, "d" * 16
    store.append(prior)
    quick = ok_record(Cell(model="other", quant="bf16", engine="hf-eager", batch_size=1, prompt_tokens=16,
                           output_tokens=8))  # and bf16 there: 4 x 1.25 s
    quick.gpu_name, quick.duration_s, quick.cell_hash = DEV, 1.25, "c" * 16
    store.append(quick)
    cost = {"bf16": 5.0, "bnb-int8": 80.0}
    runner = FakeRunner(FakeClock(), cost=lambda c, new: cost[c.quant])
    s = go(make_spec(), runner, store, fast + slow, time_budget_s=60)
    # the three bf16 cells (15 s) run; the int8 one is judged by int8 history (80 s), not by bf16's 5 s
    assert [c.quant for c in runner.calls] == ["bf16"] * 3 and s.stopped == "time_budget"
    runner2 = FakeRunner(FakeClock(), cost=lambda c, new: cost[c.quant])
    assert go(make_spec(), runner2, Store(tmp_path / "m2.jsonl"), fast + slow[:1], time_budget_s=60).ran == 4
    # a slow block first is passed over, not the end of the worker: the bf16 cells after it still run
    runner3 = FakeRunner(FakeClock(), cost=lambda c, new: cost[c.quant])
    fresh = Store(tmp_path / "m3.jsonl")
    fresh.append(prior)
    fresh.append(quick)
    s3 = go(make_spec(), runner3, fresh, slow + fast, time_budget_s=60)
    assert [c.quant for c in runner3.calls] == ["bf16"] * 3
    assert (s3.stopped, s3.remaining) == ("time_budget", 2)


# ---------------------------------------------------------------------------------------------- ordering
def test_cheapest_order_runs_the_quickest_blocks_first(tmp_path):
    def cells(model, quant):
        return [Cell(model=model, quant=quant, engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8)
                for b in (1, 2)]

    slow, fast, big_fast, unknown = cells("m", "bnb-int8"), cells("m", "bf16"), cells("big", "bf16"), cells("m", "fp8")
    store = Store(tmp_path / "m.jsonl")
    for model, quant, dur, h in (("other", "bnb-int8", 20.0, "a"), ("other", "bf16", 1.0, "b"),
                                 ("other", "fp16", 1.0, "d"), ("big", "fp16", 4.0, "c")):
        r = ok_record(Cell(model=model, quant=quant, engine="hf-eager", batch_size=1, prompt_tokens=16,
                           output_tokens=8))
        r.gpu_name, r.duration_s, r.cell_hash = DEV, dur, h * 16
        store.append(r)
    runner = FakeRunner(FakeClock())
    go(make_spec(order="cheapest"), runner, store, unknown + slow + big_fast + fast)
    order = [(c.model, c.quant) for c in runner.calls[::2]]
    # per cell: m bf16 4 s; big bf16 4 s x 1.6 (big's fp16 took 16 s against fp16's mean of 10 s); m int8
    # 80 s; then fp8, which has no record
    assert order == [("m", "bf16"), ("big", "bf16"), ("m", "bnb-int8"), ("m", "fp8")]
    assert order_cells(unknown + slow, "cheapest") == unknown + slow  # no estimate: grouped order



def test_random_order_keeps_groups_together(tmp_path):
    cells = make_cells(models=("a", "b", "c"), quants=("fp32", "bf16"), batches=(1, 2, 4))
    spec = make_spec(order="random", order_seed=5)
    runner = FakeRunner(FakeClock())
    go(spec, runner, Store(tmp_path / "m.jsonl"), cells)
    assert runner.calls == order_cells(cells, "random", 5) and runner.calls != cells
    keys = [c.group_key for c in runner.calls]
    assert len([k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]) == 6


def test_pinned_cells_run_only_on_their_gpu(tmp_path):
    base = make_cells()[:2]
    pinned = [Cell(**{**c.to_dict(), "tasks": (), "gpu": g}) for c in base for g in ("h100-sxm", "a100-sxm4-80gb")]
    runner = FakeRunner(FakeClock())
    s = go(make_spec(), runner, Store(tmp_path / "m.jsonl"), base + pinned, gpu_id="h100-sxm")
    assert s.other_device == 2 and s.ran == 4
    assert {c.gpu for c in runner.calls} == {None, "h100-sxm"}


def test_progress_lines_and_logging(tmp_path, capsys):
    lines: list[str] = []
    cells = make_cells()[:3]
    go(make_spec(), FakeRunner(FakeClock(), {cells[1].label(): "fail"}), Store(tmp_path / "a.jsonl"), cells,
       log=lines.append)
    assert len(lines) == 3 and lines[0].startswith("[1/3] tiny-test/fp32/hf-eager/b1/p16-o8 ok 50.0 tok/s")
    assert "failed: OOM" in lines[1]
    # progress=True without a terminal: no bar, one plain line per cell on stderr
    go(make_spec(), FakeRunner(FakeClock()), Store(tmp_path / "b.jsonl"), cells, progress=True)
    err = capsys.readouterr().err
    assert err.count("tok/s") == 3 and "[3/3]" in err


def test_runner_record_fields_are_kept(tmp_path):
    class NamedRunner(FakeRunner):
        def run(self, cell):
            rec = super().run(cell)
            rec.gpu_name, rec.cell_hash = "NVIDIA H100 PCIe", "wrong"
            return rec

    store = Store(tmp_path / "m.jsonl")
    with pytest.warns(RuntimeWarning, match="resume matches on gpu_name"):
        go(make_spec(), NamedRunner(FakeClock()), store, make_cells()[:1])
    r = store.records()[0]
    assert r.gpu_name == "NVIDIA H100 PCIe" and r.cell_hash == make_cells()[0].content_hash


# ---------------------------------------------------------------------------------------------- kill + resume
SCRIPT = textwrap.dedent("""
    import sys, time
    from measure.cell import Cell
    from measure.executor import run_grid
    from measure.grid import GridSpec
    from measure.record import Record
    from measure.store import Store

    class SlowRunner:
        def run(self, cell):
            time.sleep(float(sys.argv[2]))
            # a few KB per line, like real records
            return Record(cell_hash=cell.content_hash, model=cell.model, quant=cell.quant, engine=cell.engine,
                          batch_size=cell.batch_size, prompt_tokens=cell.prompt_tokens,
                          output_tokens=cell.output_tokens, tokens_per_s=10.0, decode_energy_per_token_j=0.1,
                          energy_total_j=1.0, duration_s=0.01, unstable_reason="x" * 3000)

        def close(self):
            pass

    cells = [Cell(model=f"m{i % 4}", quant="fp32", engine="hf-eager", batch_size=b, prompt_tokens=16,
                  output_tokens=8) for i in range(4) for b in (1, 2, 4, 8, 16)]
    spec = GridSpec.from_dict({"models": ["x"], "quants": ["fp32"], "engines": ["hf-eager"], "batch_sizes": [1],
                               "workloads": ["16/8"], "cooldown": "none"})
    s = run_grid(spec, SlowRunner(), Store(sys.argv[1]), device_name="fake-gpu", cells=cells, progress=False)
    print(s.ran, s.already_done)
""")


def test_kill_and_resume_records_every_cell_exactly_once(tmp_path):
    script = tmp_path / "grid_job.py"
    script.write_text(SCRIPT)
    store_path = tmp_path / "m.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, str(script), str(store_path), "0.05"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if store_path.exists() and store_path.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    n_before = store_path.read_bytes().count(b"\n")
    assert 6 <= n_before < 20
    # simulate the worst case too: the kill landed in the middle of a line
    with open(store_path, "ab") as f:
        f.write(b'{"cell_hash": "deadbeef", "model": "m0", "qu')

    done = subprocess.run([sys.executable, str(script), str(store_path), "0"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ran, already = map(int, done.stdout.split())
    assert ran + already == 20 and already == n_before
    raw = store_path.read_bytes()
    assert raw.endswith(b"\n")
    rows = [json.loads(line) for line in raw.splitlines()]  # no corrupt line
    hashes = [r["cell_hash"] for r in rows]
    assert len(hashes) == 20 == len(set(hashes)) and "deadbeef" not in hashes
    assert {r["gpu_name"] for r in rows} == {"fake-gpu"}
    assert len(Store(store_path).records()) == 20
    # nothing left to do
    again = subprocess.run([sys.executable, str(script), str(store_path), "0"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.stdout.split() == ["0", "20"]


# ------------------------------------------------------------------------------- claim directory
def test_claim_dir_splits_blocks_between_processes(tmp_path):
    from measure.executor import ClaimDir

    cells = make_cells(models=("a", "b", "c"), quants=("fp32", "bf16"), batches=(1, 2, 4))
    claims = tmp_path / "claims"
    # two "processes" interleaved by hand: A takes the first block, B sees it taken and takes the next
    a_store, b_store = Store(tmp_path / "a.jsonl"), Store(tmp_path / "b.jsonl")
    ra, rb = FakeRunner(FakeClock()), FakeRunner(FakeClock())
    ca, cb = ClaimDir(claims, owner="A"), ClaimDir(claims, owner="B")
    sa1 = go(make_spec(), ra, a_store, cells, claims=ca, stop_after=3)  # one whole block (3 batch sizes)
    sb = go(make_spec(), rb, b_store, cells, claims=cb)
    sa2 = go(make_spec(), FakeRunner(FakeClock()), a_store, cells, claims=ca)
    assert sa1.ran == 3 and sb.ran == 15 and sb.claimed_elsewhere == 3
    assert sa2.ran == 0 and sa2.already_done == 3 and sa2.claimed_elsewhere == 15
    # every cell exactly once over both stores; a block never split between processes
    by_store = {"A": a_store.records(), "B": b_store.records()}
    hashes = [r.cell_hash for rs in by_store.values() for r in rs]
    assert sorted(hashes) == sorted(c.content_hash for c in cells)
    blocks = {who: {ClaimDir.block_key(next(c for c in cells if c.content_hash == r.cell_hash)) for r in rs}
              for who, rs in by_store.items()}
    assert not blocks["A"] & blocks["B"] and len(blocks["A"]) == 1 and len(blocks["B"]) == 5
    assert len(list(claims.iterdir())) == 6
    assert "A " in (claims / ClaimDir.block_key(cells[0])).read_text()


def test_claim_key_separates_engines_and_keeps_batches_together():
    from measure.executor import ClaimDir

    base = Cell(model="m", quant="bf16", engine="hf-eager", batch_size=1, prompt_tokens=16, output_tokens=8)
    same_block = Cell(model="m", quant="bf16", engine="hf-eager", batch_size=32, prompt_tokens=64, output_tokens=8)
    other_engine = Cell(model="m", quant="bf16", engine="hf-compiled", batch_size=1, prompt_tokens=16,
                        output_tokens=8)
    other_quant = Cell(model="m", quant="fp16", engine="hf-eager", batch_size=1, prompt_tokens=16, output_tokens=8)
    k = ClaimDir.block_key
    assert k(base) == k(same_block)
    assert len({k(base), k(other_engine), k(other_quant)}) == 3


CLAIM_SCRIPT = textwrap.dedent("""
    import sys, time
    from measure.cell import Cell
    from measure.executor import ClaimDir, run_grid, SystemClock
    from measure.grid import GridSpec
    from measure.record import Record
    from measure.store import Store

    class Runner:
        def run(self, cell):
            time.sleep(0.01)
            return Record(cell_hash=cell.content_hash, model=cell.model, quant=cell.quant, engine=cell.engine,
                          batch_size=cell.batch_size, prompt_tokens=cell.prompt_tokens,
                          output_tokens=cell.output_tokens, weights=cell.weights, repetitions=cell.repetitions,
                          warmup=cell.warmup, tokens_per_s=1.0, decode_energy_per_token_j=1.0,
                          energy_total_j=1.0, duration_s=0.01)
        def close(self):
            pass

    cells = [Cell(model=f"m{i}", quant=q, engine="hf-eager", batch_size=b, prompt_tokens=16, output_tokens=8)
             for i in range(6) for q in ("fp32", "bf16") for b in (1, 2, 4)]
    spec = GridSpec.from_dict({"models": ["x"], "quants": ["fp32"], "engines": ["hf-eager"], "batch_sizes": [1],
                               "workloads": ["16/8"], "cooldown": "none"})
    s = run_grid(spec, Runner(), Store(sys.argv[1]), device_name="fake-gpu", cells=cells, progress=False,
                 claims=ClaimDir(sys.argv[2]))
    print(s.ran, s.claimed_elsewhere)
""")


def test_concurrent_processes_with_one_claim_dir_run_each_cell_once(tmp_path):
    script = tmp_path / "claim_job.py"
    script.write_text(CLAIM_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    stores = [tmp_path / f"gpu{i}.jsonl" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, str(script), str(s), str(tmp_path / "claims")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in stores]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    ran = [int(o[0].split()[0]) for o in outs]
    assert sum(ran) == 36
    hashes = [r.cell_hash for s in stores for r in Store(s).records()]
    assert len(hashes) == 36 == len(set(hashes))


def test_a_restarted_owner_takes_back_its_unfinished_block(tmp_path):
    from measure.executor import ClaimDir

    cells = make_cells(models=("a",), quants=("fp32",), batches=(1, 2, 4))
    store = Store(tmp_path / "a.jsonl")
    s1 = go(make_spec(), FakeRunner(FakeClock()), store, cells, claims=ClaimDir(tmp_path / "c", owner="host:cuda:0"),
            stop_after=1)
    other = go(make_spec(), FakeRunner(FakeClock()), Store(tmp_path / "b.jsonl"), cells,
               claims=ClaimDir(tmp_path / "c", owner="host:cuda:1"))
    s2 = go(make_spec(), FakeRunner(FakeClock()), store, cells, claims=ClaimDir(tmp_path / "c", owner="host:cuda:0"))
    assert (s1.ran, other.ran, other.claimed_elsewhere, s2.ran, s2.already_done) == (1, 0, 3, 2, 1)


def test_cheapest_order_scales_a_model_without_records_by_its_layers(tmp_path):
    from measure.executor import _Estimator

    def rec(model, quant, dur):
        r = ok_record(Cell(model=model, quant=quant, engine="hf-eager", batch_size=1, prompt_tokens=16,
                           output_tokens=8))
        r.gpu_name, r.duration_s = DEV, dur
        return r

    est = _Estimator([rec("qwen2.5-0.5b-instruct", "bnb-int8", 10.0)])  # 24 layers: 4 x 10 s
    cell = Cell(model="qwen2.5-14b-instruct", quant="bnb-int8", engine="hf-eager", batch_size=1, prompt_tokens=16,
                output_tokens=8)  # 48 layers, never measured
    assert est.prior_cost(cell) == pytest.approx(80.0)
    assert est.prior_cost(Cell(model="not-in-catalogue", quant="bnb-int8", engine="hf-eager", batch_size=1,
                               prompt_tokens=16, output_tokens=8)) == pytest.approx(40.0)


def _prior(model, quant, batch, prompt, output, dur, ttft_ms=None, engine="hf-eager"):
    r = ok_record(Cell(model=model, quant=quant, engine=engine, batch_size=batch, prompt_tokens=prompt,
                       output_tokens=output))
    r.gpu_name, r.duration_s, r.ttft_ms = DEV, dur, ttft_ms
    return r


def _cell(model, quant, batch, prompt, output, engine="hf-eager"):
    return Cell(model=model, quant=quant, engine=engine, batch_size=batch, prompt_tokens=prompt,
                output_tokens=output)


def test_prior_cost_follows_the_workload():
    from measure.executor import _Estimator

    # the store measured fp32 at both workloads: a long cell is estimated from the long records
    est = _Estimator([_prior("a", "fp32", 1, 256, 128, 3.0), _prior("b", "fp32", 1, 1024, 256, 7.0)])
    short, long_ = est.prior_cost(_cell("c", "fp32", 1, 256, 128)), est.prior_cost(_cell("c", "fp32", 1, 1024, 256))
    assert short == pytest.approx(4 * 3.0) and long_ == pytest.approx(4 * 7.0)  # (warmup + 3 reps) x call
    # only short records (what misled the last GPU run): the long cell is scaled from them, prefill by the
    # prompt tokens (0.5 s x 4) and decode by the output tokens (3 s x 2)
    est = _Estimator([_prior("a", "fp32", 1, 256, 128, 3.5, ttft_ms=500.0)])
    assert est.prior_cost(_cell("a", "fp32", 1, 256, 128)) == pytest.approx(4 * 3.5)
    assert est.prior_cost(_cell("a", "fp32", 1, 1024, 256)) == pytest.approx(4 * (0.5 * 4 + 3.0 * 2))
    # no time to first token recorded: the whole call scales with the output tokens
    est = _Estimator([_prior("a", "fp32", 1, 256, 128, 3.0)])
    assert est.prior_cost(_cell("a", "fp32", 1, 1024, 256)) == pytest.approx(4 * 6.0)


def test_prior_cost_follows_the_batch_size():
    from measure.executor import _Estimator

    est = _Estimator([_prior("a", "fp32", 1, 256, 128, 2.0), _prior("a", "fp32", 32, 256, 128, 8.0)])

    def cost(batch):
        return est.prior_cost(_cell("a", "fp32", batch, 256, 128))

    assert cost(1) == pytest.approx(4 * 2.0) and cost(32) == pytest.approx(4 * 8.0)
    # between measured sizes: linear in log(time) over log(batch): 2 s x 4 ** (log 8 / log 32)
    assert cost(8) == pytest.approx(4 * 2.0 * 4 ** 0.6)
    # beyond them: the same exponent (0.4); a larger batch never costs less
    assert cost(64) == pytest.approx(4 * 8.0 * 2 ** 0.4)
    assert cost(1) < cost(8) < cost(32) < cost(64)
    falling = _Estimator([_prior("a", "bf16", 1, 256, 128, 3.0), _prior("a", "bf16", 8, 256, 128, 2.0)])
    assert falling.prior_cost(_cell("a", "bf16", 32, 256, 128)) == pytest.approx(4 * 2.0)  # exponent clipped at 0
    # workload and batch together: a long cell at batch 32 from short records at batch 1 and 32
    assert est.prior_cost(_cell("a", "fp32", 32, 1024, 256)) == pytest.approx(4 * 16.0)


def test_prior_cost_without_records_of_the_method_is_none():
    from measure.executor import _Estimator

    est = _Estimator([_prior("a", "fp32", 1, 256, 128, 2.0)])
    assert est.prior_cost(_cell("a", "bf16", 1, 256, 128)) is None
    assert est.prior_cost(_cell("a", "fp32", 1, 256, 128, engine="hf-compiled")) is None
    assert _Estimator([]).prior_cost(_cell("a", "fp32", 1, 256, 128)) is None
    failed = failed_record(_cell("a", "fp32", 1, 256, 128), "OOM")
    assert _Estimator([failed]).prior_cost(_cell("a", "fp32", 1, 256, 128)) is None


def test_an_engine_variant_without_records_is_estimated_from_its_engines():
    """hf-compiled-gqa (hf-compiled with grouped SDPA forced) has no record in the store at first: its cells are
    costed from hf-compiled's (shipped catalogue's `variant_of`), until it has records of its own."""
    from measure.executor import _Estimator, engine_bases

    assert engine_bases() == {"hf-compiled-gqa": "hf-compiled"}
    base = [_prior("a", "bf16", 1, 256, 128, 2.0, engine="hf-compiled"),
            _prior("a", "bf16", 32, 256, 128, 8.0, engine="hf-compiled")]
    cell = _cell("a", "bf16", 8, 256, 128, engine="hf-compiled-gqa")
    assert _Estimator(base).prior_cost(cell) is None
    est = _Estimator(base, engine_bases())
    assert est.prior_cost(cell) == pytest.approx(est.prior_cost(_cell("a", "bf16", 8, 256, 128, engine="hf-compiled")))
    own = _Estimator([*base, _prior("a", "bf16", 8, 256, 128, 1.0, engine="hf-compiled-gqa")], engine_bases())
    assert own.prior_cost(cell) == pytest.approx(4 * 1.0)  # its own record, not hf-compiled's


def test_prior_cost_model_ratio_compares_like_with_like():
    from measure.executor import _Estimator

    # model "big" ran bf16 at batch 32 only, as fast as the method's mean there: ratio 1, though batch-32
    # cells cost more than the method's mean over all batch sizes
    est = _Estimator([_prior("small", "bf16", 1, 256, 128, 1.0), _prior("small", "bf16", 32, 256, 128, 4.0),
                      _prior("big", "bf16", 32, 256, 128, 4.0)])
    assert est.prior_cost(_cell("big", "bf16", 1, 256, 128)) == pytest.approx(4 * 1.0)


def test_prior_cost_of_a_workload_only_a_fast_model_ran_follows_the_models():
    """s31-b: compiled bnb-int8 at 1024/256 had records of three fast models only, so the method's mean call
    there was a fast model's and Qwen2.5-7B's cell, estimated 187 s, ran past 262 s. The mean call of a
    workload is the method's mean model's: each record is divided by its model's first-pass factor."""
    from measure.executor import _Estimator

    # "slow" takes twice "fast"'s time at 256/128; only "fast" ran 1024/256 (2.5x its short call)
    est = _Estimator([_prior("fast", "bnb-int8", 1, 256, 128, 2.0), _prior("slow", "bnb-int8", 1, 256, 128, 4.0),
                      _prior("fast", "bnb-int8", 1, 1024, 256, 5.0)])
    slow, fast = (est.prior_cost(_cell(m, "bnb-int8", 1, 1024, 256)) for m in ("slow", "fast"))
    assert slow / fast > 1.8  # the plain mean said 1.6: the 1024/256 mean was "fast"'s alone
    assert slow == pytest.approx(4 * 10.0, rel=0.15)  # twice fast's 5 s a call, (warmup + 3 reps) calls
    assert fast == pytest.approx(4 * 5.0, rel=0.1)
    # both ran both workloads: the factors cancel and each cell gets the mean of what ran it
    est = _Estimator([_prior("fast", "bnb-int8", 1, 256, 128, 2.0), _prior("slow", "bnb-int8", 1, 256, 128, 4.0),
                      _prior("fast", "bnb-int8", 1, 1024, 256, 5.0), _prior("slow", "bnb-int8", 1, 1024, 256, 10.0)])
    assert est.prior_cost(_cell("slow", "bnb-int8", 1, 1024, 256)) == pytest.approx(4 * 10.0, rel=0.02)


def test_cheapest_order_puts_long_workloads_after_short_ones(tmp_path):
    # the store knows fp32 at 256/128 tokens only (1.5 s a call at batch 32, 0.5 s of it prefill) and bf16 at
    # 2 s; pending fp32 cells at 1024/256 (4 s a call when scaled) must not be taken for the cheapest block
    store = Store(tmp_path / "m.jsonl")
    for i, r in enumerate((_prior("x", "fp32", 32, 256, 128, 1.5, ttft_ms=500.0),
                           _prior("x", "bf16", 32, 256, 128, 2.0))):
        r.cell_hash = str(i) * 16
        store.append(r)
    long_fp32 = [_cell("m", "fp32", b, 1024, 256) for b in (8, 32)]
    short_bf16 = [_cell("m", "bf16", b, 256, 128) for b in (8, 32)]
    runner = FakeRunner(FakeClock())
    go(make_spec(order="cheapest"), runner, store, long_fp32 + short_bf16)
    assert [c.quant for c in runner.calls] == ["bf16", "bf16", "fp32", "fp32"]


# ------------------------------------------------------------------------ shape-aware budget estimate
def _long_fp32_store_records(load_s=20.0):
    """The store's fp32 eager records of model "x" at 1024/256 tokens: batch 1 2 s a call, batch 32 10 s
    (5x), each after `load_s` of loading: 20 + 4 x 2 = 28 s and 20 + 4 x 10 = 60 s."""
    recs = [_prior("x", "fp32", 1, 1024, 256, 2.0), _prior("x", "fp32", 32, 1024, 256, 10.0)]
    for i, r in enumerate(recs):
        r.load_time_s, r.cell_hash = load_s, f"{i}" * 16
    return recs


def test_estimate_cell_scales_a_cheap_batch_1_cell_to_batch_32():
    from measure.executor import _Estimator

    est = _Estimator(_long_fp32_store_records())
    b1, b32 = _cell("m", "fp32", 1, 1024, 256), _cell("m", "fp32", 32, 1024, 256)
    est.add(8.0, False, "hf-eager", "fp32", cell=b1)  # a continuing batch-1 cell: 4 calls of 2 s
    # the blind estimate takes the batch-32 cell for as cheap; the shape-aware one scales the observation by
    # the store's call time (5x: a continuing cell pays no load)
    assert est.estimate(False, "hf-eager", "fp32") == pytest.approx(8.0)
    assert est.estimate_cell(b32, False) == pytest.approx(40.0)
    assert est.estimate_cell(b1, False) == pytest.approx(8.0)
    # a cell starting a model group: the load is part of both costs, 28 s observed -> 28 x 60 / 28
    est.add(28.0, True, "hf-eager", "fp32", cell=b1)
    assert est.estimate(True, "hf-eager", "fp32") == pytest.approx(28.0)
    assert est.estimate_cell(b32, True) == pytest.approx(60.0)
    # this run's model runs twice as slowly as the store's: the scaled estimate follows this run's walls
    slow = _Estimator(_long_fp32_store_records())
    slow.add(16.0, False, "hf-eager", "fp32", cell=b1)
    assert slow.estimate_cell(b32, False) == pytest.approx(80.0)
    # no cell of this run with the same new-group flag: the store's cost of the cell, without the load for a
    # continuing one
    fresh = _Estimator(_long_fp32_store_records())
    assert fresh.estimate_cell(b32, True) == pytest.approx(60.0)
    fresh.add(28.0, True, "hf-eager", "fp32", cell=b1)
    assert fresh.estimate(False, "hf-eager", "fp32") == pytest.approx(28.0)
    assert fresh.estimate_cell(b32, False) == pytest.approx(40.0)


def test_estimate_cell_is_never_below_estimate():
    from measure.executor import _Estimator

    est = _Estimator(_long_fp32_store_records() + [_prior("x", "bf16", 8, 256, 128, 1.0)])
    observed = [(40.0, False, _cell("m", "fp32", 32, 1024, 256)), (8.0, False, _cell("m", "fp32", 1, 1024, 256)),
                (30.0, True, _cell("m", "fp32", 1, 256, 128)), (3.0, False, _cell("m", "bf16", 1, 256, 128)),
                (0.5, False, None)]  # a failed cell: its time, not its shape
    cells = [_cell("m", q, b, p, o) for q in ("fp32", "bf16", "fp8") for b in (1, 8, 32, 64)
             for p, o in ((256, 128), (1024, 256))]
    for wall, new_group, seen in observed:
        quant = seen.quant if seen else "fp32"
        est.add(wall, new_group, "hf-eager", quant, cell=seen)
        for cell in cells:
            for ng in (False, True):
                old = est.estimate(ng, cell.engine, cell.quant)
                assert est.estimate_cell(cell, ng) >= old - 1e-9, (cell.label(), ng)
    # a cheap cell after a slow one keeps the blind (higher) estimate
    assert est.estimate_cell(_cell("m", "fp32", 1, 1024, 256), False) == pytest.approx(
        est.estimate(False, "hf-eager", "fp32"))


def test_estimate_cell_without_store_records_of_the_method_is_estimate():
    from measure.executor import _Estimator

    assert _Estimator([]).estimate_cell(_cell("m", "fp32", 32, 1024, 256), True) is None
    for est in (_Estimator([]), _Estimator([_prior("x", "bf16", 1, 1024, 256, 2.0)]),
                _Estimator([_prior("x", "fp32", 1, 1024, 256, 2.0, engine="hf-compiled")])):
        est.add(8.0, True, "hf-eager", "fp32", cell=_cell("m", "fp32", 1, 1024, 256))
        est.add(3.0, False, "hf-eager", "fp32", cell=_cell("m", "fp32", 1, 256, 128))
        for cell in (_cell("m", "fp32", 32, 1024, 256), _cell("m", "fp32", 1, 256, 128),
                     _cell("m", "fp16", 8, 1024, 256), _cell("m", "bf16", 32, 1024, 256)):
            for ng in (False, True):
                assert est.estimate_cell(cell, ng) == est.estimate(ng, cell.engine, cell.quant)


def _blind_estimate_cell(self, cell, new_group):  # the budget check before `estimate_cell`
    return self.estimate(new_group, cell.engine, cell.quant)


def test_time_budget_passes_over_a_batch_32_cell_that_a_fast_batch_1_cell_made_look_cheap(tmp_path,
                                                                                         monkeypatch):
    from measure.executor import _Estimator

    # the store: fp32 at 1024/256 takes 2 s a call at batch 1 and 10 s at batch 32 (after 20 s of load)
    def store_with_records(name):
        store = Store(tmp_path / name)
        for r in _long_fp32_store_records():
            store.append(r)
        return store

    def dur(batch):  # the store's model of a call: 2 s x 5 ** (log b / log 32)
        return 2.0 * 5.0 ** (math.log(batch) / math.log(32))

    cells = [_cell("m", "fp32", b, 1024, 256) for b in (1, 2, 32)]

    def runner():
        return FakeRunner(FakeClock(), cost=lambda c, new: (20.0 if new else 0.0) + 4 * dur(c.batch_size))

    # b1 28 s (t = 28), b2 11 s (t = 39); b32 needs 40 s x 1.1 = 44 s more: 83 > 60, passed over
    r = runner()
    s = go(make_spec(), r, store_with_records("new.jsonl"), cells, time_budget_s=60)
    assert [c.batch_size for c in r.calls] == [1, 2] and (s.stopped, s.remaining) == ("time_budget", 1)
    assert r.clock.t - 1000.0 <= 60
    # the blind estimate judged b32 by b2's 11 s (12 s with the margin: 51 <= 60), started it and overran
    monkeypatch.setattr(_Estimator, "estimate_cell", _blind_estimate_cell)
    r_old = runner()
    go(make_spec(), r_old, store_with_records("old.jsonl"), cells, time_budget_s=60)
    assert [c.batch_size for c in r_old.calls] == [1, 2, 32] and r_old.clock.t - 1000.0 > 75


def test_time_budget_without_store_records_is_unchanged(tmp_path, monkeypatch):
    from measure.executor import _Estimator

    cells = [_cell(m, "fp32", b, 1024, 256) for m in ("a", "b") for b in (1, 32)]

    def cost(c, new):
        return (20.0 if new else 0.0) + 4 * (10.0 if c.batch_size == 32 else 2.0)

    def run(name):
        r = FakeRunner(FakeClock(), cost=cost)
        s = go(make_spec(), r, Store(tmp_path / name), cells, time_budget_s=150)
        return [c.label() for c in r.calls], s.stopped, r.clock.t

    new = run("new.jsonl")
    monkeypatch.setattr(_Estimator, "estimate_cell", _blind_estimate_cell)
    assert run("old.jsonl") == new


# ------------------------------------------------------------------ compile time per batch size
def _compiled_store_records(engine="hf-compiled", where="compile_time_s"):
    """The store's bf16 records of model "x" on `engine`: batch 1 compiles 50 s and calls 1 s, batch 32
    (later in its block, reusing compiled graphs) compiles 4 s and calls 3 s, both after 2 s of loading:
    2 + 50 + 4 x 1 = 56 s and 2 + 4 + 4 x 3 = 18 s. `where` names the field the 50 and 4 s go to."""
    recs = [_prior("x", "bf16", 1, 256, 128, 1.0, engine=engine), _prior("x", "bf16", 32, 256, 128, 3.0, engine=engine)]
    for i, (r, fixed) in enumerate(zip(recs, (50.0, 4.0), strict=True)):
        r.load_time_s, r.cell_hash = 2.0, f"{i}" * 16
        setattr(r, where, fixed)
    return recs


def test_prior_cost_models_compile_time_per_batch_size():
    from measure.executor import _Estimator

    est = _Estimator(_compiled_store_records())
    cell = lambda b: _cell("x", "bf16", b, 256, 128, engine="hf-compiled")  # noqa: E731
    # batch 32 pays its own 4 s of compilation, not the mean of 50 and 4 s (2 + 27 + 12 = 41 s before)
    assert est.prior_cost(cell(32)) == pytest.approx(18.0)
    assert est.prior_cost(cell(1)) == pytest.approx(56.0)
    assert est.prior_cost(cell(64)) == pytest.approx(2 + 4 + 4 * 3.0 * 2 ** (math.log(3) / math.log(32)))
    # between measured batch sizes: linear in log(batch); outside them, the nearest one's
    assert est._compile_s("hf-compiled", "bf16", 8) == pytest.approx(50 - 46 * math.log(8) / math.log(32))
    assert est._compile_s("hf-compiled", "bf16", 64) == pytest.approx(4.0)
    assert est._compile_varies("hf-compiled", "bf16")
    # a method without compile times (eager): a batch-blind fixed part, as before
    eager = _Estimator(_compiled_store_records("hf-eager", where="eval_time_s"))
    assert not eager._compile_varies("hf-eager", "bf16")
    assert eager.prior_cost(_cell("m", "bf16", 32, 256, 128)) == pytest.approx(2 + 27 + 4 * 3.0)  # no ratio


def test_estimate_cell_of_a_continuing_compiled_cell_follows_its_compile_time():
    from measure.executor import _Estimator

    b1, b8, b32 = (_cell("m", "bf16", b, 256, 128, engine="hf-compiled") for b in (1, 8, 32))
    # this run: the block's first two batch sizes compiled (54 s, 60 s: no load); batch 32, the third, reuses
    # the graphs and is the continuing cells' walls scaled by the store's cost without the load
    est = _Estimator(_compiled_store_records())
    est.add(56.0, True, "hf-compiled", "bf16", cell=b1)
    est.add(60.0, False, "hf-compiled", "bf16", cell=b8)
    assert est.estimate(False, "hf-compiled", "bf16") == pytest.approx(60.0)
    assert not est.will_compile(b32, False)
    want, had = (est._shape_cost("hf-compiled", "bf16", (256, 128, b, 4), False) for b in (32, 8))
    assert est.estimate_cell(b32, False) == pytest.approx(60.0 * want / had)  # well below the batch-8 wall
    assert est.estimate_cell(b32, False) < 60.0
    # this run's only cell started the block and batch 32 will compile (the group's second batch size): not the
    # shape-scaled store cost but twice the group start
    fresh = _Estimator(_compiled_store_records())
    fresh.add(56.0, True, "hf-compiled", "bf16", cell=b1)
    assert fresh.will_compile(b32, False)
    assert fresh._shaped_estimate(b32, False) == pytest.approx(16.0)
    assert fresh.estimate_cell(b32, False) == pytest.approx(RECOMPILE_FACTOR * 56.0)
    # a cell starting a model group keeps the floor: it compiles whatever its batch size
    assert fresh.estimate_cell(b32, True) >= 56.0


def test_estimate_cell_keeps_the_floor_without_batch_dependent_compile_times():
    from measure.executor import _Estimator

    # the same walls, but the 50 and 4 s are eval time (batch-blind): eager cells never go below `estimate`
    est = _Estimator(_compiled_store_records("hf-eager", where="eval_time_s"))
    b1, b32 = _cell("m", "bf16", 1, 256, 128), _cell("m", "bf16", 32, 256, 128)
    est.add(80.0, False, "hf-eager", "bf16", cell=b32)
    for cell in (b1, b32):
        for ng in (False, True):
            assert est.estimate_cell(cell, ng) >= est.estimate(ng, "hf-eager", "bf16") - 1e-9
    assert est.estimate_cell(b1, False) == pytest.approx(80.0)
    # a compiled method measured at one batch size only: no variation known, the floor stays
    one = _Estimator(_compiled_store_records()[:1])
    one.add(54.0, False, "hf-compiled", "bf16", cell=_cell("m", "bf16", 32, 256, 128, engine="hf-compiled"))
    assert one.estimate_cell(_cell("m", "bf16", 1, 256, 128, engine="hf-compiled"), False) >= 54.0 - 1e-9


# ------------------------------------------------------------------ model-aware group-start estimate
def _two_model_store_records():
    """The store's bf16 eager records at 256/128 tokens, batch 1, 2 s of loading each: model "small" calls
    1 s (2 + 4 x 1 = 6 s), model "big" 4.5 s (2 + 4 x 4.5 = 20 s). The method's model-blind mean is 13 s, so
    the per-model factors are 6/13 and 20/13: big's cells take 20/6 (3.3x) small's."""
    recs = [_prior("small", "bf16", 1, 256, 128, 1.0), _prior("big", "bf16", 1, 256, 128, 4.5)]
    for i, r in enumerate(recs):
        r.load_time_s, r.cell_hash = 2.0, f"{i}" * 16
    return recs


def test_estimate_cell_of_a_group_start_scales_by_the_model():
    from measure.executor import _Estimator

    small, big = _cell("small", "bf16", 1, 256, 128), _cell("big", "bf16", 1, 256, 128)
    est = _Estimator(_two_model_store_records())
    est.add(9.0, True, "hf-eager", "bf16", cell=small)  # this run's machine 1.5x slower than the store's
    assert est.estimate(True, "hf-eager", "bf16") == pytest.approx(9.0)  # model-blind
    # the big model's group start: the observation x the models' ratio (20/6), not the small model's 9 s
    assert est.estimate_cell(big, True) == pytest.approx(9.0 * 20 / 6)
    assert est.estimate_cell(small, True) == pytest.approx(9.0)
    # and the other way round: never below `estimate`
    rev = _Estimator(_two_model_store_records())
    rev.add(30.0, True, "hf-eager", "bf16", cell=big)
    assert rev.estimate_cell(small, True) == pytest.approx(30.0)
    # a fast observation (this run's machine quicker than the store's) keeps the store's cost of the big
    # model's group start, load included
    fast = _Estimator(_two_model_store_records())
    fast.add(3.0, True, "hf-eager", "bf16", cell=small)
    assert fast.estimate_cell(big, True) == pytest.approx(max(3.0 * 20 / 6, fast.prior_cost(big)))
    assert fast.prior_cost(big) == pytest.approx(20.0)
    # a model the store lacks is scaled by its layers (catalogue): qwen2.5-14b has 48, qwen2.5-0.5b 24
    layers = _Estimator([_prior("qwen2.5-0.5b-instruct", "bf16", 1, 256, 128, 1.0)])
    layers.add(8.0, True, "hf-eager", "bf16", cell=_cell("qwen2.5-0.5b-instruct", "bf16", 1, 256, 128))
    assert layers.estimate_cell(_cell("qwen2.5-14b-instruct", "bf16", 1, 256, 128), True) == pytest.approx(16.0)


def test_estimate_cell_of_a_group_start_about_4x_after_a_small_models_start():
    from measure.executor import _Estimator

    # the store: "big" runs ~4x "small" at every batch size; this run observed small's group start only
    recs = [_prior(m, "bf16", b, 256, 128, d * b ** 0.5) for m, d in (("small", 1.0), ("big", 4.0)) for b in (1, 32)]
    for i, r in enumerate(recs):
        r.load_time_s, r.cell_hash = 0.5 if r.model == "small" else 2.0, f"{i}" * 16
    est = _Estimator(recs)
    est.add(5.0, True, "hf-eager", "bf16", cell=_cell("small", "bf16", 1, 256, 128))
    value = est.estimate_cell(_cell("big", "bf16", 1, 256, 128), True)
    assert value == pytest.approx(4 * 5.0, rel=0.05)
    assert value >= est.estimate(True, "hf-eager", "bf16")


def test_estimate_cell_unchanged_for_one_model():
    from measure.executor import _Estimator

    # cells of one model: the model factor is 1 and the estimate the shape-scaled observation, as before
    recs = _two_model_store_records() + [_prior("small", "bf16", 32, 256, 128, 3.0)]
    recs[-1].load_time_s, recs[-1].cell_hash = 2.0, "2" * 16
    b1, b32 = _cell("small", "bf16", 1, 256, 128), _cell("small", "bf16", 32, 256, 128)
    est = _Estimator(recs)
    est.add(12.0, True, "hf-eager", "bf16", cell=b1)
    est.add(5.0, False, "hf-eager", "bf16", cell=b1)
    for ng in (True, False):
        want = est._shape_cost("hf-eager", "bf16", (256, 128, 32, 4), ng)
        had = est._shape_cost("hf-eager", "bf16", (256, 128, 1, 4), ng)
        wall = 12.0 if ng else 5.0
        assert est.estimate_cell(b32, ng) == pytest.approx(max(wall * want / had, est.estimate(ng, "hf-eager", "bf16")))
    assert est._model_scale("small", "small", "hf-eager", "bf16") == 1.0


# ------------------------------------------------------------------ cells that will compile
def _cc(batch, prompt=256, output=128, model="m", quant="bf16", **engine_params):
    return Cell(model=model, quant=quant, engine="hf-compiled", batch_size=batch, prompt_tokens=prompt,
                output_tokens=output, engine_params=engine_params)


def test_will_compile_follows_the_cells_place_in_its_model_group():
    from measure.executor import _Estimator

    est = _Estimator()
    assert est.will_compile(_cc(8), True)  # a group start loads the model afresh: compiles whatever ran before
    assert est.will_compile(_cc(32), False)  # nothing of the group ran yet
    est.add(40.0, True, "hf-compiled", "bf16", cell=_cc(1))
    assert est.will_compile(_cc(8), False) and not est.will_compile(_cc(1), False)  # 2nd batch size; a repeat
    est.add(70.0, False, "hf-compiled", "bf16", cell=_cc(8))
    # automatic dynamic shapes: the batch dimension is dynamic after its second value, later sizes reuse it
    assert not any(est.will_compile(_cc(b), False) for b in (1, 8, 32, 64))
    # a workload the group has not run changes a dimension that had one value so far: a recompile
    assert est.will_compile(_cc(32, 1024, 256), False)
    # static per shape (`dynamic: False`, its own compile config): every shape it has not run compiles
    assert est.will_compile(_cc(1, dynamic=False), False)
    est.add(10.0, False, "hf-compiled", "bf16", cell=_cc(1, dynamic=False))
    assert not est.will_compile(_cc(1, dynamic=False), False) and est.will_compile(_cc(64, dynamic=False), False)
    # eager engines never compile
    assert not est.will_compile(_cell("m", "bf16", 64, 256, 128), False)
    assert not est.will_compile(_cell("m", "bf16", 64, 256, 128), True)
    # a new model group starts the count again
    est.add(40.0, True, "hf-compiled", "bf16", cell=_cc(1, model="n"))
    assert est.will_compile(_cc(8, model="n"), False)


def test_will_compile_after_skipped_and_failed_cells():
    from measure.executor import _Estimator

    # torchao-int8-dyn skips batch 1 and 8 on hf-compiled (before loading): batch 32 is the group's first shape
    est = _Estimator()
    est.add(0.0, True, "hf-compiled", "torchao-int8-dyn")  # skipped: no shape
    est.add(0.0, False, "hf-compiled", "torchao-int8-dyn")
    assert est.will_compile(_cc(32, quant="torchao-int8-dyn"), False)
    # a failed cell (an OOM unloads the model) makes the group's next cell a fresh start
    est = _Estimator()
    est.add(40.0, True, "hf-compiled", "bf16", cell=_cc(1))
    est.add(60.0, False, "hf-compiled", "bf16", cell=_cc(8))
    assert not est.will_compile(_cc(64), False)
    est.add(5.0, False, "hf-compiled", "bf16", failed=True)
    assert est.will_compile(_cc(64), False)


def _stored_compiled_records():
    """Every stored H100 hf-compiled ok record that says what its process ran before it (`batch_sizes_before`)
    and whether its warm-up compiled (`graphs_compiled_warmup`)."""
    out = []
    for name in ("campaign.jsonl", "experiments/compile-shapes.jsonl"):
        for r in Store(REPO / "datasets/measurements/h100" / name).iter_records():
            p = r.engine_params or {}
            if (r.status == "ok" and r.engine == "hf-compiled" and isinstance(p.get("batch_sizes_before"), list)
                    and isinstance(p.get("graphs_compiled_warmup"), int)):
                out.append(r)
    return out


def test_will_compile_agrees_with_the_stored_records():
    from measure.executor import _Estimator

    records = _stored_compiled_records()
    assert len(records) >= 40 and {r.engine_params["graphs_compiled_warmup"] > 0 for r in records} == {True, False}
    grid_params = ("dynamic", "mode", "fullgraph")  # what the runner adds to engine_params is not the cell's
    for r in records:
        params = {k: v for k, v in r.engine_params.items() if k in grid_params}
        before = r.engine_params["batch_sizes_before"]
        est = _Estimator()
        for i, b in enumerate(before):  # the process's earlier cells of the loaded model, same workload
            est.add(30.0, i == 0, r.engine, r.quant, cell=_cc(b, r.prompt_tokens, r.output_tokens, r.model,
                                                              r.quant, **params))
        cell = _cc(r.batch_size, r.prompt_tokens, r.output_tokens, r.model, r.quant, **params)
        assert est.will_compile(cell, not before) == (r.engine_params["graphs_compiled_warmup"] > 0), r.record_id


def _compile_record(quant, compile_s, batch=1, duration_s=1.0, graphs=None, model="x", i=0):
    r = _prior(model, quant, batch, 256, 128, duration_s, engine="hf-compiled")
    r.compile_time_s, r.load_time_s, r.cell_hash = compile_s, 2.0, f"{i:016d}"
    if graphs is not None:
        r.engine_params = {"graphs_compiled_warmup": graphs}
    return r


def test_compile_high_s_is_a_high_quantile_of_the_methods_compiled_records():
    import measure.executor as ex

    many = [30.0 + 10 * i for i in range(ex.COMPILE_MIN_RECORDS + 5)]  # bf16: enough records of its own
    few = [200.0] * (ex.COMPILE_MIN_RECORDS - 1)  # torchao: too few
    recs = [_compile_record("bf16", c, i=i) for i, c in enumerate(many)]
    recs += [_compile_record("torchao-int4-wo", c, i=100 + i) for i, c in enumerate(few)]
    # reusing cells (no graph compiled, or a warm-up a few seconds over its call) are not compile times
    recs += [_compile_record("bf16", 500.0, batch=32, graphs=0, i=200),
             _compile_record("bf16", 3.0 + ex.COMPILED_OVER_WARMUP_S / 2, batch=32, duration_s=3.0, i=201)]
    est = ex._Estimator(recs)

    def quantile(xs):
        xs = sorted(xs)
        return xs[math.ceil(ex.COMPILE_QUANTILE * len(xs)) - 1]

    assert est.compile_high_s("hf-compiled", "bf16") == pytest.approx(quantile(many))
    assert quantile(many) > statistics.median(many)
    # too few of its own: the engine's compiled records of every method
    assert est.compile_high_s("hf-compiled", "torchao-int4-wo") == pytest.approx(quantile(many + few))
    assert est.compile_high_s("hf-compiled", "fp16") == pytest.approx(quantile(many + few))
    # none on this device at all: the default
    assert ex._Estimator([_prior("x", "bf16", 1, 256, 128, 1.0)]).compile_high_s("hf-compiled", "bf16") == \
        ex.COMPILE_DEFAULT_S


def test_compile_high_s_is_never_below_the_models_own_longest_compile():
    import measure.executor as ex

    # the method's ten records compile 30-120 s; one model of them compiled 400 s at batch 8 (s30: fp8
    # Mistral-7B, 463 s where the method's quantile said 297 s)
    many = [30.0 + 10 * i for i in range(10)]
    recs = [_compile_record("bf16", c, model=f"m{i % 3}", i=i) for i, c in enumerate(many)]
    recs += [_compile_record("bf16", 90.0, model="slow", i=50),
             _compile_record("bf16", 400.0, batch=8, model="slow", i=51)]
    est = ex._Estimator(recs)
    quantile = est.compile_high_s("hf-compiled", "bf16")
    assert quantile < 400.0
    assert est.compile_high_s("hf-compiled", "bf16", "slow") == pytest.approx(400.0)
    # a model whose own compiles stay under the quantile, or with none, gets the quantile
    assert est.compile_high_s("hf-compiled", "bf16", "m0") == pytest.approx(quantile)
    assert est.compile_high_s("hf-compiled", "bf16", "unseen") == pytest.approx(quantile)
    # the budget's estimate of the slow model's group start (batch 32) follows: at least its own compile time
    cell = _cc(32, model="slow")
    assert est.estimate_cell(cell, True) >= 400.0
    assert est.estimate_cell(_cc(32, model="m0"), True) < 400.0
    # a variant without records of its own reads its base engine's, per model too
    variant = ex._Estimator(recs, {"hf-compiled-gqa": "hf-compiled"})
    assert variant.compile_high_s("hf-compiled-gqa", "bf16", "slow") == pytest.approx(400.0)


def test_estimate_cell_of_compiling_cells_is_pessimistic_and_of_others_unchanged():
    import measure.executor as ex

    # the store: bf16 group starts at batch 1 compiled 30-70 s (a few seconds of calls each); batch 32 reused
    compiles = [30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 70.0]
    recs = [_compile_record("bf16", c, i=i) for i, c in enumerate(compiles)]
    recs += [_compile_record("bf16", 4.0, batch=32, duration_s=3.0, i=50 + i) for i in range(4)]
    eager = [_prior("x", "bf16", b, 256, 128, 1.0 * b ** 0.3) for b in (1, 32)]
    for i, r in enumerate(eager):
        r.cell_hash = f"e{i:015d}"
    est = ex._Estimator(recs + eager)
    high = est.compile_high_s("hf-compiled", "bf16")
    assert high >= max(compiles[:-1]) > statistics.mean(compiles)
    # a group start: the high compile time plus the store's cost of the cell without its compile time (the
    # mean of 30-70 s and 4 s, the fast ones, no longer pulls it down)
    b1, b8, b32, b64 = (_cc(b) for b in (1, 8, 32, 64))
    start = est.estimate_cell(b1, True)
    assert start >= high + 2.0 + 4 * 1.0 - 1e-9 and start >= est._shaped_estimate(b1, True)
    assert est._shaped_estimate(b1, True) < high  # what the budget took before
    # this run's group start compiled 40 s in a 46 s cell; batch 8, the second batch size, recompiles: at least
    # RECOMPILE_FACTOR x that cell, where scaling it by shape said less
    est.add(46.0, True, "hf-compiled", "bf16", cell=b1)
    assert est._shaped_estimate(b8, False) < ex.RECOMPILE_FACTOR * 46.0
    assert est.estimate_cell(b8, False) == pytest.approx(ex.RECOMPILE_FACTOR * 46.0)
    # batch 32 and 64 after 1 and 8 reuse the dynamic graph: the estimate as before
    est.add(75.0, False, "hf-compiled", "bf16", cell=b8)
    for cell in (b32, b64):
        assert est.estimate_cell(cell, False) == pytest.approx(est._shaped_estimate(cell, False))
        assert est.estimate_cell(cell, False) < 75.0
    # eager cells: never told apart
    for b in (1, 8, 32, 64):
        for ng in (True, False):
            cell = _cell("m", "bf16", b, 256, 128)
            assert est.estimate_cell(cell, ng) == est._shaped_estimate(cell, ng)


def test_time_budget_passes_over_a_second_batch_size_that_recompiles(tmp_path, monkeypatch):
    from measure.executor import _Estimator

    # the store: compiled bf16 group starts at batch 1 (30 s of compile) and later batch-32 cells (reused graphs)
    def store_with_records(name):
        store = Store(tmp_path / name)
        for i in range(3):
            store.append(_compile_record("bf16", 30.0, i=i))
            store.append(_compile_record("bf16", 4.0, batch=32, duration_s=3.0, i=10 + i))
        return store

    cells = [_cc(b) for b in (1, 8, 32)]
    # this run: batch 1 compiles in 40 s, batch 8 recompiles in 75 s (the dynamic graph), batch 32 reuses it
    cost = {1: 40.0, 8: 75.0, 32: 16.0}

    def run(name):
        r = FakeRunner(FakeClock(), cost=lambda c, new: cost[c.batch_size])
        s = go(make_spec(), r, store_with_records(name), cells, time_budget_s=100)
        return [c.batch_size for c in r.calls], s, r.clock.t - 1000.0

    ran, s, elapsed = run("new.jsonl")
    assert ran == [1] and s.stopped == "time_budget" and elapsed <= 100  # batch 8 (and 32 after it) passed over
    # the estimate blind to compilation scaled batch 1's 40 s to batch 8, started it and overran the budget
    monkeypatch.setattr(_Estimator, "will_compile", lambda self, cell, new_group: False)
    ran_old, _, elapsed_old = run("old.jsonl")
    assert ran_old[:2] == [1, 8] and elapsed_old > 100


def test_run_grid_takes_the_cell_after_a_failed_one_for_a_fresh_compile(tmp_path, monkeypatch):
    from measure.executor import _Estimator

    said: list[tuple[int, bool]] = []
    original = _Estimator.estimate_cell

    def spy(self, cell, new_group):
        said.append((cell.batch_size, self.will_compile(cell, new_group)))
        return original(self, cell, new_group)

    monkeypatch.setattr(_Estimator, "estimate_cell", spy)
    cells = [_cc(b) for b in (1, 8, 32, 64)]
    runner = FakeRunner(FakeClock(), behaviour={cells[2].label(): "fail"})  # batch 32 fails (an OOM unloads)
    go(make_spec(), runner, Store(tmp_path / "m.jsonl"), cells, time_budget_s=10_000)
    assert dict(said) == {1: True, 8: True, 32: False, 64: True}


def test_with_an_empty_store_a_compiled_cell_is_expected_to_take_the_default_compile_time():
    """Nothing measured yet: an eager cell is started on trust (None), a compiled one is assumed to compile
    for COMPILE_DEFAULT_S, so a budget shorter than that (with the safety factor) does not start it."""
    import measure.executor as ex

    est = ex._Estimator([])
    compiled = Cell("qwen2.5-7b-instruct", "bf16", "hf-compiled", 1, 256, 128)
    assert est.estimate_cell(compiled, True) == pytest.approx(ex.COMPILE_DEFAULT_S)
    assert est.estimate_cell(Cell("qwen2.5-7b-instruct", "bf16", "hf-eager", 1, 256, 128), True) is None


# ------------------------------------------------------------------------------- resume per GPU
class UuidRunner(FakeRunner):
    """A FakeRunner whose records carry this GPU's NVML UUID, as the NVIDIA runner's do."""

    def __init__(self, uuid: str, clock: FakeClock | None = None):
        super().__init__(clock or FakeClock())
        self.uuid = uuid

    def run(self, cell: Cell) -> Record:
        rec = super().run(cell)
        rec.gpu_uuid = self.uuid
        return rec


def test_resume_per_gpu_runs_every_cell_once_on_every_gpu_and_shares_no_claims(tmp_path):
    from measure.executor import ClaimDir

    cells = make_cells(models=("a",), quants=("bf16",), batches=(1, 32))
    spec = make_spec(resume_per="gpu")
    store = Store(tmp_path / "anchors.jsonl")
    claims = tmp_path / "claims"
    first = go(spec, UuidRunner("GPU-a"), store, cells, device_uuid="GPU-a", claims=ClaimDir(claims, owner="A"))
    other = UuidRunner("GPU-b")
    second = go(spec, other, store, cells, device_uuid="GPU-b", claims=ClaimDir(claims, owner="B"))
    assert (first.ran, second.ran, second.already_done, second.claimed_elsewhere) == (2, 2, 0, 0)
    again = UuidRunner("GPU-a")
    third = go(spec, again, store, cells, device_uuid="GPU-a")
    assert (third.ran, third.already_done) == (0, 2) and again.calls == []
    assert sorted(r.gpu_uuid for r in store.records()) == ["GPU-a", "GPU-a", "GPU-b", "GPU-b"]
    assert not claims.exists() or not any(claims.iterdir())
    # the campaign's resume (per card) counts GPU-a's records as done for any H100
    per_card = go(make_spec(), UuidRunner("GPU-c"), store, cells, device_uuid="GPU-c")
    assert (per_card.ran, per_card.already_done) == (0, 2)


def test_resume_per_gpu_needs_the_gpu_uuid(tmp_path):
    from measure.grid import GridError

    with pytest.raises(GridError, match="resume_per: gpu needs the GPU's UUID"):
        go(make_spec(resume_per="gpu"), FakeRunner(FakeClock()), Store(tmp_path / "s.jsonl"), make_cells())


def test_resolve_gpu_id_names_the_catalogue_card_of_a_device_name():
    from measure.executor import resolve_gpu_id

    assert resolve_gpu_id("NVIDIA H200") == "h200" and resolve_gpu_id("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert resolve_gpu_id("No Such GPU 9000") is None and resolve_gpu_id(None) is None


def test_first_cell_budget_is_the_least_budget_that_starts_a_pending_cell():
    """`first_cell_budget_s`: over the cells without a record, the least `estimate_cell` of a fresh model group x
    BUDGET_SAFETY; None when nothing is pending; 0 when a pending cell has no estimate (the budget starts it)."""
    from measure.executor import BUDGET_SAFETY, COMPILE_DEFAULT_S, _Estimator, first_cell_budget_s

    store = [_prior("a", "fp32", 1, 256, 128, 3.0), _prior("b", "fp32", 1, 1024, 256, 7.0)]
    cells = [_cell("a", "fp32", 1, 256, 128), _cell("c", "fp32", 1, 256, 128), _cell("c", "fp32", 8, 1024, 256)]
    est = _Estimator(store)
    want = min(est.estimate_cell(c, True) for c in cells[1:]) * BUDGET_SAFETY  # "a" at 256/128 is recorded
    assert first_cell_budget_s(cells, store) == pytest.approx(want) and want > 0
    assert first_cell_budget_s(cells[:1], store) is None
    assert first_cell_budget_s([_cell("d", "bf16", 1, 256, 128)], []) == 0.0  # no record to estimate it from
    # a compiled cell with no compiled record in the store: at least the default compile time
    compiled = first_cell_budget_s([_cell("d", "bf16", 1, 256, 128, engine="hf-compiled")], store)
    assert compiled >= COMPILE_DEFAULT_S * BUDGET_SAFETY
