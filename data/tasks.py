"""Multiple-choice tasks from held-out text, scored as OLMo's ladder scores its tasks (ranked classification).

Items come only from the eval split's documents (the token cache's held-out documents, `tokens.held_out_order`:
never trained on; the whole document, its unscored rest too), and only from real corpus text:
- `<domain>_continuation`, every domain: a passage (CONTEXT_CHARS characters, cut before a whitespace) and its
  true next words (up to CHOICE_CHARS characters) among 4 continuations, the 3 others cut from other passages of
  that domain.
- `python_function`: held-out documents that parse as Python (`ast`): a function's `def` line(s) and the first
  line of its docstring, if any, as context, the first lines of its body (up to CHOICE_CHARS) among 4 bodies of
  other functions.
- `man_description`: held-out man pages ("NAME\\n<cmd> - <description>"): the page up to "<cmd> -" as context,
  its description's first line among 4 descriptions of other pages.
Everything is seeded by content (SHA-256 of the text), never by a run's seed: which candidates become items (the
first MAX_ITEMS in hash order), which others are their distractors, where the answer sits. A task with fewer than
MIN_ITEMS items is skipped, with the reason. Items live in the cache (`<cache>/tasks/<key>.json`, keyed like the
token cache), never in the repo.

Scoring (`rows`): each choice is one row of `row_len` tokens, [BOS, context, choice] with the context cut on its
left to fit and the mask 1 on the choice's tokens only. Cost per evaluation: MAX_ITEMS x 4 rows of row_len tokens
per task, forward only: at most 400 rows, 51,200 tokens at row_len 128.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ladderlab.data.sources import list_domains, read_documents
from ladderlab.data.tokenizer import BOS, Tokenizer
from ladderlab.data.tokens import DomainTokens, corpus_fingerprint, held_out_order
from ladderlab.errors import LadderlabError
from ladderlab.paths import write_atomic

VERSION = "tasks-v1"
CHOICES = 4
MAX_ITEMS = 100
MIN_ITEMS = 20
CONTEXT_CHARS = 80
CHOICE_CHARS = 40
ROW_LEN = 128  # tokens per scored row (or the run's seq_len where that is shorter)
CONTINUATION = "_continuation"
KINDS = ("python_function", "man_description")
WORD = re.compile(r"\s+\S+")
MAN_NAME = re.compile(r"^NAME\n([^\n]+? - )([^\n]+)", re.M)


@dataclasses.dataclass(frozen=True)
class Item:
    """One question: the context and its choices, `answer` the index of the true one."""

    context: str
    choices: tuple[str, ...]
    answer: int


def task_names(domains: Iterable[str]) -> list[str]:
    """Every task a corpus with these domains can have."""
    return [f"{d}{CONTINUATION}" for d in domains] + list(KINDS)


def load_tasks(corpus: Path, tokens: dict[str, DomainTokens], tokenizer: Tokenizer, eval_tokens: int, cache: Path,
               text_field: str = "text", doc_tokens: int = 0) -> tuple[dict[str, list[Item]], dict[str, str]]:
    """({task: items}, {skipped task: why}) for the corpus's held-out documents, from the cache (built on first
    use; `tokens` is `load_tokens`' split of the same corpus, tokenizer, eval_tokens and doc_tokens)."""
    key = hashlib.sha256(f"{VERSION}|{corpus_fingerprint(corpus)}|{tokenizer.fingerprint()}|{eval_tokens}|"
                         f"{text_field}|{doc_tokens}".encode()).hexdigest()[:24]
    path = cache / "tasks" / f"{key}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        built, skipped = build_tasks(held_out_texts(corpus, tokens, tokenizer, text_field))
        doc = {"tasks": {t: [dataclasses.asdict(i) for i in items] for t, items in built.items()}, "skipped": skipped}
        write_atomic(path, json.dumps(doc, ensure_ascii=False))
    doc = json.loads(path.read_text())
    items = {t: [Item(i["context"], tuple(i["choices"]), i["answer"]) for i in rows]
             for t, rows in doc["tasks"].items()}
    return items, doc["skipped"]


def held_out_texts(corpus: Path, tokens: dict[str, DomainTokens], tokenizer: Tokenizer,
                   text_field: str = "text") -> dict[str, list[str]]:
    """Each domain's eval-split documents as text, whole (a document cut by `doc_tokens` is scored on its first
    piece, but none of it is trained on): the first ones in `held_out_order`, as many as the token cache holds
    out (checked against its first held-out document's tokens)."""
    out = {}
    for name, entry in list_domains(corpus).items():
        texts = list(read_documents(entry, text_field))
        held = [texts[i] for i in held_out_order(texts)[:len(tokens[name].eval.pairs)]]
        offsets = tokens[name].eval.offsets
        first = tokens[name].eval.tokens[offsets[0]:offsets[1]]
        if not np.array_equal(tokenizer.encode(held[0])[:len(first)], first):
            raise LadderlabError(f"{entry}: the token cache's held-out documents are not this corpus's (rebuild it)")
        out[name] = held
    return out


def build_tasks(held: dict[str, list[str]]) -> tuple[dict[str, list[Item]], dict[str, str]]:
    """({task: items}, {skipped task: why}) from each domain's held-out documents."""
    candidates = {f"{d}{CONTINUATION}": [p for text in texts for p in _passages(text)] for d, texts in held.items()}
    every = [text for texts in held.values() for text in texts]
    candidates["python_function"] = [f for text in every for f in _functions(text)]
    candidates["man_description"] = [m for text in every for m in _man_names(text)]
    built, skipped = {}, {}
    for task, pairs in candidates.items():
        items = _items(pairs)
        if len(items) < MIN_ITEMS:
            skipped[task] = (f"{len(items)} items from {len(set(pairs))} candidates in the held-out documents, fewer "
                             f"than the {MIN_ITEMS} a task needs (a larger eval_tokens holds out more)")
        else:
            built[task] = items
    return built, skipped


def digest(items: list[Item]) -> str:
    """SHA-256 of a task's items (what tests/data/demo_tasks.json records for the demo corpus)."""
    return hashlib.sha256(json.dumps([dataclasses.asdict(i) for i in items], ensure_ascii=False).encode()).hexdigest()


def rows(items: list[Item], encode: Callable[[str], np.ndarray], token_bytes: np.ndarray,
         row_len: int) -> dict[str, np.ndarray]:
    """One row per choice, item-major: the batch keys (inputs, targets, segment_ids, positions, mask) of
    [BOS, context, choice], the context cut on its left to fit row_len and the choice to half of it, plus `item`
    (its item's index), `correct` (1 on the true choice's row) and `scored_bytes` (UTF-8 bytes of the scored tokens).
    encode(text) -> token ids without BOS/EOS."""
    n = len(items) * CHOICES
    out = {k: np.zeros((n, row_len), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
    out["mask"] = np.zeros((n, row_len), np.float32)
    out.update(item=np.repeat(np.arange(len(items)), CHOICES), correct=np.zeros(n, np.float32),
               scored_bytes=np.zeros(n, np.float64))
    for i, item in enumerate(items):
        context = encode(item.context)
        for c, choice in enumerate(item.choices):
            r, answer = i * CHOICES + c, encode(choice)[:row_len // 2]
            seq = np.concatenate([[BOS], context[max(0, len(context) + len(answer) - row_len):], answer])
            k = len(seq) - 1
            out["inputs"][r, :k], out["targets"][r, :k] = seq[:-1], seq[1:]
            out["segment_ids"][r, :k], out["positions"][r, :k] = 1, np.arange(k)
            out["mask"][r, k - len(answer):k] = 1.0
            out["correct"][r], out["scored_bytes"][r] = float(c == item.answer), float(token_bytes[answer].sum())
    return out


def _hash(*texts: str) -> bytes:
    return hashlib.sha256("\0".join(texts).encode("utf-8")).digest()


def _items(pairs: list[tuple[str, str]]) -> list[Item]:
    """The first MAX_ITEMS (context, answer) pairs in hash order as items, each with 3 distractors: the answers of
    other pairs, first in hash order of (pair, other), none equal to its answer nor to each other."""
    pairs = list(dict.fromkeys(pairs))
    answers = list(dict.fromkeys(a for _, a in pairs))
    out = []
    for context, answer in sorted(pairs, key=lambda p: _hash(*p))[:MAX_ITEMS]:
        others = sorted((a for a in answers if a != answer), key=lambda a: _hash(context, answer, a))[:CHOICES - 1]
        if len(others) < CHOICES - 1:
            break
        at = _hash(context, answer)[0] % CHOICES
        out.append(Item(context, tuple(others[:at] + [answer] + others[at:]), at))
    return out


def _passages(text: str) -> list[tuple[str, str]]:
    """(context, continuation) from consecutive stretches of a text: the context CONTEXT_CHARS characters or more,
    up to a whitespace; the continuation its next whole words, at most CHOICE_CHARS characters."""
    out, start = [], 0
    while start + CONTEXT_CHARS + CHOICE_CHARS < len(text):
        cut = next((i for i in range(start + CONTEXT_CHARS, start + CONTEXT_CHARS + CHOICE_CHARS)
                    if text[i].isspace()), None)
        end = cut
        for word in WORD.finditer(text, cut, cut + 4 * CHOICE_CHARS) if cut is not None else ():
            if word.end() - cut > CHOICE_CHARS:
                break
            end = word.end()
        if end == cut:  # no whitespace, or a first word longer than CHOICE_CHARS
            start += CONTEXT_CHARS + CHOICE_CHARS
            continue
        out.append((text[start:cut], text[cut:end]))
        start = end
    return out


def _functions(text: str) -> list[tuple[str, str]]:
    """(def line(s) + docstring's first line, first body lines) of every function of a Python source."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines, out = text.splitlines(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = node.body[0]
        doc = isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str)
        body = node.body[1:] if doc else node.body
        head_end = first.lineno if doc else first.lineno - 1  # 1-based last line of the context
        if not body or head_end < node.lineno or body[0].lineno <= head_end:
            continue
        indent = len(lines[node.lineno - 1]) - len(lines[node.lineno - 1].lstrip())
        head = "\n".join(line[indent:] for line in lines[node.lineno - 1:head_end])
        kept, size = [], 0
        for line in lines[body[0].lineno - 1:node.end_lineno]:
            if kept and size + len(line) + 1 > CHOICE_CHARS:
                break
            kept.append("\n" + line[indent:])
            size += len(kept[-1])
        choice = "".join(kept)[:CHOICE_CHARS]
        if choice.strip():
            out.append((head, choice))
    return out


def _man_names(text: str) -> list[tuple[str, str]]:
    """(the page up to "<cmd> -", " <description>") of a man page's NAME section."""
    match = MAN_NAME.search(text)
    return [(text[:match.start(1)] + match[1].rstrip(), " " + match[2].strip())] if match else []
