"""Packing: every prediction of every document in exactly one row slot per epoch, with exact segments and masks."""

import numpy as np

from ladderlab.data.packing import PackedRows, shuffled_epochs
from ladderlab.data.tokens import Split

LENGTHS = [5, 1 + 1, 40, 7, 130, 3, 64, 65, 2, 19]  # tokens per document ([BOS ... EOS]); 2 = an empty document


def unique_token_split() -> Split:
    """Token value = its global index, so a slot's input names exactly which token it is."""
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)])
    return Split(np.arange(offsets[-1], dtype=np.int32), offsets)


def doc_of(token: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.searchsorted(offsets, token, side="right") - 1


def test_one_epoch_holds_every_prediction_exactly_once_with_correct_segments():
    split, S = unique_token_split(), 16
    rows = PackedRows(split, S, shuffled_epochs(len(LENGTHS), seed=3))
    per_epoch = sum(n - 1 for n in LENGTHS)  # 326 predictions
    assert per_epoch % S != 0  # so the epoch boundary falls inside a row
    stream = {k: np.concatenate([rows[r][k] for r in range(per_epoch // S + 2)]) for k in rows[0]}
    epoch0 = {k: v[:per_epoch] for k, v in stream.items()}
    inputs, targets = epoch0["inputs"], epoch0["targets"]
    expected = np.concatenate([np.arange(o, o + n - 1) for o, n in zip(split.offsets, LENGTHS)])
    np.testing.assert_array_equal(np.sort(inputs), expected)  # each non-final token of each document, once
    np.testing.assert_array_equal(targets, inputs + 1)  # its target is the next token of the same document
    assert np.all(doc_of(targets, split.offsets) == doc_of(inputs, split.offsets))
    assert np.all(stream["mask"] == 1.0)  # an endless stream has no padding
    # Within a row: a new segment exactly where the document changes, and positions count from 0 per segment.
    for r in range(per_epoch // S + 2):
        row = rows[r]
        docs = doc_of(row["inputs"], split.offsets)
        starts = np.r_[True, docs[1:] != docs[:-1]]
        np.testing.assert_array_equal(row["segment_ids"], np.cumsum(starts))
        positions = np.arange(S) - np.maximum.accumulate(np.where(starts, np.arange(S), 0))
        np.testing.assert_array_equal(row["positions"], positions)
        assert row["inputs"].dtype == np.int32 and row["mask"].dtype == np.float32
    # Documents are whole and in order inside the stream: each one's inputs are consecutive.
    docs = doc_of(inputs, split.offsets)
    for d in range(len(LENGTHS)):
        np.testing.assert_array_equal(inputs[docs == d], np.arange(split.offsets[d], split.offsets[d + 1] - 1))
    # The next epoch is reshuffled and again complete.
    epoch1 = stream["inputs"][per_epoch:]
    rest = np.concatenate([rows[r]["inputs"] for r in range(per_epoch // S + 2, 2 * per_epoch // S + 2)])
    second = np.concatenate([epoch1, rest])[:per_epoch]
    np.testing.assert_array_equal(np.sort(second), expected)


def test_limited_stream_pads_the_last_row():
    split = unique_token_split()
    rows = PackedRows(split, 32, lambda epoch: np.arange(len(LENGTHS)), limit=50)
    assert len(rows) == 2
    last = rows[1]
    np.testing.assert_array_equal(last["mask"], np.r_[np.ones(18), np.zeros(14)])
    assert np.all(last["segment_ids"][18:] == 0) and np.all(last["inputs"][18:] == 0)
    np.testing.assert_array_equal(rows[0]["inputs"][:4], [0, 1, 2, 3])  # document 0, in order
    np.testing.assert_array_equal(rows[0]["segment_ids"][:6], [1, 1, 1, 1, 2, 3])  # 4 preds, 1 pred, then doc 2


def test_shuffled_epochs_are_permutations_that_change_per_epoch_and_seed():
    order = shuffled_epochs(50, seed=1)
    assert sorted(order(0)) == list(range(50)) and sorted(order(7)) == list(range(50))
    assert not np.array_equal(order(0), order(1))
    assert not np.array_equal(order(0), shuffled_epochs(50, seed=2)(0))
    np.testing.assert_array_equal(order(0), shuffled_epochs(50, seed=1)(0))
