"""speechocean762 (OpenSLR 101): Kaldi data directories ``train/`` (and ``test/``) under the corpus root.

``wav.scp`` paths are relative to the corpus root (``WAVE/SPEAKER0001/000010011.ogg``) and ``text``
is upper case (normalisation lower-cases it). Speakers come from ``utt2spk``.
"""

from __future__ import annotations

from pathlib import Path

from asr.recipes import kaldi
from asr.recipes.common import PrepareSummary, fetch_found
from asr.recipes.corpus import Corpus, Download, Source

URL = "https://www.openslr.org/resources/101/speechocean762.tar.gz"
# OpenSLR publishes no checksum for it: fetched unverified unless --checksum is given


def fetch(out_dir: Path, url: str = URL, checksum: str | None = None) -> Path:
    """Download and extract the archive into ``out_dir/download``; returns the corpus root (the
    folder holding ``train/wav.scp``)."""
    marker, what = "**/train/wav.scp", "speechocean762 train/wav.scp"
    return fetch_found(url, Path(out_dir) / "download", checksum, marker, what).parent


def prepare(source: Path) -> PrepareSummary:
    """Each Kaldi directory found (``train``, ``test``) becomes a split of that name."""
    source = Path(source)
    found = [d for d in ("train", "test") if (source / d / "wav.scp").is_file()]
    if not found:
        raise FileNotFoundError(f"{source}: no speechocean762 train/ or test/ Kaldi directory")
    summary = PrepareSummary()
    for name in found:
        part = kaldi.prepare(source / name, audio_root=source)
        summary.splits[name] = part.splits["all"]
        summary.skipped.extend(part.skipped)
    return summary


CORPUS = Corpus(
    name="speechocean762",
    help="speechocean762 (Kaldi train/ and test/ under the corpus root)",
    source=Source("the corpus folder (omit with --download)"),
    read=lambda source, args: prepare(source),
    download=Download("the corpus archive", fetch, URL),
)
