"""Sources: the documents of each domain of a corpus folder, read from text files, folders, JSONL or ArrayRecord.

A corpus folder holds one entry per domain, named for it: `<domain>/` (every file below it, sorted: `.jsonl`
and `.array_record` files by their records, any other file as one document), `<domain>.txt` (one document),
`<domain>.jsonl` (one document per line, text in `text_field`) or `<domain>.array_record` (one UTF-8 document
per record). Files named `manifest.json` or starting with "." are not domains. Text must be UTF-8: anything else
is an error naming the file, never silently dropped or replaced. Empty documents are kept (they still teach
the model where documents end); a domain with no documents at all is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ladderlab.errors import LadderlabError

SUFFIXES = (".txt", ".jsonl", ".array_record")


def list_domains(corpus: Path) -> dict[str, Path]:
    """Domain name -> its entry (file or folder) in a corpus folder."""
    if not corpus.is_dir():
        raise LadderlabError(f"corpus folder not found: {corpus}")
    domains: dict[str, Path] = {}
    for entry in sorted(corpus.iterdir()):
        if entry.name.startswith(".") or entry.name == "manifest.json":
            continue
        name = entry.name if entry.is_dir() else entry.name.removesuffix(entry.suffix)
        if entry.is_file() and entry.suffix not in SUFFIXES:
            raise LadderlabError(f"{entry}: not a domain (expected a folder or a {', '.join(SUFFIXES)} file)")
        if name in domains:
            raise LadderlabError(f"{entry}: domain {name!r} is defined twice (also {domains[name]})")
        domains[name] = entry
    if not domains:
        raise LadderlabError(f"{corpus}: no domains (expected folders or {', '.join(SUFFIXES)} files)")
    return domains


def read_documents(entry: Path, text_field: str = "text") -> Iterator[str]:
    """Every document of one domain entry, in a fixed order."""
    files = sorted(p for p in entry.rglob("*") if p.is_file() and not p.name.startswith(".")) if entry.is_dir() else [entry]
    if entry.is_dir() and not files:
        raise LadderlabError(f"{entry}: empty domain (no files)")
    count = 0
    for path in files:
        for doc in _file_documents(path, text_field, whole_file=entry.is_dir()):
            count += 1
            yield doc
    if count == 0:
        raise LadderlabError(f"{entry}: empty domain (no documents)")


def _file_documents(path: Path, text_field: str, whole_file: bool) -> Iterator[str]:
    if path.suffix == ".jsonl":
        yield from read_jsonl(path, text_field)
    elif path.suffix == ".array_record":
        yield from read_array_record(path)
    elif path.suffix == ".txt" or whole_file:
        yield decode_utf8(path.read_bytes(), str(path))
    else:
        raise LadderlabError(f"{path}: unsupported source type {path.suffix!r}")


def read_jsonl(path: Path, text_field: str = "text") -> Iterator[str]:
    """One document per non-blank line: the string at `text_field` of a JSON object."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            line = decode_utf8(raw, f"{path}:{line_no}")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise LadderlabError(f"{path}:{line_no}: not JSON ({e.msg})") from None
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise LadderlabError(f"{path}:{line_no}: no string field {text_field!r}")
            yield text


def read_array_record(path: Path) -> Iterator[str]:
    """One UTF-8 document per ArrayRecord record."""
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    try:
        for i, raw in enumerate(reader.read_all()):
            yield decode_utf8(raw, f"{path} record {i}")
    finally:
        reader.close()


def write_array_record(path: Path, documents: list[str]) -> None:
    """Write documents as one UTF-8 record each (the format `read_array_record` reads)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    try:
        for doc in documents:
            writer.write(doc.encode("utf-8"))
    finally:
        writer.close()


def decode_utf8(raw: bytes, where: str) -> str:
    """`raw` as UTF-8, or a LadderlabError naming `where` and the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LadderlabError(f"{where}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
