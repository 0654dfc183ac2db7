"""Quantization backends, one module per method, registered by catalogue id (`@register_quant("bnb-nf4")`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

_REGISTRY: dict[str, type[QuantBackend]] = {}
_MODULES = ("dense", "bnb_int8", "bnb_4bit", "torchao_int8_wo", "torchao_int8_dyn", "torchao_int4_wo",
            "torchao_fp8")


@dataclass
class DeviceInfo:
    """What a backend needs to know about the device it will run on."""

    type: str  # cuda | cpu
    compute_capability: float | None = None  # e.g. 9.0
    name: str | None = None


@dataclass
class QuantResult:
    quantize_time_s: float
    params: dict[str, Any] = field(default_factory=dict)  # effective parameters, recorded as quant_params
    note: str | None = None


class QuantBackend:
    """Turns a dense model (built in `build_dtype`) into the quantized variant, in place, on its device."""

    id: str = ""
    build_dtype: str = "bfloat16"  # dtype the dense model is built in before quantizing
    defaults: dict[str, Any] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.id}: unknown parameter(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}

    def skip_reason(self, device: DeviceInfo) -> str | None:
        """Why this method cannot run on `device` (None if it can)."""
        return None

    def apply(self, model) -> QuantResult:
        return QuantResult(0.0, dict(self.params))

    @staticmethod
    def versions() -> dict[str, str | None]:
        return {}


def register_quant(quant_id: str):
    def deco(cls: type[QuantBackend]) -> type[QuantBackend]:
        cls.id = quant_id
        _REGISTRY[quant_id] = cls
        return cls

    return deco


def _load_all() -> None:
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_backend(quant_id: str, **params: Any) -> QuantBackend:
    """An instance of the backend registered for `quant_id` (ValueError naming close ids if unknown)."""
    _load_all()
    if quant_id not in _REGISTRY:
        from recommender.errors import UnknownNameError, closest

        raise UnknownNameError("quantization backend", quant_id, closest(quant_id, _REGISTRY))
    return _REGISTRY[quant_id](**params)


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
