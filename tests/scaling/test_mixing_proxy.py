"""Proxy losses as extra, down-weighted runs of a mixing-law fit (`fit mixing-law --proxy-*`, `weights=`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladderlab.scaling.mixing.model import fit_mixing_model
from tests.scaling.test_mixing_cli import DOMAINS, TRUTH, run, write_tables


def proxy_tables(folder, n=12, seed=1, offset=1.1):
    """Proxies: other mixtures whose losses follow the truth's first column times `offset` (a biased proxy)."""
    r = np.random.default_rng(seed).dirichlet(np.ones(3), n)
    c, k, t = TRUTH["val_web"]
    (folder / "M2.csv").write_text("id,web,code,books\n" + "".join(
        f"p{i},{a:.6f},{b:.6f},{1 - round(a, 6) - round(b, 6):.6f}\n" for i, (a, b, _) in enumerate(r)))
    (folder / "P.csv").write_text("id,val_web\n" + "".join(
        f"p{i},{offset * (c + k * np.exp(row @ np.array(t))):.6f}\n" for i, row in enumerate(r)))
    return r, folder / "M2.csv", folder / "P.csv"


def test_weight_one_equals_the_rows_appended(tmp_path, capsys):
    _, m_csv, l_csv = write_tables(tmp_path, n=12)
    _, m2_csv, p_csv = proxy_tables(tmp_path)
    (tmp_path / "L1.csv").write_text("id,val_web\n" + "".join(
        f"{line.split(',')[0]},{line.split(',')[1]}\n" for line in l_csv.read_text().splitlines()[1:]))
    both_m, both_l = tmp_path / "Mall.csv", tmp_path / "Lall.csv"
    both_m.write_text(m_csv.read_text() + "".join(m2_csv.read_text().splitlines(True)[1:]))
    both_l.write_text((tmp_path / "L1.csv").read_text() + "".join(p_csv.read_text().splitlines(True)[1:]))
    code, out, _ = run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", tmp_path / "L1.csv",
                       "--proxy-losses", p_csv, "--proxy-mixtures", m2_csv, "--proxy-weight", 1, "--json",
                       tmp_path / "proxy.json")
    assert code == 0 and "12 proxies of" in " ".join(out.split())  # the console wraps long lines
    assert run(capsys, "fit", "mixing-law", "--mixtures", both_m, "--losses", both_l, "--json",
               tmp_path / "all.json")[0] == 0
    proxy, appended = (json.loads((tmp_path / f).read_text()) for f in ("proxy.json", "all.json"))
    assert proxy.pop("proxy") == {"losses": str(p_csv), "mixtures": str(m2_csv), "weight": 1.0, "rows": 12}
    assert proxy == appended


def test_a_lower_weight_moves_the_fit_toward_the_runs():
    """Runs follow the truth, proxies the truth x 1.1: down-weighting the proxies fits the runs better and the
    proxies worse, and W -> 0 approaches the fit without them."""
    rng = np.random.default_rng(0)
    r_run, r_proxy = rng.dirichlet(np.ones(3), 12), rng.dirichlet(np.ones(3), 12)
    c, k, t = TRUTH["val_web"]
    y_run, y_proxy = c + k * np.exp(r_run @ np.array(t)), 1.1 * (c + k * np.exp(r_proxy @ np.array(t)))
    props = {d: np.r_[r_run[:, j], r_proxy[:, j]] for j, d in enumerate(DOMAINS)}
    y = np.r_[y_run, y_proxy]

    def errors(w):
        model = fit_mixing_model(props, {"val_web": y}, "plain", weights=np.r_[np.ones(12), np.full(12, w)])
        err = np.abs(np.log(model.predict(props)["val_web"] / y))
        return err[:12].mean(), err[12:].mean()

    runs_only = fit_mixing_model({d: v[:12] for d, v in props.items()}, {"val_web": y_run}, "plain")
    without = np.abs(np.log(runs_only.predict({d: v[:12] for d, v in props.items()})["val_web"] / y_run)).mean()
    (run_1, proxy_1), (run_03, proxy_03), (run_0, _) = errors(1.0), errors(0.3), errors(1e-6)
    assert run_0 < run_03 < run_1 and proxy_1 < proxy_03
    assert run_0 == pytest.approx(without, abs=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--proxy-weight", "0"], "--proxy-weight 0: must be in (0, 1]"),
    (["--proxy-weight", "1.5"], "--proxy-weight 1.5: must be in (0, 1]"),
])
def test_bad_proxy_weight_is_one_line(tmp_path, capsys, extra, message):
    _, m_csv, l_csv = write_tables(tmp_path, n=12)
    _, m2_csv, p_csv = proxy_tables(tmp_path)
    code, _, err = run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--loss", "val_web",
                       "--proxy-losses", p_csv, "--proxy-mixtures", m2_csv, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_proxy_losses_need_their_mixtures(tmp_path, capsys):
    _, m_csv, l_csv = write_tables(tmp_path, n=12)
    _, _, p_csv = proxy_tables(tmp_path)
    code, _, err = run(capsys, "fit", "mixing-law", "--mixtures", m_csv, "--losses", l_csv, "--proxy-losses", p_csv)
    assert code == 2 and "--proxy-losses and --proxy-mixtures go together" in err
