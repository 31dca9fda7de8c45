"""`ladderlab ablate`: data ablations by merging: train a base run and one model per data partition, then score
candidate mixtures by evaluating share-weighted averages of the partition models' parameters (`variants.merge`)."""

from __future__ import annotations

import argparse
from typing import Any

from ladderlab.cli_args import add_config, add_set


def add_parsers(sub: Any) -> None:
    """Adds `ablate`."""
    p = sub.add_parser("ablate", help="score mixtures without training them: evaluate share-weighted averages of "
                                      "partition models (CPT phases on one domain each) continued from one base run")
    add_config(p, "a .gin or .py file configuring LadderConfig with one CPT phase per partition "
                  "(see configs/ablate_demo.gin)", required=True)
    add_set(p)
    p.add_argument("--mixtures", required=True, metavar="M.csv",
                   help="candidate mixtures: id column first, then one share column per partition (a missing "
                        "partition has share 0; rows are renormalised over the partitions)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the ladder's results folder; writes DIR/ablation/proxy_losses.csv and ablation.json")


def ablate(args: argparse.Namespace) -> None:
    """`ablate`: train (or resume) the base run and partition models, then write the candidates' proxy losses."""
    from ladderlab.config import load_config
    from ladderlab.console import make_console
    from ladderlab.ladders.config import LadderConfig
    from ladderlab.ladders.runner import run_ladder
    from ladderlab.ladders.variants.merge import ablate as evaluate, read_candidates

    console = make_console()
    cfg = load_config(LadderConfig, args.config, args.set)
    ablation = read_candidates(cfg, args.mixtures)  # a bad table fails before any training
    run_ladder(cfg, args.out, console=console)
    doc = evaluate(cfg, args.out, ablation)
    flops, seconds = doc["flops"], doc["seconds"]
    console.print(f"wrote {args.out}/ablation/proxy_losses.csv: {doc['candidates']} mixtures x "
                  f"{len(doc['losses'])} validation losses, from {len(doc['partitions'])} partition models of "
                  f"{doc['base_run']}")
    console.print(f"compute: merging {flops['merging']['total']:.3g} FLOPs ({seconds['merging']['total']:.1f} s) "
                  f"against {flops['training']['total']:.3g} FLOPs (about {seconds['training']['total']:.0f} s) to "
                  f"train every mixture from the base; details in {args.out}/ablation/ablation.json")
