"""Writing transcripts: plain text, JSON, JSON lines, TSV, SRT and WebVTT subtitles, Praat TextGrid."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from asr.transcript import Transcript, Word

FORMATS = ("txt", "json", "jsonl", "srt", "vtt", "tsv")


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(t: Transcript) -> str:
    cues = []
    for i, seg in enumerate(t.segments, 1):
        cues.append(
            f"{i}\n{_clock(seg.start, ',')} --> {_clock(seg.end, ',')}\n"
            + "\n".join(seg.lines)
            + "\n"
        )
    return "\n".join(cues)


def to_vtt(t: Transcript) -> str:
    cues = ["WEBVTT\n"]
    for seg in t.segments:
        cues.append(
            f"{_clock(seg.start, '.')} --> {_clock(seg.end, '.')}\n" + "\n".join(seg.lines) + "\n"
        )
    return "\n".join(cues)


def to_tsv(t: Transcript) -> str:
    rows = ["start\tend\tword\tconfidence"]
    rows += [f"{w.start:.3f}\t{w.end:.3f}\t{w.word}\t{w.confidence:.4f}" for w in t.words]
    return "\n".join(rows) + "\n"


def to_dict(t: Transcript) -> dict:
    record = asdict(t)
    for word in record["words"]:
        word.pop("chars", None)
    for seg in record["segments"]:
        seg.pop("words", None)
    return {"file": record.pop("path"), **record}


def render(t: Transcript, fmt: str) -> str:
    """``t`` in one of :data:`FORMATS` (``txt``: the text alone)."""
    if fmt == "txt":
        return t.text + "\n"
    if fmt == "json":
        return json.dumps(to_dict(t), ensure_ascii=False, indent=1) + "\n"
    if fmt == "jsonl":
        return json.dumps(to_dict(t), ensure_ascii=False) + "\n"
    if fmt == "srt":
        return to_srt(t)
    if fmt == "vtt":
        return to_vtt(t)
    if fmt == "tsv":
        return to_tsv(t)
    raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")


def to_textgrid(words: list[Word], duration: float) -> str:
    """A Praat TextGrid with a 'words' and a 'chars' interval tier (gaps as empty intervals)."""

    def tier(name: str, items: list[tuple[float, float, str]]) -> list[str]:
        intervals, t = [], 0.0
        for start, end, label in items:
            if start > t:
                intervals.append((t, start, ""))
            intervals.append((start, end, label))
            t = end
        if t < duration:
            intervals.append((t, duration, ""))
        lines = [
            '        class = "IntervalTier"',
            f'        name = "{name}"',
            "        xmin = 0",
            f"        xmax = {duration}",
            f"        intervals: size = {len(intervals)}",
        ]
        for i, (a, b, label) in enumerate(intervals, 1):
            lines += [
                f"        intervals [{i}]:",
                f"            xmin = {a}",
                f"            xmax = {b}",
                f'            text = "{label}"',
            ]
        return lines

    words_tier = [(w.start, w.end, w.word) for w in words]
    chars_tier = [(c.start, c.end, c.char) for w in words for c in w.chars]
    out = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {duration}",
        "tiers? <exists>",
        "size = 2",
        "item []:",
        "    item [1]:",
        *tier("words", words_tier),
        "    item [2]:",
        *tier("chars", chars_tier),
    ]
    return "\n".join(out) + "\n"


def render_alignment(words: list[Word], duration: float, fmt: str, audio: str) -> str:
    """A forced alignment (``asr align``) as ``json`` (words with their characters), ``tsv``
    (a row per word and per character) or ``textgrid`` (Praat)."""
    if fmt == "json":
        record = {"file": audio, "duration": duration, "words": [asdict(w) for w in words]}
        return json.dumps(record, ensure_ascii=False, indent=1) + "\n"
    if fmt == "tsv":
        rows = ["start\tend\tunit\tlabel"]
        for w in words:
            rows.append(f"{w.start:.3f}\t{w.end:.3f}\tword\t{w.word}")
            rows += [f"{c.start:.3f}\t{c.end:.3f}\tchar\t{c.char}" for c in w.chars]
        return "\n".join(rows) + "\n"
    if fmt == "textgrid":
        return to_textgrid(words, duration)
    raise ValueError(f"unknown alignment format {fmt!r} (json, tsv, textgrid)")


def output_paths(audios: list[Path], out_dir: Path, fmt: str) -> dict[Path, Path]:
    """Where each input's transcript goes: ``OUT/<name>.<fmt>``, or, when two inputs share a
    name (``a/x.wav`` and ``b/x.wav``, or ``x.wav`` and ``x.flac``), their paths below the inputs'
    common folder, mirrored under ``OUT`` (``OUT/a/x.txt``, ``OUT/b/x.txt``; ``x.wav.txt``), so no
    transcript overwrites another."""
    flat = {a: out_dir / f"{a.stem}.{fmt}" for a in audios}
    if len(set(flat.values())) == len(flat):
        return flat
    resolved = [a.resolve() for a in audios]
    common = Path(os.path.commonpath([r.parent for r in resolved]))
    out = {
        a: out_dir / r.relative_to(common).with_suffix(f".{fmt}") for a, r in zip(audios, resolved)
    }
    if len(set(out.values())) < len(out):  # same folder and stem, other extensions
        out = {a: out_dir / f"{r.relative_to(common)}.{fmt}" for a, r in zip(audios, resolved)}
    return out
