import torch

from asr.vad import FRAME_SECONDS, VadConfig, frame_energies_db, speech_segments


def _signal(spans: list[tuple[float, float]], total: float, sr: int = 16_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(int(total * sr), generator=g) * 1e-3  # a quiet room
    for a, b in spans:
        t = torch.arange(int((b - a) * sr)) / sr
        wave[int(a * sr) : int(a * sr) + len(t)] += 0.3 * torch.sin(2 * torch.pi * 300 * t)
    return wave


def test_energies_in_pieces_equal_energies_whole():
    wave = _signal([(0.5, 1.0)], 2.0)
    whole = frame_energies_db([wave], 16_000)
    pieces = frame_energies_db([wave[:7_777], wave[7_777:20_001], wave[20_001:]], 16_000)
    assert torch.allclose(whole, pieces, atol=1e-4) and len(whole) == 200


def test_segments_cover_speech_and_cut_in_pauses():
    spans = [(1.0, 2.0), (2.5, 4.0), (10.0, 11.0)]
    energies = frame_energies_db([_signal(spans, 12.0)], 16_000)
    segments = speech_segments(energies, VadConfig(min_gap=0.3, pad=0.2))
    assert len(segments) == 3
    for (a, b), (sa, sb) in zip(spans, segments):
        assert sa <= a and sb >= b  # every piece of speech is inside its segment
        assert a - sa <= 0.2 + FRAME_SECONDS and sb - b <= 0.2 + FRAME_SECONDS
    assert all(s1[1] <= s2[0] for s1, s2 in zip(segments, segments[1:]))  # no overlap


def test_long_speech_is_cut_at_its_quietest_frame():
    wave = _signal([(0.0, 14.0), (14.1, 30.0)], 30.0)  # a 0.1 s dip inside 30 s of "speech"
    segments = speech_segments(
        frame_energies_db([wave], 16_000), VadConfig(max_seconds=20.0, min_gap=0.3)
    )
    assert len(segments) == 2
    assert abs(segments[0][1] - 14.05) < 0.1  # the cut falls in the dip
    assert all(b - a <= 20.0 for a, b in segments)


def test_silence_gives_nothing_and_empty_input():
    assert speech_segments(torch.zeros(0)) == []
