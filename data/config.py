"""`DataConfig`: which corpus, which mixture, which tokenizer, and how batches are cut (shared with the trainer)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data side of a run; the same config gives the same batches on any machine.

    corpus: a corpus folder (one domain per `<name>/` folder, `<name>.txt`, `<name>.jsonl` or
        `<name>.array_record` entry) or a built-in name: "quick" (text already on the machine) or "demo"
        (built by `ladderlab data build-corpus`).
    mixture: domain -> weight (normalised; token proportions of training). Empty means every domain equally.
    tokenizer: "byte" or the path of a SentencePiece `.model` (from `ladderlab data train-tokenizer`).
    seq_len: tokens per packed row.
    seed: shuffling seed (documents per domain, per epoch).
    cache_dir: where built corpora and token caches live ("" = $LADDERLAB_CACHE or ~/.cache/ladderlab).
    eval_tokens: held-out validation tokens per domain (whole documents, disjoint from training).
    train_tokens: the run's planned training tokens; > 0 turns on the `max_epochs` check.
    max_epochs: K, the most epochs of any domain's unique tokens a run may need.
    on_overrepeat: what happens past K epochs: "warn" or "error".
    text_field: the text field of JSONL records.
    doc_tokens: cut documents longer than this many tokens into pieces (training: each piece shuffled as a
        document of its own; eval: a held-out document's first piece only); 0 = whole documents. A corpus of a few
        long documents (the demo's) needs it: without it a short run trains on a handful of documents in sequence.
    tasks: multiple-choice tasks scored at every evaluation (`data.tasks`: "<domain>_continuation",
        "python_function", "man_description"), built from the held-out documents; none by default.
    """

    corpus: str = "quick"
    mixture: dict[str, float] = dataclasses.field(default_factory=dict)
    tokenizer: str = "byte"
    seq_len: int = 256
    seed: int = 0
    cache_dir: str = ""
    eval_tokens: int = 16384
    train_tokens: int = 0
    max_epochs: float = 4.0
    on_overrepeat: Literal["warn", "error"] = "warn"
    text_field: str = "text"
    doc_tokens: int = 0
    tasks: tuple[str, ...] = ()
