"""Common Voice: a release's language folder (TSV splits, clips/*.mp3), from a local archive."""

import hashlib

import pytest

from asr.cli import main
from asr.recipes import commonvoice
from tests.conftest import tone, write_audio
from tests.recipes.conftest import make_tar, manifest

HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"
ROWS = {  # clip -> (speaker, sentence, split)
    "common_voice_en_1.mp3": ("spk_a", "The cat sat.", "train"),
    "common_voice_en_2.mp3": ("spk_a", "A dog ran!", "train"),
    "common_voice_en_3.mp3": ("spk_b", "Hello there.", "dev"),
    "common_voice_en_4.mp3": ("spk_c", "Good morning.", "test"),
    "common_voice_en_5.mp3": ("spk_d", "Extra validated clip.", None),  # validated only
    "common_voice_en_6.mp3": ("spk_b", "Same speaker as dev.", None),  # excluded: dev speaker
    "common_voice_en_7.mp3": ("spk_e", "Hello there.", None),  # excluded: dev sentence
}


def _release(root):
    lang = root / "cv-corpus-1.0-2020-01-01" / "en"
    for i, clip in enumerate(ROWS):
        write_audio(lang / "clips" / clip, tone(0.6 + 0.1 * i, 48_000, seed=i), 48_000)
    tables = {"train": [], "dev": [], "test": [], "validated": []}
    for clip, (spk, text, split) in ROWS.items():
        line = f"{spk}\t{clip}\t{text}\t2\t0\t\t\t\ten\t"
        tables["validated"].append(line)
        if split:
            tables[split].append(line)
    tables["train"].append("spk_x\tcommon_voice_en_404.mp3\tMissing clip.\t2\t0\t\t\t\ten\t")
    tables["train"].append("spk_x\tcommon_voice_en_1.mp3\t\t2\t0\t\t\t\ten\t")  # empty sentence
    for name, lines in tables.items():
        (lang / f"{name}.tsv").write_text("\n".join([HEADER, *lines]) + "\n")
    return lang


def test_release_splits_and_validated_training_set(tmp_path):
    lang = _release(tmp_path)
    summary = commonvoice.prepare(tmp_path)  # found below the given folder
    train = summary.splits["train"]
    assert [u.id for u in train] == ["common_voice_en_1", "common_voice_en_2"]
    assert train[0].speaker == "spk_a" and train[0].text == "The cat sat."
    assert train[0].duration == pytest.approx(0.6, abs=0.06)  # MP3 frames pad a little
    reasons = " | ".join(r for _, r in summary.skipped)
    assert (
        "common_voice_en_404.mp3: audio file not found" in reasons and "empty sentence" in reasons
    )
    wider = commonvoice.prepare(lang, train_from="validated")
    ids = {u.id for u in wider.splits["train"]}
    assert ids == {"common_voice_en_1", "common_voice_en_2", "common_voice_en_5"}


def test_bad_header_is_named(tmp_path):
    lang = _release(tmp_path)
    (lang / "dev.tsv").write_text("who\twhere\n")
    with pytest.raises(ValueError, match=r"dev.tsv: line 1: header lacks \['client_id'"):
        commonvoice.prepare(lang)


def test_download_from_a_local_archive_with_checksum(tmp_path, capsys):
    _release(tmp_path / "build")
    archive = tmp_path / "cv-corpus-1.0-2020-01-01-en.tar.gz"
    make_tar(tmp_path / "build" / "cv-corpus-1.0-2020-01-01", archive, "cv-corpus-1.0-2020-01-01")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = tmp_path / "out"
    base = ["prepare", "commonvoice", "--download", str(archive), "--out", str(out)]
    assert main([*base, "--checksum", "sha256:" + "0" * 64]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert main([*base, "--checksum", f"sha256:{sha}", "--language", "en"]) == 0
    assert [len(manifest(out / f"{s}.jsonl")) for s in ("train", "dev", "test")] == [2, 1, 1]
    archive.unlink()
    assert main([*base, "--checksum", f"sha256:{sha}"]) == 0  # skipped: .done markers


def _delta_release(root):
    """A delta release as ``../shared/data/commonvoice`` lays it out: ``validated.tsv`` alone
    (naming ``.mp3`` clips) beside ``clips/<stem>.opus``."""
    lang = root / "cv-corpus-13.0-delta" / "en"
    rows = []
    for i in range(6):
        speaker = f"spk_{i // 2}"  # three speakers, two clips each
        text = f"Sentence number {i}." if i else 'He said, "It\'s mine!" -- then left; (twice?)'
        clip = f"common_voice_en_{100 + i}.mp3"
        write_audio(lang / "clips" / f"common_voice_en_{100 + i}.opus", tone(1.0, 16_000), 16_000)
        rows.append(f"{speaker}\t{clip}\t{text}\t2\t0\t\t\t\t\ten\t")
    rows.append("spk_9\tcommon_voice_en_404.mp3\tIts clip is missing.\t2\t0\t\t\t\t\ten\t")
    header = HEADER.replace("accents\t", "accents\tvariant\t")
    (lang / "validated.tsv").write_text("\n".join([header, *rows]) + "\n")
    return lang


def test_delta_release_splits_by_speaker_and_finds_opus_clips(tmp_path, capsys):
    _delta_release(tmp_path / "commonvoice")
    summary = commonvoice.prepare(tmp_path / "commonvoice")
    assert sorted(summary.splits) == ["train"]  # no dev/test of its own: held out by speaker
    train = summary.splits["train"]
    assert len(train) == 6 and all(u.audio.endswith(".opus") for u in train)
    first = next(u for u in train if u.id == "common_voice_en_100")
    assert (
        first.text == 'He said, "It\'s mine!" -- then left; (twice?)' and first.speaker == "spk_0"
    )
    [(where, reason)] = summary.skipped
    assert where.endswith("validated.tsv: line 8") and "common_voice_en_404" in reason
    out = tmp_path / "out"
    args = ["prepare", "commonvoice", str(tmp_path / "commonvoice"), "--out", str(out)]
    assert main([*args, "--dev", "1", "--test", "1", "--seed", "1"]) == 0
    report = capsys.readouterr().out
    assert "common_voice_en_404" in report and "not found" in report
    splits = {s: manifest(out / f"{s}.jsonl") for s in ("train", "dev", "test")}
    assert [len(v) for v in splits.values()] == [2, 2, 2]
    speakers = [{u["speaker"] for u in v} for v in splits.values()]
    assert all(len(s) == 1 for s in speakers) and len(set.union(*speakers)) == 3
