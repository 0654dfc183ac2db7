"""Learned accuracy change: features of (quant, model, task, n-shot) rows of `quant_accuracy.csv`.

Target: delta_abs (change of the 0..1 task score versus the unquantized baseline), predicted directly in
absolute terms (it is ~0 and often positive, so no log). Features generalise across methods and models:
quant weight/activation bits, scheme, granularity, symmetric, calibration; model size and shape where
known (catalogue or public_models.csv; a model outside both gets log params from a plain "<n>B" size in
its name in the row's notes, else NaN model features); task one-hot; n-shot.

Candidates get one number per (quant, model): the mean over the paper's tasks (`workload.PAPER_TASKS`)
of the per-task predictions, at each task's most common n-shot in the training rows (metadata).
Only imported when an artifact serves a learned accuracy_delta (numpy only).
"""

from __future__ import annotations

import math
import re

import numpy as np

PAPER_TASKS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "gsm8k", "hellaswag")
TASKS = ("mmlu", "arc_challenge", "arc_easy", "truthfulqa_mc1", "truthfulqa_mc2", "gsm8k", "hellaswag",
         "winogrande", "piqa", "boolq", "lambada_openai", "openbookqa", "rte", "cmmlu", "ceval_valid", "mmlu_pro")
_TASK_ALIASES = {"lambada": "lambada_openai", "ceval": "ceval_valid", "leaderboard_mmlu_pro": "mmlu_pro",
                 "mmlu_cot_0shot_llama_3.1_instruct": "mmlu", "arc_challenge_llama_3.1_instruct": "arc_challenge",
                 "gsm8k_cot_llama_3.1_instruct": "gsm8k"}
_SCHEMES = ("weight-only", "dynamic", "static")
_GRAN = ("group", "channel", "tensor")
ACC_FEATURE_NAMES: tuple[str, ...] = (
    "weight_bits", "activation_bits", "float_format", *(f"scheme_{s}" for s in _SCHEMES),
    *(f"gran_{g}" for g in _GRAN), "symmetric", "needs_calibration",
    "log_params_b", "num_layers", "hidden_size", "gqa_ratio", "is_instruct",
    *(f"task_{t}" for t in TASKS), "task_other", "n_shot",
)
_SIZE = re.compile(r"(?<![\dx.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")


def task_id(task: str) -> str:
    t = (task or "").strip()
    return _TASK_ALIASES.get(t, t)


def note_model(notes: str) -> str | None:
    m = re.search(r"model=([^;(]+)", notes or "")
    return m.group(1).strip() if m else None


def params_from_name(name: str | None) -> float | None:
    """A plain size like '32B' / '2.7b' in a model name (not '8x7B': a mixture's total is not stated)."""
    if not name or re.search(r"\d+x\d", name):
        return None
    m = _SIZE.search(name)
    return float(m.group(1)) if m else None


def n_shot(notes: str) -> float:
    m = re.search(r"(\d+)-shot", notes or "")
    return float(m.group(1)) if m else math.nan


def quant_vector(q) -> list[float]:
    gran = (q.granularity or "").lower()
    dt = (q.compute_dtype or "").lower()
    return [float(q.weight_bits or math.nan), float(q.activation_bits or math.nan),
            1.0 if ("float8" in dt or "fp8" in (q.id or "")) else 0.0,
            *(1.0 if q.scheme == s else 0.0 for s in _SCHEMES),
            *(1.0 if (g in gran or (g == "channel" and ("row" in gran or "vector" in gran or "block" in gran)))
              else 0.0 for g in _GRAN),
            math.nan if q.symmetric is None else float(q.symmetric), float(bool(q.needs_calibration))]


def model_vector(m=None, params_b: float | None = None) -> list[float]:
    if m is None:
        p = params_b if params_b else math.nan
        return [math.log(p) if np.isfinite(p) else math.nan, math.nan, math.nan, math.nan, math.nan]
    heads, kv = m.num_attention_heads, m.kv_heads if m.num_attention_heads else None
    return [math.log(m.params_b) if m.params_b else math.nan, float(m.num_layers or math.nan),
            float(m.hidden_size or math.nan), float(heads / kv) if heads and kv else math.nan, float(m.is_instruct)]


def task_vector(task: str, shots: float) -> list[float]:
    t = task_id(task)
    return [*(1.0 if t == x else 0.0 for x in TASKS), 0.0 if t in TASKS else 1.0, shots]


def candidate_matrix(catalog, pairs: list[tuple[int, int]], shots: dict[str, float]) -> np.ndarray:
    """Rows (pair, paper task) for (quant index, model index) pairs: len(pairs) x len(PAPER_TASKS) rows."""
    rows = []
    for qi, mi in pairs:
        qv, mv = quant_vector(catalog.quants.rows[qi]), model_vector(catalog.models.rows[mi])
        for t in PAPER_TASKS:
            rows.append(qv + mv + task_vector(t, float(shots.get(t, 0.0))))
    return np.array(rows, dtype=np.float64).reshape(-1, len(ACC_FEATURE_NAMES))
