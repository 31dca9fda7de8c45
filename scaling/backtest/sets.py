"""The real result sets a backtest fits small and predicts large: bundled, from the anchors, or a user's table.

A set is a family of runs (the unit left out when calibrating), its tables (one loss column each, e.g. one per
training dataset and validation set), the methods fitted to them, and the reported splits: fit on runs up to
`fit_max_n` parameters, predict the runs of `target_n` (all larger runs when None). Every other cut between
sizes is backtested too, for the calibration residuals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.mixing.table import read_mixture_table
from ladderlab.scaling.tables.columns import read_columns, read_filtered
from ladderlab.scaling.tables.curves import Curve, read_curves
from ladderlab.scaling.tables.olmo import OLMO_N, read_olmo_ladder

BUNDLED = Path(__file__).resolve().parents[1] / "bundled"
GADRE_VALSETS = ("c4_en", "c4_val", "de-en", "dolma_100_programing_languages", "falcon-refinedweb", "openlm_val",
                 "ptb", "redpajama")


@dataclass(frozen=True)
class Table:
    """One loss column of a set: inputs by name (N = the size runs are split on), observed loss, one row per run."""

    label: str
    x: dict[str, np.ndarray]
    y: np.ndarray


@dataclass(frozen=True)
class Split:
    """A reported fit-small / predict-large split."""

    name: str
    fit_max_n: float
    target_n: float | None = None


@dataclass(frozen=True)
class BacktestSet:
    family: str
    source: str
    methods: tuple[str, ...]
    tables: tuple[Table, ...]
    splits: tuple[Split, ...]
    min_sizes: int = 3  # cuts with fewer fitted sizes are not backtested


@dataclass(frozen=True)
class CurveSet:
    """Whole loss curves per loss column (constant runs and their decay branches): the annealing law fitted on every
    logged step of the runs of N <= fit_max_n predicts the final loss of each `targets` branch."""

    family: str
    source: str
    split: str
    curves: dict[str, tuple[Curve, ...]]
    fit_max_n: float
    targets: tuple[str, ...]  # run ids of the predicted branches


@dataclass(frozen=True)
class FoldSet:
    """Mixture runs: shares per training domain and losses per validation column, scored by held-out folds."""

    family: str
    source: str
    split: str
    proportions: dict[str, np.ndarray]
    losses: dict[str, np.ndarray]


@dataclass(frozen=True)
class MixtureSet:
    """Mixture x scale runs, one row per checkpoint (shares per training domain, N, D, loss columns): fitted on the
    sizes below the largest, the largest size's runs predicted at their last checkpoint."""

    family: str
    source: str
    split: str
    shares: dict[str, np.ndarray]
    n: np.ndarray
    d: np.ndarray
    losses: dict[str, np.ndarray]
    runs: np.ndarray | None  # each row's run id (None: rows with the same shares and N are one run)
    ids: np.ndarray  # each row's mixture name (the separation verdict's names)


def overtraining(path: Path) -> BacktestSet:
    """Gadre et al. 2024: each dataset x validation set; fit up to 154M parameters, predict the 411.6M runs."""
    losses = [f"loss_{v}" for v in GADRE_VALSETS]
    t = read_columns(path, ["params", "params_no_embed", "tokens", *losses], text=["dataset"])
    tables = []
    for ds in sorted(set(t["dataset"].tolist())):
        rows = t["dataset"] == ds
        x = {"N": t["params"][rows], "D": t["tokens"][rows], "N_nonembed": t["params_no_embed"][rows]}
        tables += [Table(f"{ds}/{v}", x, t[v][rows]) for v in losses]
    return BacktestSet("overtraining", str(path), ("chinchilla", "chinchilla-nonembed"), tuple(tables),
                       (Split("overtraining-411M", 160e6, 411616256.0),))


def datablations(path: Path) -> BacktestSet:
    """Muennighoff et al. 2023, the 182-run fit set: fit the data-constrained law below 1B, predict 1.1B-8.7B."""
    t = read_columns(path, ["params_N", "tokens_D", "unique_tokens_U", "final_val_loss"])
    x = {"N": t["params_N"], "D": t["tokens_D"], "U": t["unique_tokens_U"]}
    return BacktestSet("datablations", str(path), ("data-constrained",), (Table("c4/final_val_loss", x, t["final_val_loss"]),),
                       (Split("datablations-1B+", 1e9),), min_sizes=6)


def olmo_ladder(folder: Path, multiples: Sequence[float] = (1, 2, 5, 10)) -> BacktestSet:
    """OLMo-2 ladder (Bhagia et al. 2024): each validation loss at the end of each run (1-10xC); predict the
    1.3B rung from 190M-760M and the 3.2B rung from 190M-1.3B."""
    return _olmo_set(folder, multiples, (Split("olmo-ladder-1.3B", OLMO_N["760M"], OLMO_N["1B"]),
                                         Split("olmo-ladder-3.2B", OLMO_N["1B"], OLMO_N["3B"])))


def olmo_wsd_ladder(folder: Path, multiples: Sequence[float] = (1, 2, 5, 10)) -> BacktestSet:
    """The OLMo WSD ladder's cooldown branches (same sizes, data and family as the OLMo ladder, so calibration
    leaves both out together): predict the 3.2B branches' final losses from 190M-1.3B."""
    return _olmo_set(folder, multiples, (Split("olmo-wsd-3.2B", OLMO_N["1B"], OLMO_N["3B"]),))


def olmo_wsd_annealing(root: Path, multiples: Sequence[float] = (1, 2, 5, 10)) -> CurveSet:
    """The OLMo WSD ladder (root/peteish-moreeval-{const,decay}) with the annealing law: fitted on every logged step
    of the 190M-1.3B constant runs and their decay branches, predict the 3.2B branches' final losses (the same
    targets as `olmo_wsd_ladder`)."""
    const, decay = root / "peteish-moreeval-const", root / "peteish-moreeval-decay"
    columns = [c for c in read_olmo_ladder(decay).cols if c.startswith("val/")]
    curves = {c[4:]: tuple(read_curves(const, c, decay)) for c in columns}
    any_curves = next(iter(curves.values()))
    targets = tuple(c.run for c in any_curves if c.n == OLMO_N["3B"] and c.start > 0
                    and any(c.run.endswith(f"-{m:g}xC-decay") for m in multiples))
    if not targets:
        raise LadderlabError(f"{decay}: no 3B decay branch at {', '.join(f'{m:g}' for m in multiples)} xC")
    return CurveSet("olmo-ladder", f"{const} + {decay}", "olmo-wsd-3.2B-annealing", curves, OLMO_N["1B"], targets)


def regmix_folds(data: Path) -> FoldSet:
    """RegMix (Liu et al. 2024): 512 1M-parameter runs, 13 Pile validation losses, scored by 5 held-out folds."""
    table = read_mixture_table(data / "train_mixture_1m.csv", data / "train_pile_loss_1m.csv", on="index")
    return FoldSet("regmix", str(data), "regmix-folds", table.proportions, table.losses)


def _olmo_set(folder: Path, multiples: Sequence[float], splits: tuple[Split, ...]) -> BacktestSet:
    runs = read_olmo_ladder(folder, multiples=multiples)
    last = np.array([runs.rows_of(r)[-1] for r in runs.run_ids])
    x = {"N": runs["N"][last], "D": runs["D"][last]}
    tables = tuple(Table(c[4:], x, runs[c][last]) for c in runs.cols if c.startswith("val/"))
    return BacktestSet("olmo-ladder", str(folder), ("chinchilla",), tables, splits)


def user_table(path: str, n: str, d: str, loss: str, where: Sequence[str] = ()) -> BacktestSet:
    """A user's runs table: fit on every size but the largest, predict the largest."""
    cols = read_filtered(path, [n, d, loss], list(where))
    sizes = np.unique(cols[n])
    if len(sizes) < 4:
        raise LadderlabError(f"{path}: column {n} has {len(sizes)} distinct sizes; a backtest needs at least 4 (3 to fit, one of them left out for the fit's own scale, 1 to predict)")
    x = {"N": cols[n], "D": cols[d]}
    return BacktestSet(f"csv:{Path(path).name}", path, ("chinchilla",), (Table(loss, x, cols[loss]),),
                       (Split(Path(path).stem, float(sizes[-2]), float(sizes[-1])),))


def mixture_table(path: str | Path, shares: Sequence[str], n: str, d: str, losses: Sequence[str],
                  run: str | None = None, mixture: str | None = None, family: str | None = None) -> MixtureSet:
    """A runs table with share columns: fit every size but the largest, predict the largest (5 sizes at least: the
    nested pipeline's size law needs 4 fitted sizes per mixture). Mixtures are named by `mixture`, else `run`, else
    their shares."""
    text = [c for c in dict.fromkeys((run, mixture)) if c]
    cols = read_columns(path, [*shares, n, d, *losses], text=text)
    sizes = np.unique(cols[n])
    if len(sizes) < 5:
        raise LadderlabError(f"{path}: column {n} has {len(sizes)} distinct sizes; a mixture backtest needs at least 5 "
                             "(4 to fit the nested size law per mixture, 1 to predict)")
    names = cols[mixture or run] if text else np.array(["/".join(f"{v:.3g}" for v in r)
                                                         for r in np.column_stack([cols[s] for s in shares])])
    return MixtureSet(family or f"csv:{Path(path).name}", str(path), family or Path(path).stem,
                      {s: cols[s] for s in shares}, cols[n], cols[d], {c: cols[c] for c in losses},
                      cols[run] if run else None, names)


def mixture_ladder(path: Path) -> MixtureSet:
    """Our own 5-size x 6-mixture ladder (code, prose and math shares; mean and 5 validation losses): fit the 3.1k-16k
    runs, predict the 25k runs' final losses."""
    losses = ["loss", *(f"val/{v}" for v in ("code", "docs", "german", "math", "prose"))]
    return mixture_table(path, ("code", "prose", "math"), "N", "D", losses, "run", "mixture", "mixture-ladder")


AnySet = BacktestSet | CurveSet | FoldSet | MixtureSet


def bundled_sets() -> dict[str, AnySet]:
    """The sets a bare run backtests: what ships in scaling/bundled/."""
    return {"overtraining": overtraining(BUNDLED / "gadre2024_overtraining.csv"),
            "datablations": datablations(BUNDLED / "datablations_c4_fit182.csv"),
            "mixture-ladder": mixture_ladder(BUNDLED / "mixture_ladder_runs.csv")}


def anchor_sets(anchors: Path) -> dict[str, AnySet]:
    """The sets found in an anchors folder (its full copies replace the bundled excerpts)."""
    anchors = Path(anchors)
    if not anchors.is_dir():
        raise LadderlabError(f"--anchors {anchors}: not a folder")
    found = {}
    paths = {"overtraining": (overtraining, anchors / "overtraining-scaling-mlfoundations/gadre2024_overtraining_losses.csv"),
             "datablations": (datablations, anchors / "datablations-hf/datablations_c4_final_val_losses_fit182.csv"),
             "olmo-ladder": (olmo_ladder, anchors / "olmo-ladder/ladder-runs"),
             "olmo-wsd-ladder": (olmo_wsd_ladder, anchors / "olmo-wsd-ladder/peteish-moreeval-decay"),
             "olmo-wsd-annealing": (olmo_wsd_annealing, anchors / "olmo-wsd-ladder"),
             "regmix-folds": (regmix_folds, anchors / "regmix-sail-sg/data")}
    for name, (load, path) in paths.items():
        if path.exists():
            found[name] = load(path)
    if not found:
        raise LadderlabError(f"--anchors {anchors}: none of {', '.join(str(p) for _, p in paths.values())} exist")
    return found
