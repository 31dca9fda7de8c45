"""Our own CPT ladder (configs/ladder_cpt.gin; --tiny: 0.25xC): the CPT law fitted on part of its phases predicts the
held-out ones, three ways (hold out one domain share; the lower peak rate; the WSD schedule): each held-out run's
final-loss error and mean absolute error along its CPT curve. Then the CMR (tolerance 0 on the general loss at the
phases' end, largest size, the peak-rate cosine phase) the law fitted on every phase derives, from its own
pre-CPT loss and from the measured one (with both, and the law's change per trained share), against the CMR the
trained phases show (the largest trained share whose general loss ends no higher than before CPT, and the next).
All of it for both forms of the law (scaling.laws.cpt.FORMS: without and with the restart step J), and the form
`fit_cpt_forms` keeps by held-out error over CPT runs. The domain share of each phase is runs.csv's
`share/<domain>` column. The ladder trains under --out, resumably. JSON to stdout (and --json OUT). --smoke: 2 tiny
sizes on the quick corpus, one momentum.
"""

from __future__ import annotations

import argparse
import io
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from ladderlab.config import load_config
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.runner import run_ladder
from ladderlab.scaling.laws.annealing import dense_schedule
from ladderlab.scaling.laws.cpt import FORMS, base_loss, curve_inputs, fit_cpt, fit_cpt_forms, predict_cpt
from ladderlab.scaling.mixing.cmr import cmr_from_cpt_law
from ladderlab.scaling.tables.curves import Curve, curves_from_runs

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
TINY_SETS = ["LadderConfig.multiples=(0.25,)", "LadderConfig.evals_per_run=2", "DataConfig.eval_tokens=4096"]
SMOKE_PHASES = {f"de{round(r * 100)}-lr{lr:g}-{s}": {
    "base": "equal", "mixture": {"german": 2 * r, "code": 1 - r, "docs": 1 - r}, "fraction": 0.5, "lr": lr,
    "schedule": s} for r in (0.2, 0.6) for lr in (1.0, 0.3) for s in ("cosine", "wsd")}
SMOKE_SETS = [*TINY_SETS, 'DataConfig.corpus = "quick"', "LadderConfig.sizes = (3e3, 1.25e4)",
              'LadderConfig.mixtures = {"equal": {"code": 1.0, "docs": 1.0}}', f"LadderConfig.cpt = {SMOKE_PHASES!r}"]
HOLD_OUT = {"share": r"-de{share}-", "peak rate": r"-lr0\.3-", "schedule": r"-wsd$"}


def errors(fitted, curve: Curve) -> dict[str, float]:
    """Final-loss % error and mean absolute % error over the CPT steps of one held-out curve."""
    x, y, _ = curve_inputs([curve], fitted.law.lam)
    cpt = curve.steps > curve.start
    pred = fitted.predict(**{k: x[k] for k in fitted.law.inputs})
    return {"final_error_pct": float(pred[-1] / y[-1] * 100 - 100),
            "curve_mape_pct": float(np.mean(np.abs(pred[cpt] / y[cpt] - 1)) * 100)}


def observed_cmr(curves: list[Curve], base_final: dict[str, float], size: float, phase: str) -> dict:
    """Among the trained shares of `phase` (e.g. '-lr1-cosine') at `size`: general loss change at the end per
    share, the largest share whose change is <= 0 with every smaller share's, and the next share trained."""
    rows = sorted((c.ratio, float(c.loss[-1]) - base_final[c.run.split("-cpt-")[0]]) for c in curves
                  if c.n == size and c.start and c.run.endswith(phase))
    ok = 0.0
    for share, change in rows:
        if change > 0:
            return {"changes": rows, "cmr_at_least": ok, "cmr_below": share}
        ok = share
    return {"changes": rows, "cmr_at_least": ok, "cmr_below": None}


def form_report(curves: list[Curve], jump: bool, held_share: float, lam: float | None) -> dict:
    """Held-out errors of the three designs and the CMR at the largest size, for one form of the law."""
    doc: dict = {}
    for what, pattern in HOLD_OUT.items():
        pattern = re.compile(pattern.format(share=round(held_share * 100)))
        held = [c for c in curves if c.start and pattern.search(c.run)]
        fitted = fit_cpt([c for c in curves if c not in held], lam, jump=jump)
        per_run = {c.run: errors(fitted, c) for c in held}
        doc[f"held_out_{what.replace(' ', '_')}"] = {
            "fit_runs": len(curves) - len(held), "runs": per_run,
            "mean_abs_final_error_pct": float(np.mean([abs(e["final_error_pct"]) for e in per_run.values()])),
            "max_abs_final_error_pct": float(np.max([abs(e["final_error_pct"]) for e in per_run.values()])),
            "mean_curve_mape_pct": float(np.mean([e["curve_mape_pct"] for e in per_run.values()]))}
    fitted = fit_cpt(curves, lam, jump=jump)
    size = max(c.n for c in curves)
    phase = next(c for c in curves if c.n == size and c.start and c.run.endswith("-lr1-cosine"))
    lr = dense_schedule(phase.lr_steps, phase.lr)
    pt, cpt = lr[:phase.start], lr[phase.start:phase.last]
    base_final = {c.run: float(c.loss[-1]) for c in curves if not c.start}
    measured = base_final[phase.run.split("-cpt-")[0]]
    law_start = base_loss(fitted, pt, size)
    observed = observed_cmr(curves, base_final, size, "-lr1-cosine")
    doc["cmr"] = {"size": size, "tolerance": 0.0, "law": cmr_from_cpt_law(fitted, pt, cpt, 0.0, size=size)[0],
                  "law_from_measured_base": cmr_from_cpt_law(fitted, pt, cpt, 0.0, size=size, base=measured)[0],
                  "base_measured": measured, "base_law": law_start,
                  "law_changes": [(r, float(predict_cpt(fitted, pt, cpt, r, size)[-1]) - law_start)
                                  for r, _ in observed["changes"]],
                  "law_params": fitted.params, "observed": observed}
    return doc


def measure(cfg: LadderConfig, out: Path, general: str, domain: str, held_share: float, lam: float | None) -> dict:
    runs = run_ladder(cfg, out, console=Console(file=io.StringIO()))
    if f"share/{domain}" not in runs.cols:
        raise LadderlabError(f"{runs.source}: no share/{domain} column (every mixture of the ladder must name its "
                             f"domains, and --domain be one of them)")
    curves = curves_from_runs(runs, general, f"share/{domain}")
    doc: dict = {"runs": len(curves), "phases": sum(1 for c in curves if c.start)}
    doc["forms"] = {form: form_report(curves, jump, held_share, lam) for form, jump in FORMS.items()}
    chosen, doc["held_out_rmse"] = fit_cpt_forms(curves, lam)
    doc["form"] = "cpt+jump" if chosen.law.jump else "cpt"
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "ladder_cpt.gin"), help="the CPT ladder")
    parser.add_argument("--set", action="append", default=[], metavar="BINDING", help="a gin binding for --config")
    parser.add_argument("--tiny", action="store_true", help=f"the ladder at 0.25xC: {' '.join(TINY_SETS)}")
    parser.add_argument("--general", default="val/prose", help="the general loss column (a pre-training domain)")
    parser.add_argument("--domain", default="german", help="the CPT domain whose share the phases vary")
    parser.add_argument("--held-share", type=float, default=0.6, help="the domain share held out of one fit")
    parser.add_argument("--lam", type=float, help="the momentum of the annealing area (default: profiled)")
    parser.add_argument("--out", help="the ladder's results folder (default: a temporary one)")
    args = parse(parser, smoke=dict(set=SMOKE_SETS, general="val/code", lam=0.999))
    cfg = load_config(LadderConfig, args.config, [*TINY_SETS, *args.set] if args.tiny else args.set)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        doc = measure(cfg, Path(args.out or tmp), args.general, args.domain, args.held_share, args.lam)
    emit({**doc, "runtime_s": time.perf_counter() - start}, args.json)


if __name__ == "__main__":
    main()
