"""Run one grid cell on one device and turn it into a `Record`.

Per cell: warm-up generate calls (compilation happens here), a prefill-only window (forward over the
prompt, repeated until the window is >= 10 counter update periods), then `repetitions` timed
generate windows (prefill + `output_tokens` tokens, each window also extended by repetition when
short). Decode = generate - prefill, per repetition. Energy comes from the NVML cumulative counter
(the meter package); the paper's 1 Hz rectangle rule is computed alongside for comparison.
A loaded and quantized model is kept for the next cell of the same group (model, weights, quant).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import gc
import os
import platform
import socket
import statistics
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from measure.backends import DeviceInfo, get_backend
from measure.cell import Cell
from measure.engines import COMPILING_ENGINES, get_engine
from measure.record import Record

#: A quantized cell whose decode runs below this fraction of the same model's bf16/fp16 speed on the
#: same engine and batch is flagged `slow_path_suspected` (a fallback kernel is the usual cause).
SLOW_PATH_FRACTION = 0.5


@dataclass
class RunContext:
    """What every record of one run shares (provenance)."""

    command: str | None = None
    grid_file: str | None = None
    source: str = "measured:energy-recommender"
    isolation: str = "flag"  # flag | refuse
    idle_seconds: float = 5.0
    sample_hz: float = 10.0
    rapl_root: str = "/sys/class/powercap"  # CPU package energy (RAPL), when readable
    extra: dict[str, Any] = field(default_factory=dict)


class DecodeNotResolved(RuntimeError):
    """Generate was not measurably longer than prefill alone: decode figures would be noise."""


class CellRunner:
    """Runs cells on one device (`device` = "cuda:N" or "cpu") with one meter."""

    def __init__(self, meter=None, *, device: str = "cuda:0", context: RunContext | None = None, clock=None):
        import torch

        from measure.meter.base import MeterSession, RealClock

        self.device = device
        self.context = context or RunContext()
        self.clock = clock or RealClock()
        self.meter = meter
        self._torch = torch
        self._is_cuda = device.startswith("cuda")
        sync = (lambda: torch.cuda.synchronize(device)) if self._is_cuda else None
        self._sync = sync or (lambda: None)
        self.session = MeterSession(meter, self.clock, sample_hz=self.context.sample_hz, sync=sync) if meter else None
        self._loaded = None  # (group_key, LoadedModel, quant info)
        self._batch_sizes_run: list[int] = []  # batch sizes the loaded model has run compiled, in order
        self._group_error: tuple[tuple, str, str] | None = None  # (group_key, status, message)
        # torch inductor's process-wide config before the loaded group's method was applied (restored when the
        # group is unloaded: torchao's quantize_ sets coordinate-descent tuning for the whole process, which
        # leaked into every later compiled cell of the process in session s8), and what the method changed
        self._inductor_before: dict[str, Any] | None = None
        self._inductor_overrides: dict[str, Any] = {}
        self._idle = None
        self._reference_tps: dict[tuple, float] = {}
        self._started = False
        self._rapl, self._rapl_note = None, "not started"

    def remember(self, records) -> None:
        """Seed the slow-path reference with earlier records of this device (e.g. a resumed store)."""
        for r in records:
            if r.status == "ok" and r.quant in ("bf16", "fp16") and r.tokens_per_s:
                key = (r.model, r.engine, r.batch_size, r.prompt_tokens, r.output_tokens)
                self._reference_tps[key] = max(self._reference_tps.get(key, 0.0), r.tokens_per_s)

    # ------------------------------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        if self._is_cuda:
            major, minor = self._torch.cuda.get_device_capability(self.device)
            return DeviceInfo("cuda", float(f"{major}.{minor}"), self._torch.cuda.get_device_name(self.device))
        return DeviceInfo("cpu", None, platform.processor() or "cpu")

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        from measure.meter.rapl import open_rapl

        self._rapl, self._rapl_note = open_rapl(self.context.rapl_root)
        if self._rapl is not None:
            self._rapl.start()
        if self.session is None:
            return
        from measure.meter.base import measure_idle

        self.session.calibrate(duration_s=1.5)
        self._idle = measure_idle(self.meter, self.clock, seconds=self.context.idle_seconds)
        self.session.start()

    def close(self) -> None:
        self._unload()
        if self.session is not None:
            self.session.stop()

    # ------------------------------------------------------------------------------------------
    def run(self, cell: Cell) -> Record:
        """Measure `cell`; failures and skips come back as records with a reason, never as exceptions."""
        rec = self._base_record(cell)
        try:
            self._start()
            return self._run(cell, rec)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded reason
            oom = "out of memory" in str(exc).lower()
            rec.status = "failed"
            rec.error = (f"OOM: {exc}" if oom else f"{type(exc).__name__}: {exc}")[:2000]
            rec.engine_params.setdefault("traceback_tail", traceback.format_exc()[-1500:])
            if oom:
                self._unload()
            return rec
        finally:
            if self._is_cuda:
                self._torch.cuda.empty_cache()

    def _run(self, cell: Cell, rec: Record) -> Record:
        torch = self._torch
        dev = self.device_info()
        backend = get_backend(cell.quant, **cell.quant_params)
        engine = get_engine(cell.engine, **cell.engine_params)
        owned = engine.owns_model  # the engine loads and quantizes the model itself (vLLM)
        for k, v in {**({} if owned else backend.versions()), **engine.versions()}.items():
            setattr(rec, k, v)
        if owned:
            reason = engine.skip_reason(dev.type) or engine.cell_skip_reason(cell, dev)
        else:
            reason = backend.skip_reason(dev) or engine.skip_reason(dev.type)
        reason = reason or catalogue_hardware_reason(cell.quant, cell.engine, dev) or catalogue_batch_reason(cell)
        if reason:
            rec.status, rec.error = "skipped", reason
            return rec
        if self._group_error and self._group_error[0] == self._load_key(cell, engine):
            rec.status, rec.error = self._group_error[1], f"(same model group) {self._group_error[2]}"
            return rec

        loaded, qinfo = self._load(cell, backend, engine)
        if loaded.max_positions and cell.prompt_tokens + cell.output_tokens > loaded.max_positions:
            rec.status = "skipped"
            rec.error = (f"prompt+output {cell.prompt_tokens + cell.output_tokens} > the model's "
                         f"{loaded.max_positions} positions")
            return rec
        rec.model_source, rec.weights = loaded.source, loaded.weights
        rec.load_time_s, rec.quantize_time_s = loaded.load_time_s, qinfo.quantize_time_s
        rec.quant_params = qinfo.params
        rec.weights_gb = self._weights_gb
        model = loaded.model
        engine.prepare(model)
        if self._is_cuda and dev.type == "cuda":
            rec.engine_params = {**cell.engine_params, "compiled": cell.engine in COMPILING_ENGINES,
                                 "warmup_tokens": cell.output_tokens}
        else:
            rec.engine_params = {**cell.engine_params, "compiled": False, "note": "no compilation on CPU"}
        rec.engine_params.update(engine.describe(model))  # e.g. vLLM's load arguments, HF's attention

        gen = torch.Generator(device="cpu").manual_seed(cell.seed)
        ids = torch.randint(low=3, high=loaded.vocab_size, size=(cell.batch_size, cell.prompt_tokens),
                            generator=gen).to(self.device)
        mask = torch.ones_like(ids)
        others = self._other_processes()
        rec.other_gpu_processes = len(others) if others is not None else None
        if others and self.context.isolation == "refuse":
            rec.status, rec.error = "skipped", f"refused: {len(others)} other process(es) on the GPU: {others}"
            return rec
        rec.temp_start_c = self._temp()
        if self._is_cuda:
            rec.host_launch_us = host_launch_us(torch, self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

        # warm-up (includes compilation for hf-compiled)
        # Warm-up generates the full length: a shorter one leaves the allocator and the KV cache to grow
        # inside the first timed repetition (seen on the H100: first repetition 3x slower), and the
        # compiled engine must see the exact static-cache shape or it compiles again while timed.
        compiled = cell.engine in COMPILING_ENGINES
        if compiled:
            # which graph this cell times depends on the batch sizes the loaded model ran before: torch's
            # automatic dynamic shapes compile the first batch size static, recompile with a dynamic batch
            # dimension at the second and reuse that graph from the third on (unless `dynamic` is set)
            rec.engine_params["batch_sizes_before"] = list(self._batch_sizes_run)
            # the compiler settings this cell's method set for the process (torchao: coordinate-descent
            # tuning; {} for a method that sets none)
            rec.engine_params["inductor_overrides"] = dict(self._inductor_overrides)
            graphs0, woq0 = _dynamo_graphs(), _woq_rewrites()
        if compiled:  # eager cells of the same loaded model compile nothing: they do not shape its graphs
            self._batch_sizes_run.append(cell.batch_size)  # before the warm-up: one that fails has been seen too
        t0 = time.perf_counter()
        for _ in range(max(1, cell.warmup)):
            engine.generate(model, ids, mask, cell.output_tokens)
        self._sync()
        rec.compile_time_s = time.perf_counter() - t0 if compiled else None
        if compiled:
            graphs1 = _dynamo_graphs()
            rec.engine_params["graphs_compiled_warmup"] = _diff(graphs1, graphs0)
            rewrites = _diff(_woq_rewrites(), woq0)
            rec.engine_params["woq_rewrites_warmup"] = rewrites
            if cell.engine_params.get("woq_lowering") is False and rewrites:
                rec.status = "failed"
                rec.error = (f"woq_lowering is false, but inductor rewrote {rewrites} int8 weight-only linear(s) to "
                             "aten._weight_int8pack_mm: an earlier compile of this process registered the rewrite "
                             "(torch does once per process); run this grid in a process of its own")
                return rec

        # prefill window
        pre = self._window("prefill", lambda: engine.prefill(model, ids, mask))
        rec.ttft_ms = pre["time_s"] * 1000.0
        rec.prefill_energy_j = pre["energy_j"]

        # generate windows
        reps = [self._window(f"generate{r}", lambda: engine.generate(model, ids, mask, cell.output_tokens))
                for r in range(cell.repetitions)]
        if compiled:  # a graph compiled inside the timed windows would put compilation into the measurement
            rec.engine_params["graphs_compiled_timed"] = _diff(_dynamo_graphs(), graphs1)
        self._fill(rec, cell, pre, reps, dev)
        timed = rec.engine_params.get("graphs_compiled_timed") or 0
        if timed:  # its figures include compiling (s24: 3 of 4 flex-attention cells): not a stable measurement
            rec.is_stable = False
            rec.unstable_reason = "; ".join(filter(None, [rec.unstable_reason,
                                                          f"{timed} graph(s) compiled inside the timed windows"]))
        rec.temp_end_c = self._temp()
        if cell.tasks:
            self._accuracy(rec, cell, loaded)
        if self._is_cuda and not owned:  # an engine's own allocator (vLLM's KV pool) is not ours to report
            rec.peak_mem_allocated_gb = torch.cuda.max_memory_allocated(self.device) / 1e9
            rec.peak_mem_reserved_gb = torch.cuda.max_memory_reserved(self.device) / 1e9
        return rec

    def _accuracy(self, rec: Record, cell: Cell, loaded) -> None:
        """lm-eval on the same loaded model; its energy and time are the paper's EOR denominator."""
        if loaded.tokenizer is None:
            rec.accuracy_by_task = {"note": "accuracy needs real weights and a tokenizer; skipped for random weights"}
            return
        from measure.accuracy import evaluate

        window = self.session.window if self.session is not None else None
        results = evaluate(loaded.model, loaded.tokenizer, list(cell.tasks), limit=cell.eval_limit,
                           meter_window=window, offline=bool(cell.engine_params.get("offline", False)))
        rec.accuracy_by_task = {r.task: r.to_dict() for r in results}
        if results:
            first = results[0].to_record_fields()
            for k, v in first.items():
                setattr(rec, k, v)
            rec.task = ",".join(r.task for r in results)
            if len(results) > 1:  # the record's headline figures are the mean / sum over tasks
                rec.accuracy = statistics.fmean(r.accuracy for r in results)
                rec.accuracy_metric = "mean of primary metrics"
                rec.n_samples = sum(r.n_samples for r in results)
                rec.eval_time_s = sum(r.eval_time_s for r in results)
                es = [r.eval_energy_j for r in results]
                rec.eval_energy_j = sum(es) if all(e is not None for e in es) else None

    # ------------------------------------------------------------------------------------------
    def _window(self, name: str, fn) -> dict[str, Any]:
        """Run fn repeatedly for >= the meter's minimum window; per-call time (s) and energy (J)."""
        if self.session is None:  # no meter: time only
            self._sync()
            t0, n = time.perf_counter(), 0
            while True:
                fn()
                n += 1
                self._sync()
                if time.perf_counter() - t0 >= 0.05:
                    break
            return {"time_s": (time.perf_counter() - t0) / n, "energy_j": None, "calls": n, "w": None}

        def call():
            fn()
            self._sync()

        cpu0 = self._rapl.poll() if self._rapl is not None else None
        with self.session.window(name) as w:
            n = self.session.repeat_until(call)
        cpu = self._rapl.poll() - cpu0 if self._rapl is not None else None
        per = 1.0 / n
        return {"time_s": w.duration_s * per, "energy_j": _scale(w.energy_j, per), "calls": n, "w": w,
                "e1hz": _scale(w.energy_1hz_j, per), "cpu_j": _scale(cpu, per),
                "capped_s": _scale(w.power_capped_s, per)}

    def _fill(self, rec: Record, cell: Cell, pre: dict, reps: list[dict], dev: DeviceInfo) -> None:
        from measure.meter.base import stability

        b, n_out = cell.batch_size, cell.output_tokens
        dec_tokens = b * max(1, n_out - 1)  # the first token comes out of the prefill
        rec.rep_duration_s = [r["time_s"] for r in reps]
        rec.duration_s = statistics.fmean(rec.rep_duration_s)
        dec_times = [r["time_s"] - pre["time_s"] for r in reps]
        if min(dec_times) <= 0:
            raise DecodeNotResolved(
                f"decode not resolvable: a generate call ({min(r['time_s'] for r in reps) * 1e3:.2f} ms) took no "
                f"longer than the prefill alone ({pre['time_s'] * 1e3:.2f} ms); use more output tokens")
        rec.rep_tokens_per_s = [dec_tokens / t for t in dec_times]
        rec.tokens_per_s = dec_tokens / statistics.fmean(dec_times)
        rec.tpot_ms = statistics.fmean(dec_times) / max(1, n_out - 1) * 1000.0
        rec.ttft_ms_std = None
        if reps[0]["energy_j"] is not None:
            rec.rep_energy_j = [r["energy_j"] for r in reps]
            rec.energy_total_j = statistics.fmean(rec.rep_energy_j)
            rec.energy_per_token_j = rec.energy_total_j / (b * n_out)
            rec.avg_power_w = rec.energy_total_j / rec.duration_s
            rec.decode_energy_j = rec.energy_total_j - (pre["energy_j"] or 0.0)
            if rec.decode_energy_j <= 0:
                raise DecodeNotResolved(
                    f"decode energy not resolvable: generate {rec.energy_total_j:.3f} J <= prefill "
                    f"{pre['energy_j']:.3f} J per call; use more output tokens")
            rec.decode_energy_per_token_j = rec.decode_energy_j / dec_tokens
            rec.decode_avg_power_w = rec.decode_energy_j / statistics.fmean(dec_times)
            e1 = [r.get("e1hz") for r in reps]
            if all(v is not None for v in e1):
                rec.energy_1hz_j = statistics.fmean(e1)
                rec.energy_1hz_error_pct = (rec.energy_1hz_j - rec.energy_total_j) / rec.energy_total_j * 100
            w0 = reps[0]["w"]
            rec.energy_method = w0.method
            rec.window_s = w0.duration_s
            rec.counter_update_period_ms = self.session.update_period_ms
            if self._idle is not None:
                rec.idle_power_w = self._idle.power_w
                rec.energy_active_j = max(rec.energy_total_j - self._idle.power_w * rec.duration_s, 0.0)
            throttle = sorted({t for r in [pre, *reps] for t in (r["w"].throttle_reasons or [])})
            rec.throttle_reasons = throttle
            self._power_capped(rec, pre, reps, dec_times)
            peaks = [r["w"].peak_mem_used_gb for r in reps if r["w"].peak_mem_used_gb is not None]
            rec.peak_mem_nvml_gb = max(peaks) if peaks else None
        else:  # CPU without a meter: time only, energy unknown
            rec.energy_method = None
        cpu = [r.get("cpu_j") for r in reps]
        if all(v is not None for v in cpu):
            rec.cpu_energy_j = statistics.fmean(cpu)
            rec.cpu_energy_note = f"{self._rapl_note}; per generate call, whole CPU package(s)"
        else:
            rec.cpu_energy_note = self._rapl_note
        stable, why, e_cv, t_cv = stability(rec.rep_energy_j or [], rec.rep_tokens_per_s,
                                            rec.throttle_reasons, rec.other_gpu_processes or 0)
        rec.is_stable, rec.unstable_reason, rec.energy_cv, rec.tokens_per_s_cv = stable, why, e_cv, t_cv
        self._bandwidth(rec, cell, statistics.fmean(dec_times))
        self._slow_path(rec, cell)

    @staticmethod
    def _power_capped(rec: Record, pre: dict, reps: list[dict], dec_times: list[float]) -> None:
        """Share of the prefill and of the decode the clocks were held by the power limit (0..1): the prefill
        window's own, and the generate calls' less the prefill's per call over the decode time. The clocks-event
        bit `sw_power_cap` (in `throttle_reasons`) says only that it happened at some poll of some window."""
        pre_capped, rep_capped = pre.get("capped_s"), [r.get("capped_s") for r in reps]
        if pre_capped is not None and pre["time_s"] > 0:
            rec.prefill_power_capped_frac = min(1.0, pre_capped / pre["time_s"])
        if any(c is None for c in rep_capped):
            return
        rec.rep_power_capped_s = rep_capped
        if pre_capped is not None:
            decode_capped_s = max(0.0, statistics.fmean(rep_capped) - pre_capped)
            rec.decode_power_capped_frac = min(1.0, decode_capped_s / statistics.fmean(dec_times))

    def _bandwidth(self, rec: Record, cell: Cell, decode_time_s: float) -> None:
        """Achieved decode bandwidth (weights + KV read per step) / the card's spec bandwidth."""
        if rec.gpu_id is None or rec.weights_gb is None:
            return
        try:
            from recommender.catalog import load_catalog

            cat = load_catalog()
            gpu, model = cat.gpu(rec.gpu_id, allow_external=False), cat.models.find(rec.model)
        except Exception:
            return
        if gpu.bandwidth_gbs is None or model is None:
            return
        steps = max(1, cell.output_tokens - 1)
        ctx = cell.prompt_tokens + cell.output_tokens / 2
        kv_gb = model.kv_bytes_per_token(2.0) * ctx * cell.batch_size / 1e9
        rec.bandwidth_utilization = (rec.weights_gb + kv_gb) * steps / decode_time_s / gpu.bandwidth_gbs

    def _slow_path(self, rec: Record, cell: Cell) -> None:
        key = (cell.model, cell.engine, cell.batch_size, cell.prompt_tokens, cell.output_tokens)
        if cell.quant in ("bf16", "fp16"):
            self._reference_tps[key] = max(self._reference_tps.get(key, 0.0), rec.tokens_per_s or 0.0)
            rec.slow_path_suspected = False
            return
        ref = self._reference_tps.get(key)
        if ref and rec.tokens_per_s is not None:
            slow = rec.tokens_per_s < SLOW_PATH_FRACTION * ref
            rec.slow_path_suspected = slow
            if slow:
                rec.slow_path_reason = (f"decode {rec.tokens_per_s:.1f} tok/s < {SLOW_PATH_FRACTION:.0%} of the "
                                        f"unquantized {ref:.1f} tok/s on the same engine and batch")

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _load_key(cell: Cell, engine) -> tuple:
        """Cells with the same key share one loaded model: the group, plus the engine when it owns the model."""
        if engine is not None and engine.owns_model:
            return (cell.group_key, engine.id, *engine.load_key(cell))
        return cell.group_key

    def _load(self, cell: Cell, backend, engine=None):
        from measure.models import build_model

        key = self._load_key(cell, engine)
        if self._loaded and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2]
        self._unload()
        torch = self._torch
        owned = engine is not None and engine.owns_model
        try:
            if owned:
                loaded, qinfo = engine.load(cell, self.device)
            else:
                loaded = build_model(cell.model, weights=cell.weights, dtype=backend.build_dtype,
                                     device=self.device, seed=cell.seed)
                self._inductor_before = _inductor_config()
                qinfo = backend.apply(loaded.model)
                self._inductor_overrides = _changed(self._inductor_before, _inductor_config())
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            self._group_error = (key, "failed", ("OOM: " if "out of memory" in msg.lower() else "") + msg)
            self._unload()
            raise
        gc.collect()
        if owned:  # the engine's memory (weights + its KV pool) is not separable from here
            self._weights_gb = None
        elif self._is_cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            self._weights_gb = torch.cuda.memory_allocated(self.device) / 1e9
        else:
            self._weights_gb = sum(p.numel() * p.element_size() for p in loaded.model.parameters()) / 1e9
        self._loaded = (key, loaded, qinfo, engine if owned else None)
        return loaded, qinfo

    def _unload(self) -> None:
        self._batch_sizes_run = []
        saved, self._inductor_before, self._inductor_overrides = self._inductor_before, None, {}
        try:
            _restore_inductor_config(saved)
        except Exception as exc:  # noqa: BLE001 - a failed restore must not keep the model loaded
            warnings.warn(f"could not restore torch inductor's config: {type(exc).__name__}: {exc}; later "
                          "compiled cells of this process may compile with the previous method's settings",
                          RuntimeWarning, stacklevel=2)
        if self._loaded is not None:
            owner, handle = self._loaded[3], self._loaded[1].model
            self._loaded = None
            if owner is not None:
                with contextlib.suppress(Exception):
                    owner.unload(handle)
        gc.collect()
        if self._is_cuda:
            self._torch.cuda.empty_cache()
        with contextlib.suppress(Exception):  # older torch without dynamo
            self._torch._dynamo.reset()

    def _other_processes(self):
        if self.meter is None:
            return None
        try:
            return [(p.pid, p.name) for p in self.meter.other_processes([os.getpid()])]
        except Exception:
            return None

    def _temp(self) -> float | None:
        try:
            return float(self.meter.temperature_c()) if self.meter else None
        except Exception:
            return None

    def _base_record(self, cell: Cell) -> Record:
        torch = self._torch
        rec = Record(cell_hash=cell.content_hash, model=cell.model, quant=cell.quant, engine=cell.engine,
                     batch_size=cell.batch_size, prompt_tokens=cell.prompt_tokens,
                     output_tokens=cell.output_tokens, weights=cell.weights, warmup=cell.warmup,
                     repetitions=cell.repetitions, seed=cell.seed, quant_params=dict(cell.quant_params),
                     engine_params=dict(cell.engine_params))
        rec.created_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        rec.command = self.context.command or " ".join(sys.argv)
        rec.grid_file = self.context.grid_file
        rec.source = self.context.source
        rec.host = socket.gethostname()
        rec.cpu_model, rec.cpu_count = _host_cpu()
        with contextlib.suppress(OSError, AttributeError):
            rec.load_avg_1m = round(os.getloadavg()[0], 2)
        rec.python_version = platform.python_version()
        rec.torch_version = torch.__version__
        if cell.tasks:
            rec.task = ",".join(cell.tasks)
        if self.meter is not None:
            m = self.meter
            rec.gpu_name, rec.gpu_uuid, rec.gpu_index = m.name, m.uuid, m.index
            rec.driver_version, rec.cuda_version, rec.nvml_version = m.driver_version, m.cuda_version, m.nvml_version
            rec.power_limit_w, rec.compute_capability = m.power_limit_w, m.compute_capability
            if type(m).__name__.startswith(("Fake", "Replay")):  # simulated energy never passes as measured
                rec.source, rec.measurement_scope = "simulated:fake-meter", "simulated"
        elif not self._is_cuda:
            rec.gpu_name = "cpu"
            rec.measurement_scope = "cpu-time-only"
        try:
            from recommender.catalog import load_catalog

            if rec.gpu_name:
                row = load_catalog().gpus.find(rec.gpu_name)
                rec.gpu_id = row.id if row is not None else None
        except Exception:
            pass
        # the cell and the second alone collide when GPUs measure one cell together (machine anchors, s17): the
        # merge keeps one record per id, so a random suffix keeps each GPU's record
        rec.record_id = f"{cell.content_hash}-{rec.created_at}-{uuid.uuid4().hex[:8]}"
        return rec


def _dynamo_counter(group: str, key: str) -> int | None:
    """torch._dynamo's process-wide counter `group`/`key` so far (0 where it never counted; None where this torch
    has no dynamo)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters[group][key])


def _dynamo_graphs() -> int | None:
    """Graphs torch.compile (dynamo) has compiled in this process so far."""
    return _dynamo_counter("stats", "unique_graphs")


def _woq_rewrites() -> int | None:
    """Linears torch inductor has rewritten to its weight-only int8 kernel (`aten._weight_int8pack_mm`) in this
    process so far (its `woq_matcher_count`, which a graph from inductor's cache replays too)."""
    return _dynamo_counter("inductor", "woq_matcher_count")


def _inductor_config() -> dict[str, Any] | None:
    """A copy of torch inductor's process-wide config (None where this torch has no inductor or it cannot be
    read: then nothing is recorded or restored)."""
    try:
        import torch._inductor.config as inductor_config

        return inductor_config.get_config_copy()
    except Exception:  # noqa: BLE001 - ImportError, or a config module that cannot copy itself
        return None


def _changed(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The inductor settings `after` holds at another value than `before` (plain values only: what a
    record can hold)."""
    if before is None or after is None:
        return {}
    plain = (bool, int, float, str, type(None))
    return {k: v for k, v in after.items() if before.get(k) != v and isinstance(v, plain)}


def _restore_inductor_config(saved: dict[str, Any] | None) -> None:
    """Set back the inductor settings that differ from `saved` (a copy from `_inductor_config`)."""
    if saved is None:
        return
    import torch._inductor.config as inductor_config

    current = inductor_config.get_config_copy()
    changed = {k: v for k, v in saved.items() if current.get(k) != v}
    if changed:
        inductor_config.load_config(changed)


def _diff(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _scale(v: float | None, k: float) -> float | None:
    return None if v is None else v * k


def host_launch_us(torch, device: str, launches: int = 2000, rounds: int = 5) -> float:
    """The host's time per kernel launch (µs): the median over `rounds` of the wall time of `launches` in-place
    additions to a one-element tensor on `device`, synchronized at the end of each round, divided by
    `launches`. Each kernel does next to nothing on the GPU, so the figure is Python + PyTorch's dispatcher +
    the CUDA launch on this host, which bounds eager decoding at small batch sizes (a 7B model's eager step
    launches hundreds of kernels). About 10-50 ms in all. On a CPU device it times the same op's CPU dispatch."""
    x = torch.zeros(1, device=device)
    is_cuda = str(device).startswith("cuda")

    def sync():
        if is_cuda:
            torch.cuda.synchronize(device)

    x.add_(1.0)  # the kernel's first launch (module load) is not timed
    sync()
    per = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(launches):
            x.add_(1.0)
        sync()
        per.append((time.perf_counter() - t0) / launches * 1e6)
    return round(statistics.median(per), 3)


@functools.cache
def _host_cpu() -> tuple[str | None, int | None]:
    """(CPU model name, logical CPUs this process may use) of the host; None where unreadable."""
    model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.lower().startswith("model name")), None)
    model = model or platform.processor() or None
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count()
    return model, count


def catalogue_batch_reason(cell: Cell) -> str | None:
    """Why the catalogue says the method cannot decode this batch size on this engine (quants.yaml
    `min_batch_size`, from measured failures): recorded as a skip instead of a compile that fails."""
    from recommender.catalog import load_catalog

    quant = load_catalog().quants.find(cell.quant)
    return quant.batch_reason(cell.engine, cell.batch_size) if quant is not None else None


def catalogue_hardware_reason(quant_id: str, engine_id: str, dev: DeviceInfo) -> str | None:
    """Why the catalogue says this NVIDIA GPU cannot run the method or the engine (quants.yaml
    `min_compute_capability`, engines.yaml `hardware`): the same rules `recommend` excludes by, so a cell is
    recorded as a skip with the documented reason instead of failing inside a library."""
    if dev.type != "cuda" or dev.compute_capability is None:
        return None
    from recommender.catalog import Gpu, load_catalog

    cat = load_catalog()
    gpu = Gpu(id=dev.name or "this card", vendor="nvidia", compute_capability=dev.compute_capability)
    rules = (cat.quants.find(quant_id), cat.engines.find(engine_id))
    return next((r for x in rules if x is not None and (r := x.hardware_reason(gpu))), None)
