"""Ladder plans: the OLMo ladder's rules of N (checked against its published rungs), run lists, bad specs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ladderlab.data.config import DataConfig
from ladderlab.cli import main
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import hyperparameters, mixtures, plan, size_label

# The OLMo ladder's rungs (4096-token sequences, batch rounded to a multiple of 64): N, batch, warm-up steps.
OLMO = [(190_354_176, 128, 363), (371_262_464, 192, 472), (758_220_288, 320, 578), (1_279_395_840, 384, 813)]


@pytest.mark.parametrize("n, batch, warmup", OLMO)
def test_rules_reproduce_the_olmo_ladder(n, batch, warmup):
    cfg = LadderConfig(data=DataConfig(seq_len=4096), batch_multiple=64, lr_max=1.0)
    got_batch, lr, warmup_tokens = hyperparameters(cfg, n)
    assert got_batch == batch
    assert round(warmup_tokens / (batch * 4096)) == warmup
    # OLMo divides the 2048-token LR by 4 for 4096-token sequences; the 2048-token rule itself:
    assert lr == pytest.approx(0.0047 * (n / 1.08e8) ** (-1 / 3))


def test_tiny_models_keep_the_batch_rule_and_cap_the_lr():
    cfg = LadderConfig()
    assert hyperparameters(cfg, 2e4) == (8, 0.02, 2e4)  # 160 x 2048 x (2e4/1.08e8)^(2/3) tokens = 8.3 rows of 128
    assert hyperparameters(dataclasses.replace(cfg, lr=3e-3, batch_size=24), 2e4)[:2] == (24, 3e-3)


def test_plan_lists_sizes_multiples_mixtures_and_seeds():
    cfg = LadderConfig(sizes=(8e3, 2.5e4), multiples=(1.0, 2.0), seeds=(0, 1), width_per_layer=32,
                       mixtures={"equal": {}, "code": {"code": 1.0}}, mixture_grid="smallest")
    runs = plan(cfg)
    assert [r.run for r in runs] == [
        "8.3k-1xC-equal-s0", "8.3k-1xC-equal-s1", "8.3k-1xC-code-s0", "8.3k-1xC-code-s1",
        "8.3k-2xC-equal-s0", "8.3k-2xC-equal-s1", "25k-1xC-equal-s0", "25k-1xC-equal-s1",
        "25k-2xC-equal-s0", "25k-2xC-equal-s1"]
    first = runs[0]
    assert (first.n, first.model.d_model, first.model.n_layers) == (8320, 16, 1)
    assert first.steps == round(20 * 8320 / (8 * 128)) and first.tokens == first.steps * 8 * 128
    assert first.flops == 6 * 8320 * first.tokens
    assert first.warmup_steps == round(8320 / 1024)


def test_designed_mixtures_come_from_the_mixing_law_design():
    mixes = mixtures(LadderConfig(design=4, design_domains=("a", "b", "c")))
    assert list(mixes) == ["equal", "mix1", "mix2", "mix3", "mix4"]
    assert all(abs(sum(m.values()) - 1) < 1e-5 and set(m) <= {"a", "b", "c"} for m in list(mixes.values())[1:])


@pytest.mark.parametrize("change, words", [
    (dict(sizes=(1000.0,)), ["1000", "too far from the shape rule", "3136"]),
    (dict(sizes=(8e3, 8.5e3)), ["same model"]),
    (dict(design=3), ["design_domains"]),
    (dict(shapes={"odd": (30, 1, 4, 64)}), ["n_heads=4"]),
    (dict(multiples=(0.0,)), ["multiples"]),
    (dict(model_options={"remat": True, "dmodel": 8}), ["model_options: dmodel is not one of", "scan_layers"]),
])
def test_bad_specs_are_one_line_errors(change, words):
    with pytest.raises(LadderlabError) as e:
        plan(dataclasses.replace(LadderConfig(), **change))
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_size_labels():
    assert [size_label(v) for v in (950, 8320, 24_832, 190_354_176, 1.3e9)] == ["950", "8.3k", "25k", "190M", "1.3B"]


def test_cli_plan_prints_every_run(tmp_path, capsys):
    cfg = tmp_path / "l.gin"
    cfg.write_text("LadderConfig.sizes = (8e3, 2.5e4)\nLadderConfig.multiples = (1.0, 4.0)\n"
                   "LadderConfig.width_per_layer = 32\n")
    assert main(["ladder", "plan", str(cfg), "--set", "seeds=(0, 1)", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "8 runs" in out and "25k-4xC-equal-s1" in out
    assert main(["ladder", "plan", str(cfg), "--set", "sizes=(10.0,)"]) == 2
    assert "too far from the shape rule" in capsys.readouterr().err


def test_model_options_reach_every_run_of_sizes_and_shapes():
    cfg = LadderConfig(sizes=(8e3,), shapes={"w": (32, 2, 4, 64)}, multiples=(1.0,), width_per_layer=32,
                       model_options={"remat": True, "scan_layers": True, "qk_norm": False})
    models = [r.model for r in plan(cfg)]
    assert len(models) == 2 and all(m.remat and m.scan_layers and not m.qk_norm for m in models)


def test_plan_topology_checks_mfu_and_the_mesh_before_compiling(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # what --topology sets stays in this test
    cfg = tmp_path / "l.gin"
    cfg.write_text("LadderConfig.sizes = (8e3,)\nLadderConfig.width_per_layer = 32\n")
    assert main(["ladder", "plan", str(cfg), "--topology", "v5e-4", "--mfu", "1.5"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["ladder", "plan", str(cfg), "--topology", "v5e-4", "--set", "mesh=(1,8,1)"]) == 2
    assert "mesh=(1, 8, 1) does not match --topology v5e-4 (v5e:2x2, 4 chips)" in capsys.readouterr().err


def test_the_tpu_ladder_config_plans_the_olmo_shapes():
    from ladderlab.config import load_config

    runs = plan(load_config(LadderConfig, "configs/ladder_tpu.gin"))
    shapes = {r.size: (r.model.d_model, r.model.n_layers, r.model.n_heads, r.model.d_ff, r.batch_size) for r in runs}
    assert shapes == {"190M": (768, 12, 12, 3072, 80), "760M": (1536, 16, 16, 6144, 256),
                      "1.3B": (2048, 16, 16, 8192, 368)}
    assert len(runs) == 12 and all(r.model.remat and r.model.scan_layers for r in runs)


def test_cli_plan_shows_the_saving_of_decay_branches(tmp_path, capsys):
    """configs/ladder_wsd.gin: per size a 4xC stable run and branches at 0.5, 1 and 2 xC. The 3.1k size (8 x 128
    tokens a step, 3 warm-up steps) has 31, 61, 122 and 245 steps; decay starts 31 - 0.2 x 28 = 25.4, 49.4 and
    98.2, so the branches train 5, 11 and 23 steps: 245 + 39 of the 459 steps the four runs take separately."""
    out = tmp_path / "p.json"
    assert main(["ladder", "plan", "configs/ladder_wsd.gin", "--set", "sizes=(3e3,)", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [(r["steps"], r["branch_step"], r["branch_of"]) for r in doc["runs"]] == [
        (31, 26, "3.1k-4xC-equal-s0"), (61, 50, "3.1k-4xC-equal-s0"), (122, 99, "3.1k-4xC-equal-s0"), (245, 0, "")]
    per_step = 6.0 * 3136 * 8 * 128
    assert doc["branches"] == {"flops": 284 * per_step, "separate_flops": 459 * per_step, "saved": 1 - 284 / 459}
    assert "38% saved" in capsys.readouterr().out.replace("\n", " ")


def test_the_cpt_ladder_config_crosses_shares_rates_and_schedules():
    from ladderlab.config import load_config

    runs = plan(load_config(LadderConfig, "configs/ladder_cpt.gin"))
    bases = [r for r in runs if not r.base_run]
    assert len(bases) == 3 and len(runs) == 3 + 3 * 16
    for base in bases:
        phases = {(round(r.weights["german"] / sum(r.weights.values()), 6), round(r.lr / base.lr, 6), r.schedule)
                  for r in runs if r.base_run == base.run}
        assert phases == {(share, lr, s) for share in (0.2, 0.4, 0.6, 0.8) for lr in (1.0, 0.3) for s in ("cosine", "wsd")}


def test_run_seconds_adds_the_task_evaluations_forward_flops():
    from ladderlab.ladders.plan import run_seconds
    from ladderlab.model.config import ModelConfig
    from ladderlab.model.counts import flops_per_token

    cfg = LadderConfig(data=DataConfig(seq_len=64), evals_per_run=3, flops_per_s=1e9, step_s=0.01, overhead_s=2.0)
    model = ModelConfig(vocab_size=259, d_model=16, n_layers=2, n_heads=2, d_ff=64)
    assert run_seconds(cfg, 100, 5e9, model) == pytest.approx(2.0 + 1.0 + 5.0)
    with_tasks = dataclasses.replace(cfg, data=DataConfig(seq_len=64, tasks=("a_continuation", "b_continuation")))
    rows = 2 * 100 * 4 * 64  # two tasks x 100 items x 4 choices x min(seq_len, 128) tokens, forward only
    extra = 3 * rows / 3 * flops_per_token(model, 64)["detailed"] / 1e9
    assert run_seconds(with_tasks, 100, 5e9, model) == pytest.approx(8.0 + extra)
