"""LM weight search (``asr lm tune``): every ``(lm_weight, word_score)`` pair of a grid decoded
over a dev set's emissions, which are computed once; the grid's points run in parallel processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch

from asr.config import DecoderConfig
from asr.decode import BeamDecoder
from asr.text import Tokenizer

# what each worker process decodes, set once by _tune_init (the pool's initializer)
_TUNE: dict = {}


def _tune_init(
    emissions: list[torch.Tensor],
    refs: list[str],
    groups: list[int],
    tokenizer: Tokenizer,
    cfg: DecoderConfig,
) -> None:
    _TUNE.update(emissions=emissions, refs=refs, groups=groups, tokenizer=tokenizer, cfg=cfg)


def _tune_point(point: tuple[float, float]) -> tuple[float, float, list[int], list[int]]:
    """(lm_weight, word_score, word errors per group, reference words per group)."""
    from asr.metrics import word_errors

    lm_weight, word_score = point
    cfg = replace(_TUNE["cfg"], lm_weight=lm_weight, word_score=word_score, nbest=1)
    decoder = BeamDecoder(_TUNE["tokenizer"], cfg)
    n = max(_TUNE["groups"]) + 1
    errors, words = [0] * n, [0] * n
    for emission, ref, g in zip(_TUNE["emissions"], _TUNE["refs"], _TUNE["groups"]):
        hyp = decoder(emission[None], torch.tensor([emission.shape[0]]))[0]
        counts = word_errors(ref, hyp.text)
        errors[g] += counts.errors
        words[g] += counts.ref_len
    return lm_weight, word_score, errors, words


def tune_weights(
    emissions: list[torch.Tensor],
    refs: list[str],
    tokenizer: Tokenizer,
    cfg: DecoderConfig,
    lm_weights: Sequence[float],
    word_scores: Sequence[float],
    jobs: int = 2,
    groups: Sequence[int] | None = None,
    average: Literal["words", "sets"] = "words",
) -> list[tuple[float, float, float, tuple[float, ...]]]:
    """WER of every (lm_weight, word_score) pair on a dev set, best first.

    Args:
        emissions: per-utterance log-probabilities ``(T, V)``, computed once by the caller.
        refs: the normalised reference transcripts.
        tokenizer: the model's tokens.
        cfg: the decoder's other settings (beam size, LM, lexicon).
        lm_weights, word_scores: the grid.
        jobs: processes decoding grid points in parallel.
        groups: each utterance's dev set (0, 1, ...); None: all one set.
        average: ``words``: the WER of all utterances pooled (a set counts by its words);
            ``sets``: the mean of the sets' WERs (each set, so each domain, counts the same).

    Returns:
        ``[(lm_weight, word_score, wer, (wer of set 0, set 1, ...)), ...]`` sorted by ``wer``.
    """
    if average not in ("words", "sets"):
        raise ValueError(f"average must be 'words' or 'sets', got {average!r}")
    BeamDecoder(tokenizer, cfg)  # fail here, once, on a bad LM or lexicon
    grid = [(w, s) for w in lm_weights for s in word_scores]
    args = (
        emissions,
        refs,
        list(groups) if groups is not None else [0] * len(refs),
        tokenizer,
        cfg,
    )
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs, initializer=_tune_init, initargs=args) as pool:
            results = pool.map(_tune_point, grid)
    else:
        _tune_init(*args)
        results = [_tune_point(p) for p in grid]
    table = []
    for w, s, errors, words in results:
        per_set = tuple(e / max(1, n) for e, n in zip(errors, words))
        pooled = sum(errors) / max(1, sum(words))
        table.append((w, s, pooled if average == "words" else sum(per_set) / len(per_set), per_set))
    return sorted(table, key=lambda r: (r[2], r[0]))
