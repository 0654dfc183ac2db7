"""Inference engines: each turns (model, batch of prompts) into timed prefill and generate calls."""

from __future__ import annotations

import importlib
from typing import Any

_ENGINES = {"hf-eager": "hf_eager", "hf-compiled": "hf_compiled", "hf-compiled-gqa": "hf_compiled_gqa", "vllm": "vllm"}
#: engines that torch.compile per shape a loaded model sees
COMPILING_ENGINES = ("hf-compiled", "hf-compiled-gqa")


class Engine:
    """`prefill(inputs)` runs one prefill of the batch; `generate(inputs, n)` prefill + n tokens per sequence.

    An engine with `owns_model = True` (vLLM) loads the model itself: the runner calls `load(cell, device)`
    instead of building a transformers model and applying our quantization backend, and passes the
    returned `LoadedModel.model` (the engine's handle) to `prefill` / `generate`.
    """

    id: str = ""
    owns_model: bool = False

    def __init__(self, **params: Any):
        self.params = params

    def skip_reason(self, device_type: str) -> str | None:
        return None

    def cell_skip_reason(self, cell, device) -> str | None:
        """Why an engine that owns its model cannot run `cell` (its quant, weights ...) on `device`."""
        return None

    def load_key(self, cell) -> tuple:
        """What, beyond `cell.group_key`, decides whether a loaded handle can be reused (owns_model only)."""
        return ()

    def load(self, cell, device: str):
        """(LoadedModel, QuantResult) for `cell`, loaded and quantized by the engine (owns_model only)."""
        raise NotImplementedError

    def unload(self, handle) -> None:
        """Release what `load` created (owns_model only)."""

    def describe(self, handle) -> dict[str, Any]:
        """Extra engine_params to record for a loaded handle or model (e.g. the engine's load arguments)."""
        return {}

    def prepare(self, model) -> None:
        """Called once per loaded model (e.g. set up compilation)."""

    def prefill(self, model, input_ids, attention_mask) -> None:
        raise NotImplementedError

    def generate(self, model, input_ids, attention_mask, new_tokens: int):
        raise NotImplementedError

    def versions(self) -> dict[str, str | None]:
        return {}


def get_engine(engine_id: str, **params: Any) -> Engine:
    if engine_id not in _ENGINES:
        from recommender.errors import UnknownNameError, closest

        raise UnknownNameError("measurable engine", engine_id, closest(engine_id, _ENGINES))
    mod = importlib.import_module(f"{__name__}.{_ENGINES[engine_id]}")
    return mod.ENGINE(**params)


def measurable() -> list[str]:
    return list(_ENGINES)
