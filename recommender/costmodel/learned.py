"""The learned cost model: LightGBM boosters (native text) applied through lib_lightgbm's C API.

Loading executes no code from the artifact (no pickle): every file is checked against MANIFEST.sha256,
metadata.json's feature list against `features.FEATURE_NAMES`, and the boosters are parsed by LightGBM
from their text. A tampered or mismatched artifact raises `ArtifactError` (a UserError) that says to
run `train-cost-model`.

Hot path: `import lightgbm` costs ~2 s (it imports scipy, sklearn hooks ...), which would blow the
`recommend` cold-start budget, so the shared library is loaded with ctypes from the installed package's
`lib/` folder without importing the package, and `LGBM_BoosterLoadModelFromString` /
`LGBM_BoosterPredictForMat` are called directly. If that fails, `import lightgbm` is the fallback.

`measured_lookup(cands)` serves our own measurements (datasets/measurements/*.jsonl) for candidate cells
that were measured: same GPU, same model or architecture (`architecture_of`), quant, engine, batch,
prompt and output tokens.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.util
import json
import math
import os
import statistics
import sys
from functools import cache
from pathlib import Path

import numpy as np

from recommender.candidates import Candidates
from recommender.costmodel.analytic import (
    INTERVAL_FACTOR,
    AnalyticCostModel,
    accuracy_delta,
    estimate,
    point_estimates,
)
from recommender.costmodel.base import TARGETS, Quantiles
from recommender.costmodel.features import (
    FEATURE_CATALOG_FILES,
    FEATURE_NAMES,
    FEATURES_VERSION,
    REFERENCE_QUANT,
    build,
    catalog_file_hashes,
    dedupe,
    group_rows,
    physics,
)
from recommender.errors import UserError

MANIFEST = "MANIFEST.sha256"
METADATA = "metadata.json"
FORMAT_VERSION = 1
_RETRAIN = "retrain it with `train-cost-model` (or remove the folder to fall back to the analytic model)"


class ArtifactError(UserError):
    """The cost-model artifact is present but cannot be trusted or used."""


# ---- LightGBM through ctypes ------------------------------------------------------------------------
_C_API_DTYPE_FLOAT64 = 1
_C_API_PREDICT_NORMAL = 0
#: Targets predicted as analytic x exp(correction) (accuracy_delta: the cited table, or `_accuracy` when learned).
_POINT_TARGETS = ("energy_per_token_j", "tokens_per_s", "ttft_ms", "prefill_energy_j", "memory_gb")
#: An explicit thread count: without one, every LGBM_BoosterPredictForMat call pays ~10 ms of OpenMP set-up.
#: Calls with fewer than _MIN_ROWS_PER_THREAD rows per thread use fewer threads (on the 2-core CI machine a
#: second thread pays off from ~500 rows; below, waking it costs more than it saves); big calls use up to 4.
_MAX_THREADS = max(1, min(4, os.cpu_count() or 1))
_MIN_ROWS_PER_THREAD = 250
_PREDICT_PARAMS = f"num_threads={_MAX_THREADS}".encode()


def _predict_params(nrow: int) -> bytes:
    threads = max(1, min(_MAX_THREADS, nrow // _MIN_ROWS_PER_THREAD))
    return _PREDICT_PARAMS if threads == _MAX_THREADS else f"num_threads={threads}".encode()


def _lib_path() -> Path | None:
    spec = importlib.util.find_spec("lightgbm")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    names = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}
    name = names.get(sys.platform, "lib_lightgbm.so")
    for base in spec.submodule_search_locations:
        for cand in (Path(base) / "lib" / name, Path(base) / "bin" / name, Path(base).parent / name):
            if cand.is_file():
                return cand
    return None


@cache
def _clib():
    """lib_lightgbm via ctypes, or None when it cannot be loaded."""
    path = _lib_path()
    if path is None:
        return None
    # libgomp reads OMP_WAIT_POLICY when it is loaded. Its default lets worker threads spin after a parallel
    # region; on a 2-core machine the spinning thread competes with the Python thread and every following
    # predict call lost ~8 ms (and two threads ran slower than one). Passive threads sleep at once.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
        lib.LGBM_GetLastError.restype = ctypes.c_char_p
        return lib
    except OSError:
        return None


class CBooster:
    """A booster held by lib_lightgbm, used through its C API."""

    def __init__(self, text: str, lib=None):
        self.lib = lib or _clib()
        if self.lib is None:
            raise OSError("lib_lightgbm not found")
        self.handle = ctypes.c_void_p()
        n_iter = ctypes.c_int(0)
        self._check(self.lib.LGBM_BoosterLoadModelFromString(
            ctypes.c_char_p(text.encode()), ctypes.byref(n_iter), ctypes.byref(self.handle)))
        n_feat = ctypes.c_int(0)
        self._check(self.lib.LGBM_BoosterGetNumFeature(self.handle, ctypes.byref(n_feat)))
        self.num_feature = n_feat.value

    def _check(self, ret: int) -> None:
        if ret != 0:
            raise ValueError(self.lib.LGBM_GetLastError().decode("utf-8", "replace"))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions for the rows of X (float64, row-major or column-major: neither is copied)."""
        row_major = not (X.flags.f_contiguous and not X.flags.c_contiguous and X.dtype == np.float64)
        if row_major:
            X = np.ascontiguousarray(X, dtype=np.float64)
        nrow, ncol = X.shape
        out = np.empty(nrow, dtype=np.float64)
        if not nrow:
            return out
        out_len = ctypes.c_int64(0)
        self._check(self.lib.LGBM_BoosterPredictForMat(
            self.handle, X.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(_C_API_DTYPE_FLOAT64),
            ctypes.c_int32(nrow), ctypes.c_int32(ncol), ctypes.c_int(int(row_major)),
            ctypes.c_int(_C_API_PREDICT_NORMAL),
            ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_char_p(_predict_params(nrow)), ctypes.byref(out_len),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        if out_len.value != nrow:
            raise ValueError(f"LightGBM returned {out_len.value} predictions for {nrow} rows")
        return out

    def __del__(self):
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            self.lib.LGBM_BoosterFree(handle)
            self.handle = None


class PyBooster:
    """Fallback: the lightgbm Python package (slow to import)."""

    def __init__(self, text: str):
        import lightgbm

        self.booster = lightgbm.Booster(model_str=text)
        self.num_feature = self.booster.num_feature()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(np.ascontiguousarray(X, dtype=np.float64))


def load_booster(text: str):
    try:
        return CBooster(text)
    except (OSError, AttributeError):
        return PyBooster(text)


# ---- the artifact -------------------------------------------------------------------------------------
def verify_artifact(folder: Path) -> tuple[dict, dict[str, str]]:
    """(metadata, manifest {name: sha256}) of a verified artifact, else ArtifactError."""
    folder = Path(folder)

    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"cost-model artifact {folder} is unusable: {why}; {_RETRAIN}")

    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise bad(f"{MANIFEST} is missing")
    listed: dict[str, str] = {}
    for n, line in enumerate(mpath.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64 or "/" in parts[1] or parts[1].startswith("."):
            raise bad(f"{MANIFEST} line {n} is malformed")
        listed[parts[1].strip()] = parts[0].lower()
    present = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")} - {MANIFEST}
    if present - set(listed):
        raise bad(f"files not in {MANIFEST}: {', '.join(sorted(present - set(listed)))}")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise bad(f"{name} (listed in {MANIFEST}) is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise bad(f"{name} does not match its checksum in {MANIFEST} (modified or corrupted)")
    if METADATA not in listed:
        raise bad(f"{METADATA} is not listed")
    try:
        meta = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise bad(f"{METADATA} is not valid JSON ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise bad(f"format_version {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    if meta.get("features_version") != FEATURES_VERSION or meta.get("feature_names") != list(FEATURE_NAMES):
        raise bad("it was trained on a different feature list than recommender/costmodel/features.py computes")
    for t, spec in meta.get("targets", {}).items():
        if t not in TARGETS:
            raise bad(f"unknown target {t!r}")
        if spec.get("kind") == "learned":
            for q in ("p10", "p50", "p90"):
                name = spec.get("files", {}).get(q)
                if name not in listed:
                    raise bad(f"{t} {q} model file {name!r} is not listed in {MANIFEST}")
    return meta, listed


class LearnedCostModel:
    """LightGBM corrections to the analytic model, read from a verified artifact folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta, listed = verify_artifact(self.folder)
        self.name = "lightgbm-" + hashlib.sha256(
            (self.folder / MANIFEST).read_bytes()).hexdigest()[:10]
        self.analytic = AnalyticCostModel()
        self.boosters: dict[str, dict[str, object]] = {}
        self.offsets: dict[str, float] = {}
        #: per learned target: the log offset for a card outside its training cards, and those cards' ids
        self.unseen_offsets: dict[str, float] = {}
        self.trained_gpus: dict[str, frozenset[str]] = {}
        for t, spec in self.meta["targets"].items():
            if spec.get("kind") != "learned":
                continue
            self.boosters[t] = {}
            for q in ("p10", "p50", "p90"):
                text = (self.folder / spec["files"][q]).read_text(encoding="utf-8")
                try:
                    b = load_booster(text)
                except Exception as exc:  # LightGBM's own parse error
                    raise ArtifactError(f"cost-model artifact {self.folder}: {spec['files'][q]} cannot be "
                                        f"parsed by LightGBM ({exc}); {_RETRAIN}") from None
                want = len(spec.get("feature_names", ())) if t == "accuracy_delta" else len(FEATURE_NAMES)
                if b.num_feature != want:
                    raise ArtifactError(f"cost-model artifact {self.folder}: {spec['files'][q]} expects "
                                        f"{b.num_feature} features, the code computes {want}; {_RETRAIN}")
                self.boosters[t][q] = b
            self.offsets[t] = float(spec.get("conformal_abs_offset" if t == "accuracy_delta"
                                             else "conformal_log_offset", 0.0))
            if "conformal_log_offset_unseen_card" in spec and spec.get("gpus"):
                self.unseen_offsets[t] = float(spec["conformal_log_offset_unseen_card"])
                self.trained_gpus[t] = frozenset(spec["gpus"])
        self.labels = {t: (self.name if t in self.boosters else self.analytic.name) for t in TARGETS}

    def predict(self, cands: Candidates) -> dict[str, Quantiles]:
        """Every target for every row: p10/p50/p90 (the `CostModel` contract)."""
        return self._predict(cands, tuple(TARGETS), full=True)

    def predict_p50(self, cands: Candidates, targets=None) -> dict[str, np.ndarray]:
        """p50 only of `targets` (default: all), bitwise equal to `predict(cands)[t].p50`.

        Ranking and constraints need only p50: this runs one booster per learned target instead of three
        (p10/p90 are computed later for the rows that are shown)."""
        targets = tuple(TARGETS) if targets is None else tuple(targets)
        return {t: q.p50 for t, q in self._predict(cands, targets, full=False).items()}

    def _predict(self, cands: Candidates, targets: tuple[str, ...], full: bool) -> dict[str, Quantiles]:
        """Rows whose physics are identical (fine-tunes of one architecture: `features.dedupe`) are predicted
        once. p50 = analytic x exp(q50); p10/p90 = analytic x exp(q10 - offset / q90 + offset), clamped so
        that p10 <= p50 <= p90 (a crossing end is set to p50; p50 never depends on the p10/p90 models). The
        offset is wider on a card outside the training cards (`_offset`)."""
        out: dict[str, Quantiles] = {}
        multiplicative = [t for t in targets if t in _POINT_TARGETS]
        if multiplicative:
            u, inv = dedupe(cands) if len(cands) else (cands, None)
            ph = physics(u)
            est = estimate(ph, u)
            base = point_estimates(est)
            learned = [t for t in multiplicative if t in self.boosters]
            X = build(u, phys=ph, est=est) if learned and len(u) else None
            if X is not None and len(learned) * (3 if full else 1) > 1:
                X = np.ascontiguousarray(X)  # LightGBM reads rows a little faster; worth one copy for 2+ boosters
            nan = np.full(len(u), np.nan)
            for t in multiplicative:
                b = base[t]
                if t in learned and X is not None:
                    models, off = self.boosters[t], self._offset(t, u) if full else 0.0
                    q50 = models["p50"].predict(X)
                    with np.errstate(invalid="ignore", over="ignore"):
                        p50 = b * np.exp(q50)
                        if full:
                            lo = np.minimum(models["p10"].predict(X) - off, q50)
                            hi = np.maximum(models["p90"].predict(X) + off, q50)
                            q = Quantiles(b * np.exp(lo), p50, b * np.exp(hi))
                        else:
                            q = Quantiles(nan, p50, nan)
                elif full:
                    q = Quantiles(b / INTERVAL_FACTOR[t], b, b * INTERVAL_FACTOR[t])
                else:
                    q = Quantiles(nan, b, nan)
                out[t] = q if inv is None else Quantiles(q.p10[inv], q.p50[inv], q.p90[inv])
            if full:
                self._allow_slow_path(cands, out)
        if "accuracy_delta" in targets:
            if "accuracy_delta" in self.boosters:
                out["accuracy_delta"] = self._accuracy(cands, full)
            else:
                out["accuracy_delta"] = accuracy_delta(cands)
        return out

    def _allow_slow_path(self, cands: Candidates, out: dict[str, Quantiles]) -> None:
        """Where another card measured the row's method and engine on a slow path at the nearest batch
        (`recommender.evidence.slow_path_near`; for an engine variant, the engine it runs as too, on any card) and
        the row's card never ran that method and engine (the variant itself): widen
        the J/token p90 up to the row's unquantized p50 (REFERENCE_QUANT, same card, model, engine, batch and
        workload) times the slowdown measured there (coverage `slow_path_ratio_by_gpu`, the largest over such
        cards), and the tokens/s p10 down to that p50 over it. The model cannot learn a slow path from one
        card's rows for another card (leave-one-GPU-out misses them by up to 30x); the interval then says how
        far it would go if the slow path is the software's, not the card's. p50s stay as predicted."""
        from recommender.evidence import slow_path_near

        coverage = self.meta.get("coverage") or {}
        cat = cands.catalog
        ref_q = cat.quants.index.get(REFERENCE_QUANT)
        targets = [t for t in ("energy_per_token_j", "tokens_per_s") if t in out]
        if not coverage or ref_q is None or not targets or not len(cands):
            return
        # one slow-path lookup per (method, engine, batch): `slow_path_near` gives the nearest flagged batch per card
        # with the ratios measured there
        grouped = group_rows(cands.quant_idx, cands.engine_idx, cands.batch_size)
        first, inverse = grouped if grouped is not None else (np.arange(len(cands)), None)
        qids, eids = cat.quants.ids(), cat.engines.ids()
        energy, speed = np.full(len(first), np.nan), np.full(len(first), np.nan)  # the largest over such cards
        ran = np.zeros((len(qids), len(eids), len(cat.gpus.ids())), dtype=bool)  # method and engine ran on the card
        for k, i in enumerate(first):
            qi, ei, batch = cands.quant_idx[i], cands.engine_idx[i], cands.batch_size[i]
            if not np.isfinite(batch):
                continue
            quant, engine = qids[qi], eids[ei]
            slow = slow_path_near(coverage, quant, engine, int(batch), cat.engines.rows[ei].base_id)
            energy[k] = max((s["energy_vs_unquantized"] for s in slow if "energy_vs_unquantized" in s), default=np.nan)
            speed[k] = max((s["slowdown_vs_unquantized"] for s in slow if "slowdown_vs_unquantized" in s),
                           default=np.nan)
            for gpu in ((coverage.get(quant) or {}).get(engine) or {}).get("gpus") or ():
                if gpu in cat.gpus.index:
                    ran[qi, ei, cat.gpus.index[gpu]] = True
        if inverse is not None:
            energy, speed = energy[inverse], speed[inverse]
        never = ~ran[cands.quant_idx, cands.engine_idx, cands.gpu_idx]
        rows = np.flatnonzero((np.isfinite(energy) | np.isfinite(speed)) & never)
        if not len(rows):
            return
        sub = cands.take(rows)
        ref = Candidates(cat, sub.gpu_idx, sub.model_idx, np.full(len(rows), ref_q, dtype=sub.quant_idx.dtype),
                         sub.engine_idx, sub.batch_size, sub.prompt_tokens, sub.output_tokens)
        ref50 = {t: q.p50 for t, q in self._predict(ref, tuple(targets), full=False).items()}
        scale = {"energy_per_token_j": energy[rows], "tokens_per_s": 1.0 / speed[rows]}
        for t in targets:
            bound = ref50[t] * scale[t]
            ok = np.isfinite(bound)
            q = out[t]
            if t == "energy_per_token_j":
                hi = np.array(q.p90, dtype=np.float64)
                hi[rows[ok]] = np.fmax(hi[rows[ok]], bound[ok])
                out[t] = Quantiles(q.p10, q.p50, hi)
            else:
                lo = np.array(q.p10, dtype=np.float64)
                lo[rows[ok]] = np.fmin(lo[rows[ok]], bound[ok])
                out[t] = Quantiles(lo, q.p50, q.p90)

    def _offset(self, t: str, cands: Candidates):
        """The conformal log offset of each row: `conformal_log_offset`, or on a card outside the target's
        training cards `conformal_log_offset_unseen_card` (every held-out card weighted equally)."""
        if t not in self.unseen_offsets:
            return self.offsets[t]
        ids = cands.catalog.gpus.ids()
        seen = np.array([g in self.trained_gpus[t] for g in ids], dtype=bool)
        return np.where(seen[cands.gpu_idx], self.offsets[t], self.unseen_offsets[t])

    def _accuracy(self, cands: Candidates, full: bool) -> Quantiles:
        """Learned accuracy change: per (quant, model) pair the mean over the paper's tasks of the per-task
        predictions (p10/p90 widened by the absolute conformal offset); unquantized dtypes 0."""
        from recommender.costmodel import accuracy as AC  # only when an artifact serves it

        cat = cands.catalog
        nm = len(cat.models)
        code = cands.quant_idx.astype(np.int64) * nm + cands.model_idx
        uniq, inv = np.unique(code, return_inverse=True)
        pairs = [(int(c // nm), int(c % nm)) for c in uniq]
        X = AC.candidate_matrix(cat, pairs, self.meta["targets"]["accuracy_delta"].get("paper_task_n_shot", {}))
        k = len(AC.PAPER_TASKS)
        models, off = self.boosters["accuracy_delta"], self.offsets["accuracy_delta"]
        q50 = models["p50"].predict(X).reshape(-1, k)
        p50 = q50.mean(axis=1)
        if full:
            lo = np.minimum(models["p10"].predict(X).reshape(-1, k) - off, q50).mean(axis=1)
            hi = np.maximum(models["p90"].predict(X).reshape(-1, k) + off, q50).mean(axis=1)
        else:
            lo = hi = np.full(len(pairs), np.nan)
        unq = np.array([cat.quants.rows[q].id in ("fp32", "fp16", "bf16") for q, _ in pairs], dtype=bool)
        for arr in (lo, p50, hi):
            arr[unq] = 0.0
        return Quantiles(lo[inv], p50[inv], hi[inv])

    def stale_catalog_files(self, catalog) -> list[str]:
        """The catalogue files the features read (features.FEATURE_CATALOG_FILES) whose content differs from
        the files this artifact was trained on, a deleted one included; [] when the artifact or the catalogue
        does not record them."""
        trained = self.meta.get("catalog_files") or {}
        if not trained or getattr(catalog, "source_dir", None) is None:
            return []
        now = catalog_file_hashes(catalog)
        names = set(trained) | set(FEATURE_CATALOG_FILES)
        return sorted(name for name in names if trained.get(name) != now.get(name))


def _artifact_key(folder: Path) -> tuple:
    st = (folder / MANIFEST).stat()
    return (str(folder.resolve()), st.st_mtime_ns, st.st_size)


_LOADED: dict[tuple, LearnedCostModel] = {}


def load_default(model_dir=None):
    """The learned model when `model_dir` (default: the shipped models/) holds an artifact, else analytic.

    An artifact that is present but fails verification raises ArtifactError (no silent fallback). An
    explicit `model_dir` that does not exist is a UserError.
    """
    if model_dir is None:
        from recommender.paths import models_root

        try:
            folder = models_root()
        except FileNotFoundError:
            return AnalyticCostModel()
    else:
        folder = Path(model_dir)
        if not folder.is_dir():
            raise UserError(f"model directory {folder} does not exist; train one with "
                            f"`train-cost-model --out {folder}`")
    if not (folder / MANIFEST).exists() and not (folder / METADATA).exists():
        return AnalyticCostModel()
    if not (folder / MANIFEST).exists():
        raise ArtifactError(f"cost-model artifact {folder} is unusable: {MANIFEST} is missing; {_RETRAIN}")
    key = _artifact_key(folder)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = LearnedCostModel(folder)
    return _LOADED[key]


# ---- measured cells -------------------------------------------------------------------------------------
#: record field -> target (memory: NVML peak in GB of 1e9 bytes -> GiB, the recommender's unit)
_MEASURED_FIELDS = {"decode_energy_per_token_j": "energy_per_token_j", "tokens_per_s": "tokens_per_s",
                    "ttft_ms": "ttft_ms", "prefill_energy_j": "prefill_energy_j", "peak_mem_nvml_gb": "memory_gb"}
_MEASURED_TARGETS = tuple(_MEASURED_FIELDS.values())
#: The record fields that the measured-value and measured-failure indexes read (`_cell_key`, `is_simulated`,
#: `_build_index`, `_failure_index`): `_parsed` keeps only these. Holding every record whole (~90 fields)
#: cost the `recommend` cold start ~15 ms (allocation, garbage collection, interpreter teardown).
_RECORD_FIELDS = ("status", "measurement_scope", "source", "gpu_id", "gpu_name", "gpu_uuid", "model", "quant",
                  "engine", "batch_size", "prompt_tokens", "output_tokens", "is_stable", "other_gpu_processes",
                  "error", "created_at", "engine_params", *_MEASURED_FIELDS)
_INDEX_CACHE: dict[tuple, dict] = {}
#: A measured cell's p10/p90 are at least its median x exp(-/+ band), band = the 80th percentile of
#: |log(value on one GPU unit / value on another)| over the served cells measured on two or more units
#: (`reproducibility_band`): where a measurement on another machine of the card lands 80 % of the time.
#: Fewer than this many such pairs for a target: no band (min/max of the records only).
MIN_REPRODUCIBILITY_PAIRS = 10


#: Sub-folders of a measurements folder that hold no usable records (datasets/measurements/README.md).
NOT_RECORDS = ("rejected", "raw")
#: `measurement_scope` of records whose energy comes from the fake meter (measure/runner.py).
SIMULATED_SCOPE = "simulated"


def measurement_files_in(folder: Path) -> list[Path]:
    """Record files of a measurements folder: its *.jsonl and those of its per-card sub-folders
    (datasets/measurements/h100/campaign.jsonl), not rejected/ or raw/."""
    folder = Path(folder)
    return sorted(folder.glob("*.jsonl")) + sorted(
        p for p in folder.glob("*/*.jsonl") if p.parent.name not in NOT_RECORDS)


def is_simulated(r: dict) -> bool:
    """A record whose energy was simulated (fake meter): never served or trained on from the shipped data."""
    return r.get("measurement_scope") == SIMULATED_SCOPE or str(r.get("source") or "").startswith("simulated")


def _measurement_files(dirs) -> list[Path]:
    files = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            files.append(d)
        elif d.is_dir():
            files += measurement_files_in(d)
    return files


def _arch_id(catalog, model_id: str) -> str:
    m = catalog.models.find(model_id)
    if m is None:
        return f"?{model_id}"
    if m.architecture_of and catalog.models.find(m.architecture_of) is not None:
        return catalog.models.find(m.architecture_of).id
    return m.id


def _json_records(files: list[Path]):
    """(file, record dict with the `_RECORD_FIELDS` it has) for every parseable line of the JSONL files; a torn
    last line (measure/store.py) or a bad line is skipped here (train-cost-model reports those). Each file is
    parsed once per process (and again only when it changes): the measured-values and the measured-failures
    indexes share the parse."""
    for path in files:
        for r in _parsed(str(path), *_stamp(path)):
            yield path, r


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=32)
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[dict, ...]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict):
                out.append({k: r[k] for k in _RECORD_FIELDS if k in r})
    return tuple(out)


def _cell_key(catalog, r: dict) -> tuple | None:
    """(gpu id, architecture id, quant id, engine id, batch, prompt, output) of a record, or None when a name
    is not in the catalogue or a size is missing."""
    gpu = catalog.record_gpu(r)
    quant = catalog.quants.find(str(r.get("quant")))
    engine = catalog.record_engine(str(r.get("engine")), r.get("engine_params"))
    if gpu is None or quant is None or engine is None or catalog.models.find(str(r.get("model"))) is None:
        return None
    try:
        return (gpu.id, _arch_id(catalog, str(r["model"])), quant.id, engine.id, float(r["batch_size"]),
                float(r["prompt_tokens"]), float(r["output_tokens"]))
    except (KeyError, TypeError, ValueError):
        return None


def _build_index(catalog, files: list[Path], simulated_ok=frozenset()) -> dict:
    """(gpu id, architecture id, quant id, engine id, batch, prompt, output) -> {target: (min, median, max)}
    over the cell's records (targets no record measured are left out).

    Simulated records (fake meter) count only from the files in `simulated_ok` (named explicitly). A cell's
    values come from its stable records (`is_stable`) where it has any, else from its other ok records
    (an unstable measurement - repetitions more than 5 % apart, or a throttled window - is still closer
    than a prediction; most of our H100 cells are unstable by that test)."""
    gib = float(2**30)
    both: dict[tuple, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
    by_unit: dict[tuple, list[tuple[str, dict[str, float]]]] = {}  # cell -> (GPU unit, values) per record
    for path, r in _json_records(files):
        if r.get("status") != "ok" or (is_simulated(r) and path not in simulated_ok):
            continue
        key = _cell_key(catalog, r)
        if key is None:
            continue
        pair = both.setdefault(key, ({t: [] for t in _MEASURED_TARGETS}, {t: [] for t in _MEASURED_TARGETS}))
        cell = pair[0] if r.get("is_stable") is True else pair[1]
        values = {}
        for fld, t in _MEASURED_FIELDS.items():
            v = r.get(fld)
            if t == "memory_gb" and r.get("other_gpu_processes"):
                v = None
            if isinstance(v, int | float) and math.isfinite(v) and v > 0:
                values[t] = float(v) * (1e9 / gib if t == "memory_gb" else 1.0)
                cell[t].append(values[t])
        if r.get("gpu_uuid"):
            by_unit.setdefault(key, []).append((str(r["gpu_uuid"]), values))
    band = reproducibility_band(by_unit.values())
    index: dict[tuple, dict[str, tuple[float, float, float]]] = {}
    for key, (stable, other) in both.items():
        use = stable if any(stable.values()) else other
        index[key] = {}
        for t, vs in use.items():
            if vs:
                med, q = float(statistics.median(vs)), band.get(t, 0.0)
                index[key][t] = (min(min(vs), med * math.exp(-q)), med, max(max(vs), med * math.exp(q)))
    return index


def reproducibility_band(cells) -> dict[str, float]:
    """{target: 80th percentile of |log(a / b)|} over every pair of records of one cell on two different GPU
    units (`cells`: per cell, (gpu unit, {target: value}) per record); targets with fewer than
    MIN_REPRODUCIBILITY_PAIRS pairs are left out. For two draws with the same spread, this is the half-width
    of the 80 % interval of a new unit's value around one measured value."""
    logs: dict[str, list[float]] = {}
    for recs in cells:
        for i, (u, a) in enumerate(recs):
            for w, b in recs[i + 1:]:
                if u == w:
                    continue
                for t in a.keys() & b.keys():
                    logs.setdefault(t, []).append(abs(math.log(a[t] / b[t])))
    return {t: float(np.percentile(v, 80)) for t, v in logs.items() if len(v) >= MIN_REPRODUCIBILITY_PAIRS}


def _index_for(catalog, dirs, explicit_dirs=()) -> dict:
    shipped, explicit = _measurement_files(dirs), _measurement_files(explicit_dirs)
    files = list(dict.fromkeys(shipped + explicit))
    simulated_ok = frozenset(explicit)
    key = (id(catalog), len(catalog.models), len(catalog.gpus), tuple(sorted(map(str, simulated_ok))),
           tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    if key not in _INDEX_CACHE:
        if len(_INDEX_CACHE) > 8:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = _build_index(catalog, files, simulated_ok)
    return _INDEX_CACHE[key]


def shipped_measurement_dirs() -> list[Path]:
    """datasets/measurements (simulated records there are never served)."""
    from recommender.paths import data_root

    with contextlib.suppress(FileNotFoundError):
        return [data_root() / "measurements"]
    return []


def env_measurement_dirs() -> list[Path]:
    """The folders or files in RECOMMENDER_MEASUREMENTS (os.pathsep-separated): named by the user, so their
    simulated records are served too (the end-to-end test's fake-meter cells)."""
    extra = os.environ.get("RECOMMENDER_MEASUREMENTS", "")
    return [Path(p) for p in extra.split(os.pathsep) if p]


def default_measurement_dirs() -> list[Path]:
    """datasets/measurements plus the folders in RECOMMENDER_MEASUREMENTS (os.pathsep-separated)."""
    return shipped_measurement_dirs() + env_measurement_dirs()


def measured_lookup(cands: Candidates, dirs=None, extra_dirs=()) -> tuple[np.ndarray, dict[str, Quantiles]]:
    """(mask of measured rows, {target: Quantiles}) from our records.

    A row is measured when a record exists for its GPU, model architecture (the model or its
    `architecture_of`: energy and speed depend on shapes, measure/ runs random weights), quant, engine,
    batch, prompt and output tokens. p50 = median over the matching records, p10/p90 = their min/max, at
    least p50 x exp(-/+ the reproducibility band: `reproducibility_band`, how far the same cell measured on
    another GPU unit lands); NaN for a target no matching record measured. Accuracy is not served here (random weights).
    Records of the fake meter (`measurement_scope: simulated`) are served only from folders named
    explicitly (`dirs`, `extra_dirs`, RECOMMENDER_MEASUREMENTS), never from datasets/measurements.
    """
    cat = cands.catalog
    if dirs is None:
        index = _index_for(cat, shipped_measurement_dirs(), env_measurement_dirs() + list(extra_dirs))
    else:
        index = _index_for(cat, [], list(dirs) + list(extra_dirs))
    n = len(cands)
    mask = np.zeros(n, dtype=bool)
    vals = {t: np.full((3, n), np.nan) for t in _MEASURED_TARGETS}
    if index and n:
        gpu_ids, quant_ids, eng_ids = cat.gpus.ids(), cat.quants.ids(), cat.engines.ids()
        arch = np.array([_arch_id(cat, m) for m in cat.models.ids()], dtype=object)
        arch_code = {a: i for i, a in enumerate(sorted(set(arch)))}
        arch_idx = np.array([arch_code[a] for a in arch], dtype=np.int64)
        na, nq, ne = len(arch_code), len(quant_ids), len(eng_ids)
        gpos = {g: i for i, g in enumerate(gpu_ids)}
        qpos = {q: i for i, q in enumerate(quant_ids)}
        epos = {e: i for i, e in enumerate(eng_ids)}
        cells: dict[tuple, dict[str, tuple[float, float, float]]] = {}
        for key, st in index.items():
            g, a, q, e = key[:4]
            if a in arch_code:
                cells[(((gpos[g] * na + arch_code[a]) * nq + qpos[q]) * ne + epos[e], *key[4:])] = st
        combos = np.fromiter({k[0] for k in cells}, dtype=np.int64)
        code = ((cands.gpu_idx.astype(np.int64) * na + arch_idx[cands.model_idx]) * nq + cands.quant_idx) * ne \
            + cands.engine_idx
        hit = np.flatnonzero(np.isin(code, combos))
        b, p, o = cands.batch_size, cands.prompt_tokens, cands.output_tokens
        for i in hit.tolist():
            st = cells.get((int(code[i]), b[i], p[i], o[i]))
            if st is not None:
                mask[i] = True
                for t, v in st.items():
                    vals[t][:, i] = v
    return mask, {t: Quantiles(v[0], v[1], v[2]) for t, v in vals.items()}


# ---- measured failures ----------------------------------------------------------------------------------
_FAIL_CACHE: dict[tuple, dict] = {}


def _failure_index(catalog, files: list[Path]) -> dict[tuple, str]:
    """Cell key (as in `_build_index`) -> reason, for cells whose every measurement failed."""
    key = (id(catalog), tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    if key in _FAIL_CACHE:
        return _FAIL_CACHE[key]
    failed: dict[tuple, str] = {}
    ok: set[tuple] = set()
    for _, r in _json_records(files):
        if r.get("status") not in ("ok", "failed") or is_simulated(r):
            continue
        k = _cell_key(catalog, r)
        if k is None:
            continue
        if r["status"] == "ok":
            ok.add(k)
        else:
            err = " ".join(str(r.get("error") or "no reason recorded").split())[:120]
            failed[k] = f"failed when measured on {r.get('gpu_name') or k[0]} ({r.get('created_at')}): {err}"
    out = {k: v for k, v in failed.items() if k not in ok}
    if len(_FAIL_CACHE) > 8:
        _FAIL_CACHE.clear()
    _FAIL_CACHE[key] = out
    return out


def measured_failures(cands: Candidates, dirs=None) -> dict[int, str]:
    """Rows whose exact cell (GPU, architecture, quant, engine, batch, prompt, output) failed every time we
    measured it (e.g. an unsupported kernel shape, an OOM), with the recorded reason."""
    cat = cands.catalog
    files = _measurement_files(shipped_measurement_dirs() if dirs is None else dirs)
    fails = _failure_index(cat, files) if files else {}
    if not fails or not len(cands):
        return {}
    arch = np.array([_arch_id(cat, m) for m in cat.models.ids()], dtype=object)[cands.model_idx]
    out: dict[int, str] = {}
    for (g, a, q, e, b, p, o), reason in fails.items():
        m = ((cands.gpu_idx == cat.gpus.index[g]) & (cands.quant_idx == cat.quants.index[q])
             & (cands.engine_idx == cat.engines.index[e]) & (cands.batch_size == b)
             & (cands.prompt_tokens == p) & (cands.output_tokens == o))
        for i in np.flatnonzero(m):
            if arch[i] == a:
                out[int(i)] = reason
    return out
