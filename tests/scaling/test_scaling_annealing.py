"""LR-annealing law (Tissue et al. 2024): S1/S2 areas, fitting on two schedules, predicting a third."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab.scaling import api
from ladderlab.scaling.engine.law import FittedLaw, fit_law
from ladderlab.scaling.laws.annealing import (Annealing, areas_at, curve_areas, fit_curves, lr_areas, predict_schedule,
                                              warmup_length)
from ladderlab.scaling.laws.schedules import schedule_from_spec
from ladderlab.scaling.tables.curves import read_curves

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


def test_lr_areas_warmup_adds_to_s1_but_not_s2():
    # lr = .5, 1, 1, .5 with lam = .5: the initial rise (steps 1-3, before the first fall) is warm-up: its drop of
    # -.5 is ignored, so m = 0, 0, 0, .5 and S2 = 0, 0, 0, .5; S1 is the plain cumulative sum.
    s1, s2 = lr_areas([0.5, 1.0, 1.0, 0.5], lam=0.5)
    np.testing.assert_array_equal(s1, [0.5, 1.5, 2.5, 3.0])
    np.testing.assert_array_equal(s2, [0.0, 0.0, 0.0, 0.5])
    assert warmup_length(np.array([0.5, 1.0, 1.0, 0.5])) == 3 and warmup_length(np.array([1.0, 2.0])) == 2
    # warmup=0 counts the rise as negative annealing: drops 0, -.5, 0, .5 -> m = 0, -.5, -.25, .375
    _, s2 = lr_areas([0.5, 1.0, 1.0, 0.5], lam=0.5, warmup=0)
    np.testing.assert_array_equal(s2, [0.0, -0.5, -0.75, -0.375])


def test_lr_areas_rewarm_after_decay_is_negative_annealing():
    # lr = 1, .5, 1 with lam = .5: warm-up is step 1 only; drops 0, .5, -.5 -> m = 0, .5, -.25 -> S2 = 0, .5, .25
    _, s2 = lr_areas([1.0, 0.5, 1.0], lam=0.5)
    np.testing.assert_array_equal(s2, [0.0, 0.5, 0.25])
    # the WSD test schedule's 200 warm-up steps leave S2 at 0 until its cooldown starts
    _, s2 = lr_areas(wsd())
    assert np.all(s2[: int(0.8 * T)] == 0.0) and s2[-1] > 0


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
        assert 2.0 < loss[WARMUP:].min() and loss[WARMUP:].max() < 4.0
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


# --- schedules, curves from a runs table, and the CLI --------------------------------------------------------------
def test_schedule_specs_match_the_test_schedules():
    np.testing.assert_allclose(schedule_from_spec(f"wsd:peak={PEAK},steps={T},warmup={WARMUP},decay=0.2"), wsd(),
                               rtol=1e-12)
    np.testing.assert_allclose(schedule_from_spec(f"cosine:peak={PEAK},steps=4k,warmup={WARMUP}"), cosine(), rtol=1e-12)
    np.testing.assert_allclose(schedule_from_spec(f"constant:peak={PEAK},steps={T},warmup={WARMUP}"), constant())
    sqrt = schedule_from_spec("wsd:peak=1,steps=10,decay=4,shape=sqrt,final=0.1")
    # cooldown over steps 7-10: fraction done 1/4 .. 1, rate = 0.1 + 0.9 (1 - sqrt(fraction))
    np.testing.assert_allclose(sqrt, [1] * 6 + [0.1 + 0.9 * (1 - np.sqrt(f)) for f in (0.25, 0.5, 0.75, 1.0)])


@pytest.mark.parametrize("spec,message", [
    ("linear:peak=1,steps=5", "unknown kind 'linear'"),
    ("wsd:peak=1", "missing steps="),
    ("cosine:peak=1,steps=10,decay=0.2", "bad item 'decay=0.2' \\(cosine takes final, peak, steps, warmup\\)"),
    ("wsd:peak=1,steps=10,shape=exp", "unknown shape 'exp'"),
    ("wsd:peak=1,steps=10,warmup=5,decay=8", "decay 8 must give 1..5 cooldown steps"),
])
def test_bad_schedule_specs_name_the_problem(spec, message):
    from ladderlab.errors import LadderlabError

    with pytest.raises(LadderlabError, match=message):
        schedule_from_spec(spec)


def runs_table(path, every=20):
    """A runs table: a constant and a WSD run of the same model, and a branch continuing the constant run with a
    linear cooldown (base_run), the loss from TRUTH at step 1 and every EVERY-th step."""
    rows = ["run,N,D,step,lr,loss,base_run"]
    branch = np.linspace(PEAK, 0, 801)[1:]  # 800 steps continuing the constant run's 4000
    for run, lr, base in (("const", constant(), ""), ("wsd", wsd(), ""), ("cool", branch, "const")):
        full = np.concatenate([constant(), branch]) if base else lr
        loss = true_loss(full)[-len(lr):]
        for s in [1, *range(every, len(lr) + 1, every)]:
            rows.append(f"{run},1e8,{s * 1000},{s},{float(lr[s - 1])!r},{float(loss[s - 1])!r},{base}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_curves_from_runs_join_a_branch_to_its_base_run(tmp_path):
    curves = {c.run: c for c in read_curves(runs_table(tmp_path / "runs.csv"), "loss")}
    cool = curves["cool"]
    assert cool.start == 4000 and cool.steps[1] == 4020 and cool.last == 4800 and cool.tokens_per_step == 1000
    s1, s2 = curve_areas(cool)
    r1, r2 = lr_areas(np.concatenate([constant(), np.linspace(PEAK, 0, 801)[1:]]))
    # logged every 20 steps: piecewise-linear schedules are interpolated exactly
    np.testing.assert_allclose(s1[cool.steps.astype(int) - 1], r1[cool.steps.astype(int) - 1], rtol=1e-9)
    np.testing.assert_allclose(s2[cool.steps.astype(int) - 1], r2[cool.steps.astype(int) - 1], rtol=1e-6, atol=1e-12)


def test_fit_curves_on_runs_recovers_the_law_and_picks_the_momentum(tmp_path):
    curves = read_curves(runs_table(tmp_path / "runs.csv"), "loss")
    fitted = fit_curves(curves, min_step=WARMUP + 1)
    assert fitted.law.lam == 0.999 and not fitted.law.size
    for k, v in TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-3), k


def test_cli_fit_annealing_and_predict_curve(tmp_path, capsys):
    from ladderlab.cli import main

    runs = runs_table(tmp_path / "runs.csv")
    law = tmp_path / "law.json"
    assert main(["fit", "annealing", "--runs", str(runs), "--loss", "loss", "--exclude", "^wsd$", "--lam", "0.999",
                 "--min-step", str(WARMUP + 1), "--bootstrap", "0", "--json", str(law), "--plot",
                 str(tmp_path / "fit.png")]) == 0
    assert "LR-annealing law fitted to 2 runs" in capsys.readouterr().out
    out = tmp_path / "pred.json"
    spec = f"wsd:peak={PEAK},steps={T},warmup={WARMUP},decay=0.2"
    assert main(["predict", "curve", "--law", str(law), "--schedule", spec, "--actual", str(runs), "--actual-run",
                 "wsd", "--json", str(out), "--out", str(tmp_path / "curve.csv"), "--plot",
                 str(tmp_path / "curve.png")]) == 0
    row = json.loads(out.read_text())["schedules"][0]
    assert row["final_loss"] == pytest.approx(true_loss(wsd())[-1], rel=1e-4)  # the held-out WSD run's last loss
    assert abs(row["final_error_pct"]) < 0.01 and row["mean_abs_error_pct"] < 0.05
    assert (tmp_path / "curve.png").stat().st_size > 10_000 and (tmp_path / "fit.png").stat().st_size > 10_000
    assert main(["predict", "curve", "--law", str(law), "--schedule", "wsd:peak=1"]) == 2
    assert "missing steps=" in capsys.readouterr().err
