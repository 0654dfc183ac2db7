"""Load a model: from a local path or Hugging Face id (real weights), or built from the catalogue's
architecture with random weights (energy and latency depend on shapes, not on weight values)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any | None  # None for random weights (inputs are random token ids)
    model_id: str  # catalogue id when known, else the path / hub id given
    source: str  # catalogue | local | hub
    weights: str  # random | real
    load_time_s: float
    vocab_size: int
    max_positions: int | None


def catalogue_config(model_id: str):
    """A transformers config with the exact architecture of a catalogue model."""
    from transformers import AutoConfig

    from recommender.catalog import load_catalog

    m = load_catalog().model(model_id)
    if not m.model_type:
        raise ValueError(f"catalogue model {m.id!r} has no model_type: cannot build it from config")
    shape: dict[str, Any] = {
        "num_hidden_layers": m.num_layers, "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size, "num_attention_heads": m.num_attention_heads,
        "num_key_value_heads": m.kv_heads, "vocab_size": m.vocab_size,
        "max_position_embeddings": m.max_position_embeddings, "tie_word_embeddings": m.tie_word_embeddings,
    }
    if m.head_dim:
        shape["head_dim"] = m.head_dim
    if m.hidden_act:
        shape["hidden_act"] = m.hidden_act
    if m.model_type == "bloom":  # bloom names its fields differently and has no GQA / intermediate size
        shape = {"n_layer": m.num_layers, "hidden_size": m.hidden_size, "n_head": m.num_attention_heads,
                 "vocab_size": m.vocab_size, "tie_word_embeddings": m.tie_word_embeddings}
    if m.model_type == "llama":  # qwen2 hard-codes its q/k/v biases; llama makes them optional
        shape["attention_bias"] = m.attention_bias
    config = AutoConfig.for_model(m.model_type, **{k: v for k, v in shape.items() if v is not None})
    return m, config


def build_model(spec: str, *, weights: str = "random", dtype: str = "bfloat16", device: str = "cuda",
                seed: int = 0) -> LoadedModel:
    """Build or load `spec` (catalogue id, local path or hub id) in `dtype` on `device`.

    Random weights are initialised directly on the device (a 7B model takes seconds on an H100).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    t0 = time.perf_counter()
    if weights == "random":
        m, config = catalogue_config(spec)
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        model.eval()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return LoadedModel(model, None, m.id, "catalogue", "random", time.perf_counter() - t0,
                           config.vocab_size, getattr(config, "max_position_embeddings", None))
    if weights != "real":
        raise ValueError(f"weights must be 'random' or 'real', got {weights!r}")
    source = "local" if Path(spec).exists() else "hub"
    model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype, device_map=device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(spec)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    model_id = spec
    try:
        from recommender.catalog import load_catalog

        row = load_catalog().models.find(spec)
        model_id = row.id if row is not None else spec
    except Exception:
        pass
    return LoadedModel(model, tokenizer, model_id, source, "real", time.perf_counter() - t0,
                       model.config.vocab_size, getattr(model.config, "max_position_embeddings", None))
