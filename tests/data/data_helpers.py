"""Helpers for the data tests: a synthetic multi-domain corpus with one alphabet per domain."""

import numpy as np

ALPHABETS = {"letters": "abcdefgh", "digits": "0123456789", "upper": "IJKLMNOP"}


def make_docs(alphabet: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        words = ["".join(rng.choice(list(alphabet), rng.integers(1, 8))) for _ in range(rng.integers(3, 120))]
        docs.append(" ".join(words) + "\n")
    return docs


def row_domain(inputs_L: np.ndarray) -> str:
    """The domain of a packed row, from the first byte that belongs to one alphabet."""
    for token in inputs_L:
        char = chr(int(token) - 3) if token >= 3 else ""
        for name, alphabet in ALPHABETS.items():
            if char and char in alphabet:
                return name
    raise AssertionError(f"no domain character in row {inputs_L[:10]}")
