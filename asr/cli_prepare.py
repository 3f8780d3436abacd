"""``asr prepare <corpus>``: one sub-command per corpus of ``asr.recipes.CORPORA``.

``asr/cli.py`` builds the parser and calls :func:`add_prepare` and :func:`cmd_prepare`; nothing else
imports this module. Each corpus's name, help, arguments, default URL and checksum, download and
import are in its own ``asr/recipes/<corpus>.py`` (its ``Corpus`` record); this module adds what
corpora share (SOURCE from the record, ``--out``, ``--download``/``--checksum``, the hold-out
group), holds dev/test groups out of what the corpus read, and writes the manifests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.recipes import CORPORA
from asr.recipes.common import hold_out, split_names, write_splits
from asr.recipes.corpus import Corpus, Download


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, required=True, help="folder for the manifests (<split>.jsonl)"
    )


def _download(p: argparse.ArgumentParser, download: Download) -> None:
    """``--download [URL_OR_FILE]`` and ``--checksum``, with the corpus's defaults."""
    p.add_argument(
        "--download",
        nargs="?" if download.url else None,
        const="default" if download.url else None,
        default=None,
        metavar="URL_OR_FILE",
        help=f"fetch {download.what} into OUT/download first and prepare that"
        + (
            f" (default URL: {download.url}; or give a mirror URL or a local file)"
            if download.url
            else ""
        ),
    )
    p.add_argument(
        "--checksum",
        default=download.checksum,
        metavar="ALGO:HEX",
        help="expected checksum of the downloaded archive: md5:HEX, sha256:HEX or a bare digest; "
        "'none' skips the check"
        + (f" (default: {download.checksum})" if download.checksum else " (default: not checked)"),
    )


def _hold_out(q: argparse.ArgumentParser) -> None:
    h = q.add_argument_group(
        "hold-out",
        "Split off dev/test sets by whole groups, never by file: two takes of one "
        "prompt or speaker always land together. Without these, all utterances go to one "
        "manifest (all.jsonl, or the source's own splits). Groups come from the 'train' split "
        "when the source has one, else from its only split.",
    )
    h.add_argument(
        "--group-by",
        default="speaker",
        help="speaker (default), text, or id:REGEX (the first group of a match)",
    )
    h.add_argument(
        "--dev",
        default="0",
        help="number of groups to hold out for dev, or their names (comma-separated)",
    )
    h.add_argument(
        "--test", default="0", help="number of groups to hold out for test, or their names"
    )
    h.add_argument("--seed", type=int, default=0, help="seed of the hold-out draw")


def add_prepare(sub: argparse._SubParsersAction) -> None:
    """``asr prepare``, with one sub-command per corpus of ``CORPORA``, in its order."""
    p = sub.add_parser(
        "prepare",
        help="turn a corpus in its native layout into manifests",
        description="Read a corpus as it ships (or download it first) and write <split>.jsonl "
        "manifests into --out, printing a summary (utterances, hours, speakers, characters outside "
        "the vocabulary, skipped files and why). Re-running writes the same files. Each corpus's "
        "recipe (recipes/<corpus>/README.md) lists the full commands.",
    )
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for corpus in CORPORA:
        q = corpora.add_parser(corpus.name, help=corpus.help, description=corpus.about)
        source = corpus.source
        q.add_argument(source.name, nargs=source.nargs, type=Path, help=source.help)
        _out(q)
        if corpus.add_arguments is not None:
            corpus.add_arguments(q)
        if corpus.download is not None:
            _download(q, corpus.download)
        if corpus.hold_out:
            _hold_out(q)


def _count_or_names(value: str) -> int | list[str]:
    return int(value) if value.strip().isdigit() else split_names(value)


def _hold_out_source(splits: dict) -> str:
    """The split that dev/test groups are drawn from: ``train``, ``all``, or the only split there is."""
    speech = [name for name in splits if name != "noise"]
    for name in ("train", "all"):
        if name in speech:
            return name
    if len(speech) == 1:
        return speech[0]
    raise ValueError(
        f"--dev/--test: the source has no 'train' split to hold groups out of (it has "
        f"{', '.join(speech) or 'none'}); prepare one split at a time"
    )


def _corpus(name: str) -> Corpus:
    return next(corpus for corpus in CORPORA if corpus.name == name)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Run the corpus's import (downloading first when asked), hold out dev/test, write, report."""
    corpus = _corpus(args.corpus)
    summary = corpus.run(args)
    if corpus.hold_out:
        dev, test = _count_or_names(args.dev), _count_or_names(args.test)
        if dev or test:
            pool = summary.splits.pop(_hold_out_source(summary.splits))
            for name, utts in hold_out(pool, args.group_by, dev, test, args.seed).items():
                summary.splits.setdefault(name, []).extend(utts)
    paths = write_splits(summary, args.out)
    print(summary.report())
    for path in paths.values():
        print(f"wrote {path}")
    return 0
