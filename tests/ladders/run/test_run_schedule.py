"""Learning-rate schedules and the weight-decay mask, checked at exact values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.schedule import make_schedule
from ladderlab.ladders.run.step import lr_table, make_optimizer, run_schedule, with_lr


def test_cosine_warms_up_then_decays_to_the_floor():
    lr = make_schedule("cosine", 1.0, steps=110, warmup=10, floor_ratio=0.1)
    values = [float(lr(s)) for s in (0, 4, 9, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.1, 0.5, 1.0, 1.0, 0.55, 0.1, 0.1], rtol=1e-6)


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_lr_table_is_the_schedule_at_every_step(schedule):
    """The table is evaluated on a power-of-two length and cut: the same float32 values as at exactly `steps`."""
    for steps in (1, 7, 8, 9, 100):
        cfg = TrainConfig(steps=steps, warmup_steps=min(3, steps), lr=0.02, schedule=schedule)
        table = lr_table(cfg)
        assert table.shape == (steps,) and table.dtype == np.float32
        np.testing.assert_array_equal(table, np.asarray(run_schedule(cfg)(jnp.arange(steps)), np.float32))


def test_wsd_is_flat_then_decays_linearly_in_the_last_fraction():
    lr = make_schedule("wsd", 2.0, steps=110, warmup=10, floor_ratio=0.0, decay_fraction=0.2)
    values = [float(lr(s)) for s in (9, 50, 90, 100, 110)]
    np.testing.assert_allclose(values, [2.0, 2.0, 2.0, 1.0, 0.0], atol=1e-6)


def test_constant_and_bad_schedules():
    lr = make_schedule("constant", 3.0, steps=10, warmup=2)
    assert [float(lr(s)) for s in (0, 1, 9)] == [1.5, 3.0, 3.0]
    with pytest.raises(LadderlabError, match="schedule='linear'"):
        make_schedule("linear", 1.0, 10, 0)
    with pytest.raises(LadderlabError, match="warmup_steps=20 <= steps=10"):
        make_schedule("cosine", 1.0, 10, 20)


def test_weight_decay_skips_norms_and_the_input_embedding():
    optimizer = make_optimizer(TrainConfig(weight_decay=0.5))
    params = {"embed": jnp.ones((4, 2)), "head": jnp.ones((2, 4)), "final_norm": {"scale": jnp.ones(2)},
              "blocks": {0: {"attn": {"wq": jnp.ones((2, 2))}}}}
    update = jax.jit(lambda p: optimizer.update(jax.tree.map(jnp.zeros_like, p), with_lr(optimizer.init(p), 0.1), p)[0])
    updates = update(params)
    assert float(updates["embed"][0, 0]) == 0.0 and float(updates["final_norm"]["scale"][0]) == 0.0
    assert float(updates["head"][0, 0]) == pytest.approx(-0.05)  # zero gradient: only -lr x wd x param
    assert float(updates["blocks"][0]["attn"]["wq"][0, 0]) == pytest.approx(-0.05)
