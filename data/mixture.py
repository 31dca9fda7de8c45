"""Mixture specs: domain -> weight, checked and normalised, and the epoch budget each domain needs.

Weights are token proportions of training. An empty mixture means every domain equally. A domain with weight 0
(or left out of a non-empty mixture) is not trained on but still evaluated.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

from ladderlab.errors import LadderlabError


def normalise(mixture: Mapping[str, float], domains: list[str]) -> dict[str, float]:
    """Weights over `domains`, summing to 1; unknown names, negative, non-finite or all-zero weights are errors."""
    if not mixture:
        return {d: 1.0 / len(domains) for d in domains}
    for name, weight in mixture.items():
        if name not in domains:
            raise LadderlabError(f"mixture: unknown domain {name!r} (known: {', '.join(domains)})")
        if not math.isfinite(weight) or weight < 0:
            raise LadderlabError(f"mixture.{name}={weight}: weights must be finite and >= 0")
    total = sum(mixture.values())
    if total <= 0:
        raise LadderlabError(f"mixture {dict(mixture)}: all weights are zero")
    return {d: mixture.get(d, 0.0) / total for d in domains}


def epochs_needed(weights: Mapping[str, float], unique_tokens: Mapping[str, int], train_tokens: int) -> dict[str, float]:
    """Epochs of each domain's unique tokens that `train_tokens` at these weights will use."""
    return {d: train_tokens * w / unique_tokens[d] for d, w in weights.items()}


def check_budget(epochs: Mapping[str, float], max_epochs: float, on_overrepeat: str) -> list[str]:
    """Messages for domains repeated more than `max_epochs` times: warned (returned) or raised, per config."""
    over = [f"domain {d!r} needs {e:.2f} epochs of its unique tokens (max_epochs={max_epochs:g})"
            for d, e in epochs.items() if e > max_epochs]
    if over and on_overrepeat == "error":
        raise LadderlabError("; ".join(over))
    for message in over:
        warnings.warn(message, stacklevel=3)
    return over
