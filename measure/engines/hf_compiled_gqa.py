"""hf-compiled with grouped-query SDPA forced (`sdpa_gqa: force`, measure/engines/attention.py): the catalogue's
engine variant `hf-compiled-gqa` (datasets/catalog/engines.yaml).

Why: with the static KV cache every decode step attends over the whole cache with a mask, and with a mask
transformers' SDPA path copies a grouped-query model's K/V out to every query head; forcing grouped-query SDPA
removes the copy (session s24 on the H200: compiled bf16 decode J/token x0.30-0.36 of the default at batch 32 and
1024/256; notebook h100_campaign.ipynb, "Removing the copy"). Its records carry `sdpa_gqa: force` in engine_params
like any cell that asks for it; the engine id tells the cost model and the recommender which engine ran."""

from __future__ import annotations

from typing import Any

from measure.engines.hf_compiled import HfCompiled


class HfCompiledGqa(HfCompiled):
    id = "hf-compiled-gqa"

    def __init__(self, **params: Any):
        from recommender.catalog import load_catalog

        # the engine params that make this variant: the catalogue's `engine_params` of hf-compiled-gqa, the one place
        # they are written (grids are checked against the same engine, measure/grid.py)
        variant = load_catalog().engine(self.id)
        self.forced = dict(variant.engine_params)
        clash = variant.contradicting(params)
        if clash:
            raise ValueError(f"engine {self.id} runs with {self.forced}; engine params {clash} contradict it "
                             f"(use {variant.variant_of} for transformers' own attention decision)")
        super().__init__(**{**params, **self.forced})

    def describe(self, model) -> dict:
        return {**super().describe(model), **self.forced}


ENGINE = HfCompiledGqa
