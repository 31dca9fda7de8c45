"""A tiny ladder on a local GCS server (gcp-storage-emulator on 127.0.0.1, reached by gcsfs and by tensorstore, the
way orbax writes arrays): with its corpus and results folder in the bucket, its runs.csv equals the same ladder's
on local disk byte for byte, also after a SIGKILL and a rerun, and its report is read back from the bucket. Skipped without the `ladderlab[gcs]` extra and the
emulator (`make test-cloud` installs both in their own venv)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import pytest

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported (see `bucket`)
gcsfs = pytest.importorskip("gcsfs")
emulator = pytest.importorskip("gcp_storage_emulator.server")
objects = pytest.importorskip("gcp_storage_emulator.handlers.objects")

from test_ladder_run import KILLER, ladder  # noqa: E402,F401 (the local-disk ladder to compare with)

from ladderlab.config import load_config  # noqa: E402
from ladderlab.ladders import runner as ladder_run  # noqa: E402
from ladderlab.ladders.config import LadderConfig  # noqa: E402
from ladderlab.ladders.plan import plan  # noqa: E402
from ladderlab.ladders.report import make_report  # noqa: E402
from ladderlab.ladders.run.metrics import read_rows  # noqa: E402
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

    ladder_run.run_ladder(cfg, out, devices=jax.devices()[:1])
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
