"""A folder of audio files with a transcript beside each (``name.wav`` + ``name.txt``).

This is how the ``kathleen`` set (CMU ARCTIC prompts) ships. Files are found recursively; an audio
file without its ``.txt`` (or with an empty one) is reported and skipped.
"""

from __future__ import annotations

from pathlib import Path

from asr.audio import AUDIO_EXTENSIONS
from asr.data import Utterance
from asr.recipes.common import PrepareSummary, open_text, probe
from asr.recipes.corpus import Corpus, Source, add_speaker


def prepare(source: Path, speaker: str = "") -> PrepareSummary:
    """Read every audio file under ``source`` with its sibling ``.txt`` into one ``all`` split.

    Args:
        source: the folder.
        speaker: speaker label for every utterance (default: the folder's name).
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: folder not found")
    speaker = speaker or source.name
    summary = PrepareSummary(splits={"all": []})
    audio = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    for path in audio:
        txt = path.with_suffix(".txt")
        if not txt.is_file():
            summary.skip(str(path), "no transcript (.txt) beside it")
            continue
        with open_text(txt) as f:
            text = f.read().strip()
        if not text:
            summary.skip(str(path), "empty transcript")
            continue
        duration = probe(path, str(path), summary)
        if duration is None:
            continue
        utt_id = str(path.relative_to(source).with_suffix("")).replace("/", "_")
        summary.splits["all"].append(
            Utterance(utt_id, str(path), round(duration, 4), text, speaker)
        )
    if not audio:
        raise FileNotFoundError(f"{source}: no audio files found")
    return summary


CORPUS = Corpus(
    name="folder",
    help="a folder of audio files, each with a .txt transcript beside it (name.wav + name.txt)",
    source=Source("the corpus folder (or manifest file, for nemo)", nargs=None),
    read=lambda source, args: prepare(source, args.speaker),
    add_arguments=add_speaker(""),
)
