"""LR-annealing law (Tissue et al. 2024): S1/S2 areas, fitting on two schedules, predicting a third."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.scaling import api
from ladderlab.scaling.engine.law import FittedLaw, fit_law
from ladderlab.scaling.laws.annealing import Annealing, areas_at, lr_areas, predict_schedule

TRUTH = dict(L0=2.5, A=0.6, alpha=0.5, C=0.3)
T, WARMUP, PEAK = 4000, 200, 2e-3


def _warmup(steps):
    return PEAK * steps / WARMUP


def cosine(t=T):
    s = np.arange(1, t + 1, dtype=float)
    frac = np.clip((s - WARMUP) / (t - WARMUP), 0.0, 1.0)
    return np.where(s <= WARMUP, _warmup(s), PEAK * 0.5 * (1.0 + np.cos(np.pi * frac)))


def constant(t=T):
    s = np.arange(1, t + 1, dtype=float)
    return np.where(s <= WARMUP, _warmup(s), PEAK)


def wsd(t=T, decay_frac=0.2):
    s = np.arange(1, t + 1, dtype=float)
    start = int(t * (1 - decay_frac))
    return np.where(s <= WARMUP, _warmup(s), np.where(s <= start, PEAK, PEAK * (t - s) / (t - start)))


def true_loss(lr, lam=0.999):
    s1, s2 = lr_areas(lr, lam)
    law = Annealing(lam)
    return law.predict_batch(law.to_internal(TRUTH)[None, :], {"S1": s1, "S2": s2})[0]


# --- areas -------------------------------------------------------------------------------------------------------
def test_lr_areas_hand_computed():
    # lr = 1, 1, .5, .5, 0 with lam = .5:
    #   S1 = cumsum            = 1, 2, 2.5, 3, 3
    #   drops (eta_{i-1}-eta_i) = 0, 0, .5, 0, .5   (no drop before the first step)
    #   m_i = .5 m_{i-1} + drop = 0, 0, .5, .25, .625
    #   S2 = cumsum(m)          = 0, 0, .5, .75, 1.375
    s1, s2 = lr_areas(np.array([1.0, 1.0, 0.5, 0.5, 0.0]), lam=0.5)
    np.testing.assert_array_equal(s1, [1.0, 2.0, 2.5, 3.0, 3.0])
    np.testing.assert_array_equal(s2, [0.0, 0.0, 0.5, 0.75, 1.375])


def test_lr_areas_warmup_gives_negative_annealing_area():
    # lr = .5, 1, 1 with lam = .5: drops 0, -.5, 0 -> m = 0, -.5, -.25 -> S2 = 0, -.5, -.75
    s1, s2 = lr_areas([0.5, 1.0, 1.0], lam=0.5)
    np.testing.assert_array_equal(s1, [0.5, 1.5, 2.5])
    np.testing.assert_array_equal(s2, [0.0, -0.5, -0.75])


def test_lr_areas_constant_schedule_has_no_annealing_area():
    s1, s2 = lr_areas(np.full(50, 3e-4))
    np.testing.assert_allclose(s1, 3e-4 * np.arange(1, 51), rtol=1e-12)
    np.testing.assert_array_equal(s2, np.zeros(50))


def test_areas_at_equals_lr_areas_when_every_step_is_logged():
    lr = wsd(600)
    steps = np.arange(1, 601)
    s1, s2 = areas_at(steps, lr)
    r1, r2 = lr_areas(lr)
    np.testing.assert_array_equal(s1, r1)
    np.testing.assert_array_equal(s2, r2)


def test_areas_at_sparse_logging_of_piecewise_linear_schedule():
    # WSD is linear between its breakpoints (1, WARMUP, decay start, T), so logging those plus a few more steps
    # and interpolating reproduces the schedule; the areas at the logged steps must match, in the order given.
    t = 1000
    lr = wsd(t)
    steps = np.array([t, 1, WARMUP, 500, 800, 900, 350])
    s1, s2 = areas_at(steps, lr[steps - 1])
    r1, r2 = lr_areas(lr)
    np.testing.assert_allclose(s1, r1[steps - 1], rtol=1e-12)
    np.testing.assert_allclose(s2, r2[steps - 1], rtol=1e-10, atol=1e-15)


# --- fitting and predicting --------------------------------------------------------------------------------------
def _training_data(noise_sigma=0.0, seed=0):
    steps = np.arange(WARMUP, T + 1, 100)
    s1, s2, y = [], [], []
    for lr in (cosine(), constant()):
        a1, a2 = lr_areas(lr)
        s1.append(a1[steps - 1])
        s2.append(a2[steps - 1])
        y.append(true_loss(lr)[steps - 1])
    y = np.concatenate(y)
    if noise_sigma:
        y = y * np.exp(np.random.default_rng(seed).normal(0.0, noise_sigma, y.size))
    return {"S1": np.concatenate(s1), "S2": np.concatenate(s2)}, y


def test_synthetic_magnitudes_are_sensible():
    for lr in (cosine(), constant(), wsd()):
        loss = true_loss(lr)
        assert np.all(loss > 0)
        assert 2.5 < loss[WARMUP:].min() and loss[WARMUP:].max() < 4.0
    # The annealing term matters: WSD's cooldown lowers the final loss by > 0.1 below the constant run even
    # though WSD has the smaller forward area, and the difference is C * S2 driven.
    assert true_loss(constant())[-1] - true_loss(wsd())[-1] > 0.1
    s1, s2 = lr_areas(wsd())
    assert TRUTH["C"] * (s2[-1] - s2[int(0.8 * T) - 1]) > 0.1


def test_annealing_fit_noise_free_recovers_truth_and_predicts_wsd():
    x, y = _training_data()
    fitted = fit_law(Annealing(), x, y)
    for k, v in TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-4), k
    assert fitted.warnings == []
    pred = predict_schedule(fitted, wsd())
    truth = true_loss(wsd())
    np.testing.assert_allclose(pred[WARMUP:], truth[WARMUP:], rtol=1e-6)


def test_annealing_fit_noisy_predicts_unseen_wsd_schedule():
    sigma = 0.002
    x, y = _training_data(noise_sigma=sigma, seed=42)
    fitted = api.fit("annealing", x, y)
    assert 0.6 * sigma < fitted.rmse_log < 1.3 * sigma
    pred = predict_schedule(fitted, wsd())
    truth = true_loss(wsd())
    rel = np.abs(pred[WARMUP:] / truth[WARMUP:] - 1)
    assert rel.max() < 1.5 * sigma  # the law interpolates the noise away; off-schedule error stays below the noise
    assert abs(pred[-1] - truth[-1]) < 0.01  # the cooldown's final loss, the quantity one predicts WSD for


def test_predict_schedule_uses_the_laws_momentum():
    law = api.make_law("annealing", {"lam": 0.99})
    assert law.lam == 0.99 and law.spec() == {"lam": 0.99}
    fitted = FittedLaw(law, law.to_internal(TRUTH), 0.0, 10, 0.0, 0.0)
    lr = wsd(1000)
    np.testing.assert_array_equal(predict_schedule(fitted, lr), true_loss(lr, lam=0.99))
    assert not np.allclose(true_loss(lr, lam=0.99), true_loss(lr, lam=0.999))


def test_areas_at_step_zero_is_not_the_last_step():
    from ladderlab.errors import LadderlabError

    steps = np.array([0, 5, 10])
    lrs = np.array([1e-3, 1e-3, 1e-3])
    try:
        s1, s2 = areas_at(steps, lrs)
    except LadderlabError:
        return  # refusing step 0 with a named error is fine too
    assert s1[0] == 0.0 and s2[0] == 0.0, (s1, s2)


def test_small_but_well_determined_annealing_coefficient_is_not_at_bound():
    law = Annealing()
    s1 = np.tile(np.linspace(1.0, 50.0, 20), 2)
    s2 = np.concatenate([np.zeros(20), np.linspace(0.0, 40.0, 20)])  # C * S2 reaches 0.2: clearly identified
    truth = dict(L0=2.5, A=0.6, alpha=0.5, C=0.005)
    y = law.predict_batch(law.to_internal(truth)[None, :], {"S1": s1, "S2": s2})[0]
    fitted = fit_law(law, {"S1": s1, "S2": s2}, y)
    assert fitted.params["C"] == pytest.approx(0.005, rel=1e-4)
    assert fitted.warnings == []
