"""Mixing laws recover known parameters; auto selection picks the law the data came from; bad input is one line."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.errors import LadderlabError
from ladderlab.scaling.mixing.law import EPS, ImplicitMixingLaw, MixingLaw, fit_mixing
from ladderlab.scaling.mixing.model import fit_mixing_model, load_mixing_model, model_name

DOMAINS = ("web", "code", "books", "math")


def design(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed).dirichlet(np.full(len(DOMAINS), 0.7), n)
    return dict(zip(DOMAINS, r.T))


def plain_truth(x, c, k, t):
    """The paper's form with an unpinned t per domain: c + k exp(sum_j t_j r_j)."""
    return c + k * np.exp(sum(tj * x[d] for d, tj in zip(DOMAINS, t)))


def test_plain_law_recovers_parameters_in_the_pinned_gauge():
    x = design(30)
    t = np.array([-2.0, 0.4, -0.5, 0.8])
    y = plain_truth(x, 1.9, 1.2, t)
    fitted = fit_mixing(MixingLaw(DOMAINS), x, y)
    # Shares sum to 1, so t_j - t_math and k exp(t_math) are what the data determine.
    expected = {"c": 1.9, "k": 1.2 * np.exp(t[-1]), **{f"t_{d}": t[j] - t[-1] for j, d in enumerate(DOMAINS[:-1])}}
    assert set(fitted.params) == set(expected)
    for name, value in expected.items():
        assert fitted.params[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert fitted.rmse_log < 1e-8


def test_log_law_recovers_power_features():
    x = design(60, seed=5)
    u = np.array([-0.08, -0.02, 0.0, -0.05])
    y = 1.5 + 2.0 * np.exp(0.3 * x["web"] - 0.4 * x["code"]) * np.prod([(x[d] + EPS) ** ui for d, ui in zip(DOMAINS, u)], axis=0)
    fitted = fit_mixing(MixingLaw(DOMAINS, "log"), x, y)
    p = fitted.params
    assert p["c"] == pytest.approx(1.5, rel=1e-3)
    assert p["k"] == pytest.approx(2.0, rel=1e-3)
    assert [p[f"u_{d}"] for d in DOMAINS] == pytest.approx(u, abs=1e-3)
    assert (p["t_web"], p["t_code"], p["t_books"]) == pytest.approx((0.3, -0.4, 0.0), abs=1e-2)


def test_implicit_law_fits_a_total_of_latent_domains():
    x = design(60, seed=9)
    total = 0.3 * plain_truth(x, 2.0, 1.0, [-3.0, 0.5, 0.5, 0.5]) + 0.7 * plain_truth(x, 1.5, 1.5, [0.5, -2.0, 0.2, 0.2])
    law = ImplicitMixingLaw(DOMAINS, latent=2)
    fitted = fit_mixing(law, x, total)
    assert fitted.rmse_log < 1e-4
    # A single exponential (the plain law) cannot represent the sum of two: its error is far larger.
    assert fit_mixing(MixingLaw(DOMAINS), x, total).rmse_log > 20 * fitted.rmse_log


def test_auto_selects_log_law_for_power_like_data_and_plain_for_plain_data(tmp_path):
    x = design(60, seed=11)
    y_plain = plain_truth(x, 2.0, 1.0, [-2.0, 0.5, 0.3, 0.0]) * np.exp(np.random.default_rng(0).normal(0, 0.002, 60))
    y_power = 2.0 + 1.5 * (x["web"] + EPS) ** -0.15 * (x["code"] + EPS) ** 0.05
    model = fit_mixing_model(x, {"val_plain": y_plain, "val_power": y_power}, "auto")
    assert model.laws["val_power"].law.features == "log"
    assert model.cv["val_power"]["log"]["rmse_log"] < 0.2 * model.cv["val_power"]["plain"]["rmse_log"]
    assert model.cv["val_power"]["log"]["spearman"] > 0.99
    # With noise on plain data the simpler law predicts held-out runs at least as well.
    assert model.laws["val_plain"].law.features == "linear"
    # Saved and reloaded, the model predicts the same numbers.
    model.save(tmp_path / "law.json")
    again = load_mixing_model(tmp_path / "law.json")
    r = {d: np.array([0.25]) for d in DOMAINS}
    for c in model.targets:
        assert again.predict(r)[c] == pytest.approx(model.predict(r)[c], rel=1e-12)
    assert again.oof["val_power"] == pytest.approx(model.oof["val_power"])


def test_intervals_come_from_held_out_errors():
    x = design(50, seed=2)
    y = plain_truth(x, 2.0, 1.0, [-2.0, 0.5, 0.3, 0.0]) * np.exp(np.random.default_rng(1).normal(0, 0.01, 50))
    model = fit_mixing_model(x, {"v": y}, "plain")
    lo, hi = model.interval(np.array([3.0]), {"v": 1.0}, 0.9)
    err = np.log(model.observed["v"] / model.oof["v"])
    half = 1.6448536 * 1.4826 * np.median(np.abs(err - np.median(err)))  # z(0.95) x MAD as a normal sigma
    assert lo[0] == pytest.approx(3.0 * np.exp(np.median(err) - half), rel=1e-6)
    assert hi[0] == pytest.approx(3.0 * np.exp(np.median(err) + half), rel=1e-6)
    assert 0.01 < np.log(hi[0] / lo[0]) < 0.06  # about 2 x 1.645 sigma for sigma = 0.01
    # one held-out prediction exploding (an extrapolated exponential law) moves neither bound far
    model.oof["v"][0] = 1e9
    assert model.interval(np.array([3.0]), {"v": 1.0}, 0.9)[0][0] == pytest.approx(lo[0], rel=0.02)


def test_bad_inputs_are_named():
    x = design(8)
    with pytest.raises(LadderlabError, match=r"fewer runs \(8\) than parameters of the log law \(9\)"):
        fit_mixing_model(x, {"v": np.full(8, 3.0)}, "log")
    with pytest.raises(LadderlabError, match=r"loss column v: value nan at row 2"):
        fit_mixing_model(x, {"v": np.array([3.0, 3, np.nan, 3, 3, 3, 3, 3])}, "plain")
    with pytest.raises(LadderlabError, match="unknown mixing model 'gbm'"):
        fit_mixing_model(x, {"v": np.full(8, 3.0)}, "gbm")
    model = fit_mixing_model(x, {"v": plain_truth(x, 2.0, 1.0, [1, 0, 0, 0])}, "plain")
    with pytest.raises(LadderlabError, match="unknown domain"):
        model.predict({"wiki": 1.0})
    with pytest.raises(LadderlabError, match="unknown target column"):
        model.weights("val_x")


def test_real_regmix_runs_log_law_ranks_held_out_mixtures_better():
    """96 real RegMix 1M-parameter runs (tests/fixtures, MIT): golden held-out scores and a Pile-CC-heavy optimum."""
    from pathlib import Path

    from ladderlab.scaling.mixing.optimize import optimize_mixture
    from ladderlab.scaling.mixing.table import read_mixture_table

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    table = read_mixture_table(fixtures / "regmix_train_mixture_1m_first96.csv",
                               fixtures / "regmix_train_pile_cc_loss_1m_first96.csv", on="index")
    model = fit_mixing_model(table.proportions, table.losses)
    cv = model.cv["metric/the_pile_pile_cc_val_loss"]
    assert model_name(model.laws["metric/the_pile_pile_cc_val_loss"].law) == "log"
    assert cv["plain"]["spearman"] == pytest.approx(0.8845, abs=2e-3)  # converged optima (the old 300-step
    assert cv["log"]["spearman"] == pytest.approx(0.9685, abs=2e-3)  # cap stopped short: 0.8993 and 0.9737)
    assert cv["log"]["rmse_log"] < 0.6 * cv["plain"]["rmse_log"]
    best = optimize_mixture(model)
    assert best.ratios["train_the_pile_pile_cc"] > 0.85  # RegMix's own optimum for Pile-CC: 0.87
    assert best.interval[0] < best.loss < best.interval[1]


def _regmix_fixture():
    from pathlib import Path

    from ladderlab.scaling.mixing.table import read_mixture_table

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    table = read_mixture_table(fixtures / "regmix_train_mixture_1m_first96.csv",
                               fixtures / "regmix_train_pile_cc_loss_1m_first96.csv", on="index")
    return table.proportions, table.losses["metric/the_pile_pile_cc_val_loss"]


@pytest.mark.parametrize("features", ["linear", "log"])
def test_log_jacobian_matches_finite_differences(features):
    x, _ = _regmix_fixture()
    law = MixingLaw(tuple(x), features)
    theta = np.random.default_rng(0).normal(0, 0.5, (3, len(law.params)))
    h = 1e-6
    shifted = theta[:, None, :] + h * np.eye(len(law.params))[None]
    numeric = (np.log(law.predict_batch(shifted.reshape(-1, len(law.params)), x)).reshape(3, len(law.params), -1)
               - np.log(law.predict_batch(theta, x))[:, None, :]) / h
    np.testing.assert_allclose(law.log_jacobian(theta, x), numeric, atol=2e-5)


@pytest.mark.parametrize("features", ["linear", "log"])
def test_batched_fits_of_folds_and_columns_equal_fits_one_at_a_time(features):
    """Real RegMix runs: one batch holding two columns x (a fold's rows, every row) gives each fit's own optimum,
    no worse than the engine's multistart L-BFGS-B from the same starts, and converged without warnings."""
    from ladderlab.scaling.engine.law import fit_law
    from ladderlab.scaling.mixing.law import fit_mixing_batch

    x, y = _regmix_fixture()
    law = MixingLaw(tuple(x), features)
    y2 = y * np.exp(0.3 * x["train_the_pile_pile_cc"])  # a second column
    train = np.arange(len(y)) % 4 != 0
    w = np.array([train, np.ones_like(train)] * 2, float)
    theta, value, done = fit_mixing_batch(law, x, np.array([y, y, y2, y2]), w)
    assert done.all()
    for b, (target, rows) in enumerate(zip([y, y, y2, y2], w.astype(bool))):
        x_b = {d: v[rows] for d, v in x.items()}
        alone = fit_mixing(law, x_b, target[rows])
        assert not alone.warnings
        assert value[b] == pytest.approx(alone.objective, rel=1e-9)
        np.testing.assert_allclose(law.predict_batch(theta[b : b + 1], x)[0], alone.predict(**x), rtol=1e-6)
        lbfgs = fit_law(law, x_b, target[rows], starts=law.starts(x_b, target[rows]), n_refine=2, max_iter=300)
        assert value[b] <= lbfgs.objective * (1 + 1e-9)
