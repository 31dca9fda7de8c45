"""W&B tracking of a tiny ladder, offline (no network): a run SIGKILLed past its first checkpoint and resumed is one
tracked run (one id in both offline run folders), whose steps after resuming continue from the checkpoint with the
losses of metrics.jsonl; the report's fitted laws and plots are logged to the ladder's group; each swarm member and
each phase of a grown run is a tracked run of its own. Skipped without the `ladderlab[wandb]` extra (`make test-cloud`
installs it in its own venv), except the one-line error without it."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import textwrap

import dataclasses

import jax
import pytest

from test_ladder_report import chinchilla, fake_ladder
from test_ladder_run import KILLER, write_corpus

from ladderlab.config import dump_gin, load_config
from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders import runner as ladder_run
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import plan
from ladderlab.ladders.report import make_report
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.metrics import read_rows
from ladderlab.ladders.run.tracking import numbers
from ladderlab.ladders.run.train import train
from ladderlab.ladders.variants.grow import GrowConfig
from ladderlab.ladders.variants.grow_compare import compare
from ladderlab.ladders.variants.swarm import train_swarm
from ladderlab.model.config import ModelConfig

needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="needs the wandb extra")

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of 32 KiB blocks after its 7-byte W&B header


def records(path) -> list:
    """The protobuf records of an offline run's .wandb file (record chunks: CRC, length, type 1 full .. 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, at, out, part = path.read_bytes(), 7, [], b""
    assert data[:4] == b":W&B"
    while at + 7 <= len(data):
        if BLOCK - at % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            at += BLOCK - at % BLOCK
            continue
        length, kind = struct.unpack_from("<HB", data, at + 4)
        part += data[at + 7:at + 7 + length]
        at += 7 + length
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(part))
            part = b""
    return out


def history(recs: list) -> list[dict]:
    return [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in recs if r.WhichOneof("record_type") == "history"]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline, its own files under tmp_path/home."""
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")


def tracked(run_dir) -> tuple[str, object, list[dict]]:
    """(the id in run_dir/wandb_id, the run record, the history) of a run folder's one offline W&B run."""
    run_id = (run_dir / "wandb_id").read_text().strip()
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    recs = records(folder / f"run-{run_id}.wandb")
    (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    return run_id, run, history(recs)


@needs_wandb
def test_a_killed_and_resumed_run_is_one_tracked_run_and_the_report_is_logged(tmp_path, offline):
    corpus = write_corpus(tmp_path / "corpus")
    config = tmp_path / "ladder.gin"
    config.write_text(textwrap.dedent(f"""
        DataConfig.corpus = "{corpus}"
        DataConfig.cache_dir = "{tmp_path / 'cache'}"
        DataConfig.seq_len = 32
        DataConfig.eval_tokens = 256
        LadderConfig.sizes = (3e3,)
        LadderConfig.multiples = (0.1, 0.2)
        LadderConfig.evals_per_run = 3
        LadderConfig.wandb_project = "ladderlab-test"
        LadderConfig.wandb_mode = "offline"
    """))
    cfg = load_config(LadderConfig, config)
    runs, out = plan(cfg), tmp_path / "killed"
    victim = runs[0]
    every = victim.steps // cfg.evals_per_run
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config), str(out), victim.run, str(victim.steps - 1)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_dir = out / "runs" / victim.run
    run_id = (run_dir / "wandb_id").read_text().strip()

    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    assert (run_dir / "wandb_id").read_text().strip() == run_id
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)
    (killed, resumed) = (records(f / f"run-{run_id}.wandb") for f in folders)
    # what the killed process had not flushed died with it (offline, W&B's service buffers its file)
    assert all(r.run.run_id == run_id for r in killed if r.WhichOneof("record_type") == "run")
    (run,) = [r.run for r in resumed if r.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.project, run.run_group, run.display_name, run.job_type) == \
        (run_id, "ladderlab-test", "ladder/killed", victim.run, "train")
    # the resumed run logs from its checkpoint's next step on: the rows metrics.jsonl kept, to the last step
    logged = [r for r in read_rows(run_dir / "metrics.jsonl") if r["split"] == "train"]
    after = [(h["step"], h["train/loss"]) for h in history(resumed) if "train/loss" in h]
    start = after[0][0] - 1
    assert start > 0 and start % every == 0, after
    assert after == [(r["step"], r["loss"]) for r in logged if r["step"] > start]
    assert after[-1][0] == victim.steps
    before = [h["step"] for h in history(killed) if "train/loss" in h]
    assert before == [r["step"] for r in logged][:len(before)]
    other = out / "runs" / runs[1].run
    assert (other / "wandb_id").read_text().strip() != run_id

    summary = make_report(out, bootstrap=0)
    (folder,) = (out / "report" / "wandb").glob("offline-run-*")
    recs = records(next(folder.glob("run-*.wandb")))
    (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    assert (run.run_group, run.job_type) == ("ladder/killed", "report")
    assert json.loads((folder / "files" / "summary.json").read_text()) == summary  # a link to the report's own
    images = {k.removesuffix("/_type"): v for h in history(recs) for k, v in h.items() if k.endswith("/_type")}
    assert images == {f"report/{p.removesuffix('.png')}": "image-file" for p in summary["plots"]} and images


@needs_wandb
def test_the_fitted_laws_and_plots_go_to_the_report_run(tmp_path, offline):
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4, 3.6e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    store = fake_ladder(tmp_path / "out", cfg, lambda r: [chinchilla(r.n, r.tokens)] * 3)
    (store.run_dir(plan(cfg)[0].run) / "config.gin").write_text(dump_gin(TrainConfig(
        wandb_project="p", wandb_mode="offline", wandb_group="ladder/out")))
    summary = make_report(store.root, bootstrap=10)
    (folder,) = (store.root / "report" / "wandb").glob("offline-run-*")
    recs = records(next(folder.glob("run-*.wandb")))
    (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.run_group, run.job_type, run.display_name) == ("p", "ladder/out", "report",
                                                                             "ladder/out report")
    logged = {u.key: json.loads(u.value_json) for r in recs if r.WhichOneof("record_type") == "summary"
              for u in r.summary.update if u.key and not u.key.startswith("_")}
    fit = summary["scaling"]["fit"]["params"]
    assert {k: logged[f"scaling/fit/params/{k}"] for k in fit} == fit and fit["alpha"] == pytest.approx(0.45, rel=0.02)
    assert logged == numbers({k: summary[k] for k in ("scaling", "mixing", "tasks", "target")})
    assert logged["scaling/held_out/actual"] == summary["scaling"]["held_out"]["actual"]
    images = {k.removesuffix("/_type") for h in history(recs) for k, v in h.items() if v == "image-file"}
    assert images == {"report/loss_curves", "report/scaling_fit", "report/predicted_vs_actual"}


def test_without_the_extra_a_tracked_run_stops_before_writing_with_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails, as without the extra
    cfg = TrainConfig(model=ModelConfig(vocab_size=264, d_model=8, n_layers=1, n_heads=1, d_ff=32), steps=20,
                      run_dir=str(tmp_path / "run"), wandb_project="p")
    with pytest.raises(LadderlabError) as e:
        train(cfg, batches=iter([]))
    assert str(e.value) == (f"run_dir {tmp_path / 'run'}: wandb_project='p': W&B tracking needs the wandb extra: "
                            "pip install 'ladderlab[wandb]'")
    assert not (tmp_path / "run").exists()


TINY = TrainConfig(model=ModelConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=1, d_ff=32), mesh=(1, 1, 1),
                   data=DataConfig(seq_len=16), batch_size=4, steps=3, lr=1e-2, warmup_steps=1, progress=False,
                   wandb_project="p", wandb_mode="offline", wandb_group="ladder/out")


@needs_wandb
def test_each_swarm_member_is_its_own_tracked_run_in_the_group(tmp_path, offline, fake_batches):
    members = [dataclasses.replace(TINY, run_dir=str(tmp_path / f"m{i}"), seed=i) for i in range(2)]
    train_swarm(members, str(tmp_path / "swarm"), jax.devices()[:1],
                batches=[fake_batches(4, 16, 64, seed=i) for i in range(2)], eval_sets={})
    ids = set()
    for i in range(2):
        run_id, run, logged = tracked(tmp_path / f"m{i}")
        assert (run.project, run.run_group, run.display_name, run.job_type) == ("p", "ladder/out", f"m{i}", "train")
        assert [(h["step"], h["train/loss"]) for h in logged] == \
            [(r["step"], r["loss"]) for r in read_rows(tmp_path / f"m{i}" / "metrics.jsonl")]
        assert len(logged) == 3
        ids.add(run_id)
    assert len(ids) == 2


@needs_wandb
def test_each_run_of_a_growth_comparison_is_its_own_tracked_run_in_its_group(tmp_path, offline, fake_batches):
    """The scratch run, the small model and the grown model: one W&B run each, named by seed and run folder."""
    cfg = GrowConfig(train=dataclasses.replace(TINY, steps=4, eval_every=2, wandb_group=""), growth_factor=2,
                     runs=("scratch", "direct:depth"), growth_steps=2)
    evals = {"a": [next(fake_batches(4, 16, 64, seed=1))]}
    compare(cfg, tmp_path / "grow", lambda: (fake_batches(4, 16, 64), evals, None), jax.devices()[:1])
    seed0 = tmp_path / "grow" / "seed0"
    (scratch_id, scratch, full), (small_id, small, before), (grown_id, grown, after) = (
        tracked(seed0 / name) for name in ("scratch", "small-depth", "direct-depth"))
    assert len({scratch_id, small_id, grown_id}) == 3
    assert [(r.run_group, r.display_name) for r in (scratch, small, grown)] == \
        [("grow/grow", "seed0/scratch"), ("grow/grow", "seed0/small-depth"), ("grow/grow", "seed0/direct-depth")]
    assert [h["step"] for h in full if "train/loss" in h] == [1, 2, 3, 4, 5, 6]
    assert [h["step"] for h in before if "train/loss" in h] == [1, 2]
    assert [(h["step"], h["eval/a/loss"]) for h in after if "eval/a/loss" in h] == \
        [(r["step"], r["a/loss"]) for r in read_rows(seed0 / "direct-depth" / "metrics.jsonl") if r["split"] == "eval"]
    assert [h["step"] for h in after if "eval/a/loss" in h] == [0, 2, 4]
    assert [h["step"] for h in after if "train/loss" in h] == [1, 2, 3, 4]
