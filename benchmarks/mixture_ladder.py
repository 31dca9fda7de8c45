"""Mixture x scale on our own ladder: the largest size's per-domain losses for every mixture, predicted from the
smaller sizes by the joint law (`scaling.mixing.joint`), by the nested pipeline (step law -> size law -> mixing law,
`scaling.mixing.nested`) and by the form `ladderlab fit mixture-scaling` chooses on those sizes (then `predict
mixture-loss --at`; its choice and split are recorded): per-mixture errors, coverage of the 90% intervals for a new
run and the Spearman of the mixtures' ranking, per loss column.

The runs table has one row per checkpoint with share columns; `--ladder DIR` builds it from a results folder of
configs/ladder_mixture_scale.gin (DIR/runs.csv, shares from DIR/ladder.json) and `--table-out` saves it (that is how
scaling/bundled/mixture_ladder_runs.csv was made). --smoke: that table, the mean loss only, 5 bootstrap draws.

Usage: python benchmarks/mixture_ladder.py [--runs CSV | --ladder DIR] [--loss loss,val/code] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ladderlab.cli import main as cli
from ladderlab.scaling.mixing.joint import JointAt, fit_joint, run_scatter
from ladderlab.scaling.mixing.mixture_scaling import predict_at
from ladderlab.scaling.mixing.nested import Nested, fit_steps, runs_of
from ladderlab.scaling.tables.columns import read_columns, read_header, write_csv

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "scaling" / "bundled" / "mixture_ladder_runs.csv"
DOMAINS = ("code", "prose", "math")  # the ladder's training domains: the share columns
KEEP = ("run", "mixture", "N", "D", *DOMAINS)


def ladder_table(folder: Path) -> tuple[list[str], list[list]]:
    """A ladder's runs.csv with each row's mixture shares (normalised weights from ladder.json) as columns."""
    mixtures = json.loads((folder / "ladder.json").read_text())["config"]["mixtures"]
    header = read_header(folder / "runs.csv")
    losses = [c for c in header if c == "loss" or c.startswith("val/")]
    cols = read_columns(folder / "runs.csv", ["N", "D", *losses], text=["run", "mixture"])
    rows = []
    for i, mix in enumerate(cols["mixture"]):
        total = sum(mixtures[mix].values())
        shares = [mixtures[mix].get(d, 0.0) / total for d in DOMAINS]
        rows.append([cols["run"][i], mix, cols["N"][i], cols["D"][i], *shares, *(cols[c][i] for c in losses)])
    return [*KEEP, *losses], rows


def score(pred: np.ndarray, lo: np.ndarray, hi: np.ndarray, actual: np.ndarray) -> dict:
    """Per-mixture signed errors (%) and whether the 90% interval holds the actual; MAPE, bias, coverage, Spearman."""
    err = 100 * (pred - actual) / actual
    inside = (lo <= actual) & (actual <= hi)
    return {"mape_pct": float(np.mean(np.abs(err))), "bias_pct": float(np.mean(err)),
            "coverage_90": float(np.mean(inside)), "spearman": float(spearmanr(pred, actual)[0]),
            "error_pct": err.round(4).tolist(), "inside": inside.tolist(), "predicted": pred.round(5).tolist(),
            "lo": lo.round(5).tolist(), "hi": hi.round(5).tolist()}


def chosen_predictions(fit: np.ndarray, header: list[str], cols: dict, losses: list[str],
                       ids: list[str], r_MxD: np.ndarray, n: float, d: float, bootstrap: int, seed: int,
                       work: Path) -> tuple[dict, dict]:
    """`fit mixture-scaling` on the smaller sizes' rows, then `predict mixture-loss` at (n, d): per column (pred,
    lo, hi), and the fit's form and choice."""
    small = work / "small.csv"
    write_csv(small, header, ([cols[h][i] for h in header] for i in np.flatnonzero(fit)))
    mixtures = work / "mixtures.csv"
    write_csv(mixtures, ["mixture", *DOMAINS], ([m, *r] for m, r in zip(ids, r_MxD)))
    law, out = work / "joint.json", work / "pred.csv"
    for argv in (["fit", "mixture-scaling", "--runs", str(small), "--shares", ",".join(DOMAINS), "--n", "N",
                  "--d", "D", "--loss", ",".join(losses), "--run", "run", "--bootstrap", str(bootstrap),
                  "--seed", str(seed), "--json", str(law)],
                 ["predict", "mixture-loss", "--law", str(law), "--mixtures", str(mixtures), "--at", f"N={n},D={d}",
                  "--out", str(out)]):
        if cli(argv) != 0:
            raise SystemExit(f"ladderlab {' '.join(argv[:2])} failed")
    pred = read_columns(out, [c for loss in losses for c in (loss, f"{loss}_lo", f"{loss}_hi")], text=["mixture"])
    order = [list(pred["mixture"]).index(m) for m in ids]
    doc = json.loads(law.read_text())
    return ({c: tuple(pred[k][order] for k in (c, f"{c}_lo", f"{c}_hi")) for c in losses},
            {"form": doc["form"], "choice": doc["choice"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=FIXTURE, help="runs table with share columns code, prose, math")
    ap.add_argument("--ladder", type=Path, help="a results folder of configs/ladder_mixture_scale.gin instead")
    ap.add_argument("--table-out", type=Path, help="write the runs table (with shares) here")
    ap.add_argument("--loss", default="", help="comma-separated loss columns (default: loss and every val/*)")
    ap.add_argument("--bootstrap", type=int, default=200, help="joint bootstrap replicates and nested error draws")
    ap.add_argument("--seed", type=int, default=0)
    args = parse(ap, smoke=dict(runs=FIXTURE, loss="loss", bootstrap=5))
    if args.ladder:
        header, rows = ladder_table(args.ladder)
        args.runs = args.table_out or Path(tempfile.mkdtemp()) / "runs.csv"
        write_csv(args.runs, header, rows)
    header = read_header(args.runs)
    losses = [c for c in args.loss.split(",") if c] or [c for c in header if c == "loss" or c.startswith("val/")]
    cols = read_columns(args.runs, [h for h in header if h not in ("run", "mixture")], text=["run", "mixture"])
    header = [*KEEP, *losses]
    sizes = np.unique(cols["N"])
    fit, held = cols["N"] < sizes[-1], cols["N"] == sizes[-1]
    d_target = float(cols["D"][held].max())
    last = np.flatnonzero(held & (cols["D"] == d_target))
    ids = [str(m) for m in cols["mixture"][last]]
    r_MxD = np.column_stack([cols[d][last] for d in DOMAINS])
    actual = {c: cols[c][last] for c in losses}
    result = {}
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        chosen, choice = chosen_predictions(fit, header, cols, losses, ids, r_MxD, sizes[-1], d_target,
                                            args.bootstrap, args.seed, Path(work))
        result["chosen"] = {**choice, "seconds": time.perf_counter() - t0}
        t0 = time.perf_counter()
        r_NxD = np.column_stack([cols[d][fit] for d in DOMAINS])
        groups = np.unique(cols["run"][fit], return_inverse=True)[1]
        x = {"N": cols["N"][fit], "D": cols["D"][fit], **dict(zip(DOMAINS, r_NxD.T))}
        y = {c: cols[c][fit] for c in losses}
        laws = fit_joint(x, y, groups, args.bootstrap, args.seed, str(args.runs))
        at = JointAt(laws, DOMAINS, float(sizes[-1]), d_target, run_scatter(laws, x, y, groups), args.seed)
        joint = {c: v[:3] for c, v in predict_at(at, r_MxD).items()}
        result["joint"] = {"seconds": time.perf_counter() - t0}
        t0 = time.perf_counter()
        table, rows = runs_of(r_NxD, cols["N"][fit], cols["D"][fit], groups)
        nested = Nested(table, DOMAINS, {c: fit_steps(table, rows, cols[c][fit], c) for c in losses})
        at = nested.at(float(sizes[-1]), d_target, args.bootstrap, args.seed)
        nested_pred = {c: v[:3] for c, v in predict_at(at, r_MxD).items()}
        result["nested"] = {"seconds": time.perf_counter() - t0, "warnings": at.warnings}
    for name, pred in (("joint", joint), ("nested", nested_pred), ("chosen", chosen)):
        per_col = {c: score(*pred[c], actual[c]) for c in losses}
        result[name].update({k: float(np.mean([s[k] for s in per_col.values()]))
                             for k in ("mape_pct", "bias_pct", "coverage_90", "spearman")}, columns=per_col)
        print(name, {k: round(v, 4) for k, v in result[name].items() if isinstance(v, float)}, flush=True)
    doc = {"benchmark": "mixture_ladder", "runs_table": str(args.runs), "fitted_sizes": sizes[:-1].tolist(),
           "target": {"N": float(sizes[-1]), "D": d_target}, "mixtures": ids, "domains": list(DOMAINS),
           "actual": {c: v.round(5).tolist() for c, v in actual.items()}, "bootstrap": args.bootstrap,
           "seed": args.seed, **result}
    emit(doc, args.json)


if __name__ == "__main__":
    main()
