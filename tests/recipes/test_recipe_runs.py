"""Each recipe's run.sh runs end to end, as documented, on a tiny slice of its corpus layout
(a few utterances, one epoch of the tiny model): a renamed option or a moved file breaks this
test, not a user."""

import os
import subprocess
import sys

import pytest
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


def _speechocean_tree(root):
    """``root/train``: speechocean762's Kaldi directory (13 speakers, one utterance each), audio
    under ``root/WAVE`` with ``wav.scp`` relative to ``root``, upper-case text."""
    words = ["IT IS SO HARD", "THIS MONTH", "GOOD", "A SPRING PLAY"]
    (root / "train").mkdir(parents=True)
    scp, text, utt2spk = [], [], []
    for s in range(13):
        utt, spk = f"{s:04d}0001", f"{s:04d}"
        path = f"WAVE/SPEAKER{spk}/{utt}.wav"
        (root / path).parent.mkdir(parents=True)
        sf.write(root / path, tone(0.8, 16_000, seed=s), 16_000)
        scp.append(f"{utt} {path}")
        text.append(f"{utt} {words[s % 4]}")
        utt2spk.append(f"{utt} {spk}")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk)):
        (root / "train" / name).write_text("\n".join(lines) + "\n")
    return root


RECIPES = {  # recipe -> (its corpus layout, --test-speakers for a copy without a test split,
    # the LM it builds, the commands it runs)
    "an4": (_an4_tree, "0", "lm5.arpa", 7),  # the LM also learns cmudict's words spelled out
    "speechocean762": (_speechocean_tree, "1", "lm3.arpa", 6),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_run_sh_end_to_end(recipe, tmp_path):
    layout, test_speakers, lm, commands = RECIPES[recipe]
    source = layout(tmp_path / "corpus")
    script = f"recipes/{recipe}/run.sh"
    data, exp = tmp_path / "data", tmp_path / "exp"
    args = ["--source", str(source), "--data", str(data), "--exp", str(exp)]
    args += ["--test-speakers", test_speakers, "--model-config", "conf/model/tiny.yaml"]
    args += ["train.epochs=1", "train.precision=fp32"]
    planned = _run(script, "--dry-run", *args)
    assert f"asr prepare {recipe}" in planned and "asr lm tune" in planned
    assert not data.exists()
    out = _run(script, *args)
    for stage in range(5):
        assert f"# stage {stage}:" in out
    for name in ("best.pt", lm, "decoder.yaml", "test-greedy.txt", "test-lm.txt"):
        assert (exp / name).is_file(), name
    assert "WER" in (exp / "test-lm.txt").read_text()
    again = _run(script, *args)  # every stage's output exists: all skipped
    assert again.count("# skipped") == commands and "asr train" in again
