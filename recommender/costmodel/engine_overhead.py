"""Fit an engine's roofline efficiency and per-step launch overhead (engines.yaml `analytic` block) on
batch-1 16-bit rows.

The analytic model (`analytic.py`) times one decode step of a batch-1 request as

    t_step = R_step / efficiency + overhead        R_step = max(t_mem, t_comp) of the step (roofline, s)

and the prefill as R_prefill / efficiency + overhead. Both parameters enter linearly and are fitted by
least squares in relative terms (every residual divided by the measured time):

  * rows that time the decode alone (ours, scope gpu-counter): y = batch / tokens_per_s = R_step / eff +
    overhead (seconds per step);
  * rows that time a whole request (ML.ENERGY v1, Argonne): per output token y = 1 / tokens_per_s =
    (R_prefill + n R_step) / (n eff) + (n + 1) / n x overhead, n = output tokens.

A negative free-fit overhead is fixed at 0, an efficiency above 1 at 1; rows faster than the datasheet
roofline itself are dropped. Rows: batch 1, one GPU, unquantized float weights; ours ok and really
measured (never the fake meter), decode-stable ones only (`measure.meter.base.decode_is_stable`) where an
engine has at least MIN_STABLE of them. Used by
datasets/catalog/tools/fit_engine_overhead.py (writes engines.yaml) and by the trainer's per-fold refit
(`engine_constants.py`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ENGINES = ("hf-eager", "hf-compiled", "vllm", "tensorrt-llm", "llama.cpp")
#: public file -> engines whose rows it contributes
PUBLIC_FILES = {"mlenergy_v1.csv": ("hf-eager",), "argonne.csv": ("vllm", "tensorrt-llm", "llama.cpp")}
#: our records contribute to these engines
OWN_ENGINES = ("hf-eager", "hf-compiled")
FLOAT_QUANTS = ("fp32", "fp16", "bf16")
MIN_STABLE = 3
#: an engine with fewer rows is not fitted (it keeps what engines.yaml says)
MIN_FIT_ROWS = 3
SIMULATED_SCOPE = "simulated"
#: the measurement scope of our records (the training frame's `scope_id` of them)
OWN_SCOPE = "gpu-counter"
#: columns of `Rows` that `Rows.add` fills with None when not given
OPTIONAL_COLUMNS = ("scope", "stable")


@dataclass
class Rows:
    """Parallel lists of the rows of one engine (ids resolved against the catalogue). `seconds`: measured
    decode step, or whole request per output token (`e2e`); `scope` (the row's measurement scope id) and
    `stable` (ours: `decode_is_stable`) are None where not known."""

    gpu: list[str] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    quant: list[str] = field(default_factory=list)
    batch: list[float] = field(default_factory=list)
    prompt: list[float] = field(default_factory=list)
    output: list[float] = field(default_factory=list)
    kv_bits: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    e2e: list[bool] = field(default_factory=list)  # prefill included in `seconds`
    origin: list[str] = field(default_factory=list)  # data file
    scope: list[str | None] = field(default_factory=list)
    stable: list[bool | None] = field(default_factory=list)

    def add(self, **kw) -> None:
        for k, v in kw.items():
            getattr(self, k).append(v)
        for k in OPTIONAL_COLUMNS:
            if k not in kw:
                getattr(self, k).append(None)

    def take(self, idx) -> Rows:
        """The rows at the given positions, in that order (an optional column left unfilled: None)."""
        n = len(self)

        def col(k: str) -> list:
            v = getattr(self, k)
            return [v[i] for i in idx] if k not in OPTIONAL_COLUMNS or len(v) == n else [None] * len(idx)

        return Rows(**{k: col(k) for k in self.__dataclass_fields__})

    def extend(self, other: Rows) -> None:
        for k in self.__dataclass_fields__:
            getattr(self, k).extend(getattr(other, k))

    def __len__(self) -> int:
        return len(self.seconds)


@dataclass
class Fit:
    engine: str
    n: int
    by_origin: dict[str, int]
    gpus: list[str]
    efficiency: float
    overhead_ms: float
    overhead_fixed: bool  # the free fit gave a negative overhead
    efficiency_capped: bool  # the free fit gave an efficiency above 1
    median_ape_pct: float
    p80_factor: float  # exp(80th percentile of |log(predicted / measured)|)
    max_ape_pct: float
    old_efficiency: float | None
    old_median_ape_pct: float | None
    old_p80_factor: float | None
    stable_only: bool | None  # our records: stable only (None: no records of ours)
    rows: list[dict] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # rows faster than the roofline


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_public(catalog, public_dir: Path, files=PUBLIC_FILES) -> tuple[dict[str, Rows], list[Path]]:
    """Batch-1 one-GPU float rows per engine of the public files (those without `excluded_reason`), and the
    files read."""
    out: dict[str, Rows] = {}
    used = []
    for name, engines in files.items():
        path = Path(public_dir) / name
        if not path.exists():
            continue
        used.append(path)
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r.get("excluded_reason") or r["engine"] not in engines or r["quant"] not in FLOAT_QUANTS:
                    continue
                if _float(r["batch_size"]) != 1 or _float(r.get("num_gpus") or 1) != 1:
                    continue
                tps = _float(r["tokens_per_s"])
                if not (catalog.gpus.find(r["gpu_id"]) and catalog.models.find(r["model"]) and tps > 0):
                    continue
                out.setdefault(r["engine"], Rows()).add(
                    gpu=r["gpu_id"], model=r["model"], quant=r["quant"], batch=1.0, prompt=_float(r["prompt_tokens"]),
                    output=_float(r["output_tokens"]), kv_bits=_float(r.get("kv_cache_bits")), seconds=1.0 / tps,
                    e2e=True, origin=name, scope=r.get("scope_id") or None)
    return out, used


def measurement_files(measurements_dir: Path) -> list[Path]:
    """Our record files: <measurements_dir>/<card>/*.jsonl and *.jsonl (rejected/ and raw/ lie deeper)."""
    d = Path(measurements_dir)
    return sorted(d.glob("*/*.jsonl")) + sorted(d.glob("*.jsonl"))


def ok_records(files: list[Path]) -> Iterator[tuple[dict, Path]]:
    """(record, file) for every ok, really measured record of our JSONL files (`measurement_scope: simulated`,
    the fake meter, never); a torn or unreadable line is skipped."""
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(r, dict) or r.get("status") != "ok":
                continue
            if r.get("measurement_scope") == SIMULATED_SCOPE or str(r.get("source", "")).startswith("simulated"):
                continue
            yield r, path


def own_rows(catalog, files: list[Path]) -> dict[str, Rows]:
    """Our ok batch-1 float records per engine, decode-stable or not (`Rows.stable`, by
    `measure.meter.base.decode_is_stable`: a record flagged only for the power cap stays stable when no
    repetition's decode ran capped more than 5 % of its time): the candidates of `read_ours`."""
    from measure.meter.base import decode_is_stable  # the measuring side's rule; imported only to fit

    out: dict[str, Rows] = {}
    for r, path in ok_records(files):
        if r.get("engine") not in OWN_ENGINES or r.get("quant") not in FLOAT_QUANTS or r.get("batch_size") != 1:
            continue
        gpu = catalog.record_gpu(r)
        tps = _float(r.get("tokens_per_s"))
        if gpu is None or catalog.models.find(str(r.get("model"))) is None or not tps > 0:
            continue
        out.setdefault(r["engine"], Rows()).add(
            gpu=gpu.id, model=r["model"], quant=r["quant"], batch=1.0, prompt=float(r["prompt_tokens"]),
            output=float(r["output_tokens"]), kv_bits=float("nan"), seconds=1.0 / tps, e2e=False,
            origin=f"{path.parent.name}/{path.name}", scope=OWN_SCOPE, stable=decode_is_stable(r))
    return out


def stable_rule(rows: Rows) -> tuple[list[int], bool]:
    """(positions of the rows to fit, stable only): the stable ones where there are at least MIN_STABLE,
    else every one."""
    stable = [i for i, s in enumerate(rows.stable) if s is True]
    stable_only = len(stable) >= MIN_STABLE
    return (stable if stable_only else list(range(len(rows)))), stable_only


def read_ours(catalog, files: list[Path]) -> tuple[dict[str, Rows], dict[str, bool]]:
    """Our ok batch-1 float records per engine; stable ones only where an engine has MIN_STABLE of them."""
    out: dict[str, Rows] = {}
    stable_only: dict[str, bool] = {}
    for eng, rows in own_rows(catalog, files).items():
        keep, stable_only[eng] = stable_rule(rows)
        out[eng] = rows.take(keep)
    return out, stable_only


def engine_rows(public: dict[str, Rows], ours: dict[str, Rows]) -> dict[str, Rows]:
    """Per engine of ENGINES with any row: its public rows, then ours (the rows one engine's fit reads)."""
    out: dict[str, Rows] = {}
    for eng in ENGINES:
        rows = Rows()
        for src in (public.get(eng), ours.get(eng)):
            if src is not None:
                rows.extend(src)
        if len(rows):
            out[eng] = rows
    return out


def design(catalog, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(roofline seconds per measured unit X, overhead multiplier Z): y = X / eff + Z x overhead (s)."""
    from recommender.candidates import Candidates
    from recommender.costmodel.features import physics

    cands = Candidates.from_ids(catalog, rows.gpu, rows.model, rows.quant, ["hf-eager"] * len(rows), rows.batch,
                                rows.prompt, rows.output)
    ph = physics(cands, np.asarray(rows.kv_bits, dtype=np.float64))
    step = np.maximum(ph.t_mem_step, ph.t_comp_step)
    pre = np.maximum(ph.t_mem_prefill, ph.t_comp_prefill)
    n = np.asarray(rows.output, dtype=np.float64)
    e2e = np.asarray(rows.e2e, dtype=bool)
    X = np.where(e2e, (pre + n * step) / n, step)
    Z = np.where(e2e, (n + 1.0) / n, 1.0)
    return X, Z


def errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(median APE %, exp(80th percentile of |log(pred / y)|), max APE %)."""
    ape = np.abs(pred - y) / y * 100.0
    return (float(np.median(ape)), float(np.exp(np.percentile(np.abs(np.log(pred / y)), 80))), float(ape.max()))


def fittable(X: np.ndarray, seconds) -> np.ndarray:
    """The rows `fit_engine` fits: finite, and measured no faster than their roofline time `X` (s)."""
    y = np.asarray(seconds, dtype=np.float64)
    return np.isfinite(X) & np.isfinite(y) & (y >= X)


def fit_engine(catalog, engine: str, rows: Rows, old_eff: float | None, stable_only: bool | None,
               xz: tuple[np.ndarray, np.ndarray] | None = None) -> Fit:
    """Efficiency and overhead (ms per step) of one engine on its rows; `old_eff`: the efficiency to compare
    with (None: no comparison); `xz`: `design(catalog, rows)` when already computed."""
    X, Z = design(catalog, rows) if xz is None else xz
    y = np.asarray(rows.seconds, dtype=np.float64)
    ok = fittable(X, y)
    dropped = [f"{rows.origin[i]} {rows.gpu[i]} {rows.model[i]} {rows.prompt[i]:.0f}+{rows.output[i]:.0f}: "
               f"{y[i] * 1e3:.3f} ms per token < roofline {X[i] * 1e3:.2f} ms" for i in np.flatnonzero(~ok)]
    keep = np.flatnonzero(ok)
    rows = rows.take(keep)
    X, Z, y = X[keep], Z[keep], y[keep]
    A = np.stack([X / y, Z / y], axis=1)  # relative residuals: (X a + Z b - y) / y
    (a, b), *_ = np.linalg.lstsq(A, np.ones(len(y)), rcond=None)
    fixed = False
    if b < 0 or len(set(np.round(X, 12))) < 2:  # not physical, or no leverage to separate the two
        fixed = True
        b = 0.0
        a = float(np.linalg.lstsq((X / y)[:, None], np.ones(len(y)), rcond=None)[0][0])
    capped = False
    if a < 1.0:  # efficiency 1 / a above 1: the roofline's own time at most, the rest is overhead
        capped = True
        a = 1.0
        b = max(0.0, float(np.linalg.lstsq((Z / y)[:, None], 1.0 - X / y, rcond=None)[0][0]))
    pred = X * a + Z * b
    med, p80, mx = errors(pred, y)
    old = (None, None)
    if old_eff:
        om, op, _ = errors(X / old_eff, y)
        old = (om, op)
    by_origin: dict[str, int] = {}
    for o in rows.origin:
        by_origin[o] = by_origin.get(o, 0) + 1
    detail = [{"origin": rows.origin[i], "gpu": rows.gpu[i], "model": rows.model[i], "quant": rows.quant[i],
               "prompt": rows.prompt[i], "output": rows.output[i], "measured_ms": y[i] * 1e3,
               "fit_ms": pred[i] * 1e3, "roofline_ms": X[i] * 1e3} for i in range(len(y))]
    return Fit(engine, len(y), by_origin, sorted(set(rows.gpu)), 1.0 / a, b * 1e3, fixed, capped, med, p80, mx,
               old_eff, old[0], old[1], stable_only, detail, dropped)
