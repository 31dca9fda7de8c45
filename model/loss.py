"""Output projection + cross-entropy in chunks of positions, so the B x L x V logits never exist at once.

The sequence is cut into n equal slices (n the smallest divisor of L giving at most `chunk` tokens a slice, at
most L slices; every slice keeps all rows, so a batch-sharded step keeps every device busy). Each slice's fp32
logits are made, reduced to sums and dropped; the backward pass recomputes them slice by slice (`jax.checkpoint`),
so activation memory is B x L/n x V instead of B x L x V. chunk = 0, or a batch of at most `chunk` tokens: one
slice, no scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ladderlab.model.sharding import constrain


def slices(B: int, L: int, chunk: int) -> int:
    """How many slices of the sequence the loss takes for a B x L batch (1 = the plain, unchunked loss)."""
    if chunk <= 0 or B * L <= chunk:
        return 1
    return next(n for n in range(min(-(-B * L // chunk), L), L + 1) if L % n == 0)


def logit_sums(x_BxLxD: jax.Array, head_DxV: jax.Array, targets_BxL: jax.Array, mask_BxL: jax.Array,
               chunk: int = 0, hits: bool = False, rows: bool = False) -> tuple[jax.Array, ...]:
    """(sum of CE, sum of logsumexp^2[, top-1 hits]) over the tokens, each weighted by its mask; rows=True: each
    a [B] array of per-row sums (what an evaluation needs to score a row on its own).

    x is the final-normed hidden state in its compute dtype and head the output matrix cast to it; logits are
    made with fp32 accumulation, as the plain path's are.
    """
    (B, L, _), mask_BxL = x_BxLxD.shape, mask_BxL.astype(jnp.float32)

    def sums(x_BxCxD: jax.Array, target_BxC: jax.Array, mask_BxC: jax.Array) -> jax.Array:
        logits_BxCxV = constrain(jnp.dot(x_BxCxD, head_DxV, preferred_element_type=jnp.float32),
                                 ("batch", None, "vocab"))
        logz_BxC = jax.nn.logsumexp(logits_BxCxV, axis=-1)
        target_logit_BxC = jnp.take_along_axis(logits_BxCxV, target_BxC[..., None], axis=-1)[..., 0]
        reduce = (lambda a: jnp.sum(a, axis=-1)) if rows else jnp.sum
        out = [reduce((logz_BxC - target_logit_BxC) * mask_BxC), reduce(logz_BxC**2 * mask_BxC)]
        if hits:
            out.append(reduce((jnp.argmax(logits_BxCxV, axis=-1) == target_BxC) * mask_BxC))
        return jnp.stack(out)

    n = slices(B, L, chunk)
    if n == 1:
        return tuple(sums(x_BxLxD, targets_BxL, mask_BxL))
    cut = lambda a: jnp.swapaxes(a.reshape(B, n, L // n, *a.shape[2:]), 0, 1)  # noqa: E731  n x B x L/n x ...
    step = jax.checkpoint(sums)  # the backward pass recomputes a slice's logits instead of keeping them
    zeros = jnp.zeros((3 if hits else 2, *((B,) if rows else ())))
    total, _ = jax.lax.scan(lambda acc, xs: (acc + step(*xs), None), zeros,
                            (cut(x_BxLxD), cut(targets_BxL), cut(mask_BxL)))
    return tuple(total)
