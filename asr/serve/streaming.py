"""Live transcription of a growing stream of 16-bit PCM: partial text as audio arrives, final
text at pauses.

The acoustic model is bidirectional: it needs the whole utterance to be sure of any of it. So the
stream keeps the audio since the last pause (the *open* stretch) and re-decodes all of it whenever
new audio has come: that text is a *partial*, which may still change. When the speaker pauses
(``pause_seconds`` of quiet after speech), the stretch up to the middle of the pause is decoded a
last time with word times and sent as *final*; the open stretch then starts after it. Final text is
never revised. A stretch that runs past ``max_segment_seconds`` without a pause is cut at its
quietest frame near that limit, as :func:`asr.vad.speech_segments` cuts long files.

Speech and quiet are told apart as the file path's voice-activity detector does
(:func:`asr.vad.speech_frames`: relative to the noise floor of the last ``context_seconds``), so a
clip with no pause of that length gets exactly the text the file endpoint gives for it.

:class:`StreamTranscriber` holds no sockets and no threads: the server feeds it bytes
(:meth:`push`, on its event loop) and runs :meth:`step` in a worker thread.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

import numpy as np
import torch

from asr.audio import AudioError
from asr.transcribe import Decoder, Recognizer
from asr.vad import FRAME_SECONDS, frame_energies_db, speech_frames

PCM_BYTES = 2  # 16-bit little-endian signed samples
PCM_SCALE = 32768.0  # int16 -> float in [-1, 1), as soundfile reads PCM_16


@dataclass
class StreamConfig:
    """When the open stretch of a stream becomes final.

    Attributes:
        pause_seconds: this much quiet after speech ends an utterance; its text becomes final.
        max_segment_seconds: a stretch this long without such a pause is cut and made final.
        context_seconds: seconds of past audio whose levels set the speech/quiet threshold.
        lead_seconds: quiet kept before the first speech of a stretch (longer quiet is skipped
            without decoding, as the file path's detector pads speech).
        max_pending_seconds: audio received and not yet taken by a step; a client sending faster
            than the stream is decoded waits (the server stops reading its socket) until the
            decoder catches up. With the open stretch, which ``max_segment_seconds`` bounds,
            this bounds what a stream holds, whatever its rate and length.
    """

    pause_seconds: float = 0.5
    max_segment_seconds: float = 20.0
    context_seconds: float = 30.0
    lead_seconds: float = 0.25
    max_pending_seconds: float = 2.0


@dataclass
class StreamEvent:
    """One message to the client.

    ``partial``: the open stretch's text so far (it may change); ``final``: a stretch's text, never
    revised, with its words; ``start``/``end`` in seconds from the stream's first sample; ``end``
    of a partial is how much audio had arrived when it was decoded.
    """

    type: str
    text: str
    start: float
    end: float
    words: list[dict] | None = None

    def to_dict(self) -> dict:
        record = asdict(self)
        if self.words is None:
            record.pop("words")
        return record


class StreamTranscriber:
    """Partial and final transcripts of one PCM stream.

    Args:
        rec: the loaded model (its :meth:`~asr.transcribe.Recognizer.transcribe` decodes).
        sample_rate: the stream's rate in Hz (resampled to the model's rate for decoding).
        cfg: when text becomes final.
        max_seconds: refuse more audio than this (``None``: no limit).
    """

    def __init__(
        self,
        rec: Recognizer,
        sample_rate: int,
        cfg: StreamConfig | None = None,
        max_seconds: float | None = None,
    ) -> None:
        self.rec = rec
        self.sample_rate = sample_rate
        self.rate = rec.sample_rate  # what the stream is kept at: resampled as it arrives
        self._resampler = StreamResampler(sample_rate, rec.sample_rate)
        self.cfg = cfg or StreamConfig()
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._incoming: list[bytes] = []  # pushed, not yet taken by step()
        self._odd = b""  # a sample split across two messages
        self.received = 0  # samples pushed so far
        self.pending = 0  # samples pushed, not yet taken by step()
        self._open = np.zeros(0, dtype=np.float32)  # (N,) the stretch not yet final, model rate
        self._open_start = 0  # its first sample's index in the stream
        self._past_db = torch.zeros(0)  # energies of final audio, the last context_seconds
        self._decoded_to = 0  # stream samples covered by the last partial
        self.finals: list[StreamEvent] = []

    @property
    def seconds(self) -> float:
        """Seconds of audio pushed so far."""
        return self.received / self.sample_rate

    def push(self, data: bytes) -> None:
        """Queue a chunk of 16-bit little-endian PCM (any length; a sample may span chunks).

        Raises:
            AudioError: the stream would pass ``max_seconds``.
        """
        with self._lock:
            data = self._odd + data
            whole = len(data) - len(data) % PCM_BYTES
            self._odd = data[whole:]
            samples = whole // PCM_BYTES
            if (
                self.max_seconds is not None
                and self.received + samples > self.max_seconds * self.sample_rate
            ):
                raise AudioError(f"the stream passed the limit of {self.max_seconds:g} s of audio")
            self.received += samples
            self.pending += samples
            self._incoming.append(data[:whole])

    @property
    def backlogged(self) -> bool:
        """Whether more than ``cfg.max_pending_seconds`` of audio waits for a step: the socket
        side stops reading until a step takes it."""
        return self.pending > self.cfg.max_pending_seconds * self.sample_rate

    def step(self, decoder: Decoder, end: bool = False) -> list[StreamEvent]:
        """Take the audio pushed since the last step and say what it changed.

        Args:
            decoder: decodes log-probabilities (the server lends one per running decode).
            end: the stream is over: the open stretch becomes final, whatever it holds.

        Returns:
            final events for every stretch closed by a pause (in order), then a partial for the
            open stretch if new audio reached it (none at the end).
        """
        with self._lock:
            chunks, self._incoming, self.pending = self._incoming, [], 0
        if chunks:
            pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
            wave = self._resampler.push(torch.from_numpy(pcm.astype(np.float32) / PCM_SCALE))
            self._open = np.concatenate([self._open, wave.numpy()])
        if end:
            self._open = np.concatenate([self._open, self._resampler.flush().numpy()])
        events: list[StreamEvent] = []
        while (cut := self._find_cut(end)) is not None:
            events += self._finalise(cut, decoder)
        if end and len(self._open):
            events += self._finalise(len(self._open), decoder)
        stream_end = self._open_start + len(self._open)
        if not end and len(self._open) and stream_end > self._decoded_to:
            self._decoded_to = stream_end
            if self._has_speech():
                text = self._decode(self._open, decoder, timestamps=False).text
                events.append(
                    StreamEvent(
                        "partial", text, self._time(self._open_start), self._time(stream_end)
                    )
                )
        return events

    # --- where the open stretch ends ---

    def _frames(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The open stretch's per-10 ms energies and which of them are speech (``(F,)`` each),
        judged against the levels of the last ``context_seconds``."""
        energy = frame_energies_db([torch.from_numpy(self._open)], self.rate)
        speech = speech_frames(torch.cat([self._past_db, energy]))[len(self._past_db) :]
        return energy, speech

    def _has_speech(self) -> bool:
        return bool(self._frames()[1].any())

    def _find_cut(self, end: bool) -> int | None:
        """The sample of the open stretch where it is cut to become final, or ``None``.

        Cut in the middle of the first pause after speech; skip quiet before any speech (keeping
        ``lead_seconds`` of it); past ``max_segment_seconds``, cut at the quietest frame in the
        last third of that length.
        """
        energy, speech = self._frames()
        hop = int(self.rate * FRAME_SECONDS)
        pause = int(round(self.cfg.pause_seconds / FRAME_SECONDS))
        lead = int(round(self.cfg.lead_seconds / FRAME_SECONDS))
        flags = speech.tolist()
        if True not in flags:
            # nothing said yet: drop all but the last lead_seconds of quiet (at the end: all)
            if end:
                return None
            skip = len(flags) - lead - 1  # the last frame may be a partial one
            return skip * hop if skip > 0 else None
        first = flags.index(True)
        if first > lead:
            return (first - lead) * hop  # leading quiet, with nothing in it to decode
        quiet = 0
        for t in range(first, len(flags)):
            quiet = 0 if flags[t] else quiet + 1
            if quiet == pause and t + 1 < len(flags):  # a whole pause, not the stream's last frame
                return (t + 1 - pause + pause // 2) * hop
        longest = int(self.cfg.max_segment_seconds / FRAME_SECONDS)
        if len(flags) > longest:
            lo = 2 * longest // 3
            return (lo + int(torch.argmin(energy[lo:longest]))) * hop
        return None

    def _finalise(self, cut: int, decoder: Decoder) -> list[StreamEvent]:
        """Make ``open[:cut]`` final: decoded with word times if it holds speech, else skipped."""
        piece, start = self._open[:cut], self._open_start
        events = []
        speech = self._frames()[1][: -(-cut // int(self.rate * FRAME_SECONDS))]
        if bool(speech.any()):
            t = self._decode(piece, decoder, timestamps=True)
            offset = self._time(start)
            words = [
                {
                    "word": w.word,
                    "start": round(w.start + offset, 3),
                    "end": round(w.end + offset, 3),
                    "confidence": round(w.confidence, 4),
                }
                for w in t.words
            ]
            if t.text:
                event = StreamEvent("final", t.text, offset, self._time(start + cut), words)
                self.finals.append(event)
                events.append(event)
        energy = frame_energies_db([torch.from_numpy(piece)], self.rate)
        keep = int(self.cfg.context_seconds / FRAME_SECONDS)
        self._past_db = torch.cat([self._past_db, energy])[-keep:]
        self._open = self._open[cut:]
        self._open_start += cut
        return events

    def _decode(self, wave: np.ndarray, decoder: Decoder, timestamps: bool):
        return self.rec.transcribe(
            torch.from_numpy(wave), self.rate, decoder=decoder, word_timestamps=timestamps
        )

    def _time(self, sample: int) -> float:
        return round(sample / self.rate, 3)

    @property
    def text(self) -> str:
        """All final text so far."""
        return " ".join(e.text for e in self.finals)


class StreamResampler:
    """Resamples a stream chunk by chunk, exactly as ``torchaudio.functional.resample`` resamples
    the whole of it (the same windowed-sinc kernel, applied to the same padded signal, block by
    block as the input to each block arrives), so a stream can be kept at the model's rate from
    the start: what it holds no longer grows with its own rate.

    Args:
        orig: the stream's rate in Hz.
        new: the rate wanted.
    """

    MAX_KERNEL = 1 << 20  # values; a larger kernel (rates with a small common divisor) is rebuilt

    def __init__(self, orig: int, new: int) -> None:
        self.orig, self.new = orig, new
        self.gcd = math.gcd(orig, new)
        self.step_in, self.step_out = orig // self.gcd, new // self.gcd  # per block
        kernel, self.width = self._make_kernel()
        self.size = kernel.shape[-1]  # input samples one block reads
        self._kernel = kernel if kernel.numel() <= self.MAX_KERNEL else None
        self._buf = torch.zeros(self.width)  # the padded input from the next block's first sample
        self.taken = self.given = 0  # input samples pushed, output samples returned

    def _make_kernel(self) -> tuple[torch.Tensor, int]:
        from torchaudio.functional.functional import _get_sinc_resample_kernel

        return _get_sinc_resample_kernel(self.orig, self.new, self.gcd)

    def push(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave (N,)`` in; out ``(M,)``: the output samples whose inputs have all arrived."""
        if self.orig == self.new:
            return wave
        self.taken += len(wave)
        self._buf = torch.cat([self._buf, wave])
        return self._blocks()

    def flush(self) -> torch.Tensor:
        """The rest, the stream having ended (zeros after it, as the whole-signal resample pads)."""
        if self.orig == self.new:
            return torch.zeros(0)
        self._buf = torch.cat([self._buf, torch.zeros(self.width + self.step_in)])
        out = self._blocks(final=True)
        total = math.ceil(self.step_out * self.taken / self.step_in)
        return out[: max(0, total - (self.given - len(out)))]

    def _blocks(self, final: bool = False) -> torch.Tensor:
        count = (
            (len(self._buf) - self.size) // self.step_in + 1 if len(self._buf) >= self.size else 0
        )
        if count <= 0:
            return torch.zeros(0)
        kernel = self._kernel if self._kernel is not None else self._make_kernel()[0]
        used = self._buf[: (count - 1) * self.step_in + self.size]
        out = torch.nn.functional.conv1d(used[None, None], kernel, stride=self.step_in)
        out = out.transpose(1, 2).reshape(-1)  # (1, step_out, count) -> (count * step_out,)
        self._buf = self._buf[count * self.step_in :].clone()
        self.given += len(out)
        return out


def pcm16(wave: np.ndarray) -> bytes:
    """A float waveform in [-1, 1] as 16-bit little-endian PCM bytes (what a client sends)."""
    return (np.clip(wave, -1.0, 32767 / PCM_SCALE) * PCM_SCALE).round().astype("<i2").tobytes()
