"""Growth runs end to end on fake data: small run -> grow -> continue, FLOPs of both phases, the records, and a
G_random run that starts exactly where its small model ended."""

from __future__ import annotations

import csv
import json

import grain
import jax
import numpy as np
import pytest

from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.grow_config import GrowConfig
from ladderlab.ladders.grow_run import compare, scratch_steps
from ladderlab.ladders.ladder_store import read_metrics
from ladderlab.model.config import ModelConfig
from ladderlab.model.counts import param_counts

# norm_eps tiny: G_random keeps the function up to the norms' eps (see test_growth.py)
MODEL = ModelConfig(vocab_size=64, d_model=32, n_layers=4, n_heads=2, d_ff=64, qk_norm=True, norm_eps=1e-12)
TRAIN = TrainConfig(model=MODEL, data=DataConfig(seq_len=16), mesh=(1, 1, 1), batch_size=4, steps=4, lr=1e-2,
                    warmup_steps=1, eval_every=2, progress=False)
CFG = GrowConfig(train=TRAIN, runs=("scratch", "direct:depth", "random:width"), growth_steps=3, mask_steps=2,
                 opt_state="grow")


def _data():
    rng = np.random.default_rng(0)
    rows = []
    for start in rng.integers(0, 64, 32):
        tokens = (start + np.arange(17)) % 64
        rows.append({"inputs": tokens[:-1].astype(np.int32), "targets": tokens[1:].astype(np.int32),
                     "segment_ids": np.ones(16, np.int32), "positions": np.arange(16, dtype=np.int32),
                     "mask": np.ones(16, np.float32)})
    batches = iter(grain.MapDataset.source(rows).shuffle(seed=0).repeat().batch(4).to_iter_dataset())
    evals = {"a": [{k: np.stack([r[k] for r in rows[:8]]) for k in rows[0]}]}
    return batches, evals, None


def test_growth_comparison_counts_both_phases_and_records_operator_g_d(tmp_path):
    doc = compare(CFG, tmp_path, _data, devices=jax.devices()[:1])
    rows = {r["run"]: r for r in doc["rows"]}
    assert set(rows) == {"scratch", "direct:depth", "random:width"} and rows["scratch"]["speedup"] == 0.0
    n_big, n_depth = param_counts(MODEL)["non_embedding"], param_counts(ModelConfig(**{**MODEL.__dict__, "n_layers": 1}))["non_embedding"]
    with open(tmp_path / "growth_runs.csv") as f:
        table = list(csv.DictReader(f))
    stack = [r for r in table if r["run"] == "direct:depth"]
    assert [int(r["step"]) for r in stack] == [0, 2, 4]
    for r in stack:  # FLOPs = 6 n_small d + 6 N (tokens after growth), d = 3 steps x 4 x 16 tokens
        assert (r["operator"], r["dim"], int(r["d"])) == ("direct", "depth", 192)
        assert float(r["flops"]) == 6 * n_depth * 192 + 6 * n_big * int(r["step"]) * 64
        assert float(r["g"]) == pytest.approx(n_big / n_depth) and int(r["D"]) == 192 + int(r["step"]) * 64
    assert scratch_steps(CFG) == 4 + int(np.ceil(3 * max(n_depth, param_counts(ModelConfig(
        **{**MODEL.__dict__, "d_model": 16, "n_heads": 1, "d_ff": 32}))["non_embedding"]) / n_big))
    # G_random's masks start at 0: the grown model's first eval equals the small model's last one
    _, small_evals = read_metrics(tmp_path / "small-width" / "metrics.jsonl")
    grown = json.loads((tmp_path / "random-width" / "result.json").read_text())
    assert grown["curve"][0]["loss"] == pytest.approx(small_evals[3]["a/loss"], abs=1e-5)
    assert all(np.isfinite(r["loss"]) for r in grown["curve"]) and grown["curve"][-1]["loss"] < grown["curve"][0]["loss"]
    with pytest.raises(LadderlabError, match="holds growth runs of another config"):  # its runs would be reused
        compare(GrowConfig(**{**CFG.__dict__, "growth_steps": 5}), tmp_path, _data)
    with pytest.raises(LadderlabError, match="'stacking:depth'"):
        compare(GrowConfig(train=TRAIN, runs=("scratch", "stacking:depth")), tmp_path / "bad", _data)
