"""Mixture designs are valid and spread out; the nested pipeline finds the optimum of a known (r, N, S) law, and
its intervals carry the step and size stages' errors."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.errors import LadderlabError
from ladderlab.scaling.mixing.design import DYADIC, propose_mixtures
from ladderlab.scaling.mixing.nested import (STEP, Nested, fit_power, fit_steps, nested_mixture, pooled_variance,
                                              runs_of, sensitivity)

DOMAINS = ("web", "code", "books")


@pytest.mark.parametrize("method", ["dyadic", "uniform"])
def test_designs_are_distinct_mixtures_spread_over_the_simplex(method):
    design = propose_mixtures(DOMAINS, 12, method, seed=1)
    r = np.stack([design[d] for d in DOMAINS], axis=1)
    assert r.shape == (12, 3)
    assert r.sum(axis=1) == pytest.approx(np.ones(12), abs=1e-12)
    assert (r >= 0).all() and len(np.unique(r, axis=0)) == 12
    if method == "dyadic":  # every share is 0 or a power of 1/2 down to 1/128 (the last domain a sum of them)
        assert np.all(np.isclose((r * 128) % 1, 0) | np.isclose((r * 128) % 1, 1))
    # Space-filling: the closest pair is far apart compared with 12 random mixtures.
    gap = min(np.linalg.norm(a - b) for i, a in enumerate(r) for b in r[i + 1 :])
    rand = np.random.default_rng(0).dirichlet(np.ones(3), 12)
    rand_gap = min(np.linalg.norm(a - b) for i, a in enumerate(rand) for b in rand[i + 1 :])
    assert gap > 2 * rand_gap
    assert propose_mixtures(DOMAINS, 12, method, seed=1)["web"] == pytest.approx(design["web"])  # seeded


def test_design_rejects_impossible_requests():
    with pytest.raises(LadderlabError, match="unknown design method 'sobol'"):
        propose_mixtures(DOMAINS, 4, "sobol")
    with pytest.raises(LadderlabError, match="distinct dyadic mixtures over 1 domains"):
        propose_mixtures(("web",), 3)
    assert 1 / 128 in DYADIC


def test_nested_pipeline_recovers_optimum_at_the_target_run():
    design = propose_mixtures(DOMAINS, 10, "dyadic", seed=2)
    ids = [f"m{i}" for i in range(10)]
    proportions = {i: {d: float(design[d][k]) for d in DOMAINS} for k, i in enumerate(ids)}
    t = np.array([-1.5, 0.8, 0.0])

    def loss(r, n, s):  # mixing law + size term + step term
        return 1.8 + 0.9 * np.exp(r @ t) + 300.0 / n**0.3 + 20.0 / s**0.5

    rows = [(i, n, s) for i in ids for n in (2e7, 5e7, 1.2e8, 3e8) for s in (1e3, 2e3, 4e3, 8e3, 1.6e4)]
    mix = np.array([row[0] for row in rows])
    n = np.array([row[1] for row in rows])
    s = np.array([row[2] for row in rows])
    r = np.array([[proportions[i][d] for d in DOMAINS] for i in mix])
    res = nested_mixture(proportions, mix, n, s, {"val": loss(r, n, s)}, target_steps=1e5, target_size=1e9,
                         model="plain", max={"web": 0.7})
    r_ids = np.array([[proportions[i][d] for d in DOMAINS] for i in ids])
    assert res.extrapolated["val"] == pytest.approx(loss(r_ids, 1e9, 1e5), rel=1e-4)
    # Truth at the target: web as high as allowed (t_web lowest), the rest to books (t=0 < t_code).
    assert [res.optimum.ratios[d] for d in DOMAINS] == pytest.approx([0.7, 0.0, 0.3], abs=1e-4)
    assert res.optimum.loss == pytest.approx(loss(np.array([0.7, 0.0, 0.3]), 1e9, 1e5), rel=1e-4)
    with pytest.raises(LadderlabError, match=r"mixture \(0, 0, 1\) has 3 sizes; the size law needs 4"):
        keep = n != 3e8
        nested_mixture(proportions, mix[keep], n[keep], s[keep], {"val": loss(r, n, s)[keep]}, 1e5, 1e9)


def test_sensitivity_is_the_refit_derivative():
    """Linear propagation: d log(prediction) / d log(observed) equals what refitting a nudged point gives."""
    d = np.geomspace(1e8, 1e9, 6)
    y = 1.8 + 900.0 / d**0.3
    fitted = fit_power(STEP, d, y)
    s = sensitivity(fitted, {"S": d}, {"S": np.array([2e10])})[0]
    for i in (0, 5):
        nudged = y.copy()
        nudged[i] *= np.exp(1e-4)
        refit = fit_power(STEP, d, nudged)
        assert np.log(refit.predict(S=2e10)[0] / fitted.predict(S=2e10)[0]) / 1e-4 == pytest.approx(s[i], rel=0.01)
    assert s.sum() == pytest.approx(1.0, abs=1e-6)  # scaling every loss scales E and B: the prediction follows


def test_step_stage_error_matches_its_spread_over_noise():
    """The step stage's propagated error (pooled residual variance x squared sensitivities) against the spread
    of 30 refits on fresh 0.5% noise, extrapolating 5x past the last checkpoint: 0.026 against 0.023."""
    rng = np.random.default_rng(0)
    d = np.geomspace(5e8, 4e9, 6)
    truth = 2.6 + 900.0 / d**0.3
    logs, predicted = [], []
    for _ in range(30):
        fitted = fit_power(STEP, d, truth * np.exp(rng.normal(0, 0.005, 6)))
        logs.append(np.log(fitted.predict(S=2e10)[0]))
        s = sensitivity(fitted, {"S": d}, {"S": np.array([2e10])})
        predicted.append(np.sqrt(pooled_variance([fitted]) * np.sum(s**2)))
    assert np.mean(predicted) == pytest.approx(np.std(logs), rel=0.3)


def test_nested_intervals_carry_the_step_and_size_stages():
    """On noisy checkpoints every mixture's extrapolation carries its step and size stages' errors (draws x mixtures),
    and the 90% intervals at the target cover the true losses."""
    design = propose_mixtures(DOMAINS, 8, "dyadic", seed=2)
    r = np.stack([design[d] for d in DOMAINS], axis=1)
    rows = [(k, n, s) for k in range(8) for n in (2e7, 5e7, 1.2e8, 3e8) for s in np.geomspace(2.5 * n, 20 * n, 5)]
    k, n, s = (np.array([row[i] for row in rows]) for i in range(3))
    t = np.array([-1.5, 0.8, 0.0])
    y = (1.8 + 0.9 * np.exp(r[k] @ t) + 300.0 / n**0.3 + 900.0 / s**0.3)
    y *= np.exp(np.random.default_rng(0).normal(0, 0.003, len(y)))
    runs, idx = runs_of(r[k], n, s, k * 10 + np.searchsorted([2e7, 5e7, 1.2e8, 3e8], n))
    at = Nested(runs, DOMAINS, {"val": fit_steps(runs, idx, y, "val")}).at(1e9, 2e10, draws=400, seed=0, model="plain")
    upstream = at.zeta["val"].std(axis=0)
    assert at.zeta["val"].shape == (400, 8) and np.all((upstream > 0.01) & (upstream < 0.2))
    draws = at.draws(r)["val"]
    assert np.all(np.log(draws).std(axis=0) >= 0.9 * upstream.min())
    truth = 1.8 + 0.9 * np.exp(r @ t) + 300.0 / 1e9**0.3 + 900.0 / 2e10**0.3
    inside = (np.percentile(draws, 5, axis=0) <= truth) & (truth <= np.percentile(draws, 95, axis=0))
    assert inside.mean() >= 0.75
