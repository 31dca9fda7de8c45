"""CMR: the CPT laws recover known parameters from synthetic runs, and the CMR of a larger run is predicted."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab import critical_mixture_ratio
from ladderlab.errors import LadderlabError
from ladderlab.scaling.mixing.cmr import cmr_of, increase_of

TRUTH = {"A": 0.03, "gamma": 1.4, "s": 0.25, "nu": 0.3}
DOMAIN = {"E": 1.2, "B": 0.6, "beta": 0.4, "T0": 0.5}


def cpt_runs(sizes=(1e8, 3e8, 1e9), noise=0.0, seed=0):
    """General:domain CPT runs at 5 ratios x 4 token counts per size; general and domain loss from known laws."""
    r, t, n = (a.ravel() for a in np.meshgrid([0.1, 0.2, 1 / 3, 0.5, 0.75], [1e9, 2e9, 5e9, 1e10], sizes, indexing="ij"))
    base = 2.0 + 3.0 * (n / 1e9) ** -0.2
    general = base + increase_of(TRUTH, r, t, n)
    domain = DOMAIN["E"] + DOMAIN["B"] * (r * t / 1e9 + DOMAIN["T0"]) ** -DOMAIN["beta"]
    rng = np.random.default_rng(seed)
    general = general * np.exp(rng.normal(0, noise, r.size))
    return r, t, n, general, base, domain


def test_cmr_recovered_and_predicted_for_a_larger_run():
    r, t, n, general, base, domain = cpt_runs()
    res = critical_mixture_ratio(r, t, general, base, tolerance=0.02, size=n, domain_loss=domain,
                                 at_tokens=2e10, at_size=3e9, bootstrap=0)
    for k, v in TRUTH.items():
        assert res.general.params[k] == pytest.approx(v, rel=1e-4), k
    expected = (0.02 / (0.03 * 20**0.25 * 3**-0.3)) ** (1 / 1.4)
    assert res.ratio == pytest.approx(expected, rel=1e-4)
    assert res.general_increase == pytest.approx(0.02, rel=1e-6)
    assert res.token_exponent == pytest.approx(-0.25 / 1.4, rel=1e-4)
    assert res.size_exponent == pytest.approx(0.3 / 1.4, rel=1e-4)
    assert res.domain_loss is None  # no domain law fitted at an unseen size
    for row in res.curve:
        assert row["ratio"] == pytest.approx(min(1.0, (0.02 / (0.03 * (row["tokens"] / 1e9) ** 0.25 * 3**-0.3)) ** (1 / 1.4)), rel=1e-4)
    dom = res.domain[1e9].params
    for k, v in DOMAIN.items():
        assert dom[k] == pytest.approx(v, rel=1e-3), k


def test_cmr_at_a_fitted_size_reports_domain_loss_and_a_covering_interval():
    r, t, n, general, base, domain = cpt_runs(sizes=(3e8,), noise=0.0005, seed=1)
    res = critical_mixture_ratio(r, t, general, base, tolerance=0.03, size=n, domain_loss=domain, bootstrap=40, seed=0)
    truth = float(cmr_of({**TRUTH}, 0.03, 1e10, 3e8))
    assert res.tokens == 1e10 and res.size == 3e8 and res.size_exponent is None  # one size: nu not fitted
    assert res.general.params["nu"] == 0.0
    # With nu pinned to 0, A absorbs the size term: CMR at the fitted size is still right.
    assert res.ratio == pytest.approx(truth, rel=0.05)
    assert res.interval[0] <= truth <= res.interval[1]
    assert res.interval[1] - res.interval[0] < 0.3 * truth
    expected_dom = DOMAIN["E"] + DOMAIN["B"] * (res.ratio * 10 + DOMAIN["T0"]) ** -DOMAIN["beta"]
    assert res.domain_loss == pytest.approx(expected_dom, rel=1e-3)


def test_cmr_bad_input():
    r, t, n, general, base, _ = cpt_runs(sizes=(1e8,))
    with pytest.raises(LadderlabError, match="tolerance -0.1: must be > 0"):
        critical_mixture_ratio(r, t, general, base, tolerance=-0.1)
    with pytest.raises(LadderlabError, match=r"at_size 1e\+09: runs of one model size \(1e\+08\) cannot say"):
        critical_mixture_ratio(r, t, general, base, tolerance=0.02, size=n, at_size=1e9)
    r2 = r.copy()
    r2[3] = 1.5
    with pytest.raises(LadderlabError, match="ratio 1.5 at row 3 is not a domain share"):
        critical_mixture_ratio(r2, t, general, base, tolerance=0.02)
