"""NeMo-style manifests: JSON lines with ``audio_filepath``, ``duration``, ``text``.

Relative audio paths are relative to the manifest's folder. A ``split`` field, when present (as in
``an4_mini``), names the output split; otherwise everything goes to ``all``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import PrepareSummary, open_text
from asr.recipes.corpus import Corpus, Source

SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")


def prepare(manifest: Path) -> PrepareSummary:
    """Read a manifest (or ``manifest.json`` in a folder); each line's ``split`` names its split."""
    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: manifest not found")
    summary = PrepareSummary()
    with open_text(manifest) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{manifest}: line {n}"
            try:
                record = json.loads(line)
                audio, text = record["audio_filepath"], record["text"]
                duration = float(record["duration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                summary.skip(where, f"bad line ({type(exc).__name__}: {exc})")
                continue
            path = Path(audio) if Path(audio).is_absolute() else manifest.parent / audio
            if not path.is_file():
                summary.skip(where, f"audio file not found: {path}")
                continue
            if not str(text).strip():
                summary.skip(where, "empty transcript")
                continue
            utt_id = str(
                record.get("id") or Path(audio).with_suffix("").as_posix().replace("/", "_")
            )
            utt = Utterance(
                utt_id,
                str(path),
                duration,
                str(text),
                str(record.get("speaker", "")),
                float(record.get("offset", 0.0)),
            )
            split = str(record.get("split", "all"))
            if not SPLIT_NAME.fullmatch(split):
                # the split names an output file: never a path out of --out
                summary.skip(
                    where, f"'split' must be a plain name (letters, digits, - _ .), got {split!r}"
                )
                continue
            summary.splits.setdefault(split, []).append(utt)
    return summary


CORPUS = Corpus(
    name="nemo",
    help="a NeMo-style JSON-lines manifest (audio_filepath, duration, text; optional split)",
    source=Source("the corpus folder (or manifest file, for nemo)", nargs=None),
    read=lambda source, args: prepare(source),
)
