"""torchao int4 weight-only (group-wise, default group size 128), bf16 activations. CUDA only."""

from measure.backends import register_quant
from measure.backends._torchao import TorchaoBackend


@register_quant("torchao-int4-wo")
class TorchaoInt4WeightOnly(TorchaoBackend):
    # tile_packed_to_4d runs on torch's own _weight_int4pack_mm; the default "plain" format needs mslk kernels
    defaults = {**TorchaoBackend.defaults, "group_size": 128, "packing_format": "tile_packed_to_4d"}
    cpu_ok = False
    min_cc = 8.0

    def make_config(self):
        from torchao.quantization import Int4WeightOnlyConfig
        from torchao.quantization.quantize_.workflows import Int4PackingFormat

        return Int4WeightOnlyConfig(group_size=int(self.params["group_size"]),
                                    int4_packing_format=Int4PackingFormat(self.params["packing_format"]))
