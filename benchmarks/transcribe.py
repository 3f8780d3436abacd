"""Transcription speed (real-time factor) and the memory a 60-minute file needs, per precision.

    python benchmarks/transcribe.py --manifest data/default/speechocean762/test.jsonl \\
        --decoder-config asr/pretrained/decoder.yaml --precisions fp32,auto,int8

Prints a table with one column per precision (fp32 first, the baseline of the speed-ups; ``auto``
is what ``asr transcribe`` picks on this machine; ``autocast`` is auto's dtype the way inference
ran it before the recognizer kept a low-precision copy of its model, autocast around each call,
which casts every weight again each time; ``int8`` is PyTorch's dynamic int8 quantization
of the LSTM and linear layers, measured as an alternative): seconds of audio transcribed per second
of wall time (greedy, then beam search with the LM of --decoder-config), on the manifest's real
held-out audio, file by file as a user's ``asr transcribe`` runs them (audio loading and word
alignment included) and in batches of 16 files; greedy WER on those utterances (so a faster path
is seen to be as exact); then the peak resident memory of a child process transcribing a
60-minute file joined from those utterances, next to the peak of one transcribing a single
utterance (the baseline, measured in the same run), both with the model's default decoding (for
the bundled model, beam search with its LM).
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
from asr.data import normalized_utterances
from asr.decode import GreedyDecoder, build_decoder
from asr.metrics import score
from asr.transcribe import Recognizer, load_model

CHILD = """
import resource, sys, time
sys.path.insert(0, sys.argv[5])
from transcribe import load_for
model = load_for(sys.argv[2] or None, sys.argv[3], sys.argv[4])
t0 = time.perf_counter()
result = model.transcribe(sys.argv[1])
print(time.perf_counter() - t0, len(result.words), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


class AutocastRecognizer(Recognizer):
    """The inference path before :class:`Recognizer` kept a low-precision copy of its model:
    autocast around each call over the float32 model (the same numbers, a weight cast per use)."""

    @torch.no_grad()
    def log_probs(self, waves: torch.Tensor, wav_lens: torch.Tensor):
        self.model.eval()
        feats, feat_lens = self.features(waves.to(self.device), wav_lens.to(self.device))
        with self.precision.autocast(self.device):
            return self.model(feats, feat_lens)


def load_for(model: str | None, device: str, precision: str):
    """The recognizer for one column: ``fp32``/``bf16``/``auto``, ``autocast`` (auto's dtype by
    autocast per call, the earlier path), or ``int8`` (dynamic quantization of the LSTM and
    linear layers, float32 activations)."""
    if precision == "autocast":
        return AutocastRecognizer(**vars(load_model(model, device=device, precision="auto")))
    if precision != "int8":
        return load_model(model, device=device, precision=precision)
    rec = load_model(model, device=device, precision="fp32")
    rec.model = torch.ao.quantization.quantize_dynamic(
        rec.model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
    )
    return rec


def peak_rss(path: Path, model: str, device: str, precision: str) -> tuple[float, float, int]:
    """(seconds, peak MB, words) of a fresh process transcribing ``path``."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(path),
            model,
            device,
            precision,
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[2]) / 1024, int(out[1])


def greedy_wer(model, utts) -> float:
    refs, hyps = [], []
    greedy = GreedyDecoder(model.tokenizer)
    results = dict(model.transcribe_files([u.audio for u in utts], greedy, word_timestamps=False))
    for u in utts:
        refs.append(u.text)
        hyps.append(results[Path(u.audio)].text)
    return 100 * score([u.id for u in utts], refs, hyps).wer


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
    parser.add_argument(
        "--precisions",
        default="fp32,auto",
        help="columns: fp32, auto, bf16, autocast, int8 (fp32 first)",
    )
    args = parser.parse_args()
    names = [p.strip() for p in args.precisions.split(",") if p.strip()]
    models = {name: load_for(args.model or None, args.device, name) for name in names}
    first = models[names[0]]
    utts = normalized_utterances(str(args.manifest))[: args.limit]
    audio_seconds = sum(u.duration for u in utts)
    where = torch.cuda.get_device_name() if first.device.type == "cuda" else "CPU"
    chosen = {
        n: (
            "int8 dynamic quantization"
            if n == "int8"
            else m.precision.reason + (", autocast per call" if n == "autocast" else "")
        )
        for n, m in models.items()
    }
    print(
        f"{len(utts)} utterances, {audio_seconds:.0f} s of audio from {args.manifest}; "
        f"{where}, {torch.get_num_threads()} threads; "
        + "; ".join(f"{n}: {r}" for n, r in chosen.items())
    )
    rows: dict[str, dict[str, float]] = {}
    decoders = [("greedy", GreedyDecoder(first.tokenizer))]
    if args.decoder_config:
        cfg = load_decoder_config(args.decoder_config)
        decoders.append(
            (
                f"beam {cfg.beam_size}" + (" + LM" if cfg.lm else ""),
                build_decoder(first.tokenizer, cfg),
            )
        )
    for pname, model in models.items():
        for name, decoder in decoders:
            model.transcribe(utts[0].audio, decoder=decoder)  # warm-up
            t0 = time.perf_counter()
            for u in utts:
                model.transcribe(u.audio, decoder=decoder)
            rows.setdefault(f"{name}: audio s per s, file by file", {})[pname] = audio_seconds / (
                time.perf_counter() - t0
            )
            # many files at once, as `asr transcribe FILES...` runs them: length-sorted batches
            t0 = time.perf_counter()
            for _ in model.transcribe_files([u.audio for u in utts], decoder=decoder):
                pass
            rows.setdefault(f"{name}: audio s per s, batches of 16 files", {})[pname] = (
                audio_seconds / (time.perf_counter() - t0)
            )
        rows.setdefault("greedy WER on these utterances, %", {})[pname] = greedy_wer(model, utts)

    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "one.wav"
        sf.write(short, load_audio(utts[0].audio).numpy(), first.sample_rate)
        long = Path(tmp) / "long.wav"
        target = int(args.minutes * 60 * first.sample_rate)
        written = 0
        with sf.SoundFile(long, "w", first.sample_rate, 1) as f:
            while written < target:
                for u in utts:
                    wave = np.concatenate(
                        [load_audio(u.audio).numpy(), np.zeros(first.sample_rate // 2, np.float32)]
                    )
                    f.write(wave[: target - written])
                    written += min(len(wave), target - written)
                    if written >= target:
                        break
        for pname in names:
            _, base_mb, _ = peak_rss(short, args.model, args.device, pname)
            seconds, long_mb, words = peak_rss(long, args.model, args.device, pname)
            rows.setdefault("peak RSS, one utterance (baseline), MB", {})[pname] = base_mb
            rows.setdefault(f"peak RSS, {args.minutes:.0f}-minute file, MB", {})[pname] = long_mb
            rows.setdefault(f"{args.minutes:.0f}-minute file, default decoding: audio s per s", {})[
                pname
            ] = args.minutes * 60 / seconds
    print()
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, values in rows.items():
        cells = []
        for n in names:
            v = values[n]
            speed = "audio s per s" in label and n != names[0]
            cells.append(f"{v:.1f}" + (f" ({v / values[names[0]]:.2f}x)" if speed else ""))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(
        f"\n({words} words in the long file; this process peaked at "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
