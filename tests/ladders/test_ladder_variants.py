"""Ladder variants: growth variants (planned, trained by grown_run, recorded with operator, g, d and both phases'
FLOPs) and continual-pre-training phases (starting exactly from the base run's final parameters)."""

from __future__ import annotations

import io
import json

import jax
import numpy as np
import pytest
from rich.console import Console

from ladderlab.cli import main
from ladderlab.data import pipeline
from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders import runner as ladder_run
from ladderlab.ladders.run.checkpoint import Checkpoints, read_params
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import plan, train_config
from ladderlab.ladders.report import make_report
from ladderlab.ladders.store import LadderStore
from ladderlab.ladders.run.train import Trainer
from ladderlab.model.counts import param_counts
from ladderlab.model.growth.operators import small_model
from ladderlab.scaling.tables.runs import read_runs
from tests.ladders.test_ladder_run import write_corpus

SHAPE = (16, 4, 2, 64)  # d_model, layers, heads, d_ff: depth growth by g=4 starts from one layer


def config(corpus, root, **changes) -> LadderConfig:
    data = DataConfig(corpus=str(corpus), cache_dir=str(root / "cache"), seq_len=32, eval_tokens=256)
    return LadderConfig(**{"data": data, "sizes": (), "shapes": {"t": SHAPE}, "multiples": (0.02,), "batch_size": 8,
                           "evals_per_run": 2, "growth": ("direct:depth",), "growth_factor": 4,
                           "growth_fraction": 0.25,
                           "cpt": {"dom": {"base": "equal", "mixture": {"a": 1.0}, "fraction": 0.25}}, **changes})


def test_swarm_leaves_variants_and_cpt_bases_alone(tmp_path):
    """With swarm=True, the mixtures of one size and multiple train together, but a CPT phase's base trains alone
    (the phase starts from the base's own checkpoint), as do growth variants and the phases themselves."""
    cfg = config(tmp_path / "corpus", tmp_path, swarm=True,
                 mixtures={"equal": {"a": 1.0, "b": 1.0}, "ab": {"a": 3.0, "b": 1.0}, "ba": {"a": 1.0, "b": 3.0}})
    units = [[r.run for r in unit] for unit in ladder_run._units(plan(cfg), cfg.swarm)]
    assert sorted(units) == sorted([["t-0.02xC-equal-s0"], ["t-0.02xC-ab-s0", "t-0.02xC-ba-s0"],
                                    ["t-0.02xC-equal-s0-grow-direct-depth"], ["t-0.02xC-equal-s0-cpt-dom"],
                                    ["t-0.02xC-ab-s0-grow-direct-depth"], ["t-0.02xC-ba-s0-grow-direct-depth"]])


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """A base run, its direct:depth variant and a CPT phase on domain a, trained into one folder."""
    root = tmp_path_factory.mktemp("variants")
    cfg = config(write_corpus(root / "corpus"), root)
    out = root / "out"
    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    return cfg, out


def test_plan_emits_growth_variants_and_cpt_phases(tmp_path):
    cfg = config(tmp_path / "corpus", tmp_path)
    base, grown, cpt = plan(cfg)
    assert [r.run for r in (base, grown, cpt)] == ["t-0.02xC-equal-s0", "t-0.02xC-equal-s0-grow-direct-depth",
                                                   "t-0.02xC-equal-s0-cpt-dom"]
    per_step = 8 * 32
    assert (base.steps, grown.growth_steps, grown.steps, cpt.steps) == (32, 8, 24, 8)
    n_small = param_counts(small_model(base.model, 4, "depth"))["non_embedding"]
    assert grown.flops == 6.0 * n_small * 8 * per_step + 6.0 * base.n * 24 * per_step
    assert grown.tokens == base.tokens == 32 * per_step and (grown.g, grown.param_ratio) == (4, base.n / n_small)
    assert (cpt.base_run, cpt.mixture, cpt.weights, cpt.tokens) == (base.run, "dom", {"a": 1.0}, 8 * per_step)
    assert (cpt.tokens_before, cpt.flops_before, cpt.flops) == (base.tokens, base.flops, 6.0 * base.n * 8 * per_step)
    path, gin = tmp_path / "plan.json", tmp_path / "ladder.gin"
    gin.write_text(f"LadderConfig.sizes = ()\nLadderConfig.shapes = {{'t': {SHAPE}}}\n"
                   f"LadderConfig.growth = ('zero:width',)\n")
    assert main(["ladder", "plan", str(gin), "--json", str(path)]) == 0
    shown = [r["run"] for r in json.loads(path.read_text())["runs"]]
    assert [r for r in shown if "-grow-" in r] == [r.replace("-s0", "-s0-grow-zero-width") for r in shown if "-grow-" not in r]


@pytest.mark.parametrize("change, message", [
    ({"growth": ("direct:height",)}, "growth: 'direct:height': expected OPERATOR:DIM"),
    ({"growth_fraction": 1.0}, "growth_fraction=1.0: gives 32 of t-0.02xC-equal-s0's 32 steps"),
    ({"cpt": {"x": {"base": "equal", "mixture": {}}}}, r"cpt.x=.*: expected"),
    ({"cpt": {"x": {"base": "web", "mixture": {}, "fraction": 1.0}}}, "cpt.x: base='web' is not one of"),
])
def test_bad_variants_are_errors(tmp_path, change, message):
    with pytest.raises(LadderlabError, match=message):
        plan(config(tmp_path, tmp_path, **change))


def test_grown_run_row_carries_operator_g_d_and_both_phases_flops(ladder):
    cfg, out = ladder
    _, grown, _ = plan(cfg)
    runs = read_runs(out)
    rows = runs.rows_of(grown.run)
    doc = json.loads((out / "runs" / grown.run / "direct-depth" / "result.json").read_text())
    assert runs["operator"][rows].tolist() == ["direct:depth"] * 2 and set(runs["growth_factor"][rows]) == {doc["g"]}
    assert set(runs["growth_tokens"][rows]) == {doc["d"]} == {8 * 8 * 32}
    assert runs["step"][rows].tolist() == [12, 24] and runs["D"][rows[-1]] == grown.tokens
    assert runs["flops"][rows].tolist() == [r["flops"] for r in doc["curve"][1:]]
    assert runs["flops"][rows[-1]] == grown.flops  # small phase + grown phase
    np.testing.assert_allclose(runs["loss"][rows], [r["loss"] for r in doc["curve"][1:]], rtol=1e-6)
    plain = runs.rows_of(plan(cfg)[0].run)
    assert runs["operator"][plain].tolist() == ["scratch"] * 2 and runs["growth_tokens"][plain].tolist() == [0, 0]
    assert runs["flops"][plain].tolist() == [6.0 * r.n * r.tokens * k / 2 for r in plan(cfg)[:1] for k in (1, 2)]


def test_cpt_starts_from_the_base_runs_final_params(ladder):
    cfg, out = ladder
    base, _, cpt = plan(cfg)
    runs = read_runs(out)
    rows = runs.rows_of(cpt.run)
    assert runs["base_run"][rows].tolist() == [base.run] * 2 and runs["mixture"][rows].tolist() == ["dom"] * 2
    assert runs["D"][rows].tolist() == [base.tokens + 4 * 256, base.tokens + 8 * 256]
    # the phase's first training loss is the base model's loss on the phase's first batch
    tc, bc = train_config(cfg, cpt, out), train_config(cfg, base, out)
    trainer = Trainer(tc, jax.devices()[:1])
    source = Checkpoints(out / "runs" / base.run / "checkpoints")
    params = source.restore(trainer.abstract, pipeline.train_batches(bc.data, bc.batch_size))[0]["params"]
    source.close()
    with jax.set_mesh(trainer.mesh):
        ce, _, tokens = trainer.eval_step(params, trainer.global_batch(next(pipeline.train_batches(tc.data, 8))))
    first = json.loads((out / "runs" / cpt.run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
    np.testing.assert_allclose(first["loss"], float(ce.sum() / tokens.sum()), rtol=1e-5)  # eval_step: per-row sums
    # the phase is a run of its own, whose config.gin names the base's final checkpoint: it started from those
    # parameters bit for bit, and keeps only its own checkpoints
    init_from = out / "runs" / base.run / "checkpoints" / str(base.steps)
    assert f"TrainConfig.init_from = '{init_from}'\n" in (out / "runs" / cpt.run / "config.gin").read_text()
    assert [p.name for p in (out / "runs" / cpt.run / "checkpoints").iterdir()] == [str(cpt.steps)]
    start = read_params(str(init_from), trainer.abstract["params"])
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), start, params))


def test_rerun_skips_finished_variants(ladder, monkeypatch):
    cfg, out = ladder
    before = (out / "runs.csv").read_bytes()
    monkeypatch.setattr("ladderlab.ladders.run.train.train", lambda *a, **k: pytest.fail("a finished run was retrained"))
    monkeypatch.setattr("ladderlab.ladders.variants.grow.grown_run", lambda *a, **k: pytest.fail("regrown"))
    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    assert (out / "runs.csv").read_bytes() == before
    assert [r["state"] for r in ladder_run.status_rows(out)] == ["finished"] * 3


def test_report_fits_leave_the_variants_out(ladder):
    _, out = ladder
    summary = make_report(out, bootstrap=0, console=Console(file=io.StringIO()))
    assert summary["runs"] == 3  # the final-loss table lists every run; the fits only the plain one
    assert summary["scaling"]["skipped"].startswith("scaling law skipped: 1 runs of mixture 'equal'")


def test_folder_from_before_the_variant_fields_still_opens(tmp_path):
    cfg = config(tmp_path, tmp_path, growth=(), cpt={})
    LadderStore.create(tmp_path / "out", cfg, plan(cfg))
    meta = json.loads((tmp_path / "out" / "ladder.json").read_text())
    for key in ("growth", "growth_factor", "growth_fraction", "cpt"):
        del meta["config"][key]
    (tmp_path / "out" / "ladder.json").write_text(json.dumps(meta))
    assert LadderStore.create(tmp_path / "out", cfg, plan(cfg)).meta()["config"]["growth"] == []
    with pytest.raises(LadderlabError, match="differs in growth"):
        LadderStore.create(tmp_path / "out", config(tmp_path, tmp_path, cpt={}), plan(cfg))


def test_cpt_phases_take_their_own_peak_rate_and_schedule(tmp_path):
    cfg = config(tmp_path, tmp_path, growth=(), cpt={
        "hot": {"base": "equal", "mixture": {"a": 1.0}, "fraction": 0.25, "lr": 0.5, "schedule": "wsd"},
        "plain": {"base": "equal", "mixture": {"a": 1.0}, "fraction": 0.25}})
    base, hot, plain = plan(cfg)
    assert (hot.lr, hot.schedule, plain.lr, plain.schedule) == (0.5 * base.lr, "wsd", base.lr, "cosine")
    tc = train_config(cfg, hot, tmp_path)
    assert (tc.lr, tc.schedule, train_config(cfg, plain, tmp_path).schedule) == (0.5 * base.lr, "wsd", "cosine")
    with pytest.raises(LadderlabError, match="'schedule': one of cosine, wsd, constant"):
        plan(config(tmp_path, tmp_path, cpt={"x": {"base": "equal", "mixture": {}, "fraction": 1.0, "schedule": "x"}}))
