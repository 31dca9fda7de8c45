"""Sources and bad input: every format reads back exactly; missing, empty or non-UTF-8 input is a one-line error."""

import json

import pytest

from ladderlab.data.sources import list_domains, read_documents
from ladderlab.errors import LadderlabError


def test_every_format_reads_back_every_document_in_order(corpus, corpus_docs):
    domains = list_domains(corpus)
    assert list(domains) == ["digits", "letters", "upper"]
    for name, entry in domains.items():
        assert list(read_documents(entry)) == corpus_docs[name]


def test_single_text_file_is_one_document_and_empty_documents_are_kept(tmp_path):
    (tmp_path / "poem.txt").write_text("one\ntwo\n")
    (tmp_path / "notes.jsonl").write_text('{"text": ""}\n\n{"text": "x"}\n')
    domains = list_domains(tmp_path)
    assert list(read_documents(domains["poem"])) == ["one\ntwo\n"]
    assert list(read_documents(domains["notes"])) == ["", "x"]


@pytest.mark.parametrize("setup, message", [
    (lambda root: (root / "code").mkdir(), "code: empty domain \\(no files\\)"),
    (lambda root: (root / "code.jsonl").write_text("\n"), "code.jsonl: empty domain \\(no documents\\)"),
    (lambda root: (root / "code.txt").write_bytes(b"ok \xff\xfe"), "code.txt: not UTF-8 \\(byte 3: b'\\\\xff'\\)"),
    (lambda root: (root / "code.jsonl").write_text('{"body": "x"}\n'), "code.jsonl:1: no string field 'text'"),
    (lambda root: (root / "code.jsonl").write_text('{"text": "x"}\n{oops\n'), "code.jsonl:2: not JSON"),
])
def test_bad_domains_are_errors_naming_the_file(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(LadderlabError, match=message):
        for entry in list_domains(tmp_path).values():
            list(read_documents(entry))


def test_bad_corpus_folders_are_errors(tmp_path):
    with pytest.raises(LadderlabError, match="corpus folder not found: .*missing"):
        list_domains(tmp_path / "missing")
    with pytest.raises(LadderlabError, match="no domains"):
        list_domains(tmp_path)
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(LadderlabError, match="a.csv: not a domain"):
        list_domains(tmp_path)
    (tmp_path / "a.csv").unlink()
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "y"}))
    with pytest.raises(LadderlabError, match="domain 'a' is defined twice"):
        list_domains(tmp_path)
