"""bitsandbytes LLM.int8() (vector-wise int8 with fp16 outlier decomposition above `threshold`).

Quantizes on the device the model lives on: the dense weight never leaves the GPU (a naive
`Int8Params(...).cuda()` swap moves every weight to the CPU and back: ~45 s for a 7B model on an H100).
"""

from __future__ import annotations

import time

from measure.backends import DeviceInfo, QuantBackend, QuantResult, package_version, register_quant
from measure.backends._swap import swap_linears


@register_quant("bnb-int8")
class BnbInt8(QuantBackend):
    build_dtype = "float16"
    defaults = {"threshold": 6.0}

    def skip_reason(self, device: DeviceInfo) -> str | None:
        if package_version("bitsandbytes") is None:
            return "bitsandbytes is not installed (pip install 'energy-recommender[measure]')"
        return None

    def apply(self, model) -> QuantResult:
        import bitsandbytes as bnb
        import torch

        t0 = time.perf_counter()
        threshold = float(self.params["threshold"])

        def make(lin: torch.nn.Linear):
            dev = lin.weight.device
            q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    has_fp16_weights=False, threshold=threshold, device="meta")
            w = bnb.nn.Int8Params(lin.weight.data.to(torch.float16), requires_grad=False,
                                  has_fp16_weights=False)
            w._quantize(dev)  # int8_vectorwise_quant on the weight's own device
            q.weight = w
            if lin.bias is not None:
                q.bias = torch.nn.Parameter(lin.bias.data.to(torch.float16), requires_grad=False)
            return q

        n = swap_linears(model, make)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return QuantResult(time.perf_counter() - t0, {"threshold": threshold, "layers": n})

    @staticmethod
    def versions():
        return {"bitsandbytes_version": package_version("bitsandbytes")}
