"""Scoring a model over a manifest: CTC loss, WER and CER, and emissions for repeated decoding.

What ``asr evaluate``, ``asr lm tune``, the benchmarks and the training loop's validation share.
Nothing here imports the training loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.data import ManifestError, Utterance, make_loader, parse_manifest_line
from asr.decode import GreedyDecoder
from asr.distributed import Distributed, all_gather
from asr.features import FeatureExtractor
from asr.metrics import Score, score
from asr.model import AcousticModel, ctc_loss
from asr.precision import PrecisionChoice
from asr.text import Tokenizer, normalize_text


def scoring_utterances(
    paths: str, tokenizer: Tokenizer, warn: Callable[[str], None] | None = None
) -> list[Utterance]:
    """The utterances of one manifest (or several, comma-separated) to score, texts normalised.

    An utterance whose reference holds characters outside the model's vocabulary is kept and
    scored as written (the model cannot produce them, so they count as errors), with a warning
    naming its file and line.

    Raises:
        ManifestError: a missing file, a bad line (named), or no utterances at all.
    """
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    utts: list[Utterance] = []
    for path in (p.strip() for p in paths.split(",") if p.strip()):
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ManifestError(f"{path}: manifest not found") from None
        except (UnicodeDecodeError, IsADirectoryError) as exc:
            raise ManifestError(f"{path}: not a JSON Lines manifest ({exc})") from None
        base = Path(path).parent
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            utt = parse_manifest_line(line, f"{path}: line {n}", base)
            utt.text = normalize_text(utt.text)
            oov = tokenizer.oov_chars(utt.text)
            if oov:
                chars = ", ".join(f"{c!r}" for c in sorted(oov))
                warn(
                    f"{path}: line {n}: characters outside the model's vocabulary ({chars}); scored as written"
                )
            utts.append(utt)
    if not utts:
        raise ManifestError(f"{paths}: no utterances to score")
    return utts


@dataclass
class EvalResult:
    loss: float
    score: Score
    also: Score | None = None  # the same outputs decoded by ``evaluate``'s ``also_decoder``


@torch.no_grad()
def evaluate(
    model: AcousticModel,
    features: FeatureExtractor,
    tokenizer: Tokenizer,
    loader: DataLoader,
    device: torch.device,
    progress: bool = False,
    decoder: Callable[[torch.Tensor, torch.Tensor], list] | None = None,
    ddp: Distributed | None = None,
    precision: PrecisionChoice | None = None,
    also_decoder: Callable[[torch.Tensor, torch.Tensor], list] | None = None,
) -> EvalResult:
    """CTC loss and WER/CER of ``model`` over ``loader`` (greedy unless ``decoder`` is given),
    and with ``also_decoder`` the WER/CER of the same outputs decoded a second way (training's
    validation: greedy, and the beam search that chooses the checkpoint).

    With ``ddp`` enabled, each rank's ``loader`` holds its own share of the utterances; the
    hypotheses and losses of all ranks are gathered and scored together, so every rank returns
    the result one process would get on the whole set. ``precision`` (default float32) is the
    autocast the model runs under.
    """
    decoder = decoder or GreedyDecoder(tokenizer)
    precision = precision or PrecisionChoice(None, "fp32")
    model.eval()
    total_loss, total_utts = 0.0, 0
    ids, refs, hyps, also = [], [], [], []
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        batch = batch.to(device)
        feats, feat_lens = features(batch.waves, batch.wav_lens)
        with precision.autocast(device):
            log_probs, out_lens = model(feats, feat_lens)
        total_loss += float(ctc_loss(log_probs, out_lens, batch.targets, batch.target_lens)) * len(
            batch.ids
        )
        total_utts += len(batch.ids)
        for utt_id, ref, hyp in zip(batch.ids, batch.texts, decoder(log_probs, out_lens)):
            ids.append(utt_id)
            refs.append(ref)
            hyps.append(hyp.text)
        if also_decoder is not None:
            also += [hyp.text for hyp in also_decoder(log_probs.float(), out_lens)]
    if ddp is not None and ddp.enabled:
        parts = all_gather((total_loss, total_utts, ids, refs, hyps, also), ddp)
        total_loss, total_utts = sum(p[0] for p in parts), sum(p[1] for p in parts)
        ids, refs, hyps, also = ([x for p in parts for x in p[k]] for k in (2, 3, 4, 5))
    return EvalResult(
        total_loss / max(1, total_utts),
        score(ids, refs, hyps),
        score(ids, refs, also) if also_decoder is not None else None,
    )


@torch.no_grad()
def manifest_emissions(
    model: AcousticModel,
    features: FeatureExtractor,
    tokenizer: Tokenizer,
    manifest: str,
    precision: PrecisionChoice | None = None,
) -> tuple[list[str], list[str], list[torch.Tensor]]:
    """Run the model once over a manifest: ``(ids, normalised references, log-probs (T, V) each)``.

    For work that decodes the same emissions many times (LM weight tuning, decoder benchmarks).
    """
    model.eval()
    device = next(model.parameters()).device
    sample_rate = features.cfg.sample_rate
    loader = make_loader(
        scoring_utterances(manifest, tokenizer),
        tokenizer,
        sample_rate,
        120.0,
        64,
        0,
        shuffle=False,
        skip_unknown=True,
    )
    precision = precision or PrecisionChoice(None, "fp32")
    ids, refs, emissions = [], [], []
    for batch in loader:
        feats, feat_lens = features(batch.waves.to(device), batch.wav_lens.to(device))
        with precision.autocast(device):
            log_probs, out_lens = model(feats, feat_lens)
        for b, n in enumerate(out_lens.tolist()):
            emissions.append(log_probs[b, :n].cpu().contiguous())
        ids += batch.ids
        refs += batch.texts
    return ids, refs, emissions
