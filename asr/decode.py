"""Decoders: ``(log_probs, out_lens) -> list[Hypothesis]``."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from asr.config import DecoderConfig
from asr.text import SPACE, Tokenizer


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


class DecoderError(ValueError):
    """A decoder that cannot be built: a missing or corrupt lexicon or language model."""


SIL_TOKEN = "|"  # flashlight's word separator; our tokenizer's space maps to it


def _check_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise DecoderError(f"{path}: {what} not found")


def check_lexicon(path: str, tokenizer: Tokenizer) -> None:
    """Raise naming the file and line if a lexicon entry is malformed or spells with unknown tokens."""
    known = set(tokenizer.tokens) | {SIL_TOKEN}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DecoderError(
            f"{path}: not a lexicon (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise DecoderError(f"{path}: cannot read the lexicon ({exc.strerror})") from None
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DecoderError(f"{path}: line {n}: expected 'word spelling...'")
        unknown = [t for t in fields[1:] if t not in known]
        if unknown:
            raise DecoderError(
                f"{path}: line {n}: tokens {unknown} are not in the model's vocabulary"
            )


class GreedyDecoder:
    """Best-path decoding behind the same interface as :class:`BeamDecoder`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, log_probs: torch.Tensor, out_lens: torch.Tensor) -> list[Hypothesis]:
        return greedy_decode(log_probs, out_lens, self.tokenizer)


# What KenLM writes to fd 2 on every load of an ARPA file: a hint, the file's name, a progress bar
_KENLM_CHATTER = re.compile(
    rb"Loading the LM will be faster if you build a binary file\.|Reading .*|-+5-+10-.*100|\*+"
)
_FD2_LOCK = threading.Lock()  # fd 2 is the process's: one hold at a time


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data``; a closed or broken stderr is not worth an error of its own."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


@contextlib.contextmanager
def _native_stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 during the block (native code writes there
    directly: KenLM prints a hint and a progress bar on every load). Afterwards pass it all on if
    the block raised, where it may explain the error, and otherwise everything but KenLM's own
    lines. Where fd 2 cannot be redirected, nothing is held. Serialised across threads."""
    with _FD2_LOCK:
        saved = held = None
        try:
            held = tempfile.TemporaryFile()
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(held.fileno(), 2)
        except (OSError, ValueError):
            if saved is not None:
                os.close(saved)
            if held is not None:
                held.close()
            saved = None
        if saved is None:
            yield
            return
        failed = True
        try:
            yield
            failed = False
        finally:
            if sys.stderr is not None:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            held.close()
            if not failed:
                lines = [x for x in lines if not _KENLM_CHATTER.fullmatch(x.rstrip(b"\r\n"))]
            _write_fd(2, b"".join(lines))


class BeamDecoder:
    """CTC prefix beam search (flashlight-text via torchaudio's ``ctc_decoder``).

    Lexicon-free by default (any character string); with a lexicon, only its words, and with a
    KenLM word n-gram, scored by it (``lm_weight * log p_lm + word_score`` per word).

    Args:
        tokenizer: the model's tokens; its space is the word separator.
        cfg: beam sizes, lexicon, LM and weights.

    Raises:
        DecoderError: a missing or unreadable lexicon or LM, or an LM without a lexicon.
    """

    def __init__(self, tokenizer: Tokenizer, cfg: DecoderConfig) -> None:
        from torchaudio.models.decoder import ctc_decoder

        if SPACE not in tokenizer.tokens:
            raise DecoderError("beam search needs a tokenizer with a space (the word separator)")
        self.tokenizer = tokenizer
        if cfg.lm and not cfg.lexicon and str(cfg.lm).endswith(".arpa"):
            cfg = replace(cfg, lexicon=self._lexicon_from_arpa(cfg.lm, tokenizer))
            # missing_ok: asr serve's temporary folder may be gone first
            weakref.finalize(self, Path(cfg.lexicon).unlink, missing_ok=True)
        self.cfg = cfg
        if cfg.lexicon:
            _check_file(cfg.lexicon, "lexicon")
            check_lexicon(cfg.lexicon, tokenizer)
        if cfg.lm:
            _check_file(cfg.lm, "language model")
            if not cfg.lexicon:
                raise DecoderError(
                    f"{cfg.lm}: a word language model needs a lexicon (decoder.lexicon; "
                    "'asr lm lexicon' writes one)"
                )
        tokens = [SIL_TOKEN if t == SPACE else t for t in tokenizer.tokens]
        try:
            with _native_stderr_held():  # KenLM's hint and progress bar, on fd 2
                self._decoder = ctc_decoder(
                    lexicon=cfg.lexicon or None,
                    tokens=tokens,
                    lm=cfg.lm or None,
                    nbest=cfg.nbest,
                    beam_size=cfg.beam_size,
                    beam_size_token=cfg.beam_size_token or None,
                    beam_threshold=cfg.beam_threshold,
                    lm_weight=cfg.lm_weight,
                    word_score=cfg.word_score,
                    unk_score=cfg.unk_score,
                    sil_score=cfg.sil_score,
                    log_add=cfg.log_add,
                    blank_token=tokenizer.tokens[tokenizer.blank_id],
                    sil_token=SIL_TOKEN,
                )
        except (RuntimeError, ValueError, IndexError) as exc:
            where = cfg.lm or cfg.lexicon
            raise DecoderError(f"{where}: cannot load ({exc})") from None

    @staticmethod
    def _lexicon_from_arpa(lm: str, tokenizer: Tokenizer) -> str:
        """Spell every unigram of an ARPA model into a temporary lexicon file."""
        from asr.lm import LMError, arpa_words, write_lexicon

        _check_file(lm, "language model")
        try:
            words = arpa_words(lm)
        except (LMError, UnicodeDecodeError) as exc:
            raise DecoderError(f"{lm}: cannot read its words ({exc})") from None
        fd, path = tempfile.mkstemp(prefix="lexicon-", suffix=".txt")
        os.close(fd)
        write_lexicon(words, tokenizer, path)
        return path

    def _hypothesis(self, result) -> Hypothesis:
        ids = result.tokens.tolist()
        # torchaudio counts frames over flashlight's path, which starts with one extra step
        frames = [max(0, t - 1) for t in result.timesteps.tolist()]
        # flashlight adds word separators at both ends; keep real characters with their frames
        pairs = [(i, t) for i, t in zip(ids, frames) if i != self.tokenizer.blank_id]
        while pairs and self.tokenizer.tokens[pairs[0][0]] == SPACE:
            pairs.pop(0)
        while pairs and self.tokenizer.tokens[pairs[-1][0]] == SPACE:
            pairs.pop()
        text = (
            " ".join(result.words)
            if self.cfg.lexicon
            else self.tokenizer.decode(i for i, _ in pairs)
        )
        return Hypothesis(
            text=" ".join(text.split()),
            tokens=[i for i, _ in pairs],
            frames=[t for _, t in pairs],
            score=float(result.score),
        )

    def nbest(self, log_probs: torch.Tensor, out_lens: torch.Tensor) -> list[list[Hypothesis]]:
        """Up to ``cfg.nbest`` hypotheses per utterance, best first."""
        emissions = log_probs.detach().float().cpu()  # (B, T, V)
        lens = out_lens.cpu().to(torch.int32)
        if self.cfg.lexicon:
            emissions, lens = self._close_last_word(emissions, lens)
        results = self._decoder(emissions.contiguous(), lens)
        return [[self._hypothesis(r) for r in utt] or [Hypothesis("")] for utt in results]

    def __call__(self, log_probs: torch.Tensor, out_lens: torch.Tensor) -> list[Hypothesis]:
        return [hyps[0] for hyps in self.nbest(log_probs, out_lens)]

    def _close_last_word(
        self, emissions: torch.Tensor, lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append to each utterance one frame that is surely the word separator.

        A lexicon word is spelled with a closing separator (``w o r d |``), but the model never
        emits a separator after an utterance's last word (training transcripts do not end in a
        space). Without this frame flashlight cannot complete that word, and at the end it keeps
        only hypotheses between words: the last word of every utterance is lost (a lone word
        always). The frame costs nothing on the separator and is never a character.
        """
        batch, frames, vocab = emissions.shape
        out = torch.full((batch, frames + 1, vocab), -1e4, dtype=emissions.dtype)
        out[:, :frames] = emissions
        space = self.tokenizer.tokens.index(SPACE)
        out[torch.arange(batch), lens.long(), space] = 0.0
        return out, lens + 1


def build_decoder(
    tokenizer: Tokenizer, cfg: DecoderConfig | None = None
) -> GreedyDecoder | BeamDecoder:
    """The decoder ``cfg.kind`` names (greedy when ``cfg`` is None)."""
    if cfg is None or cfg.kind == "greedy":
        return GreedyDecoder(tokenizer)
    return BeamDecoder(tokenizer, cfg)
