"""A grid cell: everything that defines one measurement, hashed for resumable grids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One (model x quant x engine x batch x workload [x task]) measurement.

    `model` is a catalogue id, a local path or a Hugging Face id. `gpu` optionally pins the cell to an
    accelerator type (a catalogue GPU id) for heterogeneous clusters; None runs anywhere.
    """

    model: str
    quant: str
    engine: str
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    weights: str = "random"
    repetitions: int = 3
    warmup: int = 1
    seed: int = 0
    quant_params: dict[str, Any] = field(default_factory=dict)
    engine_params: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    eval_limit: int | None = None
    gpu: str | None = None

    def __hash__(self) -> int:  # dict fields are not hashable; the content hash is
        return hash(self.content_hash)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @property
    def content_hash(self) -> str:
        """SHA-256 (16 hex) of the canonical JSON of every field: same content, same hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def group_key(self) -> tuple:
        """Cells with the same key can share one loaded, quantized model."""
        return (self.model, self.weights, self.quant, json.dumps(self.quant_params, sort_keys=True), self.seed)

    def label(self) -> str:
        return (f"{self.model}/{self.quant}/{self.engine}/b{self.batch_size}/"
                f"p{self.prompt_tokens}-o{self.output_tokens}")
