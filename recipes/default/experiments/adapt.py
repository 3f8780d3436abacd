"""Test-time adaptation of the bundled model to each utterance, measured on the held-out sets.

Would moving each utterance's features toward what the model knows, at transcription time and
with no transcript, bring unseen voices closer? Per utterance, an affine map of the features
(``A @ x + c`` per frame, started at the identity) is fitted by Adam with the model's weights
fixed, by one of two losses, and the utterance decoded again:

- ``entropy``: the mean entropy of the frames whose likeliest token is not the blank (entropy
  minimisation, as SUTA, Lin et al. 2022, adapts a model to one utterance; here only the features
  move, as with fMLLR's feature-space transforms);
- ``first-pass``: the CTC loss of the utterance's first-pass beam + LM hypothesis (two-pass
  unsupervised adaptation, the classic use of fMLLR, per utterance).

Or ``warp:A``: no fitting, every utterance's frequency axis scaled by A (test-time vocal tract
length normalisation, ``asr.augment.warp_frequencies``). Usage:

    python recipes/default/experiments/adapt.py --method entropy [--steps 10] [--lr 3e-3] [--sets dev]
        [--model exp/gen15.pt] [--decoder-config asr/pretrained/decoder.yaml]

Prints score.py's table (greedy and beam + LM) for the adapted emissions, then (unless
``--no-baseline``) the same model's unadapted, compared by score.py's paired bootstrap.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from asr.augment import warp_frequencies
from asr.config import load_decoder_config
from asr.data import make_loader, pad_labels
from asr.decode import BeamDecoder, GreedyDecoder
from asr.evaluate import scoring_utterances
from asr.features import lengths_to_mask
from asr.model import frame_entropies
from asr.transcribe import load_model

# score.py is the recipe's, one folder up: importable when this file runs as a script
RECIPE = Path(__file__).resolve().parents[1]
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))
from score import DEV, TEST, SetResult, bootstrap, decode_all, speakers_of, table  # noqa: E402

# loss(log_probs (B, T', V), out_lens (B,)) -> (B,) one loss per utterance
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def speech_frame_entropy(
    log_probs: torch.Tensor, out_lens: torch.Tensor, blank: int = 0
) -> torch.Tensor:
    """Each utterance's mean entropy over its real frames whose likeliest token is not the blank.

    Args:
        log_probs: ``(B, T', V)``.
        out_lens: ``(B,)`` true frame counts.

    Returns:
        ``(B,)``; 0 for an utterance with no such frame.
    """
    entropy = frame_entropies(log_probs)  # (B, T')
    speech = lengths_to_mask(out_lens, log_probs.shape[1]) & (log_probs.argmax(-1) != blank)
    return (entropy * speech).sum(1) / speech.sum(1).clamp(min=1)


def hypothesis_ctc(targets: torch.Tensor, target_lens: torch.Tensor) -> Loss:
    """The CTC loss of given hypotheses (``targets (B, U)``, ``target_lens (B,)``) per output
    frame; 0 for an empty hypothesis (nothing to fit)."""

    def loss(log_probs: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
        per = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V)
            targets,
            out_lens,
            target_lens,
            reduction="none",
            zero_infinity=True,
        )
        return per / out_lens.float() * (target_lens > 0).float()

    return loss


def fit_features(
    model: torch.nn.Module,
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    loss: Loss,
    steps: int,
    lr: float,
) -> torch.Tensor:
    """Fit one affine map of the features per utterance to ``loss`` and return the moved features.

    The batch's loss is the sum of its utterances' and Adam's update is element-wise, so each
    utterance's map is what it would get alone. The model's weights get no gradients.

    Args:
        feats: ``(B, T, F)``, zero past each length; feat_lens ``(B,)``.

    Returns:
        ``(B, T, F)``, zero past each length.
    """
    B, T, F = feats.shape
    mask = lengths_to_mask(feat_lens, T).unsqueeze(-1).float()  # (B, T, 1)
    scale = torch.eye(F).repeat(B, 1, 1).requires_grad_()  # (B, F, F)
    shift = torch.zeros(B, 1, F, requires_grad=True)  # (B, 1, F)
    optimizer = torch.optim.Adam([scale, shift], lr=lr)

    def moved() -> torch.Tensor:
        return (torch.bmm(feats, scale.transpose(1, 2)) + shift) * mask

    model.eval()
    with torch.enable_grad():
        for _ in range(steps):
            total = loss(*model(moved(), feat_lens)).sum()
            optimizer.zero_grad()
            if total.requires_grad:
                total.backward(inputs=[scale, shift])
                optimizer.step()
    with torch.no_grad():
        return moved()


METHODS = ("none", "entropy", "first-pass")


def parse_method(text: str) -> tuple[str, float | None]:
    """``--method`` -> ``(name, warp factor or None)``: ``none``, ``entropy``, ``first-pass`` or
    ``warp:A`` with A a positive number (``("warp", A)``).

    Raises:
        argparse.ArgumentTypeError: anything else, named.
    """
    if text in METHODS:
        return text, None
    name, _, factor = text.partition(":")
    try:
        warp = float(factor) if name == "warp" else None
    except ValueError:
        warp = None
    if warp is None or not warp > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected none, entropy, first-pass or warp:A with A > 0 (e.g. warp:0.92)"
        )
    return "warp", warp


def adapted_emissions(
    rec, manifest: str, method: tuple[str, float | None], steps: int, lr: float, beam: BeamDecoder
):
    """``(ids, references, log-probs (T', V) each)`` of a manifest after ``method`` (from
    :func:`parse_method`)."""
    name, factor = method
    loader = make_loader(
        scoring_utterances(manifest, rec.tokenizer),
        rec.tokenizer,
        rec.sample_rate,
        60.0,
        64,
        0,
        shuffle=False,
        skip_unknown=True,
    )
    model = rec.model
    ids, refs, emissions = [], [], []
    for batch in loader:
        warp = None
        if factor is not None:
            warp = partial(warp_frequencies, factors=torch.full((len(batch.ids),), factor))
        feats, feat_lens = rec.features(batch.waves, batch.wav_lens, warp)
        if name == "entropy":
            feats = fit_features(model, feats, feat_lens, speech_frame_entropy, steps, lr)
        elif name == "first-pass":
            with torch.no_grad():
                log_probs, out_lens = model(feats, feat_lens)
            texts = [
                beam(log_probs[b : b + 1, :n], out_lens[b : b + 1])[0].text
                for b, n in enumerate(out_lens.tolist())
            ]
            loss = hypothesis_ctc(*pad_labels([rec.tokenizer.encode(t) for t in texts]))
            feats = fit_features(model, feats, feat_lens, loss, steps, lr)
        with torch.no_grad():
            log_probs, out_lens = model(feats, feat_lens)
        emissions += [log_probs[b, :n].contiguous() for b, n in enumerate(out_lens.tolist())]
        ids += batch.ids
        refs += batch.texts
    return ids, refs, emissions


def decode_sets(rec, method, steps, lr, decoder_config, sets, data) -> list[SetResult]:
    greedy = GreedyDecoder(rec.tokenizer)
    beam = BeamDecoder(rec.tokenizer, load_decoder_config(decoder_config))
    out = []
    for label, rel in sets:
        manifest = Path(data) / rel
        ids, refs, emissions = adapted_emissions(rec, str(manifest), method, steps, lr, beam)
        groups = speakers_of(manifest, ids, rel)
        greedy_hyps, beam_hyps = decode_all(greedy, emissions), decode_all(beam, emissions)
        out.append(SetResult(label, rel, ids, refs, groups, greedy_hyps, beam_hyps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--method",
        type=parse_method,
        default="entropy",
        help="entropy, first-pass, warp:A (every utterance's frequency axis scaled by A) or none",
    )
    parser.add_argument("--steps", type=int, default=10, help="Adam steps per utterance")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--model", default=None, help="model file (default: bundled)")
    parser.add_argument("--decoder-config", default="asr/pretrained/decoder.yaml")
    parser.add_argument("--data", default="data/default")
    parser.add_argument("--sets", choices=["dev", "test", "all"], default="dev")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unadapted run")
    args = parser.parse_args()

    sets = {"dev": DEV, "test": TEST, "all": DEV + TEST}[args.sets]
    dev_names = [rel for label, rel in DEV if (label, rel) in sets]
    test_names = [rel for label, rel in TEST if (label, rel) in sets and rel != "fsdd/test.jsonl"]
    if args.steps < 0 or not args.lr > 0:
        parser.error(f"--steps must be >= 0 and --lr > 0, got {args.steps} and {args.lr}")
    rec = load_model(args.model, precision="fp32")  # gradients through the float32 weights
    for p in rec.model.parameters():  # fit_features asks for none: spare autograd the bookkeeping
        p.requires_grad_(False)
    common = (args.decoder_config, sets, args.data)
    results = decode_sets(rec, args.method, args.steps, args.lr, *common)
    name, factor = args.method
    fitted = f"{name}, {args.steps} steps at {args.lr}"
    print({"warp": f"warp {factor}", "none": "none"}.get(name, fitted) + ":")
    print("\n".join(table(results, dev_names)), flush=True)
    if not args.no_baseline:
        base = decode_sets(rec, ("none", None), 0, args.lr, *common)
        print("\nunadapted:\n" + "\n".join(table(base, dev_names)))
        print("\nunadapted -> adapted, paired bootstrap:")
        print("\n".join(bootstrap(base, results, {"dev": dev_names, "test": test_names})))


if __name__ == "__main__":
    main()
