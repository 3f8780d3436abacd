"""Cutting long audio into utterance-sized pieces at pauses (an energy voice-activity detector).

Long files are transcribed piece by piece. Cutting where nobody speaks means no word is split or
heard twice at a boundary, and each piece looks like the utterances the model was trained on (a
recurrent model trained on sentences drifts over minutes of audio, and per-utterance normalisation
wants speech in the window). A stretch of speech longer than ``max_seconds`` is cut at its quietest
frame near the limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

FRAME_SECONDS = 0.01  # energy frames of 10 ms
FLOOR_DB = -100.0  # digital silence


@dataclass
class VadConfig:
    min_gap: float = 0.3  # seconds of quiet that separate two pieces
    pad: float = 0.25  # seconds of context kept on each side of speech
    max_seconds: float = 20.0  # longest piece
    min_speech: float = 0.05  # shorter bursts are ignored
    margin_db: float = 10.0  # speech is this far above the noise floor ...
    range_db: float = 40.0  # ... and at most this far below the loud end


def frame_energies_db(windows: Iterable[torch.Tensor], sample_rate: int) -> torch.Tensor:
    """Per-10 ms RMS energy in dB of consecutive waveform pieces (as :func:`read_windows` gives)."""
    hop = int(sample_rate * FRAME_SECONDS)
    out, rest = [], torch.zeros(0)
    for wave in windows:
        wave = torch.cat([rest, wave])
        n = len(wave) // hop
        frames = wave[: n * hop].reshape(n, hop)  # (n, hop)
        out.append(10 * torch.log10(frames.pow(2).mean(1).clamp(min=10 ** (FLOOR_DB / 10))))
        rest = wave[n * hop :]
    if len(rest):
        out.append(10 * torch.log10(rest.pow(2).mean().clamp(min=10 ** (FLOOR_DB / 10)))[None])
    return torch.cat(out) if out else torch.zeros(0)


def speech_frames(
    energy_db: torch.Tensor, margin_db: float = 10.0, range_db: float = 40.0
) -> torch.Tensor:
    """Which 10 ms frames hold sound: ``(N,)`` booleans from per-frame energies in dB.

    A frame is sound when it is ``margin_db`` above the noise floor (the 10th percentile) and at
    most ``range_db`` below the loud end (the 99th). Where there is no quiet stretch to tell apart
    (the loud end is within twice the margin of the floor), every frame above digital silence is.
    """
    if len(energy_db) == 0:
        return torch.zeros(0, dtype=torch.bool)
    floor = float(torch.quantile(energy_db, 0.1))
    loud = float(torch.quantile(energy_db, 0.99))
    threshold = max(floor + margin_db, loud - range_db)
    if loud - floor < 2 * margin_db:
        threshold = FLOOR_DB + 1.0
    return energy_db > threshold


def speech_segments(
    energy_db: torch.Tensor, cfg: VadConfig | None = None
) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of the pieces to transcribe, in order, covering all speech.

    Args:
        energy_db: per-10 ms energies of the whole file.
        cfg: thresholds and lengths.
    """
    cfg = cfg or VadConfig()
    n = len(energy_db)
    if n == 0:
        return []
    speech = speech_frames(energy_db, cfg.margin_db, cfg.range_db).tolist()
    runs: list[list[int]] = []  # [first, last + 1] frames of speech, gaps under min_gap merged
    gap = int(cfg.min_gap / FRAME_SECONDS)
    for t, is_speech in enumerate(speech):
        if not is_speech:
            continue
        if runs and t - runs[-1][1] <= gap:
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1])
    runs = [r for r in runs if (r[1] - r[0]) * FRAME_SECONDS >= cfg.min_speech]
    pad = int(cfg.pad / FRAME_SECONDS)
    pieces: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(runs):
        # never into the neighbour's pad
        lo = max(0, a - pad, (runs[i - 1][1] + a) // 2 if i else 0)
        hi = min(n, b + pad, (b + runs[i + 1][0]) // 2 if i + 1 < len(runs) else n)
        longest = int(cfg.max_seconds / FRAME_SECONDS)
        while (
            hi - lo > longest
        ):  # cut at the quietest frame in the last third of the allowed length
            window = energy_db[lo + 2 * longest // 3 : lo + longest]
            cut = lo + 2 * longest // 3 + int(torch.argmin(window))
            pieces.append((lo, cut))
            lo = cut
        pieces.append((lo, hi))
    return [(round(a * FRAME_SECONDS, 3), round(b * FRAME_SECONDS, 3)) for a, b in pieces]
