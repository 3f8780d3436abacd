"""The corpus registry: every corpus module is listed once, and ``asr prepare <name>`` is built from
its own module's record; a record downloads, checks SOURCE and reads as its fields say."""

import argparse
import importlib
import re
from pathlib import Path

import pytest

from asr.cli import build_parser
from asr.recipes import CORPORA
from asr.recipes.common import PrepareSummary
from asr.recipes.corpus import DOWNLOAD_NOTE, Corpus, Download, Source
from tests.conftest import ROOT

NOT_CORPORA = {"__init__", "common", "corpus"}  # the registry and what corpora share


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_the_registry_lists_every_corpus_module_once_with_a_unique_name():
    names = [corpus.name for corpus in CORPORA]
    assert len(names) == len(set(names)), names
    modules = sorted(p.stem for p in (ROOT / "asr" / "recipes").glob("*.py"))
    corpus_modules = [m for m in modules if m not in NOT_CORPORA]
    assert len(corpus_modules) == len(CORPORA)
    for name in corpus_modules:
        record = importlib.import_module(f"asr.recipes.{name}").CORPUS
        assert sum(record is corpus for corpus in CORPORA) == 1, name
        assert record.read.__module__ == f"asr.recipes.{name}"  # its import is its own


def test_prepare_help_lists_every_corpus_in_registry_order(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["prepare", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    places = [re.search(rf"^    {corpus.name}\s", out, re.M).start() for corpus in CORPORA]
    assert places == sorted(places)
    for corpus in CORPORA:
        assert corpus.help[:40] in " ".join(out.split()), corpus.name


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda c: c.name)
def test_each_command_is_built_from_its_own_record(corpus):
    parser = _subparsers(_subparsers(build_parser()).choices["prepare"]).choices[corpus.name]
    assert parser.description == corpus.about
    actions = {a.dest: a for a in parser._actions}
    assert actions[corpus.source.name].help == corpus.source.help
    assert actions[corpus.source.name].nargs == corpus.source.nargs
    assert actions["out"].required
    if corpus.add_arguments is not None:  # the record's own options, with their own help
        own = argparse.ArgumentParser(add_help=False)
        corpus.add_arguments(own)
        for action in own._actions:
            assert actions[action.dest].help == action.help, action.dest
            assert actions[action.dest].default == action.default, action.dest
    if corpus.download is not None:
        assert actions["checksum"].default == corpus.download.checksum
        assert corpus.download.what in actions["download"].help
        assert corpus.download.url in actions["download"].help
    else:
        assert "checksum" not in actions
        assert ("download" in actions) == (corpus.fetch is not None)
    assert ("group_by" in actions) == corpus.hold_out


def _toy(fetched: list, download: Download | None = None, description: str = "") -> Corpus:
    def fetch(out_dir: Path, url: str, checksum: str | None) -> Path:
        fetched.append((out_dir, url, checksum))
        return out_dir / "download"

    return Corpus(
        name="toy",
        help="a toy layout",
        source=Source("the toy folder"),
        read=lambda source, args: PrepareSummary(splits={"all": []}, skipped=[(str(source), "")]),
        description=description,
        download=download and Download(download.what, fetch, download.url, download.checksum),
    )


def _args(**values) -> argparse.Namespace:
    return argparse.Namespace(**{"source": None, "out": Path("o"), **values})


def test_a_record_downloads_its_default_url_then_reads_what_it_fetched():
    fetched: list = []
    toy = _toy(fetched, Download("toy.tgz", print, "https://example.org/toy.tgz", "md5:ab"))
    summary = toy.run(_args(download="default", checksum="md5:ab"))
    assert fetched == [(Path("o"), "https://example.org/toy.tgz", "md5:ab")]
    assert summary.skipped == [(str(Path("o") / "download"), "")]
    toy.run(_args(download="mirror/toy.tgz", checksum="NONE"))  # a mirror; 'none' skips the check
    assert fetched[-1] == (Path("o"), "mirror/toy.tgz", None)
    assert toy.run(_args(source=Path("here"), download=None, checksum=None)).skipped == [
        ("here", "")
    ]
    assert len(fetched) == 2  # SOURCE alone downloads nothing


def test_a_record_without_source_or_download_names_both():
    toy = _toy([], Download("toy.tgz", print, "https://example.org/toy.tgz"))
    with pytest.raises(ValueError, match="asr prepare toy: give SOURCE .* or --download"):
        toy.run(_args(download=None, checksum=None))


def test_the_default_description_says_import_and_the_download_note_when_it_downloads():
    assert _toy([]).about == "Import a toy layout."
    assert _toy([], Download("toy.tgz", print)).about == "Import a toy layout. " + DOWNLOAD_NOTE
    assert _toy([], description="Its own words.").about == "Its own words."
