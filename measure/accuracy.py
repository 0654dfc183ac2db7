"""Accuracy of an already-loaded model through lm-eval, with the energy and time of the evaluation itself.

The model object that was measured (quantized, compiled, ...) is wrapped as
`lm_eval.models.huggingface.HFLM(pretrained=model, tokenizer=tokenizer)`, so the score belongs to exactly
the weights that were timed. Each task is evaluated in its own `lm_eval.evaluator.evaluate` call inside
one meter window; dataset loading and prompt-template parsing happen before the window, so
`eval_energy_j` / `eval_time_s` cover request building, the model's forward passes / generation and
scoring (the paper's EOR = score / Wh of this evaluation).

Tasks are looked up first in the local task folders (`measure/tasks/` shipped here, plus `include_path`);
lm-eval's ~15k built-in task configs are indexed (about 8 s) only when a requested name is not local.
`offline=True` sets `HF_DATASETS_OFFLINE=1` and `HF_HUB_OFFLINE=1` for the duration of the call only.

Primary metric per task (lm-eval key `metric,filter`), as the paper's tasks are usually reported:
mmlu `acc`, arc_challenge `acc_norm`, truthfulqa_mc2 `acc`, hellaswag `acc_norm`, and gsm8k
`exact_match,strict-match` (the "#### <number>" answer format of GSM8K, as in the Open LLM Leaderboard
v1; `flexible-extract` is kept in `AccuracyResult.metrics`). Other tasks: `metadata.primary_metric` of
the task YAML if set, else `acc`, else the task's first reported metric.

`limit` is per leaf task: a group such as mmlu (57 subtasks) evaluates up to 57 x limit samples, and
`n_samples` reports the total actually evaluated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommender.errors import UnknownNameError, closest

log = logging.getLogger(__name__)

LOCAL_TASKS_DIR = Path(__file__).resolve().parent / "tasks"
PAPER_TASKS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "gsm8k", "hellaswag")
#: primary metric per task as lm-eval's "metric,filter" key
PRIMARY_METRICS: dict[str, str] = {
    "mmlu": "acc,none",
    "arc_challenge": "acc_norm,none",
    "truthfulqa_mc2": "acc,none",
    "gsm8k": "exact_match,strict-match",
    "hellaswag": "acc_norm,none",
}
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
#: module constants that huggingface_hub / datasets read from the environment once, at import time
_OFFLINE_CONSTANTS = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
)
_PATH_KWARGS = ("data_files", "data_dir")
_PACKAGED_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")
BOOTSTRAP_ITERS = 1000  # only for non-mean aggregations; acc / exact_match stderr is analytic

MeterWindow = Callable[[str], AbstractContextManager[Any]]


class UnknownTaskError(UnknownNameError, ValueError):
    """A task name that neither the local task folders nor lm-eval know."""


@dataclass
class AccuracyResult:
    """One task's score on the loaded model, and what the evaluation cost.

    `metric` is the metric name (`acc`, `acc_norm`, ...) with the lm-eval filter appended only when it is
    not `none` (`exact_match,strict-match`). `accuracy` is a 0..1 fraction; `accuracy_stderr` its standard
    error (None when lm-eval reports none). `eval_time_s` is wall-clock seconds of the evaluation,
    `eval_energy_j` the meter window's energy in joules (None without a meter).
    """

    task: str
    metric: str
    accuracy: float
    accuracy_stderr: float | None
    n_samples: int
    eval_time_s: float
    eval_energy_j: float | None
    lm_eval_version: str
    num_fewshot: int | None = None
    limit: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # every reported "metric,filter" -> value

    @property
    def eval_energy_wh(self) -> float | None:
        """Energy of the evaluation in watt-hours (the EOR denominator)."""
        return None if self.eval_energy_j is None else self.eval_energy_j / 3600.0

    def to_record_fields(self) -> dict[str, Any]:
        """The accuracy fields of `measure.record.Record` (plus `lm_eval_version`)."""
        return {
            "task": self.task,
            "n_samples": self.n_samples,
            "accuracy": self.accuracy,
            "accuracy_metric": self.metric,
            "accuracy_stderr": self.accuracy_stderr,
            "eval_energy_j": self.eval_energy_j,
            "eval_time_s": self.eval_time_s,
            "lm_eval_version": self.lm_eval_version,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    *,
    limit: int | None,
    batch_size: int = 1,
    include_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    offline: bool = False,
    meter_window: MeterWindow | None = None,
    num_fewshot: int | None = None,
    seed: int = 0,
    include_defaults: bool | None = None,
) -> list[AccuracyResult]:
    """Evaluate the loaded `model` (a transformers PreTrainedModel) on `tasks`, one result per task.

    `limit`: samples per (leaf) task, None = the whole test split. `include_path`: extra folder(s) of task
    YAMLs, searched before lm-eval's own. `meter_window(name)` returns a context manager whose `__enter__`
    result has `.energy_j` (J) after exit. `num_fewshot`: None keeps each task's default (0 when unset).
    `include_defaults`: index lm-eval's built-in tasks (None = only when a name is not local).
    Raises UnknownTaskError (a ValueError) naming the task, with suggestions.
    """
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise ValueError("evaluate() needs at least one task")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    local_dirs = _local_dirs(include_path)

    with offline_mode(offline):
        from lm_eval.evaluator import evaluate as lm_evaluate
        from lm_eval.models.huggingface import HFLM

        manager = _task_manager(tuple(str(d) for d in local_dirs), include_defaults, tasks)
        version = lm_eval_version()
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)

        results = []
        for name in tasks:
            loaded = manager.load([name])  # builds the Task, loads the dataset
            _configure(loaded, num_fewshot, seed)
            _seed_everything(seed)
            with _window(meter_window, f"eval:{name}") as energy:
                t0 = time.perf_counter()
                out = lm_evaluate(
                    lm=lm, task_dict=loaded, limit=limit, bootstrap_iters=BOOTSTRAP_ITERS, log_samples=False
                )
                eval_time_s = time.perf_counter() - t0
            if out is None:  # non-zero rank of a distributed run
                continue
            results.append(_result(name, out, loaded, eval_time_s, energy(), version, limit))
    return results


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def local_tasks(
    include_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> list[str]:
    """Names of the tasks in the local folders (`measure/tasks/` and `include_path`)."""
    dirs = tuple(str(d) for d in _local_dirs(include_path))
    return list(_cached_manager(dirs, False).all_tasks)


@contextlib.contextmanager
def offline_mode(enabled: bool = True) -> Iterator[None]:
    """Set HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1 (and the module constants read from them at
    import time) inside the block; restore the previous values on exit."""
    if not enabled:
        yield
        return
    import importlib

    saved_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    saved_attrs: list[tuple[Any, str, Any]] = []
    try:
        os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
        for module_name, attr in _OFFLINE_CONSTANTS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, attr):
                saved_attrs.append((module, attr, getattr(module, attr)))
                setattr(module, attr, True)
        yield
    finally:
        for module, attr, value in reversed(saved_attrs):
            setattr(module, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------------------------------------
def _local_dirs(include_path: Any) -> list[Path]:
    extra: list[Any]
    if include_path is None:
        extra = []
    elif isinstance(include_path, (str, os.PathLike)):
        extra = [include_path]
    else:
        extra = list(include_path)
    dirs = [LOCAL_TASKS_DIR]
    for p in extra:
        path = Path(p).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"include_path {str(p)!r} is not a directory")
        if path not in dirs:
            dirs.append(path)
    return dirs


@functools.lru_cache(maxsize=8)
def _cached_manager(local_dirs: tuple[str, ...], include_defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=list(local_dirs), include_defaults=include_defaults)
    _resolve_local_data_paths(manager, local_dirs)
    return manager


def _task_manager(local_dirs: tuple[str, ...], include_defaults: bool | None, tasks: list[str]) -> Any:
    """Local-only index when it knows every task (fast), else one that includes lm-eval's tasks."""
    manager = _cached_manager(local_dirs, False)
    missing = [t for t in tasks if t not in manager.task_index]
    searched_defaults = bool(include_defaults or (include_defaults is None and missing))
    if searched_defaults:
        manager = _cached_manager(local_dirs, True)
        missing = [t for t in tasks if t not in manager.task_index]
    if missing:
        name = missing[0]
        err = UnknownTaskError("lm-eval task", name, closest(name, manager.all_tasks, n=5, cutoff=0.6))
        if not searched_defaults:
            err.args = (f"{err.args[0]} (searched only the local tasks: {', '.join(manager.all_tasks)})",)
        raise err
    return manager


def _resolve_local_data_paths(manager: Any, local_dirs: tuple[str, ...]) -> None:
    """Make relative data paths of local task YAMLs absolute, relative to the YAML file.

    `datasets.load_dataset` resolves relative `data_files` / `data_dir` against the current directory,
    not the YAML; wrapping this manager's config loader (one instance, not the class) fixes that for
    tasks loaded by name and for the members of local groups alike.
    """
    factory = getattr(manager, "_factory", None)
    original = getattr(factory, "_load_full_config", None)
    if original is None or getattr(original, "_resolves_local_paths", False):
        if original is None:
            log.warning("lm-eval internals changed: relative data_files of local tasks resolve against cwd")
        return
    roots = [Path(d) for d in local_dirs]

    def load_full_config(entry: Any, overrides: Any = None) -> dict[str, Any]:
        cfg = original(entry, overrides)
        yaml_path = getattr(entry, "yaml_path", None)
        if yaml_path is None:
            return cfg
        yaml_path = Path(yaml_path).resolve()
        if not any(yaml_path.is_relative_to(r) for r in roots):
            return cfg
        base = yaml_path.parent
        dataset_path = cfg.get("dataset_path")
        if isinstance(dataset_path, str) and dataset_path.startswith(("./", "../")):
            cfg["dataset_path"] = str((base / dataset_path).resolve())
        kwargs = cfg.get("dataset_kwargs")
        if isinstance(kwargs, Mapping) and dataset_path in _PACKAGED_BUILDERS:
            cfg["dataset_kwargs"] = {
                k: _absolute(v, base) if k in _PATH_KWARGS else v for k, v in kwargs.items()
            }
        return cfg

    load_full_config._resolves_local_paths = True  # type: ignore[attr-defined]
    factory._load_full_config = load_full_config


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, str):
        if "://" in value or Path(value).is_absolute():
            return value
        return str((base / value).resolve())
    if isinstance(value, Mapping):
        return {k: _absolute(v, base) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_absolute(v, base) for v in value]
    return value


def _configure(loaded: Mapping[str, Any], num_fewshot: int | None, seed: int) -> None:
    """num_fewshot and few-shot seed per task, as lm_eval.simple_evaluate does."""
    for task in loaded["tasks"].values():
        default = task.get_config("num_fewshot")
        if num_fewshot is not None and default != 0:
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif default is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _window(meter_window: MeterWindow | None, name: str) -> Iterator[Callable[[], float | None]]:
    """Yield a getter for the window's energy in J (valid after the block; None without a meter)."""
    if meter_window is None:
        yield lambda: None
        return
    with meter_window(name) as w:
        yield lambda: _finite(getattr(w, "energy_j", None))


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _result(
    name: str,
    out: Mapping[str, Any],
    loaded: Mapping[str, Any],
    eval_time_s: float,
    energy_j: float | None,
    version: str,
    limit: int | None,
) -> AccuracyResult:
    row = dict(out.get("results", {}).get(name) or out.get("groups", {}).get(name) or {})
    metrics = {
        k: float(v)
        for k, v in row.items()
        if "," in k and "_stderr," not in k and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if not metrics:
        raise RuntimeError(f"lm-eval returned no metrics for task {name!r}: {sorted(row)}")
    key = _primary_key(name, metrics, loaded)
    metric, _, filt = key.partition(",")
    stderr = _finite(row.get(f"{metric}_stderr,{filt}"))
    n_eff = 0
    n_samples = out.get("n-samples", {})
    for leaf in loaded["tasks"]:
        counts = n_samples.get(leaf) or {}
        n_eff += int(counts.get("effective", counts.get("original", 0)) or 0)
    configs = out.get("configs", {})
    shots = {c.get("num_fewshot") for c in configs.values() if isinstance(c, Mapping)} if configs else set()
    return AccuracyResult(
        task=name,
        metric=metric if filt in ("", "none") else key,
        accuracy=metrics[key],
        accuracy_stderr=stderr,
        n_samples=n_eff,
        eval_time_s=eval_time_s,
        eval_energy_j=energy_j,
        lm_eval_version=version,
        num_fewshot=shots.pop() if len(shots) == 1 else None,
        limit=limit,
        metrics=metrics,
    )


def _primary_key(name: str, metrics: Mapping[str, float], loaded: Mapping[str, Any]) -> str:
    wanted = [PRIMARY_METRICS.get(name)]
    for task in loaded["tasks"].values():
        meta = task.get_config("metadata") or {}
        if isinstance(meta, Mapping) and meta.get("primary_metric"):
            wanted.append(str(meta["primary_metric"]))
    wanted.append("acc,none")
    for key in wanted:
        if key and key in metrics:
            return key
        if key and "," not in key:  # a bare metric name: any filter
            hit = next((k for k in metrics if k.partition(",")[0] == key), None)
            if hit:
                return hit
    acc = next((k for k in metrics if k.partition(",")[0] == "acc"), None)
    return acc or next(iter(metrics))
