"""scripts/profile_decode.py: builds the cell's model through the measurement path, quantizes it, profiles one
generate call and writes what it saw (CPU here: no kernels, so the ranking is by host time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
profile_decode = load_script(REPO / "scripts" / "profile_decode.py")

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture
def tiny_build(monkeypatch, tiny_model_dir):
    """measure.models.build_model replaced by the tiny local llama (same LoadedModel), recording its arguments."""
    import measure.models as models

    seen = {}

    def build(spec, *, weights="random", dtype="bfloat16", device="cuda", seed=0):
        seen.update(spec=spec, dtype=dtype, device=device)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        return models.LoadedModel(model, None, spec, "catalogue", "random", 0.0, model.config.vocab_size, None)

    monkeypatch.setattr(models, "build_model", build)
    return seen


def test_profiles_one_generate_and_writes_json(tmp_path, tiny_build):
    out = tmp_path / "p.json"
    rc = profile_decode.main(["--model", "qwen2.5-0.5b-instruct", "--quant", "bf16", "--engine", "hf-eager",
                              "--batch-size", "2", "--prompt-tokens", "8", "--new-tokens", "3",
                              "--device", "cpu", "--top", "5", "--out", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert tiny_build == {"spec": "qwen2.5-0.5b-instruct", "dtype": "bfloat16", "device": "cpu"}
    assert (d["batch_size"], d["new_tokens"], d["device"]) == (2, 3, "cpu")
    assert d["tokens_per_s"] == pytest.approx(2 * 3 / d["generate_wall_s"], rel=0.02)
    assert d["kernel_launches"] == 0 and d["gpu_busy_ms"] is None  # no CUDA activity on a CPU
    assert 0 < len(d["top"]) <= 5
    # without kernels the rows are ranked by host time, largest first
    host = [r["self_cpu_total_ms"] for r in d["top"]]
    assert host == sorted(host, reverse=True) and host[0] > 0


@pytest.mark.parametrize("param, tuned", [(["--quant-param", "set_inductor_config=false"], False), ([], True)])
def test_quant_params_reach_the_backend(tmp_path, tiny_build, param, tuned):
    """torchao's quantize_ turns inductor's coordinate-descent tuning on unless set_inductor_config is false."""
    pytest.importorskip("torchao")
    import torch._inductor.config as inductor_config

    out = tmp_path / "p.json"
    torchao_sets = {"coordinate_descent_tuning": False, "coordinate_descent_check_all_directions": False,
                    "force_fuse_int_mm_with_mul": False, "fx_graph_cache": inductor_config.fx_graph_cache,
                    "triton.unique_kernel_names": inductor_config.triton.unique_kernel_names}
    with inductor_config.patch(torchao_sets):  # all set back on leaving
        profile_decode.main(["--model", "m", "--quant", "torchao-int8-wo", *param, "--engine", "hf-eager",
                             "--prompt-tokens", "4", "--new-tokens", "2", "--device", "cpu", "--out", str(out)])
        assert inductor_config.coordinate_descent_tuning is tuned
    d = json.loads(out.read_text())
    assert d["quant_params"] == ({"set_inductor_config": False} if param else {})
    assert any("mm" in r["name"] for r in d["top"])  # the int8 weights are used through a matmul


@pytest.mark.parametrize("bad", ["set_inductor_config", "set_inductor_config=nope", "=1"])
def test_a_malformed_quant_param_is_a_usage_error(tmp_path, tiny_build, capsys, bad):
    with pytest.raises(SystemExit) as e:
        profile_decode.main(["--model", "m", "--quant-param", bad, "--out", str(tmp_path / "p.json")])
    assert e.value.code == 2 and "expected KEY=JSON" in capsys.readouterr().err
    assert not tiny_build and not (tmp_path / "p.json").exists()  # nothing built, nothing written


def test_engine_params_reach_the_engine(tmp_path, tiny_build, monkeypatch):
    """`--engine-param woq_lowering=false` reaches hf-compiled, which switches oneDNN and inductor's FX graph
    cache off before the first compile (the s20 experiment, without a wrapper around this script)."""
    import torch
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)  # set back after the test
    out = tmp_path / "p.json"
    with inductor_config.patch({"fx_graph_cache": True}):
        profile_decode.main(["--model", "m", "--engine", "hf-compiled", "--engine-param", "woq_lowering=false",
                             "--prompt-tokens", "4", "--new-tokens", "2", "--device", "cpu", "--out", str(out)])
        assert inductor_config.fx_graph_cache is False
    assert torch.backends.mkldnn.enabled is False
    assert json.loads(out.read_text())["engine_params"] == {"woq_lowering": False}
    with pytest.raises(SystemExit) as e:
        profile_decode.main(["--model", "m", "--engine-param", "woq_lowering", "--out", str(tmp_path / "q.json")])
    assert e.value.code == 2


@pytest.mark.parametrize("engine", ["hf-eager", "hf-compiled"])
def test_attention_calls_say_whether_sdpa_ran_grouped(tmp_path, tiny_build, engine):
    """The tiny llama has 4 query and 2 K/V heads. With the dynamic cache (hf-eager) no attention call gets a mask,
    so SDPA runs grouped; with the static cache (hf-compiled, uncompiled on a CPU) each decode step attends over the
    whole cache with a mask, and transformers copies K/V out to every query head instead."""
    out = tmp_path / "p.json"
    prompt = 8
    assert profile_decode.main(["--model", "qwen2.5-0.5b-instruct", "--engine", engine, "--batch-size", "2",
                                "--prompt-tokens", str(prompt), "--new-tokens", "3", "--warmup", "0",
                                "--device", "cpu", "--out", str(out)]) == 0
    calls = json.loads(out.read_text())["attention_calls"]
    assert calls and all(c["kv_heads"] == 2 and c["calls"] > 0 for c in calls)
    decode = [c for c in calls if c["mask"] or c["kv_len"] > prompt]  # the step after the prompt's
    assert decode
    if engine == "hf-eager":
        assert all(not c["mask"] and c["grouped"] for c in calls)
    else:
        masked = [c for c in calls if c["mask"]]
        assert masked and all(not c["grouped"] and c["kv_len"] == prompt + 2 for c in masked)


def test_sdpa_gqa_force_makes_the_static_cache_attend_grouped(tmp_path, tiny_build):
    """`--engine-param sdpa_gqa="force"` (measure/engines/attention.py): the static cache's masked decode steps run
    grouped, the copy the test above shows is gone; `attn_implementation="eager"` leaves SDPA out altogether."""
    import measure.engines.attention as attention

    out = tmp_path / "p.json"
    try:
        assert profile_decode.main(["--model", "m", "--engine", "hf-compiled", "--engine-param", 'sdpa_gqa="force"',
                                    "--batch-size", "2", "--prompt-tokens", "8", "--new-tokens", "3", "--warmup",
                                    "0", "--device", "cpu", "--out", str(out)]) == 0
        d = json.loads(out.read_text())
        masked = [c for c in d["attention_calls"] if c["mask"]]
        assert masked and all(c["grouped"] for c in masked)
        assert d["engine_params"] == {"sdpa_gqa": "force"}
        assert profile_decode.main(["--model", "m", "--engine", "hf-eager", "--engine-param",
                                    'attn_implementation="eager"', "--prompt-tokens", "4", "--new-tokens", "2",
                                    "--warmup", "0", "--device", "cpu", "--out", str(out)]) == 0
        assert json.loads(out.read_text())["attention_calls"] == []
    finally:
        import transformers.integrations.sdpa_attention as sdpa

        sdpa.use_gqa_in_sdpa = attention._TRANSFORMERS_DECISION.get("use_gqa_in_sdpa", sdpa.use_gqa_in_sdpa)
