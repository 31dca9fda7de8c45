"""The mesh and the logical axis rules: -1 filling, parameter specs, one-line errors."""

from __future__ import annotations

import jax
import pytest
from jax.sharding import PartitionSpec as P

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.state import abstract_model
from ladderlab.model.config import ModelConfig
from ladderlab.model.sharding import batch_sharding, logical_spec, make_mesh, param_shardings


def test_mesh_fills_the_minus_one_axis():
    assert dict(make_mesh((2, -1, 1)).shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert dict(make_mesh((1, 1, -1), jax.devices()[:2]).shape) == {"data": 1, "fsdp": 1, "tensor": 2}
    for bad in [(3, -1, 1), (-1, -1, 1), (2, 2, 1), (0, 8, 1)]:
        with pytest.raises(LadderlabError, match="mesh="):
            make_mesh(bad)


def test_parameters_follow_the_rules_table():
    _, abstract = abstract_model(ModelConfig(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64,
                                             qk_norm=True))
    specs = jax.tree.map(lambda s: s.spec, param_shardings(abstract, make_mesh((2, 2, 2))))
    assert specs["embed"] == P("tensor", "fsdp")
    assert specs["head"] == P("fsdp", "tensor")
    assert specs["blocks"][0]["attn"]["wk"] == P("fsdp", "tensor")
    assert specs["blocks"][0]["attn"]["wo"] == P("tensor", "fsdp")
    assert specs["blocks"][1]["mlp"]["w_down"] == P("tensor", "fsdp")
    assert specs["blocks"][0]["attn"]["q_norm"]["scale"] == P("tensor")
    assert specs["final_norm"]["scale"] == P(None)
    assert logical_spec(("batch", None)) == P(("data", "fsdp"), None)
    assert batch_sharding(make_mesh((2, 2, 2)), 12).spec == P(("data", "fsdp"), None)
    with pytest.raises(LadderlabError, match="batch_size=10 is not divisible"):
        batch_sharding(make_mesh((2, 2, 2)), 10)


def test_scanned_layers_shard_like_unrolled_ones_with_a_replicated_layer_axis():
    cfg = ModelConfig(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, qk_norm=True, scan_layers=True)
    _, abstract = abstract_model(cfg)
    specs = jax.tree.map(lambda s: s.spec, param_shardings(abstract, make_mesh((2, 2, 2))))
    assert specs["blocks"]["attn"]["wk"] == P(None, "fsdp", "tensor")
    assert specs["blocks"]["mlp"]["w_down"] == P(None, "tensor", "fsdp")
    assert specs["blocks"]["attn"]["q_norm"]["scale"] == P(None, "tensor")


def test_scanned_remat_chunked_model_trains_alike_on_one_and_eight_devices():
    import numpy as np

    from ladderlab.data.config import DataConfig
    from ladderlab.ladders.run.config import TrainConfig
    from ladderlab.ladders.run.train import Trainer

    model = ModelConfig(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, qk_norm=True, scan_layers=True,
                        remat=True, loss_chunk=32)  # 4 slices of the loss a batch, 2 a micro-batch
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, (8, 17)).astype(np.int32)
    segments = np.repeat((np.arange(16) >= 6).astype(np.int32)[None] + 1, 8, 0)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": segments,
             "positions": np.where(segments == 1, np.arange(16), np.arange(16) - 6).astype(np.int32),
             "mask": np.ones((8, 16), np.float32)}
    losses = {}
    for mesh, accum, devices in (((1, 1, 1), 1, jax.devices()[:1]), ((2, 2, 2), 2, jax.devices())):
        trainer = Trainer(TrainConfig(model=model, data=DataConfig(seq_len=16), mesh=mesh, batch_size=8, steps=3,
                                      warmup_steps=0, grad_accum=accum, progress=False), devices)
        state, device_batch = trainer.init(), trainer.global_batch(batch)
        with jax.set_mesh(trainer.mesh):
            for _ in range(3):
                state, metrics = trainer.step(state, device_batch, np.float32(1e-2))
                losses.setdefault(mesh, []).append(float(metrics["loss"]))
    np.testing.assert_allclose(losses[(2, 2, 2)], losses[(1, 1, 1)], rtol=1e-6)
    assert losses[(1, 1, 1)][2] < losses[(1, 1, 1)][0] - 0.3  # it learns
