"""Targets for task predictions, and the tables and JSON that report them against the actual runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from rich.table import Table

from ladderlab.errors import LadderlabError
from ladderlab.scaling.tables.olmo import TOKENS_PER_PARAM, parse_multiple
from ladderlab.scaling.tables.runs import Runs
from ladderlab.scaling.tasks.laws import LAST, TaskLaws, actual, check_target
from ladderlab.units import parse_size


@dataclass(frozen=True)
class Target:
    """A model to predict: a name (matched against run ids for the actual values), N and D."""

    name: str
    N: float
    D: float


def parse_target(text: str, n_table: Mapping[str, float]) -> Target:
    """NAME:N:D: N a size in the N table (its exact N), else a number or size label (7B); D tokens (a number or
    a label, 4T) or a multiple 'KxC'."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise LadderlabError(f"--target {text!r}: expected NAME:N:D, e.g. 3B-5xC:3.17e9:3.2e11 or 7B:7B:28.6xC")
    name, n_text, d_text = parts
    try:
        n = float(n_table[n_text]) if n_text in n_table else parse_size(n_text)
    except ValueError:
        raise LadderlabError(f"--target {text!r}: N {n_text!r} is neither a number, a size label like 7B nor a size "
                             "in the N table") from None
    try:
        d = parse_multiple(d_text) * TOKENS_PER_PARAM * n if d_text.endswith("xC") else parse_size(d_text)
    except ValueError:
        raise LadderlabError(f"--target {text!r}: D {d_text!r} is neither a number nor a multiple like 5xC") from None
    check_target(name, n, d)
    return Target(name, n, d)


def predictions(laws: TaskLaws, targets: Sequence[Target], reference: Runs | None, level: float,
                last: int = LAST) -> dict[str, Any]:
    """{target: {task: {loss, acc, acc_lo, acc_hi, method, predictable, reasons, ...}}}, with actual values (mean
    of a run's last `last` checkpoints), errors and whether the interval holds the actual where the runs have them."""
    doc: dict[str, Any] = {}
    for t in targets:
        doc[t.name] = {}
        for task, p in laws.predict(t.N, t.D, level).items():
            row = p.to_json()
            seen = actual(reference, t.name, t.N, t.D, task, last) if reference is not None else None
            if seen:
                inside = bool(p.acc_lo <= seen["acc"] <= p.acc_hi)
                row.update(actual_loss=seen["loss"], actual_acc=seen["acc"],
                           loss_error=p.loss / seen["loss"] - 1, acc_error=p.acc - seen["acc"],
                           single_step_error=p.single_step_acc - seen["acc"], in_interval=inside)
                if not inside:  # the verdict follows the evidence: a miss outside the interval is not predictable
                    row["reasons"] = [*row["reasons"], f"actual {100 * seen['acc']:.1f} outside the interval"]
                    row["predictable"] = False
            doc[t.name][task] = row
    return doc


def prediction_table(target: Target, rows: Mapping[str, Mapping[str, Any]], level: float) -> Table:
    """One target: per task, the step-1 method, chained loss and accuracy with intervals, actuals and errors (an
    actual outside its interval flagged), the single-step baseline and the verdict, its reasons in the caption."""
    pct = f"{int(level * 100)}%"
    table = Table(title=f"{target.name}: N={target.N:.4g}, D={target.D:.4g} ({target.D / target.N:.0f} tokens/param); "
                  f"accuracy in %, {pct} intervals", title_justify="left")
    for col in ("task", "step 1", "task loss [interval]", "actual", "error", "accuracy [interval]", "actual", "error",
                "single-step", "predictable"):
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    for task, r in rows.items():
        has = "actual_acc" in r
        table.add_row(
            task, r["method"], f"{r['loss']:.3f} [{r['loss_lo']:.3f}, {r['loss_hi']:.3f}]",
            f"{r['actual_loss']:.3f}" if has else "-", f"{100 * r['loss_error']:+.1f}%" if has else "-",
            f"{100 * r['acc']:.1f} [{100 * r['acc_lo']:.1f}, {100 * r['acc_hi']:.1f}]",
            f"{100 * r['actual_acc']:.1f}" if has else "-",
            (f"{100 * r['acc_error']:+.1f}" + ("" if r["in_interval"] else " [red]outside[/red]")) if has else "-",
            f"{100 * r['single_step_acc']:.1f}" + (f" ({100 * r['single_step_error']:+.1f})" if has else ""),
            "yes" if r["predictable"] else "[yellow]no[/yellow]",
        )
    why = [f"{task}: {'; '.join(r['reasons'])}" for task, r in rows.items() if r["reasons"]]
    table.caption = ("not predictable: " + " | ".join(why)) if why else None
    table.caption_justify = "left"
    return table


def laws_tables(laws: TaskLaws) -> list[Table]:
    """Fitted step-1 and step-2 parameters per task, fit errors, and checkpoint noise (SD over the last 10)."""
    t1 = Table(title=f"step 1 on {len(laws.runs)} runs: task loss L(N, D) = E + A/N^alpha + B/D^beta", title_justify="left")
    t2 = Table(title="step 2: Acc(L) = a / (1 + exp(-k (L - L0))) + b; noise of the largest run", title_justify="left")
    for table, cols in ((t1, ("task", "A", "B", "alpha", "beta", "E", "mean abs err %")),
                        (t2, ("task", "a", "b", "k", "L0", "rmse", "loss SD10", "acc SD10"))):
        for col in cols:
            table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    for task, law in laws.laws.items():
        p1, p2 = law.step1.params, law.step2.params
        rmse2 = float(np.sqrt(law.step2.objective / law.step2.n_points))
        t1.add_row(task, *(f"{p1[k]:.4g}" for k in ("A", "B", "alpha", "beta", "E")), f"{law.step1.mape:.2f}")
        t2.add_row(task, *(f"{p2[k]:.4g}" for k in ("a", "b", "k", "L0")), f"{rmse2:.4f}",
                   f"{law.noise.loss_sd:.4f}", f"{law.noise.acc_sd:.4f}")
    tables = [t1, t2]
    bridged = {task: law for task, law in laws.laws.items() if law.bridge is not None}
    if bridged:
        general = next(iter(bridged.values())).general
        g = general.params
        t3 = Table(title=f"loss-to-loss step 1: general loss L_g = {g['E']:.4g} + {g['A']:.4g}/N^{g['alpha']:.4g} + "
                   f"{g['B']:.4g}/D^{g['beta']:.4g} ({general.mape:.2f}% mean abs err); task loss = E + K L_g^kappa",
                   title_justify="left")
        for col in ("task", "E", "K", "kappa", "mean abs err %"):
            t3.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
        for task, law in bridged.items():
            t3.add_row(task, *(f"{law.bridge.params[k]:.4g}" for k in ("E", "K", "kappa")), f"{law.bridge.mape:.2f}")
        tables.append(t3)
    return tables


def error_summary(doc: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per task over targets: mean absolute step-1 error (%), chained and single-step accuracy error (points), and
    the fraction of actuals inside the chained interval."""
    out: dict[str, dict[str, list[float]]] = {}
    for rows in doc.values():
        for task, r in rows.items():
            if "actual_acc" in r:
                e = out.setdefault(task, {"step1_loss_err_pct": [], "chain_acc_err_pts": [], "single_acc_err_pts": [],
                                          "coverage": []})
                e["step1_loss_err_pct"].append(abs(100 * r["loss_error"]))
                e["chain_acc_err_pts"].append(abs(100 * r["acc_error"]))
                e["single_acc_err_pts"].append(abs(100 * r["single_step_error"]))
                e["coverage"].append(float(r["in_interval"]))
    return {t: {k: float(np.mean(v)) for k, v in e.items()} for t, e in out.items()}
