"""Joint mixture-scaling law: known parameters recovered, the fit -> predict CLI round trip, and its errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.scaling.mixing.joint import fit_mixture_scaling, run_groups

DOMAINS = ("web", "code", "books")
SIZES = (2e7, 5e7, 1e8, 2e8)
TRUTH = {
    "val_web": dict(E=1.8, A=400.0, alpha=0.34, B=900.0, beta=0.30, k=0.6, t_web=-1.5, t_code=0.8),
    "val_code": dict(E=1.2, A=250.0, alpha=0.30, B=1500.0, beta=0.32, k=0.9, t_web=0.7, t_code=-2.0),
}


def law(p, r_NxM, n, d):
    t = np.array([p["t_web"], p["t_code"], 0.0])
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"] + p["k"] * np.exp(r_NxM @ t)


def runs_table(n_mix=20, checkpoints=3, noise=0.0, seed=0):
    """One row per checkpoint: n_mix mixtures x 4 sizes x checkpoints from 2.5 to 20 tokens per parameter."""
    rng = np.random.default_rng(seed)
    rows = [(f"m{i}-{n:g}", *r, n, d) for i, r in enumerate(rng.dirichlet(np.ones(3), n_mix))
            for n in SIZES for d in np.geomspace(2.5 * n, 20 * n, checkpoints)]
    r, n, d = np.array([x[1:4] for x in rows]), np.array([x[4] for x in rows]), np.array([x[5] for x in rows])
    losses = {c: law(p, r, n, d) * np.exp(rng.normal(0, noise, len(n))) for c, p in TRUTH.items()}
    return [x[0] for x in rows], r, n, d, losses


def write_runs(path, noise=0.002):
    run, r, n, d, losses = runs_table(noise=noise)
    lines = ["run," + ",".join(DOMAINS) + ",params,tokens," + ",".join(losses)]
    lines += [f"{run[i]}," + ",".join(f"{v:.6f}" for v in r[i]) + f",{n[i]:g},{d[i]:.6g},"
              + ",".join(f"{losses[c][i]:.6f}" for c in losses) for i in range(len(n))]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_joint_law_recovers_known_parameters():
    _, r, n, d, losses = runs_table()
    model = fit_mixture_scaling(dict(zip(DOMAINS, r.T)), n, d, {"val_web": losses["val_web"]}, bootstrap=0)
    assert model.n_runs == 80 and model.warnings == []
    assert model.laws["val_web"].params == pytest.approx(TRUTH["val_web"], rel=1e-3)


def test_runs_are_grouped_by_id_or_by_shares_and_size():
    shares = {"a": np.array([0.5, 0.5, 0.5, 0.2]), "b": np.array([0.5, 0.5, 0.5, 0.8])}
    n = np.array([1e7, 1e7, 2e7, 1e7])
    assert run_groups(shares, n).tolist() == [1, 1, 2, 0]
    assert run_groups(shares, n, np.array(["x", "y", "x", "y"])).tolist() == [0, 1, 0, 1]


def test_fit_predict_round_trip(tmp_path, capsys):
    runs = write_runs(tmp_path / "R.csv")
    law_json = tmp_path / "law.json"
    code, out, _ = run(capsys, "fit", "mixture-scaling", "--runs", runs, "--shares", "web,code,books", "--n", "params",
                       "--d", "tokens", "--loss", "val_web,val_code", "--run", "run", "--bootstrap", "20",
                       "--json", law_json)
    assert code == 0 and "fitted to 240 rows of 80 runs" in out
    doc = json.loads(law_json.read_text())
    assert (doc["kind"], doc["form"], doc["domains"], doc["n_runs"]) == ("mixture-scaling", "additive", list(DOMAINS), 80)
    assert doc["columns"] == {"n": "params", "d": "tokens", "run": "run"}
    for c, p in TRUTH.items():
        fit = doc["targets"][c]
        assert fit["params"] == pytest.approx(p, rel=0.15)  # A, the weakest, is 11% off for val_web
        assert (fit["params"]["alpha"], fit["params"]["beta"]) == pytest.approx((p["alpha"], p["beta"]), abs=0.01)
        assert len(fit["bootstrap"]["samples"]) == 20
        assert all(lo <= fit["params"][k] <= hi for k, (lo, hi) in fit["bootstrap"]["intervals_90"].items())
    # M.csv: its own id column name, and no books column (a missing share counts as 0).
    mix = tmp_path / "M.csv"
    mix.write_text("mixture,web,code\nlean,0.3,0.7\nheavy,0.9,0.1\n")
    out_csv = tmp_path / "P.csv"
    code, _, _ = run(capsys, "predict", "mixture-loss", "--law", law_json, "--mixtures", mix, "--at", "N=1B,D=20B",
                     "--out", out_csv)
    rows = list(csv.DictReader(out_csv.open()))
    assert code == 0 and list(rows[0]) == ["mixture", "val_web", "val_web_lo", "val_web_hi",
                                           "val_code", "val_code_lo", "val_code_hi"]
    assert [x["mixture"] for x in rows] == ["lean", "heavy"]
    for row, shares in zip(rows, ([0.3, 0.7, 0.0], [0.9, 0.1, 0.0])):
        for c, p in TRUTH.items():
            assert float(row[c]) == pytest.approx(law(p, np.array(shares), 1e9, 2e10), rel=0.01)
            assert float(row[f"{c}_lo"]) < float(row[c]) < float(row[f"{c}_hi"])


def test_mixing_law_prediction_gains_intervals(tmp_path, capsys):
    _, r, _, _, losses = runs_table(n_mix=12, checkpoints=1)
    idx = np.arange(0, len(r), 4)  # one row per mixture: the mixing law sees shares only
    shares = "".join(f"r{i},{a:.6f},{b:.6f},{c:.6f}\n" for i, (a, b, c) in enumerate(r[idx]))
    (tmp_path / "M.csv").write_text("id,web,code,books\n" + shares)
    web = losses["val_web"][idx]
    (tmp_path / "L.csv").write_text("id,val_web\n" + "".join(f"r{i},{v:.6f}\n" for i, v in enumerate(web)))
    law_json, out_csv = tmp_path / "mix.json", tmp_path / "P.csv"
    assert run(capsys, "fit", "mixing-law", "--mixtures", tmp_path / "M.csv", "--losses", tmp_path / "L.csv",
               "--model", "plain", "--json", law_json)[0] == 0
    code, _, _ = run(capsys, "predict", "mixture-loss", "--law", law_json, "--mixtures", tmp_path / "M.csv",
                     "--out", out_csv)
    rows = list(csv.DictReader(out_csv.open()))
    assert code == 0 and list(rows[0]) == ["id", "val_web", "val_web_lo", "val_web_hi"] and len(rows) == 12
    assert all(float(x["val_web_lo"]) <= float(x["val_web"]) <= float(x["val_web_hi"]) for x in rows)
    code, _, err = run(capsys, "predict", "mixture-loss", "--law", law_json, "--mixtures", tmp_path / "M.csv",
                       "--at", "N=1B,D=20B", "--out", out_csv)
    assert code == 2 and "--at applies only to a mixture-scaling law (this is a mixing-law JSON)" in err


def test_errors_are_one_line(tmp_path, capsys):
    runs = write_runs(tmp_path / "R.csv")
    lines = runs.read_text().splitlines()
    lines[4] = lines[4].replace(lines[4].split(",")[1], "0.95", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    fit = ["fit", "mixture-scaling", "--shares", "web,code,books", "--n", "params", "--d", "tokens", "--loss", "val_web",
           "--bootstrap", "0"]
    code, _, err = run(capsys, *fit, "--runs", bad, "--json", tmp_path / "x.json")
    assert code == 2 and err.count("\n") == 1 and "bad.csv: row 5: proportions sum to" in err
    law_json = tmp_path / "law.json"
    assert run(capsys, *fit, "--runs", runs, "--json", law_json)[0] == 0
    mix = tmp_path / "M.csv"
    mix.write_text("id,web,code\na,0.5,0.5\n")
    predict = ["predict", "mixture-loss", "--law", law_json, "--out", tmp_path / "P.csv"]
    code, _, err = run(capsys, *predict, "--mixtures", mix)
    assert code == 2 and "a mixture-scaling law needs --at N=...,D=..." in err
    code, _, err = run(capsys, *predict, "--mixtures", mix, "--at", "N=1B")
    assert code == 2 and "--at: expected N=...,D=..., got N" in err
    mix.write_text("id,web,wiki\na,0.5,0.5\n")
    code, _, err = run(capsys, *predict, "--mixtures", mix, "--at", "N=1B,D=20B")
    assert code == 2 and "unknown domain column(s) wiki" in err
    mix.write_text("id,web,code\na,0.5,0.2\n")
    code, _, err = run(capsys, *predict, "--mixtures", mix, "--at", "N=1B,D=20B")
    assert code == 2 and "M.csv: row 2: proportions sum to 0.7" in err
