"""Word and character error rates (jiwer underneath), with S/D/I counts and per-utterance rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer
import numpy as np


@dataclass
class ErrorCounts:
    """Edit counts against a reference of ``ref_len`` units (words or characters)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def ref_len(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit (0 when both sides are empty, inf when only the reference is)."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_len

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )


def _counts(ref: str, hyp: str, unit: str) -> ErrorCounts:
    if not ref.strip():
        n = len(hyp.split()) if unit == "word" else len(hyp.strip())
        return ErrorCounts(insertions=n)
    if not hyp.strip():
        n = len(ref.split()) if unit == "word" else len(ref.strip())
        return ErrorCounts(deletions=n)
    out = jiwer.process_words(ref, hyp) if unit == "word" else jiwer.process_characters(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)


def word_errors(ref: str, hyp: str) -> ErrorCounts:
    return _counts(ref, hyp, "word")


def char_errors(ref: str, hyp: str) -> ErrorCounts:
    """Character edits; spaces count as characters, as in most CER reports."""
    return _counts(ref, hyp, "char")


@dataclass
class UtteranceScore:
    id: str
    ref: str
    hyp: str
    word: ErrorCounts
    char: ErrorCounts


@dataclass
class Score:
    """Corpus-level WER and CER (errors summed over utterances, not averaged per utterance)."""

    word: ErrorCounts
    char: ErrorCounts
    utterances: list[UtteranceScore]

    @property
    def wer(self) -> float:
        return self.word.rate

    @property
    def cer(self) -> float:
        return self.char.rate

    def summary(self) -> str:
        w, c = self.word, self.char
        return (
            f"WER {100 * self.wer:.2f}% ({w.errors}/{w.ref_len}: S={w.substitutions} "
            f"D={w.deletions} I={w.insertions})  CER {100 * self.cer:.2f}% "
            f"({c.errors}/{c.ref_len})  utterances {len(self.utterances)}"
        )


def score(ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str]) -> Score:
    """Score hypotheses against references (both already normalised)."""
    if not (len(ids) == len(refs) == len(hyps)):
        raise ValueError(f"score: {len(ids)} ids, {len(refs)} references, {len(hyps)} hypotheses")
    rows = [
        UtteranceScore(i, r, h, word_errors(r, h), char_errors(r, h))
        for i, r, h in zip(ids, refs, hyps)
    ]
    word, char = ErrorCounts(), ErrorCounts()
    for row in rows:
        word, char = word + row.word, char + row.char
    return Score(word, char, rows)


def write_report(result: Score, path: str | Path) -> None:
    """Per-utterance report: ``.jsonl`` gives JSON lines, anything else tab-separated values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in result.utterances:
                record = asdict(row)
                record["wer"], record["cer"] = row.word.rate, row.char.rate
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["id", "wer", "cer", "sub", "del", "ins", "ref_words", "ref", "hyp"])
        for row in sorted(result.utterances, key=lambda r: -r.word.rate):
            w = row.word
            writer.writerow(
                [
                    row.id,
                    f"{w.rate:.4f}",
                    f"{row.char.rate:.4f}",
                    w.substitutions,
                    w.deletions,
                    w.insertions,
                    w.ref_len,
                    row.ref,
                    row.hyp,
                ]
            )


@dataclass
class Comparison:
    """Two systems' WER on the same utterances, and how sure a paired bootstrap is of the gap."""

    wer_a: float
    wer_b: float
    low: float  # 2.5th percentile of the resampled WER(b) - WER(a)
    high: float  # 97.5th percentile
    p_b_better: float  # share of resamples in which b made fewer word errors than a
    groups: int  # the units resampled: utterances, or speakers when groups were given

    def summary(self) -> str:
        return (
            f"WER {100 * self.wer_a:.2f}% -> {100 * self.wer_b:.2f}% "
            f"({100 * (self.wer_b - self.wer_a):+.2f} points, 95% interval "
            f"{100 * self.low:+.2f} to {100 * self.high:+.2f}; the second better in "
            f"{100 * self.p_b_better:.1f}% of resamples of {self.groups} groups)"
        )


def compare(
    a: Score,
    b: Score,
    groups: Sequence[str] | None = None,
    samples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap of the WER difference between two systems (Bisani and Ney, 2004).

    ``a`` and ``b`` score the same utterances in the same order. Resampling draws whole
    utterances, or whole ``groups`` (one label per utterance, e.g. speakers) with replacement:
    utterances of one speaker share a voice and a room, so resampling speakers gives the honest,
    wider interval when a test set holds few of them.
    """
    if [u.id for u in a.utterances] != [u.id for u in b.utterances]:
        raise ValueError("compare: the two scores are not of the same utterances in the same order")
    labels = [u.id for u in a.utterances] if groups is None else list(groups)
    if len(labels) != len(a.utterances):
        raise ValueError(f"compare: {len(labels)} group labels for {len(a.utterances)} utterances")
    if not labels:
        raise ValueError("compare: no utterances")
    names, index = np.unique(np.array(labels, dtype=object), return_inverse=True)
    words = np.bincount(index, [u.word.ref_len for u in a.utterances], len(names))
    err_a = np.bincount(index, [u.word.errors for u in a.utterances], len(names))
    err_b = np.bincount(index, [u.word.errors for u in b.utterances], len(names))
    draws = np.random.default_rng(seed).integers(0, len(names), (samples, len(names)))
    n, ea, eb = words[draws].sum(1), err_a[draws].sum(1), err_b[draws].sum(1)
    diff = (eb - ea) / np.maximum(n, 1)
    low, high = np.percentile(diff, [2.5, 97.5])
    return Comparison(a.wer, b.wer, float(low), float(high), float(np.mean(eb < ea)), len(names))
