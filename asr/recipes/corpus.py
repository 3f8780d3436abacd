"""The record by which a corpus module offers its ``asr prepare <name>`` command.

Each corpus is one module, ``asr/recipes/<corpus>.py``, that ends in a :class:`Corpus`: its name,
help, positional argument, own options, download (default URL and checksum) and import.
``asr/recipes/__init__.py`` lists them in ``CORPORA``; ``asr/cli_prepare.py`` turns each into a
sub-command and adds the options corpora share (``--out``, ``--download``/``--checksum``, the
hold-out group).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr.recipes.common import PrepareSummary

DOWNLOAD_NOTE = (
    "Downloads go to OUT/download: they resume where an interrupted one stopped (HTTP Range on a "
    ".part file), are verified against a checksum, and leave .done markers, so re-running the same "
    "command skips finished downloads and extractions."
)


@dataclass(frozen=True)
class Download:
    """What a corpus's shared ``--download`` fetches, and how (``--checksum`` comes with it).

    Attributes:
        what: the file, as the option's help names it (``an4_sphere.tar.gz``).
        fetch: ``(out_dir, url, checksum) -> source``: download, verify and extract into
            ``out_dir/download`` (once), and return the folder to read the corpus from.
        url: the default URL; ``""`` when there is none, so ``--download`` needs a value.
        checksum: ``--checksum``'s default (``ALGO:HEX``); ``None``: not checked.
    """

    what: str
    fetch: Callable[[Path, str, str | None], Path]
    url: str = ""
    checksum: str | None = None


@dataclass(frozen=True)
class Source:
    """The positional argument of ``asr prepare <corpus>``: what the corpus is read from.

    Attributes:
        help: its help.
        nargs: ``"?"`` (may be left out when ``--download`` fetches the corpus), ``None``
            (required) or ``"+"`` (one or more).
        name: the argument's name, and its attribute in the parsed arguments.
    """

    help: str
    nargs: str | None = "?"
    name: str = "source"


@dataclass(frozen=True)
class Corpus:
    """One corpus's ``asr prepare <name>`` command.

    ``asr/cli_prepare.py`` adds, in this order, ``source``, ``--out`` (the manifests' folder), the
    options of ``add_arguments``, ``--download``/``--checksum`` when ``download`` is set, and the
    hold-out options (``--group-by``, ``--dev``, ``--test``, ``--seed``) when ``hold_out`` is.

    Attributes:
        name: the command's name (``asr prepare an4``).
        help: its line in ``asr prepare --help``.
        source: its positional argument.
        read: ``(source, args) -> summary``: the corpus's import, given the positional's value
            (or the folder a download went to) and the parsed arguments.
        description: its own ``--help`` text; ``""``: "Import <help>.", and the download note
            when it has a ``download``.
        add_arguments: adds the corpus's own options to its parser; ``None``: it has none.
        download: what the shared ``--download`` fetches; ``None`` when there is no download or
            ``fetch`` does it.
        fetch: the download step of a corpus whose ``add_arguments`` adds a ``--download`` of its
            own: parsed arguments -> the folder to read (``args.source`` when nothing was fetched).
        hold_out: whether dev/test groups may be held out of what ``read`` returns.
    """

    name: str
    help: str
    source: Source
    read: Callable[[Any, argparse.Namespace], PrepareSummary]
    description: str = ""
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    download: Download | None = None
    fetch: Callable[[argparse.Namespace], Path | None] | None = None
    hold_out: bool = True

    @property
    def about(self) -> str:
        """The ``--help`` text: ``description``, or the one made from ``help``."""
        if self.description:
            return self.description
        return f"Import {self.help}." + (" " + DOWNLOAD_NOTE if self.download else "")

    def run(self, args: argparse.Namespace) -> PrepareSummary:
        """Download when asked, then read the corpus: all of ``asr prepare <name>`` but the
        hold-out and the writing.

        Raises:
            ValueError: neither SOURCE nor ``--download`` was given.
        """
        source = getattr(args, self.source.name)
        if self.fetch is not None:
            source = self.fetch(args)
        elif self.download is not None and args.download:
            url = args.download
            if url == "default" and self.download.url:  # --download given without a value
                url = self.download.url
            checksum = args.checksum
            if checksum is not None and checksum.lower() == "none":
                checksum = None
            source = self.download.fetch(args.out, url, checksum)
        if source is None:
            raise ValueError(f"asr prepare {self.name}: give SOURCE (a local copy) or --download")
        return self.read(source, args)


def add_choice(
    parser: argparse.ArgumentParser, flag: str, choices: Sequence[str], help: str
) -> None:
    """An option whose value is one of ``choices``, the first being the default."""
    parser.add_argument(flag, choices=list(choices), default=choices[0], help=help)


def add_speaker(default: str) -> Callable[[argparse.ArgumentParser], None]:
    """The ``add_arguments`` of a corpus of one speaker: ``--speaker``, every utterance's label."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--speaker", default=default, help="speaker label for every utterance")

    return add_arguments
