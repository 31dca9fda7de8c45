"""Swarm training: per-member losses equal lone `train` runs, bit-exact resume, one-line errors for unshared fields."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.variants.swarm import check_swarm, learning_rates, train_swarm
from ladderlab.ladders.run.train import train
from ladderlab.model.config import ModelConfig

MODEL = ModelConfig(vocab_size=264, d_model=32, n_layers=1, n_heads=2, d_ff=64, qk_norm=True)  # 259 byte ids
ALPHABETS = {"letters": "abcdefgh", "digits": "0123456789", "upper": "IJKLMNOP"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> DataConfig:
    """A three-domain corpus (one alphabet per domain, 40 documents each) with its own token cache."""
    root = tmp_path_factory.mktemp("swarm_corpus")
    rng = np.random.default_rng(0)
    for name, alphabet in ALPHABETS.items():
        (root / "corpus" / name).mkdir(parents=True)
        for i in range(40):
            words = ["".join(rng.choice(list(alphabet), rng.integers(1, 8))) for _ in range(rng.integers(5, 60))]
            (root / "corpus" / name / f"{i:02d}.txt").write_text(" ".join(words) + "\n")
    return DataConfig(corpus=str(root / "corpus"), seq_len=16, eval_tokens=64, cache_dir=str(root / "cache"))


def members(data: DataConfig, tmp_path, **shared) -> list[TrainConfig]:
    """Three runs differing in mixture, data seed, init seed, peak LR, schedule and warm-up."""
    base = TrainConfig(**{**dict(model=MODEL, data=data, batch_size=8, steps=4, eval_batch_size=4, progress=False),
                          **shared})
    spec = [({"letters": 1.0}, 0, 1, 1e-2, "cosine", 1), ({"digits": 0.5, "upper": 0.5}, 1, 2, 5e-3, "wsd", 2),
            ({}, 2, 3, 2e-2, "constant", 0)]
    return [dataclasses.replace(base, run_dir=str(tmp_path / f"m{i}"), data=dataclasses.replace(data, mixture=mix,
            seed=data_seed), seed=seed, lr=lr, schedule=schedule, warmup_steps=warmup)
            for i, (mix, data_seed, seed, lr, schedule, warmup) in enumerate(spec)]


def rows(run_dir, split="train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


def test_swarm_members_equal_lone_runs(tmp_path, data):
    cfgs = members(data, tmp_path / "swarm", mesh=(1, 1, 1))
    swarm = train_swarm(cfgs, str(tmp_path / "swarm_dir"), devices=jax.devices()[:1])
    for i, cfg in enumerate(cfgs):
        alone_cfg = dataclasses.replace(cfg, run_dir=str(tmp_path / "alone" / f"m{i}"))
        alone = train(alone_cfg, devices=jax.devices()[:1])
        got, want = rows(tmp_path / "swarm" / f"m{i}"), rows(tmp_path / "alone" / f"m{i}")
        assert [r["step"] for r in got] == [1, 2, 3, 4] and [set(r) for r in got] == [set(r) for r in want]
        for key in sorted(set(want[0]) - {"step", "split", "tok_s"}):  # loss, grad_norm, lr, tokens, ...
            np.testing.assert_allclose([r[key] for r in got], [r[key] for r in want], rtol=2e-6, err_msg=key)
        (ev_got,), (ev_want,) = rows(tmp_path / "swarm" / f"m{i}", "eval"), rows(tmp_path / "alone" / f"m{i}", "eval")
        domain_keys = {f"{d}/{m}" for d in ALPHABETS for m in ("loss", "bpb", "acc")}
        assert set(ev_got) == set(ev_want) == {"step", "split"} | domain_keys
        numbers = lambda row: {k: v for k, v in row.items() if k != "split"}  # noqa: E731
        assert numbers(ev_got) == pytest.approx(numbers(ev_want), rel=2e-6)
        drop_tok_s = lambda row: {k: v for k, v in row.items() if k != "tok_s"}  # noqa: E731
        assert drop_tok_s(swarm[i]["train"]) == pytest.approx(drop_tok_s(alone["train"]), rel=2e-6)
        assert swarm[i]["eval"] == pytest.approx(alone["eval"], rel=2e-6)
        assert jax.tree.structure(swarm[i]["state"]) == jax.tree.structure(alone["state"])
        for a, b in zip(jax.tree.leaves(swarm[i]["state"]), jax.tree.leaves(alone["state"])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=2e-6)
        assert (tmp_path / "swarm" / f"m{i}" / "config.gin").read_text() == \
            (tmp_path / "alone" / f"m{i}" / "config.gin").read_text().replace("/alone/", "/swarm/")
    # the members really differ: own data, init and schedule
    first_losses = [rows(tmp_path / "swarm" / f"m{i}")[0]["loss"] for i in range(3)]
    assert len(set(first_losses)) == 3
    assert [rows(tmp_path / "swarm" / f"m{i}")[0]["lr"] for i in range(3)] == pytest.approx([1e-2, 2.5e-3, 2e-2])


def test_resume_equals_uninterrupted_on_eight_devices(tmp_path, data, capsys):
    """On a (2, 2, 2) mesh, members vmapped in chunks of 2 (a chunk of 2, then the remaining 1)."""
    cfgs = members(data, tmp_path / "full", mesh=(2, 2, 2), steps=6, checkpoint_every=2)
    full = train_swarm(cfgs, str(tmp_path / "full_dir"), chunk=2)
    cut = [dataclasses.replace(c, run_dir=c.run_dir.replace("/full/", "/cut/")) for c in cfgs]
    train_swarm(cut, str(tmp_path / "cut_dir"), stop_after=3, chunk=2)  # preempted after step 3 (checkpoints 2, 3)
    assert sorted(p.name for p in (tmp_path / "cut_dir" / "checkpoints").iterdir()) == ["2", "3"]
    with pytest.raises(LadderlabError, match=r"cut/m1: its checkpoints were trained with other values \(seed 2 -> 9;"):
        train_swarm([cut[0], dataclasses.replace(cut[1], seed=9), cut[2]], str(tmp_path / "cut_dir"), chunk=2)
    capsys.readouterr()
    resumed = train_swarm(cut, str(tmp_path / "cut_dir"), chunk=2)  # fresh iterators: positions from the checkpoint
    assert capsys.readouterr().out == (f"swarm {tmp_path / 'cut_dir'}: resuming 3 members from step 3 (checkpoint "
                                       f"{tmp_path / 'cut_dir' / 'checkpoints' / '3'})\n")
    again = train_swarm(cut, str(tmp_path / "cut_dir"), chunk=2)  # finished: nothing to do, the logged metrics
    assert capsys.readouterr().out.splitlines() == [
        f"run_dir {c.run_dir}: already finished at step 6 (loss {r['train']['loss']:.4f}); nothing to do"
        for c, r in zip(cut, resumed)]
    assert [r["train"] for r in again] == [r["train"] for r in resumed]
    for i in range(3):
        want = {r["step"]: r["loss"] for r in rows(tmp_path / "full" / f"m{i}")}
        got = {r["step"]: r["loss"] for r in rows(tmp_path / "cut" / f"m{i}")}
        assert sorted(got) == list(range(1, 7)) and got == want  # bit-exact on CPU
        for a, b in zip(jax.tree.leaves(full[i]["state"]), jax.tree.leaves(resumed[i]["state"])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(LadderlabError, match=r"members.json: this swarm_dir holds other members"):
        train_swarm(cfgs[:2], str(tmp_path / "cut_dir"))


@pytest.mark.parametrize("change, message", [
    (dict(model=dataclasses.replace(MODEL, d_model=64)), r"member 1 \(.*\): model.d_model=64 differs from .*'s 32"),
    (dict(batch_size=4), "member 1 .*: batch_size=4 differs from member 0's 8"),
    (dict(steps=5), "steps=5 differs"),
    (dict(mesh=(1, 2, 1)), r"mesh=\(1, 2, 1\) differs from member 0's \(1, -1, 1\)"),
    (dict(b2=0.99), "b2=0.99 differs"),
    (dict(data=DataConfig(seq_len=32)), "data.corpus='quick' differs"),
])
def test_unshared_fields_are_one_line_errors(tmp_path, data, change, message):
    cfgs = members(data, tmp_path)
    cfgs[1] = dataclasses.replace(cfgs[1], **change)
    with pytest.raises(LadderlabError, match=message):
        check_swarm(cfgs)


def test_duplicate_run_dir_and_lr_table(tmp_path, data):
    cfgs = members(data, tmp_path)
    with pytest.raises(LadderlabError, match=r"member 2: run_dir=.*m0' is also member 0's"):
        check_swarm([*cfgs[:2], cfgs[0]])
    # the warm-up/cosine, WSD and constant schedules of the three members, step by step
    np.testing.assert_allclose(learning_rates(cfgs), [[1e-2, 1e-2, 7.75e-3, 3.25e-3],
                                                       [2.5e-3, 5e-3, 5e-3, 5e-3],
                                                       [2e-2, 2e-2, 2e-2, 2e-2]], rtol=1e-6)


def test_member_shards_equal_one_device(tmp_path, data):
    """Four members on four devices: two member shards, each looping over its two members one at a time with a
    data-parallel mesh of two devices per member, give the one-device swarm's losses, evals and states."""
    four = lambda root, mesh: [*members(data, root, mesh=mesh),  # noqa: E731
                               dataclasses.replace(members(data, root, mesh=mesh)[0], run_dir=str(root / "m3"), seed=9)]
    one = train_swarm(four(tmp_path / "one", (1, 1, 1)), str(tmp_path / "one_dir"), devices=jax.devices()[:1])
    sharded = train_swarm(four(tmp_path / "sharded", (2, 1, 1)), str(tmp_path / "sharded_dir"),
                          devices=jax.devices()[:4], member_shards=2, chunk=1)
    for i in range(4):
        got, want = rows(tmp_path / "sharded" / f"m{i}"), rows(tmp_path / "one" / f"m{i}")
        assert [r["step"] for r in got] == [1, 2, 3, 4]
        np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=2e-6)
        assert sharded[i]["eval"] == pytest.approx(one[i]["eval"], rel=2e-6)
        for a, b in zip(jax.tree.leaves(sharded[i]["state"]), jax.tree.leaves(one[i]["state"])):
            # another partitioning sums in another order; Adam magnifies that where a second moment is ~0
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=5e-5)
        group = {d.id for d in sharded[i]["state"]["params"]["embed"].sharding.device_set}
        assert group == {d.id for d in jax.devices()[2 * (i // 2):2 * (i // 2) + 2]}  # members 0-1 on devices 0-1
    with pytest.raises(LadderlabError, match="member_shards=3 must divide the 4 members and the 4 devices"):
        train_swarm(four(tmp_path / "bad", (1, 1, 1)), str(tmp_path / "bad_dir"), devices=jax.devices()[:4],
                    member_shards=3)
