"""Document packing: a domain's documents, in a per-epoch shuffled order, as one endless stream of
(input, next-token) predictions cut into rows of `seq_len`; row r is computed directly (random access).

Every prediction of every document lands in exactly one row slot per epoch, so nothing is padded or dropped.
A document that does not fit in the rest of a row continues in the next row as a new segment (its positions
restart at 0, as attention never crosses segments). Row keys: inputs, targets, segment_ids (1, 2, ... per
piece; 0 = padding), positions, mask (1.0 on real predictions).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import grain
import numpy as np

from ladderlab.data.tokens import Split


def shuffled_epochs(n_docs: int, seed: int) -> Callable[[int], np.ndarray]:
    """Epoch -> document order, from grain's per-epoch reshuffling `range(n).shuffle(seed).repeat()`."""
    docs = grain.MapDataset.range(n_docs).shuffle(seed=seed).repeat()

    @functools.lru_cache(maxsize=4)
    def order(epoch: int) -> np.ndarray:
        return np.fromiter((docs[i] for i in range(epoch * n_docs, (epoch + 1) * n_docs)), np.int64, n_docs)

    return order


class PackedRows(grain.sources.RandomAccessDataSource):
    """Rows of `seq_len` predictions from `split`'s documents in `order(epoch)`; endless unless `limit` caps
    the stream at that many predictions (the last row is then padded)."""

    def __init__(self, split: Split, seq_len: int, order: Callable[[int], np.ndarray], limit: int | None = None):
        self._tokens, self._offsets = np.asarray(split.tokens), np.asarray(split.offsets)  # plain views: fast indexing
        self._pairs = split.pairs
        self._per_epoch = int(self._pairs.sum())
        self._seq_len, self._order, self._limit = seq_len, order, limit

    def __len__(self) -> int:
        return sys.maxsize if self._limit is None else -(-self._limit // self._seq_len)

    @functools.lru_cache(maxsize=4)
    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        order = self._order(epoch)
        return order, np.concatenate([[0], np.cumsum(self._pairs[order])])

    def __getitem__(self, row: int) -> dict[str, np.ndarray]:
        S = self._seq_len
        start = row * S
        stop = start + S if self._limit is None else min(start + S, self._limit)
        doc_parts, offset_parts, piece_parts = [], [], []  # one part per epoch the row touches (rarely two)
        for epoch in range(start // self._per_epoch, (stop - 1) // self._per_epoch + 1):
            base = epoch * self._per_epoch
            at = np.arange(max(start, base), min(stop, base + self._per_epoch)) - base
            order, starts = self._epoch(epoch)
            k = np.searchsorted(starts, at, side="right") - 1
            doc_parts.append(order[k])
            offset_parts.append(at - starts[k])
            piece_parts.append(k + epoch * len(order))
        doc_N, offset_N, piece_N = (np.concatenate(x) if len(x) > 1 else x[0] for x in (doc_parts, offset_parts, piece_parts))
        index_N = self._offsets[doc_N] + offset_N
        new_N = np.empty(len(piece_N), bool)
        new_N[0], new_N[1:] = True, piece_N[1:] != piece_N[:-1]
        segment_N = np.cumsum(new_N)
        positions_N = np.arange(len(piece_N)) - np.flatnonzero(new_N)[segment_N - 1]
        out = {"inputs": self._tokens[index_N], "targets": self._tokens[index_N + 1], "segment_ids": segment_N,
               "positions": positions_N}
        out = {k: _pad(v, S, np.int32) for k, v in out.items()}
        out["mask"] = (out["segment_ids"] > 0).astype(np.float32)
        return out

    def __repr__(self) -> str:
        return f"PackedRows(docs={len(self._pairs)}, seq_len={self._seq_len}, limit={self._limit})"


def _pad(x: np.ndarray, size: int, dtype) -> np.ndarray:
    out = np.zeros(size, dtype)
    out[: len(x)] = x
    return out
