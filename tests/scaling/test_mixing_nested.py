"""Mixture designs are valid and spread out; the nested pipeline finds the optimum of a known (r, N, S) law."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.errors import LadderlabError
from ladderlab.scaling.mixing.design import DYADIC, propose_mixtures
from ladderlab.scaling.mixing.nested import nested_mixture

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
    with pytest.raises(LadderlabError, match="3 distinct size values; the size law needs at least 4"):
        keep = n != 3e8
        nested_mixture(proportions, mix[keep], n[keep], s[keep], {"val": loss(r, n, s)[keep]}, 1e5, 1e9)
