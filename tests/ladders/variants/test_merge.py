"""Data ablations by merging: partition phases found by their one-domain mixtures, share-weighted parameter averages
evaluated by the trainer's eval step, and `ladderlab ablate`'s table and compute."""

from __future__ import annotations

import csv
import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.config import load_config
from ladderlab.errors import LadderlabError
from ladderlab.ladders import runner as ladder_run
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.variants.merge import average, merged_losses, partitions, read_candidates
from ladderlab.scaling.tables.runs import read_runs
from tests.ladders.test_ladder_run import write_corpus

GIN = """
DataConfig.corpus = "{corpus}"
DataConfig.cache_dir = "{cache}"
DataConfig.seq_len = 32
DataConfig.eval_tokens = 256
LadderConfig.sizes = ()
LadderConfig.shapes = {{"t": (16, 1, 2, 64)}}
LadderConfig.multiples = (0.05,)
LadderConfig.batch_size = 8
LadderConfig.evals_per_run = 1
LadderConfig.mixtures = {{"equal": {{"a": 1.0, "b": 1.0, "c": 1.0}}}}
LadderConfig.cpt = {{"a": {{"base": "equal", "mixture": {{"a": 1.0}}, "fraction": 0.25}},
                    "b": {{"base": "equal", "mixture": {{"b": 2.0, "c": 0.0}}, "fraction": 0.25}}}}
"""


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """A base run and its partition phases on a and b, trained."""
    root = tmp_path_factory.mktemp("merge")
    gin = root / "ablate.gin"
    gin.write_text(GIN.format(corpus=write_corpus(root / "corpus"), cache=root / "cache"))
    cfg = load_config(LadderConfig, str(gin), [])
    ladder_run.run_ladder(cfg, root / "out")
    return cfg, gin, root / "out"


def final_losses(out, run):
    runs = read_runs(out / "runs.csv")
    last = runs.rows_of(run)[-1]
    return {d: runs[f"val/{d}"][last] for d in "abc"}


def test_partitions_are_the_one_domain_phases(ladder):
    cfg, _, _ = ladder
    base, parts = partitions(cfg)
    assert base.run == "t-0.05xC-equal-s0"
    assert {d: r.run for d, r in parts.items()} == {"a": f"{base.run}-cpt-a", "b": f"{base.run}-cpt-b"}


def test_a_partitions_own_weights_give_its_own_evaluation(ladder, tmp_path):
    cfg, _, out = ladder
    (tmp_path / "M.csv").write_text("id,a,b\nonly_a,1,0\nonly_b,0,2\nhalf,1,1\n")
    ablation = read_candidates(cfg, tmp_path / "M.csv")
    np.testing.assert_array_equal(ablation.shares, [[1, 0], [0, 1], [0.5, 0.5]])
    losses, evals = merged_losses(cfg, out, ablation)
    assert list(losses) == ["val/a", "val/b", "val/c"] and evals["tokens"] > 0
    for k, part in ((0, "a"), (1, "b")):  # the run's last evaluation, by its own trainer during training
        logged = final_losses(out, ablation.parts[part].run)
        assert [losses[f"val/{d}"][k] for d in "abc"] == pytest.approx([logged[d] for d in "abc"], rel=1e-6)
    assert all(losses[c][2] != losses[c][0] for c in losses)


def test_average_is_exact_for_one_hot_weights_and_keeps_dtypes():
    x = {"w": jnp.array([1.5, -2.25], jnp.float32), "h": jnp.array([0.1, 3.0], jnp.bfloat16)}
    y = {"w": jnp.array([7.0, 1e-8], jnp.float32), "h": jnp.array([-4.0, 2.0], jnp.bfloat16)}
    one_hot = average([x, y], np.array([1.0, 0.0]))
    assert all(jnp.array_equal(one_hot[k], x[k]) and one_hot[k].dtype == x[k].dtype for k in x)
    half = average([x, y], np.array([0.5, 0.5]))
    assert half["h"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(half["w"], np.float32(0.5) * np.asarray(x["w"]) + np.float32(0.5) * np.asarray(y["w"]))
    np.testing.assert_array_equal(np.asarray(half["h"], np.float32), [-1.953125, 2.5])  # fp32 sum, rounded once


def test_ablate_writes_the_proxy_table_and_compute(ladder, tmp_path, capsys):
    cfg, gin, out = ladder
    (tmp_path / "M.csv").write_text("mix,b,a\nm1,0.2,0.8\nm2,1,0\n")
    assert main(["ablate", str(gin), "--mixtures", str(tmp_path / "M.csv"), "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "2 mixtures x 3 validation losses, from 2 partition models" in printed
    rows = list(csv.DictReader((out / "ablation" / "proxy_losses.csv").open()))
    assert list(rows[0]) == ["mix", "val/a", "val/b", "val/c"] and [r["mix"] for r in rows] == ["m1", "m2"]
    logged = final_losses(out, f"{partitions(cfg)[0].run}-cpt-b")
    assert [float(rows[1][f"val/{d}"]) for d in "abc"] == pytest.approx([logged[d] for d in "abc"], rel=1e-6)
    doc = json.loads((out / "ablation" / "ablation.json").read_text())
    base, parts = partitions(cfg)
    assert doc["shares"] == {"m1": {"a": 0.8, "b": 0.2}, "m2": {"a": 0.0, "b": 1.0}}
    flops = doc["flops"]
    assert flops["merging"]["total"] == base.flops + parts["a"].flops + parts["b"].flops + \
        2.0 * base.n * doc["eval_tokens"] * 2
    assert flops["training"] == {"base": base.flops, "mixtures": 2 * parts["a"].flops,
                                 "total": base.flops + 2 * parts["a"].flops}


@pytest.mark.parametrize("table, message", [
    ("id,a,zz\nm1,0.5,0.5\n", "M.csv: share column 'zz' names no partition (partitions: a, b)"),
    ("id,a,b\nm1,0,0\n", "M.csv: row 2 (id 'm1'): shares [0.0, 0.0] must be finite, >= 0 and not all 0"),
])
def test_bad_mixtures_are_one_line_before_any_training(tmp_path, capsys, table, message):
    gin = tmp_path / "ablate.gin"
    gin.write_text(GIN.format(corpus=write_corpus(tmp_path / "corpus"), cache=tmp_path / "cache"))
    (tmp_path / "M.csv").write_text(table)
    code = main(["ablate", str(gin), "--mixtures", str(tmp_path / "M.csv"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_partitions_need_one_domain_phases_of_one_base():
    one = {"base": "equal", "mixture": {"a": 1.0}, "fraction": 0.5}
    cfg = LadderConfig(sizes=(3e3,), multiples=(1.0,), cpt={"a": one, "ab": {**one, "mixture": {"a": 1.0, "b": 1.0}}})
    assert list(partitions(cfg)[1]) == ["a"]  # a two-domain phase is not a partition
    with pytest.raises(LadderlabError, match="no phase trains on one domain alone"):
        partitions(LadderConfig(cpt={}))
    with pytest.raises(LadderlabError, match=r"continue 2 base runs \(3.1k-1xC-equal-s0, 3.1k-1xC-equal-s1\)"):
        partitions(dataclasses.replace(cfg, seeds=(0, 1)))
    with pytest.raises(LadderlabError, match="phases 'a' and 'a2' both train on 'a' alone"):
        partitions(dataclasses.replace(cfg, cpt={"a": one, "a2": one}))
