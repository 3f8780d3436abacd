"""``asr serve --enrol-dir``: recordings of prompts, one fine-tuning at a time in the background,
the personal model it makes, and a server without the option refusing all of it."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette", reason="asr serve needs the serve extra")

from starlette.testclient import TestClient  # noqa: E402

from asr.decode import GreedyDecoder  # noqa: E402
from asr.serve import ServeConfig, create_app  # noqa: E402
from asr.serve.enrolment import Enrolment  # noqa: E402
from asr.transcribe import load_model  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

CLIP = ROOT / "examples" / "kathleen" / "arctic_a0003_1592748500.ogg"  # 3.1 s


def _client(rec, enrolment=None) -> TestClient:
    app = create_app(rec, ServeConfig(), lambda: GreedyDecoder(rec.tokenizer), "tiny", enrolment)
    return TestClient(app)


def _put(client, prompt: str, data: bytes = b"", name: str = CLIP.name):
    return client.put(
        f"/v1/enrol/recordings/{prompt}", files={"file": (name, data or CLIP.read_bytes())}
    )


def test_a_server_without_enrol_dir_refuses_enrolment(tiny_model):
    with _client(load_model(tiny_model)) as client:
        for method, path in [("GET", "/v1/enrol"), ("GET", "/v1/enrol/prompts"),
                             ("PUT", "/v1/enrol/recordings/a0001"), ("POST", "/v1/enrol/start"),
                             ("GET", "/v1/enrol/model")]:  # fmt: skip
            answer = client.request(method, path, content=b"x")
            assert answer.status_code == 403, path
            assert answer.json()["error"]["code"] == "enrolment_off"
            assert "--enrol-dir" in answer.json()["error"]["message"]
        assert client.get("/v1/model").json()["enrolment"] is False
        answer = client.post(
            "/v1/transcribe?model=personal", files={"file": ("a.ogg", CLIP.read_bytes())}
        )
        assert answer.status_code == 404


def test_recordings_are_kept_replaced_and_dropped_by_prompt(tiny_model, tmp_path):
    enrolment = Enrolment(tmp_path / "enrol", tiny_model)
    with _client(load_model(tiny_model), enrolment) as client:
        assert client.get("/v1/model").json()["enrolment"] is True
        prompts = client.get("/v1/enrol/prompts?n=3&start=2").json()["prompts"]
        assert [p["id"] for p in prompts] == ["a0003", "a0004", "a0005"]
        assert prompts[0]["text"] == "For the twentieth time that evening the two men shook hands."
        assert client.get("/v1/enrol/prompts?n=x").status_code == 400
        status = _put(client, "a0003").json()
        assert status["recordings"] == ["a0003"] and status["seconds"] == pytest.approx(
            3.1, abs=0.1
        )
        text = (tmp_path / "enrol" / "recordings" / "arctic_a0003.txt").read_text()
        assert text.startswith("For the twentieth time")
        _put(client, "a0003", name="again.ogg")  # a re-recording replaces the take
        assert len(list((tmp_path / "enrol" / "recordings").glob("arctic_a0003.*"))) == 2
        assert _put(client, "z9999").status_code == 404
        bad = _put(client, "a0004", data=b"not audio at all", name="x.wav")
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unreadable_audio"
        assert client.delete("/v1/enrol/recordings/a0003").json()["recordings"] == []
        short = client.post("/v1/enrol/start")
        assert short.status_code == 400 and short.json()["error"]["code"] == "too_little_speech"
        assert "record at least 30 s more" in short.json()["error"]["message"]


def test_enrolment_runs_in_the_background_and_its_model_serves(tiny_model, tmp_path):
    enrolment = Enrolment(tmp_path / "enrol", tiny_model, enrol_args=["--epochs", "1"])
    with _client(load_model(tiny_model), enrolment) as client:
        for i in range(1, 12):  # 11 x 3.1 s
            assert _put(client, f"a{i:04d}").status_code == 200
        started = client.post("/v1/enrol/start")
        assert started.status_code == 202 and started.json()["running"]
        again = client.post("/v1/enrol/start")
        assert again.status_code == 409 and again.json()["error"]["code"] == "enrolment_running"
        assert _put(client, "a0020").status_code == 409  # the recordings are in use
        # transcription goes on while it trains
        plain = client.post("/v1/transcribe", files={"file": ("a.ogg", CLIP.read_bytes())})
        assert plain.status_code == 200
        deadline = time.monotonic() + 240
        while client.get("/v1/enrol").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.5)
        status = client.get("/v1/enrol").json()
        assert status["progress"]["state"] == "done", status
        assert status["personal_model"] and status["progress"]["wer_before"] is not None
        download = client.get("/v1/enrol/model")
        assert download.status_code == 200 and download.content[:2] == b"PK"
        personal = client.post(
            "/v1/transcribe?model=personal", files={"file": ("a.ogg", CLIP.read_bytes())}
        )
        assert personal.status_code == 200 and "text" in personal.json()
        assert client.post("/v1/transcribe?model=other", content=b"x").status_code == 400
        with client.websocket_connect("/v1/stream?model=personal") as ws:
            assert ws.receive_json()["type"] == "ready"


def test_a_failed_enrolment_says_why(tiny_model, tmp_path):
    enrolment = Enrolment(tmp_path / "enrol", tiny_model, enrol_args=["--lr", "-1"])
    with _client(load_model(tiny_model), enrolment) as client:
        for i in range(1, 12):
            _put(client, f"a{i:04d}")
        client.post("/v1/enrol/start")
        deadline = time.monotonic() + 120
        while client.get("/v1/enrol").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.5)
        progress = client.get("/v1/enrol").json()["progress"]
        assert progress["state"] == "failed" and "lr" in progress["message"]
        assert client.get("/v1/enrol/model").status_code == 404
