"""Run every benchmark with --smoke and check its JSON, so no benchmark silently rots (`make test` runs this).

Each script runs in its own process on tiny sizes; its JSON must carry the keys in KEYS as finite numbers, rates,
times and counts above zero. Prints one line per benchmark and `N passed, M failed`; exit status 1 if any failed.

    python benchmarks/smoke.py [--no-peers] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import NO_PEERS

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"common", "smoke"}
POS, NUM = "positive", "finite"  # a rate, time or count / any finite number (a score, an error, a fitted value)
PEER = "peer "  # prefix: measured on the peer, so null when "baseline" is "skipped"
TIMEOUT_S = 600
WORKERS = 2  # benchmarks run two at a time: a smoke run is mostly XLA compiling, on one thread
SLOWEST = ("cpt_ladder", "wsd_vs_cosine")  # started first, so they overlap each other rather than end the run alone

# benchmark -> {key in its JSON (a.b: key b inside a; 0: the first list item): what its value must be}
KEYS: dict[str, dict[str, str]] = {
    "data_throughput": {
        "pipeline_tok_s": POS, "train_tok_s": POS, "ratio": POS, "batch_size": POS, "seq_len": POS, "devices": POS,
    },
    "device_check": {
        "matmul_flops": POS, "peak_flops": POS, "sizes.0.tok_s": POS, "sizes.0.mfu": POS, "sizes.0.flops_per_token": POS,
        "swarm_speedup": POS, "swarm.vmap_step_s": POS, "swarm.sequential_step_s": POS,
    },
    "fit_scale": {
        "after.0.fit_s": POS, "after.0.peak_rss_mb": POS, "after.1.fit_s": POS, "after.1.peak_rss_mb": POS,
        "after.1.params.alpha": POS, "before.0.fit_s": POS, "before.0.peak_rss_mb": POS, "max_peak_rss_mb": POS,
        "same_optimum.0.objective_rel_gap": NUM, "same_optimum.0.max_param_rel_gap": NUM, "time_exponent": NUM,
    },
    "fit_speed": {
        "n_points": POS, "n_starts": POS, "ladderlab_s": POS, "scipy_loop_s": POS, "speedup": POS,
        "ladderlab_objective": POS, "scipy_loop_objective": POS, "objective_gap": NUM, "params.E": POS,
        "params.alpha": POS, "params.beta": POS,
    },
    "mixture_scaling": {
        "mixtures": POS, "checkpoints": POS, "before.seconds": POS, "after.seconds": POS, "after.fit_s": POS,
        "speedup": POS, "before.mape_vs_truth_pct": NUM, "after.mape_vs_truth_pct": NUM, "after.coverage_90": NUM,
        "joint_recovery.max_param_rel_err": NUM,
    },
    "merge_ablation": {
        "N": POS, "candidates": POS, "mean_spearman": NUM, "mean_spearman_loss_average": NUM,
        "domains.val/code.spearman": NUM, "domains.val/code.mean_gap": NUM, "domains.val/code.spearman_loss_average": NUM,
        "compute.merging.flops": POS, "compute.merging.seconds": POS, "compute.actual.flops": POS,
        "compute.actual.seconds": POS, "runtime_s": POS,
    },
    "mixture_ladder": {
        "target.N": POS, "target.D": POS, "joint.mape_pct": POS, "joint.coverage_90": NUM, "joint.spearman": NUM,
        "joint.seconds": POS, "nested.mape_pct": POS, "nested.coverage_90": NUM, "nested.spearman": NUM,
        "nested.seconds": POS, "joint.columns.loss.mape_pct": POS, "chosen.mape_pct": POS, "chosen.coverage_90": NUM,
    },
    "regmix_rank": {
        "runs": POS, "folds": POS, "lightgbm_rounds": POS, "mean_spearman.plain": NUM, "mean_spearman.log": NUM,
        "mean_spearman.auto": NUM, "mean_spearman.lightgbm": PEER + NUM, "domains.pile_cc.log.rmse_log": POS,
        "seconds.mixing_law_auto.wall": POS, "seconds.lightgbm_fit.wall": PEER + POS,
        "lightgbm_over_mixing_law_time": PEER + POS,
    },
    "swarm_throughput": {
        "models": POS, "ratio": POS, "tok_s.sequential": POS, "tok_s.sequential_dp": POS, "tok_s.vmap": POS,
        "tok_s.chunked": POS, "tok_s.sharded": POS, "host_devices": POS, "flops_per_token": POS,
        "matmul_flop_s": POS, "sequential_step_costs.row_s": NUM,
    },
    "task_ladder": {
        "tasks": POS, "bootstrap": POS, "seconds": POS, "fit_runs": POS, "chain_interval_coverage_90": NUM,
        "mean_abs_error.mmlu.step1_loss_err_pct": POS, "mean_abs_error.mmlu.chain_acc_err_pts": POS,
        "step1_params.mmlu.alpha": POS, "bridge_params.mmlu.kappa": POS,
        "summary.3B_from_16_runs.default.mean_chain_acc_err_pts": POS, "summary.3B_from_16_runs.default.coverage_90": NUM,
        "summary.1B_from_190M-760M.default.mean_chain_acc_err_pts": POS,
        "summary.1B_from_190M-760M.default.coverage_90": NUM, "summary.1B_from_190M-760M.default.mean_width_pts": POS,
        "summary.3B_from_16_runs.default.mean_width_pts_laws_only": POS,
    },
    "train_throughput": {
        "ladderlab_tok_s": POS, "torch_tok_s": PEER + POS, "ratio": PEER + POS, "headline_params": POS,
        "batch": POS, "seq_len": POS, "configs.0.non_embedding": POS, "configs.0.flops_per_token": POS,
        "matmul_flops.jax": POS, "configs.0.ladderlab_peak_share": POS,
    },
    "validate_anchors": {
        "runtime_s": POS, "bootstrap": POS, "datablations.n_runs": POS, "datablations.published_base_fixed.R_D*": POS,
        "datablations.published_base_fixed.R_N*": POS, "datablations.base_from_data.R_D*": POS,
        "overtraining.N=params.overall_mean_mape_pct": POS,
        "overtraining.bootstrap_c4_val.c4_original.coverage_90": NUM,
    },
    "wsd_ladder": {
        "bootstrap": POS, "seconds": POS, "fit_runs": POS, "fit_points": POS, "params.alpha": POS,
        "cross_size.mape_pct": POS, "cross_size.coverage_90": NUM, "per_size.mape_pct": POS,
        "per_size.coverage_90": NUM,
    },
    "cpt_ladder": {
        "runtime_s": POS, "runs": POS, "phases": POS, "held_out_rmse.cpt": POS, "held_out_rmse.cpt+jump": POS,
        **{f"forms.{form}.{key}": kind for form in ("cpt", "cpt+jump") for key, kind in (
            ("held_out_share.mean_abs_final_error_pct", POS), ("held_out_peak_rate.mean_abs_final_error_pct", POS),
            ("held_out_schedule.mean_abs_final_error_pct", POS), ("held_out_schedule.mean_curve_mape_pct", POS),
            ("cmr.law", NUM), ("cmr.law_from_measured_base", NUM), ("cmr.observed.cmr_at_least", NUM))},
    },
    "wsd_vs_cosine": {
        "runtime_s": POS, "wsd.flops": POS, "cosine.flops": POS, "flops_ratio_wsd_to_cosine": POS, "wsd.seconds": POS,
        "cosine.seconds": POS, "held_out.wsd.loss": POS, "held_out.cosine.loss": POS,
        "wsd.predictions.wsd.chinchilla_error_pct": NUM, "wsd.predictions.wsd.annealing_error_pct": NUM,
        "cosine.predictions.cosine.chinchilla_error_pct": NUM, "cosine.predictions.cosine.annealing_error_pct": NUM,
    },
}


def lookup(doc: Any, key: str) -> Any:
    """The value at a dotted key (null below a null); KeyError naming the key when any part is missing."""
    for part in key.split("."):
        if doc is None:
            return None
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise KeyError(key) from None
    return doc


def problem(doc: dict[str, Any], keys: dict[str, str], no_peers: bool) -> str | None:
    """What is wrong with a benchmark's JSON, or None."""
    peered = any(kind.startswith(PEER) for kind in keys.values())
    if peered and "baseline" not in doc:
        return 'no "baseline" key'
    skipped = doc.get("baseline") == "skipped"
    if peered and no_peers and not skipped:
        return f'baseline {doc["baseline"]!r} with ${NO_PEERS} set (expected "skipped")'
    for key, kind in keys.items():
        try:
            value = lookup(doc, key)
        except KeyError:
            return f"missing key {key}"
        if kind.startswith(PEER) and skipped:
            if value is not None:
                return f"{key} = {value!r}, expected null (baseline skipped)"
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{key} = {value!r}, expected a finite number"
        if kind.endswith(POS) and value <= 0:
            return f"{key} = {value!r}, expected > 0"
    return None


class Failed(Exception):
    """A benchmark's smoke run failed; the message says why."""


def run(name: str, folder: Path, env: dict[str, str], no_peers: bool) -> str:
    """Run one benchmark with --smoke and check its JSON; what its report line says after "ok"."""
    if name not in KEYS:
        raise Failed("not in smoke.py's KEYS table")
    out, start = folder / f"{name}.json", time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--smoke", "--json", str(out)],
                              capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Failed(f"no result within {TIMEOUT_S} s") from None
    if proc.returncode:
        raise Failed(f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['(no stderr)'])[-1]}")
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise Failed(f"no JSON in {out.name} ({e})") from None
    bad = problem(doc, KEYS[name], no_peers)
    if bad:
        raise Failed(bad)
    baseline = f", baseline {doc['baseline']}" if "baseline" in doc else ""
    return f"{len(KEYS[name])} keys{baseline}, {time.perf_counter() - start:.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: every script in benchmarks/)")
    ap.add_argument("--no-peers", action="store_true", help=f"set ${NO_PEERS}: every peer counts as not installed")
    args = ap.parse_args()
    names = args.names or sorted(p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS)
    names.sort(key=lambda name: name not in SLOWEST)
    # Smoke timings mean nothing, so XLA may skip most optimisations (halves compile time).
    env = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1", **({NO_PEERS: "1"} if args.no_peers else {})}
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(WORKERS) as pool:
        def outcome(name: str) -> str:
            try:
                return f"ok, {run(name, Path(tmp), env, args.no_peers)}"
            except Failed as e:
                return f"FAILED {e}"

        for name, line in zip(names, pool.map(outcome, names)):
            failed += line.startswith("FAILED")
            print(f"smoke {name}: {line}", flush=True)
    print(f"{len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
