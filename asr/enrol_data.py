"""What an enrolment reads: one speaker's recordings with their transcripts, checked, and the few
held out to check the fine-tuning (:mod:`asr.enrol` trains on the rest; ``asr serve`` checks a
page's recordings with the same rules)."""

from __future__ import annotations

import math
from pathlib import Path

from asr.data import ManifestError, Utterance, read_manifest
from asr.recipes import folder
from asr.text import Tokenizer, normalize_text

MIN_SECONDS = 30.0  # less speech than this is refused: too little to learn from and to check
# less speech than this is trained on, but its few held-out recordings are a rough check: on
# held-out readers a minute moved the WER either way, 5-10 minutes cut it (docs/enrol.md)
FEW_SECONDS = 180.0


class EnrolError(ValueError):
    """Recordings that cannot be enrolled, named with what is wrong."""


def read_recordings(source: str | Path, tokenizer: Tokenizer) -> list[Utterance]:
    """The recordings of ``source`` (a folder of audio files each with a ``.txt`` beside it, or a
    JSON Lines manifest), transcripts normalised.

    Raises:
        EnrolError: a recording without a transcript (or unreadable), a transcript with characters
            the model cannot spell, or less than :data:`MIN_SECONDS` of speech (how much more is
            needed is said).
    """
    source = Path(source)
    if source.is_dir():
        try:
            summary = folder.prepare(source, speaker="me")
        except FileNotFoundError as exc:
            raise EnrolError(str(exc)) from None
        if summary.skipped:
            listed = "; ".join(f"{what}: {why}" for what, why in summary.skipped[:10])
            more = len(summary.skipped) - 10
            raise EnrolError(
                f"{len(summary.skipped)} recording(s) cannot be used: {listed}"
                + (f"; and {more} more" if more > 0 else "")
            )
        utts = summary.splits["all"]
    elif source.is_file():
        try:
            utts = read_manifest(source)
        except ManifestError as exc:
            raise EnrolError(str(exc)) from None
    else:
        raise EnrolError(f"{source}: no such folder or manifest")
    bad = []
    for utt in utts:
        utt.text = normalize_text(utt.text)
        oov = tokenizer.oov_chars(utt.text)
        if oov:
            where = _transcript_of(utt, source)
            bad.append(f"{where}: {', '.join(repr(c) for c in sorted(oov))}")
        elif not utt.text:
            bad.append(f"{_transcript_of(utt, source)}: no words")
    if bad:
        raise EnrolError(
            "transcripts with characters the model cannot spell (write numbers and symbols as "
            f"words): {'; '.join(bad[:10])}"
            + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        )
    total = sum(u.duration for u in utts)
    if total < MIN_SECONDS:
        raise EnrolError(
            f"{source}: {total:.0f} s of speech in {len(utts)} recording(s) is too little to learn "
            f"from; record at least {math.ceil(MIN_SECONDS - total)} s more (a few minutes is better)"
        )
    return utts


def few_speech_note(train_seconds: float, heldout: int) -> str:
    """What to tell a user who trained on under :data:`FEW_SECONDS` of speech ("" otherwise): its
    few held-out recordings cannot tell a better model from a worse one."""
    if train_seconds >= FEW_SECONDS:
        return ""
    return (
        f"only {train_seconds / 60:.1f} min of speech: {heldout} held-out recordings are a rough "
        "check, and a minute or two can make a model worse on your other speech; 5-10 minutes "
        "are what cut the errors"
    )


def _transcript_of(utt: Utterance, source: Path) -> str:
    """Where a user fixes ``utt``'s transcript: its ``.txt``, or the manifest and utterance id."""
    return str(Path(utt.audio).with_suffix(".txt")) if source.is_dir() else f"{source}: {utt.id}"


def split_heldout(utts: list[Utterance], share: float) -> tuple[list[Utterance], list[Utterance]]:
    """``(train, heldout)``: every k-th recording held out (spread over the session, so the
    held-out few sound like the rest), at least 2 and at least one recording left to train on."""
    n_held = max(2, round(share * len(utts)))
    if len(utts) - n_held < 1:
        raise EnrolError(f"{len(utts)} recordings: at least 3 are needed (2 are held out to check)")
    step = len(utts) / n_held
    held_idx = {int(i * step + step / 2) for i in range(n_held)}
    train = [u for i, u in enumerate(utts) if i not in held_idx]
    held = [u for i, u in enumerate(utts) if i in held_idx]
    return train, held
