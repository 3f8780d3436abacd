"""What a transcription gives: timed words and characters, subtitle cues, the transcript.

:mod:`asr.align` makes the words, :mod:`asr.transcribe` the transcripts, :mod:`asr.formats`
writes them and :mod:`asr.serve` sends them; all share these records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

CUE_SECONDS = 7.0  # subtitle cues: at most this long
CUE_LINE_CHARS = 42  # ... with lines of at most this many characters, two lines a cue
CUE_GAP_SECONDS = 1.0  # a pause this long starts a new cue


@dataclass
class Char:
    char: str
    start: float  # seconds
    end: float


@dataclass
class Word:
    """A word with its start and end in seconds and a confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float
    chars: list[Char] = field(default_factory=list)


@dataclass
class Segment:
    """A stretch of words: a subtitle cue (at most two lines of ~42 characters, ~7 s)."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return wrap_lines(self.text, CUE_LINE_CHARS)


@dataclass
class Transcript:
    """What transcribing one file or waveform gives: text, timed words, segments, duration (s)."""

    text: str
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    path: str = ""


def wrap_lines(text: str, width: int) -> list[str]:
    """Greedy word wrap at ``width`` characters (a longer word stands alone)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def make_segments(words: Sequence[Word]) -> list[Segment]:
    """Group timed words into cues of at most ~7 s and two lines of ~42 characters."""
    segments: list[Segment] = []
    current: list[Word] = []

    def flush() -> None:
        if current:
            segments.append(
                Segment(
                    current[0].start,
                    current[-1].end,
                    " ".join(w.word for w in current),
                    list(current),
                )
            )
            current.clear()

    for word in words:
        if current:
            text = " ".join(w.word for w in current) + " " + word.word
            too_long = word.end - current[0].start > CUE_SECONDS
            too_wide = len(wrap_lines(text, CUE_LINE_CHARS)) > 2
            pause = word.start - current[-1].end > CUE_GAP_SECONDS
            if too_long or too_wide or pause:
                flush()
        current.append(word)
    flush()
    return segments
