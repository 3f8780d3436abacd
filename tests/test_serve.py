"""``asr serve``: the HTTP API, its limits, the WebSocket stream, and the command itself.

Servers run on a free loopback port (in a thread, or ``asr serve`` as a subprocess). Most tests
decode greedily for speed; :func:`test_asr_serve_with_the_bundled_default_decoder` runs the
command with the bundled model's beam search and LM.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

pytest.importorskip(
    "starlette", reason="asr serve needs the serve extra (pip install -e '.[serve]')"
)
pytest.importorskip("uvicorn", reason="asr serve needs the serve extra")
httpx = pytest.importorskip("httpx", reason="the serve tests need httpx (the test extra)")
ws_client = pytest.importorskip("websockets.sync.client", reason="needs websockets (serve extra)")
import yaml  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from asr.audio import load_audio  # noqa: E402
from asr.decode import GreedyDecoder  # noqa: E402
from asr.formats import render  # noqa: E402
from asr.serve import (  # noqa: E402
    ServeConfig,
    ServerThread,
    StreamConfig,
    StreamTranscriber,
    create_app,
    decode_threads,
    is_loopback,
)
from asr.serve.streaming import StreamResampler, pcm16  # noqa: E402
from asr.transcribe import load_model  # noqa: E402
from tests.conftest import DATA, ROOT, tone, write_audio  # noqa: E402

KATHLEEN = ROOT / "examples" / "kathleen" / "arctic_a0003_1592748500.ogg"  # 3.1 s, no long pause
AN4 = ROOT / "examples" / "an4" / "cen4-mcen-b.opus"
DIGIT = DATA / "fsdd" / "0_jackson_0.wav"  # 8 kHz PCM
CHUNK_SECONDS = 0.25


@pytest.fixture(scope="module")
def rec():
    return load_model()


@pytest.fixture(scope="module")
def greedy(rec):
    return GreedyDecoder(rec.tokenizer)


@pytest.fixture(scope="module")
def server(rec):
    cfg = ServeConfig(max_upload_mb=1.0, max_duration=20.0, timeout=30.0, max_decodes=2)
    app = create_app(rec, cfg, lambda: GreedyDecoder(rec.tokenizer))
    with ServerThread(app) as running:
        yield running


@pytest.fixture
def client():
    with httpx.Client(trust_env=False, timeout=60) as c:  # no proxy from the environment
        yield c


def _stream_url(server: ServerThread, sample_rate: int) -> str:
    return f"ws://{server.host}:{server.port}/v1/stream?sample_rate={sample_rate}"


def _connect(url: str):
    return ws_client.connect(url, proxy=None, open_timeout=10)


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()["error"]
    assert (body["status"], body["code"]) == (status, code)
    return body["message"]


# --- endpoints ---


def test_health_and_model_describe_what_is_loaded(server, client, rec):
    health = client.get(server.url + "/v1/health").json()
    assert health["status"] == "ok" and health["decodes_running"] == 0

    model = client.get(server.url + "/v1/model").json()
    assert model["vocabulary"] == rec.tokenizer.tokens
    assert model["vocabulary_size"] == len(rec.tokenizer) == 29
    assert model["parameters"] == sum(p.numel() for p in rec.model.parameters())
    assert model["sample_rate"] == 16_000 and model["model_config"]["bidirectional"]
    assert model["decoder"] == {"kind": "greedy"}
    assert model["limits"]["max_upload_bytes"] == 1_000_000
    assert model["limits"]["max_duration_seconds"] == 20.0


@pytest.mark.parametrize("path", [KATHLEEN, AN4, DIGIT], ids=["ogg", "opus", "wav-8k"])
def test_transcribe_multipart_gives_what_the_python_api_gives(server, client, rec, greedy, path):
    expected = rec.transcribe(path, decoder=greedy)
    with path.open("rb") as f:
        response = client.post(server.url + "/v1/transcribe", files={"file": (path.name, f)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["file"] == path.name
    assert body["text"] == expected.text and body["text"]
    assert body["duration"] == pytest.approx(expected.duration)
    assert [w["word"] for w in body["words"]] == expected.text.split()
    for word, ref in zip(body["words"], expected.words):
        assert word["start"] == pytest.approx(ref.start) and word["end"] == pytest.approx(ref.end)
        assert 0 <= word["start"] <= word["end"] <= body["duration"]
        assert 0 <= word["confidence"] <= 1
        assert "chars" not in word
    assert " ".join(s["text"] for s in body["segments"]) == body["text"]
    # where the time went, in milliseconds, stage by stage (developer tools and the benchmark)
    timing = dict(
        part.strip().split(";dur=") for part in response.headers["server-timing"].split(",")
    )
    stages = ["upload", "probe", "wait", "decode", "return", "render"]
    assert list(timing) == [*stages, "total"]
    ms = {name: float(value) for name, value in timing.items()}
    assert all(value >= 0 for value in ms.values()) and ms["decode"] > 0
    assert sum(ms[name] for name in stages) == pytest.approx(ms["total"], abs=0.05)


def test_raw_body_and_subtitle_formats(server, client, rec, greedy):
    expected = rec.transcribe(KATHLEEN, decoder=greedy)
    expected.path = "talk.ogg"
    data = KATHLEEN.read_bytes()
    url = server.url + "/v1/transcribe"
    raw = client.post(url, content=data, headers={"Content-Type": "audio/ogg"})
    assert raw.status_code == 200 and raw.json()["text"] == expected.text
    assert raw.json()["file"] == "upload.ogg"

    octet = client.post(
        url + "?filename=talk.ogg",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert octet.json()["file"] == "talk.ogg"

    for fmt, media in (("srt", "application/x-subrip"), ("vtt", "text/vtt"), ("txt", "text/plain")):
        response = client.post(
            f"{url}?format={fmt}", content=data, headers={"Content-Type": "audio/ogg"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert response.text == render(expected, fmt)
    assert render(expected, "srt").startswith("1\n00:00:00,")  # a real cue, not an empty file


# --- bad input ---


def test_bad_requests_get_clear_json_errors(server, client, tmp_path):
    url = server.url + "/v1/transcribe"
    wav = {"Content-Type": "audio/wav"}

    message = _error(client.post(url, content=b"", headers=wav), 400, "bad_request")
    assert "empty" in message
    noise = np.random.default_rng(0).bytes(4000)
    message = _error(client.post(url, content=noise, headers=wav), 422, "unreadable_audio")
    assert message.startswith("upload.wav: cannot read audio")
    text = (ROOT / "README.md").read_bytes()[:2000]
    message = _error(client.post(url, files={"file": ("notes.mp3", text)}), 422, "unreadable_audio")
    assert message.startswith("notes.mp3:") and "asr-serve-" not in message  # no server paths

    # a WAV header claiming 2^31 Hz: refused from the header, nothing allocated
    forged = bytearray(DIGIT.read_bytes())
    forged[24:28] = (2**31).to_bytes(4, "little")
    message = _error(client.post(url, content=bytes(forged), headers=wav), 422, "unreadable_audio")
    assert "sample rate" in message

    message = _error(
        client.post(url, content=b"hello", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_type",
    )
    assert "text/plain" in message and "multipart" in message
    _error(client.post(url, json={"audio": "x"}), 415, "unsupported_type")

    message = _error(client.post(url, files={"other": ("a.wav", b"")}), 400, "bad_request")
    assert "empty" in message
    _error(client.post(url, data={"name": "x"}), 415, "unsupported_type")  # a plain form
    _error(
        client.post(url, content=b"--x\r\n\r\n", headers={"Content-Type": "multipart/form-data"}),
        400,
        "bad_request",
    )
    message = _error(
        client.post(url + "?format=doc", content=DIGIT.read_bytes(), headers=wav),
        400,
        "bad_request",
    )
    assert "srt" in message

    big = write_audio(tmp_path / "big.wav", tone(40.0, 16_000), 16_000)  # 1.28 MB > 1 MB
    message = _error(client.post(url, content=big.read_bytes(), headers=wav), 413, "too_large")
    assert "1 MB" in message
    data = big.read_bytes()
    chunked = (data[i : i + 65536] for i in range(0, len(data), 65536))  # no Content-Length
    _error(client.post(url, content=chunked, headers=wav), 413, "too_large")
    long = write_audio(tmp_path / "long.flac", tone(25.0, 8_000), 8_000)  # 25 s > 20 s
    message = _error(
        client.post(url, files={"file": ("long.flac", long.read_bytes())}), 413, "too_large"
    )
    assert "25.0 s of audio, over the limit of 20 s" in message

    _error(client.get(server.url + "/v1/nothing"), 404, "not_found")
    _error(client.get(url), 405, "method_not_allowed")
    assert client.get(server.url + "/v1/health").json()["decodes_running"] == 0


def test_multipart_without_a_file_is_refused(server, client):
    response = client.post(
        server.url + "/v1/transcribe", data={"name": "x"}, files={"f": ("", b"")}
    )
    message = _error(response, 400, "bad_request")
    assert "file" in message


# --- limits: concurrent decodes, timeouts ---


class GatedDecoder:
    """Greedy decoding that waits for the test's word: decodes that last as long as the test says."""

    def __init__(self, tokenizer, gate: threading.Event) -> None:
        self.greedy, self.gate = GreedyDecoder(tokenizer), gate

    def __call__(self, log_probs, out_lens):
        assert self.gate.wait(30)
        return self.greedy(log_probs, out_lens)


def _post_in_thread(url: str, results: list) -> threading.Thread:
    def post():
        with httpx.Client(trust_env=False, timeout=60) as c:
            results.append(c.post(url, files={"file": (DIGIT.name, DIGIT.read_bytes())}))

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def _wait_for(client, url: str, **expected) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = client.get(url + "/v1/health").json()
        if all(health[k] == v for k, v in expected.items()):
            return
        time.sleep(0.02)
    raise AssertionError(f"health never showed {expected}: {health}")


def test_one_decode_at_a_time_one_waiting_the_next_gets_503(rec, client):
    gate = threading.Event()
    cfg = ServeConfig(max_decodes=1, max_waiting=1, timeout=30.0)
    app = create_app(rec, cfg, lambda: GatedDecoder(rec.tokenizer, gate))
    with ServerThread(app) as server:
        url = server.url + "/v1/transcribe"
        results: list = []
        first = _post_in_thread(url, results)
        _wait_for(client, server.url, decodes_running=1)
        second = _post_in_thread(url, results)
        _wait_for(client, server.url, decodes_running=1, decodes_waiting=1)

        refused = client.post(url, files={"file": (DIGIT.name, DIGIT.read_bytes())})
        message = _error(refused, 503, "busy")
        assert "1 decode slots are busy and 1 requests are waiting" in message
        assert refused.headers["retry-after"] == "1"

        gate.set()
        first.join(30)
        second.join(30)
        assert [r.status_code for r in results] == [200, 200]
        assert [r.json()["text"] for r in results] == ["zero", "zero"]
        _wait_for(client, server.url, decodes_running=0, decodes_waiting=0)


def test_request_timeout_while_decoding_and_while_waiting(rec, client):
    gate = threading.Event()
    cfg = ServeConfig(max_decodes=1, max_waiting=4, timeout=1.0)
    app = create_app(rec, cfg, lambda: GatedDecoder(rec.tokenizer, gate))
    with ServerThread(app) as server:
        url = server.url + "/v1/transcribe"
        results: list = []
        decoding = _post_in_thread(url, results)
        _wait_for(client, server.url, decodes_running=1)
        waiting = client.post(url, files={"file": (DIGIT.name, DIGIT.read_bytes())})
        assert "no decode slot came free within the 1 s timeout" in _error(waiting, 503, "busy")
        decoding.join(30)
        assert "ran past the 1 s timeout" in _error(results[0], 504, "decode_timeout")
        # the abandoned decode still holds its slot (the limit stays true) until it ends
        assert client.get(server.url + "/v1/health").json()["decodes_running"] == 1
        gate.set()
        _wait_for(client, server.url, decodes_running=0)
        ok = client.post(url, files={"file": (DIGIT.name, DIGIT.read_bytes())})
        assert ok.status_code == 200 and ok.json()["text"] == "zero"


# --- the stream ---


def _stream(
    server, wave: np.ndarray, sample_rate: int, pace: float, before_end: str
) -> tuple[list, list]:
    """Send ``wave`` as 16-bit PCM in 0.25 s chunks, ``pace`` seconds apart; wait (up to 60 s)
    until an event of type ``before_end`` has come, then send the end message.

    Returns:
        (events received before the end message was sent, events after it), in order.
    """
    before, after = [], []
    data = pcm16(wave)
    step = int(CHUNK_SECONDS * sample_rate) * 2
    with _connect(_stream_url(server, sample_rate)) as ws:
        ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready" and ready["sample_rate"] == sample_rate
        for i in range(0, len(data), step):
            ws.send(data[i : i + step])
            time.sleep(pace)
        deadline = time.monotonic() + 60
        while not any(e["type"] == before_end for e in before):
            # the server decodes on its own time: on a busy machine the events come later
            before.append(json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic()))))
        ws.send(json.dumps({"type": "end"}))
        for message in ws:
            after.append(json.loads(message))
    return before, after


def _pcm_wav(path: Path, tmp_path: Path, sample_rate: int = 16_000) -> tuple[Path, np.ndarray]:
    """``path`` as the 16-bit PCM a stream client sends, and as a WAV file holding the same."""
    wave = load_audio(path, sample_rate).numpy()
    samples = np.frombuffer(pcm16(wave), dtype="<i2").astype(np.float32) / 32768
    out = tmp_path / (path.stem + ".wav")
    sf.write(out, samples, sample_rate, subtype="PCM_16")
    return out, samples


def test_stream_in_quarter_seconds_gives_the_file_endpoints_text(server, client, tmp_path):
    wav, samples = _pcm_wav(KATHLEEN, tmp_path)
    file_text = client.post(
        server.url + "/v1/transcribe", files={"file": (wav.name, wav.read_bytes())}
    ).json()["text"]

    before, after = _stream(server, samples, 16_000, pace=0.05, before_end="partial")
    partials = [e for e in before if e["type"] == "partial"]
    assert partials, "partial text arrives while the audio does"
    assert all(e["start"] == 0.0 and e["end"] <= len(samples) / 16_000 for e in partials)
    assert [e["end"] for e in partials] == sorted(e["end"] for e in partials)
    finals = [e for e in before + after if e["type"] == "final"]
    assert len(finals) == 1 and finals[0]["text"] == file_text
    assert [w["word"] for w in finals[0]["words"]] == file_text.split()
    done = after[-1]
    assert done["type"] == "done" and done["text"] == file_text
    assert done["duration"] == pytest.approx(len(samples) / 16_000, abs=1e-3)


def test_a_44k_stream_kept_at_the_models_rate_gives_the_file_endpoints_text(
    server, client, tmp_path
):
    wav, samples = _pcm_wav(KATHLEEN, tmp_path, 44_100)
    file_text = client.post(
        server.url + "/v1/transcribe", files={"file": (wav.name, wav.read_bytes())}
    ).json()["text"]
    before, after = _stream(server, samples, 44_100, pace=0.02, before_end="partial")
    finals = [e for e in before + after if e["type"] == "final"]
    assert len(finals) == 1 and finals[0]["text"] == file_text
    assert after[-1]["duration"] == pytest.approx(len(samples) / 44_100, abs=1e-3)


@pytest.mark.parametrize("orig", [8_000, 22_050, 44_100, 768_000, 16_000])
def test_stream_resampler_in_chunks_equals_resampling_the_whole(orig):
    wave = torch.randn(2 * orig + 37, generator=torch.Generator().manual_seed(0))
    resampler = StreamResampler(orig, 16_000)
    pieces, i = [], 0
    for n in itertools.cycle([1, 5, 1000, 333, 4096, 17]):
        if i >= len(wave):
            break
        pieces.append(resampler.push(wave[i : i + n * (orig // 8_000 + 1)]))
        i += n * (orig // 8_000 + 1)
    got = torch.cat([*pieces, resampler.flush()])
    expected = AF.resample(wave, orig, 16_000)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4


def test_stream_makes_text_final_at_a_pause_and_never_revises_it(server, tmp_path):
    # two spoken digits (8 kHz) with 1.5 s of quiet between: the first is final before the end
    first = load_audio(DIGIT, 8_000).numpy()
    second = load_audio(DATA / "fsdd" / "2_theo_2.wav", 8_000).numpy()
    quiet = 0.001 * np.random.default_rng(0).standard_normal(int(1.5 * 8_000)).astype(np.float32)
    wave = np.concatenate([first, quiet, second, quiet[:4000]])
    before, after = _stream(server, wave, 8_000, pace=0.02, before_end="final")

    finals = [e for e in before + after if e["type"] == "final"]
    assert [e["text"] for e in finals] == ["zero", "two"]
    assert finals[0] in before, "the first word is final once the pause is heard"
    assert finals[0]["end"] <= finals[1]["start"]
    assert finals[1]["words"][0]["start"] >= len(first) / 8_000 + 1.0  # times count from the start
    events = before + after
    after_first = events[events.index(finals[0]) + 1 :]
    # partials after a final speak only of the audio after it
    assert all(e["start"] >= finals[0]["end"] for e in after_first if e["type"] == "partial")
    assert after[-1] == {
        "type": "done",
        "text": "zero two",
        "duration": round(len(wave) / 8_000, 3),
    }


def test_stream_errors_close_with_a_reason(rec, server):
    with _connect(_stream_url(server, 10)) as ws:
        event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["status"]) == ("error", 400)
        assert "sample_rate" in event["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1008

    # '²'.isdigit() is true but int('²') fails: refused like any other non-number
    url = f"ws://{server.host}:{server.port}/v1/stream?sample_rate=%C2%B2"
    with _connect(url) as ws:
        event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["status"]) == ("error", 400)
        assert "got '²'" in event["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1008

    # a rate whose resampling kernel to 16 kHz would hold 508 MB: refused, not built
    with _connect(_stream_url(server, 7919)) as ws:
        event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["status"]) == ("error", 400)
        assert "7919 Hz is too irregular" in event["message"]

    with _connect(_stream_url(server, 16_000)) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send("hello")
        event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["status"], event["code"]) == ("error", 400, "bad_request")

    # more than max_duration (20 s) of audio
    with _connect(_stream_url(server, 8_000)) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        silence = bytes(2 * 8_000)
        event = None
        for _ in range(25):
            try:
                ws.send(silence)
            except ConnectionClosed:
                break
            try:
                event = json.loads(ws.recv(timeout=0.05))
                if event["type"] == "error":
                    break
            except TimeoutError:
                pass
        while event is None or event["type"] != "error":
            event = json.loads(ws.recv(timeout=10))
        assert (event["status"], event["code"]) == (413, "too_large")
        assert "limit of 20 s" in event["message"]


def test_streams_beyond_the_limit_are_refused(rec):
    app = create_app(rec, ServeConfig(max_streams=1), lambda: GreedyDecoder(rec.tokenizer))
    with ServerThread(app) as server:
        with _connect(_stream_url(server, 16_000)) as first:
            assert json.loads(first.recv(timeout=10))["type"] == "ready"
            with _connect(_stream_url(server, 16_000)) as second:
                event = json.loads(second.recv(timeout=10))
                assert (event["type"], event["status"], event["code"]) == ("error", 503, "busy")
                with pytest.raises(ConnectionClosed) as closed:
                    second.recv(timeout=10)
                assert closed.value.rcvd.code == 1013
            first.send(json.dumps({"type": "end"}))
            assert json.loads(first.recv(timeout=10)) == {
                "type": "done",
                "text": "",
                "duration": 0.0,
            }


def test_stream_transcriber_joins_samples_split_across_messages(rec, greedy):
    wave = load_audio(DIGIT, 16_000).numpy()
    whole = StreamTranscriber(rec, 16_000)
    whole.push(pcm16(wave))
    split = StreamTranscriber(rec, 16_000)
    data = pcm16(wave)
    for i in range(0, len(data), 333):  # odd sizes: samples cut in half
        split.push(data[i : i + 333])
    assert split.received == whole.received == len(wave)
    a, b = whole.step(greedy, end=True), split.step(greedy, end=True)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert a[0].text == "zero"


def test_stream_transcriber_cuts_a_long_stretch_without_pauses(rec, greedy):
    wave = load_audio(KATHLEEN, 16_000).numpy()  # 3.1 s of speech, no pause of 0.5 s in it
    stream = StreamTranscriber(rec, 16_000, StreamConfig(max_segment_seconds=1.0))
    stream.push(pcm16(wave))
    events = stream.step(greedy)
    finals = [e for e in events if e.type == "final"]
    assert len(finals) >= 2 and all(e.text for e in finals)
    assert all(e.end - e.start <= 1.0 for e in finals)
    assert all(a.end <= b.start for a, b in zip(finals, finals[1:]))
    assert len(stream._open) <= 16_000  # what is left open is under the limit too
    assert events[-1].type == "partial"
    assert events[-1].end == pytest.approx(len(wave) / 16_000, abs=1e-3)


# --- the command ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, sig: int, timeout: float) -> str:
    """Send ``sig`` and wait up to ``timeout`` s (then kill): what the server printed."""
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output


def test_asr_serve_with_the_bundled_default_decoder(rec, client):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asr", "serve", "--port", str(port), "--max-decodes", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if client.get(url + "/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "asr serve did not start in 120 s"
            time.sleep(0.25)
        decoder = client.get(url + "/v1/model").json()["decoder"]
        assert decoder["kind"] == "beam" and decoder["lm"] == "lm3.arpa"
        shipped = yaml.safe_load((ROOT / "asr/pretrained/decoder.yaml").read_text())["decoder"]
        assert decoder["beam_size"] == shipped["beam_size"]  # the bundled model's own config
        # the cores shared out among the decode slots (here one slot: all of them)
        assert client.get(url + "/v1/model").json()["threads"] == decode_threads(1)

        response = client.post(url + "/v1/transcribe", files={"file": (AN4.name, AN4.read_bytes())})
        assert response.status_code == 200
        assert response.json()["text"] == rec.transcribe(AN4).text  # beam + LM, in-process
        page = client.get(url + "/")
        assert page.status_code == 200 and "<title>asr" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
    finally:
        output = _stop(proc, signal.SIGINT, 20)
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output


def test_asr_serve_refuses_bad_limits(capsys):
    from asr.cli import main

    assert main(["serve", "--max-decodes", "0"]) == 2
    assert "max_decodes must be >= 1, got 0" in capsys.readouterr().err
    assert main(["serve", "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_decode_threads_share_the_cores_but_one_among_the_slots():
    assert decode_threads(1, cores=2) == 1  # one core left to the event loop
    assert decode_threads(2, cores=2) == 1  # this machine's server: one thread per decode
    assert decode_threads(4, cores=2) == 1  # never none
    assert decode_threads(1, cores=1) == 1
    assert decode_threads(1, cores=16) == 15
    assert decode_threads(3, cores=16) == 5
    assert decode_threads(2) >= 1  # the machine's own count


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.3.4.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.org")


def _closed_after(sock: socket.socket, limit: float, drip: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (sending ``drip`` a byte every 0.2 s meanwhile)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    for byte in [drip[i : i + 1] for i in range(len(drip))] or [b""] * int(limit * 5 + 10):
        try:
            if byte:
                sock.sendall(byte)
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:  # reset: closed too
            return time.monotonic() - started
        assert time.monotonic() - started < limit + 5, "still open"
    raise AssertionError("still open")


def test_slow_headers_and_idle_connections_are_closed_and_connections_capped(rec, client):
    cfg = ServeConfig(timeout=2.0, max_connections=3)
    app = create_app(rec, cfg, lambda: GreedyDecoder(rec.tokenizer))
    with ServerThread(app) as server:
        address = (server.host, server.port)
        with socket.create_connection(address) as silent:  # sends nothing at all
            assert 1.5 < _closed_after(silent, 2.0) < 4.0
        with socket.create_connection(address) as slow:  # slowloris: a byte every 0.2 s
            drip = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
            assert 1.5 < _closed_after(slow, 2.0, drip) < 4.0
        with socket.create_connection(address) as idle:  # answered, then idle: keep-alive ends
            idle.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200")
            assert _closed_after(idle, 2.0) < 4.0
        # a WebSocket outlives the header timeout (the upgrade hands the connection over)
        with _connect(_stream_url(server, 16_000)) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            for _ in range(6):
                ws.send(bytes(2 * 8_000))  # 0.5 s of silence every 0.5 s
                time.sleep(0.5)
            ws.send(json.dumps({"type": "end"}))
            while (event := json.loads(ws.recv(timeout=10)))["type"] != "done":
                pass
            assert event["duration"] == 3.0
        # a stream that goes quiet is closed by its own timeout: that finds a dead client, as the
        # server sends no keepalive pings (they would wait behind a fast sender's own audio)
        with _connect(_stream_url(server, 16_000)) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(bytes(2 * 8_000))
            started = time.monotonic()
            while (event := json.loads(ws.recv(timeout=10)))["type"] != "error":
                pass
            assert (event["status"], event["code"]) == (408, "idle_timeout")
            assert 1.5 < time.monotonic() - started < 5
        assert server.server.config.ws_ping_interval is None
        # connections beyond max_connections: a request on one gets 503, then they go on
        held = [socket.create_connection(address) for _ in range(3)]
        try:
            time.sleep(0.2)
            response = client.get(server.url + "/v1/health")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "busy"
            assert "3 connections are open" in response.json()["error"]["message"]
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert client.get(server.url + "/v1/health").status_code == 200
        assert client.get(server.url + "/v1/model").json()["limits"]["max_connections"] == 3


def _start_serve(port: int, env: dict, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "asr", "serve", "--port", str(port), "--max-decodes", "2", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    with httpx.Client(trust_env=False, timeout=10) as c:
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if c.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "asr serve did not start in 120 s"
            time.sleep(0.25)


def test_temporary_files_live_in_one_folder_removed_on_sigterm_and_after_kill_9(tmp_path):
    """Uploads and the beam decoders' lexicons go to TMP/asr-serve-UID/PID: SIGTERM removes it
    (the process still exits by SIGTERM), and one a kill -9 left is removed by the next start."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    root = tmp_path / f"asr-serve-{os.getuid()}"
    first = _start_serve(_free_port(), env)
    try:
        folder = root / str(first.pid)
        assert len(list(folder.glob("lexicon-*.txt"))) == 2  # one per decode slot
        assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]  # nothing else
    finally:
        first.kill()  # kill -9: nothing can clean up
        first.communicate()
    assert folder.exists()
    second = _start_serve(_free_port(), env)
    try:
        assert not folder.exists()  # a dead process's folder, removed on start
        assert len(list((root / str(second.pid)).glob("lexicon-*.txt"))) == 2
    finally:
        output = _stop(second, signal.SIGTERM, 30)
    assert second.returncode == -signal.SIGTERM, output
    assert list(root.iterdir()) == [], output
    assert "Traceback" not in output, output


def _peak_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_fast_768_khz_stream_holds_little_memory(tmp_path):
    """45 s of 768 kHz audio, sent as fast as the socket takes it: the server reads no further
    than 2 s ahead of its decoding and keeps the stream at the model's 16 kHz. It held 20 s
    stretches at 768 kHz, and all it had not yet decoded (~5 GB for a 599 s stream)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    port = _free_port()
    proc = _start_serve(port, env, "--decoder", "greedy", "--max-duration", "60")
    try:
        base = _peak_mb(proc.pid)
        rate = 768_000
        t = np.arange(rate) / rate  # one second: a tone, on and off three times (no long pause)
        second = pcm16(0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 3 * t) > 0))
        url = f"ws://127.0.0.1:{port}/v1/stream?sample_rate={rate}"
        with ws_client.connect(url, proxy=None, open_timeout=10, max_size=None) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            for _ in range(45):  # in half seconds: a message may hold 1 MB
                ws.send(second[: len(second) // 2])
                ws.send(second[len(second) // 2 :])
            ws.send(json.dumps({"type": "end"}))
            while (event := json.loads(ws.recv(timeout=300)))["type"] != "done":
                pass
        assert event["duration"] == 45.0
        growth = _peak_mb(proc.pid) - base
        assert growth < 180, f"the server grew by {growth:.0f} MB"
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_uploads_go_to_disk_as_they_arrive(tmp_path):
    """16 concurrent 10 MB uploads, raw and multipart: the bodies are written to disk as they
    come, so the server's memory barely moves (it held each body two to four times over)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    port = _free_port()
    args = ["--decoder", "greedy", "--max-duration", "1", "--max-upload-mb", "12"]
    proc = _start_serve(port, env, *args, "--max-uploads", "64")
    url = f"http://127.0.0.1:{port}/v1/transcribe"
    wav = tmp_path / "long.wav"
    sf.write(wav, np.zeros(5_000_000, np.int16), 16_000, subtype="PCM_16")  # 10 MB, 312 s
    data = wav.read_bytes()
    statuses = []

    def post(i: int) -> None:
        with httpx.Client(trust_env=False, timeout=120) as c:
            if i % 2:
                r = c.post(url, files={"file": ("long.wav", data)})
            else:
                r = c.post(url, content=data, headers={"Content-Type": "audio/wav"})
            statuses.append((r.status_code, r.json()["error"]["message"]))

    try:
        base = _peak_mb(proc.pid)
        threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        growth = _peak_mb(proc.pid) - base
        assert len(statuses) == 16
        assert all(s == 413 and "312.5 s of audio, over the limit of 1 s" in m for s, m in statuses)
        assert growth < 60, f"the server grew by {growth:.0f} MB for 160 MB of uploads"
        assert list((tmp_path / f"asr-serve-{os.getuid()}" / str(proc.pid)).iterdir()) == []
    finally:
        proc.kill()
        proc.communicate()


def test_uploads_past_max_uploads_get_503(rec, client):
    app = create_app(rec, ServeConfig(max_uploads=1), lambda: GreedyDecoder(rec.tokenizer))
    arrived = threading.Event()

    def slow_body():
        yield b"RIFF"
        arrived.set()
        time.sleep(2)
        yield b"not really audio"

    with ServerThread(app) as server:
        results: list = []

        def slow_post():
            with httpx.Client(trust_env=False, timeout=30) as c:
                results.append(
                    c.post(
                        server.url + "/v1/transcribe",
                        content=slow_body(),
                        headers={"Content-Type": "audio/wav"},
                    )  # fmt: skip
                )

        thread = threading.Thread(target=slow_post)
        thread.start()
        assert arrived.wait(10)
        time.sleep(0.3)
        busy = client.post(
            server.url + "/v1/transcribe", content=b"x", headers={"Content-Type": "audio/wav"}
        )
        assert "1 uploads are arriving, the limit" in _error(busy, 503, "busy")
        assert busy.headers["retry-after"] == "1"
        thread.join()
        assert results[0].status_code == 422  # the slow one went on, and was read
        assert client.get(server.url + "/v1/model").json()["limits"]["max_uploads"] == 1
