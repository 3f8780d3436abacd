"""Score a model on every held-out split of the default recipe: greedy and beam + LM, one table.

Each set's emissions are computed once and decoded twice (greedy, then the beam search and LM of
the decoder config), so the whole table costs one forward pass per set. Usage:

    python recipes/default/score.py [--model exp/gen3/best.pt] [--decoder-config asr/pretrained/decoder.yaml]
        [--data data/default] [--sets dev|test|all]

Prints a Markdown table of WER / CER per set, the dev sets pooled (what selects models), and the
mean of the dev sets' WERs (what `asr lm tune --average sets` ranks).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from asr.config import load_decoder_config
from asr.decode import BeamDecoder, GreedyDecoder
from asr.evaluate import manifest_emissions
from asr.metrics import score
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: bundled)")
    parser.add_argument("--decoder-config", default="asr/pretrained/decoder.yaml")
    parser.add_argument("--data", default="data/default")
    parser.add_argument("--sets", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    rec = load_model(args.model, precision=args.precision)
    greedy = GreedyDecoder(rec.tokenizer)
    beam = BeamDecoder(rec.tokenizer, load_decoder_config(args.decoder_config))
    sets = {"dev": DEV, "test": TEST, "all": DEV + TEST}[args.sets]
    print("| held-out set | utterances | greedy WER / CER | beam + LM WER / CER |")
    print("|---|---|---|---|")
    pooled: dict[str, list] = {"ids": [], "refs": [], "greedy": [], "beam": []}
    dev_wers: dict[str, list[float]] = {"greedy": [], "beam": []}
    for label, rel in sets:
        manifest = str(Path(args.data) / rel)
        ids, refs, emissions = manifest_emissions(
            rec.model, rec.features, rec.tokenizer, manifest, precision=rec.precision
        )
        cells = []
        for name, decoder in (("greedy", greedy), ("beam", beam)):
            hyps = decode_all(decoder, emissions)
            s = score(ids, refs, hyps)
            cells.append(f"{100 * s.wer:.1f}% / {100 * s.cer:.1f}%")
            if (label, rel) in DEV:
                pooled[name] += hyps
                dev_wers[name].append(s.wer)
        if (label, rel) in DEV:
            pooled["ids"] += [f"{rel}:{i}" for i in ids]
            pooled["refs"] += refs
        print(f"| {label} | {len(ids)} | {cells[0]} | {cells[1]} |", flush=True)
    if pooled["ids"]:
        cells = []
        for name in ("greedy", "beam"):
            s = score(pooled["ids"], pooled["refs"], pooled[name])
            cells.append(f"{100 * s.wer:.2f}% / {100 * s.cer:.2f}%")
        print(f"| the five dev sets together | {len(pooled['ids'])} | {cells[0]} | {cells[1]} |")
        mean = [sum(w) / len(w) for w in dev_wers.values()]
        print(
            f"| mean of the five dev sets' WERs | | {100 * mean[0]:.2f}% | {100 * mean[1]:.2f}% |"
        )


if __name__ == "__main__":
    main()
