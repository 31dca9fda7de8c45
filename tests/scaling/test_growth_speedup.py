"""The speed-up rule on synthetic curves with known answers: positive and negative speed-ups given back, no credit
for a grown run's inherited step 0, intervals over seeds and from eval noise, and `ladderlab grow speedup`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from ladderlab.cli import main
from ladderlab.errors import LadderlabError
from ladderlab.scaling.growth.speedup import curve_noise, equal_loss_speedup, flops_to_reach, speedup, speedup_table
from ladderlab.scaling.tables.columns import write_csv

SCRATCH_FLOPS = np.arange(1.0, 11.0) * 1e12  # scratch: 10 eval points up to 1e13 FLOPs


def loss_at(flops, k=1.0):
    """A power-law curve; k x the FLOPs of scratch's curve: a run with k > 1 reaches each loss with 1/k the FLOPs."""
    return 2.0 + 5.0 * (k * np.asarray(flops) / 1e12) ** -0.5


def grown_flops(*exact):
    """A grown run's eval points (fewer FLOPs in all: the small model's phase is cheap), with `exact` among them."""
    return np.union1d(np.arange(0.5, 6.01, 0.5), exact) * 1e12


def test_known_positive_and_negative_speedups_are_given_back():
    scratch = (SCRATCH_FLOPS, loss_at(SCRATCH_FLOPS))
    # grown ends lower; it reaches scratch's final loss (at 1e13) at 1e13 / k = 5e12 FLOPs: speed-up k - 1 = +100%
    fast = (grown_flops(), loss_at(grown_flops(), k=2.0))
    result = equal_loss_speedup(scratch, fast)
    assert result["loss"] == pytest.approx(loss_at(1e13)) and result["flops_grown"] == pytest.approx(5e12)
    assert result["flops_scratch"] == 1e13 and result["speedup"] == pytest.approx(1.0, rel=1e-12)
    # grown ends higher (its final loss is scratch's at 3e12): scratch needed 3e12 against the grown run's 6e12
    slow = (grown_flops(), loss_at(grown_flops(), k=0.5))
    result = equal_loss_speedup(scratch, slow)
    assert result["loss"] == pytest.approx(loss_at(6e12, k=0.5)) and result["flops_scratch"] == pytest.approx(3e12)
    assert result["flops_grown"] == 6e12 and result["speedup"] == pytest.approx(-0.5, rel=1e-12)


def test_between_eval_points_the_flops_are_interpolated_in_log_flops():
    assert flops_to_reach([1, 2, 4], [3.0, 1.0, 2.0], 1.5) == pytest.approx(2 ** 0.75)  # running best
    assert flops_to_reach([1, 2, 4], [3.0, 1.0, 2.0], 5.0) == 1.0  # at or below the level from its first point
    assert np.isnan(flops_to_reach([1, 2, 4], [3.0, 1.0, 2.0], 0.5))
    # scratch's final loss lies between the grown run's points at 4e12 and 5e12
    scratch = (SCRATCH_FLOPS, loss_at(SCRATCH_FLOPS))
    grown = (np.array([4e12, 5e12, 6e12]), loss_at([4e12, 5e12, 6e12], k=2.2))
    t = (loss_at(4e12, 2.2) - loss_at(1e13)) / (loss_at(4e12, 2.2) - loss_at(5e12, 2.2))
    expected = 1e13 / np.exp(np.log(4e12) + t * np.log(5 / 4)) - 1
    assert equal_loss_speedup(scratch, grown)["speedup"] == pytest.approx(expected, rel=1e-12)


def _table(grown_rows, scratch_loss=None):
    """growth_runs.csv columns: scratch (no step 0) and one grown run whose rows are (step, flops, loss)."""
    steps = list(range(1, 11)) + [r[0] for r in grown_rows]
    return {"run": np.array(["scratch"] * 10 + ["direct:depth"] * len(grown_rows), object),
            "step": np.array(steps, float), "flops": np.array(list(SCRATCH_FLOPS) + [r[1] for r in grown_rows]),
            "loss": np.array(list(loss_at(SCRATCH_FLOPS) if scratch_loss is None else scratch_loss)
                             + [r[2] for r in grown_rows])}


def test_a_grown_run_whose_only_good_point_is_its_inherited_step_0_gets_no_credit():
    # step 0 (the moment of growth, 1e12 FLOPs of the small model) is below scratch's final loss; every trained point
    # is above it: the grown run ends higher, so scratch's FLOPs to the grown run's final loss count (negative)
    trained = [(s, f, loss_at(f, k=0.5)) for s, f in zip(range(1, 6), np.array([2, 3, 4, 5, 6]) * 1e12)]
    table = speedup_table(_table([(0, 1e12, 2.5), *trained]), n_boot=200)
    result = table["direct:depth"]
    assert set(table) == {"direct:depth"} and result["speedup"] == pytest.approx(-0.5, rel=1e-12)
    assert result["final_grown"] == pytest.approx(loss_at(6e12, k=0.5)) and result["significant"]
    # (the old rule, the loss level at the worse of the best losses with step 0 counted, gave 1e13 / 1e12 - 1 = +900%)
    # a grown run that ends lower is credited from its trained points: it reaches scratch's final loss at 5e12
    faster = [(s, f, loss_at(f, k=2.0)) for s, f in zip(range(1, 13), grown_flops())]
    assert speedup_table(_table([(0, 1e12, 2.5), *faster]), n_boot=200)["direct:depth"]["speedup"] == \
        pytest.approx(1.0, rel=1e-12)


def test_the_interval_over_seeds_is_the_students_t_interval_of_their_speedups():
    ks = (1.9, 2.0, 2.1)  # speed-ups 0.9, 1.0, 1.1 (the grown run reaches scratch's final loss at 1e13 / k)
    scratch = [(SCRATCH_FLOPS, loss_at(SCRATCH_FLOPS))] * 3
    grown = [(grown_flops(10 / k), loss_at(grown_flops(10 / k), k)) for k in ks]
    result = speedup(scratch, grown)
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert result["speedup"] == pytest.approx(1.0, rel=1e-12) and result["interval"] == "seeds"
    assert (result["lo"], result["hi"]) == (pytest.approx(1.0 - half, rel=1e-9), pytest.approx(1.0 + half, rel=1e-9))
    assert result["significant"] and result["seeds"] == 3
    with pytest.raises(LadderlabError, match="one scratch curve per grown curve"):
        speedup(scratch, grown[:2])


def test_eval_noise_is_recovered_from_a_noisy_curve():
    flops = np.linspace(1, 10, 400) * 1e12
    noisy = loss_at(flops) + np.random.default_rng(1).normal(0, 0.01, 400)
    assert curve_noise(noisy) == pytest.approx(0.01, rel=0.15)
    assert curve_noise(loss_at(flops)) < 1e-5 and curve_noise([3.0, 2.0, 1.5]) == 0.0


def test_curves_that_end_inside_each_others_noise_are_not_significant():
    rng = np.random.default_rng(0)
    flops = np.linspace(1, 10, 40) * 1e12
    scratch = (flops, loss_at(flops) + rng.normal(0, 0.02, 40))
    # the same curve, other noise: the runs cross back and forth within the noise
    tied = speedup([scratch], [(flops * 0.999, loss_at(flops) + rng.normal(0, 0.02, 40))], n_boot=500)
    assert tied["interval"] == "eval noise" and tied["lo"] < 0 < tied["hi"] and not tied["significant"]
    # twice as fast, with the same noise: clearly ahead
    ahead = speedup([scratch], [(flops * 0.6, loss_at(flops * 0.6, k=2.0) + rng.normal(0, 0.02, 40))], n_boot=500)
    assert ahead["significant"] and 0 < ahead["lo"] < ahead["speedup"] < ahead["hi"]


def test_grow_speedup_cli_writes_fractions_per_run(tmp_path, capsys):
    cols = ["run", "operator", "dim", "g", "d", "N", "n_small", "step", "D", "flops", "loss"]
    rows = [["scratch", "scratch", "", 1, 0, 100, 0, s, s, f, l] for s, f, l in
            zip(range(1, 11), SCRATCH_FLOPS, loss_at(SCRATCH_FLOPS))]
    rows += [["zero:depth", "zero", "depth", 4, 5, 100, 25, 0, 5, 1e12, 1.0]]  # inherited step 0: ignored
    rows += [["zero:depth", "zero", "depth", 4, 5, 100, 25, s, 5 + s, f, l] for s, f, l in
             zip(range(1, 13), grown_flops(), loss_at(grown_flops(), k=2.0))]
    write_csv(tmp_path / "growth_runs.csv", cols, rows)
    csv_path, json_path = str(tmp_path / "growth_runs.csv"), str(tmp_path / "s.json")
    assert main(["grow", "speedup", "--csv", csv_path, "--json", json_path]) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert list(doc) == ["zero:depth"] and set(doc["zero:depth"]) == {"speedup", "lo", "hi", "significant"}
    assert doc["zero:depth"]["speedup"] == pytest.approx(1.0, rel=1e-12) and doc["zero:depth"]["significant"] is True
    assert "zero:depth" in capsys.readouterr().out
    write_csv(tmp_path / "bad.csv", cols, rows[10:])
    assert main(["grow", "speedup", "--csv", str(tmp_path / "bad.csv")]) == 2
    assert "no 'scratch' run" in capsys.readouterr().err
