"""Each law recovers known parameters from synthetic data; compute_optimal solves the iso-FLOP problem.

Noise-free data must give the truth to ~1e-4 relative. Noisy data (multiplicative lognormal, sigma known) must give
parameters within a few asymptotic standard errors: SE from the Gauss-Newton covariance sigma^2 (J^T J)^-1 of the
law's residual (log residual for Huber/log laws, raw for the accuracy law), in the law's internal coordinates.
With Huber delta=1e-3 << sigma the estimator behaves like least absolute deviations (efficiency 2/pi for normal
noise, i.e. SE x 1.25), so 5 x SE x 1.25 is a generous but still discriminating bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.scaling import api
from ladderlab.scaling.engine.law import Law, fit_law
from ladderlab.scaling.laws.accuracy import SigmoidAccuracy
from ladderlab.scaling.laws.chinchilla import Chinchilla, compute_optimal
from ladderlab.scaling.laws.power import PowerLaw

CHIN_TRUTH = dict(A=406.4, B=410.7, E=1.69, alpha=0.34, beta=0.28)


def truth_predict(law: Law, public: dict[str, float], x: dict[str, np.ndarray]) -> np.ndarray:
    x = {k: np.atleast_1d(np.asarray(v, float)) for k, v in x.items()}
    return law.predict_batch(law.to_internal(public)[None, :], x)[0]


def standard_errors(law: Law, public: dict[str, float], x: dict[str, np.ndarray], sigma: float) -> np.ndarray:
    """Asymptotic SE of the internal parameters for residual noise sigma (central-difference Jacobian)."""
    theta = law.to_internal(public)
    h = 1e-6 * np.maximum(1.0, np.abs(theta))
    rows = np.vstack([theta + np.diag(h), theta - np.diag(h)])
    pred = law.predict_batch(rows, x)
    f = np.log(pred) if law.residual == "log" else pred
    p = theta.size
    jac = ((f[:p] - f[p:]) / (2 * h[:, None])).T  # N x P
    cov = sigma**2 * np.linalg.inv(jac.T @ jac)
    return np.sqrt(np.diag(cov))


def assert_within_se(law, fitted, public, x, sigma, k=5.0 * 1.25):
    se = standard_errors(law, public, x, sigma)
    err = np.abs(fitted.theta - law.to_internal(public))
    assert np.all(err <= k * se), f"errors {err} vs bounds {k * se} (fitted {fitted.params}, truth {public})"


def chinchilla_grid():
    n = np.geomspace(1e7, 1e10, 10)
    mult = np.array([2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
    nn, mm = np.meshgrid(n, mult, indexing="ij")
    return {"N": nn.ravel(), "D": (nn * mm).ravel()}


# --- Chinchilla --------------------------------------------------------------------------------------------------
def test_chinchilla_noise_free_recovers_truth_tightly():
    law, x = Chinchilla(), chinchilla_grid()
    y = truth_predict(law, CHIN_TRUTH, x)
    fitted = fit_law(law, x, y)
    for k, v in CHIN_TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-4), k
    assert fitted.objective < 1e-12
    assert fitted.rmse_log < 1e-7
    assert fitted.warnings == []
    assert fitted.n_points == 60


def test_chinchilla_lognormal_noise_recovery_within_standard_errors():
    sigma = 0.005
    law, x = Chinchilla(), chinchilla_grid()
    rng = np.random.default_rng(20240601)
    y = truth_predict(law, CHIN_TRUTH, x) * np.exp(rng.normal(0.0, sigma, x["N"].size))
    fitted = fit_law(law, x, y)
    assert_within_se(law, fitted, CHIN_TRUTH, x, sigma)
    # The well-determined quantities, in plain terms: E to 2%, exponents to 0.03.
    assert fitted.params["E"] == pytest.approx(1.69, rel=0.02)
    assert fitted.params["alpha"] == pytest.approx(0.34, abs=0.03)
    assert fitted.params["beta"] == pytest.approx(0.28, abs=0.03)
    # The residual scatter matches the noise that was put in (60 points, 5 parameters).
    assert 0.7 * sigma < fitted.rmse_log < 1.2 * sigma
    # Fitted law and truth agree far better than the noise at the data points.
    dev = np.log(fitted.predict(**x)) - np.log(truth_predict(law, CHIN_TRUTH, x))
    assert np.max(np.abs(dev)) < sigma
    assert fitted.mape == pytest.approx(
        100 * np.mean(np.abs(fitted.predict(**x) - y) / y), rel=1e-12
    )


# --- compute-optimal allocation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("flops", [1e19, 1e21, 1e23])
def test_compute_optimal_is_on_iso_flop_line_and_minimises_loss(flops):
    n_opt, d_opt = compute_optimal(CHIN_TRUTH, flops)
    assert 6.0 * n_opt * d_opt == pytest.approx(flops, rel=1e-12)

    law = Chinchilla()

    def loss(n):
        n = np.asarray(n, float)
        return truth_predict(law, CHIN_TRUTH, {"N": n, "D": flops / (6.0 * n)})

    scan = np.geomspace(n_opt / 100, n_opt * 100, 400_001)
    values = loss(scan)
    best = scan[np.argmin(values)]
    step = np.log(scan[1] / scan[0])
    assert abs(np.log(best / n_opt)) <= step  # argmin of the dense scan is the neighbour of N_opt
    assert loss(n_opt)[0] <= values.min() + 1e-12


def test_compute_optimal_golden_exponent_and_vectorised():
    # N_opt ~ C^(beta/(alpha+beta)) = C^(0.28/0.62): a 100x compute step multiplies N by 100^0.4516...
    c = np.array([1e20, 1e22])
    n, d = compute_optimal(CHIN_TRUTH, c)
    assert n.shape == d.shape == (2,)
    assert n[1] / n[0] == pytest.approx(100 ** (0.28 / 0.62), rel=1e-12)
    assert d[1] / d[0] == pytest.approx(100 ** (0.34 / 0.62), rel=1e-12)
    # Golden value at C = 1e20 from G = (alpha A / (beta B))^(1/(alpha+beta)).
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert n[0] == pytest.approx(g * (1e20 / 6) ** (0.28 / 0.62), rel=1e-14)


# --- one-variable power laws -------------------------------------------------------------------------------------
POWER_CASES = [
    ("size", "N", np.geomspace(1e6, 1e10, 15), dict(E=1.8, A=400.0, alpha=0.3)),
    ("step", "S", np.geomspace(100, 1e5, 15), dict(E=2.1, B=12.0, beta=0.45)),
    ("compute", "C", np.geomspace(1e17, 1e22, 15), dict(E=1.7, A=60.0, alpha=0.09)),
]


@pytest.mark.parametrize("kind,var,xs,truth", POWER_CASES, ids=[c[0] for c in POWER_CASES])
def test_power_law_noise_free_recovery(kind, var, xs, truth):
    law = PowerLaw(kind)
    assert law.inputs == (var,)
    assert set(law.names) == set(truth)
    y = truth_predict(law, truth, {var: xs})
    fitted = api.fit(kind, {var: xs}, y)
    assert fitted.law.name == kind
    for k, v in truth.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-4), k
    assert fitted.warnings == []


@pytest.mark.parametrize("kind,var,xs,truth", POWER_CASES, ids=[c[0] for c in POWER_CASES])
def test_power_law_noisy_recovery_within_standard_errors(kind, var, xs, truth):
    sigma = 0.005
    law = PowerLaw(kind)
    rng = np.random.default_rng(7)
    x = {var: np.repeat(xs, 2)}  # two seeds per point
    y = truth_predict(law, truth, x) * np.exp(rng.normal(0.0, sigma, x[var].size))
    fitted = fit_law(law, x, y)
    assert_within_se(law, fitted, truth, x, sigma)


def test_power_law_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown power law 'width'"):
        PowerLaw("width")


# --- sigmoid accuracy ----------------------------------------------------------------------------------------------
ACC_TRUTH = dict(a=-0.7, b=0.95, k=5.0, L0=1.2)


def test_sigmoid_accuracy_noise_free_recovery():
    law = SigmoidAccuracy()
    x = {"L": np.linspace(0.6, 2.0, 30)}
    y = truth_predict(law, ACC_TRUTH, x)
    # Spot-check the law itself: at L = L0 the sigmoid is half-way, a/2 + b.
    assert truth_predict(law, ACC_TRUTH, {"L": np.array([1.2])})[0] == pytest.approx(-0.35 + 0.95, abs=1e-15)
    fitted = fit_law(law, x, y)
    for k, v in ACC_TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-4), k
    assert fitted.warnings == []


def test_sigmoid_accuracy_noisy_recovery_within_standard_errors():
    sigma = 0.005  # additive accuracy noise; least squares, so no Huber inflation needed
    law = SigmoidAccuracy()
    x = {"L": np.linspace(0.6, 2.0, 40)}
    rng = np.random.default_rng(11)
    y = truth_predict(law, ACC_TRUTH, x) + rng.normal(0.0, sigma, 40)
    fitted = fit_law(law, x, y)
    assert_within_se(law, fitted, ACC_TRUTH, x, sigma, k=5.0)
    resid = fitted.predict(**x) - y
    assert fitted.objective == pytest.approx(np.sum(resid**2), rel=1e-9)  # l2 loss on raw residuals
