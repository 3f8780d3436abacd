"""Pictures: what the model heard (spectrogram, CTC posteriors, word boundaries), training curves."""

from __future__ import annotations

from pathlib import Path

import torch

from asr.text import Tokenizer
from asr.transcript import Word


def plot_alignment(
    feats: torch.Tensor,
    hop_seconds: float,
    log_probs: torch.Tensor,
    frame_seconds: float,
    words: list[Word],
    tokenizer: Tokenizer,
    path: str | Path,
    title: str = "",
) -> Path:
    """Draw features ``(T, F)``, posteriors ``(T', V)`` and the words' spans into a PNG.

    The top panel is the (normalised) spectrogram with each word's span and label; the bottom one is
    each character's probability over time (the blank in grey), so a reader can see where a word was
    heard and how sure the model was.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    duration = feats.shape[0] * hop_seconds
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, duration * 1.5), 6), sharex=True)
    top.imshow(
        feats.T.cpu().numpy(),
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, duration, 0, feats.shape[1]),
    )
    top.set(ylabel="feature bin", title=title)
    probs = log_probs.exp().cpu()  # (T', V)
    times = (torch.arange(probs.shape[0]) + 0.5) * frame_seconds
    bottom.plot(times, probs[:, tokenizer.blank_id], color="0.75", linewidth=1, label="blank")
    for v in range(len(tokenizer)):
        if v != tokenizer.blank_id and float(probs[:, v].max()) > 0.3:
            bottom.plot(times, probs[:, v], linewidth=1)
            t = int(probs[:, v].argmax())
            bottom.annotate(
                repr(tokenizer.tokens[v]).strip("'") or "␣",
                (float(times[t]), float(probs[t, v])),
                fontsize=8,
                ha="center",
                va="bottom",
            )
    for w in words:
        for ax in (top, bottom):
            ax.axvspan(w.start, w.end, color="tab:cyan", alpha=0.15)
        top.text(
            (w.start + w.end) / 2,
            feats.shape[1] * 0.92,
            f"{w.word}\n{w.confidence:.2f}",
            ha="center",
            va="top",
            fontsize=9,
            color="white",
        )
    bottom.set(xlabel="seconds", ylabel="probability", ylim=(0, 1.05))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(history: list[dict], path: Path) -> None:
    """Loss (train, valid) and validation WER/CER by epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["valid_loss"] for h in history], "o-", label="valid")
    ax1.set(xlabel="epoch", ylabel="CTC loss per label", title="loss", yscale="log")
    ax1.legend()
    ax2.plot(epochs, [100 * h["valid_wer"] for h in history], "o-", label="WER")
    ax2.plot(epochs, [100 * h["valid_cer"] for h in history], "o-", label="CER")
    decoded = [(h["epoch"], h.get("valid_decoder_wer")) for h in history]
    decoded = [(e, w) for e, w in decoded if w is not None]
    if decoded:  # train.valid_decoder: the WER that chose best.pt
        ax2.plot(*zip(*((e, 100 * w) for e, w in decoded)), "s-", label="WER, valid_decoder")
    ax2.set(xlabel="epoch", ylabel="%", title="validation error (greedy unless named)")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
