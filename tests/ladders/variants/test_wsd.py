"""WSD ladders with decay branches: the plan's branch points and saving, a branch equal bit for bit to the
standalone WSD run, and resuming a stopped ladder without retraining a finished branch."""

from __future__ import annotations

import dataclasses
import shutil

import jax
import numpy as np
import pytest

from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders import runner as ladder_run
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import branch_saving, plan, train_config
from ladderlab.ladders.run.checkpoint import read_params
from ladderlab.ladders.run.train import Trainer
from ladderlab.scaling.tables.runs import read_runs
from tests.ladders.test_ladder_run import write_corpus

IDS = ["t-0.02xC-equal-s0", "t-0.04xC-equal-s0", "t-0.08xC-equal-s0"]


def config(corpus, root, **changes) -> LadderConfig:
    data = DataConfig(corpus=str(corpus), cache_dir=str(root / "cache"), seq_len=32, eval_tokens=256)
    return LadderConfig(**{"data": data, "sizes": (), "shapes": {"t": (16, 1, 2, 32)}, "multiples": (0.02, 0.04, 0.08),
                           "batch_size": 8, "evals_per_run": 2, "warmup_steps": 2, "schedule": "wsd",
                           "decay_fraction": 0.25, "branches": True, **changes})


def test_plan_branch_points_and_saving(tmp_path):
    """11, 21 and 42 steps (256 tokens each, N = 6784): the shorter runs' decays start at 11 - 0.25 x 9 = 8.75 and
    21 - 0.25 x 19 = 16.25, so they share 9 and 17 steps with the 42-step run and train 2 and 4 more."""
    runs = plan(config(tmp_path, tmp_path))
    assert [(r.run, r.steps, r.branch_of, r.branch_step) for r in runs] == [
        (IDS[0], 11, IDS[2], 9), (IDS[1], 21, IDS[2], 17), (IDS[2], 42, "", 0)]
    per_step = 6.0 * 6784 * 256
    assert [r.flops for r in runs] == [2 * per_step, 4 * per_step, 42 * per_step]
    assert [r.tokens for r in runs] == [11 * 256, 21 * 256, 42 * 256]  # the runs table's D: the whole run's
    saving = branch_saving(runs)
    assert saving == {"flops": 48 * per_step, "separate_flops": 74 * per_step, "saved": 1 - 48 / 74}
    assert runs[0].row()["branch_of"] == IDS[2] and runs[0].row()["branch_step"] == 9
    # without branches every run trains alone and nothing is saved
    alone = plan(config(tmp_path, tmp_path, branches=False))
    assert [r.branch_of for r in alone] == ["", "", ""] and branch_saving(alone)["saved"] == 0.0


def test_branch_groups_train_together_and_stay_in_one_shard(tmp_path):
    cfg = config(tmp_path, tmp_path, swarm=True, mixtures={"equal": {}, "ab": {"a": 1.0, "b": 1.0}})
    runs, ab = plan(cfg), [i.replace("equal", "ab") for i in IDS]
    assert [[r.run for r in unit] for unit in ladder_run._units(runs, cfg.swarm)] == [IDS, ab]
    assert [[r.run for r in ladder_run.share(runs, i, 2)] for i in (0, 1)] == [IDS, ab]  # longest: 4th and 5th


@pytest.mark.parametrize("change, message", [({"schedule": "cosine"}, "branches=True needs schedule='wsd'"),
                                             ({"decay_fraction": 1.5}, "need 0 <= decay_fraction <= 1")])
def test_bad_branch_configs_are_errors(tmp_path, change, message):
    with pytest.raises(LadderlabError, match=message):
        plan(config(tmp_path, tmp_path, **change))


def final_params(cfg: LadderConfig, out, run) -> dict:
    tc = train_config(cfg, run, out)
    return read_params(f"{tc.run_dir}/checkpoints/{run.steps}", Trainer(tc, jax.devices()[:1]).abstract["params"])


def equal_trees(a, b) -> bool:
    return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))


@pytest.fixture(scope="module")
def ladders(tmp_path_factory):
    """The branched ladder and the same runs trained separately (branches=False)."""
    root = tmp_path_factory.mktemp("wsd")
    cfg = config(write_corpus(root / "corpus"), root)
    ladder_run.run_ladder(cfg, root / "wsd", devices=jax.devices()[:1])
    ladder_run.run_ladder(dataclasses.replace(cfg, branches=False), root / "alone", devices=jax.devices()[:1])
    return cfg, root


def test_branches_equal_the_standalone_runs(ladders):
    """Each branch's final parameters are the separately trained WSD run's bit for bit (same state at the branch
    point, same data position, same rates after it), and so are its final losses; its runs-table rows count D and
    FLOPs from step 0 (stable prefix + cooldown)."""
    cfg, root = ladders
    alone_cfg = dataclasses.replace(cfg, branches=False)
    for run, twin in zip(plan(cfg), plan(alone_cfg)):
        assert equal_trees(final_params(cfg, root / "wsd", run), final_params(alone_cfg, root / "alone", twin))
    wsd, alone = read_runs(root / "wsd"), read_runs(root / "alone")
    for run in IDS:
        a, b = wsd.rows_of(run)[-1], alone.rows_of(run)[-1]
        for col in ("step", "D", "flops", "lr", "loss", "val/a", "train_loss"):
            assert wsd[col][a] == alone[col][b], (run, col)
    # the 11-step branch: the stable run's eval at its branch point 9, then its own evals (the last one at 11)
    rows = wsd.rows_of(IDS[0])
    assert wsd["step"][rows].tolist() == [9, 10, 11] and wsd["D"][rows].tolist() == [9 * 256, 10 * 256, 11 * 256]
    assert wsd["flops"][rows].tolist() == [6.0 * 6784 * 256 * s for s in (9, 10, 11)]
    heads = {r.run: r.branch_of for r in plan(cfg)}  # runs.csv names each branch's stable run, "" for the stable run
    assert {run: wsd["branch_of"][wsd.rows_of(run)[-1]] for run in IDS} == heads and "" in heads.values()
    assert set(alone["branch_of"].tolist()) == {""}


def test_a_stopped_ladder_resumes_without_retraining_a_finished_branch(ladders, monkeypatch, tmp_path):
    """Stopped as the second branch starts, the rerun trains only that branch's cooldown and the rest of the stable
    run; the first branch's log is untouched, and the results equal the uninterrupted ladder's."""
    cfg, root = ladders
    from ladderlab.ladders.variants import wsd

    real, calls = wsd.train, []

    def stopping(tc, devices=None, stop_after=None):
        calls.append((tc.run_dir.rsplit("/", 1)[1], stop_after))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(tc, devices=devices, stop_after=stop_after)

    monkeypatch.setattr(wsd, "train", stopping)
    with pytest.raises(KeyboardInterrupt):
        ladder_run.run_ladder(cfg, tmp_path, devices=jax.devices()[:1])
    assert calls == [(IDS[2], 9), (IDS[0], None), (IDS[2], 17), (IDS[1], None)]
    first_log = (tmp_path / "runs" / IDS[0] / "metrics.jsonl").read_bytes()
    calls.clear()
    ladder_run.run_ladder(cfg, tmp_path, devices=jax.devices()[:1])
    # the first branch finished before the stop (its loop only says so); the second resumes from its copy at 17
    assert calls == [(IDS[0], None), (IDS[1], None), (IDS[2], None)]
    assert (tmp_path / "runs" / IDS[0] / "metrics.jsonl").read_bytes() == first_log
    assert (tmp_path / "runs.csv").read_bytes() == (root / "wsd" / "runs.csv").read_bytes()
    calls.clear()
    ladder_run.run_ladder(cfg, tmp_path, devices=jax.devices()[:1])
    assert calls == [] and [r["state"] for r in ladder_run.status_rows(tmp_path)] == ["finished"] * 3


def test_a_branch_whose_copy_is_lost_trains_alone_to_the_same_result(ladders, tmp_path):
    """With the stable run past its branch point and the branch's folder gone, the branch trains from step 0: the
    standalone run (its rows are then the standalone run's too)."""
    cfg, root = ladders
    out = tmp_path / "wsd"
    shutil.copytree(root / "wsd", out)
    shutil.rmtree(out / "runs" / IDS[0])
    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    alone_cfg = dataclasses.replace(cfg, branches=False)
    assert equal_trees(final_params(cfg, out, plan(cfg)[0]), final_params(alone_cfg, root / "alone", plan(alone_cfg)[0]))
    wsd, alone = read_runs(out), read_runs(root / "alone")
    assert wsd["loss"][wsd.rows_of(IDS[0])].tolist() == alone["loss"][alone.rows_of(IDS[0])].tolist()
