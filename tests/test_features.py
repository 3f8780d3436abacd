import librosa
import numpy as np
import torch

from asr.config import FeatureConfig
from asr.features import FeatureExtractor, normalize
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


def test_normalize_uses_true_frames_only():
    feats = torch.randn(1, 10, 3) * 5 + 2
    feats[:, 6:] = 100.0  # padding garbage
    out = normalize(feats, torch.tensor([6]))
    assert torch.allclose(out[0, :6].mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out[0, :6].std(0, unbiased=False), torch.ones(3), atol=1e-3)
    assert out[0, 6:].abs().max() == 0
