"""The trainer's contract: shapes, realised mixture, determinism, resume, per-host rows, eval sets, budgets."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
from data_helpers import row_domain

from ladderlab.data import pipeline
from ladderlab.data.tokenizer import ByteTokenizer
from ladderlab.errors import LadderlabError

KEYS = {"inputs": np.int32, "targets": np.int32, "segment_ids": np.int32, "positions": np.int32, "mask": np.float32}


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in KEYS:
            np.testing.assert_array_equal(x[k], y[k])


def test_batches_have_the_contract_keys_shapes_and_dtypes(cfg):
    batch = next(pipeline.train_batches(cfg, 8))
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {k: ((8, 64), np.dtype(t)) for k, t in KEYS.items()}
    assert pipeline.vocab_size(cfg) == 259
    np.testing.assert_array_equal(batch["mask"], (batch["segment_ids"] > 0).astype(np.float32))


def test_realised_token_proportions_match_the_mixture(cfg):
    weights = {"letters": 0.6, "digits": 0.3, "upper": 0.1}
    it = pipeline.train_batches(dataclasses.replace(cfg, mixture=weights), 16)
    tokens = {name: 0.0 for name in weights}
    for batch in take(it, 150):  # 2,400 rows
        for inputs, mask in zip(batch["inputs"], batch["mask"]):
            tokens[row_domain(inputs)] += mask.sum()
    total = sum(tokens.values())
    for name, weight in weights.items():
        assert abs(tokens[name] / total - weight) < 0.005, (name, tokens[name] / total)


def test_zero_weight_domain_is_never_trained(cfg):
    it = pipeline.train_batches(dataclasses.replace(cfg, mixture={"letters": 1, "digits": 0}), 8)
    assert {row_domain(r) for b in take(it, 20) for r in b["inputs"]} == {"letters"}


def test_same_config_gives_the_same_batches_and_the_seed_changes_them(cfg):
    first = take(pipeline.train_batches(cfg, 8), 5)
    assert_same(first, take(pipeline.train_batches(cfg, 8), 5))
    other = take(pipeline.train_batches(dataclasses.replace(cfg, seed=1), 8), 5)
    assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other))


def test_resume_from_saved_state_yields_identical_batches(cfg):
    it = pipeline.train_batches(cfg, 8)
    take(it, 37)  # past an epoch of the smallest domain
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    expected = take(it, 6)
    resumed = pipeline.train_batches(cfg, 8)
    resumed.set_state(state)
    assert_same(expected, take(resumed, 6))


def test_hosts_split_each_global_batch_so_the_data_do_not_depend_on_the_host_count(cfg):
    single = take(pipeline.train_batches(cfg, 8), 4)  # three domains mixed: 8 rows are no whole mixing period
    for count in (2, 4):
        hosts = [take(pipeline.train_batches(cfg, 8, process_index=i, process_count=count), 4) for i in range(count)]
        assert hosts[0][0]["inputs"].shape == (8 // count, 64)
        for step, batch in enumerate(single):
            for key, value in batch.items():
                np.testing.assert_array_equal(np.concatenate([h[step][key] for h in hosts]), value)


def test_eval_sets_are_fixed_budgets_of_held_out_documents(cfg, corpus_docs):
    batches = pipeline.eval_batches(cfg, 4)
    assert set(batches) == {"letters", "digits", "upper"}
    tok = ByteTokenizer()
    train = pipeline.domains(cfg)
    for name, domain_batches in batches.items():
        assert all(b["inputs"].shape == (4, 64) for b in domain_batches)
        assert sum(b["mask"].sum() for b in domain_batches) == cfg.eval_tokens
        held, trained = ({tok.decode(split.tokens[a:b]) for a, b in zip(split.offsets[:-1], split.offsets[1:])}
                         for split in (train[name].eval, train[name].train))
        assert held and not held & trained  # disjoint by document
        assert held | trained == set(corpus_docs[name])  # and nothing lost
    # Independent of the training seed and mixture.
    again = pipeline.eval_batches(dataclasses.replace(cfg, seed=5, mixture={"digits": 1}), 4)
    np.testing.assert_array_equal(again["upper"][0]["inputs"], batches["upper"][0]["inputs"])


def test_eval_bytes_per_token_counts_exact_bytes(cfg):
    per_token = pipeline.eval_bytes_per_token(cfg)
    for name, domain_batches in pipeline.eval_batches(cfg, 4).items():
        targets = np.concatenate([b["targets"][b["mask"] > 0] for b in domain_batches])
        eos = int((targets == 2).sum())
        assert per_token[name] == pytest.approx((len(targets) - eos) / len(targets))
        assert 0 < eos  # documents end inside the budget, and their end costs no byte


def test_overrepeated_domain_warns_or_errors(cfg):
    unique = {n: d.unique_tokens for n, d in pipeline.domains(cfg).items()}
    tokens = math.ceil(unique["upper"] * 3 * 5)  # upper at weight 1/3 needs 5 epochs
    with pytest.warns(UserWarning, match="'upper' needs 5.00 epochs .*max_epochs=4.8"):
        pipeline.train_batches(dataclasses.replace(cfg, train_tokens=tokens, max_epochs=4.8), 8)
    with pytest.raises(LadderlabError, match="'upper' needs"):
        pipeline.train_batches(dataclasses.replace(cfg, train_tokens=tokens, on_overrepeat="error"), 8)
    pipeline.train_batches(dataclasses.replace(cfg, train_tokens=tokens, max_epochs=10.0), 8)  # within budget


@pytest.mark.parametrize("mixture, message", [
    ({"nope": 1.0}, "unknown domain 'nope' \\(known: digits, letters, upper\\)"),
    ({"letters": -1.0}, "mixture.letters=-1.0: weights must be finite and >= 0"),
    ({"letters": 0.0, "digits": 0.0}, "all weights are zero"),
    ({"letters": float("nan")}, "mixture.letters=nan"),
])
def test_bad_mixtures_are_errors(cfg, mixture, message):
    with pytest.raises(LadderlabError, match=message):
        pipeline.train_batches(dataclasses.replace(cfg, mixture=mixture), 8)


def test_bad_sizes_are_errors(cfg):
    with pytest.raises(LadderlabError, match="batch_size=6: must be a positive multiple of process_count=4"):
        pipeline.train_batches(cfg, 6, process_count=4)
    with pytest.raises(LadderlabError, match="too small to hold out eval_tokens=100000"):
        pipeline.domains(dataclasses.replace(cfg, eval_tokens=100_000))


def test_batches_match_a_golden_digest(cfg):
    """Shuffling, packing and mixing are stable across machines and versions: same config, same bytes."""
    it = pipeline.train_batches(dataclasses.replace(cfg, mixture={"letters": 0.5, "digits": 0.3, "upper": 0.2}), 8)
    digest = hashlib.sha256()
    for batch in take(it, 12):
        for key in sorted(KEYS):
            digest.update(batch[key].tobytes())
    assert digest.hexdigest()[:16] == "8d79d3bfda233d0e"


def test_doc_tokens_cuts_training_documents_and_keeps_one_piece_per_eval_document(cfg, corpus_docs):
    tok, whole = ByteTokenizer(), pipeline.domains(cfg)
    cut = pipeline.domains(dataclasses.replace(cfg, doc_tokens=20))
    for name, tokens in cut.items():
        assert tokens.train.pairs.max() == 20 and tokens.eval.pairs.max() == 20
        assert len(tokens.eval.pairs) > len(whole[name].eval.pairs) and tokens.eval.pairs.sum() >= cfg.eval_tokens
        # each eval piece is the start of a held-out document; every prediction of the others is trained on once
        docs = [tok.encode(d) for d in corpus_docs[name]]
        starts = {tuple(tokens.eval.tokens[a:b]) for a, b in zip(tokens.eval.offsets[:-1], tokens.eval.offsets[1:])}
        held = [d for d in docs if tuple(d[:21]) in starts]
        assert len(held) == len(starts)
        assert tokens.train.pairs.sum() == sum(len(d) - 1 for d in docs) - sum(len(d) - 1 for d in held)
