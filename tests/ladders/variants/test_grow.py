"""Growth runs end to end on fake data: small run -> grow -> continue, FLOPs of both phases, the records, the
schedules before and after growth, the compared domains, and a G_random run that starts exactly where its small
model ended."""

from __future__ import annotations

import csv
import dataclasses
import json

import grain
import jax
import numpy as np
import pytest

from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.step import lr_table
from ladderlab.ladders.variants.grow import (GrowConfig, compared_domains, grown_run, loss_domains, mean_eval,
                                             parse_run, post_growth_rates, run_folder)
from ladderlab.ladders.variants.grow_compare import _claim, compare, scratch_steps
from ladderlab.ladders.store import read_metrics
from ladderlab.model.config import ModelConfig
from ladderlab.model.counts import param_counts

# norm_eps tiny: G_random keeps the function up to the norms' eps (see test_growth.py)
MODEL = ModelConfig(vocab_size=64, d_model=32, n_layers=4, n_heads=2, d_ff=64, qk_norm=True, norm_eps=1e-12)
TRAIN = TrainConfig(model=MODEL, data=DataConfig(seq_len=16), mesh=(1, 1, 1), batch_size=4, steps=4, lr=1e-2,
                    warmup_steps=1, eval_every=2, progress=False)
CFG = GrowConfig(train=TRAIN, runs=("scratch", "direct:depth", "random:width"), growth_steps=3, mask_steps=2,
                 opt_state="grow")


def _data(batch_size=4):
    rng = np.random.default_rng(0)
    rows = []
    for start in rng.integers(0, 64, 32):
        tokens = (start + np.arange(17)) % 64
        rows.append({"inputs": tokens[:-1].astype(np.int32), "targets": tokens[1:].astype(np.int32),
                     "segment_ids": np.ones(16, np.int32), "positions": np.arange(16, dtype=np.int32),
                     "mask": np.ones(16, np.float32)})
    batches = iter(grain.MapDataset.source(rows).shuffle(seed=0).repeat().batch(batch_size).to_iter_dataset())
    evals = {"a": [{k: np.stack([r[k] for r in rows[:8]]) for k in rows[0]}]}
    return batches, evals, None


def test_growth_comparison_counts_both_phases_and_records_operator_g_d(tmp_path):
    doc = compare(CFG, tmp_path, _data, devices=jax.devices()[:1])
    rows = {r["run"]: r for r in doc["rows"]}
    assert set(rows) == {"scratch", "direct:depth", "random:width"} and rows["scratch"]["speedup"] == 0.0
    assert set(doc["speedups"]) == {"direct:depth", "random:width"} and (tmp_path / "growth_curves.png").is_file()
    assert set(doc["speedups"]["direct:depth"]) == {"speedup", "lo", "hi", "significant"}
    n_big, n_depth = param_counts(MODEL)["non_embedding"], param_counts(ModelConfig(**{**MODEL.__dict__, "n_layers": 1}))["non_embedding"]
    with open(tmp_path / "growth_runs.csv") as f:
        table = list(csv.DictReader(f))
    stack = [r for r in table if r["run"] == "direct:depth"]
    assert [int(r["step"]) for r in stack] == [0, 2, 4]
    for r in stack:  # FLOPs = 6 n_small d + 6 N (tokens after growth), d = 3 steps x 4 x 16 tokens
        assert (r["operator"], r["dim"], int(r["d"]), int(r["seed"])) == ("direct", "depth", 192, 0)
        assert float(r["flops"]) == 6 * n_depth * 192 + 6 * n_big * int(r["step"]) * 64
        assert int(r["g"]) == 4 and int(r["D"]) == 192 + int(r["step"]) * 64  # g: the depth factor
    assert rows["direct:depth"]["param_ratio"] == pytest.approx(n_big / n_depth)  # the parameter ratio beside it
    # scratch reads the same tokens: small + grown phase; its last point is at the grown runs' last D
    assert scratch_steps(CFG) == 7 and [int(r["D"]) for r in table if r["run"] == "scratch"][-1] == int(stack[-1]["D"])
    # the small model follows the whole run's schedule (scratch's first 3 rates, not annealed at growth); the grown
    # phase the post-growth rates (default "fresh": a new warm-up and decay)
    seed0 = tmp_path / "seed0"
    scratch_lr = [r["lr"] for r in _train_rows(seed0 / "scratch")]
    assert [r["lr"] for r in _train_rows(seed0 / "small-depth")] == scratch_lr[:3]
    np.testing.assert_array_equal([r["lr"] for r in _train_rows(seed0 / "direct-depth")], post_growth_rates(CFG))
    # G_random's masks start at 0: the grown model's first eval equals the small model's last one
    _, small_evals = read_metrics(seed0 / "small-width" / "metrics.jsonl")
    grown = json.loads((seed0 / "random-width" / "result.json").read_text())
    assert grown["curve"][0]["loss"] == pytest.approx(small_evals[3]["a/loss"], abs=1e-5)
    assert all(np.isfinite(r["loss"]) for r in grown["curve"]) and grown["curve"][-1]["loss"] < grown["curve"][0]["loss"]
    with pytest.raises(LadderlabError, match="holds growth runs of another config"):  # its runs would be reused
        compare(GrowConfig(**{**CFG.__dict__, "growth_steps": 5}), tmp_path, _data)
    with pytest.raises(LadderlabError, match="'stacking:depth'"):
        compare(GrowConfig(train=TRAIN, runs=("scratch", "stacking:depth")), tmp_path / "bad", _data)
    with pytest.raises(LadderlabError, match="'direct:depth@later'"):
        compare(GrowConfig(train=TRAIN, runs=("scratch", "direct:depth@later")), tmp_path / "bad", _data)


def test_post_growth_schedules_continue_rewarm_or_start_fresh():
    cfg = GrowConfig(train=dataclasses.replace(TRAIN, steps=20, warmup_steps=4, lr=1.0, min_lr_ratio=0.1),
                     growth_steps=10, rewarm_fraction=0.5)
    whole = lr_table(dataclasses.replace(cfg.train, steps=30))  # scratch's schedule over both phases
    np.testing.assert_array_equal(post_growth_rates(cfg, "continue"), whole[10:])  # no re-warm
    fresh = post_growth_rates(cfg, "fresh")
    np.testing.assert_array_equal(fresh, lr_table(cfg.train))  # a new warm-up to the peak and a new decay
    rewarm = post_growth_rates(cfg, "rewarm")
    assert rewarm.max() == pytest.approx(0.5) and np.argmax(rewarm) == 3  # warmed up in 4 steps to half the peak
    near_end = 0.5 * (1 + np.cos(np.pi * 15 / 16))  # cosine from step 4 to the floor 0.1 at step 20; last fed: 19
    assert (rewarm[-1], fresh[-1]) == (pytest.approx(0.1 + 0.4 * near_end), pytest.approx(0.1 + 0.9 * near_end))
    assert post_growth_rates(cfg).tolist() == fresh.tolist()  # the default: the paper's code
    with pytest.raises(LadderlabError, match="rewarm_fraction=0.05"):
        post_growth_rates(dataclasses.replace(cfg, rewarm_fraction=0.05), "rewarm")


def test_compared_loss_is_over_the_trained_domains():
    mixed = dataclasses.replace(TRAIN, data=DataConfig(seq_len=16, mixture={"a": 1.0, "b": 0.0, "c": 2.0}))
    assert compared_domains(mixed, ["a", "b", "c", "d"]) == ["a", "c"]
    assert compared_domains(TRAIN, ["a", "b"]) == ["a", "b"]  # empty mixture: every domain is trained on
    evals = {0: {"a/loss": 1.0, "b/loss": 5.0, "c/loss": 3.0, "a/acc": 0.5}}
    cfg = GrowConfig(train=mixed)
    assert mean_eval(evals[0], loss_domains(cfg, evals)) == 2.0
    assert mean_eval(evals[0], loss_domains(dataclasses.replace(cfg, compare_on="all"), evals)) == 3.0
    assert parse_run("direct:depth@continue") == ("direct", "depth", "continue") and run_folder(
        "direct:depth@continue") == "direct-depth-continue"


def test_a_results_folder_written_before_a_config_field_existed_is_still_claimed(tmp_path):
    _claim(tmp_path, CFG)
    stored = json.loads((tmp_path / "grow.json").read_text())
    del stored["rewarm_fraction"], stored["train"]["min_lr_ratio"]  # as if written before these fields existed
    (tmp_path / "grow.json").write_text(json.dumps(stored))
    _claim(tmp_path, CFG)  # both hold their defaults: the folder's runs used them
    assert json.loads((tmp_path / "grow.json").read_text())["train"]["min_lr_ratio"] == TRAIN.min_lr_ratio
    (tmp_path / "grow.json").write_text(json.dumps(stored))
    changed = dataclasses.replace(CFG, train=dataclasses.replace(TRAIN, min_lr_ratio=0.3))
    with pytest.raises(LadderlabError, match="holds growth runs of another config"):
        _claim(tmp_path, changed)
    with pytest.raises(LadderlabError, match="holds growth runs of another config"):
        _claim(tmp_path, dataclasses.replace(CFG, growth_steps=4))


def _train_rows(run_dir):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]


def test_a_grown_run_killed_mid_phase_resumes_bit_exactly(tmp_path):
    """G_random in width with grown Adam moments and 2 micro-batches: the mask ramp and the grown start survive."""
    cfg = GrowConfig(**{**CFG.__dict__, "train": dataclasses.replace(TRAIN, grad_accum=2, checkpoint_every=1)})
    full = grown_run(cfg, "random", "width", tmp_path / "full", _data, devices=jax.devices()[:1])
    assert grown_run(cfg, "random", "width", tmp_path / "cut", _data, devices=jax.devices()[:1], stop_after=2) == {}
    assert sorted(p.name for p in (tmp_path / "cut" / "random-width" / "checkpoints").iterdir()) == ["1", "2"]
    resumed = grown_run(cfg, "random", "width", tmp_path / "cut", _data, devices=jax.devices()[:1])
    assert resumed["curve"] == full["curve"] and [r["step"] for r in full["curve"]] == [0, 2, 4]
    cut_rows, full_rows = _train_rows(tmp_path / "cut" / "random-width"), _train_rows(tmp_path / "full" / "random-width")
    assert [r["step"] for r in cut_rows] == [1, 2, 3, 4]
    assert [r["loss"] for r in cut_rows] == [r["loss"] for r in full_rows]  # bit-exact on CPU


def test_a_grown_run_on_a_2x2x2_mesh_equals_one_device(tmp_path):
    """G_random in depth (its transform sharded with the parameters), 2 micro-batches on the mesh, none alone."""
    one = GrowConfig(**{**CFG.__dict__, "train": dataclasses.replace(TRAIN, batch_size=8)})
    mesh = GrowConfig(**{**CFG.__dict__, "train": dataclasses.replace(TRAIN, batch_size=8, mesh=(2, 2, 2),
                                                                      grad_accum=2)})
    alone = grown_run(one, "random", "depth", tmp_path / "one", lambda: _data(8), devices=jax.devices()[:1])
    sharded = grown_run(mesh, "random", "depth", tmp_path / "mesh", lambda: _data(8))
    assert [r["step"] for r in sharded["curve"]] == [0, 2, 4]
    np.testing.assert_allclose([r["loss"] for r in sharded["curve"]], [r["loss"] for r in alone["curve"]], rtol=2e-5)
    np.testing.assert_allclose([r["loss"] for r in _train_rows(tmp_path / "mesh" / "random-depth")],
                               [r["loss"] for r in _train_rows(tmp_path / "one" / "random-depth")], rtol=2e-5)
