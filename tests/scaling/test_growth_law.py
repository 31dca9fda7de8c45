"""Growth guidelines: the paper's timing law against its Table 4, the plan's budget split, refitting the law from
IsoFLOP sweeps with known optima, and `ladderlab grow plan` / `refit` (the speed-up rule: test_growth_speedup.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.errors import LadderlabError
from ladderlab.scaling.growth.law import fit_timing_law, growth_tokens, plan_growth


@pytest.mark.parametrize("n, tokens, expected", [(7e9, 2e12, 11.11e9), (8e9, 15e12, 6.58e9), (13e9, 2e12, 15.84e9),
                                                 (70e9, 2e12, 42.48e9)], ids=["llama2-7b", "llama3-8b", "llama2-13b",
                                                                              "llama2-70b"])
def test_timing_law_matches_the_papers_table_4(n, tokens, expected):
    assert growth_tokens(n, 6 * n * tokens) == pytest.approx(expected, rel=2e-3)


def test_plan_splits_the_budget_between_small_and_grown_model():
    plan = plan_growth(7e9, 8.4e22)
    assert plan.growth_factor == 4 and plan.small_params == 1.75e9
    assert plan.growth_tokens == pytest.approx(1.1113e10, rel=1e-4)
    assert 6 * plan.small_params * plan.growth_tokens + 6 * 7e9 * plan.large_tokens == pytest.approx(8.4e22, rel=1e-12)
    with pytest.raises(LadderlabError, match="spent by the small model"):
        plan_growth(7e9, 1e20)
    with pytest.raises(LadderlabError, match="g=1"):
        plan_growth(7e9, 8.4e22, factor=1)


def _sweeps(law: dict[str, float]) -> tuple[list, list, list, list]:
    """IsoFLOP sweeps over d at 3 sizes x 3 budgets; loss is a parabola in log10 d around the law's optimum."""
    n, c, d, loss = [], [], [], []
    for size in (1e8, 4e8, 1.1e9):
        for budget in (1e19, 1e20, 1e21):
            best = growth_tokens(size, budget, law)
            for x in np.log10(best) + np.array([-0.8, -0.3, 0.1, 0.5, 0.9]):
                n.append(size), c.append(budget), d.append(10**x), loss.append(2.0 + 0.05 * (x - np.log10(best)) ** 2)
    return n, c, d, loss


def test_refit_recovers_a_known_timing_law_from_isoflop_sweeps():
    n, c, d, loss = _sweeps({"a": 0.7, "b": 120.0, "c": -3.0})
    fit = fit_timing_law(np.array(n), np.array(c), np.array(d), np.array(loss))
    assert (fit["a"], fit["b"], fit["c"]) == pytest.approx((0.7, 120.0, -3.0), abs=1e-6)
    assert fit["rmse_log10_d"] < 1e-9 and len(fit["optima"]) == 9
    one_size = [v[:15] for v in (n, c, d, loss)]
    with pytest.raises(LadderlabError, match="at >= 3 \\(N, C\\) pairs that vary both"):
        fit_timing_law(*map(np.array, one_size))
    with pytest.raises(LadderlabError, match=">= 3 distinct"):
        fit_timing_law(np.array([1e8, 1e8]), np.array([1e19, 1e19]), np.array([1e9, 2e9]), np.array([2.0, 2.1]))


def test_grow_plan_command(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["grow", "plan", "--target-params", "7e9", "--budget-flops", "8.4e22", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["growth_factor"] == 4 and doc["growth_tokens"] == pytest.approx(11.11e9, rel=1e-3)
    assert "1.111e+10" in capsys.readouterr().out
    assert main(["grow", "plan", "--target-params", "-1", "--budget-flops", "8.4e22"]) == 2
    assert "target params > 0" in capsys.readouterr().err


def test_grow_refit_command(tmp_path):
    rows = zip(*_sweeps({"a": 0.88, "b": 163.27, "c": -5.74}))
    (tmp_path / "g.csv").write_text("N,C,d,loss\n" + "".join(",".join(f"{float(v)!r}" for v in r) + "\n" for r in rows))
    out = tmp_path / "fit.json"
    assert main(["grow", "refit", "--csv", str(tmp_path / "g.csv"), "--n", "N", "--flops", "C", "--d", "d",
                 "--loss", "loss", "--json", str(out)]) == 0
    fit = json.loads(out.read_text())
    assert (fit["a"], fit["b"], fit["c"]) == pytest.approx((0.88, 163.27, -5.74), abs=1e-6)
