"""The fitting engine: its Huber loss (scipy.special.huber, delta first), the vectorised residual objective, its
blocked evaluation (memory bounded by construction) and multi-start minimisation, full or on a row subsample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import huber
from threadpoolctl import threadpool_limits

from ladderlab.scaling.engine.law import fit_law
from ladderlab.scaling.engine.minimize import (MIN_BLOCK_ROWS, block_shape, blocked_objective, minimize_multistart,
                                               refine, residual_objective, screen)
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.laws.power import PowerLaw

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
    with threadpool_limits(1):  # as the engine does: L-BFGS-B's tiny BLAS calls crawl with threads spinning
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


# --- blocked evaluation and subsampled screening (tables of any size) --------------------------------------------
@pytest.mark.parametrize("n_starts,n_rows,budget", [(4500, 10**6, 1 << 16), (11, 10**6, 1 << 16), (1, 10**6, 1 << 16),
                                                    (4500, 2048, 1 << 16), (4500, 1000, 1 << 16), (10**6, 10, 1 << 16),
                                                    (3, 5, 1 << 16), (7, 100, 1), (4500, 3000, 4096), (50, 50, 100)])
def test_block_shape_is_bounded_and_keeps_small_tables_whole(n_starts, n_rows, budget):
    s, r = block_shape(n_starts, n_rows, budget)
    assert 1 <= s <= n_starts and 1 <= r <= n_rows
    assert s * r <= budget  # the largest array a block holds: bounded whatever the starts and rows
    if n_rows <= min(MIN_BLOCK_ROWS, budget) or n_starts * n_rows <= budget:
        assert r == n_rows


def test_block_shape_golden():
    assert block_shape(4500, 10**6) == (16, 4096)  # 4,500-start screen of 1M rows: 65,536 elements per block
    assert block_shape(11, 10**6) == (11, 5957)  # an L-BFGS-B gradient (2P+1 rows) over 1M rows
    assert block_shape(4500, 2048) == (32, 2048)
    assert block_shape(11, 1000) == (11, 1000)  # small problems: one block, the same sums as residual_objective


@pytest.mark.parametrize("budget", [1, 7, 64, 1000, 1 << 16])
def test_blocked_objective_equals_residual_objective(budget):
    law = Chinchilla()
    n = np.geomspace(1e7, 1e10, 37)
    x = {"N": n, "D": 20 * n}
    y = law.predict_batch(law.to_internal(TRUTH)[None, :], x)[0] * np.exp(np.random.default_rng(0).normal(0, 0.01, 37))
    theta = law.grid()[::15]  # 300 starts
    theta[0, 0] = np.nan  # a non-finite prediction -> inf, in every block shape
    want = residual_objective(lambda t: law.predict_batch(t, x), y, law.residual, law.loss, law.delta)(theta)
    got = blocked_objective(law.predict_batch, x, y, law.residual, law.loss, law.delta, budget)(theta)
    assert got[0] == np.inf and np.isfinite(got[1:]).all()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if budget == 1 << 16:  # 300 x 37 fits one block: bit-identical
        np.testing.assert_array_equal(got, want)


def _noisy(law, public, x, seed, sigma=0.01):
    clean = law.predict_batch(law.to_internal(public)[None, :], x)[0]
    return clean * np.exp(np.random.default_rng(seed).normal(0.0, sigma, clean.size))


def _uniform_table(rows=3000, seed=0):
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), rows))
    return {"N": n, "D": n * np.exp(rng.uniform(np.log(2.0), np.log(200.0), rows))}


def _checkpoint_table():
    """A ladder's runs table with every checkpoint: 6 sizes x 5 token budgets x 100 checkpoints = 3,000 rows."""
    n, mult, frac = np.geomspace(2e7, 2e9, 6), np.array([5.0, 10.0, 20.0, 40.0, 80.0]), np.linspace(0.05, 1.0, 100)
    nn, mm, ff = (a.ravel() for a in np.meshgrid(n, mult, frac, indexing="ij"))
    return {"N": nn, "D": nn * mm * ff}


@pytest.mark.parametrize("table", ["uniform", "checkpoints"])
def test_subsampled_fit_finds_the_full_screen_optimum(table):
    """Screening and refining 4,500 starts on 256 of 3,000 rows, then polishing on all rows, lands on the optimum
    of screening every start on every row: objective within 1e-9 (relative), parameters within 1e-4."""
    law = Chinchilla()
    x = _uniform_table() if table == "uniform" else _checkpoint_table()
    y = _noisy(law, TRUTH, x, seed=7)
    full = fit_law(law, x, y, screen_rows=None)
    sub = fit_law(law, x, y, screen_rows=256)
    assert sub.objective == pytest.approx(full.objective, rel=1e-9)
    for name, value in full.params.items():
        assert sub.params[name] == pytest.approx(value, rel=1e-4), name
    assert full.params["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.02)  # and it is the truth, up to noise
    assert sub.warnings == full.warnings == []


def test_subsampled_fit_with_fixed_parameter_matches_full_screen():
    law = PowerLaw("size")
    x = {"N": np.exp(np.random.default_rng(1).uniform(np.log(1e6), np.log(1e9), 5000))}
    truth = {"E": 1.8, "A": 300.0, "alpha": 0.3}
    y = _noisy(law, truth, x, seed=2)
    full = fit_law(law, x, y, fixed={"E": 1.8}, screen_rows=None)
    sub = fit_law(law, x, y, fixed={"E": 1.8}, screen_rows=100)
    assert sub.params["E"] == full.params["E"] == pytest.approx(1.8, rel=1e-14)
    assert sub.objective == pytest.approx(full.objective, rel=1e-9)
    assert sub.params["alpha"] == pytest.approx(full.params["alpha"], rel=1e-6)
    assert sub.params["alpha"] == pytest.approx(0.3, abs=0.01)


class _ShapeSpy(Chinchilla):
    """Chinchilla that records (starts, rows) of every prediction it is asked for."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def predict_batch(self, theta_SxP, x):
        self.calls.append((len(theta_SxP), len(x["N"])))
        return super().predict_batch(theta_SxP, x)


def test_fit_memory_is_bounded_by_construction():
    """No array computation of a fit holds more than max_elements starts x rows (but the final diagnostics: one
    prediction per row), and only L-BFGS-B gradients (2P+1 = 11 parameter sets) see more than screen_rows rows:
    the 4,500-start screen runs on the subsample alone, whatever the table size."""
    law, x = _ShapeSpy(), _uniform_table(rows=5000, seed=3)
    y = _noisy(Chinchilla(), TRUTH, x, seed=4)
    fitted = fit_law(law, x, y, screen_rows=256, max_elements=4096)
    assert max(s * r for s, r in law.calls if s > 1) <= 4096
    assert max(s * r for s, r in law.calls) == 5000  # the final predictions: one per row
    assert max(s for s, r in law.calls if r > 256) <= 2 * 5 + 1
    assert {r for s, r in law.calls if r > 256} == {4096, 5000 - 4096, 5000}  # blocks of (1, 4096) rows, the finish
    assert sum(s for s, r in law.calls if r == 256) >= 4500  # every start screened on the subsample
    assert fitted.params["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.02)
