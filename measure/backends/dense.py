"""Unquantized baselines: fp32, fp16, bf16 (the model is simply built in that dtype)."""

from __future__ import annotations

from measure.backends import DeviceInfo, QuantBackend, register_quant


@register_quant("fp32")
class Fp32(QuantBackend):
    build_dtype = "float32"


@register_quant("fp16")
class Fp16(QuantBackend):
    build_dtype = "float16"


@register_quant("bf16")
class Bf16(QuantBackend):
    build_dtype = "bfloat16"

    def skip_reason(self, device: DeviceInfo) -> str | None:
        cc = device.compute_capability
        if device.type == "cuda" and cc is not None and cc < 8.0:
            return f"bf16 needs compute capability >= 8.0 (Ampere); this card has {cc}"
        return None
