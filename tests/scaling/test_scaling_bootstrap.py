"""Bootstrap: seeded resamples, whole-group draws, parallel == serial, chunked warm refits, interval coverage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from ladderlab.scaling import api
from ladderlab.scaling.engine import bootstrap as boot_engine
from ladderlab.scaling.engine.bootstrap import resample_indices
from ladderlab.scaling.engine.law import fit_law
from ladderlab.scaling.laws.power import PowerLaw

TRUTH = dict(E=1.8, A=400.0, alpha=0.3)


def size_data(n=12, sigma=0.01, seed=0, lo=1e6, hi=1e9):
    law = PowerLaw("size")
    x = {"N": np.geomspace(lo, hi, n)}
    clean = law.predict_batch(law.to_internal(TRUTH)[None, :], x)[0]
    return x, clean * np.exp(np.random.default_rng(seed).normal(0.0, sigma, n))


def true_loss(n):
    return TRUTH["E"] + TRUTH["A"] * np.asarray(n, float) ** -TRUTH["alpha"]


# --- resample_indices --------------------------------------------------------------------------------------------
def test_resample_indices_reproducible_and_prefix_stable():
    a = resample_indices(30, None, seed=5, n=8)
    b = resample_indices(30, None, seed=5, n=8)
    c = resample_indices(30, None, seed=5, n=3)  # each replicate has its own child seed: a prefix of a
    other = resample_indices(30, None, seed=6, n=8)
    assert len(a) == 8
    for i in range(8):
        np.testing.assert_array_equal(a[i], b[i])
        assert a[i].shape == (30,) and a[i].min() >= 0 and a[i].max() < 30
    for i in range(3):
        np.testing.assert_array_equal(a[i], c[i])
    assert not all(np.array_equal(p, q) for p, q in zip(a, other))
    assert len({tuple(r) for r in a}) == 8  # replicates differ from one another


def test_resample_indices_draws_whole_groups():
    groups = np.array(["r3", "r1", "r1", "r2", "r3", "r3", "r1", "r4", "r2", "r1"])  # rows interleaved
    members = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    sizes = {g: len(m) for g, m in members.items()}
    seen_lengths = set()
    for idx in resample_indices(len(groups), groups, seed=3, n=25):
        # walk the resample: it must be a concatenation of complete member lists of groups
        pos, drawn = 0, []
        while pos < len(idx):
            g = groups[idx[pos]]
            block = idx[pos : pos + sizes[g]]
            np.testing.assert_array_equal(block, members[g])
            drawn.append(g)
            pos += sizes[g]
        assert len(drawn) == 4  # as many groups drawn as there are groups
        seen_lengths.add(len(idx))
    assert len(seen_lengths) > 1  # resample sizes vary with which groups were drawn


# --- bootstrap ---------------------------------------------------------------------------------------------------
def test_resample_indices_within_strata_keeps_every_stratum_and_its_group_count():
    """Strata (e.g. mixtures of a sweep): each resample draws as many whole groups from each stratum as it has, so no
    stratum is ever missing; without strata some resamples miss one."""
    groups = np.repeat(np.arange(8), 3)  # 8 runs of 3 checkpoints
    strata = np.repeat([0, 0, 0, 0, 1, 1, 2, 2], 3)  # runs 0-3 in mixture 0, 4-5 in 1, 6-7 in 2
    for idx in resample_indices(len(groups), groups, seed=1, n=40, strata=strata):
        runs = groups[idx][::3]
        assert np.bincount(strata[runs * 3], minlength=3).tolist() == [4, 2, 2]
    plain = resample_indices(len(groups), groups, seed=1, n=40)
    assert any(len(np.unique(strata[idx])) < 3 for idx in plain)


def test_bootstrap_same_seed_same_replicates_other_seed_differs():
    x, y = size_data()
    a = api.fit("size", x, y, bootstrap=15, seed=11, workers=1)
    b = api.fit("size", x, y, bootstrap=15, seed=11, workers=1)
    c = api.fit("size", x, y, bootstrap=15, seed=12, workers=1)
    assert a.boot_BxP.shape == (15, 3)
    assert np.isfinite(a.boot_BxP).all()
    np.testing.assert_array_equal(a.boot_BxP, b.boot_BxP)
    assert not np.array_equal(a.boot_BxP, c.boot_BxP)
    assert a.seed == 11 and c.seed == 12
    np.testing.assert_array_equal(a.theta, c.theta)  # the point fit does not depend on the bootstrap seed


def test_bootstrap_replicate_is_a_refit_of_its_resample():
    x, y = size_data(n=12)
    groups = np.repeat(np.arange(6), 2)  # e.g. two checkpoints per run
    fitted = api.fit("size", x, y, bootstrap=6, seed=4, groups=groups, workers=1)
    law = PowerLaw("size")
    starts = np.vstack([fitted.theta[None, :], law.grid()])
    for k in (0, 5):
        idx = resample_indices(12, groups, 4, 6)[k]
        refit = fit_law(law, {"N": x["N"][idx]}, y[idx], starts=starts, n_refine=3)
        np.testing.assert_array_equal(fitted.boot_BxP[k], refit.theta)


def test_bootstrap_respects_fixed_parameters():
    x, y = size_data()
    fitted = api.fit("size", x, y, fixed={"E": 1.8}, bootstrap=10, seed=0, workers=1)
    public = np.array([list(fitted.law.to_public(t).values()) for t in fitted.boot_BxP])
    np.testing.assert_allclose(public[:, 0], 1.8, rtol=1e-14)
    assert np.std(public[:, 1]) > 0


def test_warm_bootstrap_in_bounded_chunks_equals_all_at_once(monkeypatch):
    """Warm replicates are refined in chunks of BATCH_ELEMENTS // (free parameters x rows) replicates (the
    Jacobian's memory is bounded whatever the table); chunking changes no replicate."""
    x, y = size_data(n=40, seed=3)
    whole = api.fit("size", x, y)
    boot_engine.bootstrap(whole, x, y, n=10, seed=5, warm=True)
    widths = []
    real = boot_engine.refine_batch

    def spy(residuals, theta_BxP, w_BxN, *args):
        widths.append(w_BxN.shape)
        return real(residuals, theta_BxP, w_BxN, *args)

    monkeypatch.setattr(boot_engine, "refine_batch", spy)
    monkeypatch.setattr(boot_engine, "BATCH_ELEMENTS", 3 * 3 * 40)  # 3 replicates x 3 parameters x 40 rows
    chunked = api.fit("size", x, y)
    boot_engine.bootstrap(chunked, x, y, n=10, seed=5, warm=True)
    assert widths == [(3, 40), (3, 40), (3, 40), (1, 40)]
    np.testing.assert_allclose(chunked.boot_BxP, whole.boot_BxP, rtol=1e-12)
    assert np.isfinite(whole.boot_BxP).all() and np.std(whole.boot_BxP[:, 2]) > 0
    assert chunked.warnings == whole.warnings == []


def test_bootstrap_parallel_equals_serial():
    """In a fresh interpreter: once any test has imported JAX, this process's bootstrap never forks."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import ladderlab.scaling.engine.parallel as boot_module
        from ladderlab.scaling import api
        sys.path.insert(0, %r)
        from test_scaling_bootstrap import size_data

        pools = []

        class CountingPool(boot_module.ProcessPoolExecutor):
            def __init__(self, *args, **kwargs):
                pools.append(args[0] if args else kwargs.get("max_workers"))
                super().__init__(*args, **kwargs)

        boot_module.ProcessPoolExecutor = CountingPool
        x, y = size_data()
        serial = api.fit("size", x, y, bootstrap=50, seed=21, workers=1)
        assert pools == [], pools
        parallel = api.fit("size", x, y, bootstrap=50, seed=21, workers=2)
        assert pools == [2], pools  # 50 replicates allow 2 workers (at least 25 each)
        np.testing.assert_array_equal(parallel.boot_BxP, serial.boot_BxP)
        assert "jax" not in sys.modules
        print("parallel == serial")
    """) % str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "parallel == serial"


def test_bootstrap_coverage_of_prediction_interval():
    """90% percentile interval of L(N0) over 40 independent noisy data sets.

    3-parameter size law, 20 points N in [1e6, 1e9], lognormal noise sigma = 1%, N0 = 3e7 (inside the range),
    B = 20 replicates per data set (840 refits, ~15 s: every refit is a full multistart with 3 L-BFGS-B runs, so
    B = 60 would not fit the suite's time budget; with few replicates and few points the percentile interval
    tends to under-cover a little). Accepted band 30..39 covering seeds out of 40 (75%..97.5%): at a true
    coverage of 0.9 the binomial sd is 1.9 seeds, so the band is about -3.2 / +1.6 sd around 36. Observed while
    writing the test: 37, 34 and 34 of 40 for data seeds starting at 1000, 2000 and 3000. A broken interval
    (replicates that ignore the resample: width ~0, or refits around a wrong optimum) falls far out of it.
    """
    n0 = 3e7
    truth = true_loss(n0)
    covered, rel_width = 0, []
    for s in range(40):
        x, y = size_data(n=20, sigma=0.01, seed=1000 + s)
        fitted = api.fit("size", x, y, bootstrap=20, seed=s, workers=1)
        lo, hi = fitted.interval(0.9, N=n0)
        covered += int(lo[0] <= truth <= hi[0])
        rel_width.append((hi[0] - lo[0]) / truth)
    assert 30 <= covered <= 39, covered
    # the interval width is of the order of the noise averaged over the points, not zero and not huge
    assert 0.002 < np.median(rel_width) < 0.05
