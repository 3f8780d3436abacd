import torch

from asr.augment import WaveAugment, add_noise, narrowband, speed_perturb
from asr.config import AugmentConfig


def test_speed_perturbation_changes_length_and_pitch():
    sr = 16_000
    t = torch.arange(sr) / sr
    wave = torch.sin(2 * torch.pi * 500 * t)
    fast = speed_perturb(wave, 1.25)
    assert abs(len(fast) - sr / 1.25) <= 1
    peak = torch.fft.rfft(fast).abs().argmax().item() * sr / len(fast)
    assert abs(peak - 625) < 5  # 1.25x faster is 1.25x higher
    assert speed_perturb(wave, 1.0) is wave


def test_noise_at_the_asked_snr():
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(100_000, generator=g) * 0.1
    noisy = add_noise(wave, 20.0, generator=g)
    snr = 10 * torch.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
    assert abs(float(snr) - 20.0) < 0.2


def test_narrowband_keeps_the_length_and_the_low_band_only():
    sr = 16_000
    t = torch.arange(sr) / sr
    low, high = torch.sin(2 * torch.pi * 1_000 * t), torch.sin(2 * torch.pi * 6_000 * t)
    out = narrowband(low + high, sr)
    assert out.shape == low.shape
    spectrum = torch.fft.rfft(out).abs()  # 1 Hz per bin
    assert spectrum[6_000] < 0.01 * spectrum[1_000]
    mid = slice(1_000, -1_000)  # away from the resampler's edge effects
    assert torch.allclose(out[mid], low[mid], atol=0.02)
    assert narrowband(low, 8_000) is low  # already narrow


def test_wave_augment_is_seeded_and_bounded():
    cfg = AugmentConfig(
        speed_factors=[0.9, 1.1],
        noise_prob=0.5,
        crop_end_prob=1.0,
        crop_end_max=0.2,
        narrowband_prob=0.5,
    )
    aug = WaveAugment(cfg)
    wave = torch.randn(16_000)
    torch.manual_seed(3)
    a = [aug(wave, i) for i in range(10)]
    torch.manual_seed(3)
    b = [aug(wave, i) for i in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    shortest = 16_000 * aug.min_length_ratio
    assert all(len(x) >= shortest - 2 for x in a)
    assert len({len(x) for x in a}) > 1
    assert WaveAugment(AugmentConfig()).min_length_ratio == 1.0
