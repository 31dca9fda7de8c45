"""Every attention kernel against the dense masked reference on packed rows, and the rule that picks one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladderlab.errors import LadderlabError
from ladderlab.model import attention
from ladderlab.model.sharding import make_mesh

B, L, H, K, E = 2, 16, 4, 2, 8


def _qkv(length: int = L, heads: int = H, kv: int = K):
    kq, kk, kv_ = jax.random.split(jax.random.key(0), 3)
    return (jax.random.normal(kq, (B, length, heads, E)), jax.random.normal(kk, (B, length, kv, E)),
            jax.random.normal(kv_, (B, length, kv, E)))


PACKED = jnp.array([[1] * 5 + [2] * 7 + [3] * 4, [1] * 16])  # three documents in row 0, one in row 1


def test_causal_mask_stays_inside_documents():
    mask = np.asarray(attention.causal_mask(PACKED, L))[0, 0]
    assert mask[6, 4] == False and mask[6, 5] == True and mask[6, 7] == False  # noqa: E712 (doc 2 starts at 5)
    assert mask.sum() == 15 + 28 + 10  # 5*6/2 + 7*8/2 + 4*5/2 visible pairs


@pytest.mark.parametrize("segments", [PACKED, None])
def test_xla_kernel_equals_dense_reference_with_gradients(segments):
    q, k, v = _qkv()
    run = jax.jit(attention.attend, static_argnums=0)
    ref, out = (run(kernel, q, k, v, segments) for kernel in ("dense", "xla"))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)
    w = jax.random.normal(jax.random.key(3), ref.shape)
    grads = [jax.jit(jax.grad(lambda *a: jnp.sum(attention.attend(kernel, *a, segments) * w), argnums=(0, 1, 2)))(
        q, k, v) for kernel in ("dense", "xla")]
    for a, b in zip(*grads):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_packed_rows_match_each_document_run_alone():
    q, k, v = _qkv()
    run = jax.jit(attention.attend, static_argnums=0)
    packed = run("xla", q, k, v, PACKED)
    alone = run("xla", q[:1, 5:12], k[:1, 5:12], v[:1, 5:12], None)  # document 2 of row 0
    np.testing.assert_allclose(np.asarray(packed[:1, 5:12]), np.asarray(alone), rtol=1e-5, atol=1e-6)


def test_splash_kernel_interpreted_equals_dense_reference_per_shard():
    q, k, v = (x[:, :128] for x in _qkv(128, 2, 1))
    segments = jnp.asarray(np.where(np.arange(128) < 50, 1, 2)[None].repeat(B, 0).astype(np.int32))
    with jax.set_mesh(make_mesh((2, 1, 1), jax.devices()[:2])):  # one row per device, by shard_map
        out = jax.jit(lambda *a: attention.splash(*a, interpret=True))(q, k, v, segments)
    np.testing.assert_allclose(np.asarray(out), np.asarray(attention.dense(q, k, v, segments)), atol=1e-5)


@pytest.mark.parametrize("requested, backend, kernel", [
    ("auto", "cpu", "dense"), ("auto", "gpu", "cudnn"), ("auto", "tpu", "splash"), ("dense", "tpu", "dense"),
    ("xla", "gpu", "xla"), ("splash", "tpu", "splash"), ("cudnn", "gpu", "cudnn")])
def test_choose_picks_the_kernel_per_backend(requested, backend, kernel):
    assert attention.choose(requested, backend) == kernel


@pytest.mark.parametrize("requested, backend, message", [
    ("cudnn", "cpu", "does not run on cpu"), ("splash", "gpu", "does not run on gpu"),
    ("flash", "cpu", "expected auto or one of dense, xla, cudnn, splash")])
def test_choose_rejects_kernels_a_backend_cannot_run(requested, backend, message):
    with pytest.raises(LadderlabError, match=message):
        attention.choose(requested, backend)


def test_splash_needs_blocks_of_128():
    with pytest.raises(LadderlabError, match="seq_len divisible by 128, got 16"):
        attention.splash(*_qkv(), PACKED, interpret=True)


def test_platform_tpu_compiles_splash_and_bf16_on_this_host():
    """A TPU AOT compile from a CPU host builds the model TPU runs (`platform`), not the host's."""
    from flax import nnx

    from ladderlab.model.config import ModelConfig
    from ladderlab.model.decoder import Decoder

    tpu, here = (Decoder(ModelConfig(platform=p), nnx.Rngs(0)) for p in ("tpu", "auto"))
    assert (tpu.blocks[0].attn.kernel, tpu.dtype) == ("splash", jnp.bfloat16)
    assert (here.blocks[0].attn.kernel, here.dtype) == ("dense", jnp.float32)
    with pytest.raises(LadderlabError, match="model.platform='npu': expected auto, cpu, gpu or tpu"):
        Decoder(ModelConfig(platform="npu"), nnx.Rngs(0))
