"""Size labels: the one parser of counts written as `7B`, `190M`, `1.3B`, `500K` (or plain numbers), for every
flag, `--set` override and target that takes a parameter or token count."""

from __future__ import annotations

import re

SCALES = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
LABEL = r"[0-9]*\.?[0-9]+[KMBTkmbt]"  # a number and one of K, M, B, T (either case)


def parse_size(text: str) -> float:
    """'7B' -> 7e9, '190M' -> 1.9e8, '500k' -> 5e5; plain numbers ('3.2e11') as they are."""
    text = text.strip()
    if re.fullmatch(LABEL, text):
        return float(text[:-1]) * SCALES[text[-1].upper()]
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number or a size label like 7B, 190M, 1.3B or 500K, got {text!r}") from None
