"""``asr <command>``: the only place that parses arguments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from asr.audio import AudioError
from asr.checkpoint import ModelFileError
from asr.config import ConfigError
from asr.data import ManifestError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


IMPORTERS = {
    "kaldi": "a Kaldi data directory (wav.scp, text, optional utt2spk and segments)",
    "folder": "a folder of audio files, each with a .txt transcript beside it (name.wav + name.txt)",
    "nemo": "a NeMo-style JSON-lines manifest (audio_filepath, duration, text; optional split)",
    "ljspeech": "LJSpeech (metadata.csv + wavs/)",
    "speechocean762": "speechocean762 (Kaldi train/ and test/ under the corpus root)",
}


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a corpus in its native layout into manifests",
        description="Read a corpus as it ships and write <split>.jsonl manifests into --out, "
        "printing a summary (utterances, hours, speakers, characters outside the vocabulary, "
        "skipped files and why). Re-running writes the same files.",
    )
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    fsdd = corpora.add_parser(
        "fsdd",
        help="Free Spoken Digit Dataset (recordings/{digit}_{speaker}_{index}.wav)",
        description="Free Spoken Digit Dataset. Split 'corpus': index 0-4 = test (the corpus's "
        "own), 5-9 = dev, the rest train. Split 'speaker': --test-speakers/--dev-speakers held out.",
    )
    fsdd.add_argument("source", nargs="?", type=Path, help="corpus root holding recordings/")
    fsdd.add_argument("--out", type=Path, required=True, help="folder for the manifests")
    fsdd.add_argument("--split", choices=["corpus", "speaker"], default="corpus")
    fsdd.add_argument("--test-speakers", default=None, help="comma-separated, for --split speaker")
    fsdd.add_argument("--dev-speakers", default=None, help="comma-separated, for --split speaker")
    fsdd.add_argument(
        "--download",
        nargs="?",
        const="default",
        default=None,
        metavar="URL_OR_ZIP",
        help="fetch the corpus archive (or copy a local .zip) into OUT/download first",
    )
    for name, what in IMPORTERS.items():
        q = corpora.add_parser(name, help=what, description=f"Import {what}.")
        q.add_argument("source", type=Path, help="the corpus folder (or manifest file, for nemo)")
        q.add_argument("--out", type=Path, required=True, help="folder for the manifests")
        if name == "kaldi":
            q.add_argument("--audio-root", type=Path, help="where relative wav.scp paths start")
        if name in ("folder", "ljspeech"):
            q.add_argument("--speaker", default="", help="speaker label for every utterance")
        h = q.add_argument_group(
            "hold-out",
            "Split off dev/test sets by whole groups, never by file: two takes of one "
            "prompt or speaker always land together. Without these, all utterances go to one "
            "manifest (all.jsonl, or the source's own splits).",
        )
        h.add_argument(
            "--group-by",
            default="speaker",
            help="speaker (default), text, or id:REGEX (the first group of a match)",
        )
        h.add_argument(
            "--dev",
            default="0",
            help="number of groups to hold out for dev, or their names (comma-separated)",
        )
        h.add_argument(
            "--test", default="0", help="number of groups to hold out for test, or their names"
        )
        h.add_argument("--seed", type=int, default=0, help="seed of the hold-out draw")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        type=Path,
        help="YAML file of values to set (repeatable; later files win). "
        f"Model sizes: {CONF_DIR}/model/{{tiny,small,large}}.yaml",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.epochs=10")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="CTC speech recognition toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the training log too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_prepare(sub)

    p = sub.add_parser(
        "train",
        help="train a model",
        description="Train a model. The config is the dataclass defaults, then each -c YAML, then "
        "KEY=VALUE overrides; unknown keys are errors. Writes config.yaml, train.log, "
        "history.json, curve.png, last.pt and best.pt into --out, and resumes from last.pt.",
    )
    p.add_argument("--out", type=Path, required=True, help="experiment folder")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_args(p)

    p = sub.add_parser(
        "evaluate",
        help="WER and CER of a model on a manifest",
        description="Greedy-decode a manifest and print WER and CER with S/D/I counts.",
    )
    p.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--report", type=Path, help="per-utterance report (.tsv, or .jsonl)")
    p.add_argument("--show", action="store_true", help="print each reference and hypothesis")
    p.add_argument("--batch-seconds", type=float, default=120.0)
    p.add_argument("--device", default="cpu")

    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Print one line per file: 'FILE<TAB>TRANSCRIPT' (or JSON lines with --jsonl).",
    )
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per file")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")

    p = sub.add_parser(
        "export",
        help="write a model file for release",
        description="Copy a model file or training checkpoint without its training state "
        "(optimiser, history), optionally with float16 weights.",
    )
    p.add_argument("--model", type=Path, required=True, help="model file or checkpoint (best.pt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    return parser


def _count_or_names(value: str) -> int | list[str]:
    from asr.recipes.common import split_names

    return int(value) if value.strip().isdigit() else split_names(value)


def cmd_prepare(args: argparse.Namespace) -> int:
    from asr.recipes import folder, fsdd, kaldi, ljspeech, nemo, speechocean
    from asr.recipes.common import hold_out, write_splits

    if args.corpus == "fsdd":
        source = args.source
        if args.download is not None:
            url = fsdd.URL if args.download == "default" else args.download
            source = fsdd.fetch(args.out, url)
        if source is None:
            raise ValueError("asr prepare fsdd: give SOURCE (a local copy) or --download")
        summary = fsdd.prepare(source, args.split, args.test_speakers, args.dev_speakers)
    else:
        if args.corpus == "kaldi":
            summary = kaldi.prepare(args.source, args.audio_root)
        elif args.corpus == "folder":
            summary = folder.prepare(args.source, args.speaker)
        elif args.corpus == "ljspeech":
            summary = ljspeech.prepare(args.source, args.speaker or "LJ")
        elif args.corpus == "nemo":
            summary = nemo.prepare(args.source)
        else:
            summary = speechocean.prepare(args.source)
        dev, test = _count_or_names(args.dev), _count_or_names(args.test)
        if dev or test:
            source_split = "train" if "train" in summary.splits else "all"
            pool = summary.splits.pop(source_split)
            for name, utts in hold_out(pool, args.group_by, dev, test, args.seed).items():
                summary.splits.setdefault(name, []).extend(utts)
    paths = write_splits(summary, args.out)
    print(summary.report())
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.train import train

    cfg = load_config(args.config, args.overrides)
    record = train(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress)
    if record:
        print(
            f"epoch {record['epoch']}: valid WER {100 * record['valid_wer']:.2f}% "
            f"CER {100 * record['valid_cer']:.2f}%; best model: {args.out / 'best.pt'}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.metrics import write_report
    from asr.train import evaluate, make_loader, normalized_utterances
    from asr.transcribe import load_model

    rec = load_model(args.model, device=args.device)
    utts = normalized_utterances(str(args.manifest))
    loader = make_loader(
        utts, rec.tokenizer, rec.sample_rate, args.batch_seconds, 64, 0, shuffle=False
    )
    result = evaluate(
        rec.model, rec.features, rec.tokenizer, loader, rec.device, progress=sys.stderr.isatty()
    )
    if args.show:
        for row in sorted(result.score.utterances, key=lambda r: r.id):
            mark = "ok " if row.word.errors == 0 else "ERR"
            print(f"{mark} {row.id:<24} REF: {row.ref:<30} HYP: {row.hyp}")
    print(result.score.summary())
    if args.report:
        write_report(result.score, args.report)
        print(f"wrote {args.report}")
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.transcribe import load_model

    rec = load_model(args.model, device=args.device)
    hyps = rec.transcribe(args.files, batch_size=args.batch_size)
    for path, hyp in zip(args.files, hyps):
        if args.jsonl:
            print(json.dumps({"file": str(path), "text": hyp.text}, ensure_ascii=False))
        else:
            print(f"{path}\t{hyp.text}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from asr.checkpoint import atomic_save, read_model_file, strip_checkpoint
    from asr.transcribe import build_recognizer

    record = strip_checkpoint(read_model_file(args.model), half=args.half)
    build_recognizer(record, str(args.model))  # refuse to write a file that would not load
    atomic_save(record, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


COMMANDS = {
    "prepare": cmd_prepare,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "transcribe": cmd_transcribe,
    "export": cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except (
        AudioError,
        ModelFileError,
        ManifestError,
        ConfigError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"asr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
