"""``asr enrol``: its arguments and the command (:mod:`asr.enrol`, :mod:`asr.prompts`).

``asr/cli.py`` builds the parser and calls :func:`add_enrol` and :func:`cmd_enrol`; nothing else
imports this module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli_args import sigterm_unwinds


def add_enrol(sub: argparse._SubParsersAction) -> None:
    from asr.enrol import EnrolSettings

    d = EnrolSettings()
    p = sub.add_parser(
        "enrol",
        help="fine-tune a personal model on your own recordings",
        description="Fine-tune a model (default: the bundled one) on one speaker's recordings: a "
        "folder of audio files each with a .txt transcript beside it, or a manifest. A few "
        "recordings are held out to check progress; training stops when they stop improving. "
        "Writes OUT/personal.pt, which asr transcribe --model, asr serve --model and load_model() "
        "take, decoding with the same beam search and LM. With --prompts N, prints N sentences to "
        "record instead (--write puts each in a .txt to record beside).",
    )
    p.add_argument("source", nargs="?", type=Path, help="folder of recordings, or manifest")
    p.add_argument("--out", type=Path, help="output folder (personal.pt, progress.json, run/)")
    p.add_argument(
        "--model", type=Path, default=None, help="model to start from (default: bundled)"
    )
    p.add_argument("--prompts", type=int, metavar="N", help="print N sentences to record and stop")
    p.add_argument("--start", type=int, default=0, help="with --prompts: skip the first K prompts")
    p.add_argument("--write", type=Path, metavar="DIR", help="with --prompts: DIR/<id>.txt each")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr:g})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"at most ({d.epochs})")
    p.add_argument(
        "--patience", type=int, default=d.patience,
        help=f"stop after this many epochs without a better held-out WER ({d.patience})",
    )  # fmt: skip
    p.add_argument(
        "--trainable", default=None,
        help="parameter name prefixes that move, comma-separated (e.g. rnns.0,rnns.1; "
        "default: all)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_enrol(args: argparse.Namespace) -> int:
    if args.prompts is not None:
        return _prompts(args)
    if args.source is None or args.out is None:
        raise ValueError("give a folder of recordings (or a manifest) and --out, or --prompts N")
    from asr.enrol import EnrolSettings, enrol

    trainable = [t for t in (args.trainable or "").split(",") if t and t != "all"]
    settings = EnrolSettings(
        lr=args.lr, epochs=args.epochs, patience=args.patience, trainable=trainable
    )
    with sigterm_unwinds():
        result = enrol(args.source, args.out, args.model, settings, not args.no_progress)
    print(
        f"{result.model}: held-out WER {100 * result.wer_before:.1f}% -> "
        f"{100 * result.wer_after:.1f}% ({result.heldout} recordings held out; "
        f"{result.train_seconds / 60:.1f} min of speech, {result.epochs} epochs, "
        f"{result.minutes:.1f} min)"
    )
    if result.wer_after >= result.wer_before:
        print("no epoch beat the model it started from: personal.pt keeps its weights")
    if result.note:
        print(f"{result.note} (docs/enrol.md)")
    print(f"transcribe with it: asr transcribe --model {result.model} FILE")
    return 0


def _prompts(args: argparse.Namespace) -> int:
    from asr.prompts import choose_prompts, write_prompts

    prompts = choose_prompts(args.prompts, args.start)
    for pid, text in prompts:
        print(f"{pid}\t{text}")
    if args.write is not None:
        written = write_prompts(prompts, args.write)
        print(
            f"# wrote {len(written)} transcripts into {args.write}: record each as "
            f"arctic_<id>.wav beside its .txt, then: asr enrol {args.write} --out OUT"
        )
    return 0
