"""Word n-gram language models: build (interpolated modified Kneser-Ney, written as ARPA), lexicons,
and scoring through the ``kenlm`` module.

Building needs no KenLM command-line tools: :func:`build_model` follows the estimate of KenLM's
``lmplz`` (Heafield et al., 2013; Chen & Goodman, 1998): adjusted counts (distinct left extensions)
for lower orders, three discounts per order from counts of counts, interpolation down to a uniform
distribution over the vocabulary (``<unk>`` included). Counting works on numpy arrays of word ids
(sorted rows, no Python object per n-gram), so 13 M words build in a few minutes and a few GB.
Pruning drops rare n-grams and renormalises the backoff weights, so the model stays a proper
distribution; :func:`mix` interpolates two models linearly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.lm_text import TextError, iter_sentences  # noqa: F401 (TextError: re-exported)
from asr.text import SPACE, Tokenizer

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
DEFAULT_DISCOUNTS = (0.5, 1.0, 1.5)  # when counts of counts are too sparse to estimate them


class LMError(ValueError):
    """A language model that cannot be built or read."""


def read_sentences(paths: Sequence[str | Path]) -> list[list[str]]:
    """Normalised word sequences from text files and folders (see :mod:`asr.lm_text`) or manifests.

    Raises:
        LMError: a missing file, a file that is not text, or a bad manifest line.
    """
    try:
        return list(iter_sentences(paths))
    except TextError as exc:
        raise LMError(str(exc)) from None


def _keys(rows: np.ndarray) -> np.ndarray:
    """``(M, n)`` word ids -> ``(M,)`` opaque keys that sort and compare as the rows do
    (lexicographically, first word first): big-endian bytes viewed as one void scalar per row."""
    n = rows.shape[1]
    return np.ascontiguousarray(rows.astype(">u4")).view(f"V{4 * n}").ravel()


def _unique(rows: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows, sorted, with their (summed) counts."""
    if len(rows) == 0:
        return rows.reshape(0, rows.shape[1]), np.zeros(0, np.int64)
    keys, inverse = np.unique(_keys(rows), return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=counts, minlength=len(keys))
    return keys.view(">u4").reshape(len(keys), -1).astype(np.int32), summed.astype(np.int64)


def _find(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Index of each of ``rows`` in the sorted unique ``table`` (-1 where absent)."""
    if len(table) == 0 or len(rows) == 0:
        return np.full(len(rows), -1, np.int64)
    keys, wanted = _keys(table), _keys(rows)
    idx = np.searchsorted(keys, wanted).clip(max=len(keys) - 1)
    return np.where(keys[idx] == wanted, idx, -1)


def _context_starts(grams: np.ndarray) -> np.ndarray:
    """First row of each run of rows that share a context (all columns but the last)."""
    if grams.shape[1] == 1:
        return np.zeros(1, np.int64)
    context = _keys(grams[:, :-1])
    return np.flatnonzero(np.r_[True, context[1:] != context[:-1]])


@dataclass
class NgramModel:
    """An n-gram model in arrays: per order ``n`` (1-based), sorted unique rows of word ids
    ``grams[n] (K_n, n)``, their probabilities ``probs[n] (K_n,)`` and backoff weights
    ``backoffs[n] (K_n,)`` (1.0 where a row is no context), all natural-scale float64.
    ``words[i]`` is word id ``i``; ids 0, 1, 2 are ``<s>``, ``</s>``, ``<unk>``."""

    words: list[str]
    grams: dict[int, np.ndarray]
    probs: dict[int, np.ndarray]
    backoffs: dict[int, np.ndarray]

    @property
    def order(self) -> int:
        return max(self.grams)

    def write_arpa(self, path: str | Path) -> Path:
        """Write the model as ARPA text, atomically (log10 probabilities, ``<s>`` as -99)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            self._write_arpa_lines(tmp)
        except BaseException:  # a full disk, Ctrl-C, SIGTERM: no partial .tmp left behind
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)
        return path

    def _write_arpa_lines(self, tmp: Path) -> None:
        words = np.array(self.words, dtype=object)
        with tmp.open("w", encoding="utf-8") as f:
            f.write("\n\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(self.grams[n])}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                with np.errstate(divide="ignore"):
                    logp = np.maximum(np.log10(self.probs[n]), -99.0)
                    bow = np.log10(self.backoffs[n]) if n < self.order else None
                text = [" ".join(r) for r in words[self.grams[n]]]
                for i, gram in enumerate(text):
                    row = f"{logp[i]:.6f}\t{gram}"
                    if bow is not None and self.backoffs[n][i] != 1.0:
                        row += f"\t{bow[i]:.6f}"
                    f.write(row + "\n")
            f.write("\n\\end\\\n")


def _count(
    sentences: Iterable[Sequence[str]], order: int, min_count: int, chunk_tokens: int = 2_000_000
) -> tuple[list[str], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Word ids and raw n-gram counts, in memory that grows with the distinct n-grams only.

    Sentences are streamed into id chunks ``<s> w ... </s> <s> ...`` of about ``chunk_tokens``;
    each chunk's n-grams are counted and merged into the running counts, and the chunk dropped.
    Words seen fewer than ``min_count`` times then become ``<unk>`` in the merged counts (the
    same counts as counting the text with them replaced: each n-gram maps to one).
    """
    vocab: dict[str, int] = {BOS: 0, EOS: 1, UNK: 2}
    counts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    current: list[int] = []
    seen = False
    for words in sentences:
        current.append(0)
        current.extend(vocab.setdefault(w, len(vocab)) for w in words)
        current.append(1)
        if len(current) >= chunk_tokens:
            _merge(counts, _chunk_counts(np.array(current, np.int32), order))
            current, seen = [], True
    if current:
        _merge(counts, _chunk_counts(np.array(current, np.int32), order))
    elif not seen:
        raise LMError("no sentences to build a language model from")
    words = [""] * len(vocab)
    for w, i in vocab.items():
        words[i] = w
    if min_count > 1:  # rare words -> <unk>, ids renumbered densely
        unigrams, freq = counts[1]
        per_word = np.zeros(len(words), np.int64)
        per_word[unigrams[:, 0]] = freq
        keep = (per_word >= min_count) | (np.arange(len(words)) < 3)
        new_id = np.where(keep, np.cumsum(keep) - 1, 2).astype(np.int32)
        counts = {n: _sum_counts(new_id[rows], c) for n, (rows, c) in counts.items()}
        words = [w for w, k in zip(words, keep) if k]
    return words, counts


def _chunk_counts(ids: np.ndarray, order: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The n-gram counts (n = 1..order) of one chunk of the id stream (whole sentences)."""
    counts = {}
    for n in range(1, order + 1):
        if len(ids) < n:
            counts[n] = (np.zeros((0, n), np.int32), np.zeros(0, np.int64))
            continue
        rows = np.lib.stride_tricks.sliding_window_view(ids, n)
        # an n-gram stays inside one sentence: </s> only last, <s> only first
        ok = np.ones(len(rows), bool)
        for k in range(n - 1):
            ok &= rows[:, k] != 1
            ok &= rows[:, k + 1] != 0
        counts[n] = _unique(rows[ok])
    return counts


def _sum_counts(rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _unique(rows, counts.astype(np.float64))


def _merge(
    total: dict[int, tuple[np.ndarray, np.ndarray]], more: dict[int, tuple[np.ndarray, np.ndarray]]
) -> None:
    for n, (rows, counts) in more.items():
        if n in total:
            rows = np.concatenate([total[n][0], rows])
            counts = np.concatenate([total[n][1], counts])
            total[n] = _sum_counts(rows, counts)
        else:
            total[n] = (rows, counts)


def _discounts(adjusted: np.ndarray) -> tuple[float, float, float]:
    """D1, D2, D3+ from counts of counts (Chen & Goodman's estimate), with a fallback."""
    t = np.bincount(np.minimum(adjusted, 5), minlength=6)
    try:
        with np.errstate(divide="raise", invalid="raise"):
            y = t[1] / (t[1] + 2 * t[2])
            d = (1 - 2 * y * t[2] / t[1], 2 - 3 * y * t[3] / t[2], 3 - 4 * y * t[4] / t[3])
    except (ZeroDivisionError, FloatingPointError):
        return DEFAULT_DISCOUNTS
    if not all(0 < dk < k for k, dk in enumerate(d, 1)):
        return DEFAULT_DISCOUNTS
    return tuple(float(x) for x in d)


def _renormalize(model: NgramModel) -> None:
    """Set every context's backoff weight so that its next-word distribution sums to one.

    For a context ``h`` whose continuations ``W`` are listed: ``bow(h) = (1 - sum_W p(w|h)) /
    (1 - sum_W p(w|h'))``, ``h'`` being ``h`` without its first word. Without pruning this is
    exactly interpolated Kneser-Ney's leftover mass; after pruning (or mixing) it keeps the model
    a proper distribution.
    """
    for n in range(2, model.order + 1):
        grams, probs = model.grams[n], model.probs[n]
        lower = model.probs[n - 1][_find(model.grams[n - 1], grams[:, 1:])]
        starts = _context_starts(grams)
        seen = np.add.reduceat(probs, starts)
        seen_lower = np.add.reduceat(lower, starts)
        bow = np.clip(1 - seen, 1e-12, None) / np.clip(1 - seen_lower, 1e-12, None)
        contexts = _find(model.grams[n - 1], grams[starts, :-1])
        model.backoffs[n - 1] = np.ones(len(model.grams[n - 1]))
        model.backoffs[n - 1][contexts] = bow


def _closure(grams: dict[int, np.ndarray], keep: dict[int, np.ndarray]) -> None:
    """Keep each kept n-gram's prefix and suffix too, as ARPA readers require."""
    for n in range(max(grams), 1, -1):
        kept = grams[n][keep[n]]
        for part in (kept[:, :-1], kept[:, 1:]):
            idx = _find(grams[n - 1], _unique(part)[0])
            keep[n - 1][idx[idx >= 0]] = True


def build_model(
    sentences: Iterable[Sequence[str]],
    order: int = 3,
    prune: Sequence[int] = (),
    min_count: int = 1,
) -> NgramModel:
    """Estimate an interpolated modified Kneser-Ney model (as KenLM's ``lmplz`` does).

    Args:
        sentences: word sequences (already normalised), without ``<s>``/``</s>``.
        order: the n-gram order N (1 or more).
        prune: per order from 1, drop n-grams whose raw count is at most this (``lmplz --prune``:
            ``0 1 1`` drops singleton bigrams and trigrams; the last value applies to higher
            orders; unigrams are never pruned). Every context's backoff is then renormalised.
        min_count: words seen fewer times become ``<unk>`` (a smaller vocabulary).

    Raises:
        LMError: no sentences, or an order below 1.
    """
    if order < 1:
        raise LMError(f"order must be at least 1, got {order}")
    words, counts = _count(sentences, order, min_count)
    grams = {n: counts[n][0] for n in counts}
    raw = {n: counts[n][1] for n in counts}
    # adjusted counts: the highest order keeps raw counts; a lower-order n-gram counts its distinct
    # left extensions, except one that starts with <s>, which cannot be extended
    adjusted = {order: raw[order]}
    for n in range(order - 1, 0, -1):
        suffixes, extensions = _unique(grams[n + 1][:, 1:])
        idx = _find(suffixes, grams[n])
        adjusted[n] = np.where((idx >= 0) & (grams[n][:, 0] != 0), extensions[idx], raw[n])
    # <s> is never predicted; <unk> gets only the uniform share of the leftover mass
    predicted = grams[1][:, 0] != 0
    vocab_size = len(words) - 1  # all but <s>, <unk> included
    probs: dict[int, np.ndarray] = {}
    for n in range(1, order + 1):
        adj = adjusted[n].astype(np.float64)
        if n == 1:
            adj = np.where(predicted, adj, 0.0)
        d = np.array((0.0, *_discounts(adjusted[n][adjusted[n] > 0] if n == 1 else adjusted[n])))
        starts = _context_starts(grams[n])
        context_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(adj)]))
        total = np.add.reduceat(adj, starts)
        kind = np.minimum(adjusted[n], 3) * (adj > 0)
        gamma = np.add.reduceat(d[kind], starts) / total
        lower = (
            np.full(len(adj), 1 / vocab_size)
            if n == 1
            else probs[n - 1][_find(grams[n - 1], grams[n][:, 1:])]
        )
        probs[n] = (adj - d[kind]) / total[context_of] + gamma[context_of] * lower
        if n == 1:
            probs[1][~predicted] = 0.0
    if not (grams[1][:, 0] == 2).any():  # <unk> unseen: add it with the uniform share
        grams[1] = np.vstack([grams[1], [[2]]]).astype(np.int32)
        # the seen words hold all but gamma / |V| of the mass: that is <unk>'s share
        probs[1] = np.append(probs[1], max(0.0, 1 - probs[1].sum()))
        order_idx = np.argsort(_keys(grams[1]), kind="stable")
        grams[1], probs[1] = grams[1][order_idx], probs[1][order_idx]
    model = NgramModel(words, grams, probs, {n: np.ones(len(grams[n])) for n in grams})
    if any(prune):
        thresholds = [*prune, *[prune[-1]] * order][:order]
        keep = {
            n: raw[n] > thresholds[n - 1] if n > 1 else np.ones(len(raw[1]), bool)
            for n in range(1, order + 1)
        }
        keep[1] = np.ones(len(grams[1]), bool)
        _closure(grams, keep)
        for n in range(2, order + 1):
            model.grams[n], model.probs[n] = grams[n][keep[n]], probs[n][keep[n]]
    _renormalize(model)
    return model


def build_arpa(
    sentences: Iterable[Sequence[str]], order: int = 3, prune: Sequence[int] = ()
) -> str:
    """:func:`build_model` as ARPA text (for small models and tests)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(sentences, order, prune).write_arpa(Path(tmp) / "lm.arpa")
        return path.read_text(encoding="utf-8")


def write_arpa(
    sentences: Iterable[Sequence[str]],
    path: str | Path,
    order: int = 3,
    prune: Sequence[int] = (),
    min_count: int = 1,
) -> Path:
    """Build and write an ARPA model atomically."""
    return build_model(sentences, order, prune, min_count).write_arpa(path)


def read_arpa(path: str | Path) -> NgramModel:
    """Read an ARPA file into an :class:`NgramModel` (for mixing).

    Raises:
        LMError: a missing file, or one that is not ARPA text (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise LMError(f"{path}: language model not found")
    vocab: dict[str, int] = {BOS: 0, EOS: 1, UNK: 2}
    rows: dict[int, list[list[int]]] = {}
    logps: dict[int, list[float]] = {}
    bows: dict[int, list[float]] = {}
    order = 0
    try:
        with path.open(encoding="utf-8") as f:
            for n_line, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("ngram ") or line == "\\data\\":
                    continue
                if line.startswith("\\"):
                    order = int(line[1:].split("-")[0]) if line.endswith("-grams:") else 0
                    continue
                if not order:
                    continue
                fields = line.split("\t") if "\t" in line else line.split()
                if "\t" in line:
                    words = fields[1].split()
                    bow = float(fields[2]) if len(fields) > 2 else 0.0
                else:  # space-separated: logp w1 .. wn [bow]
                    words = fields[1 : 1 + order]
                    bow = float(fields[1 + order]) if len(fields) > 1 + order else 0.0
                if len(words) != order:
                    raise LMError(f"{path}: line {n_line}: expected a {order}-gram")
                rows.setdefault(order, []).append([vocab.setdefault(w, len(vocab)) for w in words])
                logps.setdefault(order, []).append(float(fields[0]))
                bows.setdefault(order, []).append(bow)
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, LMError):
            raise
        raise LMError(f"{path}: not an ARPA file ({exc})") from None
    if 1 not in rows:
        raise LMError(f"{path}: not an ARPA file (no \\1-grams: section)")
    words = [""] * len(vocab)
    for w, i in vocab.items():
        words[i] = w
    model = NgramModel(words, {}, {}, {})
    for n in sorted(rows):
        grams = np.array(rows[n], np.int32).reshape(-1, n)
        order_idx = np.argsort(_keys(grams), kind="stable")
        model.grams[n] = grams[order_idx]
        logp = np.array(logps[n])[order_idx]
        model.probs[n] = np.where(logp <= -99, 0.0, 10.0**logp)
        model.backoffs[n] = 10.0 ** np.array(bows[n])[order_idx]
    return model


def _full_probs(model: NgramModel, union: dict[int, np.ndarray], ids: np.ndarray) -> dict:
    """``model``'s backed-off probability of every n-gram in ``union`` (ids in the union's
    vocabulary; ``ids[k]`` is the union word ``k``'s id in ``model``, -1 if it lacks it)."""
    out: dict[int, np.ndarray] = {}
    # the model's <unk> stands for every word it lacks: its mass is shared evenly between the
    # union's <unk> and the union words this model lacks, so each distribution still sums to one
    lacking = int((ids[3:] < 0).sum()) if len(ids) > 3 else 0
    share = 1.0 / (lacking + 1)
    unk = float(model.probs[1][_find(model.grams[1], np.array([[2]], np.int32))[0]]) * share
    for n in sorted(union):
        mapped = ids[union[n]]  # (K, n) in the model's ids; -1 for words it lacks
        known = (mapped >= 0).all(axis=1)
        idx = np.full(len(mapped), -1, np.int64)
        if n in model.grams:
            idx[known] = _find(model.grams[n], mapped[known].astype(np.int32))
        p = np.where(idx >= 0, model.probs[n][idx] if n in model.probs else 0.0, np.nan)
        p[(idx >= 0) & (union[n][:, -1] == 2)] *= share
        missing = idx < 0
        if n == 1:
            p[missing] = unk
        else:
            context = mapped[missing, :-1]
            bow = np.ones(len(context))
            ok = (context >= 0).all(axis=1)
            cidx = _find(model.grams[n - 1], context[ok].astype(np.int32))
            bow[np.flatnonzero(ok)[cidx >= 0]] = model.backoffs[n - 1][cidx[cidx >= 0]]
            suffix = _find(union[n - 1], union[n][missing, 1:])
            p[missing] = bow * out[n - 1][suffix]
        out[n] = p
    return out


def mix(first: NgramModel, second: NgramModel, weight: float) -> NgramModel:
    """Linear interpolation ``weight * first + (1 - weight) * second`` over both models' n-grams.

    Each model gives its backed-off probability where it lacks an n-gram; the backoff weights of
    the result are renormalised (as SRILM's ``ngram -mix-lm`` approximates the exact mixture).
    """
    known = set(first.words)
    words = [*first.words, *(w for w in second.words if w not in known)]
    index = {w: i for i, w in enumerate(words)}
    remap = np.array([index[w] for w in second.words], np.int32)
    order = max(first.order, second.order)
    union = {}
    for n in range(1, order + 1):
        parts = [first.grams[n]] if n in first.grams else []
        parts += [remap[second.grams[n]]] if n in second.grams else []
        union[n] = _unique(np.concatenate(parts).astype(np.int32))[0]
    ids = []
    for model in (first, second):
        own = {w: i for i, w in enumerate(model.words)}
        ids.append(np.array([own.get(w, -1) for w in words], np.int64))
    pa, pb = _full_probs(first, union, ids[0]), _full_probs(second, union, ids[1])
    probs = {n: weight * pa[n] + (1 - weight) * pb[n] for n in union}
    probs[1][union[1][:, 0] == 0] = 0.0  # <s> is never predicted
    model = NgramModel(words, union, probs, {n: np.ones(len(union[n])) for n in union})
    _renormalize(model)
    return model


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
