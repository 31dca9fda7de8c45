"""Map a function over jobs in forked worker processes, or in this process where forking is unsafe or pointless."""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence


def map_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> list[Any]:
    """[fn(job) for job in jobs], spread over `workers` forked processes; in this process when workers is 1 or
    JAX is loaded (never fork a process that runs JAX's threads)."""
    if workers == 1 or "jax" in sys.modules:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fn, jobs))
