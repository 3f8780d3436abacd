"""Transcription speed of two model files side by side, in one process, on the same utterances.

    python benchmarks/compare_models.py --baseline OLD.pt --model NEW.pt \\
        --manifest data/default/speechocean762/test.jsonl --decoder-config asr/pretrained/decoder.yaml

Speed varies by +-20% between processes and minutes on a shared VM, so the two models are timed in
turns (baseline, model, baseline, model, ...) and each keeps its fastest pass. Prints seconds of
audio per second of wall time for greedy decoding and for the decoder config's beam search, file
by file (as ``asr transcribe FILE`` runs, word times included) and in batches of 16 files (as
``asr transcribe FILES...`` runs), and the model's speed as a ratio of the baseline's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from asr.config import load_decoder_config
from asr.data import normalized_utterances
from asr.decode import GreedyDecoder, build_decoder
from asr.transcribe import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="model file the ratios are taken against")
    parser.add_argument("--model", default="", help="model file (default: bundled)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--decoder-config", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=40, help="utterances to time")
    parser.add_argument("--passes", type=int, default=2, help="timed passes per model, in turns")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    models = {
        "baseline": load_model(args.baseline, precision=args.precision),
        "model": load_model(args.model or None, precision=args.precision),
    }
    utts = normalized_utterances(str(args.manifest))[: args.limit]
    files = [u.audio for u in utts]
    audio_seconds = sum(u.duration for u in utts)
    tokenizer = models["baseline"].tokenizer
    decoders = {"greedy": GreedyDecoder(tokenizer)}
    if args.decoder_config:
        cfg = load_decoder_config(args.decoder_config)
        decoders[f"beam {cfg.beam_size}" + (" + LM" if cfg.lm else "")] = build_decoder(
            tokenizer, cfg
        )
    print(
        f"{len(files)} utterances, {audio_seconds:.0f} s of audio from {args.manifest}; "
        f"baseline {args.baseline}, model {args.model or 'bundled'}; best of {args.passes} passes"
    )
    best: dict[tuple[str, str], float] = {}
    for rec in models.values():  # warm-up
        rec.transcribe(files[0], decoder=decoders["greedy"])
    for _ in range(args.passes):
        for name, rec in models.items():
            for dname, decoder in decoders.items():
                for how in ("file by file", "batches of 16 files"):
                    t0 = time.perf_counter()
                    if how == "file by file":
                        for f in files:
                            rec.transcribe(f, decoder=decoder)
                    else:
                        for _ in rec.transcribe_files(files, decoder=decoder):
                            pass
                    speed = audio_seconds / (time.perf_counter() - t0)
                    key = (f"{dname}, {how}", name)
                    best[key] = max(best.get(key, 0.0), speed)
    print("\n| decoding, audio s per s | baseline | model | model / baseline |")
    print("|---|---|---|---|")
    for row in dict.fromkeys(r for r, _ in best):
        a, b = best[row, "baseline"], best[row, "model"]
        print(f"| {row} | {a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
