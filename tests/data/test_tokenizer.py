"""Tokenizers: byte ids and round trips, and a SentencePiece model trained on real text whose pieces add up to
the text's bytes (so bits per byte are exact)."""

import numpy as np
import pytest

from ladderlab.data.tokenizer import BOS, EOS, ByteTokenizer, load_tokenizer, train_sentencepiece
from ladderlab.errors import LadderlabError

TEXT = "Grüße, world!\n\tx = 42  # ok"


def test_byte_tokenizer_ids_and_round_trip():
    tok = load_tokenizer("byte")
    ids = tok.encode("Aé")
    np.testing.assert_array_equal(ids, [BOS, ord("A") + 3, 0xC3 + 3, 0xA9 + 3, EOS])
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.vocab_size == 259 and tok.token_bytes()[ids].sum() == len("Aé".encode())


def test_sentencepiece_trains_round_trips_and_counts_bytes(tmp_path):
    pytest.importorskip("sentencepiece")
    import sysconfig
    from pathlib import Path

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text() for name in ("argparse.py", "textwrap.py", "string.py")]
    model = train_sentencepiece(texts, tmp_path / "sp.model", vocab_size=600)
    tok = load_tokenizer(str(model))
    assert tok.vocab_size == 600
    ids = tok.encode(TEXT)
    assert ids[0] == BOS and ids[-1] == EOS
    assert tok.decode(ids) == TEXT  # identity normalisation: whitespace and accents survive
    assert tok.token_bytes()[ids].sum() == len(TEXT.encode())
    assert len(tok.encode(texts[0])) < 0.6 * len(ByteTokenizer().encode(texts[0]))  # it really learned merges
    assert tok.fingerprint() == load_tokenizer(str(model)).fingerprint()


def test_bad_tokenizers_are_errors(tmp_path):
    with pytest.raises(LadderlabError, match="tokenizer model not found: .*nope.model"):
        load_tokenizer(str(tmp_path / "nope.model"))
    with pytest.raises(LadderlabError, match="must end in .model"):
        train_sentencepiece(["x"], tmp_path / "sp.bin", vocab_size=600)
