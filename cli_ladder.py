"""`ladderlab ladder plan / run / status` and `ladderlab report`: run a ladder of training runs and fit its laws."""

from __future__ import annotations

import argparse
from typing import Any

from ladderlab.cli_args import add_config, add_group, add_set, size_arg, write_json
from ladderlab.errors import LadderlabError


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected INDEX/COUNT, e.g. 0/4, got {text!r}") from None


def add_parsers(sub: Any) -> None:
    """Adds `ladder` with its subcommands, and `report`."""
    steps = add_group(sub, "ladder", "plan, run and follow a ladder of training runs", "ladder_command")
    for name, text in (("plan", "print every run: N, D, FLOPs, steps, batch, LR, estimated time"),
                       ("run", "train every unfinished run (resumes interrupted ones) and write runs.csv")):
        p = steps.add_parser(name, help=text)
        add_config(p, "a .gin or .py file configuring LadderConfig (see configs/ladder_*.gin)", required=True)
        add_set(p)
        p.add_argument("--json", metavar="OUT", help="write the plan (or the runs table rows) as JSON")
        if name == "plan":
            p.add_argument("--topology", metavar="TPU",
                           help="compile each size's train step for this TPU slice with libtpu's compiler (the tpu "
                                "extra; e.g. v5e-16, v5p-32, v5e:4x4): its HBM per device, whether it fits, and "
                                "each run's time from the compiled FLOPs and the chip's peak")
            p.add_argument("--mfu", type=float, default=0.4,
                           help="with --topology: the share of the chip's peak a step reaches (levanter: 0.42 at "
                                "1.4B on v3-256)")
    p.add_argument("--out", required=True, metavar="DIR", help="the ladder's results folder")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/K",
                   help="take runs I, I+K, I+2K, ... (one process per host group or device group)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: train here; ray: each run (or swarm) a Ray task with the config's ray_resources, "
                        "retried when its worker dies, results written by this process (the ray extra; --out and "
                        "the corpus must be reachable from every node, e.g. gs://)")
    p.add_argument("--address", metavar="ADDR",
                   help="with --executor ray: the cluster to join (e.g. auto, or ray://HOST:10001); default: start "
                        "a local Ray")
    p = steps.add_parser("status", help="progress of a ladder's runs")
    p.add_argument("dir", help="the ladder's results folder")
    p = sub.add_parser("report", help="fit a ladder's laws; write tables, PNG plots and a Markdown summary")
    p.add_argument("dir", help="the ladder's results folder")
    p.add_argument("--bootstrap", type=int, default=100, metavar="B", help="bootstrap refits of the scaling law")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--target-params", "--target-n", dest="target_n", type=size_arg, default=0.0, metavar="N",
                   help="target model size for the prediction, e.g. 1e6 or 1M (default: 10x the largest run); "
                        "D = its 1xC")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON")


def _ladder_config(args: argparse.Namespace) -> Any:
    from ladderlab.config import load_config
    from ladderlab.ladders.config import LadderConfig

    return load_config(LadderConfig, args.config, args.set)


def plan(args: argparse.Namespace) -> None:
    """`ladder plan`: every run's shape, tokens, FLOPs, steps, batch, LR and estimated time."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.ladders.plan import branch_saving, estimate_s, plan as plan_runs

    console = make_console()
    cfg = _ladder_config(args)
    runs = plan_runs(cfg)
    rows = [r.row() for r in runs]
    shown = [{"run": r["run"], "N": r["N"], "shape": f"d{r['d_model']} L{r['layers']}", "D": r["D"],
              "FLOPs": r["flops"], "steps": r["steps"], "batch": r["batch"], "lr": r["lr"], "warmup": r["warmup"],
              "est_s": r["est_s"]} for r in rows]
    title = f"ladder {cfg.name!r}: {len(rows)} runs, {sum(r['flops'] for r in rows):.3g} FLOPs (6ND), estimated " \
            f"{estimate_s(runs) / 60:.1f} min on this machine"
    saving = branch_saving(runs) if cfg.branches else None
    if saving:  # a branch's FLOPs are its cooldown's, so the sum above is what the ladder trains
        for show, r in zip(shown, rows):
            show["from"] = f"{r['branch_of']}@{r['branch_step']}" if r["branch_of"] else ""
        title += f"; decay branches: {saving['flops']:.3g} FLOPs against {saving['separate_flops']:.3g} for the " \
                 f"same runs trained separately (cosine ladder), {100 * saving['saved']:.0f}% saved"
    if args.topology:
        title = _on_topology(cfg, runs, rows, shown, args.topology, args.mfu)
    console.print(rows_table(shown, title))
    write_json(args.json, {"runs": rows, **({"branches": saving} if saving else {})})


def _on_topology(cfg: Any, runs: list, rows: list[dict], shown: list[dict], topology: str, mfu: float) -> str:
    """Adds each run's compiled HBM per device, verdict and time on the TPU slice to its rows; returns the title."""
    import os

    if not 0 < mfu <= 1:
        raise LadderlabError(f"--mfu {mfu}: must be in (0, 1]")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the slice's devices come from libtpu; jax stays on the CPU
    from ladderlab.ladders.plan import compile_rungs

    compiled = compile_rungs(cfg, runs, topology)
    for row, show in zip(rows, shown):
        doc = compiled[row["size"]]
        row.update({"hbm_gib_per_device": doc["hbm_gib_per_device"], "fits": doc["fits"],
                    "tpu_step_s": doc["step_s_at_peak"] / mfu, "tpu_est_s": row["steps"] * doc["step_s_at_peak"] / mfu})
        for key in ("FLOPs", "lr", "warmup", "est_s"):  # room for the TPU columns
            del show[key]
        show.update({"HBM GiB": doc["hbm_gib_per_device"], "fits": "yes" if doc["fits"] else "NO",
                     "step_s": row["tpu_step_s"], "tpu_h": row["tpu_est_s"] / 3600})
    topo = next(iter(compiled.values()))["topology"]
    unfit = list(dict.fromkeys(r["size"] for r in rows if not r["fits"]))
    return (f"ladder {cfg.name!r} on TPU {topo['name']} ({topo['topology']}, {topo['hbm_gib']:g} GiB HBM per chip): "
            f"{len(rows)} runs, {sum(r['tpu_est_s'] for r in rows) / 3600:.3g} h at {mfu:.0%} of the chips' peak"
            + (f"; sizes that do not fit: {', '.join(unfit)}" if unfit else "; every size fits"))


def run(args: argparse.Namespace) -> None:
    """`ladder run`: train every unfinished run of this shard, then write runs.csv of the finished ones."""
    from ladderlab.console import make_console
    from ladderlab.ladders.runner import run_ladder

    console = make_console()
    table = run_ladder(_ladder_config(args), args.out, shard=args.shard, console=console, executor=args.executor,
                       address=args.address)
    if table is not None:
        console.print(f"wrote {args.out}/runs.csv: {len(table.run_ids)} runs, {len(table)} rows")
        write_json(args.json, {"rows": len(table), "runs": table.run_ids})


def status(args: argparse.Namespace) -> None:
    """`ladder status`: each run's state and progress."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.ladders.runner import status_rows

    rows = status_rows(args.dir)
    done = sum(r["state"] == "finished" for r in rows)
    make_console().print(rows_table(rows, f"{args.dir}: {done}/{len(rows)} runs finished"))


def report(args: argparse.Namespace) -> None:
    """`report`: a ladder's laws, tables, plots and Markdown summary."""
    from ladderlab.ladders.report import make_report

    write_json(args.json, make_report(args.dir, bootstrap=args.bootstrap, seed=args.seed, target_n=args.target_n))
