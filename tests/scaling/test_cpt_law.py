"""CPT law: recovers known parameters (a restart step too) from synthetic PT + CPT curves, predicts held-out runs,
reduces to the annealing law without distribution shift; CMR from a `fit cpt` law through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab.scaling.engine.law import FittedLaw
from ladderlab.scaling.laws.annealing import Annealing, lr_areas
from ladderlab.scaling.laws.cpt import CPTLaw, base_loss, cpt_areas, fit_cpt, fit_cpt_forms, load_cpt_law, predict_cpt
from ladderlab.scaling.laws.schedules import schedule_from_spec
from ladderlab.scaling.tables.curves import Curve

TRUTH = dict(L0=2.0, A=0.5, alpha=0.5, C1=0.3, C2=0.2, B=0.4, gamma=1.2, E=2.0, beta=0.8)
PT = schedule_from_spec("wsd:peak=1e-3,steps=3000,warmup=100,decay=500,final=0.1")
EVERY = 50
DOMAIN_TRUTH = {**TRUTH, "B": -0.5, "L0": 2.2}  # the CPT domain's loss falls with the shift


def cpt_schedule(peak, kind):
    return schedule_from_spec(f"{kind}:peak={peak},steps=2000,warmup=50{',final=0.1' if kind == 'cosine' else ''}")


def law_of(params, cls=CPTLaw):
    law = cls(jump=True) if "J" in params else cls()
    return FittedLaw(law, law.to_internal(params), 0.0, 1, 0.0, 0.0)


def curve(ratio, peak, kind, truth=TRUTH, every=EVERY):
    """A CPT phase continuing PT, its loss from the true law at every `every`-th step (PT's own curve at ratio None)."""
    lr = PT if ratio is None else np.concatenate([PT, cpt_schedule(peak, kind)])
    start = 0 if ratio is None else len(PT)
    steps = np.arange(every, len(lr) + 1, every) if ratio is None else np.arange(start + every, len(lr) + 1, every)
    x = {k: v[steps - 1] for k, v in cpt_areas(lr, start).items()} | {"r": np.full(steps.size, ratio or 0.0)}
    loss = law_of(truth).predict(**x)
    return Curve(f"r{ratio}-{peak}-{kind}", 1e8, steps.astype(float), loss, np.arange(1, len(lr) + 1.0), lr,
                 start, ratio or 0.0)


def test_cpt_areas_split_at_the_cpt_start_and_carry_the_momentum():
    lr = np.array([1.0, 1.0, 0.5, 1.0, 1.0])  # PT: 3 steps (warm-up = steps 1-2), CPT re-warms at step 4
    a = cpt_areas(lr, 3, lam=0.5)
    s1, s2 = lr_areas(lr, 0.5, warmup=2)  # drops 0, 0, .5, -.5, 0 -> m = 0, 0, .5, -.25, -.125
    np.testing.assert_array_equal(a["S1pt"], [1.0, 2.0, 2.5, 2.5, 2.5])
    np.testing.assert_array_equal(a["S1cpt"], [0.0, 0.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(a["S2pt"], [0.0, 0.0, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(a["S2cpt"], [0.0, 0.0, 0.0, -0.25, -0.375])
    np.testing.assert_array_equal(a["S1pt"] + a["S1cpt"], s1)
    np.testing.assert_array_equal(a["S2pt"] + a["S2cpt"], s2)


def test_no_distribution_shift_is_the_annealing_law():
    # r = 0 (pure replay) and C1 = C2: the CPT law's curve is the annealing law's along the joined schedule.
    params = {**TRUTH, "C2": TRUTH["C1"]}
    lr = np.concatenate([PT, cpt_schedule(5e-4, "cosine")])
    cpt = predict_cpt(law_of(params), PT, cpt_schedule(5e-4, "cosine"), ratio=0.0)
    s1, s2 = lr_areas(lr, warmup=100)
    ann = law_of({"L0": 2.0, "A": 0.5, "alpha": 0.5, "C": 0.3}, Annealing).predict(S1=s1, S2=s2)
    np.testing.assert_allclose(cpt, ann[len(PT):], rtol=1e-12)
    # ... and any shift coefficient B is then irrelevant
    np.testing.assert_allclose(predict_cpt(law_of({**params, "B": 5.0}), PT, cpt_schedule(5e-4, "cosine"), 0.0), cpt,
                               rtol=1e-12)


def test_cpt_law_recovers_parameters_and_predicts_held_out_ratio_lr_and_schedule():
    runs = [curve(None, 0, "")] + [curve(r, p, k) for r in (0.25, 0.75, 1.0) for p, k in
                                   ((1e-3, "constant"), (5e-4, "cosine"))]
    fitted = fit_cpt(runs, lam=0.999, jump=False)
    for k, v in TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=2e-3), k
    held_out = curve(0.5, 7e-4, "wsd")  # unseen share, peak LR and schedule shape
    pred = predict_cpt(fitted, PT, np.concatenate([cpt_schedule(7e-4, "wsd")]), 0.5)
    np.testing.assert_allclose(pred[held_out.steps.astype(int) - len(PT) - 1], held_out.loss, rtol=1e-4)
    assert base_loss(fitted, PT) == pytest.approx(runs[0].loss[-1], rel=1e-5)
    # the general loss re-warms up and then anneals down: it rises and falls again
    assert held_out.loss.max() > held_out.loss[0] + 0.03 and held_out.loss[-1] < held_out.loss.max() - 0.02


def test_cpt_fit_without_cpt_data_pins_the_shift():
    fitted = fit_cpt([curve(None, 0, "")], lam=0.999)
    assert fitted.params["B"] == 0.0 and set(fitted.fixed) == {"B", "gamma", "E", "beta"}
    assert "J" not in fitted.params  # no CPT curve: no restart step to fit
    assert fitted.params["L0"] == pytest.approx(2.0, rel=1e-3)


def test_cmr_from_the_cpt_law_equals_the_analytic_value():
    # At the end of a CPT phase the change of general loss from the end of pre-training is
    #   anneal + B r^gamma (1 - (1 + E S1cpt)^-beta),  anneal = A (S1^-alpha - S1pt^-alpha) - C2 S2cpt,
    # increasing in r (B > 0), so CMR = ((tol - anneal) / (B shift))^(1/gamma), capped to [0, 1].
    from ladderlab.scaling.mixing.cmr import cmr_from_cpt_law

    cpt_lr = cpt_schedule(5e-4, "cosine")
    a = {k: v[-1] for k, v in cpt_areas(np.concatenate([PT, cpt_lr]), len(PT)).items()}
    t = TRUTH
    anneal = (t["A"] * ((a["S1pt"] + a["S1cpt"]) ** -t["alpha"] - a["S1pt"] ** -t["alpha"]) - t["C2"] * a["S2cpt"])
    shift = t["B"] * (1 - (1 + t["E"] * a["S1cpt"]) ** -t["beta"])
    assert anneal < 0 < shift
    for tol in (0.0, -0.01, 0.02):
        ratio, interval = cmr_from_cpt_law(law_of(TRUTH), PT, cpt_lr, tol)
        assert ratio == pytest.approx(((tol - anneal) / shift) ** (1 / t["gamma"]), rel=1e-6), tol
        assert interval == (ratio, ratio)
    # measured from a pre-CPT loss 0.02 above the law's own (a model whose loss drops at the CPT start, which the
    # continuous law cannot follow): the change is 0.02 lower at every share
    start = base_loss(law_of(TRUTH), PT)
    ratio, _ = cmr_from_cpt_law(law_of(TRUTH), PT, cpt_lr, 0.0, base=start + 0.02)
    assert ratio == pytest.approx(((0.02 - anneal) / shift) ** (1 / t["gamma"]), rel=1e-6)
    assert ratio > cmr_from_cpt_law(law_of(TRUTH), PT, cpt_lr, 0.0)[0]


def test_a_restart_step_is_recovered_kept_by_held_out_runs_and_moves_the_cmr():
    # every CPT phase's loss steps down by 0.08 at its start (a fresh optimizer's drop, whatever the share): the
    # law with J recovers it and predicts CPT runs left out of the fit far better than the continuous law; the CMR
    # from the law's own pre-CPT loss then counts the step: ((tol - anneal - J) / shift)^(1 / gamma)
    from ladderlab.scaling.mixing.cmr import cmr_from_cpt_law

    truth = {**TRUTH, "J": -0.08}
    runs = [curve(None, 0, "", truth, every=200)] + [curve(r, p, k, truth, every=200) for r in (0.25, 0.75, 1.0)
                                                     for p, k in ((1e-3, "constant"), (5e-4, "cosine"))]
    fitted, errors = fit_cpt_forms(runs, lam=0.999)
    assert fitted.law.jump and set(errors) == {"cpt", "cpt+jump"} and errors["cpt+jump"] < errors["cpt"] / 10
    assert fitted.params["J"] == pytest.approx(-0.08, abs=1e-4)
    for k, v in TRUTH.items():
        assert fitted.params[k] == pytest.approx(v, rel=1e-2), k
    cpt_lr = cpt_schedule(5e-4, "cosine")
    a = {k: v[-1] for k, v in cpt_areas(np.concatenate([PT, cpt_lr]), len(PT)).items()}
    t = TRUTH
    anneal = (t["A"] * ((a["S1pt"] + a["S1cpt"]) ** -t["alpha"] - a["S1pt"] ** -t["alpha"]) - t["C2"] * a["S2cpt"])
    shift = t["B"] * (1 - (1 + t["E"] * a["S1cpt"]) ** -t["beta"])
    expected = ((-0.1 - anneal + 0.08) / shift) ** (1 / t["gamma"])  # at least 0.1 better than before CPT
    assert expected == pytest.approx(0.68, abs=0.01)  # 0.24 without the step
    assert cmr_from_cpt_law(fitted, PT, cpt_lr, -0.1)[0] == pytest.approx(expected, rel=1e-2)
    assert base_loss(fitted, PT) == pytest.approx(runs[0].loss[-1], rel=1e-4)  # the step is not in the PT loss


def cpt_runs_table(path):
    """Our runs-table layout: the pre-training run `pt` and CPT phases continuing it (base_run, domain share in
    `ratio`, steps counted from the phase's start, 1,000 tokens a step), general loss `loss` and domain `val/dom`,
    logged at each phase's step 1 and every EVERY-th step (the piecewise-linear schedules interpolate exactly)."""
    rows = ["run,N,D,step,lr,loss,val/dom,ratio,base_run"]
    for ratio, peak, kind in ((None, 0, ""), (0.25, 1e-3, "constant"), (0.75, 1e-3, "constant"), (1.0, 5e-4, "wsd"),
                              (0.5, 5e-4, "wsd")):
        lr = PT if ratio is None else np.concatenate([PT, cpt_schedule(peak, kind)])
        start = 0 if ratio is None else len(PT)
        steps = np.array([1, *range(EVERY, len(lr) - start + 1, EVERY)])
        x = {k: v[start + steps - 1] for k, v in cpt_areas(lr, start).items()} | {"r": np.full(steps.size, ratio or 0.0)}
        gen, dom = law_of(TRUTH).predict(**x), law_of(DOMAIN_TRUTH).predict(**x)
        name, base = ("pt", "") if ratio is None else (f"r{ratio}", "pt")
        for s, g, d in zip(steps, gen, dom):
            rows.append(f"{name},1e8,{(start + s) * 1000},{s},{float(lr[start + s - 1])!r},{float(g)!r},{float(d)!r},"
                        f"{ratio or 0},{base}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_fit_cpt_then_predict_cpt_loss_and_curve_and_fit_cmr_from_the_law(tmp_path, capsys):
    from ladderlab.cli import main
    from ladderlab.scaling.mixing.cmr import cmr_from_cpt_law

    runs = cpt_runs_table(tmp_path / "runs.csv")
    law = tmp_path / "cpt.json"
    assert main(["fit", "cpt", "--runs", str(runs), "--loss", "loss", "--ratio", "ratio", "--domain-loss", "val/dom",
                 "--exclude", "r0.5", "--lam", "0.999", "--bootstrap", "0", "--jump", "no", "--json", str(law)]) == 0
    doc = json.loads(law.read_text())
    assert doc["tokens_per_step"] == 1000 and doc["cpt_peak_lr"] == pytest.approx(1e-3)  # median of the fitted runs
    assert doc["form"] == "cpt" and doc["held_out_rmse"] == {}
    measured = base_loss(law_of(TRUTH), PT)  # the pt run's last logged loss
    assert doc["base_losses"] == {"1e+08": pytest.approx(measured, rel=1e-12)}
    for which, truth in (("general", TRUTH), ("domain", DOMAIN_TRUTH)):
        for k, v in truth.items():
            assert doc[which]["params"][k] == pytest.approx(v, rel=2e-3), (which, k)
    out = tmp_path / "loss.json"
    # the held-out share 0.5, 5e-4 WSD over 2,000 steps = 2M tokens
    assert main(["predict", "cpt-loss", "--law", str(law), "--ratio", "0.5", "--tokens", "2M", "--schedule",
                 "wsd:peak=5e-4,warmup=50", "--json", str(out)]) == 0
    pred = json.loads(out.read_text())
    assert pred["form"] == "cpt-law" and pred["level"] == 0.9 and pred["steps"] == 2000
    held_out = {k: v[-1:] for k, v in cpt_areas(np.concatenate([PT, cpt_schedule(5e-4, "wsd")]), len(PT)).items()}
    held_out["r"] = np.array([0.5])
    assert pred["general"]["loss"] == pytest.approx(law_of(TRUTH).predict(**held_out)[0], rel=1e-5)
    assert pred["domain"]["loss"] == pytest.approx(law_of(DOMAIN_TRUTH).predict(**held_out)[0], rel=1e-5)
    assert pred["base"]["source"] == "measured" and pred["base"]["loss"] == doc["base_losses"]["1e+08"]
    assert pred["general"]["change"] == pytest.approx(pred["general"]["loss"] - measured, rel=1e-12)
    curve_out = tmp_path / "curve.json"
    assert main(["predict", "curve", "--law", str(law), "--ratio", "0.5", "--schedule",
                 "wsd:peak=5e-4,steps=2000,warmup=50", "--json", str(curve_out)]) == 0
    assert json.loads(curve_out.read_text())["schedules"][0]["final_loss"] == pytest.approx(pred["general"]["loss"])
    # the CMR from the law: the change from the measured pre-CPT loss; one 0.02 higher moves the CMR as the analytic
    # value says (the law's own start is unchanged); without a measured loss the law's own is the base
    cpt_lr = cpt_schedule(5e-4, "cosine")
    a = {k: v[-1] for k, v in cpt_areas(np.concatenate([PT, cpt_lr]), len(PT)).items()}
    t = TRUTH
    anneal = (t["A"] * ((a["S1pt"] + a["S1cpt"]) ** -t["alpha"] - a["S1pt"] ** -t["alpha"]) - t["C2"] * a["S2cpt"])
    shift = t["B"] * (1 - (1 + t["E"] * a["S1cpt"]) ** -t["beta"])
    for name, base in (("cpt.json", measured), ("higher.json", measured + 0.02), ("none.json", None)):
        edited = {**doc, "base_losses": {} if base is None else {"1e+08": base}}
        (tmp_path / name).write_text(json.dumps(edited))
        cmr = tmp_path / f"cmr-{name}"
        assert main(["fit", "cmr", "--law", str(tmp_path / name), "--tolerance", "0", "--at-tokens", "2M",
                     "--schedule", "cosine:peak=5e-4,warmup=50,final=0.1", "--json", str(cmr)]) == 0
        res = json.loads(cmr.read_text())
        offset = 0.0 if base is None else base - measured
        assert res["ratio"] == pytest.approx(((offset - anneal) / shift) ** (1 / t["gamma"]), rel=1e-2), name
        assert res["ratio_from_law_base"] == pytest.approx((-anneal / shift) ** (1 / t["gamma"]), rel=1e-2)
        assert res["base"]["source"] == ("law" if base is None else "measured") and res["steps"] == 2000
        assert res["ratio"] == cmr_from_cpt_law(load_cpt_law(edited), PT, cpt_lr, 0.0, base=base)[0]
    said = " ".join(capsys.readouterr().out.split())
    assert said.count("taken from the measured pre-CPT loss") == 2 and said.count("the law's own pre-CPT loss") == 1
