"""`ladderlab data ...`: inspect and train-tokenizer through the CLI, bad input as exit code 2; the core never
imports TensorFlow."""

import json
import subprocess
import sys
from pathlib import Path

import ladderlab
from ladderlab.cli import main
from ladderlab.data import pipeline
from ladderlab.data.tokenizer import load_tokenizer


def test_inspect_reports_every_domain(cfg, tmp_path, capsys):
    out, gin = tmp_path / "inspect.json", tmp_path / "data.gin"
    gin.write_text(f'DataConfig.corpus = "{cfg.corpus}"\nDataConfig.mixture = {{"upper": 1, "digits": 0}}\n'
                   f'DataConfig.eval_tokens = 500\nDataConfig.cache_dir = "{cfg.cache_dir}"\n')
    args = ["data", "inspect", "--config", str(gin), "--set", "train_tokens=400000", "--json", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    unique = {d: t.unique_tokens for d, t in pipeline.domains(cfg).items()}
    assert {r["domain"]: r["unique_tokens"] for r in doc["domains"]} == unique
    upper = next(r for r in doc["domains"] if r["domain"] == "upper")
    assert upper["weight"] == 1.0 and upper["epochs"] == 400000 / unique["upper"]
    assert "warning: domain 'upper' needs" in capsys.readouterr().out


def test_bad_mixture_is_one_line_and_exit_2(cfg, capsys):
    assert main(["data", "inspect", "--set", f"corpus={cfg.corpus}", "--set", "mixture={'nope': 1}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown domain 'nope'" in err


def test_train_tokenizer_writes_a_loadable_model(cfg, tmp_path, capsys):
    out = tmp_path / "tok" / "sp.model"
    assert main(["data", "train-tokenizer", "--corpus", cfg.corpus, "--vocab-size", "300", "--out", str(out)]) == 0
    tok = load_tokenizer(str(out))
    assert 263 <= tok.vocab_size <= 300 and tok.decode(tok.encode("abc 123 IJK")) == "abc 123 IJK"


def test_core_data_pipeline_never_imports_tensorflow(tmp_path):
    (tmp_path / "ladderlab").symlink_to(Path(ladderlab.__file__).parent)
    code = "import sys, ladderlab.data.pipeline, ladderlab.data.summary, ladderlab.data.demo_corpus; " \
           "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]", result.stderr
