"""The page at ``/`` driven in headless Chromium: Debian's ``chromium`` through Playwright.

Playwright's own browser builds are not used (they download from elsewhere); ``scripts/test.sh``
installs Debian's ``chromium`` when it can. Without it these tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip(
    "starlette", reason="asr serve needs the serve extra (pip install -e '.[serve]')"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
httpx = pytest.importorskip("httpx", reason="needs httpx (the test extra)")

from asr.audio import load_audio  # noqa: E402
from asr.decode import GreedyDecoder  # noqa: E402
from asr.serve import ServeConfig, ServerThread, create_app  # noqa: E402
from asr.serve.enrolment import Enrolment  # noqa: E402
from asr.transcribe import load_model  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

CHROMIUM = os.environ.get("ASR_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium to drive: apt-get install chromium (scripts/test.sh does when run as root) "
    "or set ASR_CHROMIUM to a Chromium binary",
)
CLIP = ROOT / "examples" / "kathleen" / "arctic_a0003_1592748500.ogg"
OTHER = ROOT / "examples" / "kathleen" / "arctic_a0040_1592747634.ogg"


@pytest.fixture(scope="module")
def server():
    rec = load_model()
    app = create_app(rec, ServeConfig(), lambda: GreedyDecoder(rec.tokenizer))
    with ServerThread(app) as running:
        yield running


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


def _launch(playwright, *args: str):
    try:
        return playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required", *args]
        )
    except sync_api.Error as exc:
        pytest.skip(f"{CHROMIUM} does not start headless here: {str(exc).splitlines()[0]}")


def _errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_upload_click_a_word_play_from_its_time_download_subtitles(server, playwright):
    with httpx.Client(trust_env=False, timeout=60) as client:
        expected = client.post(
            server.url + "/v1/transcribe", files={"file": (CLIP.name, CLIP.read_bytes())}
        ).json()
        srt = client.post(
            server.url + "/v1/transcribe?format=srt",
            content=CLIP.read_bytes(),
            headers={"Content-Type": "audio/ogg"},
        ).text
    browser = _launch(playwright)
    try:
        page = browser.new_page(accept_downloads=True)
        errors = _errors(page)
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => document.getElementById('model').textContent.includes('29 tokens')"
        )
        assert page.locator("#enrol").is_hidden()  # the server takes no enrolments
        page.set_input_files("#file", str(CLIP))
        page.wait_for_selector("#transcript .word")
        words = page.locator("#transcript .word")
        assert words.all_inner_texts() == [w["word"] for w in expected["words"]]
        assert page.inner_text("#transcript") == expected["text"]

        # click the fourth word: the audio plays from where it was heard
        word = expected["words"][3]
        page.evaluate(
            """() => {
                const player = document.getElementById('player');
                window.playedFrom = null;
                player.addEventListener('playing', () => { window.playedFrom = player.currentTime },
                                        {once: true});
                // the marked word at each time update while it plays, kept for the test to read
                // whenever it gets there (a loaded machine may poll after the clip has ended)
                window.marks = [];
                player.addEventListener('timeupdate', () => {
                    const a = document.querySelector('#transcript .word.active');
                    if (a && !player.paused)
                        window.marks.push([player.currentTime, Number(a.dataset.start),
                                           Number(a.dataset.end)]);
                });
            }"""
        )
        words.nth(3).click()
        page.wait_for_function("() => window.playedFrom !== null", timeout=15_000)
        assert page.evaluate("() => window.playedFrom") == pytest.approx(word["start"], abs=0.05)

        # while it plays, the marked word is the one being spoken
        page.wait_for_function("() => window.marks.length > 0", timeout=15_000)
        t, start, end = page.evaluate("() => window.marks[0]")
        assert start - 0.05 <= t <= end + 0.25  # marked within a frame or two of playback
        assert start >= word["start"]

        with page.expect_download() as download:
            page.click("#srt")
        assert download.value.suggested_filename == CLIP.stem + ".srt"
        assert open(download.value.path(), encoding="utf-8").read() == srt
        assert not errors
    finally:
        browser.close()


def _launch_with_microphone(playwright, wave: np.ndarray, tmp_path):
    """Chromium whose fake microphone plays ``wave`` (16 kHz mono) once, permission granted."""
    mic = tmp_path / "mic.wav"
    sf.write(mic, wave, 16_000, "PCM_16")
    return _launch(
        playwright,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}%noloop",
    )


def test_live_mode_shows_partials_then_final_text(server, playwright, tmp_path):
    # the microphone is a file: two sentences with a second of quiet between, then quiet
    first, second = (load_audio(p, 16_000).numpy() for p in (CLIP, OTHER))
    quiet = np.zeros(16_000, dtype=np.float32)
    mic = np.concatenate([quiet[:4000], first, quiet, second, quiet])
    browser = _launch_with_microphone(playwright, mic, tmp_path)
    try:
        page = browser.new_page()
        errors = _errors(page)
        page.goto(server.url + "/")
        page.click("#live")
        page.wait_for_selector("#transcript .partial", timeout=15_000)
        # the first sentence becomes final words at the pause, while the microphone is still on
        page.wait_for_selector("#transcript .word", timeout=20_000)
        assert page.inner_text("#live") == "Stop"
        time.sleep(first.size / 16_000 + 2.0)  # the rest of the file, and its trailing quiet
        page.click("#live")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('live transcript done')",
            timeout=20_000,
        )
        assert page.locator("#transcript .partial").count() == 0
        starts = [
            float(s)
            for s in page.locator("#transcript .word").evaluate_all(
                "els => els.map(e => e.dataset.start)"
            )
        ]
        assert len(starts) >= 8 and starts == sorted(starts)
        assert starts[-1] > 3.0, "the second sentence's words count from the stream's start"
        assert not page.locator("#srt").is_disabled()
        assert not errors
    finally:
        browser.close()


def test_record_from_the_microphone_then_transcribe(server, playwright, tmp_path):
    clip = load_audio(CLIP, 16_000).numpy()
    mic = np.concatenate([np.zeros(4000, np.float32), clip])
    browser = _launch_with_microphone(playwright, mic, tmp_path)
    try:
        page = browser.new_page()
        errors = _errors(page)
        page.goto(server.url + "/")
        page.click("#record")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('recording')"
        )
        time.sleep(clip.size / 16_000 + 0.8)
        page.click("#record")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('recording.wav: ')",
            timeout=30_000,
        )
        assert page.inner_text("#status").startswith("recording.wav: transcribed")
        words = page.locator("#transcript .word").all_inner_texts()
        assert len(words) >= 6  # the page's WAV of the recording reads and decodes
        page.wait_for_function("() => document.getElementById('player').readyState >= 1")
        duration = page.evaluate("() => document.getElementById('player').duration")
        assert duration == pytest.approx(clip.size / 16_000 + 0.8 + 0.25, abs=0.6)
        assert not errors
    finally:
        browser.close()


@pytest.fixture
def enrol_server(tiny_model, tmp_path):
    """A server of the tiny model that takes enrolments (one epoch each), nine prompts recorded."""
    rec = load_model(tiny_model)
    enrolment = Enrolment(tmp_path / "enrol", tiny_model, enrol_args=["--epochs", "1"])
    app = create_app(rec, ServeConfig(), lambda: GreedyDecoder(rec.tokenizer), "tiny", enrolment)
    with ServerThread(app) as running:
        with httpx.Client(trust_env=False, timeout=60) as client:
            for i in range(1, 10):  # 9 x 3.1 s
                answer = client.put(
                    f"{running.url}/v1/enrol/recordings/a{i:04d}",
                    files={"file": (CLIP.name, CLIP.read_bytes())},
                )
                assert answer.status_code == 200
        yield running


def _prompt(page) -> str:
    return page.get_attribute("#prompt", "data-id")


def test_train_on_my_voice_records_prompts_trains_and_switches_models(
    enrol_server, playwright, tmp_path
):
    clip = load_audio(CLIP, 16_000).numpy()
    mic = np.concatenate([np.zeros(4000, np.float32), clip])
    browser = _launch_with_microphone(playwright, mic, tmp_path)
    try:
        page = browser.new_page(accept_downloads=True)
        errors = _errors(page)
        page.goto(enrol_server.url + "/")
        page.wait_for_selector("#enrol", state="visible")
        assert _prompt(page) == "a0010"  # the first prompt not yet recorded
        assert page.inner_text("#prompt-count") == "sentence 10 of 60"
        assert page.locator("#enrol-train").is_disabled()  # 28 s: not enough yet

        page.click("#prompt-record")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('recording')"
        )
        time.sleep(clip.size / 16_000 + 0.6)
        page.click("#prompt-record")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('sentence 10 saved')"
        )
        assert _prompt(page) == "a0011"  # on to the next sentence
        assert page.inner_text("#enrol-recorded").startswith("10 sentences")
        page.click("#prompt-skip")
        assert _prompt(page) == "a0012"
        page.click("#prompt-back")
        page.click("#prompt-back")
        assert _prompt(page) == "a0010" and "record again" in page.inner_text("#prompt-count")

        page.click("#enrol-train")
        page.wait_for_function(
            "() => document.getElementById('enrol-progress').textContent.includes('ready')",
            timeout=180_000,
        )
        assert "rough check" in page.inner_text("#enrol-progress")  # under 3 minutes of speech
        assert page.locator("#model-choice").is_visible()
        assert page.is_checked("#model-personal")
        assert "[using your model]" in page.inner_text("#model")
        with page.expect_request(lambda r: "/v1/transcribe" in r.url) as request:
            page.set_input_files("#file", str(CLIP))
        assert request.value.url.endswith("/v1/transcribe?model=personal")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('with your model')"
        )

        page.check("#model-bundled")  # the way back
        with page.expect_request(lambda r: "/v1/transcribe" in r.url) as request:
            page.set_input_files("#file", str(OTHER))
        assert request.value.url.endswith("/v1/transcribe")

        with page.expect_download() as download:
            page.click("#enrol-download")
        assert download.value.suggested_filename == "personal.pt"
        assert open(download.value.path(), "rb").read(2) == b"PK"
        assert not errors
    finally:
        browser.close()
