"""TED-LIUM 3: SPH talks and STM segments; entries point into the talk by offset and duration."""

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.cli import main
from asr.recipes import tedlium
from tests.conftest import tone
from tests.recipes.conftest import make_tar, manifest

STM = """\
;; comment line
TalkA_2010 1 inter_segment_gap 0.00 1.00 <o,,unknown> ignore_time_segment_in_scoring
TalkA_2010 1 TalkA_2010 1.00 2.50 <o,f0,male> and it 's {NOISE} something <unk> we 've seen
TalkA_2010 1 TalkA_2010 2.50 3.00 <o,f0,male> {BREATH} <unk>
TalkA_2010 1 TalkA_2010 3.00 3.90 <o,f0,male> thank you
TalkA_2010 1 TalkA_2010 4.50 5.00 <o,f0,male> past the end
"""


def _talks(root, rel, talks=("TalkA_2010",), seconds=4.0):
    for i, talk in enumerate(talks):
        sph = root / "TEDLIUM_release-3" / rel / "sph" / f"{talk}.sph"
        sph.parent.mkdir(parents=True, exist_ok=True)
        wave = tone(seconds, 16_000, freq=300 + 50 * i, seed=i)
        sf.write(sph, wave, 16_000, format="NIST", subtype="PCM_16")
        stm = root / "TEDLIUM_release-3" / rel / "stm" / f"{talk}.stm"
        stm.parent.mkdir(parents=True, exist_ok=True)
        stm.write_text(STM.replace("TalkA_2010", talk))
    return root


def _corpus(root):
    _talks(root, "data", ("TalkA_2010", "TalkB_2011"))
    _talks(root, "legacy/train", ("TalkA_2010",))
    _talks(root, "legacy/dev", ("DevTalk_2009",))
    _talks(root, "legacy/test", ("TestTalk_2008",))
    return root


def test_segments_are_cleaned_and_point_into_the_talk(tmp_path):
    summary = tedlium.prepare(_corpus(tmp_path))
    train = summary.splits["train"]
    assert len(train) == 4 and {u.speaker for u in train} == {"TalkA_2010", "TalkB_2011"}
    first = train[0]
    assert first.id == "TalkA_2010-0000100-0000250"
    assert first.text == "and it's something we've seen"
    assert (first.offset, first.duration) == (1.0, 1.5)
    assert train[1].text == "thank you" and train[1].duration == pytest.approx(0.9)
    reasons = [r for _, r in summary.skipped]
    assert reasons.count(tedlium.IGNORE) == 4  # one per talk (2 train, dev, test)
    assert reasons.count("empty after removing noise tokens") == 4
    assert reasons.count("segment empty or past the end of the audio") == 4
    # the entry's audio is the talk's slice, read by offset: nothing was rewritten
    wave = load_audio(first.audio, 16_000, offset=first.offset, duration=first.duration)
    assert np.allclose(wave.numpy(), tone(4.0, 16_000, freq=300, seed=0)[16_000:40_000], atol=1e-4)
    legacy = tedlium.prepare(tmp_path, train_set="legacy")
    assert len(legacy.splits["train"]) == 2 and len(legacy.splits["dev"]) == 2


def test_clean_transcript():
    assert tedlium.clean_transcript("{SMACK} i 'm here <unk> [laughter]".split()) == "i'm here"


def test_download_checksum_and_rerun(tmp_path, capsys):
    _corpus(tmp_path / "build")
    archive = tmp_path / "TEDLIUM_release-3.tgz"
    md5 = make_tar(tmp_path / "build" / "TEDLIUM_release-3", archive, "TEDLIUM_release-3")
    out = tmp_path / "out"
    base = ["prepare", "tedlium", "--download", str(archive), "--out", str(out)]
    assert main(base) == 2  # the pinned sha256 is the real release's
    assert "checksum mismatch: expected sha256 ad1e454d" in capsys.readouterr().err
    assert main([*base, "--checksum", md5]) == 0
    rows = manifest(out / "dev.jsonl")
    assert len(rows) == 2 and rows[0]["offset"] == 1.0
    assert rows[0]["audio"] == "download/TEDLIUM_release-3/legacy/dev/sph/DevTalk_2009.sph"
    archive.unlink()
    assert main([*base, "--checksum", md5]) == 0
