"""measure/engines/attention.py: the HF engines' per-cell attention implementation and SDPA grouped-query switch,
on the tiny local llama (4 query heads, 2 K/V heads; CPU)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from measure.engines import attention, get_engine  # noqa: E402


def grouped_with_mask() -> bool:
    """What transformers' SDPA path decides for a masked call on grouped K/V (2 heads) now."""
    import transformers.integrations.sdpa_attention as sdpa

    k = torch.zeros(1, 2, 5, 8)
    return sdpa.use_gqa_in_sdpa(torch.ones(1, 1, 1, 5, dtype=torch.bool), k, k)


def test_force_makes_masked_calls_grouped_and_a_later_cell_gets_transformers_decision_back(tiny, grouped_with_mask):
    own = grouped_with_mask()
    attention.apply(tiny, sdpa_gqa="force")
    assert grouped_with_mask() is True
    attention.apply(tiny, sdpa_gqa="auto")
    assert grouped_with_mask() == own
    attention.apply(tiny, sdpa_gqa="force")
    attention.apply(tiny)  # a cell without the param: transformers' own decision
    assert grouped_with_mask() == own


def test_attn_implementation_is_set_per_cell_and_a_shared_model_returns_to_its_own(tiny):
    assert tiny.config._attn_implementation == "sdpa"  # as loaded
    attention.apply(tiny, attn_implementation="eager")
    assert tiny.config._attn_implementation == "eager"
    attention.apply(tiny)  # the next cell of the same loaded model, without the param
    assert tiny.config._attn_implementation == "sdpa"


def test_an_unknown_sdpa_gqa_value_is_refused_naming_the_choices(tiny):
    with pytest.raises(ValueError, match="auto, force"):
        attention.apply(tiny, sdpa_gqa="always")


def test_grouped_and_expanded_attention_generate_the_same_tokens(tiny):
    """The switch changes how K/V reach SDPA, not what it computes: the static cache's masked decode steps give the
    same greedy tokens grouped (force) as expanded (transformers' choice on CUDA; on a CPU it would group unmasked
    calls only), and the engine records which implementation ran."""
    ids = torch.randint(3, tiny.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    out = {}
    for gqa in ("auto", "force"):
        engine = get_engine("hf-compiled", sdpa_gqa=gqa)
        engine.prepare(tiny)
        out[gqa] = engine.generate(tiny, ids, mask, 4, disable_compile=True)
        assert engine.describe(tiny) == {"attn_implementation_used": "sdpa"}
    assert torch.equal(out["auto"], out["force"])
    for impl in ("sdpa", "eager"):  # the dynamic cache, through SDPA and through transformers' eager attention
        engine = get_engine("hf-eager", attn_implementation=impl)
        engine.prepare(tiny)
        assert engine.describe(tiny) == {"attn_implementation_used": impl}
        out[impl] = engine.generate(tiny, ids, mask, 4)
    assert torch.equal(out["sdpa"], out["eager"]) and torch.equal(out["sdpa"], out["auto"])


def test_a_cell_without_the_params_leaves_transformers_attention_module_alone(tiny, monkeypatch):
    """Before any cell of the process asked for `sdpa_gqa: force`, a cell without it does not touch transformers'
    SDPA module (so a transformers version without `use_gqa_in_sdpa` still runs every default cell)."""
    import transformers.integrations.sdpa_attention as sdpa

    monkeypatch.setattr(attention, "_TRANSFORMERS_DECISION", {})
    monkeypatch.delattr(sdpa, "use_gqa_in_sdpa")
    attention.apply(tiny)
    attention.apply(tiny, sdpa_gqa="auto")
    assert not hasattr(sdpa, "use_gqa_in_sdpa") and tiny.config._attn_implementation == "sdpa"
