"""Transcribing files of any length: long audio is cut at pauses, read piece by piece, and joined."""

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio, read_windows
from asr.decode import GreedyDecoder
from asr.transcribe import LONG_SECONDS, load_model
from asr.vad import frame_energies_db, speech_segments
from tests.conftest import DATA

NOISE_DB = -60.0  # the room noise the word-time test mixes in, dBFS


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
    # a word (right or wrong) for nearly every clip
    assert len(whole.text.split()) >= len(bounds) * 0.9


def test_long_audio_in_batches_of_pieces_equals_one_by_one(example_records):
    """A long recording's pieces go through the model 8 at a time, padded: the text and word
    times are those of transcribing each piece alone (padding never changes a result)."""
    model = load_model(precision="fp32")
    clips = [load_audio(DATA / r["audio"]).numpy() for r in example_records]
    rng = np.random.default_rng(1)
    parts = []
    for i in range(30):  # 30 clips with 0.6-1.2 s pauses: ~45 s, a piece per clip
        parts += [
            clips[i % len(clips)],
            (rng.standard_normal(int(rng.uniform(0.6, 1.2) * 16_000)) * 1e-3).astype(np.float32),
        ]
    wave = np.concatenate(parts)
    assert len(wave) / 16_000 > LONG_SECONDS
    pieces = speech_segments(frame_energies_db([torch.from_numpy(wave)], 16_000))
    assert len(pieces) > 8 and len(pieces) % 8  # full batches and a last, partial one
    greedy = GreedyDecoder(model.tokenizer)
    one = model.transcribe(wave, sample_rate=16_000, decoder=greedy, batch_size=1)
    batched = model.transcribe(wave, sample_rate=16_000, decoder=greedy, batch_size=8)
    assert one.text and batched.text == one.text
    assert len(batched.words) == len(one.words)
    for a, b in zip(batched.words, one.words):
        assert a.word == b.word
        assert abs(a.start - b.start) < 1e-3 and abs(a.end - b.end) < 1e-3
    with pytest.raises(ValueError, match="batch size must be >= 1, got 0"):
        model.transcribe(wave, sample_rate=16_000, batch_size=0)


def test_waveform_input_and_sample_rates(example_records):
    model = load_model()
    clip = load_audio(DATA / example_records[0]["audio"], 8_000)
    from_8k = model.transcribe(clip.numpy(), sample_rate=8_000)
    from_file = model.transcribe(DATA / example_records[0]["audio"])
    assert from_8k.text == from_file.text
    stereo = torch.stack([clip, clip], dim=1)  # (N, 2)
    assert model.transcribe(stereo, sample_rate=8_000).text == from_8k.text


def test_word_times_on_joined_clips_fall_within_100_ms(example_records):
    """Ten real clips joined with 0.3-0.8 s pauses of room noise into one 10 s recording: all but
    one digit the bundled model recognises start and end within 100 ms of where its clip's sound
    is, and forced alignment of the transcript (``asr align``) places most of the 10 words so.

    A clip's sound is its 10 ms frames within 35 dB of its loudest (as in
    ``benchmarks/timestamps.py``) and louder than the room noise mixed in (-60 dBFS): a quiet
    clip's first frame, 34 dB under its peak but 6 dB under that noise, is not a sound anyone can
    place (yweweler's "three" would start 100 ms before its "th")."""
    from asr.align import align

    model = load_model()
    sr, rng = model.sample_rate, np.random.default_rng(0)
    parts, truth, t = [], [], 0.0
    for r in example_records:
        clip = load_audio(DATA / r["audio"], sr).numpy()
        pause = np.zeros(int(rng.uniform(0.3, 0.8) * sr), dtype=np.float32)
        energy = frame_energies_db([torch.from_numpy(clip)], sr)
        active = torch.nonzero(energy > max(energy.max() - 35.0, NOISE_DB)).flatten()
        t += len(pause) / sr
        truth.append((r["text"], t + 0.01 * int(active[0]), t + 0.01 * (int(active[-1]) + 1)))
        parts += [pause, clip]
        t += len(clip) / sr
    wave = np.concatenate([*parts, np.zeros(sr // 2, dtype=np.float32)])
    wave += (10 ** (NOISE_DB / 20) * rng.standard_normal(len(wave))).astype(np.float32)
    assert len(wave) / sr < LONG_SECONDS  # one piece: the model hears all ten words at once

    result = model.transcribe(wave, sample_rate=sr, decoder=GreedyDecoder(model.tokenizer))
    hits = []
    for w in result.words:
        text, start, end = max(truth, key=lambda x: min(x[2], w.end) - max(x[1], w.start))
        if text == w.word:
            hits.append((abs(w.start - start), abs(w.end - end)))
    assert len(hits) >= 5, result.text  # the model is weak: half the digits, not all
    # all but one (the second generation ran one digit's end 0.3 s on into the pause after it;
    # the thirteenth and fourteenth end theo's "two" 0.31 s before a click that closes its clip)
    assert sum(s <= 0.1 and e <= 0.1 for s, e in hits) >= len(hits) - 1, hits

    wave_t = torch.from_numpy(wave)
    log_probs, out_lens = model.log_probs(wave_t[None], torch.tensor([len(wave_t)]))
    words = align(
        log_probs[0, : out_lens[0]],
        " ".join(x[0] for x in truth),
        model.tokenizer,
        model.frame_seconds,
        energy_db=frame_energies_db([wave_t], sr),
    )
    errors = [(abs(w.start - s), abs(w.end - e)) for w, (_, s, e) in zip(words, truth)]
    # 8 of 10 with this model; the misses are words it does not recognise ("two" heard as "to")
    assert sum(s <= 0.1 and e <= 0.1 for s, e in errors) >= 7, errors
