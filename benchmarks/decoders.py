"""Greedy vs our beam decoder vs pyctcdecode, on the same saved emissions, the same LM and beam.

Prints WER and milliseconds per utterance (decoding only; the acoustic model runs once, and its
emissions are saved to --emissions so reruns skip it):

    pip install -e ".[bench]"      # pyctcdecode
    python benchmarks/decoders.py --model asr/pretrained/default.pt \\
        --manifest data/default/speechocean762/test.jsonl --decoder-config exp/lm/decoder.yaml

Both beam decoders get the same KenLM model and the same words (our lexicon; pyctcdecode's unigram
list). The weights mean different things in the two (pyctcdecode's ``alpha``/``beta`` vs
flashlight's LM weight and word score; pyctcdecode can also spell a word outside the list, at a
penalty), so each decoder takes its own, tuned on a dev set: ours from --decoder-config (``asr lm
tune``), pyctcdecode's from --pyctc-alpha/--pyctc-beta (by default the same numbers). Both run in
this one process, one utterance at a time, with their default pruning (ours: the
``DecoderConfig`` defaults or the config's; pyctcdecode: ``token_min_logp`` -5, ``beam_prune_logp``
-10).

The last column is a 95% interval for ours' WER minus pyctcdecode's on these utterances (a paired
bootstrap: utterances drawn with replacement, both decoders scored on the same draw), so a gap
can be told from the luck of a few hundred sentences.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from asr.config import load_decoder_config
from asr.decode import BeamDecoder, greedy_decode
from asr.evaluate import manifest_emissions
from asr.lm import arpa_words
from asr.metrics import Score, score
from asr.transcribe import load_model


def emissions_for(model_path: Path | None, manifest: Path, cache: Path | None) -> dict:
    if cache and cache.is_file():
        return torch.load(cache, weights_only=True)
    rec = load_model(model_path)
    ids, refs, emissions = manifest_emissions(rec.model, rec.features, rec.tokenizer, str(manifest))
    saved = {"ids": ids, "refs": refs, "emissions": emissions, "tokens": rec.tokenizer.tokens}
    if cache:
        torch.save(saved, cache)
    return saved


PYCTC_ALPHAS = (0.3, 0.5, 0.8, 1.2, 2.0)
PYCTC_BETAS = (-1.0, 0.0, 1.0, 2.0, 4.0)


def tune_pyctc(decoder, dev: dict, beam: int = 64) -> tuple[float, float]:
    """pyctcdecode's best ``(alpha, beta)`` by WER on ``dev``'s emissions, over a fixed grid."""
    results = {}
    for alpha in PYCTC_ALPHAS:
        for beta in PYCTC_BETAS:
            decoder.reset_params(alpha=alpha, beta=beta)
            hyps = [decoder.decode(e.numpy(), beam_width=beam) for e in dev["emissions"]]
            results[alpha, beta] = score(dev["ids"], dev["refs"], hyps).wer
    return min(results, key=results.get)


def paired_interval(a: Score, b: Score, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of WER(a) - WER(b) in points, resampling utterances in pairs
    (``a`` and ``b`` score the same utterances, in the same order)."""
    err_a = torch.tensor([u.word.errors for u in a.utterances], dtype=torch.float64)
    err_b = torch.tensor([u.word.errors for u in b.utterances], dtype=torch.float64)
    words = torch.tensor([u.word.ref_len for u in a.utterances], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(words), (draws, len(words)), generator=gen)
    diff = 100 * (err_a[idx].sum(1) - err_b[idx].sum(1)) / words[idx].sum(1).clamp(min=1)
    low, high = torch.quantile(diff, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return low, high


def run(decode, emissions: list[torch.Tensor]) -> tuple[list[str], float]:
    decode(emissions[0])  # warm-up
    t0 = time.perf_counter()
    hyps = [decode(e) for e in emissions]
    return hyps, 1000 * (time.perf_counter() - t0) / len(emissions)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument(
        "--decoder-config", type=Path, help="tuned weights, LM and lexicon (asr lm tune)"
    )
    parser.add_argument("--lm", default=None)
    parser.add_argument("--lexicon", default=None)
    parser.add_argument("--beams", default="16,64,256")
    parser.add_argument(
        "--tune-pyctc",
        type=Path,
        default=None,
        metavar="DEV_MANIFEST",
        help="first tune pyctcdecode's alpha and beta (beam 64) on this dev manifest",
    )
    parser.add_argument("--pyctc-alpha", type=float, default=None, help="default: lm_weight")
    parser.add_argument("--pyctc-beta", type=float, default=None, help="default: word_score")
    parser.add_argument("--emissions", type=Path, default=None, help="cache file for the emissions")
    parser.add_argument("--limit", type=int, default=0, help="first N utterances only")
    args = parser.parse_args()
    # decoding is single-threaded in both libraries; keep timings comparable
    torch.set_num_threads(1)

    saved = emissions_for(args.model, args.manifest, args.emissions)
    ids, refs, emissions = saved["ids"], saved["refs"], saved["emissions"]
    if args.limit:
        ids, refs, emissions = ids[: args.limit], refs[: args.limit], emissions[: args.limit]
    from asr.text import Tokenizer

    tok = Tokenizer(saved["tokens"][1:])
    base = load_decoder_config(args.decoder_config, kind="beam", lm=args.lm, lexicon=args.lexicon)
    alpha = base.lm_weight if args.pyctc_alpha is None else args.pyctc_alpha
    beta = base.word_score if args.pyctc_beta is None else args.pyctc_beta
    pyctc = None
    try:
        from pyctcdecode import build_ctcdecoder

        labels = ["", *tok.tokens[1:]]
        unigrams = arpa_words(base.lm) if base.lm and base.lm.endswith(".arpa") else None
        pyctc = build_ctcdecoder(
            labels,
            kenlm_model_path=base.lm or None,
            unigrams=unigrams,
            alpha=alpha,
            beta=beta,
        )
    except ImportError:
        print("(pyctcdecode is not installed: pip install -e '.[bench]')")

    if pyctc is not None and args.tune_pyctc:
        alpha, beta = tune_pyctc(pyctc, emissions_for(args.model, args.tune_pyctc, None))
        pyctc.reset_params(alpha=alpha, beta=beta)

    print(
        f"{len(emissions)} utterances from {args.manifest}; LM {base.lm or 'none'}; ours: "
        f"lm_weight {base.lm_weight}, word_score {base.word_score}, beam_size_token "
        f"{base.beam_size_token}, beam_threshold {base.beam_threshold}; pyctcdecode: alpha {alpha}, "
        f"beta {beta}" + (f" (tuned on {args.tune_pyctc})" if args.tune_pyctc and pyctc else "")
    )
    print()
    print(
        f"| {'decoder':<22} | {'beam':>5} | {'WER %':>7} | {'ms/utt':>8} | {'vs ours':>8} "
        f"| {'ours - pyctcdecode, 95%':>23} |"
    )
    print(f"|{'-' * 24}|{'-' * 7}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 25}|")

    hyps, ms = run(lambda e: greedy_decode(e[None], torch.tensor([len(e)]), tok)[0].text, emissions)
    print(
        f"| {'greedy':<22} | {'-':>5} | {100 * score(ids, refs, hyps).wer:7.2f} | {ms:8.2f} | {'':>8} "
        f"| {'':>23} |"
    )

    for beam in [int(b) for b in args.beams.split(",")]:
        from dataclasses import replace

        ours = BeamDecoder(tok, replace(base, beam_size=beam))
        hyps, ms_ours = run(lambda e, d=ours: d(e[None], torch.tensor([len(e)]))[0].text, emissions)
        ours_score = score(ids, refs, hyps)
        print(
            f"| {'ours (flashlight)':<22} | {beam:5d} | {100 * ours_score.wer:7.2f} "
            f"| {ms_ours:8.2f} | {'1.0x':>8} | {'':>23} |"
        )
        if pyctc is not None:
            hyps, ms = run(lambda e, b=beam: pyctc.decode(e.numpy(), beam_width=b), emissions)
            pyctc_score = score(ids, refs, hyps)
            low, high = paired_interval(ours_score, pyctc_score)
            print(
                f"| {'pyctcdecode':<22} | {beam:5d} | {100 * pyctc_score.wer:7.2f} "
                f"| {ms:8.2f} | {ms / ms_ours:7.1f}x | {f'{low:+.2f} to {high:+.2f}':>23} |"
            )


if __name__ == "__main__":
    main()
