"""AN4 (CMU Census database): spelled-out names, numbers and commands, 16 kHz NIST SPHERE.

Layout of CMU's ``an4_sphere.tar.gz``::

    an4/etc/an4_train.fileids          an4_clstk/fash/an251-fash-b        (one a line)
    an4/etc/an4_train.transcription    <s> YES </s> (an251-fash-b)        (the same order)
    an4/etc/an4_test.fileids, an4/etc/an4_test.transcription
    an4/wav/an4_clstk/fash/an251-fash-b.sph

The ``.sph`` files are uncompressed PCM SPHERE, which libsndfile (soundfile) reads directly, so no
conversion to WAV is needed; a re-encoded copy (``.opus``, ``.flac``, ``.wav`` under the same
names) is read the same way, each file found by name whatever its extension. Line ``n`` of ``.fileids`` pairs with line ``n`` of
``.transcription``; a pair whose ids disagree is reported and skipped. The speaker is the fileid's
folder (``fash``). Splits: ``train`` (948 utterances, ~0.7 h) and ``test`` (130, ~0.1 h).
"""

from __future__ import annotations

import re
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import PrepareSummary, fetch_archive, find_audio, probe
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Download, Source

URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
# CMU publishes no checksum; this is the sha256 that other projects pin for the same file (NVIDIA's
# mirror, https://dldata-public.s3.us-east-2.amazonaws.com/an4_sphere.tar.gz). `--checksum none`
# skips the check.
SHA256 = "a0525579493735d32b60fb6fa5975dd0eaacde087b0a4eeb7f13b7ef33077b12"
_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()]+)\)\s*$")


def find_root(source: Path) -> Path:
    """The ``an4`` folder (holding ``etc/`` and ``wav/``): ``source/an4`` or ``source``."""
    source = Path(source)
    for candidate in (source / "an4", source):
        if (candidate / "etc" / "an4_train.transcription").is_file():
            return candidate
    raise FileNotFoundError(f"{source}: no an4/etc/an4_train.transcription (not the AN4 layout)")


def fetch(out_dir: Path, url: str = URL, checksum: str | None = f"sha256:{SHA256}") -> Path:
    """Download, verify and extract ``an4_sphere.tar.gz`` into ``out_dir/download`` (once)."""
    return fetch_archive(url, Path(out_dir) / "download", "an4_sphere.tar.gz", checksum)


def parse_transcription(line: str) -> tuple[str, str] | None:
    """``'<s> YES </s> (an251-fash-b)'`` -> ``('an251-fash-b', 'YES')``; ``None`` if malformed."""
    match = _LINE.match(line.strip())
    if not match:
        return None
    words = [w for w in match["text"].split() if w not in ("<s>", "</s>", "<sil>")]
    return match["id"].strip(), " ".join(words)


def read_split(root: Path, name: str, summary: PrepareSummary) -> list[Utterance]:
    etc = root / "etc"
    fileids_path, trans_path = etc / f"an4_{name}.fileids", etc / f"an4_{name}.transcription"
    fileids = [x.strip() for x in fileids_path.read_text().splitlines() if x.strip()]
    lines = [x for x in trans_path.read_text().splitlines() if x.strip()]
    if len(fileids) != len(lines):
        summary.skip(
            str(trans_path),
            f"{len(lines)} transcriptions but {len(fileids)} fileids: pairs after the shorter end are dropped",
        )
    utts = []
    for n, (fileid, line) in enumerate(zip(fileids, lines), 1):
        where = f"{trans_path}: line {n}"
        parsed = parse_transcription(line)
        if parsed is None:
            summary.skip(where, "expected 'TEXT (utterance-id)'")
            continue
        utt_id, text = parsed
        if Path(fileid).name != utt_id:
            summary.skip(where, f"id {utt_id!r} does not match {fileids_path.name} ({fileid!r})")
            continue
        if not text:
            summary.skip(where, "empty transcript")
            continue
        audio = find_audio(root / "wav" / Path(fileid).parent, Path(fileid).name, ".sph")
        duration = probe(audio, where, summary)
        if duration is None:
            continue
        speaker = Path(fileid).parent.name
        utts.append(Utterance(utt_id, str(audio), round(duration, 4), text, speaker))
    return utts


def prepare(source: Path) -> PrepareSummary:
    """Read AN4's ``train`` and ``test`` splits (``source``: the folder holding ``an4/``)."""
    root = find_root(source)
    summary = PrepareSummary()
    for name in ("train", "test"):
        if (root / "etc" / f"an4_{name}.transcription").is_file():
            summary.splits[name] = read_split(root, name, summary)
    return summary


CORPUS = Corpus(
    name="an4",
    help="AN4 (CMU): an4_sphere.tar.gz's etc/*.transcription, .fileids and wav/*.sph",
    description="AN4: an4/etc/an4_{train,test}.{fileids,transcription} and an4/wav/**/*.sph "
    "(NIST SPHERE, read as is). Splits train and test; hold out dev speakers from train with "
    "--dev N. " + DOWNLOAD_NOTE,
    source=Source("folder holding an4/ (omit with --download)"),
    read=lambda source, args: prepare(source),
    download=Download("an4_sphere.tar.gz", fetch, URL, f"sha256:{SHA256}"),
)
