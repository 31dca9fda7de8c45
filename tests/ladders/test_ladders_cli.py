"""`ladderlab train`: the shipped configs load, --compile-only compiles a mesh, a short real run, bad input."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ladderlab.cli import main
from ladderlab.config import load_config
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.model.counts import param_counts


@pytest.mark.parametrize("path, mesh, non_embedding", [("configs/train_tiny.gin", (1, -1, 1), 559_232),
                                                       ("configs/train_gpu.py", (1, -1, 1), 113_578_752),
                                                       ("configs/train_tpu_v5e16.gin", (1, 16, 1), 604_669_440)])
def test_shipped_configs_load(path, mesh, non_embedding):
    cfg = load_config(TrainConfig, path)
    assert cfg.mesh == mesh and param_counts(cfg.model)["non_embedding"] == non_embedding
    assert cfg.model.scan_layers == cfg.model.remat == (path != "configs/train_tiny.gin")


def test_compile_only_compiles_the_step_for_a_mesh(tmp_path, capsys):
    out = tmp_path / "compile.json"
    assert main(["train", "--config", "configs/train_tiny.gin", "--compile-only", "--set", "mesh=(2,2,2)",
                 "--set", "data.seq_len=32", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2} and doc["devices"] == 8
    assert doc["params"]["non_embedding"] == 559_232 and doc["tokens_per_step"] == 16 * 32
    memory = doc["bytes_per_device"]
    assert memory["argument"] > 0 and memory["argument_gib"] == memory["argument"] / 2**30
    assert {f"{k}_gib" for k in memory if not k.endswith("_gib")} == {k for k in memory if k.endswith("_gib")}
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "mesh data 2 x fsdp 2 x tensor 2 (8 devices)"
    assert f"per device argument: {memory['argument_gib']:,.3f} GiB ({memory['argument']:,} bytes)" in printed
    assert not (tmp_path / "runs").exists()


def test_a_short_run_on_the_quick_corpus_then_reruns(tmp_path, capsys):
    out = tmp_path / "result.json"
    argv = ["train", "--config", "configs/train_tiny.gin", "--json", str(out), "--set", f"run_dir={tmp_path}/run"]
    for kv in ["warmup_steps=1", "progress=False", "data.seq_len=32", "model.d_model=32",
               "model.d_ff=64", "eval_batch_size=64", "data.eval_tokens=2048"]:
        argv += ["--set", kv]
    assert main([*argv, "--set", "steps=3"]) == 0
    doc = json.loads(out.read_text())
    assert doc["train"]["tokens"] == 3 * 16 * 32 and doc["train"]["step_tokens"] == 16 * 32
    assert 0 < doc["train"]["loss"] < 6.0
    domains = {k.split("/")[0] for k in doc["eval"]}
    assert domains and all(doc["eval"][f"{d}/bpb"] > 0 for d in domains)
    assert (tmp_path / "run" / "checkpoints" / "3").is_dir()
    capsys.readouterr()
    # a rerun of the finished run says so and gives the same metrics
    assert main([*argv, "--set", "steps=3"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (f"run_dir {tmp_path}/run: already finished at step 3 "
                                                       f"(loss {doc['train']['loss']:.4f}); nothing to do")
    assert json.loads(out.read_text()) == doc
    # a longer run is refused unless the schedule change is allowed, which it then reports
    assert main([*argv, "--set", "steps=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resuming with a changed schedule (steps 3 -> 5; " in err
    assert main([*argv, "--set", "steps=5", "--allow-schedule-change"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (f"run_dir {tmp_path}/run: resuming from step 3 (checkpoint "
                                                       f"{tmp_path}/run/checkpoints/3) with a changed schedule: "
                                                       f"steps 3 -> 5")
    assert json.loads(out.read_text())["train"]["tokens"] == 5 * 16 * 32


def test_a_config_error_writes_nothing(tmp_path, capsys):
    code = main(["train", "--config", "configs/train_tiny.gin", "--set", "steps=2", "--set", f"run_dir={tmp_path}/run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "need 0 <= warmup_steps=20 <= steps=2" in err
    assert not (tmp_path / "run").exists()


def test_bad_mesh_is_one_line_and_exit_code_2(capsys):
    assert main(["train", "--config", "configs/train_tiny.gin", "--compile-only", "--set", "mesh=(3,3,1)"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mesh=(3, 3, 1) does not fit the 8 devices" in err


def test_gin_style_overrides_on_a_shipped_config():
    gin_style = load_config(TrainConfig, "configs/train_tiny.gin",
                            ["ModelConfig.d_model=192", "TrainConfig.steps=5", "DataConfig.seq_len=64"])
    dotted = load_config(TrainConfig, "configs/train_tiny.gin", ["model.d_model=192", "steps=5", "data.seq_len=64"])
    assert gin_style == dotted and (gin_style.model.d_model, gin_style.steps, gin_style.data.seq_len) == (192, 5, 64)


def test_ladder_plan_takes_config_either_way_and_size_labels(tmp_path, capsys):
    texts = []
    for argv in (["configs/ladder_quick.gin", "--set", "sizes=(8e3, 1.5e4)"],
                 ["--config", "configs/ladder_quick.gin", "--set", "LadderConfig.sizes=(8k, 15k)"]):
        out = tmp_path / f"plan{len(texts)}.json"
        assert main(["ladder", "plan", *argv, "--json", str(out)]) == 0
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    assert {r["size"] for r in json.loads(texts[0])["runs"]} == {"8.3k", "16k"}
    assert main(["grow", "compare", "--out", str(tmp_path / "g")]) == 2
    assert "a config file is required: give CONFIG or --config CONFIG" in capsys.readouterr().err


def test_demo_and_ladder_plan_print_one_time_estimate(monkeypatch, capsys):
    from ladderlab.demo import default_config
    from ladderlab.ladders.config import LadderConfig
    from ladderlab.ladders.plan import estimate_s, plan

    runs = plan(load_config(LadderConfig, default_config(quick=True)))
    assert estimate_s(runs) == pytest.approx(sum(r.est_s for r in runs)) and estimate_s(runs) > 0
    line = f"{len(runs)} runs, estimated {estimate_s(runs) / 60:.1f} min"
    monkeypatch.setattr("ladderlab.demo.run_demo", lambda *args, **kwargs: {})  # the estimate only, no training
    assert main(["demo", "--quick"]) == 0
    assert line in capsys.readouterr().out
    assert main(["ladder", "plan", "configs/ladder_quick.gin"]) == 0
    assert f"{line.split(',')[0]}, " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "`ladderlab ladder plan configs/ladder_quick.gin`" in help_text and " min)" not in help_text
    for gin_file in ("configs/ladder_demo.gin", "configs/ladder_quick.gin"):
        text = open(gin_file).read()
        assert "ladderlab ladder plan" in text and "minute" not in text


@pytest.mark.skipif(getattr(importlib.util.find_spec("ray"), "origin", None) is not None,
                    reason="the ray extra is installed here")
def test_ray_executor_without_the_extra_is_one_line_naming_it(tmp_path, capsys):
    code = main(["ladder", "run", "configs/ladder_quick.gin", "--out", str(tmp_path / "out"), "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'ladderlab[ray]'" in err
    code = main(["ladder", "run", "configs/ladder_quick.gin", "--out", str(tmp_path / "out"), "--address", "auto"])
    assert code == 2 and "address='auto': only for executor='ray'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
