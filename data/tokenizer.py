"""Tokenizers: byte-level (the default, nothing to train) and SentencePiece trained on a corpus.

Both share the special ids PAD=0, BOS=1, EOS=2; a document is encoded as [BOS, tokens..., EOS], so every
real token (and the document's end) is the target of exactly one prediction. `token_bytes` gives each id's
UTF-8 length, so a loss in nats per token converts exactly to bits per byte.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.paths import AnyPath, as_path, is_url, write_atomic

PAD, BOS, EOS = 0, 1, 2


class ByteTokenizer:
    """UTF-8 bytes shifted by 3: byte b is id b + 3; 259 ids in all."""

    name = "byte"
    vocab_size = 259

    def encode(self, text: str) -> np.ndarray:
        """[BOS, bytes + 3..., EOS] as int32."""
        body = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 3
        return np.concatenate([[BOS], body, [EOS]]).astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        """Bytes per id: 0 for the specials, 1 for every byte."""
        return np.array([0, 0, 0] + [1] * 256, np.int32)

    def fingerprint(self) -> str:
        return "byte-v1"


class SentencePieceTokenizer:
    """A SentencePiece model (trained by `train_sentencepiece`, so PAD/BOS/EOS are 0/1/2 and no text is rewritten)."""

    def __init__(self, path: str | AnyPath):
        """path: a local `.model` file or an object-store URL (read whole)."""
        import sentencepiece as spm

        self.path = as_path(path)
        if not self.path.is_file():
            raise LadderlabError(f"tokenizer model not found: {self.path} (train one with `ladderlab data train-tokenizer`)")
        self._sp = spm.SentencePieceProcessor(model_proto=self.path.read_bytes())
        if (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id()) != (PAD, BOS, EOS):
            raise LadderlabError(f"{self.path}: pad/bos/eos ids must be 0/1/2 (train with `ladderlab data train-tokenizer`)")
        self.name = self.path.name
        self.vocab_size = self._sp.get_piece_size()

    def encode(self, text: str) -> np.ndarray:
        return np.array([BOS, *self._sp.encode(text), EOS], np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids if i > EOS])

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each piece stands for (the word-boundary mark is one space; byte pieces are one byte)."""
        sizes = np.zeros(self.vocab_size, np.int32)
        for i in range(self.vocab_size):
            if self._sp.is_byte(i):
                sizes[i] = 1
            elif not (self._sp.is_control(i) or self._sp.is_unknown(i)):
                sizes[i] = len(self._sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return sizes

    def fingerprint(self) -> str:
        return "sp-" + hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


Tokenizer = ByteTokenizer | SentencePieceTokenizer


def load_tokenizer(name: str) -> Tokenizer:
    """"byte", or the path of a SentencePiece `.model` file."""
    return ByteTokenizer() if name == "byte" else SentencePieceTokenizer(name)


def train_sentencepiece(texts: Iterable[str], out: str | AnyPath, vocab_size: int) -> AnyPath:
    """Train a BPE SentencePiece model on `texts`, write `out` (.model, local or an object-store URL, atomically:
    `paths.write_atomic`); byte fallback, so no text is unknown.

    Text is taken as it is (identity normalisation, no dummy prefix), so pieces' bytes add up to the text's.
    Documents are fed in chunks of whole lines (newlines included), as SentencePiece skips very long inputs.
    """
    import sentencepiece as spm

    out = as_path(out)
    if out.suffix != ".model":
        raise LadderlabError(f"{out}: the tokenizer file must end in .model")
    if vocab_size < 260 + 3:
        raise LadderlabError(f"vocab_size={vocab_size}: must be at least 263 (256 byte pieces + specials + merges)")
    if not is_url(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_chunks(texts), model_writer=model, vocab_size=vocab_size, model_type="bpe",
            pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=3, byte_fallback=True, normalization_rule_name="identity",
            add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True, max_sentence_length=1 << 16,
            train_extremely_large_corpus=False, num_threads=2, minloglevel=2,
            hard_vocab_limit=False)
    except RuntimeError as e:
        raise LadderlabError(f"{out}: SentencePiece training failed: {str(e).splitlines()[0]}") from e
    write_atomic(out, model.getvalue())
    return out


def _chunks(texts: Iterable[str], size: int = 4096) -> Iterator[str]:
    """Each text cut at line ends into pieces of about `size` characters."""
    for text in texts:
        chunk: list[str] = []
        length = 0
        for line in text.splitlines(keepends=True):
            chunk.append(line)
            length += len(line)
            if length >= size:
                yield "".join(chunk)
                chunk, length = [], 0
        if chunk:
            yield "".join(chunk)
