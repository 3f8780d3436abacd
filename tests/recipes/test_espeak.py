"""``asr prepare espeak``: training transcripts spoken by synthetic voices (a stand-in program here)."""

from __future__ import annotations

import stat
import sys

import soundfile as sf

from asr.cli import main
from asr.recipes.espeak import LANGUAGES, SAMPLE_RATE, VARIANTS, draw_voices
from tests.recipes.conftest import manifest

FAKE = """#!{python}
# a stand-in for espeak-ng: -v VOICE -s RATE -p PITCH -w FILE -- TEXT -> a 22.05 kHz WAV
import sys, numpy as np, soundfile as sf
args = sys.argv[1:]
text = args[args.index("--") + 1]
with open({log!r}, "a") as f:
    f.write(text + "\\n")
if "FAIL" in text:
    sys.exit("cannot say that")
rate = int(args[args.index("-s") + 1])
seconds = 0.4 * len(text.split()) * 150 / rate
sf.write(args[args.index("-w") + 1], 0.1 * np.sin(np.arange(int(seconds * 22050)) / 5.0), 22050)
"""


def _fake(tmp_path):
    log = tmp_path / "spoken.txt"
    exe = tmp_path / "fake-espeak"
    exe.write_text(FAKE.format(python=sys.executable, log=str(log)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe, log


def test_voices_are_distinct_and_fixed_by_text_and_seed():
    a = draw_voices("one two", 5, seed=0)
    assert a == draw_voices("one two", 5, seed=0)
    assert len({(v.language, v.variant) for v in a}) == 5
    assert all(v.language in LANGUAGES and v.variant in VARIANTS for v in a)
    assert draw_voices("one two", 5, seed=1) != a


def test_prepare_espeak_speaks_each_text_once_per_voice(tmp_path, capsys):
    exe, log = _fake(tmp_path)
    src = tmp_path / "train.jsonl"
    lines = [
        '{"id": "a", "audio": "a.wav", "duration": 1.0, "text": "ZERO ONE TWO", "speaker": "s1"}',
        '{"id": "b", "audio": "b.wav", "duration": 1.0, "text": "ZERO ONE TWO", "speaker": "s2"}',
        '{"id": "c", "audio": "c.wav", "duration": 1.0, "text": "Please FAIL here.", "speaker": "s1"}',
        '{"id": "d", "audio": "d.wav", "duration": 1.0, "text": "Author of the danger trail.", "speaker": "k"}',
    ]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "synth"
    args = [
        "prepare",
        "espeak",
        str(src),
        "--out",
        str(out),
        "--per-text",
        "3",
        "--espeak",
        str(exe),
    ]
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "all: 6 utterances" in report and "skipped 3 files" in report  # 2 texts x 3; FAIL x 3
    assert "cannot say that" in report
    recs = manifest(out / "all.jsonl")
    assert sorted({r["text"] for r in recs}) == ["Author of the danger trail.", "ZERO ONE TWO"]
    assert len({r["speaker"] for r in recs if r["text"] == "ZERO ONE TWO"}) == 3
    for r in recs:
        info = sf.info(out / r["audio"])
        assert info.samplerate == SAMPLE_RATE and abs(info.duration - r["duration"]) < 1e-3
        assert r["speaker"].startswith("espeak:en")
    spoken = log.read_text().splitlines()
    assert spoken.count("ZERO ONE TWO") == 3  # the repeated transcript is spoken once per voice
    assert spoken.count("Please FAIL here.") == 3

    # a re-run reuses the audio (only the failed texts are tried again) and writes the same file
    before = (out / "all.jsonl").read_text()
    assert main(args) == 0
    assert (out / "all.jsonl").read_text() == before
    assert log.read_text().splitlines()[len(spoken) :] == ["Please FAIL here."] * 3


def test_missing_program_is_named(tmp_path, capsys):
    src = tmp_path / "train.jsonl"
    src.write_text('{"id": "a", "audio": "a.wav", "duration": 1.0, "text": "hi"}\n')
    args = ["prepare", "espeak", str(src), "--out", str(tmp_path / "o"), "--espeak", "no-such-tts"]
    assert main(args) == 2
    assert "no-such-tts: program not found" in capsys.readouterr().err
