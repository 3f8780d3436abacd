"""The README and docs/ hold what is true: their code blocks run or parse, their links resolve,
and the configuration reference lists every key of ``asr/config.py`` with its default."""

import dataclasses
import re
import shlex

import pytest

from asr.cli import build_parser
from asr.config import Config, DecoderConfig
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _shell_lines(text: str) -> list[str]:
    """Command lines of the page's bash blocks, continuations joined, comments dropped."""
    out = []
    for block in _blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_readme_python_example_runs(monkeypatch, capsys):
    blocks = _blocks((ROOT / "README.md").read_text(), "python")
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(ROOT)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.strip(), "the example prints its transcript"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_compile(page):
    for code in _blocks(page.read_text(), "python"):
        compile(code, str(page), "exec")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shell_blocks_parse_and_name_files_that_exist(page):
    """Every ``asr`` command parses (a renamed option fails here, not for a reader); every
    script run with ``bash`` or ``python`` exists."""
    for line in _shell_lines(page.read_text()):
        words = shlex.split(line)
        if words[0] == "asr":
            build_parser().parse_args(words[1:])  # SystemExit on an option that does not exist
        elif words[0] in ("bash", "python", "python3") and words[1].endswith((".sh", ".py")):
            assert (ROOT / words[1]).is_file(), f"{page.name}: {line}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: link to {target}"


def _keys(cls: type, prefix: str) -> dict[str, object]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()
        if dataclasses.is_dataclass(default):
            out.update(_keys(type(default), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = default
    return out


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    if value == float("-inf"):
        return "-inf"
    return str(value)


def test_configuration_reference_lists_every_key_with_its_default():
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", text, flags=re.M))
    expected = {**_keys(Config, ""), **_keys(DecoderConfig, "decoder.")}
    assert sorted(rows) == sorted(expected), "docs/configuration.md: keys differ from asr/config.py"
    wrong = {k: (rows[k], _shown(v)) for k, v in expected.items() if rows[k] != _shown(v)}
    assert not wrong, f"docs/configuration.md: defaults differ (doc, code): {wrong}"
