"""Corpus building: cleaners on golden inputs, the SHA-256 manifest, and the quick corpus from this machine."""

import hashlib
import json
import struct
import zlib

import pytest

from ladderlab.data import cleaning
from ladderlab.data.corpus import build_quick, resolve_corpus, write_corpus
from ladderlab.errors import LadderlabError

ROFF = r""".\" a comment
.TH LS 1 "2024" "GNU" "User Commands"
.SH NAME
ls \- list directory contents
.SH SYNOPSIS
.B ls
[\fIOPTION\fR]... [\fIFILE\fR]...
.de XX
hidden macro body
..
.PP
Sort entries \(em alphabetically\(aqs default.
"""


def test_roff_to_text_golden():
    assert cleaning.roff_to_text(ROFF) == ("LS\n\nNAME\nls - list directory contents\n\nSYNOPSIS\nls\n[OPTION]... [FILE]...\n\n"
                                           "Sort entries \u2014 alphabetically's default.\n")


def test_metamath_proofs_are_removed_and_sections_split():
    source = "$( head $)\n  ax-1 $a |- ph $.\n  th1 $p |- ps $= ( wi ax-mp ) ABCDE $.\n" \
             "$(\n=-=-=-=\n  Section two\n=-=-=-=\n$)\n  th2 $p |- ch $= ( a b ) QQ $.\n"
    assert cleaning.metamath_text(source).count("$= $.") == 2 and "ABCDE" not in cleaning.metamath_text(source)
    docs = list(cleaning.metamath_documents(source))
    assert len(docs) == 2 and docs[1].startswith("$(\n=-=-=-=\n  Section two")


def test_sword_module_blocks_become_clean_text(tmp_path):
    block = zlib.compress("<verse osisID='Gen.1.1'>In the beginning<note>a note</note>, God created.</verse>".encode())
    (tmp_path / "ot.bzz").write_bytes(block)
    (tmp_path / "ot.bzs").write_bytes(struct.pack("<III", 0, len(block), 99))
    assert list(cleaning.sword_texts(tmp_path)) == ["In the beginning, God created.\n"]


def test_play_and_factbook_text():
    assert cleaning.play_text("# HAMLET\n\n**HAMLET**  \nTo be.  \n_Exit_\n") == "HAMLET\n\nHAMLET\nTo be.\n[Exit]\n"
    doc = {"Introduction": {"Background": {"text": "A land."}}, "Geography": {"Area": {"total": {"text": "5 sq km"}}}}
    assert cleaning.factbook_text(doc) == "Background: A land.\ntotal: 5 sq km\n"


def test_write_corpus_manifest_hashes_the_written_files(tmp_path):
    manifest = write_corpus(tmp_path / "c", {"a": ["x\n", "é"], "b": iter(["y"])}, {"a": {"license": "CC0"}})
    for name, entry in manifest.items():
        assert entry["sha256"] == hashlib.sha256((tmp_path / "c" / entry["file"]).read_bytes()).hexdigest()
    assert manifest["a"]["docs"] == 2 and manifest["a"]["bytes"] == 4 and manifest["a"]["license"] == "CC0"
    assert json.loads((tmp_path / "c" / "manifest.json").read_text()) == manifest
    with pytest.raises(LadderlabError, match="domain 'e' came out empty"):
        write_corpus(tmp_path / "d", {"e": []}, {})


def test_quick_corpus_is_built_once_from_this_machine(tmp_path):
    folder = build_quick(tmp_path / "quick", max_bytes=50_000)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest) == {"code", "docs", "german", "vimhelp"}
    for name, entry in manifest.items():
        assert entry["docs"] >= 1 and entry["bytes"] >= 50_000, name
    assert "def " in (folder / "code.jsonl").read_text() and " der " in (folder / "german.jsonl").read_text()
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert build_quick(tmp_path / "quick", max_bytes=50_000) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp  # cached: not rebuilt


def test_demo_corpus_must_be_built_first(tmp_path):
    with pytest.raises(LadderlabError, match="corpus 'demo' is not built .*ladderlab data build-corpus"):
        resolve_corpus("demo", str(tmp_path))
    with pytest.raises(LadderlabError, match="corpus folder not found: .*nowhere"):
        resolve_corpus(str(tmp_path / "nowhere"))
