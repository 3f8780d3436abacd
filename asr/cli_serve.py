"""``asr serve``: its arguments and the command that starts the server (:mod:`asr.serve`).

``asr/cli.py`` builds the parser and calls :func:`add_serve` and :func:`cmd_serve`; nothing else
imports this module. The server's own modules load only when the command runs, so the rest of
``asr`` works without the serve extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from asr.cli_args import (
    add_decoder_args,
    add_precision,
    decoder_asked,
    decoder_from_args,
    sigterm_unwinds,
)


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="an HTTP and WebSocket API, and a page to try it in a browser",
        description="Serve transcription over HTTP: POST /v1/transcribe (multipart field 'file' or "
        "the raw file; ?format=json|srt|vtt|txt), GET /v1/health, GET /v1/model, a WebSocket "
        "/v1/stream of 16-bit PCM giving partial and final text, and a page at /. The model is "
        "loaded once. Binds to 127.0.0.1 unless --host says otherwise; there is no "
        "authentication. Needs the serve extra: pip install -e '.[serve]'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    p.add_argument("--device", default="cpu")
    add_precision(p)
    add_decoder_args(p)
    p.add_argument(
        "--enrol-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="allow 'Train on my voice' on the page: recordings of prompts and the personal model "
        "they fine-tune (one at a time, in the background) are kept under DIR. Off by default",
    )
    g = p.add_argument_group("limits")
    g.add_argument("--max-upload-mb", type=float, default=25.0, help="largest body (default 25)")
    g.add_argument(
        "--max-duration",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="longest audio of a file or a stream (default 600)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="per request: upload, wait and decode (default 120); a silent stream is closed",
    )
    g.add_argument("--max-decodes", type=int, default=2, help="decodes at once (default 2)")
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads each decode uses (default: the cores less one, left to the event loop, "
        "/ --max-decodes, at least 1; more threads than cores stall each other)",
    )
    g.add_argument(
        "--max-waiting",
        type=int,
        default=16,
        help="requests waiting for a decode; more get 503 (default 16)",
    )
    g.add_argument("--max-streams", type=int, default=4, help="open streams (default 4)")
    g.add_argument(
        "--max-uploads",
        type=int,
        default=16,
        help="request bodies arriving at once (each goes to disk as it comes); more get 503 "
        "(default 16)",
    )
    g.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="open connections; a request past them gets 503 (default 64). Besides, a connection "
        "is closed when its headers take over 10 s, or it idles 5 s between requests",
    )
    g.add_argument(
        "--pause",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="streams: quiet after speech that makes the text before it final (default 0.5)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from asr.transcribe import load_model

    try:
        from asr.serve import (
            ServeConfig,
            StreamConfig,
            create_app,
            decode_threads,
            is_loopback,
            serve,
            temporary_folder,
        )
    except ImportError as exc:
        raise ValueError(f"{exc}; asr serve needs its extra: pip install -e '.[serve]'") from None
    cfg = ServeConfig(
        max_upload_mb=args.max_upload_mb,
        max_duration=args.max_duration,
        timeout=args.timeout,
        max_decodes=args.max_decodes,
        max_waiting=args.max_waiting,
        max_streams=args.max_streams,
        max_uploads=args.max_uploads,
        max_connections=args.max_connections,
        stream=StreamConfig(pause_seconds=args.pause),
    )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    # torch's thread count is the whole process's: the decode slots share it, so it is set here,
    # not by create_app (which a test or an embedding program calls in its own process)
    torch.set_num_threads(args.threads or decode_threads(cfg.max_decodes))
    rec = load_model(args.model, device=args.device, precision=args.precision)
    # one decoder per decode slot (beam search keeps its state in the decoder); None: the model's own
    make_decoder = (
        (lambda: decoder_from_args(args, rec.tokenizer, rec)) if decoder_asked(args) else None
    )
    # the server's temporary files (uploads, the decoders' lexicons) in a folder of its own,
    # removed on the way out, SIGTERM included
    with sigterm_unwinds(), temporary_folder():
        enrolment = None
        if args.enrol_dir is not None:
            from asr.serve.enrolment import Enrolment

            enrolment = Enrolment(args.enrol_dir, args.model, device=args.device,
                                  precision=args.precision)  # fmt: skip
            print(f"asr serve: enrolments allowed, kept in {args.enrol_dir}", file=sys.stderr)
        name = args.model.name if args.model else "bundled"
        app = create_app(rec, cfg, make_decoder, name, enrolment)
        if not is_loopback(args.host):
            print(
                f"asr serve: listening on {args.host}, reachable from other machines, with no "
                "authentication",
                file=sys.stderr,
            )
        print(f"asr serve: http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
        serve(app, args.host, args.port)
    return 0
