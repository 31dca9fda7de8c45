"""The decoder: exact parameter counts (the OLMo 190M rung), causality, packed segments, a golden loss."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ladderlab.errors import LadderlabError
from ladderlab.model.config import ModelConfig
from ladderlab.model.counts import flops_per_token, param_counts, size_for
from ladderlab.model.decoder import Decoder, stack_layers, unstack_layers

OLMO_190M = ModelConfig(vocab_size=100_352, d_model=768, n_layers=12, n_heads=12, d_ff=3072, qk_norm=True,
                        norm_after=True)
TINY = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, qk_norm=True)


def test_olmo_190m_counts():
    counts = param_counts(OLMO_190M)
    assert counts["non_embedding"] == 190_354_176
    assert counts["embedding"] == 100_352 * 768
    assert counts["total"] == 190_354_176 + 77_070_336
    assert flops_per_token(OLMO_190M, 4096)["6N"] == 6 * 190_354_176
    # 12 x (4 x 768^2 + 3 x 768 x 3072) + 768 x 100352 matmul weights, plus 12 x 2 x 4096 x 768 attention
    assert flops_per_token(OLMO_190M, 4096)["detailed"] == 6 * (12 * 9_437_184 + 77_070_336) + 6 * 75_497_472
    # causal: each query sees (4096 + 1) / 2 keys on average, so attention counts 4097 / 8192 of the full maps
    causal = 6 * (12 * 9_437_184 + 77_070_336) + 6 * 75_497_472 * 4097 / 8192
    assert flops_per_token(OLMO_190M, 4096)["causal"] == causal


def test_causal_flops_count_the_pairs_a_causal_mask_keeps():
    cfg = ModelConfig(vocab_size=10, d_model=8, n_layers=1, n_heads=2, d_ff=16)  # q width 8, one layer
    pairs = sum(i + 1 for i in range(4))  # a 4-token row: query i sees keys 0..i
    full, causal = (flops_per_token(cfg, 4)[k] for k in ("detailed", "causal"))
    assert full - causal == 6 * 2 * 8 * (4 * 4 - pairs) / 4  # QK^T and AV, per (query, key, channel), per token


@pytest.mark.parametrize("cfg", [TINY, ModelConfig(vocab_size=64, d_model=32, n_heads=2, d_ff=48, tie_embeddings=True)])
def test_counts_match_the_built_model(cfg):
    abstract = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0)))
    built = sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert built == param_counts(cfg)["total"]


def test_size_for_follows_the_ladder_shape_rule():
    cfg = size_for(190e6, 100_352, qk_norm=True)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff) == (768, 12, 12, 3072)
    cfg = size_for(370e6, 100_352, qk_norm=True)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff) == (1024, 16, 16, 4096)


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(LadderlabError, match="n_heads=5"):
        Decoder(ModelConfig(d_model=32, n_heads=5), nnx.Rngs(0))
    with pytest.raises(LadderlabError, match="n_kv_heads=3"):
        Decoder(ModelConfig(d_model=32, n_heads=4, n_kv_heads=3), nnx.Rngs(0))


def test_no_gradient_from_future_tokens_to_past_logits():
    model = Decoder(TINY, nnx.Rngs(0))
    x_BxLxD = jax.random.normal(jax.random.key(1), (2, 8, TINY.d_model))
    graphdef, params = nnx.split(model)

    @jax.jit
    def grads_TxBxLxD(params, x):  # d(logits at position t) / d(inputs), for every t
        logits_at = lambda x, t: nnx.merge(graphdef, params).from_embedded(x)[:, t].sum()  # noqa: E731
        return jax.vmap(lambda t: jax.grad(logits_at)(x, t))(jnp.arange(8))

    influence_TxL = np.abs(np.asarray(grads_TxBxLxD(params, x_BxLxD))).sum(axis=(1, 3))
    assert np.all(np.triu(influence_TxL, k=1) == 0.0)  # position t never depends on positions > t
    assert np.all(influence_TxL[np.tril_indices(8)] > 0.0)


def test_packed_documents_do_not_see_each_other():
    model = Decoder(TINY, nnx.Rngs(0))
    doc1, doc2 = jnp.arange(5) % 64, (jnp.arange(3) * 7 + 1) % 64
    graphdef, params = nnx.split(model)
    run = jax.jit(lambda p, *args: nnx.merge(graphdef, p)(*args))
    packed = run(params, jnp.concatenate([doc1, doc2])[None], jnp.array([[0, 1, 2, 3, 4, 0, 1, 2]]),
                 jnp.array([[1, 1, 1, 1, 1, 2, 2, 2]]))
    alone = run(params, doc2[None], jnp.array([[0, 1, 2]]), jnp.ones((1, 3), jnp.int32))
    np.testing.assert_allclose(packed[0, 5:], alone[0], rtol=1e-5, atol=1e-5)


def test_golden_loss_at_init():
    graphdef, params = nnx.split(Decoder(TINY, nnx.Rngs(42)))
    tokens = (jnp.arange(17)[None] * 5 + jnp.arange(2)[:, None] * 3) % 64

    @jax.jit
    def loss_fn(params):
        logits = nnx.merge(graphdef, params)(tokens[:, :-1])
        assert logits.dtype == jnp.float32
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], axis=-1))

    loss = loss_fn(params)
    assert float(loss) == pytest.approx(GOLDEN_INIT_LOSS, abs=1e-5)


GOLDEN_INIT_LOSS = 4.1641316


def test_remat_gives_the_same_gradients():
    cfg = dataclasses.replace(TINY, n_layers=1)
    tokens = jnp.arange(16).reshape(2, 8) % 64
    grads = []
    for remat in (False, True):
        graphdef, params = nnx.split(Decoder(dataclasses.replace(cfg, remat=remat), nnx.Rngs(0)))
        grads.append(jax.jit(jax.grad(lambda p: nnx.merge(graphdef, p)(tokens).sum()))(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("remat", [False, True])
def test_scan_over_layers_equals_unrolled_in_loss_and_gradients(remat):
    cfg = dataclasses.replace(TINY, remat=remat, remat_policy="dots_saveable")
    tokens = (jnp.arange(16).reshape(2, 8) * 7) % 64
    segments = jnp.array([[1] * 5 + [2] * 3, [1] * 8])
    graphdef, params = nnx.split(Decoder(cfg, nnx.Rngs(0)))
    scan_graphdef, scan_abstract = nnx.split(nnx.eval_shape(
        lambda: Decoder(dataclasses.replace(cfg, scan_layers=True), nnx.Rngs(0))))
    assert scan_abstract["blocks"]["attn"]["wq"].shape == (2, 32, 32)  # one stacked block, layers first
    stacked = stack_layers(nnx.to_pure_dict(params))

    def loss(graphdef):
        def fn(p):
            logits = nnx.merge(graphdef, p)(tokens, None, segments)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], axis=-1))
        return jax.jit(jax.value_and_grad(fn))

    value, grads = loss(graphdef)(nnx.to_pure_dict(params))
    scan_value, scan_grads = loss(scan_graphdef)(stacked)
    assert float(scan_value) == pytest.approx(float(value), abs=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(unstack_layers(scan_grads))):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)


def test_bad_remat_policy_is_a_one_line_error():
    with pytest.raises(LadderlabError, match="model.remat_policy='save_only_these_names': expected one of"):
        Decoder(dataclasses.replace(TINY, remat_policy="save_only_these_names"), nnx.Rngs(0))
