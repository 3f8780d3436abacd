"""LibriSpeech (OpenSLR 12): read audiobooks, 16 kHz FLAC, 960 h of training speech.

Layout (each archive unpacks into ``LibriSpeech/<split>/``)::

    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "ID TRANSCRIPT" lines
    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac

Audio is found by name whatever its extension (``.flac`` as shipped; ``.opus``, ``.ogg``, ``.wav``
in re-encoded copies such as Mini LibriSpeech in ``../shared/data``).

Every split becomes ``<split>.jsonl`` (``train-clean-100.jsonl``, ``dev-other.jsonl``, ...), with
the speaker id as ``speaker``. The official language-model resources (OpenSLR 11: ARPA n-grams,
vocabulary, lexicon) are an option; the ARPA files are unpacked and lower-cased, as this project's
transcripts are.
"""

from __future__ import annotations

import argparse
import gzip
from dataclasses import dataclass
from pathlib import Path

from asr.audio import AUDIO_EXTENSIONS
from asr.data import Utterance
from asr.recipes.common import (
    PrepareSummary,
    download,
    fetch_archive,
    find_audio,
    open_text,
    probe,
    split_names,
)
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Source

BASE_URL = "https://www.openslr.org/resources/12"
MINI_BASE_URL = "https://www.openslr.org/resources/31"  # Mini LibriSpeech
LM_BASE_URL = "https://www.openslr.org/resources/11"


@dataclass(frozen=True)
class Archive:
    name: str
    md5: str  # as published in md5sum.txt beside the archives
    hours: float
    base_url: str = BASE_URL


ARCHIVES = {
    a.name: a
    for a in (
        Archive("train-clean-100", "2a93770f6d5c6c964bc36631d331a522", 100.6),
        Archive("train-clean-360", "c0e676e450a7ff2f54aeade5171606fa", 363.6),
        Archive("train-other-500", "d1a0fd59409feb2c614ce4d30c387708", 496.7),
        Archive("dev-clean", "42e2234ba48799c1f50f24a7926300a1", 5.4),
        Archive("dev-other", "c8d0bcc9cca99d4f8b62fcc847357931", 5.3),
        Archive("test-clean", "32fa31d27d2e1cad72775fee3f4849a9", 5.4),
        Archive("test-other", "fb5a50374b501bb3bac4815ee91d3135", 5.1),
        # Mini LibriSpeech (OpenSLR 31): small subsets for quick runs
        Archive("train-clean-5", "5df7d4e78065366204ca6845bb08f490", 5.3, MINI_BASE_URL),
        Archive("dev-clean-2", "6d7ab67ac6a1d2c993d050e16d61080d", 2.2, MINI_BASE_URL),
    )
}
SPLITS = list(ARCHIVES)
# OpenSLR 11 publishes no checksums beside these files; they are fetched unverified (resumable).
LM_FILES = [
    "3-gram.arpa.gz",
    "3-gram.pruned.1e-7.arpa.gz",
    "3-gram.pruned.3e-7.arpa.gz",
    "4-gram.arpa.gz",
    "librispeech-vocab.txt",
    "librispeech-lexicon.txt",
]


def find_root(source: Path) -> Path:
    """The folder holding the split folders: ``source/LibriSpeech``, or ``source`` itself."""
    source = Path(source)
    for candidate in (source / "LibriSpeech", source):
        if candidate.is_dir() and any((candidate / s).is_dir() for s in SPLITS):
            return candidate
    raise FileNotFoundError(
        f"{source}: no LibriSpeech split folder ({', '.join(SPLITS)}) in it or in its LibriSpeech/"
    )


def fetch(
    out_dir: Path, splits: list[str], base_url: str | None = None, keep_archives: bool = True
) -> Path:
    """Download, verify (md5) and extract each split's archive into ``out_dir/download``.

    ``base_url`` may be a mirror or a local folder holding ``<split>.tar.gz``; ``None`` fetches
    each split from OpenSLR (12 for LibriSpeech, 31 for Mini LibriSpeech). Finished splits (their
    ``.done`` marker) are skipped.

    Returns:
        the folder holding ``LibriSpeech/``.
    """
    dest = Path(out_dir) / "download"
    for split in splits:
        archive = ARCHIVES[split]
        fetch_archive(
            f"{(base_url or archive.base_url).rstrip('/')}/{split}.tar.gz",
            dest,
            f"{split}.tar.gz",
            f"md5:{archive.md5}",
            keep_archives,
        )
    return dest


def fetch_lm(out_dir: Path, base_url: str = LM_BASE_URL) -> Path:
    """Download the OpenSLR 11 LM resources into ``out_dir/lm``; unpack each ARPA lower-cased.

    ``3-gram.arpa.gz`` becomes ``3-gram.arpa`` (lower case, what ``asr lm lexicon`` and the beam
    decoder expect); a ``.done`` marker per file makes re-runs skip finished work.

    Returns:
        the ``lm`` folder.
    """
    lm_dir = Path(out_dir) / "lm"
    for name in LM_FILES:
        path = download(f"{base_url.rstrip('/')}/{name}", lm_dir / name)
        if name.endswith(".arpa.gz"):
            unpack_arpa(path, lm_dir / name.removesuffix(".gz"))
    return lm_dir


def unpack_arpa(gz: Path, arpa: Path) -> Path:
    """Gunzip an ARPA file, lower-casing it (ARPA keywords are lower case already), once."""
    marker = arpa.with_name(arpa.name + ".done")
    if marker.exists() and arpa.exists():
        return arpa
    tmp = arpa.with_name(arpa.name + ".tmp")
    with gzip.open(gz, "rt", encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
        for line in src:
            dst.write(line.lower())
    tmp.replace(arpa)
    marker.touch()
    return arpa


def read_split(folder: Path, name: str, summary: PrepareSummary) -> list[Utterance]:
    """Every utterance of one split folder; missing or unreadable audio, audio with no transcript
    line and chapters with no ``.trans.txt`` are reported and skipped."""
    utts = []
    for chapter in sorted(p for p in folder.glob("*/*") if p.is_dir()):
        transcripts = sorted(chapter.glob("*.trans.txt"))
        listed: set[str] = set()
        for trans in transcripts:
            utts += _read_transcript(trans, summary, listed)
        for path in _audio_files(chapter):
            if path.stem not in listed:
                reason = "no transcript line" if transcripts else "its chapter has no .trans.txt"
                summary.skip(str(path), reason)
    if not utts:
        summary.skip(str(folder), f"no utterances in {name}")
    return utts


def _audio_files(chapter: Path) -> list[Path]:
    return sorted(p for p in chapter.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)


def _read_transcript(trans: Path, summary: PrepareSummary, listed: set[str]) -> list[Utterance]:
    """The utterances of one chapter's ``.trans.txt``; adds the ids it lists to ``listed``."""
    utts = []
    with open_text(trans) as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            where = f"{trans}: line {n}"
            listed.add(parts[0])
            if len(parts) < 2:
                summary.skip(where, "empty transcript")
                continue
            utt_id, text = parts
            audio = find_audio(trans.parent, utt_id, ".flac")
            duration = probe(audio, where, summary)
            if duration is None:
                continue
            speaker = utt_id.split("-")[0]
            utts.append(Utterance(utt_id, str(audio), round(duration, 4), text, speaker))
    return utts


def prepare(source: Path, splits: list[str] | None = None) -> PrepareSummary:
    """Read the given splits (default: every one found under ``source``).

    Args:
        source: the folder holding ``LibriSpeech/`` (or ``LibriSpeech`` itself).
        splits: split names; one that is asked for and missing is an error.
    """
    root = find_root(source)
    if splits is None:
        splits = [s for s in SPLITS if (root / s).is_dir()]
    summary = PrepareSummary()
    for name in splits:
        if name not in ARCHIVES:
            raise ValueError(f"unknown LibriSpeech split {name!r} (known: {', '.join(SPLITS)})")
        if not (root / name).is_dir():
            raise FileNotFoundError(f"{root / name}: split folder not found (download it first)")
        summary.splits[name] = read_split(root / name, name, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--splits``, ``--remove-archives``, ``--lm``, and a ``--download`` of its own (an
    archive per split, each with its md5)."""
    parser.add_argument(
        "--splits",
        default=",".join(SPLITS[:7]),
        help="comma-separated splits to download and prepare (default: the seven of LibriSpeech; "
        "Mini LibriSpeech's are train-clean-5 and dev-clean-2)",
    )
    parser.add_argument(
        "--download",
        nargs="?",
        const="default",
        default=None,
        metavar="BASE_URL_OR_DIR",
        help="fetch <split>.tar.gz for each split from BASE (OpenSLR when no value is given; or a "
        "mirror, or a local folder of archives) into OUT/download",
    )
    parser.add_argument(
        "--remove-archives",
        action="store_true",
        help="delete each .tar.gz once extracted (saves ~60 GB for all splits)",
    )
    parser.add_argument(
        "--lm",
        nargs="?",
        const=LM_BASE_URL,
        default=None,
        metavar="BASE_URL_OR_DIR",
        help="also fetch the official LM resources (OpenSLR 11: 3-gram and 4-gram ARPA, pruned "
        "3-grams, librispeech-vocab.txt, librispeech-lexicon.txt) into OUT/lm, ARPA files unpacked "
        "and lower-cased",
    )


def fetch_requested(args: argparse.Namespace) -> Path | None:
    """Check ``--splits``; fetch their archives when ``--download`` is given, the LM resources
    when ``--lm`` is.

    Returns:
        the folder the archives went to, or SOURCE when ``--download`` was not given.

    Raises:
        ValueError: ``--splits`` names a split that does not exist.
    """
    splits = split_names(args.splits)
    unknown = [s for s in splits if s not in ARCHIVES]
    if unknown:
        raise ValueError(f"--splits: unknown {unknown} (known: {', '.join(SPLITS)})")
    source = args.source
    if args.download:
        base = None if args.download == "default" else args.download
        source = fetch(args.out, splits, base, not args.remove_archives)
    if args.lm:
        print(f"LM resources in {fetch_lm(args.out, args.lm)}")
    return source


CORPUS = Corpus(
    name="librispeech",
    help="LibriSpeech (OpenSLR 12): 960 h of read audiobooks, FLAC",
    description="LibriSpeech: LibriSpeech/<split>/<speaker>/<chapter>/*.trans.txt + .flac. "
    "Each split becomes <split>.jsonl. " + DOWNLOAD_NOTE + " Archives are checked against "
    "OpenSLR's published md5 sums.",
    source=Source("folder holding LibriSpeech/ (omit with --download)"),
    read=lambda source, args: prepare(source, split_names(args.splits)),
    add_arguments=add_arguments,
    fetch=fetch_requested,
)
