"""Grid specification (YAML), validation before any GPU work, and expansion into hashed cells.

A grid file looks like::

    name: paper
    models: [qwen2.5-7b-instruct, {path: ./my-model, weights: real}, {hub: org/name, weights: real}]
    quants: [bf16, bnb-nf4]
    engines: [hf-eager, hf-compiled]
    batch_sizes: [1, 8, 32]
    workloads: [{prompt_tokens: 256, output_tokens: 128}, "1024/256"]
    repetitions: 3
    cooldown: {mode: adaptive, seconds: 300, margin_c: 3, cap_s: 300}
    exclude: [{quant: torchao-fp8, engine: hf-eager}]

`load_grid(path)` parses and type-checks, `GridSpec.validate()` checks every name against the catalogue
and every size against the model, `expand(spec)` returns the cells (cartesian product minus excludes and
minus quant x engine pairs that engines.yaml marks unsupported) in a deterministic, model-cache-friendly
order. Every problem is a `GridError` whose message names the file and the field.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from measure.cell import Cell

try:  # the light error base, so the CLI prints one line and exits 2
    from recommender.errors import UserError as _UserError
    from recommender.errors import closest
except ImportError:  # pragma: no cover - recommender is part of this repo
    _UserError = Exception  # type: ignore[assignment,misc]

    def closest(name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
        import difflib

        return difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)


COOLDOWN_MODES = ("fixed", "adaptive", "none")
ORDERS = ("grouped", "random", "cheapest")
WEIGHTS = ("random", "real")
TASKS_ON = ("first", "all")
RESUME_PER = ("card", "gpu")
EXCLUDE_KEYS = ("model", "quant", "engine", "batch_size", "prompt_tokens", "output_tokens", "weights", "gpu")


class GridError(_UserError, ValueError):
    """A grid (or `measure run` arguments) that cannot be measured; the message names file and field."""

    exit_code = 2


# ------------------------------------------------------------------------------------------------
# spec dataclasses
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CooldownSpec:
    """Pause between cells: `fixed` sleeps `seconds`; `adaptive` polls the GPU temperature until it is
    within `margin_c` of the idle temperature read at the start, at most `cap_s`; `none` does not wait."""

    mode: str = "adaptive"
    seconds: float = 300.0
    margin_c: float = 3.0
    cap_s: float = 300.0
    poll_s: float = 5.0


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ModelEntry:
    """A model of the grid: `name` as it goes into the cell, where it comes from, its weights."""

    name: str
    source: str  # catalogue | local | hub
    weights: str
    max_position_embeddings: int | None = None


@dataclass
class GridSpec:
    name: str = "grid"
    models: list[Any] = field(default_factory=list)  # str | {id|path|hub: ..., weights: ...}
    quants: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    tasks_on: str = "first"  # accuracy on the first cell of each model x quant group, or on all cells
    eval_limit: int | None = None
    repetitions: int = 3
    warmup: int = 1
    weights: str = "random"
    seed: int = 0
    quant_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    cooldown: CooldownSpec = field(default_factory=CooldownSpec)
    order: str = "grouped"
    order_seed: int = 0
    shuffle_within_group: bool = False
    gpus: list[str] | None = None
    exclude: list[dict[str, Any]] = field(default_factory=list)
    max_context: int | None = None
    # what a store's record of a cell counts as done for: every GPU of the same model (`card`, the
    # campaign's resume), or only the GPU (NVML UUID) that measured it (`gpu`: every GPU, e.g. of each
    # new lent machine, measures the cells once, as machine anchors; no claims are shared then)
    resume_per: str = "card"
    description: str | None = None
    # not a YAML key: where the spec was read from (for messages and Record.grid_file)
    source_path: str | None = field(default=None, compare=False)

    # --------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> GridSpec:
        """Type-check a parsed YAML mapping (no catalogue needed) and build the spec."""
        where = _where(source)
        if not isinstance(data, Mapping):
            raise GridError(f"{where}: the grid must be a mapping of keys, got {type(data).__name__}")
        _check_keys(data, _yaml_keys(), where)
        kw = {k: _COERCE[k](v, f"{where}: {k}") for k, v in data.items()}
        spec = cls(**kw, source_path=source)
        spec._check_required()
        return spec

    @classmethod
    def from_yaml(cls, path: str | Path) -> GridSpec:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise GridError(f"{p}: cannot read the grid file: {e.strerror or e}") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise GridError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from e
        if data is None:
            raise GridError(f"{p}: the grid file is empty")
        return cls.from_dict(data, source=str(p))

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping that reproduces this spec (round-trips through `from_dict`)."""
        d = dataclasses.asdict(self)
        d.pop("source_path")
        d["workloads"] = [dataclasses.asdict(w) for w in self.workloads]
        d["cooldown"] = dataclasses.asdict(self.cooldown)
        return d

    def override(self, **changes: Any) -> GridSpec:
        """A copy with CLI-style overrides applied and type-checked: `spec.override(repetitions=5)`.

        Dotted keys reach into the cooldown: `override(**{"cooldown.mode": "none"})`; a `cooldown` dict
        is merged into the current cooldown. Unknown keys raise GridError.
        """
        where = f"{_where(self.source_path)} (override)"
        data = self.to_dict()
        for key, value in changes.items():
            key = key.replace("-", "_")
            head, _, tail = key.partition(".")
            if tail:
                if head != "cooldown":
                    raise GridError(f"{where}: {key}: only cooldown.<field> takes a dotted override")
                _check_keys({tail: value}, _cooldown_keys(), f"{where}: cooldown")
                data["cooldown"] = {**data["cooldown"], tail: value}
            elif head == "cooldown" and isinstance(value, Mapping):
                _check_keys(value, _cooldown_keys(), f"{where}: cooldown")
                data["cooldown"] = {**data["cooldown"], **value}
            else:
                _check_keys({head: value}, _yaml_keys(), where)
                data[head] = value
        try:
            return GridSpec.from_dict(data, source=self.source_path)
        except GridError as e:
            raise GridError(str(e).replace(_where(self.source_path) + ":", where + ":", 1)) from None

    def _check_required(self) -> None:
        where = _where(self.source_path)
        for name in ("models", "quants", "engines", "batch_sizes", "workloads"):
            if not getattr(self, name):
                raise GridError(f"{where}: {name}: at least one entry is required")

    # --------------------------------------------------------------------------------------------
    def validate(self, catalog: Any = None) -> list[str]:
        """Check every name against the catalogue and every size against the models; raise GridError on
        the first problem. Returns warnings (e.g. fewer than 3 repetitions) that do not stop a run."""
        return _resolve(self, catalog).warnings

    def expand(self, catalog: Any = None) -> list[Cell]:
        return expand(self, catalog)


def load_grid(path: str | Path, overrides: Mapping[str, Any] | Sequence[str] | None = None, *,
              catalog: Any = None, validate: bool = True) -> GridSpec:
    """Read, override (`{"repetitions": 5}` or `["repetitions=5"]`), and validate a grid file."""
    spec = GridSpec.from_yaml(path)
    if overrides:
        if not isinstance(overrides, Mapping):
            overrides = parse_overrides(overrides)
        spec = spec.override(**overrides)
    if validate:
        spec.validate(catalog)
    return spec


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["repetitions=5", "cooldown.mode=none", "batch_sizes=[1,8]"]` -> dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise GridError(f"override {item!r}: expected KEY=VALUE, e.g. repetitions=5")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise GridError(f"override {item!r}: value is not valid YAML: {' '.join(str(e).split())}") from e
    return out


# ------------------------------------------------------------------------------------------------
# type checks / coercion of the YAML values
# ------------------------------------------------------------------------------------------------
def _where(source: str | None) -> str:
    return source or "grid"


def _yaml_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(GridSpec) if f.name != "source_path"]


def _cooldown_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(CooldownSpec)]


def _check_keys(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    for key in data:
        if not isinstance(key, str) or key not in known:
            hint = closest(str(key), known, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known)})"
            raise GridError(f"{where}: unknown key {key!r}{extra}")


def _tname(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _int(v: Any, where: str, *, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise GridError(f"{where}: expected an integer, got {_tname(v)} {v!r}")
    if minimum is not None and v < minimum:
        raise GridError(f"{where}: must be >= {minimum}, got {v}")
    return v


def _opt_int(v: Any, where: str, *, minimum: int | None = None) -> int | None:
    return None if v is None else _int(v, where, minimum=minimum)


def _num(v: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise GridError(f"{where}: expected a number, got {_tname(v)} {v!r}")
    if minimum is not None and v < minimum:
        raise GridError(f"{where}: must be >= {minimum}, got {v}")
    return float(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise GridError(f"{where}: expected a non-empty string, got {_tname(v)} {v!r}")
    return v.strip()


def _opt_str(v: Any, where: str) -> str | None:
    return None if v is None else _str(v, where)


def _choice(v: Any, where: str, choices: Sequence[str]) -> str:
    s = _str(v, where)
    if s not in choices:
        raise GridError(f"{where}: must be one of {', '.join(choices)}, got {s!r}")
    return s


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise GridError(f"{where}: expected true or false, got {_tname(v)} {v!r}")
    return v


def _list(v: Any, where: str) -> list[Any]:
    """A list; a single scalar is accepted as a one-element list."""
    if isinstance(v, list | tuple):
        return list(v)
    if v is None or isinstance(v, Mapping):
        raise GridError(f"{where}: expected a list, got {_tname(v)}")
    return [v]


def _str_list(v: Any, where: str) -> list[str]:
    return [_str(x, f"{where}[{i}]") for i, x in enumerate(_list(v, where))]


def _pos_int_list(v: Any, where: str) -> list[int]:
    out = []
    for i, x in enumerate(_list(v, where)):
        n = _int(x, f"{where}[{i}]")
        if n <= 0:
            raise GridError(f"{where}[{i}]: must be a positive integer, got {n}")
        out.append(n)
    return out


def _models(v: Any, where: str) -> list[Any]:
    out: list[Any] = []
    for i, x in enumerate(_list(v, where)):
        w = f"{where}[{i}]"
        if isinstance(x, str):
            out.append(_str(x, w))
        elif isinstance(x, Mapping):
            _check_keys(x, ("id", "path", "hub", "weights"), w)
            names = [k for k in ("id", "path", "hub") if k in x]
            if len(names) != 1:
                raise GridError(f"{w}: give exactly one of id, path or hub, got {names or 'none'}")
            entry = {names[0]: _str(x[names[0]], f"{w}.{names[0]}")}
            if "weights" in x:
                entry["weights"] = _choice(x["weights"], f"{w}.weights", WEIGHTS)
            out.append(entry)
        else:
            raise GridError(f"{w}: expected a model id or a mapping {{path: ..., weights: real}}, got {_tname(x)}")
    return out


_WL_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def _workloads(v: Any, where: str) -> list[Workload]:
    out = []
    for i, x in enumerate(_list(v, where)):
        w = f"{where}[{i}]"
        if isinstance(x, Workload):
            x = dataclasses.asdict(x)
        if isinstance(x, str) and (m := _WL_RE.match(x)):
            x = {"prompt_tokens": int(m.group(1)), "output_tokens": int(m.group(2))}
        if not isinstance(x, Mapping):
            raise GridError(f"{w}: expected {{prompt_tokens: N, output_tokens: M}} or 'N/M', got {_tname(x)} {x!r}")
        _check_keys(x, ("prompt_tokens", "output_tokens"), w)
        for k in ("prompt_tokens", "output_tokens"):
            if k not in x:
                raise GridError(f"{w}: {k} is required")
        p = _int(x["prompt_tokens"], f"{w}.prompt_tokens")
        o = _int(x["output_tokens"], f"{w}.output_tokens")
        for k, n in (("prompt_tokens", p), ("output_tokens", o)):
            if n <= 0:
                raise GridError(f"{w}.{k}: must be a positive integer, got {n}")
        out.append(Workload(p, o))
    return out


def _params(v: Any, where: str) -> dict[str, dict[str, Any]]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise GridError(f"{where}: expected a mapping of id -> {{param: value}}, got {_tname(v)}")
    out = {}
    for k, p in v.items():
        if not isinstance(p, Mapping):
            raise GridError(f"{where}.{k}: expected a mapping of parameters, got {_tname(p)}")
        try:
            json.dumps(dict(p), sort_keys=True)
        except TypeError as e:
            raise GridError(f"{where}.{k}: parameters must be plain values: {e}") from e
        out[_str(k, where)] = dict(p)
    return out


def _cooldown(v: Any, where: str) -> CooldownSpec:
    if isinstance(v, CooldownSpec):
        return v
    if isinstance(v, str):  # `cooldown: none`
        v = {"mode": v}
    if v is False:  # `cooldown: false`
        v = {"mode": "none"}
    if isinstance(v, int | float) and not isinstance(v, bool):  # `cooldown: 60` = fixed 60 s
        v = {"mode": "fixed", "seconds": _num(v, where, minimum=0)}
    if not isinstance(v, Mapping):
        raise GridError(f"{where}: expected {{mode: fixed|adaptive|none, seconds: ...}}, got {_tname(v)}")
    _check_keys(v, _cooldown_keys(), where)
    kw: dict[str, Any] = {}
    if "mode" in v:
        kw["mode"] = _choice(v["mode"], f"{where}.mode", COOLDOWN_MODES)
    for k in ("seconds", "margin_c", "cap_s"):
        if k in v:
            kw[k] = _num(v[k], f"{where}.{k}", minimum=0)
    if "poll_s" in v:
        kw["poll_s"] = _num(v["poll_s"], f"{where}.poll_s", minimum=0.01)
    return CooldownSpec(**kw)


def _exclude(v: Any, where: str) -> list[dict[str, Any]]:
    out = []
    for i, x in enumerate(_list(v, where)):
        w = f"{where}[{i}]"
        if not isinstance(x, Mapping) or not x:
            raise GridError(f"{w}: expected a partial cell such as {{quant: torchao-fp8, engine: hf-eager}}")
        _check_keys(x, EXCLUDE_KEYS, w)
        out.append({k: (list(val) if isinstance(val, list | tuple) else val) for k, val in x.items()})
    return out


def _opt_gpus(v: Any, where: str) -> list[str] | None:
    return None if v is None else _str_list(v, where)


_COERCE: dict[str, Any] = {
    "name": _str,
    "models": _models,
    "quants": _str_list,
    "engines": _str_list,
    "batch_sizes": _pos_int_list,
    "workloads": _workloads,
    "tasks": lambda v, w: [] if v is None else _str_list(v, w),
    "tasks_on": lambda v, w: _choice(v, w, TASKS_ON),
    "eval_limit": lambda v, w: _opt_int(v, w, minimum=1),
    "repetitions": lambda v, w: _int(v, w, minimum=1),
    "warmup": lambda v, w: _int(v, w, minimum=0),
    "weights": lambda v, w: _choice(v, w, WEIGHTS),
    "seed": _int,
    "quant_params": _params,
    "engine_params": _params,
    "cooldown": _cooldown,
    "order": lambda v, w: _choice(v, w, ORDERS),
    "order_seed": _int,
    "shuffle_within_group": _bool,
    "gpus": _opt_gpus,
    "exclude": _exclude,
    "max_context": lambda v, w: _opt_int(v, w, minimum=2),
    "resume_per": lambda v, w: _choice(v, w, RESUME_PER),
    "description": _opt_str,
}
assert set(_COERCE) == set(_yaml_keys()), "every GridSpec field needs a coercer"


# ------------------------------------------------------------------------------------------------
# catalogue access (recommender.catalog; objects or mappings)
# ------------------------------------------------------------------------------------------------
def _load_catalog(catalog: Any) -> Any:
    if catalog is not None:
        return catalog
    try:
        from recommender.catalog import load_catalog
    except ImportError as e:  # pragma: no cover - the catalogue is part of this repo
        raise GridError(f"cannot check the grid: the catalogue is unavailable ({e})") from e
    return load_catalog()


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _lookup(catalog: Any, kind: str, name: str, where: str) -> Any:
    try:
        return getattr(catalog, kind)(name)
    except LookupError as e:  # UnknownNameError is a KeyError: message already has "did you mean"
        msg = str(e) if str(e) and not str(e).startswith("'") else f"unknown {kind} {name!r}"
        raise GridError(f"{where}: {msg}") from None


def _canonical(obj: Any, fallback: str) -> str:
    return str(_get(obj, "id", None) or fallback)


def _cc(v: Any) -> tuple[int, ...] | None:
    if v in (None, ""):
        return None
    try:
        return tuple(int(p) for p in str(v).split("."))
    except ValueError:
        return None


def _local_max_positions(path: Path) -> int | None:
    cfg = (path / "config.json") if path.is_dir() else None
    if cfg is None or not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        v = data.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1


def resolve_model(entry: Any, catalog: Any, where: str, *, default_weights: str = "random") -> ModelEntry:
    """A model entry (catalogue id/alias, existing local path, `{hub: ...}`) -> ModelEntry (canonical)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    weights = entry.get("weights", default_weights)
    if "hub" in entry:
        return ModelEntry(entry["hub"], "hub", weights)
    if "path" in entry:
        p = Path(entry["path"]).expanduser()
        if not p.exists():
            raise GridError(f"{where}: local model path {entry['path']!r} does not exist")
        return ModelEntry(str(p), "local", weights, _local_max_positions(p))
    name = entry.get("id") or entry["name"]
    if "id" not in entry and _looks_like_path(name) and Path(name).expanduser().exists():
        p = Path(name).expanduser()
        return ModelEntry(str(p), "local", weights, _local_max_positions(p))
    try:
        m = catalog.model(name)
    except LookupError as e:
        if "id" not in entry:
            p = Path(name).expanduser()
            if p.exists():
                return ModelEntry(str(p), "local", weights, _local_max_positions(p))
        msg = str(e) if str(e) and not str(e).startswith("'") else f"unknown model {name!r}"
        if "/" in name and "id" not in entry:
            msg += f" (not a catalogue id nor an existing path; for a Hugging Face id write {{hub: {name}}})"
        raise GridError(f"{where}: {msg}") from None
    mpe = _get(m, "max_position_embeddings")
    try:
        mpe = int(mpe) if mpe not in (None, "") else None
    except (TypeError, ValueError):
        mpe = None
    return ModelEntry(_canonical(m, name), "catalogue", weights, mpe)


def _supports(engine_obj: Any, quant_id: str) -> bool:
    sq = _get(engine_obj, "supported_quants", "all")
    if sq in (None, "all", "*"):
        return True
    if isinstance(sq, str):
        sq = [s.strip() for s in re.split(r"[;,]", sq)]
    return quant_id in set(sq)


def _check_sizes(where: str, *, model: ModelEntry, batch_size: int, prompt_tokens: int, output_tokens: int,
                 max_context: int | None) -> None:
    for k, n in (("batch_size", batch_size), ("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise GridError(f"{where}: {k} must be a positive integer, got {n!r}")
    total = prompt_tokens + output_tokens
    if model.max_position_embeddings and total > model.max_position_embeddings:
        raise GridError(
            f"{where}: prompt_tokens + output_tokens = {total} exceeds {model.name}'s max_position_embeddings "
            f"{model.max_position_embeddings} (shorten the workload or exclude it for this model)")
    if max_context and total > max_context:
        raise GridError(f"{where}: prompt_tokens + output_tokens = {total} exceeds max_context {max_context}")


# ------------------------------------------------------------------------------------------------
# resolution (validation) and expansion
# ------------------------------------------------------------------------------------------------
@dataclass
class _Resolved:
    models: list[ModelEntry]
    quants: list[tuple[str, Any]]  # (canonical id, catalogue object)
    engines: list[tuple[str, Any]]
    gpus: list[tuple[str, Any]] | None
    exclude: list[dict[str, Any]]
    cells: list[Cell]
    dropped_unsupported: int
    dropped_excluded: int
    warnings: list[str]


def _resolve(spec: GridSpec, catalog: Any = None) -> _Resolved:
    where = _where(spec.source_path)
    spec._check_required()
    cat = _load_catalog(catalog)
    warnings: list[str] = []

    models = [resolve_model(m, cat, f"{where}: models[{i}]", default_weights=spec.weights)
              for i, m in enumerate(spec.models)]
    quants = []
    for i, q in enumerate(spec.quants):
        obj = _lookup(cat, "quant", q, f"{where}: quants[{i}]")
        quants.append((_canonical(obj, q), obj))
    engines = []
    for i, e in enumerate(spec.engines):
        obj = _lookup(cat, "engine", e, f"{where}: engines[{i}]")
        if _get(obj, "measurable", True) is False:
            raise GridError(f"{where}: engines[{i}]: engine {_canonical(obj, e)!r} is catalogue-only; "
                            "`measure` cannot run it (engines.yaml: measurable: false)")
        engines.append((_canonical(obj, e), obj))
    gpus = None
    if spec.gpus is not None:
        gpus = []
        for i, g in enumerate(spec.gpus):
            obj = _lookup(cat, "gpu", g, f"{where}: gpus[{i}]")
            gpus.append((_canonical(obj, g), obj))
    for kind, seq in (("models", [m.name for m in models]), ("quants", [q for q, _ in quants]),
                      ("engines", [e for e, _ in engines]), ("gpus", [g for g, _ in gpus or []])):
        dup = sorted({x for x in seq if seq.count(x) > 1})
        if dup:
            raise GridError(f"{where}: {kind}: listed twice: {', '.join(dup)}")

    # per-id parameters must name ids of the grid (canonicalised)
    quant_params = _canonical_params(spec.quant_params, cat, "quant", f"{where}: quant_params")
    engine_params = _canonical_params(spec.engine_params, cat, "engine", f"{where}: engine_params")
    quant_ids, engine_ids = {q for q, _ in quants}, {e for e, _ in engines}
    for k in quant_params:
        if k not in quant_ids:
            warnings.append(f"{where}: quant_params.{k}: quantization not in quants; ignored")
    for k in engine_params:
        if k not in engine_ids:
            warnings.append(f"{where}: engine_params.{k}: engine not in engines; ignored")
        variant = cat.engines.find(k)
        clash = variant.contradicting(engine_params[k]) if variant is not None else {}
        if clash:
            raise GridError(f"{where}: engine_params.{k}: {clash} contradict the engine variant's own "
                            f"{variant.engine_params}; use {variant.variant_of} with those params instead")

    exclude = []
    for i, ex in enumerate(spec.exclude):
        w = f"{where}: exclude[{i}]"
        canon: dict[str, Any] = {}
        for k, val in ex.items():
            vals = val if isinstance(val, list) else [val]
            out = []
            for j, x in enumerate(vals):
                wx = f"{w}.{k}" + (f"[{j}]" if isinstance(val, list) else "")
                if k in ("quant", "engine", "gpu"):
                    out.append(_canonical(_lookup(cat, k, _str(x, wx), wx), x))
                elif k == "model":
                    out.append(_exclude_model(x, cat, [m.name for m in models], wx))
                elif k == "weights":
                    out.append(_choice(x, wx, WEIGHTS))
                else:
                    out.append(_int(x, wx))
            canon[k] = out
        exclude.append(canon)

    if spec.repetitions < 3:
        warnings.append(f"{where}: repetitions: {spec.repetitions} < 3; the stability checks need at least 3")
    if spec.tasks and any(m.weights == "random" for m in models):
        warnings.append(f"{where}: tasks: accuracy of random-weight models is meaningless; use weights: real")

    cells: list[Cell] = []
    dropped_unsupported = dropped_excluded = 0
    seen_groups: set[tuple] = set()
    gpu_list: list[tuple[str | None, Any]] = list(gpus) if gpus else [(None, None)]
    for (gpu_id, gpu_obj), model in itertools.product(gpu_list, models):
        for (q, qobj), (e, eobj) in itertools.product(quants, engines):
            if not _supports(eobj, q):
                dropped_unsupported += 1
                continue
            need, have = _cc(_get(qobj, "min_compute_capability")), _cc(_get(gpu_obj, "compute_capability"))
            if need and have and have < need:
                dropped_unsupported += 1
                continue
            for b, wl in itertools.product(spec.batch_sizes, spec.workloads):
                probe = {"model": model.name, "quant": q, "engine": e, "batch_size": b,
                         "prompt_tokens": wl.prompt_tokens, "output_tokens": wl.output_tokens,
                         "weights": model.weights, "gpu": gpu_id}
                if any(all(probe[k] in vals for k, vals in ex.items()) for ex in exclude):
                    dropped_excluded += 1
                    continue
                _check_sizes(f"{where}: {model.name} x workload {wl.prompt_tokens}/{wl.output_tokens}",
                             model=model, batch_size=b, prompt_tokens=wl.prompt_tokens,
                             output_tokens=wl.output_tokens, max_context=spec.max_context)
                qp = dict(quant_params.get(q, {}))
                gkey = (gpu_id, model.name, model.weights, q, json.dumps(qp, sort_keys=True))
                with_tasks = spec.tasks and (spec.tasks_on == "all" or gkey not in seen_groups)
                seen_groups.add(gkey)
                cells.append(Cell(
                    model=model.name, quant=q, engine=e, batch_size=b, prompt_tokens=wl.prompt_tokens,
                    output_tokens=wl.output_tokens, weights=model.weights, repetitions=spec.repetitions,
                    warmup=spec.warmup, seed=spec.seed, quant_params=qp,
                    engine_params=dict(engine_params.get(e, {})),
                    tasks=tuple(spec.tasks) if with_tasks else (),
                    eval_limit=spec.eval_limit if with_tasks else None, gpu=gpu_id))
    if not cells:
        raise GridError(f"{where}: the grid expands to no cells ({dropped_excluded} excluded, "
                        f"{dropped_unsupported} unsupported quant x engine pairs)")
    return _Resolved(models, quants, engines, gpus, exclude, cells, dropped_unsupported, dropped_excluded,
                     warnings)


def _canonical_params(params: dict[str, dict[str, Any]], cat: Any, kind: str, where: str) -> dict:
    out = {}
    for k, v in params.items():
        out[_canonical(_lookup(cat, kind, k, f"{where}.{k}"), k)] = v
    return out


def _exclude_model(x: Any, cat: Any, grid_models: list[str], where: str) -> str:
    name = _str(x, where)
    if name in grid_models:
        return name
    try:
        return _canonical(cat.model(name), name)
    except LookupError:
        p = Path(name).expanduser()
        if p.exists():
            return str(p)
        hint = closest(name, grid_models, n=1)
        raise GridError(f"{where}: unknown model {name!r} (neither a catalogue id nor a model of this grid)"
                        + (f"; did you mean {hint[0]!r}?" if hint else "")) from None


def expand(spec: GridSpec, catalog: Any = None) -> list[Cell]:
    """Validate and expand: the cartesian product gpus x models x quants x engines x batch_sizes x
    workloads, minus `exclude` and minus pairs the catalogue marks unsupported. Deterministic order:
    the nesting above, so cells that share a loaded model (`Cell.group_key`) are adjacent."""
    return list(_resolve(spec, catalog).cells)


def expansion_report(spec: GridSpec, catalog: Any = None) -> dict[str, Any]:
    """Counts for `measure grid --dry-run`: cells, groups, excluded, unsupported, warnings."""
    r = _resolve(spec, catalog)
    return {"cells": len(r.cells), "groups": len({(c.gpu, c.group_key) for c in r.cells}),
            "excluded": r.dropped_excluded, "unsupported": r.dropped_unsupported, "warnings": r.warnings,
            "models": [m.name for m in r.models], "quants": [q for q, _ in r.quants],
            "engines": [e for e, _ in r.engines]}


def validate_cell_args(model: str, quant: str, engine: str, batch_size: int, prompt_tokens: int,
                       output_tokens: int, *, repetitions: int = 3, warmup: int = 1, seed: int = 0,
                       weights: str = "random", gpu: str | None = None,
                       quant_params: Mapping[str, Any] | None = None,
                       engine_params: Mapping[str, Any] | None = None, tasks: Sequence[str] = (),
                       eval_limit: int | None = None, max_context: int | None = None,
                       catalog: Any = None, where: str = "measure run",
                       labels: Mapping[str, str] | None = None) -> Cell:
    """Check one cell's arguments (for `measure run` flags) and return the canonical `Cell`.

    `labels` renames fields in messages, e.g. {"quant": "--quant"}. Raises GridError naming the field.
    """
    lab = {k: k for k in ("model", "quant", "engine", "gpu", "batch_size", "prompt_tokens", "output_tokens",
                          "repetitions", "warmup", "weights", "eval_limit")}
    lab.update(labels or {})
    cat = _load_catalog(catalog)
    _int(repetitions, f"{where}: {lab['repetitions']}", minimum=1)
    _int(warmup, f"{where}: {lab['warmup']}", minimum=0)
    _choice(weights, f"{where}: {lab['weights']}", WEIGHTS)
    if eval_limit is not None:
        _int(eval_limit, f"{where}: {lab['eval_limit']}", minimum=1)
    m = resolve_model(model, cat, f"{where}: {lab['model']}", default_weights=weights)
    qobj = _lookup(cat, "quant", quant, f"{where}: {lab['quant']}")
    eobj = _lookup(cat, "engine", engine, f"{where}: {lab['engine']}")
    q, e = _canonical(qobj, quant), _canonical(eobj, engine)
    if _get(eobj, "measurable", True) is False:
        raise GridError(f"{where}: {lab['engine']}: engine {e!r} is catalogue-only; `measure` cannot run it")
    if not _supports(eobj, q):
        raise GridError(f"{where}: {lab['quant']}: engine {e!r} does not support quantization {q!r} "
                        "(engines.yaml supported_quants)")
    g = None
    if gpu is not None:
        g = _canonical(_lookup(cat, "gpu", gpu, f"{where}: {lab['gpu']}"), gpu)
    for k, n in (("batch_size", batch_size), ("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise GridError(f"{where}: {lab[k]}: must be a positive integer, got {n!r}")
    _check_sizes(f"{where}: {lab['prompt_tokens']} + {lab['output_tokens']}", model=m, batch_size=batch_size,
                 prompt_tokens=prompt_tokens, output_tokens=output_tokens, max_context=max_context)
    return Cell(model=m.name, quant=q, engine=e, batch_size=batch_size, prompt_tokens=prompt_tokens,
                output_tokens=output_tokens, weights=m.weights, repetitions=repetitions, warmup=warmup,
                seed=seed, quant_params=dict(quant_params or {}), engine_params=dict(engine_params or {}),
                tasks=tuple(tasks), eval_limit=eval_limit, gpu=g)


def order_cells(cells: Sequence[Cell], order: str = "grouped", seed: int = 0,
                shuffle_within_group: bool = False, cost: Callable[[Cell], float | None] | None = None
                ) -> list[Cell]:
    """Keep cells sharing `group_key` together (first-appearance order of groups). `random` shuffles the
    groups with `seed` and, when asked, the cells inside each group; the result is reproducible.
    `cheapest` puts the groups in order of their estimated wall time (the sum of `cost(cell)`, seconds),
    groups with a cell of unknown cost last in grouped order; without `cost` it is `grouped` (the executor
    supplies the estimate from the store's records, see `measure.executor.run_grid`)."""
    import random

    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.gpu, c.group_key), []).append(c)
    blocks = list(groups.values())
    if order == "random":
        rng = random.Random(seed)
        rng.shuffle(blocks)
        if shuffle_within_group:
            for b in blocks:
                rng.shuffle(b)
    elif order == "cheapest":
        if cost is not None:
            def block_cost(b: list[Cell]) -> tuple[bool, float]:
                costs = [cost(c) for c in b]
                return (any(v is None for v in costs), sum(v for v in costs if v is not None))

            blocks.sort(key=block_cost)  # stable: ties keep grouped order
    elif order != "grouped":
        raise GridError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    return [c for b in blocks for c in b]
