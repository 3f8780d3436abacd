"""The acoustic model: subsampling front end, stacked bidirectional recurrent layers, projection.

Variable lengths are exact: an utterance's output is the same alone and in a padded batch. The
forward direction runs over the padded batch as it is (padding comes after the real frames, so it
cannot reach them); the backward direction runs over each sequence reversed *within its own length*,
so it starts on the utterance's last real frame, never on padding. This is what packed sequences
compute, without their cost: on the CPU PyTorch's packed LSTM was several times slower than the
dense kernel used here (``benchmarks/train_throughput.py`` measures both).

The model knows nothing of files or text: features and lengths in, log-probabilities and lengths out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.config import ModelConfig
from asr.features import lengths_to_mask

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def reverse_padded(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x (B, T, H)`` within its first ``lens[b]`` steps; padding stays put.

    Its own inverse: ``reverse_padded(reverse_padded(x, l), l) == x``.
    """
    B, T_ = x.shape[:2]
    t = torch.arange(T_, device=x.device)[None, :]  # (1, T)
    lens = lens.to(x.device)[:, None]  # (B, 1)
    index = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


class StackSubsampling(nn.Module):
    """Stack ``factor`` consecutive frames into one: ``(B, T, F) -> (B, ceil(T/k), k*F)``."""

    def __init__(self, num_features: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.output_size = num_features * factor

    def output_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        return torch.div(feat_lens + self.factor - 1, self.factor, rounding_mode="floor")

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
        B, T_, F_ = feats.shape
        pad = (-T_) % self.factor
        if pad:
            feats = F.pad(feats, (0, 0, 0, pad))  # zeros, as the padding frames already are
        return feats.reshape(B, (T_ + pad) // self.factor, F_ * self.factor)  # (B, T/k, k*F)


def _time_strides(factor: int) -> tuple[int, int]:
    """Split a subsampling factor over two convolutions."""
    for first in (2, 3, 1):
        if factor % first == 0 and factor // first in (1, 2, 3):
            return first, factor // first
    raise ValueError(
        f"model.subsample_factor={factor}: conv subsampling supports 1, 2, 3, 4, 6 or 9"
    )


class ConvSubsampling(nn.Module):
    """Two 2-D convolutions over (time, frequency), DeepSpeech2 style, strided in time.

    Frames past each utterance's length are zeroed after every layer, so padding never leaks into
    the next layer's receptive field.
    """

    KERNEL = (5, 11)  # (time, frequency)
    PAD = (2, 5)

    def __init__(self, num_features: int, factor: int, channels: int) -> None:
        super().__init__()
        self.strides = _time_strides(factor)
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else channels, channels, self.KERNEL, (s, 2), self.PAD)
            for i, s in enumerate(self.strides)
        )
        freq = num_features
        for _ in self.strides:
            freq = (freq + 2 * self.PAD[1] - self.KERNEL[1]) // 2 + 1
        self.output_size = channels * freq

    def _lengths(self, lens: torch.Tensor, stride: int) -> torch.Tensor:
        return torch.div(lens + 2 * self.PAD[0] - self.KERNEL[0], stride, rounding_mode="floor") + 1

    def output_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        for s in self.strides:
            feat_lens = self._lengths(feat_lens, s)
        return feat_lens

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
        x = feats.unsqueeze(1)  # (B, T, F) -> (B, 1, T, F)
        lens = feat_lens
        for conv, s in zip(self.convs, self.strides):
            x = F.gelu(conv(x))  # (B, C, T', F')
            lens = self._lengths(lens, s)
            x = x * lengths_to_mask(lens, x.shape[2])[:, None, :, None]
        B, C, T_, F_ = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T_, C * F_)  # (B, C, T', F') -> (B, T', C*F')


class BiRNNLayer(nn.Module):
    """One recurrent layer, bidirectional by default, exact under padding (see module docstring)."""

    def __init__(
        self, input_size: int, hidden_size: int, rnn_type: str, bidirectional: bool
    ) -> None:
        super().__init__()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"model.rnn_type must be one of {sorted(RNN_TYPES)}, got {rnn_type!r}")
        cell = RNN_TYPES[rnn_type]
        self.fwd = cell(input_size, hidden_size, batch_first=True)
        self.bwd = cell(input_size, hidden_size, batch_first=True) if bidirectional else None
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        out, _ = self.fwd(x)  # (B, T, H)
        if self.bwd is None:
            return out
        back, _ = self.bwd(reverse_padded(x, lens))  # (B, T, H), in reversed time
        return torch.cat([out, reverse_padded(back, lens)], dim=-1)  # (B, T, 2H)


class AcousticModel(nn.Module):
    """Subsampling -> N recurrent layers -> linear to the vocabulary -> log-softmax.

    Args:
        cfg: the model's shape.
        num_features: feature bins per frame (F).
        vocab_size: output classes including the blank (V).
    """

    def __init__(self, cfg: ModelConfig, num_features: int, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.subsample == "stack":
            self.subsample: nn.Module = StackSubsampling(num_features, cfg.subsample_factor)
        elif cfg.subsample == "conv":
            self.subsample = ConvSubsampling(num_features, cfg.subsample_factor, cfg.conv_channels)
        else:
            raise ValueError(f"model.subsample must be 'stack' or 'conv', got {cfg.subsample!r}")
        if cfg.num_layers < 1:
            raise ValueError(f"model.num_layers must be at least 1, got {cfg.num_layers}")
        size = self.subsample.output_size
        layers = []
        for _ in range(cfg.num_layers):
            layers.append(BiRNNLayer(size, cfg.hidden_size, cfg.rnn_type, cfg.bidirectional))
            size = layers[-1].output_size
        self.rnns = nn.ModuleList(layers)
        # LHUC amplitudes' logits, one per unit of each layer's output (see ModelConfig.lhuc)
        self.lhuc = (
            nn.ParameterList(nn.Parameter(torch.zeros(layer.output_size)) for layer in layers)
            if cfg.lhuc
            else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(size, vocab_size)

    def output_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        """Output frames for ``feat_lens`` input frames: what :meth:`forward` returns as ``out_lens``."""
        return self.subsample.output_lengths(feat_lens)

    def forward(
        self, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            feats: ``(B, T, F)``, zero past each length.
            feat_lens: ``(B,)``.

        Returns:
            log_probs ``(B, T', V)`` float32, out_lens ``(B,)``.
        """
        x = self.subsample(feats, feat_lens)  # (B, T', D)
        out_lens = self.output_lengths(feat_lens)
        for i, rnn in enumerate(self.rnns):
            x = rnn(x, out_lens)  # (B, T', D): D = 2H bidirectional, else H
            if self.lhuc is not None:
                x = x * (2 * torch.sigmoid(self.lhuc[i])).to(x.dtype)
            x = self.dropout(x)
        logits = self.output(x)  # (B, T', V)
        return F.log_softmax(logits.float(), dim=-1), out_lens


def fold_lhuc(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with LHUC scales (``model.lhuc``) -> the same function without them.

    A layer's scales multiply its output, which only the next layer's input weights (both
    directions) or the output layer read (dropout in between is linear), so each scale folds into
    the columns of the weights that read its unit. The model file that results is a plain one
    (``model.lhuc`` false): every tool that takes a model file takes it.
    """
    state = dict(state)
    for key in sorted(k for k in state if k.startswith("lhuc.")):
        i = int(key.split(".")[1])
        scale = 2 * torch.sigmoid(state.pop(key).float())  # (D,): one per unit of layer i
        after = [f"rnns.{i + 1}.{d}.weight_ih_l0" for d in ("fwd", "bwd")]
        readers = [k for k in after if k in state] or ["output.weight"]
        for name in readers:
            w = state[name]
            state[name] = (w.float() * scale[None, :]).to(w.dtype)
    return state


def ctc_loss(
    log_probs: torch.Tensor,
    out_lens: torch.Tensor,
    targets: torch.Tensor,
    target_lens: torch.Tensor,
) -> torch.Tensor:
    """Mean over the batch of each utterance's CTC loss divided by its target length.

    Args:
        log_probs: ``(B, T', V)`` float32, as :meth:`AcousticModel.forward` returns them.
        out_lens: ``(B,)``.
        targets: ``(B, U)`` label ids (no blanks), zero-padded.
        target_lens: ``(B,)``.
    """
    return F.ctc_loss(
        log_probs.transpose(0, 1),  # (B, T, V) -> (T, B, V), as ctc_loss wants
        targets,
        out_lens,
        target_lens,
        blank=0,
        reduction="mean",
        zero_infinity=True,  # utterances that cannot fit were filtered; this is a guard
    )


def frame_entropies(log_probs: torch.Tensor) -> torch.Tensor:
    """``(B, T', V)`` log-probabilities -> ``(B, T')`` each frame's entropy (nats), padding included."""
    # a -inf log-probability (an fp16 logit overflowing) would give 0 * -inf = nan: clamp it
    lp = log_probs.clamp(min=torch.finfo(log_probs.dtype).min)
    return -(lp.exp() * lp).sum(-1)


def frame_entropy(log_probs: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each utterance's mean per-frame entropy (nats); padding excluded.

    Subtracted from the CTC loss with a small weight (``train.confidence_penalty``) it penalises
    over-confident output distributions (Pereyra et al. 2017, "Regularizing neural networks by
    penalizing confident output distributions", with speech recognition among its tasks).

    Args:
        log_probs: ``(B, T', V)`` float32.
        out_lens: ``(B,)`` valid output frames (at most T'); frames past them are padding.

    Returns:
        a scalar tensor (nats), differentiable; 0 for certain outputs, log V for uniform ones.
    """
    return _mean_over_frames(frame_entropies(log_probs), out_lens)


def _mean_over_frames(values: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
    """``(B, T')`` per-frame values -> the mean over the batch of each utterance's mean over its
    ``out_lens`` real frames (padding excluded)."""
    lens = out_lens.to(values.device)
    mask = lengths_to_mask(lens, values.size(1))  # (B, T')
    per_utt = values.masked_fill(~mask, 0.0).sum(1) / lens.clamp(min=1)  # (B,)
    return per_utt.mean()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frame_kl(
    log_probs: torch.Tensor, ref_log_probs: torch.Tensor, out_lens: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of each utterance's mean per-frame KL(ref || model) (nats); padding
    excluded. Added to the CTC loss with a weight (``train.kl_to_init``) it keeps a fine-tuned
    model's output distributions near a reference model's (Yu et al. 2013).

    Args:
        log_probs: ``(B, T', V)`` float32, the model's (differentiable).
        ref_log_probs: ``(B, T', V)`` float32, the reference model's on the same input.
        out_lens: ``(B,)`` valid output frames (at most T').

    Returns:
        a scalar tensor, 0 where the two agree.
    """
    ref_probs = ref_log_probs.exp()
    # tokens the reference gives no probability add nothing (not 0 * -inf = nan where a
    # log-probability is -inf); one the model gives none where the reference does makes the
    # divergence infinite, and the training step skips the batch
    terms = torch.where(ref_probs > 0, ref_probs * (ref_log_probs - log_probs), 0.0)
    return _mean_over_frames(terms.sum(-1), out_lens)
