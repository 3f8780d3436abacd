"""Manifests, the dataset, the length-bucketing batch sampler and ``collate``.

A manifest is JSON Lines, one utterance a line::

    {"id": "0_jackson_0", "audio": "recordings/0_jackson_0.wav", "duration": 0.57,
     "text": "zero", "speaker": "jackson"}

with an optional ``offset`` (seconds into the file). Relative ``audio`` paths are relative to the
manifest's own folder, so a prepared corpus can be moved as a whole.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from asr.audio import load_audio
from asr.text import Tokenizer, ctc_min_frames, normalize_text


class ManifestError(ValueError):
    """A manifest line that cannot be read."""


@dataclass
class Utterance:
    """One manifest record. ``duration`` and ``offset`` are in seconds."""

    id: str
    audio: str
    duration: float
    text: str
    speaker: str = ""
    offset: float = 0.0

    def to_json(self) -> str:
        record = asdict(self)
        if not self.offset:
            del record["offset"]
        return json.dumps(record, ensure_ascii=False)


_REQUIRED = ("id", "audio", "duration", "text")


def parse_manifest_line(line: str, where: str, base_dir: Path | None = None) -> Utterance:
    """Parse one manifest line; ``where`` (``path: line n``) prefixes any error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: a manifest line must be a JSON object")
    for key in _REQUIRED:
        if key not in record:
            raise ManifestError(f"{where}: missing '{key}'")
    unknown = set(record) - {f for f in Utterance.__dataclass_fields__}
    if unknown:
        raise ManifestError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("duration", "offset"):
        value = record.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ManifestError(f"{where}: '{key}' must be a number of seconds, got {value!r}")
    duration, offset = float(record["duration"]), float(record.get("offset", 0.0))
    if not math.isfinite(duration) or duration <= 0:
        raise ManifestError(f"{where}: 'duration' must be a positive number, got {duration}")
    if not math.isfinite(offset) or offset < 0:
        raise ManifestError(f"{where}: 'offset' must be 0 or more seconds, got {offset}")
    if not isinstance(record["text"], str):
        raise ManifestError(f"{where}: 'text' must be a string")
    audio = str(record["audio"])
    if base_dir is not None and not os.path.isabs(audio):
        audio = str(base_dir / audio)
    return Utterance(
        id=str(record["id"]),
        audio=audio,
        duration=duration,
        text=record["text"],
        speaker=str(record.get("speaker", "")),
        offset=offset,
    )


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a JSON Lines manifest; relative audio paths are resolved against its folder.

    Raises:
        ManifestError: the file is missing, or a line is malformed (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    utts = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                utts.append(parse_manifest_line(line, f"{path}: line {n}", path.parent))
    return utts


def write_manifest(
    utts: Iterable[Utterance], path: str | Path, relative_to: Path | None = None
) -> int:
    """Write ``utts`` as JSON Lines atomically; audio paths are made relative to the manifest's folder.

    Returns:
        the number of lines written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = (relative_to or path.parent).resolve()
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for utt in utts:
            audio = Path(utt.audio).resolve()
            rel = os.path.relpath(audio, base)
            record = Utterance(**{**asdict(utt), "audio": rel})
            f.write(record.to_json() + "\n")
            n += 1
    os.replace(tmp, path)
    return n


@dataclass
class FilterReport:
    """What :func:`filter_utterances` dropped, and why."""

    kept: int = 0
    too_long: int = 0
    too_short: int = 0
    oov: int = 0
    oov_chars: Counter = field(default_factory=Counter)
    empty_text: int = 0
    no_room_for_ctc: int = 0
    missing_audio: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return (
            self.too_long
            + self.too_short
            + self.oov
            + self.empty_text
            + self.no_room_for_ctc
            + len(self.missing_audio)
        )

    def summary(self, name: str) -> str:
        parts = [f"{name}: kept {self.kept} utterances"]
        for label, count in [
            ("longer than max_duration", self.too_long),
            ("shorter than min_duration", self.too_short),
            ("with an empty transcript", self.empty_text),
            ("with characters outside the vocabulary", self.oov),
            ("too short for their transcript (CTC needs a frame per label)", self.no_room_for_ctc),
            ("whose audio file is missing", len(self.missing_audio)),
        ]:
            if count:
                parts.append(f"dropped {count} {label}")
        if self.missing_audio:
            shown = ", ".join(self.missing_audio[:3])
            more = f" and {len(self.missing_audio) - 3} more" if len(self.missing_audio) > 3 else ""
            parts.append(f"missing: {shown}{more}")
        if self.oov_chars:
            chars = ", ".join(f"{c!r} x{n}" for c, n in self.oov_chars.most_common(10))
            parts.append(f"characters outside the vocabulary: {chars}")
        return "; ".join(parts)


def filter_utterances(
    utts: Sequence[Utterance],
    tokenizer: Tokenizer,
    min_duration: float,
    max_duration: float,
    out_frames: callable | None = None,
) -> tuple[list[Utterance], FilterReport]:
    """Drop utterances that cannot train, with counts (never silently).

    Args:
        utts: normalised utterances.
        tokenizer: the vocabulary.
        min_duration, max_duration: bounds in seconds.
        out_frames: seconds -> model output frames; with it, utterances whose transcript needs more
            frames than the model emits (an infinite CTC loss) are dropped.
    """
    report = FilterReport()
    kept = []
    for utt in utts:
        if utt.duration > max_duration:
            report.too_long += 1
            continue
        if utt.duration < min_duration:
            report.too_short += 1
            continue
        if not utt.text.strip():
            report.empty_text += 1
            continue
        oov = tokenizer.oov_chars(utt.text)
        if oov:
            report.oov += 1
            report.oov_chars.update(oov)
            continue
        if out_frames is not None and out_frames(utt.duration) < ctc_min_frames(
            tokenizer.encode(utt.text)
        ):
            report.no_room_for_ctc += 1
            continue
        if not os.path.isfile(utt.audio):  # else a loader worker fails mid-epoch with a traceback
            report.missing_audio.append(utt.audio)
            continue
        kept.append(utt)
    report.kept = len(kept)
    return kept, report


@dataclass
class Batch:
    """A padded batch. ``waves (B, N)``, ``wav_lens (B,)``, ``targets (B, U)``, ``target_lens (B,)``."""

    ids: list[str]
    waves: torch.Tensor
    wav_lens: torch.Tensor
    targets: torch.Tensor
    target_lens: torch.Tensor
    texts: list[str]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.ids,
            self.waves.to(device, non_blocking=True),
            self.wav_lens.to(device),
            self.targets.to(device),
            self.target_lens.to(device),
            self.texts,
        )


@dataclass
class Example:
    id: str
    wave: torch.Tensor  # (N,)
    labels: list[int]
    text: str
    seed: int = 0  # the seed of its augmentation (see BucketBatchSampler's seed_items)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """A context in which torch's global generator starts from ``seed``, restored after: the
    augmentation of one item (or one batch) is then a function of its seed alone, whichever
    process (main or loader worker) computes it and whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SpeechDataset(Dataset):
    """Utterances loaded lazily: only the manifest records stay in memory, audio is read per item.

    Args:
        utts: the records (already filtered).
        tokenizer: turns each transcript into ids.
        sample_rate: the model's rate in Hz.
        skip_unknown: labels leave out characters outside the vocabulary (scoring keeps such
            utterances, whose references the model cannot spell); training filters them instead.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        tokenizer: Tokenizer,
        sample_rate: int,
        skip_unknown: bool = False,
    ) -> None:
        self.utts = list(utts)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.skip_unknown = skip_unknown

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, key: int | tuple[int, int]) -> Example:
        """Item ``index``, or ``(index, seed)``: the seed travels with the example to the
        training collate, which augments it (:class:`asr.augment.Augment`)."""
        index, seed = key if isinstance(key, tuple) else (key, 0)
        utt = self.utts[index]
        duration = utt.duration if utt.offset else None
        wave = load_audio(utt.audio, self.sample_rate, offset=utt.offset, duration=duration)
        text = utt.text
        if self.skip_unknown:  # scoring: the reference stays whole, the loss sees what it can
            text = "".join(c for c in text if not self.tokenizer.oov_chars(c))
        return Example(utt.id, wave, self.tokenizer.encode(text), utt.text, seed)

    def durations(self) -> list[float]:
        return [u.duration for u in self.utts]


def pad_waves(waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad waveforms ``(N_i,)`` into ``waves (B, N)`` with their true lengths ``(B,)``."""
    wav_lens = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(wav_lens.max()) if len(waves) else 0)
    for i, w in enumerate(waves):
        out[i, : len(w)] = w
    return out, wav_lens


def pad_labels(labels: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad token id lists into ``targets (B, U)`` (at least one column) with ``target_lens (B,)``."""
    target_lens = torch.tensor([len(x) for x in labels], dtype=torch.long)
    targets = torch.zeros(len(labels), max(1, int(target_lens.max())), dtype=torch.long)
    for i, x in enumerate(labels):
        targets[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    return targets, target_lens


def collate(examples: Sequence[Example]) -> Batch:
    """Zero-pad waveforms and targets; keep true lengths."""
    waves, wav_lens = pad_waves([e.wave for e in examples])
    targets, target_lens = pad_labels([e.labels for e in examples])
    return Batch(
        [e.id for e in examples], waves, wav_lens, targets, target_lens, [e.text for e in examples]
    )


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, each capped by total seconds of audio (padded) and by count.

    Utterances are sorted by duration, cut into batches greedily, and the batch order is shuffled
    by ``seed + epoch`` (call :meth:`set_epoch`). With ``sorted_first`` the batches come shortest
    first (SortaGrad). Sorting keeps padding small; the shuffle keeps the gradient unbiased.
    ``set_epoch(..., start=n)`` skips the epoch's first ``n`` batches (of this rank): a run resumed
    from a mid-epoch checkpoint goes on where it stopped. ``len()`` is always the whole epoch's.

    Args:
        durations: seconds per utterance.
        batch_seconds: cap on ``batch size * longest duration`` in a batch.
        max_batch_size: cap on utterances in a batch.
        shuffle: shuffle the batch order (training); otherwise shortest first.
        seed: base seed; the order of epoch ``e`` depends on ``(seed, e)`` only.
        num_replicas, rank: shard batches across data-parallel ranks.
        step_batches: batches each rank takes per optimizer step (gradient accumulation).
        seed_items: yield ``(index, seed)`` pairs: the seed of each item's augmentation.
        weights: per utterance, how often it is drawn in an epoch on average (``data.train_weights``
            gives each manifest's): 2 draws it twice (two augmentations), 0.25 a quarter of the
            utterances of that weight, new ones every epoch; ``None`` or all 1: each once.

    With several ranks (or ``step_batches`` > 1), what is shuffled is runs of
    ``num_replicas * step_batches`` batches neighbouring in length, and one step's batches on all
    ranks come from one run: the ranks wait on each other at every step, so giving them
    similar lengths keeps a rank with long utterances from holding up the rest (lhotse's samplers
    call this ``sync_buckets``). Each rank gets the same number of batches; the ``len % ranks``
    left over are dropped, drawn anew every epoch.
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_seconds: float,
        max_batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        step_batches: int = 1,
        seed_items: bool = False,
        weights: Sequence[float] | None = None,
    ) -> None:
        if batch_seconds <= 0 or max_batch_size <= 0:
            raise ValueError("batch_seconds and max_batch_size must be positive")
        if not 0 <= rank < num_replicas or step_batches < 1:
            raise ValueError(
                f"need 0 <= rank < num_replicas and step_batches >= 1, got "
                f"rank {rank}, num_replicas {num_replicas}, step_batches {step_batches}"
            )
        self.step_batches = step_batches
        self.seed_items = seed_items
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.sorted_first = False
        self.start = 0
        self.num_replicas = num_replicas
        self.rank = rank
        self.durations = list(durations)
        self.batch_seconds = batch_seconds
        self.max_batch_size = max_batch_size
        self.weights = None
        if weights is not None:
            if len(weights) != len(self.durations):
                raise ValueError(f"{len(weights)} weights for {len(self.durations)} utterances")
            if any(not math.isfinite(w) or w < 0 for w in weights):
                raise ValueError(f"weights must be finite and >= 0, got {sorted(set(weights))}")
            if any(w != 1 for w in weights):
                self.weights = [float(w) for w in weights]
        self.batches: list[list[int]] = self._bucket(self._draw(0))

    def _draw(self, epoch: int) -> list[int]:
        """The epoch's items as virtual indices ``copy * n + index``: every item once without
        weights; with them, ``floor(w)`` copies of each item of weight ``w``, plus a draw of
        ``round(frac(w) * k)`` of the ``k`` items that share the weight, new every epoch (by
        ``(seed, epoch)``), so an epoch's size is fixed and a resume draws the same."""
        n = len(self.durations)
        if self.weights is None:
            return list(range(n))
        rng = random.Random((self.seed * 1_000_003 + epoch) * 7 + 3)
        chosen = []
        by_weight: dict[float, list[int]] = {}
        for i, w in enumerate(self.weights):
            by_weight.setdefault(w, []).append(i)
        for w, items in sorted(by_weight.items()):
            whole = int(w)
            chosen += [c * n + i for c in range(whole) for i in items]
            extra = round((w - whole) * len(items))
            chosen += [whole * n + i for i in rng.sample(items, extra)]
        return chosen

    def _bucket(self, items: list[int]) -> list[list[int]]:
        """Cut virtual indices, sorted by duration, greedily into batches."""
        n = len(self.durations)
        order = sorted(items, key=lambda v: (self.durations[v % n], v))
        batches: list[list[int]] = []
        batch: list[int] = []
        for v in order:
            longest = self.durations[v % n]  # ascending order: the newest is the longest
            if batch and (
                len(batch) + 1 > self.max_batch_size
                or (len(batch) + 1) * longest > self.batch_seconds
            ):
                batches.append(batch)
                batch = []
            batch.append(v)
        if batch:
            batches.append(batch)
        return batches

    def set_epoch(self, epoch: int, sorted_first: bool = False, start: int = 0) -> None:
        """Iterate epoch ``epoch`` next (SortaGrad's order if ``sorted_first``), from its batch
        ``start`` on."""
        if self.weights is not None and epoch != self.epoch:
            self.batches = self._bucket(self._draw(epoch))
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}] batches, got {start}")
        self.epoch = epoch
        self.sorted_first = sorted_first
        self.start = start

    def _order(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        batches = list(self.batches)  # ascending length
        extra = len(batches) % self.num_replicas
        if extra:  # ranks stay in step: drop a few, different ones each epoch
            dropped = set(rng.sample(range(len(batches)), extra))
            batches = [b for i, b in enumerate(batches) if i not in dropped]
        size = self.num_replicas * self.step_batches
        runs = [batches[i : i + size] for i in range(0, len(batches), size)]
        if self.shuffle and not self.sorted_first:
            # a short run (fewer batches than one step takes) goes last, so steps stay aligned
            short = runs.pop() if runs and len(runs[-1]) < size else None
            rng.shuffle(runs)
            runs += [short] if short else []
        # within a run, rank r takes batches r, r + num_replicas, ...
        return [b for run in runs for b in run[self.rank :: self.num_replicas]]

    def __iter__(self) -> Iterator[list[int]] | Iterator[list[tuple[int, int]]]:
        n = len(self.durations)
        order = self._order()[self.start :]
        if not self.seed_items:
            return iter([[v % n for v in b] for b in order])
        # each item's augmentation seed is a function of (seed, epoch, utterance, copy) alone, so
        # a resumed run draws what an unbroken one did, with any number of loader workers
        base = (self.seed * 1_000_003 + self.epoch) * 1_000_033
        return iter([[(v % n, (base + v) % 2**62) for v in b] for b in order])

    def __len__(self) -> int:
        n = len(self.batches)
        return (n - n % self.num_replicas) // self.num_replicas if self.num_replicas > 1 else n


def normalized_utterances(paths: str) -> list[Utterance]:
    """Read one manifest, or several separated by commas, with transcripts normalised."""
    utts = [u for path in paths.split(",") if path.strip() for u in read_manifest(path.strip())]
    for utt in utts:
        utt.text = normalize_text(utt.text)
    return utts


def train_weights(
    utts: Sequence[Utterance], paths: str, weights: Sequence[float]
) -> list[float] | None:
    """Each utterance's draw weight from its manifest's (``data.train_weights``), or ``None``
    when no weights are set. ``utts`` are what :func:`normalized_utterances` read from ``paths``
    (comma-separated), in order, less any filtered out since.

    Raises:
        ValueError: not one weight per manifest, or a weight that is negative or not finite.
    """
    if not weights:
        return None
    names = [p.strip() for p in paths.split(",") if p.strip()]
    if len(weights) != len(names):
        raise ValueError(
            f"data.train_weights: {len(weights)} weights for {len(names)} manifests of "
            f"data.train ({', '.join(names)})"
        )
    for name, w in zip(names, weights):
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"data.train_weights: {name}: weight {w} is not a number >= 0")
    read = ((utt.id, w) for name, w in zip(names, weights) for utt in read_manifest(name))
    out = []
    for utt in utts:  # the read order, some left out: walk both lists together
        out.append(next(w for utt_id, w in read if utt_id == utt.id))
    return out


def make_loader(
    utts: list[Utterance],
    tokenizer: Tokenizer,
    sample_rate: int,
    batch_seconds: float,
    max_batch_size: int,
    num_workers: int,
    shuffle: bool,
    seed: int = 0,
    augment: Callable[[list[Example]], Batch] | None = None,
    num_replicas: int = 1,
    rank: int = 0,
    step_batches: int = 1,
    skip_unknown: bool = False,
    weights: Sequence[float] | None = None,
) -> DataLoader:
    """A loader of length-bucketed batches; ``num_replicas``/``rank`` shard the batches by rank,
    and one optimizer step's ``step_batches`` per rank come from batches of neighbouring length.
    ``augment`` (training: :meth:`asr.augment.Augment.waves`) turns each batch's examples, which
    then carry their augmentation seeds, into a batch in place of :func:`collate`; evaluation
    passes none. ``weights``: per utterance, how often an epoch draws it (see
    :class:`BucketBatchSampler`)."""
    dataset = SpeechDataset(utts, tokenizer, sample_rate, skip_unknown)
    sampler = BucketBatchSampler(
        dataset.durations(),
        batch_seconds,
        max_batch_size,
        shuffle=shuffle,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        step_batches=step_batches,
        seed_items=augment is not None,
        weights=weights,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=augment or collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        # the loader's own generator: starting its workers must not draw from the global one,
        # which SpecAugment uses in the main process (persistent workers start once per run, so
        # a resumed run would otherwise draw at another place than an unbroken one)
        generator=torch.Generator().manual_seed(seed),
    )
