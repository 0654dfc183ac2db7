"""One measured cell: the versioned record schema (units in field names, null when not measured).

Field names follow the ML.ENERGY conventions (`energy_per_token_j`, `avg_power_w`, `ttft_ms`,
`is_stable`, `unstable_reason`). Bump SCHEMA_VERSION on any incompatible change and keep
`upgrade()` able to read older records.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.3"
#: Versions `upgrade()` reads. 1.1 added the host CPU fields (`cpu_model`, `cpu_count`, `load_avg_1m`): null in
#: records written as 1.0. 1.2 added `prefill_power_capped_frac`, `decode_power_capped_frac` and
#: `rep_power_capped_s`: null in records written as 1.0 or 1.1. 1.3 (s31) added `host_launch_us`: null before.
READABLE_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
STATUSES = ("ok", "failed", "skipped")


@dataclass
class Record:
    # --- identity -----------------------------------------------------------------------------
    cell_hash: str
    model: str
    quant: str
    engine: str
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    status: str = "ok"
    error: str | None = None
    record_id: str | None = None
    schema_version: str = SCHEMA_VERSION
    created_at: str | None = None  # ISO 8601, UTC
    command: str | None = None
    grid_file: str | None = None
    host: str | None = None
    cpu_model: str | None = None  # host CPU (eager decoding is often CPU launch-bound, so it matters)
    cpu_count: int | None = None  # logical CPUs this process may run on
    load_avg_1m: float | None = None  # host 1-minute load average when the cell started (other work on the host)
    #: host time (µs) per launch of a one-element CUDA kernel from Python, median of 5 rounds, taken before the
    #: warm-up (`measure.runner.host_launch_us`): what bounds eager decoding at small batch sizes (s31: one eager
    #: cell ran 1.8x apart over 38 H200 GPUs, and every CPU names itself "Intel(R) Xeon(R) Processor"); null off CUDA
    host_launch_us: float | None = None
    source: str = "measured:energy-recommender"
    measurement_scope: str = "gpu-counter"
    gpu_name: str | None = None
    gpu_uuid: str | None = None
    gpu_id: str | None = None  # catalogue id, when the name resolves
    gpu_index: int | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    power_limit_w: float | None = None
    compute_capability: str | None = None
    model_source: str = "catalogue"  # catalogue | local | hub
    weights: str = "random"  # random | real
    quant_params: dict[str, Any] = field(default_factory=dict)
    # the cell's engine params, plus what the runner observed of the engine: `compiled`, `warmup_tokens`, and
    # for hf-compiled `batch_sizes_before` (what the loaded model ran before this cell), `graphs_compiled_warmup`
    # and `graphs_compiled_timed` (torch.compile graphs compiled in the warm-up / inside the timed windows),
    # `inductor_overrides` (torch inductor settings the cell's method set for its model group, e.g. torchao's
    # coordinate-descent tuning; the runner sets them back when the group unloads; from session s9 on) and
    # `woq_rewrites_warmup` (linears inductor rewrote to aten._weight_int8pack_mm while compiling in the warm-up:
    # the weight-only int8 lowering behind compiled int8 weight-only's slow path; from session s20 on)
    engine_params: dict[str, Any] = field(default_factory=dict)
    warmup: int = 1
    repetitions: int = 3
    seed: int = 0
    # --- versions -----------------------------------------------------------------------------
    python_version: str | None = None
    torch_version: str | None = None
    transformers_version: str | None = None
    bitsandbytes_version: str | None = None
    torchao_version: str | None = None
    lm_eval_version: str | None = None
    vllm_version: str | None = None
    # --- prefill ------------------------------------------------------------------------------
    ttft_ms: float | None = None
    ttft_ms_std: float | None = None
    prefill_energy_j: float | None = None
    # --- decode -------------------------------------------------------------------------------
    tokens_per_s: float | None = None  # aggregate over the batch
    tpot_ms: float | None = None  # per output token of one sequence
    decode_energy_j: float | None = None
    decode_energy_per_token_j: float | None = None  # decode energy / (batch * output tokens)
    decode_avg_power_w: float | None = None
    # --- whole generate call (prefill + decode) -------------------------------------------------
    energy_total_j: float | None = None  # per generate call, mean over repetitions
    energy_active_j: float | None = None  # minus idle power x duration
    energy_per_token_j: float | None = None  # whole call / output tokens of the batch
    idle_power_w: float | None = None
    avg_power_w: float | None = None
    duration_s: float | None = None  # per generate call, mean
    energy_1hz_j: float | None = None  # the paper's eq. (1), 1 Hz rectangle rule
    energy_1hz_error_pct: float | None = None  # (1 Hz - counter) / counter x 100
    energy_method: str | None = None  # counter | sampled
    counter_update_period_ms: float | None = None
    window_s: float | None = None  # length of the timed energy window
    cpu_energy_j: float | None = None
    cpu_energy_note: str | None = None
    peak_mem_allocated_gb: float | None = None
    peak_mem_reserved_gb: float | None = None
    peak_mem_nvml_gb: float | None = None
    weights_gb: float | None = None
    bandwidth_utilization: float | None = None  # achieved / spec bandwidth in decode, 0..1
    load_time_s: float | None = None
    quantize_time_s: float | None = None
    compile_time_s: float | None = None
    # --- per repetition -----------------------------------------------------------------------
    rep_energy_j: list[float] = field(default_factory=list)
    rep_duration_s: list[float] = field(default_factory=list)
    rep_tokens_per_s: list[float] = field(default_factory=list)
    # --- accuracy (when measured) ---------------------------------------------------------------
    task: str | None = None
    n_samples: int | None = None
    accuracy: float | None = None
    accuracy_metric: str | None = None
    accuracy_stderr: float | None = None
    eval_energy_j: float | None = None
    eval_time_s: float | None = None
    accuracy_by_task: dict[str, Any] = field(default_factory=dict)  # task -> {metric, accuracy, stderr, n, J, s}
    # --- quality ------------------------------------------------------------------------------
    energy_cv: float | None = None
    tokens_per_s_cv: float | None = None
    temp_start_c: float | None = None
    temp_end_c: float | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    #: share of the prefill / decode time the clocks were held below application clocks by the power limit
    #: (0..1, NVML's power violation time; null where the driver does not report it)
    prefill_power_capped_frac: float | None = None
    decode_power_capped_frac: float | None = None
    rep_power_capped_s: list[float] | None = None  # per generate call, each repetition, s (the raw figure)
    other_gpu_processes: int | None = None
    is_stable: bool | None = None
    unstable_reason: str | None = None
    slow_path_suspected: bool | None = None
    slow_path_reason: str | None = None
    cooldown_s: float | None = None

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: _json_safe(v) for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        data = upgrade(dict(data))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SchemaError(f"unknown record fields: {', '.join(unknown)}")
        rec = cls(**data)
        rec.validate()
        return rec

    def validate(self) -> None:
        """Raise SchemaError naming the first field that breaks the schema."""
        for f in dataclasses.fields(self):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and getattr(self, f.name) in (None, ""):
                raise SchemaError(f"field {f.name!r} is required")
        if self.status not in STATUSES:
            raise SchemaError(f"status must be one of {STATUSES}, got {self.status!r}")
        for name in ("batch_size", "prompt_tokens", "output_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise SchemaError(f"{name} must be a positive integer, got {v!r}")
        if self.status == "ok":
            needed = ["tokens_per_s", "duration_s"]
            if self.measurement_scope != "cpu-time-only":
                needed += ["decode_energy_per_token_j", "energy_total_j"]
            for name in needed:
                v = getattr(self, name)
                if v is None or not math.isfinite(v) or v <= 0:
                    raise SchemaError(f"an ok record needs a positive {name}, got {v!r}")
        elif not self.error:
            raise SchemaError(f"a {self.status} record needs an error/reason")
        if self.weights not in ("random", "real"):
            raise SchemaError(f"weights must be 'random' or 'real', got {self.weights!r}")


class SchemaError(ValueError):
    """A record does not follow the schema."""


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older record to SCHEMA_VERSION: 1.0 -> 1.1 -> 1.2 -> 1.3 only add nullable fields."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if version not in READABLE_VERSIONS:
        raise SchemaError(f"unsupported schema_version {version!r} (this code reads "
                          f"{', '.join(READABLE_VERSIONS)})")
    data["schema_version"] = SCHEMA_VERSION
    return data


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Record)]


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return v
