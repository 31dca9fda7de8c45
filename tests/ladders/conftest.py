"""Fixtures for trainer tests: tiny deterministic grain iterators with the data pipeline's batch keys."""

from __future__ import annotations

import grain
import jax
import numpy as np
import pytest


def fake_rows(n_rows: int, seq_len: int, vocab: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Rows of two packed documents (segments 1 and 2); tokens count up mod vocab from a random start."""
    rng, cut, rows = np.random.default_rng(seed), seq_len // 2, []
    for start in rng.integers(0, vocab, n_rows):
        tokens = (start + np.arange(seq_len + 1)) % vocab
        segment = np.where(np.arange(seq_len) < cut, 1, 2).astype(np.int32)
        mask = np.ones(seq_len, np.float32)
        mask[cut - 1] = 0.0  # the first document's last target is the second document's first token
        positions = np.where(segment == 1, np.arange(seq_len), np.arange(seq_len) - cut).astype(np.int32)
        rows.append({"inputs": tokens[:-1].astype(np.int32), "targets": tokens[1:].astype(np.int32),
                     "segment_ids": segment, "positions": positions, "mask": mask})
    return rows


def make_batches(batch_size: int, seq_len: int, vocab: int, seed: int = 0, n_rows: int = 64,
                 nan_from: int | None = None) -> grain.DatasetIterator:
    """A resumable iterator of batches over a shuffled, repeated fixed set of rows; batches from index
    `nan_from` on carry a NaN mask (bad data that makes the loss NaN)."""
    ds = grain.MapDataset.source(fake_rows(n_rows, seq_len, vocab, seed)).shuffle(seed=seed).repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    if nan_from is not None:
        ds = ds.map_with_index(lambda i, b: {**b, "mask": b["mask"] * np.nan} if i >= nan_from else b)
    return iter(ds.to_iter_dataset())


@pytest.fixture
def fake_batches():
    return make_batches


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """Runs with the same config compile once per session (the persistent cache keys on the program)."""
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    jax.config.update("jax_compilation_cache_dir", None)
