"""Each importer reads a tiny tree built here in the corpus's exact layout, with bad entries."""

import json

import pytest

from asr.cli import main
from asr.data import Utterance
from asr.recipes import folder, kaldi, ljspeech, nemo, speechocean
from asr.recipes.common import hold_out
from tests.conftest import tone, write_audio


def _kaldi_tree(root, upper=False):
    """speechocean762's layout: ROOT/train/{wav.scp,text,utt2spk}, audio under ROOT/WAVE/."""
    data = root / "train"
    data.mkdir(parents=True)
    scp, text, spk = [], [], []
    for s in ("0001", "0002", "0003"):
        for u in range(3):
            utt = f"{s}{u:04d}"
            write_audio(
                root / "WAVE" / f"SPEAKER{s}" / f"{utt}.ogg",
                tone(0.5, 16_000, seed=u),
                16_000,
                "VORBIS",
            )
            scp.append(f"{utt}\tWAVE/SPEAKER{s}/{utt}.ogg")
            text.append(f"{utt}\t{'WE CALL IT BEAR' if upper else 'we call it bear'}")
            spk.append(f"{utt} {s}")
    scp.append("piped sox in.wav -t wav - |")  # a command: unsupported
    text.append("piped hello")
    scp.append("gone\tWAVE/missing.ogg")  # a missing file
    text.append("gone hello")
    text.append("0003empty")  # an empty transcript (its audio exists below)
    scp.append("0003empty\tWAVE/SPEAKER0003/00030000.ogg")
    (data / "wav.scp").write_text("\n".join(scp) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    (data / "utt2spk").write_text("\n".join(spk) + "\n")
    return root


def test_kaldi_directory(tmp_path):
    root = _kaldi_tree(tmp_path / "so")
    summary = kaldi.prepare(root / "train")
    utts = summary.splits["all"]
    assert len(utts) == 9 and {u.speaker for u in utts} == {"0001", "0002", "0003"}
    reasons = " | ".join(f"{w}: {r}" for w, r in summary.skipped)
    assert "unsupported: wav.scp command" in reasons
    assert "gone: unreadable audio" in reasons and "missing.ogg" in reasons
    assert "0003empty: empty transcript" in reasons


def test_kaldi_segments(tmp_path):
    data = tmp_path / "d"
    write_audio(tmp_path / "long.wav", tone(3.0, 16_000), 16_000)
    data.mkdir()
    (data / "wav.scp").write_text(f"rec1 {tmp_path / 'long.wav'}\n")
    (data / "segments").write_text("a rec1 0.0 1.0\nb rec1 1.5 2.75\nc rec9 0 1\n")
    (data / "text").write_text("a one\nb two\nc three\n")
    summary = kaldi.prepare(data)
    a, b = summary.splits["all"]
    assert (a.offset, a.duration, b.offset, b.duration) == (0.0, 1.0, 1.5, 1.25)
    assert any("rec9 not in wav.scp" in r for _, r in summary.skipped)


def test_speechocean_uppercase_is_normalised_and_split_by_speaker(tmp_path):
    root = _kaldi_tree(tmp_path / "so", upper=True)
    out = tmp_path / "out"
    assert (
        main(
            ["prepare", "speechocean762", str(root), "--out", str(out), "--test", "1", "--dev", "1"]
        )
        == 0
    )
    splits = {
        n: [json.loads(x) for x in (out / f"{n}.jsonl").read_text().splitlines()]
        for n in ("train", "dev", "test")
    }
    speakers = {n: {r["speaker"] for r in rows} for n, rows in splits.items()}
    assert all(len(s) == 1 for s in speakers.values())
    assert not (speakers["train"] & speakers["test"]) and not (speakers["dev"] & speakers["test"])
    first = (out / "test.jsonl").read_bytes()
    assert (
        main(
            ["prepare", "speechocean762", str(root), "--out", str(out), "--test", "1", "--dev", "1"]
        )
        == 0
    )
    assert (out / "test.jsonl").read_bytes() == first  # idempotent


def test_folder_with_transcripts_holds_out_by_prompt(tmp_path, capsys):
    data = tmp_path / "kathleen" / "data"
    prompts = {
        "a0001": "Author of the danger trail, Philip Steels, etc.",
        "a0002": "Not at this particular case, Tom.",
        "a0003": "For the twentieth time that evening.",
        "a0004": "And there was Ethel Brandon.",
    }
    for p, text in prompts.items():
        for take in (1, 2):  # every prompt recorded twice
            write_audio(
                data / f"arctic_{p}_{take}.ogg", tone(0.6, 16_000, seed=take), 16_000, "VORBIS"
            )
            (data / f"arctic_{p}_{take}.txt").write_text(text)
    write_audio(data / "arctic_a0005_1.ogg", tone(0.6, 16_000), 16_000, "VORBIS")  # no transcript
    write_audio(data / "arctic_a0006_1.ogg", tone(0.6, 16_000), 16_000, "VORBIS")
    (data / "arctic_a0006_1.txt").write_text("  \n")  # empty transcript
    summary = folder.prepare(data, speaker="kathleen")
    assert len(summary.splits["all"]) == 8
    assert {r for _, r in summary.skipped} == {"no transcript (.txt) beside it", "empty transcript"}
    out = tmp_path / "out"
    args = [
        "prepare",
        "folder",
        str(data),
        "--out",
        str(out),
        "--group-by",
        r"id:arctic_(\w\d+)_",
        "--test",
        "1",
        "--dev",
        "1",
    ]
    assert main(args) == 0
    ids = {
        n: [json.loads(x)["id"] for x in (out / f"{n}.jsonl").read_text().splitlines()]
        for n in ("train", "dev", "test")
    }
    prompt = lambda i: i.split("_")[1]  # noqa: E731
    assert (
        len({prompt(i) for i in ids["test"]}) == 1 and len(ids["test"]) == 2
    )  # both takes together
    assert not {prompt(i) for i in ids["train"]} & {prompt(i) for i in ids["test"] + ids["dev"]}
    assert "skipped 2 files" in capsys.readouterr().out


def test_nemo_manifest(tmp_path):
    root = tmp_path / "an4"
    rows = []
    for split, name in (("train", "a"), ("train", "b"), ("test", "c")):
        write_audio(root / "wav" / split / f"{name}.wav", tone(0.5, 16_000), 16_000)
        rows.append(
            {
                "audio_filepath": f"wav/{split}/{name}.wav",
                "duration": 0.5,
                "text": "stop",
                "split": split,
            }
        )
    rows.append(
        {"audio_filepath": "wav/train/missing.wav", "duration": 1.0, "text": "go", "split": "train"}
    )
    rows.append(
        {"audio_filepath": "wav/train/a.wav", "duration": 0.5, "text": "", "split": "train"}
    )
    (root / "manifest.json").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    summary = nemo.prepare(root / "manifest.json")
    assert {k: len(v) for k, v in summary.splits.items()} == {"train": 2, "test": 1}
    reasons = [r for _, r in summary.skipped]
    assert len(reasons) == 3 and any("audio file not found" in r for r in reasons)
    assert any("empty transcript" in r for r in reasons) and any(
        "JSONDecodeError" in r for r in reasons
    )


def test_ljspeech(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    for i in (1, 2):
        write_audio(root / "wavs" / f"LJ001-000{i}.wav", tone(0.5, 22_050), 22_050)
    (root / "metadata.csv").write_text(
        "LJ001-0001|Printing, in the only sense|Printing, in the only sense\n"
        "LJ001-0002|in 1868 it|in eighteen sixty-eight it\n"
        "LJ001-0003|missing audio|missing audio\n"
    )
    summary = ljspeech.prepare(root)
    utts = summary.splits["all"]
    assert [u.text for u in utts] == ["Printing, in the only sense", "in eighteen sixty-eight it"]
    assert (
        len(summary.skipped) == 1
        and "LJ001-0003.wav: audio file not found" in summary.skipped[0][1]
    )


def test_speechocean_needs_its_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="no speechocean762"):
        speechocean.prepare(tmp_path)


def test_hold_out_by_group_is_repeatable():
    utts = [
        Utterance(f"{s}_{i}", "a.wav", 1.0, f"text {i}", s) for s in "abcdefgh" for i in range(3)
    ]
    a = hold_out(utts, "speaker", dev=2, test=["h"], seed=5)
    assert {u.speaker for u in a["test"]} == {"h"} and len({u.speaker for u in a["dev"]}) == 2
    assert hold_out(utts, "speaker", dev=2, test=["h"], seed=5) == a
    by_text = hold_out(utts, "text", test=1, seed=0)
    assert len({u.text for u in by_text["test"]}) == 1 and len(by_text["test"]) == 8
    with pytest.raises(ValueError, match="only"):
        hold_out(utts, "speaker", test=20)


def test_ljspeech_and_speechocean_download_from_local_archives(tmp_path, capsys):
    from tests.recipes.conftest import make_tar

    lj = tmp_path / "build" / "LJSpeech-1.1"
    write_audio(lj / "wavs" / "LJ001-0001.wav", tone(0.5, 22_050), 22_050)
    (lj / "metadata.csv").write_text("LJ001-0001|Printing|Printing\n")
    md5 = make_tar(lj, tmp_path / "LJSpeech-1.1.tar.bz2", "LJSpeech-1.1")
    out = tmp_path / "lj"
    args = ["prepare", "ljspeech", "--download", str(tmp_path / "LJSpeech-1.1.tar.bz2")]
    assert main([*args, "--out", str(out), "--checksum", "1" * 32]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--checksum", md5]) == 0
    assert len((out / "all.jsonl").read_text().splitlines()) == 1

    root = _kaldi_tree(tmp_path / "build" / "speechocean762")
    make_tar(root, tmp_path / "speechocean762.tar.gz", "speechocean762")
    out = tmp_path / "so"
    args = ["prepare", "speechocean762", "--download", str(tmp_path / "speechocean762.tar.gz")]
    assert main([*args, "--out", str(out), "--dev", "1"]) == 0
    assert {p.name for p in out.glob("*.jsonl")} == {"train.jsonl", "dev.jsonl"}
    (tmp_path / "speechocean762.tar.gz").unlink()
    assert main([*args, "--out", str(out), "--dev", "1"]) == 0  # .done: not fetched again


def test_a_transcript_that_is_not_utf8_is_named_by_file_and_line(tmp_path, capsys):
    latin1 = "café noir".encode("latin-1")  # b"caf\xe9": not UTF-8
    kaldi_dir = _kaldi_tree(tmp_path / "so") / "train"
    (kaldi_dir / "text").write_bytes(b"00010000 we call it bear\n00010001 " + latin1 + b"\n")
    flat = tmp_path / "flat"
    write_audio(flat / "a.wav", tone(0.5, 16_000), 16_000)
    (flat / "a.txt").write_bytes(latin1)
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    write_audio(chapter / "84-121123-0000.flac", tone(0.5, 16_000), 16_000)
    trans = chapter / "84-121123.trans.txt"
    trans.write_bytes(b"84-121123-0000 GO\n84-121123-0001 GO\n84-121123-0002 " + latin1 + b"\n")
    for args, where in (
        (["kaldi", str(kaldi_dir)], f"{kaldi_dir / 'text'}: line 2"),
        (["folder", str(flat)], f"{flat / 'a.txt'}: line 1"),
        (["librispeech", str(tmp_path), "--splits", "dev-clean"], f"{trans}: line 3"),
    ):
        assert main(["prepare", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"{where}: not UTF-8 text (invalid continuation byte at byte " in err, err
