"""The mixture optimiser finds the true optimum of a known law and honours share limits and token budgets."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab import predict_mixture
from ladderlab.errors import LadderlabError
from ladderlab.scaling.laws.data_constrained import PUBLISHED_R
from ladderlab.scaling.mixing.model import fit_mixing_model
from ladderlab.scaling.mixing.optimize import effective_shares, make_limits, optimize_mixture, optimize_shares, project

DOMAINS = ("web", "code", "books")
# Two validation domains whose losses pull the mixture in different directions.
TRUTH = {"val_web": (2.0, 1.0, (-2.0, 0.5, 0.0)), "val_code": (1.5, 1.2, (0.3, -2.5, 0.0))}


def truth_loss(r_NxM: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    return sum(w * (TRUTH[c][0] + TRUTH[c][1] * np.exp(r_NxM @ np.array(TRUTH[c][2]))) for c, w in weights.items())


def simplex_grid(step: float = 0.002) -> np.ndarray:
    a, b = np.meshgrid(np.arange(0, 1 + 1e-9, step), np.arange(0, 1 + 1e-9, step), indexing="ij")
    keep = a + b <= 1 + 1e-9
    return np.stack([a[keep], b[keep], np.clip(1 - a[keep] - b[keep], 0, 1)], axis=1)


@pytest.fixture(scope="module")
def runs():
    r = np.random.default_rng(4).dirichlet(np.ones(3), 40)
    x = dict(zip(DOMAINS, r.T))
    losses = {c: truth_loss(r, {c: 1.0}) for c in TRUTH}
    return x, losses


def test_recovers_the_optimal_mixture_of_a_known_law(runs):
    x, losses = runs
    weights = {"val_web": 0.6, "val_code": 0.4}
    grid = simplex_grid()
    brute = grid[np.argmin(truth_loss(grid, weights))]
    result = predict_mixture(x, losses, target=weights, model="plain")
    got = np.array([result.ratios[d] for d in DOMAINS])
    assert got.sum() == pytest.approx(1.0, abs=1e-9)
    assert got == pytest.approx(brute, abs=3e-3)  # grid spacing 2e-3
    assert result.loss == pytest.approx(truth_loss(brute[None, :], weights)[0], rel=1e-5)
    assert result.losses["val_web"] == pytest.approx(truth_loss(got[None, :], {"val_web": 1.0})[0], rel=1e-6)
    lo, hi = result.interval
    assert lo <= result.loss <= hi


def test_share_limits_are_honoured_and_bind(runs):
    x, losses = runs
    model = fit_mixing_model(x, losses, "plain")
    free = optimize_mixture(model, "val_web")
    assert free.ratios["web"] > 0.9  # web loss wants web data
    capped = optimize_mixture(model, "val_web", min={"code": 0.2}, max={"web": 0.5})
    assert capped.ratios["web"] == pytest.approx(0.5, abs=1e-9)
    assert capped.ratios["code"] >= 0.2 - 1e-9
    assert sum(capped.ratios.values()) == pytest.approx(1.0, abs=1e-9)
    grid = simplex_grid()
    ok = (grid[:, 0] <= 0.5) & (grid[:, 1] >= 0.2)
    best = grid[ok][np.argmin(truth_loss(grid[ok], {"val_web": 1.0}))]
    assert [capped.ratios[d] for d in DOMAINS] == pytest.approx(best, abs=3e-3)


def test_token_budget_caps_epochs_and_prices_repetition(runs):
    x, losses = runs
    model = fit_mixing_model(x, losses, "plain")
    # 1e9 unique web tokens in a 1e10-token run: at most 4 epochs -> web share <= 0.4.
    result = optimize_mixture(model, "val_web", budget={"web": 1e9}, tokens=1e10, epochs=4)
    assert result.ratios["web"] <= 0.4 + 1e-9
    limits = make_limits(DOMAINS, budget={"web": 1e9}, tokens=1e10, epochs=4)
    assert limits.hi == pytest.approx([0.4, 1.0, 1.0])
    # Below U the share is untouched; 3 epochs of web count as U (1 + R* (1 - exp(-2/R*))) tokens.
    r = np.array([[0.05, 0.5, 0.45], [0.3, 0.3, 0.4]])
    seen = effective_shares(r, limits)
    assert seen[0] == pytest.approx(r[0])
    rs = PUBLISHED_R["R_D*"]
    assert seen[1, 0] == pytest.approx(0.1 * (1 + rs * (1 - np.exp(-2 / rs))), rel=1e-12)
    assert seen[1, 1:] == pytest.approx(r[1, 1:])


def test_optimizer_against_brute_force_on_a_bent_objective():
    limits = make_limits(("a", "b", "c"), lo={"c": 0.1})
    target = np.array([0.2, 0.7, 0.1])

    def loss(r_NxM):
        return ((r_NxM - target) ** 2 * np.array([1.0, 3.0, 0.5])).sum(axis=1)

    r, value = optimize_shares(loss, limits)
    assert r == pytest.approx(target, abs=1e-5) and value == pytest.approx(0.0, abs=1e-9)


def test_projection_onto_bounded_simplex():
    r = project(np.array([0.9, 0.8, -0.3]), np.array([0.0, 0.0, 0.1]), np.array([1.0, 0.6, 1.0]))
    assert r.sum() == pytest.approx(1.0, abs=1e-12)
    assert r == pytest.approx([0.5, 0.4, 0.1], abs=1e-9)


def test_infeasible_limits_are_named():
    with pytest.raises(LadderlabError, match="no feasible mixture: min shares sum to 1.2"):
        make_limits(("a", "b"), lo={"a": 0.6, "b": 0.6})
    with pytest.raises(LadderlabError, match="domain a: min share 0.5 exceeds its max share 0.3"):
        make_limits(("a", "b"), lo={"a": 0.5}, hi={"a": 0.3})
    with pytest.raises(LadderlabError, match=r"--max: unknown domain\(s\) wiki"):
        make_limits(("a", "b"), hi={"wiki": 0.3})
    with pytest.raises(LadderlabError, match="--budget needs the run's token count"):
        make_limits(("a", "b"), budget={"a": 1e9})
    with pytest.raises(LadderlabError, match="proportions sum to 0.9"):
        predict_mixture({"a": [0.5, 0.4], "b": [0.5, 0.5]}, {"v": [3.0, 3.1]})


def test_shares_stay_within_the_fitted_range_unless_max_raises_them(runs):
    x, losses = runs
    keep = x["web"] <= 0.6
    model = fit_mixing_model({d: v[keep] for d, v in x.items()}, {c: v[keep] for c, v in losses.items()}, "plain")
    seen = float(x["web"][keep].max())
    inside = optimize_mixture(model, "val_web")
    assert inside.ratios["web"] == pytest.approx(seen, abs=1e-9) and inside.warnings == []
    beyond = optimize_mixture(model, "val_web", max={"web": 1.0})
    assert beyond.ratios["web"] > 0.9
    assert beyond.warnings == [f"web: share {beyond.ratios['web']:.3g} is beyond the largest share seen in the fit "
                               f"({seen:.3g}); the law extrapolates there"]
