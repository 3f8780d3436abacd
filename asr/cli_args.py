"""Arguments that several ``asr`` commands share: config files and overrides, ``--precision``, and
the decoding flags with the decoder they ask for. ``asr/cli.py``, ``asr/cli_lm.py`` and
``asr/cli_serve.py`` import them; nothing here parses a command line itself."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from asr.precision import PRECISIONS

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        type=Path,
        help="YAML file of values to set (repeatable; later files win). "
        f"Model sizes: {CONF_DIR}/model/{{tiny,small,medium,large}}.yaml",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.epochs=10")


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="auto",
        help="the model's matrix products: auto (default) = bf16 where the CPU (AMX-BF16, "
        "AVX512-BF16) or GPU multiplies bf16 natively, else fp32; fp16 on CUDA only",
    )


def add_decoder_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "decoding",
        "The bundled model decodes with beam search and its LM (asr/pretrained/decoder.yaml) "
        "unless told otherwise; other models greedily. --decoder greedy for raw speed; beam "
        "search: --decoder beam, optionally with a lexicon and a KenLM word n-gram. "
        "--decoder-config reads a 'decoder:' YAML section (as 'asr lm tune' writes); the flags "
        "below override it, or the bundled model's own config when none is given (e.g. "
        "--lm-weight 1 alone: the bundled beam search and LM with another LM weight).",
    )
    g.add_argument("--decoder", choices=["greedy", "beam"], default=None)
    g.add_argument("--decoder-config", type=Path, default=None)
    g.add_argument("--beam-size", type=int, default=None)
    g.add_argument(
        "--beam-size-token", type=int, default=None, help="tokens tried per frame (0: all)"
    )
    g.add_argument(
        "--beam-threshold", type=float, default=None, help="prune beams this far below the best"
    )
    g.add_argument("--lm", default=None, help="ARPA or KenLM binary word n-gram")
    g.add_argument(
        "--lexicon", default=None, help="word -> spelling file (from an ARPA LM if omitted)"
    )
    g.add_argument("--lm-weight", type=float, default=None)
    g.add_argument("--word-score", type=float, default=None, help="insertion bonus per word")


DECODER_FLAGS = (
    "decoder",
    "decoder_config",
    "lm",
    "lexicon",
    "beam_size",
    "beam_size_token",
    "beam_threshold",
    "lm_weight",
    "word_score",
)


def decoder_asked(args: argparse.Namespace) -> bool:
    """Whether any decoding flag was given."""
    return any(getattr(args, k) is not None for k in DECODER_FLAGS)


def decoder_from_args(args: argparse.Namespace, tokenizer, rec=None):
    """The decoder the flags ask for; none asked for: ``rec``'s default (the bundled model's
    beam search with its LM), else greedy. Flags that only adjust a beam search (``--lm-weight``,
    ``--word-score``, ``--beam-size``, ...) apply on top of ``rec``'s own decoder config when
    neither ``--decoder-config`` nor ``--lm`` replaces it."""
    from asr.config import load_decoder_config
    from asr.decode import build_decoder

    if rec is not None and not decoder_asked(args):
        return rec.default_decoder
    base = args.decoder_config
    if base is None and args.lm is None and rec is not None and args.decoder != "greedy":
        base = rec.decoder_config  # None for a model without one
    cfg = load_decoder_config(
        base,
        kind=args.decoder,
        beam_size=args.beam_size,
        beam_size_token=args.beam_size_token,
        beam_threshold=args.beam_threshold,
        lm=args.lm,
        lexicon=args.lexicon,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
    )
    if args.decoder is None and base is None and (args.lm or args.beam_size):
        cfg.kind = "beam"  # asking for an LM or a beam means beam search
    return build_decoder(tokenizer, cfg)


class Terminated(BaseException):
    """SIGTERM, raised where the main thread stood (see :func:`sigterm_unwinds`)."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block SIGTERM (what systemd, docker and ``kill`` send) raises :class:`Terminated`,
    so ``finally`` blocks remove their temporary files as Ctrl-C's KeyboardInterrupt lets them;
    once the block has unwound, the process dies by SIGTERM as it would have (exit status -15).
    Outside the main thread (where Python delivers signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
