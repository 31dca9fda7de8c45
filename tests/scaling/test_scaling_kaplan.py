"""Kaplan et al.'s joint law: it recovers the published parameters from synthetic losses, its compute-optimal
allocation solves the iso-FLOP problem, and `ladderlab fit kaplan` writes the same fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.scaling.api import fit
from ladderlab.scaling.laws.kaplan import Kaplan, compute_optimal

TRUTH = {"Nc": 6.4e13, "Dc": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}  # Kaplan et al. 2020, eq. 1.5


def kaplan(n, d, p=TRUTH):
    return (np.power(p["Nc"] / n, p["alpha_N"] / p["alpha_D"]) + p["Dc"] / d) ** p["alpha_D"]


def grid() -> dict[str, np.ndarray]:
    n = np.repeat([2e7, 6e7, 2e8, 6e8, 2e9], 4)
    return {"N": n, "D": np.tile([1e9, 4e9, 1.6e10, 6.4e10], 5) * (n / 2e7) ** 0.3}


def test_recovers_the_published_parameters_without_a_bound():
    x = grid()
    fitted = fit("kaplan", x, kaplan(x["N"], x["D"]))
    assert fitted.warnings == []
    for k, v in TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-4)
    noisy = fit("kaplan", x, kaplan(x["N"], x["D"]) * np.exp(np.random.default_rng(0).normal(0, 0.002, 20)))
    assert noisy.params["alpha_N"] == pytest.approx(0.076, abs=0.003)
    assert noisy.params["alpha_D"] == pytest.approx(0.103, abs=0.005)


@pytest.mark.parametrize("flops", [1e19, 1e21, 1e23])
def test_compute_optimal_minimises_the_loss_on_the_iso_flop_line(flops):
    n_opt, d_opt = compute_optimal(TRUTH, flops)
    assert 6.0 * n_opt * d_opt == pytest.approx(flops, rel=1e-12)
    scan = np.geomspace(n_opt / 100, n_opt * 100, 400_001)
    best = scan[np.argmin(kaplan(scan, flops / (6.0 * scan)))]
    assert abs(np.log(best / n_opt)) <= np.log(scan[1] / scan[0])
    # N_opt ~ C^(1/(p+1)), p = alpha_N/alpha_D: a 100x compute step multiplies N by 100^(0.103/0.179)
    n2, _ = compute_optimal(TRUTH, 100 * flops)
    assert n2 / n_opt == pytest.approx(100 ** (0.103 / 0.179), rel=1e-12)


def test_fit_kaplan_cli_writes_the_fit_and_its_compute_optimal_table(tmp_path, capsys):
    x = grid()
    csv = tmp_path / "runs.csv"
    csv.write_text("params,tokens,loss\n" + "".join(f"{n},{d},{float(loss)!r}\n" for n, d, loss in
                                                   zip(x["N"], x["D"], kaplan(x["N"], x["D"]))))
    out = tmp_path / "fit.json"
    assert main(["fit", "kaplan", "--csv", str(csv), "--n", "params", "--d", "tokens", "--loss", "loss",
                 "--bootstrap", "0", "--budgets", "1e21", "--json", str(out)]) in (0, None)
    assert "Kaplan law fitted to" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["law"] == "kaplan" and doc["params"]["alpha_D"] == pytest.approx(0.103, rel=1e-4)
    row = doc["compute_optimal"][0]
    n_opt, _ = compute_optimal(TRUTH, 1e21)
    assert row["N"] == pytest.approx(n_opt, rel=1e-3) and 6 * row["N"] * row["D"] == pytest.approx(1e21, rel=1e-9)
