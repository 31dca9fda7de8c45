"""`ladderlab train`: the shipped configs load, --compile-only compiles a mesh, a short real run, bad input."""

from __future__ import annotations

import json

import pytest

from ladderlab.cli import main
from ladderlab.config import load_config
from ladderlab.ladders.config import TrainConfig
from ladderlab.model.counts import param_counts


@pytest.mark.parametrize("path, mesh, non_embedding", [("configs/train_tiny.gin", (1, -1, 1), 559_232),
                                                       ("configs/train_gpu.py", (1, -1, 1), 113_578_752),
                                                       ("configs/train_tpu_v5e16.gin", (1, 16, 1), 604_669_440)])
def test_shipped_configs_load(path, mesh, non_embedding):
    cfg = load_config(TrainConfig, path)
    assert cfg.mesh == mesh and param_counts(cfg.model)["non_embedding"] == non_embedding


def test_compile_only_compiles_the_step_for_a_mesh(tmp_path, capsys):
    out = tmp_path / "compile.json"
    assert main(["train", "--config", "configs/train_tiny.gin", "--compile-only", "--set", "mesh=(2,2,2)",
                 "--set", "data.seq_len=32", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2} and doc["devices"] == 8
    assert doc["params"]["non_embedding"] == 559_232 and doc["tokens_per_step"] == 16 * 32
    assert doc["bytes_per_device"]["argument"] > 0
    assert not (tmp_path / "runs").exists()


def test_a_short_run_on_the_quick_corpus(tmp_path, capsys):
    out = tmp_path / "result.json"
    argv = ["train", "--config", "configs/train_tiny.gin", "--json", str(out), "--set", f"run_dir={tmp_path}/run"]
    for kv in ["steps=3", "warmup_steps=1", "progress=False", "data.seq_len=32", "model.d_model=32",
               "model.d_ff=64", "eval_batch_size=64", "data.eval_tokens=2048"]:
        argv += ["--set", kv]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["train"]["tokens"] > 0 and 0 < doc["train"]["loss"] < 6.0
    domains = {k.split("/")[0] for k in doc["eval"]}
    assert domains and all(doc["eval"][f"{d}/bpb"] > 0 for d in domains)
    assert (tmp_path / "run" / "checkpoints" / "3").is_dir()


def test_bad_mesh_is_one_line_and_exit_code_2(capsys):
    assert main(["train", "--config", "configs/train_tiny.gin", "--compile-only", "--set", "mesh=(3,3,1)"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mesh=(3, 3, 1) does not fit the 8 devices" in err
