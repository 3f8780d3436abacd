"""``asr prepare <corpus>``: the argument parsing of the corpus importers (split out of ``cli.py``).

``asr/cli.py`` builds the parser and calls :func:`add_prepare` and :func:`cmd_prepare`; nothing else
imports this module. The work itself is in ``asr/recipes/<corpus>.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DOWNLOAD_NOTE = (
    "Downloads go to OUT/download: they resume where an interrupted one stopped (HTTP Range on a "
    ".part file), are verified against a checksum, and leave .done markers, so re-running the same "
    "command skips finished downloads and extractions."
)


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, required=True, help="folder for the manifests (<split>.jsonl)"
    )


def _download(p: argparse.ArgumentParser, default: str, what: str, required_value=False) -> None:
    p.add_argument(
        "--download",
        nargs=None if required_value else "?",
        const=None if required_value else "default",
        default=None,
        metavar="URL_OR_FILE",
        help=f"fetch {what} into OUT/download first and prepare that"
        + (
            ""
            if required_value
            else f" (default URL: {default}; or give a mirror URL or a local file)"
        ),
    )


def _checksum(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--checksum",
        default=default,
        metavar="ALGO:HEX",
        help="expected checksum of the downloaded archive: md5:HEX, sha256:HEX or a bare digest; "
        "'none' skips the check"
        + (f" (default: {default})" if default else " (default: not checked)"),
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


IMPORTERS = {
    "kaldi": "a Kaldi data directory (wav.scp, text, optional utt2spk and segments)",
    "folder": "a folder of audio files, each with a .txt transcript beside it (name.wav + name.txt)",
    "nemo": "a NeMo-style JSON-lines manifest (audio_filepath, duration, text; optional split)",
}


def add_prepare(sub: argparse._SubParsersAction) -> None:
    from asr.recipes import an4, fsdd, librispeech, speechcommands, tedlium

    p = sub.add_parser(
        "prepare",
        help="turn a corpus in its native layout into manifests",
        description="Read a corpus as it ships (or download it first) and write <split>.jsonl "
        "manifests into --out, printing a summary (utterances, hours, speakers, characters outside "
        "the vocabulary, skipped files and why). Re-running writes the same files. Each corpus's "
        "recipe (recipes/<corpus>/README.md) lists the full commands.",
    )
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")

    q = corpora.add_parser(
        "librispeech",
        help="LibriSpeech (OpenSLR 12): 960 h of read audiobooks, FLAC",
        description="LibriSpeech: LibriSpeech/<split>/<speaker>/<chapter>/*.trans.txt + .flac. "
        "Each split becomes <split>.jsonl. " + DOWNLOAD_NOTE + " Archives are checked against "
        "OpenSLR's published md5 sums.",
    )
    q.add_argument(
        "source", nargs="?", type=Path, help="folder holding LibriSpeech/ (omit with --download)"
    )
    _out(q)
    q.add_argument(
        "--splits",
        default=",".join(librispeech.SPLITS[:7]),
        help="comma-separated splits to download and prepare (default: the seven of LibriSpeech; "
        "Mini LibriSpeech's are train-clean-5 and dev-clean-2)",
    )
    q.add_argument(
        "--download",
        nargs="?",
        const="default",
        default=None,
        metavar="BASE_URL_OR_DIR",
        help="fetch <split>.tar.gz for each split from BASE (OpenSLR when no value is given; or a "
        "mirror, or a local folder of archives) into OUT/download",
    )
    q.add_argument(
        "--remove-archives",
        action="store_true",
        help="delete each .tar.gz once extracted (saves ~60 GB for all splits)",
    )
    q.add_argument(
        "--lm",
        nargs="?",
        const=librispeech.LM_BASE_URL,
        default=None,
        metavar="BASE_URL_OR_DIR",
        help="also fetch the official LM resources (OpenSLR 11: 3-gram and 4-gram ARPA, pruned "
        "3-grams, librispeech-vocab.txt, librispeech-lexicon.txt) into OUT/lm, ARPA files unpacked "
        "and lower-cased",
    )
    _hold_out(q)

    q = corpora.add_parser(
        "an4",
        help="AN4 (CMU): an4_sphere.tar.gz's etc/*.transcription, .fileids and wav/*.sph",
        description="AN4: an4/etc/an4_{train,test}.{fileids,transcription} and an4/wav/**/*.sph "
        "(NIST SPHERE, read as is). Splits train and test; hold out dev speakers from train with "
        "--dev N. " + DOWNLOAD_NOTE,
    )
    q.add_argument(
        "source", nargs="?", type=Path, help="folder holding an4/ (omit with --download)"
    )
    _out(q)
    _download(q, an4.URL, "an4_sphere.tar.gz")
    _checksum(q, f"sha256:{an4.SHA256}")
    _hold_out(q)

    q = corpora.add_parser(
        "speechcommands",
        help="Speech Commands v0.02 (Google): one-second single words, either archive's layout",
        description="Speech Commands v0.02: the full release (<word>/<speaker>_nohash_<n>.wav, "
        "validation_list.txt and testing_list.txt give dev and test) or the canonical test set "
        "(_unknown_/<word>_<speaker>_nohash_<n>.wav, one split 'all'). Background-noise clips "
        "(_background_noise_/, _silence_/) go to noise.jsonl, a real-noise source for "
        "augment.noise_sources. Hold out dev/test speakers with --dev/--test. " + DOWNLOAD_NOTE,
    )
    q.add_argument(
        "source", nargs="?", type=Path, help="the folder holding the word folders (or above it)"
    )
    _out(q)
    q.add_argument(
        "--archive",
        choices=sorted(speechcommands.ARCHIVES),
        default="full",
        help="with --download: full (speech_commands_v0.02.tar.gz, 2.4 GB, sha256-checked) or test "
        "(speech_commands_test_set_v0.02.tar.gz, 112 MB, no published checksum)",
    )
    q.add_argument(
        "--download",
        nargs="?",
        const=speechcommands.BASE_URL,
        default=None,
        metavar="BASE_URL_OR_DIR",
        help=f"fetch the --archive from BASE ({speechcommands.BASE_URL} when no value is given; or "
        "a mirror, or a local folder holding the archive) into OUT/download",
    )
    _hold_out(q)

    q = corpora.add_parser(
        "commonvoice",
        help="Mozilla Common Voice: a release's language folder (*.tsv + clips/*.mp3)",
        description="Common Voice: validated.tsv, train.tsv, dev.tsv, test.tsv (client_id, path, "
        "sentence) and clips/*.mp3; durations are read from the audio. Releases need accepting "
        "the terms on the Common Voice site, so --download takes the archive URL you get there "
        "(or a local copy), with --checksum as the site shows it. " + DOWNLOAD_NOTE,
    )
    q.add_argument(
        "source",
        nargs="?",
        type=Path,
        help="the language folder (e.g. cv-corpus-17.0-2024-03-15/en) or a folder above it",
    )
    _out(q)
    q.add_argument(
        "--language", default=None, help="language folder to use when SOURCE holds several (en)"
    )
    q.add_argument(
        "--train-from",
        choices=["train", "validated"],
        default="train",
        help="train: the release's train.tsv; validated: every validated clip whose speaker and "
        "sentence are in neither dev nor test (more data, same held-out sets)",
    )
    _download(q, "", "a release archive (.tar.gz)", required_value=True)
    _checksum(q, None)

    q = corpora.add_parser(
        "tedlium",
        help="TED-LIUM 3 (OpenSLR 51): TED talks, SPH audio + STM segments",
        description="TED-LIUM release 3: each STM segment becomes a manifest entry with offset and "
        "duration into its talk's .sph (no audio is rewritten). Segments marked "
        "ignore_time_segment_in_scoring are dropped; {NOISE}-like tokens and <unk> are removed; "
        "split-off contractions are joined (it 's -> it's). Splits: train (data/, 452 h, or "
        "legacy/train), dev and test (legacy/). " + DOWNLOAD_NOTE,
    )
    q.add_argument(
        "source", nargs="?", type=Path, help="TEDLIUM_release-3 or the folder holding it"
    )
    _out(q)
    q.add_argument(
        "--train-set",
        choices=["full", "legacy"],
        default="full",
        help="full: data/ (2,351 talks, 452 h); legacy: legacy/train (release 2's 207 h)",
    )
    _download(q, tedlium.URL, "TEDLIUM_release-3.tgz (~51 GB)")
    _checksum(q, f"sha256:{tedlium.SHA256}")

    q = corpora.add_parser(
        "fsdd",
        help="Free Spoken Digit Dataset (recordings/{digit}_{speaker}_{index}.wav)",
        description="Free Spoken Digit Dataset. Split 'corpus': index 0-4 = test (the corpus's "
        "own), 5-9 = dev, the rest train. Split 'speaker': --test-speakers/--dev-speakers held "
        "out. " + DOWNLOAD_NOTE,
    )
    q.add_argument("source", nargs="?", type=Path, help="corpus root holding recordings/")
    _out(q)
    q.add_argument(
        "--split",
        choices=["corpus", "speaker"],
        default="corpus",
        help="corpus: the corpus's own test split by take index; speaker: hold out speakers",
    )
    q.add_argument("--test-speakers", default=None, help="comma-separated, for --split speaker")
    q.add_argument("--dev-speakers", default=None, help="comma-separated, for --split speaker")
    _download(q, fsdd.URL, "the corpus archive (.zip)")
    _checksum(q, None)

    for name, what, default_url in (
        (
            "ljspeech",
            "LJSpeech (metadata.csv + wavs/)",
            "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2",
        ),
        (
            "speechocean762",
            "speechocean762 (Kaldi train/ and test/ under the corpus root)",
            "https://www.openslr.org/resources/101/speechocean762.tar.gz",
        ),
    ):
        q = corpora.add_parser(name, help=what, description=f"Import {what}. " + DOWNLOAD_NOTE)
        q.add_argument(
            "source", nargs="?", type=Path, help="the corpus folder (omit with --download)"
        )
        _out(q)
        if name == "ljspeech":
            q.add_argument("--speaker", default="LJ", help="speaker label for every utterance")
        _download(q, default_url, "the corpus archive")
        _checksum(q, None)
        q.set_defaults(default_url=default_url)
        _hold_out(q)

    q = corpora.add_parser(
        "espeak",
        help="synthetic speech: training transcripts spoken by eSpeak NG voices",
        description="Speak every unique transcript of the given manifests with --per-text voices "
        "drawn from eSpeak NG's English accents and voice variants, at random rate and pitch, into "
        "OUT/audio (16 kHz FLAC), and write OUT/all.jsonl (speaker: the voice). Extra speakers "
        "for a small corpus, with no word its training data lacks. A re-run reuses the audio "
        "and draws the same voices. Needs the espeak-ng program (apt-get install espeak-ng).",
    )
    q.add_argument("manifests", nargs="+", type=Path, help="training manifests (JSON Lines)")
    _out(q)
    q.add_argument("--per-text", type=int, default=2, help="voices per transcript (default 2)")
    q.add_argument("--seed", type=int, default=0, help="seed of the voice draw")
    q.add_argument("--espeak", default="espeak-ng", help="the program (default: espeak-ng)")
    q.add_argument("--jobs", type=int, default=2, help="programs run at once (default 2)")

    for name, what in IMPORTERS.items():
        q = corpora.add_parser(name, help=what, description=f"Import {what}.")
        q.add_argument("source", type=Path, help="the corpus folder (or manifest file, for nemo)")
        _out(q)
        if name == "kaldi":
            q.add_argument("--audio-root", type=Path, help="where relative wav.scp paths start")
        if name == "folder":
            q.add_argument("--speaker", default="", help="speaker label for every utterance")
        _hold_out(q)


def _count_or_names(value: str) -> int | list[str]:
    from asr.recipes.common import split_names

    return int(value) if value.strip().isdigit() else split_names(value)


def _checksum_value(args: argparse.Namespace) -> str | None:
    value = getattr(args, "checksum", None)
    return None if value is None or value.lower() == "none" else value


def _find(folder: Path, pattern: str, what: str) -> Path:
    """The folder of the first file matching ``pattern`` under ``folder`` (an extracted archive)."""
    found = sorted(folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"{folder}: no {what} found in the extracted archive")
    return found[0].parent


def _summary(args: argparse.Namespace):
    """Download when asked, then run the corpus's importer; returns its PrepareSummary."""
    from asr.recipes import (
        an4,
        commonvoice,
        espeak,
        folder,
        fsdd,
        kaldi,
        librispeech,
        ljspeech,
        nemo,
        speechcommands,
        speechocean,
        tedlium,
    )
    from asr.recipes.common import fetch_archive, split_names

    if args.corpus == "espeak":
        return espeak.prepare(
            args.manifests, args.out, args.per_text, args.seed, args.espeak, args.jobs
        )
    corpus, source = args.corpus, args.source
    download = getattr(args, "download", None)
    if corpus == "librispeech":
        splits = split_names(args.splits)
        unknown = [s for s in splits if s not in librispeech.ARCHIVES]
        if unknown:
            raise ValueError(
                f"--splits: unknown {unknown} (known: {', '.join(librispeech.SPLITS)})"
            )
        if download:
            base = None if download == "default" else download
            source = librispeech.fetch(args.out, splits, base, not args.remove_archives)
        if args.lm:
            print(f"LM resources in {librispeech.fetch_lm(args.out, args.lm)}")
    elif corpus == "speechcommands":
        if download:
            source = speechcommands.fetch(args.out, args.archive, download)
    elif download:
        checksum = _checksum_value(args)
        if corpus == "an4":
            source = an4.fetch(args.out, an4.URL if download == "default" else download, checksum)
        elif corpus == "tedlium":
            url = tedlium.URL if download == "default" else download
            source = tedlium.fetch(args.out, url, checksum)
        elif corpus == "commonvoice":
            source = commonvoice.fetch(args.out, download, checksum)
        elif corpus == "fsdd":
            source = fsdd.fetch(args.out, fsdd.URL if download == "default" else download, checksum)
        else:
            url = args.default_url if download == "default" else download
            name = Path(url.split("?")[0]).name
            source = fetch_archive(url, args.out / "download", name, checksum)
            if corpus == "ljspeech":
                source = _find(source, "**/metadata.csv", "LJSpeech metadata.csv")
            elif corpus == "speechocean762":
                source = _find(source, "**/train/wav.scp", "speechocean762 train/wav.scp").parent
    if source is None:
        raise ValueError(f"asr prepare {corpus}: give SOURCE (a local copy) or --download")
    if corpus == "librispeech":
        return librispeech.prepare(source, split_names(args.splits))
    if corpus == "an4":
        return an4.prepare(source)
    if corpus == "speechcommands":
        return speechcommands.prepare(source)
    if corpus == "commonvoice":
        return commonvoice.prepare(source, args.language, args.train_from)
    if corpus == "tedlium":
        return tedlium.prepare(source, args.train_set)
    if corpus == "fsdd":
        return fsdd.prepare(source, args.split, args.test_speakers, args.dev_speakers)
    if corpus == "kaldi":
        return kaldi.prepare(source, args.audio_root)
    if corpus == "folder":
        return folder.prepare(source, args.speaker)
    if corpus == "ljspeech":
        return ljspeech.prepare(source, args.speaker or "LJ")
    if corpus == "nemo":
        return nemo.prepare(source)
    return speechocean.prepare(source)


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


def cmd_prepare(args: argparse.Namespace) -> int:
    from asr.recipes.common import hold_out, write_splits

    summary = _summary(args)
    if hasattr(args, "group_by"):
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
