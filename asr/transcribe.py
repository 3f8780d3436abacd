"""``load_model(path)`` and transcription: audio files in, text out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.audio import load_audio
from asr.checkpoint import ModelFileError, read_model_file
from asr.config import FeatureConfig, ModelConfig, config_from_dict
from asr.data import Example, collate
from asr.decode import GreedyDecoder, Hypothesis
from asr.features import FeatureExtractor
from asr.model import AcousticModel
from asr.text import Tokenizer

Decoder = Callable[[torch.Tensor, torch.Tensor], list[Hypothesis]]
DEFAULT_MODEL = Path(__file__).parent / "pretrained" / "default.pt"


@dataclass
class Recognizer:
    """The three pieces a model file rebuilds: front end, acoustic model, tokenizer."""

    features: FeatureExtractor
    model: AcousticModel
    tokenizer: Tokenizer
    info: dict

    @property
    def sample_rate(self) -> int:
        return self.features.cfg.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Recognizer:
        self.features.to(device)
        self.model.to(device)
        return self

    @torch.no_grad()
    def log_probs(
        self, waves: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``waves (B, N)``, ``wav_lens (B,)`` -> ``log_probs (B, T', V)``, ``out_lens (B,)``."""
        self.model.eval()
        feats, feat_lens = self.features(waves.to(self.device), wav_lens.to(self.device))
        return self.model(feats, feat_lens)

    def transcribe_waves(
        self, waves: Sequence[torch.Tensor], decoder: Decoder | None = None
    ) -> list[Hypothesis]:
        """Transcripts of mono waveforms at :attr:`sample_rate`, batched together.

        Args:
            waves: ``(N,)`` waveforms.
            decoder: ``(log_probs, out_lens) -> hypotheses`` (greedy by default; see
                :func:`asr.decode.build_decoder`).
        """
        batch = collate([Example(str(i), w, [], "") for i, w in enumerate(waves)])
        log_probs, out_lens = self.log_probs(batch.waves, batch.wav_lens)
        return (decoder or GreedyDecoder(self.tokenizer))(log_probs, out_lens)

    def transcribe(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 16,
        decoder: Decoder | None = None,
    ) -> list[Hypothesis]:
        """Transcribe audio files, ``batch_size`` at a time, length-sorted to keep padding small.

        Raises:
            AudioError: a file cannot be read (the message names it).
        """
        waves = [load_audio(p, self.sample_rate) for p in paths]
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        hyps: list[Hypothesis | None] = [None] * len(waves)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, hyp in zip(chunk, self.transcribe_waves([waves[i] for i in chunk], decoder)):
                hyps[i] = hyp
        return hyps  # type: ignore[return-value]


def build_recognizer(record: dict, where: str = "model file") -> Recognizer:
    """Rebuild a :class:`Recognizer` from a model-file record (see :mod:`asr.checkpoint`)."""
    features = FeatureExtractor(config_from_dict(FeatureConfig, record["features"], where))
    tokenizer = Tokenizer.from_list(record["tokens"])
    model = AcousticModel(
        config_from_dict(ModelConfig, record["model"], where), features.num_features, len(tokenizer)
    )
    state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{where}: weights do not fit the model it describes: {exc}") from None
    model.eval()
    return Recognizer(features, model, tokenizer, dict(record.get("info", {})))


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> Recognizer:
    """Load a model file (or a training checkpoint); ``None`` loads the bundled default model.

    Raises:
        ModelFileError: missing, foreign or corrupt file, named in the message.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL
    record = read_model_file(path)
    return build_recognizer(record, str(path)).to(device)
