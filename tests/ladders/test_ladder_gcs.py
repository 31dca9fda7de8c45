"""A tiny ladder on a local GCS server (gcp-storage-emulator on 127.0.0.1, reached by gcsfs and by tensorstore, the
way orbax writes arrays): with its corpus and results folder in the bucket, its runs.csv equals the same ladder's
on local disk byte for byte, also after a SIGKILL and a rerun (which removes the killed run's local stage), and its
report is read back from the bucket. A growth comparison, a CPT start, a tokenizer and task plots on the bucket equal
local disk's. Skipped without the `ladderlab[gcs]` extra and the emulator (`make test-cloud` installs both in their
own venv)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported (see `bucket`)
gcsfs = pytest.importorskip("gcsfs")
emulator = pytest.importorskip("gcp_storage_emulator.server")
objects = pytest.importorskip("gcp_storage_emulator.handlers.objects")

from test_ladder_run import KILLER, ladder, write_corpus  # noqa: E402,F401 (ladder: the local-disk one to compare with)
from test_ladder_wandb import TINY  # noqa: E402 (the same tiny runs: compiled once)

from ladderlab.cli import main  # noqa: E402

from ladderlab.config import load_config  # noqa: E402
from ladderlab.ladders import runner as ladder_run  # noqa: E402
from ladderlab.ladders.config import LadderConfig  # noqa: E402
from ladderlab.ladders.plan import plan  # noqa: E402
from ladderlab.ladders.report import make_report  # noqa: E402
from ladderlab.data.tokenizer import load_tokenizer  # noqa: E402
from ladderlab.errors import LadderlabError  # noqa: E402
from ladderlab.ladders.run.checkpoint import read_params  # noqa: E402
from ladderlab.ladders.run.metrics import read_rows, stage_root  # noqa: E402
from ladderlab.ladders.run.train import Trainer  # noqa: E402
from ladderlab.ladders.variants.cpt import continued  # noqa: E402
from ladderlab.ladders.variants.grow import GrowConfig  # noqa: E402
from ladderlab.ladders.variants.grow_compare import compare, scratch_steps  # noqa: E402
from ladderlab.paths import as_path  # noqa: E402


def with_generation(download):
    """The emulator's media download, also sending the object's generation headers as GCS does: tensorstore's
    conditional writes (OCDBT's manifest) name the generation it read (without them, 0: "Malformed StorageGeneration")."""
    def handler(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        if response.status in (200, 206):
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"], response["x-goog-metageneration"] = obj["generation"], obj["metageneration"]

    return handler


@pytest.fixture(scope="module")
def bucket():
    """gs://ladders on an in-memory GCS emulator that this process serves; gcsfs and tensorstore are pointed at it
    (gcsfs's probe of zonal/HNS buckets is a gRPC call the emulator does not serve, so it is off)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    download, objects.download = objects.download, with_generation(objects.download)
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="ladders")
    server.start()
    yield "gs://ladders"
    server.stop()
    objects.download = download
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.update({k: v})


def test_sigkilled_ladder_on_the_bucket_reruns_to_the_local_runs_table_and_report(ladder, bucket, tmp_path):
    cfg, local_config, reference = ladder
    fs = gcsfs.GCSFileSystem()
    for path in sorted((local_config.parent / "corpus").iterdir()):
        fs.pipe(f"ladders/corpus/{path.name}", path.read_bytes())
    config = tmp_path / "ladder.gin"
    config.write_text(local_config.read_text().replace(str(local_config.parent / "corpus"), f"{bucket}/corpus"))
    cfg = load_config(LadderConfig, config)
    assert cfg.data.corpus == f"{bucket}/corpus"
    runs = plan(cfg)
    victim, out = runs[1], f"{bucket}/killed"
    step = victim.steps - 1  # past its first checkpoint: the rerun resumes it from the bucket
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config), out, victim.run, str(step)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert fs.exists(f"ladders/killed/runs/{runs[0].run}/result.json")
    assert not fs.exists(f"ladders/killed/runs/{victim.run}/result.json")
    saved = [p.rsplit("/", 1)[1] for p in fs.ls(f"ladders/killed/runs/{victim.run}/checkpoints")]
    assert saved and all(s.isdigit() and 0 < int(s) < victim.steps for s in saved)
    states = {r["run"]: r["state"] for r in ladder_run.status_rows(out)}
    assert states == {runs[0].run: "finished", victim.run: "started", runs[2].run: "pending"}
    stage = stage_root(as_path(f"{out}/runs/{victim.run}"))  # the killed process's local copy of its logs
    assert (stage / victim.run / "metrics.jsonl").is_file()
    assert not stage_root(as_path(f"{out}/runs/{runs[0].run}")).exists()  # a finished run's is removed

    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
    assert not stage.exists()  # removed by the rerun, which staged the run's logs afresh from the bucket
    assert fs.cat("ladders/killed/runs.csv") == (reference / "runs.csv").read_bytes()
    for run in (victim.run, runs[0].run):  # each step logged once, the same losses as on local disk
        got, want = (read_rows(as_path(folder) / "runs" / run / "metrics.jsonl") for folder in (out, reference))
        assert [(r["step"], r["split"], r.get("loss")) for r in got] == [(r["step"], r["split"], r.get("loss"))
                                                                         for r in want]

    remote, local = make_report(out, bootstrap=10), make_report(reference, bootstrap=10)
    assert remote == local
    assert json.loads(fs.cat("ladders/killed/report/summary.json")) == local
    assert fs.cat("ladders/killed/report/report.md") == (reference / "report" / "report.md").read_bytes()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("ladders/killed/report")) == \
        sorted(p.name for p in (reference / "report").iterdir())


PNG = b"\x89PNG\r\n\x1a\n"


def test_a_growth_comparison_and_a_cpt_start_on_the_bucket_equal_local_disk(bucket, tmp_path, fake_batches):
    cfg = GrowConfig(train=dataclasses.replace(TINY, steps=4, eval_every=2, wandb_project=""), growth_factor=2,
                     runs=("scratch", "direct:depth"), growth_steps=2)
    evals = {"a": [next(fake_batches(4, 16, 64, seed=1))]}
    local, remote = (compare(cfg, out, lambda: (fake_batches(4, 16, 64), evals, None), jax.devices()[:1])
                     for out in (tmp_path / "grow", f"{bucket}/grow"))
    fs = gcsfs.GCSFileSystem()
    assert fs.cat("ladders/grow/growth_runs.csv") == (tmp_path / "grow" / "growth_runs.csv").read_bytes()
    assert (remote["rows"], remote["speedups"]) == (local["rows"], local["speedups"])
    assert json.loads(fs.cat("ladders/grow/comparison.json"))["growth_runs"] == f"{bucket}/grow/growth_runs.csv"
    assert fs.cat("ladders/grow/growth_curves.png")[:8] == PNG
    for run in ("direct-depth", "small-depth", "scratch"):  # each phase's logs went up (all but tok_s equal)
        got, want = (read_rows(as_path(f"{out}/seed0/{run}/metrics.jsonl")) for out in (f"{bucket}/grow",
                                                                                      tmp_path / "grow"))
        assert [{k: v for k, v in r.items() if k != "tok_s"} for r in got] == \
            [{k: v for k, v in r.items() if k != "tok_s"} for r in want] and len(got) > 2
    # a CPT phase continues from the scratch run's final checkpoint in the bucket: the same parameters as local disk's
    def base(out):
        return dataclasses.replace(cfg.train, steps=scratch_steps(cfg), run_dir=f"{out}/seed0/scratch")

    phase = continued(cfg.train, base(f"{bucket}/grow"))
    assert phase.init_from == f"{bucket}/grow/seed0/scratch/checkpoints/6"
    abstract = Trainer(cfg.train, jax.devices()[:1]).abstract["params"]
    got, want = (read_params(continued(cfg.train, base(out)).init_from, abstract) for out in (f"{bucket}/grow",
                                                                                               tmp_path / "grow"))
    assert jax.tree.all(jax.tree.map(np.array_equal, got, want))
    with pytest.raises(LadderlabError, match=f"{bucket}/none/seed0/scratch: no final checkpoint \\(step 6\\)"):
        continued(cfg.train, base(f"{bucket}/none"))


def test_a_tokenizer_and_task_plots_go_to_the_bucket(bucket, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus")
    for out in (tmp_path / "sp.model", f"{bucket}/tok/sp.model"):
        assert main(["data", "train-tokenizer", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(out)]) == 0
    fs = gcsfs.GCSFileSystem()
    assert fs.cat("ladders/tok/sp.model") == (tmp_path / "sp.model").read_bytes()
    tok = load_tokenizer(f"{bucket}/tok/sp.model")
    assert tok.fingerprint() == load_tokenizer(str(tmp_path / "sp.model")).fingerprint()
    assert tok.decode(tok.encode("abc 123")) == "abc 123"

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "scaling"))
    from test_scaling_tasks import synthetic_ladder

    synthetic_ladder(checkpoints=6).write_csv(tmp_path / "runs.csv")
    assert main(["predict", "tasks", "--runs", str(tmp_path / "runs.csv"), "--format", "table", "--sizes",
                 "20M,40M,80M", "--target", "big:1e9:2e10", "--bootstrap", "2", "--workers", "1", "--json",
                 f"{bucket}/tasks/pred.json", "--plot", f"{bucket}/tasks/plots"]) == 0
    assert fs.ls("ladders/tasks/plots") == ["ladders/tasks/plots/syn.png"]
    assert fs.cat("ladders/tasks/plots/syn.png")[:8] == PNG and fs.size("ladders/tasks/plots/syn.png") > 10_000
    assert set(json.loads(fs.cat("ladders/tasks/pred.json"))["big"]["syn"]) >= {"loss", "acc", "acc_lo", "acc_hi"}
