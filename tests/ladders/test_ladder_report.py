"""`ladderlab report` on results folders written from known laws: recovered parameters, held-out error, the best
mixture, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from ladderlab.cli import main
from ladderlab.data.mixture import normalise
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import mixtures, plan
from ladderlab.ladders.report import make_report
from ladderlab.ladders.store import LadderStore, write_atomic
from ladderlab.scaling.report import fmt

LAW = {"E": 1.8, "A": 40.0, "alpha": 0.45, "B": 300.0, "beta": 0.4}
DOMAINS = ("a", "b", "c")
MIX_C, MIX_K = np.array([2.0, 2.5, 3.0]), np.array([1.5, 1.0, 0.8])
MIX_T = np.array([[-2.0, 0.5, 0.0], [0.3, -1.5, 0.0], [0.2, 0.4, 0.0]])  # t_ij, the last domain's pinned at 0


def chinchilla(n, d):
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def mixing(r):
    return MIX_C + MIX_K * np.exp(MIX_T @ r)


def fake_ladder(root, cfg, losses, evals=1):
    """A results folder whose runs finished with val/<domain> = losses(run), evaluated `evals` times (evaluation k
    of K at k/K of the run's tokens, 0.2 (K - k)/K above the final losses)."""
    runs = plan(cfg)
    store = LadderStore.create(root, cfg, runs)
    for r in runs:
        rows = []
        for k in range(1, evals + 1):
            val = np.asarray(losses(r), float) + 0.2 * (evals - k) / evals
            rows.append({"run": r.run, "size": r.size, "mixture": r.mixture, "multiple": r.multiple, "seed": r.seed,
                         "N": r.n, "D": r.tokens * k // evals, "step": r.steps * k // evals, "lr": r.lr,
                         "train_loss": float(np.mean(val)), "loss": float(np.mean(val)),
                         **{f"val/{d}": float(v) for d, v in zip(DOMAINS, val)}})
        store.run_dir(r.run).mkdir(parents=True)
        curve = [[s, 5.0 - s / r.steps] for s in (1, r.steps)]
        write_atomic(store.run_dir(r.run) / "result.json",
                     json.dumps({"run": r.run, "rows": rows, "train_curve": curve, "seconds": 1.0}))
    store.write_table()
    return store


def test_scaling_law_and_held_out_prediction_from_exact_losses(tmp_path, capsys):
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4, 3.6e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    fake_ladder(tmp_path, cfg, lambda r: [chinchilla(r.n, r.tokens)] * 3)
    summary = make_report(tmp_path, bootstrap=10)
    held = summary["scaling"]["held_out"]
    assert held["run"] == "36k-4xC-equal-s0" and held["actual"] == pytest.approx(chinchilla(36160, held["D"]))
    assert abs(held["error_pct"]) < 0.05
    params = summary["scaling"]["fit"]["params"]
    assert params["alpha"] == pytest.approx(0.45, rel=0.02) and params["beta"] == pytest.approx(0.4, rel=0.02)
    assert summary["mixing"]["skipped"].startswith("mixing law skipped")
    assert summary["tasks"]["skipped"].startswith("task laws skipped")  # no task columns in these runs
    out = capsys.readouterr().out
    assert "held-out check: 36k-4xC-equal-s0" in out
    md = (tmp_path / "report" / "report.md").read_text()
    assert "held-out check" in md and "![scaling_fit.png](scaling_fit.png)" in md
    lo, hi = held["interval"]
    assert held["inside"] == (lo <= held["actual"] <= hi)
    assert ("the actual loss is inside the 90% interval" if held["inside"] else "the actual loss is OUTSIDE") in md
    for png in ("loss_curves.png", "scaling_fit.png", "predicted_vs_actual.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_md_has_the_fits_warnings_intervals_and_says_when_an_actual_is_outside(tmp_path):
    """Nine runs, eight fitted (the fit warns of few points); the held-out run's loss is pushed 0.3 below the law,
    far below its interval: report.md says so in the check line and the checks table, lists the warnings and
    every parameter's interval, and summary.json's inside flag agrees with the interval."""
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    held = max(plan(cfg), key=lambda r: (r.n, r.tokens)).run
    fake_ladder(tmp_path, cfg, lambda r: [chinchilla(r.n, r.tokens) - (0.3 if r.run == held else 0.0)] * 3)
    summary = make_report(tmp_path, bootstrap=20)
    h = summary["scaling"]["held_out"]
    lo, hi = h["interval"]
    assert h["run"] == held == "25k-4xC-equal-s0" and h["actual"] < lo < hi
    assert h["inside"] is False
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["scaling"]["held_out"]["inside"] is False
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"error {h['error_pct']:+.2f}%; the actual loss is OUTSIDE the 90% interval (below it)" in md
    assert f"| {h['prediction']:.4f} [{lo:.4f}, {hi:.4f}] | {h['actual']:.4f} | {h['error_pct']:+.2f}% | **NO** |" in md
    assert f"Outside its 90% interval: loss of held-out run {held} (scaling law)." in md
    assert "few points: 8 rows for 5 parameters; intervals may be wide" in summary["scaling"]["warnings"]
    for w in summary["scaling"]["warnings"]:
        assert f"- {w}\n" in md
    fit = summary["scaling"]["fit"]
    assert set(fit["bootstrap"]["intervals_90"]) == {"A", "B", "E", "alpha", "beta"}
    for name, (a, b) in fit["bootstrap"]["intervals_90"].items():
        assert f"| {name} | {fmt(fit['params'][name])} | [{fmt(a)}, {fmt(b)}] |" in md


def test_mixing_law_finds_a_better_mixture_than_any_run(tmp_path):
    cfg = LadderConfig(sizes=(3e3,), multiples=(1.0,), design=9, design_domains=DOMAINS, mixture_grid="smallest")
    mixes = {"equal": {}, **{f"mix{i}": m for i, m in enumerate(plan_mixtures(cfg), 1)}}
    fake_ladder(tmp_path, cfg, lambda r: mixing(np.array(list(normalise(mixes[r.mixture], list(DOMAINS)).values()))))
    calls = []

    def check(mx):  # stands in for demo.check_mixture: the trained best mixture came out above its interval
        calls.append(mx)
        return {"predicted": mx["loss"], "interval": mx["interval"], "actual": mx["interval"][1] + 0.1,
                "error_pct": -2.0, "inside": False, "line": "mixing-law check: the best mixture ... (stand-in)"}

    summary = make_report(tmp_path, bootstrap=0, check=check)
    mx = summary["mixing"]
    best = np.array([mx["ratios"][d] for d in DOMAINS])
    true_best = mixing(best).mean()
    assert mx["loss"] == pytest.approx(true_best, rel=5e-3)
    observed = [mixing(np.array(list(normalise(m, list(DOMAINS)).values()))).mean() for m in mixes.values()]
    assert true_best <= min(observed) + 1e-6
    assert (tmp_path / "report" / "mixture_landscape.png").is_file()
    assert "skipped" in summary["scaling"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| mixture | a | b | c |" in md
    for name, m in mixes.items():  # what mix1, mix2, ... stand for
        shares = normalise(m, list(DOMAINS))
        assert summary["mixtures"][name] == pytest.approx(shares)
        assert f"| {name} | " + " | ".join(f"{shares[d]:.3f}" for d in DOMAINS) + " |" in md
    assert "| best (mixing law) | " + " | ".join(f"{mx['ratios'][d]:.3f}" for d in DOMAINS) + " |" in md
    assert len(calls) == 1 and calls[0]["ratios"] == mx["ratios"]
    lo, hi = mx["interval"]
    row = f"| loss of the best mixture, trained (mixing law) | {mx['loss']:.4f} [{lo:.4f}, {hi:.4f}] | {hi + 0.1:.4f} |"
    assert row + " -2.00% | **NO** |" in md
    assert "mixing-law check: the best mixture ... (stand-in)" in md and summary["mixture_check"]["inside"] is False


def test_mixing_law_warnings_reach_report_md(tmp_path):
    """Five runs for a four-parameter law per domain: every per-domain warning is in report.md."""
    cfg = LadderConfig(sizes=(3e3,), multiples=(1.0,), design=4, design_domains=DOMAINS, mixture_grid="smallest")
    mixes = {"equal": {}, **{f"mix{i}": m for i, m in enumerate(plan_mixtures(cfg), 1)}}
    fake_ladder(tmp_path, cfg, lambda r: mixing(np.array(list(normalise(mixes[r.mixture], list(DOMAINS)).values()))))
    warnings = make_report(tmp_path, bootstrap=0)["mixing"]["warnings"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "val/a: few points: 5 rows for 4 parameters; intervals may be wide" in warnings
    assert "val/c: too few runs (5) to cross-validate; intervals use in-sample errors" in warnings
    assert all(f"- {w}\n" in md for w in warnings)


def plan_mixtures(cfg):
    from ladderlab.ladders.plan import mixtures

    return [m for name, m in mixtures(cfg).items() if name != "equal"]


def test_report_of_an_empty_or_foreign_folder_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a ladder results folder" in capsys.readouterr().err
    LadderStore.create(tmp_path / "l", LadderConfig(), plan(LadderConfig()))
    assert main(["report", str(tmp_path / "l")]) == 2
    assert "no finished runs yet" in capsys.readouterr().err


@pytest.mark.parametrize("evals", [4, 1])
def test_task_laws_predict_the_held_out_runs_accuracy(tmp_path, capsys, evals):
    """Four evaluations per run; each domain's bits per byte follows a Chinchilla law and its accuracy a sigmoid of
    it: the report's task section predicts the largest run's final accuracy from the others. With one evaluation
    per run, step 2 has no points (the first evaluation is dropped): the section is skipped, the report written."""
    task_ladder(tmp_path, evals)
    task = make_report(tmp_path, bootstrap=20)["tasks"]
    if evals == 1:
        assert task["skipped"].startswith("task laws skipped") and "too few points" in task["skipped"]
        assert "## Task laws" in (tmp_path / "report" / "report.md").read_text()
        return
    assert task["run"] == "36k-4xC-equal-s0" and set(task["tasks"]) == set(DOMAINS)
    for i, x in enumerate(DOMAINS):
        truth = task_acc(chinchilla(36160, task["D"]) + i)
        assert task["tasks"][x]["actual_acc"] == pytest.approx(truth)
        assert task["tasks"][x]["acc"] == pytest.approx(truth, abs=0.005)
    assert task["mean_abs_error_pts"] < 0.5 and "held-out task check: 36k-4xC-equal-s0" in capsys.readouterr().out
    assert "## Task laws" in (tmp_path / "report" / "report.md").read_text()


def test_task_check_names_the_domain_whose_actual_is_outside_its_interval(tmp_path):
    """The held-out run's final accuracy on domain a is 20 points below the sigmoid: the task check, the checks table
    and summary.json say it is outside its interval."""
    task_ladder(tmp_path, 4, shift={"a": -0.2})
    task = make_report(tmp_path, bootstrap=20)["tasks"]
    a = task["tasks"]["a"]
    assert a["actual_acc"] < a["acc_lo"] and a["inside"] is False
    for r in task["tasks"].values():
        assert r["inside"] == (r["acc_lo"] <= r["actual_acc"] <= r["acc_hi"])
    assert (f"OUTSIDE it: a (actual {100 * a['actual_acc']:.1f}, interval {100 * a['acc_lo']:.1f}-"
            f"{100 * a['acc_hi']:.1f})") in task["line"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert task["line"] in md
    assert (f"| a accuracy (%) of 36k-4xC-equal-s0 (task law) | {100 * a['acc']:.1f} [{100 * a['acc_lo']:.1f}, "
            f"{100 * a['acc_hi']:.1f}] | {100 * a['actual_acc']:.1f} | {100 * a['acc_error']:+.1f} pts | **NO** |"
            ) in md
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())["tasks"]["tasks"]["a"]
    assert saved["inside"] is False


def task_acc(loss):
    return 1.0 - 0.9 / (1 + np.exp(-3.0 * (loss - 2.5)))


def task_ladder(root, evals, shift=None):
    """`evals` evaluations per run (the last of four); each domain's bits per byte follows a Chinchilla law (plus
    its index) and its accuracy `task_acc` of it; the largest run's final accuracy is shifted by `shift[domain]`."""
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4, 3.6e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    runs = plan(cfg)
    store = LadderStore.create(root, cfg, runs)
    largest = max(runs, key=lambda r: (r.n, r.tokens)).run
    for r in runs:
        rows = []
        for k in range(5 - evals, 5):
            d = r.tokens * k / 4
            val = chinchilla(r.n, d)
            moved = (shift or {}) if r.run == largest and k == 4 else {}
            rows.append({"run": r.run, "size": r.size, "mixture": r.mixture, "multiple": r.multiple, "seed": r.seed,
                         "N": r.n, "D": d, "step": r.steps * k // 4, "lr": r.lr, "train_loss": val, "loss": val,
                         **{f"val/{x}": val for x in DOMAINS}, **{f"loss/{x}": val + i for i, x in enumerate(DOMAINS)},
                         **{f"acc/{x}": float(task_acc(val + i)) + moved.get(x, 0.0) for i, x in enumerate(DOMAINS)}})
        store.run_dir(r.run).mkdir(parents=True)
        write_atomic(store.run_dir(r.run) / "result.json", json.dumps(
            {"run": r.run, "rows": rows, "train_curve": [[1, 5.0], [r.steps, 4.0]], "seconds": 1.0}))
    store.write_table()


@pytest.fixture
def figures(monkeypatch):
    """The report's matplotlib figures by file name, kept as they are saved (axes, lines and points inspectable)."""
    from ladderlab.ladders import plots as ladder_plots
    from ladderlab.scaling import plot
    from ladderlab.scaling.mixing import plot as mixing_plot

    kept = {}

    def keep(fig, path):
        kept[Path(path).name] = fig
        plot.save(fig, path)

    monkeypatch.setattr(ladder_plots, "save", keep)
    monkeypatch.setattr(mixing_plot, "save", keep)
    return kept



def test_report_plots_show_validation_curves_the_held_out_interval_and_the_fitted_mixtures(tmp_path, figures,
                                                                                          covered):
    """3 sizes x 3 multiples and a 6-mixture sweep, two evaluations per run. Loss curves: one validation line per
    run through its evaluations, a colour per size and a line style per multiple, the sweep in its own panel;
    the scaling plot is the fit panel alone; predicted vs actual marks the held-out run with its interval; the
    landscape marks the sweep's mixtures."""
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32, design=6,
                       design_domains=DOMAINS, mixture_grid="smallest")
    mixes = mixtures(cfg)
    shares = {m: np.array(list(normalise(v, list(DOMAINS)).values())) for m, v in mixes.items()}
    fake_ladder(tmp_path, cfg, lambda r: mixing(shares[r.mixture]) - 0.8 + chinchilla(r.n, r.tokens) - 1.9, evals=2)
    summary = make_report(tmp_path, bootstrap=20)
    assert summary["plots"] == ["loss_curves.png", "scaling_fit.png", "predicted_vs_actual.png",
                                "mixture_landscape.png"]
    runs = {r.run: r for r in plan(cfg)}

    val, train, sweep = figures["loss_curves.png"].axes
    assert val.get_title() == "validation loss, main mixture 'equal'" and sweep.get_title().endswith("mixture sweep")
    lines = [ln for ln in val.lines if ln.get_marker() == "o"]
    assert len(lines) == 9 and len(train.lines) == 9
    for ln in lines:  # each main run's two evaluations, at half and all of its tokens
        assert sorted(ln.get_xdata()) in [[r.tokens // 2, r.tokens] for r in runs.values()]
    assert len({to_hex(ln.get_color()) for ln in lines}) == 3 and len({ln.get_linestyle() for ln in lines}) == 3
    sweep_lines = [ln for ln in sweep.lines if ln.get_marker() == "o"]
    assert sorted(ln.get_label() for ln in sweep_lines) == sorted(mixes)
    assert len({to_hex(ln.get_color()) for ln in sweep_lines}) == 7
    assert min(covered(figures["loss_curves.png"])) > 0.75  # no blank half or row

    h = summary["scaling"]["held_out"]
    (fit_ax,) = figures["scaling_fit.png"].axes  # the fit panel only: predicted vs actual is its own plot
    assert fit_ax.get_xlabel() == "tokens D"
    star = [c for c in fit_ax.collections if c.get_label().startswith("held-out: actual")]
    assert star[0].get_offsets().tolist() == [[h["D"], h["actual"]]]

    (pv,) = figures["predicted_vs_actual.png"].axes
    bars = {c.get_label(): c for c in pv.containers}
    point, _, (segments,) = bars[f"held-out {h['run']}"]
    assert point.get_xdata()[0] == h["actual"] and point.get_ydata()[0] == pytest.approx(h["prediction"])
    assert segments.get_segments()[0][:, 1] == pytest.approx(h["interval"])
    fitted_point, *_ = bars["fitted runs (90% interval)"]
    assert len(fitted_point.get_xdata()) == 8
    where = "inside" if h["inside"] else "outside"
    assert pv.get_title() == f"held-out error {h['error_pct']:+.2f}%, {where} its 90% interval"

    land = figures["mixture_landscape.png"].axes[0]
    (dots,) = [c for c in land.collections if c.get_label().startswith("fitted runs")]
    top = sorted(summary["mixing"]["ratios"], key=lambda d: -summary["mixing"]["ratios"][d])
    r = np.array([shares[m] for m in mixes])[:, [DOMAINS.index(d) for d in top]]
    expected = np.stack([r[:, 1] + 0.5 * r[:, 0], r[:, 0] * np.sqrt(3) / 2], axis=1)  # barycentric -> triangle
    assert sorted(map(tuple, np.round(dots.get_offsets(), 9))) == sorted(map(tuple, np.round(expected, 9)))


def test_a_ladder_whose_chinchilla_fit_has_e_at_its_bound_is_reported_with_kaplans_law(tmp_path):
    """Losses from Kaplan's law at the demo's fitted values (no irreducible term): Chinchilla's E runs to its bound,
    so the report fits Kaplan's form, recovers it, predicts the held-out run exactly, keeps the rejected fit and says
    why; a ladder that Chinchilla's law identifies keeps it (the first test)."""
    truth = {"Nc": 2e7, "Dc": 3.4e10, "alpha_N": 0.113, "alpha_D": 0.098}
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4, 3.6e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    fake_ladder(tmp_path, cfg, lambda r: [((truth["Nc"] / r.n) ** (truth["alpha_N"] / truth["alpha_D"])
                                           + truth["Dc"] / r.tokens) ** truth["alpha_D"]] * 3)
    summary = make_report(tmp_path, bootstrap=10)
    sc = summary["scaling"]
    assert sc["law"] == "kaplan" and sc["fit"]["law"] == "kaplan"
    assert not any("at its bound" in w for w in sc["warnings"])
    assert sc["rejected"]["law"] == "chinchilla"
    assert any(w.startswith("parameter E is at its bound") for w in sc["rejected"]["warnings"])
    for k, v in truth.items():
        assert sc["fit"]["params"][k] == pytest.approx(v, rel=1e-3)
    assert abs(sc["held_out"]["error_pct"]) < 0.01
    assert sc["why"].startswith("E at its bound because") and sc["why"].endswith("is identified on them and used "
                                                                                  "instead.")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Law: kaplan (Chinchilla's was not identified: " in md and "| alpha_N | " in md
