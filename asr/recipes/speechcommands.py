"""Speech Commands v0.02 (Google): one-second single words by thousands of volunteers, 16 kHz.

Two archives, two layouts, both read here:

- the full release, ``speech_commands_v0.02.tar.gz`` (105,829 clips, 35 words)::

      <word>/<speaker>_nohash_<n>.wav
      validation_list.txt, testing_list.txt     one "<word>/<file>.wav" a line
      _background_noise_/*.wav                  minutes-long noise recordings

  Clips in ``testing_list.txt`` become ``test``, those in ``validation_list.txt`` ``dev``, the rest
  ``train`` (the release's own lists are by speaker: a speaker's clips all land in one list).
- the canonical test set, ``speech_commands_test_set_v0.02.tar.gz`` (4,890 clips)::

      <word>/<speaker>_nohash_<n>.wav           the ten command words
      _unknown_/<word>_<speaker>_nohash_<n>.wav other words, the word first in the name
      _silence_/<n>.wav                         background noise, no speech

  Everything with speech becomes one split, ``all`` (hold out speakers with ``--dev``/``--test``).

Noise clips (``_background_noise_`` and ``_silence_``) are written to ``noise.jsonl`` (empty
transcripts), a source of real noise for ``augment.noise_sources``; they are never training
utterances. Audio is found by name whatever its extension (``.wav`` as shipped, ``.opus`` or
``.ogg`` in re-encoded copies). The transcript is the word (``_unknown_`` clips: the word in the
file name); the speaker is the hash before ``_nohash_``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from asr.audio import AUDIO_EXTENSIONS
from asr.data import Utterance
from asr.recipes.common import PrepareSummary, fetch_archive, probe
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Source, add_choice

BASE_URL = "http://download.tensorflow.org/data"
ARCHIVES = {
    # sha256 as TensorFlow Datasets and torchaudio pin it
    "full": (
        "speech_commands_v0.02.tar.gz",
        "sha256:af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    ),
    # no checksum is published for the test set archive; it is fetched unverified
    "test": ("speech_commands_test_set_v0.02.tar.gz", None),
}
NOISE_FOLDERS = ("_background_noise_", "_silence_")
UNKNOWN = "_unknown_"
_CLIP = re.compile(r"^(?:(?P<word>[a-z]+)_)?(?P<speaker>[0-9a-f]+)_nohash_(?P<n>\d+)$")


def find_root(source: Path) -> Path:
    """The folder holding the word folders: ``source`` or the one subfolder that does."""
    source = Path(source)
    for candidate in (source, *sorted(p for p in source.glob("*") if p.is_dir())):
        if any((candidate / w).is_dir() for w in ("yes", "no", UNKNOWN)):
            return candidate
    raise FileNotFoundError(
        f"{source}: no Speech Commands word folders (yes/, no/, ... or {UNKNOWN}/) in it or in "
        f"a folder below it"
    )


def fetch(out_dir: Path, which: str = "full", base_url: str = BASE_URL) -> Path:
    """Download, verify and extract one archive (``full`` or ``test``) into ``out_dir/download``.

    ``base_url`` may be a mirror or a local folder holding the archive. Returns the folder the
    archive unpacked into (the full release unpacks flat, the test set into its own folder).
    """
    name, checksum = ARCHIVES[which]
    dest = Path(out_dir) / "download" / which
    return fetch_archive(f"{base_url.rstrip('/')}/{name}", dest, name, checksum)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)


def _read_list(path: Path) -> set[str]:
    """A ``validation_list.txt``/``testing_list.txt`` as ``word/stem`` keys (extension dropped)."""
    if not path.is_file():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            keys.add(str(Path(line).with_suffix("")))
    return keys


def parse_clip(folder: str, stem: str) -> tuple[str, str] | None:
    """``("yes", "0a7c2a8d_nohash_0")`` -> ``("yes", "0a7c2a8d")``; ``_unknown_`` clips carry their
    word in the name (``bed_0a7c2a8d_nohash_0``). ``None`` when the name fits neither."""
    match = _CLIP.match(stem)
    if not match:
        return None
    if folder == UNKNOWN:
        if not match["word"]:
            return None
        return match["word"], match["speaker"]
    if match["word"]:
        return None
    return folder, match["speaker"]


def prepare(source: Path) -> PrepareSummary:
    """Read either layout (see the module docstring) under ``source``."""
    root = find_root(source)
    summary = PrepareSummary()
    dev, test = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    full_release = bool(dev or test)
    noise: list[Utterance] = []
    splits: dict[str, list[Utterance]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name in NOISE_FOLDERS:
            for path in _audio_files(folder):
                duration = probe(path, str(path), summary)
                if duration is not None:
                    noise.append(Utterance(f"{folder.name}/{path.stem}", str(path), duration, ""))
            continue
        if folder.name.startswith(".") or not re.fullmatch(r"[a-z_]+", folder.name):
            continue
        for path in _audio_files(folder):
            parsed = parse_clip(folder.name, path.stem)
            if parsed is None:
                summary.skip(
                    str(path), "name is not <speaker>_nohash_<n> (<word>_... in _unknown_)"
                )
                continue
            word, speaker = parsed
            duration = probe(path, str(path), summary)
            if duration is None:
                continue
            key = f"{folder.name}/{path.stem}"
            split = (
                ("test" if key in test else "dev" if key in dev else "train")
                if full_release
                else "all"
            )
            utt_id = f"{word}_{path.stem}" if folder.name != UNKNOWN else path.stem
            splits.setdefault(split, []).append(
                Utterance(utt_id, str(path), round(duration, 4), word, speaker)
            )
    if not splits:
        summary.skip(str(root), "no speech clips")
    summary.splits.update(splits)
    if noise:
        summary.splits["noise"] = noise
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--archive``, and a ``--download`` of its own that fetches it (each archive with its own
    checksum, or none)."""
    add_choice(
        parser,
        "--archive",
        list(ARCHIVES),
        "with --download: full (speech_commands_v0.02.tar.gz, 2.4 GB, sha256-checked) or test "
        "(speech_commands_test_set_v0.02.tar.gz, 112 MB, no published checksum)",
    )
    parser.add_argument(
        "--download",
        nargs="?",
        const=BASE_URL,
        default=None,
        metavar="BASE_URL_OR_DIR",
        help=f"fetch the --archive from BASE ({BASE_URL} when no value is given; or "
        "a mirror, or a local folder holding the archive) into OUT/download",
    )


def fetch_requested(args: argparse.Namespace) -> Path | None:
    """The folder the ``--archive`` was fetched into when ``--download`` is given, else SOURCE."""
    return fetch(args.out, args.archive, args.download) if args.download else args.source


CORPUS = Corpus(
    name="speechcommands",
    help="Speech Commands v0.02 (Google): one-second single words, either archive's layout",
    description="Speech Commands v0.02: the full release (<word>/<speaker>_nohash_<n>.wav, "
    "validation_list.txt and testing_list.txt give dev and test) or the canonical test set "
    "(_unknown_/<word>_<speaker>_nohash_<n>.wav, one split 'all'). Background-noise clips "
    "(_background_noise_/, _silence_/) go to noise.jsonl, a real-noise source for "
    "augment.noise_sources. Hold out dev/test speakers with --dev/--test. " + DOWNLOAD_NOTE,
    source=Source("the folder holding the word folders (or above it)"),
    read=lambda source, args: prepare(source),
    add_arguments=add_arguments,
    fetch=fetch_requested,
)
