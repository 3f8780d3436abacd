"""``asr serve``: transcription over HTTP and WebSocket, and a page to try it in a browser.

Needs the ``serve`` extra (``pip install -e ".[serve]"``): Starlette, uvicorn, python-multipart
and websockets.

Modules: :mod:`~asr.serve.app` (the endpoints and limits), :mod:`~asr.serve.errors` (the JSON
error a client gets), :mod:`~asr.serve.streaming` (partial and final text of a live stream, no
sockets), :mod:`~asr.serve.stream_socket` (one WebSocket stream: receiving and decoding tasks),
:mod:`~asr.serve.slots` (bounded decodes in worker threads), :mod:`~asr.serve.run` (uvicorn),
``static/`` (the page).
"""

from asr.serve.app import ServeConfig, create_app
from asr.serve.run import ServerThread, is_loopback, serve, temporary_folder
from asr.serve.slots import decode_threads
from asr.serve.streaming import StreamConfig, StreamTranscriber

__all__ = [
    "ServeConfig",
    "ServerThread",
    "StreamConfig",
    "StreamTranscriber",
    "create_app",
    "decode_threads",
    "is_loopback",
    "serve",
    "temporary_folder",
]
