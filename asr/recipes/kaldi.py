"""Kaldi data directories: ``wav.scp``, ``text``, optional ``utt2spk`` and ``segments``.

``wav.scp`` maps a recording id to a file path; entries that are shell commands (ending in ``|``)
cannot be read without running them and are reported as unsupported. Relative paths are looked up
against ``audio_root`` when given, else the data directory and the folders above it (corpora ship
``wav.scp`` relative to their own root, e.g. speechocean762's ``WAVE/SPEAKER0001/...``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.data import Utterance
from asr.recipes.common import PrepareSummary, open_text, probe
from asr.recipes.corpus import Corpus, Source


def read_table(path: Path, min_fields: int = 2) -> dict[str, list[str]]:
    """A Kaldi table (``key value...`` per line) as ``{key: [values]}``.

    Raises:
        ValueError: a line with too few fields (named by file and line).
    """
    table = {}
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise ValueError(f"{path}: line {n}: expected at least {min_fields} fields")
            table[fields[0]] = fields[1:]
    return table


def read_text(path: Path) -> dict[str, str]:
    """``utt transcript...``; a transcript may be empty (reported later, not here)."""
    texts = {}
    with open_text(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(maxsplit=1)
            if parts:
                texts[parts[0]] = parts[1] if len(parts) > 1 else ""
    return texts


def _resolve(entry: str, data_dir: Path, audio_root: Path | None) -> Path:
    path = Path(entry)
    if path.is_absolute():
        return path
    roots = [audio_root] if audio_root else [data_dir, data_dir.parent, data_dir.parent.parent]
    for root in roots:
        if (root / path).exists():
            return root / path
    return roots[0] / path


def prepare(data_dir: Path, audio_root: Path | None = None) -> PrepareSummary:
    """Read a Kaldi data directory into one ``all`` split.

    Args:
        data_dir: the folder holding ``wav.scp`` and ``text``.
        audio_root: the folder relative ``wav.scp`` paths start from (found when not given).
    """
    data_dir = Path(data_dir)
    for name in ("wav.scp", "text"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir}: not a Kaldi data directory (no {name})")
    summary = PrepareSummary(splits={"all": []})
    recordings: dict[str, Path] = {}
    with open_text(data_dir / "wav.scp") as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            if len(parts) < 2:
                summary.skip(f"{data_dir / 'wav.scp'}: line {n}", "no path")
                continue
            rec_id, entry = parts
            if entry.endswith("|"):
                summary.skip(
                    f"{data_dir / 'wav.scp'}: line {n} ({rec_id})",
                    "unsupported: wav.scp command (ends in '|')",
                )
                continue
            recordings[rec_id] = _resolve(entry, data_dir, audio_root)
    texts = read_text(data_dir / "text")
    speakers = (
        {k: v[0] for k, v in read_table(data_dir / "utt2spk").items()}
        if (data_dir / "utt2spk").is_file()
        else {}
    )
    if (data_dir / "segments").is_file():
        segments = {
            utt: (rec, float(start), float(end))
            for utt, (rec, start, end, *_) in read_table(data_dir / "segments", 4).items()
        }
    else:
        segments = {utt: (utt, 0.0, -1.0) for utt in texts}
    durations: dict[str, float] = {}
    for utt, text in texts.items():
        rec, start, end = segments.get(utt, (utt, 0.0, -1.0))
        if rec not in recordings:
            if not any(rec in what for what, _ in summary.skipped):
                summary.skip(utt, f"recording {rec} not in wav.scp")
            continue
        path = recordings[rec]
        if not text.strip():
            summary.skip(utt, "empty transcript")
            continue
        if rec not in durations:
            seconds = probe(path, utt, summary)
            if seconds is None:
                continue
            durations[rec] = seconds
        duration = (end - start) if end >= 0 else durations[rec] - start
        if duration <= 0:
            summary.skip(utt, "empty segment")
            continue
        summary.splits["all"].append(
            Utterance(utt, str(path), round(duration, 4), text, speakers.get(utt, ""), start)
        )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--audio-root``."""
    parser.add_argument("--audio-root", type=Path, help="where relative wav.scp paths start")


CORPUS = Corpus(
    name="kaldi",
    help="a Kaldi data directory (wav.scp, text, optional utt2spk and segments)",
    source=Source("the corpus folder (or manifest file, for nemo)", nargs=None),
    read=lambda source, args: prepare(source, args.audio_root),
    add_arguments=add_arguments,
)
