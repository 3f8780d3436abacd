"""Transcription speed (real-time factor) and the memory a 60-minute file needs.

    python benchmarks/transcribe.py --manifest data/default/speechocean762/test.jsonl \\
        --decoder-config exp/lm/decoder.yaml

Prints a table: seconds of audio transcribed per second of wall time (greedy, then beam search with
the LM of --decoder-config), on the manifest's real held-out audio, file by file as a user's
``asr transcribe`` runs them (audio loading and word alignment included); then the peak resident
memory of a child process transcribing a 60-minute file joined from those utterances, next to the
peak of one transcribing a single utterance (the baseline, measured in the same run).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.config import load_decoder_config
from asr.decode import build_decoder
from asr.train import normalized_utterances
from asr.transcribe import load_model

CHILD = """
import resource, sys, time
from asr.transcribe import load_model
model = load_model(sys.argv[2] or None, device=sys.argv[3])
t0 = time.perf_counter()
result = model.transcribe(sys.argv[1])
print(time.perf_counter() - t0, len(result.words), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(path: Path, model: str, device: str) -> tuple[float, float, int]:
    """(seconds, peak MB, words) of a fresh process transcribing ``path``."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), model, device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[2]) / 1024, int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--decoder-config", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=100, help="utterances to time")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the long file")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    model = load_model(args.model or None, device=args.device)
    utts = normalized_utterances(str(args.manifest))[: args.limit]
    audio_seconds = sum(u.duration for u in utts)
    where = torch.cuda.get_device_name() if model.device.type == "cuda" else "CPU"
    print(
        f"{len(utts)} utterances, {audio_seconds:.0f} s of audio from {args.manifest}; "
        f"{where}, {torch.get_num_threads()} threads"
    )
    print()
    print(f"| {'measure':<44} | {'value':>10} |")
    print(f"|{'-' * 46}|{'-' * 12}|")
    decoders = [("greedy", None)]
    if args.decoder_config:
        cfg = load_decoder_config(args.decoder_config)
        decoders.append(
            (
                f"beam {cfg.beam_size}" + (" + LM" if cfg.lm else ""),
                build_decoder(model.tokenizer, cfg),
            )
        )
    for name, decoder in decoders:
        model.transcribe(utts[0].audio, decoder=decoder)  # warm-up
        t0 = time.perf_counter()
        for u in utts:
            model.transcribe(u.audio, decoder=decoder)
        rtf = audio_seconds / (time.perf_counter() - t0)
        print(f"| {f'{name}: audio seconds per second':<44} | {rtf:10.1f} |")
        # many files at once, as `asr transcribe FILES...` runs them: length-sorted batches
        t0 = time.perf_counter()
        for _ in model.transcribe_files([u.audio for u in utts], decoder=decoder):
            pass
        rtf = audio_seconds / (time.perf_counter() - t0)
        print(f"| {f'{name}, batches of 16 files: audio s per s':<44} | {rtf:10.1f} |")

    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "one.wav"
        sf.write(short, load_audio(utts[0].audio).numpy(), model.sample_rate)
        long = Path(tmp) / "long.wav"
        target = int(args.minutes * 60 * model.sample_rate)
        written = 0
        with sf.SoundFile(long, "w", model.sample_rate, 1) as f:
            while written < target:
                for u in utts:
                    wave = np.concatenate(
                        [load_audio(u.audio).numpy(), np.zeros(model.sample_rate // 2, np.float32)]
                    )
                    f.write(wave[: target - written])
                    written += min(len(wave), target - written)
                    if written >= target:
                        break
        _, base_mb, _ = peak_rss(short, args.model, args.device)
        seconds, long_mb, words = peak_rss(long, args.model, args.device)
    print(f"| {'peak RSS, one utterance (baseline), MB':<44} | {base_mb:10.0f} |")
    print(f"| {f'peak RSS, {args.minutes:.0f}-minute file, MB':<44} | {long_mb:10.0f} |")
    print(
        f"| {f'{args.minutes:.0f}-minute file: audio seconds per second':<44} | {args.minutes * 60 / seconds:10.1f} |"
    )
    print(
        f"\n({words} words in the long file; this process peaked at "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
