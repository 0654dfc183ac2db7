"""`train-cost-model`: fit LightGBM corrections to the analytic model and write the artifact atomically.

    train-cost-model                                  # datasets/measurements/*.jsonl + datasets/public -> models/
    train-cost-model --measurements run.jsonl --out /tmp/m --no-public --no-cv

What is learned: for each multiplicative target (decode J/token, decode tokens/s, TTFT, prefill energy,
peak memory) three LightGBM quantile regressions (alpha 0.1, 0.5, 0.9; scikit-learn `LGBMRegressor`)
of y = log(measured / analytic), on the physics features of `features.py`. The analytic baseline of a row
is scope-aware: public rows time and meter prefill + decode together, so their baseline is the analytic
end-to-end value (`analytic.Estimate.end_to_end`); ours (decode only) use the decode value. Predicting
then uses our scope (`gpu-counter`): p50 = analytic x exp(q50).

Intervals: the quantile models' p10/p90, widened (or narrowed) by a split-conformal offset in log space:
the 80 % conformal quantile of max(q10 - y, y - q90) over the leave-one-GPU-out out-of-fold predictions
(conformalized quantile regression, Romano et al. 2019, with cross-validation residuals). Reported
coverage is honest: in every CV scheme a held-out group's offset comes from the other groups' residuals.
It is also reported per engine (`coverage_by_engine`), beside what an offset per engine would give
(group-conditional or Mondrian conformal, `conformal_offsets_by_group`; not served: tried in s31, it lowered
the leave-one-GPU-out coverage of J/token, tokens/s and TTFT, `docs/experiments/engine-conformal-s31.md`).
On a card outside a target's training cards `recommend` widens by `conformal_log_offset_unseen_card`
instead (`unseen_card_offset`): the largest of the pooled offset, the same residuals with every held-out card
weighted equally (`conformal_offset_by_group`), and the offset of the cards taken as the exchangeable units
(`conformal_offset_between_groups`: each card's own 80 % offset, then the split-conformal order statistic
over cards), so neither the card with the most rows nor the rows of the cards seen sets a new card's interval.
Both served offsets are the median over GATE_SEEDS seeds' cross-validations (`seed_median_offsets`, since s32):
one seed's LightGBM column sample moved them by as much as a new card's records did.

Accuracy change (`train_accuracy`): LightGBM p10/p50/p90 of the cited quant_accuracy.csv deltas (absolute)
on quant / model / task features (`accuracy.py`), validated leave-one-model-out and on random folds against
the analytic cited mean; served only when better than it on leave-one-model-out, else analytic. Likewise a
measured target is served learned only when its median APE on the calibration split, averaged over GATE_SEEDS
seeds (`gate_median_ape`; metadata.json `learned_or_analytic`), is no worse than the analytic model's. Targets with fewer than MIN_ROWS rows stay analytic too, and so does peak memory whatever its
figures (`SERVED_ANALYTIC`: the fit check uses the analytic estimate); metadata.json records the reason. The conformal offset
is calibrated on leave-one-GPU-out residuals; a target measured on one GPU group only (our H100: peak
memory, prefill energy) falls back to leave-one-architecture-out, then to random folds (`calibration_scheme`).

Validation (metadata.json `validation`, MODEL_CARD.md): leave-one-GPU-out (GPU ids with identical
silicon - bandwidth, memory, fp16 tensor rate - form one group), leave-one-architecture-out (catalogue
ids with the same shape form one group: fine-tunes share it) and random 5-fold over measured cells (a
cell measured on several cards stays in one fold);
median and p90 absolute percentage error of p50, the same for the analytic model alone, coverage of
p10-p90, and the Spearman correlation of the quant-method ranking within each (card, model, batch,
workload, engine, scope) group with at least two methods. Leave-one-GPU-out is also split by held-out card
(`by_held_out`), and within a card by whether the held-out cell was measured on a training card ("twin").

Our records are read through `measure.record.Record.from_dict`: a file with any malformed line is
rejected whole (every bad line listed), nothing of it is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recommender.costmodel.features import FEATURE_CATALOG_FILES, catalog_file_hashes  # noqa: F401 (re-exported)
from recommender.errors import UserError

ALPHA = 0.2  # p10-p90 = 80 % interval
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
MIN_ROWS = 20
FORMAT_VERSION = 1
DEFAULT_SEED = 20261126

#: target -> (column of our records, column of the public rows, baseline depends on scope)
TARGETS = {
    "energy_per_token_j": ("decode_energy_per_token_j", "energy_per_token_j", True),
    "tokens_per_s": ("tokens_per_s", "tokens_per_s", True),
    "ttft_ms": ("ttft_ms", "ttft_ms", False),
    "prefill_energy_j": ("prefill_energy_j", None, False),
    "memory_gb": ("memory_gb", None, False),
}
#: how many seeds (the training seed and the next ones) the learned-or-analytic decision averages the learned
#: model's calibration-split median APE over: one seed's LightGBM column sample moves it by up to two points
#: (energy_per_token_j leave-one-GPU-out 16.2-18.3 % over eight seeds in s29), as much as the margin it decides on
GATE_SEEDS = 5
#: headline targets of the validation report
HEADLINE = ("energy_per_token_j", "tokens_per_s")
#: targets validated but always served analytic, with why: `recommend` decides whether a candidate fits from
#: `recommender.memory`'s analytic estimate (its ranking pass predicts no memory), so a learned peak memory
#: could show more GB than the card has on a candidate marked as fitting
SERVED_ANALYTIC = {
    "memory_gb": "the memory fit check uses the analytic estimate (recommender/memory.py), so the memory shown "
                 "is that estimate too",
}
#: LightGBM settings (scikit-learn API names); deterministic given the seed and thread count.
LGBM_PARAMS = {
    "n_estimators": 50,
    "learning_rate": 0.15,
    "num_leaves": 15,
    "max_depth": 5,
    "min_child_samples": 8,
    "subsample": 1.0,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "n_jobs": 2,
    "verbose": -1,
}
#: Settings replacing LGBM_PARAMS for the interval boosters: half the trees at twice the rate. The p10/p90
#: are widened by a conformal offset anyway, and 15 boosters of 50 trees took 112 ms for 10,000 candidates
#: on the 2-core CI machine (budget 100 ms; benchmarks/bench_predict.py).
QUANTILE_PARAMS = {"p10": {"n_estimators": 25, "learning_rate": 0.3}, "p90": {"n_estimators": 25, "learning_rate": 0.3}}
SCHEMES = ("logo", "lomo", "random")
SCHEME_NAMES = {"logo": "leave-one-GPU-out", "lomo": "leave-one-architecture-out", "random": "random 5-fold (cells)"}


class MeasurementFileError(UserError):
    """A measurements file with malformed records (rejected whole)."""


# ---- reading data --------------------------------------------------------------------------------
def read_records(path: Path) -> tuple[list, int]:
    """All records of one JSONL file, validated; raises MeasurementFileError listing every bad line.

    An incomplete last line (no newline, not JSON) is what a killed writer leaves (measure/store.py): it is
    ignored and counted, not an error.
    """
    from measure.record import Record, SchemaError

    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = 0
    if lines and lines[-1].strip():
        try:
            json.loads(lines[-1])
        except ValueError:
            lines, torn = lines[:-1], 1
    records, errors = [], []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            records.append(Record.from_dict(data))
        except (ValueError, TypeError, SchemaError) as exc:
            errors.append(f"line {n}: {exc}")
    if errors:
        shown = "; ".join(errors[:10]) + (f"; ... {len(errors) - 10} more" if len(errors) > 10 else "")
        raise MeasurementFileError(
            f"{path}: {len(errors)} malformed record(s), file rejected (nothing of it was used): {shown}")
    return records, torn


def measurement_files(extra: list[Path] | None = None, include_default: bool = True) -> list[Path]:
    """datasets/measurements' record files (its *.jsonl and <card>/*.jsonl, not rejected/ or raw/) and the
    extra files or folders."""
    from recommender.costmodel.learned import measurement_files_in
    from recommender.paths import data_root

    files: list[Path] = []
    if include_default:
        folder = data_root() / "measurements"
        if folder.is_dir():
            files += measurement_files_in(folder)
    for p in extra or []:
        p = Path(p)
        if p.is_dir():
            files += measurement_files_in(p)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"measurements file {p} does not exist")
    seen, out = set(), []
    for p in files:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class TrainingData:
    frame: object  # pandas.DataFrame, one row per measurement
    files: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def record_rows(records: list, catalog, data_file: str, allow_simulated: bool = False
                ) -> tuple[list[dict], dict[str, int]]:
    """Our records -> training rows (record field names); skipped rows counted by reason.

    Records of the fake meter (`measurement_scope: simulated`) are skipped unless `allow_simulated` (files
    named with --measurements): they are never trained on from datasets/measurements. When allowed they
    stand for our scope (the fake meter mimics the NVML counter) and are marked `simulated` in the row.
    """
    from recommender.costmodel.learned import SIMULATED_SCOPE
    from recommender.memory import GIB

    rows, skipped = [], {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    for r in records:
        if r.status != "ok":
            skip(f"status {r.status}")
            continue
        simulated = r.measurement_scope == SIMULATED_SCOPE or (r.source or "").startswith("simulated")
        if simulated and not allow_simulated:
            skip("simulated (fake meter; only used from files named with --measurements)")
            continue
        gpu = catalog.gpus.find(r.gpu_id) if r.gpu_id else None
        gpu = gpu or (catalog.gpus.find(r.gpu_name) if r.gpu_name else None)
        model = catalog.models.find(r.model)
        if gpu is None:
            skip("GPU not in the catalogue")
            continue
        if model is None:
            skip("model not in the catalogue")
            continue
        engine = catalog.record_engine(r.engine, r.engine_params)
        if catalog.quants.find(r.quant) is None or engine is None:
            skip("quant or engine not in the catalogue")
            continue
        mem = r.peak_mem_nvml_gb if not r.other_gpu_processes else None
        rows.append({
            "row_id": f"{data_file}:{r.record_id or r.cell_hash}", "origin": "ours", "data_file": data_file,
            "gpu_id": gpu.id, "model": model.id, "quant": catalog.quants.find(r.quant).id,
            "engine": engine.id, "batch_size": float(r.batch_size),
            "prompt_tokens": float(r.prompt_tokens), "output_tokens": float(r.output_tokens), "kv_cache_bits": np.nan,
            "scope_id": "gpu-counter", "decode_energy_per_token_j": r.decode_energy_per_token_j,
            "tokens_per_s": r.tokens_per_s, "ttft_ms": r.ttft_ms, "prefill_energy_j": r.prefill_energy_j,
            # records count GB of 1e9 bytes (measure/runner.py); the recommender counts GiB (recommender/memory.py)
            "memory_gb": None if mem is None else mem * 1e9 / GIB,
            "is_stable": r.is_stable,
            "slow_path_suspected": r.slow_path_suspected,
            "simulated": simulated,
        })
    return rows, skipped


def training_catalog(catalog=None):
    """The catalogue training rows resolve against: `catalog` (default: a fresh load of the shipped one)
    extended with the public data's models (public_models.csv)."""
    from recommender.catalog import load_catalog_from
    from recommender.paths import catalog_dir, data_root
    from recommender.public_data import extend_catalog

    catalog = catalog or load_catalog_from(catalog_dir())
    extend_catalog(catalog, data_root() / "public")
    return catalog


def load_training_data(measurements: list[Path] | None = None, use_public: bool = True,
                       default_measurements: bool = True, catalog=None) -> tuple[TrainingData, object]:
    """The training frame and the catalogue it resolves against (`training_catalog`)."""
    import pandas as pd

    from recommender.paths import data_root
    from recommender.public_data import EXCLUDED, OUTPUTS

    catalog = training_catalog(catalog)
    public_dir = data_root() / "public"
    rows: list[dict] = []
    files: list[dict] = []
    skipped: dict[str, int] = {}
    shipped = {p.resolve() for p in measurement_files(None, default_measurements)}
    for path in measurement_files(measurements, default_measurements):
        records, torn = read_records(path)
        got, sk = record_rows(records, catalog, path.name, allow_simulated=path.resolve() not in shipped)
        rows += got
        for k, v in sk.items():
            skipped[f"ours: {k}"] = skipped.get(f"ours: {k}", 0) + v
        entry = {"path": _display(path), "sha256": sha256_file(path), "records": len(records),
                 "rows": len(got), "torn_last_line": torn}
        n_sim = sum(1 for r in got if r["simulated"])
        if n_sim:
            entry["simulated_rows"] = n_sim
        files.append(entry)
    if use_public:
        for name in OUTPUTS:
            path = public_dir / name
            if not path.exists():
                continue
            df = pd.read_csv(path, dtype={"row_id": str})
            n0 = len(df)
            df = df[df["excluded_reason"].isna()]
            ok = df.apply(lambda r: all(_resolves(catalog, k, r[k]) for k in ("gpu_id", "model", "quant", "engine")),
                          axis=1) if len(df) else df.index.to_series(dtype=bool)
            if (~ok).any():
                skipped[f"{name}: id not in the catalogue"] = int((~ok).sum())
            df = df[ok]
            for r in df.to_dict("records"):
                r["origin"] = f"public:{r['dataset']}"
                r["data_file"] = name
                r["memory_gb"] = np.nan
                r["prefill_energy_j"] = np.nan
                rows.append(r)
            files.append({"path": _display(path), "sha256": sha256_file(path), "records": n0, "rows": int(len(df))})
        exc = public_dir / EXCLUDED
        if exc.exists():
            files.append({"path": _display(exc), "sha256": sha256_file(exc), "records": None, "rows": 0})
        pm = public_dir / "public_models.csv"
        if pm.exists():
            files.append({"path": _display(pm), "sha256": sha256_file(pm), "records": None, "rows": 0})
    cols = ["row_id", "origin", "data_file", "gpu_id", "model", "quant", "engine", "batch_size", "prompt_tokens",
            "output_tokens", "kv_cache_bits", "scope_id", "decode_energy_per_token_j", "energy_per_token_j",
            "tokens_per_s", "ttft_ms", "prefill_energy_j", "memory_gb", "slow_path_suspected"]
    frame = pd.DataFrame(rows, columns=cols)
    for c in cols[7:]:
        if c not in ("scope_id", "slow_path_suspected"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    frame = frame.reset_index(drop=True)
    return TrainingData(frame, files, skipped), catalog


def _resolves(catalog, kind: str, value) -> bool:
    if not isinstance(value, str) or not value:
        return False
    table = {"gpu_id": catalog.gpus, "model": catalog.models, "quant": catalog.quants, "engine": catalog.engines}[kind]
    return value in table.index


def _display(path: Path) -> str:
    from recommender.paths import data_root

    try:
        return path.resolve().relative_to(data_root().parent).as_posix()
    except ValueError:
        return path.name


# ---- design matrix ---------------------------------------------------------------------------------
@dataclass
class Design:
    X: np.ndarray
    base: dict[str, np.ndarray]  # analytic baseline per target (scope-aware)
    measured: dict[str, np.ndarray]
    gpu_group: np.ndarray
    arch_group: np.ndarray
    cell_group: np.ndarray
    rank_group: np.ndarray
    #: each row's cell without its card (model, engine, batch, workload, scope, KV bits, quant): the same cell
    #: measured on two cards are twins. Random folds keep twins together; leave-one-GPU-out figures are split
    #: by whether the held-out row's twin was in training.
    twin_group: np.ndarray
    #: (X, base) of every row with the catalogue constants fitted on measurements refitted without the rows
    #: not given, the held-out ones (`_fold_refit`: the engines' efficiency, overhead, power floor and slope, then
    #: method_overhead.csv); None when there is nothing to refit. Cross-validation calls it per fold with
    #: every row outside the held-out group, so held-out rows never inform the analytic baseline they are
    #: judged against.
    refit: Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]] | None = None
    #: each row's catalogue engine id: the groups of the per-engine conformal offsets
    #: (`conformal_offsets_by_group`); None: the pooled offset alone
    engine_group: np.ndarray | None = None


def _features_and_base(frame, catalog) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The feature matrix and the scope-aware analytic baseline per target of every row of `frame`."""
    from recommender.candidates import Candidates
    from recommender.costmodel import analytic
    from recommender.costmodel import features as F

    cands = Candidates.from_ids(catalog, frame["gpu_id"], frame["model"], frame["quant"], frame["engine"],
                                frame["batch_size"].to_numpy(float), frame["prompt_tokens"].to_numpy(float),
                                frame["output_tokens"].to_numpy(float))
    kv = frame["kv_cache_bits"].to_numpy(float)
    ph = F.physics(cands, kv)
    est = analytic.estimate(ph, cands)
    scopes = frame["scope_id"].to_numpy(object)
    X = F.build(cands, scope=scopes, kv_cache_bits=kv, phys=ph, est=est)
    pre = F._scope_flag(F.scope_array(scopes, len(cands)), "includes_prefill") > 0
    tps_e2e, ept_e2e = est.end_to_end()
    base = {
        "energy_per_token_j": np.where(pre, ept_e2e, est.energy_per_token_j),
        "tokens_per_s": np.where(pre, tps_e2e, est.tokens_per_s),
        "ttft_ms": est.ttft_ms, "prefill_energy_j": est.prefill_energy_j, "memory_gb": est.memory_gb,
    }
    return X, base


def _frame_keys(frame, catalog):
    """Each training row's silicon, architecture and twin keys (`engine_constants.RowKeys`)."""
    from recommender.costmodel import engine_constants as EC

    return EC.RowKeys.of(catalog, frame["gpu_id"], frame["model"], frame["quant"], frame["engine"],
                         frame["batch_size"].tolist(), frame["prompt_tokens"].tolist(),
                         frame["output_tokens"].tolist(), frame["scope_id"].tolist(), frame["kv_cache_bits"].tolist())


def _fold_refit(frame, catalog, measured_tps: np.ndarray, refit_engine_constants: bool = True,
                power_fallback: str = "catalogue", tool_rows=None, measured_ttft: np.ndarray | None = None,
                measured_prefill_j: np.ndarray | None = None):
    """`Design.refit`: given a fold's training rows (every row outside its held-out groups), refit the
    catalogue constants fitted on measurements without the held-out rows and rebuild X and the baseline.

    1. With `refit_engine_constants`, the engines' efficiency, per-step overhead, power floor and slope
       (`engine_constants.ToolRows.refit`: the tools' rows less those whose card silicon, architecture or
       cell without the card occurs among the held-out rows and not among the training rows);
    2. the methods' per-layer decode overheads, prefill time ratios, prefill energy ratios and decode busy shares
       (recommender/costmodel/method_overhead.py: `fit` on `measured_tps`, `fit_prefill` on `measured_ttft`,
       `fit_prefill_energy` on `measured_prefill_j`, defaults the frame's `ttft_ms` / `prefill_energy_j`,
       `fit_decode_busy_fraction` on the frame's decode J per output token x `measured_tps`) on our rows among the
       training rows, against the analytic step and prefill times of a catalogue holding those engine constants
       (and, for the energy ratio, the fold's time ratios; for the busy share, its decode overheads);
    3. the memory residual per method and engine (recommender/costmodel/memory_residual.py: `fit_frame` on our
       training rows with a measured peak), which moves the analytic memory baseline and nothing else.

    Folds with the same constants share one build. None when there is nothing to refit."""
    import copy

    from recommender.catalog import variant_method_rows
    from recommender.costmodel import engine_constants as EC
    from recommender.costmodel import memory_residual as MR
    from recommender.costmodel import method_overhead as MO

    tools = None
    if refit_engine_constants:
        tools = tool_rows if tool_rows is not None else EC.ToolRows(catalog)
        if not tools.overhead and not tools.power:
            tools = None
    if tools is None and not catalog.method_overhead and not catalog.memory_residual:
        return None
    keys = list(zip(frame["gpu_id"], frame["model"], frame["quant"], frame["engine"],
                    frame["batch_size"].tolist(), frame["prompt_tokens"].tolist(),
                    frame["output_tokens"].tolist(), strict=True))
    ours = frame["origin"].to_numpy(str) == "ours"
    batch = frame["batch_size"].to_numpy(float)
    if measured_ttft is None:
        measured_ttft = (frame["ttft_ms"].to_numpy(float) if "ttft_ms" in frame
                         else np.full(len(frame), np.nan))
    if measured_prefill_j is None:
        measured_prefill_j = (frame["prefill_energy_j"].to_numpy(float) if "prefill_energy_j" in frame
                              else np.full(len(frame), np.nan))
    layers = {r.id: r.num_layers for r in catalog.models}
    our_cells = list({keys[i] for i in np.flatnonzero(ours)})
    row_keys = _frame_keys(frame, catalog) if tools is not None else None
    constants: dict[bytes, tuple] = {}  # held-out mask -> (constants key, catalogue holding them)
    modelled: dict[tuple, dict] = {}
    modelled_pre: dict[tuple, dict] = {}
    modelled_energy: dict[tuple, dict] = {}
    modelled_power: dict[tuple, dict] = {}
    measured_decode_j = (frame["decode_energy_per_token_j"].to_numpy(float) if "decode_energy_per_token_j" in frame
                         else np.full(len(frame), np.nan))
    built: dict[tuple, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    # the memory components do not depend on the refitted constants: computed once, the residual refitted per fold
    memory_parts = (MR.frame_components_gb(frame, catalog) if catalog.memory_residual and "memory_gb" in frame
                    else None)

    def refit(train: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        ckey, cat = (), catalog
        if tools is not None:
            held = np.ones(len(frame), dtype=bool)
            held[train] = False
            mask = np.packbits(held).tobytes()
            if mask not in constants:
                fits = tools.refit(catalog, EC.HeldOut.of(row_keys, held), power_fallback)
                constants[mask] = (EC.constants_key(fits), EC.with_constants(catalog, fits))
            ckey, cat = constants[mask]
        mkey = ()
        if catalog.method_overhead:
            if ckey not in modelled:
                modelled[ckey] = MO.modelled_step_ms(cat, our_cells)
                modelled_pre[ckey] = MO.modelled_prefill_ms(cat, our_cells)
            sel = train[ours[train]]
            step = MO.step_times([keys[i] for i in sel], measured_tps[sel].tolist(), batch[sel].tolist())
            ttft = MO.prefill_times([keys[i] for i in sel], measured_ttft[sel].tolist())
            decode, prefill = MO.fit(step, layers.get, modelled[ckey]), MO.fit_prefill(ttft, modelled_pre[ckey])
            cat = copy.copy(cat)
            # as the catalogue completes method_overhead.csv: a variant without a row of its own takes its engine's
            cat.method_overhead = variant_method_rows(cat.engines, MO.merge(decode, prefill))
            tkey = (ckey, tuple((r["quant_id"], r["engine_id"], r["prefill_time_ratio"], r.get(MO.PREFILL_KNOTS_COLUMN))
                                for r in prefill))
            if tkey not in modelled_energy:  # the analytic prefill energy with this fold's time ratios
                modelled_energy[tkey] = MO.modelled_prefill_energy_j(cat, our_cells)
            energy = MO.median_per_cell([keys[i] for i in sel], measured_prefill_j[sel].tolist())
            pkey = (ckey, tuple((r["quant_id"], r["engine_id"], r["per_layer_overhead_ms"],
                                 r.get("per_layer_per_seq_ms")) for r in decode))
            if pkey not in modelled_power:  # the analytic decode power with this fold's method overheads
                modelled_power[pkey] = MO.modelled_decode_power_parts(cat, our_cells)
            power = MO.decode_powers([keys[i] for i in sel], measured_decode_j[sel].tolist(),
                                     measured_tps[sel].tolist())
            rows = variant_method_rows(cat.engines,
                                       MO.merge(decode, prefill, MO.fit_prefill_energy(energy, modelled_energy[tkey]),
                                                MO.fit_decode_busy_fraction(power, modelled_power[pkey])))
            mkey = tuple((r["quant_id"], r["engine_id"], r["per_layer_overhead_ms"], r.get("per_layer_per_seq_ms"),
                          r["prefill_time_ratio"], r.get(MO.PREFILL_KNOTS_COLUMN), r["prefill_energy_ratio"],
                          r.get(MO.PREFILL_ENERGY_KNOTS_COLUMN), r.get("decode_busy_fraction"))
                         for r in rows)
            cat.method_overhead = rows
        rkey = ()
        if memory_parts is not None:
            residual = MR.fit_frame(frame, cat, memory_parts, rows=train)
            cat = copy.copy(cat)
            cat.memory_residual = residual
            rkey = tuple((r["quant_id"], r["engine_id"], r["residual_gb"]) for r in residual)
        if (ckey, mkey, rkey) not in built:
            built[(ckey, mkey, rkey)] = _features_and_base(frame, cat)
        return built[(ckey, mkey, rkey)]

    refit.engine_constants = tools is not None
    refit.method_overhead = bool(catalog.method_overhead)
    return refit


def design(frame, catalog, refit_engine_constants: bool = True) -> Design:
    """The training design of `frame`; `refit_engine_constants`: whether cross-validation refits the engine
    constants per fold (`_fold_refit`; the method overheads always are)."""
    from recommender.costmodel import engine_constants as EC

    X, base = _features_and_base(frame, catalog)
    measured = {}
    for t, (ours, public, _) in TARGETS.items():
        v = frame[ours].to_numpy(float) if ours in frame else np.full(len(frame), np.nan)
        if public and public != ours:
            pub = frame["origin"].to_numpy(str) != "ours"
            v = np.where(pub, frame[public].to_numpy(float), v)
        measured[t] = v
    # GPU ids with identical silicon (bandwidth, memory, fp16 tensor rate) form one group, named by the
    # ids of it present in the data ("a100-pcie-40gb+a100-sxm-40gb"); models of one shape, one architecture
    silicon = EC.silicon(catalog)
    members: dict[tuple, set[str]] = {}
    for gid in frame["gpu_id"]:
        members.setdefault(silicon[gid], set()).add(gid)
    gpu_group = np.array(["+".join(sorted(members[silicon[x]])) for x in frame["gpu_id"]], dtype=object)
    m = catalog.models
    shape = EC.shape(catalog)
    arch_first: dict[tuple, str] = {}
    for mid in m.ids():
        arch_first.setdefault(shape[mid], mid)
    arch_group = np.array([arch_first[shape[x]] for x in frame["model"]], dtype=object)
    key_cols = ["gpu_id", "model", "engine", "batch_size", "prompt_tokens", "output_tokens", "scope_id", "kv_cache_bits"]
    cell = _row_keys(frame, key_cols + ["quant"])
    rank = _row_keys(frame, key_cols)
    twin = _row_keys(frame, key_cols[1:] + ["quant"])
    refit = _fold_refit(frame, catalog, measured["tokens_per_s"], refit_engine_constants,
                        measured_ttft=measured["ttft_ms"], measured_prefill_j=measured["prefill_energy_j"])
    return Design(X, base, measured, gpu_group, arch_group, cell, rank, twin, refit,
                  frame["engine"].to_numpy(object))


def _row_keys(frame, cols: list[str]) -> np.ndarray:
    return np.array(["|".join(map(str, t)) for t in zip(*(frame[c].tolist() for c in cols), strict=True)],
                    dtype=object)


# ---- fitting ---------------------------------------------------------------------------------------
def _regressor(alpha: float, seed: int, **override):
    from lightgbm import LGBMRegressor

    return LGBMRegressor(objective="quantile", alpha=alpha, random_state=seed, **{**LGBM_PARAMS, **override})


def fit_quantiles(X: np.ndarray, y: np.ndarray, seed: int, quantiles=QUANTILES, **override) -> dict:
    """One fitted LGBMRegressor per quantile name (`override`: LightGBM settings replacing LGBM_PARAMS')."""
    return {name: _regressor(a, seed, **{**QUANTILE_PARAMS.get(name, {}), **override}).fit(X, y)
            for name, a in quantiles.items()}


def _group_of(scheme: str, d: Design) -> np.ndarray:
    """Each row's group under a CV scheme: its GPU (logo), its architecture (lomo) or its cell whatever the
    card (random: the same cell measured on two cards is one group, so no fold is judged on a twin it
    trained on)."""
    return {"logo": d.gpu_group, "lomo": d.arch_group}.get(scheme, d.twin_group)


def _folds(scheme: str, d: Design, rows: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(train rows, test rows, held-out label) for a CV scheme, over the given row indices."""
    if scheme == "random":
        cells = _group_of(scheme, d)[rows]
        uniq = np.array(sorted(set(cells)), dtype=object)
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(uniq))
        fold_of = {c: int(i % 5) for i, c in zip(range(len(uniq)), uniq[perm], strict=True)}
        labels = np.array([f"fold{fold_of[c]}" for c in cells], dtype=object)
    else:
        labels = _group_of(scheme, d)[rows]
    out = []
    for lab in sorted(set(labels)):
        test = rows[labels == lab]
        train = rows[labels != lab]
        if len(train) >= MIN_ROWS // 2 and len(test):
            out.append((train, test, str(lab)))
    return out


def cross_validate(d: Design, target: str, rows: np.ndarray, scheme: str, seed: int,
                   quantiles=QUANTILES) -> dict[str, np.ndarray]:
    """Out-of-fold log-ratio predictions for `rows` against `d.base` (NaN where a row's group could not be
    held out), and `base`: each row's analytic baseline as its fold saw it (`d.refit`: the catalogue
    constants fitted on the rows outside the fold's held-out group; else `d.base`)."""
    n = len(d.measured[target])
    out = {name: np.full(n, np.nan) for name in quantiles}
    out["base"] = d.base[target].copy()
    fold = np.full(n, "", dtype=object)
    group = _group_of(scheme, d)
    for train, test, lab in _folds(scheme, d, rows, seed):
        # the catalogue constants are refitted on every row outside the held-out groups, whatever target it
        # measures (a record without this target still times the method), never on a held-out group's rows
        X, base = (d.X, d.base) if d.refit is None else d.refit(np.flatnonzero(~np.isin(group, group[test])))
        y = np.log(d.measured[target] / base[target])
        models = fit_quantiles(X[train], y[train], seed, quantiles)
        shift = np.log(base[target][test] / d.base[target][test])  # back to log(. / d.base)
        for name, m in models.items():
            out[name][test] = m.predict(X[test]) + shift
        out["base"][test] = base[target][test]
        fold[test] = lab
    out["fold"] = fold
    return out


def conformal_offset(scores: np.ndarray, alpha: float = ALPHA) -> float:
    """Split-conformal quantile of conformity scores: the ceil((n+1)(1-alpha))/n empirical quantile."""
    s = np.sort(scores[np.isfinite(scores)])
    if not len(s):
        return 0.0
    k = min(len(s), math.ceil((len(s) + 1) * (1 - alpha)))
    return float(s[k - 1])


#: an engine needs this many calibration rows for a conformal offset of its own (`conformal_offsets_by_group`)
MIN_ENGINE_ROWS = 50


def conformal_offsets_by_group(scores: np.ndarray, groups: np.ndarray, alpha: float = ALPHA,
                               min_rows: int = MIN_ENGINE_ROWS) -> dict[str, float]:
    """Group-conditional (Mondrian) split conformal: the offset of each group's own scores (`conformal_offset`)
    for every group with at least `min_rows` finite scores; the others are left out (they take the pooled
    offset, `row_offsets`). `evaluate` reports what it would give per engine (`coverage_by_engine`); not served
    (s31: the held-out cards' rows of an engine are not exchangeable with the other cards' rows of it, so on
    leave-one-GPU-out it lowered coverage overall, `docs/experiments/engine-conformal-s31.md`)."""
    ok = np.isfinite(scores)
    s, g = scores[ok], np.asarray(groups, dtype=object)[ok].astype(str)
    labels, counts = np.unique(g, return_counts=True)
    return {str(lab): conformal_offset(s[g == lab], alpha) for lab, n in zip(labels, counts, strict=True)
            if n >= min_rows}


def row_offsets(groups: np.ndarray, pooled: float, by_group: dict[str, float]) -> np.ndarray:
    """Each row's conformal log offset: its group's (`conformal_offsets_by_group`), else `pooled`."""
    return np.array([by_group.get(str(g), pooled) for g in groups], dtype=np.float64)


#: a group with fewer rows than this weighs in proportion to its rows in `conformal_offset_by_group` (a card
#: with 6 rows must not weigh as much as one with 500)
MIN_GROUP_ROWS = 30


def conformal_offset_by_group(scores: np.ndarray, groups: np.ndarray, alpha: float = ALPHA,
                              min_rows: int = MIN_GROUP_ROWS) -> float:
    """The weighted empirical (1 - alpha) quantile of conformity scores with every group weighted equally
    (each row 1 / max(its group's rows, min_rows)): the smallest offset that covers a (1 - alpha) share of
    the groups' mean coverage on these scores. Used for cards outside the training set, where the pooled
    offset is ruled by the cards with the most rows. With a handful of groups this is an empirical level,
    not a finite-sample conformal guarantee for a new card."""
    ok = np.isfinite(scores)
    s, g = scores[ok], np.asarray(groups)[ok]
    if not len(s):
        return 0.0
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    w = 1.0 / np.maximum(counts, min_rows)[inv]
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    return float(s[order][min(len(s) - 1, int(np.searchsorted(cum, 1 - alpha - 1e-12)))])


def conformal_offset_between_groups(scores: np.ndarray, groups: np.ndarray, alpha: float = ALPHA,
                                   min_rows: int = MIN_GROUP_ROWS) -> float:
    """Split conformal with the groups as the exchangeable units: each group of at least `min_rows` scores
    gets the offset it alone would need (`conformal_offset` of its scores), and of those K offsets the k-th
    smallest is returned, k = min(K, ceil((K + 1)(1 - alpha))): with five cards at alpha 0.2, the largest. If a
    new card is exchangeable with the training cards, the offset it needs is at most this one with probability
    at least k / (K + 1) (5/6 with five cards; below 1 - alpha with fewer than four). 0.0 without such a group."""
    ok = np.isfinite(scores)
    s, g = scores[ok], np.asarray(groups)[ok]
    per = [conformal_offset(s[g == lab], alpha) for lab in np.unique(g) if np.sum(g == lab) >= min_rows]
    return conformal_offset(np.array(per), alpha)  # the same order statistic, over the groups' offsets


def card_weighted_offset(scores: np.ndarray, cards: np.ndarray) -> float:
    """The card-weighted offset (`conformal_offset_by_group`), never below the pooled one (so no card loses
    coverage by it): what a card outside training was served until s26, still reported in `evaluate`."""
    return max(conformal_offset(scores), conformal_offset_by_group(scores, cards))


def unseen_card_offset(scores: np.ndarray, cards: np.ndarray) -> float:
    """The offset for a card outside training: the larger of `card_weighted_offset` and the between-cards one
    (`conformal_offset_between_groups`, since s26: with the card-weighted one alone the held-out cards' mean
    coverage stayed below 80 % for J/token, a V100 at 11 %). Served as `conformal_log_offset_unseen_card`, and
    judged per held-out card in `evaluate` from the other cards' scores."""
    return max(card_weighted_offset(scores, cards), conformal_offset_between_groups(scores, cards))


def _ordered(lo, mid, hi):
    """Crossing quantile ends clamped to the median (as `learned.LearnedCostModel` predicts): p50 is always
    the median model's own output, p10 <= p50 <= p90."""
    return np.minimum(lo, mid), mid, np.maximum(hi, mid)


def seed_runs(d: Design, target: str, rows: np.ndarray, scheme: str, seed: int, first: dict) -> list[dict]:
    """The out-of-fold predictions of `scheme` at `seed` (`first`, already computed) and at each of the next
    GATE_SEEDS - 1 seeds (`cross_validate`): what the learned-or-analytic decision averages its median APE over
    (`gate_median_ape`) and the served conformal offsets take the median of (`seed_median_offsets`), so that one
    seed's LightGBM column sample decides neither."""
    return [first, *(cross_validate(d, target, rows, scheme, s) for s in range(seed + 1, seed + GATE_SEEDS))]


def gate_median_ape(d: Design, target: str, rows: np.ndarray, runs: list[dict], first: float) -> list[float]:
    """The learned model's median APE (%) of each of `seed_runs`' out-of-fold predictions: `first`, the training
    seed's, already evaluated, then the other seeds'."""
    return [first, *(evaluate(d, target, rows, oof)[0]["median_ape_pct"] for oof in runs[1:])]


def seed_median_offsets(y: np.ndarray, runs: list[dict], rows: np.ndarray,
                        cards: np.ndarray | None) -> tuple[float, float, list[float], list[float]]:
    """The served conformal log offsets: the median over `seed_runs` of each run's pooled offset
    (`conformal_offset` of max(q10 - y, y - q90)) and of its unseen-card offset (`unseen_card_offset` over
    `cards`, each row's held-out card; None where the calibration split does not hold out cards: the pooled
    offset), and the per-run values. One seed's offset moved from retrain to retrain by as much as a new card's
    records: over ten seeds on s32's data, J/token's pooled offset spanned 0.162-0.207 and its unseen-card one
    0.327-0.463, TTFT's 0.042-0.094; the median of five cut their standard deviation 3-15 fold
    (`docs/experiments/offset-seeds-s32.md`)."""
    scores = [np.maximum(oof["p10"][rows] - y, y - oof["p90"][rows]) for oof in runs]
    pooled = [conformal_offset(s) for s in scores]
    unseen = pooled if cards is None else [unseen_card_offset(s, cards) for s in scores]
    return float(np.median(pooled)), float(np.median(unseen)), pooled, unseen


def evaluate(d: Design, target: str, rows: np.ndarray, oof: dict[str, np.ndarray],
             per_group: bool = False) -> tuple[dict, dict]:
    """Validation figures of one scheme + the calibrated predictions (original units) for the CSV.

    per_group: also the figures of each held-out group (`by_held_out`; used for leave-one-GPU-out, where a
    pooled median hides a card the model transfers badly to).
    """
    meas, base = d.measured[target][rows], d.base[target][rows]
    y = np.log(meas / base)
    q10, q50, q90 = (oof[k][rows] for k in ("p10", "p50", "p90"))
    folds = oof["fold"][rows]
    ok = np.isfinite(q50)
    score = np.maximum(q10 - y, y - q90)
    engines = d.engine_group[rows].astype(str) if d.engine_group is not None else None
    lo, hi = q10.copy(), q90.copy()
    lo_eng, hi_eng = q10.copy(), q90.copy()  # with an offset per engine (`conformal_offsets_by_group`), not served
    for lab in set(folds[ok]):  # each held-out group calibrated on the other groups' residuals only
        sel = folds == lab
        off = conformal_offset(score[ok & ~sel])
        lo[sel] -= off
        hi[sel] += off
        if engines is not None:
            off = row_offsets(engines[sel], off, conformal_offsets_by_group(score[ok & ~sel], engines[ok & ~sel]))
            lo_eng[sel] -= off
            hi_eng[sel] += off
    lo_eng, _, hi_eng = _ordered(lo_eng, q50, hi_eng)
    lo, mid, hi = _ordered(lo, q50, hi)
    p10, p50, p90 = base * np.exp(lo), base * np.exp(mid), base * np.exp(hi)
    ape = np.abs(p50 - meas) / meas * 100
    fold_base = oof["base"][rows] if "base" in oof else base  # the analytic model as each fold saw it
    ape_an = np.abs(fold_base - meas) / meas * 100
    raw_lo, _, raw_hi = _ordered(q10, q50, q90)
    inside = (meas >= p10) & (meas <= p90)
    fig = {
        "n": int(ok.sum()), "groups": len(set(folds[ok])),
        "median_ape_pct": _r(np.median(ape[ok])) if ok.any() else None,
        "p90_ape_pct": _r(np.percentile(ape[ok], 90)) if ok.any() else None,
        "analytic_median_ape_pct": _r(np.median(ape_an[ok])) if ok.any() else None,
        "analytic_p90_ape_pct": _r(np.percentile(ape_an[ok], 90)) if ok.any() else None,
        "coverage_p10_p90": _r(np.mean(inside[ok])) if ok.any() else None,
        "coverage_p10_p90_uncalibrated": _r(np.mean((y[ok] >= raw_lo[ok]) & (y[ok] <= raw_hi[ok]))) if ok.any() else None,
    }
    if engines is not None and ok.any():
        # the served intervals' coverage per engine, and with an offset per engine instead (not served)
        inside_eng = (y >= lo_eng) & (y <= hi_eng)
        fig["coverage_p10_p90_engine_offsets"] = _r(np.mean(inside_eng[ok]))
        fig["coverage_by_engine"] = {
            e: {"n": int(np.sum(g)), "coverage_p10_p90": _r(np.mean(inside[g])),
                "coverage_p10_p90_engine_offsets": _r(np.mean(inside_eng[g]))}
            for e in sorted(set(engines[ok])) if (g := ok & (engines == e)).any()}
    fig.update(rank_correlation(d, rows[ok], p50[ok], meas[ok], fold_base[ok]))
    if per_group:
        twins = d.twin_group[rows]
        fig["by_held_out"] = {}
        for lab in sorted(set(folds[ok])):
            g = ok & (folds == lab)
            # from the other groups' scores: the card-weighted offset (served for an unseen card until s26) and
            # the unseen-card offset `recommend` widens an unseen card's interval by (`unseen_card_offset`)
            others = score[ok & ~g], folds[ok & ~g]
            off_w, off_u = card_weighted_offset(*others), unseen_card_offset(*others)
            lo_w, _, hi_w = _ordered(q10[g] - off_w, q50[g], q90[g] + off_w)
            lo_u, _, hi_u = _ordered(q10[g] - off_u, q50[g], q90[g] + off_u)
            f = fig["by_held_out"][str(lab)] = {
                "n": int(g.sum()), "median_ape_pct": _r(np.median(ape[g])),
                "analytic_median_ape_pct": _r(np.median(ape_an[g])), "coverage_p10_p90": _r(np.mean(inside[g])),
                "coverage_p10_p90_card_weighted": _r(np.mean((y[g] >= lo_w) & (y[g] <= hi_w))),
                "coverage_p10_p90_unseen_card": _r(np.mean((y[g] >= lo_u) & (y[g] <= hi_u))),
                "unseen_card_log_offset": _r(off_u),
                **{k: v for k, v in rank_correlation(d, rows[g], p50[g], meas[g], fold_base[g]).items()
                   if k in ("rank_groups_3plus", "spearman_quant_rank_3plus")}}
            # rows whose cell was measured on a card the fold trained on, and the rest (rows of a never-held-out
            # group train every fold)
            seen = np.isin(twins, twins[folds != lab])
            for name, sel in (("with_twin", g & seen), ("without_twin", g & ~seen)):
                f[f"n_{name}"] = int(sel.sum())
                f[f"median_ape_pct_{name}"] = _r(np.median(ape[sel])) if sel.any() else None
                f[f"analytic_median_ape_pct_{name}"] = _r(np.median(ape_an[sel])) if sel.any() else None
        by = fig["by_held_out"].values()
        fig["coverage_mean_over_held_out"] = _r(np.mean([f["coverage_p10_p90"] for f in by]))
        fig["coverage_mean_over_held_out_card_weighted"] = _r(np.mean([f["coverage_p10_p90_card_weighted"]
                                                                       for f in by]))
        fig["coverage_mean_over_held_out_unseen_card"] = _r(np.mean([f["coverage_p10_p90_unseen_card"] for f in by]))
    preds = {"rows": rows[ok], "fold": folds[ok], "p10": p10[ok], "p50": p50[ok], "p90": p90[ok],
             "analytic": fold_base[ok]}
    return fig, preds


def rank_correlation(d: Design, rows, pred, meas, base) -> dict:
    """Mean Spearman correlation of quant-method rankings within (card, model, batch, workload, engine, scope)."""
    from scipy.stats import spearmanr

    groups: dict[str, list[int]] = {}
    for i, g in enumerate(d.rank_group[rows]):
        groups.setdefault(g, []).append(i)
    rho, rho_an, methods = [], [], []
    for idx in groups.values():
        n_methods = len(set(d.cell_group[rows][idx]))
        if len(idx) < 2 or n_methods < 2:
            continue
        m = np.asarray(meas)[idx]
        if np.ptp(m) == 0:
            continue
        methods.append(n_methods)
        for arr, acc in ((pred, rho), (base, rho_an)):
            p = np.asarray(arr)[idx]
            r = spearmanr(p, m).statistic if np.ptp(p) > 0 else 0.0
            acc.append(float(r) if np.isfinite(r) else 0.0)
    # groups of two methods are often fp16 vs bf16 (the same bytes), whose order is run-to-run noise; the
    # figure over groups of at least three methods is the one that tests ranking quantization methods
    many = np.asarray(methods) >= 3
    rho3, rho3_an = np.asarray(rho)[many], np.asarray(rho_an)[many]
    return {"rank_groups": len(rho), "spearman_quant_rank": _r(np.mean(rho)) if rho else None,
            "analytic_spearman_quant_rank": _r(np.mean(rho_an)) if rho_an else None,
            "rank_groups_3plus": int(many.sum()),
            "spearman_quant_rank_3plus": _r(np.mean(rho3)) if len(rho3) else None,
            "analytic_spearman_quant_rank_3plus": _r(np.mean(rho3_an)) if len(rho3_an) else None}


def _r(v) -> float:
    return float(round(float(v), 4))


# ---- accuracy change (cited quant_accuracy.csv rows) ----------------------------------------------
ACC_UNQUANTIZED = ("fp32", "fp16", "bf16")


def accuracy_rows(catalog) -> tuple[dict, dict[str, int]]:
    """Training rows of the accuracy target from the cited table: X, y, quant, group (source model name),
    model id (catalogue models only), task; excluded / degraded rows counted by reason."""
    from recommender.costmodel import accuracy as AC

    X, y, quant, group, model, task, shots = [], [], [], [], [], [], []
    reasons: dict[str, int] = {}

    def count(r):
        reasons[r] = reasons.get(r, 0) + 1

    for row in catalog.quant_accuracy:
        try:
            d = float(row.get("delta_abs"))
        except (TypeError, ValueError):
            count("excluded: no numeric delta_abs")
            continue
        q = catalog.quants.find(row.get("quant_id") or "")
        if q is None or not np.isfinite(d):
            count("excluded: quant not in the catalogue or delta not finite")
            continue
        mid = (row.get("model_id") or "").strip()
        notes = row.get("notes") or ""
        m = catalog.models.find(mid) if mid else None
        name = mid or AC.note_model(notes) or "?"
        if m is not None:
            mv = AC.model_vector(m)
            count("model features from the catalogue / public_models.csv")
        else:
            p = AC.params_from_name(AC.note_model(notes))
            mv = AC.model_vector(None, p)
            count("model outside the catalogue: log params from the size in its name (notes), shape NaN"
                  if p else "model outside the catalogue, no parameter count in notes: model features NaN")
        if AC.task_id(row.get("task") or "") not in AC.TASKS:
            count("task outside the one-hot list (task_other)")
        s = AC.n_shot(notes)
        X.append(AC.quant_vector(q) + mv + AC.task_vector(row.get("task") or "", s))
        y.append(d)
        quant.append(q.id)
        group.append(name)
        model.append(m.id if m is not None else "")
        task.append(AC.task_id(row.get("task") or ""))
        shots.append(s)
    data = {"X": np.array(X, dtype=np.float64).reshape(-1, len(AC.ACC_FEATURE_NAMES)), "y": np.array(y),
            "quant": np.array(quant, dtype=object), "group": np.array(group, dtype=object),
            "model": np.array(model, dtype=object), "task": np.array(task, dtype=object), "shots": np.array(shots)}
    return data, reasons


def _acc_folds(scheme: str, a: dict, seed: int):
    n = len(a["y"])
    if scheme == "random":
        perm = np.random.default_rng(seed).permutation(n)
        labels = np.empty(n, dtype=object)
        labels[perm] = [f"fold{i % 5}" for i in range(n)]
    else:
        labels = a["group"]
    idx = np.arange(n)
    return [(idx[labels != lab], idx[labels == lab], str(lab)) for lab in sorted(set(labels))
            if (labels != lab).sum() >= MIN_ROWS // 2]


def _acc_analytic(a: dict, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The analytic cited mean, from the training rows only: same quant and model where it has rows, else the
    quant's mean over all models (`analytic.accuracy_delta`)."""
    out = np.full(len(test), np.nan)
    for i, j in enumerate(test):
        same_q = train[a["quant"][train] == a["quant"][j]]
        own = same_q[(a["model"][same_q] == a["model"][j]) & (a["model"][j] != "")]
        use = own if len(own) else same_q
        if len(use):
            out[i] = a["y"][use].mean()
    return out


def _acc_cv(a: dict, scheme: str, seed: int) -> dict:
    n = len(a["y"])
    out = {k: np.full(n, np.nan) for k in (*QUANTILES, "analytic")}
    fold = np.full(n, "", dtype=object)
    for train, test, lab in _acc_folds(scheme, a, seed):
        for k, m in fit_quantiles(a["X"][train], a["y"][train], seed, n_jobs=1).items():
            out[k][test] = m.predict(a["X"][test])
        out["analytic"][test] = _acc_analytic(a, train, test)
        fold[test] = lab
    out["fold"] = fold
    return out


def _acc_evaluate(a: dict, oof: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    y, folds = a["y"], oof["fold"]
    ok = np.isfinite(oof["p50"]) & np.isfinite(oof["analytic"])
    score = np.maximum(oof["p10"] - y, y - oof["p90"])
    lo, hi = oof["p10"].copy(), oof["p90"].copy()
    for lab in set(folds[ok]):
        sel = folds == lab
        off = conformal_offset(score[ok & ~sel])
        lo[sel] -= off
        hi[sel] += off
    lo, mid, hi = _ordered(lo, oof["p50"], hi)
    err, err_an = np.abs(mid - y) * 100, np.abs(oof["analytic"] - y) * 100
    fig = {"n": int(ok.sum()), "groups": len(set(folds[ok])),
           "median_abs_err_pp": _r(np.median(err[ok])), "p90_abs_err_pp": _r(np.percentile(err[ok], 90)),
           "analytic_median_abs_err_pp": _r(np.median(err_an[ok])),
           "analytic_p90_abs_err_pp": _r(np.percentile(err_an[ok], 90)),
           "coverage_p10_p90": _r(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok]))),
           "coverage_p10_p90_uncalibrated": _r(np.mean((y[ok] >= np.minimum(oof["p10"], oof["p50"])[ok])
                                                       & (y[ok] <= np.maximum(oof["p90"], oof["p50"])[ok])))}
    return fig, lo, hi


ACC_SCHEMES = {"lomo": "leave-one-model-out (source model name)", "random": "random 5-fold (rows)"}


def train_accuracy(catalog, seed: int, cv: bool, log) -> tuple[dict | None, dict, dict, list[dict]]:
    """(boosters or None, target metadata, validation figures, CV rows) of accuracy_delta."""
    from recommender.costmodel import accuracy as AC

    a, reasons = accuracy_rows(catalog)
    n = len(a["y"])
    base = {"n_rows": int(n), "row_reasons": reasons, "feature_names": list(AC.ACC_FEATURE_NAMES)}
    if n < MIN_ROWS or len(_acc_folds("lomo", a, seed)) < 2:
        return None, {"kind": "analytic", **base, "reason": f"{n} cited rows; needs >= {MIN_ROWS} over 2+ models"}, {}, []
    figs, oofs, cv_rows = {}, {}, []
    for scheme in ACC_SCHEMES if cv else ("lomo",):
        oofs[scheme] = _acc_cv(a, scheme, seed)
        figs[scheme], lo, hi = _acc_evaluate(a, oofs[scheme])
        o = oofs[scheme]
        for i in np.flatnonzero(np.isfinite(o["p50"])):
            cv_rows.append({"scheme": scheme, "held_out": o["fold"][i], "model": a["group"][i],
                            "quant": a["quant"][i], "task": a["task"][i], "n_shot": float(a["shots"][i]),
                            "cited_delta": float(a["y"][i]), "analytic": float(o["analytic"][i]),
                            "p10": float(lo[i]), "p50": float(o["p50"][i]), "p90": float(hi[i])})
    o = oofs["lomo"]
    score = np.maximum(o["p10"] - a["y"], a["y"] - o["p90"])
    offset = conformal_offset(score[np.isfinite(score)])
    f = figs["lomo"]
    better = f["median_abs_err_pp"] < f["analytic_median_abs_err_pp"]
    shots = {}
    for t in AC.PAPER_TASKS:
        s = a["shots"][(a["task"] == t) & np.isfinite(a["shots"])]
        vals, cnt = np.unique(s, return_counts=True) if len(s) else (np.array([0.0]), np.array([1]))
        shots[t] = float(vals[np.argmax(cnt)])
    models = fit_quantiles(a["X"], a["y"], seed, n_jobs=1)  # a few hundred rows: threads only cost
    spec = {**base, "transform": "delta_abs (absolute, 0..1 score)", "models": int(len(set(a["group"]))),
            "quants": sorted(set(a["quant"])), "conformal_abs_offset": _r(offset), "calibration_scheme": "lomo",
            "paper_task_n_shot": shots,
            "interval": "quantile p10/p90 widened by the split-conformal offset (leave-one-model-out residuals)"}
    log(f"accuracy_delta: {n} cited rows, " + ", ".join(
        f"{s} median |err| {g['median_abs_err_pp']} pp (analytic {g['analytic_median_abs_err_pp']} pp), "
        f"coverage {g['coverage_p10_p90']}" for s, g in figs.items()))
    if not better:
        spec.update(kind="analytic", reason=(
            f"learned model not better than the cited mean on leave-one-model-out (median |err| "
            f"{f['median_abs_err_pp']} pp vs analytic {f['analytic_median_abs_err_pp']} pp): analytic served"))
        return None, spec, figs, cv_rows
    spec.update(kind="learned", files={q: f"accuracy_delta.{q}.txt" for q in QUANTILES})
    return {q: m.booster_.model_to_string() for q, m in models.items()}, spec, figs, cv_rows


# ---- the whole run ---------------------------------------------------------------------------------
@dataclass
class Result:
    boosters: dict[str, dict[str, str]]  # target -> quantile -> model text
    metadata: dict
    cv_rows: list[dict]
    model_card: str
    accuracy_cv_rows: list[dict] = field(default_factory=list)


def target_rows(d: Design, target: str) -> np.ndarray:
    ok = np.isfinite(d.measured[target]) & (d.measured[target] > 0) & np.isfinite(d.base[target]) & (d.base[target] > 0)
    return np.flatnonzero(ok)


def analytic_report(d: Design) -> dict:
    """|log(measured / analytic)| per target: the 80th percentile gives analytic.INTERVAL_FACTOR."""
    out = {}
    for t in TARGETS:
        rows = target_rows(d, t)
        if not len(rows):
            out[t] = {"n": 0}
            continue
        e = np.abs(np.log(d.measured[t][rows] / d.base[t][rows]))
        per_gpu = {g: _r(np.exp(np.percentile(e[d.gpu_group[rows] == g], 80))) for g in sorted(set(d.gpu_group[rows]))}
        out[t] = {"n": int(len(rows)), "factor_p80": _r(np.exp(np.percentile(e, 80))),
                  "median_ratio": _r(np.exp(np.median(np.log(d.measured[t][rows] / d.base[t][rows])))),
                  "factor_p80_by_gpu": per_gpu}
    return out


def train(data: TrainingData, catalog, seed: int = DEFAULT_SEED, cv: bool = True, log=print) -> Result:
    import lightgbm
    import sklearn

    from recommender.costmodel import features as F

    t0 = time.perf_counter()
    frame = data.frame
    n_sim = sum(f.get("simulated_rows", 0) for f in data.files)
    if n_sim:
        log(f"warning: {n_sim} simulated rows (fake meter) in the training data: a test artifact, not one to ship")
    d = design(frame, catalog)
    targets_meta, boosters, cv_rows, gate_meta = {}, {}, [], {}
    validation: dict = {"schemes": {k: SCHEME_NAMES[k] for k in SCHEMES}, "alpha": ALPHA}
    for t in TARGETS:
        rows = target_rows(d, t)
        n_gpu = len(set(d.gpu_group[rows]))
        # intervals are calibrated on the hardest split the data allow: leave-one-GPU-out, else (one GPU
        # group, e.g. only our H100) leave-one-architecture-out, else random folds over cells
        usable = [s for s in SCHEMES if len(_folds(s, d, rows, seed)) >= 2]
        if len(rows) < MIN_ROWS or not usable:
            targets_meta[t] = {"kind": "analytic", "n_rows": int(len(rows)),
                               "reason": f"{len(rows)} measured rows ({n_gpu} GPU group(s)); needs >= {MIN_ROWS} "
                                         "rows that can be split for validation"}
            log(f"{t}: analytic ({targets_meta[t]['reason']})")
            continue
        calib = usable[0]
        y = np.log(d.measured[t][rows] / d.base[t][rows])
        figs, oofs = {}, {}
        for scheme in usable if cv else [calib]:
            oofs[scheme] = cross_validate(d, t, rows, scheme, seed)
            fig, preds = evaluate(d, t, rows, oofs[scheme], per_group=scheme == "logo")
            figs[scheme] = fig
            cv_rows += _cv_records(frame, d, t, scheme, preds)
        f_cal = figs[calib]
        analytic_reason = None
        runs = [oofs[calib]]
        if t in SERVED_ANALYTIC:
            analytic_reason = (f"{SERVED_ANALYTIC[t]} (learned median APE on {SCHEME_NAMES[calib]} "
                               f"{f_cal.get('median_ape_pct')} % vs analytic "
                               f"{f_cal.get('analytic_median_ape_pct')} %, reported, not served)")
        else:
            runs = seed_runs(d, t, rows, calib, seed, oofs[calib])
        if analytic_reason is None and f_cal.get("median_ape_pct") is not None \
                and f_cal.get("analytic_median_ape_pct") is not None:
            gate = gate_median_ape(d, t, rows, runs, f_cal["median_ape_pct"])
            gate_mean = float(np.mean(gate))
            gate_meta[t] = {"scheme": calib, "seeds": list(range(seed, seed + GATE_SEEDS)), "median_ape_pct": gate,
                            "mean_median_ape_pct": _r(gate_mean),
                            "analytic_median_ape_pct": f_cal["analytic_median_ape_pct"]}
            if gate_mean > f_cal["analytic_median_ape_pct"]:
                analytic_reason = (f"learned model not better than the analytic model on {SCHEME_NAMES[calib]} "
                                   f"(median APE {_r(gate_mean)} % over {GATE_SEEDS} seeds, this one's "
                                   f"{f_cal['median_ape_pct']} %, vs {f_cal['analytic_median_ape_pct']} %): "
                                   "analytic served")
        if analytic_reason is not None:
            targets_meta[t] = {"kind": "analytic", "n_rows": int(len(rows)), "reason": analytic_reason}
            validation[t] = figs
            log(f"{t}: analytic ({analytic_reason})")
            continue
        # the median over the seed runs (`seed_median_offsets`); a card outside training: the cards, not their rows,
        # are the units (`unseen_card_offset`), so the offset is not set by the one card with most rows (our
        # H100); only where the calibration split holds out cards
        offset, offset_unseen, offsets, offsets_unseen = seed_median_offsets(
            y, runs, rows, d.gpu_group[rows] if calib == "logo" else None)
        models = fit_quantiles(d.X[rows], y, seed)
        boosters[t] = {q: m.booster_.model_to_string() for q, m in models.items()}
        targets_meta[t] = {
            "kind": "learned", "transform": "log(measured / analytic)", "n_rows": int(len(rows)),
            "gpus": sorted(set(frame["gpu_id"].to_numpy(object)[rows])),
            "gpu_groups": n_gpu, "architectures": len(set(d.arch_group[rows])),
            "origins": {k: int(v) for k, v in frame.iloc[rows]["origin"].value_counts().sort_index().items()},
            "files": {q: f"{t}.{q}.txt" for q in QUANTILES},
            "conformal_log_offset": _r(offset),
            "conformal_log_offset_unseen_card": _r(offset_unseen),
            "conformal_log_offset_seeds": [_r(o) for o in offsets],
            "conformal_log_offset_unseen_card_seeds": [_r(o) for o in offsets_unseen],
            "calibration_scheme": calib,
            "interval": f"quantile p10/p90 widened by the split-conformal offset ({SCHEME_NAMES[calib]} "
                        "out-of-fold residuals); on a card outside `gpus`, by conformal_log_offset_unseen_card "
                        "(the largest of the pooled offset, the same residuals with every held-out card weighted "
                        "equally, and the between-cards offset: each card's own offset, then the split-conformal "
                        "order statistic over cards)",
        }
        validation[t] = figs
        log(f"{t}: {len(rows)} rows, " + ", ".join(
            f"{s} median APE {f['median_ape_pct']}% (analytic {f['analytic_median_ape_pct']}%), "
            f"coverage {f['coverage_p10_p90']}" for s, f in figs.items()))
    acc_boosters, targets_meta["accuracy_delta"], acc_figs, acc_cv = train_accuracy(catalog, seed, cv, log)
    if acc_boosters:
        boosters["accuracy_delta"] = acc_boosters
    acc_validation = {"schemes": ACC_SCHEMES, **({"figures": acc_figs} if acc_figs else {})}
    meta = {
        "format_version": FORMAT_VERSION,
        "features_version": F.FEATURES_VERSION,
        "feature_names": list(F.FEATURE_NAMES),
        "quantiles": QUANTILES,
        "targets": targets_meta,
        # the learned-or-analytic decision per learned target: the calibration split's median APE per seed
        "learned_or_analytic": gate_meta,
        "prediction_scope": F.DEFAULT_SCOPE,
        "seed": seed,
        "lgbm_params": LGBM_PARAMS,
        "lgbm_params_by_quantile": QUANTILE_PARAMS,
        "data": {"files": data.files, "rows": int(len(frame)), "skipped": data.skipped,
                 "simulated_rows": sum(f.get("simulated_rows", 0) for f in data.files),
                 "rows_by_origin": {k: int(v) for k, v in frame["origin"].value_counts().sort_index().items()}},
        "catalog_files": catalog_file_hashes(catalog),
        "method_overhead": [{k: r.get(k) for k in ("quant_id", "engine_id", "per_layer_overhead_ms",
                                                   "per_layer_per_seq_ms", "n_pairs", "n_models", "prefill_time_ratio", "prefill_n_pairs",
                                                   "prefill_energy_ratio", "prefill_energy_n_pairs",
                                                   "decode_busy_fraction", "decode_busy_n_pairs")}
                            for r in catalog.method_overhead],
        "coverage": training_coverage(frame),
        "card_range": training_card_range(frame, catalog),
        "validation": validation,
        "cv_refitted_per_fold": _refitted_per_fold(d),
        # accuracy_delta is scored in absolute percentage points, not APE: its own block and CV file
        "accuracy_validation": acc_validation,
        "analytic_report": analytic_report(d),
        "versions": {"python": platform.python_version(), "lightgbm": lightgbm.__version__,
                     "scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "created_at": _created_at(),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return Result(boosters, meta, cv_rows, model_card(meta), acc_cv)


#: card specs whose trained range `recommend` checks (`recommender.evidence.outside_training_range`)
CARD_RANGE_SPECS = ("bandwidth_gbs", "fp16_tensor_tflops", "tdp_w", "memory_gb", "compute_capability")


def training_card_range(frame, catalog) -> dict[str, list[float]]:
    """{spec: [min, max]} of CARD_RANGE_SPECS over the cards the training rows ran on. Trees cannot
    extrapolate: a card outside these ranges is predicted from the nearest trained cards' corrections."""
    out: dict[str, list[float]] = {}
    gpus = [g for g in (catalog.gpus.find(x) for x in sorted(set(frame["gpu_id"]))) if g is not None]
    for spec in CARD_RANGE_SPECS:
        vals = [float(v) for g in gpus if (v := getattr(g, spec, None)) is not None]
        if vals:
            out[spec] = [min(vals), max(vals)]
    return out


def training_coverage(frame) -> dict[str, dict[str, dict]]:
    """What the training rows cover, per method and engine: {quant: {engine: {gpus, rows, batch_max (any
    card), batch_max_by_gpu, origins}}}, plus `slow_path_by_gpu` where the frame has our records'
    `slow_path_suspected` flags (`slow_path_counts`). The recommender reads it to say how far a prediction is
    from any measurement, and where a slow path was measured (recommender/evidence.py)."""
    import pandas as pd

    out: dict[str, dict[str, dict]] = {}
    ratios = slow_path_ratios(frame)
    for (quant, engine), g in frame.groupby(["quant", "engine"], sort=True):
        batch = pd.to_numeric(g["batch_size"], errors="coerce")
        by_gpu = batch.groupby(g["gpu_id"].astype(str)).max()
        entry = out.setdefault(str(quant), {})[str(engine)] = {
            "gpus": sorted(set(map(str, g["gpu_id"]))), "rows": int(len(g)),
            "batch_max": int(batch.max()) if batch.notna().any() else None,
            "batch_max_by_gpu": {k: int(v) for k, v in sorted(by_gpu.items()) if v == v},
            "origins": sorted(set(map(str, g["origin"]))),
        }
        if "slow_path_suspected" in g:
            entry["slow_path_by_gpu"] = slow_path_counts(g)
            if (quant, engine) in ratios:
                entry["slow_path_ratio_by_gpu"] = ratios[(quant, engine)]
    return out


#: the cell's unquantized twins a slow path is measured against (measure/runner.py flags a decode below half
#: the faster of them on the same engine, card and batch)
UNQUANTIZED_REFERENCES = ("bf16", "fp16")


def slow_path_ratios(frame) -> dict[tuple[str, str], dict[str, dict[str, dict]]]:
    """{(quant, engine): {gpu: {batch size: {energy_per_token_j, tokens_per_s, pairs}}}}: over the records flagged
    `slow_path_suspected`, the median of the method's decode J/token over the best unquantized twin's (the lower of bf16
    and fp16 of the same card, model, engine, batch, workload and scope) and of that twin's tokens/s over the
    method's (both > 1 on a slow path), and how many flagged records had a twin. The recommender scales its
    unquantized prediction by them to bound a card that never ran the method (`LearnedCostModel`)."""
    import pandas as pd

    keys = ["gpu_id", "model", "engine", "batch_size", "prompt_tokens", "output_tokens", "scope_id"]
    ej, tps = TARGETS["energy_per_token_j"][0], TARGETS["tokens_per_s"][0]  # our records' columns (flags are ours)
    if any(c not in frame for c in (*keys, "quant", "slow_path_suspected", ej, tps)):
        return {}
    slow = frame[_slow_path_flags(frame).eq(True)]
    ref = frame[frame["quant"].isin(UNQUANTIZED_REFERENCES)]
    if slow.empty or ref.empty:
        return {}
    best = ref.groupby(keys, dropna=False).agg(ref_j=(ej, "min"), ref_tps=(tps, "max"))
    pairs = slow.join(best, on=keys, how="inner")
    energy = pd.to_numeric(pairs[ej], errors="coerce") / pairs["ref_j"]
    speed = pairs["ref_tps"] / pd.to_numeric(pairs[tps], errors="coerce")
    pairs = pairs.assign(r_j=energy, r_tps=speed)
    out: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
    for (quant, engine, gpu, batch), g in pairs.groupby(["quant", "engine", "gpu_id", "batch_size"], sort=True):
        rj, rt = g["r_j"].dropna(), g["r_tps"].dropna()
        out.setdefault((str(quant), str(engine)), {}).setdefault(str(gpu), {})[str(int(batch))] = {
            "energy_per_token_j": _r(float(rj.median())) if len(rj) else None,
            "tokens_per_s": _r(float(rt.median())) if len(rt) else None,
            "pairs": int(len(g)),
        }
    return out


def slow_path_counts(rows) -> dict[str, dict[str, list[int]]]:
    """{gpu: {batch size: [records flagged, records with a flag]}} over `rows` whose `slow_path_suspected` is
    set (our records: decode below half the unquantized cell's on the same engine, card and batch;
    measure/runner.py); public rows carry no flag and count in neither."""
    import pandas as pd

    flags = _slow_path_flags(rows)
    known = rows[flags.notna()]
    out: dict[str, dict[str, list[int]]] = {}
    for (gpu, batch), g in known.groupby([known["gpu_id"].astype(str), pd.to_numeric(known["batch_size"])],
                                         sort=True):
        flagged = int(flags[g.index].astype(bool).sum())
        out.setdefault(gpu, {})[str(int(batch))] = [flagged, int(len(g))]
    return out


def _slow_path_flags(rows):
    """`slow_path_suspected` as True / False where a record judged it, None elsewhere (public rows' NaN, unjudged
    records' None)."""
    return rows["slow_path_suspected"].map(lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else None)


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.replace(microsecond=0).isoformat()


def _cv_records(frame, d: Design, target: str, scheme: str, preds: dict) -> list[dict]:
    sub = frame.iloc[preds["rows"]]
    out = []
    for i, (_, r) in enumerate(sub.iterrows()):
        j = preds["rows"][i]
        out.append({"scheme": scheme, "target": target, "held_out": preds["fold"][i], "row_id": r["row_id"],
                    "origin": r["origin"], "gpu_id": r["gpu_id"], "model": r["model"], "quant": r["quant"],
                    "engine": r["engine"], "batch_size": r["batch_size"], "prompt_tokens": r["prompt_tokens"],
                    "output_tokens": r["output_tokens"], "scope_id": r["scope_id"],
                    "measured": d.measured[target][j],
                    "analytic": preds["analytic"][i] if "analytic" in preds else d.base[target][j],
                    "p10": preds["p10"][i], "p50": preds["p50"][i], "p90": preds["p90"][i]})
    return out


# ---- the artifact ----------------------------------------------------------------------------------
MANIFEST = "MANIFEST.sha256"
METADATA = "metadata.json"
CV_PREDICTIONS = "cv_predictions.csv"
ACCURACY_CV_PREDICTIONS = "accuracy_cv_predictions.csv"
CARD = "MODEL_CARD.md"


def artifact_files(res: Result) -> dict[str, bytes]:
    import csv
    import io

    files: dict[str, bytes] = {}
    for t, qs in res.boosters.items():
        for q, text in qs.items():
            files[f"{t}.{q}.txt"] = text.encode()
    files[METADATA] = (json.dumps(res.metadata, indent=2, sort_keys=False, allow_nan=False) + "\n").encode()
    buf = io.StringIO()
    if res.cv_rows:
        w = csv.DictWriter(buf, fieldnames=list(res.cv_rows[0]), lineterminator="\n")
        w.writeheader()
        for r in res.cv_rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    files[CV_PREDICTIONS] = buf.getvalue().encode()
    if res.accuracy_cv_rows:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(res.accuracy_cv_rows[0]), lineterminator="\n")
        w.writeheader()
        for r in res.accuracy_cv_rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        files[ACCURACY_CV_PREDICTIONS] = buf.getvalue().encode()
    files[CARD] = res.model_card.encode()
    return files


def manifest(files: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(b).hexdigest()}  {name}\n" for name, b in sorted(files.items())).encode()


def write_artifact(out: Path, files: dict[str, bytes]) -> Path:
    """Write every file plus MANIFEST.sha256 into a temporary sibling folder, then rename it into place."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the artifact is a normal folder
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_bytes(manifest(files))
        for p in tmp.iterdir():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---- model card ------------------------------------------------------------------------------------
#: what `_fold_refit` refits per fold (metadata.json `cv_refitted_per_fold`)
REFIT_ENGINE_CONSTANTS = ("engine roofline_efficiency, per_token_overhead_ms, power_floor, power_slope, "
                          "prefill_efficiency, prefill_overhead_ms")
REFIT_METHOD_OVERHEAD = "method_overhead"


def _refitted_per_fold(d: Design) -> list[str]:
    refit = d.refit
    return ([REFIT_ENGINE_CONSTANTS] if getattr(refit, "engine_constants", False) else []) + (
        [REFIT_METHOD_OVERHEAD] if getattr(refit, "method_overhead", False) else [])


def _seed_span(m: dict) -> str:
    """'; median of seeds: lo-hi' for a target whose offset is `seed_median_offsets`' median (else '')."""
    seeds = m.get("conformal_log_offset_seeds") or []
    return f"; median of {len(seeds)} seeds: {min(seeds):g}-{max(seeds):g}" if len(seeds) > 1 else ""


def _refit_paragraph(refitted: list[str] | None) -> list[str]:
    """The model card's account of which catalogue constants cross-validation refits per fold."""
    refitted = refitted or []
    engines = REFIT_ENGINE_CONSTANTS in refitted
    lines = ["Refitted inside every cross-validation fold, without the held-out rows, so the figures below never",
             "saw them through the analytic baseline they are judged against:"]
    if engines:
        lines += [
            "the engines' roofline efficiency and per-token overhead (engines.yaml; fitted by",
            "datasets/catalog/tools/fit_engine_overhead.py on our and the public batch-1 16-bit rows) and decode",
            "power floor and slope (fit_power_model.py, our 16-bit/fp32 records), in that order, and the prefill's",
            "own efficiency and overhead (fit_prefill_model.py, our 16-bit/fp32 records' TTFT), each fit",
            "leaving out every row of the tools whose card silicon, architecture or cell without the card occurs",
            "among the held-out rows and not among the training rows (`recommender/costmodel/engine_constants.py`;",
            "an engine left with fewer rows than the tools need keeps its all-row constants, and those rows stay",
            "partly optimistic);",
        ]
    if REFIT_METHOD_OVERHEAD in refitted:
        lines += [
            f"{'then ' if engines else ''}the quantized methods' decode overheads, prefill time ratios, prefill",
            "energy ratios and decode busy shares (datasets/catalog/method_overhead.csv) on our rows outside the",
            "held-out group (of any target), against the analytic step and prefill times"
            + (" of the fold's engine constants;" if engines else ";"),
            "a fold left with fewer than 3 pairs of a method fits none for it (no prefill ratio: 1).",
        ]
    if not refitted:
        lines += ["nothing (the catalogue constants are used as shipped)."]
    lines += [
        "Not refitted per fold: " + ("" if engines else "the engines' efficiency, overhead, power floor and slope, "
                                     "prefill efficiency and overhead (engines.yaml), ")
        + "analytic.INTERVAL_FACTOR (the analytic p10/p90 band) and the other",
        "analytic.PARAMS, the GPU specs (gpus.csv) and quants.yaml's dequantize thresholds.",
    ]
    return lines


def model_card(meta: dict) -> str:
    v = meta["validation"]
    lines = [
        "# Cost model card",
        "",
        f"Created {meta['created_at']} by `train-cost-model` (seed {meta['seed']}, LightGBM "
        f"{meta['versions']['lightgbm']}, features v{meta['features_version']}, {len(meta['feature_names'])} features).",
        "",
        "## What it predicts",
        "",
        "For each target, three LightGBM quantile regressions (0.1, 0.5, 0.9) of log(measured / analytic) on",
        "physics-derived features (`recommender/costmodel/features.py`): the prediction is the analytic",
        "roofline + power estimate (`analytic.py`) times exp(correction), for our measurement scope",
        f"(`{meta['prediction_scope']}`: NVML energy counter, decode phase only). Public rows (prefill + decode",
        "metered together) are compared with the analytic end-to-end estimate, and their scope is a feature.",
        "p10/p90 are the quantile models widened by a split-conformal offset from out-of-fold residuals of the",
        "split named in the table (leave-one-GPU-out wherever the rows span two GPU groups; the median of the",
        f"offsets of {GATE_SEEDS} seeds' cross-validations, each seed's column sample moving it); on a card outside",
        "a target's training cards, by the wider unseen-card offset (see 'by held-out card' below). Coverage by",
        "engine is below ('Interval coverage by engine').",
        "A card that never ran a method on an engine which another card ran on a slow path (records flagged",
        "`slow_path_suspected` at the nearest measured batch; metadata coverage `slow_path_ratio_by_gpu`) gets its",
        "J/token p90 raised to its unquantized p50 times the slowdown measured there, and its tokens/s p10",
        "lowered likewise (`LearnedCostModel._allow_slow_path`): trees cannot carry one card's slow path to",
        "another, and whether it is the software's or the card's is not known until that card measures it. This",
        "widening is applied when serving; the cross-validated coverage below does not include it.",
        "",
        *_refit_paragraph(meta.get("cv_refitted_per_fold")),
        "",
        "| target | kind | rows | GPU groups | architectures | conformal log offset (calibrated on) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, m in meta["targets"].items():
        if t == "accuracy_delta":
            lines.append(f"| {t} | {m['kind']} | {m.get('n_rows', 0)} | | {m.get('models', '')} models | "
                         f"{m.get('conformal_abs_offset', '')} absolute (leave-one-model-out) | "
                         f"{m.get('reason', 'cited quant_accuracy.csv rows; see Accuracy change below')} |")
        elif m["kind"] == "learned":
            g = meta.get("learned_or_analytic", {}).get(t)
            gate = (f"; served learned: median APE {g['mean_median_ape_pct']} % over seeds {g['seeds'][0]}-"
                    f"{g['seeds'][-1]} ({', '.join(f'{x:g}' for x in g['median_ape_pct'])}) vs analytic "
                    f"{g['analytic_median_ape_pct']} % on {SCHEME_NAMES[g['scheme']]}") if g else ""
            lines.append(f"| {t} | learned | {m['n_rows']} | {m['gpu_groups']} | {m['architectures']} | "
                         f"{m['conformal_log_offset']} ({SCHEME_NAMES[m['calibration_scheme']]}{_seed_span(m)}) | "
                         f"GPUs: {', '.join(m['gpus'])}{gate} |")
        else:
            lines.append(f"| {t} | analytic | {m.get('n_rows', 0)} | | | | {m['reason']} |")
    by_engine = [(t, m, cal) for t, m in meta["targets"].items() if m.get("kind") == "learned"
                 and (cal := meta["validation"].get(t, {}).get(m.get("calibration_scheme"), {})).get("coverage_by_engine")]
    if by_engine:
        lines += ["", "### Interval coverage by engine", "",
                  "Coverage of the served p10-p90 per engine on the calibration split (held-out groups calibrated on "
                  "the other groups only), and what an offset of each engine's own (engines with at least "
                  f"{MIN_ENGINE_ROWS} rows; group-conditional conformal) would give instead, not served: it lowered "
                  "the pooled coverage on leave-one-GPU-out (`docs/experiments/engine-conformal-s31.md`). An engine "
                  "whose coverage is far below 0.80 has intervals too narrow for it.", "",
                  "| target | engine | rows | coverage | with an offset per engine |", "|---|---|---|---|---|"]
        for t, _, cal in by_engine:
            lines += [f"| {t} | {e} | {c['n']} | {c['coverage_p10_p90']} | {c['coverage_p10_p90_engine_offsets']} |"
                      for e, c in cal["coverage_by_engine"].items()]
            lines.append(f"| {t} | all | {cal['n']} | {cal['coverage_p10_p90']} | {cal['coverage_p10_p90_engine_offsets']} |")
    lines += ["", "## Data", "", "| file | sha256 (first 12) | records | rows used |", "|---|---|---|---|"]
    for f in meta["data"]["files"]:
        lines.append(f"| {f['path']} | {f['sha256'][:12]} | {f['records'] if f['records'] is not None else ''} | {f['rows']} |")
    lines += ["", "Rows by origin: " + ", ".join(f"{k} {n}" for k, n in meta["data"]["rows_by_origin"].items()) + "."]
    if meta["data"]["skipped"]:
        lines += ["Skipped: " + "; ".join(f"{k}: {n}" for k, n in meta["data"]["skipped"].items()) + "."]
    if meta["data"].get("simulated_rows"):
        lines += [f"**{meta['data']['simulated_rows']} rows are simulated (fake meter, named with --measurements): "
                  "a test artifact, not one to ship.**"]
    if meta.get("method_overhead"):
        decode = [r for r in meta["method_overhead"] if r.get("per_layer_overhead_ms") not in (None, "")]
        prefill = [r for r in meta["method_overhead"] if r.get("prefill_time_ratio") not in (None, "")]
        if decode:
            lines += ["", "Per-layer decode overheads served (method_overhead.csv; ms per layer per decode step): "
                      + ", ".join(f"{r['quant_id']} on {r['engine_id']} {float(r['per_layer_overhead_ms']):g}"
                                  + (f" + {float(r['per_layer_per_seq_ms']):g} per further sequence"
                                     if float(r.get("per_layer_per_seq_ms") or 0) > 0 else "")
                                  + f" ({r['n_pairs']} pairs, {r['n_models']} models)" for r in decode)
                      + ". One with 3 pairs is untested by the cross-validation (its folds keep 2)."]
        if prefill:
            lines += ["", "Prefill time ratios served (method_overhead.csv; x the analytic prefill time): "
                      + ", ".join(f"{r['quant_id']} on {r['engine_id']} x{float(r['prefill_time_ratio']):g} "
                                  f"({r['prefill_n_pairs']} pairs)" for r in prefill) + "."]
        energy = [r for r in meta["method_overhead"] if r.get("prefill_energy_ratio") not in (None, "")]
        if energy:
            lines += ["", "Prefill energy ratios served (method_overhead.csv; x the analytic prefill energy with the "
                      "time ratio): " + ", ".join(f"{r['quant_id']} on {r['engine_id']} "
                                                  f"x{float(r['prefill_energy_ratio']):g} "
                                                  f"({r['prefill_energy_n_pairs']} pairs)" for r in energy) + "."]
        busy = [r for r in meta["method_overhead"] if r.get("decode_busy_fraction") not in (None, "")]
        if busy:
            lines += ["", "Decode busy shares served (method_overhead.csv; the share of the method's per-layer overhead "
                      "time the analytic decode power counts as roofline time, 0 = idle gaps): "
                      + ", ".join(f"{r['quant_id']} on {r['engine_id']} {float(r['decode_busy_fraction']):g} "
                                  f"({r['decode_busy_n_pairs']} pairs)" for r in busy) + "."]
    if meta.get("catalog_files"):
        lines += ["", "Catalogue files the features were computed from (retrain when one changes): "
                  + ", ".join(f"{k} {v[:12]}" for k, v in meta["catalog_files"].items()) + "."]
    lines += ["", "Sources, licences and measurement scopes of the public rows: `datasets/public/README.md`.", "",
              "## Validation", "",
              "APE = absolute percentage error of p50 against the measurement. Coverage = share of measurements",
              "inside p10-p90 (target 0.80), each held-out group calibrated on the other groups only;",
              "'uncalibrated' = the raw quantile models. Spearman = mean rank correlation of the quantization",
              "methods within one (card, model, batch, workload, engine, scope); n/a where no group has two.",
              "'Spearman, >= 3 methods' keeps the groups of at least three methods: a group of two is often fp16",
              "vs bf16 (the same bytes), whose order is run-to-run noise.", "",
              "| target | scheme | rows | groups | median APE % | p90 APE % | analytic median APE % | "
              "analytic p90 APE % | coverage | uncalibrated | Spearman (groups) | analytic Spearman | "
              "Spearman, >= 3 methods (groups) | analytic, >= 3 methods |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, figs in v.items():
        if not isinstance(figs, dict) or t in ("schemes",):
            continue
        for s, f in figs.items():
            lines.append(
                f"| {t} | {v['schemes'][s]} | {f['n']} | {f['groups']} | {f['median_ape_pct']} | {f['p90_ape_pct']} | "
                f"{f['analytic_median_ape_pct']} | {f['analytic_p90_ape_pct']} | {f['coverage_p10_p90']} | "
                f"{f['coverage_p10_p90_uncalibrated']} | {_na(f['spearman_quant_rank'])} ({f['rank_groups']}) | "
                f"{_na(f['analytic_spearman_quant_rank'])} | {_na(f.get('spearman_quant_rank_3plus'))} "
                f"({f.get('rank_groups_3plus', 0)}) | {_na(f.get('analytic_spearman_quant_rank_3plus'))} |")
    held = [(t, figs["logo"]["by_held_out"]) for t, figs in v.items()
            if isinstance(figs, dict) and "by_held_out" in figs.get("logo", {})]
    if held:
        lines += ["", "### Leave-one-GPU-out, by held-out card", "",
                  "The pooled leave-one-GPU-out figures above, split by the card held out: how well the model",
                  "predicts a card it never saw. A card where the learned median APE exceeds the analytic one, or",
                  "whose coverage is far from 0.80, is one the learned correction does not transfer to. 'With twin':",
                  "the held-out rows whose cell (model, method, engine, batch, workload, scope and KV-cache bits)",
                  "was measured on a training card, as a user's new card would be for a cell we measured; 'without':",
                  "the rest, which only the physics features carry over. 'Coverage, card-weighted' widens each",
                  "held-out card's interval by the offset served for a card outside training until s26 (the other",
                  "cards' residuals with every card weighted equally, a card of fewer than",
                  f"{MIN_GROUP_ROWS} rows in proportion to its rows; never below the pooled offset); 'coverage,",
                  "unseen card' by the one `recommend` uses now (`conformal_log_offset_unseen_card`, also at least",
                  "the between-cards offset: each other card's own 80 % offset, then the split-conformal order",
                  "statistic over cards; its value in 'offset'). With a handful of cards this is an empirical level,",
                  "not a conformal guarantee for a new card.", "",
                  "| target | held-out card | rows | median APE % | analytic median APE % | coverage | "
                  "coverage, card-weighted | coverage, unseen card (offset) | Spearman, >= 3 methods (groups) | "
                  "with twin: rows, median APE %, analytic | without twin: rows, median APE %, analytic |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for t, by in held:
            for g, f in by.items():
                tw = [f"{f.get('n_' + k, '')}, {_na(f.get('median_ape_pct_' + k))}, "
                      f"{_na(f.get('analytic_median_ape_pct_' + k))}" if "n_" + k in f else ""
                      for k in ("with_twin", "without_twin")]
                lines.append(f"| {t} | {g} | {f['n']} | {f['median_ape_pct']} | {f['analytic_median_ape_pct']} | "
                             f"{f['coverage_p10_p90']} | {_na(f.get('coverage_p10_p90_card_weighted'))} | "
                             f"{_na(f.get('coverage_p10_p90_unseen_card'))} ({_na(f.get('unseen_card_log_offset'))}) | "
                             f"{_na(f.get('spearman_quant_rank_3plus'))} "
                             f"({f.get('rank_groups_3plus', 0)}) | {tw[0]} | {tw[1]} |")
        lines += ["", "Mean coverage over the held-out cards (each card counts once), pooled offset against the",
                  "card-weighted one and the unseen-card one, and the log offsets served (seen cards; a card outside",
                  "training):", ""]
        for t, _ in held:
            f, m = v[t]["logo"], meta["targets"].get(t, {})
            served = (f"; served {m['conformal_log_offset']} / {m['conformal_log_offset_unseen_card']}"
                      if "conformal_log_offset_unseen_card" in m else "")
            lines.append(f"- {t}: {_na(f.get('coverage_mean_over_held_out'))} pooled, "
                         f"{_na(f.get('coverage_mean_over_held_out_card_weighted'))} card-weighted, "
                         f"{_na(f.get('coverage_mean_over_held_out_unseen_card'))} unseen card{served}")
    acc = meta["targets"].get("accuracy_delta", {})
    if acc.get("row_reasons"):
        lines += ["", "## Accuracy change", "",
                  "accuracy_delta = change of the 0..1 task score versus the unquantized baseline, learned from the",
                  "cited rows of `datasets/catalog/quant_accuracy.csv` (`recommender/costmodel/accuracy.py` features:",
                  "quant bits / scheme / granularity / symmetric / calibration, model size and shape where known, task",
                  "one-hot, n-shot) as LightGBM p10/p50/p90 of the delta itself (absolute, not log), p10/p90 widened by",
                  "a split-conformal offset from leave-one-model-out residuals. Candidates get the mean over the paper's",
                  "tasks (mmlu, arc_challenge, truthfulqa_mc2, gsm8k, hellaswag). Baseline = the analytic cited mean",
                  "(same quant and model where the training fold has rows of it, else the quant's mean), recomputed",
                  "from each fold's training rows. Errors in percentage points of the 0..1 score x 100.",
                  f"**Served: {acc['kind']}**" + (f" ({acc['reason']})." if acc.get("reason") else "."), "",
                  "Rows: " + "; ".join(f"{k}: {n}" for k, n in acc["row_reasons"].items()) + ".", "",
                  "| scheme | rows | groups | median |err| pp | p90 |err| pp | analytic median pp | analytic p90 pp | "
                  "coverage | uncalibrated |", "|---|---|---|---|---|---|---|---|---|"]
        for s, f in meta.get("accuracy_validation", {}).get("figures", {}).items():
            lines.append(f"| {ACC_SCHEMES[s]} | {f['n']} | {f['groups']} | {f['median_abs_err_pp']} | "
                         f"{f['p90_abs_err_pp']} | {f['analytic_median_abs_err_pp']} | {f['analytic_p90_abs_err_pp']} | "
                         f"{f['coverage_p10_p90']} | {f['coverage_p10_p90_uncalibrated']} |")
    lines += ["", "## Analytic model against the same rows", "",
              "Factor = exp(80th percentile of |log(measured / analytic)|) (`analytic.INTERVAL_FACTOR`).", "",
              "| target | rows | median measured/analytic | factor | factor by GPU |", "|---|---|---|---|---|"]
    for t, r in meta["analytic_report"].items():
        if r["n"]:
            by = ", ".join(f"{g} {x}" for g, x in r["factor_p80_by_gpu"].items())
            lines.append(f"| {t} | {r['n']} | {r['median_ratio']} | {r['factor_p80']} | {by} |")
    lines += ["", "## Limits", "",
              "- Public rows are vLLM/TensorRT-LLM/llama.cpp/HF-eager on A100, A40, V100, H100, GH200 (16-bit,",
              "  a few fp8 / int8 weight-only throughput rows). Consumer cards, bitsandbytes and dynamic int8 have",
              "  no public energy rows: predictions there lean on the physics features and the analytic model.",
              "- ShareGPT prompt lengths are imputed (161 tokens, see datasets/public/README.md).",
              "- Retrain with `train-cost-model` whenever datasets/measurements or datasets/public change.", ""]
    return "\n".join(lines)


def _na(v) -> str:
    return "n/a" if v is None else str(v)


# ---- CLI -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="train-cost-model", description=__doc__.splitlines()[0])
    ap.add_argument("--measurements", nargs="+", type=Path, default=[], metavar="FILE",
                    help="extra measurement JSONL files (or folders of them), besides datasets/measurements")
    ap.add_argument("--out", type=Path, default=None, help="artifact folder (default: the repo's models/)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--no-public", action="store_true", help="train on our measurements only")
    ap.add_argument("--no-default-measurements", action="store_true",
                    help="ignore datasets/measurements (use only --measurements)")
    ap.add_argument("--cv", dest="cv", action="store_true", default=True,
                    help="run leave-one-model-out and random CV too (default)")
    ap.add_argument("--no-cv", dest="cv", action="store_false",
                    help="only the leave-one-GPU-out CV that calibrates the intervals")
    ap.add_argument("--analytic-report", action="store_true",
                    help="print the analytic model's error factors per target and exit")
    args = ap.parse_args(argv)
    try:
        data, catalog = load_training_data(args.measurements, use_public=not args.no_public,
                                           default_measurements=not args.no_default_measurements)
        if not len(data.frame):
            raise UserError("no training rows: add measurements (--measurements FILE) or drop --no-public")
        if args.analytic_report:
            print(json.dumps(analytic_report(design(data.frame, catalog)), indent=2))
            return 0
        res = train(data, catalog, seed=args.seed, cv=args.cv, log=lambda s: print(s, file=sys.stderr))
        from recommender.paths import models_root

        out = args.out
        if out is None:
            try:
                out = models_root()
            except FileNotFoundError:
                out = Path(__file__).resolve().parents[2] / "models"
        path = write_artifact(out, artifact_files(res))
        print(f"wrote {path} ({len(res.boosters)} learned targets, {res.metadata['train_seconds']} s)")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
