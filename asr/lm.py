"""Word n-gram language models: build (interpolated modified Kneser-Ney, written as ARPA), lexicons,
and scoring through the ``kenlm`` module.

Building needs no KenLM command-line tools: :func:`build_arpa` follows the estimate of KenLM's
``lmplz`` (Heafield et al., 2013; Chen & Goodman, 1998): adjusted counts (distinct left extensions)
for lower orders, three discounts per order from counts of counts, interpolation down to a uniform
distribution over the vocabulary (``<unk>`` included), no pruning.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from asr.text import SPACE, Tokenizer, normalize_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
DEFAULT_DISCOUNTS = (0.5, 1.0, 1.5)  # when counts of counts are too sparse to estimate them


class LMError(ValueError):
    """A language model that cannot be built or read."""


def read_sentences(paths: Sequence[str | Path]) -> list[list[str]]:
    """Normalised word sequences from text files (a sentence a line) or manifests (``.jsonl``)."""
    sentences = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise LMError(f"{path}: text file not found")
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        line = json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise LMError(
                            f"{path}: line {n}: not a manifest line with 'text'"
                        ) from None
                words = normalize_text(line).split()
                if words:
                    sentences.append(words)
    return sentences


def _discounts(adjusted: dict[tuple[str, ...], int]) -> tuple[float, float, float]:
    """D1, D2, D3+ from counts of counts (Chen & Goodman's estimate), with a fallback."""
    t = Counter(c for c in adjusted.values() if c <= 4)
    try:
        y = t[1] / (t[1] + 2 * t[2])
        d = (1 - 2 * y * t[2] / t[1], 2 - 3 * y * t[3] / t[2], 3 - 4 * y * t[4] / t[3])
    except ZeroDivisionError:
        return DEFAULT_DISCOUNTS
    if not all(0 < dk < k for k, dk in enumerate(d, 1)):
        return DEFAULT_DISCOUNTS
    return d


def build_arpa(sentences: Iterable[Sequence[str]], order: int = 3) -> str:
    """Estimate an interpolated modified Kneser-Ney model and return it as ARPA text.

    Args:
        sentences: word sequences (already normalised), without ``<s>``/``</s>``.
        order: the n-gram order N (1 or more).

    Returns:
        the ARPA file's text.

    Raises:
        LMError: no sentences, or an order below 1.
    """
    if order < 1:
        raise LMError(f"order must be at least 1, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n]: n-gram counts
    n_sentences = 0
    for words in sentences:
        padded = [BOS, *words, EOS]
        n_sentences += 1
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n][tuple(padded[i : i + n])] += 1
    if not n_sentences:
        raise LMError("no sentences to build a language model from")

    # adjusted counts: the highest order keeps raw counts; a lower-order n-gram counts its distinct
    # left extensions, except one that starts with <s>, which cannot be extended
    adjusted: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
    adjusted[order] = dict(raw[order])
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in raw[n + 1])
        adjusted[n] = {g: (c if g[0] == BOS else left[g]) for g, c in raw[n].items()}
    adjusted[1].pop((BOS,), None)  # <s> is never predicted
    vocab = sorted({g[0] for g in adjusted[1]} | {UNK})

    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    backoffs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        d = _discounts(adjusted[n])
        by_context: dict[tuple[str, ...], list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        for g, c in adjusted[n].items():
            by_context[g[:-1]].append((g, c))
        for context, grams in by_context.items():
            total = sum(c for _, c in grams)
            kinds = Counter(min(c, 3) for _, c in grams)
            gamma = (d[0] * kinds[1] + d[1] * kinds[2] + d[2] * kinds[3]) / total
            backoffs[n - 1][context] = gamma
            for g, c in grams:
                lower = 1 / len(vocab) if n == 1 else probs[n - 1][g[1:]]
                probs[n][g] = (c - d[min(c, 3) - 1]) / total + gamma * lower
        if n == 1:  # <unk> only has the uniform share of the leftover mass
            probs[1].setdefault((UNK,), backoffs[0][()] / len(vocab))
    # contexts are looked up one order down: the backoff of n-gram h lives with h's own entry
    lines = ["", "\\data\\"]
    entries: list[list[str]] = []
    for n in range(1, order + 1):
        grams = dict(probs[n])
        if n == 1:
            grams[(BOS,)] = 0.0  # written as -99: never predicted
        rows = []
        for g in sorted(grams):
            p = grams[g]
            logp = -99.0 if p <= 0 else math.log10(p)
            row = f"{logp:.6f}\t{' '.join(g)}"
            if n < order and g in backoffs[n]:
                bow = backoffs[n][g]
                row += f"\t{math.log10(bow) if bow > 0 else -99.0:.6f}"
            rows.append(row)
        entries.append(rows)
        lines.append(f"ngram {n}={len(rows)}")
    for n, rows in enumerate(entries, 1):
        lines += ["", f"\\{n}-grams:", *rows]
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def write_arpa(sentences: Iterable[Sequence[str]], path: str | Path, order: int = 3) -> Path:
    """Build and write an ARPA model atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(build_arpa(sentences, order), encoding="utf-8")
    tmp.replace(path)
    return path


def arpa_words(path: str | Path) -> list[str]:
    """The unigram vocabulary of an ARPA file (without ``<s>``, ``</s>``, ``<unk>``)."""
    path = Path(path)
    words, in_unigrams = [], False
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\1-grams:"):
                in_unigrams = True
            elif line.startswith("\\"):
                if in_unigrams:
                    break
            elif in_unigrams and line:
                fields = line.split("\t") if "\t" in line else line.split()
                word = fields[1] if len(fields) > 1 else ""
                if word and word not in (BOS, EOS, UNK):
                    words.append(word)
    if not in_unigrams:
        raise LMError(f"{path}: not an ARPA file (no \\1-grams: section)")
    return words


def write_lexicon(
    words: Iterable[str], tokenizer: Tokenizer, path: str | Path
) -> tuple[int, Counter]:
    """Write ``word w o r d |`` lines for the decoder; words the tokenizer cannot spell are skipped.

    Returns:
        (words written, Counter of the characters that made words unspellable).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written, bad = 0, Counter()
    seen = set()
    with path.open("w", encoding="utf-8") as f:
        for word in words:
            if word in seen or not word or SPACE in word:
                continue
            seen.add(word)
            oov = tokenizer.oov_chars(word)
            if oov:
                bad.update(oov)
                continue
            f.write(f"{word} {' '.join(word)} |\n")
            written += 1
    return written, bad


def load_kenlm(path: str | Path):
    """Load an ARPA or KenLM binary model with the ``kenlm`` module.

    Raises:
        LMError: the file is missing or KenLM cannot read it.
    """
    import kenlm

    path = Path(path)
    if not path.is_file():
        raise LMError(f"{path}: language model not found")
    try:
        return kenlm.Model(str(path))
    except (OSError, RuntimeError) as exc:
        raise LMError(f"{path}: not a readable ARPA or KenLM binary model ({exc})") from None


def perplexity(model, sentences: Iterable[Sequence[str]]) -> float:
    """Per-word perplexity (``</s>`` counted as a word, as KenLM's ``query`` does)."""
    log10_total, n_words = 0.0, 0
    for words in sentences:
        log10_total += model.score(" ".join(words), bos=True, eos=True)
        n_words += len(words) + 1
    return 10 ** (-log10_total / max(1, n_words))
