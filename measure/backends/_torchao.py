"""Shared torchao helper: `quantize_` the decoder Linears with a config, on the model's device."""

from __future__ import annotations

import time

from measure.backends import DeviceInfo, QuantBackend, QuantResult, package_version
from measure.backends._swap import is_linear_filter


class TorchaoBackend(QuantBackend):
    # set_inductor_config: torchao's own switch, on by default there: quantize_ then sets torch inductor's
    # coordinate-descent tuning (and two more settings) for the process, which a compiled cell of the method
    # compiles with (the runner records them and sets them back at unload); false keeps the engine's settings
    defaults = {"set_inductor_config": True}
    build_dtype = "bfloat16"
    min_cc: float | None = None
    cpu_ok = True

    def make_config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def skip_reason(self, device: DeviceInfo) -> str | None:
        if package_version("torchao") is None:
            return "torchao is not installed (pip install 'energy-recommender[measure]')"
        if device.type == "cpu" and not self.cpu_ok:
            return f"{self.id} has no CPU kernel in torchao"
        if self.min_cc is not None and device.type == "cuda" and (
                device.compute_capability is None or device.compute_capability < self.min_cc):
            return f"{self.id} needs compute capability >= {self.min_cc}; this card has {device.compute_capability}"
        return None

    def apply(self, model) -> QuantResult:
        import torch
        from torchao.quantization import quantize_

        config = self.make_config()
        config.set_inductor_config = bool(self.params["set_inductor_config"])
        t0 = time.perf_counter()
        quantize_(model, config, filter_fn=is_linear_filter())
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return QuantResult(time.perf_counter() - t0, dict(self.params))

    @staticmethod
    def versions():
        return {"torchao_version": package_version("torchao")}
