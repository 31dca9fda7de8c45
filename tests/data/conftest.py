"""A small three-domain corpus in every source format, each domain with its own alphabet (so a row's domain
can be read off its bytes), and a private cache per test."""

import json

import pytest
from data_helpers import ALPHABETS, make_docs

from ladderlab.data.config import DataConfig
from ladderlab.data.sources import write_array_record


@pytest.fixture
def corpus_docs() -> dict[str, list[str]]:
    return {name: make_docs(alphabet, 60, seed) for seed, (name, alphabet) in enumerate(ALPHABETS.items())}


@pytest.fixture
def corpus(tmp_path, corpus_docs):
    """letters: a folder of .txt files; digits: JSONL; upper: ArrayRecord."""
    root = tmp_path / "corpus"
    (root / "letters").mkdir(parents=True)
    for i, doc in enumerate(corpus_docs["letters"]):
        (root / "letters" / f"{i:03d}.txt").write_text(doc)
    with open(root / "digits.jsonl", "w") as f:
        for doc in corpus_docs["digits"]:
            f.write(json.dumps({"text": doc, "id": 1}) + "\n")
    write_array_record(root / "upper.array_record", corpus_docs["upper"])
    return root


@pytest.fixture
def cfg(corpus, tmp_path) -> DataConfig:
    return DataConfig(corpus=str(corpus), seq_len=64, seed=0, eval_tokens=500, cache_dir=str(tmp_path / "cache"))
