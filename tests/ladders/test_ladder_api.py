"""The Python API of the ladder loop: `ladderlab.LadderConfig`, `load_config`, `plan_ladder`, `run_ladder` and
`report_ladder` are the library's own functions, imported on first use (a bare `import ladderlab` loads no JAX)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_ladder_report import chinchilla, fake_ladder

import ladderlab
from ladderlab.config import load_config
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import plan
from ladderlab.ladders.report import make_report
from ladderlab.ladders.runner import run_ladder


def test_the_lazy_names_are_the_library_functions_and_import_nothing_heavy():
    assert (ladderlab.LadderConfig, ladderlab.load_config, ladderlab.plan_ladder, ladderlab.run_ladder,
            ladderlab.report_ladder) == (LadderConfig, load_config, plan, run_ladder, make_report)
    assert set(ladderlab.__all__) >= {"LadderConfig", "load_config", "plan_ladder", "run_ladder", "report_ladder"}
    with pytest.raises(AttributeError, match="no attribute 'fit_ladder'"):
        ladderlab.fit_ladder
    code = "import sys, ladderlab; print(sorted(m for m in ('jax', 'flax', 'ladderlab.ladders') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_plan_and_report_a_ladder_from_python(tmp_path):
    cfg = ladderlab.LadderConfig(sizes=(3e3, 8e3, 2.5e4, 3.6e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    runs = ladderlab.plan_ladder(cfg)
    assert len(runs) == 12 and runs[-1].run == "36k-4xC-equal-s0"
    fake_ladder(tmp_path, cfg, lambda r: [chinchilla(r.n, r.tokens)] * 3)
    summary = ladderlab.report_ladder(tmp_path, bootstrap=0)
    assert summary["scaling"]["held_out"]["run"] == "36k-4xC-equal-s0"
    assert summary["scaling"]["fit"]["params"]["alpha"] == pytest.approx(0.45, rel=0.02)
    assert (tmp_path / "report" / "summary.json").is_file()
