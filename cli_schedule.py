"""Schedule-aware commands: `fit annealing / cpt` on whole loss curves, `predict curve` along a learning-rate
schedule, and `predict cpt-loss` of a continual-pre-training run from a `fit cmr` or `fit cpt` law."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ladderlab.cli_args import names_arg, size_arg, write_json
from ladderlab.errors import LadderlabError

SCHEDULE_HELP = ("a step,lr CSV, or KIND:KEY=VALUE,... with KIND constant, cosine or wsd and keys peak, steps, "
                 "warmup, final (fraction of peak), decay (wsd: fraction or steps), shape (wsd: linear, cosine, sqrt); "
                 "e.g. wsd:peak=1e-3,steps=20k,warmup=500,decay=0.2,shape=sqrt")


def _lam(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or auto, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or auto, got {text!r}")
    return value


def _curve_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--runs", "--csv", dest="runs", required=True, metavar="RUNS",
                   help="a runs table (CSV, or a folder holding runs.csv: step, lr, N and the loss column) or a "
                        "folder of OLMo-style SIZE-KxC.csv files with a learning-rate column")
    p.add_argument("--loss", required=True, metavar="COL", help=f"{what} loss column, e.g. loss or val/c4_en")
    p.add_argument("--branches", metavar="FOLDER",
                   help="OLMo-style decay branches: each continues the --runs run of its size from its first step")
    p.add_argument("--sizes", type=names_arg, help="only these sizes, e.g. 190M,370M (default: all)")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="drop runs whose id matches")
    p.add_argument("--min-step", type=int, default=1, help="fit only logged steps >= this (e.g. after warm-up)")
    p.add_argument("--lam", type=_lam, default=None, metavar="LAMBDA",
                   help="momentum of the annealing area S2 (default auto: the best fit of 0.9-0.999)")
    p.add_argument("--bootstrap", type=int, default=100, metavar="B", help="bootstrap refits over runs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", metavar="OUT", help="write the fitted law as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="every curve with the law's fit along it")


def add_parsers(laws: Any, what: Any) -> None:
    """Adds `fit annealing / cpt` to LAWS and `predict curve / cpt-loss` to WHAT."""
    p = laws.add_parser("annealing", help="LR-annealing law on every logged step of one or many runs")
    _curve_args(p, "the")
    p.add_argument("--no-size", action="store_true", help="no size term even when the runs span sizes")
    p = laws.add_parser("cpt", help="continual-pre-training law on pre-training and CPT curves")
    _curve_args(p, "the general (pre-training data)")
    p.add_argument("--ratio", required=True, metavar="COL", help="the CPT phases' domain-share column")
    p.add_argument("--domain-loss", metavar="COL", help="also fit the law to this CPT-domain loss column")
    p.add_argument("--jump", choices=["auto", "yes", "no"], default="auto",
                   help="the step J at the CPT start: auto (default) keeps it when it predicts CPT runs left out of "
                        "the fit better")
    p = what.add_parser("curve", help="the loss along a learning-rate schedule from a `fit annealing` or `fit cpt` law")
    p.add_argument("--law", required=True, metavar="JSON", help="written by `fit annealing --json` or `fit cpt --json`")
    p.add_argument("--schedule", required=True, action="append", metavar="SPEC|CSV",
                   help=SCHEDULE_HELP + " (repeatable; with a cpt law, the CPT phase after the stored pre-training)")
    p.add_argument("--size", type=size_arg, help="model size N (laws with a size term; cpt: default the largest)")
    p.add_argument("--ratio", type=float, default=0.0, help="cpt law: the CPT mixture's domain share")
    p.add_argument("--actual", metavar="RUNS", help="observed curves to compare (same forms as fit's --runs)")
    p.add_argument("--actual-loss", default="loss", metavar="COL", help="the loss column of --actual")
    p.add_argument("--actual-run", action="append", default=[], metavar="ID",
                   help="compare with this run of --actual (repeatable, one per --schedule, in order)")
    p.add_argument("--branches", metavar="FOLDER", help="decay branches of --actual (as in fit)")
    p.add_argument("--out", metavar="CSV", help="write step,lr,loss of every schedule")
    p.add_argument("--json", metavar="OUT", help="final loss of each schedule (and errors against --actual)")
    p.add_argument("--plot", metavar="OUT.png", help="predicted against observed curves")
    p = what.add_parser("cpt-loss", help="general and domain loss of a CPT run from a `fit cmr` or `fit cpt` law")
    p.add_argument("--law", required=True, metavar="JSON", help="written by `fit cmr --json` or `fit cpt --json`")
    p.add_argument("--ratio", type=float, required=True, help="the CPT mixture's domain share in [0, 1]")
    p.add_argument("--tokens", type=size_arg, required=True, help="CPT tokens (a number or a label like 20B)")
    p.add_argument("--size", type=size_arg, help="model size (default: the largest fitted size)")
    p.add_argument("--schedule", metavar="SPEC", help="cpt law: the CPT phase's schedule without steps= (they come "
                                                        "from --tokens); default constant at the fitted CPT peak")
    p.add_argument("--json", metavar="OUT", help='{"general": {"loss","lo","hi"}, "domain": ... or null, "form", "level"}')


def _curves(args: argparse.Namespace, path: str, loss: str, ratio: str | None = None) -> list:
    from ladderlab.scaling.tables.curves import read_curves

    curves = read_curves(path, loss, args.branches, ratio, getattr(args, "sizes", None))
    curves = [c for c in curves if not any(re.search(rx, c.run) for rx in getattr(args, "exclude", []))]
    if not curves:
        raise LadderlabError(f"{path}: no curves left after --exclude {' '.join(args.exclude)}")
    return curves


def _plot_fit(fitted: Any, curves: list, args: argparse.Namespace, kind: str) -> None:
    from ladderlab.scaling.curve_plot import plot_curves
    from ladderlab.scaling.laws import annealing, cpt

    data = (annealing.curve_data if kind == "annealing" else cpt.curve_inputs)(curves, fitted.law.lam, args.min_step)
    x, y, runs = data
    pred = fitted.predict(**{k: x[k] for k in fitted.law.inputs})
    pairs = [(run, x_steps, pred[runs == run]) for run, x_steps in
             ((c.run, c.steps[c.steps >= max(args.min_step, 1)]) for c in curves)]
    plot_curves(pairs, [(c.run, c.steps, c.loss) for c in curves], args.plot, f"{kind} law fitted on {len(curves)} runs")


def fit_annealing(args: argparse.Namespace) -> None:
    """`fit annealing`: the LR-annealing law on every logged step of the runs."""
    from ladderlab.console import make_console
    from ladderlab.scaling.laws.annealing import fit_curves
    from ladderlab.scaling.report import print_fit

    curves = _curves(args, args.runs, args.loss)
    fitted = fit_curves(curves, args.lam, False if args.no_size else None, args.min_step, args.bootstrap, args.seed)
    print_fit(fitted, f"LR-annealing law fitted to {len(curves)} runs ({fitted.n_points} logged steps) of {args.runs}",
              make_console())
    write_json(args.json, fitted.to_json())
    if args.plot:
        _plot_fit(fitted, curves, args, "annealing")


def fit_cpt(args: argparse.Namespace) -> None:
    """`fit cpt`: the CPT law on pre-training and CPT curves (general loss, optionally a domain loss)."""
    from ladderlab.console import make_console
    from ladderlab.scaling.laws.cpt import cpt_document, fit_cpt_forms as fit_law
    from ladderlab.scaling.report import print_fit

    console = make_console()
    jump = {"auto": None, "yes": True, "no": False}[args.jump]
    curves = _curves(args, args.runs, args.loss, args.ratio)
    general, held_out = fit_law(curves, args.lam, None, args.min_step, args.bootstrap, args.seed, jump)
    print_fit(general, f"CPT law ({args.loss}) fitted to {len(curves)} runs of {args.runs}", console)
    if held_out:
        console.print("held-out RMSE over CPT runs: " + ", ".join(f"{f} {e:.4g}" for f, e in held_out.items())
                      + f"; kept {'cpt+jump' if general.law.jump else 'cpt'}")
    domain = None
    if args.domain_loss:
        domain = fit_law(_curves(args, args.runs, args.domain_loss, args.ratio), args.lam, None, args.min_step,
                         args.bootstrap, args.seed, jump)[0]
        print_fit(domain, f"CPT law ({args.domain_loss}) fitted to the same runs", console)
    doc = cpt_document(general, domain, curves, held_out)
    if doc["base_losses"]:
        console.print("measured pre-CPT loss (the pre-training runs' last): "
                      + ", ".join(f"N = {n}: {v:.4f}" for n, v in doc["base_losses"].items()))
    write_json(args.json, doc)
    if args.plot:
        _plot_fit(general, curves, args, "cpt")


def _object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise TypeError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _read_doc(path: str) -> dict[str, Any]:
    from ladderlab.scaling.tables.columns import read_json

    return read_json(path, "ladderlab law", _object)


def predict_curve(args: argparse.Namespace) -> None:
    """`predict curve`: the loss after every step of each schedule, optionally against observed runs."""
    import numpy as np

    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling.api import load_fitted
    from ladderlab.scaling.laws import cpt
    from ladderlab.scaling.laws.annealing import predict_schedule
    from ladderlab.scaling.laws.schedules import schedule
    from ladderlab.scaling.tables.columns import write_csv

    doc = _read_doc(args.law)
    is_cpt = doc.get("kind") == "cpt"
    if args.actual_run and len(args.actual_run) != len(args.schedule):
        raise LadderlabError(f"--actual-run given {len(args.actual_run)} times for {len(args.schedule)} --schedule")
    observed = {}
    if args.actual:
        curves = {c.run: c for c in _curves(args, args.actual, args.actual_loss)}
        for run in args.actual_run:
            if run not in curves:
                raise LadderlabError(f"{args.actual}: no run {run!r} (has: {', '.join(curves)})")
            observed[run] = curves[run]
    if is_cpt:
        law, (pt, n) = cpt.load_cpt_law(doc), cpt.pt_schedule(doc, args.size)
    else:
        law = load_fitted(args.law)
    predicted, rows, out_rows = [], [], []
    for i, spec in enumerate(args.schedule):
        lr = schedule(spec)
        if is_cpt:
            loss = cpt.predict_cpt(law, pt, lr, args.ratio, n)
            steps = len(pt) + np.arange(1, len(lr) + 1)
        else:
            loss = predict_schedule(law, lr, args.size)
            steps = np.arange(1, len(lr) + 1)
        name = args.actual_run[i] if args.actual_run else spec
        predicted.append((name, steps, loss))
        row = {"schedule": spec, "steps": len(lr), "final_loss": float(loss[-1])}
        if name in observed:
            c = observed[name]
            at = np.interp(c.steps, steps, loss)
            row |= {"actual_final": float(c.loss[-1]), "final_error_pct": float((at[-1] / c.loss[-1] - 1) * 100),
                    "mean_abs_error_pct": float(np.mean(np.abs(at / c.loss - 1)) * 100)}
        rows.append(row)
        out_rows += [[spec, int(s), f"{r:.6g}", f"{v:.6g}"] for s, r, v in zip(steps, lr, loss)]
    make_console().print(rows_table(rows, f"loss along each schedule ({args.law})"))
    write_json(args.json, {"schedules": rows})
    if args.out:
        write_csv(args.out, ["schedule", "step", "lr", "loss"], out_rows)
    if args.plot:
        from ladderlab.scaling.curve_plot import plot_curves

        plot_curves(predicted, [(n, c.steps, c.loss) for n, c in observed.items()], args.plot,
                    f"predicted along the schedule{'s' if len(args.schedule) > 1 else ''}")


def predict_cpt_loss(args: argparse.Namespace) -> None:
    """`predict cpt-loss`: general (and domain) loss with 90% interval at a domain share and CPT length."""
    from ladderlab.console import make_console
    from ladderlab.scaling.laws import cpt
    from ladderlab.scaling.mixing.cmr import predict_cpt_loss as from_cmr

    doc = _read_doc(args.law)
    if not 0 <= args.ratio <= 1:
        raise LadderlabError(f"--ratio {args.ratio:g}: a domain share must be in [0, 1]")
    if doc.get("kind") == "cpt":
        out = cpt.cpt_loss(doc, args.ratio, cpt.cpt_phase(doc, args.tokens, args.schedule), args.size)
        out["tokens"] = args.tokens
    elif "general_laws" in doc:
        if args.schedule:
            raise LadderlabError("--schedule needs a `fit cpt` law; a `fit cmr` law assumes the fitted runs' schedule")
        out = from_cmr(doc, args.ratio, args.tokens, args.size)
    else:
        raise LadderlabError(f"{args.law}: neither a `fit cmr --json` nor a `fit cpt --json` document")
    g, d = out["general"], out["domain"]
    line = f"general loss {g['loss']:.4f} [{g['lo']:.4f}, {g['hi']:.4f}]"
    if "change" in g:
        line += f" ({g['change']:+.4f} from the {out['base']['source']} pre-CPT loss {out['base']['loss']:.4f})"
    if d is not None:
        line += f", domain loss {d['loss']:.4f} [{d['lo']:.4f}, {d['hi']:.4f}]"
    make_console().print(f"CPT at share {args.ratio:g}, {args.tokens:.4g} tokens, N = {out['size']:.4g} "
                         f"({out['form']}, {out['level']:.0%} intervals): {line}")
    write_json(args.json, out)
