"""Bad input and faults: each gets a clear error naming the file, line or key, the documented exit
status (2 for a refused command, 1 for "some files failed"), nothing lost, nothing written outside
the output folder. One test per hole a probe of ~150 bad inputs found (see docs/bad-input.md, "What bad
input gets"), beside the cases that already passed it."""

import contextlib
import errno
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, AudioWarning, audio_duration, load_audio
from asr.checkpoint import ModelFileError, SaveError, atomic_save, read_model_file
from asr.cli import main
from asr.config import ConfigError, load_config
from tests.conftest import DATA, ROOT, tone, write_audio


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model trained for one epoch on the shipped clips."""
    out = tmp_path_factory.mktemp("exp")
    manifest = DATA / "fsdd.jsonl"
    args = ["train", "--out", str(out), "--no-progress", "-c", str(ROOT / "conf/model/tiny.yaml")]
    assert main([*args, f"data.train={manifest}", f"data.valid={manifest}", "data.num_workers=0",
                 "train.epochs=1"]) == 0  # fmt: skip
    return out / "best.pt"


def _forged(tmp_path, name, rate):
    """A 7 KB WAV whose header claims ``rate`` Hz."""
    path = write_audio(tmp_path / "ok.wav", tone(0.2, 16_000), 16_000, "PCM_16")
    raw = bytearray(path.read_bytes())
    raw[24:28] = struct.pack("<I", rate)
    (tmp_path / name).write_bytes(raw)
    return tmp_path / name


# 1. writes outside --out


@pytest.mark.parametrize("split", ["/tmp/evil", "../../x", "a/b", ".hidden"])
def test_nemo_split_names_never_leave_the_output_folder(tmp_path, split, capsys):
    write_audio(tmp_path / "a.wav", tone(0.3, 16_000), 16_000)
    lines = [
        {"audio_filepath": "a.wav", "duration": 0.3, "text": "yes", "split": split},
        {"audio_filepath": "a.wav", "duration": 0.3, "text": "no", "split": "train"},
    ]
    (tmp_path / "m.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    before = set(os.listdir("/tmp"))
    out = tmp_path / "out"
    assert main(["prepare", "nemo", str(tmp_path / "m.json"), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["train.jsonl"]
    assert set(os.listdir("/tmp")) - before == set()
    assert "'split' must be a plain name" in capsys.readouterr().out


# 2. forged headers


@pytest.mark.parametrize("rate", [2**31 - 1, 0, 10])
def test_forged_sample_rates_are_refused_before_reading(tmp_path, rate):
    path = _forged(tmp_path, "forged.wav", rate)
    for read in (audio_duration, load_audio):
        with pytest.raises(AudioError, match=rf"forged.wav: header claims a sample rate of {rate}"):
            read(path)


def test_a_folder_with_forged_files_transcribes_every_good_one(tmp_path, model, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, clip in enumerate(sorted((DATA / "fsdd").glob("*.wav"))[:3]):
        shutil.copy(clip, folder / f"good{i}.wav")
    _forged(folder, "huge.wav", 2**31 - 1)
    _forged(folder, "zero.wav", 0)
    (folder / "ok.wav").unlink()
    code = (
        "import resource, sys; from asr.cli import main; rc = main(sys.argv[1:]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    good_only = subprocess.run(
        [sys.executable, "-c", code, "transcribe", *sorted(map(str, folder.glob("good*"))),
         "--model", str(model)], capture_output=True, text=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, "transcribe", str(folder), "--model", str(model)],
        capture_output=True,
        text=True,
    )
    assert good_only.returncode == 0 and done.returncode == 1
    good = [line for line in done.stdout.splitlines() if line.startswith(str(folder))]
    assert sorted(os.path.basename(line.split("\t")[0]) for line in good) == [
        "good0.wav",
        "good1.wav",
        "good2.wav",
    ]
    assert "huge.wav: header claims a sample rate of 2147483647" in done.stderr
    assert "zero.wav: header claims a sample rate of 0" in done.stderr
    # the forged files cost nothing: the run's peak is that of the good files alone (which is
    # ~0.9 GB here, torch and the model; a forged 2**31 Hz header once took 17 GB)
    peak_mb, base_mb = (int(p.stdout.split("PEAK")[1]) / 1024 for p in (done, good_only))
    assert peak_mb < base_mb + 100 and peak_mb < 2048, (peak_mb, base_mb)


def test_forged_headers_cost_nothing_with_the_bundled_beam_search_and_lm(tmp_path):
    """The bundled model with its default decoding (beam search, its LM parsed at start): three
    forged headers among the good clips leave the peak where the good clips alone put it."""
    folder = tmp_path / "in"
    folder.mkdir()
    for clip in sorted((DATA / "fsdd").glob("*.wav"))[:3]:
        shutil.copy(clip, folder / clip.name)
    code = (
        "import re, sys; from asr.cli import main; rc = main(sys.argv[1:]); "
        "print('PEAK', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); "
        "sys.exit(rc)"
    )
    good = subprocess.run([sys.executable, "-c", code, "transcribe", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    for name, rate in (("huge.wav", 2**31 - 1), ("zero.wav", 0), ("ten.wav", 10)):
        _forged(tmp_path, name, rate)
        shutil.move(tmp_path / name, folder / name)
    mixed = subprocess.run([sys.executable, "-c", code, "transcribe", str(folder)],
                           capture_output=True, text=True)  # fmt: skip
    assert good.returncode == 0 and mixed.returncode == 1, mixed.stderr
    good_mb, mixed_mb = (int(p.stdout.split("PEAK")[1]) / 1024 for p in (good, mixed))
    assert mixed_mb < good_mb + 50, (mixed_mb, good_mb)


def test_max_duration_refuses_by_header(tmp_path, model, capsys):
    write_audio(tmp_path / "long.wav", np.zeros(16_000 * 5, np.float32), 16_000)
    args = ["transcribe", str(tmp_path / "long.wav"), "--model", str(model)]
    assert main([*args, "--max-duration", "2"]) == 1
    assert "long.wav: 5.0 s long, over the limit of 2 s (--max-duration)" in capsys.readouterr().err
    # a limit under a second: tenths, not "0 s long, over the limit of 0 s"
    write_audio(tmp_path / "short.wav", np.zeros(int(16_000 * 0.3), np.float32), 16_000)
    args = ["transcribe", str(tmp_path / "short.wav"), "--model", str(model)]
    assert main([*args, "--max-duration", "0.1"]) == 1
    assert "short.wav: 0.3 s long, over the limit of 0.1 s" in capsys.readouterr().err


# 3. silent overwrite


def test_inputs_that_share_a_name_get_their_own_outputs(tmp_path, model, capsys):
    for folder in ("a", "b"):
        write_audio(tmp_path / folder / "x.wav", tone(0.5, 16_000), 16_000)
    write_audio(tmp_path / "a" / "x.flac", tone(0.5, 16_000), 16_000)
    out = tmp_path / "out"
    inputs = [str(tmp_path / p) for p in ("a/x.wav", "b/x.wav", "a/x.flac")]
    assert main(["transcribe", *inputs, "--model", str(model), "--output-dir", str(out)]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.txt"))
    assert written == ["a/x.flac.txt", "a/x.wav.txt", "b/x.wav.txt"]
    assert "wrote 3 files" in capsys.readouterr().out


# 5. silent wrong results


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.grad_clip=-1", "train.grad_clip must be > 0, got -1.0"),
        ("train.epochs=0", "train.epochs must be >= 1, got 0"),
        ("features.hop_ms=0", "features.hop_ms must be > 0"),
        ("features.sample_rate=0", "features.sample_rate must be >= 1000"),
        ("features.n_mels=0", "features.n_mels must be >= 1"),
        ("data.batch_seconds=-5", "data.batch_seconds must be > 0"),
        ("train.checkpoint_every_steps=-1", "train.checkpoint_every_steps must be >= 0"),
    ],
)
def test_impossible_config_values_are_named(override, message):
    with pytest.raises(ConfigError, match=f"override '{override}': {message}"):
        load_config([], [override])


def test_empty_manifests_are_refused_not_scored_zero(tmp_path, model, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["evaluate", "--model", str(model), "--manifest", str(empty)]) == 2
    assert "empty.jsonl: no utterances to score" in capsys.readouterr().err
    lm = tmp_path / "lm.arpa"
    assert main(["lm", "build", str(DATA / "fsdd.jsonl"), "--out", str(lm)]) == 0
    tune = ["lm", "tune", "--model", str(model), "--manifest", str(empty), "--lm", str(lm)]
    assert main([*tune, "--out", str(tmp_path / "d.yaml")]) == 2
    assert "no utterances to score" in capsys.readouterr().err
    assert not (tmp_path / "d.yaml").exists()


def test_truncated_wav_is_read_with_a_warning(tmp_path):
    path = write_audio(tmp_path / "t.wav", tone(1.0, 16_000), 16_000, "PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wave = load_audio(path)
    assert 7_000 < len(wave) < 8_100
    assert [w.category for w in caught] == [AudioWarning]
    assert "t.wav: truncated" in str(caught[0].message)
    with pytest.raises(AudioError, match="offset must be >= 0"):
        load_audio(path, offset=-0.5)


def test_a_header_claiming_more_frames_than_the_file_holds_is_read_as_truncated(tmp_path, capsys):
    """Not refused from the header (as the bad-input table once said): the frames that are there
    are read, with the truncation warning, and transcribed."""
    path = write_audio(tmp_path / "long.wav", tone(0.5, 16_000), 16_000, "PCM_16")
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    declared = struct.unpack("<I", raw[data_at + 4 : data_at + 8])[0]
    raw[data_at + 4 : data_at + 8] = struct.pack("<I", declared * 10)  # ten times the frames
    path.write_bytes(raw)
    with pytest.warns(AudioWarning, match="long.wav: truncated: its header declares"):
        assert main(["transcribe", str(path), "--decoder", "greedy"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}\t")


def test_align_refuses_an_empty_transcript_and_keeps_times_in_the_file(tmp_path, model, capsys):
    clip = DATA / "fsdd" / "0_jackson_0.wav"
    assert main(["align", str(clip), "  ,. ", "--model", str(model)]) == 2
    assert "the transcript to align is empty" in capsys.readouterr().err
    tiny = write_audio(tmp_path / "tiny.wav", tone(0.01, 16_000), 16_000)  # 10 ms: under a frame
    out = tmp_path / "a.json"
    assert main(["align", str(tiny), "a", "--model", str(model), "--out", str(out)]) == 0
    words = json.loads(out.read_text())["words"]
    assert words and all(w["end"] <= 0.01 for w in words)


# 6. tracebacks instead of errors


def test_a_full_disk_is_an_error_and_the_old_checkpoint_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"a": torch.zeros(2)}, path)

    def full(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SaveError, match="last.pt: cannot write it .No space left on device.; "
                       "the previous last.pt is kept"):  # fmt: skip
        atomic_save({"a": torch.ones(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_a_disk_filling_under_torch_save_says_so(tmp_path, monkeypatch):
    """torch.save's own writer fails with "[enforce fail at inline_container.cc...]" when the
    disk fills; the message names the OS's reason instead."""
    path = tmp_path / "last.pt"
    atomic_save({"a": torch.zeros(2)}, path)
    real_save = torch.save

    class Filling(io.RawIOBase):  # the file, but the disk fills after 1 KB
        def __init__(self, f):
            self.f, self.written = f, 0

        def writable(self):
            return True

        def write(self, data):
            self.written += len(data)
            if self.written > 1024:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, Filling(f)))
    with pytest.raises(SaveError) as refused:
        atomic_save({"a": torch.ones(100_000)}, path)
    assert str(refused.value) == (
        f"{path}: cannot write it (No space left on device); the previous last.pt is kept"
    )
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    with _small_filesystem(tmp_path / "small") as mnt:  # a real full disk
        atomic_save({"a": torch.zeros(2)}, mnt / "last.pt")
        with pytest.raises(SaveError, match=r"cannot write it \(No space left on device\); the pr"):
            atomic_save({"a": torch.ones(1 << 20)}, mnt / "last.pt")  # 4 MB
        assert [p.name for p in mnt.iterdir()] == ["last.pt"]


@contextlib.contextmanager
def _small_filesystem(mnt: Path) -> Iterator[Path]:
    """A 1 MB tmpfs mounted at ``mnt`` for the block (needs root: the test is skipped without)."""
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_really_full_filesystem(tmp_path, example_manifest, capsys):
    """A 1 MB tmpfs: training stops with exit 2 and a message, not a traceback (needs root)."""
    with _small_filesystem(tmp_path / "small") as mnt:
        args = [
            "train",
            "--out",
            str(mnt / "exp"),
            "--no-progress",
            "-c",
            str(ROOT / "conf/model/small.yaml"),
        ]
        rc = main([*args, f"data.train={example_manifest}", f"data.valid={example_manifest}",
                   "data.num_workers=0", "train.epochs=1"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and "cannot write it" in err and "Traceback" not in err, err
        leftovers = [p.name for p in (mnt / "exp").iterdir() if ".tmp" in p.name]
        assert leftovers == []


def test_missing_training_audio_is_dropped_with_a_count(tmp_path, example_manifest):
    records = [json.loads(x) for x in example_manifest.read_text().splitlines()]
    for r in records:
        r["audio"] = str(DATA / r["audio"])
    records[0]["audio"] = str(tmp_path / "gone.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "exp"
    args = ["train", "--out", str(out), "--no-progress", "-c", str(ROOT / "conf/model/tiny.yaml")]
    assert main([*args, f"data.train={manifest}", f"data.valid={example_manifest}",
                 "data.num_workers=1", "train.epochs=1"]) == 0  # fmt: skip
    log = (out / "train.log").read_text()
    assert "dropped 1 whose audio file is missing" in log and "gone.wav" in log


def test_config_path_problems_are_named(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x"), "-c", str(tmp_path)]) == 2
    assert "is a folder, not a config file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="garbage.yaml: not a config file"):
        load_config([garbage])


def test_resume_with_another_model_shape_is_refused_and_keeps_config(tmp_path, example_manifest):
    out = tmp_path / "exp"
    args = ["train", "--out", str(out), "--no-progress", "-c", str(ROOT / "conf/model/tiny.yaml")]
    common = [f"data.train={example_manifest}", f"data.valid={example_manifest}",
              "data.num_workers=0", "train.epochs=1"]  # fmt: skip
    assert main([*args, *common]) == 0
    before = (out / "config.yaml").read_text()
    with pytest.raises(ModelFileError, match="last.pt: cannot resume: the config's model differs"):
        from asr.train import train

        train(load_config([ROOT / "conf/model/tiny.yaml"], [*common, "train.epochs=2",
                                                              "model.hidden_size=48"]), out,
              progress=False)  # fmt: skip
    assert (out / "config.yaml").read_text() == before


# 7. unclear messages


def test_evaluate_names_each_line_with_characters_outside_the_vocabulary(tmp_path, model, capsys):
    lines = [json.loads(x) for x in (DATA / "fsdd.jsonl").read_text().splitlines()[:3]]
    lines[1]["text"] = "zéro ünd"
    for r in lines:
        r["audio"] = str(DATA / r["audio"])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert main(["evaluate", "--model", str(model), "--manifest", str(manifest)]) == 0
    captured = capsys.readouterr()
    assert "m.jsonl: line 2: characters outside the model's vocabulary ('é', 'ü')" in captured.err
    assert "utterances 3" in captured.out  # all three scored


def test_binary_garbage_as_lm_text_or_lexicon_names_the_file(tmp_path, model, capsys):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"\xff\xfe\x00\x01" * 100)
    assert main(["lm", "build", str(garbage), "--out", str(tmp_path / "lm.arpa")]) == 2
    assert "garbage.txt: not UTF-8 text" in capsys.readouterr().err
    clip = str(DATA / "fsdd" / "0_jackson_0.wav")
    args = ["transcribe", clip, "--model", str(model), "--decoder", "beam"]
    assert main([*args, "--lexicon", str(garbage)]) == 2
    assert "garbage.txt: not a lexicon (not UTF-8 text" in capsys.readouterr().err


def test_model_files_from_elsewhere(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a model\n")
    with pytest.raises(ModelFileError, match="notes.pt: not a model file .neither a torch"):
        read_model_file(text)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="evil.pt: refused to load.*could run code"):
        read_model_file(evil)
    assert not (tmp_path / "pwned").exists()


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".last.pt.tmp{dead}"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".last.pt.tmp{os.getppid()}"  # a live process's: left alone
    live.write_bytes(b"being written")
    atomic_save({"x": 1}, tmp_path / "last.pt")
    assert not stale.exists() and live.exists()


# what already passed the probe: still passes


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "cannot read audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot read audio"),
        (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "cannot read"),
        (b"just some text, not audio\n" * 20, "cannot read audio"),
    ],
    ids=["zero-bytes", "header-only", "random-bytes", "text-as-audio"],
)
def test_unreadable_audio_is_named(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=f"bad.wav: {message}"):
        load_audio(path)


def test_nan_audio_is_named(tmp_path):
    data = np.zeros(1600, np.float32)
    data[10] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, data, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio holds non-finite samples"):
        load_audio(path)


def test_kill_9_at_random_moments_then_resume_gives_the_unbroken_weights(tmp_path):
    """A 4-epoch run with 2 loader workers, killed (SIGKILL) at random moments three times,
    then run to the end: the same final weights, bit for bit, as a run never interrupted. It
    writes ``last.pt`` after every step, so a kill inside an epoch resumes inside it."""
    import random
    import time

    manifest = DATA / "fsdd.jsonl"
    args = [sys.executable, "-m", "asr", "train", "--no-progress", "-c",
            str(ROOT / "conf/model/tiny.yaml"), f"data.train={manifest}", f"data.valid={manifest}",
            "data.num_workers=2", "train.epochs=4", "augment.speed_factors=[0.9,1.0,1.1]",
            "augment.noise_prob=0.5", "data.max_batch_size=2",  # 5 steps an epoch
            "train.checkpoint_every_steps=1"]  # fmt: skip
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    subprocess.run([*args[:4], "--out", str(straight), *args[4:]], check=True, capture_output=True)
    rng = random.Random(0)
    for _ in range(3):  # bounded: three kills, each within the first 12 s of a run
        proc = subprocess.Popen([*args[:4], "--out", str(broken), *args[4:]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(3.0, 12.0))
        proc.kill()
        proc.wait()
    subprocess.run([*args[:4], "--out", str(broken), *args[4:]], check=True, capture_output=True)
    a = read_model_file(straight / "last.pt")["state_dict"]
    b = read_model_file(broken / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(broken.glob(".*.tmp*"))


def test_kill_9_inside_an_epoch_then_resume_gives_the_unbroken_weights(tmp_path):
    """``train.checkpoint_every_steps=1``, 2 loader workers: the run is killed (SIGKILL) as soon
    as ``last.pt`` holds a place inside epoch 2, then run to the end. It resumes at that place and
    ends with the weights of a run never interrupted, bit for bit."""
    import time

    manifest = DATA / "fsdd.jsonl"
    args = [sys.executable, "-m", "asr", "train", "--no-progress", "-c",
            str(ROOT / "conf/model/tiny.yaml"), f"data.train={manifest}", f"data.valid={manifest}",
            "data.num_workers=2", "data.max_batch_size=1", "train.epochs=3",
            "augment.speed_factors=[0.9,1.0,1.1]", "augment.noise_prob=0.5",
            "augment.join_prob=0.5", "train.checkpoint_every_steps=1"]  # fmt: skip
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    subprocess.run([*args[:4], "--out", str(straight), *args[4:]], check=True, capture_output=True)
    proc = subprocess.Popen([*args[:4], "--out", str(broken), *args[4:]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    info, deadline = {}, time.monotonic() + 240
    while info.get("epoch") != 1 or info.get("steps_into_next_epoch", 0) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, info
        time.sleep(0.02)
        if (broken / "last.pt").is_file():
            info = read_model_file(broken / "last.pt")["info"]
    proc.kill()
    proc.wait()
    assert "steps_into_next_epoch" in read_model_file(broken / "last.pt")["info"]
    subprocess.run([*args[:4], "--out", str(broken), *args[4:]], check=True, capture_output=True)
    assert "in epoch 2 after step" in (broken / "train.log").read_text()
    a = read_model_file(straight / "last.pt")["state_dict"]
    b = read_model_file(broken / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
