"""CLI: fit mixing-law -> predict mixture-loss -> optimize mixture, fit cmr, and one-line errors for bad tables."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from ladderlab.cli import main

DOMAINS = ("web", "code", "books")
TRUTH = {"val_web": (2.0, 1.0, (-2.0, 0.5, 0.0)), "val_code": (1.5, 1.2, (0.3, -2.5, 0.0))}


def write_tables(folder, n=30, seed=0):
    r = np.random.default_rng(seed).dirichlet(np.ones(3), n)
    m_lines = ["id," + ",".join(DOMAINS)] + [f"run{i}," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(r)]
    l_lines = ["id," + ",".join(TRUTH)] + [
        f"run{i}," + ",".join(f"{c + k * np.exp(row @ np.array(t)):.6f}" for c, k, t in TRUTH.values()) for i, row in enumerate(r)
    ]
    (folder / "M.csv").write_text("\n".join(m_lines) + "\n")
    (folder / "L.csv").write_text("\n".join(l_lines) + "\n")
    return r, folder / "M.csv", folder / "L.csv"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_for_mixture_commands(capsys):
    for argv in (["fit", "mixing-law", "--help"], ["fit", "cmr", "--help"], ["predict", "mixture-loss", "--help"],
                 ["optimize", "mixture", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0 and "usage: ladderlab" in capsys.readouterr().out


def test_fit_predict_optimize_round_trip(tmp_path, capsys):
    r, m_csv, l_csv = write_tables(tmp_path)
    law = tmp_path / "law.json"
    code, out, _ = run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--model", "plain",
                       "--json", law, "--plot", tmp_path / "pv.png")
    assert code == 0 and "val_web" in out
    doc = json.loads(law.read_text())
    assert doc["domains"] == list(DOMAINS)
    assert doc["targets"]["val_web"]["fit"]["params"]["t_web"] == pytest.approx(-2.0, abs=1e-3)
    assert (tmp_path / "pv.png").stat().st_size > 10_000
    # predict: P has the id column and the loss columns named as in L, in L's order, each with its 90% interval.
    new = tmp_path / "M2.csv"
    new.write_text("id,web,code,books\nnew1,0.2,0.3,0.5\nnew2,0.6,0.2,0.2\n")
    code, _, _ = run(capsys, "predict", "mixture-loss", "--law", law, "--mixtures", new, "--out", tmp_path / "P.csv")
    rows = list(csv.DictReader((tmp_path / "P.csv").open()))
    assert code == 0 and list(rows[0]) == ["id", "val_web", "val_web_lo", "val_web_hi", "val_code", "val_code_lo",
                                           "val_code_hi"] and [x["id"] for x in rows] == ["new1", "new2"]
    c, k, t = TRUTH["val_code"]
    assert float(rows[1]["val_code"]) == pytest.approx(c + k * np.exp(np.array([0.6, 0.2, 0.2]) @ np.array(t)), rel=1e-5)
    # optimize: the web loss with web capped at 0.5 and code at least 0.1.
    code, out, _ = run(capsys, "optimize", "mixture", "--law", law, "--objective", "val_web", "--max", "web=0.5",
                       "--min", "code=0.1", "--json", tmp_path / "opt.json", "--plot", tmp_path / "land.png")
    opt = json.loads((tmp_path / "opt.json").read_text())
    assert code == 0 and "optimal mixture" in out
    assert opt["ratios"]["web"] == pytest.approx(0.5, abs=1e-6) and opt["ratios"]["code"] >= 0.1 - 1e-9
    grid = np.array([[0.5, c_, 0.5 - c_] for c_ in np.linspace(0.1, 0.5, 4001)])
    best = grid[np.argmin(np.exp(grid @ np.array(TRUTH["val_web"][2])))]
    assert opt["ratios"]["code"] == pytest.approx(best[1], abs=1e-3)
    assert (tmp_path / "land.png").stat().st_size > 10_000


def test_fit_cmr_from_csv(tmp_path, capsys):
    rows = ["ratio,tokens,general,base"]
    for r in (0.1, 0.25, 0.5, 0.75):
        for t in (1e9, 3e9, 1e10):
            rows.append(f"{r},{t},{3.0 + 0.05 * r**1.5 * (t / 1e9) ** 0.2:.9f},3.0")
    (tmp_path / "cpt.csv").write_text("\n".join(rows) + "\n")
    code, out, _ = run(capsys, "fit", "cmr", "--csv", tmp_path / "cpt.csv", "--ratio", "ratio", "--tokens", "tokens",
                       "--general", "general", "--base", "base", "--tolerance", "0.02", "--at-tokens", "3e10",
                       "--bootstrap", "0", "--json", tmp_path / "cmr.json", "--plot", tmp_path / "cmr.png")
    doc = json.loads((tmp_path / "cmr.json").read_text())
    assert code == 0 and "critical mixture ratio" in out
    assert doc["ratio"] == pytest.approx((0.02 / (0.05 * 30**0.2)) ** (1 / 1.5), rel=1e-4)
    assert (tmp_path / "cmr.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m, l: (m.replace("run3,", "run3,0.5,0.5,0.2\nxx,", 1), l), "M.csv: row 5: proportions sum to 1.2"),
        (lambda m, l: (m, l + l.splitlines()[1] + "\n"), "L.csv: id 'run0' appears 2 times"),
        (lambda m, l: (m, re.sub(r"run2,[^,]*,", "run2,nan,", l)), "L.csv: row 4, column val_web: 'nan' is not finite"),
        (lambda m, l: (m, l.replace("run7,", "run77,", 1)), "ids do not join: id 'run7' of"),
    ],
    ids=["sum", "duplicate", "nan", "join"],
)
def test_bad_tables_are_one_line_and_exit_2(tmp_path, capsys, edit, message):
    _, m_csv, l_csv = write_tables(tmp_path)
    m_text, l_text = edit(m_csv.read_text(), l_csv.read_text())
    m_csv.write_text(m_text)
    l_csv.write_text(l_text)
    code, _, err = run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--model", "plain")
    assert code == 2 and err.count("\n") == 1 and message in err


def test_predict_and_optimize_errors_name_the_problem(tmp_path, capsys):
    _, m_csv, l_csv = write_tables(tmp_path, n=6)
    code, _, err = run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--model", "log")
    assert code == 2 and "fewer runs (6) than parameters of the log law (7)" in err
    law = tmp_path / "law.json"
    assert run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--model", "plain", "--json", law)[0] == 0
    bad = tmp_path / "M2.csv"
    bad.write_text("id,web,code,wiki\na,0.2,0.3,0.5\n")
    code, _, err = run(capsys, "predict", "mixture-loss", "--law", law, "--mixtures", bad, "--out", tmp_path / "P.csv")
    assert code == 2 and "unknown domain column(s) wiki" in err
    code, _, err = run(capsys, "optimize", "mixture", "--law", law, "--min", "web=0.7", "--min", "code=0.5")
    # Without --max a share is capped at the largest seen in the 6 runs (web: 0.6652).
    assert code == 2 and "domain web: min share 0.7 exceeds its max share 0.6652" in err
    code, _, err = run(capsys, "optimize", "mixture", "--law", law, "--min", "web=0.7", "--min", "code=0.5",
                       "--max", "web=1", "--max", "code=1")
    assert code == 2 and "no feasible mixture: min shares sum to 1.2" in err
    code, _, err = run(capsys, "optimize", "mixture", "--law", law, "--objective", "val_books")
    assert code == 2 and "unknown target column(s) val_books" in err


def test_old_flag_spellings_and_size_labels_give_identical_json(tmp_path, capsys):
    _, m_csv, l_csv = write_tables(tmp_path)
    laws = []
    for flag in ("--loss", "--target"):  # fit mixing-law: --target is the old spelling of --loss (a column)
        law = tmp_path / f"law{flag}.json"
        assert run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--model", "plain",
                   flag, "val_web", "--json", law)[0] == 0
        laws.append(law.read_text())
    assert laws[0] == laws[1] and list(json.loads(laws[0])["targets"]) == ["val_web"]
    opts = []
    for flag, tokens, budget in (("--objective", "1e11", "code=2e10"), ("--target", "100B", "code=20B")):
        out = tmp_path / f"opt{flag}.json"
        assert run(capsys, "optimize", "mixture", "--law", tmp_path / "law--loss.json", flag, "val_web=1",
                   "--tokens", tokens, "--budget", budget, "--json", out)[0] == 0
        opts.append(out.read_text())
    assert opts[0] == opts[1] and json.loads(opts[0])["ratios"]["code"] <= 4 * 2e10 / 1e11 + 1e-9


def test_cmr_reads_the_table_from_csv_or_runs(tmp_path, capsys):
    rows = ["ratio,tokens,general,base"] + [f"{r},{t},{3.0 + 0.05 * r**1.5 * (t / 1e9) ** 0.2:.9f},3.0"
                                            for r in (0.1, 0.25, 0.5, 0.75) for t in (1e9, 3e9, 1e10)]
    (tmp_path / "cpt.csv").write_text("\n".join(rows) + "\n")
    docs = []
    for flag, at in (("--csv", "3e10"), ("--runs", "30B")):
        out = tmp_path / f"cmr{flag}.json"
        assert run(capsys, "fit", "cmr", flag, tmp_path / "cpt.csv", "--ratio", "ratio", "--tokens", "tokens",
                   "--general", "general", "--base", "base", "--tolerance", "0.02", "--at-tokens", at,
                   "--bootstrap", "0", "--json", out)[0] == 0
        docs.append(out.read_text())
    assert docs[0] == docs[1]
    assert json.loads(docs[0])["ratio"] == pytest.approx((0.02 / (0.05 * 30**0.2)) ** (1 / 1.5), rel=1e-4)


def scaling_law(path, k, t, spread):
    """A joint mixture-scaling law JSON built by hand: parameters, and 200 replicates that scatter k and t by
    `spread` (sd, internal units) about them: a well-determined mixture effect or one lost in the noise; no run
    scatter about the law."""
    from ladderlab.scaling.engine.law import FittedLaw
    from ladderlab.scaling.mixing.joint import MixtureScalingLaw
    from ladderlab.scaling.mixing.mixture_scaling import MixtureScaling

    law = MixtureScalingLaw(DOMAINS)
    theta = law.to_internal(dict(E=1.8, A=400.0, alpha=0.34, B=900.0, beta=0.3, k=k, t_web=t[0], t_code=t[1]))
    rng = np.random.default_rng(0)
    boot = theta + np.hstack([np.zeros((200, 5)), rng.normal(0, spread, (200, 3))])
    fitted = FittedLaw(law, theta, 0.0, 120, 0.0, 0.0, boot_BxP=boot, seed=0)
    choice = {"held_out": None, "errors": {"joint": None, "nested": None}, "reason": "built by hand"}
    model = MixtureScaling("joint", DOMAINS, rng.dirichlet(np.ones(3), 10), {"n": "N", "d": "D", "run": None}, 40,
                           choice, [], 200, 0, {"val": fitted}, scatter={"val": np.zeros(1)})
    path.write_text(json.dumps(model.to_json()))
    return path


def test_mixtures_no_longer_separated_verdict_fires_and_stays_silent(tmp_path, capsys):
    mix = tmp_path / "M.csv"
    mix.write_text("id,web,code,books\nnear_a,0.5,0.3,0.2\nnear_b,0.5,0.29,0.21\nfar,0.1,0.8,0.1\n")
    predict = ["predict", "mixture-loss", "--mixtures", mix, "--at", "N=1B,D=20B", "--out", tmp_path / "P.csv", "--law"]
    # A well-determined law orders even mixtures 0.003 apart: silent.
    code, out, _ = run(capsys, *predict, scaling_law(tmp_path / "strong.json", 0.6, (-1.5, 0.8), 0.01))
    rows = list(csv.DictReader((tmp_path / "P.csv").open()))
    assert code == 0 and float(rows[0]["val"]) - float(rows[1]["val"]) == pytest.approx(0.0027, abs=2e-4)
    assert "no longer separated" not in out
    # A mixture effect lost in the noise: near_a and far are within it.
    code, out, _ = run(capsys, *predict, scaling_law(tmp_path / "weak.json", 0.01, (-0.3, 0.2), 1.0))
    assert code == 0 and ("verdict: val: mixtures no longer separated at N=1e+09, D=2e+10: near_b predicts the "
                          "lowest loss, but its order against near_a (") in out
    assert re.search(r"near_a \(\d+%\), far \(\d+%\) flips in more than 10% of the draws", out)


def test_optimize_a_mixture_scaling_law_judges_its_optimum(tmp_path, capsys):
    optimize = ["optimize", "mixture", "--at", "N=1B,D=20B", "--json", tmp_path / "opt.json", "--law"]
    code, out, _ = run(capsys, *optimize, scaling_law(tmp_path / "strong.json", 0.6, (-1.5, 0.8), 0.01))
    doc = json.loads((tmp_path / "opt.json").read_text())
    assert code == 0 and "optimum significant" in out and doc["significance"]["significant"]
    gains = doc["significance"]["against"]
    assert gains["equal shares"]["gain"] > 0.1 and gains["equal shares"]["flip_share"] == 0.0
    share_max = json.loads((tmp_path / "strong.json").read_text())["mixtures"]
    assert doc["ratios"]["web"] == pytest.approx(max(m[0] for m in share_max), abs=1e-6)  # t_web lowest: web capped
    assert doc["separation"]["separated"] and doc["warnings"] == []
    # A mixture effect of 0.01 whose exponents scatter by 1 across replicates: no gain to speak of.
    code, out, _ = run(capsys, *optimize, scaling_law(tmp_path / "weak.json", 0.01, (-0.3, 0.2), 1.0))
    doc = json.loads((tmp_path / "opt.json").read_text())
    assert code == 0 and not doc["significance"]["significant"]
    assert "optimum not significant: its gain over" in doc["warnings"][-1] and "optimum not significant" in out
    assert not doc["separation"]["separated"] and "mixtures no longer separated" in out


def test_optimize_at_errors_name_the_conflict(tmp_path, capsys):
    law = scaling_law(tmp_path / "law.json", 0.6, (-1.5, 0.8), 0.01)
    code, _, err = run(capsys, "optimize", "mixture", "--law", law, "--at", "N=1B,D=20B", "--tokens", "100B")
    assert code == 2 and ("--tokens 1e+11 conflicts with --at D=2e+10: for a mixture-scaling law D sets the run's "
                          "token count") in err
    code, _, err = run(capsys, "optimize", "mixture", "--law", law)
    assert code == 2 and "a mixture-scaling law needs --at N=...,D=..." in err
    code, out, _ = run(capsys, "optimize", "mixture", "--law", law, "--at", "N=1B,D=20B", "--tokens", "20B",
                       "--budget", "code=1B", "--json", tmp_path / "opt.json")
    assert code == 0 and json.loads((tmp_path / "opt.json").read_text())["ratios"]["code"] <= 4 * 1e9 / 2e10 + 1e-9
    _, m_csv, l_csv = write_tables(tmp_path)
    mixing = tmp_path / "mixing.json"
    assert run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--model", "plain",
               "--json", mixing)[0] == 0
    code, _, err = run(capsys, "optimize", "mixture", "--law", mixing, "--at", "N=1B,D=20B")
    assert code == 2 and "--at applies only to a mixture-scaling law (this is a mixing-law JSON)" in err
