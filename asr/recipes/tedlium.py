"""TED-LIUM release 3 (OpenSLR 51): TED talks, 16 kHz NIST SPHERE, segmented by STM files.

Layout (``TEDLIUM_release-3/``)::

    data/sph/<talk>.sph, data/stm/<talk>.stm             the full training set (2,351 talks, 452 h)
    legacy/{train,dev,test}/{sph,stm}/                   release 2's split (train 207 h; dev, test)
    speaker-adaptation/{train,dev,test}/{sph,stm}/       a speaker-adaptation split (not used here)

An STM line is ``talk channel speaker start end <label> transcript``. Each segment becomes one
manifest entry pointing into the talk's ``.sph`` with ``offset`` and ``duration`` (seconds): no
audio is cut or rewritten. As the Kaldi and ESPnet TED-LIUM recipes do:

- segments whose transcript is ``ignore_time_segment_in_scoring`` (music, applause, gaps) are
  dropped (counted in the summary);
- noise and filler tokens in braces (``{NOISE}``, ``{BREATH}``, ``{SMACK}``, ``{COUGH}``, ...) and
  ``<unk>`` are removed from transcripts; a segment left empty is dropped;
- contractions split off by the transcribers are joined back (``it 's`` -> ``it's``), since our
  character vocabulary has the apostrophe.

Splits: ``train`` (``data/``, or ``legacy/train`` with ``train_set="legacy"``), ``dev`` and
``test`` (``legacy/dev``, ``legacy/test``: the same 8 + 11 talks in every release).
"""

from __future__ import annotations

import re
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import PrepareSummary, fetch_archive, open_text, probe
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Download, Source, add_choice

URL = "https://www.openslr.org/resources/51/TEDLIUM_release-3.tgz"
# OpenSLR publishes no checksum for it; torchaudio's TEDLIUM dataset pins this sha256.
SHA256 = "ad1e454d14d1ad550bc2564c462d87c7a7ec83d4dc2b9210f22ab4973b9eccdb"
IGNORE = "ignore_time_segment_in_scoring"
_NOISE = re.compile(r"^(\{[^{}]*\}|<unk>|\[[^\[\]]*\])$", re.IGNORECASE)
SPLIT_DIRS = {
    "train": "data",
    "legacy-train": "legacy/train",
    "dev": "legacy/dev",
    "test": "legacy/test",
}


def find_root(source: Path) -> Path:
    """The ``TEDLIUM_release-3`` folder: ``source`` itself or the one inside it."""
    source = Path(source)
    for candidate in (source, source / "TEDLIUM_release-3", *sorted(source.glob("TEDLIUM*"))):
        if (candidate / "legacy").is_dir() or (candidate / "data" / "stm").is_dir():
            return candidate
    raise FileNotFoundError(f"{source}: no TED-LIUM 3 layout (TEDLIUM_release-3/legacy, data/stm)")


def fetch(out_dir: Path, url: str = URL, checksum: str | None = f"sha256:{SHA256}") -> Path:
    """Download, verify and extract ``TEDLIUM_release-3.tgz`` (~51 GB) into ``out_dir/download``."""
    return fetch_archive(url, Path(out_dir) / "download", "TEDLIUM_release-3.tgz", checksum)


def clean_transcript(words: list[str]) -> str:
    """Drop noise tokens and ``<unk>``, join split-off contractions (``it 's`` -> ``it's``)."""
    out: list[str] = []
    for word in words:
        if _NOISE.match(word):
            continue
        if word.startswith("'") and out:
            out[-1] += word
        else:
            out.append(word)
    return " ".join(out)


def read_stm(stm: Path, sph_dir: Path, summary: PrepareSummary) -> list[Utterance]:
    """The usable segments of one talk's STM file, each pointing into its ``.sph``."""
    utts = []
    durations: dict[str, float | None] = {}  # per talk; None: unreadable
    with open_text(stm) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith(";;"):
                continue
            where = f"{stm}: line {n}"
            fields = line.split()
            if len(fields) < 5:
                summary.skip(where, "expected 'talk channel speaker start end [<label>] text'")
                continue
            talk, _, speaker = fields[:3]
            try:
                start, end = float(fields[3]), float(fields[4])
            except ValueError:
                summary.skip(where, "start and end must be numbers")
                continue
            words = fields[5:]
            if words and words[0].startswith("<") and words[0].endswith(">"):
                words = words[1:]  # the <o,f0,male> condition label
            if words == [IGNORE]:
                summary.skip(where, IGNORE)
                continue
            text = clean_transcript(words)
            if not text:
                summary.skip(where, "empty after removing noise tokens")
                continue
            audio = sph_dir / f"{talk}.sph"
            if talk not in durations:
                durations[talk] = probe(audio, where, summary)
                if durations[talk] is None:
                    continue
            talk_seconds = durations[talk]
            if talk_seconds is None:
                summary.skip(where, f"unreadable audio ({audio})")
                continue
            end = min(end, talk_seconds)
            if end - start <= 0:
                summary.skip(where, "segment empty or past the end of the audio")
                continue
            utt_id = f"{talk}-{round(start * 100):07d}-{round(end * 100):07d}"
            utts.append(
                Utterance(utt_id, str(audio), round(end - start, 4), text, speaker, round(start, 4))
            )
    return utts


def prepare(source: Path, train_set: str = "full") -> PrepareSummary:
    """Read TED-LIUM 3's ``train``, ``dev`` and ``test`` segments.

    Args:
        source: ``TEDLIUM_release-3`` or the folder holding it.
        train_set: ``full`` (``data/``, 452 h) or ``legacy`` (``legacy/train``, release 2's 207 h).
    """
    if train_set not in ("full", "legacy"):
        raise ValueError(f"train_set must be 'full' or 'legacy', got {train_set!r}")
    root = find_root(source)
    dirs = {
        "train": SPLIT_DIRS["train" if train_set == "full" else "legacy-train"],
        "dev": SPLIT_DIRS["dev"],
        "test": SPLIT_DIRS["test"],
    }
    summary = PrepareSummary()
    for name, rel in dirs.items():
        folder = root / rel
        if not (folder / "stm").is_dir():
            continue
        utts = summary.splits.setdefault(name, [])
        for stm in sorted((folder / "stm").glob("*.stm")):
            utts += read_stm(stm, folder / "sph", summary)
    if not summary.splits:
        raise FileNotFoundError(f"{root}: no stm/ folder in {', '.join(dirs.values())}")
    return summary


CORPUS = Corpus(
    name="tedlium",
    help="TED-LIUM 3 (OpenSLR 51): TED talks, SPH audio + STM segments",
    description="TED-LIUM release 3: each STM segment becomes a manifest entry with offset and "
    "duration into its talk's .sph (no audio is rewritten). Segments marked "
    "ignore_time_segment_in_scoring are dropped; {NOISE}-like tokens and <unk> are removed; "
    "split-off contractions are joined (it 's -> it's). Splits: train (data/, 452 h, or "
    "legacy/train), dev and test (legacy/). " + DOWNLOAD_NOTE,
    source=Source("TEDLIUM_release-3 or the folder holding it"),
    read=lambda source, args: prepare(source, args.train_set),
    add_arguments=lambda parser: add_choice(
        parser,
        "--train-set",
        ["full", "legacy"],
        "full: data/ (2,351 talks, 452 h); legacy: legacy/train (release 2's 207 h)",
    ),
    download=Download("TEDLIUM_release-3.tgz (~51 GB)", fetch, URL, f"sha256:{SHA256}"),
    hold_out=False,
)
