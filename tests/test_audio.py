import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, audio_duration, load_audio
from tests.conftest import tone, write_audio


@pytest.mark.parametrize(
    "suffix, subtype",
    [
        (".wav", "PCM_16"),
        (".wav", "PCM_24"),
        (".wav", "FLOAT"),
        (".flac", "PCM_16"),
        (".ogg", "VORBIS"),
    ],
)
def test_formats_resample_to_16k(tmp_path, suffix, subtype):
    x = tone(1.0, 8000)
    path = write_audio(tmp_path / f"a{suffix}", x, 8000, subtype)
    wave = load_audio(path, 16_000)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(len(wave) - 16_000) <= 1
    assert abs(audio_duration(path) - 1.0) < 1e-2
    # the tone survives: its energy sits at 440 Hz after resampling
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * 16_000 / len(wave) - 440) < 3


def test_mp3(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    path = write_audio(tmp_path / "a.mp3", tone(1.0, 16_000), 16_000, "MPEG_LAYER_III")
    assert abs(len(load_audio(path)) - 16_000) < 2000  # MP3 frames pad a little


def test_stereo_is_mixed_to_mono(tmp_path):
    left = tone(0.5, 16_000)
    stereo = np.stack([left, -left], axis=1)  # cancels out when averaged
    wave = load_audio(write_audio(tmp_path / "s.wav", stereo, 16_000, "FLOAT"))
    assert wave.shape == (8000,)
    assert float(wave.abs().max()) < 1e-6


def test_int_and_float_pcm_agree(tmp_path):
    x = tone(0.5, 16_000)
    a = load_audio(write_audio(tmp_path / "i.wav", x, 16_000, "PCM_16"))
    b = load_audio(write_audio(tmp_path / "f.wav", x, 16_000, "FLOAT"))
    assert torch.allclose(a, b, atol=1e-4)


def test_offset_and_duration(tmp_path):
    x = np.arange(16_000, dtype=np.float32) / 16_000
    path = write_audio(tmp_path / "ramp.wav", x, 16_000, "FLOAT")
    part = load_audio(path, offset=0.25, duration=0.5)
    assert len(part) == 8000 and abs(float(part[0]) - 0.25) < 1e-6


def test_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"missing\.wav: audio file not found"):
        load_audio(tmp_path / "missing.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot read audio") as caught:
        load_audio(corrupt)
    assert not str(caught.value).endswith("librosa: )")  # each reader says why, never nothing
    empty = write_audio(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match=r"empty\.wav: audio file holds no samples"):
        load_audio(empty)
    bad = tone(0.1, 16_000)
    bad[10] = np.nan
    nan = write_audio(tmp_path / "nan.wav", bad, 16_000, "FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: audio holds non-finite"):
        load_audio(nan)


def test_an_irregular_rate_is_resampled_without_a_huge_kernel(tmp_path, monkeypatch):
    """7919 Hz -> 16 kHz would need a 508 MB windowed-sinc kernel: soxr resamples it instead,
    keeping the tone where it was; common rates keep torchaudio's kernel (what training used)."""
    import torchaudio.functional as AF

    from asr import audio

    assert audio.resample_kernel_size(7919, 16_000) * 4 > 500e6
    assert audio.resample_kernel_size(44_100, 16_000) <= audio.MAX_RESAMPLE_KERNEL

    def refuse(*args, **kwargs):
        raise AssertionError("torchaudio's kernel was built")

    monkeypatch.setattr(AF, "resample", refuse)
    path = write_audio(tmp_path / "odd.wav", tone(2.0, 7919, freq=440.0), 7919)
    wave = audio.load_audio(path, 16_000).numpy()
    assert abs(len(wave) - 32_000) <= 2
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16_000 / len(wave) - 440.0) < 2.0
