"""``asr serve`` under load with bad requests among the good: throughput, latency, memory.

    python benchmarks/serve_load.py                          # 16 and 32 clients, default decoding
    python benchmarks/serve_load.py --decoder greedy --clients 4 --requests 40   # a quick look
    python benchmarks/serve_load.py --exhaust        # 4 maximal streams + 32 maximal uploads
    python benchmarks/serve_load.py --exhaust --pin  # the server on one core, this client on the rest

``asr serve`` runs as a child process on a free loopback port with its default limits. Each
client posts one request after another; every fifth request is bad, in turn: a text body
(415), random bytes as audio (422), an empty body (400), a body over ``--max-upload-mb`` (413).
The good ones are the clips of ``examples/`` (multipart, JSON with word times). A 503 is retried
after the ``Retry-After`` it names (the retries are counted; the request's latency includes its
waits). Meanwhile ``GET /v1/health`` is asked every 0.5 s: its slowest answer says whether the
server kept answering.

Printed per client count: answers per second (all final answers, bad ones included), good answers
per second, latency p50/p95 of good and of bad requests, answers by status, 503 retries, the
slowest health answer, and the server's peak resident memory (VmHWM, Linux) and its resident
memory after the run. Client and server share this machine's cores, unless ``--pin`` (Linux) puts
the server on the first core and this client on the others: a stand-in for a client on another
machine, so that neither starves the other (the server then has one core, not its usual all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from serve import start_server  # benchmarks/serve.py, beside this script

from asr.audio import AUDIO_EXTENSIONS

ROOT = Path(__file__).resolve().parent.parent
BAD_KINDS = ("text", "garbage", "empty", "oversize")


def memory_mb(pid: int, field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` of a process, in MB (0 where /proc is missing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def request_for(i: int, files: list[Path], oversize: int) -> tuple[bool, dict]:
    """Request ``i``: every fifth one bad (each bad kind in turn), the others a clip."""
    if i % 5 == 4:
        kind = BAD_KINDS[(i // 5) % len(BAD_KINDS)]
        raw = {"headers": {"Content-Type": "audio/wav"}}
        if kind == "text":
            return False, {"content": b"hello", "headers": {"Content-Type": "text/plain"}}
        if kind == "garbage":
            return False, {"content": random.Random(i).randbytes(20_000), **raw}
        if kind == "empty":
            return False, {"content": b"", **raw}
        return False, {"content": bytes(oversize), **raw}
    path = files[i % len(files)]
    return True, {"files": {"file": (path.name, path.read_bytes())}}


async def while_watching_health(http: httpx.AsyncClient, base: str, work) -> float:
    """Await ``work`` while ``GET /v1/health`` is asked every 0.5 s; its slowest answer (s)."""
    worst = 0.0
    task = asyncio.ensure_future(work)
    while not task.done():
        started = time.monotonic()
        await http.get(base + "/v1/health")
        worst = max(worst, time.monotonic() - started)
        await asyncio.wait([task], timeout=0.5)
    await task
    return worst


async def load(base: str, files: list[Path], clients: int, requests: int, oversize: int) -> dict:
    """``requests`` requests from ``clients`` concurrent clients; what came back."""
    latencies: dict[bool, list[float]] = {True: [], False: []}
    statuses: Counter[int] = Counter()
    retries = 0
    next_index = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index, retries
        while next_index < requests:
            i, next_index = next_index, next_index + 1
            good, kwargs = request_for(i, files, oversize)
            started = time.monotonic()
            while True:
                response = await http.post(base + "/v1/transcribe", **kwargs)
                if response.status_code != 503:
                    break
                retries += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            latencies[good].append(time.monotonic() - started)
            statuses[response.status_code] += 1

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(trust_env=False, timeout=600, limits=limits) as http:
        started = time.monotonic()
        health_worst = await while_watching_health(
            http, base, asyncio.gather(*(client(http) for _ in range(clients)))
        )
        elapsed = time.monotonic() - started
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "statuses": statuses,
        "retries": retries,
        "health_worst": health_worst,
    }


def pcm_stream(seconds: float, sample_rate: int) -> bytes:
    """``seconds`` of a quiet tone as 16-bit PCM: what a stream at the limits sends."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.1 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


async def exhaust(
    base: str, streams: int, uploads: int, upload_bytes: int, stream_seconds: float, rate: int
) -> dict:
    """``streams`` WebSocket streams at ``rate`` Hz, each sending ``stream_seconds`` of audio as
    fast as the server takes it, while ``uploads`` bodies of ``upload_bytes`` arrive at once:
    what each got, and the slowest health answer meanwhile."""
    import websockets

    statuses: Counter[str] = Counter()
    chunk = pcm_stream(0.25, rate)  # a quarter second (as the page sends), again and again

    async def stream() -> None:
        url = base.replace("http", "ws") + f"/v1/stream?sample_rate={rate}"
        # no keepalive pings from this client either: they would wait behind its own audio
        connect = websockets.connect(url, max_size=None, open_timeout=60, ping_interval=None)
        async with connect as ws:
            await ws.recv()  # ready (or an error, then the close)
            try:
                for _ in range(int(stream_seconds * 4)):
                    await ws.send(chunk)
                await ws.send('{"type": "end"}')
                async for message in ws:
                    kind = json.loads(message).get("type")
                    if kind in ("done", "error"):
                        statuses[f"stream {kind}"] += 1
                        break
            except websockets.ConnectionClosed as exc:
                statuses[f"stream closed {exc.code}"] += 1

    async def upload(http: httpx.AsyncClient) -> None:
        body = bytes(upload_bytes)  # a WAV-typed body of zeros: read whole, then refused (422)
        try:
            response = await http.post(
                base + "/v1/transcribe", content=body, headers={"Content-Type": "audio/wav"}
            )
        except httpx.TransportError as exc:  # a refusal sent before the body had all gone
            statuses[f"upload {type(exc).__name__}"] += 1
            return
        statuses[f"upload {response.status_code}"] += 1

    limits = httpx.Limits(max_connections=uploads + 1)
    async with httpx.AsyncClient(trust_env=False, timeout=600, limits=limits) as http:
        started = time.monotonic()
        work = asyncio.gather(
            *(stream() for _ in range(streams)), *(upload(http) for _ in range(uploads))
        )
        health_worst = await while_watching_health(http, base, work)
        elapsed = time.monotonic() - started
    return {"elapsed": elapsed, "statuses": statuses, "health_worst": health_worst}


def p50_p95(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p95 = np.percentile(values, [50, 95])
    return f"{p50:.2f}/{p95:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model file (default: bundled)")
    parser.add_argument("--decoder", choices=["default", "greedy"], default="default")
    parser.add_argument("--files", type=Path, default=ROOT / "examples", help="folder of clips")
    parser.add_argument("--clients", default="16,32", help="concurrent clients to measure")
    parser.add_argument("--requests", type=int, default=160, help="requests per client count")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="the server's limit")
    parser.add_argument(
        "--exhaust",
        action="store_true",
        help="instead: 4 streams at 768 kHz sending --stream-seconds each as fast as taken, "
        "and 32 uploads just under --max-upload-mb at once; peak memory and health",
    )
    parser.add_argument("--stream-seconds", type=float, default=599.0)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on the first CPU core, this client on the others (Linux, 2+ cores)",
    )
    args = parser.parse_args()

    files = sorted(p for p in args.files.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SystemExit(f"{args.files}: no audio files")
    options = ["--max-upload-mb", str(args.max_upload_mb)]
    cores = sorted(os.sched_getaffinity(0)) if args.pin else []
    if args.pin:
        if len(cores) < 2:
            raise SystemExit("--pin needs 2 or more CPU cores")
        os.sched_setaffinity(0, cores[:1])  # the server inherits this, before its threads start
    server, base = start_server(options, args.model, args.decoder == "greedy")
    if args.pin:
        os.sched_setaffinity(0, cores[1:])
    try:
        pinned = " (server on the first, client on the rest)" if args.pin else ""
        print(
            f"{len(files)} clips ({args.files}); decoding: {args.decoder}; {os.cpu_count()} CPU "
            f"cores{pinned}; every fifth request bad ({', '.join(BAD_KINDS)}); server at start: "
            f"{memory_mb(server.pid, 'VmRSS'):.0f} MB"
        )
        oversize = int(args.max_upload_mb * 1e6) + 1
        if args.exhaust:
            r = asyncio.run(exhaust(base, 4, 32, oversize - 1024, args.stream_seconds, 768_000))
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
            print(
                f"4 streams of {args.stream_seconds:.0f} s at 768 kHz + 32 uploads of "
                f"{args.max_upload_mb:.1f} MB at once: {r['elapsed']:.1f} s; {statuses}; slowest "
                f"health {r['health_worst']:.2f} s; server peak "
                f"{memory_mb(server.pid, 'VmHWM'):.0f} MB, now {memory_mb(server.pid, 'VmRSS'):.0f} MB"
            )
            return
        for clients in (int(c) for c in args.clients.split(",")):
            r = asyncio.run(load(base, files, clients, args.requests, oversize))
            answers = sum(r["statuses"].values())
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
            print(
                f"{clients:3d} clients: {answers / r['elapsed']:.1f} answers/s, "
                f"{len(r['latencies'][True]) / r['elapsed']:.1f} good/s; latency good "
                f"{p50_p95(r['latencies'][True])}, bad {p50_p95(r['latencies'][False])}; "
                f"{statuses}; {r['retries']} 503 retries; slowest health "
                f"{r['health_worst']:.2f} s; server peak {memory_mb(server.pid, 'VmHWM'):.0f} MB, "
                f"now {memory_mb(server.pid, 'VmRSS'):.0f} MB"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
