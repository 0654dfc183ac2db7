"""HF transformers `generate` with a static KV cache, which makes transformers compile the decode step
(torch.compile, mode "reduce-overhead": CUDA graphs). On a CPU transformers does not compile, so the
engine runs the static cache uncompiled there (recorded in engine_params).

Engine params (a grid's `engine_params: {hf-compiled: {...}}`, part of the cell's hash): `mode` (default
"reduce-overhead"), `fullgraph` (default False) and `dynamic` (default None: torch's automatic dynamic
shapes, which compile the first batch size a loaded model runs with static, recompile with a dynamic batch
dimension at the second and reuse that graph after; False: a static graph per batch size), and
`woq_lowering` (default None: torch's own choice; False: keep inductor from rewriting an int8 weight-only
linear, `mm(x, w_int8.to(bf16)) * scale`, into `aten._weight_int8pack_mm`); and hf-eager's `attn_implementation` and
`sdpa_gqa` (measure/engines/attention.py: ways around the static cache's grouped-query K/V copy).

Why `woq_lowering`: torch 2.11's inductor registers that rewrite for CUDA too (its pattern admits cpu, cuda and
xpu), and on CUDA `_weight_int8pack_mm` runs `weight_int8pack_mm_kernel` in float32: in session s20's profile of
compiled torchao int8 weight-only at batch 8 on an H200 it took 1,178 of 1,281 GPU ms (all 196 layer linears
rewritten), the slow path the campaign measured at batch 8 and 32. torch registers the rewrite once per process,
from its oneDNN (mkldnn) fusion set-up, which returns early while `torch.backends.mkldnn.enabled` is False; so
`woq_lowering: false` switches oneDNN off (a CPU library: no effect on CUDA kernels) and inductor's FX graph cache
(a graph cached with the rewrite would be reused). Both are process-wide. Whether switching them off after an
earlier compile of the process registered the rewrite still keeps it out is version-dependent (torch 2.13 on CPU:
it does; torch 2.11 on CUDA: not measured), so the runner counts the rewrites of every compiled cell's warm-up
(`engine_params.woq_rewrites_warmup`) and fails a `woq_lowering: false` cell that had any. Run such a grid in a
process of its own (a plan step is one)."""

from __future__ import annotations

from measure.engines.hf_eager import HfEager


class HfCompiled(HfEager):
    id = "hf-compiled"
    cache_implementation = "static"

    def prepare(self, model) -> None:
        super().prepare(model)
        if self.params.get("woq_lowering") is False:
            import torch
            import torch._inductor.config as inductor_config

            torch.backends.mkldnn.enabled = False
            inductor_config.fx_graph_cache = False

    def generate_kwargs(self) -> dict:
        from transformers import CompileConfig

        return {"compile_config": CompileConfig(fullgraph=self.params.get("fullgraph", False),
                                                dynamic=self.params.get("dynamic"),
                                                mode=self.params.get("mode", "reduce-overhead"))}


ENGINE = HfCompiled
