"""What a data config amounts to, per domain: documents, unique tokens, weight, epochs needed, eval bytes per
token (`ladderlab data inspect`), and the text a tokenizer is trained on (`ladderlab data train-tokenizer`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ladderlab.data import mixture as mix
from ladderlab.data import pipeline
from ladderlab.data.config import DataConfig
from ladderlab.data.sources import list_domains, read_documents
from ladderlab.data.tokens import held_out_order


def domain_rows(cfg: DataConfig) -> list[dict]:
    """One row per domain; `epochs` is filled when cfg.train_tokens > 0."""
    data, weights = pipeline.domains(cfg), pipeline.mixture_weights(cfg)
    unique = {d: t.unique_tokens for d, t in data.items()}
    epochs = mix.epochs_needed(weights, unique, cfg.train_tokens) if cfg.train_tokens > 0 else {}
    per_token = pipeline.eval_bytes_per_token(cfg)
    return [{"domain": d, "train_docs": len(t.train.pairs), "unique_tokens": unique[d], "eval_docs": len(t.eval.pairs),
             "eval_tokens": t.eval_scored, "weight": weights[d], "epochs": epochs.get(d), "eval_bytes_per_token": per_token[d]}
            for d, t in data.items()]


def tokenizer_texts(corpus: Path, max_bytes: int, text_field: str = "text") -> Iterator[str]:
    """Up to `max_bytes` of each domain, taken from the end of the held-out order (so never eval text)."""
    for entry in list_domains(corpus).values():
        texts = list(read_documents(entry, text_field))
        total = 0
        for i in reversed(held_out_order(texts)):
            if total >= max_bytes:
                break
            total += len(texts[i].encode("utf-8"))
            yield texts[i]
