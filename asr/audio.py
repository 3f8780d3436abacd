"""Audio files -> mono float32 waveforms at the model's sample rate.

soundfile (libsndfile) reads WAV, FLAC, Ogg Vorbis/Opus and MP3 (libsndfile >= 1.1); librosa
(audioread) is the fallback for what soundfile cannot read. Resampling uses torchaudio's
band-limited sinc interpolation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif", ".m4a")


class AudioError(ValueError):
    """An audio file that is missing, unreadable, empty or holds non-finite samples."""


def _read(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 (frames, channels) with its native sample rate."""
    try:
        info = sf.info(str(path))
        start = int(round(offset * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        return data, rate
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
        try:
            import librosa

            with warnings.catch_warnings():  # librosa warns that it falls back to audioread
                warnings.simplefilter("ignore")
                data, rate = librosa.load(
                    str(path), sr=None, mono=False, offset=offset, duration=duration
                )
        except Exception as exc:  # librosa/audioread raise many types; all mean "unreadable"
            raise AudioError(
                f"{path}: cannot read audio (soundfile: {sf_error}; librosa: {exc})"
            ) from None
        data = np.atleast_2d(np.asarray(data, dtype=np.float32)).T  # (channels, N) -> (N, channels)
        return data, int(rate)


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Load an audio file as a mono float32 waveform at ``sample_rate``.

    Args:
        path: WAV, FLAC, Ogg, MP3 or anything libsndfile/librosa read; integer or float PCM.
        sample_rate: the rate to resample to, in Hz.
        offset: where to start reading, in seconds.
        duration: how many seconds to read (``None``: to the end).

    Returns:
        waveform ``(N,)`` float32 in [-1, 1]; stereo is mixed down to mono by averaging.

    Raises:
        AudioError: the file is missing, unreadable or corrupt, holds no samples, or holds NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    data, rate = _read(path, offset, duration)
    if data.size == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio holds non-finite samples (NaN or inf)")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # (N, C) -> (N,)
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave


def audio_duration(path: str | Path) -> float:
    """The file's duration in seconds, read from its header where possible.

    Raises:
        AudioError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
        if info.frames > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    data, rate = _read(path, 0.0, None)
    return data.shape[0] / rate


def read_windows(
    path: str | Path, sample_rate: int, chunk: int, pad: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Read a long file in overlapping windows, never all of it at once (where the format seeks).

    Window ``c`` covers samples ``[c*chunk - pad, (c+1)*chunk + pad)`` at ``sample_rate``, clipped to
    the file. Memory stays flat with the file's length.

    Yields:
        ``(start, wave)``: the window's first sample (at ``sample_rate``) and its mono waveform.

    Raises:
        AudioError: the file is missing, unreadable, empty or holds non-finite samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        wave = load_audio(path, sample_rate)  # formats soundfile cannot read: decode it whole
        for start in range(0, max(1, len(wave)), chunk):
            lo = max(0, start - pad)
            yield lo, wave[lo : start + chunk + pad]
        return
    with f:
        native = f.samplerate
        total = int(f.frames * sample_rate / native)
        if f.frames <= 0:
            raise AudioError(f"{path}: audio file holds no samples")
        for start in range(0, total, chunk):
            lo, hi = max(0, start - pad), min(total, start + chunk + pad)
            f.seek(int(lo * native / sample_rate))
            data = f.read(
                int(round((hi - lo) * native / sample_rate)), dtype="float32", always_2d=True
            )
            if not np.isfinite(data).all():
                raise AudioError(f"{path}: audio holds non-finite samples (NaN or inf)")
            wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
            if native != sample_rate:
                wave = AF.resample(wave, native, sample_rate)
            yield lo, wave
