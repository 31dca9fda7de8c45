"""The `ladderlab` command: fit laws to result tables, predict from fitted laws, run the demo.

Bad usage or bad input prints one line naming what is wrong and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from typing import Any, Sequence

from ladderlab.errors import LadderlabError
from ladderlab.units import parse_size

BUDGETS = (1e20, 1e21, 1e22, 1e23, 1e24)
SET_HELP = ("override a config field (repeatable): a dotted path, model.d_model=192, or gin's Class.field, "
            "ModelConfig.d_model=192; counts may be size labels, sizes=(3k,12k)")
ONE_D = {"step": ("steps", "S"), "size": ("n", "N"), "compute": ("flops", "C")}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless it is None, False or empty or the help text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default in ("", [], ()) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, and --help shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Config(argparse.Action):
    """Stores CONFIG, given as the positional argument or as --config; both at once must name the same file."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None:  # the optional positional, absent
            return
        if namespace.config is not None and namespace.config != values:
            parser.error(f"two configs given: {namespace.config} and {values}")
        namespace.config = values


def _add_config(p: argparse.ArgumentParser, what: str, required: bool = False) -> None:
    """CONFIG as the first argument or as --config CONFIG: every command that reads a config takes both."""
    p.add_argument("config", nargs="?", action=_Config, metavar="CONFIG", help=what)
    p.add_argument("--config", dest="config", action=_Config, metavar="CONFIG", help="the same as CONFIG")
    p.set_defaults(config_required=required)


def _size(text: str) -> float:
    """argparse type of a parameter or token count: a number or a size label (7B, 190M, 1.3B, 500K)."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _point(text: str) -> dict[str, float]:
    try:
        return {k.strip(): parse_size(v) for k, v in (kv.split("=") for kv in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,NAME=VALUE] (values may be sizes like 7B), "
                                         f"got {text!r}") from None


def _common_fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", "--runs", dest="csv", required=True, metavar="CSV", help="results table, one row per run")
    p.add_argument("--loss", required=True, help="loss column")
    p.add_argument("--where", action="append", default=[], metavar="COL<op>VALUE",
                   help="keep rows where COL = TEXT, != TEXT, or <, <=, >, >= NUMBER (repeatable)")
    p.add_argument("--drop-highest", type=int, default=0, metavar="K", help="drop the K highest-loss rows")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap refits over runs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--workers", type=int, default=None, help="bootstrap processes (default: all cores)")
    p.add_argument("--json", metavar="OUT", help="write the fitted law as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="plot data, fit and extrapolation")


def build_parser() -> Parser:
    parser = Parser(prog="ladderlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('ladderlab')}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    fit = sub.add_parser("fit", help="fit a scaling law to a results CSV")
    laws = fit.add_subparsers(dest="law", required=True, parser_class=Parser)
    p = laws.add_parser("chinchilla", help="L(N, D) = E + A/N^alpha + B/D^beta")
    _common_fit_args(p)
    p.add_argument("--n", required=True, help="parameter-count column")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--d", help="training-tokens column")
    group.add_argument("--flops", help="training-FLOPs column (D = C / 6N)")
    p.add_argument("--budgets", type=_floats, default=BUDGETS, help="FLOP budgets for the compute-optimal table")
    p = laws.add_parser("data-constrained", help="Chinchilla with decaying value of repeated data and excess params")
    _common_fit_args(p)
    for flag, what in (("--n", "parameter-count"), ("--d", "training-tokens"), ("--unique", "unique-tokens")):
        p.add_argument(flag, required=True, help=f"{what} column")
    p.add_argument("--base-law", metavar="JSON",
                   help="chinchilla fit to hold fixed (default: fit it on rows with D <= U)")
    p.add_argument("--base", dest="base_law", help=argparse.SUPPRESS)  # the old spelling (fit cmr's --base is a column)
    for name, (flag, var) in ONE_D.items():
        p = laws.add_parser(name, help=f"L({var}) = E + coef/{var}^exponent")
        _common_fit_args(p)
        p.add_argument(f"--{flag}", required=True, help=f"{var} column")
        p.add_argument("--at", type=_size, action="append", default=[], help=f"predict at this {var} (repeatable)")

    predict = sub.add_parser("predict", help="predict from a fitted law")
    what = predict.add_subparsers(dest="what", required=True, parser_class=Parser)
    p = what.add_parser("loss", help="the law's prediction (with interval) at given inputs")
    p.add_argument("--law", required=True, metavar="JSON", help="a law written by `ladderlab fit ... --json`")
    p.add_argument("--at", type=_point, action="append", required=True, metavar="N=7e9,D=1.4e12",
                   help="the law's inputs to predict at (repeatable); counts may be size labels, N=7B,D=1.4T")
    p.add_argument("--json", metavar="OUT", help="write the predictions as JSON")
    p = what.add_parser("tasks", help="benchmark accuracy of a target model from a ladder's runs (two-step task laws)")
    p.add_argument("--runs", "--csv", dest="runs", required=True, metavar="RUNS",
                   help="a folder of run CSVs (--format olmo) or a runs table (--format table)")
    p.add_argument("--format", choices=("olmo", "table"), default="olmo", help="olmo: one SIZE-KxC.csv per run")
    p.add_argument("--n-table", metavar="FILE", help="size -> N as JSON or CSV (size,N); the OLMo ladder's is built in")
    p.add_argument("--sizes", type=_names, help="fit on these sizes, e.g. 190M,370M,760M,1B (default: all)")
    p.add_argument("--multiples", type=_floats, help="fit on these token multiples (xC), e.g. 1,2,5,10 (default: all)")
    p.add_argument("--mixture", help="--format table: only runs of this mixture (a ladder's main one, e.g. equal)")
    p.add_argument("--last", type=int, default=5, help="step 1: mean of each run's last LAST checkpoints")
    p.add_argument("--window", type=int, default=5, help="step 2: trailing mean over WINDOW checkpoints")
    p.add_argument("--target", action="append", required=True, metavar="NAME:N:D",
                   help="model to predict; N a number, a size in the N table or a label like 7B, D tokens or KxC "
                        "(repeatable), e.g. 3B-5xC:3B:5xC")
    p.add_argument("--tasks", type=_names, help="tasks to predict (default: the 8 main tasks, or all in the table)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap refits per step")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.9, help="interval level")
    p.add_argument("--max-width", type=float, default=0.1,
                   help="flag a task as not predictable when its accuracy interval is wider than this (fraction)")
    p.add_argument("--workers", type=int, default=None, help="processes, one task each (default: all cores)")
    p.add_argument("--json", metavar="OUT", help="{target: {task: {loss, acc, acc_lo, acc_hi, ...}}}")
    p.add_argument("--plot", metavar="DIR", help="write the step-1 and step-2 fits of each task as DIR/<task>.png")

    demo = sub.add_parser("demo", help="build the demo corpus, train a small ladder on CPU, fit its laws, report (its "
                                        "time: `ladderlab ladder plan configs/ladder_demo.gin`, printed at the start)")
    demo.add_argument("--quick", action="store_true",
                      help="a smaller ladder on text already on the machine (its time: "
                           "`ladderlab ladder plan configs/ladder_quick.gin`)")
    demo.add_argument("--bundled", action="store_true", help="no training: fit laws on bundled real training runs")
    demo.add_argument("--out", metavar="DIR",
                      help="the ladder folder (default: runs/demo or runs/demo-quick); with --bundled: write "
                           "summary.json, report.txt and the fits' plots there")
    demo.add_argument("--bootstrap", type=int, metavar="B",
                      help="bootstrap refits of the scaling law (default: 100; --quick 30)")
    _add_config(demo, "a LadderConfig file (default: configs/ladder_demo.gin or ladder_quick.gin); with --bundled, "
                      "a BundledDemoConfig file")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    demo.add_argument("--json", metavar="OUT", help="write the demo's results as JSON")

    train = sub.add_parser("train", help="train one model (resumes from the newest checkpoint in its run_dir)")
    _add_config(train, "a .gin or .py file configuring TrainConfig (see configs/train_*.gin)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    train.add_argument("--compile-only", action="store_true",
                       help="lower and compile the train step for the config's mesh on fake CPU devices, print "
                            "per-device memory (GiB) and FLOP figures, and exit without training")
    train.add_argument("--allow-schedule-change", action="store_true",
                       help="resume a run whose steps, lr or schedule fields changed (says which); other changes are "
                            "refused")
    train.add_argument("--json", metavar="OUT", help="write the final metrics (or the compile figures) as JSON")

    data = sub.add_parser("data", help="build corpora, train a tokenizer, inspect a data config")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    p = data_sub.add_parser("build-corpus", help="build the 5-domain demo corpus (or --quick) into the cache")
    p.add_argument("--quick", action="store_true", help="only text already on this machine (stdlib, man pages)")
    p.add_argument("--cache-dir", default="", help="default: $LADDERLAB_CACHE or ~/.cache/ladderlab")
    p.add_argument("--force", action="store_true", help="rebuild even if the corpus is cached")
    p = data_sub.add_parser("train-tokenizer", help="train a SentencePiece BPE tokenizer on a corpus")
    p.add_argument("--corpus", default="quick", help="a corpus folder, 'quick' or 'demo'")
    p.add_argument("--vocab-size", type=int, default=8192, help="pieces in the vocabulary")
    p.add_argument("--max-bytes", type=int, default=2_000_000, help="training text per domain (bytes)")
    p.add_argument("--out", required=True, metavar="FILE.model", help="the tokenizer file to write")
    p.add_argument("--cache-dir", default="", help="default: $LADDERLAB_CACHE or ~/.cache/ladderlab")
    p = data_sub.add_parser("inspect", help="per-domain documents, unique tokens, weights, epochs, eval bytes/token")
    _add_config(p, "a .gin or .py file configuring DataConfig (default: DataConfig's defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--json", metavar="OUT", help="write the per-domain rows as JSON")
    _add_mixture_parsers(sub, laws, what)  # issue 4: mixing laws, CMR, mixture optimisation
    _add_ladder_parsers(sub)  # issue 7: ladder plan / run / status, report
    _add_grow_parsers(sub)  # issue 8: model growth plan / compare / refit
    return parser


def _write_json(path: str | None, doc: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)


def _load_table(args: argparse.Namespace, columns: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    from ladderlab.scaling.table import read_filtered

    cols = read_filtered(args.csv, [*columns, args.loss], args.where)
    if args.drop_highest:
        keep = np.argsort(cols[args.loss])[: max(len(cols[args.loss]) - args.drop_highest, 0)]
        cols = {k: v[np.sort(keep)] for k, v in cols.items()}
    return cols


def cmd_fit(args: argparse.Namespace) -> None:
    if args.law in ("mixing-law", "cmr"):
        return cmd_fit_mixture(args)
    from ladderlab.scaling import report
    from ladderlab.scaling.api import fit, load_fitted
    from ladderlab.scaling.plot import plot_fit

    console = report.make_console()
    opts = dict(bootstrap=args.bootstrap, seed=args.seed, workers=args.workers)
    extra: dict[str, Any] = {}
    if args.law == "chinchilla":
        cols = _load_table(args, [args.n, args.d or args.flops])
        n = cols[args.n]
        d = cols[args.d] if args.d else cols[args.flops] / (6.0 * n)
        x, y = {"N": n, "D": d}, cols[args.loss]
        fitted = fit("chinchilla", x, y, **opts)
        report.print_fit(fitted, f"Chinchilla law fitted to {args.csv}", console)
        rows = report.compute_optimal_rows(fitted, args.budgets)
        console.print(report.rows_table(rows, "compute-optimal allocation", ["flops", "N", "D", "tokens_per_param", "loss"]))
        extra["compute_optimal"] = rows
    elif args.law == "data-constrained":
        cols = _load_table(args, [args.n, args.d, args.unique])
        x, y = {"N": cols[args.n], "D": cols[args.d], "U": cols[args.unique]}, cols[args.loss]
        if args.base_law:
            base = load_fitted(args.base_law)
            if base.law.name != "chinchilla":
                raise LadderlabError(f"{args.base_law}: --base-law must be a chinchilla fit, not {base.law.name}")
        else:
            single = x["D"] <= x["U"]
            base = fit("chinchilla", {"N": x["N"][single], "D": x["D"][single]}, y[single])
            report.print_fit(base, f"base Chinchilla law on the {int(single.sum())} single-epoch rows", console)
        fitted = fit("data-constrained", x, y, fixed=base.params, **opts)
        fitted.warnings.extend(f"base fit: {w}" for w in base.warnings)
        report.print_fit(fitted, f"data-constrained law fitted to {args.csv} (base held fixed)", console)
    else:
        flag, var = ONE_D[args.law]
        cols = _load_table(args, [getattr(args, flag)])
        x, y = {var: cols[getattr(args, flag)]}, cols[args.loss]
        fitted = fit(args.law, x, y, **opts)
        report.print_fit(fitted, f"{args.law} law fitted to {args.csv}", console)
        if args.at:
            rows = report.predictions_rows(fitted, [{var: v} for v in args.at])
            console.print(report.rows_table(rows, "predictions", [var, "prediction"]))
            extra["predictions"] = rows
    _write_json(args.json, {**fitted.to_json(), **extra})
    if args.plot:
        plot_fit(fitted, x, y, args.plot)


def cmd_predict(args: argparse.Namespace) -> None:
    if args.what == "mixture-loss":
        return cmd_predict_mixture(args)
    if args.what == "tasks":
        return cmd_predict_tasks(args)
    from ladderlab.scaling import report
    from ladderlab.scaling.api import load_fitted

    fitted = load_fitted(args.law)
    for point in args.at:
        unknown = set(point) - set(fitted.law.inputs)
        if unknown or len(point) != len(fitted.law.inputs):
            raise LadderlabError(f"--at {point}: the {fitted.law.name} law takes {', '.join(fitted.law.inputs)}")
    rows = report.predictions_rows(fitted, args.at)
    report.make_console().print(report.rows_table(rows, f"{fitted.law.name} predictions", [*fitted.law.inputs, "prediction"]))
    _write_json(args.json, {"law": fitted.law.name, "predictions": rows})


def cmd_predict_tasks(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ladderlab.scaling import task_report, tasks
    from ladderlab.scaling.olmo import MAIN_TASKS, OLMO_N, read_n_table, read_olmo_ladder
    from ladderlab.scaling.plot import plot_task
    from ladderlab.scaling.report import make_console
    from ladderlab.scaling.runs import read_runs, select_ladder

    n_table = {**OLMO_N, **(read_n_table(args.n_table) if args.n_table else {})}
    targets = [task_report.parse_target(t, n_table) for t in args.target]
    if args.format == "olmo":
        everything = read_olmo_ladder(args.runs, n_table)
        runs = read_olmo_ladder(args.runs, n_table, args.sizes, args.multiples)
        default_tasks = MAIN_TASKS
    else:
        everything = select_ladder(read_runs(args.runs), None, None, args.mixture)
        runs = select_ladder(everything, args.sizes, args.multiples)
        default_tasks = tuple(everything.tasks)
    names = args.tasks or [t for t in default_tasks if t in runs.tasks]
    for t in names:
        runs.require_task(t)
    console = make_console()
    laws = tasks.fit(runs, names, args.bootstrap, args.seed, args.max_width, args.workers, last=args.last,
                     window=args.window)
    for table in task_report.laws_tables(laws):
        console.print(table)
    for task, law in laws.laws.items():
        for w in [*law.step1.warnings, *law.step2.warnings]:
            console.print(f"[yellow]warning:[/yellow] {task}: {w}")
    doc = task_report.predictions(laws, targets, everything, args.level, args.last)
    for t in targets:
        console.print(task_report.prediction_table(t, doc[t.name], args.level))
    for task, e in task_report.error_summary(doc).items():
        console.print(f"{task}: mean |error| step-1 loss {e['step1_loss_err_pct']:.2f}%, chained accuracy "
                      f"{e['chain_acc_err_pts']:.2f} pts, single-step {e['single_acc_err_pts']:.2f} pts")
    _write_json(args.json, doc)
    if args.plot:
        Path(args.plot).mkdir(parents=True, exist_ok=True)
        for task, law in laws.laws.items():
            p1, p2 = tasks.step1_points(runs, task, args.last), tasks.step2_points(runs, task, window=args.window)
            plot_task(law, p1, p2, targets, Path(args.plot) / f"{task}.png")


def cmd_demo(args: argparse.Namespace) -> None:
    from ladderlab.config import load_config
    from ladderlab.scaling.report import make_console

    console = make_console()
    if args.bundled:
        from ladderlab.scaling.bundled_demo import BundledDemoConfig, run_bundled_demo

        doc = run_bundled_demo(load_config(BundledDemoConfig, args.config, args.set), console, out=args.out)
    else:
        from ladderlab.demo import default_config, run_demo
        from ladderlab.ladders.ladder_config import LadderConfig
        from ladderlab.ladders.ladder_plan import estimate_s, plan

        cfg = load_config(LadderConfig, args.config or default_config(args.quick), args.set)
        out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
        bootstrap = args.bootstrap if args.bootstrap is not None else 30 if args.quick else 100
        runs = plan(cfg)
        console.print(f"ladder {cfg.name!r}: {len(runs)} runs, estimated {estimate_s(runs) / 60:.1f} min of training "
                      "on this machine (`ladderlab ladder plan`)")
        doc = run_demo(cfg, out, bootstrap=bootstrap, console=console)
    _write_json(args.json, doc)


def cmd_train(args: argparse.Namespace) -> None:
    import math
    import os

    from ladderlab.config import load_config
    from ladderlab.ladders.config import TrainConfig

    overrides = [*args.set, "allow_schedule_change=True"] if args.allow_schedule_change else args.set
    cfg = load_config(TrainConfig, args.config, overrides)
    if args.compile_only:
        if "jax" not in sys.modules and min(cfg.mesh) > 0:  # fake the mesh's devices on this host's CPU
            os.environ["JAX_PLATFORMS"] = "cpu"
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} " \
                                      f"--xla_force_host_platform_device_count={math.prod(cfg.mesh)}".strip()
        from ladderlab.ladders.train import Trainer, compile_report

        doc = Trainer(cfg).compile()
        print(compile_report(doc))
    else:
        from ladderlab.ladders.train import train

        result = train(cfg)
        doc = {k: result[k] for k in ("params", "train", "eval") if k in result}
        print(json.dumps({k: doc[k] for k in ("train", "eval") if k in doc}, indent=2))
    _write_json(args.json, doc)


def cmd_data(args: argparse.Namespace) -> None:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    def table(rows: list[dict[str, Any]], title: str) -> Table:
        out = Table(title=title, title_justify="left")
        for col in rows[0]:
            out.add_column(col, justify="right")
        for row in rows:
            out.add_row(*("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
        return out

    console = Console(width=None if sys.stdout.isatty() else 132)
    if args.data_command == "build-corpus":
        from ladderlab.data.corpus import build_quick, cache_root
        from ladderlab.data.demo_corpus import build_demo

        cache = cache_root(args.cache_dir)
        quick = cache / "corpora" / "quick"
        if args.quick and args.force and quick.exists():
            import shutil

            shutil.rmtree(quick)
        folder = build_quick(quick) if args.quick else build_demo(cache, force=args.force)
        manifest = json.loads((folder / "manifest.json").read_text())
        rows = [{"domain": d, "docs": m["docs"], "MB": m["bytes"] / 1e6, "sha256": m["sha256"][:16]} for d, m in manifest.items()]
        console.print(table(rows, f"corpus {folder}"))
    elif args.data_command == "train-tokenizer":
        from ladderlab.data.corpus import resolve_corpus
        from ladderlab.data.summary import tokenizer_texts
        from ladderlab.data.tokenizer import load_tokenizer, train_sentencepiece

        corpus = resolve_corpus(args.corpus, args.cache_dir)
        out = train_sentencepiece(tokenizer_texts(corpus, args.max_bytes), Path(args.out), args.vocab_size)
        console.print(f"wrote {out} ({load_tokenizer(str(out)).vocab_size} pieces) from {corpus}")
    else:
        from ladderlab.config import load_config
        from ladderlab.data.config import DataConfig
        from ladderlab.data.pipeline import vocab_size
        from ladderlab.data.summary import domain_rows

        cfg = load_config(DataConfig, args.config, args.set)
        rows = domain_rows(cfg)
        console.print(table(rows, f"{cfg.corpus} with tokenizer {cfg.tokenizer} ({vocab_size(cfg)} ids)"))
        for row in rows:
            if row["epochs"] and row["epochs"] > cfg.max_epochs:
                console.print(f"warning: domain {row['domain']!r} needs {row['epochs']:.2f} epochs (max_epochs={cfg.max_epochs:g})")
        _write_json(args.json, {"corpus": cfg.corpus, "tokenizer": cfg.tokenizer, "vocab_size": vocab_size(cfg), "domains": rows})


# --- mixtures (issue 4): fit mixing-law / cmr, predict mixture-loss, optimize mixture ---------------------------
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


def _add_mixture_parsers(sub: Any, laws: Any, what: Any) -> None:
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
    p.add_argument("--tolerance", type=float, required=True, help="allowed absolute increase of general loss")
    p.add_argument("--at-tokens", type=_size, help="CPT tokens of the run to predict (default: the largest)")
    p.add_argument("--at-size", type=_size, help="model size of the run to predict (default: the largest)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap refits over runs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", metavar="OUT", help="write the critical mixture ratio as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="trade-off at the target run and CMR against tokens")
    p = what.add_parser("mixture-loss", help="per-domain losses of new mixtures from a fitted mixing law")
    p.add_argument("--law", required=True, metavar="JSON", help="written by `ladderlab fit mixing-law --json`")
    p.add_argument("--mixtures", required=True, metavar="M2.csv", help="id + one share column per training domain")
    p.add_argument("--out", required=True, metavar="P.csv", help="id + one predicted loss column per validation domain")
    opt = sub.add_parser("optimize", help="optimise a training mixture")
    kinds = opt.add_subparsers(dest="what", required=True, parser_class=Parser)
    p = kinds.add_parser("mixture", help="the mixture minimising a predicted target under share limits and budgets")
    p.add_argument("--law", required=True, metavar="JSON", help="written by `ladderlab fit mixing-law --json`")
    p.add_argument("--objective", type=_target, action="append", default=[], metavar="COL[=WEIGHT]",
                   help="loss column to minimise; repeat with weights for a weighted set (default: mean of all)")
    p.add_argument("--target", type=_target, action="append", dest="objective", help=argparse.SUPPRESS)  # old name
    p.add_argument("--min", type=_kv, action="append", default=[], metavar="DOMAIN=x", help="minimum share (repeatable)")
    p.add_argument("--max", type=_kv, action="append", default=[], metavar="DOMAIN=x", help="maximum share (repeatable)")
    p.add_argument("--budget", type=_kv, action="append", default=[], metavar="DOMAIN=U",
                   help="unique tokens available in DOMAIN (repeatable; needs --tokens)")
    p.add_argument("--tokens", type=_size, help="the run's training tokens (a number or a label like 100B)")
    p.add_argument("--epochs", type=float, default=4.0, metavar="K", help="no domain repeated past K epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starting mixtures")
    p.add_argument("--json", metavar="OUT", help="write the optimal mixture as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="predicted loss over the three largest domains")


def cmd_fit_mixture(args: argparse.Namespace) -> None:
    from ladderlab.scaling.report import make_console

    console = make_console()
    if args.law == "mixing-law":
        from ladderlab.scaling.mixing import fit_mixing_model
        from ladderlab.scaling.mixing_plot import plot_mixing
        from ladderlab.scaling.mixing_report import print_mixing
        from ladderlab.scaling.mixture_table import read_mixture_table

        table = read_mixture_table(args.mixtures, args.losses, args.on, args.loss)
        model = fit_mixing_model(table.proportions, table.losses, args.model, args.latent, seed=args.seed, id_col=args.on)
        print_mixing(model, f"mixing laws fitted to {len(table.ids)} runs of {args.mixtures}", console)
        _write_json(args.json, model.to_json())
        if args.plot:
            plot_mixing(model, args.plot)
    else:
        from ladderlab.scaling.cmr import critical_mixture_ratio
        from ladderlab.scaling.mixing_plot import plot_cmr
        from ladderlab.scaling.mixing_report import print_cmr
        from ladderlab.scaling.table import read_columns

        names = [args.ratio, args.tokens, args.general, args.base, *filter(None, [args.domain, args.size])]
        cols = read_columns(args.csv, names)
        res = critical_mixture_ratio(
            cols[args.ratio], cols[args.tokens], cols[args.general], cols[args.base], tolerance=args.tolerance,
            size=cols.get(args.size), domain_loss=cols.get(args.domain), at_tokens=args.at_tokens,
            at_size=args.at_size, bootstrap=args.bootstrap, seed=args.seed)
        print_cmr(res, console)
        _write_json(args.json, res.to_json())
        if args.plot:
            plot_cmr(res, args.plot)


def cmd_predict_mixture(args: argparse.Namespace) -> None:
    import csv

    from ladderlab.scaling.mixing import load_mixing_model
    from ladderlab.scaling.mixture_table import read_proportions

    model = load_mixing_model(args.law)
    ids, props = read_proportions(args.mixtures, model.id_col, model.domains)
    pred = model.predict(props)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([model.id_col, *pred])
        for i, run in enumerate(ids):
            writer.writerow([run, *(f"{pred[c][i]:.9g}" for c in pred)])
    print(f"wrote {args.out}: {len(ids)} mixtures x {len(pred)} predicted loss columns")


def cmd_optimize(args: argparse.Namespace) -> None:
    from ladderlab.scaling.mixing import load_mixing_model
    from ladderlab.scaling.mixing_report import print_optimum
    from ladderlab.scaling.mixture import optimize_mixture
    from ladderlab.scaling.report import make_console

    model = load_mixing_model(args.law)
    target = dict(args.objective) if args.objective else None
    pred = optimize_mixture(model, target, dict(args.min), dict(args.max), dict(args.budget), args.tokens, args.epochs,
                            seed=args.seed)
    print_optimum(pred, make_console())
    _write_json(args.json, pred.to_json())
    if args.plot:
        from ladderlab.scaling.mixing_plot import plot_landscape

        plot_landscape(model, pred, args.plot)
# --- end of mixtures block ---------------------------------------------------------------------------------------


# --- ladders (issue 7): ladder plan / run / status, report --------------------------------------------------------
def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected INDEX/COUNT, e.g. 0/4, got {text!r}") from None


def _add_ladder_parsers(sub: Any) -> None:
    ladder = sub.add_parser("ladder", help="plan, run and follow a ladder of training runs")
    steps = ladder.add_subparsers(dest="ladder_command", required=True, parser_class=Parser)
    for name, text in (("plan", "print every run: N, D, FLOPs, steps, batch, LR, estimated time"),
                       ("run", "train every unfinished run (resumes interrupted ones) and write runs.csv")):
        p = steps.add_parser(name, help=text)
        _add_config(p, "a .gin or .py file configuring LadderConfig (see configs/ladder_*.gin)", required=True)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
        p.add_argument("--json", metavar="OUT", help="write the plan (or the runs table rows) as JSON")
    p.add_argument("--out", required=True, metavar="DIR", help="the ladder's results folder")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/K",
                   help="take runs I, I+K, I+2K, ... (one process per host group or device group)")
    p = steps.add_parser("status", help="progress of a ladder's runs")
    p.add_argument("dir", help="the ladder's results folder")
    p = sub.add_parser("report", help="fit a ladder's laws; write tables, PNG plots and a Markdown summary")
    p.add_argument("dir", help="the ladder's results folder")
    p.add_argument("--bootstrap", type=int, default=100, metavar="B", help="bootstrap refits of the scaling law")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--target-params", "--target-n", dest="target_n", type=_size, default=0.0, metavar="N",
                   help="target model size for the prediction, e.g. 1e6 or 1M (default: 10x the largest run); "
                        "D = its 1xC")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON")


def _rows_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in ("run", "state", "mixture", "size") else "right")
    for row in rows:
        table.add_row(*("-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.4g}" if isinstance(v, float)
                        else str(v) for v in row.values()))
    return table


def cmd_ladder(args: argparse.Namespace) -> None:
    from ladderlab.scaling.report import make_console

    console = make_console()
    if args.ladder_command == "status":
        from ladderlab.ladders.ladder_run import status_rows

        rows = status_rows(args.dir)
        done = sum(r["state"] == "finished" for r in rows)
        console.print(_rows_table(rows, f"{args.dir}: {done}/{len(rows)} runs finished"))
        return
    from ladderlab.config import load_config
    from ladderlab.ladders.ladder_config import LadderConfig

    cfg = load_config(LadderConfig, args.config, args.set)
    if args.ladder_command == "plan":
        from ladderlab.ladders.ladder_plan import estimate_s, plan

        runs = plan(cfg)
        rows = [r.row() for r in runs]
        shown = [{"run": r["run"], "N": r["N"], "shape": f"d{r['d_model']} L{r['layers']}", "D": r["D"],
                  "FLOPs": r["flops"], "steps": r["steps"], "batch": r["batch"], "lr": r["lr"], "warmup": r["warmup"],
                  "est_s": r["est_s"]} for r in rows]
        console.print(_rows_table(shown, f"ladder {cfg.name!r}: {len(rows)} runs, {sum(r['flops'] for r in rows):.3g} "
                                        f"FLOPs (6ND), estimated {estimate_s(runs) / 60:.1f} min on this machine"))
        _write_json(args.json, {"runs": rows})
    else:
        from ladderlab.ladders.ladder_run import run_ladder

        table = run_ladder(cfg, args.out, shard=args.shard, console=console)
        if table is not None:
            console.print(f"wrote {args.out}/runs.csv: {len(table.run_ids)} runs, {len(table)} rows")
            _write_json(args.json, {"rows": len(table), "runs": table.run_ids})


def cmd_report(args: argparse.Namespace) -> None:
    from ladderlab.ladders.ladder_report import make_report

    _write_json(args.json, make_report(args.dir, bootstrap=args.bootstrap, seed=args.seed, target_n=args.target_n))
# --- end of ladders block ------------------------------------------------------------------------------------------


# --- growth (issue 8): grow plan / compare / refit --------------------------------------------------------------------
def _add_grow_parsers(sub: Any) -> None:
    grow = sub.add_parser("grow", help="model growth (G_stack and other operators): plan a growth run, compare operators")
    steps = grow.add_subparsers(dest="grow_command", required=True, parser_class=Parser)
    p = steps.add_parser("plan", help="growth timing d and factor g for a target size and FLOPs budget (Du et al. 2024)")
    p.add_argument("--target-params", type=_size, required=True, metavar="N",
                   help="the grown model's parameters, e.g. 7e9 or 7B")
    p.add_argument("--budget-flops", type=float, required=True, metavar="C", help="total training FLOPs of both phases")
    p.add_argument("--factor", type=int, default=4, metavar="G", help="growth factor g (4 is the paper's advice)")
    p.add_argument("--json", metavar="OUT", help="write growth_tokens, growth_factor, small_params, large_tokens")
    p = steps.add_parser("compare", help="train a target from scratch and grown by each operator; speed-up table")
    _add_config(p, "a .gin or .py file configuring GrowConfig (see configs/growth_compare.gin)", required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (finished runs are reused)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--json", metavar="OUT", help="write the speed-up rows as JSON")
    p = steps.add_parser("refit", help="refit the timing law log10 d = a log10 N + b / log10 C + c from IsoFLOP sweeps")
    p.add_argument("--csv", "--runs", dest="csv", required=True, metavar="CSV",
                   help="one row per growth run: target params, budget FLOPs, d, final loss")
    for flag, what in (("--n", "target-parameter"), ("--flops", "budget-FLOPs"), ("--d", "growth-tokens"),
                       ("--loss", "loss")):
        p.add_argument(flag, required=True, help=f"{what} column")
    p.add_argument("--json", metavar="OUT", help="write a, b, c and each sweep's best d")


def cmd_grow(args: argparse.Namespace) -> None:
    from ladderlab.scaling.report import make_console

    console = make_console()
    if args.grow_command == "plan":
        from ladderlab.scaling.growth_law import plan_growth

        plan = plan_growth(args.target_params, args.budget_flops, args.factor)
        console.print(_rows_table([{"target N": plan.target_params, "budget C": plan.budget_flops,
                                    "g": plan.growth_factor, "small N": plan.small_params,
                                    "d (tokens)": plan.growth_tokens, "D after growth": plan.large_tokens}],
                                  "growth plan: train N/g for d tokens, stack g times, train D more"))
        _write_json(args.json, plan.to_json())
        return
    if args.grow_command == "refit":
        from ladderlab.scaling.growth_law import fit_timing_law
        from ladderlab.scaling.table import read_columns

        cols = read_columns(args.csv, [args.n, args.flops, args.d, args.loss])
        fit = fit_timing_law(cols[args.n], cols[args.flops], cols[args.d], cols[args.loss])
        console.print(_rows_table(fit["optima"], f"best growth timing per (N, C) sweep of {args.csv}"))
        console.print(f"log10(d) = {fit['a']:.4g} log10(N) + {fit['b']:.4g} / log10(C) + {fit['c']:.4g}  "
                      f"(RMSE {fit['rmse_log10_d']:.3g} in log10 d; the paper: 0.88, 163.27, -5.74)")
        _write_json(args.json, fit)
        return
    from ladderlab.config import load_config
    from ladderlab.ladders.grow_config import GrowConfig
    from ladderlab.ladders.grow_run import compare

    doc = compare(load_config(GrowConfig, args.config, args.set), args.out, console=console)
    shown = [{"run": r["run"], "g": r["g"], "d": r["d"], "final loss": r["final_loss"], "FLOPs": r["flops"],
              "equal loss": r["loss"], "FLOPs scratch": r["flops_scratch"], "FLOPs grown": r["flops_grown"],
              "speed-up %": 100 * r["speedup"]} for r in doc["rows"]]
    console.print(_rows_table(shown, f"{args.out}: speed-up at equal loss = FLOPs_scratch / FLOPs_grown - 1"))
    _write_json(args.json, doc)
# --- end of growth block -------------------------------------------------------------------------------------------


COMMANDS = {"fit": cmd_fit, "predict": cmd_predict, "demo": cmd_demo, "train": cmd_train}
COMMANDS["data"] = cmd_data
COMMANDS["optimize"] = cmd_optimize
COMMANDS["ladder"] = cmd_ladder
COMMANDS["report"] = cmd_report
COMMANDS["grow"] = cmd_grow


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "config_required", False) and args.config is None:
            raise LadderlabError("a config file is required: give CONFIG or --config CONFIG")
        COMMANDS[args.command](args)
    except LadderlabError as e:
        print(f"ladderlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
