"""How a transformers model attends, per cell: the HF engines' `attn_implementation` and `sdpa_gqa` params.

Why (sessions s22-s23, H200): with the static KV cache (hf-compiled) every decode step attends over the whole
cache with a mask, and with a mask transformers' SDPA path (`transformers.integrations.sdpa_attention
.use_gqa_in_sdpa`) refuses grouped-query SDPA on CUDA and copies K/V out to every query head (`repeat_kv`): in the
profile of Qwen2.5-7B bf16 at batch 32 and a 1024-token prompt that copy and the attention over it took 63 % of the
compiled decode step (raw/2026-11-28-s23-a). Two ways around it, measured as engine params:

- `attn_implementation`: a transformers attention implementation for the cell ("sdpa", "eager",
  "flex_attention", ...; `PreTrainedModel.set_attn_implementation`). transformers' flex attention (5.24, read on
  a CPU) passes grouped K/V to `flex_attention(enable_gqa=True)` when the number of query heads is a power of two
  (Mistral-7B's 32; it expands them otherwise: Qwen2.5-7B's 28) and masks with a block mask.
- `sdpa_gqa: force`: `use_gqa_in_sdpa` answers True whatever the mask (what transformers' own
  TRANSFORMERS_SDPA_FORCE_GQA=1 does in the versions that read it), so SDPA gets grouped K/V and `enable_gqa`;
  which kernel then runs with a mask (cuDNN, or PyTorch's math fallback) is the device's. "auto" (the default):
  transformers' own decision.

A loaded model is shared by the cells of its group whatever their engine params (`Cell.group_key`), and the
`sdpa_gqa` switch is process-wide, so `apply` sets both for every cell: what the cell's params ask for, else the
model's own implementation as loaded and transformers' own decision.
"""

from __future__ import annotations

from typing import Any

SDPA_GQA = ("auto", "force")
_LOADED_IMPLEMENTATION = "_measure_loaded_attn_implementation"  # attribute set on the model at its first cell
_TRANSFORMERS_DECISION: dict[str, Any] = {}  # transformers' own use_gqa_in_sdpa, kept before it is replaced


def _grouped_always(attention_mask, key, value) -> bool:
    """`use_gqa_in_sdpa` for `sdpa_gqa: force`: grouped K/V to SDPA (`enable_gqa=True`), mask or not."""
    return True


def apply(model, attn_implementation: str | None = None, sdpa_gqa: str | None = None) -> None:
    """Set `model`'s attention implementation (None: the one it was loaded with) and SDPA's grouped-query
    decision (None or "auto": transformers' own; "force": always grouped) for the cell about to run."""
    gqa = sdpa_gqa or "auto"
    if gqa not in SDPA_GQA:
        raise ValueError(f"engine param sdpa_gqa: {sdpa_gqa!r} is not one of {', '.join(SDPA_GQA)}")
    config = model.config
    loaded = getattr(model, _LOADED_IMPLEMENTATION, None)
    if loaded is None:
        loaded = getattr(config, "_attn_implementation", None)
        setattr(model, _LOADED_IMPLEMENTATION, loaded)
    want = attn_implementation or loaded
    if want is not None and getattr(config, "_attn_implementation", None) != want:
        model.set_attn_implementation(want)
    if gqa == "auto" and not _TRANSFORMERS_DECISION:
        return  # never switched in this process: transformers' own decision, whatever its version has
    import transformers.integrations.sdpa_attention as sdpa

    own = _TRANSFORMERS_DECISION.setdefault("use_gqa_in_sdpa", sdpa.use_gqa_in_sdpa)
    sdpa.use_gqa_in_sdpa = _grouped_always if gqa == "force" else own
