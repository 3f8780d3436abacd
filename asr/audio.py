"""Audio files -> mono float32 waveforms at the model's sample rate.

soundfile (libsndfile) reads WAV, FLAC, Ogg Vorbis/Opus and MP3 (libsndfile >= 1.1); librosa
(audioread) is the fallback for what soundfile cannot read. Resampling uses torchaudio's
band-limited sinc interpolation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.config import SAMPLE_RATE

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif", ".m4a")


class AudioError(ValueError):
    """An audio file that is missing, unreadable, empty or holds non-finite samples."""


# sample rates a real recording can have; a header outside them is forged or corrupt (a rate of
# 2**31 Hz would make resampling allocate tens of gigabytes before anything else fails)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
# values in torchaudio's resampling kernel beyond which soxr resamples instead: rates with a small
# common divisor need a kernel of (new / gcd) x (orig / gcd) values, 508 MB for 7919 Hz -> 16 kHz
MAX_RESAMPLE_KERNEL = 1 << 22  # 16 MB


def resample_kernel_size(orig: int, new: int) -> int:
    """How many values torchaudio's windowed-sinc kernel for ``orig`` -> ``new`` Hz holds."""
    gcd = math.gcd(orig, new)
    o, n = orig // gcd, new // gcd
    width = math.ceil(6 * o / (0.99 * min(o, n)))  # its default lowpass_filter_width and rolloff
    return n * (o + 2 * width)


def resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``wave (N,)`` from ``orig`` to ``new`` Hz: torchaudio's windowed sinc (what the model was
    trained on), or soxr's for rates whose sinc kernel would pass :data:`MAX_RESAMPLE_KERNEL`."""
    if orig == new:
        return wave
    if resample_kernel_size(orig, new) <= MAX_RESAMPLE_KERNEL:
        return AF.resample(wave, orig, new)
    import soxr  # librosa's resampler

    out = soxr.resample(wave.numpy().astype(np.float32), orig, new, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


MAX_CHANNELS = 64
_PCM_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}


_UNCOMPRESSED = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "NIST", "RAW", "IRCAM", "VOC"}


class AudioWarning(UserWarning):
    """A file that is read, but not as its header describes it (e.g. truncated)."""


def check_header(path: Path, info) -> None:
    """Refuse a header that no real recording has, before any sample is read or allocated.

    Raises:
        AudioError: a sample rate outside [1 kHz, 768 kHz], no channels or more than 64, or
            (uncompressed PCM) more samples than the file's size can hold.
    """
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{path}: header claims a sample rate of {info.samplerate} Hz (a real recording has "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz): corrupt or forged"
        )
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: header claims {info.channels} channels: corrupt or forged")
    width = _PCM_BYTES.get(info.subtype) if info.format in _UNCOMPRESSED else None
    if width and info.frames * info.channels * width > path.stat().st_size:
        raise AudioError(
            f"{path}: header claims {info.frames} frames, more than its {path.stat().st_size} "
            f"bytes can hold: corrupt or forged"
        )


def _wav_data_shortfall(path: Path) -> int:
    """Bytes a RIFF/WAVE file's ``data`` chunk declares beyond the end of the file (0 if none)."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return 0
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    if size == 0xFFFFFFFF:  # streamed WAV: size unknown by design
                        return 0
                    return max(0, f.tell() + size - path.stat().st_size)
                f.seek(size + (size & 1), 1)
    except OSError:
        return 0


def _wav_rate(path: Path) -> int | None:
    """The sample rate a RIFF/WAVE file's ``fmt`` chunk declares (None: not such a file)."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt ":
                    fmt = f.read(8)
                    return int.from_bytes(fmt[4:8], "little") if len(fmt) == 8 else None
                f.seek(size + (size & 1), 1)
    except OSError:
        return None


def _header(path: Path) -> sf._SoundFileInfo | None:
    """soundfile's header of ``path``, checked (``check_header``); None where soundfile cannot
    read the format (librosa may)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        # a WAV header soundfile refuses (0 Hz) is checked here too: librosa would decode the
        # whole file (and import itself) before its rate is looked at
        rate = _wav_rate(path)
        if rate is not None and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioError(
                f"{path}: header claims a sample rate of {rate} Hz (a real recording has "
                f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz): corrupt or forged"
            ) from None
        return None
    check_header(path, info)
    return info


def _read(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 (frames, channels) with its native sample rate."""
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(f"{path}: offset must be >= 0 and duration > 0 (got {offset}, {duration})")
    info = _header(path)
    if info is not None:
        shortfall = _wav_data_shortfall(path)
        if shortfall:
            warnings.warn(
                f"{path}: truncated: its header declares {shortfall} bytes of audio more than the "
                f"file holds; reading what is there",
                AudioWarning,
                stacklevel=3,
            )
    try:
        if info is None:
            raise RuntimeError("soundfile cannot read it")
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
                f"{path}: cannot read audio (soundfile: {sf_error}; librosa: {str(exc) or type(exc).__name__})"
            ) from None
        if not MIN_SAMPLE_RATE <= int(rate) <= MAX_SAMPLE_RATE:
            raise AudioError(
                f"{path}: header claims a sample rate of {int(rate)} Hz (a real recording has "
                f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz): corrupt or forged"
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
        wave = resample(wave, rate, sample_rate)
    return wave


def audio_duration(path: str | Path) -> float:
    """The file's duration in seconds, read from its header where possible.

    Raises:
        AudioError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    info = _header(path)
    if info is not None:
        if info.frames > 0:
            return info.frames / info.samplerate
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
        check_header(path, f)
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
                wave = resample(wave, native, sample_rate)
            yield lo, wave
