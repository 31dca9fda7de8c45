"""What fit_law refuses, what it warns about, JSON round trips, and read_columns' error messages."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ladderlab.errors import LadderlabError
from ladderlab.scaling import api
from ladderlab.scaling.engine.law import fit_law, percentile_interval
from ladderlab.scaling.laws.accuracy import SigmoidAccuracy
from ladderlab.scaling.laws.annealing import Annealing
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.laws.data_constrained import DataConstrained
from ladderlab.scaling.laws.power import PowerLaw
from ladderlab.scaling.tables.columns import read_columns

SIZE_TRUTH = dict(E=1.8, A=400.0, alpha=0.3)


def size_data(n=10, sigma=0.0, seed=0):
    law = PowerLaw("size")
    x = {"N": np.geomspace(1e6, 1e9, n)}
    y = law.predict_batch(law.to_internal(SIZE_TRUTH)[None, :], x)[0]
    if sigma:
        y = y * np.exp(np.random.default_rng(seed).normal(0.0, sigma, n))
    return x, y


# --- refused input -----------------------------------------------------------------------------------------------
def test_nonfinite_input_names_column_row_and_value():
    x, y = size_data()
    x["N"][3] = np.nan
    with pytest.raises(LadderlabError, match=r"^size: non-finite N at row 3 \(value nan\)$"):
        fit_law(PowerLaw("size"), x, y)


def test_nonfinite_observed_value_is_refused():
    x, y = size_data()
    y[7] = np.inf
    with pytest.raises(LadderlabError, match=r"non-finite observed at row 7 \(value inf\)"):
        fit_law(PowerLaw("size"), x, y)


@pytest.mark.parametrize("bad", [0.0, -2.5])
def test_nonpositive_loss_is_refused_for_log_residual(bad):
    x, y = size_data()
    y[2] = bad
    with pytest.raises(LadderlabError, match=rf"size: non-positive observed value {bad} at row 2"):
        fit_law(PowerLaw("size"), x, y)


def test_raw_residual_law_accepts_nonpositive_observations():
    law = SigmoidAccuracy()
    L = np.linspace(0.6, 2.0, 12)
    truth = np.array([-0.7, 0.95, 5.0, 1.2])
    y = law.predict_batch(truth[None, :], {"L": L})[0] - 0.3  # shifts some accuracies below zero
    assert (y <= 0).any()
    fitted = fit_law(law, {"L": L}, y)  # no error: raw residuals do not take logs
    assert fitted.params["b"] == pytest.approx(0.65, rel=1e-4)


def test_too_few_points_counts_free_parameters():
    x, y = size_data(n=3)
    with pytest.raises(LadderlabError, match=r"too few points: 3 rows for 3 free parameters \(need at least 4\)"):
        fit_law(PowerLaw("size"), x, y)
    # Pinning E leaves two free parameters, which three points can determine.
    fitted = fit_law(PowerLaw("size"), x, y, fixed={"E": 1.8})
    assert fitted.params["A"] == pytest.approx(400.0, rel=1e-4)
    assert fitted.params["E"] == pytest.approx(1.8, rel=1e-14)


def test_unknown_fixed_parameter_is_named():
    x, y = size_data()
    with pytest.raises(LadderlabError, match=re.escape("size: unknown fixed parameter(s) ['R_D*'] (has ['E', 'A', 'alpha'])")):
        fit_law(PowerLaw("size"), x, y, fixed={"R_D*": 5.0, "E": 1.0})


def test_missing_input_is_named():
    with pytest.raises(LadderlabError, match=r"chinchilla: missing input\(s\) D \(needs N, D\)"):
        fit_law(Chinchilla(), {"N": np.geomspace(1e7, 1e9, 10)}, np.linspace(3, 2, 10))


def test_unknown_law_name():
    with pytest.raises(LadderlabError, match=r"unknown law 'hoffmann'"):
        api.make_law("hoffmann")


def test_nonpositive_input_is_refused_with_a_named_error():
    # A law that takes log(N) cannot use N <= 0; the error names the input, value and row (not a bare ValueError
    # from the optimiser about a non-finite objective).
    x, y = size_data()
    x["N"][4] = 0.0
    with pytest.raises(LadderlabError, match=r"^size: non-positive N 0.0 at row 4$"):
        fit_law(PowerLaw("size"), x, y)


def test_annealing_allows_zero_annealing_area_but_not_zero_forward_area():
    law = Annealing()
    s1 = np.linspace(0.5, 5.0, 12)
    s2 = np.concatenate([np.zeros(6), np.linspace(0.1, 1.0, 6)])
    y = law.predict_batch(law.to_internal(dict(L0=2.5, A=0.6, alpha=0.5, C=0.3))[None, :], {"S1": s1, "S2": s2})[0]
    assert fit_law(law, {"S1": s1, "S2": s2}, y).params["C"] == pytest.approx(0.3, rel=1e-4)
    s1_bad = s1.copy()
    s1_bad[0] = 0.0
    with pytest.raises(LadderlabError, match=r"^annealing: non-positive S1 0.0 at row 0$"):
        fit_law(law, {"S1": s1_bad, "S2": s2}, y)


def test_all_parameters_fixed_is_handled():
    x, y = size_data()
    try:
        fitted = fit_law(PowerLaw("size"), x, y, fixed=SIZE_TRUTH)
    except LadderlabError:
        return  # a named refusal is acceptable
    assert fitted.params == pytest.approx(SIZE_TRUTH, rel=1e-14)
    assert fitted.objective == pytest.approx(0.0, abs=1e-20)


# --- warnings kept with the result -------------------------------------------------------------------------------
def test_parameter_at_bound_is_a_warning():
    # A pure power law has no irreducible term: E runs to its lower bound exp(-10).
    law = PowerLaw("size")
    x = {"N": np.geomspace(1e6, 1e9, 12)}
    y = 400.0 * x["N"] ** -0.3
    fitted = fit_law(law, x, y)
    assert fitted.params["E"] == pytest.approx(np.exp(-10.0), rel=1e-9)
    assert fitted.warnings == ["parameter E is at its bound 4.54e-05; the fit is not trustworthy there"]
    assert fitted.params["A"] == pytest.approx(400.0, rel=1e-3)
    assert fitted.params["alpha"] == pytest.approx(0.3, rel=1e-3)


def test_few_points_warning():
    x, y = size_data(n=5)
    fitted = fit_law(PowerLaw("size"), x, y)
    assert fitted.warnings == ["few points: 5 rows for 3 parameters; intervals may be wide"]


def test_few_points_warning_counts_free_parameters_only():
    law = DataConstrained()
    base = dict(A=520.8, B=1487.7, E=1.87, alpha=0.35, beta=0.35)
    u = np.repeat([1e8, 1e9, 1e10], 4)
    d = u * np.tile([1.0, 4.0, 15.0, 40.0], 3)
    n = np.repeat([3e7, 3e8, 3e9], 4)
    x = {"N": n, "D": d, "U": u}
    y = law.predict_batch(law.to_internal({**base, "R_D*": 15.4, "R_N*": 5.3})[None, :], x)[0]
    fitted = fit_law(law, x, y, fixed=base)
    assert fitted.params["R_D*"] == pytest.approx(15.4, rel=1e-2)
    assert not any(w.startswith("few points") for w in fitted.warnings), fitted.warnings


# --- JSON round trip ---------------------------------------------------------------------------------------------
def test_json_round_trip_preserves_params_warnings_and_intervals(tmp_path):
    x = {"N": np.geomspace(1e6, 1e9, 12)}
    y = 400.0 * x["N"] ** -0.3 * np.exp(np.random.default_rng(5).normal(0.0, 0.01, 12))
    fitted = api.fit("size", x, y, bootstrap=20, seed=17, workers=1)
    assert any("at its bound" in w for w in fitted.warnings)  # something to carry over
    path = tmp_path / "size.json"
    fitted.save(str(path))
    loaded = api.load_fitted(path)

    assert loaded.law.name == "size" and loaded.law.inputs == ("N",)
    assert loaded.params == fitted.params
    assert loaded.warnings == fitted.warnings
    assert loaded.seed == 17
    assert (loaded.objective, loaded.n_points, loaded.rmse_log, loaded.mape) == (
        fitted.objective, fitted.n_points, fitted.rmse_log, fitted.mape,
    )
    assert loaded.param_intervals() == fitted.param_intervals()
    doc = json.loads(path.read_text())
    assert doc["bootstrap"]["intervals_90"] == {k: list(v) for k, v in fitted.param_intervals(0.9).items()}
    assert len(doc["bootstrap"]["samples"]) == 20
    probe = np.array([3e6, 3e7, 3e8])
    np.testing.assert_allclose(loaded.predict(N=probe), fitted.predict(N=probe), rtol=1e-14)
    lo_a, hi_a = fitted.interval(0.9, N=probe)
    lo_b, hi_b = loaded.interval(0.9, N=probe)
    np.testing.assert_allclose(lo_b, lo_a, rtol=1e-14)
    np.testing.assert_allclose(hi_b, hi_a, rtol=1e-14)


def test_json_round_trip_keeps_the_law_spec(tmp_path):
    law = api.make_law("annealing", {"lam": 0.99})
    s1 = np.linspace(0.5, 5.0, 20)
    s2 = np.linspace(0.0, 1.0, 20)
    y = law.predict_batch(law.to_internal(dict(L0=2.5, A=0.6, alpha=0.5, C=0.3))[None, :], {"S1": s1, "S2": s2})[0]
    fitted = fit_law(law, {"S1": s1, "S2": s2}, y)
    fitted.save(str(tmp_path / "a.json"))
    loaded = api.load_fitted(tmp_path / "a.json")
    assert loaded.law.lam == 0.99
    assert loaded.params == fitted.params
    assert loaded.boot_BxP is None and loaded.seed is None and loaded.param_intervals() == {}
    with pytest.raises(LadderlabError, match="no bootstrap replicates"):
        loaded.interval(0.9, S1=1.0, S2=0.0)


def test_load_fitted_errors(tmp_path):
    with pytest.raises(LadderlabError, match="file not found"):
        api.load_fitted(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LadderlabError, match=r"not a ladderlab law JSON \(JSONDecodeError"):
        api.load_fitted(bad)
    bad.write_text(json.dumps({"law": "size", "params": {"E": 1.0}}))
    with pytest.raises(LadderlabError, match=r"not a ladderlab law JSON \(KeyError"):
        api.load_fitted(bad)


def test_percentile_interval_ignores_nonfinite_replicates():
    samples = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, np.inf], [4.0, 20.0], [5.0, 30.0]])
    lo, hi = percentile_interval(samples, 0.5)  # 25th and 75th percentiles
    np.testing.assert_allclose(lo, [2.0, 15.0])
    np.testing.assert_allclose(hi, [4.0, 25.0])


# --- table.read_columns ------------------------------------------------------------------------------------------
def _write(tmp_path, text, name="runs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_columns_values(tmp_path):
    path = _write(tmp_path, "name, N ,loss\na,1e6,3.5\nb,2e6, 3.25\n\nc,4e6,3.0\n")
    cols = read_columns(path, ["N", "loss"], text=["name"])
    np.testing.assert_array_equal(cols["N"], [1e6, 2e6, 4e6])
    np.testing.assert_array_equal(cols["loss"], [3.5, 3.25, 3.0])
    assert list(cols["name"]) == ["a", "b", "c"]


def test_read_columns_bad_cell_names_file_line_and_column(tmp_path):
    # header = line 1, a = 2, b = 3, blank = 4, c = 5: the message uses file line numbers.
    path = _write(tmp_path, "name,N,loss\na,1e6,3.5\nb,2e6,3.25\n\nc,oops,3.0\n")
    with pytest.raises(LadderlabError) as err:
        read_columns(path, ["N", "loss"])
    assert str(err.value) == f"{path}: row 5, column N: 'oops' is not a number"


def test_read_columns_nonfinite_cell(tmp_path):
    path = _write(tmp_path, "N,loss\n1e6,3.5\n2e6,inf\n")
    with pytest.raises(LadderlabError, match=re.escape(f"{path}: row 3, column loss: 'inf' is not finite")):
        read_columns(path, ["N", "loss"])


def test_read_columns_missing_column_is_named(tmp_path):
    path = _write(tmp_path, "name,N,loss\na,1e6,3.5\n")
    with pytest.raises(LadderlabError, match=re.escape(f"{path}: missing column(s) tokens (has: name, N, loss)")):
        read_columns(path, ["N", "tokens"])


def test_read_columns_file_not_found(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(LadderlabError, match=re.escape(f"{path}: file not found")):
        read_columns(path, ["N"])


def test_read_columns_ragged_row_and_empty_tables(tmp_path):
    path = _write(tmp_path, "N,loss\n1e6,3.5\n2e6\n")
    with pytest.raises(LadderlabError, match="row 3 has 1 cells, header has 2"):
        read_columns(path, ["N", "loss"])
    with pytest.raises(LadderlabError, match="no data rows"):
        read_columns(_write(tmp_path, "N,loss\n", "header_only.csv"), ["N"])
    with pytest.raises(LadderlabError, match="empty file"):
        read_columns(_write(tmp_path, "", "empty.csv"), ["N"])


def test_judge_gives_each_prediction_its_distance_and_verdict():
    x, y = size_data(sigma=0.01)
    fitted = api.fit("size", x, y)
    near, far = api.judge(fitted, x, y, [{"N": 5e8}, {"N": 1e11}])
    assert near["past_fitted"] == 1.0 and far["past_fitted"] == pytest.approx(100.0)
    assert near["verdict"].startswith("uncertain: no calibrated interval")  # a one-input law has no scale
    assert far["verdict"].startswith("not predictable: 100x past the largest fitted N or D")
    assert "calibrated_lo" not in near
