"""torchao int8 weight-only (per-channel symmetric), bf16 activations."""

from measure.backends import register_quant
from measure.backends._torchao import TorchaoBackend


@register_quant("torchao-int8-wo")
class TorchaoInt8WeightOnly(TorchaoBackend):
    def make_config(self):
        from torchao.quantization import Int8WeightOnlyConfig

        return Int8WeightOnlyConfig()
