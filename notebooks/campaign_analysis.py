"""Analysis of our H100 measurements against the paper's claims (notebooks/h100_campaign.ipynb calls these).

Plain functions over pandas DataFrames so that tests can check them on the committed data
(tests/notebooks/test_campaign_analysis.py). Nothing here invents a number: every figure comes from

- our records (datasets/measurements/h100/*.jsonl, schema measure/record.py) -> "measured";
- the paper (Bian, Wang & Lu 2025), quoted in PAPER_* below with section and table -> "paper";
- the catalogue (datasets/catalog/*.csv, each row with its source) and the imported public rows
  (datasets/public/*.csv) -> "cited";
- and where none of these has the quantity, the tables say "missing" (NaN), never a guess.

Sign convention everywhere: energy_reduction_pct = (1 - E_method / E_baseline) x 100, positive = the method
uses LESS energy per output token than the baseline (the paper's "Energy Red."); negative = it uses more.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "datasets" / "measurements" / "h100"
#: The second card type (H200, one 4-GPU machine, eager 256/128 cells of measure/grids/h200-campaign.yaml).
H200_MEASUREMENTS = ROOT / "datasets" / "measurements" / "h200"
#: Measurement folder of each card type measured, by the catalogue id the runner writes to `gpu_id`; the first
#: is the baseline card of the hardware comparisons.
CARD_FOLDERS = {"h100-sxm": MEASUREMENTS, "h200": H200_MEASUREMENTS}
CATALOG = ROOT / "datasets" / "catalog"
PUBLIC = ROOT / "datasets" / "public"
GRIDS = ROOT / "measure" / "grids"


def _save(fig, path, top: float = 1.0):
    """Lay out (below `top`, the figure fraction left free above for a suptitle or legend), write as PNG
    (110 dpi) and close a figure; return its path."""
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path

# --- the paper ----------------------------------------------------------------------------------------
PAPER = ("Bian, Wang & Lu (2025), 'Research: Towards Energy-Aware AI Deployment: Investigating the Interplay "
         "of Model Quantization and Hardware Platforms'")
# Table 2 (section 4.1). Accuracy loss as printed (a string: the INT8 cell is '<1.0%').
PAPER_TABLE2: dict[str, dict[str, Any]] = {
    "INT8": {"energy_reduction_pct": 25.0, "accuracy_loss": "<1.0%", "accuracy_loss_pct": 1.0,
             "eor_improvement_pct": 32.1},
    "FP16": {"energy_reduction_pct": 16.3, "accuracy_loss": "0.2%", "accuracy_loss_pct": 0.2,
             "eor_improvement_pct": 19.4},
    "Dynamic": {"energy_reduction_pct": 10.5, "accuracy_loss": "1.5%", "accuracy_loss_pct": 1.5,
                "eor_improvement_pct": 11.7},
}
# Section 4.3 / 5 / 4.1 claims quoted by the notebook.
PAPER_CLAIMS: dict[str, Any] = {
    "co_optimisation_max_pct": 40.0,  # s4.3 'up to 40% energy efficiency improvements'
    "co_optimisation_examples": {"A100 PCIe + INT8": 40.0, "RTX 4090 + FP16": 35.2, "RTX 4060 Ti + Dynamic": 25.1},
    "distillation_pct": 19.8,  # s4.3 DeepSeek-R1-Distill-Qwen-7B vs 'equivalent non-distilled models'
    "deepseek_int8_wh": (39.65, 29.74),  # s4.1 DeepSeek-R1-Distill-Qwen-7B INT8: 39.65 Wh -> 29.74 Wh
    "cooldown_s": 300,  # s3.4 protocol: 5-minute cooldown between experiments
    "sampling_hz": 1,  # s3.3 eq. (1): nvidia-smi power at 1 Hz, rectangle rule
}

# --- our methods mapped onto the paper's strategies (datasets/catalog/quants.yaml `paper_strategy`) ------
STRATEGIES = ("INT8", "FP16", "Dynamic")
STRATEGY_METHODS: dict[str, tuple[str, ...]] = {
    "INT8": ("bnb-int8", "torchao-int8-wo"),
    "FP16": ("fp16", "bf16"),
    "Dynamic": ("torchao-int8-dyn",),
}
OTHER_METHODS = ("bnb-nf4", "bnb-fp4", "torchao-int4-wo", "torchao-fp8")
METHOD_ORDER = ("fp32", "fp16", "bf16", "bnb-int8", "torchao-int8-wo", "torchao-int8-dyn", *OTHER_METHODS)
# The paper's five tasks (s3.4); the catalogue's cited tables carry TruthfulQA as mc1, not mc2.
PAPER_TASKS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "gsm8k", "hellaswag")
TASK_SUBSTITUTES = {"truthfulqa_mc2": "truthfulqa_mc1"}
CELL_KEYS = ["model", "engine", "batch_size", "prompt_tokens", "output_tokens"]
#: (prompt tokens, output tokens) of the workload every method and engine was measured at; the analyses that
#: compare methods (Table 2, Figure 4, key findings, J/token vs model size, per-layer overhead) use it only.
REFERENCE_WORKLOAD = (256, 128)
#: The longer workload (eager only, a subset of architectures and methods), compared in `workload_effect`.
LONG_WORKLOAD = (1024, 256)
# KV cache bytes per value by method: the cache stays in the compute dtype (fp32 only for fp32 models;
# bitsandbytes/torchao quantize linear weights, not the cache).
KV_BYTES = {"fp32": 4.0}


def strategy_of(quant: str) -> str | None:
    """The paper's strategy a method counts for (None for methods the paper has no counterpart for)."""
    for s, methods in STRATEGY_METHODS.items():
        if quant in methods:
            return s
    return None


# --- loading ------------------------------------------------------------------------------------------
#: Record files kept as a reproducibility check (cells measured again on another machine): they are compared
#: with the earlier records of the same cells (`reproducibility`), never mixed into the method comparisons.
REPEAT_SLICES = ("repeats",)
#: Columns `load_records` adds to the records' own fields.
ADDED_COLUMNS = ("slice", "rejected", "gpu_unit", "machine", "workload", "label")
#: Measured quantities averaged over a cell's records by `cell_means`.
MEAN_COLS = ("decode_energy_per_token_j", "tokens_per_s", "decode_avg_power_w", "ttft_ms", "prefill_energy_j",
             "energy_total_j", "energy_per_token_j", "duration_s", "tpot_ms", "avg_power_w", "peak_mem_nvml_gb",
             "bandwidth_utilization")


def load_records(folder: Path = MEASUREMENTS, *, include_rejected: bool = False,
                 sessions: Path | None = None) -> pd.DataFrame:
    """All records of `folder`/*.jsonl (and rejected/*.jsonl if asked), one row per record.

    Adds `slice` (file stem: probe, campaign, repeats, or the rejected file's stem), `rejected` (bool),
    `gpu_unit` (first 12 characters of the UUID), `machine` (the machine that GPU unit sat in, from the
    session folders' nvidia-smi.csv: see `gpu_machines`), `workload` ('<prompt>/<output>' tokens) and
    `label` (model · engine · batch · quant · workload). `sessions`: the folder whose raw/ session files name
    the machines (default `folder`; the card's folder for its experiments/).
    """
    files = sorted(folder.glob("*.jsonl"))
    if include_rejected:
        files += sorted((folder / "rejected").glob("*.jsonl"))
    frames = []
    for f in files:
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        d = pd.DataFrame(rows)
        d["slice"] = f.stem
        d["rejected"] = f.parent.name == "rejected"
        frames.append(d)
    if not frames:
        raise FileNotFoundError(f"no *.jsonl records under {folder}")
    df = pd.concat(frames, ignore_index=True)
    df["gpu_unit"] = df["gpu_uuid"].fillna("").str[:12]
    machines = gpu_machines(sessions or folder)
    by_uuid = dict(zip(machines["uuid"], machines["machine"], strict=True)) if len(machines) else {}
    df["machine"] = df["gpu_uuid"].map(by_uuid).astype(object).fillna("?")
    return add_labels(df)


def add_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Set `workload` ('<prompt>/<output>') and `label` (model · engine · b<batch> · quant · workload)."""
    df["workload"] = workload_of(df)
    df["label"] = (df["model"].str.replace("-instruct", "", regex=False) + " · " + df["engine"] + " · b"
                   + df["batch_size"].astype(str) + " · " + df["quant"] + " · " + df["workload"])
    return df


def workload_of(df: pd.DataFrame) -> pd.Series:
    """'<prompt_tokens>/<output_tokens>' of each row, e.g. '256/128'."""
    return df["prompt_tokens"].astype(int).astype(str) + "/" + df["output_tokens"].astype(int).astype(str)


def select_workload(df: pd.DataFrame, workload: tuple[int, int] | None = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """The rows of one workload (prompt tokens, output tokens); `workload` None keeps every row."""
    if workload is None:
        return df
    return df[(df["prompt_tokens"] == workload[0]) & (df["output_tokens"] == workload[1])]


def gpu_machines(folder: Path = MEASUREMENTS) -> pd.DataFrame:
    """One row per (device session, GPU) from raw/<session>/nvidia-smi.csv, with the machine it belongs to.

    The records' `host` field is the same placeholder everywhere, so machines are told apart by their GPUs:
    sessions whose nvidia-smi.csv lists the same set of GPU UUIDs ran on the same machine. `machine` is
    '<n>-GPU machine (<first 8 hex digits of its GPU 0 UUID>)'. `power_draw_w` and `temperature_c` are
    nvidia-smi's reading at the start of the session.
    """
    rows = []
    for f in sorted((folder / "raw").glob("*/nvidia-smi.csv")):
        t = pd.read_csv(f, skipinitialspace=True)
        t.columns = [c.strip() for c in t.columns]
        if "index" not in t.columns:
            t.insert(0, "index", range(len(t)))
        for _, r in t.iterrows():
            rows.append({"session": f.parent.name, "index": int(r["index"]), "name": str(r["name"]).strip(),
                         "uuid": str(r["uuid"]).strip(),
                         "power_draw_w": float(str(r["power.draw [W]"]).replace("W", "").strip()),
                         "temperature_c": float(r["temperature.gpu"])})
    m = pd.DataFrame(rows, columns=["session", "index", "name", "uuid", "power_draw_w", "temperature_c"])
    if m.empty:
        m["machine"] = []
        return m
    names = {}
    for _, g in m.groupby("session"):
        key = frozenset(g["uuid"])
        first = g.sort_values("index")["uuid"].iloc[0]
        names.setdefault(key, f"{len(key)}-GPU machine ({first.removeprefix('GPU-')[:8]})")
    m["machine"] = m["session"].map({s: names[frozenset(g["uuid"])] for s, g in m.groupby("session")})
    return m


def ok(df: pd.DataFrame) -> pd.DataFrame:
    """Records with status ok, latest per (cell keys, quant, slice, card `gpu_id`) if a cell was measured twice.

    One whole record per cell, file and card type: for the per-record analyses (noise, 1 Hz error, roofline).
    The card is part of the key because both cards' files share their stems ('campaign') and the cell keys
    name no card: the H200 record of a cell never replaces the H100 record of the same cell. The method
    comparisons use `cell_means` instead.
    """
    d = df[df["status"] == "ok"].sort_values("created_at")
    return d.drop_duplicates([*CELL_KEYS, "quant", "slice", "gpu_id"], keep="last").reset_index(drop=True)


def method_records(df: pd.DataFrame) -> pd.DataFrame:
    """The records the method comparisons use: every file except the reproducibility repeats and rejected/."""
    return df[~df["slice"].isin(REPEAT_SLICES) & ~df["rejected"].astype(bool)]


def noise_pct(cv_a, n_a, cv_b, n_b):
    """The repetition noise of a ratio of two cells' means, in %: two standard errors, 2 x sqrt(cv_a^2 / n_a +
    cv_b^2 / n_b) x 100, from each cell's energy CV and number of repetitions (at least 1)."""
    return 2.0 * np.sqrt(cv_a ** 2 / np.maximum(n_a, 1) + cv_b ** 2 / np.maximum(n_b, 1)) * 100.0


def _sorted_by_method(t: pd.DataFrame, then: Sequence[str] = ("model", "batch_size")) -> pd.DataFrame:
    """Rows by quant in METHOD_ORDER, then by the columns of `then` the frame has (default model and batch
    size)."""
    order = {q: i for i, q in enumerate(METHOD_ORDER)}
    cols = ["quant", *(c for c in then if c in t.columns)]
    return t.sort_values(cols, key=lambda c: c.map(order) if c.name == "quant" else c).reset_index(drop=True)


def cell_means(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell keys, quant, slice, card `gpu_id`): the mean of MEAN_COLS over the cell's ok records
    (records of two card types are never averaged together).

    A cell measured in two sessions of the same slice counts once, with the mean of its records (as the
    recommender serves the median of a cell's records; for two records that is the mean). `n_records` says
    how many records a row averages; `repetitions` is their total number of timed repetitions and
    `energy_cv` the root mean square of their CVs, so `paired_energy`'s noise estimate shrinks as records are
    added. Every other column is the latest record's.
    """
    d = df[df["status"] == "ok"].sort_values("created_at")
    keys = [*CELL_KEYS, "quant", "slice", "gpu_id"]
    last = d.drop_duplicates(keys, keep="last").set_index(keys)
    g = d.groupby(keys, dropna=False)
    cols = [c for c in MEAN_COLS if c in d.columns]
    last[cols] = g[cols].mean()
    last["n_records"] = g.size()
    last["repetitions"] = g["repetitions"].sum()
    last["energy_cv"] = np.sqrt((d["energy_cv"] ** 2).groupby([d[k] for k in keys], dropna=False).mean())
    return last.reset_index()


def load_catalog_tables(folder: Path = CATALOG) -> dict[str, pd.DataFrame]:
    """gpus, models, quant_accuracy, model_scores as DataFrames (ids as the first column)."""
    return {name: pd.read_csv(folder / f"{name}.csv")
            for name in ("gpus", "models", "quant_accuracy", "model_scores", "method_overhead")
            if (folder / f"{name}.csv").exists()}


def load_public(folder: Path = PUBLIC) -> pd.DataFrame:
    """The imported public rows (ML.ENERGY v1/v2, Argonne) in one frame; `dataset` tells them apart."""
    frames = [pd.read_csv(f) for f in sorted(folder.glob("*.csv")) if f.stem in ("mlenergy_v1", "mlenergy_v2",
                                                                                  "argonne")]
    return pd.concat(frames, ignore_index=True)


def load_selfcheck(folder: Path = MEASUREMENTS) -> dict[str, Any] | None:
    """The meter self-check of the first H100 session (the first raw/*/selfcheck.json by name), or None."""
    files = sorted((folder / "raw").glob("*/selfcheck.json"))
    return json.loads(files[0].read_text()) if files else None


def load_selfchecks(folder: Path = MEASUREMENTS) -> dict[str, dict[str, Any]]:
    """Every meter self-check: {session folder name: raw/<session>/selfcheck.json}."""
    return {f.parent.name: json.loads(f.read_text()) for f in sorted((folder / "raw").glob("*/selfcheck.json"))}


def selfcheck_table(selfchecks: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The self-checks side by side: GPU (name, UUID, index), meter vs plain counter (%), sampler overhead (%),
    eq. (1) 1 Hz error from idle (%, with the window in s) and the 10 Hz sampled error (%)."""
    rows = []
    for session, sc in selfchecks.items():
        b = sc.get("b_overhead", {})
        mm = b.get("matmul_8192_bf16", {})
        lb = b.get("matmul_256_fp32_launch_bound", {})
        eq1 = sorted(sc.get("c_eq1", []), key=lambda w: w["window_s"])
        rows.append({
            "session": session, "gpu_name": sc.get("gpu", {}).get("gpu_name"),
            "gpu_uuid": sc.get("gpu", {}).get("gpu_uuid"),
            "gpu_index": sc.get("gpu", {}).get("gpu_index"),
            "meter_vs_counter_pct": ", ".join(f"{a['diff_pct']:.3f}" for a in sc.get("a_agreement", [])),
            "agreement_windows_s": ", ".join(f"{a['duration_s']:.2f}" for a in sc.get("a_agreement", [])),
            "agreement_power_w": ", ".join(f"{a['avg_power_w']:.0f}" for a in sc.get("a_agreement", [])),
            "overhead_matmul_pct": mm.get("overhead_pct"), "overhead_matmul_noise_pct": mm.get("noise_pct"),
            "overhead_launch_bound_pct": lb.get("overhead_pct"),
            "overhead_launch_bound_noise_pct": lb.get("noise_pct"),
            "eq1_error_pct": ", ".join(f"{w['eq1_error_pct']:+.1f} ({w['window_s']:.0f} s)" for w in eq1),
            "sampled_10hz_error_pct": ", ".join(f"{w['sampled_error_pct']:+.2f}" for w in eq1),
            "pass": sc.get("pass"),
        })
    return pd.DataFrame(rows).set_index("session") if rows else pd.DataFrame()


def load_grid_excludes(path: Path) -> list[dict[str, Any]]:
    """The grid's `exclude` entries, each with the comment lines above it in the YAML as `reason`."""
    import yaml

    text = path.read_text()
    spec = yaml.safe_load(text) or {}
    entries = [dict(e) for e in spec.get("exclude") or []]
    # comments directly above each '- {...}' item of the exclude block, in order
    reasons, buf, inside = [], [], False
    for line in text.splitlines():
        if re.match(r"^exclude\s*:", line):
            inside = True
            continue
        if not inside:
            continue
        s = line.strip()
        if s.startswith("#"):
            buf.append(s.lstrip("#").strip())
        elif s.startswith("- "):
            reasons.append(" ".join(buf))
            buf = []
        elif s and not line.startswith(" "):
            break
    for e, r in zip(entries, reasons, strict=False):
        e["reason"] = r
    return entries


def _excluded(row: dict[str, Any], excludes: Sequence[dict[str, Any]]) -> str | None:
    for e in excludes:
        hit = True
        for k, v in e.items():
            if k == "reason":
                continue
            vals = v if isinstance(v, list) else [v]
            if row.get(k) not in vals:
                hit = False
                break
        if hit:
            return e.get("reason") or "excluded by the grid"
    return None


# --- pairing: every method against a baseline on the same cell -----------------------------------------
_PAIR_COLS = ["decode_energy_per_token_j", "tokens_per_s", "energy_cv", "repetitions", "n_records", "gpu_unit",
              "machine", "slice"]


def _pair_cells(meth: pd.DataFrame, base: pd.DataFrame, keys: Sequence[str], extra: Sequence[str] = ()
                ) -> pd.DataFrame:
    """`cell_means` rows of `meth` joined with the `base` row of the same `keys` and the same file (`slice`),
    and the comparison of each pair: e_base_j / e_method_j (decode J per output token), energy_ratio,
    energy_reduction_pct (positive = the method saves energy), speedup (tokens/s ratio), power_ratio
    (= energy_ratio x speedup), tokens_per_s_base / _method, noise_pct (two standard errors of the ratio of
    the two means, from each cell's energy_cv over its repetitions), within_noise, same_gpu_unit, same_machine,
    n_records ('method/base') and workload; each column of `extra` of both cells as <column>_method and
    <column>_base. Every key must match, so callers keep the workload (prompt_tokens, output_tokens) in `keys`
    to pair only cells of one workload."""
    keys = list(keys)
    carried = [*_PAIR_COLS, *(c for c in extra if c not in _PAIR_COLS)]
    b = base[[*keys, *carried]].rename(columns={c: f"{c}_base" for c in carried})
    m = meth.merge(b, on=keys, how="inner")
    m = m[m["slice"] == m["slice_base"]].reset_index(drop=True)
    out = m[[c for c in ("gpu_id", "model", "engine", "batch_size", "prompt_tokens", "output_tokens", "quant")
             if c in m.columns]].copy()
    out["e_base_j"] = m["decode_energy_per_token_j_base"]
    out["e_method_j"] = m["decode_energy_per_token_j"]
    out["energy_ratio"] = out["e_method_j"] / out["e_base_j"]
    out["energy_reduction_pct"] = (1.0 - out["energy_ratio"]) * 100.0
    out["tokens_per_s_base"] = m["tokens_per_s_base"]
    out["tokens_per_s_method"] = m["tokens_per_s"]
    out["speedup"] = m["tokens_per_s"] / m["tokens_per_s_base"]
    out["power_ratio"] = out["energy_ratio"] * out["speedup"]
    out["noise_pct"] = noise_pct(m["energy_cv"], m["repetitions"], m["energy_cv_base"], m["repetitions_base"])
    out["within_noise"] = out["energy_reduction_pct"].abs() <= out["noise_pct"]
    out["same_gpu_unit"] = m["gpu_unit"] == m["gpu_unit_base"]
    out["same_machine"] = m["machine"] == m["machine_base"]
    out["n_records"] = m["n_records"].astype(int).astype(str) + "/" + m["n_records_base"].astype(int).astype(str)
    out["slice"] = m["slice"]
    out["workload"] = workload_of(m) if len(m) else pd.Series(dtype=str)
    for c in extra:
        out[f"{c}_method"] = m[c]
        out[f"{c}_base"] = m[f"{c}_base"]
    return out


def paired_energy(df: pd.DataFrame, baseline: str = "bf16", *, quants: Iterable[str] | None = None,
                  baseline_engine: str | None = None) -> pd.DataFrame:
    """One row per (ok cell of a method, ok cell of `baseline` with the same model/engine/batch/workload).

    Both sides come from the same file (`slice`), the same card type (`gpu_id`) and the same workload (prompt
    and output tokens): a cell of one workload is never paired with a baseline of the other. A cell with several records in it counts once,
    with the mean of its records (`cell_means`). `baseline_engine` pins the baseline to one engine (e.g.
    'hf-eager' to compare compiled cells with the eager baseline: engine x quantization co-optimisation); None
    = the same engine as the method. Columns: energies (decode J per output token), `energy_reduction_pct`
    (positive = saves energy), `energy_ratio`, the decomposition `speedup` (tokens/s ratio) and `power_ratio`
    (decode power ratio, = energy_ratio x speedup; for single records that is the ratio of their
    decode_avg_power_w), so energy_ratio = power_ratio / speedup, and `noise_pct`: two standard errors of the
    ratio of the two means (from each cell's energy_cv and number of repetitions), the smallest difference the
    data can resolve. `same_gpu_unit` / `same_machine` say whether the two cells ran on the same GPU / machine.
    """
    d = cell_means(df)
    base = d[d["quant"] == baseline]
    keys = [k for k in CELL_KEYS if not (baseline_engine and k == "engine")] + ["gpu_id"]
    if baseline_engine:
        base = base[base["engine"] == baseline_engine]
    meth = d[d["quant"] != baseline] if not baseline_engine else d[~((d["quant"] == baseline)
                                                                     & (d["engine"] == baseline_engine))]
    if quants is not None:
        meth = meth[meth["quant"].isin(list(quants))]
    out = _pair_cells(meth, base, keys)
    out.insert(out.columns.get_loc("e_base_j"), "strategy", out["quant"].map(strategy_of))
    out.insert(out.columns.get_loc("e_base_j"), "baseline", baseline)
    out.insert(out.columns.get_loc("e_base_j"), "baseline_engine", baseline_engine or out["engine"])
    # the runner's slow-path rule (measure/runner.py SLOW_PATH_FRACTION = 0.5): under half the baseline's tokens/s
    out["slow_path"] = out["speedup"] < 0.5
    return out.sort_values(["model", "engine", "quant", "batch_size", "prompt_tokens"]).reset_index(drop=True)


# --- accuracy (cited only) -------------------------------------------------------------------------------
def cited_accuracy_change(quant_accuracy: pd.DataFrame, quant: str, model: str,
                          tasks: Sequence[str] = PAPER_TASKS) -> dict[str, Any] | None:
    """Mean accuracy change of `quant` on `model` over the paper's tasks from quant_accuracy.csv, or None.

    Returns n_tasks, tasks, baseline_mean, quant_mean, loss_pp (mean of baseline - quant, in percentage
    points of the 0..1 score), rel_change (quant_mean / baseline_mean - 1), source, method_note.
    """
    wanted = set(tasks) | {TASK_SUBSTITUTES[t] for t in tasks if t in TASK_SUBSTITUTES}
    q = quant_accuracy
    rows = q[(q["quant_id"] == quant) & (q["model_id"] == model) & (q["task"].isin(wanted))]
    if rows.empty:
        return None
    rows = rows.drop_duplicates("task", keep="first")
    b, v = rows["baseline_value"].astype(float), rows["quant_value"].astype(float)
    notes = rows["notes"].fillna("").str.extract(r"^(method=[^;]+)")[0].dropna().unique()
    return {
        "n_tasks": len(rows), "tasks": ", ".join(rows["task"]),
        "baseline_mean": float(b.mean()), "quant_mean": float(v.mean()),
        "loss_pp": float((b - v).mean() * 100.0), "rel_change": float(v.mean() / b.mean() - 1.0),
        "source": "; ".join(rows["source"].unique()), "method_note": "; ".join(notes),
    }


def cited_accuracy_any_model(quant_accuracy: pd.DataFrame | None, methods: Sequence[str]) -> dict[str, Any] | None:
    """Every cited accuracy change of `methods` in quant_accuracy.csv, any model and any task, or None.

    The paper's accuracy column is a claim about a strategy, not about one model, so this pools the cited
    rows: loss_pp = -delta_abs x 100 (percentage points of the 0..1 score; positive = the method loses).
    Returns n_rows, n_sources, methods (those with rows), loss_pp_median / _min / _max, n_loss_above_1pp and
    loss_pp_values (every row's loss).
    """
    if quant_accuracy is None:
        return None
    rows = quant_accuracy[quant_accuracy["quant_id"].isin(methods)]
    loss = -pd.to_numeric(rows["delta_abs"], errors="coerce").dropna() * 100.0
    if loss.empty:
        return None
    return {"n_rows": int(len(loss)), "n_sources": int(rows.loc[loss.index, "source"].nunique()),
            "methods": ", ".join(sorted(rows.loc[loss.index, "quant_id"].unique())),
            "loss_pp_median": float(loss.median()), "loss_pp_min": float(loss.min()),
            "loss_pp_max": float(loss.max()), "n_loss_above_1pp": int((loss > 1.0).sum()),
            "loss_pp_values": [float(v) for v in loss]}


def _accuracy_for(quant_accuracy: pd.DataFrame | None, methods: Iterable[str], model: str
                  ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    found, missing = {}, []
    for q in methods:
        a = cited_accuracy_change(quant_accuracy, q, model) if quant_accuracy is not None else None
        if a is None:
            missing.append(q)
        else:
            found[q] = a
    return found, missing


# --- Table 2 ---------------------------------------------------------------------------------------------
def table2(pairs: pd.DataFrame, quant_accuracy: pd.DataFrame | None,
           accuracy_model: str = "qwen2.5-7b-instruct",
           workload: tuple[int, int] | None = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """The paper's Table 2 rebuilt from `pairs` (paired_energy output, any number of architectures): one row
    per strategy, over the pairs of one `workload` (default 256/128, the one every method was measured at;
    the paper's table is one workload too, and a median over two workloads would weight each by how many
    cells it happens to have). None pools every workload.

    Energy: median / best / worst energy_reduction_pct over the strategy's paired cells (positive = saves).
    Accuracy: the cited change of the strategy's methods on `accuracy_model` (quant_accuracy.csv); NaN with
    the reason in `accuracy_evidence` where no cited row exists. EOR improvement = (1 + rel. accuracy
    change) / energy_ratio - 1 (EOR = score / energy, same tokens per task), NaN when accuracy is missing;
    `eor_if_accuracy_equal_pct` is the energy-only part, 1 / median energy_ratio - 1.
    `accuracy_loss_pp_any_model`: the median loss (pp) over every cited row of the strategy's methods, any
    model and task (`cited_accuracy_any_model`), with its rows, sources and range in
    `accuracy_any_model_evidence`; context for the paper's claim, never used in the EOR columns.
    """
    pairs = select_workload(pairs, workload)
    rows = []
    for s in STRATEGIES:
        methods = STRATEGY_METHODS[s]
        p = pairs[pairs["quant"].isin(methods)]
        paper = PAPER_TABLE2[s]
        acc, missing = _accuracy_for(quant_accuracy, methods, accuracy_model)
        row: dict[str, Any] = {
            "strategy": s, "methods": ", ".join(methods),
            "measured_methods": ", ".join(sorted(p["quant"].unique())),
            "baseline": ", ".join(sorted(pairs["baseline"].unique())) if len(pairs) else None,
            "n_pairs": len(p), "n_architectures": p["model"].nunique(),
            "n_cross_machine": int((~p["same_machine"]).sum()) if "same_machine" in p else 0,
            "energy_reduction_median_pct": p["energy_reduction_pct"].median() if len(p) else np.nan,
            "energy_reduction_best_pct": p["energy_reduction_pct"].max() if len(p) else np.nan,
            "energy_reduction_worst_pct": p["energy_reduction_pct"].min() if len(p) else np.nan,
            "n_within_noise": int(p["within_noise"].sum()) if len(p) else 0,
            "paper_energy_reduction_pct": paper["energy_reduction_pct"],
        }
        if acc:
            # cited accuracy is per model: the EOR uses the pairs of accuracy_model only
            ap = p[p["quant"].isin(list(acc)) & (p["model"] == accuracy_model)]
            rel = ap["quant"].map({q: a["rel_change"] for q, a in acc.items()})
            row["accuracy_loss_pp"] = float(np.mean([a["loss_pp"] for a in acc.values()]))
            row["accuracy_evidence"] = "cited: " + "; ".join(f"{q} ({a['source']})" for q, a in acc.items()) + (
                f"; missing for {', '.join(missing)}" if missing else "")
            eor = (1.0 + rel) / ap["energy_ratio"] - 1.0
            row["eor_improvement_pct"] = float(eor.median() * 100.0) if len(ap) else np.nan
        else:
            row["accuracy_loss_pp"] = np.nan
            row["accuracy_evidence"] = (f"missing: no cited row in quant_accuracy.csv for {', '.join(methods)} "
                                        f"on {accuracy_model}")
            row["eor_improvement_pct"] = np.nan
        pooled = cited_accuracy_any_model(quant_accuracy, methods)
        row["accuracy_loss_pp_any_model"] = pooled["loss_pp_median"] if pooled else np.nan
        row["accuracy_any_model_evidence"] = (
            f"cited, any model: {pooled['n_rows']} rows of {pooled['methods']} from {pooled['n_sources']} "
            f"sources, loss {pooled['loss_pp_min']:+.2f} to {pooled['loss_pp_max']:+.2f} pp"
            if pooled else f"missing: no cited row for {', '.join(methods)} on any model")
        row["paper_accuracy_loss"] = paper["accuracy_loss"]
        med_ratio = p["energy_ratio"].median() if len(p) else np.nan
        row["eor_if_accuracy_equal_pct"] = (1.0 / med_ratio - 1.0) * 100.0 if len(p) else np.nan
        row["paper_eor_improvement_pct"] = paper["eor_improvement_pct"]
        if set(pairs["baseline"]) & set(methods):
            row["verdict"] = "not the paper's comparison (the baseline belongs to this strategy)"
        else:
            row["verdict"] = _verdict(row["energy_reduction_median_pct"], row["energy_reduction_best_pct"],
                                      paper["energy_reduction_pct"], len(p), best_within_noise=_best_within_noise(p))
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy")


def _accuracy_finding(quant_accuracy: pd.DataFrame | None, model: str) -> tuple[str, str, str, str]:
    """(ours, evidence, verdict, why) of the accuracy claim, from the cited rows pooled over models."""
    parts, verdicts, on_model = [], [], []
    for s in STRATEGIES:
        pooled = cited_accuracy_any_model(quant_accuracy, STRATEGY_METHODS[s])
        if pooled is None:
            parts.append(f"{s}: no cited row")
            verdicts.append(f"{s}: not checked (no cited row)")
            continue
        parts.append(f"{s} ({pooled['methods']}): median loss {pooled['loss_pp_median']:+.2f} pp, range "
                     f"{pooled['loss_pp_min']:+.2f} to {pooled['loss_pp_max']:+.2f} pp over {pooled['n_rows']} "
                     f"cited rows ({pooled['n_loss_above_1pp']} above 1 pp)")
        paper = PAPER_TABLE2[s]
        claim, strict = paper["accuracy_loss_pct"], str(paper["accuracy_loss"]).startswith("<")
        losses = np.asarray(pooled["loss_pp_values"])
        n_within = int((losses < claim).sum() if strict else (losses <= claim).sum())
        verdicts.append(f"{s}: {n_within} of {pooled['n_rows']} cited losses within the paper's "
                        f"{paper['accuracy_loss']}")
        on_model += list(_accuracy_for(quant_accuracy, STRATEGY_METHODS[s], model)[0])
    if len(verdicts) == sum(v.endswith("(no cited row)") for v in verdicts):
        return ("no cited accuracy for the paper's strategies", "missing", "not checked",
                "EOR improvement is therefore reported energy-only for the paper's strategies.")
    why = ("the cited rows are other models, tasks and harness settings than the paper's (see their notes in "
           "quant_accuracy.csv), so they bound the size of the loss rather than reproduce the paper's numbers; "
           + (f"cited rows on {model}: {', '.join(on_model)}" if on_model else
              f"none is on {model}, so Table 2's EOR column stays energy-only for it")
           + "; the paper gives its losses in %, read here as percentage points of the score (for scores near "
           "0.5-0.8 a relative % is 1.3-2x larger)")
    return ("; ".join(parts), "cited (datasets/catalog/quant_accuracy.csv, pooled over models)",
            "; ".join(verdicts), why)


def _verdict(median: float, best: float, claim: float, n: int, tol_pct: float = 5.0,
             best_within_noise: bool = False) -> str:
    if n == 0 or median is None or (isinstance(median, float) and math.isnan(median)):
        return "not measured"
    if best < 0:
        return "disagrees: uses more energy in every measured cell" + (
            " (the best one within noise)" if best_within_noise else "")
    if median < 0:
        return "disagrees on the median: saves energy only in some cells"
    if abs(median - claim) <= tol_pct:
        return "agrees"
    return "same direction, larger saving" if median > claim else "same direction, smaller saving"


def _best_within_noise(p: pd.DataFrame) -> bool:
    return bool(len(p)) and bool(p.loc[p["energy_reduction_pct"].idxmax(), "within_noise"])


def method_table(pairs: pd.DataFrame, quant_accuracy: pd.DataFrame | None,
                 accuracy_model: str = "qwen2.5-7b-instruct",
                 workload: tuple[int, int] | None = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """Like table2 but one row per measured method (including methods the paper has no strategy for), over
    the pairs of one `workload` (default 256/128; None pools every workload). Energy columns cover every
    architecture in `pairs`; the EOR improvement only `accuracy_model`'s pairs."""
    pairs = select_workload(pairs, workload)
    rows = []
    for q, p in pairs.groupby("quant", sort=False):
        acc = cited_accuracy_change(quant_accuracy, q, accuracy_model) if quant_accuracy is not None else None
        row = {"quant": q, "strategy": strategy_of(q) or "(not in the paper)", "n_pairs": len(p),
               "n_architectures": p["model"].nunique(),
               "energy_reduction_median_pct": p["energy_reduction_pct"].median(),
               "energy_reduction_best_pct": p["energy_reduction_pct"].max(),
               "energy_reduction_worst_pct": p["energy_reduction_pct"].min(),
               "speedup_median": p["speedup"].median(), "power_ratio_median": p["power_ratio"].median()}
        if acc:
            row["accuracy_loss_pp"] = acc["loss_pp"]
            row["accuracy_tasks"] = acc["tasks"]
            row["accuracy_evidence"] = f"cited ({acc['method_note']}): {acc['source']}"
            pm = p[p["model"] == accuracy_model]  # cited accuracy is per model
            row["eor_improvement_pct"] = (float(((1.0 + acc["rel_change"]) / pm["energy_ratio"] - 1.0).median() * 100)
                                          if len(pm) else np.nan)
        else:
            row["accuracy_loss_pp"], row["accuracy_tasks"], row["eor_improvement_pct"] = np.nan, None, np.nan
            row["accuracy_evidence"] = "missing (no cited row in quant_accuracy.csv)"
        rows.append(row)
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    order = {q: i for i, q in enumerate(METHOD_ORDER)}
    return t.sort_values("quant", key=lambda s: s.map(order).fillna(99)).set_index("quant")


def paper_consistency() -> pd.DataFrame:
    """Check Table 2 against itself: EOR = score / energy implies EOR_imp = (1 - acc_loss) / (1 - energy_red) - 1.

    The accuracy loss is read as a relative loss (the most favourable reading for the paper); a loss in
    percentage points of a score below 1 implies an even smaller EOR improvement.
    """
    rows = []
    for s, p in PAPER_TABLE2.items():
        e, a = p["energy_reduction_pct"] / 100.0, p["accuracy_loss_pct"] / 100.0
        implied = ((1.0 - a) / (1.0 - e) - 1.0) * 100.0
        rows.append({"strategy": s, "paper_energy_reduction_pct": p["energy_reduction_pct"],
                     "paper_accuracy_loss": p["accuracy_loss"], "paper_eor_improvement_pct": p["eor_improvement_pct"],
                     "implied_eor_improvement_pct": implied,
                     "energy_only_eor_improvement_pct": (1.0 / (1.0 - e) - 1.0) * 100.0,
                     "difference_pp": p["eor_improvement_pct"] - implied})
    return pd.DataFrame(rows).set_index("strategy")


# --- co-optimisation, distillation -----------------------------------------------------------------------
def co_optimisation(df: pd.DataFrame, baseline: str = "bf16", baseline_engine: str = "hf-eager") -> pd.DataFrame:
    """Every ok cell (any engine x method) against `baseline` on `baseline_engine` at the same batch and
    workload: the engine x quantization part of the paper's 'hardware x quantization co-optimisation'.
    (The hardware part needs several card types; we measured one.)"""
    return paired_energy(df, baseline, baseline_engine=baseline_engine).sort_values(
        "energy_reduction_pct", ascending=False).reset_index(drop=True)


def distillation_check(models: pd.DataFrame, distilled: str = "deepseek-r1-distill-qwen-7b") -> pd.DataFrame:
    """Shape columns of a distilled model and the model its `architecture_of` names, side by side.

    Decode energy and time per token depend on tensor shapes (weight bytes, FLOPs, KV bytes), not on the
    weight values, so identical shapes mean identical J/token in our scope.
    """
    m = models.set_index("id")
    base = m.loc[distilled, "architecture_of"]
    shape_cols = ["model_type", "num_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                  "num_kv_heads", "head_dim", "vocab_size", "tie_word_embeddings", "hidden_act", "mlp_gated",
                  "attention_bias", "params_b"]
    t = m.loc[[distilled, base], shape_cols].T
    t["identical"] = t[distilled].astype(str) == t[base].astype(str)
    t.attrs["architecture_of"] = base
    t.attrs["max_position_embeddings"] = (m.loc[distilled, "max_position_embeddings"],
                                          m.loc[base, "max_position_embeddings"])
    return t


# --- engine: compiled vs eager on the same cell -----------------------------------------------------------
def engine_effect(df: pd.DataFrame, engine: str = "hf-compiled", baseline_engine: str = "hf-eager",
                  extra: Sequence[str] = ()) -> pd.DataFrame:
    """Each ok `engine` cell against the `baseline_engine` cell of the same model, method (quant), batch and
    workload in the same file, with `paired_energy`'s pairing, means and noise (`_pair_cells`; `extra` columns of
    both cells as <column>_method and <column>_base).

    e_base_j / e_method_j: decode J per output token of the baseline engine (eager) / the engine (compiled);
    energy_ratio = e_method_j / e_base_j; energy_reduction_pct positive = `engine` saves energy; speedup =
    tokens/s ratio; power_ratio = decode power ratio (energy_ratio x speedup); noise_pct / within_noise as in
    `paired_energy`; same_gpu_unit / same_machine: whether the two cells ran on one GPU / machine.
    """
    d = cell_means(df)
    keys = ["gpu_id", "model", "quant", "batch_size", "prompt_tokens", "output_tokens"]
    out = _pair_cells(d[d["engine"] == engine], d[d["engine"] == baseline_engine], keys, extra)
    out.insert(out.columns.get_loc("e_base_j"), "baseline_engine", baseline_engine)
    return out.sort_values(["quant", "model", "batch_size", "prompt_tokens", "slice"]).reset_index(drop=True)


def _card_keys(t: pd.DataFrame) -> list[str]:
    """['gpu_id'] where the frame has the card column, else []: group keys start with the card type, so two
    cards' rows of one cell are never pooled."""
    return ["gpu_id"] if "gpu_id" in t else []


def engine_effect_per_architecture(t: pd.DataFrame, quant: str = "bf16") -> pd.DataFrame:
    """`engine_effect` rows of one method reduced to one row per (card `gpu_id`, workload, batch, model): the
    mean over the model's pairs where a cell was paired in two files, so each architecture counts once per
    card. `pairs` says how many were averaged; within_noise / same_gpu_unit / same_machine are true only if
    true for every pair."""
    g = t[t["quant"] == quant].groupby([*_card_keys(t), "workload", "batch_size", "model"])
    return pd.DataFrame({
        "pairs": g.size(), "e_base_j": g["e_base_j"].mean(), "e_method_j": g["e_method_j"].mean(),
        "energy_reduction_pct": g["energy_reduction_pct"].mean(), "noise_pct": g["noise_pct"].mean(),
        "speedup": g["speedup"].mean(), "power_ratio": g["power_ratio"].mean(),
        "within_noise": g["within_noise"].all(), "same_gpu_unit": g["same_gpu_unit"].all(),
        "same_machine": g["same_machine"].all()}).reset_index()


def engine_effect_summary(t: pd.DataFrame, quant: str = "bf16") -> pd.DataFrame:
    """Per (card `gpu_id`, workload, batch): the spread across architectures of the engine effect on one method
    (each architecture once, `engine_effect_per_architecture`): median / min / max energy reduction (%), the
    architectures at the two ends, median speedup and power ratio, and how many architectures save energy
    beyond noise, cost energy beyond noise, or differ within noise, and ran both cells on one GPU unit."""
    a = engine_effect_per_architecture(t, quant)
    keys = [*_card_keys(a), "workload", "batch_size"]
    rows = []
    for k, g in a.groupby(keys):
        beyond = ~g["within_noise"]
        rows.append({**dict(zip(keys, k, strict=True)), "architectures": g["model"].nunique(),
                     "energy_reduction_median_pct": g["energy_reduction_pct"].median(),
                     "energy_reduction_min_pct": g["energy_reduction_pct"].min(),
                     "energy_reduction_max_pct": g["energy_reduction_pct"].max(),
                     "least_saving": g.loc[g["energy_reduction_pct"].idxmin(), "model"],
                     "most_saving": g.loc[g["energy_reduction_pct"].idxmax(), "model"],
                     "speedup_median": g["speedup"].median(), "power_ratio_median": g["power_ratio"].median(),
                     "n_saves_beyond_noise": int((beyond & (g["energy_reduction_pct"] > 0)).sum()),
                     "n_costs_beyond_noise": int((beyond & (g["energy_reduction_pct"] < 0)).sum()),
                     "n_within_noise": int(g["within_noise"].sum()),
                     "n_same_gpu_unit": int(g["same_gpu_unit"].sum()),
                     "n_same_machine": int(g["same_machine"].sum())})
    return pd.DataFrame(rows)


def method_cost_by_engine(df: pd.DataFrame, models: pd.DataFrame, baseline: str = "bf16") -> pd.DataFrame:
    """Every compiled cell of a method against compiled `baseline` (same card type, model, batch, workload and
    file), next to the same method against eager `baseline` on the same card: does compiling remove the
    method's extra cost?

    Per engine (suffix _eager / _compiled): energy_reduction_pct vs the baseline on that engine (positive =
    the method saves energy), noise_pct / within_noise (`paired_energy`), speedup, and the extra decode step
    time per layer, overhead_per_layer_ms = (1000 x batch / tokens_per_s of the method - the same of the
    baseline) / num_layers (ms; the quantity `layer_overhead` reports for eager). NaN where the eager pair is
    missing."""
    p = paired_energy(df, baseline)
    layers = models.set_index("id")["num_layers"]
    p["num_layers"] = p["model"].map(layers)
    num = {c: pd.to_numeric(p[c]) for c in ("batch_size", "tokens_per_s_method", "tokens_per_s_base", "num_layers")}
    p["overhead_per_layer_ms"] = (1000.0 * num["batch_size"] / num["tokens_per_s_method"]
                                  - 1000.0 * num["batch_size"] / num["tokens_per_s_base"]) / num["num_layers"]
    keys = ["gpu_id", "model", "quant", "batch_size", "prompt_tokens", "output_tokens", "workload", "slice",
            "num_layers"]
    cols = ["energy_reduction_pct", "noise_pct", "within_noise", "speedup", "overhead_per_layer_ms", "same_gpu_unit",
            "same_machine"]
    comp = p[p["engine"] == "hf-compiled"][keys + cols]
    eager = p[p["engine"] == "hf-eager"][keys + cols]
    out = comp.merge(eager, on=keys, how="left", suffixes=("_compiled", "_eager"))
    return _sorted_by_method(out)


def compiled_method_summary(mc: pd.DataFrame, workload: str | None = "256/128") -> pd.DataFrame:
    """Per quantized method, its compiled cells against compiled bf16 (`method_cost_by_engine` rows with a
    compiled pair, one workload; None = all): `pairs_summary`'s pairs, architectures, decode J/token ratio method
    / bf16 (median, min, max) and counts beyond or within the repetition noise, and the speed ratio (min, max)."""
    t = mc[mc["energy_reduction_pct_compiled"].notna() & ~mc["quant"].isin(["fp16", "bf16", "fp32"])]
    if workload is not None:
        t = t[t["workload"] == workload]
    pairs = pd.DataFrame({"quant": t["quant"], "model": t["model"],
                          "energy_ratio": 1.0 - t["energy_reduction_pct_compiled"] / 100.0,
                          "within_noise": t["within_noise_compiled"], "speedup": t["speedup_compiled"]})
    out = pairs_summary(pairs, by=("quant",))
    g = pairs.groupby("quant", sort=False)["speedup"]
    out = out.assign(speedup_min=g.min(), speedup_max=g.max())
    cols = ["pairs", "architectures", "energy_ratio_median", "energy_ratio_min", "energy_ratio_max",
            "saves_beyond_noise", "costs_beyond_noise", "within_noise", "speedup_min", "speedup_max"]
    return out[cols].astype({c: int for c in ("pairs", "architectures", "saves_beyond_noise", "costs_beyond_noise",
                                              "within_noise")})


def pairs_summary(pairs: pd.DataFrame, by: Sequence[str] = ("gpu_id", "quant")) -> pd.DataFrame:
    """`paired_energy` rows summarised per group (`by`): pairs, architectures, the decode J/token ratio method /
    baseline (median, min, max), how many pairs use less energy at all (`lower`), save beyond the repetition
    noise, cost more beyond it or lie within it, and the median speed ratio."""
    ratio = pairs["energy_ratio"]
    beyond = ~pairs["within_noise"].astype(bool)
    d = pairs.assign(lower=ratio < 1, saves=beyond & (ratio < 1), costs=beyond & (ratio > 1), within=~beyond)
    g = d.groupby(list(by), sort=False)
    return pd.DataFrame({"pairs": g.size(), "architectures": g["model"].nunique(),
                         "energy_ratio_median": g["energy_ratio"].median(), "energy_ratio_min": g["energy_ratio"].min(),
                         "energy_ratio_max": g["energy_ratio"].max(), "lower": g["lower"].sum(),
                         "saves_beyond_noise": g["saves"].sum(), "costs_beyond_noise": g["costs"].sum(),
                         "within_noise": g["within"].sum(), "speedup_median": g["speedup"].median()})


def compiled_pairs_side_by_side(df: pd.DataFrame, models: pd.DataFrame, reference: pd.DataFrame | None = None,
                                baseline: str = "bf16") -> pd.DataFrame:
    """`method_cost_by_engine` rows of the compiled non-16-bit cells of `df` (one store: e.g. the repeats,
    where a grid measured a method and its baseline in one call), with `energy_reduction_pct_compiled_reference`:
    the same pair's figure in `reference` (another `method_cost_by_engine` table, e.g. the campaign's; NaN
    where it has none)."""
    t = method_cost_by_engine(df, models, baseline)
    t = t[~t["quant"].isin(["fp16", "bf16"]) & t["energy_reduction_pct_compiled"].notna()]
    keys = ["gpu_id", "model", "quant", "batch_size", "workload"]
    if reference is None or reference.empty:
        return t.assign(energy_reduction_pct_compiled_reference=np.nan).reset_index(drop=True)
    # one figure per pair: the campaign's where both the probe and the campaign hold one
    ref = (reference.assign(_campaign=reference["slice"] == "campaign").sort_values("_campaign", ascending=False)
           [keys + ["energy_reduction_pct_compiled"]].drop_duplicates(keys))
    return t.merge(ref, on=keys, how="left", suffixes=("", "_reference")).reset_index(drop=True)


EXPERIMENTS = MEASUREMENTS / "experiments"


def compile_shape_comparison(df: pd.DataFrame, experiment: str = "compile-shapes") -> pd.DataFrame:
    """hf-compiled cells measured with torch's automatic dynamic shapes (the campaign's setting, no `dynamic`
    engine param) and with `dynamic: false` (a static graph per batch size), one row per (model, batch size,
    workload, quant) held by both: decode J/token, tokens/s and TTFT ratios static / automatic, the repetition
    noise of the energy ratio (`noise_pct`, %), each variant's dynamo graph counts, and `graph_auto` ('static'
    where the automatic cell timed the static graph of its process's first batch size, else 'dynamic').

    `control_energy_ratio` is the same model's (workload's, method's) ratio at the batch size where both variants
    timed a static graph (the model's first batch size in the process): what the two runs differ by with nothing changed (another GPU
    unit, another time); `energy_ratio_vs_control` = energy_ratio / control_energy_ratio. `df`: records of
    experiments/ (`load_records(EXPERIMENTS, sessions=MEASUREMENTS)`); where it has a `slice` column only the
    `experiment` store's rows count (other stores hold compiled bf16 cells of the campaign's setting too).
    """
    d = df[(df["status"] == "ok") & (df["engine"] == "hf-compiled")]
    if "slice" in d.columns:
        d = d[d["slice"] == experiment]
    d = d.copy()
    params = d["engine_params"].apply(lambda p: p if isinstance(p, dict) else {})
    d["variant"] = params.apply(lambda p: {False: "static", True: "dynamic", None: "auto"}.get(p.get("dynamic")))
    d["before"] = params.apply(lambda p: list(p.get("batch_sizes_before") or []))
    d["graphs_warmup"] = params.apply(lambda p: p.get("graphs_compiled_warmup"))
    d["graphs_timed"] = params.apply(lambda p: p.get("graphs_compiled_timed"))
    keys = ["model", "batch_size", "workload", "quant"]
    d = d.sort_values("created_at").drop_duplicates([*keys, "variant"], keep="last")
    a = d[d["variant"] == "auto"].set_index(keys)
    s = d[d["variant"] == "static"].set_index(keys)
    both = a.index.intersection(s.index)
    a, s = a.loc[both], s.loc[both]
    t = pd.DataFrame(index=both)
    t["e_auto_j"], t["e_static_j"] = a["decode_energy_per_token_j"], s["decode_energy_per_token_j"]
    t["energy_ratio"] = t["e_static_j"] / t["e_auto_j"]
    t["speed_ratio"] = s["tokens_per_s"] / a["tokens_per_s"]
    t["ttft_ratio"] = s["ttft_ms"] / a["ttft_ms"]
    t["noise_pct"] = noise_pct(a["energy_cv"], a["repetitions"], s["energy_cv"], s["repetitions"])
    t["beyond_noise"] = (t["energy_ratio"] - 1.0).abs() * 100.0 > t["noise_pct"]
    t["graph_auto"] = np.where(a["before"].apply(len) == 0, "static", "dynamic")
    t["graphs_warmup_auto"], t["graphs_warmup_static"] = a["graphs_warmup"], s["graphs_warmup"]
    t["graphs_timed_auto"], t["graphs_timed_static"] = a["graphs_timed"], s["graphs_timed"]
    t["same_gpu_unit"] = a["gpu_uuid"].to_numpy() == s["gpu_uuid"].to_numpy()
    t = t.reset_index()
    group = ["model", "workload", "quant"]
    control = t[t["graph_auto"] == "static"].groupby(group)["energy_ratio"].first().rename("control_energy_ratio")
    t = t.merge(control, left_on=group, right_index=True, how="left")
    t["energy_ratio_vs_control"] = t["energy_ratio"] / t["control_energy_ratio"]
    return t.sort_values(["model", "batch_size"]).reset_index(drop=True)


def compile_shape_summary(t: pd.DataFrame) -> pd.DataFrame:
    """`compile_shape_comparison` rows summarised per `graph_auto` ('static': both variants timed the same
    static graph, the control; 'dynamic': the automatic cell timed a dynamic-batch graph): cells, the energy
    and speed ratios static / automatic (median, min, max), the median |energy ratio - 1| (%), how many lie
    beyond their repetition noise, and the median ratio after dividing by the model's control."""
    rows = []
    for graph, g in t.groupby("graph_auto"):
        rows.append({"graph_auto": graph, "cells": len(g), "energy_ratio_median": g["energy_ratio"].median(),
                     "energy_ratio_min": g["energy_ratio"].min(), "energy_ratio_max": g["energy_ratio"].max(),
                     "energy_abs_diff_median_pct": ((g["energy_ratio"] - 1.0).abs() * 100.0).median(),
                     "beyond_noise": int(g["beyond_noise"].sum()), "speed_ratio_median": g["speed_ratio"].median(),
                     "speed_ratio_min": g["speed_ratio"].min(), "speed_ratio_max": g["speed_ratio"].max(),
                     "energy_ratio_vs_control_median": g["energy_ratio_vs_control"].median()})
    return pd.DataFrame(rows).set_index("graph_auto")


def same_machine_baseline(df: pd.DataFrame, reference: pd.DataFrame, baseline: str = "bf16") -> pd.DataFrame:
    """Each ok cell of `df` (not itself `baseline`) against the `baseline` cells of `reference` measured on the
    same machine (same engine, model, batch size and workload; e.g. a campaign cell against the bf16 cells of an
    experiment store from the same call): the decode J/token and tokens/s ratios cell / baseline, min and max
    over the matching baseline records (`n_baseline`), and `noise_pct`, the largest repetition noise of those
    ratios (`noise_pct`; NaN where the frames carry no `energy_cv` and `repetitions`). Cells with no
    same-machine baseline are left out; both frames need `machine` (`load_records`)."""
    keys = ["engine", "model", "batch_size", "workload"]
    d = df[(df["status"] == "ok") & (df["quant"] != baseline) & (df["machine"] != "?")]
    ref = reference[(reference["status"] == "ok") & (reference["quant"] == baseline)]
    spread = [c for c in ("energy_cv", "repetitions") if c in d.columns and c in ref.columns]
    m = d.merge(ref[[*keys, "machine", "decode_energy_per_token_j", "tokens_per_s", *spread]], on=[*keys, "machine"],
                suffixes=("", "_base"))
    m["energy_ratio"] = m["decode_energy_per_token_j"] / m["decode_energy_per_token_j_base"]
    m["speed_ratio"] = m["tokens_per_s"] / m["tokens_per_s_base"]
    m["noise_pct"] = (noise_pct(m["energy_cv"], m["repetitions"], m["energy_cv_base"], m["repetitions_base"])
                      if len(spread) == 2 else np.nan)
    cols = ["machine", *keys, "quant", "record_id"]
    g = m.groupby(cols, sort=False)
    out = g.agg(energy_ratio_min=("energy_ratio", "min"), energy_ratio_max=("energy_ratio", "max"),
                speed_ratio_min=("speed_ratio", "min"), speed_ratio_max=("speed_ratio", "max"),
                n_baseline=("energy_ratio", "size"), noise_pct=("noise_pct", "max")).reset_index()
    return _sorted_by_method(out)


def remeasured(rejected: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Each rejected record against the ok records of the same cell (cell keys, quant, card) measured after it:
    decode J/token and tokens/s of both, `energy_ratio` / `speed_ratio` new / rejected (the mean of the new
    records), `n_new` and whether any new record ran on the rejected one's machine. Rejected cells not
    measured again are left out."""
    keys = [*CELL_KEYS, "quant", "gpu_id"]
    new = records[records["status"] == "ok"]
    m = rejected.merge(new[[*keys, "created_at", "machine", "decode_energy_per_token_j", "tokens_per_s"]], on=keys,
                       suffixes=("", "_new"))
    m = m[m["created_at_new"] > m["created_at"]]
    g = m.groupby([*keys, "record_id"], sort=False)
    t = g.agg(machine=("machine", "first"), e_rejected_j=("decode_energy_per_token_j", "first"),
              e_new_j=("decode_energy_per_token_j_new", "mean"), tokens_per_s_rejected=("tokens_per_s", "first"),
              tokens_per_s_new=("tokens_per_s_new", "mean"), n_new=("created_at_new", "size"),
              same_machine=("machine_new", lambda s: bool((s == m.loc[s.index, "machine"]).any()))).reset_index()
    t["energy_ratio"] = t["e_new_j"] / t["e_rejected_j"]
    t["speed_ratio"] = t["tokens_per_s_new"] / t["tokens_per_s_rejected"]
    return _sorted_by_method(t)


def torchao_settings_comparison(experiments: pd.DataFrame, records: pd.DataFrame, baseline: str = "bf16",
                                experiment: str = "compiled-torchao-settings",
                                default_experiment: str = "compiled-torchao-default") -> pd.DataFrame:
    """Compiled torchao cells measured without torchao's inductor settings (quant param `set_inductor_config:
    false`, the stores whose name starts with `experiment`: the s9 store and its repeat) against cells of the
    same model, method, batch size and workload with them (torchao's default), one row per cell held by both.

    The `with` side is the `default_experiment` store's cell where one ran on the same machine, else the
    campaign's (`cell_means` of `records`' method records, any machine); `with_from` names it. `energy_ratio` /
    `speed_ratio` / `compile_ratio`: decode J/token, tokens/s and warm-up compile time, without / with;
    `noise_pct` the repetition noise of the energy ratio and `beyond_noise`; `same_machine`. `e_bf16_j` is
    compiled `baseline` of the cell (the experiment stores' records on the `without` cell's machine where there
    are any, else the campaign's cell mean; `bf16_same_machine` says which) and `energy_ratio_vs_bf16_with` /
    `_without` each variant against it. A cell measured without the settings on several machines counts once:
    a same-machine pair first, then the default store's, then the latest. Records with a `dynamic` engine param
    (the graph-shape experiment's variants) are left out.
    """
    keys = ["engine", "model", "quant", "batch_size", "workload"]
    cols = ["decode_energy_per_token_j", "tokens_per_s", "compile_time_s", "energy_cv", "repetitions", "machine"]
    ex = experiments[(experiments["status"] == "ok") & (experiments["engine"] == "hf-compiled")]
    ex = ex[ex["engine_params"].apply(lambda p: not (isinstance(p, dict) and "dynamic" in p))]
    ex = ex.sort_values("created_at").drop_duplicates([*keys, "gpu_id", "machine", "slice"], keep="last")
    x = _settings_off(ex, experiment)
    cm = cell_means(method_records(records))
    cm = cm[cm["engine"] == "hf-compiled"].assign(workload=lambda d: workload_of(d))
    cm = (cm.assign(_campaign=cm["slice"] == "campaign").sort_values("_campaign", ascending=False)
          .drop_duplicates([*keys, "gpu_id"]))
    dflt = ex[ex["slice"] == default_experiment]
    pool = pd.concat([dflt[[*keys, "gpu_id", *cols, "slice"]].assign(_order=0),
                      cm[[*keys, "gpu_id", *cols, "slice"]].assign(_order=1)], ignore_index=True)
    m = x[[*keys, "gpu_id", "created_at", *cols]].merge(pool, on=[*keys, "gpu_id"], suffixes=("_without", "_with"))
    m["_other_machine"] = m["machine_with"] != m["machine_without"]
    m = m[(m["_order"] == 1) | ~m["_other_machine"]]  # the default store counts on the same machine only
    m = (m.sort_values(["_other_machine", "_order", "created_at"], ascending=[True, True, False])
         .drop_duplicates([*keys, "gpu_id"]).reset_index(drop=True))
    ex_base = ex[ex["quant"] == baseline][["engine", "model", "batch_size", "workload", "gpu_id", "machine",
                                           "decode_energy_per_token_j"]].rename(
        columns={"decode_energy_per_token_j": "_e_same", "machine": "machine_without"})
    ex_base = ex_base.groupby(["engine", "model", "batch_size", "workload", "gpu_id", "machine_without"],
                              as_index=False)["_e_same"].mean()
    cm_base = cm[cm["quant"] == baseline][["engine", "model", "batch_size", "workload", "gpu_id",
                                           "decode_energy_per_token_j"]].rename(
        columns={"decode_energy_per_token_j": "_e_any"})
    m = m.merge(ex_base, on=["engine", "model", "batch_size", "workload", "gpu_id", "machine_without"], how="left")
    m = m.merge(cm_base, on=["engine", "model", "batch_size", "workload", "gpu_id"], how="left")
    t = m[keys].copy()
    t["with_from"] = m["slice"]
    t["e_with_j"], t["e_without_j"] = m["decode_energy_per_token_j_with"], m["decode_energy_per_token_j_without"]
    t["energy_ratio"] = t["e_without_j"] / t["e_with_j"]
    t["speed_ratio"] = m["tokens_per_s_without"] / m["tokens_per_s_with"]
    t["compile_ratio"] = m["compile_time_s_without"] / m["compile_time_s_with"]
    t["noise_pct"] = noise_pct(m["energy_cv_with"], m["repetitions_with"], m["energy_cv_without"],
                               m["repetitions_without"])
    t["beyond_noise"] = (t["energy_ratio"] - 1.0).abs() * 100.0 > t["noise_pct"]
    t["same_machine"] = ~m["_other_machine"]
    t["bf16_same_machine"] = m["_e_same"].notna()
    t["e_bf16_j"] = m["_e_same"].fillna(m["_e_any"])
    t["energy_ratio_vs_bf16_with"] = t["e_with_j"] / t["e_bf16_j"]
    t["energy_ratio_vs_bf16_without"] = t["e_without_j"] / t["e_bf16_j"]
    return _sorted_by_method(t)


def _settings_off(experiments: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The records of the stores whose name starts with `experiment` that ran without torchao's inductor settings
    (quant param `set_inductor_config: false`)."""
    x = experiments[experiments["slice"].str.startswith(experiment)]
    return x[x["quant_params"].apply(lambda p: isinstance(p, dict) and p.get("set_inductor_config") is False)
             .astype(bool)]


def torchao_settings_summary(t: pd.DataFrame) -> pd.DataFrame:
    """`torchao_settings_comparison` rows summed up per batch size and whether both settings ran on one machine:
    `cells`, `models`, the energy ratio (without / with the settings) min / median / max, how many cells were
    `lower_beyond_noise` / `higher_beyond_noise`, the speed ratio min / median / max and the compile ratio min /
    max."""
    g = t.assign(_lower=t["beyond_noise"] & (t["energy_ratio"] < 1),
                 _higher=t["beyond_noise"] & (t["energy_ratio"] > 1)).groupby(["same_machine", "batch_size"])
    return g.agg(cells=("energy_ratio", "size"), models=("model", "nunique"),
                 energy_ratio_min=("energy_ratio", "min"), energy_ratio_median=("energy_ratio", "median"),
                 energy_ratio_max=("energy_ratio", "max"), lower_beyond_noise=("_lower", "sum"),
                 higher_beyond_noise=("_higher", "sum"), speed_ratio_min=("speed_ratio", "min"),
                 speed_ratio_median=("speed_ratio", "median"), speed_ratio_max=("speed_ratio", "max"),
                 compile_ratio_min=("compile_ratio", "min"), compile_ratio_max=("compile_ratio", "max"))


def settings_off_across_machines(experiments: pd.DataFrame, experiment: str = "compiled-torchao-settings"
                                 ) -> pd.DataFrame:
    """The same compiled torchao cell measured without torchao's inductor settings (`set_inductor_config: false`,
    the stores whose name starts with `experiment`) on two machines: one row per cell and pair of machines,
    `energy_ratio` / `speed_ratio` the later machine's decode J/token and tokens/s over the earlier's, with the
    repetition `noise_pct` and `beyond_noise`. How far one setting moves between machines, to read the settings
    comparison across machines against."""
    keys = ["engine", "model", "quant", "batch_size", "workload", "gpu_id"]
    ex = _settings_off(experiments[experiments["status"] == "ok"], experiment)
    ex = ex.sort_values("created_at").drop_duplicates([*keys, "machine"], keep="last")
    cols = ["machine", "created_at", "decode_energy_per_token_j", "tokens_per_s", "energy_cv", "repetitions"]
    m = ex[[*keys, *cols]].merge(ex[[*keys, *cols]], on=keys, suffixes=("_a", "_b"))
    m = m[m["created_at_a"] < m["created_at_b"]]
    t = m[[*keys, "machine_a", "machine_b"]].copy()
    t["e_a_j"], t["e_b_j"] = m["decode_energy_per_token_j_a"], m["decode_energy_per_token_j_b"]
    t["energy_ratio"] = t["e_b_j"] / t["e_a_j"]
    t["speed_ratio"] = m["tokens_per_s_b"] / m["tokens_per_s_a"]
    t["noise_pct"] = noise_pct(m["energy_cv_a"], m["repetitions_a"], m["energy_cv_b"], m["repetitions_b"])
    t["beyond_noise"] = (t["energy_ratio"] - 1.0).abs() * 100.0 > t["noise_pct"]
    return _sorted_by_method(t)


# --- decode profiles: where a compiled step's GPU time goes (scripts/profile_decode.py) ------------------------
def decode_profiles(root: Path = ROOT / "datasets" / "measurements") -> pd.DataFrame:
    """Every decode profile filed under `root` (`<card>/raw/<call>/profile-*.json`), one row each: the call, the
    cell (model, quant, engine, batch_size), `onednn_off` (the call's command switched `torch.backends.mkldnn`
    off before compiling, or the profile's engine params asked for it: `woq_lowering: false`), tokens/s, GPU busy
    and profiled wall time (ms), `woq_rewrites` (linears inductor rewrote to aten._weight_int8pack_mm, its
    `woq_matcher_count`; 0 where it counted none), `graph_cache_hit` (the compiled graph came from inductor's
    FX graph cache, so it was compiled by an earlier process, with that process's settings), and the top
    kernel by GPU time with its share of the busy time (rows that are not kernels left out by name: compiled
    regions and graph calls, `aten::` operators, CUDA runtime calls and the profiler's own buffers)."""
    rows = []
    for path in sorted(root.glob("*/raw/*/profile-*.json")):
        d = json.loads(path.read_text())
        call = path.parent / "device-call.json"
        command = json.loads(call.read_text()).get("command", "") if call.exists() else ""
        inductor = (d.get("dynamo_counters") or {}).get("inductor") or {}
        kernels = [r for r in d.get("top") or [] if not r["name"].startswith(("Torch-Compiled", "## Call", "aten::",
                                                                            "cuda", "Activity", "Buffer"))]
        top = max(kernels, key=lambda r: r["device_total_ms"], default=None)
        busy = d.get("gpu_busy_ms")
        rows.append({
            "card": path.parts[-4], "call": path.parent.name, "file": path.name, "model": d["model"],
            "quant": d["quant"], "engine": d["engine"], "batch_size": d["batch_size"],
            "onednn_off": "mkldnn.enabled=False" in command.replace(" ", "")
                          or (d.get("engine_params") or {}).get("woq_lowering") is False,
            "tokens_per_s": d["tokens_per_s"], "gpu_busy_ms": busy, "profiled_wall_ms": d["profiled_wall_ms"],
            "woq_rewrites": int(inductor.get("woq_matcher_count", 0)),
            "graph_cache_hit": bool(inductor.get("fxgraph_cache_hit", 0)),
            "top_kernel": None if top is None else top["name"][:70],
            "top_kernel_share": None if top is None or not busy else top["device_total_ms"] / busy,
        })
    return pd.DataFrame(rows)


def _machine_medians(d: pd.DataFrame, by: list[str], **extra) -> pd.DataFrame:
    """Per `by` group (cells of one machine): median tokens/s, decode J/token and energy CV, the fewest
    repetitions and the number of records (`records`), plus the `extra` named aggregations; one row per group."""
    return (d.groupby(by)
            .agg(tokens_per_s=("tokens_per_s", "median"), decode_energy_per_token_j=("decode_energy_per_token_j", "median"),
                 energy_cv=("energy_cv", "median"), repetitions=("repetitions", "min"), records=("tokens_per_s", "size"),
                 **extra)
            .reset_index())


def woq_switch_comparison(switch: pd.DataFrame, campaign: pd.DataFrame, quant: str = "torchao-int8-wo",
                          baseline: str = "bf16") -> pd.DataFrame:
    """Compiled `quant` with inductor's weight-only int8 rewrite kept out (hf-compiled engine param
    `woq_lowering: false`, the records of `switch`), one row per cell and machine: its decode J/token and
    tokens/s (median over that machine's records), against `baseline` measured the same way on the same machine
    (`*_bf16`, NaN where that machine has none; `same_gpu`: both on one GPU unit) and against the card's campaign
    cell of `quant` with torch's default, the rewrite (`*_rewrite`, median over the campaign's records, other
    machines). `energy_vs_bf16` / `speed_vs_bf16` the switch's J/token and tokens/s over the same-machine
    baseline's, `noise_pct` their repetition noise and `beyond_noise`; `energy_vs_rewrite` / `speedup_vs_rewrite`
    over the rewrite's (across machines: read against the anchors' machine offsets)."""
    keys = ["gpu_id", "model", "batch_size", "workload"]
    off = switch[(switch["status"] == "ok") & (switch["engine"] == "hf-compiled")
                 & switch["engine_params"].apply(lambda p: isinstance(p, dict) and p.get("woq_lowering") is False)]
    per = _machine_medians(off, [*keys, "machine", "quant"], gpu_units=("gpu_unit", lambda u: frozenset(u)))
    t = per[per["quant"] == quant].drop(columns="quant")
    base = per[per["quant"] == baseline].drop(columns=["quant", "records"])
    t = t.merge(base, on=[*keys, "machine"], how="left", suffixes=("", "_bf16"))
    t["same_gpu"] = [isinstance(b, frozenset) and a == b for a, b in zip(t["gpu_units"], t["gpu_units_bf16"],
                                                                           strict=True)]
    t["energy_vs_bf16"] = t["decode_energy_per_token_j"] / t["decode_energy_per_token_j_bf16"]
    t["speed_vs_bf16"] = t["tokens_per_s"] / t["tokens_per_s_bf16"]
    t["noise_pct"] = noise_pct(t["energy_cv"], t["repetitions"], t["energy_cv_bf16"], t["repetitions_bf16"])
    t["beyond_noise"] = (t["energy_vs_bf16"] - 1.0).abs() * 100.0 > t["noise_pct"]
    camp = campaign[(campaign["status"] == "ok") & (campaign["engine"] == "hf-compiled") & (campaign["quant"] == quant)]
    rewrite = camp.groupby(keys)[["tokens_per_s", "decode_energy_per_token_j"]].median().add_suffix("_rewrite")
    t = t.merge(rewrite.reset_index(), on=keys, how="left")
    t["speedup_vs_rewrite"] = t["tokens_per_s"] / t["tokens_per_s_rewrite"]
    t["energy_vs_rewrite"] = t["decode_energy_per_token_j"] / t["decode_energy_per_token_j_rewrite"]
    t = t.drop(columns=["gpu_units", "gpu_units_bf16", "repetitions_bf16"])
    return t.sort_values([*keys, "machine"]).reset_index(drop=True)


def attention_variant(params: Any) -> str:
    """A record's attention setting from its engine params (measure/engines/attention.py): 'default' (neither
    `attn_implementation` nor `sdpa_gqa` other than 'auto'), else e.g. 'sdpa_gqa=force' or 'flex_attention'
    (both: joined with '+')."""
    p = params if isinstance(params, dict) else {}
    parts = [str(p["attn_implementation"])] if p.get("attn_implementation") else []
    if p.get("sdpa_gqa") not in (None, "auto"):
        parts.append(f"sdpa_gqa={p['sdpa_gqa']}")
    return "+".join(parts) or "default"


def attention_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The compiled-gqa-attention experiment (measure/grids/compiled-gqa-attention.yaml): one row per compiled
    cell of a non-default attention setting (`attention_variant`) and machine, its decode J/token and tokens/s
    (median over that machine's records) against the same cell compiled with the default setting (`*_compiled`)
    and eager (`*_eager`) on the same machine (NaN where the machine has none). The cells share model, method,
    engine, batch and workload, so they are told apart by engine params, never pooled (`cell_means` would pool
    them). `energy_vs_compiled` / `speed_vs_compiled` and `energy_vs_eager` / `speed_vs_eager`: the variant's over
    the twin's; `noise_pct` (against the compiled twin) and `beyond_noise`. Failed variant records are kept as rows
    with `status` failed and their `error` (a setting the device's versions refuse is a result too)."""
    keys = ["gpu_id", "model", "quant", "batch_size", "workload", "machine"]
    d = df.assign(variant=df["engine_params"].apply(attention_variant))
    ok = d[d["status"] == "ok"]
    per = _machine_medians(ok, [*keys, "engine", "variant"])
    default = per[per["variant"] == "default"]
    compiled = default[default["engine"] == "hf-compiled"].drop(columns=["engine", "variant", "records"])
    eager = default[default["engine"] == "hf-eager"][[*keys, "tokens_per_s", "decode_energy_per_token_j"]]
    t = per[(per["engine"] == "hf-compiled") & (per["variant"] != "default")].assign(status="ok", error=None)
    failed = d[(d["status"] != "ok") & (d["engine"] == "hf-compiled") & (d["variant"] != "default")]
    if len(failed):
        t = pd.concat([t, failed[[*keys, "engine", "variant", "status", "error"]]], ignore_index=True)
    t = t.merge(compiled, on=keys, how="left", suffixes=("", "_compiled"))
    t = t.merge(eager.rename(columns={"tokens_per_s": "tokens_per_s_eager",
                                      "decode_energy_per_token_j": "decode_energy_per_token_j_eager"}),
                on=keys, how="left")
    t["energy_vs_compiled"] = t["decode_energy_per_token_j"] / t["decode_energy_per_token_j_compiled"]
    t["speed_vs_compiled"] = t["tokens_per_s"] / t["tokens_per_s_compiled"]
    t["energy_vs_eager"] = t["decode_energy_per_token_j"] / t["decode_energy_per_token_j_eager"]
    t["speed_vs_eager"] = t["tokens_per_s"] / t["tokens_per_s_eager"]
    t["noise_pct"] = noise_pct(t["energy_cv"], t["repetitions"], t["energy_cv_compiled"], t["repetitions_compiled"])
    t["beyond_noise"] = (t["energy_vs_compiled"] - 1.0).abs() * 100.0 > t["noise_pct"]
    t = t.drop(columns=["engine", "repetitions_compiled"])
    return t.sort_values(["model", "variant", "batch_size", "machine"]).reset_index(drop=True)


# --- machine anchors: the same two cells on every GPU --------------------------------------------------------
#: The cells every GPU measures once (`resume_per: gpu`), so that machines can be compared cell for cell.
ANCHOR_GRID = GRIDS / "machine-anchors.yaml"
ANCHOR_NOISE_PCT = 10.0  # an anchor noisier than this (two standard errors of its mean, %) is left out as loud


def anchor_cells(path: Path = ANCHOR_GRID) -> pd.DataFrame:
    """The anchor grid's cells (`measure.grid.expand`), a row each: cell_hash, model, quant, engine, batch_size
    and workload '<prompt>/<output>'."""
    from measure.grid import expand, load_grid

    return pd.DataFrame([{"cell_hash": c.content_hash, "model": c.model, "quant": c.quant, "engine": c.engine,
                          "batch_size": c.batch_size, "workload": f"{c.prompt_tokens}/{c.output_tokens}"}
                         for c in expand(load_grid(path))])


def machine_anchors(df: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every ok record of an anchor cell (`anchor_cells`, matched by cell hash) in `df`, whatever its file (the
    anchors' own store and the campaign's records of the same cells; rejected records left out): one row per
    record, with the card (`gpu_id`), `machine`, GPU unit, decode J/token and tokens/s, and `energy_vs_card` /
    `speed_vs_card`: the record's value over the median, over the card's GPU units, of that cell's per-unit mean
    (1 = a typical GPU of that card). `noise_pct`: the record's own repetition noise (two standard errors of its
    mean, %), against which a difference between machines is read. `quiet`: `noise_pct` at most
    `ANCHOR_NOISE_PCT` (10 %): a noisier anchor cannot tell a 10 % machine offset, the size of the card and method
    differences it is there to separate (s17: two of the first eight lost a third of their speed in one of three
    repetitions, 18 % noise). The card's typical GPU is taken over quiet records where the cell has any."""
    cells = anchor_cells() if cells is None else cells
    keys = ["model", "quant", "engine", "batch_size", "workload"]
    rejected = df["rejected"].astype(bool) if "rejected" in df else False
    d = df[(df["status"] == "ok") & ~rejected & df["cell_hash"].isin(cells["cell_hash"])]
    cols = [*keys, "gpu_id", "machine", "gpu_unit", "slice", "created_at", "decode_energy_per_token_j",
            "tokens_per_s", "decode_avg_power_w", "energy_cv", "repetitions"]
    t = d[cols].copy()
    # one record's mean against an exact reference: the ratio noise with no second term
    t["noise_pct"] = noise_pct(t["energy_cv"], t["repetitions"], 0.0, 1)
    t["quiet"] = t["noise_pct"].le(ANCHOR_NOISE_PCT)
    has_quiet = t.groupby([*keys, "gpu_id"])["quiet"].transform("any")
    basis = t[t["quiet"] | ~has_quiet]
    per_unit = basis.groupby([*keys, "gpu_id", "gpu_unit"])[["decode_energy_per_token_j", "tokens_per_s"]].mean()
    typical = per_unit.groupby([*keys, "gpu_id"]).median()
    ref = t[[*keys, "gpu_id"]].merge(typical.reset_index(), on=[*keys, "gpu_id"], how="left")
    t["energy_vs_card"] = t["decode_energy_per_token_j"].to_numpy() / ref["decode_energy_per_token_j"].to_numpy()
    t["speed_vs_card"] = t["tokens_per_s"].to_numpy() / ref["tokens_per_s"].to_numpy()
    return t.sort_values(["gpu_id", "batch_size", "machine", "created_at"]).reset_index(drop=True)


def machine_anchor_summary(anchors: pd.DataFrame) -> pd.DataFrame:
    """`machine_anchors` per card and machine: GPU units and records of the anchor cells there (`quiet` of them),
    and the median, smallest and largest `energy_vs_card` and the median `speed_vs_card` over the quiet records
    (a machine at 1.10 spends 10 % more decode energy per token on the same cells than the card's typical GPU;
    NaN where the machine has no quiet record)."""
    keys = ["gpu_id", "machine"]
    counts = anchors.groupby(keys).agg(gpus=("gpu_unit", "nunique"), records=("energy_vs_card", "size"),
                                       quiet=("quiet", "sum"))
    q = anchors[anchors["quiet"]].groupby(keys)
    ratios = q.agg(energy_vs_card=("energy_vs_card", "median"), energy_vs_card_min=("energy_vs_card", "min"),
                   energy_vs_card_max=("energy_vs_card", "max"), speed_vs_card=("speed_vs_card", "median"))
    return counts.join(ratios)


#: the anchor grid's batch sizes; a cell is read against the anchors of the nearest (1 for batch 1, else 32)
ANCHOR_BATCHES = (1, 32)


def anchor_batch(batch_size: pd.Series) -> pd.Series:
    """The anchor batch a cell of `batch_size` is read against: 1 for batch 1, else 32."""
    return pd.Series(np.where(batch_size.to_numpy() <= ANCHOR_BATCHES[0], ANCHOR_BATCHES[0], ANCHOR_BATCHES[1]),
                     index=batch_size.index)


def variant_campaign_effect(df: pd.DataFrame, anchors: pd.DataFrame, engine: str = "hf-compiled-gqa",
                            baselines: Sequence[str] = ("hf-compiled", "hf-eager")) -> pd.DataFrame:
    """Each ok campaign cell of an engine variant against the same cell (card, model, method, batch, workload,
    file) of each engine in `baselines`, one row per pair (`engine_effect`, with `baseline_engine`), where the two
    cells usually ran on different machines. `machine_method` / `machine_base`: the machine of each side (a cell
    of several records: its latest record's); `anchor_ratio`: the variant's machine's median quiet anchor
    `energy_vs_card` (`machine_anchors`) over the baseline's machine's, at the anchor batch nearest the cell's
    (`anchor_batch`), NaN where either machine has no quiet anchor there or either cell pools several records;
    `energy_ratio_anchored` = energy_ratio / anchor_ratio. The anchors are eager bf16 Qwen2.5-7B at 256/128: they
    give a machine's offset on that cell, not on a compiled decode of another shape, so the anchored ratio is a
    reading aid (how much of a difference the machines alone could make), not a correction."""
    quiet = anchors[anchors["quiet"]]
    offset = quiet.groupby(["gpu_id", "machine", "batch_size"])["energy_vs_card"].median()
    parts = []
    for base in baselines:
        t = engine_effect(df, engine, base, extra=("machine",))
        if not len(t):
            continue
        ab = anchor_batch(t["batch_size"])
        single = t["n_records"] == "1/1"
        here = [offset.get((g, m, b), np.nan) for g, m, b in zip(t["gpu_id"], t["machine_method"], ab, strict=True)]
        there = [offset.get((g, m, b), np.nan) for g, m, b in zip(t["gpu_id"], t["machine_base"], ab, strict=True)]
        t["anchor_batch"] = ab
        t["anchor_ratio"] = np.where(single, np.asarray(here, dtype=float) / np.asarray(there, dtype=float), np.nan)
        t["energy_ratio_anchored"] = t["energy_ratio"] / t["anchor_ratio"]
        parts.append(t)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def variant_campaign_summary(t: pd.DataFrame) -> pd.DataFrame:
    """`variant_campaign_effect` per (baseline engine, card, workload, method, batch): architectures, median /
    smallest / largest energy ratio (variant over baseline, decode J/token), the median anchored ratio (over the
    pairs that have one), median speedup, and how many pairs lie below / above 1 beyond their noise."""
    keys = ["baseline_engine", "gpu_id", "workload", "quant", "batch_size"]
    beyond = ~t["within_noise"]
    return (t.assign(lower=beyond & (t["energy_ratio"] < 1), higher=beyond & (t["energy_ratio"] > 1))
            .groupby(keys)
            .agg(architectures=("model", "nunique"), energy_ratio_median=("energy_ratio", "median"),
                 energy_ratio_min=("energy_ratio", "min"), energy_ratio_max=("energy_ratio", "max"),
                 anchored_median=("energy_ratio_anchored", "median"), anchored_pairs=("energy_ratio_anchored", "count"),
                 speedup_median=("speedup", "median"), lower_beyond_noise=("lower", "sum"),
                 higher_beyond_noise=("higher", "sum"))
            .reset_index())


def attention_kind(models: pd.DataFrame) -> pd.Series:
    """'MHA' or 'GQA' per model id (`models`: models.csv): 'MHA' where num_kv_heads = num_attention_heads (every
    head keeps its own K/V), else 'GQA' (grouped-query attention: fewer K/V heads than query heads)."""
    m = models.set_index("id")
    return pd.Series(np.where(m["num_kv_heads"] >= m["num_attention_heads"], "MHA", "GQA"), index=m.index,
                     name="attention")


# --- workload: 1024/256 against 256/128 on the same cell --------------------------------------------------
def workload_effect(df: pd.DataFrame, models: pd.DataFrame, long: tuple[int, int] = LONG_WORKLOAD,
                    short: tuple[int, int] = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """Each cell measured at both workloads (same model, method, engine, batch, file; `cell_means`): the ratio
    long / short of decode J per output token (`energy_ratio`), tokens/s, decode power, TTFT (`ttft_ms`) and
    prefill energy (`prefill_energy_j`, J for the whole batch's prompt).

    With the model's attention shape (models.csv): `kv_heads_share` = num_kv_heads / num_attention_heads and
    `attention` 'MHA' where it is 1 (every head keeps its own K/V) else 'GQA' (grouped-query attention), and the bandwidth model of `roofline`: KV-cache GB read per decode step
    at the mean context (prompt + output / 2) of each workload for the whole batch, and `bytes_ratio` = (weights
    + KV long) / (weights + KV short), the J/token ratio expected if decode time were set by the bytes read.
    `noise_pct`: two standard errors of the energy ratio from both cells' energy_cv over their repetitions;
    `within_noise`: |energy_ratio - 1| x 100 within it; same_gpu_unit / same_machine as in `paired_energy`.
    """
    d = cell_means(df)
    keys = ["gpu_id", "model", "engine", "quant", "batch_size", "slice"]
    m = select_workload(d, long).merge(select_workload(d, short), on=keys, suffixes=("_long", "_short"))
    out = m[keys].copy()
    out["workloads"] = f"{long[0]}/{long[1]} vs {short[0]}/{short[1]}"
    for col, name in (("decode_energy_per_token_j", "energy"), ("tokens_per_s", "tokens_per_s"),
                      ("decode_avg_power_w", "power"), ("ttft_ms", "ttft"), ("prefill_energy_j", "prefill_energy")):
        out[f"{col}_short"] = m[f"{col}_short"]
        out[f"{col}_long"] = m[f"{col}_long"]
        out[f"{name}_ratio"] = m[f"{col}_long"] / m[f"{col}_short"]
    out["noise_pct"] = noise_pct(m["energy_cv_long"], m["repetitions_long"], m["energy_cv_short"],
                                 m["repetitions_short"])
    out["within_noise"] = (out["energy_ratio"] - 1.0).abs() * 100.0 <= out["noise_pct"]
    out["same_gpu_unit"] = m["gpu_unit_long"] == m["gpu_unit_short"]
    out["same_machine"] = m["machine_long"] == m["machine_short"]
    mm = models.set_index("id")
    for c in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "params_b"):
        out[c] = out["model"].map(mm[c])
    out["kv_heads_share"] = out["num_kv_heads"] / out["num_attention_heads"]
    out["attention"] = out["model"].map(attention_kind(models))
    kv_per_tok = 2.0 * out["num_layers"] * out["num_kv_heads"] * out["head_dim"] * out["quant"].map(
        lambda q: KV_BYTES.get(q, 2.0))
    weights = m["weights_gb_short"]
    out["weights_gb"] = weights
    out["kv_gb_per_step_short"] = kv_per_tok * (short[0] + short[1] / 2.0) * out["batch_size"] / 1e9
    out["kv_gb_per_step_long"] = kv_per_tok * (long[0] + long[1] / 2.0) * out["batch_size"] / 1e9
    out["bytes_ratio"] = (weights + out["kv_gb_per_step_long"]) / (weights + out["kv_gb_per_step_short"])
    return _sorted_by_method(out)


def workload_effect_summary(t: pd.DataFrame, quants: Sequence[str] = ("bf16",),
                            by: Sequence[str] = ("batch_size",)) -> pd.DataFrame:
    """Median, min and max across the cells of `quants` of each long / short ratio (energy, tokens/s, TTFT,
    prefill energy) and of the expected `bytes_ratio`, per `by` (e.g. batch size, or attention and batch
    size); `architectures` counts the models, `beyond_noise` the cells whose J/token changed by more than
    their noise."""
    t = t[t["quant"].isin(list(quants))]
    rows = []
    for k, g in t.groupby(list(by)):
        row = dict(zip(by, k if isinstance(k, tuple) else (k,), strict=True))
        row.update(cells=len(g), architectures=g["model"].nunique(), beyond_noise=int((~g["within_noise"]).sum()))
        for c in ("energy_ratio", "tokens_per_s_ratio", "ttft_ratio", "prefill_energy_ratio", "bytes_ratio"):
            row[f"{c}_median"] = g[c].median()
            row[f"{c}_min"] = g[c].min()
            row[f"{c}_max"] = g[c].max()
        rows.append(row)
    return pd.DataFrame(rows)


def static_cache_kv_copy_gb(models: pd.DataFrame, batch_size: int, workload: tuple[int, int],
                            quant: str = "bf16") -> pd.Series:
    """GB of K/V that transformers' SDPA attention copies out to every query head in one decode step with the
    static KV cache (hf-compiled's), per model id (`models`: models.csv): each step attends over the whole cache
    (prompt + output tokens) with a mask, and with a mask grouped-query K/V is expanded (`repeat_kv`, see
    scripts/profile_decode.py's `attention_calls`) to num_layers x num_attention_heads x head_dim x 2 (K and V) x
    bytes per value (`KV_BYTES`, default 2) x batch x cache length. 0 for multi-head attention (nothing to expand).
    The copy is written and then read by the attention kernel, so a step moves about twice this on top of the
    weights and the cache itself. A bandwidth estimate, not a measurement."""
    m = models.set_index("id")
    cache_len = workload[0] + workload[1]
    copy = (m["num_layers"] * m["num_attention_heads"] * m["head_dim"] * 2.0 * KV_BYTES.get(quant, 2.0)
            * batch_size * cache_len / 1e9)
    return copy.where(attention_kind(models) == "GQA", 0.0).rename("kv_copy_gb")


def load_decode_profile(path: Path, models: pd.DataFrame) -> dict[str, Any]:
    """One `scripts/profile_decode.py` JSON (a diagnostic, not a campaign record) as tables: `kernels`, its top
    operators and kernels with `ms_per_step` (device ms / decode steps, the generate call's new tokens - 1: the
    first token comes from the prefill) and `calls_per_layer_step` (calls / (layers x decode steps): 1 for a
    kernel that runs once per layer and step, 2 for one per K and V), and `attention`, how transformers' SDPA
    attention ran (`attention_calls`: mask, K/V length and heads, grouped or expanded). The rows of `kernels`
    are what the profile listed (its top N by device time); a kernel outside that list is not there."""
    prof = json.loads(Path(path).read_text())
    steps = prof["new_tokens"] - 1
    layers = int(models.set_index("id").loc[prof["model"], "num_layers"])
    kernels = pd.DataFrame(prof["top"]).assign(
        ms_per_step=lambda d: d["device_total_ms"] / steps,
        calls_per_layer_step=lambda d: d["calls"] / (layers * steps))
    attention = pd.DataFrame(prof.get("attention_calls") or [],
                             columns=["mask", "kv_len", "kv_heads", "grouped", "calls"])
    meta = {k: prof.get(k) for k in ("model", "quant", "engine", "batch_size", "prompt_tokens", "new_tokens",
                                     "device", "torch_version", "tokens_per_s", "gpu_busy_ms", "profiled_wall_ms")}
    return {**meta, "decode_steps": steps, "num_layers": layers, "kernels": kernels, "attention": attention}


def compiled_step_attention(profile: dict[str, Any], kv_copy: bool = True) -> dict[str, float]:
    """Where a compiled decode step's time went (ms per step) in a `load_decode_profile` of hf-compiled: `step_ms`
    (the compiled region, one call per decode step), `kv_expand_ms` (inductor's fused kernel that expands and clones
    the grouped K/V to every query head: a triton kernel whose name lists expand and clone, fused with the rotary
    embedding) and `attention_ms` (the attention kernel: a non-triton kernel with sdpa in its name, cuDNN's on the
    H200; of several, the one with the most calls, the decode steps' rather than the prefill's), `share` =
    (kv_expand_ms + attention_ms) / step_ms and `kv_expand_calls_per_layer_step` (2: K and V).
    Kernels are found by name among the profile's top rows; a missing one raises (a profile of another engine or
    version needs reading by hand). `kv_copy=False` reads a profile that should have no copy (grouped-query SDPA
    forced, `sdpa_gqa: force`): an expansion kernel among its top rows raises, and `kv_expand_ms` is 0 (the
    profile's top rows must reach below the copy's size: s24's lists 60)."""
    k = profile["kernels"]
    name = k["name"]

    def one(mask, what):
        rows = k[mask]
        if rows.empty:
            raise ValueError(f"no {what} among the profile's top kernels: {', '.join(name.str[:40])}")
        return rows.loc[rows["calls"].idxmax()] if what == "attention kernel" else rows.iloc[0]

    step = one(name.str.startswith("Torch-Compiled Region"), "compiled region")["ms_per_step"]
    is_expand = name.str.startswith("triton_") & name.str.contains("expand") & name.str.contains("clone")
    if kv_copy:
        expand = one(is_expand, "K/V expansion kernel")
        expand_ms, expand_calls = float(expand["ms_per_step"]), float(expand["calls_per_layer_step"])
    elif is_expand.any():
        raise ValueError(f"a K/V expansion kernel in a profile read as without the copy: {name[is_expand].iloc[0]}")
    else:
        expand_ms, expand_calls = 0.0, 0.0
    attention = one(name.str.contains("sdpa") & ~name.str.startswith("triton_"), "attention kernel")["ms_per_step"]
    return {"step_ms": float(step), "kv_expand_ms": expand_ms, "attention_ms": float(attention),
            "share": float((expand_ms + attention) / step), "kv_expand_calls_per_layer_step": expand_calls}


# --- hardware: a second card type against the first on the same cells ------------------------------------
#: `slice` of the per-card cell means: a card's records of every file passed are pooled (one mean per cell).
POOLED_SLICE = "all files"


def load_cards(folders: Iterable[Path] = tuple(CARD_FOLDERS.values())) -> pd.DataFrame:
    """`load_records` of every card type's folder (default CARD_FOLDERS: H100, H200) in one frame; `gpu_id`
    (the catalogue id the runner wrote, e.g. 'h100-sxm', 'h200') tells the cards apart, `machine` the machines
    (`gpu_machines` of each folder). Rejected records are left out; pass the result through `method_records`
    to leave out the reproducibility repeats as well."""
    return pd.concat([load_records(f) for f in folders], ignore_index=True)


def grid_scope_excludes(grid_file: Path, gpu_id: str) -> list[dict[str, Any]]:
    """Exclude entries (as `load_grid_excludes` gives, usable by `figure4_matrix`) that mark the methods of
    METHOD_ORDER a card's grid does not list as excluded on that card only (key `gpu_id`), with the grid's
    description as the reason; plus the grid's own `exclude` entries, restricted to the card."""
    import yaml

    spec = yaml.safe_load(grid_file.read_text()) or {}
    absent = [q for q in METHOD_ORDER if q not in set(spec.get("quants") or [])]
    reason = f"not in {grid_file.name}: " + " ".join(str(spec.get("description", "")).split())
    out = [{"gpu_id": gpu_id, "quant": absent, "reason": reason}] if absent else []
    return out + [{**e, "gpu_id": gpu_id} for e in load_grid_excludes(grid_file)]


def card_cells(df: pd.DataFrame, card: str) -> pd.DataFrame:
    """`cell_means` of one card type's ok records (`gpu_id` == `card`), every file passed pooled: one row per
    (cell keys, quant), `slice` set to POOLED_SLICE, and `machines`: every machine the cell's records ran on
    (sorted, joined with '; '; `machine` stays the latest record's). Pass method records (`method_records`)
    to keep the repeats out, or only the repeats to use those."""
    d = df[df["gpu_id"] == card].assign(slice=POOLED_SLICE)
    c = cell_means(d)
    keys = [*CELL_KEYS, "quant", "slice", "gpu_id"]
    ok_d = d.loc[d["status"] == "ok", keys].assign(machine=d["machine"].astype(str)).drop_duplicates()
    machines = ok_d.sort_values("machine").groupby(keys, dropna=False)["machine"].agg("; ".join)
    return c.merge(machines.rename("machines").reset_index(), on=keys, how="left")


#: The group of `machine_group` for a cell whose records ran on more than one machine.
SEVERAL_MACHINES = "several machines"


def machine_group(machines: pd.Series) -> pd.Series:
    """Each cell's machine where all its records ran on one (`card_effect`'s machine_base / machine_card),
    else SEVERAL_MACHINES: the per-machine summaries and plot colours give such cells a group of their own
    instead of one group per combination of machines."""
    return machines.where(~machines.astype(str).str.contains("; ", regex=False), SEVERAL_MACHINES)


def _machines_of(machines: pd.Series) -> list[str]:
    """The distinct machines named in a column of '; '-joined machine lists, sorted."""
    return sorted({m for ms in machines.dropna().astype(str) for m in ms.split("; ")})


def card_effect(df_all: pd.DataFrame, card: str = "h200", baseline_card: str = "h100-sxm",
                gpus: pd.DataFrame | None = None,
                workload: tuple[int, int] | None = REFERENCE_WORKLOAD, engine: str | None = None) -> pd.DataFrame:
    """Each cell measured on both cards (same model, method, engine, batch and workload; each card's records
    averaged per cell, `card_cells`): the ratio `card` / `baseline_card` of

    - decode J per output token (`energy_ratio`; `energy_change_pct` = (ratio - 1) x 100, negative = the card
      uses less energy), from e_base_j (baseline card) and e_card_j (J/token);
    - decode tokens/s (`speedup`), decode average power (`power_ratio`, W / W; energy_ratio ~ power_ratio /
      speedup), time to first token (`ttft_ratio`, ms / ms) and prefill energy (`prefill_energy_ratio`, J / J).

    `noise_pct`: two standard errors of the energy ratio (%) from both cells' energy_cv over their repetitions
    (`noise_pct`; the cells' CVs in energy_cv_base / energy_cv_card, root mean square over a cell's records);
    `beyond_noise`: |energy_change_pct| above it. `machine_base` / `machine_card`: where the two
    cells ran, every machine of the cell's records (sorted, joined with '; ', as `card_cells`' `machines`;
    always two machines when the cards sit in different machines; `machine_group` maps a cell of several
    machines to SEVERAL_MACHINES). With `gpus` (gpus.csv):
    `bandwidth_ratio` (GB/s over GB/s) and `speedup_if_bandwidth`, the speedup expected if only the memory-bound
    share of the baseline step (its roofline utilization u, the records' `bandwidth_utilization`) shrank with
    the bandwidth: 1 / (1 - u + u / bandwidth_ratio). `workload` None keeps every workload (pairs stay within one);
    `engine` keeps one engine's cells (None: every engine, each cell paired within its engine).
    """
    keys = [*CELL_KEYS, "quant"]
    a = select_workload(card_cells(df_all, card), workload)
    b = select_workload(card_cells(df_all, baseline_card), workload)
    if engine is not None:
        a, b = a[a["engine"] == engine], b[b["engine"] == engine]
    extra = ["decode_avg_power_w", "ttft_ms", "prefill_energy_j", "energy_cv", "machines", "bandwidth_utilization"]
    p = _pair_cells(a, b, keys, extra=extra)
    p = p.drop(columns=["gpu_id", "same_gpu_unit", "same_machine", "slice", "power_ratio"], errors="ignore")
    p = p.rename(columns={"e_method_j": "e_card_j", "tokens_per_s_method": "tokens_per_s_card"})
    p.insert(0, "card", card)
    p.insert(1, "baseline_card", baseline_card)
    p["energy_change_pct"] = (p["energy_ratio"] - 1.0) * 100.0
    p["beyond_noise"] = ~p["within_noise"]
    for col, name in (("decode_avg_power_w", "power"), ("ttft_ms", "ttft"), ("prefill_energy_j", "prefill_energy")):
        p[f"{name}_ratio"] = p[f"{col}_method"] / p[f"{col}_base"]
    p["energy_cv_base"] = p.pop("energy_cv_base")
    p["energy_cv_card"] = p.pop("energy_cv_method")
    p["machine_base"] = p.pop("machines_base")
    p["machine_card"] = p.pop("machines_method")
    p["bandwidth_utilization_base"] = p.pop("bandwidth_utilization_base")
    p = p.drop(columns=[f"{c}_{side}" for c in extra[:3] for side in ("method", "base")]
               + ["bandwidth_utilization_method"])
    if gpus is not None:
        bw = gpus.set_index("id")["bandwidth_gbs"].astype(float)
        ratio = bw.get(card, np.nan) / bw.get(baseline_card, np.nan)
        u = p["bandwidth_utilization_base"]
        p["bandwidth_ratio"] = ratio
        p["speedup_if_bandwidth"] = 1.0 / (1.0 - u + u / ratio)
    return _sorted_by_method(p)


def card_effect_summary(t: pd.DataFrame, by: str | Sequence[str] | None = ("quant", "batch_size"),
                        machine_spread_pct: float | None = None) -> pd.DataFrame:
    """`card_effect` rows per group (`by`; None = one row 'all'): cells, architectures, the median / min / max
    energy ratio (card / baseline card, J/token over J/token) and its 25th / 75th percentiles, median speedup,
    power, TTFT and prefill-energy ratios (and `speedup_if_bandwidth` where present), how many cells use less
    (`n_lower_beyond_noise`) or more (`n_higher_beyond_noise`) energy beyond their repetition noise, and, given
    `machine_spread_pct` (e.g. the largest |J/token difference| of one cell measured on two machines of one
    card, %), how many change by more than that (`n_beyond_machine_spread`). Grouped by `machine_base` or
    `machine_card`, the cells whose records ran on several machines form one group, SEVERAL_MACHINES
    (`machine_group`)."""
    def summ(g: pd.DataFrame) -> pd.Series:
        e = g["energy_ratio"]
        row = {"cells": len(g), "architectures": g["model"].nunique(),
               "energy_ratio_median": e.median(), "energy_ratio_p25": e.quantile(0.25),
               "energy_ratio_p75": e.quantile(0.75), "energy_ratio_min": e.min(), "energy_ratio_max": e.max(),
               "speedup_median": g["speedup"].median(), "power_ratio_median": g["power_ratio"].median(),
               "ttft_ratio_median": g["ttft_ratio"].median(),
               "prefill_energy_ratio_median": g["prefill_energy_ratio"].median()}
        if "speedup_if_bandwidth" in g:
            row["speedup_if_bandwidth_median"] = g["speedup_if_bandwidth"].median()
        row["n_lower_beyond_noise"] = int((g["beyond_noise"] & (e < 1)).sum())
        row["n_higher_beyond_noise"] = int((g["beyond_noise"] & (e > 1)).sum())
        if machine_spread_pct is not None:
            row["n_beyond_machine_spread"] = int((g["energy_change_pct"].abs() > machine_spread_pct).sum())
        return pd.Series(row)
    if t.empty:
        return pd.DataFrame()
    if by is None:
        return summ(t).to_frame("all").T
    by = [by] if isinstance(by, str) else list(by)
    t = t.assign(**{k: machine_group(t[k]) for k in by if k in ("machine_base", "machine_card")})
    s = t.groupby(by).apply(summ, include_groups=False)
    if "quant" in by:
        s = _sorted_by_method(s.reset_index(), then=[k for k in by if k != "quant"]).set_index(by)
    return s


def card_effect_vs_repeats(cards: pd.DataFrame, card: str = "h200", baseline_card: str = "h100-sxm",
                           workload: tuple[int, int] | None = REFERENCE_WORKLOAD,
                           repeat_slices: Sequence[str] = REPEAT_SLICES, engine: str | None = None) -> pd.DataFrame:
    """How much of the card effect is the baseline card's machine: for each cell whose `baseline_card` cell
    was measured again on another machine (`repeat_slices`), `card_effect` against the method records (the
    first measurement) and against the repeat, side by side: energy_ratio_first / _repeat (J/token over
    J/token), speedup_first / _repeat (tokens/s over tokens/s), machine_first / _repeat (of the baseline cell)
    and `shift_pct` = (energy_ratio_repeat / energy_ratio_first - 1) x 100, the change of the measured hardware
    effect that comes from re-measuring the baseline cell alone. `cards`: every card's records, repeats
    included (`load_cards`); `engine` as in `card_effect`."""
    base = cards[(cards["gpu_id"] == baseline_card) & ~cards["rejected"].astype(bool)]
    other = method_records(cards[cards["gpu_id"] != baseline_card])
    first = card_effect(pd.concat([method_records(base), other]), card, baseline_card, workload=workload,
                        engine=engine)
    rep = card_effect(pd.concat([base[base["slice"].isin(list(repeat_slices))], other]), card, baseline_card,
                      workload=workload, engine=engine)
    keys = [*CELL_KEYS, "quant"]
    cols = ["energy_ratio", "speedup", "machine_base", "noise_pct"]
    m = first[keys + cols].merge(rep[keys + cols], on=keys, suffixes=("_first", "_repeat"))
    m = m.rename(columns={"machine_base_first": "machine_first", "machine_base_repeat": "machine_repeat"})
    m["shift_pct"] = (m["energy_ratio_repeat"] / m["energy_ratio_first"] - 1.0) * 100.0
    return _sorted_by_method(m)


def _card_method_cells(df_all: pd.DataFrame, cards: Sequence[str], engine: str,
                       workload: tuple[int, int]) -> pd.DataFrame:
    """`card_cells` of every card in `cards` for one engine and workload, with a `card` column."""
    frames = [card_cells(df_all, c).assign(card=c) for c in cards]
    d = pd.concat(frames, ignore_index=True)
    return select_workload(d[d["engine"] == engine], workload)


def hardware_method_cooptimisation(df_all: pd.DataFrame, baseline_card: str = "h100-sxm", baseline: str = "bf16",
                                   engine: str = "hf-eager",
                                   workload: tuple[int, int] = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """The paper's hardware x quantization co-optimisation on our cells: per (model, batch) of one engine and
    workload, measured on every card type in `df_all`, the lowest decode J/token over (card, method) against
    `baseline` on `baseline_card`, next to each choice alone. Only the methods measured on every card for that
    (model, batch) compete, so no card wins by having more methods.

    Savings are (1 - E / e_base_j) x 100 (positive = less J per output token than `baseline` on `baseline_card`):
    `hardware_saving_pct` (best card, `baseline` method), `method_saving_pct` (best method on `baseline_card`),
    `joint_saving_pct` (best card and method), `product_saving_pct` (what the two alone give together if they
    multiplied: 1 - (1 - hw)(1 - method)); `joint_vs_hardware_pct` / `joint_vs_method_pct`: what the joint
    choice saves over the hardware-only / method-only choice. `joint_noise_pct`: two standard errors of the
    joint/baseline ratio from the cells' energy_cv and repetitions; `joint_vs_hardware_noise_pct` the same for
    the joint cell against the hardware-only cell (is the method choice on top of the card resolved?).
    """
    cards = [baseline_card] + sorted(set(df_all["gpu_id"].dropna()) - {baseline_card})
    d = _card_method_cells(df_all, cards, engine, workload)
    rows = []
    for (model, b), g in d.groupby(["model", "batch_size"]):
        per_card = g.groupby("card")["quant"].apply(set)
        if len(per_card) < len(cards) or any(baseline not in q for q in per_card):
            continue
        common = set.intersection(*per_card)
        g = g[g["quant"].isin(common)].set_index(["card", "quant"])
        e = g["decode_energy_per_token_j"]
        base = g.loc[(baseline_card, baseline)]
        hw = e.xs(baseline, level="quant").idxmin()
        meth = e.xs(baseline_card, level="card").idxmin()
        joint = e.idxmin()
        e_hw, e_m, e_j = e[(hw, baseline)], e[(baseline_card, meth)], e[joint]
        jr, hr = g.loc[joint], g.loc[(hw, baseline)]
        rows.append({
            "model": model, "batch_size": b, "methods": len(common), "e_base_j": base["decode_energy_per_token_j"],
            "hardware_card": hw, "e_hardware_j": e_hw, "method": meth, "e_method_j": e_m,
            "joint_card": joint[0], "joint_method": joint[1], "e_joint_j": e_j,
            "hardware_saving_pct": (1 - e_hw / base["decode_energy_per_token_j"]) * 100,
            "method_saving_pct": (1 - e_m / base["decode_energy_per_token_j"]) * 100,
            "joint_saving_pct": (1 - e_j / base["decode_energy_per_token_j"]) * 100,
            "joint_vs_hardware_pct": (1 - e_j / e_hw) * 100, "joint_vs_method_pct": (1 - e_j / e_m) * 100,
            "joint_noise_pct": float(noise_pct(jr["energy_cv"], jr["repetitions"], base["energy_cv"],
                                               base["repetitions"])),
            "joint_vs_hardware_noise_pct": float(noise_pct(jr["energy_cv"], jr["repetitions"], hr["energy_cv"],
                                                           hr["repetitions"])),
        })
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    t["product_saving_pct"] = (1 - (1 - t["hardware_saving_pct"] / 100) * (1 - t["method_saving_pct"] / 100)) * 100
    t["joint_beyond_noise"] = t["joint_saving_pct"].abs() > t["joint_noise_pct"]
    t["method_on_card_beyond_noise"] = t["joint_vs_hardware_pct"].abs() > t["joint_vs_hardware_noise_pct"]
    return t.sort_values(["model", "batch_size"]).reset_index(drop=True)


def cooptimisation_summary(t: pd.DataFrame) -> pd.DataFrame:
    """Per choice (hardware alone, method alone, joint, and the joint over each choice alone): the median,
    min and max saving (%) over the (model, batch) rows of `hardware_method_cooptimisation`, where the maximum
    is, and how many rows save anything (> 0 %)."""
    rows = []
    for name, col in (("hardware alone (best card, baseline method)", "hardware_saving_pct"),
                      ("method alone (best method, baseline card)", "method_saving_pct"),
                      ("joint (best card and method)", "joint_saving_pct"),
                      ("joint over hardware alone", "joint_vs_hardware_pct"),
                      ("joint over method alone", "joint_vs_method_pct")):
        v = t[col]
        top = t.loc[v.idxmax()]
        rows.append({"choice": name, "rows": len(v), "saving_median_pct": v.median(), "saving_min_pct": v.min(),
                     "saving_max_pct": v.max(), "max_at": f"{top['model'].replace('-instruct', '')} b{top['batch_size']}",
                     "n_saving": int((v > 0).sum())})
    return pd.DataFrame(rows).set_index("choice")


def _gap_pct(cells: pd.DataFrame, card: str, cheap: str, other: str) -> tuple[float, float]:
    """How much more decode J/token method `other` costs than `cheap` on `card`, (E_other / E_cheap - 1) x 100,
    and the two standard errors of that ratio (`noise_pct`); `cells` indexed by (card, quant)."""
    lo, hi = cells.loc[(card, cheap)], cells.loc[(card, other)]
    return ((hi["decode_energy_per_token_j"] / lo["decode_energy_per_token_j"] - 1.0) * 100.0,
            float(noise_pct(hi["energy_cv"], hi["repetitions"], lo["energy_cv"], lo["repetitions"])))


def method_rank_transfer(df_all: pd.DataFrame, card: str = "h200", baseline_card: str = "h100-sxm",
                         engine: str = "hf-eager", workload: tuple[int, int] = REFERENCE_WORKLOAD,
                         min_methods: int = 3) -> pd.DataFrame:
    """Does the method ranking by decode J/token carry over from one card to the other? Per (model, batch) of
    one engine and workload with at least `min_methods` methods measured on both cards: the Spearman rank
    correlation of the methods' J/token on the two cards (`spearman`, 1 = the same order), the cheapest
    method on each card (`best_base`, `best_card`) and whether it is the same (`same_best`), and each card's
    order ('a < b < ...', lowest J/token first).

    Where the cheapest method changes, how much it matters: `gap_base_pct` = how much more J/token the
    card's cheapest method costs than the baseline card's cheapest on the baseline card, (E[best_card] /
    E[best_base] - 1) x 100, and `gap_card_pct` the same on the card, (E[best_base] / E[best_card] - 1) x 100
    (0 where the cheapest is the same); `noise_base_pct` / `noise_card_pct`: two standard errors of those
    ratios from the two cells' energy_cv over their repetitions (`noise_pct`); `change_within_noise`: either gap
    within its noise. A change of the cheapest method is resolved only where each card's cheapest beats the
    other card's cheapest beyond the noise on that card; if either gap is within it, the data are consistent
    with one cheapest method on both cards (true where the cheapest does not change)."""
    d = _card_method_cells(df_all, [baseline_card, card], engine, workload)
    rows = []
    for (model, b), g in d.groupby(["model", "batch_size"]):
        e = g.pivot_table(index="quant", columns="card", values="decode_energy_per_token_j").dropna()
        if card not in e or baseline_card not in e or len(e) < min_methods:
            continue
        x, y = e[baseline_card], e[card]
        bx, by = x.idxmin(), y.idxmin()
        cells = g.set_index(["card", "quant"])
        gb, nb = _gap_pct(cells, baseline_card, bx, by)
        gc, nc = _gap_pct(cells, card, by, bx)
        rows.append({"model": model, "batch_size": b, "methods": len(e), "spearman": x.corr(y, method="spearman"),
                     "best_base": bx, "best_card": by, "same_best": bx == by,
                     "order_base": " < ".join(x.sort_values().index), "order_card": " < ".join(y.sort_values().index),
                     "gap_base_pct": gb, "noise_base_pct": nb, "gap_card_pct": gc, "noise_card_pct": nc,
                     "change_within_noise": bool(gb <= nb or gc <= nc)})
    return pd.DataFrame(rows)


# --- roofline --------------------------------------------------------------------------------------------
def roofline(df: pd.DataFrame, gpus: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Decode throughput against the bandwidth roofline, per ok cell.

    bytes per decode step = weights (the record's `weights_gb`: GPU memory allocated after load and
    quantization) + KV cache read at the mean context (prompt + output / 2) for the whole batch;
    roofline tokens/s = batch x bandwidth (gpus.csv `bandwidth_gbs`) / bytes per step. `recorded_utilization`
    is the record's `bandwidth_utilization` (the runner assumes a 2-byte KV cache for every method). Both
    workloads are kept, each row with its own context length; `workload` tells them apart.
    """
    d = ok(df)
    g = gpus.set_index("id")
    mm = models.set_index("id")
    rows = []
    for _, r in d.iterrows():
        if r["gpu_id"] not in g.index or r["model"] not in mm.index or pd.isna(r.get("weights_gb")):
            continue
        bw = float(g.loc[r["gpu_id"], "bandwidth_gbs"])
        m = mm.loc[r["model"]]
        kv_per_tok = 2.0 * m["num_layers"] * m["num_kv_heads"] * m["head_dim"] * KV_BYTES.get(r["quant"], 2.0)
        ctx = r["prompt_tokens"] + r["output_tokens"] / 2.0
        kv_gb = kv_per_tok * ctx * r["batch_size"] / 1e9
        step_gb = r["weights_gb"] + kv_gb
        roof = r["batch_size"] * bw / step_gb
        rows.append({"label": r["label"], "gpu_id": r["gpu_id"], "model": r["model"], "engine": r["engine"],
                     "quant": r["quant"], "batch_size": r["batch_size"], "prompt_tokens": r["prompt_tokens"],
                     "output_tokens": r["output_tokens"],
                     "workload": f"{int(r['prompt_tokens'])}/{int(r['output_tokens'])}", "slice": r["slice"],
                     "bandwidth_gbs": bw,
                     "weights_gb": r["weights_gb"], "kv_gb_per_step": kv_gb, "bytes_per_step_gb": step_gb,
                     "roofline_tokens_per_s": roof, "tokens_per_s": r["tokens_per_s"],
                     "utilization": r["tokens_per_s"] / roof,
                     "recorded_utilization": r.get("bandwidth_utilization")})
    return pd.DataFrame(rows)


# --- noise floor, 1 Hz method error, failures, coverage --------------------------------------------------
def noise_table(df: pd.DataFrame) -> pd.DataFrame:
    """Run-to-run spread of every ok cell: CVs over the repetitions and the per-repetition values (J per
    repetition, tokens/s); `workload` keeps the two workloads apart (their timed windows differ), `gpu_id`
    the card types."""
    d = ok(df).assign(workload=lambda x: workload_of(x))
    cols = ["label", "gpu_id", "slice", "gpu_unit", "engine", "workload", "quant", "batch_size", "repetitions",
            "energy_cv", "tokens_per_s_cv", "rep_energy_j", "rep_tokens_per_s", "is_stable", "unstable_reason",
            "throttle_reasons"]
    t = d[cols].copy()
    t["rep_energy_j"] = t["rep_energy_j"].map(lambda xs: [round(float(x), 1) for x in xs])
    t["rep_tokens_per_s"] = t["rep_tokens_per_s"].map(lambda xs: [round(float(x), 1) for x in xs])
    return t.reset_index(drop=True)


def unstable_reasons(df: pd.DataFrame, by: Sequence[str] = ("gpu_id", "engine", "workload")) -> pd.DataFrame:
    """Why ok records are flagged unstable, per group (`by`): records, the share flagged (`is_stable` false), the
    share whose `unstable_reason` names a repetition CV above the threshold (`cv_share`), names `sw_power_cap`
    (`power_cap_share`) and names nothing else (`power_cap_only_share`), and for the power-capped ones the median
    decode power over the card's power limit (`capped_decode_power_over_limit`, W / W): far below 1 the decode
    did not run at the limit, so the cap happened elsewhere in the cell's windows (most likely the prefill)."""
    d = ok(df).assign(workload=lambda x: workload_of(x))
    why = d["unstable_reason"].fillna("")
    d = d.assign(flagged=d["is_stable"].eq(False),
                 cv=why.str.contains("CV"), cap=why.str.contains("sw_power_cap"),
                 cap_only=why.str.fullmatch(r"throttled: sw_power_cap"),
                 power_over_limit=d["decode_avg_power_w"] / d["power_limit_w"])
    g = d.groupby(list(by))
    out = pd.DataFrame({"records": g.size(), "flagged_share": g["flagged"].mean(), "cv_share": g["cv"].mean(),
                        "power_cap_share": g["cap"].mean(), "power_cap_only_share": g["cap_only"].mean()})
    out["capped_decode_power_over_limit"] = d[d["cap"]].groupby(list(by))["power_over_limit"].median()
    return out


def power_capped_by_phase(df: pd.DataFrame, by: Sequence[str] = ("gpu_id", "engine", "workload")) -> pd.DataFrame:
    """Where the power cap held the clocks, from the ok records that carry the per-phase shares (schema 1.2:
    `prefill_power_capped_frac`, `decode_power_capped_frac`, each the share of that phase's time capped), per
    group (`by`): records with the shares, those flagged `sw_power_cap` (`flagged`), and for the flagged ones the
    median and largest prefill and decode shares and the median prefill power over the card's limit (prefill J
    / TTFT over the limit, W / W); `decode_stable_by_share`: the records the flag alone made unstable in which no
    repetition's decode was capped more than 5 % of its time (`measure.meter.base.decode_is_stable`), which the
    engine-overhead fit counts as stable. Empty where no record carries the shares."""
    from measure.meter.base import decode_is_stable

    cols = ["prefill_power_capped_frac", "decode_power_capped_frac"]
    need = [*cols, "unstable_reason", "prefill_energy_j", "ttft_ms", "power_limit_w"]
    d = ok(df)
    if not set(need) <= set(d.columns):
        return pd.DataFrame()
    d = d[d[cols].notna().all(axis=1)].assign(workload=lambda x: workload_of(x))
    if d.empty:
        return pd.DataFrame()
    d = d.assign(flagged=d["unstable_reason"].fillna("").str.contains("sw_power_cap"),
                 prefill_power_over_limit=d["prefill_energy_j"] / (d["ttft_ms"] / 1000.0) / d["power_limit_w"],
                 forgiven=[r.get("is_stable") is not True and decode_is_stable(r) for r in d.to_dict("records")])
    g, f = d.groupby(list(by)), d[d["flagged"]].groupby(list(by))
    out = pd.DataFrame({"records": g.size(), "flagged": g["flagged"].sum()})
    for phase in ("prefill", "decode"):
        out[f"{phase}_capped_median"] = f[f"{phase}_power_capped_frac"].median()
        out[f"{phase}_capped_max"] = f[f"{phase}_power_capped_frac"].max()
    out["unflagged_prefill_capped_max"] = d[~d["flagged"]].groupby(list(by))["prefill_power_capped_frac"].max()
    out["flagged_prefill_power_over_limit"] = f["prefill_power_over_limit"].median()
    out["decode_stable_by_share"] = g["forgiven"].sum()
    return out


def noise_summary(noise: pd.DataFrame) -> pd.DataFrame:
    """Median / 90th percentile CV per (slice, engine, workload), and per card type first (`gpu_id`) where the
    table holds several (their files share names): the noise floor a predictor is judged against (a longer
    output makes longer timed windows, so the workloads are summarised apart)."""
    by = ["slice", "engine", "workload"]
    if "gpu_id" in noise and noise["gpu_id"].nunique() > 1:
        by.insert(0, "gpu_id")
    g = noise.groupby(by)
    return pd.DataFrame({
        "cells": g.size(),
        "energy_cv_median": g["energy_cv"].median(), "energy_cv_p90": g["energy_cv"].quantile(0.9),
        "tokens_per_s_cv_median": g["tokens_per_s_cv"].median(),
        "tokens_per_s_cv_p90": g["tokens_per_s_cv"].quantile(0.9),
        "stable_share": g["is_stable"].apply(lambda s: float((s == True).mean())),  # noqa: E712 - object column
    })


def _selfcheck_list(selfcheck: Any) -> list[dict[str, Any]]:
    """One self-check dict, a {session: self-check} dict (load_selfchecks) or a list of them -> a list."""
    if not selfcheck:
        return []
    if isinstance(selfcheck, dict):
        return [selfcheck] if "c_eq1" in selfcheck or "gpu" in selfcheck else list(selfcheck.values())
    return list(selfcheck)


def onehz_table(df: pd.DataFrame, selfcheck: Any = None) -> pd.DataFrame:
    """The paper's eq. (1) (1 Hz rectangle rule) against the energy counter, per timed window.

    Records: `energy_1hz_error_pct` of each ok cell with its first repetition's window length, and
    `stale_reading_error_pct`, the error expected if the only mistake were the first 1 s rectangle of the
    first repetition holding the preceding prefill window's power:
    (P_prefill - P_generate) x 1 s / (P_generate x window) / repetitions. Self-check: the eq.-(1) windows of
    raw/*/selfcheck.json (a steady ~700 W load started from idle); `selfcheck` is one self-check, a
    {session: self-check} dict (load_selfchecks) or a list.
    """
    d = ok(df)
    prefill_w = d["prefill_energy_j"] / (d["ttft_ms"] / 1000.0)
    # the stale first reading: repetition 0 starts right after the prefill-only window, so its first 1 Hz
    # rectangle (1 s) holds the prefill power instead of the generate power; averaged over the repetitions
    stale = (prefill_w - d["avg_power_w"]) * 1.0 / (d["avg_power_w"] * d["window_s"]) / d["repetitions"] * 100.0
    t = pd.DataFrame({"label": d["label"], "gpu_name": d["gpu_name"], "window_s": d["window_s"],
                      "error_pct": d["energy_1hz_error_pct"],
                      "avg_power_w": d["avg_power_w"], "prefill_power_w": prefill_w,
                      "stale_reading_error_pct": stale, "origin": "record"})
    scs = _selfcheck_list(selfcheck)
    if scs:
        sc = pd.DataFrame([{"label": f"selfcheck {c.get('gpu', {}).get('gpu_uuid', '')[:12]}",
                            "gpu_name": c.get("gpu", {}).get("gpu_name"),
                            "window_s": w["window_s"], "error_pct": w["eq1_error_pct"],
                            "avg_power_w": w["avg_power_w"], "origin": "meter self-check"}
                           for c in scs for w in c.get("c_eq1", [])])
        t = pd.concat([t, sc], ignore_index=True)
    t = t.dropna(subset=["window_s", "error_pct"])
    t["abs_error_pct"] = t["error_pct"].abs()
    return t.reset_index(drop=True)


def onehz_summary(t: pd.DataFrame, edges: Sequence[float] = (0, 2, 5, 10, math.inf)) -> pd.DataFrame:
    """|eq.-(1) error| by window length bin."""
    bins = pd.cut(t["window_s"], list(edges), right=False)
    g = t.groupby(bins, observed=True)
    return pd.DataFrame({"windows": g.size(), "median_abs_error_pct": g["abs_error_pct"].median(),
                         "max_abs_error_pct": g["abs_error_pct"].max(),
                         "median_signed_error_pct": g["error_pct"].median()})


def failures(df: pd.DataFrame, grid_excludes: Sequence[dict[str, Any]] = ()) -> pd.DataFrame:
    """Cells that did not give a measurement: failed/skipped records (first line of the error) and the
    grid's exclusions with the reason written above them in the grid file."""
    rows = []
    for _, r in df[df["status"] != "ok"].iterrows():
        err = str(r["error"] or "").strip().splitlines()
        rows.append({"what": r["label"], "slice": r["slice"], "status": r["status"],
                     "reason": err[-1] if err else ""})
    for e in grid_excludes:
        sel = {k: v for k, v in e.items() if k != "reason"}
        rows.append({"what": "grid exclude " + json.dumps(sel), "slice": "(by design)", "status": "excluded",
                     "reason": e.get("reason", "")})
    return pd.DataFrame(rows, columns=["what", "slice", "status", "reason"])


def coverage(df: pd.DataFrame, grid_file: Path) -> dict[str, Any]:
    """Cells of `grid_file` measured so far (records matched by cell hash), by status and per model;
    `outside_grid` counts the distinct cells of records run from this grid file (`grid_file`) that the grid
    does not hold (measured with `--set` overrides beyond it, e.g. batch 64)."""
    from measure.grid import expand, load_grid

    cells = expand(load_grid(grid_file))
    by_hash = {c.content_hash: c for c in cells}
    d = df[df["cell_hash"].isin(by_hash)].drop_duplicates("cell_hash", keep="last")
    from_grid = df["grid_file"].map(lambda g: Path(str(g)).name == grid_file.name) if "grid_file" in df else True
    per_model = pd.DataFrame({"grid_cells": pd.Series([c.model for c in cells]).value_counts()})
    per_model["measured"] = d["model"].value_counts().reindex(per_model.index).fillna(0).astype(int)
    per_model["ok"] = d[d["status"] == "ok"]["model"].value_counts().reindex(per_model.index).fillna(0).astype(int)
    counts = d["status"].value_counts()
    return {"grid": grid_file.name, "grid_cells": len(cells), "measured": len(d),
            "ok": int(counts.get("ok", 0)), "failed": int(counts.get("failed", 0)),
            "skipped": int(counts.get("skipped", 0)), "remaining": len(cells) - len(d), "per_model": per_model,
            "outside_grid": int(df.loc[~df["cell_hash"].isin(by_hash) & from_grid, "cell_hash"].nunique())}


def remaining_cells(df: pd.DataFrame, grid_file: Path) -> pd.DataFrame:
    """Cells of `grid_file` without any record yet, counted per (engine, workload) and method; the last
    column counts the architectures that have at least one such cell."""
    from measure.grid import expand, load_grid

    cells = expand(load_grid(grid_file))
    done = set(df["cell_hash"])
    t = pd.DataFrame([{"engine": c.engine, "workload": f"{c.prompt_tokens}/{c.output_tokens}", "quant": c.quant,
                       "model": c.model} for c in cells if c.content_hash not in done])
    if t.empty:
        return t
    out = t.pivot_table(index=["engine", "workload"], columns="quant", values="model", aggfunc="size", fill_value=0)
    out = out.reindex(columns=[q for q in METHOD_ORDER if q in out.columns])
    out["total"] = out.sum(axis=1)
    out["architectures"] = t.groupby(["engine", "workload"])["model"].nunique()
    return out


def first_rep_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """tokens/s of the first timed repetition / mean of the others (about 1 when the warm-up was enough),
    per ok record, with its file and `workload` (summaries should group by both)."""
    d = df[df["status"] == "ok"]
    r = d["rep_tokens_per_s"].map(lambda xs: xs[0] / float(np.mean(xs[1:])) if len(xs) > 1 else np.nan)
    return pd.DataFrame({"label": d["label"], "slice": d["slice"], "workload": workload_of(d),
                         "rejected": d["rejected"], "first_rep_ratio": r,
                         "energy_cv": d["energy_cv"]}).reset_index(drop=True)


# --- reproducibility: the same cell measured again on another machine ------------------------------------
def reproducibility(df: pd.DataFrame, repeat_slices: Sequence[str] = REPEAT_SLICES) -> pd.DataFrame:
    """Each ok record of a repeat file against the earlier ok record(s) of the same cell (`cell_hash`) on the
    same card type (`gpu_id`: the cell hash names no card) in the other files (their mean where there are
    several); records of the cell made after the repeat are left out. The cell hash covers every field of the
    cell, the workload included, so a repeat is only ever compared with records of its own workload.

    Differences are (repeat / earlier - 1) x 100 for decode J per output token (`energy_diff_pct`),
    tokens/s (`tokens_per_s_diff_pct`) and decode power (`power_diff_pct`). `comparison` says where the
    earlier record ran: 'same machine', or 'other machine (<n> GPUs)' where n is the number of GPUs of the
    earlier record's machine (`gpu_machines`). `noise_pct` is two standard errors of the ratio from the two
    records' energy_cv over their repetitions, as in `paired_energy`; `beyond_noise` = |energy diff| above it.
    """
    okd = df[(df["status"] == "ok") & ~df["rejected"].astype(bool)]
    rep = okd[okd["slice"].isin(repeat_slices)]
    earlier = okd[~okd["slice"].isin(repeat_slices)]
    earlier_at = pd.to_datetime(earlier["created_at"], utc=True)
    rows = []
    for _, r in rep.sort_values("created_at").iterrows():
        e = earlier[(earlier["cell_hash"] == r["cell_hash"]) & (earlier["gpu_id"] == r["gpu_id"])
                    & (earlier_at < pd.to_datetime(r["created_at"], utc=True))]
        if e.empty:
            continue
        ev = {c: e[c].mean() for c in ("decode_energy_per_token_j", "tokens_per_s", "decode_avg_power_w")}
        n_e = int(e["repetitions"].sum())
        cv_e = float(np.sqrt((e["energy_cv"] ** 2).mean()))
        machine_e = e["machine"].iloc[-1]
        n_gpus = machine_e.split("-GPU")[0] if "-GPU" in machine_e else "?"
        same = bool((e["machine"] == r["machine"]).all())
        rows.append({
            "label": r["label"], "gpu_id": r["gpu_id"], "model": r["model"], "quant": r["quant"],
            "engine": r["engine"], "batch_size": r["batch_size"], "workload": f"{int(r['prompt_tokens'])}/{int(r['output_tokens'])}",
            "earlier_slice": ", ".join(sorted(e["slice"].unique())),
            "earlier_machine": machine_e, "repeat_machine": r["machine"],
            "comparison": "same machine" if same else f"other machine ({n_gpus} GPU{'s' if n_gpus != '1' else ''})",
            "same_gpu_unit": bool((e["gpu_unit"] == r["gpu_unit"]).all()),
            "minutes_later": (pd.Timestamp(r["created_at"]) - pd.Timestamp(e["created_at"].max())).total_seconds() / 60,
            "e_earlier_j": ev["decode_energy_per_token_j"], "e_repeat_j": r["decode_energy_per_token_j"],
            "energy_diff_pct": (r["decode_energy_per_token_j"] / ev["decode_energy_per_token_j"] - 1) * 100,
            "tokens_per_s_diff_pct": (r["tokens_per_s"] / ev["tokens_per_s"] - 1) * 100,
            "power_diff_pct": (r["decode_avg_power_w"] / ev["decode_avg_power_w"] - 1) * 100,
            "noise_pct": float(noise_pct(r["energy_cv"], r["repetitions"], cv_e, n_e)),
        })
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    t["beyond_noise"] = t["energy_diff_pct"].abs() > t["noise_pct"]
    return t


def reproducibility_summary(t: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Median and max |difference| (%) of J/token and tokens/s, the median signed differences, and how many
    cells differ by more than their repetition noise; overall (`by` None) or per group."""
    def summ(g: pd.DataFrame) -> pd.Series:
        return pd.Series({
            "cells": len(g),
            "energy_abs_diff_median_pct": g["energy_diff_pct"].abs().median(),
            "energy_abs_diff_max_pct": g["energy_diff_pct"].abs().max(),
            "tokens_per_s_abs_diff_median_pct": g["tokens_per_s_diff_pct"].abs().median(),
            "tokens_per_s_abs_diff_max_pct": g["tokens_per_s_diff_pct"].abs().max(),
            "energy_diff_median_pct": g["energy_diff_pct"].median(),
            "tokens_per_s_diff_median_pct": g["tokens_per_s_diff_pct"].median(),
            "power_abs_diff_median_pct": g["power_diff_pct"].abs().median(),
            "beyond_noise": int(g["beyond_noise"].sum()),
        })
    if t.empty:
        return pd.DataFrame()
    if by is None:
        return summ(t).to_frame("all").T
    return t.groupby(by).apply(summ, include_groups=False)


def plot_reproducibility(t: pd.DataFrame, path: Path) -> Path:
    """Repeat vs earlier record of the same cell: J/token (log-log, y = x dashed) and the difference in
    J/token against the difference in tokens/s, coloured by where the earlier record ran."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    marks = {1: "o", 8: "s", 32: "^"}
    colors = {c: f"C{i}" for i, c in enumerate(sorted(t["comparison"].unique()))}
    for (c, b), g in t.groupby(["comparison", "batch_size"]):
        axes[0].scatter(g["e_earlier_j"], g["e_repeat_j"], color=colors[c], marker=marks.get(b, "o"), s=30,
                        label=f"{c}, b{b}")
        axes[1].scatter(g["tokens_per_s_diff_pct"], g["energy_diff_pct"], color=colors[c], marker=marks.get(b, "o"),
                        s=30)
    lo, hi = t[["e_earlier_j", "e_repeat_j"]].min().min() * 0.8, t[["e_earlier_j", "e_repeat_j"]].max().max() * 1.25
    axes[0].plot([lo, hi], [lo, hi], "k--", lw=0.8)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("earlier record: decode J per output token")
    axes[0].set_ylabel("repeat: decode J per output token")
    axes[0].legend(fontsize=7)
    axes[0].set_title("the same cell measured twice (dashed: identical)", fontsize=9)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].axvline(0, color="grey", lw=0.8)
    axes[1].set_xlabel("tokens/s: repeat vs earlier (%)")
    axes[1].set_ylabel("J per output token: repeat vs earlier (%)")
    r = np.corrcoef(t["tokens_per_s_diff_pct"], t["energy_diff_pct"])[0, 1] if len(t) > 2 else float("nan")
    axes[1].set_title(f"energy differences follow speed differences (Pearson r = {r:.2f})", fontsize=9)
    fig.suptitle("Reproducibility across machines (repeats.jsonl vs the earlier record of each cell; H100 80GB HBM3, "
                 "HF eager)", fontsize=10)
    return _save(fig, path)


# --- energy against model size ---------------------------------------------------------------------------
def energy_vs_params(df: pd.DataFrame, models: pd.DataFrame, quants: Sequence[str] = ("bf16", "fp16"),
                     engine: str = "hf-eager", workload: tuple[int, int] = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """Decode J per output token against the parameter count (models.csv `params_b`), one row per
    (card `gpu_id`, model, quant, batch, slice) with the mean of the cell's ok records (`cell_means`), for one
    `engine` and one `workload` only (default hf-eager, 256/128: the cells every architecture has)."""
    d = cell_means(df)
    d = d[d["quant"].isin(list(quants)) & (d["engine"] == engine) & (d["prompt_tokens"] == workload[0])
          & (d["output_tokens"] == workload[1])]
    params = models.set_index("id")["params_b"]
    t = d[["gpu_id", "model", "quant", "batch_size", "slice", "n_records", "decode_energy_per_token_j",
           "tokens_per_s", "decode_avg_power_w"]].copy()
    t["params_b"] = t["model"].map(params)
    t = t.sort_values(["gpu_id", "quant", "batch_size", "params_b"]).reset_index(drop=True)
    t.attrs.update(workload=tuple(workload), engine=engine)
    return t


def plot_energy_vs_params(t: pd.DataFrame, path: Path, repeats: pd.DataFrame | None = None) -> Path:
    """bf16 eager J per output token vs parameter count, one colour per batch size (filled circles); fp16
    cells (same bytes) as open squares where present; `repeats` (energy_vs_params of the repeat records) as
    crosses. One card type per plot (`gpu_id`)."""
    if "gpu_id" in t and t["gpu_id"].nunique() > 1:
        raise ValueError("plot_energy_vs_params draws one card type: pass one card's rows")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10.5, 6))
    for i, b in enumerate(sorted(t["batch_size"].unique())):
        col = f"C{i}"
        g = t[(t["quant"] == "bf16") & (t["batch_size"] == b)].sort_values("params_b")
        ax.plot(g["params_b"], g["decode_energy_per_token_j"], "o-", color=col, label=f"bf16, batch {b}")
        h = t[(t["quant"] == "fp16") & (t["batch_size"] == b)]
        ax.scatter(h["params_b"], h["decode_energy_per_token_j"], marker="s", facecolors="none", edgecolors=col,
                   label=f"fp16, batch {b}")
        if repeats is not None and len(repeats):
            r = repeats[(repeats["quant"] == "bf16") & (repeats["batch_size"] == b)]
            ax.scatter(r["params_b"], r["decode_energy_per_token_j"], marker="x", color=col,
                       label=f"bf16 repeat, batch {b}" if len(r) else None)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.5, 1, 2, 4, 8, 16]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    names = t.drop_duplicates("model").sort_values("params_b")
    ax.text(1.01, 0.0, "parameters (B)\n" + "\n".join(f"{r.params_b:5.2f}  {r.model.replace('-instruct', '')}"
                                                      for r in names.itertuples()),
            transform=ax.transAxes, fontsize=7, family="monospace", va="bottom")
    ax.set_xlabel("parameters (billions, models.csv params_b)")
    ax.set_ylabel("decode J per output token")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    wl = t.attrs.get("workload", REFERENCE_WORKLOAD)
    ax.set_title(f"Decode energy per output token vs model size, {t.attrs.get('engine', 'hf-eager')}, "
                 f"{wl[0]} in / {wl[1]} out, H100 80GB HBM3", fontsize=9)
    return _save(fig, path)


# --- why quantized eager decode is slower: a per-layer overhead --------------------------------------------
def layer_overhead(df: pd.DataFrame, models: pd.DataFrame, engine: str = "hf-eager",
                   workload: tuple[int, int] = REFERENCE_WORKLOAD) -> pd.DataFrame:
    """Each quantized cell against the 16-bit cell of the same model, engine, batch and workload (bf16, else
    fp16; over every method file, a cell's records averaged): decode step times (ms, batch / tokens_per_s),
    their difference per layer (`overhead_per_layer_ms`) and per quantized matmul (`overhead_per_linear_ms`: over
    `linear_modules`, num_layers x models.csv `linear_modules_per_layer`; NaN without that column) and the energy
    and power ratios, with the model's `num_layers` and `params_b`; pairs stay within one card model (`gpu_name`). The catalogue's fit
    (method_overhead.csv) is a different quantity: over the same pairs from every record file, the repeats
    included, and a cell's median record, the median of this difference less the analytic model's difference
    of the two cells (the fewer weight bytes and the dequantized copy it already charges), so its figures sit
    near, not on, this table's medians."""
    d = method_records(df)
    d = d[(d["status"] == "ok") & (d["engine"] == engine) & (d["prompt_tokens"] == workload[0])
          & (d["output_tokens"] == workload[1])]
    cols = ["model", "quant", "batch_size", "params_b", "num_layers", "linear_modules", "ref_quant", "t_ref_ms",
            "t_step_ms", "overhead_ms", "overhead_per_layer_ms", "overhead_per_linear_ms", "energy_ratio", "power_ratio"]
    keys = ["gpu_name", "model", "engine", "batch_size", "prompt_tokens", "output_tokens"]
    g = d.groupby([*keys, "quant"])[["tokens_per_s", "decode_energy_per_token_j", "decode_avg_power_w"]].mean()
    g = g.reset_index()
    g["t_step_ms"] = 1000.0 * g["batch_size"] / g["tokens_per_s"]
    ref = None
    for q in ("fp16", "bf16"):  # bf16 last: it wins where both exist
        r = g[g["quant"] == q].set_index(keys)
        ref = r if ref is None else pd.concat([ref[~ref.index.isin(r.index)], r])
    q = g[~g["quant"].isin(["fp32", "fp16", "bf16"])].set_index(keys)
    if ref is None or ref.empty or q.empty:
        return pd.DataFrame(columns=cols)
    q = q[q.index.isin(ref.index)]
    out = q.join(ref.add_suffix("_ref")).reset_index()
    m = models.set_index("id")
    out["num_layers"] = out["model"].map(m["num_layers"])
    out["params_b"] = out["model"].map(m["params_b"])
    out["t_ref_ms"] = out["t_step_ms_ref"]
    out["ref_quant"] = out["quant_ref"]
    out["overhead_ms"] = out["t_step_ms"] - out["t_ref_ms"]
    out["overhead_per_layer_ms"] = out["overhead_ms"] / out["num_layers"]
    per_layer = m["linear_modules_per_layer"] if "linear_modules_per_layer" in m else pd.Series(dtype=float)
    out["linear_modules"] = out["num_layers"] * pd.to_numeric(out["model"].map(per_layer))
    out["overhead_per_linear_ms"] = out["overhead_ms"] / out["linear_modules"]
    out["energy_ratio"] = out["decode_energy_per_token_j"] / out["decode_energy_per_token_j_ref"]
    out["power_ratio"] = out["decode_avg_power_w"] / out["decode_avg_power_w_ref"]
    return out[cols].sort_values(["quant", "batch_size", "params_b"]).reset_index(drop=True)


def layer_overhead_summary(t: pd.DataFrame, fitted: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: pairs, models, the median / p10 / p90 overhead per layer (ms), its coefficient of variation
    across models (the medians per model), the same per quantized matmul (`cv_across_models_per_linear`: the
    overhead over num_layers x linear modules per layer instead), the median energy ratio to 16-bit, and the
    catalogue's fit."""
    def cv_across_models(g: pd.DataFrame, col: str) -> float:
        per_model = g.groupby("model")[col].median().dropna() if col in g else pd.Series(dtype=float)
        return per_model.std() / per_model.mean() if len(per_model) > 1 else np.nan

    rows = []
    for quant, g in t.groupby("quant"):
        rows.append({"quant": quant, "pairs": len(g), "models": g["model"].nunique(),
                     "per_layer_ms_median": g["overhead_per_layer_ms"].median(),
                     "per_layer_ms_p10": g["overhead_per_layer_ms"].quantile(0.1),
                     "per_layer_ms_p90": g["overhead_per_layer_ms"].quantile(0.9),
                     "cv_across_models": cv_across_models(g, "overhead_per_layer_ms"),
                     "cv_across_models_per_linear": cv_across_models(g, "overhead_per_linear_ms"),
                     "energy_ratio_median": g["energy_ratio"].median()})
    s = pd.DataFrame(rows).set_index("quant")
    if fitted is not None and len(fitted):
        f = fitted[fitted["engine_id"] == "hf-eager"].set_index("quant_id")["per_layer_overhead_ms"]
        s["catalogue_fit_ms"] = s.index.map(f)
    return s


def plot_layer_overhead(t: pd.DataFrame, path: Path, fitted: pd.DataFrame | None = None) -> Path:
    """Left: extra decode step time against the number of layers per method (lines: the catalogue's per-layer
    fit x layers). Right: the extra time per layer against the parameter count (flat = per-layer cost)."""
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.2))
    f = (fitted[fitted["engine_id"] == "hf-eager"].set_index("quant_id")["per_layer_overhead_ms"]
         if fitted is not None and len(fitted) else pd.Series(dtype=float))
    markers = {1: "o", 8: "s", 32: "^"}
    for i, (quant, g) in enumerate(sorted(t.groupby("quant"), key=lambda kv: -kv[1]["overhead_per_layer_ms"].median())):
        col = f"C{i}"
        for b, h in g.groupby("batch_size"):
            ax.scatter(h["num_layers"], h["overhead_ms"], color=col, marker=markers.get(int(b), "x"), s=22,
                       label=quant if b == g["batch_size"].min() else None)
            bx.scatter(h["params_b"], h["overhead_per_layer_ms"], color=col, marker=markers.get(int(b), "x"), s=22)
        if quant in f.index:
            xs = np.array([t["num_layers"].min(), t["num_layers"].max()])
            ax.plot(xs, xs * f[quant], color=col, lw=1)
            bx.axhline(f[quant], color=col, lw=0.8, ls="--")
    ax.axhline(0, color="k", lw=0.5)
    bx.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("decoder layers (models.csv num_layers)")
    ax.set_ylabel("decode step time minus the 16-bit cell's (ms)")
    ax.legend(fontsize=7, title="method (marker: batch 1 o, 8 s, 32 ^)", title_fontsize=7)
    bx.set_xscale("log")
    bx.set_xlabel("parameters (billions)")
    bx.set_ylabel("extra ms per layer per decode step")
    fig.suptitle("Quantized HF eager decode on an H100: a constant cost per layer, not fewer bytes "
                 "(lines: datasets/catalog/method_overhead.csv)", fontsize=9)
    return _save(fig, path)


# --- Figure 4 --------------------------------------------------------------------------------------------
def figure4_matrix(df: pd.DataFrame, model: str | Sequence[str] = "qwen2.5-7b-instruct",
                   workload: tuple[int, int] = REFERENCE_WORKLOAD,
                   grid_excludes: Sequence[dict[str, Any]] = (),
                   baseline_card: str | None = None) -> dict[str, pd.DataFrame]:
    """Our cards x methods matrix: rows '<card> · <engine> · b<batch>' (one model) or
    '<card> · <model> · <engine> · b<batch>' (several), columns METHOD_ORDER; cards (`gpu_id`) in name order,
    then the models in the order given, eager first and the other engines by name, each engine's batches in order.

    Returns energy (J per output token, the mean of the cell's ok records; NaN where not measured), ratio
    (energy / bf16 of the same row, or with `baseline_card` / bf16 of that card's row of the same model,
    engine and batch, so that the cards share one reference; NaN where that bf16 cell is missing) and status
    ('ok', 'failed', 'excluded' by the grid, 'not yet run'). An entry of `grid_excludes` with a `gpu_id` key
    applies to that card only (`grid_scope_excludes`). Pass the method records (`method_records`): repeats
    would otherwise be averaged in.
    """
    models = [model] if isinstance(model, str) else list(model)
    d = df[(df["model"].isin(models)) & (df["prompt_tokens"] == workload[0])
           & (df["output_tokens"] == workload[1]) & (~df["rejected"])]
    order = {m: i for i, m in enumerate(models)}
    rows = sorted({(g, m, e, b) for g, m, e, b in zip(d["gpu_id"], d["model"], d["engine"], d["batch_size"],
                                                       strict=True)},
                  key=lambda r: (r[0], order[r[1]], r[2] != "hf-eager", r[2], r[3]))  # an engine's batches together
    short = {m: m.replace("-instruct", "") for m in models}
    index = [f"{g} · {e} · b{b}" if len(models) == 1 else f"{g} · {short[m]} · {e} · b{b}" for g, m, e, b in rows]
    energy = pd.DataFrame(np.nan, index=index, columns=list(METHOD_ORDER))
    status = pd.DataFrame("not yet run", index=index, columns=list(METHOD_ORDER))
    cells = dict(iter(d.groupby(["gpu_id", "model", "engine", "batch_size", "quant"], sort=False)))
    for (g, m, e, b), name in zip(rows, index, strict=True):
        for q in METHOD_ORDER:
            sel = cells.get((g, m, e, b, q), d.iloc[:0])
            if (sel["status"] == "ok").any():
                energy.loc[name, q] = sel.loc[sel["status"] == "ok", "decode_energy_per_token_j"].mean()
                status.loc[name, q] = "ok"
            elif len(sel):
                status.loc[name, q] = sel.sort_values("created_at")["status"].iloc[-1]
            elif _excluded({"gpu_id": g, "model": m, "quant": q, "engine": e, "batch_size": b}, grid_excludes):
                status.loc[name, q] = "excluded"
    ref = energy["bf16"]
    if baseline_card is not None:
        row_of = {(g, m, e, b): name for (g, m, e, b), name in zip(rows, index, strict=True)}
        ref = pd.Series([energy.loc[row_of[(baseline_card, m, e, b)], "bf16"] if (baseline_card, m, e, b) in row_of
                         else np.nan for (_, m, e, b) in rows], index=index)
    ratio = energy.div(ref, axis=0)
    for t in (energy, ratio, status):
        t.attrs["workload"] = tuple(workload)
        t.attrs["baseline_card"] = baseline_card
        t.attrs["cards"] = list(dict.fromkeys(r[0] for r in rows))
    return {"energy": energy, "ratio": ratio, "status": status}


def public_figure4_matrix(public: pd.DataFrame, batch_size: int = 1) -> pd.DataFrame:
    """Public rows where the same quantity exists: 16-bit J per output token at a fixed batch, cards as columns.

    Rows '<dataset> · <engine> · <model>' with the model on at least two cards of that dataset; the value is the
    median `energy_per_token_j` over the dataset's tasks/lengths. Scope differs from ours (whole response
    incl. prefill; other engines; ML.ENERGY v2 is left out because its batch is the server's running
    average, not a fixed batch). Only 16-bit rows carry energy in these sources.
    """
    p = public[(public["energy_per_token_j"].notna()) & (public["quant"].isin(["fp16", "bf16"]))
               & (public["batch_size"] == batch_size) & (public["dataset"] != "mlenergy-v2")]
    g = p.groupby(["dataset", "engine", "model", "gpu_id"])["energy_per_token_j"].median().reset_index()
    n_cards = g.groupby(["dataset", "engine", "model"])["gpu_id"].transform("nunique")
    g = g[n_cards >= 2]
    g["row"] = g["dataset"] + " · " + g["engine"] + " · " + g["model"]
    return g.pivot(index="row", columns="gpu_id", values="energy_per_token_j")


def public_card_spread(matrix: pd.DataFrame) -> pd.DataFrame:
    """Per public row: best vs worst card (hardware choice alone, 16-bit, batch 1)."""
    best, worst = matrix.min(axis=1), matrix.max(axis=1)
    return pd.DataFrame({"cards": matrix.notna().sum(axis=1), "best_card": matrix.idxmin(axis=1),
                         "worst_card": matrix.idxmax(axis=1), "best_j": best, "worst_j": worst,
                         "saving_best_vs_worst_pct": (1 - best / worst) * 100})


# --- key findings ----------------------------------------------------------------------------------------
def _cells_txt(p: pd.DataFrame) -> str:
    return ", ".join(f"{r.model.replace('-instruct', '')} {r.quant}"
                     f"{'' if getattr(r, 'engine', 'hf-eager') == 'hf-eager' else ' ' + r.engine} b{r.batch_size} "
                     f"({r.energy_reduction_pct:+.1f} %{'' if r.same_machine else ', cells on different machines'})"
                     for r in p.itertuples())


def _fmt_range(p: pd.DataFrame) -> str:
    if p.empty:
        return "no paired cells"
    return (f"median {p['energy_reduction_pct'].median():+.1f} % (energy x{p['energy_ratio'].median():.2f}; range "
            f"{p['energy_reduction_pct'].min():+.1f} to {p['energy_reduction_pct'].max():+.1f} %, {len(p)} cells)")


def _batch_trend(summary: pd.DataFrame) -> str:
    """', and its median saving shrinks/grows with batch size' when the per-batch medians of an
    `engine_effect_summary` fall/rise monotonically; otherwise that it does not move one way."""
    med = summary.sort_values("batch_size")["energy_reduction_median_pct"].to_numpy(float)
    if len(med) < 2:
        return ""
    steps = np.diff(med)
    trend = "shrinks" if (steps < 0).all() else "grows" if (steps > 0).all() else "does not move one way"
    return (f", and its median saving {trend} with batch size ("
            + " -> ".join(f"{m:+.1f} %" for m in med) + ")")


def _ranking_verdict(spearman_median: float, cells: int, changed: int, resolved: int) -> str:
    """The verdict on 'the best strategy depends on the card' from `method_rank_transfer`: the median Spearman
    correlation of the method order, and of `cells` cells, how many change their cheapest method (`changed`)
    and how many of those changes the repetition noise resolves (`resolved`)."""
    rho = f"Spearman median {spearman_median:.2f}"
    if spearman_median >= 0.7:
        if resolved == 0:
            change = ("the cheapest method is the same in every cell" if changed == 0 else
                      f"the cheapest method changes ({changed} of {cells} cells) only within noise")
            return f"not between these two cards: the method order broadly carries over ({rho}); {change}"
        return (f"partly: the method order broadly carries over ({rho}), but the cheapest method changes beyond "
                f"noise in {resolved} of {cells} cells")
    if spearman_median >= 0.4:
        return (f"partly: the method order carries over only roughly ({rho}); the cheapest method changes in "
                f"{changed} of {cells} cells, {resolved} beyond noise")
    return (f"agrees: the method order changes with the card ({rho}); the cheapest method changes in {changed} of "
            f"{cells} cells, {resolved} beyond noise")


def _hardware_findings(cards: pd.DataFrame, workload: tuple[int, int],
                       gpus: pd.DataFrame | None = None) -> dict[str, tuple[str, ...]] | None:
    """The key-findings rows of the hardware comparison ((ours, evidence, verdict, why) per claim), from the
    records of every card type (`load_cards`, repeats included: the cross-machine spread of the baseline card
    comes from its repeats) and, for the bandwidth prediction, gpus.csv (`gpus`); None with fewer than two
    card types."""
    recs = method_records(cards)
    ids = [c for c in CARD_FOLDERS if c in set(recs["gpu_id"])]
    ids += sorted(set(recs["gpu_id"].dropna()) - set(ids))
    if len(ids) < 2:
        return None
    base, card = ids[0], ids[1]
    co = hardware_method_cooptimisation(recs, base, workload=workload)
    ce = card_effect(recs, card, base, gpus, workload=workload, engine="hf-eager")
    ce_compiled = card_effect(recs, card, base, gpus, workload=workload, engine="hf-compiled")
    rt = method_rank_transfer(recs, card, base, workload=workload)
    if co.empty or ce.empty:
        return None
    rep = reproducibility(cards[cards["gpu_id"] == base])
    sens = card_effect_vs_repeats(cards, card, base, workload=workload, engine="hf-eager")
    spread = float(rep["energy_diff_pct"].abs().max()) if len(rep) else float("nan")
    wl = f"{workload[0]}/{workload[1]}"
    claim = PAPER_CLAIMS["co_optimisation_max_pct"]
    sixteen = {"bf16", "fp16"}
    top = co.loc[co["joint_saving_pct"].idxmax()]
    n = len(co)
    n_card = int((co["joint_card"] == card).sum())
    n_quant = int((~co["joint_method"].isin(sixteen)).sum())
    j, h, m = co["joint_saving_pct"], co["hardware_saving_pct"], co["method_saving_pct"]
    ours = (f"hardware x method ({card} vs {base}, hf-eager, {wl}, {n} architecture x batch cells, the methods measured "
            f"on both cards): the best (card, method) saves median {j.median():.1f} % (range {j.min():+.1f} to "
            f"{j.max():+.1f} %; largest {top['model'].replace('-instruct', '')} b{top['batch_size']}, "
            f"{top['joint_card']} {top['joint_method']}) against bf16 on the {base}; the card alone (bf16 on the best "
            f"card) median {h.median():.1f} % (up to {h.max():.1f} %), the method alone (best method on the {base}) "
            f"median {m.median():.1f} % (up to {m.max():.1f} %); the joint choice is the {card} in {n_card} of {n} "
            f"cells and a quantized method in {n_quant} of {n}; it saves more than the repetition noise in "
            f"{int(co['joint_beyond_noise'].sum())} of {n}")
    size = ("as large as claimed" if j.max() >= claim - 5.0 else
            "smaller than claimed" if j.max() >= claim / 2 else "far smaller than claimed")
    # the method on top of the best card: saves, and beyond the noise of the joint/card-alone ratio
    n_adds = int((co["method_on_card_beyond_noise"] & (co["joint_vs_hardware_pct"] > 0)).sum())
    adds = (f"the method adds beyond noise in none of the {n} cells" if n_adds == 0 else
            f"the method adds beyond noise in {n_adds} of {n} cells")
    source = (f"mostly from the card, not the method ({adds})" if h.median() > co["joint_vs_hardware_pct"].median()
              else f"mostly from the method ({adds})")
    verdict = f"{size}: up to {j.max():.0f} % (paper {claim:.0f} %), {source}"
    u = ce["bandwidth_utilization_base"].median()
    exp_txt = ""
    if "speedup_if_bandwidth" in ce:
        exp_txt = (f", so the extra bandwidth ({ce['bandwidth_ratio'].iloc[0]:.2f}x) alone predicts a median speedup of "
                   f"{ce['speedup_if_bandwidth'].median():.3f}x")
    why = (f"the {card} has the {base}'s compute and power limit; these eager cells use a median "
           f"{u * 100:.1f} % of the {base}'s bandwidth roofline{exp_txt}, against a measured median "
           f"{ce['speedup'].median():.2f}x at {ce['power_ratio'].median():.2f}x the power: most of the gain is not "
           f"the memory; the two cards ran on different machines and one {base} cell differs by up to {spread:.0f} % "
           f"in J/token between two {base} machines (section Reproducibility), so part of it may be the host; "
           "quantized eager methods keep their per-layer cost on both cards, so the cheapest method on a card is "
           + ("nearly always" if n_quant <= n / 4 else "often") + " 16-bit")
    rows = {"co": (ours, f"measured ({card} and {base}, one {card} machine, eager, {wl}); engine x method on the "
                   f"{base}", verdict, why)}
    within = ce["energy_change_pct"].abs() <= spread
    per_b = ce[ce["quant"] == "bf16"].groupby("batch_size")["energy_ratio"].median()
    e_med = ce["energy_ratio"].median()
    hw_verdict = (f"the {card} uses {'less' if e_med < 1 else 'more'} energy per token (median "
                  f"{abs(1 - e_med) * 100:.0f} %)")
    if "speedup_if_bandwidth" in ce:
        meas, pred = ce["speedup"].median(), ce["speedup_if_bandwidth"].median()
        nums = (f"tokens/s x{meas:.2f} measured, x{pred:.3f} predicted from {ce['bandwidth_ratio'].iloc[0]:.2f}x "
                "the bandwidth, medians")
        gain, pred_gain = meas - 1.0, pred - 1.0
        if gain <= 0:
            hw_verdict += f", and decodes no faster although the bandwidth model predicts a gain ({nums})"
        elif pred_gain <= 0 or gain > 2.0 * pred_gain:
            hw_verdict += (f", and decodes faster by far more than the bandwidth model predicts ({nums}): mostly "
                           "not the memory")
        elif gain >= 0.5 * pred_gain:
            hw_verdict += f", and decodes faster by about what the bandwidth model predicts ({nums})"
        else:
            hw_verdict += f", and decodes faster by less than the bandwidth model predicts ({nums})"
    machines_base, machines_card = _machines_of(ce["machine_base"]), _machines_of(ce["machine_card"])

    def n_machines(ms: list[str]) -> str:
        return "one machine" if len(ms) == 1 else f"{len(ms)} machines"
    compiled_txt = ""
    if len(ce_compiled):
        cc = ce_compiled
        compiled_txt = (
            f"; compiled (hf-compiled, {len(cc)} cells, {cc['model'].nunique()} architectures, another {card} machine): "
            f"median x{cc['energy_ratio'].median():.3f} (range x{cc['energy_ratio'].min():.2f} to "
            f"x{cc['energy_ratio'].max():.2f}), tokens/s x{cc['speedup'].median():.2f} against "
            f"x{cc['speedup_if_bandwidth'].median():.3f} from the bandwidth (these cells use a median "
            f"{cc['bandwidth_utilization_base'].median() * 100:.0f} % of the roofline)" if "speedup_if_bandwidth" in cc
            else f"; compiled ({len(cc)} cells): median x{cc['energy_ratio'].median():.3f}")
    rows["hardware"] = (
        f"{card} / {base} decode J/token on the same cell, hf-eager, {len(ce)} cells ({ce['model'].nunique()} architectures, "
        f"{ce['quant'].nunique()} methods, batch {', '.join(str(b) for b in sorted(ce['batch_size'].unique()))}): "
        f"median x{ce['energy_ratio'].median():.3f} (interquartile x{ce['energy_ratio'].quantile(0.25):.3f} to "
        f"x{ce['energy_ratio'].quantile(0.75):.3f}, range x{ce['energy_ratio'].min():.2f} to "
        f"x{ce['energy_ratio'].max():.2f}); bf16 per batch: "
        + ", ".join(f"b{b} x{v:.3f}" for b, v in per_b.items())
        + f"; tokens/s x{ce['speedup'].median():.2f}, decode power x{ce['power_ratio'].median():.2f}, TTFT "
        f"x{ce['ttft_ratio'].median():.2f} (medians); {int((ce['beyond_noise'] & (ce['energy_ratio'] < 1)).sum())} "
        f"cells lower and {int((ce['beyond_noise'] & (ce['energy_ratio'] > 1)).sum())} higher beyond the repetition "
        f"noise, {int(within.sum())} within the largest cross-machine difference of one {base} cell ({spread:.0f} %)"
        + compiled_txt,
        f"measured ({card}: {n_machines(machines_card)}; {base}: {n_machines(machines_base)})",
        hw_verdict,
        f"eager decode is launch-bound, so the bytes per step set little of the step time; the ratio depends on "
        f"which {base} machine measured the cell (median x"
        + ", x".join(f"{v:.2f} against {k}" for k, v in
                     ce.groupby(machine_group(ce["machine_base"]))["energy_ratio"].median().items())
        + "), so the host CPU, unknown for both cards, is part of it"
        + (f"; the {len(sens)} cells whose {base} cell was measured on two {base} machines give median "
           f"x{sens['energy_ratio_first'].median():.3f} against the first and x{sens['energy_ratio_repeat'].median():.3f} "
           f"against the second (shift median {sens['shift_pct'].median():+.1f} %, range {sens['shift_pct'].min():+.1f} "
           f"to {sens['shift_pct'].max():+.1f} %)" if len(sens) else "") + ".")
    if len(rt):
        diff = rt[~rt["same_best"]]
        same_bytes = diff[diff["best_base"].isin(sixteen) & diff["best_card"].isin(sixteen)]
        resolved = diff[~diff["change_within_noise"]]
        med = rt["spearman"].median()
        rows["ranking"] = (
            f"method order by decode J/token, {card} vs {base}, per architecture x batch ({len(rt)} with "
            f"{rt['methods'].min()}-{rt['methods'].max()} methods on both): Spearman median {med:.2f} (range "
            f"{rt['spearman'].min():.2f} to {rt['spearman'].max():.2f}); the same cheapest method in "
            f"{int(rt['same_best'].sum())} of {len(rt)}, and where it differs it is bf16 vs fp16 (the same bytes) in "
            f"{len(same_bytes)} of {len(diff)}; in {len(resolved)} of these {len(diff)} each card's cheapest beats the "
            "other card's beyond the repetition noise on that card",
            f"measured ({card} vs {base}, hf-eager, {wl})",
            _ranking_verdict(med, len(rt), len(diff), len(resolved)),
            "both are Hopper cards with the same compute; the order is set mostly by each method's per-layer "
            "launch cost, the same on both; the paper's examples span consumer and data-centre cards of other "
            "generations, which our data do not cover.")
    return rows


def key_findings(df: pd.DataFrame, models: pd.DataFrame, public_matrix: pd.DataFrame | None = None,
                 model: str = "qwen2.5-7b-instruct", selfcheck: Any = None,
                 quant_accuracy: pd.DataFrame | None = None,
                 workload: tuple[int, int] = REFERENCE_WORKLOAD, cards: pd.DataFrame | None = None,
                 gpus: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claims next to what our data says, with evidence class and reason; all numbers computed.

    `df`: the method records (`method_records`: repeats are left out) of every architecture. The energy rows
    use the cells of one `workload` only (default 256/128, the one every method and engine was measured at;
    the longer workload is compared in `workload_effect`); the 1 Hz row uses the timed windows of every
    workload, of `df` and, given `cards`, of the other card types' method records, each card type summarised
    apart (by `gpu_name`). The Table 2 rows give `model` (the paper's Qwen2.5-7B shape, the one architecture
    with compiled cells of several methods) and then every architecture with paired cells; their verdict uses
    every architecture. The co-optimisation row adds compiled vs eager bf16 over every architecture
    (`engine_effect_summary`). `selfcheck`: one or several self-checks (see onehz_table), each listed with its
    GPU. `quant_accuracy`: the catalogue's cited accuracy rows (the accuracy claim is "not checked" without
    them). `cards`: the records of every card type (`load_cards`, repeats included); with two or more card
    types the co-optimisation row tests the hardware half too (`hardware_method_cooptimisation`,
    `card_effect`), and two rows are added: the measured hardware effect and whether the method ranking
    carries over between the cards (`method_rank_transfer`); `gpus` (gpus.csv) adds the speedup the extra
    bandwidth alone predicts."""
    hw = _hardware_findings(cards, workload, gpus) if cards is not None else None
    df_all_workloads = method_records(df)
    df = select_workload(df_all_workloads, workload)
    d = df[df["model"] == model]
    vs_bf16 = paired_energy(d, "bf16")
    vs_fp32 = paired_energy(d, "fp32")
    all_bf16 = paired_energy(df, "bf16")
    all_fp32 = paired_energy(df, "fp32")
    co = co_optimisation(d)
    rows = []

    def add(claim, paper, ours, evidence, verdict, why):
        rows.append({"claim": claim, "paper": paper, "ours": ours, "evidence": evidence, "verdict": verdict,
                     "why": why})

    short = model.replace("-instruct", "")
    int8 = vs_bf16[vs_bf16["strategy"] == "INT8"]
    int8_32 = vs_fp32[vs_fp32["strategy"] == "INT8"]
    a_int8 = all_bf16[all_bf16["strategy"] == "INT8"]
    a_int8_32 = all_fp32[all_fp32["strategy"] == "INT8"]
    bnb = a_int8[a_int8["quant"] == "bnb-int8"]
    wo = a_int8[a_int8["quant"] == "torchao-int8-wo"]
    saves = a_int8_32[(a_int8_32["energy_reduction_pct"] > 0) & ~a_int8_32["within_noise"]]
    saves_txt = ", ".join(f"{r.model.replace('-instruct', '')} {r.quant} b{r.batch_size} "
                          f"({r.energy_reduction_pct:+.0f} %)" for r in saves.itertuples())

    def n_arch(p: pd.DataFrame) -> str:
        return f"{p['model'].nunique()} architecture{'s' if p['model'].nunique() != 1 else ''}"
    why = []
    if len(bnb):
        why.append(f"bnb LLM.int8 decodes {1 / bnb['speedup'].median():.1f}x slower than bf16 (median) at "
                   f"{bnb['power_ratio'].median():.2f}x the power: per layer it quantizes activations, splits "
                   "outlier columns and dequantizes, many small kernels, so decode is bound by those, not by "
                   "weight bytes (it reaches a few % of the bandwidth roofline; random weights may also not "
                   "reproduce real outlier rates)")
    if len(wo):
        why.append(f"torchao int8 weight-only without torch.compile runs {1 / wo['speedup'].median():.1f}x slower "
                   f"at {wo['power_ratio'].median():.2f}x the power (unfused fallback kernels)")
    why.append(f"against fp32 INT8 saves energy beyond noise only in: {saves_txt or 'no cell'}")
    add("INT8 saves energy (Table 2)", "energy reduction 25.0 %",
        f"{short}: energy reduction vs bf16 {_fmt_range(int8)}; vs fp32 {_fmt_range(int8_32)}. "
        f"All architectures: vs bf16 {_fmt_range(a_int8)} over {n_arch(a_int8)}; vs fp32 {_fmt_range(a_int8_32)} "
        f"over {n_arch(a_int8_32)}",
        "measured (H100, HF eager, random-weight architectures)",
        _verdict(a_int8["energy_reduction_pct"].median() if len(a_int8) else np.nan,
                 a_int8["energy_reduction_pct"].max() if len(a_int8) else np.nan, 25.0, len(a_int8),
                 best_within_noise=_best_within_noise(a_int8)),
        "; ".join(why) + ".")
    fp16 = vs_fp32[vs_fp32["strategy"] == "FP16"]
    a_fp16 = all_fp32[all_fp32["strategy"] == "FP16"]
    add("FP16 saves energy vs full precision (Table 2)", "energy reduction 16.3 % (baseline implied: fp32)",
        f"energy reduction of fp16/bf16 vs fp32: {short} {_fmt_range(fp16)}; all architectures {_fmt_range(a_fp16)} "
        f"over {n_arch(a_fp16)}", "measured (H100, HF eager)",
        _verdict(a_fp16["energy_reduction_pct"].median() if len(a_fp16) else np.nan,
                 a_fp16["energy_reduction_pct"].max() if len(a_fp16) else np.nan, 16.3, len(a_fp16)),
        "fp32 streams twice the weight bytes per token and runs its matmuls without 16-bit tensor cores "
        "(TF32 off by default), so halving the precision saves more than the paper's 16.3 %, growing with batch.")
    dyn = all_bf16[all_bf16["strategy"] == "Dynamic"]
    dyn_txt = "; ".join(f"{r.model.replace('-instruct', '')} {r.engine} b{r.batch_size}: "
                        f"{r.energy_reduction_pct:+.1f} %" + (" (within noise)" if r.within_noise else "")
                        for r in dyn.itertuples())
    fails = df[(df["quant"] == "torchao-int8-dyn") & (df["status"] != "ok")]
    add("Dynamic quantization saves energy (Table 2)", "energy reduction 10.5 %",
        f"energy reduction vs bf16 on the same engine: {dyn_txt or 'no paired cells'}; {fails['cell_hash'].nunique()} "
        f"compiled cells failed ({len(fails)} records)",
        "measured (H100)", _verdict(dyn["energy_reduction_pct"].median() if len(dyn) else np.nan,
                                    dyn["energy_reduction_pct"].max() if len(dyn) else np.nan, 10.5, len(dyn),
                                    best_within_noise=_best_within_noise(dyn)),
        "torchao int8 dynamic runs a slow fallback without torch.compile; compiled, its int8 matmul "
        "(torch._int_mm) needs more than 16 rows, so batches 1 and 8 fail; at batch 32 it ties compiled bf16 "
        "within noise.")
    best = co.iloc[0] if len(co) else None
    quant_best = all_bf16[all_bf16["quant"] != "fp32"]
    qb = quant_best.sort_values("energy_reduction_pct").iloc[-1] if len(quant_best) else None
    beats = quant_best[(quant_best["energy_reduction_pct"] > 0) & ~quant_best["within_noise"]]
    ee = engine_effect(df)
    ee_arch = engine_effect_per_architecture(ee, "bf16")
    es = engine_effect_summary(ee, "bf16")
    wl = f"{workload[0]}/{workload[1]}"
    if len(es):
        costs = ee_arch[(ee_arch["energy_reduction_pct"] < 0) & ~ee_arch["within_noise"]]
        eng_txt = (f"; compiled vs eager bf16 on the same cell, {ee_arch['model'].nunique()} architectures ({wl}): "
                   + "; ".join(f"b{r.batch_size} median {r.energy_reduction_median_pct:+.1f} % (range "
                               f"{r.energy_reduction_min_pct:+.1f} to {r.energy_reduction_max_pct:+.1f} %, "
                               f"{r.architectures} architectures, {r.n_saves_beyond_noise} save beyond noise)"
                               for r in es.itertuples())
                   + ("; compiled uses more energy beyond noise in "
                      + ", ".join(f"{r.model.replace('-instruct', '')} b{r.batch_size} ({r.energy_reduction_pct:+.1f} %)"
                                  for r in costs.itertuples()) if len(costs) else "")
                   + f"; {int(ee_arch['same_gpu_unit'].sum())} of {len(ee_arch)} compiled/eager pairs ran on the "
                   f"same GPU unit, {int(ee_arch['same_machine'].sum())} on the same machine")
        top = ee_arch.loc[ee_arch["energy_reduction_pct"].idxmax()]
        engine_vs_method = (
            f"compiling bf16 (static KV cache) saves up to {top['energy_reduction_pct']:.0f} % "
            f"({top['model'].replace('-instruct', '')} b{top['batch_size']}), "
            + ("more than any method saves against bf16 on the same engine"
               if qb is None or top["energy_reduction_pct"] > qb["energy_reduction_pct"]
               else "less than the best method against bf16 on the same engine")
            + _batch_trend(es) + "; ")
    else:
        eng_txt, engine_vs_method = "", ""
    claim = PAPER_CLAIMS["co_optimisation_max_pct"]
    ex = PAPER_CLAIMS["co_optimisation_examples"]
    top_ex = max(ex, key=ex.get)
    hw_co = hw["co"] if hw else None
    add("Hardware x quantization co-optimisation (s4.3)", f"up to {claim:.0f} % efficiency gain ({top_ex})",
        (hw_co[0] + "; " if hw_co else "")
        + (f"engine x method on one card type ({short}): best {best['energy_reduction_pct']:+.1f} % "
         f"({best['engine']} {best['quant']} b{best['batch_size']} vs hf-eager bf16"
         + ("" if best["same_gpu_unit"] else "; the two cells ran on different H100 units") + ")"
         if best is not None else "-")
        + (f"; best method vs bf16 on the same engine, any architecture: {qb['model'].replace('-instruct', '')} "
           f"{qb['quant']} {qb['engine']} b{qb['batch_size']} "
           f"{qb['energy_reduction_pct']:+.1f} %" + (" (within noise)" if qb["within_noise"] else "")
           if qb is not None else "")
        + eng_txt,
        hw_co[1] if hw_co else "measured (engine x method); hardware part: one card type only",
        hw_co[2] + "; on one card the engine matters more than the quantization" if hw_co else
        "not testable for hardware; here the engine matters more than the quantization",
        (hw_co[3] + "; " if hw_co else "we measured one card type, so hardware selection is not in our data; ")
        + engine_vs_method
        + ("no quantized method beats bf16 on the same engine beyond noise in any architecture"
           if beats[beats["quant"] != "fp16"].empty else "quantized cells that beat bf16 on the same engine beyond "
           "noise: " + _cells_txt(beats[beats["quant"] != "fp16"]))
        + ("" if beats[beats["quant"] == "fp16"].empty else
           "; fp16 (the same bytes as bf16) beats it beyond the repetition noise in "
           + _cells_txt(beats[beats["quant"] == "fp16"])
           + ", differences of the size two runs of one cell on two machines also show (section Reproducibility)")
        + ".")
    if public_matrix is not None and len(public_matrix):
        sp = public_card_spread(public_matrix)
        add("Hardware choice alone (s4.2, Fig. 4)", "A100 PCIe most efficient",
            f"public 16-bit batch-1 rows: best vs worst card saves {sp['saving_best_vs_worst_pct'].min():.0f}-"
            f"{sp['saving_best_vs_worst_pct'].max():.0f} %; best card per row: "
            + ", ".join(sorted(sp["best_card"].unique())), "cited (ML.ENERGY v1, Argonne)", "partly comparable",
            "different scope (prefill + decode, other engines, other models); 16-bit only.")
    if hw:
        add("Hardware choice alone, measured (s4.2)", "the card changes energy per token (Fig. 4)", *hw["hardware"])
        if "ranking" in hw:
            add("The best strategy depends on the card (s4.3)",
                "; ".join(f"{k}: {v:.1f} %" for k, v in ex.items()) + " (a different strategy per card)",
                *hw["ranking"])
    dc = distillation_check(models)
    same = bool(dc["identical"].all())
    add("Distillation saves energy (s4.3)", "energy reduction 19.8 % (DeepSeek-R1-Distill-Qwen-7B)",
        "energy reduction 0 % per token, by construction" if same else "shapes differ",
        f"catalogue: models.csv architecture_of = {dc.attrs['architecture_of']}", "disagrees" if same else "?",
        "the distilled model has exactly the Qwen2.5-7B tensor shapes, so weight bytes, FLOPs and KV bytes per "
        "token (hence J/token) are identical; energy per request can only differ through the number of "
        "tokens generated, which our fixed-length runs do not measure.")
    add("Accuracy loss per strategy (Table 2)", "INT8 <1.0 %, FP16 0.2 %, Dynamic 1.5 %",
        *_accuracy_finding(quant_accuracy, model))
    # the 1 Hz row: the records of every card type passed (df's, and with `cards` the other cards' method
    # records), each card summarised apart, next to the self-checks (of whichever cards `selfcheck` holds)
    onehz_recs = df_all_workloads
    if cards is not None:
        other = method_records(cards[~cards["gpu_id"].isin(set(df_all_workloads["gpu_id"]))])
        onehz_recs = pd.concat([df_all_workloads, other], ignore_index=True)
    e1 = onehz_table(onehz_recs, selfcheck)
    rec = e1[e1["origin"] != "meter self-check"]
    sc = e1[e1["origin"] == "meter self-check"]
    per_card = list(rec.groupby("gpu_name", sort=False))

    def gpu(name: Any) -> str:
        return str(name).removeprefix("NVIDIA ")

    def pearson(g: pd.DataFrame) -> float:
        return np.corrcoef(g["stale_reading_error_pct"], g["error_pct"])[0, 1] if len(g) > 2 else float("nan")
    rec_txt = "; ".join(
        f"{gpu(name)} records ({len(g)}): |error| median {g['abs_error_pct'].median():.1f} %, max "
        f"{g['abs_error_pct'].max():.1f} % on {g['window_s'].min():.1f}-{g['window_s'].max():.1f} s windows"
        for name, g in per_card)
    r_txt = ", ".join(f"{pearson(g):.2f}" + (f" ({gpu(name)})" if len(per_card) > 1 else "") for name, g in per_card)
    sc_txt = "; self-check from idle: " + ", ".join(
        f"{w.error_pct:+.1f} % at {w.window_s:.0f} s ({gpu(w.gpu_name)})"
        for w in sc.itertuples()) if len(sc) else ""
    add("Energy from 1 Hz nvidia-smi power (eq. 1)", "the paper's measurement method",
        f"{rec_txt}{sc_txt}",
        "measured (NVML energy counter vs eq. 1 on the same windows)", "too coarse for runs of a few seconds",
        "one reading per second stands for the whole second: the first one still holds the power of what ran "
        f"before (the prefill window, up to {rec['prefill_power_w'].max():.0f} W here, or idle), which alone "
        f"explains the record errors (Pearson r = {r_txt}); "
        "the error shrinks as the window grows.")
    return pd.DataFrame(rows)


# --- plots (matplotlib, Agg) -----------------------------------------------------------------------------
_COLORS = {"fp32": "#7f7f7f", "fp16": "#1f77b4", "bf16": "#17becf", "bnb-int8": "#d62728",
           "torchao-int8-wo": "#ff7f0e", "torchao-int8-dyn": "#9467bd", "bnb-nf4": "#2ca02c",
           "bnb-fp4": "#98df8a", "torchao-int4-wo": "#8c564b", "torchao-fp8": "#e377c2"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_table2(pairs_bf16: pd.DataFrame, pairs_fp32: pd.DataFrame, path: Path,
                workload: tuple[int, int] = REFERENCE_WORKLOAD) -> Path:
    """Energy of each strategy relative to its baseline (log scale): paper's claim vs our paired cells of one
    `workload` (as `table2`)."""
    plt = _plt()
    pairs_bf16, pairs_fp32 = select_workload(pairs_bf16, workload), select_workload(pairs_fp32, workload)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, pairs, base in ((axes[0], pairs_bf16, "bf16"), (axes[1], pairs_fp32, "fp32")):
        for i, s in enumerate(STRATEGIES):
            paper_ratio = 1 - PAPER_TABLE2[s]["energy_reduction_pct"] / 100
            ax.scatter([i - 0.15], [paper_ratio], marker="D", color="k", zorder=3,
                       label="paper (Table 2)" if i == 0 else None)
            p = pairs[pairs["strategy"] == s]
            for j, ((q, eng), g) in enumerate(p.groupby(["quant", "engine"])):
                ax.scatter(i + 0.1 + 0.1 * j + 0.012 * np.log2(g["batch_size"]), g["energy_ratio"],
                           color=_COLORS.get(q), s=22 + 4 * g["batch_size"], alpha=0.85,
                           label=f"{q}" if q not in ax.get_legend_handles_labels()[1] else None,
                           marker="o" if eng == "hf-eager" else "s")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xticks(range(len(STRATEGIES)), STRATEGIES)
        ax.set_title(f"energy per output token / {base} (same cell)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("energy ratio (log; < 1 saves energy)")
    fig.suptitle(f"Table 2, energy column: paper vs our H100 cells, {workload[0]} in / {workload[1]} out "
                 "(marker size ~ batch; square = compiled)", fontsize=10)
    return _save(fig, path)


def _workload_style(workload: str) -> dict[str, Any]:
    """Line style, marker and marker fill of a workload ('256/128') in the plots that show both workloads:
    the reference workload solid with filled circles, any other dashed with open triangles."""
    ref = f"{REFERENCE_WORKLOAD[0]}/{REFERENCE_WORKLOAD[1]}"
    return ({"ls": "-", "marker": "o", "fill": True} if workload == ref
            else {"ls": "--", "marker": "^", "fill": False})


def plot_energy_vs_batch(df: pd.DataFrame, path: Path) -> Path:
    """Decode J per output token against batch size: one panel per (model, engine), eager and compiled of a
    model side by side on one y scale; one line per (method, workload), the workload as the line style
    (`_workload_style`: 256/128 solid, 1024/256 dashed), so a line never joins cells of two workloads.
    Each point is the mean of the cell's ok records over every file passed (a cell in two files counts once)."""
    plt = _plt()
    from matplotlib.lines import Line2D

    okd = df[df["status"] == "ok"]
    d = okd.groupby([*CELL_KEYS, "quant"], as_index=False)["decode_energy_per_token_j"].mean()
    d["workload"] = workload_of(d)
    models = list(dict.fromkeys(d.sort_values(["model"])["model"]))
    engines = [e for e in ("hf-eager", "hf-compiled") if e in set(d["engine"])]
    engines += sorted(set(d["engine"]) - set(engines))
    per_row = max(1, 4 // len(engines))
    ncol = per_row * len(engines)
    nrow = math.ceil(len(models) / per_row)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.1 * ncol, 3.5 * nrow), squeeze=False)
    used = set()
    for i, m in enumerate(models):
        first_ax = None
        for j, e in enumerate(engines):
            ax = axes[i // per_row, (i % per_row) * len(engines) + j]
            g = d[(d["model"] == m) & (d["engine"] == e)]
            if g.empty:
                continue
            used.add(ax)
            if first_ax is None:
                first_ax = ax
            else:
                ax.sharey(first_ax)
            for q in METHOD_ORDER:
                for w, h in g[g["quant"] == q].groupby("workload"):
                    st = _workload_style(w)
                    h = h.sort_values("batch_size")
                    ax.plot(h["batch_size"], h["decode_energy_per_token_j"], ls=st["ls"], marker=st["marker"],
                            color=_COLORS.get(q), mfc=_COLORS.get(q) if st["fill"] else "none", ms=5, lw=1.2,
                            label=f"{q} · {w}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks([1, 8, 32], ["1", "8", "32"])
            files = sorted(set(okd.loc[(okd["model"] == m) & (okd["engine"] == e), "slice"]))
            ax.set_title(f"{m.replace('-instruct', '')} · {e} ({', '.join(files)})", fontsize=8)
            ax.set_xlabel("batch size", fontsize=8)
            ax.set_ylabel("decode J / output token", fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes.flat:
        if ax not in used:
            ax.axis("off")
    quants = [q for q in METHOD_ORDER if q in set(d["quant"])]
    handles = [Line2D([], [], color=_COLORS.get(q), lw=2, label=q) for q in quants]
    for w in sorted(d["workload"].unique(), key=lambda x: tuple(int(v) for v in x.split("/"))):
        st = _workload_style(w)
        handles.append(Line2D([], [], color="k", ls=st["ls"], marker=st["marker"], mfc="k" if st["fill"] else "none",
                              label=f"{w.split('/')[0]} in / {w.split('/')[1]} out"))
    top = 1 - 1.0 / (3.5 * nrow)
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 7), fontsize=8,
               bbox_to_anchor=(0.5, top + 0.55 / (3.5 * nrow)), frameon=False)
    fig.suptitle("Decode energy per output token vs batch (H100 80GB HBM3, random-weight architectures); colour = "
                 "method, line style = workload (prompt / output tokens)", fontsize=10, y=0.998)
    return _save(fig, path, top=top)


def plot_roofline(roof: pd.DataFrame, path: Path) -> Path:
    """Measured decode tokens/s vs the bandwidth roofline (left), and the achieved fraction per method and
    batch (right); marker = engine (circle eager, square compiled), filled = 256/128, open = 1024/256."""
    plt = _plt()
    from matplotlib.lines import Line2D

    roof = roof.copy()
    if "workload" not in roof:
        roof["workload"] = workload_of(roof)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1, 1.3]})
    ax = axes[0]
    for (q, eng, w), h in roof.groupby(["quant", "engine", "workload"]):
        filled = _workload_style(w)["fill"]
        ax.scatter(h["roofline_tokens_per_s"], h["tokens_per_s"], marker="o" if eng == "hf-eager" else "s", s=28,
                   facecolors=_COLORS.get(q) if filled else "none", edgecolors=_COLORS.get(q))
    lo = min(roof["tokens_per_s"].min(), roof["roofline_tokens_per_s"].min()) * 0.7
    hi = max(roof["tokens_per_s"].max(), roof["roofline_tokens_per_s"].max()) * 1.4
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("roofline tokens/s = batch x bandwidth / (weights + KV bytes per step)")
    ax.set_ylabel("measured decode tokens/s")
    quants = [q for q in METHOD_ORDER if q in set(roof["quant"])]
    handles = [Line2D([], [], ls="", marker="o", color=_COLORS.get(q), label=q) for q in quants]
    handles += [Line2D([], [], ls="--", color="k", label="roofline (100 %)"),
                Line2D([], [], ls="", marker="o", mfc="grey", mec="grey", label="hf-eager"),
                Line2D([], [], ls="", marker="s", mfc="grey", mec="grey", label="hf-compiled")]
    handles += [Line2D([], [], ls="", marker="o", mfc="grey" if _workload_style(w)["fill"] else "none", mec="grey",
                       label=f"{w} (prompt/output)") for w in sorted(roof["workload"].unique())]
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper left")
    ax.set_title("every ok cell (one record per cell and file)", fontsize=9)
    ax = axes[1]
    batches = sorted(roof["batch_size"].unique())
    offs = dict(zip(batches, np.linspace(-0.3, 0.3, len(batches)), strict=True))
    bcol = {b: f"C{i}" for i, b in enumerate(batches)}
    xq = {q: i for i, q in enumerate(quants)}
    rng = np.random.default_rng(0)
    for (q, b, eng, w), h in roof.groupby(["quant", "batch_size", "engine", "workload"]):
        filled = _workload_style(w)["fill"]
        x = xq[q] + offs[b] + rng.uniform(-0.05, 0.05, len(h))
        ax.scatter(x, h["utilization"] * 100, marker="o" if eng == "hf-eager" else "s", s=22,
                   facecolors=bcol[b] if filled else "none", edgecolors=bcol[b], alpha=0.85)
    ax.set_xticks(range(len(quants)), quants, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("achieved fraction of the bandwidth roofline (%)")
    ax.legend(handles=[Line2D([], [], ls="", marker="o", color=bcol[b], label=f"batch {b}") for b in batches],
              fontsize=7, loc="lower left")
    ax.set_title("per method: colour = batch; marker = engine; open = 1024/256", fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.suptitle("Decode throughput vs the bandwidth roofline (gpus.csv bandwidth_gbs)", fontsize=10)
    return _save(fig, path)


def plot_noise(noise: pd.DataFrame, path: Path) -> Path:
    """Run-to-run CV of energy and tokens/s per ok cell (the noise floor), by slice, engine and workload."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    groups = sorted(noise.groupby(["slice", "engine", "workload"]),
                    key=lambda kv: (kv[0][0], kv[0][1], int(kv[0][2].split("/")[0])))
    for ax, col in zip(axes, ("energy_cv", "tokens_per_s_cv"), strict=True):
        for i, (_, g) in enumerate(groups):
            x = np.full(len(g), i) + np.linspace(-0.15, 0.15, len(g))
            ax.scatter(x, g[col] * 100, c=[_COLORS.get(q) for q in g["quant"]], s=25)
            ax.hlines(g[col].median() * 100, i - 0.3, i + 0.3, color="k")
        ax.axhline(5, color="grey", ls="--", lw=0.8)
        ax.set_xticks(range(len(groups)), [f"{s}\n{e}\n{w}" for (s, e, w), _ in groups], fontsize=8)
        ax.set_ylabel(f"{col} over 3 repetitions (%)")
        ax.set_title(f"{col} (bar = median; dashed = 5 % stability threshold)", fontsize=9)
    return _save(fig, path)


def plot_onehz(t: pd.DataFrame, path: Path) -> Path:
    """Error of the paper's 1 Hz rectangle rule against the NVML energy counter, vs window length, and
    against the error a stale first reading alone would give."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[1]
    rec = t[t["origin"] != "meter self-check"].dropna(subset=["stale_reading_error_pct"])
    ax.scatter(rec["stale_reading_error_pct"], rec["error_pct"], s=20)
    lo = min(rec["stale_reading_error_pct"].min(), rec["error_pct"].min()) - 2
    hi = max(rec["stale_reading_error_pct"].max(), rec["error_pct"].max()) + 2
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    r = np.corrcoef(rec["stale_reading_error_pct"], rec["error_pct"])[0, 1] if len(rec) > 2 else float("nan")
    ax.set_xlabel("expected from the stale first reading (prefill power held 1 s) (%)")
    ax.set_ylabel("eq. (1) error in the record (%)")
    ax.set_title(f"records: error explained by the first reading (Pearson r = {r:.3f})", fontsize=9)
    ax = axes[0]
    for origin, g in t.groupby("origin"):
        ax.scatter(g["window_s"], g["error_pct"], label=origin, marker="x" if origin == "meter self-check" else "o",
                   s=50 if origin == "meter self-check" else 20)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("timed window (s)")
    ax.set_ylabel("eq. (1) 1 Hz estimate vs counter (%)")
    ax.set_title("Paper's eq. (1) (1 Hz rectangle rule) error vs window length", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_figure4(ours: dict[str, pd.DataFrame], public: pd.DataFrame, path: Path) -> Path:
    """Figure-4-shaped heatmap. Left: our cells x methods, one block of rows per card type, separated by a line
    (colour = energy / bf16 of the row, or of the baseline card's row: `figure4_matrix`). Right, separate
    scope: public 16-bit batch-1 J/token per card (colour = J/token)."""
    plt = _plt()
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    ratio, energy, status = ours["ratio"], ours["energy"], ours["status"]
    fig, axes = plt.subplots(1, 2, figsize=(16, max(5.2, 0.36 * len(ratio.index) + 1.5)),
                             gridspec_kw={"width_ratios": [1.7, 1]})
    ax = axes[0]
    r = np.log2(ratio.to_numpy(dtype=float))
    im = ax.imshow(np.ma.masked_invalid(r), cmap="RdYlGn_r", norm=TwoSlopeNorm(0, -2.5, 2.5), aspect="auto")
    card_of = [str(i).split(" · ")[0] for i in ratio.index]
    for i in range(1, len(card_of)):
        if card_of[i] != card_of[i - 1]:
            ax.axhline(i - 0.5, color="k", lw=2)
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            st = status.iat[i, j]
            if st == "ok" and not math.isnan(ratio.iat[i, j]):
                txt = f"{energy.iat[i, j]:.2f} J\n{(ratio.iat[i, j] - 1) * 100:+.0f}%"
            elif st == "ok":
                txt = f"{energy.iat[i, j]:.2f} J"
            else:
                txt = {"failed": "failed", "excluded": "excluded", "not yet run": "–"}.get(st, st)
            ax.text(j, i, txt, ha="center", va="center", fontsize=6.5)
    cols = [f"{q} ({strategy_of(q) or ('ref.' if q == 'fp32' else 'not in paper')})" for q in ratio.columns]
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=30, ha="right")
    ax.set_yticks(range(len(ratio.index)), ratio.index, fontsize=7)
    fig.colorbar(im, ax=ax, label="log2(J/token / bf16 " + (f"on {ratio.attrs['baseline_card']})"
                                                           if ratio.attrs.get("baseline_card") else "same row)"))
    wl = ratio.attrs.get("workload", REFERENCE_WORKLOAD)
    cards = ", ".join(ratio.attrs.get("cards") or ["h100-sxm"])
    bc = ratio.attrs.get("baseline_card")
    ref = f"bf16 on {bc}, same architecture, engine and batch" if bc else "bf16 of the row"
    ax.set_title(f"MEASURED (ours): {cards}, random-weight architectures, {wl[0]} in / {wl[1]} out, decode J per "
                 f"output token\n(text: J/token and % vs {ref}; no colour = no such bf16 cell; "
                 "– = not yet run)", fontsize=8)
    ax = axes[1]
    if public is not None and len(public):
        v = public.to_numpy(dtype=float)
        im2 = ax.imshow(np.ma.masked_invalid(v), cmap="viridis_r", norm=LogNorm(np.nanmin(v), np.nanmax(v)),
                        aspect="auto")
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                if not math.isnan(v[i, j]):
                    ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=6.5, color="w")
        ax.set_xticks(range(len(public.columns)), public.columns, fontsize=7, rotation=30)
        ax.set_yticks(range(len(public.index)), public.index, fontsize=7)
        fig.colorbar(im2, ax=ax, label="J per output token (whole response)")
    ax.set_title("CITED (public, other scope): 16-bit only, batch 1, prefill + decode,\nML.ENERGY v1 "
                 "(Zeus counter) / Argonne (sampled power); no public energy for quantized rows", fontsize=8)
    return _save(fig, path)


def plot_engine_effect(t: pd.DataFrame, models: pd.DataFrame, path: Path, quant: str = "bf16") -> Path:
    """Compiled vs eager on the same cell, one method (`engine_effect` rows, each architecture once per batch:
    `engine_effect_per_architecture`). Top: energy reduction (%) per architecture (by parameter count), one
    bar per batch size, whiskers = the pair's noise, pale bar = within noise. Bottom: speedup against power
    ratio; on the dashed line J/token is unchanged, below it compiling saves energy."""
    plt = _plt()
    from matplotlib.patches import Patch

    a = engine_effect_per_architecture(t, quant)
    params = models.set_index("id")["params_b"]
    archs = sorted(a["model"].unique(), key=lambda m: params.get(m, np.nan))
    batches = sorted(a["batch_size"].unique())
    workloads = sorted(a["workload"].unique(), key=lambda w: int(w.split("/")[0]))
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(12, 9), gridspec_kw={"height_ratios": [1.25, 1]})
    width = 0.8 / max(1, len(batches) * len(workloads))
    handles = []
    k = 0
    for w in workloads:
        for i, b in enumerate(batches):
            g = a[(a["batch_size"] == b) & (a["workload"] == w)].set_index("model").reindex(archs)
            x = np.arange(len(archs)) - 0.4 + width * (k + 0.5)
            col = f"C{i}"
            alpha = np.where(g["within_noise"].fillna(False).astype(bool), 0.35, 0.9)
            for xi, v, e, al in zip(x, g["energy_reduction_pct"], g["noise_pct"], alpha, strict=True):
                if np.isnan(v):
                    ax.text(xi, 1, "n/a", ha="center", va="bottom", fontsize=7, color=col, rotation=90)
                    continue
                ax.bar(xi, v, width, color=col, alpha=al)
                ax.errorbar(xi, v, yerr=e, color="k", lw=0.8, capsize=2)
            handles.append(Patch(color=col, label=f"batch {b}" + (f", {w}" if len(workloads) > 1 else "")))
            k += 1
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(archs)), [f"{m.replace('-instruct', '')}\n{params.get(m, np.nan):.1f} B" for m in archs],
                  fontsize=8)
    ax.set_ylabel("energy reduction, compiled vs eager (%)\n(positive = compiled uses less J/token)")
    ax.legend(handles=handles, fontsize=8, title="pale = within noise; n/a = no compiled cell", title_fontsize=7)
    ax.set_title(f"{quant}: hf-compiled (static KV cache + torch.compile) vs hf-eager, same model, batch and workload "
                 f"({', '.join(workloads)})", fontsize=9)
    for i, b in enumerate(batches):
        g = a[a["batch_size"] == b]
        bx.scatter(g["speedup"], g["power_ratio"], color=f"C{i}", s=30, label=f"batch {b}")
        for r in g.itertuples():
            bx.annotate(r.model.replace("-instruct", "").replace("qwen2.5-", "q"), (r.speedup, r.power_ratio),
                        fontsize=6, xytext=(3, 2), textcoords="offset points")
    lo = min(a["speedup"].min(), a["power_ratio"].min()) * 0.9
    hi = max(a["speedup"].max(), a["power_ratio"].max()) * 1.1
    bx.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="same J/token (power ratio = speedup)")
    bx.set_xlim(lo, a["speedup"].max() * 1.05)
    bx.set_ylim(a["power_ratio"].min() * 0.9, max(a["power_ratio"].max(), a["speedup"].min()) * 1.1)
    bx.grid(alpha=0.3)
    bx.set_xlabel("speedup (tokens/s compiled / eager)")
    bx.set_ylabel("decode power ratio (compiled / eager)")
    bx.legend(fontsize=8)
    bx.set_title("why: compiling runs faster at higher power; below the dashed line the speed wins", fontsize=9)
    fig.suptitle("Engine effect on decode energy per output token, every architecture (H100 80GB HBM3)", fontsize=10)
    return _save(fig, path)


def _decode_step_parts(step: dict[str, float], attention_label: str) -> list[tuple[str, float, str]]:
    """A `compiled_step_attention` step as the stacked bar's parts, bottom first: (label, ms, colour) of the K/V
    expansion, the attention kernel and the rest of the step."""
    rest = step["step_ms"] - step["kv_expand_ms"] - step["attention_ms"]
    return [("K/V expanded to every query head", step["kv_expand_ms"], "C3"),
            (attention_label, step["attention_ms"], "C1"), ("rest (weights, MLP, norms)", rest, "0.6")]


def plot_compiled_kv_copy(t: pd.DataFrame, models: pd.DataFrame, step: dict[str, float], path: Path,
                          quant: str = "bf16", batch_size: int = 32, spread: tuple[float, float] = (0.8, 1.25),
                          step_label: str = "") -> Path:
    """Compiled against eager at one batch size, per architecture and workload, split by attention, beside where a
    compiled decode step's time went. Left: decode J/token ratio compiled / eager of `quant` (`engine_effect` rows
    of one card; `engine_effect_per_architecture`), one bar per workload, grouped-query architectures solid and
    multi-head ones hatched, the machines' spread (`spread`) shaded: a ratio inside it is not resolved by pairs of
    two machines. Right: the compiled step of a `compiled_step_attention` profile (ms): the K/V expansion kernel,
    the attention kernel and the rest (`step_label`: which profile)."""
    plt = _plt()
    from matplotlib.patches import Patch

    a = engine_effect_per_architecture(t, quant)
    a = a[a["batch_size"] == batch_size].assign(ratio=lambda d: 1 - d["energy_reduction_pct"] / 100)
    m = models.set_index("id")
    kind = attention_kind(models)
    gqa = {i: kind[i] == "GQA" for i in a["model"].unique()}
    archs = sorted(a["model"].unique(), key=lambda i: (not gqa[i], m.loc[i, "params_b"]))
    workloads = sorted(a["workload"].unique(), key=lambda w: int(w.split("/")[0]))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / max(1, len(workloads))
    ax.axhspan(*spread, color="0.85", zorder=0)
    for k, w in enumerate(workloads):
        g = a[a["workload"] == w].set_index("model").reindex(archs)
        x = np.arange(len(archs)) - 0.4 + width * (k + 0.5)
        for xi, arch, v in zip(x, archs, g["ratio"], strict=True):
            if not np.isnan(v):
                ax.bar(xi, v, width, color=f"C{k}", hatch=None if gqa[arch] else "//", edgecolor="k", lw=0.5)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(range(len(archs)), [f"{i.replace('-instruct', '')}\n{kind[i]} "
                                      f"{m.loc[i, 'num_attention_heads']}/{m.loc[i, 'num_kv_heads']}" for i in archs],
                  fontsize=8)
    ax.set_ylabel("decode J/token, compiled / eager")
    ax.legend(handles=[Patch(color=f"C{k}", label=w) for k, w in enumerate(workloads)]
              + [Patch(facecolor="w", edgecolor="k", hatch="//", label="multi-head"),
                 Patch(color="0.85", label=f"machines' spread x{spread[0]:.2f}-{spread[1]:.2f}")], fontsize=8)
    ax.set_title(f"{quant}, batch {batch_size}: compiled (static cache) vs eager (dynamic cache); heads query/K-V",
                 fontsize=9)
    bottom = 0.0
    for label, v, col in _decode_step_parts(step, "attention over the expanded heads"):
        bx.bar(0, v, 0.5, bottom=bottom, color=col, label=f"{label}: {v:.2f} ms")
        bottom += v
    bx.set_xticks([])
    bx.set_xlim(-0.4, 2.2)
    bx.set_ylim(0, step["step_ms"] * 1.45)
    bx.set_ylabel("ms per compiled decode step")
    bx.legend(fontsize=8, loc="upper right")
    bx.set_title("a compiled decode step profiled" + (f"\n{step_label}" if step_label else "")
                 + f"\n({step['share'] * 100:.0f} % K/V copy + attention)", fontsize=9)
    fig.suptitle("Why compiled decode of grouped-query models costs energy at long context (measured)", fontsize=10)
    return _save(fig, path)


def plot_sdpa_gqa_force(t: pd.DataFrame, models: pd.DataFrame, steps: dict[str, dict[str, float]], path: Path,
                        batch_size: int = 32, workload: str = "1024/256") -> Path:
    """Grouped-query SDPA forced in the compiled engine against its same-machine twins, beside the profiled step.
    Left: decode J/token at one batch and workload per architecture (`attention_comparison` rows of variant
    'sdpa_gqa=force'): eager, compiled as the campaign runs it and compiled with the setting, multi-head
    architectures hatched, the forced / default compiled ratio written over each pair. Right: each profile's
    compiled decode step (`steps`: label -> `compiled_step_attention`, ms): K/V expansion, attention, the rest."""
    plt = _plt()
    from matplotlib.patches import Patch

    a = t[(t["variant"] == "sdpa_gqa=force") & (t["batch_size"] == batch_size) & (t["workload"] == workload)]
    a = a.dropna(subset=["decode_energy_per_token_j"])
    m = models.set_index("id")
    kind = attention_kind(models)
    archs = sorted(a["model"].unique(), key=lambda i: (kind[i] != "GQA", m.loc[i, "params_b"]))
    a = a.groupby("model").median(numeric_only=True).reindex(archs)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [2.2, 1]})
    bars = (("eager (dynamic cache)", "decode_energy_per_token_j_eager", "C0"),
            ("compiled, as the campaign runs it", "decode_energy_per_token_j_compiled", "C3"),
            ("compiled, grouped-query SDPA forced", "decode_energy_per_token_j", "C2"))
    width = 0.8 / len(bars)
    for k, (_, col, colour) in enumerate(bars):
        x = np.arange(len(archs)) - 0.4 + width * (k + 0.5)
        for xi, arch, v in zip(x, archs, a[col], strict=True):
            if not np.isnan(v):
                ax.bar(xi, v, width, color=colour, hatch=None if kind[arch] == "GQA" else "//", edgecolor="k", lw=0.5)
    for xi, (_, r) in enumerate(a.iterrows()):
        top = np.nanmax(r[[c for _, c, _ in bars]].to_numpy(dtype=float))
        ax.text(xi, top * 1.02, f"x{r['energy_vs_compiled']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(archs)), [f"{i.replace('-instruct', '')}\n{kind[i]} "
                                      f"{m.loc[i, 'num_attention_heads']}/{m.loc[i, 'num_kv_heads']}" for i in archs],
                  fontsize=8)
    ax.set_ylim(0, np.nanmax(a[[c for _, c, _ in bars]].to_numpy(dtype=float)) * 1.12)
    ax.set_ylabel("decode J/token")
    ax.legend(handles=[Patch(color=c, label=lab) for lab, _, c in bars]
              + [Patch(facecolor="w", edgecolor="k", hatch="//", label="multi-head (no copy to remove)")], fontsize=8)
    ax.set_title(f"bf16, batch {batch_size}, {workload}, one machine (x: forced / compiled as run); "
                 "heads query/K-V", fontsize=9)
    for k, step in enumerate(steps.values()):
        bottom = 0.0
        for part, v, col in _decode_step_parts(step, "attention"):
            bx.bar(k, v, 0.5, bottom=bottom, color=col, label=part if k == 0 else None)
            if v > 0.3:
                bx.text(k, bottom + v / 2, f"{v:.2f}", ha="center", va="center", fontsize=8)
            bottom += v
        bx.text(k, bottom * 1.01, f"{step['step_ms']:.2f} ms", ha="center", va="bottom", fontsize=8)
    bx.set_xticks(range(len(steps)), list(steps), fontsize=8)
    bx.set_ylim(0, max(s["step_ms"] for s in steps.values()) * 1.3)
    bx.set_ylabel("ms per compiled decode step")
    bx.legend(fontsize=8, loc="upper right")
    bx.set_title("a compiled decode step profiled", fontsize=9)
    fig.suptitle("Compiled decode with the K/V copy removed (grouped-query SDPA forced; measured)", fontsize=10)
    return _save(fig, path)


def plot_variant_campaign(t: pd.DataFrame, path: Path) -> Path:
    """An engine variant's campaign cells against the same cells of other engines (`variant_campaign_effect`), one
    panel per (workload, baseline engine), a row per workload: decode J/token ratio (variant / baseline) per batch
    size, a marker per architecture and method, methods side by side; where the pair has machine anchors, a grey
    tick marks the anchored ratio."""
    plt = _plt()

    bases = list(dict.fromkeys(t["baseline_engine"]))
    workloads = sorted(t["workload"].unique(), key=lambda w: tuple(int(v) for v in w.split("/")))
    quants = list(dict.fromkeys(t["quant"]))
    batches = sorted(t["batch_size"].unique())
    fig, axes = plt.subplots(len(workloads), len(bases), figsize=(6.5 * len(bases), 4.3 * len(workloads)),
                             sharey=True, squeeze=False)
    width = 0.7 / max(len(quants), 1)
    for row, w in zip(axes, workloads, strict=True):
        for ax, base in zip(row, bases, strict=True):
            b = t[(t["baseline_engine"] == base) & (t["workload"] == w)]
            x = (np.array([batches.index(v) for v in b["batch_size"]]) - 0.35
                 + width * (np.array([quants.index(q) for q in b["quant"]]) + 0.5))
            for k, q in enumerate(quants):
                mine = (b["quant"] == q).to_numpy()
                if mine.any():
                    ax.scatter(x[mine], b["energy_ratio"].to_numpy()[mine], color=f"C{k}", s=28, label=q, zorder=3)
            has = b["energy_ratio_anchored"].notna().to_numpy()
            if has.any():
                ax.scatter(x[has], b["energy_ratio_anchored"].to_numpy()[has], marker="_", color="0.45", s=90,
                           zorder=2, label="anchored (machine offsets divided out)")
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks(range(len(batches)), [f"batch {v}" for v in batches])
            ax.set_xlim(-0.5, len(batches) - 0.5)
            ax.set_title(f"{w}: over {base}, same cell, other machines", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        row[0].set_ylabel(f"decode J/token, {t['engine'].iloc[0]} / baseline")
    legend = {}   # one legend for the figure, every method and the anchored tick once, off the panels' points
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, h)
    top = 1 - 0.75 / (4.3 * len(workloads))
    fig.legend(legend.values(), legend.keys(), loc="upper center", ncol=len(legend), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, top + 0.45 / (4.3 * len(workloads))))
    fig.suptitle(f"{t['engine'].iloc[0]} campaign cells on the {', '.join(sorted(t['gpu_id'].unique()))} "
                 f"({', '.join(workloads)}; measured)", fontsize=10, y=0.998)
    return _save(fig, path, top=top)


def plot_workload_effect(t: pd.DataFrame, path: Path, quants: Sequence[str] = ("bf16", "fp16")) -> Path:
    """Long / short workload on the same cell (`workload_effect` rows of `quants`). Left: J/token ratio against
    batch, one line per (architecture, method), MHA dashed. Middle: measured J/token ratio against the ratio of
    bytes read per decode step (weights + KV cache) expected from the context lengths; dashed y = x. Right: TTFT
    and prefill-energy ratios against batch, with the ratio of prompt lengths dotted."""
    plt = _plt()
    t = t[t["quant"].isin(list(quants))]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    ax = axes[0]
    archs = list(dict.fromkeys(t.sort_values("params_b")["model"]))
    colors = {m: f"C{i}" for i, m in enumerate(archs)}
    for (m, q), g in t.groupby(["model", "quant"]):
        g = g.sort_values("batch_size")
        mha = (g["attention"] == "MHA").all()
        ax.plot(g["batch_size"], g["energy_ratio"], ls="--" if mha else "-", marker="s" if q == "fp16" else "o",
                mfc="none" if q == "fp16" else colors[m], color=colors[m],
                label=f"{m.replace('-instruct', '')} {q}" + (" (MHA)" if mha else ""))
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 8, 32], ["1", "8", "32"])
    ax.set_xlabel("batch size")
    ax.set_ylabel("decode J/token, long / short workload")
    ax.legend(fontsize=6.5, ncol=2)
    ax.set_title("decode J per output token (dashed: MHA, num_kv_heads = heads)", fontsize=9)
    ax = axes[1]
    batches = sorted(t["batch_size"].unique())
    for i, b in enumerate(batches):
        for att, g in t[t["batch_size"] == b].groupby("attention"):
            ax.scatter(g["bytes_ratio"], g["energy_ratio"], color=f"C{i}", marker="s" if att == "MHA" else "o", s=34,
                       label=f"batch {b}, {att}")
    hi = max(t["bytes_ratio"].max(), t["energy_ratio"].max()) * 1.05
    lo = min(t["bytes_ratio"].min(), t["energy_ratio"].min()) * 0.95
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="J/token follows the bytes read")
    ax.set_xlabel("expected: (weights + KV long) / (weights + KV short) bytes per decode step")
    ax.set_ylabel("measured decode J/token ratio")
    ax.legend(fontsize=7)
    ax.set_title("does the extra KV cache explain it?", fontsize=9)
    ax = axes[2]
    jit = {b: i for i, b in enumerate(batches)}
    for col, name, mk, c in (("ttft_ratio", "TTFT", "o", "C3"), ("prefill_energy_ratio", "prefill energy", "^", "C4")):
        x = t["batch_size"].map(jit) + (-0.1 if name == "TTFT" else 0.1)
        ax.scatter(x, t[col], marker=mk, color=c, s=26, alpha=0.8, label=name)
    wl = t["workloads"].iloc[0] if len(t) else ""
    if wl:
        (pl, _), (ps, _) = (tuple(int(v) for v in w.split("/")) for w in wl.split(" vs "))
        ax.axhline(pl / ps, color="grey", ls=":", lw=1, label=f"prompt length ratio ({pl}/{ps})")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("long / short workload")
    ax.legend(fontsize=7)
    ax.set_title("prefill: time to first token and energy", fontsize=9)
    fig.suptitle(f"Workload {wl} (prompt/output tokens) on the same cell: HF eager, {', '.join(quants)}, "
                 "H100 80GB HBM3 (the two workloads ran on different machines)", fontsize=10)
    return _save(fig, path)


def plot_card_effect(t: pd.DataFrame, path: Path, machine_spread_pct: float | None = None,
                     machine_spread_max_pct: float | None = None) -> Path:
    """`card_effect` rows. Left: decode J/token ratio (card / baseline card) per method and batch, every cell as
    a dot, the median as a bar with min-max whiskers; dashed: the ratio if the decode step shrank with the
    bandwidth at equal power; grey band: +/- `machine_spread_pct` (%), the median |J/token difference| of one
    cell measured on two machines of the baseline card, and a lighter band +/- `machine_spread_max_pct`, the
    largest such difference (each drawn where given; the legend names which). Right: measured speedup
    (tokens/s ratio) against the speedup the extra bandwidth alone predicts from the baseline cell's roofline
    utilization (`speedup_if_bandwidth`), coloured by the machine that measured the baseline cell
    (`machine_group`: cells whose baseline records ran on several machines share one colour)."""
    plt = _plt()
    from matplotlib.lines import Line2D

    card, base = t["card"].iloc[0], t["baseline_card"].iloc[0]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 5.4), gridspec_kw={"width_ratios": [1.5, 1]})
    quants = [q for q in METHOD_ORDER if q in set(t["quant"])]
    batches = sorted(t["batch_size"].unique())
    offs = dict(zip(batches, np.linspace(-0.27, 0.27, len(batches)), strict=True))
    rng = np.random.default_rng(0)
    if machine_spread_max_pct is not None:
        ax.axhspan(1 - machine_spread_max_pct / 100, 1 + machine_spread_max_pct / 100, color="grey", alpha=0.07,
                   lw=0)
    if machine_spread_pct is not None:
        ax.axhspan(1 - machine_spread_pct / 100, 1 + machine_spread_pct / 100, color="grey", alpha=0.15, lw=0)
    for i, q in enumerate(quants):
        for k, b in enumerate(batches):
            g = t[(t["quant"] == q) & (t["batch_size"] == b)]["energy_ratio"]
            if g.empty:
                continue
            x = i + offs[b]
            ax.scatter(x + rng.uniform(-0.04, 0.04, len(g)), g, s=12, color=f"C{k}", alpha=0.55)
            ax.vlines(x, g.min(), g.max(), color=f"C{k}", lw=1)
            ax.hlines(g.median(), x - 0.08, x + 0.08, color="k", lw=2)
    ax.axhline(1, color="k", lw=0.8)
    handles = [Line2D([], [], ls="", marker="o", color=f"C{k}", label=f"batch {b}") for k, b in enumerate(batches)]
    handles.append(Line2D([], [], color="k", lw=2, label="median (whisker: min-max)"))
    if "bandwidth_ratio" in t:
        bw = 1 / t["bandwidth_ratio"].iloc[0]
        ax.axhline(bw, color="C3", ls="--", lw=1)
        handles.append(Line2D([], [], color="C3", ls="--", label=f"step time x{bw:.2f} (bandwidth), same power"))
    if machine_spread_pct is not None:
        handles.append(Line2D([], [], color="grey", alpha=0.4, lw=6,
                              label=f"+/-{machine_spread_pct:.1f} %: median |difference| of one {base} cell on two "
                                    f"{base} machines"))
    if machine_spread_max_pct is not None:
        handles.append(Line2D([], [], color="grey", alpha=0.15, lw=6,
                              label=f"+/-{machine_spread_max_pct:.1f} %: largest |difference| of one {base} cell on "
                                    f"two {base} machines"))
    ax.set_xticks(range(len(quants)), quants, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(f"decode J/token, {card} / {base} (same cell)")
    ax.legend(handles=handles, fontsize=7, loc="best")  # "best": never over a cell's dot where it can avoid it
    ax.set_title(f"energy per output token: {len(t)} cells, {t['model'].nunique()} architectures (< 1: the {card} "
                 "uses less)", fontsize=9)
    if "speedup_if_bandwidth" in t:
        group = machine_group(t["machine_base"])
        machines = sorted(set(group) - {SEVERAL_MACHINES}) + ([SEVERAL_MACHINES] if (group == SEVERAL_MACHINES).any()
                                                              else [])
        for k, mch in enumerate(machines):
            g = t[group == mch]
            bx.scatter(g["speedup_if_bandwidth"], g["speedup"], s=18, color=plt.get_cmap("Dark2")(k),
                       label=f"{base} cell from {mch} (median x{g['speedup'].median():.2f})")
        lo = min(t["speedup"].min(), 1.0) * 0.95
        hi = max(t["speedup"].max(), t["speedup_if_bandwidth"].max()) * 1.03
        bx.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = bandwidth prediction")
        bx.axhline(1, color="grey", lw=0.8)
        bx.set_xlim(0.99, t["speedup_if_bandwidth"].max() * 1.02)
        bx.set_ylim(lo, hi)
        bx.set_xlabel(f"speedup the bandwidth alone predicts: 1 / (1 - u + u x GB/s {base} / GB/s {card}),\n"
                      f"u = the {base} cell's share of its bandwidth roofline", fontsize=8)
        bx.set_ylabel(f"measured decode tokens/s, {card} / {base}")
        bx.legend(fontsize=6.5, loc="lower right")
        bx.set_title(f"decode speed: measured vs the bandwidth prediction,\nby the machine of the {base} cell",
                     fontsize=9)
    engines = ", ".join({"hf-eager": "HF eager", "hf-compiled": "HF compiled"}.get(e, e)
                        for e in sorted(t["engine"].unique()))
    fig.suptitle(f"{card} against {base} on the same cells ({engines}, "
                 + ", ".join(sorted(t["workload"].unique())) + " prompt/output tokens; the cards ran on different "
                 "machines)", fontsize=10)
    return _save(fig, path)
