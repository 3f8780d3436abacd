"""Speech Commands v0.02: the full release's layout and the test set's, each in a tiny tree."""

import pytest

from asr.cli import main
from asr.recipes import speechcommands
from tests.conftest import tone, write_audio
from tests.recipes.conftest import make_tar, manifest


def _full_release(root):
    """``<word>/<speaker>_nohash_<n>.wav`` + the two lists + ``_background_noise_``."""
    for word, speaker, n in [
        ("yes", "0a7c2a8d", 0),
        ("yes", "0a7c2a8d", 1),
        ("no", "0a7c2a8d", 0),
        ("yes", "1b4c9b89", 0),
        ("bed", "2c6d4e9f", 0),
        ("go", "3f2b5c1e", 0),
    ]:
        write_audio(root / word / f"{speaker}_nohash_{n}.wav", tone(1.0, 16_000, seed=n), 16_000)
    write_audio(root / "_background_noise_" / "white_noise.wav", tone(3.0, 16_000), 16_000)
    (root / "go" / "not_a_clip.wav").write_bytes(b"RIFF")  # a name that fits no clip pattern
    (root / "no" / "4d5e6f70_nohash_0.wav").write_bytes(b"RIFF\x00\x00")  # corrupt audio
    (root / "validation_list.txt").write_text("yes/1b4c9b89_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("bed/2c6d4e9f_nohash_0.wav\n")
    return root


def _test_set(root):
    """``<word>/...``, ``_unknown_/<word>_<speaker>_nohash_<n>``, ``_silence_/``; Opus audio."""
    top = root / "speech_commands_test_set_v0.02"
    for rel in ["yes/0a7c2a8d_nohash_0", "up/1b4c9b89_nohash_2", "_unknown_/bed_2c6d4e9f_nohash_0"]:
        write_audio(top / f"{rel}.opus", tone(1.0, 16_000), 16_000)
    write_audio(top / "_silence_" / "1024.opus", tone(1.0, 16_000, amp=0.01), 16_000)
    (top / "_unknown_" / "9a8b7c6d_nohash_0.opus").write_bytes(b"")  # _unknown_ without a word
    (top / "LICENSE").write_text("CC BY 4.0\n")
    return root


def test_full_release_splits_by_the_lists_and_keeps_noise_apart(tmp_path):
    summary = speechcommands.prepare(_full_release(tmp_path / "sc"))
    train = {u.id: u for u in summary.splits["train"]}
    assert set(train) == {
        "yes_0a7c2a8d_nohash_0",
        "yes_0a7c2a8d_nohash_1",
        "no_0a7c2a8d_nohash_0",
        "go_3f2b5c1e_nohash_0",
    }
    assert train["no_0a7c2a8d_nohash_0"].text == "no"
    assert train["no_0a7c2a8d_nohash_0"].speaker == "0a7c2a8d"
    assert [u.id for u in summary.splits["dev"]] == ["yes_1b4c9b89_nohash_0"]
    assert [(u.text, u.speaker) for u in summary.splits["test"]] == [("bed", "2c6d4e9f")]
    noise = summary.splits["noise"]
    assert len(noise) == 1 and noise[0].text == "" and noise[0].duration == pytest.approx(3.0)
    reasons = {what.split("/")[-1]: why for what, why in summary.skipped}
    assert "name is not <speaker>_nohash_<n>" in reasons["not_a_clip.wav"]
    assert "unreadable audio" in reasons["4d5e6f70_nohash_0.wav"]


def test_test_set_layout_opus_unknown_words_and_speaker_hold_out(tmp_path, capsys):
    _test_set(tmp_path)
    summary = speechcommands.prepare(tmp_path)  # the folder above the corpus's own
    assert set(summary.splits) == {"all", "noise"}
    words = {u.id: (u.text, u.speaker) for u in summary.splits["all"]}
    assert words == {
        "yes_0a7c2a8d_nohash_0": ("yes", "0a7c2a8d"),
        "up_1b4c9b89_nohash_2": ("up", "1b4c9b89"),
        "bed_2c6d4e9f_nohash_0": ("bed", "2c6d4e9f"),
    }
    assert any("9a8b7c6d_nohash_0.opus" in what for what, _ in summary.skipped)
    out = tmp_path / "out"
    assert main(["prepare", "speechcommands", str(tmp_path), "--out", str(out), "--test", "1"]) == 0
    test, train = manifest(out / "test.jsonl"), manifest(out / "train.jsonl")
    assert len(test) == 1 and len(train) == 2
    assert {r["speaker"] for r in test}.isdisjoint({r["speaker"] for r in train})
    assert [r["text"] for r in manifest(out / "noise.jsonl")] == [""]
    assert "skipped 1 files" in capsys.readouterr().out


def test_download_fetches_the_named_archive(tmp_path):
    tree = _test_set(tmp_path / "tree") / "speech_commands_test_set_v0.02"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_tar(tree, mirror / "speech_commands_test_set_v0.02.tar.gz", tree.name)
    out = tmp_path / "out"
    args = ["prepare", "speechcommands", "--archive", "test", "--download", str(mirror)]
    assert main([*args, "--out", str(out)]) == 0
    assert len(manifest(out / "all.jsonl")) == 3
    assert (out / "download" / "test" / ".speech_commands_test_set_v0.02.tar.gz.done").exists()


def test_not_the_layout(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="no Speech Commands word folders"):
        speechcommands.prepare(tmp_path)
