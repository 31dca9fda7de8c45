"""Are predicted mixtures told apart? Orders of mixtures and an optimum's gains judged against prediction draws.

Draws (bootstrap replicates of the joint law, propagated error draws of the nested pipeline) are paired across
mixtures, so a difference is judged with its own uncertainty: an order that flips in more than FLIP of the draws
is not established.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

FLIP = 0.1


def _finite(draws_BxN: np.ndarray) -> np.ndarray:
    return draws_BxN[np.isfinite(draws_BxN).all(axis=1)]


def separation(ids: Sequence[str], point_N: np.ndarray, draws_BxN: np.ndarray) -> dict[str, Any]:
    """The best mixture (lowest predicted loss) and every other whose order against it flips in more than FLIP of
    the draws (best first by predicted loss): {"best", "close": {id: share of draws where it is no worse},
    "separated"}."""
    draws = _finite(draws_BxN)
    best = int(np.argmin(point_N))
    flips = np.mean(draws <= draws[:, [best]], axis=0)
    close = {str(ids[j]): float(flips[j]) for j in np.argsort(point_N, kind="stable") if j != best and flips[j] > FLIP}
    return {"best": str(ids[best]), "close": close, "separated": not close}


def separation_text(column: str, sep: Mapping[str, Any], where: str) -> str | None:
    """The "mixtures no longer separated" verdict, or None when every mixture is told apart from the best."""
    if sep["separated"]:
        return None
    shown = list(sep["close"].items())
    others = ", ".join(f"{i} ({f:.0%})" for i, f in shown[:5])
    others += f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    return (f"{column}: mixtures no longer separated at {where}: {sep['best']} predicts the lowest loss, but its order "
            f"against {others} flips in more than {FLIP:.0%} of the draws")


def significance(point: float, draws_B: np.ndarray,
                 references: Mapping[str, tuple[float, np.ndarray]]) -> dict[str, Any]:
    """An optimum's gain over each reference mixture (its predicted loss minus the optimum's) and the share of
    draws where that gain is not positive; significant only when every share is at most FLIP."""
    against = {}
    for name, (ref_point, ref_draws) in references.items():
        both = _finite(np.column_stack([draws_B, ref_draws]))
        against[name] = {"gain": float(ref_point - point), "flip_share": float(np.mean(both[:, 1] - both[:, 0] <= 0))}
    return {"significant": all(v["flip_share"] <= FLIP for v in against.values()), "against": against}
