"""The `ladderlab` command: usage errors, fits from CSV, JSON out, predictions, the demo."""

import json

import numpy as np
import pytest

from ladderlab.cli import main

TRUE = {"A": 406.4, "B": 410.7, "E": 1.69, "alpha": 0.34, "beta": 0.28}


def chinchilla_csv(path, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["run,params,tokens,flops,loss"]
    for i, n in enumerate(np.geomspace(1e7, 3e9, 6)):
        for mult in (2, 5, 10, 20, 50, 100):
            d = mult * n
            loss = (TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]) * np.exp(noise * rng.normal())
            lines.append(f"r{i}-{mult},{n:.6g},{d:.6g},{6 * n * d:.6g},{loss:.9g}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_for_every_command(capsys):
    for argv in (["--help"], ["fit", "--help"], ["fit", "chinchilla", "--help"], ["fit", "data-constrained", "--help"],
                 ["fit", "step", "--help"], ["predict", "loss", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert "usage: ladderlab" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["fit"], ["fit", "chinchilla", "--csv", "x.csv"], ["nope"], ["fit", "size", "--bogus"]])
def test_bad_usage_is_one_line_and_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_fit_chinchilla_recovers_parameters_and_writes_json(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv")
    out = tmp_path / "fit.json"
    code, stdout, _ = run(capsys, "fit", "chinchilla", "--csv", str(csv), "--n", "params", "--d", "tokens",
                          "--loss", "loss", "--bootstrap", "0", "--json", str(out), "--plot", str(tmp_path / "f.png"))
    assert code == 0 and "compute-optimal" in stdout
    doc = json.loads(out.read_text())
    assert doc["law"] == "chinchilla" and doc["n_points"] == 36
    for k, v in TRUE.items():
        assert doc["params"][k] == pytest.approx(v, rel=1e-3)
    row = doc["compute_optimal"][0]
    assert 6 * row["N"] * row["D"] == pytest.approx(row["flops"], rel=1e-9)
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_flops_column_gives_the_same_fit_as_tokens(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv", noise=0.01)
    docs = []
    for flag, col in (("--d", "tokens"), ("--flops", "flops")):
        out = tmp_path / f"{col}.json"
        run(capsys, "fit", "chinchilla", "--csv", str(csv), "--n", "params", flag, col, "--loss", "loss",
            "--bootstrap", "0", "--json", str(out))
        docs.append(json.loads(out.read_text())["params"])
    for k in TRUE:
        assert docs[0][k] == pytest.approx(docs[1][k], rel=1e-4)


def test_drop_highest_and_bootstrap_intervals(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv", noise=0.01)
    out = tmp_path / "fit.json"
    run(capsys, "fit", "chinchilla", "--csv", str(csv), "--n", "params", "--d", "tokens", "--loss", "loss",
        "--drop-highest", "5", "--bootstrap", "16", "--workers", "1", "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["n_points"] == 31
    assert len(doc["bootstrap"]["samples"]) == 16
    lo, hi = doc["bootstrap"]["intervals_90"]["alpha"]
    assert lo < doc["params"]["alpha"] < hi


def test_bad_cell_names_file_row_and_column(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv")
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",oops"
    csv.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "fit", "chinchilla", "--csv", str(csv), "--n", "params", "--d", "tokens", "--loss", "loss")
    assert code == 2
    assert err.count("\n") == 1 and "runs.csv: row 4, column loss: 'oops' is not a number" in err


def test_missing_column_is_named(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv")
    code, _, err = run(capsys, "fit", "size", "--csv", str(csv), "--n", "width", "--loss", "loss")
    assert code == 2 and "missing column(s) width" in err


def test_size_law_fit_then_predict_from_json(tmp_path, capsys):
    n = np.geomspace(1e6, 1e9, 10)
    noise = np.exp(0.01 * np.random.default_rng(0).normal(size=n.size))
    (tmp_path / "s.csv").write_text("n,loss\n" + "".join(f"{a},{(1.8 + 400 / a ** 0.3) * z}\n" for a, z in zip(n, noise)))
    out = tmp_path / "size.json"
    run(capsys, "fit", "size", "--csv", str(tmp_path / "s.csv"), "--n", "n", "--loss", "loss", "--bootstrap", "8",
        "--workers", "1", "--at", "1e10", "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["predictions"][0]["prediction"] == pytest.approx(1.8 + 400 / 1e10 ** 0.3, rel=0.05)
    pred = tmp_path / "pred.json"
    code, stdout, _ = run(capsys, "predict", "loss", "--law", str(out), "--at", "N=1e10", "--json", str(pred))
    assert code == 0
    got = json.loads(pred.read_text())["predictions"][0]
    assert got["prediction"] == pytest.approx(doc["predictions"][0]["prediction"], rel=1e-12)
    assert got["prediction_lo"] <= got["prediction"] <= got["prediction_hi"]
    code, _, err = run(capsys, "predict", "loss", "--law", str(out), "--at", "D=1e10")
    assert code == 2 and "takes N" in err


def test_data_constrained_with_base_json(tmp_path, capsys):
    base = {"A": 520.8, "B": 1487.7, "E": 1.869, "alpha": 0.3527, "beta": 0.3527}
    from ladderlab.scaling.laws.data_constrained import DataConstrained

    law = DataConstrained()
    rows = [(n, m * u, u) for n in (1e8, 5e8, 2e9) for u in (1e9, 4e9) for m in (0.5, 1, 2, 4, 8, 16, 40)]
    n, d, u = (np.array(c) for c in zip(*rows))
    theta = law.to_internal({**base, "R_D*": 15.4, "R_N*": 5.3})
    loss = law.predict_batch(theta[None], {"N": n, "D": d, "U": u})[0]
    (tmp_path / "dc.csv").write_text("n,d,u,loss\n" + "".join(f"{a},{b},{c},{float(e)!r}\n" for a, b, c, e in zip(n, d, u, loss)))
    (tmp_path / "base.json").write_text(json.dumps({"law": "chinchilla", "params": base, "objective": 0, "n_points": 0,
                                                     "rmse_log": 0, "mape": 0}))
    texts = []
    for flag in ("--base-law", "--base"):  # --base: the old spelling
        out = tmp_path / f"dc{flag}.json"
        code, _, _ = run(capsys, "fit", "data-constrained", "--csv", str(tmp_path / "dc.csv"), "--n", "n", "--d", "d",
                         "--unique", "u", "--loss", "loss", flag, str(tmp_path / "base.json"), "--bootstrap", "0",
                         "--json", str(out))
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    doc = json.loads(texts[0])
    assert code == 0 and doc["fixed"] == ["A", "B", "E", "alpha", "beta"]
    assert doc["params"]["R_D*"] == pytest.approx(15.4, rel=1e-3)
    assert doc["params"]["R_N*"] == pytest.approx(5.3, rel=1e-3)


def test_demo_reports_held_out_check_and_writes_to_out(tmp_path, capsys):
    out, folder = tmp_path / "demo.json", tmp_path / "bundled"
    code, stdout, _ = run(capsys, "demo", "--bundled", "--set", "bootstrap=8", "--json", str(out), "--out", str(folder))
    assert code == 0 and "held-out" in stdout
    doc = json.loads(out.read_text())
    held = doc["overtraining"]["held_out"]
    assert len(held) == 7 and all(h["N"] == 359973888 for h in held)  # the 411M runs, non-embedding N
    assert doc["overtraining"]["held_out_mape"] == pytest.approx(2.36, abs=0.05)
    assert doc["data_constrained"]["objective_at_published"] == pytest.approx(0.015826, rel=1e-4)
    # --out DIR: the same summary, the printed report and both fits' plots
    assert json.loads((folder / "summary.json").read_text()) == doc
    report = " ".join((folder / "report.txt").read_text().split())  # rich wraps lines at the console's width
    assert "held-out check: 7 runs above 1.6e+08 params" in report and "published R_D* 15.39, R_N* 5.31" in report
    assert all((folder / f"{name}.png").stat().st_size > 10_000 for name in ("overtraining", "data_constrained"))


def test_demo_config_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "demo", "--bundled", "--set", "bootstrapp=3")
    assert code == 2 and err.count("\n") == 1 and "bootstrapp" in err
    for argv in (["--config", str(tmp_path / "missing.gin")], [str(tmp_path / "missing.gin")]):  # both forms of CONFIG
        code, _, err = run(capsys, "demo", "--bundled", *argv)
        assert code == 2 and "config file not found" in err and "missing.gin" in err
    with pytest.raises(SystemExit) as e:
        main(["demo", "--bundled", "a.gin", "--config", "b.gin"])
    assert e.value.code == 2 and "two configs given: a.gin and b.gin" in capsys.readouterr().err


def test_version_is_the_installed_package_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"ladderlab {importlib.metadata.version('ladderlab')}\n"


def test_help_shows_defaults(capsys):
    for argv, shown in ((["fit", "chinchilla", "--help"], "bootstrap refits over runs (0: none) (default: 200)"),
                        (["predict", "tasks", "--help"], "interval level (default: 0.9)"),
                        (["grow", "plan", "--help"], "(4 is the paper's advice) (default: 4)"),
                        (["report", "--help"], "(default: 100)")):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
        assert shown in text and "(default: None)" not in text and "(default: False)" not in text


def test_csv_and_runs_are_one_option(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv", noise=0.01)
    docs = []
    for flag in ("--csv", "--runs"):
        out = tmp_path / f"{flag[2:]}.json"
        code, _, _ = run(capsys, "fit", "size", flag, str(csv), "--n", "params", "--loss", "loss", "--bootstrap", "4",
                         "--workers", "1", "--at", "7B", "--json", str(out))
        assert code == 0
        docs.append(out.read_text())
    assert docs[0] == docs[1]
    assert json.loads(docs[0])["predictions"][0]["N"] == 7e9  # --at 7B


def test_size_labels_equal_numbers(tmp_path, capsys):
    docs = []
    for n in ("7B", "7e9", "7000M"):
        out = tmp_path / f"{n}.json"
        assert run(capsys, "grow", "plan", "--target-params", n, "--budget-flops", "8.4e22", "--json", str(out))[0] == 0
        docs.append(json.loads(out.read_text()))
    assert docs[0] == docs[1] == docs[2] and docs[0]["growth_tokens"] == pytest.approx(1.111e10, rel=1e-3)
    with pytest.raises(SystemExit) as e:
        main(["grow", "plan", "--target-params", "7X", "--budget-flops", "1e22"])
    assert e.value.code == 2 and "size label like 7B" in capsys.readouterr().err


def test_where_filters_rows(tmp_path, capsys):
    csv = chinchilla_csv(tmp_path / "runs.csv")
    out = tmp_path / "fit.json"
    code, _, _ = run(capsys, "fit", "chinchilla", "--csv", str(csv), "--n", "params", "--d", "tokens", "--loss", "loss",
                     "--where", "params<=1e9", "--where", "run!=r0-2", "--bootstrap", "0", "--json", str(out))
    assert code == 0 and json.loads(out.read_text())["n_points"] == 5 * 6 - 1
    code, _, err = run(capsys, "fit", "size", "--csv", str(csv), "--n", "params", "--loss", "loss", "--where", "params~3")
    assert code == 2 and "--where 'params~3'" in err


def test_task_targets_take_size_labels():
    from ladderlab.scaling.tables.olmo import OLMO_N
    from ladderlab.scaling.tasks.report import Target, parse_target

    assert parse_target("big:7B:4T", {}) == Target("big", 7e9, 4e12)
    assert parse_target("olmo:7B:2xC", OLMO_N) == Target("olmo", 6_887_575_552, 2 * 20 * 6_887_575_552)  # the N table's


def test_predict_loss_judges_each_point_and_flags_far_extrapolation(tmp_path, capsys):
    law = tmp_path / "law.json"
    code, stdout, _ = run(capsys, "fit", "chinchilla", "--csv", str(chinchilla_csv(tmp_path / "r.csv", 0.003)),
                          "--n", "params", "--d", "tokens", "--loss", "loss", "--bootstrap", "0", "--json", str(law))
    assert code == 0 and "verdict" in stdout
    info = json.loads(law.read_text())["backtest"]
    assert info["fit_max"]["N"] == pytest.approx(3e9) and info["scale"] > 0
    pred = tmp_path / "pred.json"
    code, stdout, _ = run(capsys, "predict", "loss", "--law", str(law), "--at", "N=1e9,D=2e10", "--at", "N=1T,D=20T",
                          "--json", str(pred))
    near, far = json.loads(pred.read_text())["predictions"]
    assert near["past_fitted"] == 1.0 and "past the largest" not in near["verdict"]
    assert near["calibrated_lo"] < near["prediction"] < near["calibrated_hi"]
    assert far["past_fitted"] == pytest.approx(1e12 / 3e9, rel=1e-3)
    assert far["verdict"].startswith("not predictable") and "past the largest fitted N or D" in far["verdict"]


def test_backtest_on_a_users_table_writes_mape_and_coverage(tmp_path, capsys):
    out = tmp_path / "bt.json"
    code, stdout, _ = run(capsys, "backtest", "--csv", str(chinchilla_csv(tmp_path / "r.csv", 0.003)), "--n", "params",
                          "--d", "tokens", "--loss", "loss", "--where", "params<4e8", "--sets", "csv", "--bootstrap",
                          "10", "--workers", "1", "--json", str(out))
    assert code == 0
    doc = json.loads(out.read_text())
    assert list(doc) == ["r"] and set(doc["r"]) == {"chinchilla", "chinchilla/calibrated"}
    assert doc["r"]["chinchilla"]["n_targets"] == 6 and doc["r"]["chinchilla"]["mape"] < 1.0
    assert doc["r"]["chinchilla/calibrated"]["coverage_90"] == 1.0
    code, _, err = run(capsys, "backtest", "--sets", "nope")
    assert code == 2 and "unknown set(s) nope" in err
