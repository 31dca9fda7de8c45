"""Mixture commands: `fit mixing-law / mixture-scaling / cmr`, `predict mixture-loss` and `optimize mixture`."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

from ladderlab.cli_args import add_group, names_arg, point_arg, size_arg, write_json
from ladderlab.errors import LadderlabError
from ladderlab.units import parse_size

NEGATIVE = re.compile(r"^-\d*\.?\d+(e[-+]?\d+)?$", re.IGNORECASE)  # argparse's own matcher misses -1e-3


def _kv(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), parse_size(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DOMAIN=NUMBER, got {text!r}") from None


def _target(text: str) -> tuple[str, float]:
    return _kv(text) if "=" in text else (text.strip(), 1.0)


def add_parsers(sub: Any, laws: Any, what: Any) -> None:
    """Adds the mixture laws to `fit` (LAWS) and `predict` (WHAT), and the `optimize` command to SUB."""
    p = laws.add_parser("mixing-law", help="mixing laws L_i(r) = c_i + k_i exp(t_i . f(r)) from mixtures -> losses")
    p.add_argument("--mixtures", required=True, metavar="M.csv", help="one row per run: id + one share column per domain")
    p.add_argument("--losses", required=True, metavar="L.csv", help="one row per run: id + one loss column per val domain")
    p.add_argument("--on", default="id", metavar="ID_COL", help="id column joining the two files")
    p.add_argument("--loss", action="append", default=[], metavar="COL",
                   help="fit only this loss column (repeatable; default: every column)")
    p.add_argument("--target", action="append", dest="loss", help=argparse.SUPPRESS)  # the old spelling of --loss
    p.add_argument("--model", default="auto", choices=["auto", "plain", "log", "implicit"],
                   help="plain: the paper's law; log: adds log-share features; implicit: K latent domains on one "
                        "total column; auto (default): plain or log per column by 5-fold held-out error")
    p.add_argument("--latent", type=int, default=3, metavar="K", help="latent domains of the implicit law")
    p.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")
    p.add_argument("--proxy-losses", metavar="P.csv",
                   help="proxy losses as extra runs, e.g. `ladderlab ablate`'s proxy_losses.csv (id + the same loss "
                        "columns); needs --proxy-mixtures")
    p.add_argument("--proxy-mixtures", metavar="M2.csv",
                   help="the proxies' mixtures (id + share columns; a domain without a column has share 0)")
    p.add_argument("--proxy-weight", type=float, default=1.0, metavar="W",
                   help="each proxy's weight in the least squares, in (0, 1] (the runs weigh 1)")
    p.add_argument("--json", metavar="OUT", help="write the fitted mixing model as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="held-out predicted vs observed, per column")
    p = laws.add_parser("mixture-scaling", help="loss of any mixture at any N, D: the joint law L(N, D, r) = E + "
                                               "A/N^alpha + B/D^beta + k exp(t . r) or the nested step -> size -> "
                                               "mixing pipeline, chosen by a backtest holding the largest size out")
    p.add_argument("--runs", required=True, metavar="R.csv", help="one row per checkpoint: shares, N, D and losses")
    p.add_argument("--shares", required=True, type=names_arg, metavar="COL,COL,...",
                   help="training-domain share columns (each row sums to 1 within 0.01)")
    p.add_argument("--n", required=True, metavar="COL", help="model-size column (N as you count it)")
    p.add_argument("--d", required=True, metavar="COL", help="training-tokens column")
    p.add_argument("--loss", required=True, type=names_arg, metavar="COL[,COL...]", help="loss column(s) to fit")
    p.add_argument("--run", metavar="COL", help="run-id column: the bootstrap resamples whole runs (default: rows "
                                                 "with the same shares and N are one run)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B",
                   help="bootstrap refits over runs (joint) or error draws (nested) for the intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", required=True, metavar="LAW", help="write the fitted law as JSON")
    p = laws.add_parser("cmr", help="critical mixture ratio of continual pre-training runs (or of a `fit cpt` law)")
    p.add_argument("--csv", "--runs", dest="csv", metavar="CSV", help="one row per CPT run (required without --law)")
    for flag, what_col in (("--ratio", "domain-ratio"), ("--tokens", "CPT-tokens"), ("--general", "general-loss"),
                           ("--base", "pre-CPT general-loss")):
        p.add_argument(flag, help=f"{what_col} column (required without --law)")
    p.add_argument("--law", dest="cpt_law", metavar="CPT.json",  # dest: `fit` keeps its subcommand in `law`
                   help="derive the CMR from this `fit cpt --json` law instead of fitting runs (needs --at-tokens; the "
                        "change is measured from the size's measured pre-CPT loss when the law stored one)")
    p.add_argument("--schedule", metavar="SPEC", help="with --law: the CPT phase's schedule without steps= (they "
                                                        "come from --at-tokens); default constant at the fitted CPT peak")
    p.add_argument("--domain", help="domain-loss column (fits the domain law per size)")
    p.add_argument("--size", help="model-size column (fits how CMR moves with N)")
    p.add_argument("--run", metavar="COL", help="run-id column: the bootstrap resamples whole runs (default: rows "
                                                 "with the same ratio and size are one run)")
    p.add_argument("--tolerance", type=float, required=True,
                   help="allowed change of general loss at --at-tokens: 0 = no worse than before CPT, -0.001 = at "
                        "least 0.001 better")
    p.add_argument("--form", default="auto", choices=["auto", "power", "cpt"],
                   help="general/domain loss form; auto picks by held-out error over runs")
    p._negative_number_matcher = NEGATIVE  # so `--tolerance -1e-3` reads as a number, not an option
    p.add_argument("--at-tokens", type=size_arg, help="CPT tokens of the run to predict (default: the largest)")
    p.add_argument("--at-size", type=size_arg, help="model size of the run to predict (default: the largest)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap refits over runs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", metavar="OUT", help="write the critical mixture ratio as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="trade-off at the target run and CMR against tokens")
    p = what.add_parser("mixture-loss", help="per-domain losses of new mixtures from a fitted mixing law")
    p.add_argument("--law", required=True, metavar="JSON",
                   help="written by `ladderlab fit mixing-law --json` or `fit mixture-scaling --json`")
    p.add_argument("--mixtures", required=True, metavar="M2.csv", help="id + one share column per training domain")
    p.add_argument("--at", type=point_arg, metavar="N=...,D=...",
                   help="model size and tokens of the run to predict (required for a mixture-scaling law)")
    p.add_argument("--out", required=True, metavar="P.csv",
                   help="id + per loss column its prediction and its 90%% interval (<col>_lo, <col>_hi)")
    kinds = add_group(sub, "optimize", "optimise a training mixture", "what")
    p = kinds.add_parser("mixture", help="the mixture minimising a predicted target under share limits and budgets")
    p.add_argument("--law", required=True, metavar="JSON",
                   help="written by `ladderlab fit mixing-law --json` or `fit mixture-scaling --json`")
    p.add_argument("--at", type=point_arg, metavar="N=...,D=...",
                   help="model size and tokens of the run (required for a mixture-scaling law; D is its token count)")
    p.add_argument("--objective", type=_target, action="append", default=[], metavar="COL[=WEIGHT]",
                   help="loss column to minimise; repeat with weights for a weighted set (default: mean of all)")
    p.add_argument("--target", type=_target, action="append", dest="objective", help=argparse.SUPPRESS)  # old name
    p.add_argument("--min", type=_kv, action="append", default=[], metavar="DOMAIN=x", help="minimum share (repeatable)")
    p.add_argument("--max", type=_kv, action="append", default=[], metavar="DOMAIN=x", help="maximum share (repeatable)")
    p.add_argument("--budget", type=_kv, action="append", default=[], metavar="DOMAIN=U",
                   help="unique tokens available in DOMAIN (repeatable; needs --tokens)")
    p.add_argument("--tokens", type=size_arg, help="the run's training tokens (a number or a label like 100B)")
    p.add_argument("--epochs", type=float, default=4.0, metavar="K", help="no domain repeated past K epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starting mixtures")
    p.add_argument("--json", metavar="OUT", help="write the optimal mixture as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="predicted loss over the three largest domains")


def fit_mixing_law(args: argparse.Namespace) -> None:
    """`fit mixing-law`: per-domain mixing laws from a mixtures table and a losses table."""
    import numpy as np

    from ladderlab.console import make_console
    from ladderlab.scaling.mixing.model import fit_mixing_model
    from ladderlab.scaling.mixing.plot import plot_mixing
    from ladderlab.scaling.mixing.report import print_mixing
    from ladderlab.scaling.mixing.table import read_mixture_table

    console = make_console()
    table = read_mixture_table(args.mixtures, args.losses, args.on, args.loss)
    title = f"mixing laws fitted to {len(table.ids)} runs of {args.mixtures}"
    props, losses, weights, proxy = table.proportions, table.losses, None, None
    if args.proxy_losses or args.proxy_mixtures:
        extra = _proxies(args, table)
        props = {d: np.concatenate([v, extra.proportions[d]]) for d, v in props.items()}
        losses = {c: np.concatenate([v, extra.losses[c]]) for c, v in losses.items()}
        weights = np.r_[np.ones(len(table.ids)), np.full(len(extra.ids), args.proxy_weight)]
        proxy = {"losses": str(args.proxy_losses), "mixtures": str(args.proxy_mixtures), "weight": args.proxy_weight,
                 "rows": len(extra.ids)}
        title += f" and {len(extra.ids)} proxies of {args.proxy_losses} (weight {args.proxy_weight:g})"
    model = fit_mixing_model(props, losses, args.model, args.latent, seed=args.seed, id_col=args.on, weights=weights)
    print_mixing(model, title, console)
    write_json(args.json, {**model.to_json(), **({"proxy": proxy} if proxy else {})})
    if args.plot:
        plot_mixing(model, args.plot)


def _proxies(args: argparse.Namespace, table: Any) -> Any:
    """The --proxy-mixtures x --proxy-losses table over the runs' domains (a missing domain: share 0) and loss
    columns, checked like the runs' own."""
    from ladderlab.scaling.mixing.table import join, read_proportions
    from ladderlab.scaling.tables.columns import read_columns

    if not (args.proxy_losses and args.proxy_mixtures):
        raise LadderlabError("--proxy-losses and --proxy-mixtures go together: give both")
    if not 0 < args.proxy_weight <= 1:
        raise LadderlabError(f"--proxy-weight {args.proxy_weight:g}: must be in (0, 1]")
    ids, props = read_proportions(args.proxy_mixtures, args.on, table.domains, missing_as_zero=True)
    losses = read_columns(args.proxy_losses, list(table.losses), text=[args.on])
    return join(ids, props, losses.pop(args.on), losses, str(args.proxy_mixtures), str(args.proxy_losses))


def fit_cmr(args: argparse.Namespace) -> None:
    """`fit cmr`: the critical mixture ratio of continual pre-training runs."""
    from ladderlab.console import make_console
    from ladderlab.scaling.mixing.cmr import critical_mixture_ratio
    from ladderlab.scaling.mixing.plot import plot_cmr
    from ladderlab.scaling.mixing.report import print_cmr
    from ladderlab.scaling.tables.columns import read_columns

    console = make_console()
    if args.cpt_law:
        _cmr_from_law(args, console)
        return
    missing = [f for f, v in (("--csv", args.csv), ("--ratio", args.ratio), ("--tokens", args.tokens),
                              ("--general", args.general), ("--base", args.base)) if not v]
    if missing:
        raise LadderlabError(f"fit cmr: give {', '.join(missing)} (or --law CPT.json)")
    if args.schedule:
        raise LadderlabError("fit cmr: --schedule goes with --law CPT.json (fitted runs have their own schedule)")
    names = [args.ratio, args.tokens, args.general, args.base, *filter(None, [args.domain, args.size])]
    cols = read_columns(args.csv, names, text=[args.run] if args.run else [])
    res = critical_mixture_ratio(
        cols[args.ratio], cols[args.tokens], cols[args.general], cols[args.base], tolerance=args.tolerance,
        size=cols.get(args.size), domain_loss=cols.get(args.domain), runs=cols.get(args.run),
        at_tokens=args.at_tokens, at_size=args.at_size, form=args.form, bootstrap=args.bootstrap, seed=args.seed)
    print_cmr(res, console)
    write_json(args.json, res.to_json())
    if args.plot:
        plot_cmr(res, args.plot)


def _cpt_document(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("kind") != "cpt":
        raise TypeError("not a `fit cpt --json` document")
    return doc


def _cmr_from_law(args: argparse.Namespace, console: Any) -> None:
    """`fit cmr --law CPT.json`: the CMR a fitted CPT law derives for a CPT phase of --at-tokens at --at-size."""
    from ladderlab.scaling.laws.cpt import cpt_phase
    from ladderlab.scaling.mixing.cmr import cmr_from_cpt_document
    from ladderlab.scaling.tables.columns import read_json

    doc = read_json(args.cpt_law, "`fit cpt` law", _cpt_document)
    if args.at_tokens is None:
        raise LadderlabError("fit cmr --law: give --at-tokens, the CPT phase's length in tokens")
    res = cmr_from_cpt_document(doc, args.tolerance, cpt_phase(doc, args.at_tokens, args.schedule), args.at_size)
    res["tokens"] = args.at_tokens
    base = res["base"]
    console.print(f"CMR at tolerance {args.tolerance:g}, {args.at_tokens:.4g} CPT tokens ({res['steps']} steps), "
                  f"N = {res['size']:.4g} ({res['form']} law of {args.cpt_law}): {res['ratio']:.3f} "
                  f"[{res['interval'][0]:.3f}, {res['interval'][1]:.3f}]; the general loss's change is taken from "
                  + (f"the measured pre-CPT loss {base['loss']:.4f} (from the law's own, {base['law']:.4f}: CMR "
                     f"{res['ratio_from_law_base']:.3f})" if base["source"] == "measured" else
                     f"the law's own pre-CPT loss {base['law']:.4f} (no measured one stored)"))
    write_json(args.json, res)


def fit_mixture_scaling(args: argparse.Namespace) -> None:
    """`fit mixture-scaling`: joint law or nested pipeline per loss column, chosen by a held-out-size backtest."""
    from ladderlab.scaling.mixing.mixture_scaling import fit_mixture_scaling as fit
    from ladderlab.scaling.mixing.report import print_mixture_scaling
    from ladderlab.scaling.tables.columns import read_columns

    cols = read_columns(args.runs, [*args.shares, args.n, args.d, *args.loss], text=[args.run] if args.run else [])
    model = fit({s: cols[s] for s in args.shares}, cols[args.n], cols[args.d], {c: cols[c] for c in args.loss},
                cols.get(args.run), args.bootstrap, args.seed, str(args.runs),
                {"n": args.n, "d": args.d, "run": args.run}, first_line=2)
    print(f"fitted to {len(cols[args.n])} rows of {model.n_runs} runs of {args.runs}")
    print_mixture_scaling(model)
    write_json(args.json, model.to_json())


def predict_mixture_loss(args: argparse.Namespace) -> None:
    """`predict mixture-loss`: a fitted mixing or mixture-scaling law's losses of new mixtures, with 90% intervals."""
    from ladderlab.scaling.tables.columns import read_json, write_csv

    kind = read_json(args.law, "mixing-law or mixture-scaling", lambda doc: doc.get("kind"))
    if kind == "mixture-scaling":
        id_col, ids, pred = _predict_joint(args)
    elif args.at is not None:
        raise LadderlabError(f"{args.law}: --at applies only to a mixture-scaling law (this is a {kind} JSON)")
    else:
        from ladderlab.scaling.mixing.model import load_mixing_model
        from ladderlab.scaling.mixing.table import read_proportions

        model = load_mixing_model(args.law)
        ids, props = read_proportions(args.mixtures, model.id_col, model.domains)
        id_col = model.id_col
        pred = {c: (p, *model.interval(p, {c: 1.0})) for c, p in model.predict(props).items()}
    header = [id_col, *(name for c in pred for name in (c, f"{c}_lo", f"{c}_hi"))]
    write_csv(args.out, header, ([run, *(_cell(v[i]) for c in pred for v in pred[c])] for i, run in enumerate(ids)))
    print(f"wrote {args.out}: {len(ids)} mixtures x {len(pred)} predicted loss columns (with 90% intervals)")


def _at(args: argparse.Namespace) -> dict[str, float]:
    """--at for a mixture-scaling law: required, exactly N and D."""
    if args.at is None:
        raise LadderlabError(f"{args.law}: a mixture-scaling law needs --at N=...,D=... (the run to predict)")
    if set(args.at) != {"N", "D"}:
        raise LadderlabError(f"--at: expected N=...,D=..., got {', '.join(args.at)}")
    return args.at


def _predict_joint(args: argparse.Namespace) -> tuple[str, Any, dict]:
    """id column name, ids and per loss column (prediction, lo, hi) of a mixture-scaling law at --at; prints the
    "mixtures no longer separated" verdict where it fires."""
    from ladderlab.scaling.mixing.law import stack
    from ladderlab.scaling.mixing.mixture_scaling import load_mixture_scaling, predict_at
    from ladderlab.scaling.mixing.separation import separation, separation_text
    from ladderlab.scaling.mixing.table import read_proportions
    from ladderlab.scaling.tables.columns import read_header

    at = _at(args)
    model = load_mixture_scaling(args.law)
    id_col = read_header(args.mixtures)[0]
    ids, props = read_proportions(args.mixtures, id_col, model.domains, missing_as_zero=True)
    law_at = model.at(at["N"], at["D"])
    pred = predict_at(law_at, stack(props, model.domains))
    print(f"{model.form} form (chosen by backtest: {model.choice['reason']})")
    for w in law_at.warnings:
        print(f"warning: {w}")
    for col, (p, _, _, draws) in pred.items():
        text = None if draws is None or len(ids) < 2 else separation_text(
            col, separation(ids.astype(str), p, draws), f"N={at['N']:.4g}, D={at['D']:.4g}")
        if text:
            print(f"verdict: {text}")
    return id_col, ids, {c: v[:3] for c, v in pred.items()}


def _cell(value: float) -> str:
    """A CSV number, blank where there is none (no bootstrap replicates, so no interval)."""
    return f"{value:.9g}" if value == value else ""


def optimize_mixture(args: argparse.Namespace) -> None:
    """`optimize mixture`: the mixture minimising a fitted mixing or mixture-scaling law's target under limits and
    budgets (a mixture-scaling law at --at, whose D is the run's token count)."""
    from ladderlab.console import make_console
    from ladderlab.scaling.mixing.report import print_optimum
    from ladderlab.scaling.tables.columns import read_json

    kind = read_json(args.law, "mixing-law or mixture-scaling", lambda doc: doc.get("kind"))
    target = dict(args.objective) if args.objective else None
    if kind == "mixture-scaling":
        from ladderlab.scaling.mixing.mixture_scaling import load_mixture_scaling
        from ladderlab.scaling.mixing.optimize import optimize_scaling

        at = _at(args)
        if args.tokens is not None and not math.isclose(args.tokens, at["D"], rel_tol=1e-9):
            raise LadderlabError(f"--tokens {args.tokens:.6g} conflicts with --at D={at['D']:.6g}: for a "
                                 "mixture-scaling law D sets the run's token count (drop --tokens)")
        if args.plot:
            raise LadderlabError("--plot draws a mixing law's landscape; not available for a mixture-scaling law")
        pred = optimize_scaling(load_mixture_scaling(args.law), at, target, dict(args.min), dict(args.max),
                                dict(args.budget), args.epochs, seed=args.seed)
        print_optimum(pred, make_console())
        write_json(args.json, pred.to_json())
        return
    if args.at is not None:
        raise LadderlabError(f"{args.law}: --at applies only to a mixture-scaling law (this is a {kind} JSON)")
    from ladderlab.scaling.mixing.model import load_mixing_model
    from ladderlab.scaling.mixing.optimize import optimize_mixture as optimize

    model = load_mixing_model(args.law)
    pred = optimize(model, target, dict(args.min), dict(args.max), dict(args.budget), args.tokens, args.epochs,
                    seed=args.seed)
    print_optimum(pred, make_console())
    write_json(args.json, pred.to_json())
    if args.plot:
        from ladderlab.scaling.mixing.plot import plot_landscape

        plot_landscape(model, pred, args.plot)
