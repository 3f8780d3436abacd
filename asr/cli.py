"""``asr <command>``: the only place that parses arguments, with its siblings ``cli_args.py`` (the
options several commands share), ``cli_prepare.py``, ``cli_lm.py``, ``cli_serve.py`` and ``cli_enrol.py``
(one command each)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

import torch

from asr.audio import AudioError
from asr.checkpoint import ModelFileError
from asr.cli_args import add_config_args, add_decoder_args, add_precision, decoder_from_args
from asr.cli_enrol import add_enrol, cmd_enrol
from asr.cli_lm import add_lm, cmd_lm
from asr.cli_prepare import add_prepare, cmd_prepare
from asr.cli_serve import add_serve, cmd_serve
from asr.config import ConfigError
from asr.data import ManifestError


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    add_config_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="CTC speech recognition toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the training log too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_prepare(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_transcribe(sub)
    _add_align(sub)
    add_lm(sub)
    _add_export(sub)
    add_serve(sub)
    add_enrol(sub)
    return parser


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="WER and CER of a model on a manifest",
        description="Decode a manifest (the bundled model: beam search with its LM; others: greedy, "
        "unless told otherwise) and print WER and CER with S/D/I counts.",
    )
    p.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--report", type=Path, help="per-utterance report (.tsv, or .jsonl)")
    p.add_argument("--show", action="store_true", help="print each reference and hypothesis")
    p.add_argument("--batch-seconds", type=float, default=120.0)
    p.add_argument("--device", default="cpu")
    add_precision(p)
    add_decoder_args(p)


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe files, folders (searched recursively for audio) and globs, of any "
        "length (long ones are cut at pauses). To stdout: 'FILE<TAB>TRANSCRIPT' lines (txt), or each "
        "file in --format; with --output-dir, one FILE.<format> per input. A file that fails is "
        "reported and the rest go on; the exit status is 1 if any failed.",
    )
    p.add_argument("inputs", nargs="+", help="audio files, folders or glob patterns")
    p.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    p.add_argument("--format", choices=["txt", "json", "jsonl", "srt", "vtt", "tsv"], default="txt")
    p.add_argument("--jsonl", action="store_true", help="same as --format jsonl")
    p.add_argument("--output-dir", type=Path, default=None, help="write one file per input here")
    p.add_argument(
        "--no-timestamps", action="store_true", help="json/jsonl: skip word times (faster)"
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="one input only: draw its spectrogram, CTC posteriors and word boundaries",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="short files, or a long file's pieces, per forward pass (default 16)",
    )
    p.add_argument(
        "--max-duration",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="refuse longer files, judged by their header before reading (default 24 h)",
    )
    p.add_argument("--device", default="cpu")
    add_precision(p)
    add_decoder_args(p)


def _add_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="forced alignment of a known transcript",
        description="Place a given transcript in the audio: word and character start/end times. "
        "TEXT is the transcript itself or a file holding it. Fails clearly when the text cannot be "
        "aligned (characters outside the vocabulary, more characters than the audio has frames).",
    )
    p.add_argument("audio", type=Path)
    p.add_argument("text", help="the transcript, or a .txt file holding it")
    p.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    add_precision(p)
    p.add_argument("--format", choices=["json", "tsv", "textgrid"], default="json")
    p.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="draw the spectrogram, the CTC posteriors and the word boundaries",
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model file for release, or TorchScript / ONNX",
        description="--format asr (default): a model file without the training state (optimiser, "
        "history), optionally with float16 weights. --format torchscript | onnx: the feature front "
        "end and the model as one graph, waves (B, N) and wav_lens (B,) in, log_probs (B, T, V) "
        "and out_lens (B,) out, with the vocabulary stored beside it.",
    )
    p.add_argument(
        "--model", type=Path, default=None, help="model file or checkpoint (default: bundled)"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", choices=["asr", "torchscript", "onnx"], default="asr")
    p.add_argument("--half", action="store_true", help="asr format: store weights as float16")
    p.add_argument(
        "--ema",
        action="store_true",
        help="export the moving average of the weights that --model, a training checkpoint of a "
        "run with train.ema_decay (its last.pt), carries instead of its trained weights",
    )
    p.add_argument(
        "--average",
        nargs="+",
        type=Path,
        default=[],
        metavar="MODEL",
        help="export the mean of --model's weights and these files' (epochs of one run, or "
        "stages of one staged training; same shape and vocabulary; a file named twice counts "
        "twice), e.g. --model exp/gen9/best.pt --average exp/gen8/best.pt",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.train import train

    cfg = load_config(args.config, args.overrides)
    record = train(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress)
    if record and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 speaks
        decoded = ""
        if record.valid_decoder_wer is not None:
            decoded = f", with {cfg.train.valid_decoder} WER {100 * record.valid_decoder_wer:.2f}%"
        print(
            f"epoch {record.epoch}: valid WER {100 * record.valid_wer:.2f}% "
            f"CER {100 * record.valid_cer:.2f}%{decoded}; best model: {args.out / 'best.pt'}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.data import make_loader
    from asr.evaluate import evaluate, scoring_utterances
    from asr.metrics import write_report
    from asr.transcribe import load_model

    rec = load_model(args.model, device=args.device, precision=args.precision)
    utts = scoring_utterances(str(args.manifest), rec.tokenizer)
    loader = make_loader(
        utts,
        rec.tokenizer,
        rec.sample_rate,
        args.batch_seconds,
        64,
        0,
        shuffle=False,
        skip_unknown=True,
    )
    result = evaluate(
        rec.model,
        rec.features,
        rec.tokenizer,
        loader,
        rec.device,
        progress=sys.stderr.isatty(),
        decoder=decoder_from_args(args, rec.tokenizer, rec),
        precision=rec.precision,
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


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (recursively, by audio extension) and globs -> (audio paths, unmatched inputs)."""
    import glob

    from asr.audio import AUDIO_EXTENSIONS

    paths, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if found:
            paths += found
        else:
            missing.append(item)
    return list(dict.fromkeys(paths)), missing


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.formats import output_paths, render
    from asr.transcribe import load_model

    fmt = "jsonl" if args.jsonl else args.format
    paths, missing = expand_inputs(args.inputs)
    for item in missing:
        print(f"asr transcribe: {item}: no such file, folder or matching audio", file=sys.stderr)
    rec = load_model(args.model, device=args.device, precision=args.precision)
    decoder = decoder_from_args(args, rec.tokenizer, rec)
    # subtitles and word tables need word times; JSON gets them unless asked not to; txt never does
    timestamps = fmt in ("srt", "vtt", "tsv") or (
        fmt in ("json", "jsonl") and not args.no_timestamps
    )
    results = {}
    failed = len(missing)
    targets = output_paths(paths, args.output_dir, fmt) if args.output_dir else {}
    for path, result in rec.transcribe_files(
        paths,
        decoder,
        timestamps,
        args.batch_size,
        progress=sys.stderr.isatty(),
        max_duration=args.max_duration,
    ):
        if isinstance(result, Exception):
            print(f"asr transcribe: error: {result}", file=sys.stderr)
            failed += 1
            continue
        if args.output_dir:
            out = targets[path]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render(result, fmt), encoding="utf-8")
        results[path] = result
    if args.plot:
        if len(paths) != 1:
            raise ValueError("--plot draws one file: give exactly one input")
        from asr.audio import load_audio
        from asr.transcribe import LONG_SECONDS

        if paths[0] in results:
            wave = load_audio(paths[0], rec.sample_rate)[: int(LONG_SECONDS * rec.sample_rate)]
            log_probs, out_lens = rec.log_probs(wave[None], torch.tensor([len(wave)]))
            words = [w for w in results[paths[0]].words if w.end <= LONG_SECONDS]
            _plot(rec, wave, log_probs[0, : out_lens[0]].cpu(), words, args.plot, str(paths[0]))
    if not args.output_dir:
        for path in paths:  # in the order given
            if path in results:
                text = (
                    f"{path}\t{results[path].text}\n"
                    if fmt == "txt"
                    else render(results[path], fmt)
                )
                sys.stdout.write(text)
    else:
        print(f"wrote {len(results)} files to {args.output_dir}")
    return 1 if failed else 0


def _plot(rec, wave, log_probs, words, path: Path, title: str) -> None:
    from asr.plot import plot_alignment

    feats, feat_lens = rec.features(
        wave[None].to(rec.device), torch.tensor([len(wave)], device=rec.device)
    )
    hop = rec.features.hop_length / rec.sample_rate
    plot_alignment(
        feats[0, : feat_lens[0]],
        hop,
        log_probs,
        rec.frame_seconds,
        words,
        rec.tokenizer,
        path,
        title,
    )
    print(f"wrote {path}", file=sys.stderr)


def cmd_align(args: argparse.Namespace) -> int:
    from asr.align import align
    from asr.audio import load_audio
    from asr.formats import render_alignment
    from asr.text import normalize_text
    from asr.transcribe import load_model
    from asr.vad import frame_energies_db

    rec = load_model(args.model, precision=args.precision)
    text_path = Path(args.text)
    text = text_path.read_text(encoding="utf-8") if text_path.suffix == ".txt" else args.text
    if not normalize_text(text):
        where = f"{text_path}: " if text_path.suffix == ".txt" else ""
        raise ValueError(f"{where}the transcript to align is empty (no words after normalising)")
    wave = load_audio(args.audio, rec.sample_rate)
    log_probs, out_lens = rec.log_probs(wave[None], torch.tensor([len(wave)]))
    try:
        words = align(
            log_probs[0, : out_lens[0]],
            normalize_text(text),
            rec.tokenizer,
            rec.frame_seconds,
            energy_db=frame_energies_db([wave], rec.sample_rate),
            duration=len(wave) / rec.sample_rate,
        )
    except ValueError as exc:
        raise ValueError(f"{args.audio}: cannot align the transcript: {exc}") from None
    duration = round(len(wave) / rec.sample_rate, 3)
    if args.plot:
        _plot(
            rec,
            wave,
            log_probs[0, : out_lens[0]],
            words,
            args.plot,
            f"{args.audio} (forced alignment)",
        )
    out = render_alignment(words, duration, args.format, str(args.audio))
    if args.out:
        args.out.write_text(out, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from asr.checkpoint import (
        atomic_save,
        average_model_files,
        moving_average_record,
        read_model_file,
        strip_checkpoint,
        without_lhuc,
    )
    from asr.transcribe import DEFAULT_MODEL, build_recognizer

    model_path = args.model or DEFAULT_MODEL
    if args.ema and args.average:
        raise ValueError("--ema and --average: export the average first, then average that file")
    if args.average:
        record = average_model_files([model_path, *args.average])
    else:
        record = read_model_file(model_path)
    if args.ema:
        record = moving_average_record(record, model_path)
    record = strip_checkpoint(without_lhuc(record), half=args.half)  # a plain model file
    rec = build_recognizer(record, str(model_path))  # refuse to write a file that would not load
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "torchscript":
        from asr.export import export_torchscript

        export_torchscript(rec, args.out)
    elif args.format == "onnx":
        from asr.export import export_onnx

        export_onnx(rec, args.out)
    else:
        atomic_save(record, args.out)
    line = f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)"
    if args.format == "onnx":
        from asr.export import onnx_data_path

        data = onnx_data_path(args.out)
        if data.exists():  # a model past ONNX's 2 GB: its weights beside it, needed to load it
            line += f" and its weights, {data} ({data.stat().st_size / 1e6:.1f} MB): keep both"
    print(line)
    return 0


COMMANDS = {
    "prepare": cmd_prepare,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "transcribe": cmd_transcribe,
    "export": cmd_export,
    "lm": cmd_lm,
    "align": cmd_align,
    "serve": cmd_serve,
    "enrol": cmd_enrol,
}


_NUMBER_LISTS = ("--lm-weights", "--word-scores")  # options whose value may start with "-"
_NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"


def _join_number_lists(argv: list[str]) -> list[str]:
    """``--word-scores -2,-1,0`` -> ``--word-scores=-2,-1,0``: argparse would take the value,
    which starts with a minus sign, for an option of its own."""
    out, i = [], 0
    while i < len(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if argv[i] in _NUMBER_LISTS and re.fullmatch(rf"{_NUMBER}(,\s*{_NUMBER})*", value):
            out.append(f"{argv[i]}={value}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_number_lists(sys.argv[1:] if argv is None else list(argv))
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
        print(f"asr {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 2


def _message(exc: Exception) -> str:
    """The error's own words; a loader worker's error arrives wrapped in its traceback text."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


if __name__ == "__main__":
    sys.exit(main())
