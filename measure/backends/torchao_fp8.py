"""torchao fp8 (e4m3) dynamic activation + fp8 weight, per-tensor scales. Needs compute capability >= 8.9."""

from measure.backends import register_quant
from measure.backends._torchao import TorchaoBackend


@register_quant("torchao-fp8")
class TorchaoFp8(TorchaoBackend):
    min_cc = 8.9
    cpu_ok = False

    def make_config(self):
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig

        return Float8DynamicActivationFloat8WeightConfig()
