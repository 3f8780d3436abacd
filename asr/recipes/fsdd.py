"""Free Spoken Digit Dataset: ``recordings/{digit}_{speaker}_{index}.wav`` -> manifests.

Splits:
- ``corpus`` (default): the corpus's own test split is index 0-4 of every speaker and digit; index
  5-9 is held out as ``dev`` (for model selection, so the test split stays unseen); the rest train.
- ``speaker``: ``--test-speakers`` (and optional ``--dev-speakers``) are held out whole.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import PrepareSummary, fetch_archive, probe, split_names
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Download, Source, add_choice

URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEST_INDICES = range(0, 5)  # the corpus's own test split
DEV_INDICES = range(5, 10)
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


def find_recordings(source: Path) -> Path:
    """The ``recordings`` folder in ``source`` (the corpus root, an extracted archive, or itself)."""
    for candidate in (source / "recordings", source, *sorted(source.glob("*/recordings"))):
        if candidate.is_dir() and any(candidate.glob("*.wav")):
            return candidate
    raise FileNotFoundError(f"{source}: no FSDD recordings/ folder with .wav files found")


def fetch(out_dir: Path, url: str = URL, checksum: str | None = None) -> Path:
    """Download and extract the corpus archive into ``out_dir/download`` (skipped when done)."""
    return fetch_archive(url, Path(out_dir) / "download", "fsdd.zip", checksum)


def prepare(
    source: Path,
    split: str = "corpus",
    test_speakers: list[str] | str | None = None,
    dev_speakers: list[str] | str | None = None,
) -> PrepareSummary:
    """Read an FSDD tree and return the utterances of each split.

    Args:
        source: the corpus root (holding ``recordings/``).
        split: ``corpus`` or ``speaker``.
        test_speakers, dev_speakers: for ``split="speaker"``, the held-out speakers.
    """
    recordings = find_recordings(Path(source))
    test_spk, dev_spk = set(split_names(test_speakers)), set(split_names(dev_speakers))
    if split == "speaker" and not test_spk:
        raise ValueError("split 'speaker' needs --test-speakers")
    if split not in ("corpus", "speaker"):
        raise ValueError(f"FSDD split must be 'corpus' or 'speaker', got {split!r}")
    summary = PrepareSummary(splits={"train": [], "dev": [], "test": []})
    for path in sorted(recordings.glob("*.wav")):
        match = _NAME.match(path.stem)
        if not match:
            summary.skip(str(path), "name is not {digit}_{speaker}_{index}.wav")
            continue
        digit, speaker, index = int(match[1]), match[2], int(match[3])
        duration = probe(path, str(path), summary)
        if duration is None:
            continue
        if duration <= 0:
            summary.skip(str(path), "empty audio")
            continue
        utt = Utterance(path.stem, str(path), round(duration, 4), DIGITS[digit], speaker)
        if split == "corpus":
            name = "test" if index in TEST_INDICES else "dev" if index in DEV_INDICES else "train"
        else:
            name = "test" if speaker in test_spk else "dev" if speaker in dev_spk else "train"
        summary.splits[name].append(utt)
    if not summary.splits["dev"]:
        del summary.splits["dev"]
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--split`` and the held-out speakers of ``--split speaker``."""
    add_choice(
        parser,
        "--split",
        ["corpus", "speaker"],
        "corpus: the corpus's own test split by take index; speaker: hold out speakers",
    )
    parser.add_argument(
        "--test-speakers", default=None, help="comma-separated, for --split speaker"
    )
    parser.add_argument("--dev-speakers", default=None, help="comma-separated, for --split speaker")


CORPUS = Corpus(
    name="fsdd",
    help="Free Spoken Digit Dataset (recordings/{digit}_{speaker}_{index}.wav)",
    description="Free Spoken Digit Dataset. Split 'corpus': index 0-4 = test (the corpus's "
    "own), 5-9 = dev, the rest train. Split 'speaker': --test-speakers/--dev-speakers held "
    "out. " + DOWNLOAD_NOTE,
    source=Source("corpus root holding recordings/"),
    read=lambda source, args: prepare(source, args.split, args.test_speakers, args.dev_speakers),
    add_arguments=add_arguments,
    download=Download("the corpus archive (.zip)", fetch, URL),
    hold_out=False,
)
