"""Score a model on every held-out split of the default recipe: greedy and beam + LM, one table.

Each set's emissions are computed once and decoded twice (greedy, then the beam search and LM of
the decoder config), so the whole table costs one forward pass per set. Usage:

    python recipes/default/score.py [--model exp/gen3/best.pt] [--decoder-config asr/pretrained/decoder.yaml]
        [--data data/default] [--sets dev|test|all] [--baseline exp/gen2.pt]

Prints a Markdown table of WER / CER per set, the dev sets pooled (what selects models), and the
mean of the dev sets' WERs (what `asr lm tune --average sets` ranks). With --baseline, the same
sets are decoded with a second model (the same decoder config) and the pooled dev (and test) WERs
of the two are compared by a paired bootstrap, resampling utterances and, more honestly for sets
of few speakers, whole speakers: is a stage's gain more than the dev sets' noise?
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.config import load_decoder_config
from asr.data import read_manifest
from asr.decode import BeamDecoder, GreedyDecoder
from asr.evaluate import manifest_emissions
from asr.metrics import Score, compare, score
from asr.transcribe import load_model

# (label, manifest relative to --data); dev sets select models and LM weights, test sets report
DEV = [
    ("Common Voice dev, 15 speakers", "commonvoice/dev.jsonl"),
    ("speechocean762 dev, 10 speakers", "speechocean762/dev.jsonl"),
    ("kathleen dev, 50 prompts", "kathleen/dev.jsonl"),
    ("LibriSpeech dev, 2 speakers", "librispeech/dev.jsonl"),
    ("AN4 dev, 4 speakers", "an4/dev.jsonl"),
    ("Speech Commands dev, 10 speakers", "speechcommands/dev.jsonl"),
]
TEST = [
    ("Common Voice test, 15 speakers", "commonvoice/test.jsonl"),
    ("speechocean762 test, 15 speakers", "speechocean762/test.jsonl"),
    ("kathleen test, 100 prompts", "kathleen/test.jsonl"),
    ("FSDD, theo and yweweler (theo trains from gen12 on)", "fsdd/test.jsonl"),
    ("FSDD, yweweler", "fsdd_ywe/test.jsonl"),
    ("LibriSpeech test, 2 speakers", "librispeech/test.jsonl"),
    ("AN4 test, 4 speakers", "an4/test.jsonl"),
    ("Speech Commands test, 10 speakers", "speechcommands/test.jsonl"),
]
DECODINGS = ("greedy", "beam")  # the two hypotheses each set holds, in table order


def decode_all(decoder, emissions: list[torch.Tensor]) -> list[str]:
    return [decoder(e[None], torch.tensor([e.shape[0]]))[0].text for e in emissions]


@dataclass
class SetResult:
    """One held-out set decoded both ways: its utterances in manifest order."""

    label: str
    rel: str  # the manifest, relative to --data: what pools sets and names their groups
    ids: list[str]
    refs: list[str]
    groups: list[str]  # one "<rel>:<speaker>" per utterance, for the speaker bootstrap
    greedy: list[str]
    beam: list[str]

    def score(self, decoding: str) -> Score:
        return score(self.ids, self.refs, self.hyps(decoding))

    def hyps(self, decoding: str) -> list[str]:
        if decoding not in DECODINGS:
            raise ValueError(f"decoding {decoding!r}: expected one of {DECODINGS}")
        return self.greedy if decoding == "greedy" else self.beam


def speakers_of(manifest: Path, ids: list[str], rel: str) -> list[str]:
    """One group label per utterance: its set and speaker (its id where the manifest has none)."""
    speaker = {u.id: u.speaker or u.id for u in read_manifest(manifest)}
    return [f"{rel}:{speaker.get(i, i)}" for i in ids]


def decode_sets(rec, decoder_config: str, sets, data: str) -> list[SetResult]:
    """Each set's ids, references, speaker groups and greedy / beam hypotheses (one forward pass)."""
    greedy = GreedyDecoder(rec.tokenizer)
    beam = BeamDecoder(rec.tokenizer, load_decoder_config(decoder_config))
    out = []
    for label, rel in sets:
        manifest = Path(data) / rel
        ids, refs, emissions = manifest_emissions(
            rec.model, rec.features, rec.tokenizer, str(manifest), precision=rec.precision
        )
        out.append(
            SetResult(
                label=label,
                rel=rel,
                ids=ids,
                refs=refs,
                groups=speakers_of(manifest, ids, rel),
                greedy=decode_all(greedy, emissions),
                beam=decode_all(beam, emissions),
            )
        )
    return out


def pooled(results: list[SetResult], names: list[str], decoding: str) -> tuple[Score, list[str]]:
    """The named sets as one scored set (ids prefixed by their set), and their speaker groups."""
    chosen = [r for r in results if r.rel in names]
    ids = [f"{r.rel}:{i}" for r in chosen for i in r.ids]
    refs = [x for r in chosen for x in r.refs]
    hyps = [x for r in chosen for x in r.hyps(decoding)]
    return score(ids, refs, hyps), [g for r in chosen for g in r.groups]


def table(results: list[SetResult], dev_names: list[str]) -> list[str]:
    """Markdown rows: each set, then (when dev sets are among them) the dev sets pooled and the
    mean of their WERs."""
    rows = [
        "| held-out set | utterances | greedy WER / CER | beam + LM WER / CER |",
        "|---|---|---|---|",
    ]
    scores = {r.rel: [r.score(name) for name in DECODINGS] for r in results}  # scored once
    for r in results:
        cells = [f"{100 * s.wer:.1f}% / {100 * s.cer:.1f}%" for s in scores[r.rel]]
        rows.append(f"| {r.label} | {len(r.ids)} | {cells[0]} | {cells[1]} |")
    dev = [r for r in results if r.rel in dev_names]
    if dev:
        cells = []
        for name in DECODINGS:
            s, _ = pooled(results, dev_names, name)
            cells.append(f"{100 * s.wer:.2f}% / {100 * s.cer:.2f}%")
        rows.append(
            f"| the dev sets together | {sum(len(r.ids) for r in dev)} | {cells[0]} | {cells[1]} |"
        )
        mean = [sum(scores[r.rel][i].wer for r in dev) / len(dev) for i in range(len(DECODINGS))]
        rows.append(
            f"| mean of the dev sets' WERs | | {100 * mean[0]:.2f}% | {100 * mean[1]:.2f}% |"
        )
    return rows


def bootstrap(
    base: list[SetResult], results: list[SetResult], pools: dict[str, list[str]]
) -> list[str]:
    """One line per pool, decoding and resampling unit: the baseline's WER against the model's."""
    lines = []
    for split, names in pools.items():
        for name in DECODINGS if names else ():
            a, speakers = pooled(base, names, name)
            b, _ = pooled(results, names, name)
            for by, groups in (("utterances", None), ("speakers", speakers)):
                c = compare(a, b, groups=groups)
                lines.append(f"- {split} pooled, {name}, resampling {by}: {c.summary()}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: bundled)")
    parser.add_argument("--decoder-config", default="asr/pretrained/decoder.yaml")
    parser.add_argument("--data", default="data/default")
    parser.add_argument("--sets", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--baseline", default=None, help="a second model file to compare against")
    args = parser.parse_args()

    sets = {"dev": DEV, "test": TEST, "all": DEV + TEST}[args.sets]
    dev_names = [rel for label, rel in DEV if (label, rel) in sets]
    # theo trains since gen12, and yweweler has a row of his own: the test pool leaves fsdd/ out
    test_names = [rel for label, rel in TEST if (label, rel) in sets and rel != "fsdd/test.jsonl"]
    rec = load_model(args.model, precision=args.precision)
    results = decode_sets(rec, args.decoder_config, sets, args.data)
    print("\n".join(table(results, dev_names)), flush=True)
    if args.baseline:
        base = load_model(args.baseline, precision=args.precision)
        base_results = decode_sets(base, args.decoder_config, sets, args.data)
        print(f"\nBaseline {args.baseline} -> model {args.model or 'bundled'}, paired bootstrap:")
        print("\n".join(bootstrap(base_results, results, {"dev": dev_names, "test": test_names})))


if __name__ == "__main__":
    main()
