"""scripts/check_vllm_api.py on a synthetic vLLM source tree: it finds what exists and what is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_vllm_api", REPO / "scripts" / "check_vllm_api.py")
check_vllm_api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_vllm_api)

FILES = {
    "vllm/entrypoints/llm.py": """
class LLM:
    def __init__(self, model, *, dtype="auto", quantization=None, seed=0, gpu_memory_utilization=0.9,
                 enforce_eager=False, skip_tokenizer_init=False, **kwargs):
        pass
    def generate(self, prompts, sampling_params=None, *, use_tqdm=True):
        pass
""",
    "vllm/engine/arg_utils.py": """
class EngineArgs:
    load_format: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enable_prefix_caching: bool | None = None
""",
    "vllm/sampling_params.py": """
class SamplingParams:
    temperature: float = 1.0
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
""",
    "vllm/outputs.py": """
class CompletionOutput:
    token_ids: list
class RequestOutput:
    def __init__(self, outputs):
        self.outputs = outputs
""",
    "vllm/distributed/parallel_state.py": "def destroy_model_parallel():\n    pass\n"
                                          "def destroy_distributed_environment():\n    pass\n",
    "vllm/model_executor/layers/quantization/__init__.py": 'QuantizationMethods = Literal["awq", "fp8"]\n',
}


def _tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_a_complete_release_passes_and_missing_quantizations_are_only_noted(tmp_path, capsys):
    assert check_vllm_api.main([str(_tree(tmp_path, FILES))]) == 0
    out = capsys.readouterr().out
    assert "load_format=): an EngineArgs field (through **kwargs)" in out
    assert "quantization='fp8': listed" in out
    assert "quantization='bitsandbytes': NOT listed" in out and "int8_per_channel_weight_only': NOT listed" in out


def test_a_renamed_argument_or_field_fails(tmp_path, capsys):
    files = dict(FILES)
    files["vllm/engine/arg_utils.py"] = FILES["vllm/engine/arg_utils.py"].replace("max_num_seqs", "max_seqs")
    files["vllm/sampling_params.py"] = FILES["vllm/sampling_params.py"].replace("min_tokens", "min_new_tokens")
    assert check_vllm_api.main([str(_tree(tmp_path, files))]) == 1
    out = capsys.readouterr().out
    assert "FAIL LLM(..., max_num_seqs=)" in out and "FAIL SamplingParams has no field 'min_tokens'" in out
