"""The trainer on fake CPU devices: golden losses, 1 vs 8 devices, bit-exact resume, checkpoint policies, errors."""

from __future__ import annotations

import dataclasses
import json
import math
import struct

import jax
import numpy as np
import pytest
from flax import nnx

from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders.checkpoint import Checkpoints
from ladderlab.ladders.state import abstract_model
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.tensorboard import crc32c
from ladderlab.ladders.train import Trainer, train
from ladderlab.model.config import ModelConfig

MODEL = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64, qk_norm=True)
BASE = TrainConfig(model=MODEL, data=DataConfig(seq_len=16), batch_size=8, steps=4, lr=1e-2, warmup_steps=1,
                   progress=False, seed=3)
# Losses of steps 1-4 of BASE on one CPU device (fp32), recorded once; any change to init, model, loss,
# optimizer or schedule moves them.
GOLDEN = [4.1438546, 3.7342963, 3.4445446, 3.2539721]


def _rows(run_dir, split="train"):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


def _tensorboard_scalars(folder) -> dict[tuple[str, int], float]:
    """Parse our event file back (checking every record's CRC) into {(tag, step): value}."""
    (path,) = folder.glob("events.out.tfevents.*")
    data, out, at = path.read_bytes(), {}, 0
    mask = lambda c: (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # noqa: E731
    while at < len(data):
        (n,) = struct.unpack_from("<Q", data, at)
        assert struct.unpack_from("<I", data, at + 8)[0] == mask(crc32c(data[at:at + 8]))
        event = data[at + 12: at + 12 + n]
        assert struct.unpack_from("<I", data, at + 12 + n)[0] == mask(crc32c(event))
        at += 16 + n
        if b"brain.Event" in event:
            continue
        step, i = 0, 10  # wall_time: tag byte + 8 bytes; then step: tag byte + varint
        for shift in range(0, 64, 7):
            step |= (event[i] & 0x7F) << shift
            i += 1
            if not event[i - 1] & 0x80:
                break
        summary = event[i + 2:]  # field 5 tag + 1-byte length (short summaries)
        j = 0
        while j < len(summary):
            value = summary[j + 2: j + 2 + summary[j + 1]]
            tag = value[2: 2 + value[1]].decode()
            out[(tag, step)] = struct.unpack("<f", value[3 + value[1]: 7 + value[1]])[0]
            j += 2 + summary[j + 1]
    return out


def test_one_device_matches_golden_and_eight_devices(tmp_path, fake_batches):
    eval_sets = {"a": [next(fake_batches(8, 16, 64, seed=9))]}
    one = train(dataclasses.replace(BASE, run_dir=str(tmp_path / "one"), mesh=(1, 1, 1)), fake_batches(8, 16, 64),
                eval_sets, {"a": 2.0}, devices=jax.devices()[:1])
    eight = train(dataclasses.replace(BASE, run_dir=str(tmp_path / "eight"), mesh=(2, 2, 2), grad_accum=2),
                  fake_batches(8, 16, 64))
    losses_one = [r["loss"] for r in _rows(tmp_path / "one")]
    losses_eight = [r["loss"] for r in _rows(tmp_path / "eight")]
    np.testing.assert_allclose(losses_one, GOLDEN, rtol=0, atol=1e-5)
    np.testing.assert_allclose(losses_eight, losses_one, rtol=1e-5)  # data x fsdp x tensor, 2 micro-batches
    for a, b in zip(jax.tree.leaves(one["state"]["params"]), jax.tree.leaves(eight["state"]["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=5e-5)  # Adam scales tiny grads up
    # eval: bits per byte = nats per token / ln 2 / bytes per token; JSONL and TensorBoard agree
    (ev,) = _rows(tmp_path / "one", "eval")
    assert ev["a/bpb"] == pytest.approx(ev["a/loss"] / math.log(2) / 2.0, rel=1e-12)
    # accuracy: the final model's top-1 hits over the batch's masked targets, counted here in numpy
    batch = eval_sets["a"][0]
    model = nnx.merge(abstract_model(BASE.model)[0], jax.device_get(one["state"]["params"]))
    logits = np.asarray(model(batch["inputs"], batch["positions"], batch["segment_ids"]))
    hits = (logits.argmax(-1) == batch["targets"]) * batch["mask"]
    assert 0 < hits.sum() < batch["mask"].sum() and ev["a/acc"] == pytest.approx(hits.sum() / batch["mask"].sum())
    scalars = _tensorboard_scalars(tmp_path / "one" / "tensorboard")
    assert [scalars[("train/loss", s)] for s in range(1, 5)] == pytest.approx(losses_one, rel=1e-7)
    assert scalars[("eval/a/loss", 4)] == pytest.approx(ev["a/loss"], rel=1e-6)


def test_resume_equals_uninterrupted_and_skips_a_corrupt_checkpoint(tmp_path, fake_batches):
    cfg = dataclasses.replace(BASE, steps=6, checkpoint_every=2)
    full = train(dataclasses.replace(cfg, run_dir=str(tmp_path / "full")), fake_batches(8, 16, 64))
    cut = dataclasses.replace(cfg, run_dir=str(tmp_path / "cut"))
    train(cut, fake_batches(8, 16, 64), stop_after=3)  # preempted after step 3 (checkpoints 2 and 3)
    for f in (tmp_path / "cut" / "checkpoints" / "3" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")  # damage the newest checkpoint
    with pytest.warns(UserWarning, match="unreadable"):
        resumed = train(cut, fake_batches(8, 16, 64))  # a fresh iterator: its position comes from the checkpoint
    assert (tmp_path / "cut" / "checkpoints" / "3.corrupt").is_dir()
    full_losses = {r["step"]: r["loss"] for r in _rows(tmp_path / "full")}
    cut_losses = {r["step"]: r["loss"] for r in _rows(tmp_path / "cut")}  # steps 1-3, then 3-6 again after step 2
    assert sorted(cut_losses) == list(range(1, 7))
    assert cut_losses == full_losses  # bit-exact on CPU
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(resumed["state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = dataclasses.replace(cut, model=dataclasses.replace(MODEL, d_ff=32))
    with pytest.raises(LadderlabError, match=r"has checkpoints of another model \(model/ModelConfig.d_ff = 32"):
        train(other, fake_batches(8, 16, 64))


def test_keep_last_and_keep_every(tmp_path, fake_batches):
    checkpoints = Checkpoints(tmp_path, keep_last=2, keep_every=4)
    it = fake_batches(8, 16, 64)
    try:
        for step in range(1, 10):
            checkpoints.save(step, {"w": np.full((2,), step, np.float32)}, it)
            checkpoints.manager.wait_until_finished()
    finally:
        checkpoints.close()
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [4, 8, 9]


def test_nan_loss_stops_naming_the_step_and_last_checkpoint(tmp_path, fake_batches):
    cfg = dataclasses.replace(BASE, run_dir=str(tmp_path), steps=6, checkpoint_every=2)
    with pytest.raises(LadderlabError, match=r"^step 3: loss is nan; stopping \(last good checkpoint: step 2 in "):
        train(cfg, fake_batches(8, 16, 64, nan_from=2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]  # nothing saved after it


@pytest.mark.parametrize("change, message", [
    (dict(mesh=(3, -1, 1)), r"mesh=\(3, -1, 1\) does not fit the 8 devices"),
    (dict(batch_size=6, mesh=(2, 2, 2)), "batch_size=6 is not divisible by the data x fsdp axes"),
    (dict(grad_accum=4, mesh=(1, 4, 2)), r"micro-batch 2 .* not divisible by the data x fsdp axes \(4 shards\)"),
    (dict(mesh=(1, 1, 8), model=dataclasses.replace(MODEL, d_ff=36)),
     r"parameter \['blocks'\]\[0\]\['mlp'\]\['w_down'\] of shape \(36, 32\): dimension 36"),
])
def test_bad_sizes_are_one_line_errors(change, message):
    with pytest.raises(LadderlabError, match=message):
        Trainer(dataclasses.replace(BASE, **change))
