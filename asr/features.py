"""Waveforms -> spectrogram features, batched, with true lengths.

Pure functions do the work; :class:`FeatureExtractor` is a thin ``nn.Module`` that holds the window
and filterbank (inside torchaudio's transforms) as buffers, so features run on the model's device.

Padding never changes a result: the STFT is centred with zero padding, so the frames of a short
utterance in a zero-padded batch see exactly the samples they would see alone, and normalisation uses
only each utterance's true frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchaudio.transforms as T
from torch import nn

from asr.config import FeatureConfig

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
        self,
        waves: torch.Tensor,
        wav_lens: torch.Tensor,
        warp: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute features.

        Args:
            waves: ``(B, N)`` padded waveforms (whatever lies past a length is ignored).
            wav_lens: ``(B,)`` true sample counts.
            warp: a change to the power spectrogram's linear frequency axis, ``(B, n_fft/2+1,
                T) -> (B, n_fft/2+1, T)``, made before the mel filterbank (training's vocal tract
                length perturbation, :func:`asr.augment.warp_frequencies`); None: no warping.

        Returns:
            feats ``(B, T, F)`` float32 (padding frames are 0), feat_lens ``(B,)``.
        """
        wav_lens = wav_lens.to(waves.device)
        # samples past a length must not reach the last frames' windows, whatever the caller padded with
        waves = waves.float() * lengths_to_mask(wav_lens, waves.shape[1])  # (B, N)
        if warp is None:
            spec = self.transform(waves)  # (B, F, T)
        elif self.cfg.kind == "logmel":
            linear = warp(self.transform.spectrogram(waves))  # (B, n_fft/2+1, T)
            spec = self.transform.mel_scale(linear)  # (B, F, T)
        else:
            spec = warp(self.transform(waves))
        feats = torch.log(spec + LOG_EPS).transpose(1, 2)  # (B, F, T) -> (B, T, F)
        feat_lens = self.output_lengths(wav_lens)
        if self.cfg.normalize:
            feats = normalize(feats, feat_lens)
        else:
            feats = feats * lengths_to_mask(feat_lens, feats.shape[1]).unsqueeze(-1)
        return feats, feat_lens
