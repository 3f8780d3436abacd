"""A bounded number of decodes at once, in worker threads, each with a decoder of its own.

Decoding is CPU-bound and runs outside the event loop, so the server keeps answering (health, the
page, 503s) while it works. Beam search through flashlight keeps its search state inside the
decoder object, so two threads must never share one: each running decode borrows one of
``running`` decoders built at start-up (the LM is loaded once per slot).
"""

from __future__ import annotations

import asyncio
import os
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from asr.transcribe import Decoder

T = TypeVar("T")


def decode_threads(running: int, cores: int | None = None) -> int:
    """CPU threads for each of ``running`` decodes at once: the cores but one shared out, at least 1.

    torch's thread teams synchronise at every operation, so one thread held up by another
    runnable thread stalls its whole team; with more threads than cores, some always are. The
    event loop (uploads, HTTP parsing, JSON) needs a core of its own while decodes run, so one is
    left to it. ``benchmarks/serve.py`` measures the choice (figures in docs/history.md).
    """
    cores = cores or os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, running))


class Busy(Exception):
    """Every decode slot is taken and the waiting line is full."""


class TimedOut(Exception):
    """The deadline passed while ``stage`` ("waiting" for a slot, or "decoding")."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


class DecodeSlots:
    """At most ``running`` decodes at once; up to ``waiting`` more wait their turn.

    Args:
        make_decoder: builds one decoder; called ``running`` times, now.
        running: decodes that may run at once (worker threads).
        waiting: requests that may wait for a slot; one more is refused (:class:`Busy`).
    """

    def __init__(self, make_decoder: Callable[[], Decoder], running: int, waiting: int) -> None:
        if running < 1 or waiting < 0:
            raise ValueError(
                f"decode slots: need running >= 1 and waiting >= 0, got {running}, {waiting}"
            )
        self.running, self.waiting = running, waiting
        self.decoders: queue.SimpleQueue[Decoder] = queue.SimpleQueue()
        self.first_decoder = make_decoder()
        self.decoders.put(self.first_decoder)
        for _ in range(running - 1):
            self.decoders.put(make_decoder())
        self._executor = ThreadPoolExecutor(running, thread_name_prefix="asr-decode")
        self._free = asyncio.Semaphore(running)
        self.active = 0  # decodes running now
        self.queued = 0  # callers waiting for a slot

    async def run(
        self, job: Callable[[Decoder], T], timeout: float | None, refuse_when_full: bool = True
    ) -> T:
        """Run ``job(decoder)`` in a worker thread once a slot is free.

        Args:
            job: the decode; it gets a decoder no other thread uses meanwhile.
            timeout: seconds to wait for a slot and decode together (``None``: no limit). A job
                still running at the deadline keeps its slot until it ends.
            refuse_when_full: raise :class:`Busy` at once when the waiting line is full (a
                stream's steps pass ``False``: its open stream is already counted).

        Raises:
            Busy: no slot and no room to wait.
            TimedOut: the deadline passed; ``stage`` says whether the job had started.
        """
        if refuse_when_full and self.active + self.queued >= self.running + self.waiting:
            raise Busy()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self.queued += 1
        try:
            await asyncio.wait_for(self._free.acquire(), _left(deadline, loop))
        except asyncio.TimeoutError:
            raise TimedOut("waiting") from None
        finally:
            self.queued -= 1
        self.active += 1
        future = loop.run_in_executor(self._executor, self._call, job)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), _left(deadline, loop))
        except asyncio.TimeoutError:
            raise TimedOut("decoding") from None

    def _call(self, job: Callable[[Decoder], T]) -> T:
        decoder = self.decoders.get_nowait()  # never empty: the semaphore admits `running` jobs
        try:
            return job(decoder)
        finally:
            self.decoders.put(decoder)

    def _release(self, future: asyncio.Future) -> None:
        self.active -= 1
        self._free.release()
        if not future.cancelled():
            future.exception()  # a job whose caller gave up: its error is not "never retrieved"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _left(deadline: float | None, loop: asyncio.AbstractEventLoop) -> float | None:
    return None if deadline is None else max(0.0, deadline - loop.time())
