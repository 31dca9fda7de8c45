"""The input pipeline the trainer consumes: mixed, packed, batched, deterministic and resumable.

`train_batches(cfg, batch_size)` -> a grain DatasetIterator (`next`, `get_state`, `set_state`) of dicts with
arrays of shape [batch_size // process_count, seq_len]: inputs, targets, segment_ids, positions (int32) and
mask (float32). Each domain's packed rows (see packing.py: shuffled per epoch, repeated forever) go through a
grain prefetching iterator, then `IterDataset.mix` interleaves rows deterministically in the mixture's
proportions (a row holds documents of one domain), then rows are batched. Every process draws the same global
batches and keeps its own block of rows of each (process p: rows p x B/P to (p + 1) x B/P - 1), so a run's data,
and its losses up to the order of float sums, do not depend on how many hosts train it; the price is that each host
packs the whole batch (a memory copy per row), not only its share.

`eval_batches(cfg, batch_size)` -> {domain: [batch, ...]}: each domain's held-out split, exactly
`cfg.eval_tokens` scored predictions, padded (mask 0) to full batches. Bits per byte of a domain is
sum(loss_nats * mask) / ln 2 / (sum(mask) * eval_bytes_per_token(cfg)[domain]); the byte counts are exact
(each target token's UTF-8 length; EOS counts 0 bytes).

`task_batches(cfg, batch_size)` -> {task: [batch, ...]}: the multiple-choice tasks cfg.tasks names, built from the
same held-out documents (`tasks`), one row per choice.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import grain
import numpy as np

from ladderlab.data import mixture as mix
from ladderlab.data import tasks
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
    return _domains(str(corpus), cfg.tokenizer, cfg.eval_tokens, str(cache_root(cfg.cache_dir)), cfg.text_field,
                    cfg.doc_tokens)


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
            streams[name] = rows.to_iter_dataset(options)
    mixed = grain.IterDataset.mix(streams, {d: weights[d] for d in streams})
    batches = mixed.batch(batch_size, drop_remainder=True)
    if process_count > 1:
        start, rows_per_process = process_index * (batch_size // process_count), batch_size // process_count
        batches = batches.map(lambda b: {k: v[start:start + rows_per_process] for k, v in b.items()})
    return iter(batches)


def eval_batches(cfg: DataConfig, batch_size: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each domain's fixed held-out batches (see the module docstring)."""
    out = {}
    for name, tokens in domains(cfg).items():
        rows = PackedRows(tokens.eval, cfg.seq_len, lambda epoch, n=len(tokens.eval.pairs): np.arange(n), tokens.eval_scored)
        packed = [rows[r] for r in range(len(rows))]
        out[name] = _batched({k: np.stack([row[k] for row in packed]) for k in packed[0]}, batch_size)
    return out


def task_batches(cfg: DataConfig, batch_size: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """cfg.tasks' rows (`tasks.rows`: one per choice, min(seq_len, tasks.ROW_LEN) tokens, with `item`, `correct`
    and `scored_bytes`) in fixed batches, padded with rows of mask 0 and item -1. A task the corpus has too few
    items for is left out with a warning saying why."""
    if not cfg.tasks:
        return {}
    built, skipped = task_items(cfg)
    unknown = [t for t in cfg.tasks if t not in built and t not in skipped]
    if unknown:
        raise LadderlabError(f"DataConfig.tasks: unknown task(s) {', '.join(unknown)} (corpus {cfg.corpus} has: "
                             f"{', '.join(tasks.task_names(domains(cfg)))})")
    tokenizer, out = _tokenizer(cfg.tokenizer), {}
    for name in cfg.tasks:
        if name in skipped:
            warnings.warn(f"task {name!r} skipped: {skipped[name]}", stacklevel=2)
            continue
        rows = tasks.rows(built[name], lambda text: tokenizer.encode(text)[1:-1], tokenizer.token_bytes(),
                          min(cfg.seq_len, tasks.ROW_LEN))
        out[name] = _batched(rows, batch_size)
    return out


def task_items(cfg: DataConfig) -> tuple[dict[str, list[tasks.Item]], dict[str, str]]:
    """({task: items}, {skipped task: why}) of the corpus's held-out documents (`tasks.load_tasks`, cached)."""
    corpus = resolve_corpus(cfg.corpus, cfg.cache_dir)
    return _tasks(str(corpus), cfg.tokenizer, cfg.eval_tokens, str(cache_root(cfg.cache_dir)), cfg.text_field,
                  cfg.doc_tokens)


def eval_bytes_per_token(cfg: DataConfig) -> dict[str, float]:
    """Mean UTF-8 bytes per scored target token of each domain's eval set (for bits per byte)."""
    sizes = _tokenizer(cfg.tokenizer).token_bytes()
    out = {}
    for name, batches in eval_batches(cfg, 1).items():
        targets = np.concatenate([b["targets"] for b in batches])
        mask = np.concatenate([b["mask"] for b in batches])
        out[name] = float((sizes[targets] * mask).sum() / mask.sum())
    return out


def _batched(rows: dict[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Rows cut into batches of batch_size, the last padded with zero rows (`item` -1)."""
    n = len(rows["mask"])
    pad = -n % batch_size
    rows = {k: np.concatenate([v, np.full((pad, *v.shape[1:]), -1 if k == "item" else 0, v.dtype)])
            for k, v in rows.items()}
    return [{k: v[i:i + batch_size] for k, v in rows.items()} for i in range(0, n + pad, batch_size)]


def _domain_seed(seed: int, domain: str) -> int:
    """A domain's shuffling seed: depends on its name only, not on which other domains the corpus has."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{domain}".encode()).digest()[:4], "little") >> 1


@functools.lru_cache(maxsize=8)
def _tokenizer(name: str) -> Tokenizer:
    return load_tokenizer(name)


@functools.lru_cache(maxsize=8)
def _domains(corpus: str, tokenizer: str, eval_tokens: int, cache: str, text_field: str,
             doc_tokens: int = 0) -> dict[str, DomainTokens]:
    return load_tokens(Path(corpus), _tokenizer(tokenizer), eval_tokens, Path(cache), text_field, doc_tokens)


@functools.lru_cache(maxsize=8)
def _tasks(corpus: str, tokenizer: str, eval_tokens: int, cache: str, text_field: str,
           doc_tokens: int) -> tuple[dict[str, list[tasks.Item]], dict[str, str]]:
    return tasks.load_tasks(Path(corpus), _domains(corpus, tokenizer, eval_tokens, cache, text_field, doc_tokens),
                            _tokenizer(tokenizer), eval_tokens, Path(cache), text_field, doc_tokens)
