import json
import zipfile

import pytest

from asr.cli import main
from asr.recipes import fsdd
from tests.conftest import tone, write_audio


def _tree(root, speakers=("alice", "bob"), indices=range(12)):
    rec = root / "recordings"
    for spk in speakers:
        for digit in (0, 7):
            for i in indices:
                write_audio(
                    rec / f"{digit}_{spk}_{i}.wav", tone(0.3, 8000, 200 + 50 * digit, seed=i), 8000
                )
    (rec / "README.wav").write_bytes(b"not audio")  # a badly named file
    (rec / "3_alice_0.wav").write_bytes(b"RIFFjunk")  # a corrupt recording
    return root


def test_corpus_split(tmp_path):
    summary = fsdd.prepare(_tree(tmp_path / "fsdd"))
    test, dev, train = summary.splits["test"], summary.splits["dev"], summary.splits["train"]
    assert len(test) == 2 * 2 * 5 and len(dev) == 2 * 2 * 5 and len(train) == 2 * 2 * 2
    assert {int(u.id.split("_")[2]) for u in test} == set(range(5))
    assert {u.text for u in train} == {"zero", "seven"}
    reasons = dict(summary.skipped)
    assert any("README.wav" in k for k in reasons) and any("3_alice_0.wav" in k for k in reasons)
    assert "skipped 2 files" in summary.report()


def test_speaker_split_and_cli_is_idempotent(tmp_path, capsys):
    src = _tree(tmp_path / "fsdd")
    out = tmp_path / "out"
    args = [
        "prepare",
        "fsdd",
        str(src),
        "--out",
        str(out),
        "--split",
        "speaker",
        "--test-speakers",
        "bob",
    ]
    assert main(args) == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    assert set(first) == {"train.jsonl", "test.jsonl"}
    test = [json.loads(line) for line in first["test.jsonl"].decode().splitlines()]
    assert {r["speaker"] for r in test} == {"bob"} and len(test) == 24
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == first
    printed = capsys.readouterr().out
    assert "test: 24 utterances" in printed and "skipped 2 files" in printed


def test_speaker_split_needs_speakers(tmp_path):
    with pytest.raises(ValueError, match="--test-speakers"):
        fsdd.prepare(_tree(tmp_path / "fsdd"), split="speaker")


def test_download_from_a_local_archive(tmp_path):
    src = _tree(tmp_path / "src", speakers=("carol",), indices=range(6))
    archive = tmp_path / "free-spoken-digit-dataset-1.0.10.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((src / "recordings").iterdir()):
            z.write(path, f"free-spoken-digit-dataset-1.0.10/recordings/{path.name}")
    out = tmp_path / "out"
    assert main(["prepare", "fsdd", "--download", str(archive), "--out", str(out)]) == 0
    assert (out / "download" / "fsdd.zip").is_file()
    assert len((out / "test.jsonl").read_text().splitlines()) == 10
    assert main(["prepare", "fsdd", "--download", str(archive), "--out", str(out)]) == 0  # re-run


def test_missing_source_is_named(tmp_path, capsys):
    assert main(["prepare", "fsdd", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere: no FSDD recordings" in capsys.readouterr().err
