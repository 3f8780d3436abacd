"""How close word timestamps come to the truth, on clips joined with pauses of known length.

    python benchmarks/timestamps.py --manifest data/default/fsdd/train.jsonl --files 5

Each test file joins ``--clips`` one-word clips, chosen at random, with ``--gap`` seconds of
background noise (``--noise-db`` dBFS) before each; a word's true start and end are where its clip's
sound starts and ends (10 ms frames within 35 dB of the clip's loudest, measured on the clean clip:
corpus clips are trimmed only roughly; with ``--audible``, also louder than the noise mixed in,
since a quiet clip's fading end or first frame can lie under it, where no one can place it). Files
longer than 30 s are cut at pauses by ``asr transcribe`` (:mod:`asr.vad`), so they go through the same
path a user's long recording does.

Two ways to get word times are measured, each with word edges at pauses snapped onto the sound
(:func:`asr.align.snap_to_sound`, the default) and without (the CTC alignment alone):
- the hypothesis: ``Recognizer.transcribe`` (greedy, words aligned by ``forced_align``), counting only
  words it recognised (a hypothesis word is matched to the true word it overlaps most);
- forced alignment of the reference transcript (``asr align``) over the whole file.

Prints, for each, the words measured, the mean and 90th-percentile absolute error of the start and
end times, the mean signed errors (negative: too early), and the share of words whose start and end
both fall within 100 ms of the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from asr.align import align
from asr.audio import load_audio
from asr.data import normalized_utterances
from asr.transcribe import load_model
from asr.vad import FRAME_SECONDS, frame_energies_db

TOLERANCE_S = 0.1


def speech_span(
    wave: np.ndarray, sr: int, below_peak_db: float = 35.0, above_db: float | None = None
) -> tuple[float, float]:
    """Where speech starts and ends in a clip, in seconds: the first and last 10 ms frame whose
    energy is within ``below_peak_db`` of the clip's loudest (and above ``above_db`` dBFS, if
    given). Clips in corpora are trimmed only roughly (some FSDD clips carry 0.4 s of silence after
    the word), so the clip's own bounds are not the word's."""
    energy = frame_energies_db([torch.from_numpy(wave)], sr)
    threshold = float(energy.max()) - below_peak_db
    if above_db is not None:
        threshold = max(threshold, above_db)
    active = torch.nonzero(energy > threshold).flatten()
    if len(active) == 0:  # the whole clip lies under the noise: fall back to the peak rule
        active = torch.nonzero(energy > energy.max() - below_peak_db).flatten()
    return float(active[0]) * FRAME_SECONDS, min(
        len(wave) / sr, float(active[-1] + 1) * FRAME_SECONDS
    )


def joined_file(
    waves: list[np.ndarray],
    texts: list[str],
    gap: tuple[float, float],
    noise_db: float,
    rng,
    sr: int,
    audible: bool = False,
) -> tuple[torch.Tensor, list[tuple[str, float, float]]]:
    """Clips joined with noisy pauses, and each word's true ``(text, start, end)`` in seconds
    (``audible``: only the part of each clip louder than the noise)."""
    pieces, truth, t = [], [], 0.0
    for wave, text in zip(waves, texts):
        pause = np.zeros(int(rng.uniform(*gap) * sr), dtype=np.float32)
        pieces += [pause, wave]
        t += len(pause) / sr
        start, end = speech_span(wave, sr, above_db=noise_db if audible else None)
        truth.append((text, t + start, t + end))
        t += len(wave) / sr
    pieces.append(np.zeros(int(gap[1] * sr), dtype=np.float32))
    joined = np.concatenate(pieces)
    joined += (10 ** (noise_db / 20) * rng.standard_normal(len(joined))).astype(np.float32)
    return torch.from_numpy(joined), truth


def summary(name: str, errors: list[tuple[float, float]]) -> str:
    if not errors:
        return f"| {name:<34} | {0:>5} | {'-':>13} | {'-':>13} | {'-':>13} | {'-':>8} |"
    e = np.abs(np.array(errors)) * 1000  # (N, 2) ms
    signed = np.array(errors).mean(0) * 1000
    within = 100 * np.mean((e <= TOLERANCE_S * 1000).all(1))
    return (
        f"| {name:<34} | {len(e):5d} | {e[:, 0].mean():5.0f} / {np.percentile(e[:, 0], 90):5.0f} | "
        f"{e[:, 1].mean():5.0f} / {np.percentile(e[:, 1], 90):5.0f} | "
        f"{signed[0]:+5.0f} / {signed[1]:+5.0f} | {within:7.1f}% |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--manifest", type=Path, required=True, help="one-word, trimmed clips")
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--clips", type=int, default=40, help="clips per file")
    parser.add_argument("--gap", type=float, nargs=2, default=(0.3, 1.0), metavar=("MIN", "MAX"))
    parser.add_argument("--noise-db", type=float, default=-40.0, help="background level, dBFS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--audible",
        action="store_true",
        help="the truth leaves out each clip's frames under the noise (the same files otherwise)",
    )
    args = parser.parse_args()

    rec = load_model(args.model)
    sr = rec.sample_rate
    utts = normalized_utterances(str(args.manifest))
    rng = np.random.default_rng(args.seed)
    hyp_err, ref_err, hyp_raw_err, ref_raw_err, recognised, total = [], [], [], [], 0, 0
    for _ in range(args.files):
        pick = rng.choice(len(utts), min(args.clips, len(utts)), replace=False)
        waves = [load_audio(utts[i].audio, sr).numpy() for i in pick]
        wave, truth = joined_file(
            waves,
            [utts[i].text for i in pick],
            tuple(args.gap),
            args.noise_db,
            rng,
            sr,
            args.audible,
        )
        total += len(truth)
        log_probs, out_lens = rec.log_probs(wave[None], torch.tensor([len(wave)]))
        ref_args = (log_probs[0, : out_lens[0]].detach(), " ".join(t[0] for t in truth))
        words = align(
            *ref_args, rec.tokenizer, rec.frame_seconds, energy_db=frame_energies_db([wave], sr)
        )
        ref_err += [(w.start - s, w.end - e) for w, (_, s, e) in zip(words, truth)]
        ref_raw_err += [
            (w.start - s, w.end - e)
            for w, (_, s, e) in zip(align(*ref_args, rec.tokenizer, rec.frame_seconds), truth)
        ]
        for snap, errors in ((True, hyp_err), (False, hyp_raw_err)):
            rec.snap_to_sound = snap
            for w in rec.transcribe(wave, sample_rate=sr).words:
                text, s, e = max(truth, key=lambda t: min(t[2], w.end) - max(t[1], w.start))
                if text == w.word and min(e, w.end) > max(s, w.start):
                    recognised += snap
                    errors.append((w.start - s, w.end - e))
    print(
        f"model {args.model or 'bundled'}; {args.files} files of {args.clips} clips from "
        f"{args.manifest}, pauses {args.gap[0]}-{args.gap[1]} s, noise {args.noise_db} dBFS"
        f"{' (truth: audible frames only)' if args.audible else ''}; "
        f"{recognised}/{total} words recognised"
    )
    print()
    print(
        f"| {'word times from':<34} | {'words':>5} | {'start |err| ms':>13} | {'end |err| ms':>13} "
        f"| {'mean signed':>13} | {'<=100 ms':>8} |"
    )
    print(f"|{'-' * 36}|{'-' * 7}|{'-' * 15}|{'-' * 15}|{'-' * 15}|{'-' * 10}|")
    print(summary("hypothesis, CTC alignment alone", hyp_raw_err))
    print(summary("hypothesis, edges snapped to sound", hyp_err))
    print(summary("reference, CTC alignment alone", ref_raw_err))
    print(summary("reference, edges snapped to sound", ref_err))
    print("\n(|err|: mean / 90th percentile; signed: start / end, negative is early)")


if __name__ == "__main__":
    main()
