"""Growth operators: function preservation (G_zero, G_random at mask 0), G_direct's RMSNorm effect, G_stack's layer
order, G_learn's maps, grown optimizer moments and bad shapes. Tiny models on one CPU device."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ladderlab.errors import LadderlabError
from ladderlab.model.growth import width as growth_width
from ladderlab.model.config import ModelConfig
from ladderlab.model.decoder import Decoder, RMSNorm
from ladderlab.model.growth.operators import (LearnSetup, grow, grow_moments, growth_dim, growth_factor, init_params, masked,
                                    small_model)

# norm_eps tiny: padding with zeros keeps the RMS exact only up to eps (x^2 of a fresh init is ~1e-4, not >> 1e-6)
SMALL = ModelConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=32, qk_norm=True,
                    norm_eps=1e-12)
DEEP = dataclasses.replace(SMALL, n_layers=6)
WIDE = dataclasses.replace(SMALL, d_model=48, n_heads=6, n_kv_heads=3, d_ff=72)  # uneven: 1.5x heads, 2.25x d_ff
TOKENS = jax.random.randint(jax.random.key(1), (2, 12), 0, 32)


def _model(cfg: ModelConfig, params: dict) -> Decoder:
    model = Decoder(cfg, nnx.Rngs(0))
    state = nnx.state(model)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model


@functools.cache
def _forward(cfg: ModelConfig):
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0))))
    return jax.jit(lambda params, tokens: nnx.merge(graphdef, params)(tokens))


def _logits(cfg: ModelConfig, params: dict) -> np.ndarray:
    return np.asarray(_forward(cfg)(params, TOKENS))


@pytest.fixture(scope="module")
def trained() -> dict:
    """Small-model parameters with non-trivial norm gains (a trained model's are not all ones)."""
    rng = np.random.default_rng(7)
    return jax.tree.map(lambda w: jnp.asarray(np.asarray(w) * rng.uniform(0.5, 1.5, w.shape), jnp.float32),
                        init_params(SMALL, 0))


@pytest.mark.parametrize("operator", ["zero", "random"])
def test_zero_and_random_at_mask_zero_preserve_the_function(operator):
    olmo = dataclasses.replace(SMALL, norm_after=True, tie_embeddings=True, qk_norm=False)  # OLMo-2 norms, tied head
    for small, big in ((SMALL, WIDE), (olmo, dataclasses.replace(olmo, n_layers=6))):
        params = init_params(small, 0)
        grown = grow(params, small, big, operator, seed=3)
        np.testing.assert_allclose(_logits(big, masked(grown.params, grown.masks, 0.0)), _logits(small, params),
                                   atol=1e-5)
        if operator == "random":  # at mask 1 the random new weights act
            assert np.abs(_logits(big, masked(grown.params, grown.masks, 1.0)) - _logits(small, params)).max() > 1e-3


def test_stack_repeats_the_whole_model_and_reuses_embedding_norm_and_head(trained):
    for order, expected in (("stack", [0, 1, 0, 1, 0, 1]), ("interpolate", [0, 0, 0, 1, 1, 1])):
        grown = grow(trained, SMALL, DEEP, "direct", order=order).params
        assert sorted(grown["blocks"]) == list(range(6))
        for i, j in enumerate(expected):
            for a, b in zip(jax.tree.leaves(grown["blocks"][i]), jax.tree.leaves(trained["blocks"][j])):
                np.testing.assert_array_equal(a, b)
        for key in ("embed", "final_norm", "head"):
            for a, b in zip(jax.tree.leaves(grown[key]), jax.tree.leaves(trained[key])):
                np.testing.assert_array_equal(a, b)
    assert growth_factor(SMALL, DEEP) == 14688 / 5248  # 3x the 2,360-parameter blocks; final norm and head once


class SourceRMS(RMSNorm):
    """RMSNorm whose mean square weighs each channel by 1 / (copies of its source): the RMS of the original vector."""

    def __init__(self, norm: RMSNorm, weight: np.ndarray):
        self.scale, self.eps = norm.scale, norm.eps
        self.weight = nnx.Variable(jnp.asarray(weight / weight.sum()))

    def __call__(self, x: jax.Array) -> jax.Array:
        ms = jnp.sum(x * x * self.weight[...], axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(ms + self.eps) * self.scale[...]


def test_direct_width_deviates_only_by_the_rmsnorm_effect(trained):
    grown = grow(trained, SMALL, WIDE, "direct", seed=5).params
    small_logits, grown_logits = _logits(SMALL, trained), _logits(WIDE, grown)
    assert np.abs(grown_logits - small_logits).max() > 1e-3  # the widened RMS changes the function ...
    sources = growth_width.copy_sources(SMALL, WIDE, seed=5)
    weight = {s: 1.0 / np.bincount(i)[i] for s, i in sources.items()}
    model = _model(WIDE, grown)
    for block in model.blocks:
        block.attn_norm, block.mlp_norm = SourceRMS(block.attn_norm, weight["D"]), SourceRMS(block.mlp_norm, weight["D"])
        block.attn.q_norm, block.attn.k_norm = (SourceRMS(block.attn.q_norm, weight["Q"]),
                                                SourceRMS(block.attn.k_norm, weight["KV"]))
    model.final_norm = SourceRMS(model.final_norm, weight["D"])
    np.testing.assert_allclose(np.asarray(model(TOKENS)), small_logits, atol=2e-5)  # ... and nothing else does
    # the first norm's output on old channels is the small model's times rms_d(x) / rms_D(x') (the paper's effect)
    x = trained["embed"][TOKENS]
    x_wide = grown["embed"][TOKENS]
    ratio = jnp.sqrt(jnp.mean(x * x, -1, keepdims=True)) / jnp.sqrt(jnp.mean(x_wide * x_wide, -1, keepdims=True))
    small_norm = _model(SMALL, trained).blocks[0].attn_norm(x)
    wide_norm = _model(WIDE, grown).blocks[0].attn_norm(x_wide)[..., :16]
    np.testing.assert_allclose(wide_norm, small_norm * ratio, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(ratio - 1).max()) > 1e-3


def test_direct_width_doubling_copies_every_channel_once_and_is_exact(trained):
    double = dataclasses.replace(SMALL, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64)
    grown = grow(trained, SMALL, double, "direct").params
    np.testing.assert_allclose(_logits(double, grown), _logits(SMALL, trained), atol=2e-5)


def _ce(cfg: ModelConfig):
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0))))

    def loss(params, batch):
        logits = nnx.merge(graphdef, params)(batch[:, :-1])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch[:, 1:, None], -1))
    return loss


def _batches():
    key = jax.random.key(0)
    while True:
        key, sub = jax.random.split(key)
        yield (jnp.arange(13)[None] + jax.random.randint(sub, (4, 1), 0, 32)) % 32  # counting sequences


def test_learn_starts_as_stacking_in_depth_and_its_maps_lower_the_loss(trained):
    batch = next(_batches())
    stacked = grow(trained, SMALL, DEEP, "direct").params
    for big in (DEEP, WIDE):
        grown = grow(trained, SMALL, big, "learn", learn=LearnSetup(_ce(big), iter([batch] * 12), steps=12, lr=1e-2))
        losses = grown.learn_losses
        assert len(losses) == 12 and losses[-1] < losses[0] - 0.005
        if big == DEEP:  # the depth maps start as stacking: the first loss is G_stack's
            assert losses[0] == pytest.approx(float(_ce(DEEP)(stacked, batch)), abs=1e-5)
        _assert_trains(big, grown)


@functools.partial(jax.jit, static_argnums=0)
def _sgd_step(cfg: ModelConfig, params: dict, masks: dict | None, c: float, batch: jax.Array):
    loss, g = jax.value_and_grad(lambda p: _ce(cfg)(masked(p, masks, c), batch))(params)
    return jax.tree.map(lambda w, d: w - 0.05 * d, params, g), loss


def _assert_trains(big: ModelConfig, grown) -> None:
    """SGD steps of the grown model on one batch (masks ramping 0 -> 1 over 3 steps): finite, and falling once the
    masks are fully open."""
    params, batch, losses = grown.params, next(_batches()), []
    for i in range(6):
        params, loss = _sgd_step(big, params, grown.masks, min(1.0, i / 3), batch)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and all(np.isfinite(w).all() for w in jax.tree.leaves(params))
    assert losses[5] < losses[4] < losses[3]


@pytest.mark.parametrize("big", [DEEP, WIDE], ids=["depth", "width"])
@pytest.mark.parametrize("operator", ["direct", "zero", "random"])  # learn: in the test above
def test_grown_models_train_without_nan(trained, operator, big):
    _assert_trains(big, grow(trained, SMALL, big, operator))


def test_moments_grow_like_the_weights_with_zero_new_entries(trained):
    moments = jax.tree.map(jnp.abs, trained)
    deep = grow_moments(moments, SMALL, DEEP, "direct")
    np.testing.assert_array_equal(deep["blocks"][4]["attn"]["wq"], moments["blocks"][0]["attn"]["wq"])
    wide = grow_moments(moments, SMALL, WIDE, "zero")
    wq = wide["blocks"][0]["attn"]["wq"]
    assert wq.shape == (48, 48) and float(jnp.abs(wq[16:]).max()) == 0.0 and float(jnp.abs(wq[:, 16:]).max()) == 0.0
    np.testing.assert_array_equal(wq[:16, :16], moments["blocks"][0]["attn"]["wq"])
    with pytest.raises(LadderlabError, match="opt_state='fresh'"):
        grow_moments(moments, SMALL, DEEP, "learn")


def test_bad_growth_shapes_raise_one_clear_error(trained):
    eight = dataclasses.replace(SMALL, n_layers=8)
    with pytest.raises(LadderlabError, match=r"growth factor g=3 does not divide the target's n_layers=8"):
        small_model(eight, 3, "depth")
    with pytest.raises(LadderlabError, match=r"target n_layers=5 is not a multiple of the source's 2"):
        growth_dim(SMALL, dataclasses.replace(SMALL, n_layers=5))
    narrow = dataclasses.replace(SMALL, d_model=8, n_heads=1, n_kv_heads=1, d_ff=16)
    with pytest.raises(LadderlabError, match=r"target d_model=8 is smaller than the source's 16"):
        grow(trained, SMALL, narrow, "direct")
    with pytest.raises(LadderlabError, match="growth factor g=3: width growth .* must be a square"):
        small_model(WIDE, 3, "width")
    with pytest.raises(LadderlabError, match="not both"):
        growth_dim(SMALL, dataclasses.replace(WIDE, n_layers=4))
    with pytest.raises(LadderlabError, match="operator 'stacking'"):
        grow(trained, SMALL, DEEP, "stacking")
    with pytest.raises(LadderlabError, match="operators take the unrolled layout; set model.scan_layers=False"):
        growth_dim(SMALL, dataclasses.replace(DEEP, scan_layers=True))
    assert small_model(DEEP, 3, "depth") == dataclasses.replace(DEEP, n_layers=2)
    assert small_model(dataclasses.replace(SMALL, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64), 4, "width") == SMALL
