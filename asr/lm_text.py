"""Raw text for language models: files and folders in, normalised sentences (word lists) out.

Text arrives in many shapes, and each is read as what a speaker would say:

- manifests (``.jsonl``): each line's ``text``;
- a sentence a line (Common Voice's sentence lists), a paragraph a line (speeches), or a whole
  document on one line (meeting transcripts): each line is split into sentences;
- hard-wrapped prose (Project Gutenberg's books, lines of ~70 characters with blank lines between
  paragraphs): a paragraph's lines are joined first, so no sentence is cut at a line end.

Within a line or paragraph, speaker labels at its start (``THE PRESIDENT:``, ``MR. NIXON.``,
``Q.``) and stage directions in brackets (``(Applause.)``, ``[laughter]``) are dropped, sentences
are split at ``.``, ``!`` and ``?`` (not after ``Mr.``, ``Dr.`` and similar), and each sentence is
normalised as training transcripts are (:func:`asr.text.normalize_text`). A word the tokenizer
cannot spell (``1964``, ``naïve``) ends the sentence there, so no n-gram spans the gap.
"""

from __future__ import annotations

import array
import codecs
import itertools
import json
import re
import statistics
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from asr.text import Tokenizer, normalize_text

TEXT_SUFFIXES = (".txt", ".text", ".jsonl")
# a speaker label: one to five capitalised words ending in ':' or '.', at the start of a line
# (two letters or more, or "Q"; "I." and "A." begin sentences)
_SPEAKER = re.compile(r"^\s*(?:[A-Z][A-Z'\-]+\.?|Q)(?:\s+[A-Z][A-Z'\-]*\.?){0,4}\s*[:.](?=\s)")
_MIXED_LABEL = re.compile(r"^\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2}:\s")  # "President: ..." headers
_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof rev gen gov sen rep col capt lt sgt messrs mme mlle no vol vs "
    "etc co inc ltd mt ft".split()
)
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
_LAST_WORD = re.compile(r"([A-Za-z.]+)$")


class TextError(ValueError):
    """A text source that cannot be read."""


def text_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files named, and every text file (``.txt``, ``.jsonl``) below each folder named, sorted."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise TextError(f"{path}: text file or folder not found")
    return files


def is_wrapped(lines: Iterable[str]) -> bool:
    """Whether ``lines`` look like hard-wrapped prose: paragraphs of lines cut near one width."""
    lengths, blank = array.array("q"), False
    for x in lines:
        if x.strip():
            lengths.append(len(x.rstrip()))
        else:
            blank = True
    if len(lengths) < 5 or not blank:
        return False
    return 50 <= statistics.median(lengths) <= 90 and max(lengths) <= 120


class TextLines:
    """A text file's lines (as ``str.splitlines`` cuts the whole text), read from the file each
    time they are iterated, so a large file is never held whole.

    Raises:
        TextError: the file is not UTF-8 text (naming the byte), or holds NUL bytes in its first
            50 lines (binary data).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[str]:
        try:
            with self.path.open(encoding="utf-8") as f:
                n = 0
                for raw in f:
                    for line in raw.splitlines():
                        n += 1
                        if n <= 50 and "\x00" in line:
                            raise TextError(f"{self.path}: binary data, not text")
                        yield line
        except UnicodeDecodeError as exc:
            at = _first_bad_byte(self.path)
            raise TextError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {at})") from None


def _first_bad_byte(path: Path, block: int = 1 << 20) -> int:
    """The file offset where ``path`` stops being UTF-8 (a decode error's own offset counts from
    the start of the chunk the reader was decoding)."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with path.open("rb") as f:
        while data := f.read(block):
            held = len(decoder.getstate()[0])  # a sequence's first bytes, from the last block
            try:
                decoder.decode(data)
            except UnicodeDecodeError as exc:
                return offset - held + exc.start
            offset += len(data)
    return offset


def units(lines: Iterable[str]) -> Iterator[str]:
    """The file's paragraphs (wrapped prose) or lines (anything else), speaker labels removed.

    ``lines`` is read twice (whether it is wrapped, then its units): a list, or a
    :class:`TextLines` that reads its file again."""
    if is_wrapped(lines):
        paragraph: list[str] = []
        for line in itertools.chain(lines, [""]):
            if line.strip():
                paragraph.append(line.strip())
            elif paragraph:
                yield " ".join(paragraph)
                paragraph = []
        return
    for line in lines:
        if line.strip():
            yield line


def strip_directions(text: str) -> str:
    """Drop a leading speaker label and every bracketed stage direction."""
    text = _MIXED_LABEL.sub(" ", _SPEAKER.sub(" ", text, count=1), count=1)
    previous = None
    while previous != text:  # nested brackets, innermost first
        previous, text = text, _BRACKETS.sub(" ", text)
    return text


def split_sentences(text: str) -> list[str]:
    """Cut running text into sentences at ``.``, ``!`` or ``?`` followed by a space; not after an
    abbreviation (``Mr.``, ``etc.``), an initial (``B.``) or dotted letters (``U.S.``)."""
    return list(_sentences(text))


def _sentences(text: str) -> Iterator[str]:
    """:func:`split_sentences`, one at a time (a document on one line holds many)."""
    start = 0
    for match in _END.finditer(text):
        if text[match.start()] == ".":
            last = _LAST_WORD.search(text, start, match.start())
            word = last.group(1).lower() if last else ""
            if word in _ABBREVIATIONS or len(word.replace(".", "")) == 1 or "." in word:
                continue
        if text[start : match.start() + 1].strip():
            yield text[start : match.start() + 1]
        start = match.end()
    if text[start:].strip():
        yield text[start:]


def spellable_runs(words: list[str], tokenizer: Tokenizer) -> Iterator[list[str]]:
    """``words`` cut at every word the tokenizer cannot spell (the word itself dropped)."""
    run: list[str] = []
    for word in words:
        if tokenizer.oov_chars(word):
            if run:
                yield run
            run = []
        else:
            run.append(word)
    if run:
        yield run


def _manifest_texts(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise TextError(f"{path}: line {n}: not a manifest line with 'text'") from None


def iter_sentences(
    paths: Sequence[str | Path], tokenizer: Tokenizer | None = None
) -> Iterator[list[str]]:
    """Normalised sentences (lists of words) from text files, folders and manifests, streamed.

    Args:
        paths: files (``.txt`` and the like, or ``.jsonl`` manifests) and folders of them.
        tokenizer: words it cannot spell split a sentence (default: the English characters).

    Raises:
        TextError: a path that does not exist, a file that is not UTF-8 text, or a bad manifest
            line (naming the file and line).
    """
    tokenizer = tokenizer or Tokenizer()
    for path in text_files(paths):
        if path.suffix.lower() == ".jsonl":
            for text in _manifest_texts(path):
                yield from spellable_runs(normalize_text(text).split(), tokenizer)
            continue
        for unit in units(TextLines(path)):
            for sentence in _sentences(strip_directions(unit)):
                yield from spellable_runs(normalize_text(sentence).split(), tokenizer)


# a pronouncing dictionary's alternative pronunciations: "read(2)" is "read"
_VARIANT = re.compile(r"\(\d+\)$")


def read_words(path: str | Path) -> Iterator[str]:
    """The words of a word list (a word a line) or a pronouncing dictionary (``word PH ON ES``,
    CMUdict's ``word(2)`` variants folded into ``word``, ``;;;`` comment lines skipped): each
    line's first field, in order.

    Raises:
        TextError: the file does not exist or is not UTF-8 (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise TextError(f"{path}: no such word list")
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                fields = raw.decode("utf-8").split()
            except UnicodeDecodeError:
                raise TextError(f"{path}: line {n}: not UTF-8 text") from None
            if fields and not fields[0].startswith(";;;"):
                yield _VARIANT.sub("", fields[0])


def spelled_words(words: Iterable[str], min_letters: int = 2) -> tuple[list[str], int]:
    """Each distinct word of ``min_letters`` or more letters spelled out, ``'cindy'`` ->
    ``'c i n d y'``, sorted: sentences of letter words for an n-gram of how names and words are
    spelled (AN4's spelled names, a user's dictated spellings). Words with anything but the
    letters a-z after lower-casing (``o'brien``, ``naïve``, ``3d``), and shorter ones, are left
    out.

    Returns:
        the spelled words, and how many distinct words were left out.
    """
    kept, left_out = set(), set()
    for word in words:
        word = word.lower()
        if re.fullmatch(r"[a-z]+", word) and len(word) >= min_letters:
            kept.add(word)
        else:
            left_out.add(word)
    return [" ".join(w) for w in sorted(kept)], len(left_out)
