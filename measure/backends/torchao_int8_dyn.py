"""torchao int8 dynamic activation (per token) + int8 weight (per channel): the paper's "dynamic quantization"."""

from measure.backends import register_quant
from measure.backends._torchao import TorchaoBackend


@register_quant("torchao-int8-dyn")
class TorchaoInt8Dynamic(TorchaoBackend):
    defaults = {**TorchaoBackend.defaults, "act_mapping": "symmetric"}  # act_mapping: symmetric | asymmetric

    def make_config(self):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, MappingType

        mapping = self.params["act_mapping"]
        if mapping not in ("symmetric", "asymmetric"):
            raise ValueError(f"torchao-int8-dyn: act_mapping must be symmetric or asymmetric, got {mapping!r}")
        return Int8DynamicActivationInt8WeightConfig(act_mapping_type=getattr(MappingType, mapping.upper()))
