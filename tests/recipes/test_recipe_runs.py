"""Each recipe's run.sh runs end to end, as documented, on a tiny slice of its corpus layout
(a few utterances, one epoch of the tiny model): a renamed option or a moved file breaks this
test, not a user."""

import os
import subprocess
import sys

import soundfile as sf

from tests.conftest import ROOT, tone


def _run(script: str, *args: str, cwd=ROOT) -> str:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _an4_tree(root):
    """``root/an4``: 7 training speakers of 2 utterances and 1 test speaker, as CMU ships it."""
    words = ["yes", "no", "go", "stop", "enter six", "rubout", "one two"]
    table = {"train": {}, "test": {}}
    for s in range(8):
        split, folder = ("train", "an4_clstk") if s < 7 else ("test", "an4test_clstk")
        for n in range(2):
            utt = f"an{10 * s + n}-spk{s}-b"
            table[split][f"{folder}/spk{s}/{utt}"] = (
                f"<s> {words[(s + n) % 7].upper()} </s> ({utt})"
            )
    etc = root / "an4" / "etc"
    etc.mkdir(parents=True)
    for split, rows in table.items():
        (etc / f"an4_{split}.fileids").write_text("\n".join(rows) + "\n")
        (etc / f"an4_{split}.transcription").write_text("\n".join(rows.values()) + "\n")
        for i, fileid in enumerate(rows):
            path = root / "an4" / "wav" / f"{fileid}.sph"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(0.8, 16_000, seed=i), 16_000, format="NIST", subtype="PCM_16")
    return root


def test_an4_run_sh_end_to_end(tmp_path):
    source = _an4_tree(tmp_path / "corpus")
    data, exp = tmp_path / "data", tmp_path / "exp"
    args = ["--source", str(source), "--data", str(data), "--exp", str(exp)]
    args += ["--model-config", "conf/model/tiny.yaml", "train.epochs=1", "train.precision=fp32"]
    planned = _run("recipes/an4/run.sh", "--dry-run", *args)
    assert "asr prepare an4" in planned and "asr lm tune" in planned and not data.exists()
    out = _run("recipes/an4/run.sh", *args)
    for stage in range(5):
        assert f"# stage {stage}:" in out
    for name in ("best.pt", "lm3.arpa", "decoder.yaml", "test-greedy.txt", "test-lm.txt"):
        assert (exp / name).is_file(), name
    assert "WER" in (exp / "test-lm.txt").read_text()
    again = _run("recipes/an4/run.sh", *args)  # every stage's output exists: all skipped
    assert again.count("# skipped") == 6 and "asr train" in again
