"""What every importer shares: the preparation summary, probing audio, writing splits,
downloading archives, holding out dev/test groups.

Downloads resume (HTTP ``Range`` on a ``.part`` file), are verified (md5 or sha256) and leave
``.done`` markers, so a re-run of ``asr prepare ... --download`` skips every finished step.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import random
import re
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from asr.audio import AUDIO_EXTENSIONS, AudioError, audio_duration
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


@contextlib.contextmanager
def open_text(path: Path, newline: str | None = None) -> Iterator[TextIO]:
    """``path`` opened as UTF-8 text; a byte that is not UTF-8 is a :class:`ValueError` naming the
    file and its line (the codec alone names neither).

    Raises:
        ValueError: ``FILE: line N: not UTF-8 text (REASON at byte B of the line)``.
    """
    try:
        with Path(path).open(encoding="utf-8", newline=newline) as f:
            yield f
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: {_first_bad_line(Path(path), exc)}") from None


def _first_bad_line(path: Path, exc: UnicodeDecodeError) -> str:
    """Where ``path`` stops being UTF-8 (the decoder reads in chunks, so its offset is no line's)."""
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):  # b"\n" is never inside a UTF-8 sequence
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return f"line {n}: not UTF-8 text ({bad.reason} at byte {bad.start} of the line)"
    return f"not UTF-8 text ({exc.reason})"


def find_audio(folder: Path, stem: str, shipped: str) -> Path:
    """The audio file ``folder/stem.*``: the extension the corpus ships first, then any other.

    Corpora are often re-encoded to save space (FLAC or SPHERE to Opus or Vorbis) with their
    layout and names kept, so an importer finds each utterance's audio by name, whatever its
    extension. When none exists, the shipped name is returned (and probing it reports it missing).
    """
    first = folder / f"{stem}{shipped}"
    if first.is_file():
        return first
    for ext in AUDIO_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return first


def probe(
    audio: Path, where: str, summary: PrepareSummary, reason: str = "unreadable audio ({})"
) -> float | None:
    """``audio``'s duration in seconds, or ``None`` after reporting it in ``summary`` as skipped.

    Args:
        audio: the file.
        where: what the skip names (the file, or the line of the listing that points to it).
        summary: where the skip is reported.
        reason: the skip's reason, ``{}`` standing for the error's own message.
    """
    try:
        return audio_duration(audio)
    except AudioError as exc:
        summary.skip(where, reason.format(exc))
        return None


def write_splits(summary: PrepareSummary, out_dir: str | Path) -> dict[str, Path]:
    """Write one ``<split>.jsonl`` per split into ``out_dir`` (atomically, so re-runs are idempotent)."""
    out_dir = Path(out_dir)
    paths = {}
    for name, utts in summary.splits.items():
        paths[name] = out_dir / f"{name}.jsonl"
        write_manifest(sorted(utts, key=lambda u: u.id), paths[name])
    return paths


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (archives are tens of gigabytes)."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:HEX"``, ``"sha256:HEX"`` or a bare hex digest (32 digits: md5, 64: sha256)."""
    algorithm, _, value = checksum.rpartition(":")
    algorithm, value = algorithm.strip().lower(), value.strip().lower()
    if not algorithm:
        algorithm = {32: "md5", 64: "sha256"}.get(len(value), "")
    if algorithm not in ("md5", "sha256") or not re.fullmatch(r"[0-9a-f]+", value):
        raise ValueError(f"checksum {checksum!r} is not md5:HEX, sha256:HEX or a bare md5/sha256")
    return algorithm, value


def _local_source(url: str) -> Path | None:
    """The file a ``file://`` URL or a plain path names; ``None`` for a remote URL."""
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if "://" not in url:
        return Path(url)
    return None


def _fetch_into(url: str, part: Path, progress: bool) -> None:
    """Append the rest of ``url`` to ``part``, starting where ``part`` ends (HTTP Range / seek)."""
    done = part.stat().st_size if part.exists() else 0
    local = _local_source(url)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(f"{url}: file not found")
        total = local.stat().st_size
        if done > total:
            done = 0
        src = local.open("rb")
        src.seek(done)
    else:
        request = urllib.request.Request(url, headers={"User-Agent": "asr-recipes"})
        if done:
            request.add_header("Range", f"bytes={done}-")
        try:
            src = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and done:  # the range starts at the end: nothing left to fetch
                return
            raise
        if done and src.status != 206:  # the server ignored the range: start over
            done = 0
        length = src.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
    mode = "ab" if done else "wb"
    with (
        src,
        part.open(mode) as f,
        tqdm(
            total=total,
            initial=done,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        for block in iter(lambda: src.read(1 << 20), b""):
            f.write(block)
            bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise OSError(f"{url}: got {part.stat().st_size} of {total} bytes")


def download(
    url: str,
    dest: Path,
    checksum: str | None = None,
    retries: int = 3,
    progress: bool | None = None,
) -> Path:
    """Fetch ``url`` (``http(s)://``, ``file://`` or a local path) to ``dest`` and verify it.

    The bytes go to ``dest.part``; an interrupted download resumes from where the ``.part`` file
    ends (an HTTP ``Range`` request; a seek for local files) and is retried ``retries`` times. The
    finished file is checked against ``checksum``, then renamed to ``dest`` and a marker
    ``dest.done`` (holding the checksum) is written, so a re-run skips it without re-hashing.

    Args:
        url: where the file is.
        dest: where it goes.
        checksum: ``md5:HEX``, ``sha256:HEX`` or a bare md5/sha256 digest; ``None``: not checked.
        retries: attempts after a dropped connection, each resuming the ``.part`` file.
        progress: show a progress bar (default: when stderr is a terminal).

    Raises:
        ValueError: the checksum does not match (the ``.part`` file is removed, so a re-run
            fetches it afresh); the message names the URL and both digests.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    marker = dest.with_name(dest.name + ".done")
    expected = parse_checksum(checksum) if checksum else None
    wanted = f"{expected[0]}:{expected[1]}" if expected else ""
    if dest.is_file() and marker.is_file() and marker.read_text().strip() == wanted:
        return dest
    progress = sys.stderr.isatty() if progress is None else progress
    part = dest.with_name(dest.name + ".part")
    if not dest.is_file():
        for attempt in range(retries + 1):
            try:
                _fetch_into(url, part, progress)
                break
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, FileNotFoundError) or attempt == retries:
                    raise
                print(f"{url}: {exc}; resuming (attempt {attempt + 2})", file=sys.stderr)
                time.sleep(min(30, 2**attempt))
        part.replace(dest)
    if expected is not None:
        algorithm, value = expected
        actual = file_digest(dest, algorithm)
        if actual != value:
            bad = dest.with_name(dest.name + ".part")
            dest.replace(bad)
            bad.unlink()
            raise ValueError(
                f"{url}: checksum mismatch: expected {algorithm} {value}, got {actual} "
                f"(the download was removed; check the URL or pass the right checksum)"
            )
    marker.write_text(wanted + "\n")
    return dest


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` or ``.tar.bz2`` into ``dest``, once.

    A marker ``dest/.<archive name>.done`` records a finished extraction; an interrupted one is
    simply redone. Tar members that would land outside ``dest`` (absolute paths, ``..``, links
    out) are refused.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / f".{archive.name}.done"
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    else:
        try:
            with tarfile.open(archive) as t:
                if hasattr(tarfile, "data_filter"):
                    t.extractall(dest, filter="data")
                else:  # Python < 3.10.12 / 3.11.4: check the members ourselves
                    root = dest.resolve()
                    for member in t.getmembers():
                        target = (dest / member.name).resolve()
                        if (
                            root not in (target, *target.parents)
                            or member.issym()
                            or member.islnk()
                        ):
                            raise ValueError(f"{archive}: member {member.name!r} leaves {dest}")
                    t.extractall(dest)
        except getattr(tarfile, "FilterError", ()) as exc:
            raise ValueError(f"{archive}: refused an unsafe member: {exc}") from None
        except tarfile.TarError as exc:
            raise ValueError(f"{archive}: not a valid zip or tar archive ({exc})") from None
    marker.touch()
    return dest


def fetch_archive(
    url: str, download_dir: Path, name: str, checksum: str | None, keep: bool = True
) -> Path:
    """Download ``url`` as ``download_dir/name``, verify it and extract it into ``download_dir``.

    Skipped entirely once the extraction's ``.done`` marker exists (so ``keep=False``, which
    deletes the archive after extracting, does not cause a re-download).

    Returns:
        ``download_dir``, which now holds the archive's contents.
    """
    download_dir = Path(download_dir)
    if (download_dir / f".{name}.done").exists():
        return download_dir
    archive = download(url, download_dir / name, checksum)
    extract(archive, download_dir)
    if not keep:
        archive.unlink()
    return download_dir


def archive_name(url: str, default: str = "") -> str:
    """The file name a URL ends in (query dropped): ``.../LJSpeech-1.1.tar.bz2?x=1`` -> its name."""
    return Path(url.split("?")[0]).name or default


def fetch_found(url: str, download_dir: Path, checksum: str | None, marker: str, what: str) -> Path:
    """Download ``url`` (as the file it names), verify it and extract it into ``download_dir``.

    Returns:
        the folder of the first file matching ``marker`` (a glob, ``**/metadata.csv``) in what was
        extracted: the corpus's root.

    Raises:
        FileNotFoundError: no file matches ``marker`` (the message names ``what``).
    """
    download_dir = Path(download_dir)
    fetch_archive(url, download_dir, archive_name(url), checksum)
    found = sorted(download_dir.glob(marker))
    if not found:
        raise FileNotFoundError(f"{download_dir}: no {what} found in the extracted archive")
    return found[0].parent


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
