"""Mozilla Common Voice: one language folder of a release, MP3 clips and tab-separated splits.

Layout (``cv-corpus-<version>-<date>/<lang>/``)::

    validated.tsv  train.tsv  dev.tsv  test.tsv     client_id, path, sentence, ... (a header line)
    clips/common_voice_en_123.mp3

``train``/``dev``/``test`` are the release's own splits (speaker-disjoint, one take per sentence).
A delta release ships only ``validated.tsv``: it is then read whole as ``train``, and
``asr prepare``'s ``--dev``/``--test`` hold out whole speakers of it. With ``train_from="validated"``, ``train`` is every validated clip whose speaker and sentence occur
in neither ``dev`` nor ``test`` (many more hours, still honest held-out sets). Durations are read
from the audio, since only some releases ship ``clip_durations.tsv``. The speaker is ``client_id``.
A clip is found by its name whatever its extension (``path`` names an ``.mp3``; a re-encoded copy
may hold ``.opus``), and a row whose clip is missing is reported and skipped.
Releases are downloaded from the Common Voice site after accepting its terms, so ``--download``
takes the archive's URL or a local copy, with the checksum the site shows.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import (
    PrepareSummary,
    archive_name,
    fetch_archive,
    find_audio,
    open_text,
    probe,
)
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Download, Source, add_choice

SPLITS = ("train", "dev", "test")
_COLUMNS = ("client_id", "path", "sentence")


def find_release(source: Path, language: str | None = None) -> Path:
    """The language folder holding ``validated.tsv``: ``source``, ``source/<lang>`` or deeper."""
    source = Path(source)
    if (source / "validated.tsv").is_file():
        return source
    found = sorted(p.parent for p in source.glob("**/validated.tsv"))
    if language:
        found = [p for p in found if p.name == language]
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"{source}: no Common Voice validated.tsv"
            + (f" for language {language!r}" if language else "")
        )
    names = ", ".join(str(p) for p in found)
    raise ValueError(
        f"{source}: several Common Voice languages ({names}): choose one with --language"
    )


def fetch(out_dir: Path, url: str, checksum: str | None = None) -> Path:
    """Download (or copy) a release archive into ``out_dir/download`` and extract it (once)."""
    name = archive_name(url, "commonvoice.tar.gz")
    return fetch_archive(url, Path(out_dir) / "download", name, checksum)


def read_tsv(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Rows of a Common Voice TSV as ``(where, {column: value})``.

    Raises:
        ValueError: the header lacks ``client_id``, ``path`` or ``sentence`` (names the file).
    """
    csv.field_size_limit(sys.maxsize)
    rows = []
    with open_text(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: line 1: header lacks {missing} (got {header})")
        for n, row in enumerate(reader, 2):
            if not any(row):
                continue
            rows.append((f"{path}: line {n}", dict(zip(header, row))))
    return rows


def prepare(source: Path, language: str | None = None, train_from: str = "train") -> PrepareSummary:
    """Read a Common Voice language folder into ``train``, ``dev`` and ``test``.

    Args:
        source: the language folder, or a folder above it (the extracted archive).
        language: the language folder's name when ``source`` holds several.
        train_from: ``train`` (the release's ``train.tsv``) or ``validated`` (every validated clip
            whose speaker and sentence are in neither dev nor test).
    """
    if train_from not in ("train", "validated"):
        raise ValueError(f"train_from must be 'train' or 'validated', got {train_from!r}")
    release = find_release(source, language)
    tables = {}
    for name in ("dev", "test"):
        if (release / f"{name}.tsv").is_file():
            tables[name] = read_tsv(release / f"{name}.tsv")
    if train_from == "validated":
        held = [r for rows in tables.values() for _, r in rows]
        speakers = {r["client_id"] for r in held}
        sentences = {r["sentence"].strip().lower() for r in held}
        tables["train"] = [
            (where, r)
            for where, r in read_tsv(release / "validated.tsv")
            if r["client_id"] not in speakers and r["sentence"].strip().lower() not in sentences
        ]
    elif (release / "train.tsv").is_file():
        tables["train"] = read_tsv(release / "train.tsv")
    elif not tables:  # a delta release: validated.tsv alone, split by speaker on hold-out
        tables["train"] = read_tsv(release / "validated.tsv")
    summary = PrepareSummary()
    for name in SPLITS:
        if name not in tables:
            continue
        utts = summary.splits.setdefault(name, [])
        for where, row in tables[name]:
            text = row.get("sentence", "").strip()
            if not text:
                summary.skip(where, "empty sentence")
                continue
            clip = Path(row["path"])
            audio = find_audio(release / "clips", clip.stem, clip.suffix or ".mp3")
            duration = probe(audio, where, summary)
            if duration is None:
                continue
            utt_id = Path(row["path"]).stem
            utts.append(Utterance(utt_id, str(audio), round(duration, 4), text, row["client_id"]))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--language`` and ``--train-from``."""
    parser.add_argument(
        "--language", default=None, help="language folder to use when SOURCE holds several (en)"
    )
    add_choice(
        parser,
        "--train-from",
        ["train", "validated"],
        "train: the release's train.tsv; validated: every validated clip whose speaker and "
        "sentence are in neither dev nor test (more data, same held-out sets)",
    )


CORPUS = Corpus(
    name="commonvoice",
    help="Mozilla Common Voice: a release's language folder (*.tsv + clips/*.mp3)",
    description="Common Voice: validated.tsv, train.tsv, dev.tsv, test.tsv (client_id, path, "
    "sentence) and clips/*.mp3; durations are read from the audio. Releases need accepting "
    "the terms on the Common Voice site, so --download takes the archive URL you get there "
    "(or a local copy), with --checksum as the site shows it. A delta release (validated.tsv "
    "alone) is read whole: hold speakers out of it with --dev N --test N. " + DOWNLOAD_NOTE,
    source=Source("the language folder (e.g. cv-corpus-17.0-2024-03-15/en) or a folder above it"),
    read=lambda source, args: prepare(source, args.language, args.train_from),
    add_arguments=add_arguments,
    download=Download("a release archive (.tar.gz)", fetch),  # no default URL: terms first
    hold_out=True,  # by speaker (client_id): a delta release has no dev/test of its own
)
