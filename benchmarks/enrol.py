"""What an enrolment buys: one held-out speaker's WER before and after ``asr enrol``, by minutes.

    python benchmarks/enrol.py --manifest data/default/librispeech/test.jsonl --speaker 7859 \\
        --minutes 1,3,5 --test-minutes 3.5 --out exp/enrol_bench

The speaker's utterances are taken in their order (a reader's chapter in time order): the last
``--test-minutes`` are the test set, and each enrolment takes the first N minutes, so every
enrolment is scored on the same later utterances. For each N the bundled model (the baseline,
scored in the same run) and the personal model are scored greedy and with the bundled LM (the
default decoding), and the wall time of the whole enrolment (checks, scoring the held-out
recordings before, fine-tuning, writing the model) is shown. ``--lr``, ``--trainable``,
``--epochs``, ``--patience``, ``--lhuc``, ``--dropout``, ``--seed`` and the rest override
:class:`asr.enrol.EnrolSettings` (to choose defaults on a dev speaker).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from asr.config import load_decoder_config
from asr.data import Utterance, make_loader, write_manifest
from asr.decode import GreedyDecoder, build_decoder
from asr.enrol import EnrolSettings, enrol
from asr.evaluate import evaluate, scoring_utterances
from asr.transcribe import DEFAULT_DECODER, load_model


def split_by_time(
    utts: list[Utterance], test_minutes: float
) -> tuple[list[Utterance], list[Utterance]]:
    """``(pool, test)``: the last ``test_minutes`` of the speaker's speech are the test set."""
    utts = sorted(utts, key=lambda u: u.id)
    test: list[Utterance] = []
    while utts and sum(u.duration for u in test) < 60 * test_minutes:
        test.insert(0, utts.pop())
    return utts, test


def first_minutes(utts: list[Utterance], minutes: float) -> list[Utterance]:
    """The first utterances that add up to at most ``minutes`` (at least one)."""
    chosen: list[Utterance] = []
    for utt in utts:
        if chosen and sum(u.duration for u in chosen) + utt.duration > 60 * minutes:
            break
        chosen.append(utt)
    return chosen


def wers(model: str | None, utts: list[Utterance]) -> tuple[float, float]:
    """(greedy WER, WER with the bundled beam search and LM) of a model file on ``utts``."""
    rec = load_model(model)
    loader = make_loader(utts, rec.tokenizer, rec.sample_rate, 60.0, 16, 0, shuffle=False)
    lm = build_decoder(rec.tokenizer, load_decoder_config(DEFAULT_DECODER))
    result = evaluate(
        rec.model, rec.features, rec.tokenizer, loader, rec.device,
        decoder=GreedyDecoder(rec.tokenizer), precision=rec.precision, also_decoder=lm,
    )  # fmt: skip
    return result.score.wer, result.also.wer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--speaker", required=True)
    parser.add_argument("--minutes", default="1,3,5,10", help="enrolment sizes, comma-separated")
    parser.add_argument("--test-minutes", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("exp/enrol_bench"))
    d = EnrolSettings()
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--patience", type=int, default=d.patience)
    parser.add_argument("--trainable", default="all", help="prefixes, comma-separated, or 'all'")
    parser.add_argument("--batch-seconds", type=float, default=d.batch_seconds)
    parser.add_argument("--speed", default="", help="speed factors, e.g. 0.9,1.0,1.1")
    parser.add_argument("--kl", type=float, default=d.kl_weight, help="train.kl_to_init")
    parser.add_argument("--heldout-share", type=float, default=d.heldout_share)
    parser.add_argument("--average-last", type=int, default=d.average_last)
    parser.add_argument("--lhuc", action="store_true", help="train LHUC scales (model.lhuc)")
    parser.add_argument("--dropout", type=float, default=None, help="model.dropout while tuning")
    parser.add_argument("--seed", type=int, default=d.seed)
    args = parser.parse_args()
    trainable = [t for t in args.trainable.split(",") if t and t != "all"]
    settings = dataclasses.replace(
        d, lr=args.lr, epochs=args.epochs, patience=args.patience, trainable=trainable,
        batch_seconds=args.batch_seconds,
        speed_factors=[float(f) for f in args.speed.split(",") if f], kl_weight=args.kl,
        heldout_share=args.heldout_share, average_last=args.average_last, lhuc=args.lhuc,
        dropout=args.dropout, seed=args.seed,
    )  # fmt: skip
    utts = [
        u for u in scoring_utterances(args.manifest, load_model().tokenizer)
        if u.speaker == args.speaker
    ]  # fmt: skip
    pool, test = split_by_time(utts, args.test_minutes)
    test_s = sum(u.duration for u in test)
    pool_s = sum(u.duration for u in pool)
    print(
        f"speaker {args.speaker}: {len(test)} test utterances ({test_s / 60:.1f} min), "
        f"{pool_s / 60:.1f} min before them to enrol from; {settings}"
    )
    greedy0, lm0 = wers(None, test)
    rows = [("bundled", "-", "-", greedy0, lm0)]
    for minutes in (float(m) for m in args.minutes.split(",")):
        if 60 * minutes > pool_s + 1:
            print(f"{minutes:g} min: the speaker has only {pool_s / 60:.1f} min to enrol from")
            continue
        chosen = first_minutes(pool, minutes)
        out = args.out / f"{args.speaker}_{minutes:g}min"
        write_manifest(chosen, out / "recordings.jsonl")
        started = time.perf_counter()
        result = enrol(out / "recordings.jsonl", out, settings=settings, progress=False)
        wall = (time.perf_counter() - started) / 60
        greedy, lm = wers(str(result.model), test)
        speech = f"{sum(u.duration for u in chosen) / 60:.1f}"
        rows.append((f"{minutes:g} min", speech, f"{wall:.1f}", greedy, lm))
        print(f"  {rows[-1][0]}: greedy {100 * greedy:.1f}%, LM {100 * lm:.1f}%, {result}")
    print()
    print("| enrolment | speech (min) | asr enrol (min) | greedy WER | with LM | LM vs bundled |")
    print("|---|---|---|---|---|---|")
    for name, speech, mins, greedy, lm in rows:
        ratio = f"{lm / lm0:.2f}x" if name != "bundled" else "1.00x"
        print(f"| {name} | {speech} | {mins} | {100 * greedy:.1f}% | {100 * lm:.1f}% | {ratio} |")


if __name__ == "__main__":
    main()
