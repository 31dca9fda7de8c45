"""Runs of one model shape that differ only in their schedule share one jitted train step and one compilation."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np

from ladderlab.data.config import DataConfig
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.train import Trainer, train
from ladderlab.model.config import ModelConfig

MODEL = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64, qk_norm=True)
A = TrainConfig(model=MODEL, data=DataConfig(seq_len=16), batch_size=8, steps=6, lr=1e-2, warmup_steps=2,
                weight_decay=0.1, progress=False, seed=3)
B = dataclasses.replace(A, lr=2e-2, warmup_steps=1, steps=5)
# Losses of A and B on one CPU device recorded before the rate became an input of the step (when each run
# compiled its own step with its schedule inside); the host's rate table may differ from that by 1 ulp.
BEFORE_A = [4.14385461807251, 3.878657102584839, 3.550363063812256, 3.3239328861236572, 3.1675872802734375,
            3.043200969696045]
BEFORE_B = [4.14385461807251, 3.6316587924957275, 3.225125312805176, 2.8230197429656982, 2.650050163269043]


def _losses(run_dir) -> list[float]:
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [row["loss"] for row in rows if row["split"] == "train"]


def test_runs_differing_in_lr_warmup_and_steps_compile_one_step(tmp_path, fake_batches):
    devices = jax.devices()[:1]
    step = Trainer(A, devices).step
    assert Trainer(B, devices).step is step  # one jitted function (jax's cache is keyed on it) ...
    train(dataclasses.replace(A, run_dir=str(tmp_path / "a")), fake_batches(8, 16, 64), devices=devices)
    compiled = step._cache_size()  # 1, or more where other tests ran this shape with other argument layouts
    train(dataclasses.replace(B, run_dir=str(tmp_path / "b")), fake_batches(8, 16, 64), devices=devices)
    assert compiled >= 1 and step._cache_size() == compiled  # ... and B compiled nothing more
    np.testing.assert_allclose(_losses(tmp_path / "a"), BEFORE_A, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_losses(tmp_path / "b"), BEFORE_B, rtol=0, atol=1e-6)
    assert Trainer(dataclasses.replace(A, z_loss=1e-4), devices).step is not step  # other step arithmetic


def test_compile_reports_what_the_step_holds_per_device():
    # on 4 fake CPU devices: HBM per device = arguments + outputs + temps + code - the donated state's aliased outputs
    doc = Trainer(dataclasses.replace(A, mesh=(1, 4, 1)), jax.devices()[:4]).compile()
    memory = doc["bytes_per_device"]
    held = memory["argument"] + memory["output"] + memory["temp"] + memory["generated_code"] - memory["alias"]
    assert doc["hbm_gib_per_device"] == held / 2**30 and memory["alias_gib"] == memory["alias"] / 2**30
    assert 0 < memory["alias"] <= memory["output"]  # the state is donated
    assert doc["flops_per_device"] > 0 and "fits" not in doc  # a verdict needs a chip (`--topology`)
