"""Mixture commands: `fit mixing-law / cmr`, `predict mixture-loss` and `optimize mixture`."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ladderlab.cli_args import add_group, size_arg, write_json
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
    p.add_argument("--json", metavar="OUT", help="write the fitted mixing model as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="held-out predicted vs observed, per column")
    p = laws.add_parser("cmr", help="critical mixture ratio of continual pre-training runs")
    p.add_argument("--csv", "--runs", dest="csv", required=True, metavar="CSV", help="one row per CPT run")
    for flag, what_col in (("--ratio", "domain-ratio"), ("--tokens", "CPT-tokens"), ("--general", "general-loss"),
                           ("--base", "pre-CPT general-loss")):
        p.add_argument(flag, required=True, help=f"{what_col} column")
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
    p.add_argument("--law", required=True, metavar="JSON", help="written by `ladderlab fit mixing-law --json`")
    p.add_argument("--mixtures", required=True, metavar="M2.csv", help="id + one share column per training domain")
    p.add_argument("--out", required=True, metavar="P.csv", help="id + one predicted loss column per validation domain")
    kinds = add_group(sub, "optimize", "optimise a training mixture", "what")
    p = kinds.add_parser("mixture", help="the mixture minimising a predicted target under share limits and budgets")
    p.add_argument("--law", required=True, metavar="JSON", help="written by `ladderlab fit mixing-law --json`")
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
    from ladderlab.console import make_console
    from ladderlab.scaling.mixing.model import fit_mixing_model
    from ladderlab.scaling.mixing.plot import plot_mixing
    from ladderlab.scaling.mixing.report import print_mixing
    from ladderlab.scaling.mixing.table import read_mixture_table

    console = make_console()
    table = read_mixture_table(args.mixtures, args.losses, args.on, args.loss)
    model = fit_mixing_model(table.proportions, table.losses, args.model, args.latent, seed=args.seed, id_col=args.on)
    print_mixing(model, f"mixing laws fitted to {len(table.ids)} runs of {args.mixtures}", console)
    write_json(args.json, model.to_json())
    if args.plot:
        plot_mixing(model, args.plot)


def fit_cmr(args: argparse.Namespace) -> None:
    """`fit cmr`: the critical mixture ratio of continual pre-training runs."""
    from ladderlab.console import make_console
    from ladderlab.scaling.mixing.cmr import critical_mixture_ratio
    from ladderlab.scaling.mixing.plot import plot_cmr
    from ladderlab.scaling.mixing.report import print_cmr
    from ladderlab.scaling.tables.columns import read_columns

    console = make_console()
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


def predict_mixture_loss(args: argparse.Namespace) -> None:
    """`predict mixture-loss`: a fitted mixing law's per-domain losses of new mixtures, as a CSV."""
    from ladderlab.scaling.mixing.model import load_mixing_model
    from ladderlab.scaling.mixing.table import read_proportions
    from ladderlab.scaling.tables.columns import write_csv

    model = load_mixing_model(args.law)
    ids, props = read_proportions(args.mixtures, model.id_col, model.domains)
    pred = model.predict(props)
    write_csv(args.out, [model.id_col, *pred],
              ([run, *(f"{pred[c][i]:.9g}" for c in pred)] for i, run in enumerate(ids)))
    print(f"wrote {args.out}: {len(ids)} mixtures x {len(pred)} predicted loss columns")


def optimize_mixture(args: argparse.Namespace) -> None:
    """`optimize mixture`: the mixture minimising a fitted mixing law's target under limits and budgets."""
    from ladderlab.console import make_console
    from ladderlab.scaling.mixing.model import load_mixing_model
    from ladderlab.scaling.mixing.optimize import optimize_mixture as optimize
    from ladderlab.scaling.mixing.report import print_optimum

    model = load_mixing_model(args.law)
    target = dict(args.objective) if args.objective else None
    pred = optimize(model, target, dict(args.min), dict(args.max), dict(args.budget), args.tokens, args.epochs,
                    seed=args.seed)
    print_optimum(pred, make_console())
    write_json(args.json, pred.to_json())
    if args.plot:
        from ladderlab.scaling.mixing.plot import plot_landscape

        plot_landscape(model, pred, args.plot)
