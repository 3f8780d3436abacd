"""Decoders: ``(log_probs, out_lens) -> list[Hypothesis]``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.text import Tokenizer


@dataclass
class Hypothesis:
    """One decoded utterance.

    Attributes:
        text: the transcript.
        tokens: token ids after CTC collapsing (no blanks, no repeats).
        frames: output frame index of each token's first emission.
        score: total log-probability of the decoded path.
    """

    text: str
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0


def greedy_decode(
    log_probs: torch.Tensor, out_lens: torch.Tensor, tokenizer: Tokenizer
) -> list[Hypothesis]:
    """Best-path CTC decoding: the argmax at each frame, repeats merged, blanks dropped.

    Args:
        log_probs: ``(B, T, V)``.
        out_lens: ``(B,)`` true frame counts; frames past them are ignored.
        tokenizer: maps ids to characters; its blank id is dropped.

    Returns:
        one :class:`Hypothesis` per utterance, in batch order.
    """
    best, best_ids = log_probs.max(dim=-1)  # (B, T), (B, T)
    best, best_ids = best.cpu(), best_ids.cpu()
    hyps = []
    for b, length in enumerate(out_lens.tolist()):
        ids = best_ids[b, :length]
        # a frame starts a token when it differs from the frame before and is not blank
        changed = torch.ones(length, dtype=torch.bool)
        changed[1:] = ids[1:] != ids[:-1]
        starts = torch.nonzero(changed & (ids != tokenizer.blank_id)).flatten()
        tokens = ids[starts].tolist()
        hyps.append(
            Hypothesis(
                text=" ".join(tokenizer.decode(tokens).split()),
                tokens=tokens,
                frames=starts.tolist(),
                score=float(best[b, :length].sum()),
            )
        )
    return hyps
