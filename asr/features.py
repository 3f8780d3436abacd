"""Waveforms -> spectrogram features, batched, with true lengths.

Pure functions do the work; :class:`FeatureExtractor` is a thin ``nn.Module`` that holds the window
and filterbank (inside torchaudio's transforms) as buffers, so features run on the model's device.

Padding never changes a result: the STFT is centred with zero padding, so the frames of a short
utterance in a zero-padded batch see exactly the samples they would see alone, and normalisation uses
only each utterance's true frames.
"""

from __future__ import annotations

import math

import torch
import torchaudio.transforms as T
from torch import nn

from asr.config import FeatureConfig, SpecAugmentConfig

LOG_EPS = 1e-6  # floor inside the log, so silence stays finite


def lengths_to_mask(lens: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool mask, True on real frames."""
    max_len = int(lens.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def frame_lengths(wav_lens: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames a centred STFT makes from ``wav_lens`` samples: ``1 + N // hop``."""
    return 1 + torch.div(wav_lens, hop_length, rounding_mode="floor")


def normalize(feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-bin mean/variance normalisation over the true frames; padding set to 0.

    Args:
        feats: ``(B, T, F)``.
        feat_lens: ``(B,)`` true frame counts.

    Returns:
        ``(B, T, F)`` with zero mean and unit variance on each utterance's real frames.
    """
    mask = lengths_to_mask(feat_lens, feats.shape[1]).unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
    count = feat_lens.clamp(min=1).to(feats.dtype)[:, None, None]  # (B, 1, 1)
    mean = (feats * mask).sum(1, keepdim=True) / count
    var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + 1e-5) * mask


def spec_augment(
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    cfg: SpecAugmentConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment (Park et al., 2019): zero random frequency bands and time spans.

    Time masks fall inside each utterance's true length and cover at most ``cfg.time_ratio`` of it.

    Args:
        feats: ``(B, T, F)`` normalised features (masked values become 0, the mean).
        feat_lens: ``(B,)``.
        cfg: mask counts and widths.
        generator: random source (the global one by default).

    Returns:
        a masked copy of ``feats``.
    """
    B, T_, F = feats.shape
    device = feats.device
    keep = torch.ones(B, T_, F, dtype=torch.bool, device=device)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(device)

    if cfg.freq_masks > 0 and cfg.freq_width > 0:
        width = (rand(B, cfg.freq_masks) * (cfg.freq_width + 1)).long()  # (B, M)
        start = (rand(B, cfg.freq_masks) * (F - width + 1).clamp(min=1)).long()
        bins = torch.arange(F, device=device)[None, None, :]  # (1, 1, F)
        hit = (bins >= start[..., None]) & (bins < (start + width)[..., None])  # (B, M, F)
        keep &= ~hit.any(1)[:, None, :]
    if cfg.time_masks > 0 and cfg.time_width > 0:
        lens = feat_lens.to(device)
        max_w = torch.minimum(
            torch.full_like(lens, cfg.time_width), (lens.float() * cfg.time_ratio).long()
        )  # (B,)
        width = (rand(B, cfg.time_masks) * (max_w[:, None] + 1)).long()  # (B, M)
        start = (rand(B, cfg.time_masks) * (lens[:, None] - width + 1).clamp(min=1)).long()
        frames = torch.arange(T_, device=device)[None, None, :]  # (1, 1, T)
        hit = (frames >= start[..., None]) & (frames < (start + width)[..., None])  # (B, M, T)
        keep &= ~hit.any(1)[:, :, None]
    return feats * keep


def warp_frequencies(
    spec: torch.Tensor, factors: torch.Tensor, boundary: float = 0.6
) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton, 2013) of a linear-frequency spectrogram.

    Each utterance's frequency axis is scaled by its factor ``a`` (its formants move from ``f`` to
    ``a * f``, as a shorter or longer vocal tract would put them) up to a boundary, above which a
    second straight line takes the rest of the band to the Nyquist frequency, so nothing is cut or
    left empty. Frames are warped one at a time: padding never changes a result.

    Args:
        spec: ``(B, F, T)`` power (or magnitude) spectrogram, bin ``F - 1`` at the Nyquist frequency.
        factors: ``(B,)`` warp factors, e.g. drawn from [0.9, 1.1]; 1 leaves an utterance as it is.
        boundary: where the scaled part ends, as a fraction of the band (for ``a`` <= 1).

    Returns:
        ``(B, F, T)``, each output bin read from the input by linear interpolation.
    """
    n_bins = spec.shape[1]
    top = float(n_bins - 1)
    alpha = factors.to(spec.device, torch.float32)[:, None]  # (B, 1)
    out_bins = torch.arange(n_bins, device=spec.device, dtype=torch.float32)[None, :]  # (1, F)
    # the output bin g is read from input bin g / a below the knee, and on a line to the top above
    knee_out = boundary * top * torch.clamp(alpha, max=1.0)  # (B, 1)
    knee_in = knee_out / alpha
    above = knee_in + (top - knee_in) * (out_bins - knee_out) / (top - knee_out)
    src = torch.where(out_bins <= knee_out, out_bins / alpha, above).clamp(0, top)  # (B, F)
    low = src.floor().long().clamp(max=n_bins - 2)
    frac = (src - low)[:, :, None]  # (B, F, 1)
    index = low[:, :, None].expand(-1, -1, spec.shape[2])
    lower = spec.gather(1, index)
    upper = spec.gather(1, index + 1)
    return lower * (1 - frac) + upper * frac  # exact at whole bins, the top one included


def feature_size(cfg: FeatureConfig) -> int:
    """Bins per frame (F) that :class:`FeatureExtractor` gives for ``cfg``, without building it
    (its window and filterbank): what a model file's config is checked against before loading."""
    if cfg.kind == "logmel":
        return cfg.n_mels
    win_length = int(round(cfg.sample_rate * cfg.win_ms / 1000))
    return 2 ** math.ceil(math.log2(win_length)) // 2 + 1


class FeatureExtractor(nn.Module):
    """Batched log-mel or log linear spectrogram with true lengths.

    Args:
        cfg: sample rate, kind, number of mel bands, window and hop in milliseconds.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.win_length = int(round(cfg.sample_rate * cfg.win_ms / 1000))
        self.hop_length = int(round(cfg.sample_rate * cfg.hop_ms / 1000))
        self.n_fft = 2 ** math.ceil(math.log2(self.win_length))
        common = dict(
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            center=True,
            pad_mode="constant",  # zeros: a padded batch and a lone utterance see the same samples
            power=2.0,
        )
        if cfg.kind == "logmel":
            self.transform = T.MelSpectrogram(
                sample_rate=cfg.sample_rate,
                n_mels=cfg.n_mels,
                f_min=0.0,
                f_max=cfg.sample_rate / 2,
                norm="slaney",
                mel_scale="slaney",
                **common,
            )
            self.num_features = cfg.n_mels
        elif cfg.kind == "linear":
            self.transform = T.Spectrogram(**common)
            self.num_features = self.n_fft // 2 + 1
        else:
            raise ValueError(f"features.kind must be 'logmel' or 'linear', got {cfg.kind!r}")

    def output_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        return frame_lengths(wav_lens, self.hop_length)

    @torch.no_grad()
    def forward(
        self, waves: torch.Tensor, wav_lens: torch.Tensor, warp: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute features.

        Args:
            waves: ``(B, N)`` padded waveforms (whatever lies past a length is ignored).
            wav_lens: ``(B,)`` true sample counts.
            warp: ``(B,)`` vocal tract length perturbation factors (training only, see
                :func:`warp_frequencies`); None: no warping.

        Returns:
            feats ``(B, T, F)`` float32 (padding frames are 0), feat_lens ``(B,)``.
        """
        wav_lens = wav_lens.to(waves.device)
        # samples past a length must not reach the last frames' windows, whatever the caller padded with
        waves = waves.float() * lengths_to_mask(wav_lens, waves.shape[1])  # (B, N)
        if warp is None:
            spec = self.transform(waves)  # (B, F, T)
        elif self.cfg.kind == "logmel":
            linear = warp_frequencies(self.transform.spectrogram(waves), warp)  # (B, n_fft/2+1, T)
            spec = self.transform.mel_scale(linear)  # (B, F, T)
        else:
            spec = warp_frequencies(self.transform(waves), warp)
        feats = torch.log(spec + LOG_EPS).transpose(1, 2)  # (B, F, T) -> (B, T, F)
        feat_lens = self.output_lengths(wav_lens)
        if self.cfg.normalize:
            feats = normalize(feats, feat_lens)
        else:
            feats = feats * lengths_to_mask(feat_lens, feats.shape[1]).unsqueeze(-1)
        return feats, feat_lens
