"""The texts of the language lessons (``tokenizer``, ``char-rnn``, ``gpt``) and their tokenizers.

Two sources: Shakespeare (the first 400 kB of Karpathy's *tiny Shakespeare*, public domain;
``assets/texts/``) or the student's own ``.txt`` file, checked with a sentence for each wrong
shape (missing, empty, binary, too short). Tokenizers are byte-level BPE trained with the
``tokenizers`` library (the GPT-2 kind: every byte is a token first, then the most frequent pairs
merge); with 256 tokens there are no merges and a token is a byte, i.e. a character of plain
English. Texts, trained tokenizers and the token ids of a text are cached per process: every
lesson built on the same text and vocabulary reuses them. No Qt here; no torch either.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio import ASSETS_DIR
from studio.core.wording import count_of
from studio.pipelines.train.base import InvalidParameter

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SHAKESPEARE = ASSETS_DIR / "texts" / "shakespeare.txt.gz"
SOURCES = ("shakespeare", "file")
SOURCE_NAMES = {"shakespeare": "Shakespeare (400 kB)", "file": "Your .txt file"}
MIN_CHARS = 2_000  # less than about a page cannot teach a model words
MAX_BYTES = 50_000_000  # a text file larger than this is cut (read once, in memory)
BYTE_VOCAB = 256  # a byte-level BPE with no merges: one token per byte
TEST_SHARE = 0.1  # the end of the text held out for the validation loss


@dataclass(frozen=True)
class Corpus:
    """A text to learn from, and what to say about it."""

    name: str
    text: str

    def describe(self) -> str:
        return f"{self.name}: {len(self.text):,} characters, {len(self.text.split()):,} words."


def text_file_problem(path: str) -> str:
    """Why ``path`` cannot be the lesson's text ('' when it can)."""
    if not path.strip():
        return "Choose your .txt file first (Text file), or pick the Shakespeare text."
    file = Path(path).expanduser()
    if not file.is_file():
        return f"{path} does not exist or is not a file; choose a .txt file."
    try:
        raw = file.read_bytes()[:MAX_BYTES]
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc}); check its permissions."
    if not raw.strip():
        return f"{path} is empty: put some text in it (a few pages at least)."
    if b"\0" in raw[:65536]:
        return (f"{path} is not a text file (it holds binary data); save your text as plain "
                ".txt (UTF-8).")
    text = _decode(raw)
    if len(text) < MIN_CHARS:
        return (f"{path} holds only {len(text):,} characters; a language model needs at least "
                f"{MIN_CHARS:,} (about a page) to learn words from. Add more text.")
    return ""


def _decode(raw: bytes) -> str:
    """UTF-8 (with or without a BOM) when it is, else Latin-1 (every byte is a character)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def check_text(source: str, path: str) -> None:
    """Raise :class:`InvalidParameter` with the reason when the source cannot be loaded."""
    if source == "file":
        problem = text_file_problem(path)
        if problem:
            raise InvalidParameter(problem)


@functools.lru_cache(maxsize=4)
def load_text(source: str, path: str = "") -> Corpus:
    """The lesson's text (checked first: :func:`check_text`)."""
    check_text(source, path)
    if source == "file":
        file = Path(path).expanduser()
        text = _decode(file.read_bytes()[:MAX_BYTES]).replace("\r\n", "\n")
        return Corpus(file.name, text)
    with gzip.open(SHAKESPEARE, "rb") as f:
        return Corpus("Shakespeare", f.read().decode("utf-8"))


def new_bpe(vocab_size: int, text: str, special_tokens: tuple[str, ...] = ()) -> Tokenizer:
    """A byte-level BPE tokenizer (``tokenizers``) trained on ``text`` up to ``vocab_size``
    tokens (fewer when the text has no more pairs to merge); ``special_tokens`` come first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), show_progress=False,
                                  special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


@functools.lru_cache(maxsize=8)
def _bpe(vocab_size: int, corpus: Corpus) -> Tokenizer:
    return new_bpe(vocab_size, corpus.text)


def bpe_prefix(tokenizer: Tokenizer, vocab_size: int) -> Tokenizer:
    """``tokenizer`` cut back to its first ``vocab_size`` tokens: the bytes and the merges it
    learned first. BPE training is greedy (each merge is the most frequent pair given the ones
    before), so this is the tokenizer training to ``vocab_size`` gives, without the training."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    n = min(int(vocab_size), tokenizer.get_vocab_size())
    vocab = {token: i for token, i in tokenizer.get_vocab().items() if i < n}
    cut = Tokenizer(models.BPE(vocab, merges(tokenizer)[:n - BYTE_VOCAB]))
    cut.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    cut.decoder = decoders.ByteLevel()
    return cut


def largest_bpe(corpus: Corpus, vocab_size: int) -> Tokenizer:
    """The tokenizer of ``corpus`` trained up to ``vocab_size`` tokens or as many as it has
    (cached)."""
    return _bpe(int(vocab_size), corpus)


def bpe_for(corpus: Corpus, vocab_size: int) -> Tokenizer:
    """The trained tokenizer of ``corpus`` at ``vocab_size``; a size the text cannot reach is
    refused with the largest it can."""
    tokenizer = _bpe(int(vocab_size), corpus)
    got = tokenizer.get_vocab_size()
    if got < vocab_size:
        raise InvalidParameter(
            f"{corpus.name} supports a vocabulary of only {count_of(got, 'token')} (every pair in it is "
            f"merged by then); choose a vocabulary size of at most {got}.")
    return tokenizer


def merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """The tokenizer's merges in the order it learned them, as the pairs it joined."""
    model = json.loads(tokenizer.to_str())["model"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)  # type: ignore[misc]
            for m in model["merges"]]


@functools.lru_cache(maxsize=8)
def _ids(vocab_size: int, corpus: Corpus) -> np.ndarray:
    encoded = bpe_for(corpus, vocab_size).encode(corpus.text).ids
    return np.asarray(encoded, dtype=np.int64)


def token_ids(corpus: Corpus, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The text as token ids, split into (train, validation): the last :data:`TEST_SHARE`."""
    ids = _ids(int(vocab_size), corpus)
    cut = int(len(ids) * (1 - TEST_SHARE))
    return ids[:cut], ids[cut:]


def readable(token: str) -> str:
    """A byte-level token as a person reads it ("Ġthe" -> " the", "Ċ" -> "\\n")."""
    from tokenizers import decoders

    return decoders.ByteLevel().decode([token])

