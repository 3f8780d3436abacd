"""Text normalisation and the character tokenizer (blank is id 0)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

BLANK = "<blank>"
BLANK_ID = 0
SPACE = " "
ENGLISH_CHARS = [SPACE, "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^\w\s']")  # punctuation and symbols; letters, digits, _ and ' stay
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")  # an apostrophe not inside a word


def normalize_text(text: str) -> str:
    """Normalise a transcript the same way for training, scoring and language models.

    Unicode NFKC, lower case, typographic apostrophes folded to ``'``, punctuation dropped (a
    hyphen or slash splits words), apostrophes kept only inside words, whitespace collapsed.

    >>> normalize_text("  Don't STOP -- the 'rock-and-roll'!  ")
    "don't stop the rock and roll"
    """
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = _NOT_WORD.sub(" ", text).replace("_", " ")
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def ctc_min_frames(labels: Sequence[int]) -> int:
    """Frames CTC needs for ``labels``: one per label plus a blank between each repeated pair."""
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    return len(labels) + repeats


class Tokenizer:
    """Characters <-> ids. Id 0 is the CTC blank; the rest are single characters.

    Args:
        chars: the characters of the vocabulary, in id order from 1.
    """

    def __init__(self, chars: Iterable[str] = ENGLISH_CHARS) -> None:
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError(f"tokenizer characters must be distinct single characters: {chars}")
        self.tokens = [BLANK, *chars]
        self._ids = {c: i for i, c in enumerate(self.tokens) if i != BLANK_ID}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    def oov_chars(self, text: str) -> Counter[str]:
        """Characters of ``text`` that are not in the vocabulary, with counts."""
        return Counter(c for c in text if c not in self._ids)

    def encode(self, text: str) -> list[int]:
        """Ids of an already-normalised text.

        Raises:
            ValueError: a character is outside the vocabulary (named in the message).
        """
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise ValueError(
                f"character {exc.args[0]!r} in {text!r} is outside the vocabulary"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (blanks dropped, no CTC collapsing: that is the decoder's job)."""
        return "".join(self.tokens[i] for i in ids if i != BLANK_ID)

    def to_list(self) -> list[str]:
        return list(self.tokens[1:])

    @classmethod
    def from_list(cls, chars: list[str]) -> Tokenizer:
        return cls(chars)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_list(), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        try:
            chars = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a tokenizer file: {exc}") from None
        if not isinstance(chars, list):
            raise ValueError(f"{path}: a tokenizer file holds a JSON list of characters")
        return cls(chars)
