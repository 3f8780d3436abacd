""" "Train on my voice" behind the page: recordings of prompts, one fine-tuning at a time, and the
personal model it makes (``asr serve --enrol-dir DIR``).

Everything stays under the operator's folder: ``DIR/recordings/`` holds ``arctic_<id>.<ext>``
with its prompt as ``arctic_<id>.txt`` beside it (what ``asr enrol`` reads), ``DIR/model/`` is
``asr enrol``'s output (``progress.json``, ``personal.pt``, ``enrol.log``). The fine-tuning runs
as an ``asr enrol`` child process at a lower priority, so the server's event loop and decodes
never wait on it (they share the CPU with it); the server reads its ``progress.json`` and loads
``personal.pt`` once it is written. A server started again on the same folder finds the
recordings and the model where they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from asr.audio import audio_duration
from asr.enrol_data import MIN_SECONDS
from asr.prompts import arctic_prompts
from asr.serve.errors import ApiError
from asr.transcribe import Recognizer, load_model

MAX_RECORDING_SECONDS = 30.0  # one prompt's recording
MIN_RECORDING_SECONDS = 0.5
NICE = 10  # the fine-tuning's priority below the server's


class Enrolment:
    """One speaker's enrolment in ``folder``, fine-tuning ``model`` (None: the bundled one).

    ``enrol_args``: extra ``asr enrol`` options (``["--epochs", "1"]`` in tests); ``device`` and
    ``precision``: where and how the personal model runs once made (as the server's model does).
    """

    def __init__(
        self,
        folder: str | Path,
        model: Path | None = None,
        enrol_args: list[str] | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> None:
        self.folder = Path(folder)
        self.recordings = self.folder / "recordings"
        self.out = self.folder / "model"
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.model, self.device, self.precision = model, device, precision
        self.enrol_args = list(enrol_args or [])
        self.prompts = dict(arctic_prompts())
        self.process: subprocess.Popen | None = None
        self.personal: Recognizer | None = None
        self._loaded_mtime = 0.0
        self._durations: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    # --- recordings ---

    def recorded(self) -> dict[str, float]:
        """Prompt id -> seconds, of the recordings kept (each file's header read once: the page
        asks every second while a fine-tuning runs)."""
        seconds = {}
        for txt in sorted(self.recordings.glob("arctic_*.txt")):
            audio = [p for p in txt.parent.glob(txt.stem + ".*") if p.suffix != ".txt"]
            if audio:
                seconds[txt.stem.removeprefix("arctic_")] = self._duration(audio[0])
        return seconds

    def _duration(self, path: Path) -> float:
        key = (path.name, path.stat().st_mtime_ns)
        if key not in self._durations:
            self._durations[key] = audio_duration(path)
        return self._durations[key]

    def check_prompt(self, prompt_id: str) -> str:
        if prompt_id not in self.prompts:
            raise ApiError(404, "not_found", f"no prompt {prompt_id!r} (ids as a0001 ... b0539)")
        return prompt_id

    def keep(self, prompt_id: str, path: Path, suffix: str, seconds: float) -> dict:
        """Keep an uploaded recording of a prompt (moved from ``path``), replacing an earlier take."""
        self.check_prompt(prompt_id)
        if not MIN_RECORDING_SECONDS <= seconds <= MAX_RECORDING_SECONDS:
            raise ApiError(
                413 if seconds > MAX_RECORDING_SECONDS else 400,
                "too_large" if seconds > MAX_RECORDING_SECONDS else "bad_request",
                f"a prompt's recording must last {MIN_RECORDING_SECONDS:g} to "
                f"{MAX_RECORDING_SECONDS:g} s, this one {seconds:.1f} s",
            )
        self.discard(prompt_id)
        stem = self.recordings / f"arctic_{prompt_id}"
        shutil.move(str(path), stem.with_suffix(suffix or ".wav"))
        stem.with_suffix(".txt").write_text(self.prompts[prompt_id] + "\n", encoding="utf-8")
        return self.status()

    def discard(self, prompt_id: str) -> None:
        for old in self.recordings.glob(f"arctic_{self.check_prompt(prompt_id)}.*"):
            old.unlink()

    # --- the fine-tuning ---

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> dict:
        """Start ``asr enrol`` on the recordings (409 while one runs; 400 with too little speech)."""
        with self._lock:
            if self.running:
                raise ApiError(409, "enrolment_running", "a fine-tuning is running already")
            total = sum(self.recorded().values())
            if total < MIN_SECONDS:
                raise ApiError(
                    400, "too_little_speech",
                    f"{total:.0f} s recorded: record at least {MIN_SECONDS - total:.0f} s more",
                )  # fmt: skip
            self.personal = None
            shutil.rmtree(self.out, ignore_errors=True)
            self.out.mkdir(parents=True)
            cmd = [sys.executable, "-m", "asr", "enrol", str(self.recordings), "--out",
                   str(self.out), "--no-progress", *self.enrol_args]  # fmt: skip
            if self.model is not None:
                cmd += ["--model", str(self.model)]
            with open(self.out / "enrol.log", "wb") as log:
                self.process = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    preexec_fn=(lambda: os.nice(NICE)) if hasattr(os, "nice") else None,
                )  # fmt: skip
        return self.status()

    def progress(self) -> dict:
        """``progress.json`` as the fine-tuning last wrote it; a process that died without
        saying why is reported failed with its log's last line."""
        try:
            values = json.loads((self.out / "progress.json").read_text())
        except (OSError, ValueError):
            values = {"state": "idle"} if self.process is None else {"state": "starting"}
        if self.process is not None and self.process.poll() not in (None, 0):
            if values.get("state") not in ("failed", "done"):
                values["state"] = "failed"
                values["message"] = self._last_log_line()
        return values

    def _last_log_line(self) -> str:
        try:
            lines = (self.out / "enrol.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "the fine-tuning stopped"
        return lines[-1] if lines else "the fine-tuning stopped"

    def status(self) -> dict:
        seconds = self.recorded()
        total = sum(seconds.values())
        return {
            "recordings": sorted(seconds),
            "seconds": round(total, 1),
            "min_seconds": MIN_SECONDS,
            "running": self.running,
            "progress": self.progress(),
            "personal_model": (self.out / "personal.pt").is_file() and not self.running,
        }

    def personal_model(self) -> Recognizer | None:
        """The personal model, loaded (again) when ``personal.pt`` is new; None before one."""
        path = self.out / "personal.pt"
        if self.running or not path.is_file():
            return None
        mtime = path.stat().st_mtime
        with self._lock:
            if self.personal is None or mtime != self._loaded_mtime:
                self.personal = load_model(path, self.device, self.precision)
                self._loaded_mtime = mtime
        return self.personal

    def close(self) -> None:
        """Stop a fine-tuning in progress (the server is stopping)."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
