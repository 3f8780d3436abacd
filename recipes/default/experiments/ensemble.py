"""Dev WER of an output ensemble of several models against each model alone, greedy and beam + LM.

The ensemble averages the models' frame posteriors (two ways: the log of the mean probability, and
the renormalised mean of the log-probabilities) before decoding, on the five dev sets pooled. A
measurement for choosing what to train next, not a decoder the toolkit ships: the models must
share a tokenizer and a frame rate. Usage:

    python recipes/default/experiments/ensemble.py exp/avg1415.pt exp/gen16/best.pt exp/gen17/best.pt
"""

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from asr.config import load_decoder_config
from asr.decode import BeamDecoder, GreedyDecoder
from asr.evaluate import manifest_emissions
from asr.metrics import score
from asr.text import Tokenizer
from asr.transcribe import load_model

# score.py is the recipe's, one folder up: importable when this file runs as a script
RECIPE = Path(__file__).resolve().parents[1]
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))
from score import DEV, decode_all  # noqa: E402

Combine = Callable[[list[torch.Tensor]], torch.Tensor]
# per dev set: utterance ids, references, and per utterance one (T, V) log-prob tensor per model
DevSet = tuple[list[str], list[str], list[list[torch.Tensor]]]


def mean_probability(emissions: list[torch.Tensor]) -> torch.Tensor:
    """M models' (T, V) log-probs -> (T, V): the log of their mean probability."""
    stacked = torch.stack(emissions)  # (M, T, V)
    return torch.logsumexp(stacked, 0) - math.log(len(emissions))


def mean_log_probability(emissions: list[torch.Tensor]) -> torch.Tensor:
    """M models' (T, V) log-probs -> (T, V): their mean, renormalised over V (the normalised
    geometric mean of the probabilities)."""
    mean = torch.stack(emissions).mean(0)  # (M, T, V) -> (T, V)
    return mean - torch.logsumexp(mean, -1, keepdim=True)


def dev_emissions(models: list[str], data: str) -> tuple[Tokenizer, list[DevSet]]:
    """The models' shared tokenizer, and every dev set's emissions under each model."""
    recs = [load_model(m) for m in models]
    if len({tuple(r.tokenizer.tokens) for r in recs}) > 1:
        raise SystemExit("the models spell with different tokens: they cannot be ensembled")
    sets = []
    for _, rel in DEV:
        manifest = str(Path(data) / rel)
        runs = [manifest_emissions(r.model, r.features, r.tokenizer, manifest) for r in recs]
        ids, refs = runs[0][0], runs[0][1]
        for m, run in zip(models, runs):
            if run[0] != ids or any(e.shape != f.shape for e, f in zip(run[2], runs[0][2])):
                raise SystemExit(f"{m}: its utterances or frame counts differ from {models[0]}'s")
        sets.append((ids, refs, [list(u) for u in zip(*(run[2] for run in runs))]))
    return recs[0].tokenizer, sets


def pooled_wer(sets: list[DevSet], combine: Combine, decoder: GreedyDecoder | BeamDecoder) -> float:
    """WER in percent of the dev sets pooled, each utterance's emissions combined, then decoded."""
    ids, refs, hyps = [], [], []
    for k, (set_ids, set_refs, per_utt) in enumerate(sets):
        hyps += decode_all(decoder, [combine(u) for u in per_utt])
        ids += [f"{k}:{i}" for i in set_ids]
        refs += set_refs
    return 100 * score(ids, refs, hyps).wer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--decoder-config", default="asr/pretrained/decoder.yaml")
    parser.add_argument("--data", default="data/default")
    args = parser.parse_args()
    tokenizer, sets = dev_emissions(args.models, args.data)
    decoders = {"greedy": GreedyDecoder(tokenizer)}
    decoders["beam + LM"] = BeamDecoder(tokenizer, load_decoder_config(args.decoder_config))
    rows = [(m, lambda u, k=k: u[k]) for k, m in enumerate(args.models)]
    rows += [("ensemble, mean probability", mean_probability)]
    rows += [("ensemble, mean log-probability", mean_log_probability)]
    print("| five dev sets pooled | greedy WER | beam + LM WER |\n|---|---|---|")
    for name, combine in rows:
        wers = [pooled_wer(sets, combine, d) for d in decoders.values()]
        print(f"| {name} | {wers[0]:.2f}% | {wers[1]:.2f}% |", flush=True)


if __name__ == "__main__":
    main()
