"""The results store: its atomic writer (whole files only, readable by everyone: reports are for sharing) and the
runs table's share columns."""

import json
import stat

import numpy as np

from ladderlab.ladders.store import LadderStore, write_atomic


def test_write_atomic_replaces_whole_file_with_mode_644(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old and longer text")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left behind


def test_runs_table_has_each_runs_domain_shares_from_its_plan_row(tmp_path):
    # a base run on code:prose 1:1 and a CPT phase on german:code:prose 3:1:1 (its own mixture): every row of a run
    # carries its shares; with a run whose plan row has no weights (a plan from before they were kept, or the
    # mixture {}: every corpus domain equally) there are none, rather than blank cells
    plan = [{"run": "base", "weights": {"code": 1.0, "prose": 1.0}},
            {"run": "base-cpt-de60", "weights": {"german": 3.0, "code": 1.0, "prose": 1.0}}]
    for runs in (plan, [*plan, {"run": "old"}], [*plan, {"run": "equal", "weights": {}}]):
        (tmp_path / "ladder.json").write_text(json.dumps({"config": {}, "name": "t", "plan": runs}))
        for r in runs:
            (tmp_path / "runs" / r["run"]).mkdir(parents=True, exist_ok=True)
            rows = [{"run": r["run"], "N": 1e3, "D": 1e4 * s, "step": s, "loss": 3.0 - s} for s in (1, 2)]
            (tmp_path / "runs" / r["run"] / "result.json").write_text(json.dumps({"rows": rows}))
        table = LadderStore(tmp_path).table()
        np.testing.assert_array_equal(table["loss"], [2.0, 1.0] * len(runs))
        shares = [c for c in table.cols if c.startswith("share/")]
        if len(runs) > 2:
            assert shares == []
            continue
        assert shares == ["share/code", "share/german", "share/prose"]
        np.testing.assert_array_equal(table["share/german"], [0.0, 0.0, 0.6, 0.6])
        np.testing.assert_array_equal(table["share/code"], [0.5, 0.5, 0.2, 0.2])
