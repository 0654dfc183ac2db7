"""Memory fit: weights at the method's bits, KV cache, activations, overhead, headroom, engine reservation."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.candidates import Candidates
from recommender.catalog import load_catalog
from recommender.memory import GIB, PARAMS, SCALE_BITS, describe_misfit, estimate
from tests.recommender.test_rank import fixture_catalog

QWEN = "qwen2.5-7b-instruct"


def grid(cat, gpus=("rtx4060ti-16gb",), models=(QWEN,), quants=("fp16",), engines=("hf-eager",), batch=(1,),
         prompt=256, output=128):
    return Candidates.grid(cat, list(gpus), list(models), list(quants), list(engines), list(batch), prompt, output)


@pytest.fixture
def cat():
    return fixture_catalog()


def test_weights_by_bits(cat):
    c = grid(cat, quants=("fp16", "bnb-int8", "bnb-nf4"))
    est = estimate(c)
    m = cat.model(QWEN)
    params = m.params_b * 1e9
    embed = m.vocab_size * m.hidden_size * 2  # untied: input + lm_head at 16 bit
    assert est.weights_gb[0] == pytest.approx(params * 2 / GIB)
    assert est.weights_gb[1] == pytest.approx(((params - embed) * 1 + embed * 2) / GIB)
    nf4_bits = 4 + SCALE_BITS["bnb-nf4"]
    assert est.weights_gb[2] == pytest.approx(((params - embed) * nf4_bits / 8 + embed * 2) / GIB)
    assert est.weights_gb[0] > est.weights_gb[1] > est.weights_gb[2]


def test_tied_embeddings_counted_once(cat):
    est = estimate(grid(cat, models=("bloomz-7b1",), quants=("bnb-int8",)))
    m = cat.model("bloomz-7b1")
    embed = m.vocab_size * m.hidden_size
    assert est.weights_gb[0] == pytest.approx(((m.params_b * 1e9 - embed) + embed * 2) / GIB)


def test_kv_cache_matches_model_formula(cat):
    c = grid(cat, batch=(1, 8, 32))
    est = estimate(c)
    per_token = cat.model(QWEN).kv_bytes_per_token(2.0)
    assert per_token == 2 * 28 * 4 * 128 * 2
    np.testing.assert_allclose(est.kv_cache_gb, np.array([1, 8, 32]) * 384 * per_token / GIB)


def test_total_is_sum_and_grows_with_batch(cat):
    est = estimate(grid(cat, batch=(1, 8, 64)))
    np.testing.assert_allclose(est.total_gb, est.weights_gb + est.kv_cache_gb + est.activations_gb + est.overhead_gb,
                               rtol=1e-9)
    assert np.all(np.diff(est.total_gb) > 0)
    assert np.all(est.overhead_gb >= PARAMS["runtime_overhead_gb"])


def test_headroom_and_paged_engine_reduce_usable(cat):
    c = grid(cat, engines=("hf-eager", "vllm"))
    est = estimate(c, headroom_frac=0.1)
    assert est.usable_gb[0] == pytest.approx(16 * 0.9)
    assert est.usable_gb[1] == pytest.approx(16 * 0.9 * PARAMS["paged_memory_utilization"])


def test_fit_and_reason(cat):
    c = grid(cat, quants=("fp16", "bnb-nf4"), batch=(32,), prompt=1024)
    est = estimate(c)
    assert est.fits.tolist() == [False, True]
    msg = describe_misfit(est, 0, "rtx4060ti-16gb")
    assert msg == f"needs {est.total_gb[0]:.1f} GB > 16.0 GB on rtx4060ti-16gb"
    est2 = estimate(c, headroom_frac=0.1)
    assert "GB usable on rtx4060ti-16gb (16.0 GB card)" in describe_misfit(est2, 0, "rtx4060ti-16gb")


def test_unknown_specs_do_not_fit(cat):
    import dataclasses

    from recommender.catalog import Catalog

    gpus = [dataclasses.replace(cat.gpus.rows[0], memory_gb=None)]
    cat2 = Catalog(gpus, cat.models.rows, cat.quants.rows, cat.engines.rows, cat.profiles.rows)
    est = estimate(grid(cat2))
    assert not est.fits[0] and describe_misfit(est, 0, gpus[0].id) == "memory size of rtx4060ti-16gb unknown"


def test_real_catalogue_7b_on_16gb_card():
    cat = load_catalog()
    if not len(cat.models) or not len(cat.engines):
        pytest.skip("catalogue not complete yet")
    eng = cat.engines.ids()[0]
    c = Candidates.grid(cat, ["rtx4060ti-16gb"], [QWEN], ["bf16", "bnb-int8", "bnb-nf4"], [eng], [1, 64], 256, 128)
    est = estimate(c)
    fits = dict(zip(zip(c.ids("quant"), c.batch_size.astype(int), strict=True), est.fits, strict=True))
    assert fits[("bnb-nf4", 1)] and fits[("bnb-int8", 1)]
    assert 14.0 < est.weights_gb[0] < 14.5  # 7.6 B params x 2 bytes
    assert not fits[("bf16", 64)]



def _activations(cat, **kw) -> float:
    return float(estimate(grid(cat, **kw)).activations_gb[0])


def test_score_matrix_counts_where_the_attention_materialises_it():
    """BLOOM's attention (no SDPA path) and SDPA in fp32 materialise one layer's prefill score matrix: batch x heads x
    prompt x key tokens x `score_bytes_per_element` more activation memory, the key tokens the prompt on the dynamic
    cache and prompt + output on a static cache; fused kernels (16-bit SDPA) and paged-KV engines add none."""
    from recommender.memory import materializes_scores

    cat = load_catalog()
    b, p, o = 32, 1024, 256
    bloom = cat.model("bloomz-7b1")
    per_key = b * bloom.num_attention_heads * p * PARAMS["score_bytes_per_element"] / GIB
    kw = dict(models=("bloomz-7b1",), batch=(b,), prompt=p, output=o)
    eager, compiled = (_activations(cat, engines=(e,), **kw) for e in ("hf-eager", "hf-compiled"))
    # the compiled engine's one extra term beyond eager's: the static cache's output positions in the scores
    assert compiled - eager == pytest.approx(per_key * o)
    c = grid(cat, models=("bloomz-7b1", QWEN), quants=("fp16", "fp32"), engines=("hf-eager", "vllm"), batch=(b,),
             prompt=p, output=o)
    got = {(m, q, e): v for m, q, e, v in zip(c.ids("model"), c.ids("quant"), c.ids("engine"), materializes_scores(c),
                                              strict=True)}
    assert got[("bloomz-7b1", "fp16", "hf-eager")] == 1.0 and got[(QWEN, "fp32", "hf-eager")] == 1.0
    assert got[(QWEN, "fp16", "hf-eager")] == 0.0  # fused 16-bit SDPA
    assert got[("bloomz-7b1", "fp16", "vllm")] == 0.0 and got[(QWEN, "fp32", "vllm")] == 0.0  # its own kernels
    qwen = cat.model(QWEN)
    fp16 = _activations(cat, quants=("fp16",), batch=(b,), prompt=p, output=o)
    fp32 = _activations(cat, quants=("fp32",), batch=(b,), prompt=p, output=o)
    hidden_part = b * p * (PARAMS["act_hidden_mult"] * qwen.hidden_size
                           + PARAMS["act_intermediate_mult"] * qwen.intermediate_size) * 2 / GIB
    scores = b * qwen.num_attention_heads * p * p * PARAMS["score_bytes_per_element"] / GIB
    # fp32: its activations at 4 bytes (twice the 16-bit hidden part) plus the score matrix
    assert fp32 - fp16 == pytest.approx(hidden_part + scores)
