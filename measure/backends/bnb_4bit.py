"""bitsandbytes 4-bit weight-only: NF4 and FP4 (block size 64, optional double quantization)."""

from __future__ import annotations

import time

from measure.backends import DeviceInfo, QuantBackend, QuantResult, package_version, register_quant
from measure.backends._swap import swap_linears


class _Bnb4bit(QuantBackend):
    build_dtype = "bfloat16"
    quant_type = "nf4"
    defaults = {"double_quant": False, "blocksize": 64, "compute_dtype": "bfloat16"}

    def skip_reason(self, device: DeviceInfo) -> str | None:
        if package_version("bitsandbytes") is None:
            return "bitsandbytes is not installed (pip install 'energy-recommender[measure]')"
        return None

    def apply(self, model) -> QuantResult:
        import bitsandbytes as bnb
        import torch

        t0 = time.perf_counter()
        compute_dtype = getattr(torch, self.params["compute_dtype"])

        def make(lin: torch.nn.Linear):
            dev = lin.weight.device
            q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                  compute_dtype=compute_dtype, compress_statistics=self.params["double_quant"],
                                  quant_type=self.quant_type, device="meta")
            w = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, blocksize=self.params["blocksize"],
                                  compress_statistics=self.params["double_quant"], quant_type=self.quant_type,
                                  module=q)
            q.weight = w._quantize(dev)  # quantize_4bit on the weight's own device
            if lin.bias is not None:
                q.bias = torch.nn.Parameter(lin.bias.data.to(compute_dtype), requires_grad=False)
            return q

        n = swap_linears(model, make)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return QuantResult(time.perf_counter() - t0, {**self.params, "quant_type": self.quant_type, "layers": n})

    @staticmethod
    def versions():
        return {"bitsandbytes_version": package_version("bitsandbytes")}


@register_quant("bnb-nf4")
class BnbNf4(_Bnb4bit):
    quant_type = "nf4"


@register_quant("bnb-fp4")
class BnbFp4(_Bnb4bit):
    quant_type = "fp4"
