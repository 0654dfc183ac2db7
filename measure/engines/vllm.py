"""vLLM offline engine (`vllm.LLM`), when installed; the record then names vllm_version.

vLLM loads its own model (`owns_model`): for random weights the catalogue architecture's config.json is
written to a temporary directory and loaded with `load_format="dummy"` (random weights, no checkpoint);
real weights load from the path / hub id. No tokenizer is initialised: prompts are token ids
(`{"prompt_token_ids": [...]}`, vLLM's TokensPrompt). Generation is greedy with `ignore_eos` and
`min_tokens = max_tokens`, so every sequence produces exactly the requested tokens. Prefix caching is off
(the same prompts are repeated for every timed call: a cache hit would skip the prefill being measured).

Quantization is vLLM's own, not our backends: fp32/fp16/bf16 -> `dtype`; torchao-fp8 -> `quantization="fp8"`
(vLLM's online dynamic FP8, W8A8 on compute capability >= 8.9); torchao-int8-wo ->
`quantization="int8_per_channel_weight_only"` (online W8A16); bnb-nf4 -> `quantization="bitsandbytes"`
(in-flight 4-bit, real checkpoints only; gone from vLLM 0.33.0). A name the installed vLLM does not list in
QUANTIZATION_METHODS, and any other quant id, is a recorded skip. The arguments used here were checked
against vLLM 0.33.0's sources by `scripts/check_vllm_api.py` (no GPU run yet).

The engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0 unless set) so the GPU shows no
extra process for the isolation check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from measure.engines import Engine

#: our quant id -> (vLLM dtype, vLLM quantization, needs real weights)
QUANTS: dict[str, tuple[str, str | None, bool]] = {
    "fp32": ("float32", None, False),
    "fp16": ("float16", None, False),
    "bf16": ("bfloat16", None, False),
    "torchao-fp8": ("bfloat16", "fp8", False),
    # vLLM's online per-channel int8 weight-only (W8A16), the scheme of torchao's int8 weight-only
    # (vllm/config/quantization.py `_ONLINE_SHORTHANDS`, vLLM 0.33.0)
    "torchao-int8-wo": ("bfloat16", "int8_per_channel_weight_only", False),
    # vLLM up to 0.1x had in-flight bitsandbytes; 0.33.0 no longer lists it (see `available_quantizations`)
    "bnb-nf4": ("bfloat16", "bitsandbytes", True),
}
#: engine_params passed through to `vllm.LLM` (anything else is rejected)
DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.9, "enforce_eager": False, "max_model_len": None,
                            "max_num_seqs": None}


def vllm_version() -> str | None:
    """vLLM's version: an already imported module's (also a test stand-in), else the installed package's."""
    mod = sys.modules.get("vllm")
    if mod is not None:
        return str(getattr(mod, "__version__", "unknown"))
    from measure.backends import package_version

    return package_version("vllm")


def available_quantizations() -> frozenset[str] | None:
    """The `quantization=` names the installed vLLM accepts, or None where it does not say (a stand-in module,
    an older layout): then the engine tries and a failure is recorded."""
    try:
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    except Exception:  # noqa: BLE001 - any import problem means "unknown", not "unsupported"
        return None
    return frozenset(QUANTIZATION_METHODS)


class Vllm(Engine):
    id = "vllm"
    owns_model = True
    require_cuda = True  # tests with a stand-in `vllm` module turn this off to run on the CPU

    def __init__(self, **params: Any):
        unknown = set(params) - set(DEFAULTS) - {"offline"}
        if unknown:
            raise ValueError(f"vllm: unknown engine parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        super().__init__(**params)
        self.options = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS}}
        self._prompts: tuple[Any, list] | None = None

    def skip_reason(self, device_type: str) -> str | None:
        if vllm_version() is None:
            return "vllm is not installed on this machine"
        if self.require_cuda and device_type != "cuda":
            return "vllm needs a CUDA GPU"
        return None

    def cell_skip_reason(self, cell, device) -> str | None:
        if cell.quant not in QUANTS:
            return (f"quant {cell.quant!r} is not mapped to a vLLM quantization by measure/engines/vllm.py "
                    f"(mapped: {', '.join(QUANTS)})")
        _, quantization, needs_real = QUANTS[cell.quant]
        known = available_quantizations()
        if quantization and known is not None and quantization not in known:
            return (f"vLLM {vllm_version()} has no {quantization!r} quantization "
                    "(vllm.model_executor.layers.quantization.QUANTIZATION_METHODS)")
        if needs_real and cell.weights != "real":
            return (f"vLLM's {quantization} quantization needs a real checkpoint; random-weight "
                    "(load_format=dummy) cells are not supported")
        if cell.quant_params:
            return f"quant_params {cell.quant_params} are not passed to vLLM (its own quantization defaults apply)"
        if quantization == "fp8" and device.type == "cuda" and (device.compute_capability or 0) < 8.0:
            return "vLLM fp8 needs compute capability >= 8.0 (W8A8 from 8.9, weight-only Marlin on 8.x)"
        return None

    # ------------------------------------------------------------------------------------------
    def _max_model_len(self, cell, positions: int | None) -> int:
        if self.options["max_model_len"]:
            return int(self.options["max_model_len"])
        need = cell.prompt_tokens + cell.output_tokens
        n = max(2048, 1 << (need - 1).bit_length())  # one handle serves a group's cells up to this length
        return min(n, positions) if positions else n

    def _max_num_seqs(self, cell) -> int:
        return int(self.options["max_num_seqs"] or max(256, 1 << (cell.batch_size - 1).bit_length()))

    def load_key(self, cell) -> tuple:
        # the handle's max_model_len / max_num_seqs must cover the cell; engine options change the engine
        need = cell.prompt_tokens + cell.output_tokens
        return (json.dumps(self.options, sort_keys=True), max(2048, 1 << (need - 1).bit_length()),
                self._max_num_seqs(cell))

    def load_kwargs(self, cell, model_dir: str, positions: int | None) -> dict[str, Any]:
        dtype, quantization, _ = QUANTS[cell.quant]
        kw: dict[str, Any] = {
            "model": model_dir, "dtype": dtype, "seed": cell.seed, "skip_tokenizer_init": True,
            "load_format": "dummy" if cell.weights == "random" else "auto",
            "max_model_len": self._max_model_len(cell, positions), "max_num_seqs": self._max_num_seqs(cell),
            "gpu_memory_utilization": float(self.options["gpu_memory_utilization"]),
            "enforce_eager": bool(self.options["enforce_eager"]), "enable_prefix_caching": False,
        }
        if quantization:
            kw["quantization"] = quantization
        return kw

    def load(self, cell, device: str):
        from measure.backends import QuantResult
        from measure.models import LoadedModel, catalogue_config

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if device.startswith("cuda:"):  # vLLM uses the current / visible device
            with contextlib.suppress(Exception):
                import torch

                torch.cuda.set_device(device)
        import vllm

        t0 = time.perf_counter()
        tmpdir = None
        if cell.weights == "random":
            m, config = catalogue_config(cell.model)
            from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

            arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
            if arch is None:
                raise ValueError(f"no causal-LM architecture for model_type {config.model_type!r}")
            config.architectures = [arch]  # vLLM picks its model class from this
            config.torch_dtype = QUANTS[cell.quant][0]
            tmpdir = tempfile.mkdtemp(prefix="vllm-catalogue-")
            config.save_pretrained(tmpdir)
            model_dir, model_id, source = tmpdir, m.id, "catalogue"
        else:
            from pathlib import Path

            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(cell.model)
            model_dir, model_id, source = cell.model, cell.model, "local" if Path(cell.model).exists() else "hub"
            with contextlib.suppress(Exception):
                from recommender.catalog import load_catalog

                row = load_catalog().models.find(cell.model)
                model_id = row.id if row is not None else model_id
        positions = getattr(config, "max_position_embeddings", None)
        kw = self.load_kwargs(cell, model_dir, positions)
        try:
            llm = vllm.LLM(**kw)
        except Exception:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        handle = _Handle(llm, kw, tmpdir)
        loaded = LoadedModel(handle, None, model_id, source, cell.weights, time.perf_counter() - t0,
                             config.vocab_size, min(positions, kw["max_model_len"]) if positions else kw["max_model_len"])
        qparams = {"vllm_dtype": kw["dtype"]}
        if "quantization" in kw:
            qparams["vllm_quantization"] = kw["quantization"]
        return loaded, QuantResult(0.0, qparams, note="quantized by vLLM while loading (in load_time_s)")

    def unload(self, handle) -> None:
        llm, handle.llm = handle.llm, None
        del llm
        with contextlib.suppress(Exception):
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        if handle.tmpdir:
            shutil.rmtree(handle.tmpdir, ignore_errors=True)

    def describe(self, handle) -> dict[str, Any]:
        kw = {k: v for k, v in handle.kwargs.items() if k != "model"}
        return {"compiled": not kw["enforce_eager"], "vllm_args": kw}

    # ------------------------------------------------------------------------------------------
    def _token_prompts(self, input_ids) -> list[dict]:
        """TokensPrompt dicts for the batch (converted once per input tensor, not inside timed calls)."""
        if self._prompts is None or self._prompts[0] is not input_ids:
            rows = input_ids.tolist() if hasattr(input_ids, "tolist") else [list(r) for r in input_ids]
            self._prompts = (input_ids, [{"prompt_token_ids": r} for r in rows])
        return self._prompts[1]

    def _run(self, handle, input_ids, n: int):
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0)
        prompts = self._token_prompts(input_ids)
        outs = handle.llm.generate(prompts, params, use_tqdm=False)
        got = [len(o.outputs[0].token_ids) for o in outs]
        if len(got) != len(prompts) or any(g != n for g in got):
            raise RuntimeError(f"vLLM returned {got} tokens per sequence for {len(prompts)} prompts, asked {n}")
        return outs

    def prefill(self, model, input_ids, attention_mask) -> None:
        """Prefill = one generated token (vLLM has no prefill-only call)."""
        self._run(model, input_ids, 1)

    def generate(self, model, input_ids, attention_mask, new_tokens: int):
        return self._run(model, input_ids, new_tokens)

    def versions(self):
        return {"vllm_version": vllm_version()}


class _Handle:
    """A loaded `vllm.LLM` with the arguments it was created with (and its temporary config dir)."""

    def __init__(self, llm, kwargs: dict[str, Any], tmpdir: str | None):
        self.llm, self.kwargs, self.tmpdir = llm, kwargs, tmpdir


ENGINE = Vllm
