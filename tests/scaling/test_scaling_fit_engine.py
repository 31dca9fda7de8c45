"""The fitting engine: its Huber loss (scipy.special.huber, delta first), the vectorised residual objective and
multi-start minimisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import huber

from ladderlab.scaling.engine.minimize import minimize_multistart, refine, residual_objective, screen
from ladderlab.scaling.laws.chinchilla import Chinchilla

TRUTH = dict(A=406.4, B=410.7, E=1.69, alpha=0.34, beta=0.28)


# --- huber -------------------------------------------------------------------------------------------------------
def test_huber_golden_values():
    r = np.array([0.0, 0.5, -0.5, 1.0, 2.0, -3.0])
    # delta = 1: quadratic 0.5 r^2 inside, delta (|r| - delta/2) outside; continuous at |r| = delta (0.5).
    np.testing.assert_array_equal(huber(1.0, r), [0.0, 0.125, 0.125, 0.5, 1.5, 2.5])
    # delta = 1e-3 (the laws' default): 0.5e-3 is inside -> 1.25e-7; 0.01 is outside -> 1e-3 (0.01 - 5e-4).
    got = huber(1e-3, np.array([5e-4, -5e-4, 1e-2, -1e-2]))
    np.testing.assert_allclose(got, [1.25e-7, 1.25e-7, 9.5e-6, 9.5e-6], rtol=1e-14)


def test_huber_is_continuous_and_linear_outside():
    d = 0.3
    eps = 1e-9
    assert huber(d, np.array(d - eps)) == pytest.approx(huber(d, np.array(d + eps)), abs=1e-9)
    # slope outside is exactly delta
    a, b = huber(d, np.array([2.0, 3.0]))
    assert b - a == pytest.approx(d, rel=1e-14)


# --- residual_objective ------------------------------------------------------------------------------------------
def test_residual_objective_log_huber_golden():
    y = np.array([1.0, np.e])
    preds = np.array([[np.e, np.e], [1.0, np.e], [1.0 + 5e-4, np.e]])  # S=3 parameter sets, N=2 points
    obj = residual_objective(lambda t: preds[: len(t)], y, "log", "huber", 1e-3)
    val = obj(np.zeros((3, 1)))
    # row 0: log residuals (1, 0) -> 1e-3 (1 - 5e-4); row 1: exact -> 0; row 2: log(1+5e-4) inside delta -> quadratic.
    np.testing.assert_allclose(val, [1e-3 * (1 - 5e-4), 0.0, 0.5 * np.log1p(5e-4) ** 2], rtol=1e-12, atol=1e-300)


def test_residual_objective_raw_l2_and_nonfinite_is_inf():
    y = np.array([1.0, 2.0, 3.0])
    preds = np.array([[1.5, 2.0, 2.0], [np.nan, 2.0, 3.0], [1.0, np.inf, 3.0], [-1.0, 2.0, 3.0]])
    obj = residual_objective(lambda t: preds, y, "raw", "l2", 1e-3)
    val = obj(np.zeros((4, 1)))
    assert val[0] == pytest.approx(0.25 + 0.0 + 1.0, rel=1e-15)
    assert val[1] == np.inf and val[2] == np.inf
    assert val[3] == pytest.approx(4.0, rel=1e-15)  # raw residuals allow negative predictions
    # with log residuals a negative prediction is not finite -> +inf, never NaN
    log_obj = residual_objective(lambda t: preds, y, "log", "l2", 1e-3)
    assert log_obj(np.zeros((4, 1)))[3] == np.inf


# --- multi-start minimisation ------------------------------------------------------------------------------------
def _chinchilla_problem(seed=3, sigma=0.005):
    law = Chinchilla()
    n = np.geomspace(1e7, 1e10, 8)
    mult = np.array([5.0, 10.0, 20.0, 40.0, 80.0])
    nn, mm = np.meshgrid(n, mult, indexing="ij")
    x = {"N": nn.ravel(), "D": (nn * mm).ravel()}
    clean = law.predict_batch(law.to_internal(TRUTH)[None, :], x)[0]
    y = clean * np.exp(np.random.default_rng(seed).normal(0.0, sigma, clean.size))
    obj = residual_objective(lambda t: law.predict_batch(t, x), y, law.residual, law.loss, law.delta)
    return law, obj


def test_multistart_matches_refining_a_random_subset_of_starts():
    law, obj = _chinchilla_problem()
    lo, hi = law.bounds()
    grid = law.grid()
    assert grid.shape == (4500, 5)  # 6 * 6 * 5 * 5 * 5 starts
    best = minimize_multistart(obj, grid, lo, hi)
    assert best.n_starts == 4500 and best.n_refined == 16
    assert best.converged
    assert best.value == pytest.approx(float(obj(best.theta[None, :])[0]), rel=1e-15)

    rng = np.random.default_rng(12345)
    subset = grid[rng.choice(len(grid), 200, replace=False)]
    refined = [refine(obj, s, lo, hi).fun for s in subset]
    assert best.value <= min(refined) + 1e-9
    assert abs(best.value - min(refined)) <= 1e-9


def test_multistart_refines_distinct_best_starts_only():
    # A convex bowl: duplicates of the same start must not be refined twice.
    def obj(t):
        return np.sum((t - np.array([0.3, -0.2])) ** 2, axis=-1)

    starts = np.array([[1.0, 1.0]] * 5 + [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3.0, -3.0]])
    lo, hi = np.array([-5.0, -5.0]), np.array([5.0, 5.0])
    m = minimize_multistart(obj, starts, lo, hi, n_refine=16)
    assert m.n_starts == 9
    assert m.n_refined == 4
    np.testing.assert_allclose(m.theta, [0.3, -0.2], atol=1e-7)
    m2 = minimize_multistart(obj, starts, lo, hi, n_refine=2)
    assert m2.n_refined == 2


def test_multistart_clips_starts_and_respects_bounds():
    def obj(t):
        return np.sum((t - 10.0) ** 2, axis=-1)  # minimum outside the box

    lo, hi = np.array([0.0, -1.0]), np.array([1.0, 2.0])
    m = minimize_multistart(obj, np.array([[50.0, -50.0]]), lo, hi)
    np.testing.assert_allclose(m.theta, [1.0, 2.0], atol=1e-10)
    assert m.value == pytest.approx(81.0 + 64.0, rel=1e-12)


def test_multistart_rejects_objective_never_finite():
    with pytest.raises(ValueError, match="not finite at any starting point"):
        minimize_multistart(lambda t: np.full(len(t), np.inf), np.zeros((3, 2)), -np.ones(2), np.ones(2))


def test_screen_equals_direct_evaluation_across_chunks():
    law, obj = _chinchilla_problem()
    grid = law.grid()
    np.testing.assert_array_equal(screen(obj, grid, chunk=1000), obj(grid))
