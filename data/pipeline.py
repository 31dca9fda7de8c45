"""The input pipeline the trainer consumes: mixed, packed, batched, deterministic and resumable.

`train_batches(cfg, batch_size)` -> a grain DatasetIterator (`next`, `get_state`, `set_state`) of dicts with
arrays of shape [batch_size // process_count, seq_len]: inputs, targets, segment_ids, positions (int32) and
mask (float32). Each domain's packed rows (see packing.py: shuffled per epoch, repeated forever) go through a
grain prefetching iterator, then `IterDataset.mix` interleaves rows deterministically in the mixture's
proportions (a row holds documents of one domain), then rows are batched. Process p takes every
process_count-th row of each domain, so hosts never see the same row.

`eval_batches(cfg, batch_size)` -> {domain: [batch, ...]}: each domain's held-out split, exactly
`cfg.eval_tokens` scored predictions, padded (mask 0) to full batches. Bits per byte of a domain is
sum(loss_nats * mask) / ln 2 / (sum(mask) * eval_bytes_per_token(cfg)[domain]); the byte counts are exact
(each target token's UTF-8 length; EOS counts 0 bytes).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import grain
import numpy as np

from ladderlab.data import mixture as mix
from ladderlab.data.config import DataConfig
from ladderlab.data.corpus import cache_root, resolve_corpus
from ladderlab.data.packing import PackedRows, shuffled_epochs
from ladderlab.data.tokenizer import Tokenizer, load_tokenizer
from ladderlab.data.tokens import DomainTokens, load_tokens
from ladderlab.errors import LadderlabError

PREFETCH_ROWS = 64  # per domain, filled by one grain thread


def vocab_size(cfg: DataConfig) -> int:
    return _tokenizer(cfg.tokenizer).vocab_size


def domains(cfg: DataConfig) -> dict[str, DomainTokens]:
    """Every domain's train/eval tokens (tokenised and cached on first use)."""
    corpus = resolve_corpus(cfg.corpus, cfg.cache_dir)
    return _domains(str(corpus), cfg.tokenizer, cfg.eval_tokens, str(cache_root(cfg.cache_dir)), cfg.text_field)


def mixture_weights(cfg: DataConfig) -> dict[str, float]:
    """The normalised mixture over every domain of the corpus (0 for domains not trained on)."""
    return mix.normalise(cfg.mixture, list(domains(cfg)))


def train_batches(cfg: DataConfig, batch_size: int, *, process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
    """This process's training batches (see the module docstring)."""
    if cfg.seq_len <= 0:
        raise LadderlabError(f"seq_len={cfg.seq_len}: must be positive")
    if batch_size <= 0 or batch_size % process_count:
        raise LadderlabError(f"batch_size={batch_size}: must be a positive multiple of process_count={process_count}")
    data, weights = domains(cfg), mixture_weights(cfg)
    if cfg.train_tokens > 0:
        unique = {d: t.unique_tokens for d, t in data.items()}
        mix.check_budget(mix.epochs_needed(weights, unique, cfg.train_tokens), cfg.max_epochs, cfg.on_overrepeat)
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=PREFETCH_ROWS)
    streams = {}
    for name, weight in sorted(weights.items()):
        if weight > 0:
            tokens = data[name]
            order = shuffled_epochs(len(tokens.train.pairs), seed=_domain_seed(cfg.seed, name))
            rows = grain.MapDataset.source(PackedRows(tokens.train, cfg.seq_len, order))
            streams[name] = rows[process_index::process_count].to_iter_dataset(options)
    mixed = grain.IterDataset.mix(streams, {d: weights[d] for d in streams})
    return iter(mixed.batch(batch_size // process_count, drop_remainder=True))


def eval_batches(cfg: DataConfig, batch_size: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each domain's fixed held-out batches (see the module docstring)."""
    out = {}
    for name, tokens in domains(cfg).items():
        rows = PackedRows(tokens.eval, cfg.seq_len, lambda epoch, n=len(tokens.eval.pairs): np.arange(n), tokens.eval_scored)
        packed = [rows[r] for r in range(len(rows))]
        stacked = {k: np.stack([row[k] for row in packed]) for k in packed[0]}
        pad = -len(rows) % batch_size
        stacked = {k: np.concatenate([v, np.zeros((pad, cfg.seq_len), v.dtype)]) for k, v in stacked.items()}
        out[name] = [{k: v[i:i + batch_size] for k, v in stacked.items()} for i in range(0, len(rows) + pad, batch_size)]
    return out


def eval_bytes_per_token(cfg: DataConfig) -> dict[str, float]:
    """Mean UTF-8 bytes per scored target token of each domain's eval set (for bits per byte)."""
    sizes = _tokenizer(cfg.tokenizer).token_bytes()
    out = {}
    for name, batches in eval_batches(cfg, 1).items():
        targets = np.concatenate([b["targets"] for b in batches])
        mask = np.concatenate([b["mask"] for b in batches])
        out[name] = float((sizes[targets] * mask).sum() / mask.sum())
    return out


def _domain_seed(seed: int, domain: str) -> int:
    """A domain's shuffling seed: depends on its name only, not on which other domains the corpus has."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{domain}".encode()).digest()[:4], "little") >> 1


@functools.lru_cache(maxsize=8)
def _tokenizer(name: str) -> Tokenizer:
    return load_tokenizer(name)


@functools.lru_cache(maxsize=8)
def _domains(corpus: str, tokenizer: str, eval_tokens: int, cache: str, text_field: str) -> dict[str, DomainTokens]:
    return load_tokens(Path(corpus), _tokenizer(tokenizer), eval_tokens, Path(cache), text_field)
