"""Transcribing files of any length: long audio is cut at pauses, read piece by piece, and joined."""

import numpy as np
import soundfile as sf
import torch

from asr.audio import load_audio, read_windows
from asr.transcribe import LONG_SECONDS, load_model
from asr.vad import frame_energies_db, speech_segments
from tests.conftest import DATA


def _long_file(path, example_records, minutes: float, gap: float = 0.6):
    """Clips joined with quiet gaps (a room's noise floor) into one FLAC file of ``minutes``."""
    clips = [load_audio(DATA / r["audio"]).numpy() for r in example_records]
    rng = np.random.default_rng(0)
    parts, bounds, t, i = [], [], 0.0, 0
    while t < minutes * 60:
        clip = clips[i % len(clips)]
        quiet = (rng.standard_normal(int(gap * 16_000)) * 1e-3).astype(np.float32)
        parts += [clip, quiet]
        bounds.append((t, t + len(clip) / 16_000))
        t += (len(clip) + len(quiet)) / 16_000
        i += 1
    sf.write(path, np.concatenate(parts), 16_000, subtype="PCM_16")
    return bounds


def test_ten_minutes_cut_at_pauses_equal_their_pieces(tmp_path, example_records):
    model = load_model()
    path = tmp_path / "long.flac"
    bounds = _long_file(path, example_records, minutes=10.0)
    # the file is read in windows for its energies: the cuts fall in the pauses, one piece per clip,
    # each holding its clip whole, so no word can be split or heard twice
    energies = frame_energies_db((w for _, w in read_windows(path, 16_000, 60 * 16_000, 0)), 16_000)
    segments = speech_segments(energies)
    assert len(segments) == len(bounds)
    for (a, b), (clip_start, clip_end) in zip(segments, bounds):
        assert a <= clip_start + 0.15 and b >= clip_end - 0.15
    whole = model.transcribe(path, word_timestamps=False)
    assert whole.duration > 600 > LONG_SECONDS
    assert (
        len(whole.text.split()) >= len(bounds) * 0.9
    )  # a word (right or wrong) for nearly every clip


def test_waveform_input_and_sample_rates(example_records):
    model = load_model()
    clip = load_audio(DATA / example_records[0]["audio"], 8_000)
    from_8k = model.transcribe(clip.numpy(), sample_rate=8_000)
    from_file = model.transcribe(DATA / example_records[0]["audio"])
    assert from_8k.text == from_file.text
    stereo = torch.stack([clip, clip], dim=1)  # (N, 2)
    assert model.transcribe(stereo, sample_rate=8_000).text == from_8k.text
