"""`ladderlab demo`, `train` and `data`: build corpora and tokenizers, train one model or the demo ladder."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ladderlab.cli_args import add_config, add_group, add_set, write_json
from ladderlab.errors import LadderlabError

CACHE_HELP = "default: $LADDERLAB_CACHE or ~/.cache/ladderlab"


def add_parsers(sub: Any) -> None:
    """Adds `demo`, `train` and `data` with its subcommands."""
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
    add_config(demo, "a LadderConfig file (default: configs/ladder_demo.gin or ladder_quick.gin); with --bundled, "
                     "a BundledDemoConfig file")
    add_set(demo)
    demo.add_argument("--json", metavar="OUT", help="write the demo's results as JSON")

    train = sub.add_parser("train", help="train one model (resumes from the newest checkpoint in its run_dir)")
    add_config(train, "a .gin or .py file configuring TrainConfig (see configs/train_*.gin)")
    add_set(train)
    train.add_argument("--compile-only", action="store_true",
                       help="lower and compile the train step for the config's mesh on fake CPU devices (or a "
                            "--topology), print per-device memory (GiB) and FLOP figures, and exit without training")
    train.add_argument("--topology", metavar="TPU",
                       help="with --compile-only: compile for this TPU slice with libtpu's compiler (the tpu extra), "
                            "e.g. v5e-16, v5p-32 or v5e:4x4, and say whether it fits the chip's HBM")
    train.add_argument("--allow-schedule-change", action="store_true",
                       help="resume a run whose steps, lr or schedule fields changed (says which); other changes are "
                            "refused")
    train.add_argument("--json", metavar="OUT", help="write the final metrics (or the compile figures) as JSON")

    data = add_group(sub, "data", "build corpora, train a tokenizer, inspect a data config", "data_command")
    p = data.add_parser("build-corpus", help="build the 5-domain demo corpus (or --quick) into the cache")
    p.add_argument("--quick", action="store_true", help="only text already on this machine (stdlib, man pages)")
    p.add_argument("--cache-dir", default="", help=CACHE_HELP)
    p.add_argument("--force", action="store_true", help="rebuild even if the corpus is cached")
    p = data.add_parser("train-tokenizer", help="train a SentencePiece BPE tokenizer on a corpus")
    p.add_argument("--corpus", default="quick", help="a corpus folder, 'quick' or 'demo'")
    p.add_argument("--vocab-size", type=int, default=8192, help="pieces in the vocabulary")
    p.add_argument("--max-bytes", type=int, default=2_000_000, help="training text per domain (bytes)")
    p.add_argument("--out", required=True, metavar="FILE.model", help="the tokenizer file to write")
    p.add_argument("--cache-dir", default="", help=CACHE_HELP)
    p = data.add_parser("inspect", help="per-domain documents, unique tokens, weights, epochs, eval bytes/token")
    add_config(p, "a .gin or .py file configuring DataConfig (default: DataConfig's defaults)")
    add_set(p)
    p.add_argument("--json", metavar="OUT", help="write the per-domain rows as JSON")


def demo(args: argparse.Namespace) -> None:
    """`demo`: train and report the demo ladder, or (--bundled) fit laws on the bundled runs."""
    from ladderlab.config import load_config
    from ladderlab.console import make_console

    console = make_console()
    if args.bundled:
        from ladderlab.scaling.bundled_demo import BundledDemoConfig, run_bundled_demo

        doc = run_bundled_demo(load_config(BundledDemoConfig, args.config, args.set), console, out=args.out)
    else:
        from ladderlab.demo import default_config, run_demo
        from ladderlab.ladders.config import LadderConfig
        from ladderlab.ladders.plan import estimate_s, plan

        cfg = load_config(LadderConfig, args.config or default_config(args.quick), args.set)
        out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
        bootstrap = args.bootstrap if args.bootstrap is not None else 30 if args.quick else 100
        runs = plan(cfg)
        console.print(f"ladder {cfg.name!r}: {len(runs)} runs, estimated {estimate_s(runs) / 60:.1f} min of training "
                      "on this machine (`ladderlab ladder plan`)")
        doc = run_demo(cfg, out, bootstrap=bootstrap, console=console)
    write_json(args.json, doc)


def train(args: argparse.Namespace) -> None:
    """`train`: one run to its end, or (--compile-only) its train step's memory and FLOP figures."""
    import math
    import os

    from ladderlab.config import load_config
    from ladderlab.ladders.run.config import TrainConfig

    overrides = [*args.set, "allow_schedule_change=True"] if args.allow_schedule_change else args.set
    cfg = load_config(TrainConfig, args.config, overrides)
    if args.topology and not args.compile_only:
        raise LadderlabError(f"--topology {args.topology}: only with --compile-only")
    if args.compile_only:
        if args.topology:  # the slice's devices come from libtpu; jax itself stays on the CPU
            from ladderlab.ladders.run.topology import compile_on, parse_topology

            topo = parse_topology(args.topology)
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        elif "jax" not in sys.modules and min(cfg.mesh) > 0:  # fake the mesh's devices on this host's CPU
            os.environ["JAX_PLATFORMS"] = "cpu"
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} " \
                                      f"--xla_force_host_platform_device_count={math.prod(cfg.mesh)}".strip()
        from ladderlab.ladders.run.train import Trainer, compile_report

        doc = compile_on(cfg, topo) if args.topology else Trainer(cfg).compile()
        print(compile_report(doc))
    else:
        from ladderlab.ladders.run.train import train as train_run

        result = train_run(cfg)
        doc = {k: result[k] for k in ("params", "train", "eval") if k in result}
        print(json.dumps({k: doc[k] for k in ("train", "eval") if k in doc}, indent=2))
    write_json(args.json, doc)


def build_corpus(args: argparse.Namespace) -> None:
    """`data build-corpus`: the demo corpus, or (--quick) the one from text already on the machine."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.data.corpus import build_quick, cache_root
    from ladderlab.data.demo_corpus import build_demo

    cache = cache_root(args.cache_dir)
    quick = cache / "corpora" / "quick"
    if args.quick and args.force and quick.exists():
        import shutil

        shutil.rmtree(quick)
    folder = build_quick(quick) if args.quick else build_demo(cache, force=args.force)
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = [{"domain": d, "docs": m["docs"], "MB": m["bytes"] / 1e6, "sha256": m["sha256"][:16]}
            for d, m in manifest.items()]
    make_console().print(rows_table(rows, f"corpus {folder}"))


def train_tokenizer(args: argparse.Namespace) -> None:
    """`data train-tokenizer`: a SentencePiece BPE tokenizer from a corpus's text (--out: local or a URL)."""
    from ladderlab.console import make_console
    from ladderlab.data.corpus import resolve_corpus
    from ladderlab.data.summary import tokenizer_texts
    from ladderlab.data.tokenizer import load_tokenizer, train_sentencepiece

    corpus = resolve_corpus(args.corpus, args.cache_dir)
    out = train_sentencepiece(tokenizer_texts(corpus, args.max_bytes), args.out, args.vocab_size)
    make_console().print(f"wrote {out} ({load_tokenizer(str(out)).vocab_size} pieces) from {corpus}")


def inspect_data(args: argparse.Namespace) -> None:
    """`data inspect`: per-domain documents, tokens, weights and epochs of a DataConfig."""
    from ladderlab.config import load_config
    from ladderlab.console import make_console, rows_table
    from ladderlab.data.config import DataConfig
    from ladderlab.data.pipeline import vocab_size
    from ladderlab.data.summary import domain_rows

    console = make_console()
    cfg = load_config(DataConfig, args.config, args.set)
    rows = domain_rows(cfg)
    console.print(rows_table(rows, f"{cfg.corpus} with tokenizer {cfg.tokenizer} ({vocab_size(cfg)} ids)"))
    for row in rows:
        if row["epochs"] and row["epochs"] > cfg.max_epochs:
            console.print(f"warning: domain {row['domain']!r} needs {row['epochs']:.2f} epochs "
                          f"(max_epochs={cfg.max_epochs:g})")
    write_json(args.json, {"corpus": cfg.corpus, "tokenizer": cfg.tokenizer, "vocab_size": vocab_size(cfg),
                           "domains": rows})
