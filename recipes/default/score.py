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
from pathlib import Path

import torch

from asr.config import load_decoder_config
from asr.data import read_manifest
from asr.decode import BeamDecoder, GreedyDecoder
from asr.evaluate import manifest_emissions
from asr.metrics import compare, score
from asr.transcribe import load_model

# (label, manifest relative to --data); dev sets select models and LM weights, test sets report
DEV = [
    ("speechocean762 dev, 10 speakers", "speechocean762/dev.jsonl"),
    ("kathleen dev, 50 prompts", "kathleen/dev.jsonl"),
    ("LibriSpeech dev, 2 speakers", "librispeech/dev.jsonl"),
    ("AN4 dev, 4 speakers", "an4/dev.jsonl"),
    ("Speech Commands dev, 10 speakers", "speechcommands/dev.jsonl"),
]
TEST = [
    ("speechocean762 test, 15 speakers", "speechocean762/test.jsonl"),
    ("kathleen test, 100 prompts", "kathleen/test.jsonl"),
    ("FSDD, theo and yweweler (theo trains from gen12 on)", "fsdd/test.jsonl"),
    ("FSDD, yweweler", "fsdd_ywe/test.jsonl"),
    ("LibriSpeech test, 2 speakers", "librispeech/test.jsonl"),
    ("AN4 test, 4 speakers", "an4/test.jsonl"),
    ("Speech Commands test, 10 speakers", "speechcommands/test.jsonl"),
]


def decode_all(decoder, emissions: list[torch.Tensor]) -> list[str]:
    return [decoder(e[None], torch.tensor([e.shape[0]]))[0].text for e in emissions]


def speakers_of(manifest: Path, ids: list[str], rel: str) -> list[str]:
    """One group label per utterance: its set and speaker (its id where the manifest has none)."""
    speaker = {u.id: u.speaker or u.id for u in read_manifest(manifest)}
    return [f"{rel}:{speaker.get(i, i)}" for i in ids]


def decode_sets(rec, decoder_config: str, sets, data: str) -> list[dict]:
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
            {
                "label": label,
                "rel": rel,
                "ids": ids,
                "refs": refs,
                "groups": speakers_of(manifest, ids, rel),
                "greedy": decode_all(greedy, emissions),
                "beam": decode_all(beam, emissions),
            }
        )
    return out


def pooled(results: list[dict], names: list[str], decoding: str):
    """The named sets as one scored set, and their speaker groups."""
    chosen = [r for r in results if r["rel"] in names]
    ids = [f"{r['rel']}:{i}" for r in chosen for i in r["ids"]]
    refs = [x for r in chosen for x in r["refs"]]
    hyps = [x for r in chosen for x in r[decoding]]
    return score(ids, refs, hyps), [g for r in chosen for g in r["groups"]]


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
    rec = load_model(args.model, precision=args.precision)
    results = decode_sets(rec, args.decoder_config, sets, args.data)
    print("| held-out set | utterances | greedy WER / CER | beam + LM WER / CER |")
    print("|---|---|---|---|")
    dev_wers: dict[str, list[float]] = {"greedy": [], "beam": []}
    for r in results:
        cells = []
        for name in ("greedy", "beam"):
            s = score(r["ids"], r["refs"], r[name])
            cells.append(f"{100 * s.wer:.1f}% / {100 * s.cer:.1f}%")
            if (r["label"], r["rel"]) in DEV:
                dev_wers[name].append(s.wer)
        print(f"| {r['label']} | {len(r['ids'])} | {cells[0]} | {cells[1]} |", flush=True)
    dev_names = [rel for label, rel in DEV if (label, rel) in sets]
    if dev_names:
        cells = []
        for name in ("greedy", "beam"):
            s, _ = pooled(results, dev_names, name)
            cells.append(f"{100 * s.wer:.2f}% / {100 * s.cer:.2f}%")
        n_dev = sum(len(r["ids"]) for r in results if r["rel"] in dev_names)
        print(f"| the five dev sets together | {n_dev} | {cells[0]} | {cells[1]} |")
        mean = [sum(w) / len(w) for w in dev_wers.values()]
        print(
            f"| mean of the five dev sets' WERs | | {100 * mean[0]:.2f}% | {100 * mean[1]:.2f}% |"
        )
    if args.baseline:
        base = load_model(args.baseline, precision=args.precision)
        base_results = decode_sets(base, args.decoder_config, sets, args.data)
        print(f"\nBaseline {args.baseline} -> model {args.model or 'bundled'}, paired bootstrap:")
        # theo trains since gen12, and yweweler has a row of his own: the test pool leaves fsdd/ out
        test_names = [
            rel for label, rel in TEST if (label, rel) in sets and rel != "fsdd/test.jsonl"
        ]
        groups_of = {"dev": dev_names, "test": test_names}
        for split, names in groups_of.items():
            for name in ("greedy", "beam") if names else ():
                a, speakers = pooled(base_results, names, name)
                b, _ = pooled(results, names, name)
                for by, groups in (("utterances", None), ("speakers", speakers)):
                    c = compare(a, b, groups=groups)
                    print(f"- {split} pooled, {name}, resampling {by}: {c.summary()}")


if __name__ == "__main__":
    main()
