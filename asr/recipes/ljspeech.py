"""LJSpeech: ``metadata.csv`` (``id|raw text|normalised text``) and ``wavs/<id>.wav``.

The normalised column (numbers and abbreviations spelled out) is used; the raw one where it is empty.
One speaker, one split (``all``): hold out with ``--group-by text`` or ``id:REGEX``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import PrepareSummary, fetch_found, open_text, probe
from asr.recipes.corpus import Corpus, Download, Source, add_speaker

URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
# keithito.com publishes no checksum: fetched unverified unless --checksum is given


def fetch(out_dir: Path, url: str = URL, checksum: str | None = None) -> Path:
    """Download and extract the archive into ``out_dir/download``; returns the folder of its
    ``metadata.csv``."""
    return fetch_found(
        url, Path(out_dir) / "download", checksum, "**/metadata.csv", "LJSpeech metadata.csv"
    )


def prepare(source: Path, speaker: str = "LJ") -> PrepareSummary:
    """Read ``metadata.csv`` and ``wavs/`` into one ``all`` split, every utterance by ``speaker``."""
    source = Path(source)
    metadata = source / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{source}: not an LJSpeech folder (no metadata.csv)")
    summary = PrepareSummary(splits={"all": []})
    with open_text(metadata, newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), 1):
            if not row:
                continue
            if len(row) < 2:
                summary.skip(f"{metadata}: line {n}", "expected id|text|normalised text")
                continue
            utt_id = row[0]
            text = row[2] if len(row) > 2 and row[2].strip() else row[1]
            path = source / "wavs" / f"{utt_id}.wav"
            if not text.strip():
                summary.skip(f"{metadata}: line {n}", "empty transcript")
                continue
            duration = probe(path, f"{metadata}: line {n}", summary, reason="{}")
            if duration is None:
                continue
            summary.splits["all"].append(
                Utterance(utt_id, str(path), round(duration, 4), text, speaker)
            )
    return summary


CORPUS = Corpus(
    name="ljspeech",
    help="LJSpeech (metadata.csv + wavs/)",
    source=Source("the corpus folder (omit with --download)"),
    read=lambda source, args: prepare(source, args.speaker or "LJ"),
    add_arguments=add_speaker("LJ"),
    download=Download("the corpus archive", fetch, URL),
)
