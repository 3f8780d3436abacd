import json

import pytest

from asr.cli import build_parser, main
from tests.conftest import DATA, ROOT


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny model trained for two epochs on the example clips."""
    out = tmp_path_factory.mktemp("exp")
    manifest = DATA / "fsdd.jsonl"
    rc = main(
        [
            "train",
            "--out",
            str(out),
            "--no-progress",
            "-c",
            str(ROOT / "conf/model/tiny.yaml"),
            f"data.train={manifest}",
            f"data.valid={manifest}",
            "data.num_workers=0",
            "train.epochs=2",
        ]
    )
    assert rc == 0
    return out / "best.pt"


def test_every_command_has_help(capsys):
    for command in (["prepare", "fsdd"], ["train"], ["evaluate"], ["transcribe"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*command, "--help"])
        assert exc.value.code == 0
    assert "--test-speakers" in capsys.readouterr().out


def test_transcribe_and_evaluate(trained_model, tmp_path, capsys, example_records):
    files = [str(DATA / r["audio"]) for r in example_records[:3]]
    assert main(["transcribe", "--model", str(trained_model), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    assert main(["transcribe", "--model", str(trained_model), "--jsonl", files[0]]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == files[0]
    report = tmp_path / "report.tsv"
    manifest = DATA / "fsdd.jsonl"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained_model),
                "--manifest",
                str(manifest),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    assert "WER" in capsys.readouterr().out
    assert len(report.read_text().splitlines()) == 1 + len(example_records)


def test_errors_are_reported_not_raised(trained_model, tmp_path, capsys):
    corrupt = tmp_path / "bad.wav"
    corrupt.write_bytes(b"RIFF....")
    assert main(["transcribe", "--model", str(trained_model), str(corrupt)]) == 1
    assert "bad.wav: cannot read audio" in capsys.readouterr().err
    assert main(["transcribe", "--model", str(tmp_path / "none.pt"), str(corrupt)]) == 2
    assert "none.pt: model file not found" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "model.colour=red"]) == 2
    assert "unknown key 'model.colour'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    assert main(["evaluate", "--model", str(trained_model), "--manifest", str(bad)]) == 2
    assert "bad.jsonl: line 1: missing 'audio'" in capsys.readouterr().err


def test_beam_decoding_and_lm_tuning_from_the_command_line(
    trained_model, tmp_path, capsys, example_records
):
    manifest = DATA / "fsdd.jsonl"
    lm = tmp_path / "lm" / "digits.arpa"
    assert main(["lm", "build", str(manifest), "--order", "2", "--out", str(lm)]) == 0
    out = tmp_path / "decoder.yaml"
    args = [
        "lm",
        "tune",
        "--model",
        str(trained_model),
        "--manifest",
        str(manifest),
        "--lm",
        str(lm),
        "--lm-weights",
        "0,1",
        "--word-scores",
        "-1,2",  # a value that starts with a minus sign, given as its own word
        "--beam-size",
        "8",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "best: lm_weight=" in printed
        and len([l for l in printed.splitlines() if l.strip()[:1].isdigit()]) == 4
    )
    # two dev sets, each counting the same: a column per set, and their mean is what is ranked
    half = tmp_path / "half.jsonl"
    half.write_text(
        "".join(
            json.dumps({**r, "audio": str(DATA / r["audio"])}) + "\n"
            for r in map(json.loads, manifest.read_text().splitlines()[::2])
        )
    )
    both = f"{manifest},{half}"
    assert main(args[:5] + [both, *args[6:], "--average", "sets"]) == 0
    printed = capsys.readouterr().out
    assert "mean %" in printed and "fsdd" in printed and "half" in printed
    rows = [l.split() for l in printed.splitlines() if l.strip()[:1].isdigit()]
    assert len(rows) == 4 and all(len(r) == 5 for r in rows)
    for _, _, mean, a, b in rows:
        assert abs(float(mean) - (float(a) + float(b)) / 2) < 0.011
    assert "(mean of the sets)" in printed

    import yaml

    section = yaml.safe_load(out.read_text())["decoder"]
    assert section["kind"] == "beam" and section["lm"] == "lm/digits.arpa"  # relative to the YAML

    # flags that adjust a beam search apply on top of a model's own decoder config (the bundled
    # model's decoder.yaml); no flags: the model's own decoder
    from types import SimpleNamespace

    from asr.cli_args import decoder_from_args
    from asr.decode import GreedyDecoder
    from asr.text import Tokenizer

    rec = SimpleNamespace(decoder_config=out, default_decoder="the model's own")

    def decoder(*flags):
        args = build_parser().parse_args(["evaluate", "--manifest", "m.jsonl", *flags])
        return decoder_from_args(args, Tokenizer(), rec)

    assert decoder() == "the model's own"
    adjusted = decoder("--word-score", "3.5", "--beam-size", "4").cfg
    assert (adjusted.kind, adjusted.word_score, adjusted.beam_size) == ("beam", 3.5, 4)
    assert adjusted.lm == str(lm) and adjusted.lm_weight == section["lm_weight"]
    assert isinstance(decoder("--decoder", "greedy", "--word-score", "1"), GreedyDecoder)
    assert decoder("--lm", str(lm)).cfg.lm_weight == 0.5  # another LM: the defaults, not the config
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained_model),
                "--manifest",
                str(manifest),
                "--decoder-config",
                str(out),
            ]
        )
        == 0
    )
    assert "WER" in capsys.readouterr().out
    files = [str(DATA / r["audio"]) for r in example_records[:2]]
    assert (
        main(
            [
                "transcribe",
                "--model",
                str(trained_model),
                "--decoder",
                "beam",
                "--beam-size",
                "4",
                *files,
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert (
        main(
            [
                "transcribe",
                "--model",
                str(trained_model),
                "--lm",
                str(tmp_path / "none.arpa"),
                *files,
            ]
        )
        == 2
    )
    assert "none.arpa: language model not found" in capsys.readouterr().err


def test_one_corrupt_file_among_several(trained_model, tmp_path, capsys, example_records):
    folder = tmp_path / "in"
    folder.mkdir()
    import shutil

    for r in example_records[:3]:
        shutil.copy(DATA / r["audio"], folder)
    (folder / "zz_corrupt.wav").write_bytes(b"RIFF\x00\x00junk")
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    rc = main(
        [
            "transcribe",
            "--model",
            str(trained_model),
            str(folder),
            "--format",
            "srt",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 1  # some failed
    assert "zz_corrupt.wav" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        r["id"] + ".srt" for r in example_records[:3]
    )
    # globs work too, and a pattern that matches nothing is reported
    assert (
        main(
            [
                "transcribe",
                "--model",
                str(trained_model),
                str(folder / "[0-9]_*.wav"),
                str(tmp_path / "*.flac"),
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3 and "*.flac: no such file" in captured.err
