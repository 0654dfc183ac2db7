"""The vLLM engine against a stand-in `vllm` module (vLLM itself needs a CUDA machine): the config it
writes, the arguments it loads with, and a whole CellRunner cell through it."""

from __future__ import annotations

import json
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from measure.backends import DeviceInfo  # noqa: E402
from measure.cell import Cell  # noqa: E402
from measure.engines import get_engine  # noqa: E402
from measure.engines.vllm import Vllm  # noqa: E402
from measure.meter.fake import FakeGpuMeter  # noqa: E402
from measure.record import Record  # noqa: E402
from measure.runner import CellRunner, RunContext  # noqa: E402


@dataclass
class SamplingParams:
    max_tokens: int = 16
    min_tokens: int = 0
    ignore_eos: bool = False
    temperature: float = 1.0


class LLM:
    instances: list[LLM] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.config = json.loads((Path(kwargs["model"]) / "config.json").read_text())
        self.calls: list[tuple[int, int]] = []
        LLM.instances.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        assert sampling_params.ignore_eos and sampling_params.temperature == 0
        assert sampling_params.min_tokens == sampling_params.max_tokens
        n = sampling_params.max_tokens
        self.calls.append((len(prompts), n))
        time.sleep(0.002 + 0.0002 * n)  # a prefill, then per-token decode time
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=[7] * n)]) for _ in prompts]


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.0-fake"
    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    LLM.instances.clear()
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(Vllm, "require_cuda", False)  # the stand-in runs anywhere
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return mod


def test_not_installed_is_a_recorded_reason(monkeypatch):
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.setattr("measure.backends.package_version", lambda name: None)
    assert Vllm().skip_reason("cuda") == "vllm is not installed on this machine"


def test_load_writes_the_catalogue_architecture(fake_vllm):
    from measure.models import catalogue_config

    eng = get_engine("vllm")
    assert eng.skip_reason("cpu") is None
    cell = Cell("tiny-test", "bf16", "vllm", 2, 16, 32)
    loaded, qinfo = eng.load(cell, "cpu")
    llm = loaded.model.llm
    kw = llm.kwargs
    _, config = catalogue_config("tiny-test")
    for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
              "num_key_value_heads", "vocab_size", "max_position_embeddings"):
        assert llm.config[k] == getattr(config, k), k
    assert llm.config["model_type"] == config.model_type and llm.config["architectures"] == ["LlamaForCausalLM"]
    assert kw["load_format"] == "dummy" and kw["dtype"] == "bfloat16" and "quantization" not in kw
    assert kw["skip_tokenizer_init"] and kw["enable_prefix_caching"] is False
    assert cell.prompt_tokens + cell.output_tokens <= kw["max_model_len"] <= config.max_position_embeddings
    assert kw["max_num_seqs"] >= cell.batch_size
    assert loaded.vocab_size == config.vocab_size and loaded.weights == "random"
    assert qinfo.params == {"vllm_dtype": "bfloat16"}
    tmp = Path(kw["model"])
    eng.unload(loaded.model)
    assert not tmp.exists()


@pytest.mark.parametrize(("quant", "dtype", "quantization"),
                         [("fp32", "float32", None), ("fp16", "float16", None), ("torchao-fp8", "bfloat16", "fp8"),
                          ("torchao-int8-wo", "bfloat16", "int8_per_channel_weight_only")])
def test_quant_mapping(fake_vllm, quant, dtype, quantization):
    eng = Vllm()
    cell = Cell("tiny-test", quant, "vllm", 1, 8, 8)
    assert eng.cell_skip_reason(cell, DeviceInfo("cuda", 9.0)) is None
    kw = eng.load_kwargs(cell, "/x", 512)
    assert kw["dtype"] == dtype and kw.get("quantization") == quantization


def _quantization_module(monkeypatch, names):
    """vllm.model_executor.layers.quantization with a QUANTIZATION_METHODS list, as vLLM ships it."""
    parts = ["vllm.model_executor", "vllm.model_executor.layers", "vllm.model_executor.layers.quantization"]
    for name in parts:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[parts[-1]].QUANTIZATION_METHODS = list(names)


def test_quantizations_the_installed_vllm_lacks_are_skips(fake_vllm, monkeypatch):
    # vLLM 0.33.0's list (vllm/model_executor/layers/quantization/__init__.py, abridged): no bitsandbytes
    _quantization_module(monkeypatch, ["awq", "fp8", "gptq", "torchao", "int8_per_channel_weight_only"])
    eng, dev = Vllm(), DeviceInfo("cuda", 9.0)
    real = Cell("some/model", "bnb-nf4", "vllm", 1, 8, 8, weights="real")
    assert eng.cell_skip_reason(real, dev) == (
        "vLLM 0.0-fake has no 'bitsandbytes' quantization (vllm.model_executor.layers.quantization.QUANTIZATION_METHODS)")
    assert eng.cell_skip_reason(Cell("tiny-test", "torchao-fp8", "vllm", 1, 8, 8), dev) is None
    assert eng.cell_skip_reason(Cell("tiny-test", "torchao-int8-wo", "vllm", 1, 8, 8), dev) is None


def test_unmapped_and_random_bnb_are_skips(fake_vllm):
    eng, dev = Vllm(), DeviceInfo("cuda", 9.0)
    assert "not mapped" in eng.cell_skip_reason(Cell("tiny-test", "torchao-int4-wo", "vllm", 1, 8, 8), dev)
    assert "real checkpoint" in eng.cell_skip_reason(Cell("tiny-test", "bnb-nf4", "vllm", 1, 8, 8), dev)
    real = Cell("some/model", "bnb-nf4", "vllm", 1, 8, 8, weights="real")
    assert eng.cell_skip_reason(real, dev) is None
    assert eng.load_kwargs(real, "some/model", 4096)["quantization"] == "bitsandbytes"
    assert eng.load_kwargs(real, "some/model", 4096)["load_format"] == "auto"
    with pytest.raises(ValueError, match="unknown engine parameter"):
        Vllm(max_tokens=3)


def test_full_cell_through_the_runner(fake_vllm):
    meter = FakeGpuMeter(trace=250.0, idle_power_w=60.0, utilization_pct=0.0, name="NVIDIA H100 80GB HBM3",
                         update_period_s=0.02)  # short windows keep the test fast
    runner = CellRunner(meter, device="cpu", context=RunContext(idle_seconds=0.2, command="pytest",
                                                              rapl_root="/nonexistent-powercap"))
    try:
        rec = runner.run(Cell("tiny-test", "bf16", "vllm", 2, 16, 32, repetitions=2))
        assert rec.status == "ok", rec.error
        Record.from_dict(rec.to_dict())
        assert rec.vllm_version == "0.0-fake" and rec.engine == "vllm"
        assert rec.quant_params == {"vllm_dtype": "bfloat16"}
        assert rec.engine_params["vllm_args"]["load_format"] == "dummy"
        assert rec.weights_gb is None and rec.tokens_per_s > 0 and rec.decode_energy_j > 0
        (llm,) = LLM.instances
        assert set(llm.calls) == {(2, 1), (2, 32)}  # prefill = 1 token; generate = 32
        # the next cell of the same group and length class reuses the loaded engine; an hf-eager cell does not
        rec2 = runner.run(Cell("tiny-test", "bf16", "vllm", 1, 16, 32, repetitions=1))
        assert rec2.status == "ok", rec2.error
        assert len(LLM.instances) == 1
        hf = Cell("tiny-test", "bf16", "hf-eager", 1, 16, 32)
        assert runner._load_key(hf, get_engine("hf-eager")) == hf.group_key != runner._loaded[0]
        skip = runner.run(Cell("tiny-test", "torchao-int4-wo", "vllm", 1, 8, 32))
        assert skip.status == "skipped" and "not mapped" in skip.error
    finally:
        runner.close()
