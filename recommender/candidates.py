"""Columnar candidate table: gpu x model x quant x engine x batch x workload, as numpy arrays.

Spec columns are joined on demand by name: `gpu_<field>`, `model_<field>`, `quant_<field>`,
`engine_<field>` (engine analytic parameters live under `engine_analytic_<key>`), plus the row
columns `batch_size`, `prompt_tokens`, `output_tokens`. Everything is vectorised so that ranking
the whole catalogue stays well under 200 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender.catalog import Catalog

_KINDS = {"gpu": "gpus", "model": "models", "quant": "quants", "engine": "engines"}


@dataclass
class Candidates:
    catalog: Catalog
    gpu_idx: np.ndarray
    model_idx: np.ndarray
    quant_idx: np.ndarray
    engine_idx: np.ndarray
    batch_size: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    @classmethod
    def grid(cls, catalog: Catalog, gpus: Sequence[str], models: Sequence[str], quants: Sequence[str],
             engines: Sequence[str], batch_sizes: Sequence[int], prompt_tokens: int | Sequence[int],
             output_tokens: int | Sequence[int]) -> Candidates:
        """Cartesian product of catalogue ids (already resolved) and sizes."""
        idx = [np.array([getattr(catalog, t).index[i] for i in ids], dtype=np.int32)
               for t, ids in (("gpus", gpus), ("models", models), ("quants", quants), ("engines", engines))]
        sizes = [np.asarray(batch_sizes, dtype=np.float64),
                 np.atleast_1d(np.asarray(prompt_tokens, dtype=np.float64)),
                 np.atleast_1d(np.asarray(output_tokens, dtype=np.float64))]
        axes = [*idx, *sizes]
        mesh = np.meshgrid(*[np.arange(len(a)) for a in axes], indexing="ij")
        cols = [a[m.ravel()] for a, m in zip(axes, mesh, strict=True)]
        return cls(catalog, *cols)

    @classmethod
    def from_ids(cls, catalog: Catalog, gpu: Sequence[str], model: Sequence[str], quant: Sequence[str],
                 engine: Sequence[str], batch_size, prompt_tokens, output_tokens) -> Candidates:
        """One candidate per row of parallel id lists (e.g. measured records)."""
        def index(table, ids):
            return np.array([table.index[table.get(i).id] for i in ids], dtype=np.int32)
        return cls(catalog, index(catalog.gpus, gpu), index(catalog.models, model),
                   index(catalog.quants, quant), index(catalog.engines, engine),
                   np.asarray(batch_size, dtype=np.float64), np.asarray(prompt_tokens, dtype=np.float64),
                   np.asarray(output_tokens, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.gpu_idx.shape[0])

    def take(self, sel) -> Candidates:
        return Candidates(self.catalog, *(getattr(self, f)[sel] for f in
                                          ("gpu_idx", "model_idx", "quant_idx", "engine_idx",
                                           "batch_size", "prompt_tokens", "output_tokens")))

    def col(self, name: str) -> np.ndarray:
        """A float column: row columns, or a joined spec column such as `gpu_bandwidth_gbs`."""
        if name in ("batch_size", "prompt_tokens", "output_tokens"):
            return getattr(self, name)
        kind, _, attr = name.partition("_")
        if kind not in _KINDS:
            raise KeyError(name)
        table = getattr(self.catalog, _KINDS[kind])
        idx = getattr(self, f"{kind}_idx")
        if kind == "engine" and attr.startswith("analytic_"):
            key = attr[len("analytic_"):]
            vals = np.array([_float(e.analytic.get(key)) for e in table], dtype=np.float64)
            return vals[idx]
        return table.array(attr)[idx]

    def ids(self, kind: str) -> np.ndarray:
        """Catalogue ids of one kind (gpu/model/quant/engine) per row, as an object array."""
        table = getattr(self.catalog, _KINDS[kind])
        return np.array(table.ids(), dtype=object)[getattr(self, f"{kind}_idx")]


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan
