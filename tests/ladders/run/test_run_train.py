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
from tensorboardX.crc32c import crc32c

from ladderlab.config import dump_gin
from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.checkpoint import Checkpoints
from ladderlab.ladders.run.state import abstract_model
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.step import lr_table
from ladderlab.ladders.run.train import Trainer, train
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


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, index after it) of the protobuf varint at data[i]."""
    value, shift = 0, 0
    while True:
        value, i, shift = value | (data[i] & 0x7F) << shift, i + 1, shift + 7
        if not data[i - 1] & 0x80:
            return value, i


def _tensorboard_events(folder) -> list[tuple[int, dict[str, float]]]:
    """Parse our event files back, in file order (checking every record's CRC), into [(step, {tag: value})]."""
    out = []
    mask = lambda c: (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # noqa: E731
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (n,) = struct.unpack_from("<Q", data, at)
            assert struct.unpack_from("<I", data, at + 8)[0] == mask(crc32c(data[at:at + 8]))
            event = data[at + 12: at + 12 + n]
            assert struct.unpack_from("<I", data, at + 12 + n)[0] == mask(crc32c(event))
            at += 16 + n
            if b"brain.Event" in event:
                continue
            step, i = _varint(event, 10)  # wall_time: tag byte + 8 bytes; then step: tag byte + varint
            size, i = _varint(event, i + 1)  # the summary: field 5 tag + length
            summary, j, values = event[i:i + size], 0, {}
            while j < len(summary):
                size, j = _varint(summary, j + 1)  # one Summary.Value: tag string, then the float
                value, j = summary[j:j + size], j + size
                values[value[2: 2 + value[1]].decode()] = struct.unpack("<f", value[3 + value[1]: 7 + value[1]])[0]
            out.append((step, values))
    return out


def _tensorboard_scalars(folder) -> dict[tuple[str, int], float]:
    """{(tag, step): value} over our event files."""
    return {(tag, step): v for step, values in _tensorboard_events(folder) for tag, v in values.items()}


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


def test_resume_equals_uninterrupted_and_skips_a_corrupt_checkpoint(tmp_path, fake_batches, capsys):
    cfg = dataclasses.replace(BASE, steps=6, checkpoint_every=2)
    full = train(dataclasses.replace(cfg, run_dir=str(tmp_path / "full")), fake_batches(8, 16, 64))
    cut = dataclasses.replace(cfg, run_dir=str(tmp_path / "cut"))
    train(cut, fake_batches(8, 16, 64), stop_after=3)  # preempted after step 3 (checkpoints 2 and 3)
    for f in (tmp_path / "cut" / "checkpoints" / "3" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")  # damage the newest checkpoint
    capsys.readouterr()
    with pytest.warns(UserWarning, match="unreadable"):
        resumed = train(cut, fake_batches(8, 16, 64))  # a fresh iterator: its position comes from the checkpoint
    assert capsys.readouterr().out.splitlines()[0] == (f"run_dir {tmp_path / 'cut'}: resuming from step 2 "
                                                       f"(checkpoint {tmp_path / 'cut' / 'checkpoints' / '2'})")
    assert (tmp_path / "cut" / "checkpoints" / "3.corrupt").is_dir()
    full_rows, cut_rows = _rows(tmp_path / "full"), _rows(tmp_path / "cut")
    # step 3 was logged before the kill and again after resuming from step 2: the first one was dropped
    assert [r["step"] for r in cut_rows] == list(range(1, 7))
    assert [r["loss"] for r in cut_rows] == [r["loss"] for r in full_rows]  # bit-exact on CPU
    assert [r["tokens"] for r in cut_rows] == [s * 8 * 16 for s in range(1, 7)]  # cumulative: step x batch x seq_len
    assert {r["step_tokens"] for r in cut_rows} == {8 * 16} and {r["loss_tokens"] for r in cut_rows} == {8 * 15}
    events = _tensorboard_events(tmp_path / "cut" / "tensorboard")  # the same for TensorBoard's events
    assert [step for step, _ in events] == list(range(1, 7))
    assert [values["train/loss"] for _, values in events] == pytest.approx([r["loss"] for r in full_rows], rel=1e-7)
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(resumed["state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_changed_config_is_refused_unless_only_the_schedule_changed_and_allowed(tmp_path, fake_batches, capsys):
    cfg = dataclasses.replace(BASE, run_dir=str(tmp_path), steps=4, warmup_steps=2)
    train(cfg, fake_batches(8, 16, 64))
    saved = (tmp_path / "config.gin").read_text()
    with pytest.raises(LadderlabError, match=r"trained with other values \(model.d_ff 64 -> 32, seed 3 -> 4; see "):
        train(dataclasses.replace(cfg, seed=4, model=dataclasses.replace(MODEL, d_ff=32)), fake_batches(8, 16, 64))
    longer = dataclasses.replace(cfg, steps=8)
    with pytest.raises(LadderlabError, match=r"resuming with a changed schedule \(steps 4 -> 8; .*--allow-schedule"):
        train(longer, fake_batches(8, 16, 64))
    with pytest.raises(LadderlabError, match=r"other values \(seed 3 -> 4, steps 4 -> 8; "):  # the switch: schedule
        train(dataclasses.replace(longer, seed=4, allow_schedule_change=True), fake_batches(8, 16, 64))
    assert (tmp_path / "config.gin").read_text() == saved and len(_rows(tmp_path)) == 4  # nothing was touched
    # fields that do not change what is trained are free (here the mesh, micro-batches, logging and checkpoints)
    capsys.readouterr()
    free = dataclasses.replace(cfg, mesh=(2, 2, 2), grad_accum=2, log_every=2, keep_last=1, progress=True)
    assert train(free, fake_batches(8, 16, 64))["train"]["loss"] == _rows(tmp_path)[-1]["loss"]
    train(dataclasses.replace(longer, allow_schedule_change=True), fake_batches(8, 16, 64))
    assert capsys.readouterr().out.splitlines()[-1] == (f"run_dir {tmp_path}: resuming from step 4 (checkpoint "
                                                        f"{tmp_path / 'checkpoints' / '4'}) with a changed schedule: "
                                                        f"steps 4 -> 8")
    lrs = [r["lr"] for r in _rows(tmp_path)]
    np.testing.assert_array_equal(lrs[:4], lr_table(cfg))  # steps 1-4 on the old schedule, 5-8 on the new one
    np.testing.assert_array_equal(lrs[4:], lr_table(longer)[4:])
    assert lrs[3:5] == pytest.approx([0.0055, 0.00775], rel=1e-6)  # cosine over 4 steps, then over 8: lr rises
    assert (tmp_path / "config.step4.gin").read_text() == dump_gin(free)  # the config that trained steps 1-4
    assert (tmp_path / "config.gin").read_text() == dump_gin(dataclasses.replace(longer, allow_schedule_change=True))


def test_a_finished_run_says_so_and_returns_its_last_metrics(tmp_path, fake_batches, capsys):
    cfg = dataclasses.replace(BASE, run_dir=str(tmp_path))
    eval_sets = {"a": [next(fake_batches(8, 16, 64, seed=9))]}
    first = train(cfg, fake_batches(8, 16, 64), eval_sets)
    capsys.readouterr()
    again = train(cfg, fake_batches(8, 16, 64), eval_sets)
    assert capsys.readouterr().out == (f"run_dir {tmp_path}: already finished at step 4 (loss {GOLDEN[3]:.4f}); "
                                       f"nothing to do\n")
    assert again["train"] == first["train"] and again["train"]["loss"] == pytest.approx(GOLDEN[3], abs=1e-5)
    assert again["eval"] == pytest.approx(first["eval"], rel=1e-12) and again["eval"]["a/loss"] > 0
    for a, b in zip(jax.tree.leaves(first["state"]), jax.tree.leaves(again["state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3, 4]


def test_a_run_starts_from_another_runs_checkpoint(tmp_path, fake_batches):
    base = train(dataclasses.replace(BASE, run_dir=str(tmp_path / "base")), fake_batches(8, 16, 64))
    cfg = dataclasses.replace(BASE, run_dir=str(tmp_path / "cpt"), steps=2, clip_norm=0.0,  # another optimizer tree
                              init_from=str(tmp_path / "base" / "checkpoints" / "4"))
    trainer = Trainer(cfg)
    with jax.set_mesh(trainer.mesh):
        ce, _, tokens = trainer.eval_step(base["state"]["params"], trainer.global_batch(next(fake_batches(8, 16, 64))))
    train(cfg, fake_batches(8, 16, 64), stop_after=1)
    assert _rows(tmp_path / "cpt")[0]["loss"] == pytest.approx(float(ce.sum() / tokens.sum()), rel=1e-6)  # the base's
    assert f"TrainConfig.init_from = '{tmp_path / 'base' / 'checkpoints' / '4'}'" in (
        tmp_path / "cpt" / "config.gin").read_text()
    with pytest.raises(LadderlabError, match=r"parameter blocks/0/mlp/w_down is of shape \(64, 32\); this model's "
                                             r"is \(32, 32\)"):
        train(dataclasses.replace(cfg, run_dir=str(tmp_path / "new"), model=dataclasses.replace(MODEL, d_ff=32)),
              fake_batches(8, 16, 64))
    (tmp_path / "base" / "checkpoints" / "4" / "state").rename(tmp_path / "moved")  # the rerun resumes its own
    assert train(cfg, fake_batches(8, 16, 64))["state"]["step"] == 2
    with pytest.raises(LadderlabError, match=r"^init_from='.*/moved': not a checkpoint folder"):
        train(dataclasses.replace(cfg, run_dir=str(tmp_path / "new"), init_from=str(tmp_path / "moved")),
              fake_batches(8, 16, 64))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("change, message", [
    (dict(steps=2, warmup_steps=5), r"need 0 <= warmup_steps=5 <= steps=2"),
    (dict(mesh=(3, -1, 1)), r"mesh=\(3, -1, 1\) does not fit the 8 devices"),
    (dict(init_from="nowhere/7"), r"init_from='nowhere/7': not a checkpoint folder"),
])
def test_config_errors_come_before_anything_is_written(tmp_path, fake_batches, change, message):
    with pytest.raises(LadderlabError, match=message):
        train(dataclasses.replace(BASE, run_dir=str(tmp_path / "run"), **change), fake_batches(8, 16, 64))
    assert not (tmp_path / "run").exists()


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


def test_a_cpt_run_killed_mid_phase_resumes_bit_exactly(tmp_path, fake_batches):
    train(dataclasses.replace(BASE, run_dir=str(tmp_path / "base")), fake_batches(8, 16, 64))
    cfg = dataclasses.replace(BASE, steps=4, checkpoint_every=1, init_from=str(tmp_path / "base" / "checkpoints" / "4"))
    full = train(dataclasses.replace(cfg, run_dir=str(tmp_path / "full")), fake_batches(8, 16, 64, seed=5))
    cut = dataclasses.replace(cfg, run_dir=str(tmp_path / "cut"))
    train(cut, fake_batches(8, 16, 64, seed=5), stop_after=2)  # preempted mid-phase
    resumed = train(cut, fake_batches(8, 16, 64, seed=5))  # resumes its own checkpoint 2, not init_from
    assert [r["loss"] for r in _rows(tmp_path / "cut")] == [r["loss"] for r in _rows(tmp_path / "full")]
    assert len(_rows(tmp_path / "cut")) == 4
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(resumed["state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
