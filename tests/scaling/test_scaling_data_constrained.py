"""Data-constrained law (Muennighoff et al. 2023): effective data/params, synthetic recovery, published numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ladderlab.scaling.engine.law as law_module
from ladderlab.scaling.engine.law import fit_law
from ladderlab.scaling.engine.minimize import residual_objective
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.laws.data_constrained import DataConstrained, effective
from ladderlab.scaling.tables.columns import read_columns

# Published base fit of the datablations paper (utils/parametric_fit.ipynb): a, b, e in log space, alpha = beta.
BASE = dict(A=float(np.exp(6.255414)), B=float(np.exp(7.3049974)), E=float(np.exp(0.6254804)), alpha=0.3526596, beta=0.3526596)
PUBLISHED_R = {"R_D*": 15.387756, "R_N*": 5.309743}
BUNDLED = Path(law_module.__file__).parents[1] / "bundled" / "datablations_c4_fit182.csv"


def predict(law, public, x):
    return law.predict_batch(law.to_internal(public)[None, :], x)[0]


def n_opt_of_u(base, u):
    """N of a compute-optimal run whose data equals U: alpha A N^-alpha = beta B U^-beta."""
    return (base["alpha"] * base["A"] / (base["beta"] * base["B"])) ** (1 / base["alpha"]) * u ** (base["beta"] / base["alpha"])


def test_effective_golden_values():
    u = np.array([100.0, 100.0, 100.0, 100.0])
    total = np.array([50.0, 100.0, 300.0, 1e9])
    r_star = np.array([1.0, 1.0, 1.0, 15.0])
    got = effective(u, total, r_star)
    # total <= unique: no repeats, D' = U; R = 2, R* = 1: 100 + 100 (1 - e^-2); R -> inf: U (1 + R*).
    np.testing.assert_allclose(got, [100.0, 100.0, 100.0 + 100.0 * (1 - np.exp(-2.0)), 1600.0], rtol=1e-12)
    # first repeat is worth almost a fresh token when R* is large: d D'/d R at 0 is U.
    assert effective(np.array([1.0]), np.array([1.0 + 1e-6]), np.array([1e4]))[0] == pytest.approx(1.0 + 1e-6, rel=1e-12)


def _chinchilla_at(n, d):
    law = Chinchilla()
    return law.predict_batch(law.to_internal(BASE)[None, :], {"N": n, "D": d})[0]


def test_reduces_to_chinchilla_when_data_is_used_once_and_params_are_not_excess():
    law = DataConstrained()
    u = np.array([1e9, 1e10, 1e11])
    n = 0.5 * n_opt_of_u(BASE, u)  # below N_opt(U): no excess parameters
    d = u.copy()  # exactly one epoch: no repeats
    got = predict(law, {**BASE, **PUBLISHED_R}, {"N": n, "D": d, "U": u})
    np.testing.assert_allclose(got, _chinchilla_at(n, d), rtol=1e-13)


def test_fewer_tokens_than_unique_counts_only_tokens_seen():
    # Less than one epoch: the run saw D < U tokens, each once, so D' = D (U_D = min(U, D) as in Muennighoff et
    # al.), not U - a larger unseen pool must not lower the predicted loss.
    law = DataConstrained()
    u = np.array([1e9, 1e10, 1e11])
    n = 0.5 * n_opt_of_u(BASE, 0.8 * u)  # below N_opt of the data actually seen: no excess parameters
    d = 0.8 * u  # less than one epoch: every token seen once, D' must be D
    got = predict(law, {**BASE, **PUBLISHED_R}, {"N": n, "D": d, "U": u})
    np.testing.assert_allclose(got, _chinchilla_at(n, d), rtol=1e-13)


def _synthetic_rows():
    rows = []
    for u in (1e8, 1e9, 1e10):
        n_opt = n_opt_of_u(BASE, u)
        for n_mult in (0.3, 1.0, 3.0, 10.0, 30.0):  # below and well above N_opt(U)
            for repeats in (0.5, 1.0, 2.0, 4.0, 10.0, 20.0, 40.0):  # D up to 40 x U
                rows.append((n_mult * n_opt, repeats * u, u))
    n, d, u = (np.array(c) for c in zip(*rows))
    return {"N": n, "D": d, "U": u}


def test_synthetic_recovery_of_decay_constants_with_fixed_base():
    law = DataConstrained()
    x = _synthetic_rows()
    truth = {**BASE, "R_D*": 15.4, "R_N*": 5.3}
    y = predict(law, truth, x)
    assert np.all(y > 0)
    # Both decay terms matter on this design: changing either constant by 2x moves the loss by far more than 1e-3.
    for key in ("R_D*", "R_N*"):
        moved = predict(law, {**truth, key: truth[key] * 2}, x)
        assert np.max(np.abs(np.log(moved / y))) > 1e-2, key
    fitted = fit_law(law, x, y, fixed=BASE)
    assert fitted.params["R_D*"] == pytest.approx(15.4, rel=1e-2)
    assert fitted.params["R_N*"] == pytest.approx(5.3, rel=1e-2)
    for k, v in BASE.items():  # fixed parameters stay exactly where they were pinned (up to exp/log)
        assert fitted.params[k] == pytest.approx(v, rel=1e-14)
    assert fitted.objective < 1e-12
    assert fitted.warnings == []


def _bundled():
    cols = read_columns(BUNDLED, ["params_N", "tokens_D", "unique_tokens_U", "final_val_loss"], text=["name"])
    x = {"N": cols["params_N"], "D": cols["tokens_D"], "U": cols["unique_tokens_U"]}
    return x, cols["final_val_loss"], cols["name"]


def test_bundled_table_shape():
    x, y, names = _bundled()
    assert len(y) == 182 and len(set(names)) == 182
    assert names[0] == "2b832b4b" and y[0] == 2.722962


def test_published_huber_objective_on_bundled_data():
    law = DataConstrained()
    x, y, _ = _bundled()
    obj = residual_objective(lambda t: law.predict_batch(t, x), y, "log", "huber", 1e-3)
    theta = law.to_internal({**BASE, **PUBLISHED_R})
    # The authors' published total Huber loss for this 182-run fit.
    assert float(obj(theta[None, :])[0]) == pytest.approx(0.015826, rel=1e-4)


def test_fit_with_published_base_reaches_published_objective_or_lower():
    law = DataConstrained()
    x, y, _ = _bundled()
    fitted = fit_law(law, x, y, fixed=BASE)
    # The valley in (R_D*, R_N*) is flat; the multistart finds a point at least as good as the published one.
    assert fitted.objective < 0.015826
    assert fitted.objective <= 0.0158047 + 1e-7
    assert fitted.n_points == 182
    for k, v in BASE.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-14)
    # The reported objective is the objective of the reported parameters.
    obj = residual_objective(lambda t: law.predict_batch(t, x), y, "log", "huber", 1e-3)
    assert float(obj(fitted.theta[None, :])[0]) == pytest.approx(fitted.objective, rel=1e-12)
