"""HF transformers `generate` with a static KV cache, which makes transformers compile the decode step
(torch.compile, mode "reduce-overhead": CUDA graphs). On a CPU transformers does not compile, so the
engine runs the static cache uncompiled there (recorded in engine_params)."""

from __future__ import annotations

from measure.engines.hf_eager import HfEager


class HfCompiled(HfEager):
    id = "hf-compiled"
    cache_implementation = "static"

    def generate_kwargs(self) -> dict:
        from transformers import CompileConfig

        return {"compile_config": CompileConfig(fullgraph=self.params.get("fullgraph", False),
                                                mode=self.params.get("mode", "reduce-overhead"))}


ENGINE = HfCompiled
