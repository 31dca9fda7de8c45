"""Task scoring in the eval step: per-row CE equal to the model run on each choice alone, accuracy and bits per
byte on a hand-built case, one eval function for a lone run and a swarm, and the runs-table columns."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from ladderlab.data import tasks
from ladderlab.data.tokenizer import BOS
from ladderlab.ladders.run.train import Trainer, task_scores
from ladderlab.ladders.store import LadderStore
from ladderlab.ladders.variants.swarm import Swarm
from test_run_train import BASE

ITEMS = [tasks.Item("the cat sat on", (" the mat", " a dog ran", " xyz"), 0),
         tasks.Item("one two", (" three", " five six", " q"), 1),
         tasks.Item("abc", (" def", " gh", " ijkl"), 2)]


def _encode(text: str) -> np.ndarray:
    return np.array([3 + ord(c) % 61 for c in text], np.int32)


def _task_set(monkeypatch) -> list[dict]:
    monkeypatch.setattr(tasks, "CHOICES", 3)
    rows = tasks.rows(ITEMS, _encode, np.ones(64), row_len=32)  # every token one byte; nothing cut
    pad = -len(rows["mask"]) % 8
    rows = {k: np.concatenate([v, np.full((pad, *v.shape[1:]), -1 if k == "item" else 0, v.dtype)])
            for k, v in rows.items()}
    return [{k: v[i:i + 8] for k, v in rows.items()} for i in range(0, len(rows["mask"]), 8)]


def _brute_force_ce(trainer: Trainer, params: dict) -> np.ndarray:
    """Each choice's CE (nats) from the model's full logits on [BOS, context, choice] alone (right-padded to one
    length, which a causal model's earlier logits do not see), log-softmax in numpy."""
    logits_of = jax.jit(lambda p, x: nnx.merge(trainer.graphdef, p)(x))
    out = []
    for item in ITEMS:
        for choice in item.choices:
            seq = np.concatenate([[BOS], _encode(item.context), _encode(choice)])
            padded = np.pad(seq[:-1], (0, 32 - len(seq) + 1), constant_values=5)
            logits = np.asarray(logits_of(params, padded[None]), np.float64)[0, :len(seq) - 1]
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            scored = np.arange(len(seq) - 1)[-len(choice):]
            out.append(-logp[scored, seq[1:][scored]].sum())
    return np.array(out)


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return Trainer(BASE, devices=jax.devices()[:1])


def test_task_rows_score_each_choice_as_the_model_alone_does(monkeypatch, trainer):
    sets = _task_set(monkeypatch)
    state = trainer.init()
    with jax.set_mesh(trainer.mesh):
        per_row = np.concatenate([np.asarray(trainer.eval_step(state["params"], {k: b[k] for k in
                                  ("inputs", "targets", "segment_ids", "positions", "mask")})) for b in sets], -1)
        (scores,) = trainer.evaluate(state, {"t": sets})
    truth = _brute_force_ce(trainer, state["params"])
    np.testing.assert_allclose(per_row[0, :9], truth, rtol=1e-5)
    np.testing.assert_array_equal(per_row[2, :9], [len(c) for item in ITEMS for c in item.choices])
    assert per_row[0, 9:].tolist() == [0.0] * 7  # padding rows
    rows = {k: np.concatenate([b[k] for b in sets]) for k in ("item", "correct", "scored_bytes")}
    expected = task_scores(np.concatenate([truth, np.zeros(7)]), **rows)
    assert scores["t/bpb"] == pytest.approx(expected["bpb"], rel=1e-5) and scores["t/acc"] == expected["acc"]


def test_a_swarm_scores_each_member_as_a_lone_run(monkeypatch, tmp_path, trainer):
    sets = _task_set(monkeypatch)
    cfgs = [dataclasses.replace(BASE, run_dir=str(tmp_path / f"m{i}"), seed=i) for i in range(2)]
    swarm = Swarm(cfgs, devices=jax.devices()[:1])
    state = swarm.init()
    with jax.set_mesh(swarm.mesh):
        rows = swarm.evaluate(state, {"t": sets})
    for member, row in zip(swarm.unstack(state), rows):
        with jax.set_mesh(trainer.mesh):
            (alone,) = trainer.evaluate(member, {"t": sets})
        assert row == pytest.approx(alone, rel=1e-5)


def test_task_scores_on_a_hand_built_case():
    # 2 items x 3 choices; item 0: choice 1 (true) has the lowest CE per byte though not the lowest CE
    ce = np.array([3.0, 4.0, 9.0, 2.0, 1.0, 6.0, 0.0, 0.0])
    scored_bytes = np.array([2.0, 4.0, 3.0, 1.0, 1.0, 2.0, 0.0, 0.0])
    item = np.array([0, 0, 0, 1, 1, 1, -1, -1])
    correct = np.array([0, 1, 0, 1, 0, 0, 0, 0], np.float32)
    got = task_scores(ce, item, correct, scored_bytes)
    # per byte: item 0 [1.5, 1.0, 3.0] -> 1 (right); item 1 [2.0, 1.0, 3.0] -> 1, the truth is 0 (wrong)
    assert got["acc"] == 0.5
    assert got["bpb"] == pytest.approx((4.0 + 2.0) / math.log(2) / (4.0 + 1.0))
    members = task_scores(np.stack([ce, ce * np.array([1, 1, 1, 0.1, 1, 1, 1, 1])]), item, correct, scored_bytes)
    assert members["acc"].tolist() == [0.5, 1.0]


def test_finish_writes_next_token_and_task_columns(tmp_path):
    store = LadderStore(tmp_path)
    plan_row = {"run": "r", "size": "3k", "mixture": "equal", "multiple": 1.0, "seed": 0, "N": 3000.0, "steps": 2,
                "batch": 4, "operator": ""}
    (tmp_path / "runs" / "r").mkdir(parents=True)
    rows = [{"split": "train", "step": 2, "loss": 3.0, "lr": 0.1},
            {"split": "eval", "step": 2, "a/loss": 2.0, "a/acc": 0.3, "a/bpb": 2.5,
             "code_continuation/bpb": 1.5, "code_continuation/acc": 0.4}]
    (tmp_path / "runs" / "r" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = store.finish(plan_row, seq_len=8, seconds=1.0)["rows"]
    assert {k: row[k] for k in row if "/" in k} == {"val/a": 2.0, "nt_bpb/a": 2.5, "nt_acc/a": 0.3,
                                                    "loss/code_continuation": 1.5, "acc/code_continuation": 0.4}
    assert row["loss"] == 2.0  # the mean over domains, tasks not included
