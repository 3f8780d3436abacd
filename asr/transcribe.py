"""``load_model(path)`` and transcription: audio files in, text out."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asr.align import align
from asr.audio import AudioError, audio_duration, load_audio, read_windows, resample
from asr.checkpoint import ModelFileError, read_model_file, without_lhuc
from asr.config import FeatureConfig, ModelConfig, config_from_dict
from asr.data import pad_waves
from asr.decode import GreedyDecoder, Hypothesis
from asr.features import FeatureExtractor
from asr.model import AcousticModel
from asr.precision import PrecisionChoice, resolve_precision
from asr.text import Tokenizer
from asr.transcript import Transcript, Word, make_segments
from asr.vad import frame_energies_db, speech_segments

Decoder = Callable[[torch.Tensor, torch.Tensor], list[Hypothesis]]
DEFAULT_MODEL = Path(__file__).parent / "pretrained" / "default.pt"
# the bundled model's decoding: beam search with its LM and tuned weights (asr lm tune)
DEFAULT_DECODER = Path(__file__).parent / "pretrained" / "decoder.yaml"
BUNDLED_DECODER = "bundled"  # a model file's info["decoder"]: decode as the bundled model does
LONG_SECONDS = 30.0  # audio longer than this is cut at pauses into pieces (asr.vad)
PIECE_BATCH = 8  # a long file's pieces go through the model this many at a time
MAX_SECONDS = 24 * 3600.0  # transcribe_files refuses longer files (a forged or runaway header)


@dataclass
class Recognizer:
    """The three pieces a model file rebuilds: front end, acoustic model, tokenizer.

    ``snap_to_sound``: word edges at pauses move onto where the sound starts and stops
    (:func:`asr.align.snap_to_sound`); ``False`` keeps the edges of the CTC alignment alone.
    ``precision``: the dtype the model runs in (:mod:`asr.precision`; float32 unless
    :func:`load_model` or :meth:`set_precision` chose otherwise). In bf16 or fp16 the model runs
    as a copy of itself in that dtype, made once and remade when ``model`` or its weights change:
    what autocast computes, without autocast casting every weight again on every call.
    """

    features: FeatureExtractor
    model: AcousticModel
    tokenizer: Tokenizer
    info: dict
    snap_to_sound: bool = True
    precision: PrecisionChoice = field(default_factory=lambda: PrecisionChoice(None, "fp32"))
    decoder_config: Path | None = None
    _decoder: Decoder | None = field(default=None, repr=False)
    _low: tuple[tuple, AcousticModel] | None = field(default=None, repr=False)

    @property
    def default_decoder(self) -> Decoder:
        """What ``transcribe`` decodes with when no decoder is given: beam search as
        ``decoder_config`` says (the bundled model's tuned LM), else greedy. Built once."""
        if self._decoder is None:
            if self.decoder_config is None:
                self._decoder = GreedyDecoder(self.tokenizer)
            else:
                from asr.config import load_decoder_config
                from asr.decode import build_decoder

                self._decoder = build_decoder(
                    self.tokenizer, load_decoder_config(self.decoder_config)
                )
        return self._decoder

    @property
    def sample_rate(self) -> int:
        return self.features.cfg.sample_rate

    @property
    def device(self) -> torch.device:
        # the front end's window and filterbank: a quantized model has no float parameters
        return next(self.features.buffers()).device

    def to(self, device: str | torch.device) -> Recognizer:
        self.features.to(device)
        self.model.to(device)
        return self

    def set_precision(self, name: str) -> Recognizer:
        """Run the model in ``auto``, ``fp32`` or ``bf16`` from now on (for its current device)."""
        self.precision = resolve_precision(name, self.device)
        return self

    @torch.no_grad()
    def log_probs(
        self, waves: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``waves (B, N)``, ``wav_lens (B,)`` -> ``log_probs (B, T', V)``, ``out_lens (B,)``."""
        self.model.eval()
        feats, feat_lens = self.features(waves.to(self.device), wav_lens.to(self.device))
        dtype = self.precision.dtype
        if dtype is None:
            return self.model(feats, feat_lens)
        return self._low_precision_model(dtype)(feats.to(dtype), feat_lens)

    def _low_precision_model(self, dtype: torch.dtype) -> AcousticModel:
        """``model`` in ``dtype``, copied once per model, dtype, device and weights: an in-place
        change to a weight (as ``load_state_dict`` makes) bumps its version, a new tensor moves
        its address."""
        weights = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        key = (id(self.model), dtype, self.device, weights)
        if self._low is None or self._low[0] != key:
            self._low = None  # free the old copy first
            low = copy.deepcopy(self.model).to(dtype).eval()
            self._low = (key, low)
        return self._low[1]

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame (the feature hop times the model's subsampling)."""
        return self.features.hop_length * self.model.cfg.subsample_factor / self.sample_rate

    def transcribe(
        self,
        source: str | Path | torch.Tensor | np.ndarray,
        sample_rate: int | None = None,
        decoder: Decoder | None = None,
        word_timestamps: bool = True,
        batch_size: int = PIECE_BATCH,
    ) -> Transcript:
        """Transcribe one file or waveform of any length.

        Audio longer than :data:`LONG_SECONDS` is cut at pauses into pieces of at most ~20 s
        (:mod:`asr.vad`), each transcribed on its own and placed at its offset: no word is split or
        doubled at a cut, and memory stays flat with the file's length (files are read piece by
        piece where the format allows). The pieces run through the model ``batch_size`` at a
        time (padded, with their true lengths: the same result as one by one, faster).

        Args:
            source: an audio file path, or a waveform ``(N,)`` / ``(N, channels)``.
            sample_rate: the waveform's rate (files carry their own); resampled as needed.
            decoder: :attr:`default_decoder` if not given (the bundled model: beam search with its
                LM; others: greedy); :func:`asr.decode.build_decoder` makes any other.
            word_timestamps: align the hypothesis to give words times and confidences.
            batch_size: pieces of a long file per forward pass.

        Returns:
            a :class:`Transcript` with text, timed words and subtitle-sized segments.

        Raises:
            AudioError: an unreadable or empty file or waveform.
            ValueError: ``batch_size`` below 1.
        """
        _check_batch_size(batch_size)
        sr = self.sample_rate
        path = str(source) if isinstance(source, (str, Path)) else ""
        if path:
            duration = audio_duration(source)
            if duration <= LONG_SECONDS:
                return self._transcript(
                    [(0.0, load_audio(source, sr))], decoder, word_timestamps, 1, path
                )
            energies = frame_energies_db((w for _, w in read_windows(source, sr, 60 * sr, 0)), sr)
            pieces = (
                (a, load_audio(source, sr, offset=a, duration=b - a))
                for a, b in speech_segments(energies)
            )
            return self._transcript(pieces, decoder, word_timestamps, batch_size, path, duration)
        wave = torch.as_tensor(source, dtype=torch.float32)
        if wave.ndim == 2:  # (N, channels) -> mono
            wave = wave.mean(dim=1)
        if wave.numel() == 0:
            raise AudioError("the waveform holds no samples")
        if sample_rate and sample_rate != sr:
            wave = resample(wave, sample_rate, sr)
        duration = len(wave) / sr
        if duration <= LONG_SECONDS:
            return self._transcript([(0.0, wave)], decoder, word_timestamps, 1)
        pieces = (
            (a, wave[int(a * sr) : int(b * sr)])
            for a, b in speech_segments(frame_energies_db([wave], sr))
        )
        return self._transcript(pieces, decoder, word_timestamps, batch_size, "", duration)

    def _transcript(
        self,
        pieces: Iterable[tuple[float, torch.Tensor]],
        decoder: Decoder | None,
        word_timestamps: bool,
        batch_size: int,
        path: str = "",
        duration: float | None = None,
    ) -> Transcript:
        """Decode ``(offset seconds, waveform)`` pieces, ``batch_size`` per forward pass, in order,
        and join them. Only one batch of pieces is held at a time."""
        decoder = decoder or self.default_decoder
        texts, words, end = [], [], 0.0
        for offset, text, piece_words, seconds in self._decode_pieces(
            pieces, decoder, word_timestamps, batch_size
        ):
            texts.append(text)
            words += piece_words
            end = offset + seconds
        text = " ".join(t for t in texts if t)
        return Transcript(text, words, make_segments(words), round(duration or end, 3), path)

    def _decode_pieces(
        self,
        pieces: Iterable[tuple[float, torch.Tensor]],
        decoder: Decoder,
        word_timestamps: bool,
        batch_size: int,
    ) -> Iterator[tuple[float, str, list[Word], float]]:
        """Pad, run through the model and decode ``(offset seconds, waveform)`` pieces,
        ``batch_size`` per forward pass; yield each piece's offset, text, timed words (placed at
        its offset) and length in seconds, in order. Only one batch of pieces is held at a time."""
        pieces = iter(pieces)
        while batch := list(islice(pieces, batch_size)):
            waves, wav_lens = pad_waves([wave for _, wave in batch])
            log_probs, out_lens = self.log_probs(waves, wav_lens)
            for b, (offset, wave) in enumerate(batch):
                frames = log_probs[b, : out_lens[b]].cpu()
                words: list[Word] = []
                text = self._decode_one(frames, decoder, words, word_timestamps, offset, wave)
                yield offset, text, words, len(wave) / self.sample_rate

    def _decode_one(
        self,
        log_probs: torch.Tensor,
        decoder: Decoder,
        words: list[Word],
        timestamps: bool,
        offset: float,
        wave: torch.Tensor,
    ) -> str:
        """Decode one piece's ``(T, V)`` log-probabilities, appending its timed words to ``words``.

        ``wave`` is the piece's audio (its energies put word edges at pauses onto the sound)."""
        hyp = decoder(log_probs[None], torch.tensor([len(log_probs)]))[0]
        if timestamps and hyp.text:
            energy = (
                frame_energies_db([wave.cpu()], self.sample_rate) if self.snap_to_sound else None
            )
            seconds = len(wave) / self.sample_rate
            words += align(
                log_probs, hyp.text, self.tokenizer, self.frame_seconds, offset, energy, seconds
            )
        return hyp.text

    def transcribe_files(
        self,
        paths: Sequence[str | Path],
        decoder: Decoder | None = None,
        word_timestamps: bool = True,
        batch_size: int = 16,
        progress: bool = False,
        max_duration: float | None = MAX_SECONDS,
    ) -> Iterator[tuple[Path, Transcript | Exception]]:
        """Transcribe many files: short ones in length-sorted batches, long ones in chunks.

        A file that fails (unreadable, empty, a forged header, longer than ``max_duration``
        seconds, ...) yields its exception instead of a transcript; the others go on. Each file's
        header is checked before any of its audio is read. Results come in the order of
        ``paths``' durations, shortest first.
        """
        _check_batch_size(batch_size)
        sized: list[tuple[float, Path]] = []
        for p in map(Path, paths):
            try:
                duration = audio_duration(p)
            except AudioError as exc:
                yield p, exc
                continue
            if max_duration is not None and duration > max_duration:
                yield (
                    p,
                    AudioError(
                        f"{p}: {duration:.1f} s long, over the limit of {max_duration:g} s "
                        f"(--max-duration)"
                    ),
                )
                continue
            sized.append((duration, p))
        sized.sort()
        decoder = decoder or self.default_decoder
        bar = tqdm(total=len(sized), desc="transcribe", unit="file", disable=not progress)
        short = [p for d, p in sized if d <= LONG_SECONDS]
        for i in range(0, len(short), batch_size):
            group, waves, failed = short[i : i + batch_size], [], []
            for p in group:
                try:
                    waves.append(load_audio(p, self.sample_rate))
                except AudioError as exc:
                    failed.append((p, exc))
            for p, exc in failed:
                bar.update()
                yield p, exc
            ok = [p for p in group if p not in {f for f, _ in failed}]
            if not ok:
                continue
            decoded = self._decode_pieces(
                [(0.0, wave) for wave in waves], decoder, word_timestamps, batch_size
            )
            for p, (_, text, words, seconds) in zip(ok, decoded):
                bar.update()
                yield p, Transcript(text, words, make_segments(words), round(seconds, 3), str(p))
        for p in [p for d, p in sized if d > LONG_SECONDS]:
            try:
                result: Transcript | Exception = self.transcribe(
                    p, decoder=decoder, word_timestamps=word_timestamps, batch_size=batch_size
                )
            except AudioError as exc:
                result = exc
            bar.update()
            yield p, result
        bar.close()


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")


def build_recognizer(record: dict, where: str = "model file") -> Recognizer:
    """Rebuild a :class:`Recognizer` from a model-file record (see :mod:`asr.checkpoint`)."""
    features = FeatureExtractor(config_from_dict(FeatureConfig, record["features"], where))
    tokenizer = Tokenizer.from_list(record["tokens"])
    record = without_lhuc(record)  # LHUC scales folded into the weights: the same function
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


def load_model(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> Recognizer:
    """Load a model file (or a training checkpoint); ``None`` loads the bundled default model.

    ``precision``: ``auto`` (bf16 autocast where the CPU or GPU multiplies bf16 natively, else
    fp32), ``fp32`` or ``bf16``; weights stay float32 either way. The bundled model decodes with
    beam search and its LM by default (``asr/pretrained/decoder.yaml``); pass
    ``decoder=GreedyDecoder(model.tokenizer)`` to ``transcribe`` for raw speed.

    Raises:
        ModelFileError: missing, foreign or corrupt file, named in the message.
    """
    bundled = path is None
    path = Path(path) if path is not None else DEFAULT_MODEL
    record = read_model_file(path)
    rec = build_recognizer(record, str(path)).to(device).set_precision(precision)
    rec.decoder_config = default_decoder_config(rec.info, bundled)
    return rec


def default_decoder_config(info: dict, bundled: bool = False) -> Path | None:
    """The decoder config a model decodes with unless told otherwise: the bundled model's (and
    that of a model whose ``info["decoder"]`` says ``"bundled"``, as ``asr enrol`` records for a
    personal model of it), the file ``info["decoder"]`` names, or None (greedy)."""
    recorded = info.get("decoder", "")
    if bundled or recorded == BUNDLED_DECODER:
        return DEFAULT_DECODER if DEFAULT_DECODER.is_file() else None
    return Path(recorded) if recorded and Path(recorded).is_file() else None
