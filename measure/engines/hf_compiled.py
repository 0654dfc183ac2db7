"""HF transformers `generate` with a static KV cache, which makes transformers compile the decode step
(torch.compile, mode "reduce-overhead": CUDA graphs). On a CPU transformers does not compile, so the
engine runs the static cache uncompiled there (recorded in engine_params).

Engine params (a grid's `engine_params: {hf-compiled: {...}}`, part of the cell's hash): `mode` (default
"reduce-overhead"), `fullgraph` (default False) and `dynamic` (default None: torch's automatic dynamic
shapes, which compile the first batch size a loaded model runs with static, recompile with a dynamic batch
dimension at the second and reuse that graph after; False: a static graph per batch size)."""

from __future__ import annotations

from measure.engines.hf_eager import HfEager


class HfCompiled(HfEager):
    id = "hf-compiled"
    cache_implementation = "static"

    def generate_kwargs(self) -> dict:
        from transformers import CompileConfig

        return {"compile_config": CompileConfig(fullgraph=self.params.get("fullgraph", False),
                                                dynamic=self.params.get("dynamic"),
                                                mode=self.params.get("mode", "reduce-overhead"))}


ENGINE = HfCompiled
