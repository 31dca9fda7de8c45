"""The ladder runner on a tiny corpus: the runs table, rerun skips, SIGKILL + rerun equals uninterrupted, bad input."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.config import load_config
from ladderlab.errors import LadderlabError
from ladderlab.ladders import runner as ladder_run
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import plan
from ladderlab.ladders.run.metrics import read_rows
from ladderlab.scaling.tables.runs import read_runs

# Runs in a subprocess: SIGKILLs itself when `run` logs a step >= `step` (the trainer's own logging call), so the
# kill lands mid-run at a chosen step, possibly while an async checkpoint is being written.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from ladderlab.ladders.run import metrics
    config, out, run, step = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    original = metrics.RunLog.train
    def train(self, s, m):
        if s >= step and self.jsonl.name.endswith(os.path.join(run, "metrics.jsonl")):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, s, m)
    metrics.RunLog.train = train
    from ladderlab.cli import main
    sys.exit(main(["ladder", "run", config, "--out", out]))
""")


def write_corpus(folder, docs=60):
    """Three small domains of different text (letters, digits, code-like lines), as JSONL documents."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    alphabets = {"a": "abcdefgh ", "b": "0123456789+= ", "c": "def x():\n return (y)"}
    for name, chars in alphabets.items():
        lines = [json.dumps({"text": "".join(rng.choice(list(chars), 400))}) for _ in range(docs)]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """A 3-run ladder config file (2 multiples, a mixture sweep of 2) and its uninterrupted results folder."""
    root = tmp_path_factory.mktemp("ladder")
    corpus = write_corpus(root / "corpus")
    config = root / "ladder.gin"
    config.write_text(textwrap.dedent(f"""
        DataConfig.corpus = "{corpus}"
        DataConfig.cache_dir = "{root / 'cache'}"
        LadderConfig.sizes = (3e3,)
        LadderConfig.multiples = (0.1, 0.2)
        LadderConfig.mixtures = {{"equal": {{}}, "skew": {{"a": 3.0, "b": 1.0}}}}
        LadderConfig.mixture_grid = "smallest"
        DataConfig.seq_len = 32
        DataConfig.eval_tokens = 256
        LadderConfig.evals_per_run = 3
    """))
    cfg = load_config(LadderConfig, config)
    out = root / "reference"
    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    return cfg, config, out


def test_runs_table_has_one_row_per_evaluation(ladder):
    cfg, _, out = ladder
    runs = read_runs(out)
    planned = plan(cfg)
    assert runs.run_ids == [r.run for r in planned] == ["3.1k-0.1xC-equal-s0", "3.1k-0.1xC-skew-s0",
                                                        "3.1k-0.2xC-equal-s0"]
    assert list(runs.cols)[:12] == ["run", "size", "mixture", "multiple", "seed", "N", "D", "step", "lr",
                                    "train_loss", "loss", "val/a"]
    for r in planned:
        rows = runs.rows_of(r.run)
        every = r.steps // cfg.evals_per_run
        assert runs["step"][rows].tolist() == sorted({*range(every, r.steps + 1, every), r.steps})
        assert runs["D"][rows[-1]] == r.tokens and set(runs["N"][rows]) == {r.n}
    val = np.stack([runs[f"val/{d}"] for d in "abc"])
    np.testing.assert_allclose(runs["loss"], val.mean(axis=0))
    final = runs["loss"][[runs.rows_of(r)[-1] for r in runs.run_ids]]
    assert final[2] < final[0] < np.log(259)  # trained; twice the tokens gives a lower loss


def test_rerun_skips_finished_runs(ladder, monkeypatch):
    cfg, _, out = ladder
    before = {p: p.read_bytes() for p in [out / "runs.csv", *out.glob("runs/*/metrics.jsonl")]}
    monkeypatch.setattr("ladderlab.ladders.run.train.train", lambda *a, **k: pytest.fail("a finished run was retrained"))
    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    assert {p: p.read_bytes() for p in before} == before
    assert {r["state"] for r in ladder_run.status_rows(out)} == {"finished"}


def test_sigkill_at_a_random_step_then_rerun_equals_uninterrupted(ladder, tmp_path):
    cfg, config, reference = ladder
    runs = plan(cfg)
    pick = random.Random(7)
    victim = runs[pick.randrange(1, len(runs))]  # the runs before it finish and must be skipped on the rerun
    step = pick.randrange(1, victim.steps)
    out = tmp_path / "killed"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config), str(out), victim.run, str(step)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    states = {r["run"]: r["state"] for r in ladder_run.status_rows(out)}
    assert states[victim.run] == "started" and list(states.values()).count("finished") == runs.index(victim)
    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    assert (out / "runs.csv").read_text() == (reference / "runs.csv").read_text()
    # the steps logged between the last checkpoint and the kill were dropped on resuming: each step appears once
    for name in (victim.run, runs[0].run):
        got, want = (read_rows(folder / "runs" / name / "metrics.jsonl") for folder in (out, reference))
        assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
        assert [r["loss"] for r in got if r["split"] == "train"] == [r["loss"] for r in want if r["split"] == "train"]
    train_rows = [r for r in read_rows(out / "runs" / victim.run / "metrics.jsonl") if r["split"] == "train"]
    assert [r["tokens"] for r in train_rows] == [r["step"] * victim.batch_size * cfg.data.seq_len for r in train_rows]


def test_bad_input_is_an_error_and_overwrites_nothing(ladder, tmp_path, capsys):
    cfg, config, reference = ladder
    with pytest.raises(LadderlabError, match=r"mixtures.bad: mixture: unknown domain 'zzz'"):
        ladder_run.run_ladder(LadderConfig(**{**cfg.__dict__, "mixtures": {"bad": {"zzz": 1.0}}}), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    before = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    code = main(["ladder", "run", str(config), "--out", str(reference), "--set", "data.seq_len=64"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "another ladder config (differs in data.seq_len)" in err
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == before
    code = main(["ladder", "run", str(config), "--out", str(reference), "--set", "sizes=(100.0,)"])
    assert code == 2 and "too far from the shape rule" in capsys.readouterr().err
    code = main(["ladder", "status", str(tmp_path)])
    assert code == 2 and "not a ladder results folder" in capsys.readouterr().err


@pytest.mark.parametrize("layout", [dict(devices=1), dict(devices=2, swarm_chunk=1, swarm_shards=2)])
def test_swarm_switch_trains_each_size_and_multiple_together(ladder, tmp_path, capsys, layout):
    """All members vmapped on one device, or one member shard per device, each looping over its members."""
    cfg, _, reference = ladder
    layout = dict(layout)
    devices = jax.devices()[:layout.pop("devices")]
    swarm = LadderConfig(**{**cfg.__dict__, "swarm": True, "multiples": (0.1,), **layout})  # two mixtures at 0.1xC
    ladder_run.run_ladder(swarm, tmp_path / "swarm", devices=devices)
    assert capsys.readouterr().out.count("swarm of 2") == 2
    assert [p.name for p in (tmp_path / "swarm" / "swarms").iterdir()] == ["3.1k-0.1xC-equal-s0"]
    got, want = read_runs(tmp_path / "swarm"), read_runs(reference)
    want = want.select(np.isin(want["run"], got.run_ids))
    assert got.run_ids == want.run_ids and got["step"].tolist() == want["step"].tolist()
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-3)  # vmapped members: same losses up to rounding
