"""CTC alignment: where each character and word of a transcript sits in the model's frames.

Word times come from forced alignment of the hypothesis (or of a given transcript) against the
log-probabilities with torchaudio's ``forced_align`` (Viterbi over CTC paths): a word runs from the
first frame of its first character to the last frame of its last character. Its confidence is the
geometric mean of the aligned path's frame probabilities inside the word, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torchaudio.functional as AF

from asr.data import ctc_min_frames
from asr.text import SPACE, Tokenizer


class AlignmentError(ValueError):
    """A transcript that cannot be aligned to the audio (e.g. more characters than frames)."""


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


def align(
    log_probs: torch.Tensor,
    text: str,
    tokenizer: Tokenizer,
    frame_seconds: float,
    offset: float = 0.0,
) -> list[Word]:
    """Align ``text`` (normalised) to ``log_probs`` and return its words with times.

    Args:
        log_probs: ``(T, V)`` one utterance's log-probabilities.
        text: the transcript to place (a hypothesis, or a known reference).
        tokenizer: the model's tokens.
        frame_seconds: seconds per output frame.
        offset: seconds added to every time (where ``log_probs`` starts in the file).

    Raises:
        AlignmentError: characters outside the vocabulary, or more than the frames can hold.
    """
    words = text.split()
    if not words:
        return []
    oov = tokenizer.oov_chars(" ".join(words))
    if oov:
        raise AlignmentError(f"characters outside the model's vocabulary: {sorted(oov)}")
    # align the words without their spaces: a space is optional between words in CTC outputs
    labels = [tokenizer.encode(w) for w in words]
    flat = [i for w in labels for i in w]
    frames = log_probs.shape[0]
    if ctc_min_frames(flat) > frames:
        raise AlignmentError(
            f"{len(flat)} characters need at least {ctc_min_frames(flat)} frames "
            f"({ctc_min_frames(flat) * frame_seconds:.2f} s) but the audio has {frames}"
        )
    space = tokenizer.encode(SPACE)[0] if SPACE in tokenizer.tokens else None
    emissions = log_probs.float().cpu()
    if space is not None:
        # treat the space as a second blank, so it never competes with the characters being placed
        emissions = emissions.clone()
        emissions[:, 0] = torch.logaddexp(emissions[:, 0], emissions[:, space])
    path, scores = AF.forced_align(
        emissions[None], torch.tensor([flat], dtype=torch.int32), blank=tokenizer.blank_id
    )
    path, scores = path[0], scores[0]  # (T,), (T,)
    # token spans: consecutive frames of one label (a repeated label is split by a blank)
    spans: list[tuple[int, int]] = []
    prev = tokenizer.blank_id
    for t, label in enumerate(path.tolist()):
        if label != tokenizer.blank_id and (label != prev or not spans):
            spans.append((t, t + 1))
        elif label != tokenizer.blank_id:
            spans[-1] = (spans[-1][0], t + 1)
        prev = label
    assert len(spans) == len(flat), (len(spans), len(flat))
    out, k = [], 0
    for word, ids in zip(words, labels):
        chars = spans[k : k + len(ids)]
        k += len(ids)
        start, end = chars[0][0], chars[-1][1]
        confidence = math.exp(float(scores[start:end].mean()))
        out.append(
            Word(
                word,
                round(offset + start * frame_seconds, 3),
                round(offset + end * frame_seconds, 3),
                round(min(1.0, confidence), 4),
                [
                    Char(
                        c,
                        round(offset + s * frame_seconds, 3),
                        round(offset + e * frame_seconds, 3),
                    )
                    for c, (s, e) in zip(word, chars)
                ],
            )
        )
    return out
