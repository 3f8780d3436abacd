"""Running the application under uvicorn: in the foreground (``asr serve``) or in a thread."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

WS_MAX_MESSAGE = 1 << 20  # bytes in one WebSocket message: 32 s of 16 kHz PCM, plenty for a chunk


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config(app: Starlette, log_level: str, **where) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        ws_max_size=WS_MAX_MESSAGE,
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
