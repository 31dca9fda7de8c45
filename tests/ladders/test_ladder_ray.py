"""`ladder run --executor ray` on a local Ray cluster of 2 worker slots on this CPU, a worker SIGKILLed mid-run as a
preempted node would be: Ray retries its task, which resumes from the run's checkpoint, and the ladder's runs.csv
equals the local runner's byte for byte; a run on 2 hosts (two Ray tasks joined by jax.distributed) with one host
killed restarts as a group and equals 2 devices in one process. Skipped without the `ladderlab[ray]` extra
(`make test-cloud` installs it in its own venv)."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import tempfile

import jax
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from test_ladder_run import ladder  # noqa: E402,F401 (the local-disk ladder to compare with)

from ladderlab.cli import main  # noqa: E402
from ladderlab.ladders import runner as ladder_run  # noqa: E402
from ladderlab.ladders.plan import plan  # noqa: E402
from ladderlab.ladders.run.metrics import read_rows  # noqa: E402
from ladderlab.scaling.tables.runs import read_runs  # noqa: E402

ONE_DEVICE = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}  # per worker, as the local reference trains


def killer(spec: str):
    """A Ray worker setup hook: the worker SIGKILLs itself when the run named in the JSON file `spec` logs a step >=
    its "step" (the trainer's own logging call) as JAX process "rank", the first time only (the file is then
    removed), so Ray's retry can finish the run."""
    def hook() -> None:
        from ladderlab.ladders.run import metrics

        original = metrics.RunLog.train

        def train(self, s, m):
            try:
                kill = json.loads(open(spec).read())
            except FileNotFoundError:  # none asked for, or done (perhaps by another host just now)
                kill = None
            if kill and s >= kill["step"] and self.run_dir.name == kill["run"] and jax.process_index() == kill["rank"]:
                os.rename(spec, spec + ".done")
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, s, m)

        metrics.RunLog.train = train

    return hook


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray of 2 CPUs whose workers run `killer`; yields the kill spec's path."""
    spec = str(tmp_path_factory.mktemp("ray") / "kill.json")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"worker_process_setup_hook": killer(spec)})
    yield spec
    ray.shutdown()


def worker_logs() -> str:
    """What this Ray session's workers printed (Ray keeps it under <temp dir>/ray/session_latest)."""
    return "".join(open(p).read() for p in glob.glob(os.path.join(tempfile.gettempdir(), "ray", "session_latest",
                                                                   "logs", "worker-*.out")))


def test_ray_ladder_with_a_killed_worker_equals_the_local_run(ladder, cluster, tmp_path):
    cfg, _, reference = ladder
    runs = plan(cfg)
    victim, out = runs[1], tmp_path / "ray"
    with open(cluster, "w") as f:  # past its first checkpoint: the retry resumes it
        json.dump({"run": victim.run, "step": victim.steps - 1, "rank": 0}, f)
    on_ray = dataclasses.replace(cfg, ray_env=ONE_DEVICE)
    table = ladder_run.run_ladder(on_ray, out, executor="ray")
    assert os.path.exists(cluster + ".done")  # the worker died mid-run ...
    assert f"run_dir {out / 'runs' / victim.run}: resuming from step" in worker_logs()  # ... and the retry resumed it
    assert table.run_ids == [r.run for r in runs]
    assert (out / "runs.csv").read_bytes() == (reference / "runs.csv").read_bytes()
    for run in runs:  # each step logged once, with the local run's losses
        got, want = (read_rows(folder / "runs" / run.run / "metrics.jsonl") for folder in (out, reference))
        assert [(r["step"], r["split"], r.get("loss")) for r in got] == \
            [(r["step"], r["split"], r.get("loss")) for r in want]
    before = {p: p.read_bytes() for p in [out / "runs.csv", *out.glob("runs/*/metrics.jsonl")]}
    ladder_run.run_ladder(on_ray, out, executor="ray")  # a rerun trains nothing twice
    assert {p: p.read_bytes() for p in before} == before


def test_a_two_host_run_with_a_killed_host_restarts_as_a_group(ladder, cluster, tmp_path):
    cfg, _, _ = ladder
    one = dataclasses.replace(cfg, multiples=(0.1,), mixtures={"equal": {}}, ray_hosts=2, ray_env=ONE_DEVICE)
    run = plan(one)[0]
    with open(cluster, "w") as f:  # host 1 (not the one writing the run folder) dies after the first checkpoint
        json.dump({"run": run.run, "step": run.steps - 1, "rank": 1}, f)
    ladder_run.run_ladder(one, tmp_path / "hosts", executor="ray")
    assert os.path.exists(cluster + ".done")
    assert f"run_dir {tmp_path / 'hosts' / 'runs' / run.run}: resuming from step" in worker_logs()
    ladder_run.run_ladder(one, tmp_path / "devices", devices=jax.devices()[:2])  # one process, 2 devices
    got, want = read_runs(tmp_path / "hosts"), read_runs(tmp_path / "devices")
    assert list(got.cols) == list(want.cols) and got["step"].tolist() == want["step"].tolist()
    for column in ("loss", "train_loss", "val/a", "val/b", "val/c"):  # the same sums, reduced in another order
        np.testing.assert_allclose(got[column], want[column], rtol=1e-6)


def test_ray_executor_refuses_shard_and_device_groups(ladder, tmp_path, capsys):
    cfg, config, _ = ladder
    code = main(["ladder", "run", str(config), "--out", str(tmp_path / "a"), "--executor", "ray", "--shard", "0/2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--shard 0/2 with --executor ray" in err
    code = main(["ladder", "run", str(config), "--out", str(tmp_path / "b"), "--executor", "ray",
                 "--set", "device_groups=2"])
    assert code == 2 and "device_groups=2 with --executor ray" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
