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
