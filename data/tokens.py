"""Token cache: each domain tokenised once into .npy shards, split by document into train and held-out eval.

The eval split is chosen by document content, not by seed: documents in order of their text's SHA-256 go to
eval until they hold `eval_tokens` predictions, so every run (any seed, any mixture) scores the same text, and
no eval document is ever trained on. Only the first `eval_tokens` predictions are scored; the rest of the last
eval document is held out but unscored. With `doc_tokens` = C > 0, long documents are cut: each training
document into pieces of C predictions (shuffled and packed as documents of their own, so a run shorter than an
epoch sees many documents rather than a few long ones in sequence), and each eval document to its first C (so the
eval tokens span at least eval_tokens / C documents). A tokenizer is trained from the other end of the same order
(`ladderlab data train-tokenizer`), so it does not see the eval text unless its byte budget reaches that far.
The cache key covers the corpus content, the tokenizer and the eval budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ladderlab.data.sources import list_domains, read_documents
from ladderlab.data.tokenizer import Tokenizer
from ladderlab.errors import LadderlabError

VERSION = "tokens-v1"


@dataclasses.dataclass(frozen=True)
class Split:
    """Documents as one token array: document i is tokens[offsets[i]:offsets[i+1]] ([BOS, ..., EOS])."""

    tokens: np.ndarray
    offsets: np.ndarray

    @property
    def pairs(self) -> np.ndarray:
        """Predictions (input, next-token) per document: its length minus one."""
        return np.diff(self.offsets) - 1


@dataclasses.dataclass(frozen=True)
class DomainTokens:
    name: str
    train: Split
    eval: Split
    eval_scored: int  # predictions scored in eval (<= the eval split's pairs)

    @property
    def unique_tokens(self) -> int:
        """Training predictions in one epoch of this domain."""
        return int(self.train.pairs.sum())


def held_out_order(texts: list[str]) -> list[int]:
    """Document indices in the order the eval split takes them: by SHA-256 of the text (tokenizer-free)."""
    hashes = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
    return sorted(range(len(texts)), key=hashes.__getitem__)


def corpus_fingerprint(corpus: Path) -> str:
    """SHA-256 of the manifest if the corpus has one, else of every file's path and content."""
    digest = hashlib.sha256()
    manifest = corpus / "manifest.json"
    files = [manifest] if manifest.is_file() else sorted(p for p in corpus.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(corpus)).encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_tokens(corpus: Path, tokenizer: Tokenizer, eval_tokens: int, cache: Path,
                text_field: str = "text", doc_tokens: int = 0) -> dict[str, DomainTokens]:
    """Every domain's train/eval tokens, from the cache (built on first use)."""
    if eval_tokens <= 0:
        raise LadderlabError(f"eval_tokens={eval_tokens}: must be positive")
    if doc_tokens < 0:
        raise LadderlabError(f"doc_tokens={doc_tokens}: must be 0 (whole documents) or positive")
    cut = f"|{doc_tokens}" if doc_tokens else ""  # whole documents keep the caches built before the option
    key = hashlib.sha256(f"{VERSION}|{corpus_fingerprint(corpus)}|{tokenizer.fingerprint()}|{eval_tokens}|{text_field}{cut}".encode())
    folder = cache / "tokens" / key.hexdigest()[:24]
    if not (folder / "meta.json").is_file():
        _build(corpus, tokenizer, eval_tokens, folder, text_field, doc_tokens)
    meta = json.loads((folder / "meta.json").read_text())
    load = lambda name: np.load(folder / name, mmap_mode="r")  # noqa: E731
    return {d: DomainTokens(d, Split(load(f"{d}.train.tokens.npy"), load(f"{d}.train.offsets.npy")),
                            Split(load(f"{d}.eval.tokens.npy"), load(f"{d}.eval.offsets.npy")), m["eval_scored"])
            for d, m in meta["domains"].items()}


def pieces(doc: list[int], doc_tokens: int) -> list[list[int]]:
    """A tokenised document cut into pieces of at most doc_tokens predictions (consecutive pieces share their
    boundary token, so every prediction of the document is in exactly one piece); doc_tokens = 0: the document."""
    if not doc_tokens:
        return [doc]
    return [doc[s:s + doc_tokens + 1] for s in range(0, len(doc) - 1, doc_tokens)]


def _build(corpus: Path, tokenizer: Tokenizer, eval_tokens: int, folder: Path, text_field: str,
           doc_tokens: int = 0) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".build-"))
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    meta = {"corpus": str(corpus), "tokenizer": tokenizer.fingerprint(), "eval_tokens": eval_tokens,
            "doc_tokens": doc_tokens, "domains": {}}
    try:
        for name, entry in list_domains(corpus).items():
            texts = list(read_documents(entry, text_field))
            docs = [tokenizer.encode(text) for text in texts]
            held, pairs = [], 0
            for i in held_out_order(texts):
                if pairs >= eval_tokens:
                    break
                held.append(i)
                pairs += len(pieces(docs[i], doc_tokens)[0]) - 1
            if len(held) == len(docs) or pairs < eval_tokens:
                raise LadderlabError(f"{entry}: domain {name!r} is too small to hold out eval_tokens={eval_tokens} "
                                     f"and still train (it has {sum(len(d) - 1 for d in docs)} tokens in {len(docs)} documents)")
            held_set = set(held)
            splits = {"train": [p for i, d in enumerate(docs) if i not in held_set for p in pieces(d, doc_tokens)],
                      "eval": [pieces(docs[i], doc_tokens)[0] for i in held]}
            for split, items in splits.items():
                offsets = np.concatenate([[0], np.cumsum([len(d) for d in items])]).astype(np.int64)
                np.save(tmp / f"{name}.{split}.tokens.npy", np.concatenate(items).astype(dtype))
                np.save(tmp / f"{name}.{split}.offsets.npy", offsets)
            meta["domains"][name] = {"train_docs": len(splits["train"]), "eval_docs": len(held), "eval_scored": eval_tokens,
                                     "train_tokens": int(sum(len(d) - 1 for d in splits["train"]))}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():
                raise
    finally:  # gone after a successful replace; left behind if another process finished first or on error
        shutil.rmtree(tmp, ignore_errors=True)
