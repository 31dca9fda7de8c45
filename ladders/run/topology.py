"""TPU slices by name (each chip's HBM, bf16 peak, hosts and libtpu topology string) and deviceless compiles of a
run's train step against them with libtpu's compiler (the `tpu` extra), as MaxText's train_compile does.

Names: Cloud TPU's `v5e-16`, `v5litepod-16`, `v6e-8` (chips) or `v5p-32`, `v4-16` (TensorCores, two per chip), or
JAX's own `v5e:4x4`, `v5p:2x2x4`. The compile needs no TPU: it builds the slice's compile-only devices on this host.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig


@dataclass(frozen=True)
class Chip:
    """One TPU generation: per-chip HBM (GiB) and dense bf16 peak (FLOP/s), chips per host, TensorCores a slice
    name counts per chip, the topology's rank (2: AxB, 3: AxBxC) and its Cloud accelerator-type prefix."""

    hbm_gib: float
    peak_flops: float
    chips_per_host: int
    cores_per_name: int
    rank: int
    cloud: str


# Google's published per-chip figures (Cloud TPU system architecture pages).
CHIPS: dict[str, Chip] = {
    "v4": Chip(32, 275e12, 4, 2, 3, "v4"),
    "v5e": Chip(16, 197e12, 4, 1, 2, "v5litepod"),
    "v5p": Chip(95, 459e12, 4, 2, 3, "v5p"),
    "v6e": Chip(32, 918e12, 4, 1, 2, "v6e"),
}
ALIASES = {"v5litepod": "v5e", "v5": "v5p"}  # Cloud's v5e accelerator type; MaxText's v5p topology prefix


@dataclass(frozen=True)
class Topology:
    name: str  # as the user gave it
    chip: str  # a key of CHIPS
    topology: str  # libtpu's name, e.g. "v5e:4x4"
    chips: int

    @property
    def spec(self) -> Chip:
        return CHIPS[self.chip]

    @property
    def hosts(self) -> int:
        return math.ceil(self.chips / self.spec.chips_per_host)

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "chip": self.chip, "topology": self.topology, "chips": self.chips,
                "hosts": self.hosts, "hbm_gib": self.spec.hbm_gib, "peak_flops": self.spec.peak_flops}


def parse_topology(name: str) -> Topology:
    """`v5e-16` / `v5p-32` / `v5e:4x4` -> Topology; an unknown chip or a count with no standard shape is one line."""
    cloud = re.fullmatch(r"([a-z0-9]+)-(\d+)", name)
    shape = re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)+)", name)
    prefix = (cloud or shape)[1] if cloud or shape else re.match(r"[a-z0-9]*", name)[0]
    chip = ALIASES.get(prefix, prefix)
    if chip not in CHIPS:
        raise LadderlabError(f"--topology {name!r}: unknown TPU {prefix!r}; expected one of "
                             f"{', '.join([*CHIPS, *ALIASES])} as NAME-COUNT (v5e-16, v5p-32) or JAX's CHIP:AxB[xC] "
                             "(v5e:4x4)")
    spec = CHIPS[chip]
    if shape:
        dims = [int(d) for d in shape[2].split("x")]
        if len(dims) != spec.rank:
            raise LadderlabError(f"--topology {name!r}: a {chip} topology has {spec.rank} dimensions")
        return Topology(name, chip, f"{chip}:{shape[2]}", math.prod(dims))
    if not cloud:
        raise LadderlabError(f"--topology {name!r}: expected NAME-COUNT (v5e-16, v5p-32) or CHIP:AxB[xC] (v5e:4x4)")
    count = int(cloud[2])
    chips = count // spec.cores_per_name
    dims = _dims(chips, spec.rank)
    if dims is None or chips * spec.cores_per_name != count:
        raise LadderlabError(f"--topology {name!r}: {count} is not a {chip} slice size with a standard shape; "
                             f"name the shape as {chip}:{'x'.join(['A', 'B', 'C'][:spec.rank])}")
    return Topology(name, chip, f"{chip}:{'x'.join(map(str, dims))}", chips)


def _dims(chips: int, rank: int) -> list[int] | None:
    """The standard slice shape of a power-of-two chip count: v5e-16 -> 4x4, v5e-8 -> 2x4, v5p-32 -> 2x2x4."""
    if chips < 1 or chips & (chips - 1):
        return None
    e = chips.bit_length() - 1
    if rank == 2:
        return [2 ** (e // 2), 2 ** (e - e // 2)]
    if chips < 8:  # one host's chips: 1x1x1, 2x1x1, 2x2x1
        return [min(chips, 2), max(chips // 2, 1), 1]
    return [2 ** (e // 3 + (i >= 3 - e % 3)) for i in range(3)]


def topology_devices(topo: Topology) -> list[Any]:
    """The slice's compile-only devices, from libtpu's compiler on this host (no TPU needed)."""
    if importlib.util.find_spec("libtpu") is None:
        raise LadderlabError(f"--topology {topo.name}: libtpu's compiler is not installed; "
                             "pip install 'ladderlab[tpu]'")
    # what a TPU VM's metadata would say; without them libtpu prints warnings (set only where unset)
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{topo.spec.cloud}-{topo.chips * topo.spec.cores_per_name}")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # no chip is touched, so compiles may run side by side (libtpu otherwise locks /tmp/libtpu_lockfile)
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    dims = [int(d) for d in topo.topology.split(":")[1].split("x")] + [1]
    host = tuple(min(d, b) for d, b in zip(dims, (2, 2, 1)))  # a host's 4 chips as 2x2, fewer in a smaller slice
    return list(topologies.get_topology_desc(topology_name=topo.topology, platform="tpu",
                                             chips_per_host_bounds=host).devices)


def for_tpu(cfg: TrainConfig) -> TrainConfig:
    """cfg as a TPU runs it: the model compiles for platform tpu (bf16 for `auto` compute, splash for `auto`
    attention) although this host's backend is the CPU."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, platform="tpu"))


def compile_on(cfg: TrainConfig, topo: Topology) -> dict[str, Any]:
    """`Trainer.compile`'s figures for cfg's train step compiled for the slice, with the verdict against the chip's
    HBM (`fits`) and the step time at the chips' peak (`step_s_at_peak`). That time counts the step's FLOPs with
    `model.counts` (causal attention at half): XLA's cost analysis (`flops_per_device`) counts a loop's body once,
    so it misses all but one layer of a scanned model, micro-batch and loss chunk."""
    from ladderlab.ladders.run.train import Trainer

    known = math.prod(s for s in cfg.mesh if s != -1)
    if (-1 in cfg.mesh and topo.chips % known) or (-1 not in cfg.mesh and known != topo.chips):
        raise LadderlabError(f"mesh={tuple(cfg.mesh)} does not match --topology {topo.name} ({topo.topology}, "
                             f"{topo.chips} chips)")
    doc = Trainer(for_tpu(cfg), topology_devices(topo)).compile()
    fits = "out_of_memory" not in doc and doc["hbm_gib_per_device"] <= topo.spec.hbm_gib
    flops = doc["tokens_per_step"] * doc["flops_per_token"]["causal"]
    return {**doc, "topology": topo.row(), "fits": fits, "step_s_at_peak": flops / (topo.chips * topo.spec.peak_flops)}
