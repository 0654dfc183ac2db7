"""vLLM offline engine, when installed (the record then names vllm_version). Only real or catalogue
architectures that vLLM can load from a model directory are supported."""

from __future__ import annotations

from measure.engines import Engine


class Vllm(Engine):
    id = "vllm"

    def skip_reason(self, device_type: str) -> str | None:
        from measure.backends import package_version

        if package_version("vllm") is None:
            return "vllm is not installed on this machine"
        if device_type != "cuda":
            return "vllm needs a CUDA GPU"
        return "vllm runs its own model loader: measuring it through this runner is not implemented yet"


ENGINE = Vllm
