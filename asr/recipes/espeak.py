"""Synthetic speech: the transcripts of training manifests spoken by eSpeak NG voices.

A small corpus has few speakers; synthetic voices reading its own training texts add variety
(accents, pitch, rate, voice quality) without adding a word the real training data lacks. Each
unique transcript is spoken by ``per_text`` voices drawn at random from English accents x voice
variants, at a random rate and pitch. Audio is written as 16 kHz FLAC under ``OUT/audio`` with
names fixed by the text, the voice and the seed, so a re-run reuses what exists and draws the same
voices. Needs the ``espeak-ng`` program (Debian/Ubuntu: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.audio import SAMPLE_RATE
from asr.data import Utterance, read_manifest
from asr.recipes.common import PrepareSummary
from asr.recipes.corpus import Corpus, Source

# eSpeak NG's English accents (mbrola voices need another program and are left out)
LANGUAGES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
# voice variants: formants, pitch range and voicing of male (m) and female (f) speakers
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
RATE_WPM = (130, 185)
PITCH = (25, 75)


class SynthesisError(RuntimeError):
    """eSpeak NG failed on a text."""


@dataclass(frozen=True)
class Voice:
    language: str
    variant: str
    rate: int  # words per minute
    pitch: int  # 0-99

    @property
    def speaker(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def name(self) -> str:
        return f"{self.speaker}-s{self.rate}-p{self.pitch}"

    def args(self) -> list[str]:
        return ["-v", self.speaker, "-s", str(self.rate), "-p", str(self.pitch)]


def draw_voices(text: str, per_text: int, seed: int) -> list[Voice]:
    """``per_text`` distinct voices for ``text``; the same text and seed always get the same."""
    key = hashlib.sha256(f"{seed}\n{text}".encode()).hexdigest()
    rng = random.Random(key)
    pairs = rng.sample([(lang, var) for lang in LANGUAGES for var in VARIANTS], per_text)
    return [Voice(lang, var, rng.randint(*RATE_WPM), rng.randint(*PITCH)) for lang, var in pairs]


def speak(espeak: str, voice: Voice, text: str, dest: Path) -> float:
    """Speak ``text`` into ``dest`` (16 kHz FLAC, written atomically); returns its duration."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        done = subprocess.run(
            [espeak, *voice.args(), "-w", str(wav), "--", text],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 or not wav.is_file():
            raise SynthesisError(
                f"{espeak} failed ({done.returncode}): {done.stderr.strip()[:200]}"
            )
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    wave = torch.from_numpy(samples.mean(axis=1))
    if len(wave) == 0:
        raise SynthesisError(f"{espeak} wrote no samples")
    if rate != SAMPLE_RATE:
        wave = AF.resample(wave, rate, SAMPLE_RATE)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    sf.write(part, wave.numpy(), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    part.replace(dest)
    return len(wave) / SAMPLE_RATE


def prepare(
    manifests: list[Path],
    out_dir: Path,
    per_text: int = 2,
    seed: int = 0,
    espeak: str = "espeak-ng",
    jobs: int = 2,
) -> PrepareSummary:
    """Speak every unique transcript of ``manifests`` with ``per_text`` voices into ``out_dir``.

    Returns a summary with one ``all`` split (speaker: the voice, e.g. ``espeak:en-gb+f3``). A
    text the program fails on, or an unreadable file left from an earlier run, is reported and
    skipped.

    Raises:
        FileNotFoundError: the ``espeak`` program is not found.
    """
    program = shutil.which(espeak)
    if program is None:
        raise FileNotFoundError(
            f"{espeak}: program not found (install eSpeak NG, e.g. apt-get install espeak-ng, "
            "or give its path with --espeak)"
        )
    if not 1 <= per_text <= len(LANGUAGES) * len(VARIANTS):
        raise ValueError(
            f"--per-text must be 1 to {len(LANGUAGES) * len(VARIANTS)}, got {per_text}"
        )
    texts = list(dict.fromkeys(u.text.strip() for m in manifests for u in read_manifest(m)))
    texts = [t for t in texts if t]
    jobs_list = []
    for text in texts:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        for voice in draw_voices(text, per_text, seed):
            dest = (
                Path(out_dir)
                / "audio"
                / voice.speaker
                / f"{digest}-s{voice.rate}-p{voice.pitch}.flac"
            )
            jobs_list.append((text, voice, dest, f"espeak_{digest}_{voice.name}"))

    def run(job: tuple[str, Voice, Path, str]) -> Utterance | tuple[str, str]:
        text, voice, dest, utt_id = job
        try:
            duration = (
                sf.info(dest).duration if dest.is_file() else speak(program, voice, text, dest)
            )
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # SynthesisError, libsndfile
            return (f"{voice.name}: {text[:60]!r}", str(exc))
        return Utterance(utt_id, str(dest), round(duration, 4), text, f"espeak:{voice.speaker}")

    summary = PrepareSummary(splits={"all": []})
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # each job is a subprocess
        for result in pool.map(run, jobs_list):
            if isinstance(result, Utterance):
                summary.splits["all"].append(result)
            else:
                summary.skip(*result)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The voice options: ``--per-text``, ``--seed``, ``--espeak``, ``--jobs``."""
    parser.add_argument("--per-text", type=int, default=2, help="voices per transcript (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the voice draw")
    parser.add_argument("--espeak", default="espeak-ng", help="the program (default: espeak-ng)")
    parser.add_argument("--jobs", type=int, default=2, help="programs run at once (default 2)")


CORPUS = Corpus(
    name="espeak",
    help="synthetic speech: training transcripts spoken by eSpeak NG voices",
    description="Speak every unique transcript of the given manifests with --per-text voices "
    "drawn from eSpeak NG's English accents and voice variants, at random rate and pitch, into "
    "OUT/audio (16 kHz FLAC), and write OUT/all.jsonl (speaker: the voice). Extra speakers "
    "for a small corpus, with no word its training data lacks. A re-run reuses the audio "
    "and draws the same voices. Needs the espeak-ng program (apt-get install espeak-ng).",
    source=Source("training manifests (JSON Lines)", nargs="+", name="manifests"),
    read=lambda manifests, args: prepare(
        manifests, args.out, args.per_text, args.seed, args.espeak, args.jobs
    ),
    add_arguments=add_arguments,
    hold_out=False,
)
