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
        for rnn in self.rnns:
            x = self.dropout(rnn(x, out_lens))
        logits = self.output(x)  # (B, T', V)
        return F.log_softmax(logits.float(), dim=-1), out_lens


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
    entropy = frame_entropies(log_probs)  # (B, T')
    frames = torch.arange(log_probs.size(1), device=log_probs.device)  # (T',)
    mask = frames[None, :] < out_lens[:, None].to(log_probs.device)  # (B, T')
    lens = out_lens.to(log_probs.device).clamp(min=1)
    per_utt = entropy.masked_fill(~mask, 0.0).sum(1) / lens  # (B,)
    return per_utt.mean()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def widen_state_dict(
    state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    old_hidden: int,
    generator: torch.Generator | None = None,
    noise: float = 0.01,
) -> dict[str, torch.Tensor]:
    """A state dict of an :class:`AcousticModel` with ``hidden_size`` ``old_hidden``, widened to
    ``cfg.hidden_size`` units per direction and layer so that the wider model computes the same
    function (Net2WiderNet, Chen et al. 2016).

    Each new unit copies the incoming weights (all gates, input and recurrent) of an old unit
    chosen at random; every weight *leaving* a unit that now has ``c`` copies (the next layer's
    input, the recurrent matrix, the output layer) is divided by ``c``. Copies see the same inputs
    and start from the same state, so their outputs are equal and the sum that reads them is
    unchanged. ``noise`` (relative to each matrix's standard deviation) is added to the new
    copies' incoming weights so that they can drift apart; with ``noise=0`` the widened model's
    output equals the old one's to rounding. Dropout between layers breaks the symmetry too.

    Args:
        state: the narrower model's state dict (float tensors).
        cfg: the wider model's shape; only ``hidden_size`` may differ from the narrower one's.
        old_hidden: the narrower model's ``hidden_size`` (H); ``cfg.hidden_size`` (H') >= H.
    """
    new_hidden = cfg.hidden_size
    if new_hidden < old_hidden:
        raise ValueError(f"cannot widen {old_hidden} units to fewer ({new_hidden})")
    gates = GATES[cfg.rnn_type]
    dirs = ("fwd", "bwd") if cfg.bidirectional else ("fwd",)
    extra = new_hidden - old_hidden
    # source[j]: the old unit new unit j copies; units 0..H-1 keep their place
    picks = torch.randperm(old_hidden, generator=generator)[:extra]
    if extra > old_hidden:  # more than doubling: draw the rest with replacement
        more = torch.randint(old_hidden, (extra - old_hidden,), generator=generator)
        picks = torch.cat([picks, more])
    source = torch.cat([torch.arange(old_hidden), picks])  # (H',)
    copies = torch.bincount(source, minlength=old_hidden).float()  # (H,)
    share = 1.0 / copies[source]  # (H',): what each copy passes on of its unit's output
    rows = torch.cat([k * old_hidden + source for k in range(gates)])  # (gates*H',)

    def split_inputs(w: torch.Tensor) -> torch.Tensor:
        """Columns that read a layer's ``len(dirs) * H`` outputs -> ``len(dirs) * H'`` columns."""
        cols = torch.cat([d * old_hidden + source for d in range(len(dirs))])
        return w[:, cols] * share.repeat(len(dirs))[None, :]

    def jitter(w: torch.Tensor) -> torch.Tensor:
        """Noise on the rows of the new units only (``w`` has gates*H' rows)."""
        if noise <= 0 or extra == 0:
            return w
        fresh = torch.zeros(gates, new_hidden, 1, dtype=torch.bool)
        fresh[:, old_hidden:] = True
        scale = noise * w.std()
        eps = torch.randn(w.shape, generator=generator, dtype=w.dtype) * scale
        return w + eps * fresh.reshape(gates * new_hidden, 1)

    out = dict(state)
    for layer in range(cfg.num_layers):
        for d in dirs:
            p = f"rnns.{layer}.{d}."
            w_ih = state[p + "weight_ih_l0"][rows]  # (gates*H', I)
            if layer > 0:
                w_ih = split_inputs(w_ih)  # (gates*H', D*H')
            w_hh = state[p + "weight_hh_l0"][rows][:, source] * share[None, :]  # (gates*H', H')
            out[p + "weight_ih_l0"] = jitter(w_ih)
            out[p + "weight_hh_l0"] = jitter(w_hh)
            out[p + "bias_ih_l0"] = state[p + "bias_ih_l0"][rows]
            out[p + "bias_hh_l0"] = state[p + "bias_hh_l0"][rows]
    out["output.weight"] = split_inputs(state["output.weight"])  # (V, D*H')
    return out


def deepen_state_dict(
    state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    old_layers: int,
    gain: float = 0.25,
    gate_bias: float = 4.0,
) -> dict[str, torch.Tensor]:
    """A state dict of an :class:`AcousticModel` with ``old_layers`` recurrent layers, deepened to
    ``cfg.num_layers`` by new layers on top that start out passing their input through (the
    recurrent counterpart of Net2DeeperNet, Chen et al. 2016).

    A recurrent layer cannot be an identity exactly: each new direction's cell reads its own
    direction's half of the layer below (the forward cell the forward units, the backward cell the
    backward ones) through ``gain * I`` into its candidate, with no recurrence, and its gates are
    held open or shut by their biases (LSTM: input and output gates open, forget gate shut; GRU:
    update gate shut). A unit's output is then about ``s * tanh(gain * x)`` for its input ``x``
    (``s`` the open gates' product), near ``s * gain * x`` for a recurrent layer's outputs in
    (-1, 1): the output layer's weights are divided by ``s * gain`` for each new layer. With
    ``gain`` 0.25 the deepened model's outputs are within about 4% of the shallower one's at the
    extremes of ``tanh``; training takes it from there (every new weight has a nonzero gradient).

    Args:
        state: the shallower model's state dict (float tensors).
        cfg: the deeper model's shape; only ``num_layers`` may differ from the shallower one's.
        old_layers: the shallower model's ``num_layers`` (L); ``cfg.num_layers`` (L') >= L.
        gain: the new layers' input gain (smaller: closer to an identity, smaller outputs).
        gate_bias: how far the new gates' biases hold them open or shut.
    """
    if cfg.num_layers < old_layers:
        raise ValueError(f"cannot deepen {old_layers} layers to fewer ({cfg.num_layers})")
    hidden, gates = cfg.hidden_size, GATES[cfg.rnn_type]
    dirs = ("fwd", "bwd") if cfg.bidirectional else ("fwd",)
    size = hidden * len(dirs)  # a recurrent layer's output size, and the new layers' input
    open_ = torch.sigmoid(torch.tensor(gate_bias)).item()
    # which block of rows is the candidate, and each gate's bias (+: open, -: shut), by cell
    candidate, biases, scale = {
        "lstm": (2, {0: gate_bias, 1: -gate_bias, 3: gate_bias}, open_**2),  # i, f, g, o
        "gru": (2, {1: -gate_bias}, open_),  # r, z, n: z shut keeps the candidate
        "rnn": (0, {}, 1.0),
    }[cfg.rnn_type]
    out = dict(state)
    for layer in range(old_layers, cfg.num_layers):
        for d, name in enumerate(dirs):
            p = f"rnns.{layer}.{name}."
            w_ih = torch.zeros(gates * hidden, size)
            rows = slice(candidate * hidden, (candidate + 1) * hidden)
            w_ih[rows, d * hidden : (d + 1) * hidden] = gain * torch.eye(hidden)
            bias = torch.zeros(gates, hidden)
            for gate, value in biases.items():
                bias[gate] = value
            out[p + "weight_ih_l0"] = w_ih
            out[p + "weight_hh_l0"] = torch.zeros(gates * hidden, hidden)
            out[p + "bias_ih_l0"] = bias.reshape(-1)
            out[p + "bias_hh_l0"] = torch.zeros(gates * hidden)
    # each new layer scales what passes through it by about scale * gain
    out["output.weight"] = state["output.weight"] / (scale * gain) ** (cfg.num_layers - old_layers)
    return out
