"""AN4: CMU's an4_sphere.tar.gz layout (etc/*.fileids + *.transcription, wav/**/*.sph)."""

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.cli import main
from asr.recipes import an4
from tests.conftest import tone, write_audio
from tests.recipes.conftest import make_tar, manifest

TRAIN = {
    "an4_clstk/fash/an251-fash-b": "<s> YES </s> (an251-fash-b)",
    "an4_clstk/fash/an253-fash-b": "<s> GO </s> (an253-fash-b)",
    "an4_clstk/fbbh/an86-fbbh-b": "<s> ENTER SIX TWO FOUR </s> (an86-fbbh-b)",
    "an4_clstk/fbbh/an87-fbbh-b": "<s> RUBOUT </s> (an99-fbbh-b)",  # ids disagree
    "an4_clstk/mblw/an36-mblw-b": "<s> STOP </s> (an36-mblw-b)",  # no audio (below)
}
TEST = {"an4test_clstk/fcaw/cen1-fcaw-b": "<s> H I </s> (cen1-fcaw-b)"}


def _tree(root):
    """``root/an4/...`` with big-endian 16-bit SPHERE audio, as CMU ships it."""
    for name, table in (("train", TRAIN), ("test", TEST)):
        etc = root / "an4" / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / f"an4_{name}.fileids").write_text("\n".join(table) + "\n")
        (etc / f"an4_{name}.transcription").write_text("\n".join(table.values()) + "\n")
        for i, fileid in enumerate(table):
            if "mblw" in fileid:
                continue
            path = root / "an4" / "wav" / f"{fileid}.sph"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(
                path,
                tone(0.5, 16_000, seed=i),
                16_000,
                format="NIST",
                subtype="PCM_16",
                endian="BIG",
            )
    return root


def test_layout_pairs_fileids_with_transcriptions(tmp_path):
    summary = an4.prepare(_tree(tmp_path))
    train = {u.id: u for u in summary.splits["train"]}
    assert set(train) == {"an251-fash-b", "an253-fash-b", "an86-fbbh-b"}
    assert train["an86-fbbh-b"].text == "ENTER SIX TWO FOUR"
    assert train["an86-fbbh-b"].speaker == "fbbh" and train["an251-fash-b"].duration == 0.5
    assert [u.text for u in summary.splits["test"]] == ["H I"]
    reasons = " | ".join(r for _, r in summary.skipped)
    assert "'an99-fbbh-b' does not match an4_train.fileids" in reasons
    assert "an36-mblw-b.sph: audio file not found" in reasons
    # SPHERE is read as is by soundfile (libsndfile), big-endian included
    wave = load_audio(train["an251-fash-b"].audio, 16_000)
    assert np.allclose(wave.numpy(), tone(0.5, 16_000, seed=0), atol=1e-4)


def test_parse_transcription():
    assert an4.parse_transcription("<s> A B C </s> (an1-x-b)") == ("an1-x-b", "A B C")
    assert an4.parse_transcription("no id here") is None


def test_download_checksum_rerun_and_dev_hold_out(tmp_path, capsys):
    archive = tmp_path / "an4_sphere.tar.gz"
    make_tar(_tree(tmp_path / "build") / "an4", archive, "an4")
    out = tmp_path / "out"
    # the pinned sha256 is the real archive's: our tiny one fails with a clear message
    assert main(["prepare", "an4", "--download", str(archive), "--out", str(out)]) == 2
    assert "checksum mismatch: expected sha256 a0525579" in capsys.readouterr().err
    args = ["prepare", "an4", "--download", archive.as_uri(), "--out", str(out)]
    args += ["--checksum", "none", "--dev", "fash"]
    assert main(args) == 0
    dev = manifest(out / "dev.jsonl")
    assert {r["speaker"] for r in dev} == {"fash"} and len(manifest(out / "train.jsonl")) == 1
    assert len(manifest(out / "test.jsonl")) == 1
    archive.unlink()
    assert main(args) == 0  # the .done markers: nothing fetched again
    assert "wrote" in capsys.readouterr().out


def test_not_an4_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="an4_train.transcription"):
        an4.prepare(tmp_path)


def test_reencoded_copy_is_read_by_name(tmp_path):
    """AN4 as ../shared holds it: the tarball's layout with Opus audio in place of SPHERE."""
    root = tmp_path / "an4"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.fileids").write_text("an4_clstk/fash/an251-fash-b\n")
    (root / "etc" / "an4_train.transcription").write_text("<s> YES </s> (an251-fash-b)\n")
    audio = root / "wav" / "an4_clstk" / "fash" / "an251-fash-b.opus"
    write_audio(audio, tone(0.5, 16_000), 16_000)
    summary = an4.prepare(tmp_path)
    (utt,) = summary.splits["train"]
    assert utt.audio.endswith("an251-fash-b.opus") and utt.text == "YES"
    assert utt.duration == pytest.approx(0.5, abs=0.01)
