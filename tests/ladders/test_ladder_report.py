"""`ladderlab report` on results folders written from known laws: recovered parameters, held-out error, the best
mixture, and the files it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.data.mixture import normalise
from ladderlab.ladders.ladder_config import LadderConfig
from ladderlab.ladders.ladder_plan import plan
from ladderlab.ladders.ladder_report import make_report
from ladderlab.ladders.ladder_store import LadderStore, write_atomic

LAW = {"E": 1.8, "A": 40.0, "alpha": 0.45, "B": 300.0, "beta": 0.4}
DOMAINS = ("a", "b", "c")
MIX_C, MIX_K = np.array([2.0, 2.5, 3.0]), np.array([1.5, 1.0, 0.8])
MIX_T = np.array([[-2.0, 0.5, 0.0], [0.3, -1.5, 0.0], [0.2, 0.4, 0.0]])  # t_ij, the last domain's pinned at 0


def chinchilla(n, d):
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def mixing(r):
    return MIX_C + MIX_K * np.exp(MIX_T @ r)


def fake_ladder(root, cfg, losses):
    """A results folder whose runs finished with val/<domain> = losses(run)."""
    runs = plan(cfg)
    store = LadderStore.create(root, cfg, runs)
    for r in runs:
        val = losses(r)
        row = {"run": r.run, "size": r.size, "mixture": r.mixture, "multiple": r.multiple, "seed": r.seed, "N": r.n,
               "D": r.tokens, "step": r.steps, "lr": r.lr, "train_loss": float(np.mean(val)), "loss": float(np.mean(val)),
               **{f"val/{d}": float(v) for d, v in zip(DOMAINS, val)}}
        store.run_dir(r.run).mkdir(parents=True)
        curve = [[s, 5.0 - s / r.steps] for s in (1, r.steps)]
        write_atomic(store.run_dir(r.run) / "result.json",
                     json.dumps({"run": r.run, "rows": [row], "train_curve": curve, "seconds": 1.0}))
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
    for png in ("loss_curves.png", "scaling_fit.png", "predicted_vs_actual.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_mixing_law_finds_a_better_mixture_than_any_run(tmp_path):
    cfg = LadderConfig(sizes=(3e3,), multiples=(1.0,), design=9, design_domains=DOMAINS, mixture_grid="smallest")
    mixes = {"equal": {}, **{f"mix{i}": m for i, m in enumerate(plan_mixtures(cfg), 1)}}
    fake_ladder(tmp_path, cfg, lambda r: mixing(np.array(list(normalise(mixes[r.mixture], list(DOMAINS)).values()))))
    summary = make_report(tmp_path, bootstrap=0)
    mx = summary["mixing"]
    best = np.array([mx["ratios"][d] for d in DOMAINS])
    true_best = mixing(best).mean()
    assert mx["loss"] == pytest.approx(true_best, rel=5e-3)
    observed = [mixing(np.array(list(normalise(m, list(DOMAINS)).values()))).mean() for m in mixes.values()]
    assert true_best <= min(observed) + 1e-6
    assert (tmp_path / "report" / "mixture_landscape.png").is_file()
    assert "skipped" in summary["scaling"]


def plan_mixtures(cfg):
    from ladderlab.ladders.ladder_plan import mixtures

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
    cfg = LadderConfig(sizes=(3e3, 8e3, 2.5e4, 3.6e4), multiples=(1.0, 2.0, 4.0), width_per_layer=32)
    runs = plan(cfg)
    store = LadderStore.create(tmp_path, cfg, runs)
    acc = lambda loss: 1.0 - 0.9 / (1 + np.exp(-3.0 * (loss - 2.5)))  # noqa: E731
    for r in runs:
        rows = []
        for k in range(5 - evals, 5):
            d = r.tokens * k / 4
            val = chinchilla(r.n, d)
            rows.append({"run": r.run, "size": r.size, "mixture": r.mixture, "multiple": r.multiple, "seed": r.seed,
                         "N": r.n, "D": d, "step": r.steps * k // 4, "lr": r.lr, "train_loss": val, "loss": val,
                         **{f"val/{x}": val for x in DOMAINS}, **{f"loss/{x}": val + i for i, x in enumerate(DOMAINS)},
                         **{f"acc/{x}": float(acc(val + i)) for i, x in enumerate(DOMAINS)}})
        store.run_dir(r.run).mkdir(parents=True)
        write_atomic(store.run_dir(r.run) / "result.json", json.dumps(
            {"run": r.run, "rows": rows, "train_curve": [[1, 5.0], [r.steps, 4.0]], "seconds": 1.0}))
    store.write_table()
    task = make_report(tmp_path, bootstrap=20)["tasks"]
    if evals == 1:
        assert task["skipped"].startswith("task laws skipped") and "too few points" in task["skipped"]
        assert "## Task laws" in (tmp_path / "report" / "report.md").read_text()
        return
    assert task["run"] == "36k-4xC-equal-s0" and set(task["tasks"]) == set(DOMAINS)
    for i, x in enumerate(DOMAINS):
        truth = acc(chinchilla(36160, task["D"]) + i)
        assert task["tasks"][x]["actual_acc"] == pytest.approx(truth)
        assert task["tasks"][x]["acc"] == pytest.approx(truth, abs=0.005)
    assert task["mean_abs_error_pts"] < 0.5 and "held-out task check: 36k-4xC-equal-s0" in capsys.readouterr().out
    assert "## Task laws" in (tmp_path / "report" / "report.md").read_text()
