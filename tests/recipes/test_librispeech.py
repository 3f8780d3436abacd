"""LibriSpeech: a tiny tree in the corpus's layout, packed as OpenSLR's archives, fetched locally."""

import pytest

from asr.cli import main
from asr.recipes import librispeech
from tests.conftest import tone, write_audio
from tests.recipes.conftest import make_tar, manifest


def _split(root, split, speakers=("84", "174"), chapters=("121123",), n=2):
    for spk in speakers:
        for ch in chapters:
            folder = root / split / spk / ch
            lines = []
            for i in range(n):
                utt = f"{spk}-{ch}-{i:04d}"
                write_audio(folder / f"{utt}.flac", tone(0.4 + 0.1 * i, 16_000, seed=i), 16_000)
                lines.append(f"{utt} GO DO YOU HEAR")
            lines.append(f"{spk}-{ch}-9999 NO AUDIO FOR THIS ONE")
            (folder / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_reads_splits_with_speakers_and_reports_missing_audio(tmp_path):
    root = _split(_split(tmp_path / "LibriSpeech", "dev-clean"), "test-other", speakers=("7",))
    summary = librispeech.prepare(tmp_path)
    assert set(summary.splits) == {"dev-clean", "test-other"}
    dev = summary.splits["dev-clean"]
    assert len(dev) == 4 and {u.speaker for u in dev} == {"84", "174"}
    assert dev[0].text == "GO DO YOU HEAR" and dev[0].duration == pytest.approx(0.4)
    assert sum("9999.flac: audio file not found" in r for _, r in summary.skipped) == 3
    assert not any("no transcript line" in r or ".trans.txt" in r for _, r in summary.skipped)
    with pytest.raises(FileNotFoundError, match="train-clean-100: split folder not found"):
        librispeech.prepare(root, ["train-clean-100"])


def test_download_verifies_md5_extracts_and_skips_on_rerun(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    md5 = {}
    for split in ("dev-clean", "test-clean"):
        tree = _split(tmp_path / "build" / split, split)
        md5[split] = make_tar(tree / split, mirror / f"{split}.tar.gz", f"LibriSpeech/{split}")
    out = tmp_path / "out"
    args = ["prepare", "librispeech", "--download", str(mirror), "--splits", "dev-clean,test-clean"]
    args += ["--out", str(out)]
    # the published md5 sums do not match our tiny archives: a clear error, nothing extracted
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "dev-clean.tar.gz: checksum mismatch: expected md5 42e2234ba48799c1f50f24a7926300a1" in err
    )
    assert not (out / "download" / "LibriSpeech").exists()

    for split, digest in md5.items():
        monkeypatch.setitem(librispeech.ARCHIVES, split, librispeech.Archive(split, digest, 0.0))
    assert main(args) == 0
    rows = manifest(out / "dev-clean.jsonl")
    assert len(rows) == 4 and rows[0]["audio"].startswith("download/LibriSpeech/dev-clean/")
    assert (out / "download" / ".dev-clean.tar.gz.done").exists()
    first = (out / "test-clean.jsonl").read_bytes()
    for archive in mirror.iterdir():
        archive.unlink()  # a re-run must not fetch or extract again
    assert main(args) == 0
    assert (out / "test-clean.jsonl").read_bytes() == first


def test_lm_resources_are_fetched_and_lowercased(tmp_path, capsys):
    import gzip

    lm_src = tmp_path / "slr11"
    lm_src.mkdir()
    arpa = "\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n-0.5\tHELLO\n-1.0\t</s>\n\n\\end\\\n"
    for name in librispeech.LM_FILES:
        if name.endswith(".gz"):
            with gzip.open(lm_src / name, "wt") as f:
                f.write(arpa)
        else:
            (lm_src / name).write_text("HELLO\n")
    _split(tmp_path / "LibriSpeech", "dev-clean")
    out = tmp_path / "out"
    assert (
        main(
            [
                "prepare",
                "librispeech",
                str(tmp_path),
                "--out",
                str(out),
                "--splits",
                "dev-clean",
                "--lm",
                str(lm_src),
            ]
        )
        == 0
    )
    assert "-0.5\thello" in (out / "lm" / "4-gram.arpa").read_text()
    assert (out / "lm" / "librispeech-lexicon.txt").is_file()


def test_unknown_split_is_named(tmp_path, capsys):
    assert (
        main(
            [
                "prepare",
                "librispeech",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--splits",
                "train-clean-99",
            ]
        )
        == 2
    )
    assert "unknown ['train-clean-99']" in capsys.readouterr().err


def test_audio_is_found_by_name_whatever_its_extension(tmp_path):
    """Mini LibriSpeech as ../shared holds it: Opus (and here Ogg Vorbis and WAV) for FLAC."""
    folder = tmp_path / "LibriSpeech" / "train-clean-5" / "19" / "198"
    for i, ext in enumerate([".opus", ".ogg", ".wav"]):
        write_audio(folder / f"19-198-{i:04d}{ext}", tone(0.5, 16_000, seed=i), 16_000)
    lines = [f"19-198-{i:04d} NORTHANGER ABBEY" for i in range(4)]
    (folder / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    summary = librispeech.prepare(tmp_path, ["train-clean-5"])
    utts = summary.splits["train-clean-5"]
    assert [u.audio.rsplit(".", 1)[1] for u in utts] == ["opus", "ogg", "wav"]
    assert all(u.duration == pytest.approx(0.5, abs=0.01) for u in utts)
    # the one with no audio at all is reported under the name the corpus ships
    assert [r for _, r in summary.skipped] == [
        f"unreadable audio ({folder}/19-198-0003.flac: audio file not found)"
    ]


def test_hold_out_speakers_from_the_only_split(tmp_path):
    _split(tmp_path / "LibriSpeech", "train-clean-5", speakers=("1", "2", "3"))
    out = tmp_path / "out"
    args = ["prepare", "librispeech", str(tmp_path), "--splits", "train-clean-5"]
    assert main([*args, "--out", str(out), "--dev", "1", "--test", "1"]) == 0
    speakers = {
        s: {r["speaker"] for r in manifest(out / f"{s}.jsonl")} for s in ("train", "dev", "test")
    }
    assert all(len(v) == 1 for v in speakers.values())
    assert len(set.union(*speakers.values())) == 3


def test_audio_without_a_transcript_line_and_chapters_without_trans_txt_are_counted(
    tmp_path, capsys
):
    root = _split(tmp_path / "LibriSpeech", "dev-clean")
    chapter = root / "dev-clean" / "84" / "121123"
    write_audio(chapter / "84-121123-0005.flac", tone(0.3, 16_000), 16_000)  # not in .trans.txt
    (root / "dev-clean" / "174" / "121123" / "174-121123.trans.txt").unlink()  # 2 files dropped
    summary = librispeech.prepare(tmp_path)
    assert len(summary.splits["dev-clean"]) == 2
    skipped = dict(summary.skipped)
    assert skipped[str(chapter / "84-121123-0005.flac")] == "no transcript line"
    for i in range(2):
        path = root / "dev-clean" / "174" / "121123" / f"174-121123-{i:04d}.flac"
        assert skipped[str(path)] == "its chapter has no .trans.txt"
    assert (
        main(
            ["prepare", "librispeech", str(tmp_path), "--splits", "dev-clean"]
            + ["--out", str(tmp_path / "out")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 its chapter has no .trans.txt" in out and "1 no transcript line" in out
