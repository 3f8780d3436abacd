"""CTC alignment: where each character and word of a transcript sits in the model's frames.

Word times come from forced alignment of the hypothesis (or of a given transcript) against the
log-probabilities with torchaudio's ``forced_align`` (Viterbi over CTC paths): a word runs from the
first frame of its first character to the last frame of its last character. Its confidence is the
geometric mean of the aligned path's frame probabilities inside the word, in [0, 1].

CTC marks where a character was heard, not where it ends: a word's last character often fires
0.1-0.3 s after the sound stopped, or at the onset of a long final vowel. Given the audio's
energies, a word edge that borders a pause is moved onto where the sound starts or stops
(:func:`snap_to_sound`); edges between words spoken without a pause stay where CTC puts them.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torchaudio.functional as AF

from asr.text import SPACE, Tokenizer, ctc_min_frames
from asr.transcript import Char, Word
from asr.vad import FRAME_SECONDS, speech_frames


class AlignmentError(ValueError):
    """A transcript that cannot be aligned to the audio (e.g. more characters than frames)."""


def align(
    log_probs: torch.Tensor,
    text: str,
    tokenizer: Tokenizer,
    frame_seconds: float,
    offset: float = 0.0,
    energy_db: torch.Tensor | None = None,
    duration: float | None = None,
) -> list[Word]:
    """Align ``text`` (normalised) to ``log_probs`` and return its words with times.

    Args:
        log_probs: ``(T, V)`` one utterance's log-probabilities.
        text: the transcript to place (a hypothesis, or a known reference).
        tokenizer: the model's tokens.
        frame_seconds: seconds per output frame.
        offset: seconds added to every time (where ``log_probs`` starts in the file).
        energy_db: per-10 ms energies of the same audio (:func:`asr.vad.frame_energies_db`):
            word edges at pauses move onto the sound (:func:`snap_to_sound`).
        duration: the audio's length in seconds: no time is placed past it (the last output
            frame may reach beyond the audio's end, by up to a frame).

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
    merged = AF.merge_tokens(path, scores.exp(), blank=tokenizer.blank_id)
    spans = [(span.start, span.end) for span in merged]
    assert len(spans) == len(flat), (len(spans), len(flat))
    last = offset + (frames * frame_seconds if duration is None else duration)

    def at(frame: int) -> float:
        return round(min(offset + frame * frame_seconds, last), 3)

    out, k = [], 0
    for word, ids in zip(words, labels):
        chars = spans[k : k + len(ids)]
        k += len(ids)
        start, end = chars[0][0], chars[-1][1]
        confidence = math.exp(float(scores[start:end].mean()))
        out.append(
            Word(
                word,
                at(start),
                at(end),
                round(min(1.0, confidence), 4),
                [Char(c, at(s), at(e)) for c, (s, e) in zip(word, chars)],
            )
        )
    return out if energy_db is None else snap_to_sound(out, energy_db, offset)


def _release_burst(faint: list[bool], e: int, hi: int, gap: int, min_frames: int = 2) -> int:
    """Past a word's end ``e``: one burst of faint frames (at least ``min_frames``) after at most
    ``gap`` frames of quiet, as a final "t" or "k" is released after its closure, extends the word
    to the burst's end. Only one: a chain of blips in wandering noise must not carry the end on."""
    t = e
    while t < hi and t <= e + gap and not faint[t]:
        t += 1
    run = t
    while run < hi and faint[run]:
        run += 1
    return run if t < hi and t <= e + gap and run - t >= min_frames else e


def _bridge(sound: list[bool], gap: int) -> list[bool]:
    """``sound`` with quiet stretches of up to ``gap`` frames between sound frames filled in."""
    sound, last = list(sound), None
    for t, on in enumerate(sound):
        if on:
            if last is not None and 1 < t - last <= gap + 1:
                sound[last + 1 : t] = [True] * (t - last - 1)
            last = t
    return sound


def snap_to_sound(
    words: list[Word],
    energy_db: torch.Tensor,
    offset: float = 0.0,
    closure: float = 0.15,
    margin_db: float = 6.0,
    tail_db: float = 2.0,
    range_db: float = 60.0,
) -> list[Word]:
    """Move word edges that border a pause onto where the sound starts or stops.

    Args:
        words: aligned words, in order.
        energy_db: per-10 ms energies of the audio the words were aligned in.
        offset: where that audio starts (seconds; the words' times include it).
        closure: quiet stretches up to this long inside a word (the closure before a "t" or
            "k") do not end it.
        margin_db: sound is this far above the noise floor (lower than the 10 dB that cutting
            long files at pauses uses: a word's fading end is quieter than its middle).
        tail_db: once found, the sound runs on outward while frames stay this far above the
            floor (hysteresis: a fading end or a soft onset is quieter than ``margin_db`` but
            still above the noise).
        range_db: and at most this far below the file's loud end (wider than the 40 dB that
            cutting long files uses: a quiet speaker's "s" can be 50 dB under a loud word).

    A word's sound is the run of sound frames (:func:`asr.vad.speech_frames`, gaps up to
    ``closure`` bridged) under its characters' frames (or, when none of them is on sound, anywhere
    in its aligned span), widened through the faint frames around it.
    When that run stops before the next word's aligned start, the word ends where the run ends
    (also when the last character fired later, in the pause); when it reaches the next word, the
    edge stays. Starts likewise. One faint burst within ``closure`` after the end (a final "t"
    released after its closure) extends it.
    """
    sound = speech_frames(energy_db, margin_db=margin_db, range_db=range_db).tolist()
    faint = speech_frames(energy_db, margin_db=min(tail_db, margin_db), range_db=range_db).tolist()
    n = len(sound)
    if not words or not any(sound) or all(sound):
        return words
    gap = int(round(closure / FRAME_SECONDS))
    sound = _bridge(sound, gap)

    def frame(seconds: float) -> int:
        return min(n, max(0, int(round((seconds - offset) / FRAME_SECONDS))))

    spans = [(frame(w.start), frame(w.end)) for w in words]
    out = []
    for i, (w, (a, b)) in enumerate(zip(words, spans)):
        lo = spans[i - 1][1] if i else 0  # the neighbours' aligned edges bound the search
        hi = spans[i + 1][0] if i + 1 < len(words) else n
        # the sound under the word's characters; a character fired in a pause (often the last,
        # late) has none, and then only its neighbours' sound counts, not a noise blip it spans
        heard = [
            t
            for c in w.chars
            for t in range(frame(c.start), max(frame(c.end), frame(c.start) + 1))
            if t < n and sound[t]
        ] or [t for t in range(a, max(b, a + 1)) if t < n and sound[t]]
        heard.sort()
        if not heard:
            out.append(w)
            continue
        s, e = heard[0], heard[-1] + 1
        while s > lo and (sound[s - 1] or faint[s - 1]):
            s -= 1
        while e < hi and (sound[e] or faint[e]):
            e += 1
        e = _release_burst(faint, e, hi, gap)
        start = w.start if s == lo and i else round(offset + s * FRAME_SECONDS, 3)
        end = w.end if e == hi and i + 1 < len(words) else round(offset + e * FRAME_SECONDS, 3)
        if start >= end:
            out.append(w)
            continue
        chars = [
            replace(c, start=min(max(c.start, start), end), end=min(max(c.end, start), end))
            for c in w.chars
        ]
        out.append(replace(w, start=start, end=end, chars=chars))
    return out
