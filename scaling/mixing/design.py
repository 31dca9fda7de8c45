"""Which mixtures to train for a mixing-law fit: dyadic-grid or uniform candidates, thinned to a space-filling set.

Dyadic candidates follow Ye et al.: every share is 0 or 2^-s (down to 1/128), drawn domain by domain in random
order within the mass left, the last domain taking the rest. Greedy maximin selection (each pick farthest from
those already picked) then spreads the n mixtures over the simplex, which also thins crowded regions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ladderlab.errors import LadderlabError

DYADIC = (0.0,) + tuple(2.0**-s for s in range(8))
METHODS = ("dyadic", "uniform")


def _dyadic(m: int, rng: np.random.Generator) -> np.ndarray:
    r, left = np.zeros(m), 1.0
    order = rng.permutation(m)
    for j in order[:-1]:
        r[j] = rng.choice([v for v in DYADIC if v <= left + 1e-12])
        left -= r[j]
    r[order[-1]] = left
    return r


def propose_mixtures(domains: Sequence[str], n: int, method: str = "dyadic", seed: int = 0) -> dict[str, np.ndarray]:
    """n distinct, spread-out training mixtures over `domains` (domain -> n shares)."""
    if method not in METHODS:
        raise LadderlabError(f"unknown design method {method!r} (known: {', '.join(METHODS)})")
    m = len(domains)
    rng = np.random.default_rng(seed)
    pool = rng.dirichlet(np.ones(m), 50 * n) if method == "uniform" else np.array([_dyadic(m, rng) for _ in range(50 * n)])
    pool = np.unique(np.round(pool, 12), axis=0)
    pool /= pool.sum(axis=1, keepdims=True)
    if len(pool) < n:
        raise LadderlabError(f"only {len(pool)} distinct {method} mixtures over {m} domains; ask for fewer than {n}")
    picked = [int(np.argmin(np.linalg.norm(pool - 1.0 / m, axis=1)))]
    dist = np.linalg.norm(pool - pool[picked[0]], axis=1)
    while len(picked) < n:
        picked.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(pool - pool[picked[-1]], axis=1))
    return dict(zip(domains, pool[picked].T))
