"""Fixtures of the HF engines' attention tests: the tiny local llama (4 query heads, 2 K/V heads; CPU) and what
transformers' SDPA path decides for a masked call on grouped K/V."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny(tiny_model_dir):
    """The tiny llama loaded with transformers; transformers' own SDPA decision is put back afterwards."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM

    from measure.engines import attention

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    yield model
    attention.apply(model)  # transformers' own SDPA decision back for the other tests


@pytest.fixture
def grouped_with_mask():
    """A function: whether transformers' SDPA path now sends a masked call on grouped K/V (2 heads) grouped."""
    torch = pytest.importorskip("torch")
    import transformers.integrations.sdpa_attention as sdpa

    def decide() -> bool:
        k = torch.zeros(1, 2, 5, 8)
        return sdpa.use_gqa_in_sdpa(torch.ones(1, 1, 1, 5, dtype=torch.bool), k, k)

    return decide
