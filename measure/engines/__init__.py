"""Inference engines: each turns (model, batch of prompts) into timed prefill and generate calls."""

from __future__ import annotations

import importlib
from typing import Any

_ENGINES = {"hf-eager": "hf_eager", "hf-compiled": "hf_compiled", "vllm": "vllm"}


class Engine:
    """`prefill(inputs)` runs one prefill of the batch; `generate(inputs, n)` prefill + n tokens per sequence."""

    id: str = ""

    def __init__(self, **params: Any):
        self.params = params

    def skip_reason(self, device_type: str) -> str | None:
        return None

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
