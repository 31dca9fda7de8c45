"""Backtests: calibration over seeds, leave-one-family-out, the harness's numbers, and every verdict and warning
triggered by a case that should and silent on one that should not."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.scaling.backtest.calibration import (
    EDGES, Calibration, Residuals, bundled_calibration, calibrate, distance, read_residuals,
)
from ladderlab.scaling.backtest.harness import backtest, fit_method, self_check_scale
from ladderlab.scaling.backtest.sets import BacktestSet, Split, Table
from ladderlab.scaling.backtest.verdict import inside, judge
from ladderlab.scaling.engine.law import FittedLaw
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.report import compute_optimal_rows, compute_optimal_warnings

TRUE = {"A": 406.4, "B": 410.7, "E": 1.69, "alpha": 0.34, "beta": 0.28}


def synthetic_pool(seed: int, families: int = 5, per_family: int = 200) -> Residuals:
    """Families whose fits have different scales but whose errors, in scales, grow alike with distance."""
    rng = np.random.default_rng(seed)
    fam, dist, err, scale = [], [], [], []
    for f in range(families):
        s = rng.uniform(0.002, 0.05, per_family)
        d = rng.uniform(0.0, 2.0, per_family)
        fam += [f"f{f}"] * per_family
        dist.append(d)
        scale.append(s)
        err.append(np.abs(rng.normal(0.0, 1.0 + 0.8 * d) * s))
    return Residuals(np.array(fam, object), np.array(["chinchilla"] * len(fam), object), np.concatenate(dist),
                     np.concatenate(err), np.concatenate(scale))


def test_leave_one_family_out_coverage_is_near_90_percent_over_seeds():
    coverage = []
    for seed in range(20):
        pool = synthetic_pool(seed)
        held = pool.family == "f0"
        cal = calibrate(pool.without(["f0"]))
        assert cal.families == ("f1", "f2", "f3", "f4")
        half = cal.half_width_at(pool.dist[held], pool.scale[held])
        coverage.append(np.mean(pool.abs_log_err[held] <= half))
    assert 0.85 <= np.mean(coverage) <= 0.95
    assert min(coverage) >= 0.75


def test_calibration_is_monotone_in_distance_and_weights_families_equally():
    pool = synthetic_pool(0)
    cal = calibrate(pool)
    assert np.all(np.diff(cal.half_width) >= 0)
    # one family repeated 10 times does not move a family-weighted quantile
    big = pool.replacing(Residuals(*(np.repeat(c[pool.family == "f1"], 10) for c in pool._cols)))
    assert np.allclose(calibrate(big).half_width, calibrate(pool).half_width, rtol=0.15)


def test_k_is_where_supported_bins_end():
    cal = Calibration(EDGES, np.ones(len(EDGES)), np.ones(len(EDGES)), np.array([0, 30, 30, 25, 5, 0, 0]), ("a", "b"))
    assert cal.k == pytest.approx(np.exp(1.6))
    # past k the half-width grows in proportion to the distance
    assert cal.half_width_at(3.2, 0.01) == pytest.approx(0.01 * 3.2 / 1.6)
    assert cal.half_width_at(0.5, 0.01) == pytest.approx(0.01)


def test_distance_is_the_worst_ratio_past_the_fit():
    assert distance({"N": 1e8, "D": 2e9}, {"N": 4e8, "D": 4e9})[0] == pytest.approx(np.log(4))
    assert distance({"N": 1e8, "D": 2e9}, {"N": 5e7, "D": 1e9})[0] == 0.0
    assert distance({"N": 1e8, "D": 2e9, "U": 1e9}, {"N": 1e8, "D": 2e9, "U": 1e12})[0] == 0.0


def test_residuals_round_trip(tmp_path):
    pool = synthetic_pool(1, families=2, per_family=5)
    pool.write(tmp_path / "r.csv")
    back = read_residuals(tmp_path / "r.csv")
    assert list(back.family) == list(pool.family)
    assert np.allclose(back.abs_log_err, pool.abs_log_err, rtol=1e-5)
    assert len(read_residuals(tmp_path / "absent.csv").dist) == 0


def test_shipped_calibration_covers_the_real_sets():
    cal = bundled_calibration()
    assert set(cal.families) >= {"overtraining", "datablations"}
    assert 2.0 <= cal.k <= 10.0


def chinchilla_table(noise: float, seed: int) -> Table:
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e7, 1e9, 4), 4)
    d = n * np.tile([5.0, 10.0, 20.0, 50.0], 4)
    y = Chinchilla().predict_batch(Chinchilla().to_internal(TRUE)[None, :], {"N": n, "D": d})[0]
    return Table("loss", {"N": n, "D": d}, y * np.exp(noise * rng.normal(size=len(n))))


def test_harness_scores_the_reported_split_as_a_direct_fit_would():
    table = chinchilla_table(0.003, 0)
    s = BacktestSet("syn", "synthetic", ("chinchilla",), (table,), (Split("syn-1B", 3e8, None),))
    doc, pool, rows = backtest({"syn": s}, read_residuals(), n_boot=20, workers=1)
    below = table.x["N"] <= 3e8
    fitted, _ = fit_method("chinchilla", {k: v[below] for k, v in table.x.items()}, table.y[below])
    pred = fitted.predict(N=table.x["N"][~below], D=table.x["D"][~below])
    assert doc["syn-1B"]["chinchilla"]["mape"] == pytest.approx(np.mean(np.abs(pred / table.y[~below] - 1)) * 100)
    assert doc["syn-1B"]["chinchilla"]["n_targets"] == 4
    assert doc["syn-1B"]["chinchilla/calibrated"]["coverage_90"] == 1.0
    # the harness's scale is the one `fit` computes: refit without the largest size, predict it
    x = {k: v[below] for k, v in table.x.items()}
    assert rows[0]["scale"] == pytest.approx(self_check_scale("chinchilla", x, table.y[below], fitted))
    assert set(pool.family) >= {"syn"}


# --- verdicts ----------------------------------------------------------------------------------------------------
# half-width 2 scales, typical error 1 scale, bins 1-3 supported (k = e^1.6 = 4.95)
CAL = Calibration(EDGES, np.full(len(EDGES), 2.0), np.full(len(EDGES), 1.0), np.array([0, 30, 30, 30, 0, 0, 0]),
                  ("a", "b"))


def test_clean_prediction_is_predictable_without_reasons():
    v = judge(0.5, 0.01, [], CAL)
    assert (v.label, v.reasons, v.predictable) == ("predictable", (), True)


@pytest.mark.parametrize("warning", ["parameter E is at its bound 4.54e-05; the fit is not trustworthy there",
                                     "fit did not converge: ABNORMAL"])
def test_bound_or_unconverged_fit_is_not_predictable(warning):
    v = judge(0.5, 0.01, [warning], CAL)
    assert v.label == "not predictable" and not v.predictable


def test_past_k_is_not_predictable_and_names_k():
    assert CAL.k == pytest.approx(np.exp(1.6))
    v = judge(np.log(6.0), 0.01, [], CAL)
    assert v.label == "not predictable"
    assert "6x past the largest fitted N or D; backtests cover up to 4.95x" in v.text()
    assert judge(np.log(4.0), 0.01, [], CAL).label == "predictable"


def test_interval_width_decides_between_the_labels():
    # CAL's half-width is 2 scales: scale 0.025 -> +-5.1% (uncertain), 0.1 -> +-22% (not predictable)
    v = judge(0.5, 0.025, [], CAL)
    assert v.label == "uncertain"
    assert v.reasons == ("calibrated 90% interval +-5.1% (backtests at this distance: typical error 2.5%)",)
    assert judge(0.5, 0.1, [], CAL).label == "not predictable"
    assert judge(0.5, None, [], CAL).label == "uncertain"


def test_actual_outside_its_interval_is_flagged():
    assert inside(3.0, 2.9, 3.1) == "inside"
    assert inside(3.2, 2.9, 3.1) == "OUTSIDE"


def fitted_with(params: dict, boot: list[dict] | None = None) -> FittedLaw:
    law = Chinchilla()
    samples = None if boot is None else np.array([law.to_internal(b) for b in boot])
    return FittedLaw(law, law.to_internal(params), 0.0, 30, 0.01, 1.0, [], samples, 0)


def test_implausible_tokens_per_parameter_warns_and_plausible_is_silent():
    assert compute_optimal_warnings(compute_optimal_rows(fitted_with(TRUE), [1e21, 1e23])) == []
    odd = {**TRUE, "alpha": 0.1}  # N barely helps: the optimum pours compute into N
    rows = compute_optimal_rows(fitted_with(odd), [1e21, 1e23])
    assert rows[0]["tokens_per_param"] < 5
    assert compute_optimal_warnings(rows)[0].startswith("implausible compute-optimal tokens per parameter")


def test_optimum_inside_the_noise_is_not_significant():
    odd = {**TRUE, "alpha": 0.2, "A": 60.0}  # optimum far from 20 tokens/param, and a real gain
    rows = compute_optimal_rows(fitted_with(odd, [odd] * 20), [1e23])
    assert rows[0]["gain_vs_20tpp_pct"] > 0.1 and rows[0]["significant"] is True
    assert not any("not significant" in w for w in compute_optimal_warnings(rows))
    rng = np.random.default_rng(0)
    noisy = [{**odd, "alpha": a, "A": float(np.exp(np.log(60.0) + 20 * (a - 0.2)))} for a in rng.uniform(0.15, 0.45, 40)]
    rows = compute_optimal_rows(fitted_with(odd, noisy), [1e23])
    assert rows[0]["significant"] is False
    assert any(w.startswith("not significant") for w in compute_optimal_warnings(rows))
