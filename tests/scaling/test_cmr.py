"""CMR: the CPT loss forms recover known parameters, the CMR equals its analytic value, general losses that end
below their base or rise and fall give the right CMR at zero and negative tolerances, and run-bootstrap intervals
cover the truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab import critical_mixture_ratio
from ladderlab.errors import LadderlabError
from ladderlab.scaling.mixing.cmr import GeneralCPTLaw, GeneralPowerLaw, change_of, largest_share, predict_cpt_loss

POWER = {"A": 0.03, "gamma": 1.4, "s": 0.25, "nu": 0.3, "G": 0.01, "q": 0.5}
CPT = {"A": 0.3, "alpha": 0.5, "P": 2.0, "B": 0.2, "gamma": 1.0, "E": 5.0, "beta": 1.0, "nu": 0.0}
DOMAIN = {"E": 1.2, "B": 0.6, "beta": 0.4, "T0": 0.5}


def change(law, params, r, t, n):
    law = law()
    return law.predict_batch(law.to_internal(params)[None, :], {"base": np.zeros_like(r), "r": r, "T": t, "N": n})[0]


def grid(shares, tokens, sizes):
    return (a.ravel() for a in np.meshgrid(shares, tokens, sizes, indexing="ij"))


def test_power_form_recovered_and_cmr_predicted_for_a_larger_run():
    r, t, n = grid([0.1, 0.2, 1 / 3, 0.5, 0.75], [1e9, 2e9, 5e9, 1e10], [1e8, 3e8, 1e9])
    base = 2.0 + 3.0 * (n / 1e9) ** -0.2
    general = base + change(GeneralPowerLaw, POWER, r, t, n)
    domain = DOMAIN["E"] + DOMAIN["B"] * (r * t / 1e9 + DOMAIN["T0"]) ** -DOMAIN["beta"]
    res = critical_mixture_ratio(r, t, general, base, tolerance=-0.02, size=n, domain_loss=domain, at_tokens=2e10,
                                 at_size=3e9, form="power", bootstrap=0)
    for k, v in POWER.items():
        assert res.general.params[k] == pytest.approx(v, rel=1e-3), k
    # change(r) = 0.03 r^1.4 20^.25 3^-.3 - 0.01 20^.5 = tol = -0.02 ->  r = ((tol + 0.01 sqrt 20) / (0.03 20^.25 3^-.3))^(1/1.4)
    expected = ((-0.02 + 0.01 * 20**0.5) / (0.03 * 20**0.25 * 3**-0.3)) ** (1 / 1.4)
    assert res.ratio == pytest.approx(expected, rel=1e-4)
    assert res.general_increase == pytest.approx(-0.02, abs=1e-6)
    assert res.domain_loss is None  # no domain law at an unseen size
    assert res.base == {1e8: pytest.approx(2.0 + 3.0 * 10**0.2), 3e8: pytest.approx(2.0 + 3.0 * (0.3) ** -0.2),
                        1e9: pytest.approx(5.0)}
    dom = res.domain[1e9].params
    for k, v in DOMAIN.items():
        assert dom[k] == pytest.approx(v, rel=1e-3), k


def test_cmr_of_the_cpt_form_equals_the_analytic_value():
    # change(r) = A((P + t)^-alpha - P^-alpha) + B r (1 - 1/(1 + E t)): linear in r, so r* = (tol - anneal) / shift.
    theta = GeneralCPTLaw().to_internal(CPT)[None, :]
    for t, tol in ((10.0, 0.0), (10.0, -0.02), (4.0, 0.01)):
        anneal = 0.3 * ((2 + t) ** -0.5 - 2**-0.5)
        shift = 0.2 * (1 - 1 / (1 + 5 * t))
        got = largest_share(change_of(GeneralCPTLaw(), theta, np.linspace(0, 1, 2001), t * 1e9, 1e9), tol)[0]
        assert got == pytest.approx((tol - anneal) / shift, rel=1e-9), (t, tol)


def cpt_set(noise=0.0, seed=0):
    """General loss of CPT runs from the cpt form: low shares end below the base, high shares rise and then fall."""
    r, t, n = grid([0.1, 0.3, 0.5, 0.7, 0.9], np.array([0.1, 0.25, 0.5, 1, 2, 4, 6, 8, 10]) * 1e9, [1e9])
    base = np.full_like(r, 3.0)
    general = base + change(GeneralCPTLaw, CPT, r, t, n)
    return r, t, n, general + np.random.default_rng(seed).normal(0, noise, r.size), base


def test_general_loss_below_base_and_rising_then_falling_gives_the_right_cmr():
    r, t, n, general, base = cpt_set()
    low, high = (r == 0.1), (r == 0.9)
    assert general[low][-1] < 3.0  # ends below its pre-CPT value
    assert general[high].max() > general[high][-1] + 0.01 and general[high].argmax() not in (0, high.sum() - 1)
    anneal, shift = 0.3 * (12**-0.5 - 2**-0.5), 0.2 * (1 - 1 / 51)
    for tol, form in ((0.0, "auto"), (-0.02, "cpt")):
        res = critical_mixture_ratio(r, t, general, base, tolerance=tol, form=form, bootstrap=0)
        assert res.form == "cpt" and (form == "cpt" or res.held_out["cpt"] < res.held_out["power"] / 100)
        assert res.ratio == pytest.approx((tol - anneal) / shift, abs=2e-3), tol
        assert res.warnings == []


def test_no_share_meeting_the_tolerance_gives_zero_with_a_warning():
    r, t, n, general, base = cpt_set()
    res = critical_mixture_ratio(r, t, general, base, tolerance=-0.5, form="cpt", bootstrap=0)
    assert res.ratio == 0.0 and "no domain share meets tolerance -0.5" in res.warnings[0]
    assert critical_mixture_ratio(r, t, general, base, tolerance=0.5, form="cpt", bootstrap=0).ratio == 1.0


def test_largest_share_stops_at_the_first_share_that_fails():
    # meets the tolerance at 0-0.3, fails at 0.4, meets again from 0.6: the CMR is where it first fails
    shares = np.linspace(0, 1, 11)
    change_ = np.array([[0.0, -0.1, -0.1, 0.0, 0.2, 0.1, -0.1, -0.1, -0.1, -0.1, -0.1]])
    assert largest_share(change_, 0.0, shares)[0] == pytest.approx(0.3)
    assert largest_share(change_, 0.1, shares)[0] == pytest.approx(0.35)


def test_run_bootstrap_interval_covers_the_truth_over_seeds():
    """Each run has its own offset (runs differ by more than their checkpoints' noise): resampling runs covers
    the true CMR in most seeds."""
    truth = float(largest_share(change_of(GeneralPowerLaw(), GeneralPowerLaw().to_internal(POWER)[None, :],
                                          np.linspace(0, 1, 2001), 1e10, 1e9), 0.02)[0])
    covered = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        r, t, n = grid(np.linspace(0.1, 1.0, 10), [1e9, 2e9, 4e9, 6e9, 8e9, 1e10], [1e9])
        base = np.full_like(r, 3.0)
        offset = dict(zip(np.unique(r), rng.normal(0, 0.003, 10)))
        general = base + change(GeneralPowerLaw, POWER, r, t, n) + np.array([offset[v] for v in r])
        general += rng.normal(0, 0.0005, r.size)
        res = critical_mixture_ratio(r, t, general, base, tolerance=0.02, form="power", bootstrap=40, seed=seed)
        covered += res.interval[0] <= truth <= res.interval[1]
    assert covered >= 6


def test_predict_cpt_loss_from_the_json():
    r, t, n, general, base = cpt_set(noise=0.0005, seed=3)
    res = critical_mixture_ratio(r, t, general, base, tolerance=0.0, form="cpt", bootstrap=20, seed=0)
    doc = res.to_json()
    assert set(doc["general_laws"]) == {"cpt"} and doc["base_losses"] == {"1e+09": 3.0}
    out = predict_cpt_loss(doc, 0.5, 1e10)
    truth = 3.0 + change(GeneralCPTLaw, CPT, np.array([0.5]), np.array([1e10]), np.array([1e9]))[0]
    assert out["form"] == "cpt" and out["level"] == 0.9 and out["domain"] is None
    assert out["general"]["loss"] == pytest.approx(truth, abs=2e-3)
    assert out["general"]["lo"] <= out["general"]["loss"] <= out["general"]["hi"]
    with pytest.raises(LadderlabError, match=r"size 3e\+09: no pre-CPT loss for it \(fitted sizes: 1e\+09\)"):
        predict_cpt_loss(doc, 0.5, 1e10, 3e9)


def test_cmr_bad_input():
    r, t, n, general, base = cpt_set()
    with pytest.raises(LadderlabError, match=r"at_size 1e\+10: runs of one model size \(1e\+09\) cannot say"):
        critical_mixture_ratio(r, t, general, base, tolerance=0.02, size=n, at_size=1e10)
    r2 = r.copy()
    r2[3] = 1.5
    with pytest.raises(LadderlabError, match="ratio 1.5 at row 3 is not a domain share"):
        critical_mixture_ratio(r2, t, general, base, tolerance=0.02)
    with pytest.raises(LadderlabError, match="form 'mixing': known forms are auto, power, cpt"):
        critical_mixture_ratio(r, t, general, base, tolerance=0.02, form="mixing")


@pytest.mark.parametrize("flags", [["--tolerance=-1e-3"], ["--tolerance", "-0.001"], ["--tolerance", "-1e-3"]])
def test_negative_tolerance_parses_in_every_spelling(flags):
    from ladderlab.cli import build_parser

    args = build_parser().parse_args(["fit", "cmr", "--csv", "c.csv", "--ratio", "r", "--tokens", "t", "--general", "g",
                                      "--base", "b", *flags])
    assert args.tolerance == -0.001


def test_cli_fit_cmr_by_run_then_predict_cpt_loss(tmp_path, capsys):
    from ladderlab.cli import main

    r, t, n, general, base = cpt_set()
    domain = DOMAIN["E"] + DOMAIN["B"] * (r * t / 1e9 + DOMAIN["T0"]) ** -DOMAIN["beta"]
    rows = ["id,ratio,tokens,general,base,domain"] + [f"run{r_:g},{r_:.17g},{t_:.17g},{g:.17g},{b:.17g},{d:.17g}" for r_, t_, g, b, d in
                                                      zip(r, t, general, base, domain)]
    (tmp_path / "cpt.csv").write_text("\n".join(rows) + "\n")
    law = tmp_path / "cmr.json"
    assert main(["fit", "cmr", "--csv", str(tmp_path / "cpt.csv"), "--ratio", "ratio", "--tokens", "tokens", "--general",
                 "general", "--base", "base", "--domain", "domain", "--run", "id", "--tolerance", "-2e-2",
                 "--bootstrap", "10", "--json", str(law)]) == 0
    out = capsys.readouterr().out
    assert "general-loss form: cpt (held-out RMSE over runs: power" in out
    doc = json.loads(law.read_text())
    anneal, shift = 0.3 * (12**-0.5 - 2**-0.5), 0.2 * (1 - 1 / 51)
    assert doc["ratio"] == pytest.approx((-0.02 - anneal) / shift, abs=2e-3) and doc["form"] == "cpt"
    assert set(doc["general_laws"]) == {"power", "cpt"} and doc["base_losses"] == {"1e+09": 3.0}
    assert doc["domain_form"] in ("power", "cpt") and set(doc["domain_laws"]) == {"1e+09"}
    pred = tmp_path / "pred.json"
    assert main(["predict", "cpt-loss", "--law", str(law), "--ratio", "0.3", "--tokens", "10B", "--json", str(pred)]) == 0
    got = json.loads(pred.read_text())
    assert set(got) >= {"general", "domain", "form", "level"} and got["form"] == "cpt" and got["level"] == 0.9
    assert got["general"]["loss"] == pytest.approx(3.0 + anneal + 0.3 * shift, abs=1e-4)
    assert got["domain"]["loss"] == pytest.approx(DOMAIN["E"] + DOMAIN["B"] * (3 + DOMAIN["T0"]) ** -DOMAIN["beta"],
                                                  rel=1e-3)
    assert got["general"]["lo"] - 1e-9 <= got["general"]["loss"] <= got["general"]["hi"] + 1e-9
    assert main(["predict", "cpt-loss", "--law", str(law), "--ratio", "1.5", "--tokens", "10B"]) == 2
    assert "--ratio 1.5: a domain share must be in [0, 1]" in capsys.readouterr().err
    # without --law the runs' columns are required; --law takes only a `fit cpt` law
    assert main(["fit", "cmr", "--csv", str(tmp_path / "cpt.csv"), "--ratio", "ratio", "--tolerance", "0"]) == 2
    assert "fit cmr: give --tokens, --general, --base (or --law CPT.json)" in capsys.readouterr().err
    assert main(["fit", "cmr", "--csv", str(tmp_path / "cpt.csv"), "--ratio", "ratio", "--tokens", "tokens", "--general",
                 "general", "--base", "base", "--tolerance", "0", "--schedule", "constant:peak=1e-3"]) == 2
    assert "--schedule goes with --law CPT.json" in capsys.readouterr().err
    assert main(["fit", "cmr", "--law", str(law), "--tolerance", "0", "--at-tokens", "1B"]) == 2
    assert "not a `fit cpt` law JSON (TypeError: not a `fit cpt --json` document)" in capsys.readouterr().err


def test_domain_loss_that_rises_is_fitted_by_the_cpt_form():
    from ladderlab.scaling.mixing.cmr import DomainCPTLaw

    r, t, n, general, base = cpt_set()
    truth = {"E": 1.5, "A": 0.5, "alpha": 0.5, "P": 2.0, "B": 0.3, "gamma": 0.7, "K": 3.0, "beta": 0.8}
    law = DomainCPTLaw()
    domain = law.predict_batch(law.to_internal(truth)[None, :], {"r": r, "T": t})[0]
    high = r == 0.9
    assert domain[high][2] > domain[high][0]  # early in CPT this domain's loss goes up
    res = critical_mixture_ratio(r, t, general, base, tolerance=0.0, domain_loss=domain, form="auto", bootstrap=0)
    assert res.domain_form == "cpt" and res.held_out["domain-cpt"] < res.held_out["domain-power"] / 100
    for k, v in truth.items():
        assert res.domain[1e9].params[k] == pytest.approx(v, rel=1e-3), k
