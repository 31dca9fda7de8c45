"""The fit and mixture plots as matplotlib objects: panels that fill the figure, the data and fitted runs drawn
where they belong."""

from __future__ import annotations

import numpy as np
import pytest

from ladderlab.scaling import plot
from ladderlab.scaling.api import fit
from ladderlab.scaling.laws.data_constrained import DataConstrained
from ladderlab.scaling.mixing import plot as mixing_plot
from ladderlab.scaling.mixing.model import fit_mixing_model, load_mixing_model
from ladderlab.scaling.mixing.optimize import optimize_mixture

BASE = {"A": 520.8, "B": 1487.7, "E": 1.869, "alpha": 0.3527, "beta": 0.3527}


@pytest.fixture
def figures(monkeypatch):
    """Each saved figure, kept for inspection."""
    kept, save = [], plot.save

    def keep(fig, path):
        kept.append(fig)
        save(fig, path)

    monkeypatch.setattr(plot, "save", keep)
    monkeypatch.setattr(mixing_plot, "save", keep)
    return kept



def test_data_constrained_plot_draws_a_curve_per_size_and_unique_tokens(tmp_path, figures, covered):
    """3 sizes x 2 unique-token budgets x 7 epochs counts: the left panel has the 6 groups' points and curves (none
    blank), the right one predicted vs observed; together they span the figure."""
    law = DataConstrained()
    rows = [(n, m * u, u) for n in (1e8, 5e8, 2e9) for u in (1e9, 4e9) for m in (0.5, 1, 2, 4, 8, 16, 40)]
    x = dict(zip(("N", "D", "U"), (np.array(c) for c in zip(*rows))))
    y = law.predict_batch(law.to_internal({**BASE, "R_D*": 15.4, "R_N*": 5.3})[None], x)[0]
    fitted = fit("data-constrained", x, y, fixed=BASE)
    plot.plot_fit(fitted, x, y, tmp_path / "dc.png")
    (fig,) = figures
    curves, parity = fig.axes
    assert curves.axison and parity.axison
    groups = [np.asarray(c.get_offsets()) for c in curves.collections]
    assert len(groups) == 6 and all(len(g) == 7 for g in groups)
    assert sorted(np.concatenate(groups)[:, 0]) == sorted(x["D"])
    assert len(curves.lines) == 12  # per group: within the data, and its extrapolation dashed
    legend = [t.get_text() for t in curves.get_legend().get_texts()]
    assert legend == ["N=1e+08", "N=5e+08", "N=2e+09", "U=1e+09", "U=4e+09"]  # colour per size, marker per U
    assert np.asarray(parity.collections[0].get_offsets())[:, 0].tolist() == pytest.approx(y)
    width, height = covered(fig)
    assert width > 0.85 and height > 0.75


def mixing_runs(n=30, seed=0):
    r = np.random.default_rng(seed).dirichlet(np.ones(3), n)
    props = dict(zip(("web", "code", "books"), r.T))
    losses = {"val_web": 2.0 + np.exp(r @ [-2.0, 0.5, 0.0]), "val_code": 1.5 + 1.2 * np.exp(r @ [0.3, -2.5, 0.0])}
    return r, props, losses


def test_mixing_plot_has_one_panel_per_column_and_no_empty_row(tmp_path, figures, covered):
    _, props, losses = mixing_runs()
    model = fit_mixing_model(props, losses, "plain")
    mixing_plot.plot_mixing(model, tmp_path / "pv.png")
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == ["val_web", "val_code"]
    assert np.asarray(fig.axes[0].collections[0].get_offsets())[:, 1].tolist() == pytest.approx(model.oof["val_web"])
    assert min(covered(fig)) > 0.65  # a 2 x 2 grid for two columns left its lower half blank (0.45)


def test_landscape_marks_the_fitted_mixtures_also_from_a_saved_law(tmp_path, figures):
    """The fitted runs' shares are saved with the law: the landscape from the reloaded law puts one dot per run at
    its barycentric position, coloured by its observed target loss."""
    r, props, losses = mixing_runs()
    model = fit_mixing_model(props, losses, "plain")
    model.save(tmp_path / "law.json")
    loaded = load_mixing_model(tmp_path / "law.json")
    assert {d: v.tolist() for d, v in loaded.proportions.items()} == {d: v.tolist() for d, v in props.items()}
    pred = optimize_mixture(loaded, "val_web")
    mixing_plot.plot_landscape(loaded, pred, tmp_path / "land.png")
    ax = figures[0].axes[0]
    (dots,) = [c for c in ax.collections if c.get_label().startswith("fitted runs")]
    top = sorted(pred.ratios, key=lambda d: -pred.ratios[d])
    s = r[:, [list(props).index(d) for d in top]]
    expected = np.stack([s[:, 1] + 0.5 * s[:, 0], s[:, 0] * np.sqrt(3) / 2], axis=1)  # barycentric -> triangle
    assert np.asarray(dots.get_offsets()).ravel().tolist() == pytest.approx(expected.ravel())
    assert np.asarray(dots.get_array()).tolist() == pytest.approx(losses["val_web"])
    assert ax.lines[0].get_label() == "optimum"


def test_landscape_of_two_domains_marks_the_runs(tmp_path, figures):
    share = np.linspace(0.05, 0.95, 12)
    model = fit_mixing_model({"web": share, "code": 1 - share}, {"val": 2.0 + np.exp(-1.5 * share + 0.4 * share**2)},
                             "plain")
    mixing_plot.plot_landscape(model, optimize_mixture(model), tmp_path / "two.png")
    (ax,) = figures[0].axes
    (runs,) = ax.collections
    points = np.asarray(runs.get_offsets())
    assert points[:, 0].tolist() == pytest.approx(share)
    assert points[:, 1].tolist() == pytest.approx(model.observed["val"])
