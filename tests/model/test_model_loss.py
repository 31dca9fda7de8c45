"""The chunked output projection + cross-entropy equals the plain full-logits loss, in value and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladderlab.model.loss import logit_sums, slices

B, L, D, V = 2, 12, 8, 32


@pytest.mark.parametrize("b, l, chunk, n", [(2, 12, 0, 1), (2, 12, 24, 1), (2, 12, 8, 3), (2, 12, 5, 6),
                                            (4, 7, 3, 7), (8, 4096, 8192, 4)])
def test_slices_divide_the_sequence(b, l, chunk, n):
    assert slices(b, l, chunk) == n


def _plain(x, head, targets, mask):
    logits = jnp.dot(x, head, preferred_element_type=jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    ce = logz - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    hits = jnp.argmax(logits, axis=-1) == targets
    return jnp.stack([jnp.sum(ce * mask), jnp.sum(logz**2 * mask), jnp.sum(hits * mask)])


def test_chunked_loss_equals_plain_loss_and_gradients():
    kx, kh, kt = jax.random.split(jax.random.key(0), 3)
    x, head = jax.random.normal(kx, (B, L, D)), jax.random.normal(kh, (D, V)) * 0.5
    targets = jax.random.randint(kt, (B, L), 0, V)
    mask = jnp.ones((B, L)).at[1, 9:].set(0.0)
    plain = np.asarray(jax.jit(_plain)(x, head, targets, mask))
    for chunk in (0, 8, 5):
        sums = jax.jit(lambda *a: jnp.stack(logit_sums(*a, chunk, hits=True)))(x, head, targets, mask)
        np.testing.assert_allclose(np.asarray(sums), plain, rtol=1e-6)
    objective = lambda f: lambda x, h: f(x, h)[0] + 1e-2 * f(x, h)[1]  # noqa: E731  CE + z-loss
    want = jax.jit(jax.grad(objective(lambda x, h: _plain(x, h, targets, mask)), argnums=(0, 1)))(x, head)
    got = jax.jit(jax.grad(objective(lambda x, h: jnp.stack(logit_sums(x, h, targets, mask, 5))), argnums=(0, 1)))(
        x, head)
    for a, b in zip(want, got):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_chunked_loss_keeps_no_full_logits():
    x, head = jnp.ones((B, L, D)), jnp.ones((D, V))
    targets, mask = jnp.zeros((B, L), jnp.int32), jnp.ones((B, L))
    grad = jax.grad(lambda x: logit_sums(x, head, targets, mask, 4)[0])
    shapes = {tuple(v.aval.shape) for eqn in jax.make_jaxpr(grad)(x).jaxpr.eqns for v in eqn.outvars}
    assert (B, L, V) not in shapes and (B * L, V) not in shapes  # only B x 2 x V slices (inside the scan)
