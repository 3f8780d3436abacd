"""recipes/default/run.sh --dry-run: every stage's command, from the corpora to the exported
model and its decoder config, each one a command that parses and names files that exist."""

import shlex
import shutil
import subprocess

from asr.cli import build_parser
from tests.conftest import ROOT


def _dry_run(tmp_path, *args: str) -> list[str]:
    """The printed lines, run from a copy of recipes/ with no exp/ or data/ beside it."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    done = subprocess.run(
        ["bash", "recipes/default/run.sh", "--dry-run", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "exp").exists() and not (tmp_path / "data").exists()
    return done.stdout.splitlines()


def test_dry_run_prints_every_stage_and_its_commands_parse(tmp_path):
    lines = _dry_run(tmp_path)
    for n in range(22):
        assert any(line.startswith(f"# stage {n}:") for line in lines), n
    commands = [line for line in lines if not line.startswith("#")]
    assert commands[0] == "bash recipes/default/prepare.sh ../shared/data data/default"
    trained = []
    for line in commands[1:]:
        words = shlex.split(line.split(" > ")[0])
        if words[:2] != ["python3", "-m"]:
            assert words[:2] == ["python3", "recipes/default/score.py"], line
            continue
        args = build_parser().parse_args(words[3:])  # SystemExit on an option that does not exist
        if args.command == "train":
            assert all((ROOT / path).is_file() for path in args.config), line
            trained.append(args.out.name)
    assert trained == ["default", "default-join", "default-join5"] + [
        f"gen{n}" for n in range(2, 16)
    ] + ["cv1", "cv2"]
    text = "\n".join(lines)
    assert "asr export --model exp/avg1415.pt --out exp/gen15.pt --half" in text
    assert "--out exp/lm/decoder.yaml" in text and "exp/lm/lm3.arpa" in text


def test_from_git_starts_after_the_generation_it_writes(tmp_path):
    lines = _dry_run(tmp_path, "--from-git", "gen14", "--stop-stage", "15")
    assert lines[1] == "git show e75a912:asr/pretrained/default.pt > exp/avg1314.pt"
    stages = [line.split(":")[0] for line in lines if line.startswith("# stage")]
    assert stages == ["# stage 0", "# stage 15"]
