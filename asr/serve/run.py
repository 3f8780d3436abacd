"""Running the application under uvicorn: in the foreground (``asr serve``) or in a thread."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from asr.checkpoint import pid_alive
from asr.serve.errors import ApiError, error_response

WS_MAX_MESSAGE = 1 << 20  # bytes in one WebSocket message: 32 s of 16 kHz PCM, plenty for a chunk
WS_MAX_QUEUE = 8  # messages a stream's socket holds unread (uvicorn's default 32: 32 MB)
HEADER_SECONDS = 10.0  # a request's headers must arrive this soon after the connection opens
KEEP_ALIVE_SECONDS = 5.0  # an idle connection between requests is closed after this
MAX_HEADER_BYTES = 16 * 1024  # request line and headers larger than this: 400 (h11's default)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def temporary_folder() -> Iterator[Path]:
    """A folder of this server process's own, ``TMP/asr-serve-UID/PID``, made the process's
    temporary folder (``tempfile.tempdir``) for the block: the uploads in flight and the lexicons
    the beam decoders spell from an ARPA LM go there. It is removed when the block ends (Ctrl-C;
    SIGTERM too, under :func:`asr.cli_args.sigterm_unwinds`); a folder whose process is gone (a
    ``kill -9``) is removed by the next server's start."""
    root = Path(tempfile.gettempdir()) / f"asr-serve-{os.getuid() if hasattr(os, 'getuid') else 0}"
    root.mkdir(mode=0o700, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and not pid_alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / str(os.getpid())
    folder.mkdir(exist_ok=True)
    previous, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools where installed, else h11) that also closes a connection
    whose request headers have not all arrived :attr:`header_seconds` after it opened or after its
    last response, and answers a request past :attr:`max_connections` with the API's own 503.

    uvicorn times out only an idle keep-alive connection, and only once it has answered on it: a
    connection that sends nothing, or its headers a byte a second (slowloris), was held forever.
    A body is the application's to time out (``ServeConfig.timeout``), a WebSocket its own.
    uvicorn's ``limit_concurrency`` counts as :meth:`_over_capacity` does, but answers in plain
    text without ``Retry-After``; here a client gets the JSON error every other 503 has.
    """

    header_seconds = HEADER_SECONDS
    max_connections: int | None = None

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._inner_app = self.app
        self.app = self._capped_app

    async def _capped_app(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and self._over_capacity():
            busy = ApiError(
                503,
                "busy",
                f"{self.max_connections} connections are open, the limit; try again shortly",
                {"Retry-After": "1", "Connection": "close"},
            )
            await error_response(busy)(scope, receive, send)
            return
        await self._inner_app(scope, receive, send)

    def _over_capacity(self) -> bool:
        """uvicorn's ``limit_concurrency`` test, from inside the request's own task: the open
        connections (this one among them) reach the cap, or the other requests in flight do."""
        cap = self.max_connections
        return cap is not None and (len(self.connections) >= cap or len(self.tasks) - 1 >= cap)

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def, override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_late)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_late)

    def handle_websocket_upgrade(self, *args) -> None:  # type: ignore[no-untyped-def]
        self._header_timer.cancel()  # the connection is the WebSocket protocol's from here
        super().handle_websocket_upgrade(*args)

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer.cancel()
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        # no request since the connection opened or since the last response: a new request's
        # complete headers start a new cycle (a partial request is buffered by the parser)
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()


def _config(app: Starlette, log_level: str, **where) -> uvicorn.Config:
    """uvicorn's settings for ``app``, with the connection limits of its ``ServeConfig``."""
    cfg = app.state.api.cfg
    protocol = type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {
            "header_seconds": min(HEADER_SECONDS, cfg.timeout),
            "max_connections": cfg.max_connections,
        },
    )
    return uvicorn.Config(
        app,
        log_level=log_level,
        http=protocol,
        ws_max_size=WS_MAX_MESSAGE,
        ws_max_queue=WS_MAX_QUEUE,
        # no keepalive pings: a stream that sends audio faster than it is decoded is read no
        # further until a decoding step (backpressure), so the client's answer to a ping waits
        # behind its own audio, and uvicorn's 20 s ping + 20 s timeout dropped such streams
        # (1006, no close frame) after 40 s. A dead client is found by the stream's own timeout:
        # nothing arrives for --timeout seconds, and it is closed with 408 idle_timeout
        ws_ping_interval=None,
        timeout_keep_alive=min(KEEP_ALIVE_SECONDS, cfg.timeout),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=5,
        **where,
    )


def serve(
    app: Starlette, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM), then return."""
    try:
        uvicorn.Server(_config(app, log_level, host=host, port=port)).run()
    except KeyboardInterrupt:
        pass  # uvicorn shut down gracefully, then raised the signal again: stopping is the plan


class ServerThread:
    """``app`` served on a loopback port in a background thread, for tests and benchmarks.

    The socket is bound before the thread starts (port 0: any free port), so :attr:`url` is
    ready at once and no other process can take the port in between::

        with ServerThread(app) as server:
            httpx.get(server.url + "/v1/health")
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(_config(app, "warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
