"""device_groups: runs train concurrently on disjoint device groups and give exactly the sequential runner's table."""

from __future__ import annotations

import dataclasses
import io

import jax
import pytest
from rich.console import Console

from ladderlab.data.config import DataConfig
from ladderlab.errors import LadderlabError
from ladderlab.ladders import runner as ladder_run
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import plan
from tests.ladders.test_ladder_run import write_corpus


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """The 3-run ladder of test_ladder_run (2 multiples, a mixture sweep of 2)."""
    root = tmp_path_factory.mktemp("groups")
    data = DataConfig(corpus=str(write_corpus(root / "corpus")), cache_dir=str(root / "cache"), seq_len=32,
                      eval_tokens=256)
    return LadderConfig(data=data, sizes=(3e3,), multiples=(0.1, 0.2),
                        mixtures={"equal": {}, "skew": {"a": 3.0, "b": 1.0}}, mixture_grid="smallest", evals_per_run=3)


def test_two_groups_write_the_sequential_runs_table(cfg, tmp_path, monkeypatch):
    # The reference runs one after another on 4 devices, the grouped ladder on 8 devices as 2 groups of 4: each run
    # sees the same mesh, so runs.csv and every result.json are byte-equal (seconds aside).
    ladder_run.run_ladder(cfg, tmp_path / "seq", devices=jax.devices()[:4])
    used, train_one = {}, ladder_run._train_one
    monkeypatch.setattr(ladder_run, "_train_one", lambda c, run, o, devices: (
        used.update({run.run: tuple(d.id for d in devices)}), train_one(c, run, o, devices)))
    out = io.StringIO()
    grouped = dataclasses.replace(cfg, device_groups=2)
    ladder_run.run_ladder(grouped, tmp_path / "par", devices=jax.devices()[:8], console=Console(file=out))
    assert (tmp_path / "par" / "runs.csv").read_text() == (tmp_path / "seq" / "runs.csv").read_text()
    runs = [r.run for r in plan(cfg)]
    assert sorted(used) == sorted(runs) and set(used.values()) == {(0, 1, 2, 3), (4, 5, 6, 7)}
    assert sorted(line.split()[1].rstrip(":") for line in out.getvalue().splitlines()) == sorted(runs)
    for run in runs:
        seq, par = (tmp_path / d / "runs" / run / "result.json" for d in ("seq", "par"))
        assert seq.read_text().rsplit('"seconds"', 1)[0] == par.read_text().rsplit('"seconds"', 1)[0]


@pytest.mark.parametrize("change, message", [
    ({"device_groups": 3}, r"^device_groups=3: must split the 8 devices into equal groups$"),
    ({"device_groups": 0}, r"^device_groups=0: must split the 8 devices into equal groups$"),
    ({"device_groups": 2, "mesh": (3, -1, 1)},
     r"^device_groups=2 \(groups of 4 devices\): mesh=\(3, -1, 1\) does not fit the 4 devices at hand$"),
    ({"device_groups": 2, "batch_size": 6},
     r"^device_groups=2 \(groups of 4 devices\): batch_size=6 is not divisible by the data x fsdp axes \(4 shards\)"),
])
def test_groups_that_do_not_fit_are_an_error_before_anything_is_written(cfg, tmp_path, change, message):
    with pytest.raises(LadderlabError, match=message):
        ladder_run.run_ladder(dataclasses.replace(cfg, **change), tmp_path / "out", devices=jax.devices()[:8])
    assert not (tmp_path / "out").exists()
