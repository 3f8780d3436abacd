"""Every recipe has a README and a config; the commands its README lists parse, its YAMLs load."""

import re
import shlex

import pytest

from asr.cli import build_parser
from asr.config import load_config
from tests.conftest import ROOT

RECIPES = sorted(p for p in (ROOT / "recipes").iterdir() if p.is_dir())


def _commands(readme: str) -> list[list[str]]:
    """``asr ...`` command lines of the README's shell blocks (continuations joined)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("asr "):
                out.append(shlex.split(line)[1:])
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_readme_commands_parse_and_configs_load(recipe):
    readme = (recipe / "README.md").read_text()
    commands = _commands(readme)
    assert any(c[0] == "train" for c in commands), f"{recipe.name}: no 'asr train' command"
    for argv in commands:
        args = build_parser().parse_args(argv)  # SystemExit on an option that does not exist
        if args.command == "train":
            for path in args.config:
                assert (ROOT / path).is_file(), path
            load_config([ROOT / p for p in args.config], args.overrides)


def test_every_prepare_option_has_help():
    import argparse

    def subparsers(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    corpora = subparsers(subparsers(build_parser()).choices["prepare"]).choices
    assert {"librispeech", "an4", "commonvoice", "tedlium", "ljspeech", "fsdd"} <= set(corpora)
    for name, parser in corpora.items():
        missing = [a.dest for a in parser._actions if not a.help]
        assert not missing, f"asr prepare {name}: no help for {missing}"
