"""What every importer shares: the preparation summary, writing splits, downloading archives."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.data import Utterance, write_manifest
from asr.text import Tokenizer, normalize_text


@dataclass
class PrepareSummary:
    """What a ``prepare`` produced, and what it skipped and why."""

    splits: dict[str, list[Utterance]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append((what, reason))

    def report(self, tokenizer: Tokenizer | None = None) -> str:
        tokenizer = tokenizer or Tokenizer()
        lines = []
        for name, utts in self.splits.items():
            hours = sum(u.duration for u in utts) / 3600
            speakers = len({u.speaker for u in utts})
            oov: Counter[str] = Counter()
            for u in utts:
                oov.update(tokenizer.oov_chars(normalize_text(u.text)))
            line = f"{name}: {len(utts)} utterances, {hours:.3f} h, {speakers} speakers"
            if oov:
                chars = ", ".join(f"{c!r} x{n}" for c, n in oov.most_common(10))
                line += f"; characters outside the vocabulary: {chars}"
            lines.append(line)
        if self.skipped:
            reasons = Counter(reason for _, reason in self.skipped)
            lines.append(
                f"skipped {len(self.skipped)} files: "
                + "; ".join(f"{n} {reason}" for reason, n in reasons.most_common())
            )
            for what, reason in self.skipped[:10]:
                lines.append(f"  {what}: {reason}")
        return "\n".join(lines)


def write_splits(summary: PrepareSummary, out_dir: str | Path) -> dict[str, Path]:
    """Write one ``<split>.jsonl`` per split into ``out_dir`` (atomically, so re-runs are idempotent)."""
    out_dir = Path(out_dir)
    paths = {}
    for name, utts in summary.splits.items():
        paths[name] = out_dir / f"{name}.jsonl"
        write_manifest(sorted(utts, key=lambda u: u.id), paths[name])
    return paths


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, checksum: str | None = None) -> Path:
    """Fetch ``url`` (or copy a local path / ``file://`` URL) to ``dest``, verifying a SHA-256.

    A finished download is kept and re-verified instead of fetched again; a partial one is written
    to ``dest.part`` and only renamed when complete.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (checksum is None or sha256(dest) == checksum):
        return dest
    part = dest.with_name(dest.name + ".part")
    if Path(url).exists():
        shutil.copyfile(url, part)
    else:
        with urllib.request.urlopen(url) as response, part.open("wb") as f:
            shutil.copyfileobj(response, f)
    if checksum is not None and sha256(part) != checksum:
        part.unlink()
        raise ValueError(f"{url}: checksum mismatch (expected sha256 {checksum})")
    part.replace(dest)
    return dest


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once (a ``.done`` marker records a finished extraction)."""
    marker = dest / f".{archive.name}.done"
    if not marker.exists():
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        except zipfile.BadZipFile:
            raise ValueError(f"{archive}: not a valid zip archive") from None
        marker.touch()
    return dest


def split_names(values: Sequence[str] | str | None) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def group_key(utt: Utterance, group_by: str) -> str:
    """The unit a hold-out keeps together: ``speaker``, ``text`` or ``id:REGEX`` (first group)."""
    if group_by == "speaker":
        return utt.speaker or utt.id
    if group_by == "text":
        return normalize_text(utt.text)
    if group_by.startswith("id:"):
        match = re.search(group_by[3:], utt.id)
        return match.group(1) if match and match.groups() else (match.group(0) if match else utt.id)
    raise ValueError(f"group_by must be 'speaker', 'text' or 'id:REGEX', got {group_by!r}")


def hold_out(
    utts: Sequence[Utterance],
    group_by: str = "speaker",
    dev: int | Sequence[str] = 0,
    test: int | Sequence[str] = 0,
    seed: int = 0,
) -> dict[str, list[Utterance]]:
    """Split utterances into train/dev/test by whole groups, never by file.

    Two recordings of one speaker (``group_by="speaker"``) or of one prompt (``"text"``, or
    ``"id:arctic_(\\w\\d+)_"``) always land in the same split, so held-out results are honest.

    Args:
        utts: the utterances.
        group_by: the unit kept together.
        dev, test: how many groups to hold out (drawn by ``seed``), or the group names themselves.
        seed: makes the draw repeatable, so re-running a ``prepare`` writes the same splits.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}`` (empty held-out splits are left out).
    """
    groups = sorted({group_key(u, group_by) for u in utts})
    rng = random.Random(seed)
    shuffled = groups[:]
    rng.shuffle(shuffled)
    chosen: dict[str, set[str]] = {}
    for name, spec in (("test", test), ("dev", dev)):
        if isinstance(spec, int):
            free = [g for g in shuffled if not any(g in s for s in chosen.values())]
            if spec >= len(free):
                raise ValueError(
                    f"cannot hold out {spec} {group_by} groups for {name}: only {len(free)} left"
                )
            chosen[name] = set(free[:spec])
        else:
            missing = set(spec) - set(groups)
            if missing:
                raise ValueError(f"{name}: no utterances of {group_by} {sorted(missing)}")
            chosen[name] = set(spec)
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for utt in utts:
        key = group_key(utt, group_by)
        name = next((n for n, keys in chosen.items() if key in keys), "train")
        splits[name].append(utt)
    return {k: v for k, v in splits.items() if v or k == "train"}
