"""The HTTP and WebSocket API and the page, as one Starlette application.

``POST /v1/transcribe``: an audio file (multipart field ``file``, or the raw body) -> JSON with
text, timed words and subtitle segments, or ``?format=srt|vtt|txt``. ``GET /v1/health``,
``GET /v1/model``. ``WS /v1/stream``: 16-bit PCM in, partial and final transcripts out
(:mod:`asr.serve.streaming`). ``GET /``: the page (``static/``). With an enrolment folder
(``asr serve --enrol-dir``, :mod:`asr.serve.enrolment`): ``GET /v1/enrol`` (where it stands),
``GET /v1/enrol/prompts?n=N``, ``PUT|DELETE /v1/enrol/recordings/{prompt id}``,
``POST /v1/enrol/start``, ``GET /v1/enrol/model`` (the personal model's file); then
``?model=personal`` on ``/v1/transcribe`` and ``/v1/stream`` uses the personal model.

Every error is JSON, ``{"error": {"status": 413, "code": "too_large", "message": "..."}}``:

====  ==================  =====================================================================
400   bad_request         an empty body, a multipart body without a file, an unknown ``format``
400   too_little_speech   an enrolment started with less speech recorded than it needs
403   enrolment_off       an enrolment request to a server started without ``--enrol-dir``
404   not_found           an unknown path or prompt, or ``model=personal`` before there is one
408   upload_timeout      the body did not arrive within the request timeout
409   enrolment_running   an enrolment started while one runs
408   idle_timeout        a stream sent nothing for the request timeout (closed with 1008)
413   too_large           more bytes than ``max_upload_mb``, or audio longer than ``max_duration``
415   unsupported_type    a Content-Type that is not audio (``audio/*``, octet-stream, multipart)
422   unreadable_audio    a body that is not audio ``asr`` can read (the reader's own words)
500   internal_error      the server failed (its log has the traceback; a stream closes with 1011)
503   busy                every decode slot taken and the waiting line full, no slot in time, or
                          ``max_uploads`` bodies arriving
504   decode_timeout      the decode itself ran past the request timeout
====  ==================  =====================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from asr.audio import (
    MAX_RESAMPLE_KERNEL,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioError,
    audio_duration,
    resample_kernel_size,
)
from asr.decode import GreedyDecoder
from asr.formats import render, to_dict
from asr.prompts import choose_prompts
from asr.serve.enrolment import Enrolment
from asr.serve.errors import ApiError, error_response
from asr.serve.slots import Busy, DecodeSlots, TimedOut
from asr.serve.stream_socket import StreamRun, close_with_error
from asr.serve.streaming import StreamConfig, StreamTranscriber
from asr.transcribe import Decoder, Recognizer, Transcript

log = logging.getLogger("asr.serve")

STATIC = Path(__file__).parent / "static"
RESPONSE_FORMATS = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
# bodies taken as audio besides audio/*: what browsers and curl label recordings and files with
RAW_AUDIO_TYPES = {"application/octet-stream", "video/webm", "video/ogg", "video/mp4"}
SUFFIXES = {  # a raw body's Content-Type -> the temporary file's extension (for readers that care)
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/webm": ".webm",
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
COPY_BYTES = 1 << 20  # a multipart upload is copied to its own file this much at a time
PAGE_POLICY = (  # the page loads nothing from elsewhere
    "default-src 'self'; media-src 'self' blob:; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; style-src 'self'; script-src 'self'"
)


@dataclass
class ServeConfig:
    """The server's limits (defaults fit one modest machine; ``asr serve --help`` sets them).

    Attributes:
        max_upload_mb: the largest request body, in megabytes (10^6 bytes).
        max_duration: the longest audio, in seconds, of a file or a stream.
        timeout: seconds a request may take, upload, wait and decode together; a stream may stay
            silent (send nothing) this long.
        max_decodes: decodes running at once (each holds a decoder, and a copy of its LM).
        max_waiting: requests that may wait for a decode; the next one gets 503.
        max_streams: WebSocket streams open at once; the next one is refused (503).
        max_uploads: request bodies arriving at once (each goes to disk as it comes); the next
            request gets 503.
        max_connections: connections open at once (counted as uvicorn's ``limit_concurrency``
            counts, in :class:`asr.serve.run.HeaderTimeoutProtocol`); a request on one past it
            gets 503 ``busy`` with ``Retry-After``. A connection is closed when its headers take
            longer than 10 s (or ``timeout``, if shorter), or it is idle 5 s between requests.
        stream: when a stream's text becomes final.
    """

    max_upload_mb: float = 25.0
    max_duration: float = 600.0
    timeout: float = 120.0
    max_decodes: int = 2
    max_waiting: int = 16
    max_streams: int = 4
    max_uploads: int = 16
    max_connections: int = 64
    stream: StreamConfig = field(default_factory=StreamConfig)

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"serve: {name} must be > 0, got {getattr(self, name)}")
        for name, low in (
            ("max_decodes", 1),
            ("max_waiting", 0),
            ("max_streams", 1),
            ("max_uploads", 1),
            ("max_connections", 1),
        ):
            if getattr(self, name) < low:
                raise ValueError(f"serve: {name} must be >= {low}, got {getattr(self, name)}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


class ServerTiming:
    """Where a request's time went, as a ``Server-Timing`` header (browsers' developer tools show
    it; ``benchmarks/serve.py`` reads it): each :meth:`lap` names the milliseconds since the last.

    The stages of ``POST /v1/transcribe``: ``upload`` (the body, and its multipart form parsed),
    ``probe`` (saved to a temporary file and its duration read), ``wait`` (for a decode slot and
    its thread), ``decode`` (:meth:`Recognizer.transcribe`: read, features, model, search, word
    times), ``return`` (back to the event loop), ``render`` (JSON or subtitles), and ``total``.
    """

    def __init__(self, started: float) -> None:
        self.started = self.last = started
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append((name, now - self.last))
        self.last = now

    def header(self) -> str:
        laps = [*self.laps, ("total", self.last - self.started)]
        return ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in laps)


def default_decoder_factory(rec: Recognizer) -> Callable[[], Decoder]:
    """Builds what ``rec.transcribe`` decodes with by default: the bundled model's beam search
    with its LM, other models' greedy decoding; a new one per call (threads cannot share one)."""
    if rec.decoder_config is None:
        return lambda: GreedyDecoder(rec.tokenizer)

    def make() -> Decoder:
        from asr.config import load_decoder_config
        from asr.decode import build_decoder

        return build_decoder(rec.tokenizer, load_decoder_config(rec.decoder_config))

    return make


def describe_decoder(decoder: Decoder) -> dict:
    """What ``GET /v1/model`` says of a decoder (file names, not the server's paths)."""
    cfg = getattr(decoder, "cfg", None)
    if cfg is None:
        return {"kind": "greedy"}
    return {
        "kind": "beam",
        "beam_size": cfg.beam_size,
        "beam_size_token": cfg.beam_size_token,
        "beam_threshold": cfg.beam_threshold,
        "lm": Path(cfg.lm).name if cfg.lm else None,
        "lm_weight": cfg.lm_weight if cfg.lm else None,
        "word_score": cfg.word_score,
    }


def create_app(
    rec: Recognizer,
    cfg: ServeConfig | None = None,
    make_decoder: Callable[[], Decoder] | None = None,
    model_name: str = "bundled",
    enrolment: Enrolment | None = None,
) -> Starlette:
    """The application: ``rec`` loaded once, ``cfg.max_decodes`` decoders built now.

    Args:
        rec: the model (:func:`asr.transcribe.load_model`).
        cfg: limits.
        make_decoder: builds one decoder (``None``: :func:`default_decoder_factory`).
        model_name: what ``GET /v1/model`` calls the model (its file name, or "bundled").
        enrolment: where "Train on my voice" keeps its recordings and model (None: refused).
    """
    cfg = cfg or ServeConfig()
    slots = DecodeSlots(
        make_decoder or default_decoder_factory(rec), cfg.max_decodes, cfg.max_waiting
    )
    api = _Api(rec, cfg, slots, model_name, enrolment)
    routes = [
        Route("/", api.page),
        Route("/v1/health", api.health),
        Route("/v1/model", api.model),
        Route("/v1/transcribe", api.transcribe, methods=["POST"]),
        WebSocketRoute("/v1/stream", api.stream),
        Route("/v1/enrol", api.enrol_status),
        Route("/v1/enrol/prompts", api.enrol_prompts),
        Route("/v1/enrol/recordings/{prompt}", api.enrol_recording, methods=["PUT", "DELETE"]),
        Route("/v1/enrol/start", api.enrol_start, methods=["POST"]),
        Route("/v1/enrol/model", api.enrol_model),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail), exc.headers))

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        slots.close()
        if enrolment is not None:
            enrolment.close()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, ApiError: api_error, 500: internal_error},
        lifespan=lifespan,
    )
    app.state.api = api
    return app


class _Api:
    """The endpoints, around one model, its decode slots and the limits."""

    def __init__(
        self,
        rec: Recognizer,
        cfg: ServeConfig,
        slots: DecodeSlots,
        model_name: str,
        enrolment: Enrolment | None,
    ):
        self.rec, self.cfg, self.slots, self.model_name = rec, cfg, slots, model_name
        self.enrolment = enrolment
        self.streams = 0  # WebSocket streams open now
        self.uploads = 0  # request bodies arriving now
        self.started = time.time()

    async def page(self, request: Request) -> Response:
        headers = {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"}
        return FileResponse(STATIC / "index.html", headers=headers)

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "uptime_seconds": round(time.time() - self.started, 1),
                "decodes_running": self.slots.active,
                "decodes_waiting": self.slots.queued,
                "streams_open": self.streams,
            }
        )

    async def model(self, request: Request) -> Response:
        rec = self.rec
        return JSONResponse(
            {
                "model": self.model_name,
                "parameters": sum(p.numel() for p in rec.model.parameters()),
                "sample_rate": rec.sample_rate,
                "frame_seconds": rec.frame_seconds,
                "vocabulary": rec.tokenizer.tokens,
                "vocabulary_size": len(rec.tokenizer),
                "model_config": asdict(rec.model.cfg),
                "features": asdict(rec.features.cfg),
                "training": rec.info,
                "decoder": describe_decoder(self.slots.first_decoder),
                "device": str(rec.device),
                "threads": torch.get_num_threads(),
                "precision": rec.precision.name,
                "limits": {
                    "max_upload_bytes": self.cfg.max_upload_bytes,
                    "max_duration_seconds": self.cfg.max_duration,
                    "timeout_seconds": self.cfg.timeout,
                    "max_decodes": self.cfg.max_decodes,
                    "max_waiting": self.cfg.max_waiting,
                    "max_streams": self.cfg.max_streams,
                    "max_uploads": self.cfg.max_uploads,
                    "max_connections": self.cfg.max_connections,
                },
                "stream": asdict(self.cfg.stream),
                "enrolment": self.enrolment is not None,
            }
        )

    async def _recognizer(self, params) -> Recognizer:
        """The model a request asks for: ``model=personal`` (the enrolment's, loaded in a worker
        thread when new), else the server's."""
        name = params.get("model", "")
        if name in ("", "default", "bundled"):
            return self.rec
        if name != "personal":
            raise ApiError(
                400, "bad_request", f"model must be 'personal' or left out, not {name!r}"
            )
        personal = None
        if self.enrolment is not None:
            personal = await run_in_threadpool(self.enrolment.personal_model)
        if personal is None:
            raise ApiError(404, "not_found", "there is no personal model (yet): enrol first")
        return personal

    # --- POST /v1/transcribe ---

    async def transcribe(self, request: Request) -> Response:
        started = time.monotonic()
        timing = ServerTiming(started)
        fmt = request.query_params.get("format", "json")
        if fmt not in RESPONSE_FORMATS:
            raise ApiError(
                400,
                "bad_request",
                f"unknown format {fmt!r}; choose from {', '.join(RESPONSE_FORMATS)}",
            )
        rec = await self._recognizer(request.query_params)
        name, path = await self._receive(request)
        timing.lap("upload")
        handed_over = False  # once the decode job starts, it removes the file
        try:
            try:
                duration = await run_in_threadpool(audio_duration, path)
            except AudioError as exc:
                raise ApiError(422, "unreadable_audio", _own_words(exc, path, name)) from None
            if duration > self.cfg.max_duration:
                raise ApiError(
                    413,
                    "too_large",
                    f"{name}: {duration:.1f} s of audio, over the limit of {self.cfg.max_duration:g} s",
                )
            timing.lap("probe")

            def job(decoder: Decoder) -> Transcript:
                nonlocal handed_over
                handed_over = True
                timing.lap("wait")
                try:
                    return rec.transcribe(path, decoder=decoder, word_timestamps=fmt != "txt")
                finally:
                    timing.lap("decode")
                    path.unlink(missing_ok=True)

            left = self.cfg.timeout - (time.monotonic() - started)
            try:
                transcript = await self._decode(job, left)
            except AudioError as exc:
                raise ApiError(422, "unreadable_audio", _own_words(exc, path, name)) from None
            timing.lap("return")
        finally:
            if not handed_over:
                path.unlink(missing_ok=True)
        transcript.path = name
        if fmt == "json":
            response: Response = JSONResponse(to_dict(transcript))
        else:
            response = Response(render(transcript, fmt), media_type=RESPONSE_FORMATS[fmt])
        timing.lap("render")
        response.headers["Server-Timing"] = timing.header()
        return response

    async def _receive(self, request: Request) -> tuple[str, Path]:
        """The request's file in a temporary file (:meth:`_read_upload`), counted against
        ``max_uploads`` while it arrives and bounded by the timeout."""
        if self.uploads >= self.cfg.max_uploads:
            raise ApiError(
                503,
                "busy",
                f"{self.cfg.max_uploads} uploads are arriving, the limit; try again shortly",
                {"Retry-After": "1"},
            )
        self.uploads += 1
        try:
            return await asyncio.wait_for(self._read_upload(request), self.cfg.timeout)
        except asyncio.TimeoutError:
            raise ApiError(
                408, "upload_timeout", f"the body did not arrive within {self.cfg.timeout:g} s"
            ) from None
        finally:
            self.uploads -= 1

    async def _decode(self, job: Callable[[Decoder], Transcript], timeout: float) -> Transcript:
        """Run ``job`` in a decode slot; a full line or a passed deadline as an :class:`ApiError`."""
        try:
            return await self.slots.run(job, timeout)
        except Busy:
            raise ApiError(
                503,
                "busy",
                f"all {self.cfg.max_decodes} decode slots are busy and {self.cfg.max_waiting} "
                "requests are waiting; try again shortly",
                {"Retry-After": "1"},
            ) from None
        except TimedOut as exc:
            if exc.stage == "waiting":
                raise ApiError(
                    503,
                    "busy",
                    f"no decode slot came free within the {self.cfg.timeout:g} s timeout",
                    {"Retry-After": "5"},
                ) from None
            raise ApiError(
                504, "decode_timeout", f"decoding ran past the {self.cfg.timeout:g} s timeout"
            ) from None

    async def _read_upload(self, request: Request) -> tuple[str, Path]:
        """The uploaded file's name, and a temporary file holding it (the caller removes it),
        within the size limit. The body goes to disk as it arrives (a multipart form's file part
        through Starlette's parser, which keeps 1 MB in memory): nothing holds it whole in RAM.

        Raises:
            ApiError: 400 (empty, no file), 413 (too large), 415 (not audio).
        """
        content_type = request.headers.get("content-type", "application/octet-stream")
        media = content_type.split(";")[0].strip().lower()
        multipart = media == "multipart/form-data"
        if not (multipart or media.startswith("audio/") or media in RAW_AUDIO_TYPES):
            raise ApiError(
                415,
                "unsupported_type",
                f"Content-Type {media!r} is not audio: send a multipart form with a 'file' field "
                "(curl -F file=@x.wav) or the file itself as the body with an audio/* or "
                "application/octet-stream type (curl --data-binary @x.wav -H 'Content-Type: audio/wav')",
            )
        limit = self.cfg.max_upload_bytes
        too_large = ApiError(
            413, "too_large", f"the body is over the limit of {self.cfg.max_upload_mb:g} MB"
        )
        declared = request.headers.get("content-length", "")
        if _is_decimal(declared) and int(declared) > limit:
            raise too_large

        async def body() -> AsyncIterator[bytes]:
            size = 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    yield chunk
            except ClientDisconnect:
                raise ApiError(
                    400, "bad_request", "the client left before its body arrived"
                ) from None

        if multipart:
            return await _form_file(request, body())
        name = request.query_params.get("filename") or "upload" + SUFFIXES.get(media, "")
        path = _temporary(_suffix(name))
        try:
            size = 0
            with path.open("wb") as f:
                async for chunk in body():
                    f.write(chunk)
                    size += len(chunk)
            if not size:
                raise ApiError(400, "bad_request", "the body is empty: send an audio file")
        except BaseException:  # an error, a timeout's cancellation: no file left behind
            path.unlink(missing_ok=True)
            raise
        return name, path

    # --- enrolment: "Train on my voice" ---

    def _enrolment(self) -> Enrolment:
        if self.enrolment is None:
            raise ApiError(
                403, "enrolment_off",
                "this server does not take enrolments: start it with asr serve --enrol-dir DIR",
            )  # fmt: skip
        return self.enrolment

    async def enrol_status(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._enrolment().status))

    async def enrol_prompts(self, request: Request) -> Response:
        self._enrolment()
        n, start = (request.query_params.get(k, d) for k, d in (("n", "20"), ("start", "0")))
        if not (_is_decimal(n) and _is_decimal(start)):
            raise ApiError(400, "bad_request", "n and start must be whole numbers")
        try:
            prompts = choose_prompts(int(n), int(start))
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return JSONResponse({"prompts": [{"id": i, "text": t} for i, t in prompts]})

    async def enrol_recording(self, request: Request) -> Response:
        """PUT: a prompt's recording (the body as ``/v1/transcribe`` takes it); DELETE: drop it."""
        enrolment = self._enrolment()
        prompt = enrolment.check_prompt(request.path_params["prompt"])
        if enrolment.running:
            raise ApiError(409, "enrolment_running", "the recordings are in use: wait for the end")
        if request.method == "DELETE":
            await run_in_threadpool(enrolment.discard, prompt)
            return JSONResponse(await run_in_threadpool(enrolment.status))
        name, path = await self._receive(request)
        try:
            try:
                seconds = await run_in_threadpool(audio_duration, path)
            except AudioError as exc:
                raise ApiError(422, "unreadable_audio", _own_words(exc, path, name)) from None
            status = await run_in_threadpool(enrolment.keep, prompt, path, _suffix(name), seconds)
        finally:
            path.unlink(missing_ok=True)
        return JSONResponse(status)

    async def enrol_start(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._enrolment().start), 202)

    async def enrol_model(self, request: Request) -> Response:
        path = self._enrolment().out / "personal.pt"
        if not path.is_file() or self._enrolment().running:
            raise ApiError(404, "not_found", "there is no personal model (yet): enrol first")
        return FileResponse(path, filename="personal.pt", media_type="application/octet-stream")

    # --- WS /v1/stream ---

    async def stream(self, ws: WebSocket) -> None:
        """Protocol: connect to ``/v1/stream?sample_rate=16000``; the server says
        ``{"type": "ready", ...}``; send binary messages of 16-bit little-endian mono PCM at that
        rate, then the text ``{"type": "end"}``. The server sends ``partial`` and ``final``
        events (:class:`~asr.serve.streaming.StreamEvent`), then ``{"type": "done", "text": ...}``
        and closes. An ``{"type": "error", ...}`` event (with an HTTP-like ``status``) is followed
        by the close."""
        await ws.accept()
        if self.streams >= self.cfg.max_streams:
            await close_with_error(
                ws, 503, "busy", f"{self.cfg.max_streams} streams are open, the limit", 1013
            )
            return
        rate_text = ws.query_params.get("sample_rate", "16000")
        if not _is_decimal(rate_text) or not MIN_SAMPLE_RATE <= int(rate_text) <= MAX_SAMPLE_RATE:
            await close_with_error(
                ws,
                400,
                "bad_request",
                f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, "
                f"got {rate_text!r}",
                1008,
            )
            return
        rate = int(rate_text)
        if resample_kernel_size(rate, self.rec.sample_rate) > MAX_RESAMPLE_KERNEL:
            await close_with_error(
                ws, 400, "bad_request",
                f"sample_rate {rate} Hz is too irregular a ratio to {self.rec.sample_rate} Hz to "
                "resample as it streams: send 8000, 11025, 16000, 22050, 32000, 44100 or 48000 "
                "Hz (any multiple of 100 Hz is taken)",
                1008,
            )  # fmt: skip
            return
        try:
            rec = await self._recognizer(ws.query_params)
        except ApiError as exc:
            await close_with_error(ws, exc.status, exc.code, exc.message, 1008)
            return
        self.streams += 1
        try:
            await self._run_stream(ws, int(rate_text), rec)
        finally:
            self.streams -= 1

    async def _run_stream(self, ws: WebSocket, sample_rate: int, rec: Recognizer) -> None:
        session = StreamTranscriber(rec, sample_rate, self.cfg.stream, self.cfg.max_duration)
        await ws.send_json(
            {
                "type": "ready",
                "sample_rate": sample_rate,
                "model_sample_rate": rec.sample_rate,
                "pause_seconds": self.cfg.stream.pause_seconds,
                "max_seconds": self.cfg.max_duration,
            }
        )
        await StreamRun(ws, session, self.slots, self.cfg.timeout).run()


async def _form_file(request: Request, body: AsyncIterator[bytes]) -> tuple[str, Path]:
    """The file of a multipart body (field ``file``, else its only file), copied to a temporary
    file as :meth:`_Api._read_upload` returns it."""
    try:
        form = await MultiPartParser(request.headers, body, max_files=1, max_fields=16).parse()
    except MultiPartException as exc:
        raise ApiError(
            400, "bad_request", f"cannot read the multipart body: {exc.message}"
        ) from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise ApiError(
                400, "bad_request", "the multipart body has no file: send it as the field 'file'"
            )
        name = upload.filename or "upload"
        path = await run_in_threadpool(_copy_to_temporary, upload.file, _suffix(name))
    finally:
        await form.close()
    if not path.stat().st_size:
        path.unlink()
        raise ApiError(400, "bad_request", f"{name}: the uploaded file is empty")
    return name, path


def _temporary(suffix: str) -> Path:
    """A new empty file for an upload (in ``asr serve``'s own temporary folder)."""
    fd, name = tempfile.mkstemp(prefix="asr-serve-", suffix=suffix)
    os.close(fd)
    return Path(name)


def _copy_to_temporary(src: BinaryIO, suffix: str) -> Path:
    path = _temporary(suffix)
    try:
        src.seek(0)
        with path.open("wb") as f:
            shutil.copyfileobj(src, f, COPY_BYTES)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _is_decimal(text: str) -> bool:
    """Whether ``text`` is ASCII digits (``str.isdigit`` also takes '²', which ``int`` refuses)."""
    return re.fullmatch(r"[0-9]{1,18}", text) is not None


def _suffix(name: str) -> str:
    """The extension of a client's file name, if it looks like one (it names a temporary file)."""
    suffix = Path(name).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""


def _own_words(exc: AudioError, path: Path, name: str) -> str:
    """The reader's message about the temporary file, naming the upload instead."""
    return str(exc).replace(str(path), name)
