"""One WebSocket stream of ``WS /v1/stream``: the socket side of :mod:`asr.serve.streaming`.

A task receives binary 16-bit PCM and the closing ``{"type": "end"}``; a task decodes what arrived
in a decode slot (:mod:`asr.serve.slots`) and sends partial and final text. An error closes the
socket with a JSON message and a close code (1008 for the client's mistakes, 1009 for too much
audio, 1011 for the server's own failures).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from asr.audio import AudioError
from asr.serve.errors import ApiError
from asr.serve.slots import DecodeSlots
from asr.serve.streaming import StreamTranscriber

log = logging.getLogger("asr.serve")


class StreamRun:
    """One open stream: a task receiving audio and a task decoding it, until ``end`` or an error.

    The receiver pushes each binary message into ``session`` and wakes the decoder, which runs one
    :meth:`StreamTranscriber.step` in a decode slot over all audio that arrived meanwhile (so a
    slow decode never queues up steps) and sends its events.
    """

    def __init__(
        self, ws: WebSocket, session: StreamTranscriber, slots: DecodeSlots, timeout: float
    ) -> None:
        self.ws, self.session, self.slots, self.timeout = ws, session, slots, timeout
        self.wake = asyncio.Event()  # audio arrived, or the end
        self.ended = asyncio.Event()  # the client sent {"type": "end"}
        self.stepped = asyncio.Event()  # a step took the pending audio

    async def run(self) -> None:
        receiver = asyncio.create_task(self.receive())
        decoder = asyncio.create_task(self.decode())
        try:
            finished, _ = await asyncio.wait(
                {receiver, decoder}, return_when=asyncio.FIRST_EXCEPTION
            )
            for task in finished:
                task.result()  # raise what failed
            await decoder
        except WebSocketDisconnect:
            return
        except ApiError as exc:
            close = {413: 1009, 500: 1011}.get(exc.status, 1008)
            await close_with_error(self.ws, exc.status, exc.code, exc.message, close)
            return
        except Exception as exc:
            log.exception("stream failed")
            await close_with_error(
                self.ws, 500, "internal_error", f"{type(exc).__name__}: {exc}", 1011
            )
            return
        finally:
            for task in (receiver, decoder):
                task.cancel()
        await self.ws.close(1000)

    async def receive(self) -> None:
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.timeout)
            except asyncio.TimeoutError:
                raise ApiError(
                    408, "idle_timeout", f"nothing arrived for {self.timeout:g} s"
                ) from None
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                try:
                    self.session.push(message["bytes"])
                except AudioError as exc:
                    raise ApiError(413, "too_large", str(exc)) from None
                while self.session.backlogged:  # backpressure: read no more until a step
                    self.stepped.clear()
                    self.wake.set()
                    await self.stepped.wait()
            elif is_end(message.get("text")):
                self.ended.set()
                self.wake.set()
                return
            else:
                raise ApiError(
                    400,
                    "bad_request",
                    'send binary 16-bit PCM, then the text {"type": "end"}; '
                    f"got text {str(message.get('text'))[:80]!r}",
                )
            self.wake.set()

    async def decode(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            end = self.ended.is_set()
            step = functools.partial(self.session.step, end=end)
            events = await self.slots.run(step, timeout=None, refuse_when_full=False)
            self.stepped.set()
            for event in events:
                await self.ws.send_json(event.to_dict())
            if end:
                done = {
                    "type": "done",
                    "text": self.session.text,
                    "duration": round(self.session.seconds, 3),
                }
                await self.ws.send_json(done)
                return


def is_end(text: str | None) -> bool:
    try:
        return bool(text) and json.loads(text) == {"type": "end"}
    except json.JSONDecodeError:
        return False


async def close_with_error(ws: WebSocket, status: int, code: str, message: str, close: int) -> None:
    try:
        await ws.send_json({"type": "error", "status": status, "code": code, "message": message})
        await ws.close(close)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left first
