import librosa
import numpy as np
import torch

from asr.config import FeatureConfig, SpecAugmentConfig
from asr.features import FeatureExtractor, normalize, spec_augment, warp_frequencies
from tests.conftest import tone


def test_logmel_matches_librosa():
    fe = FeatureExtractor(FeatureConfig(normalize=False))
    x = tone(1.0, 16_000, freq=300) + tone(1.0, 16_000, freq=2500, seed=1)
    ours, lens = fe(torch.from_numpy(x)[None], torch.tensor([len(x)]))
    ref = librosa.feature.melspectrogram(
        y=x,
        sr=16_000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        n_mels=80,
        center=True,
        pad_mode="constant",
        power=2.0,
        htk=False,
        norm="slaney",
    )
    ref = np.log(ref + 1e-6).T  # (F, T) -> (T, F)
    assert ours.shape[1:] == ref.shape and int(lens[0]) == ref.shape[0]
    assert np.abs(ours[0].numpy() - ref).max() < 1e-2  # log domain, float32 vs float64


def test_linear_spectrogram_shape():
    fe = FeatureExtractor(FeatureConfig(kind="linear"))
    feats, lens = fe(torch.randn(1, 16_000), torch.tensor([16_000]))
    assert feats.shape == (1, 101, 257) and fe.num_features == 257


def test_batch_equals_one_by_one():
    fe = FeatureExtractor(FeatureConfig())
    a, b = torch.randn(16_000), torch.randn(9_000)
    batch = torch.zeros(2, 16_000)
    batch[0], batch[1, :9_000] = a, b
    feats, lens = fe(batch, torch.tensor([16_000, 9_000]))
    alone, alone_len = fe(b[None], torch.tensor([9_000]))
    assert int(lens[1]) == int(alone_len[0]) == 1 + 9_000 // 160
    assert torch.allclose(feats[1, : lens[1]], alone[0], atol=1e-4)
    assert feats[1, lens[1] :].abs().max() == 0  # padding frames are zero
    # whatever lies past a length is ignored, not only zeros (a GPU run once fed noise there)
    batch[1, 9_000:] = torch.randn(7_000)
    noisy, _ = fe(batch, torch.tensor([16_000, 9_000]))
    assert torch.allclose(noisy[1, : lens[1]], alone[0], atol=1e-4)


def test_warp_moves_formants_below_the_knee_and_keeps_the_band():
    """Vocal tract length perturbation: a tone's peak moves from f to a * f; factor 1 changes
    nothing; the band's ends stay put; an utterance warped in a padded batch equals it alone."""
    sr = 16_000
    fe = FeatureExtractor(FeatureConfig(kind="linear", normalize=False))
    wave = torch.from_numpy(tone(1.0, sr, freq=2000.0))[None]
    hz_per_bin = sr / fe.n_fft
    for factor in (0.9, 1.0, 1.1):
        feats, _ = fe(wave, torch.tensor([sr]), warp=torch.tensor([factor]))
        peak = float(feats[0, 10:-10].mean(0).argmax()) * hz_per_bin
        assert abs(peak - 2000.0 * factor) <= hz_per_bin
    plain, _ = fe(wave, torch.tensor([sr]))
    same, _ = fe(wave, torch.tensor([sr]), warp=torch.tensor([1.0]))
    assert torch.allclose(plain, same, atol=1e-5)
    # on a spectrum equal to its bin index, interpolation reads back the source bin exactly: bin
    # g comes from g / a up to the knee (0.6 of the band, times a when a < 1), then from a
    # straight line that ends on the top bin; the map is continuous and monotonic
    top = 256
    ramp = torch.arange(top + 1, dtype=torch.float32)[None, :, None].expand(3, -1, 2)
    factors = torch.tensor([0.8, 1.0, 1.2])
    warped = warp_frequencies(ramp, factors)[:, :, 0]  # (3, F)
    for row, a in enumerate(factors.tolist()):
        knee = 0.6 * top * min(a, 1.0)
        g = torch.arange(top + 1, dtype=torch.float32)
        below, above = g <= knee, g > knee
        assert torch.allclose(warped[row, below], g[below] / a, atol=1e-3)
        line = knee / a + (top - knee / a) * (g[above] - knee) / (top - knee)
        assert torch.allclose(warped[row, above], line, atol=1e-3)
    assert torch.allclose(warped[:, 0], torch.zeros(3)) and torch.allclose(
        warped[:, -1], torch.full((3,), float(top))
    )
    assert (warped.diff(dim=1) > 0).all() and warped.diff(dim=1).max() < 1.3
    # log-mel, batched with padding: the short utterance's frames equal it warped alone
    fe = FeatureExtractor(FeatureConfig())
    a, b = torch.randn(16_000), torch.randn(9_000)
    batch = torch.zeros(2, 16_000)
    batch[0], batch[1, :9_000] = a, b
    feats, lens = fe(batch, torch.tensor([16_000, 9_000]), warp=torch.tensor([0.95, 1.08]))
    alone, _ = fe(b[None], torch.tensor([9_000]), warp=torch.tensor([1.08]))
    assert torch.allclose(feats[1, : lens[1]], alone[0], atol=1e-4)
    assert not torch.allclose(alone, fe(b[None], torch.tensor([9_000]))[0], atol=1e-2)


def test_normalize_uses_true_frames_only():
    feats = torch.randn(1, 10, 3) * 5 + 2
    feats[:, 6:] = 100.0  # padding garbage
    out = normalize(feats, torch.tensor([6]))
    assert torch.allclose(out[0, :6].mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out[0, :6].std(0, unbiased=False), torch.ones(3), atol=1e-3)
    assert out[0, 6:].abs().max() == 0


def test_spec_augment_masks_within_length():
    feats = torch.ones(3, 100, 40)
    lens = torch.tensor([100, 50, 20])
    cfg = SpecAugmentConfig(freq_masks=2, freq_width=8, time_masks=2, time_width=30, time_ratio=0.2)
    g = torch.Generator().manual_seed(0)
    out = spec_augment(feats, lens, cfg, generator=g)
    zero_frames = (out == 0).all(-1)  # (B, T): frames masked in every bin
    for b, length in enumerate(lens.tolist()):
        masked = torch.nonzero(zero_frames[b]).flatten()
        assert masked.numel() <= 2 * int(0.2 * length)
        assert (masked < length).all()
    zero_bins = (out == 0).all(1)  # (B, F)
    assert (zero_bins.sum(1) <= 16).all()
    again = spec_augment(feats, lens, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
