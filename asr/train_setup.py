"""What a training run is built of, before its first step: :func:`build` makes the model,
features, augmentation, optimiser, learning-rate schedule (:func:`lr_lambda`), the moving average
of the weights (:func:`make_ema`), the validation decoder (:func:`make_valid_decoder`) and the
loaders (:func:`make_loaders`) for a config, as :class:`~asr.train_state.Run` and
:class:`Loaders`. :mod:`asr.train` runs the loop over them; only it imports this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from asr.augment import Augment
from asr.config import Config, ConfigError, load_decoder_config
from asr.data import Utterance, filter_utterances, make_loader, normalized_utterances, train_weights
from asr.decode import BeamDecoder, DecoderError, GreedyDecoder, build_decoder
from asr.distributed import Distributed
from asr.features import FeatureExtractor
from asr.model import AcousticModel
from asr.precision import resolve_precision
from asr.surgery import init_weights
from asr.text import SPACE, Tokenizer
from asr.train_state import Run, seed_everything

# what a run logs while it is built goes to its train.log
log = logging.getLogger("asr.train")


@dataclass
class Loaders:
    """What :func:`make_loaders` makes."""

    train: DataLoader
    valid: DataLoader  # this rank's share of the validation utterances
    valid_utts: list[Utterance]  # all of them


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build(
    cfg: Config,
    out_dir: Path,
    ddp: Distributed,
    device: torch.device,
    progress: bool,
    resuming: bool = False,
) -> tuple[Run, Loaders]:
    """Model, features, augmentation, loaders, optimiser, schedule and (``train.ema_decay``) the
    moving average of the weights for ``cfg``, initialised from ``train.seed``, then from
    ``train.init_from``'s weights unless ``resuming`` (the checkpoint's weights come next)."""
    if not cfg.data.train or not cfg.data.valid:
        raise ValueError(
            "data.train and data.valid must name manifests (e.g. data.train=train.jsonl)"
        )
    accumulate = cfg.train.accumulate_grad
    if accumulate < 1:
        raise ValueError(f"train.accumulate_grad must be 1 or more, got {accumulate}")
    seed_everything(cfg.train.seed)  # the same on every rank: identical initial weights
    tokenizer = Tokenizer()
    features = FeatureExtractor(cfg.features).to(device)
    model = AcousticModel(cfg.model, features.num_features, len(tokenizer)).to(device)
    if ddp.rank > 0:  # augmentation draws differ between ranks; rank 0 keeps the 1-process stream
        seed_everything(cfg.train.seed + 1000 * ddp.rank)
    augment = Augment(cfg.augment, cfg.features.sample_rate, tokenizer.tokens.index(SPACE))

    def out_frames(seconds: float) -> int:
        samples = torch.tensor([int(seconds * cfg.features.sample_rate)])
        return int(model.output_lengths(features.output_lengths(samples)))

    loaders = make_loaders(cfg, tokenizer, augment, out_frames, ddp)
    if cfg.train.init_from and not resuming and ddp.is_main:
        # before DDP wraps the model: DDP copies rank 0's weights to the other ranks
        init_weights(model, cfg, tokenizer, cfg.train.init_from)
        log.info(f"weights from {cfg.train.init_from}")
    net: torch.nn.Module = model
    if ddp.enabled:
        net = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # the model has no buffers that training changes
        )
    ema = None
    if cfg.train.ema_decay:  # after DDP has given every rank rank 0's (init_from) weights
        ema = make_ema(model, cfg.train.ema_decay)
        log.info(
            f"a moving average of the weights (decay {cfg.train.ema_decay:g}) is validated and "
            "saved as best.pt; last.pt keeps the trained weights too"
        )
    optimizer = torch.optim.AdamW(
        trainable_parameters(model, cfg.train.trainable),
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
    )
    steps_per_epoch = math.ceil(len(loaders.train) / accumulate)
    schedule = lr_lambda(
        cfg.train.warmup_steps, cfg.train.epochs * steps_per_epoch, cfg.train.min_lr_ratio
    )
    precision = resolve_precision(cfg.train.precision, device)
    log.info(f"precision: {precision.reason}")
    if cfg.train.confidence_penalty:
        log.info(
            f"loss: CTC - {cfg.train.confidence_penalty:g} x the outputs' mean frame entropy "
            "(the losses logged are CTC alone)"
        )
    # float16 needs its loss scaled so small gradients do not underflow; bfloat16 does not
    scaler = torch.amp.GradScaler("cuda", enabled=precision.dtype == torch.float16)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    parts = (tokenizer, features, model, net, augment, precision, optimizer, scheduler, scaler)
    run = Run(cfg, out_dir, ddp, device, *parts, steps_per_epoch, progress, ema)
    run.valid_decoder, run.valid_measure = make_valid_decoder(cfg.train.valid_decoder, tokenizer)
    run.reference = make_reference(cfg, features.num_features, tokenizer, device)
    return run, loaders


def make_reference(
    cfg: Config, num_features: int, tokenizer: Tokenizer, device: torch.device
) -> AcousticModel | None:
    """``train.kl_to_init``'s reference: ``train.init_from``'s model, frozen (also when
    resuming: the pull is always towards where the run began); None when the weight is 0."""
    if not cfg.train.kl_to_init:
        return None
    if not cfg.train.init_from:
        raise ValueError("train.kl_to_init needs train.init_from (the model to stay near)")
    reference = AcousticModel(cfg.model, num_features, len(tokenizer)).to(device)
    init_weights(reference, cfg, tokenizer, cfg.train.init_from)
    reference.eval().requires_grad_(False)
    log.info(
        f"loss: CTC + {cfg.train.kl_to_init:g} x the mean frame KL from {cfg.train.init_from}'s "
        "outputs (the losses logged are CTC alone)"
    )
    return reference


def trainable_parameters(model: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Parameter]:
    """The parameters whose names start with one of ``prefixes`` (all when empty); the others
    stop taking gradients, so neither the optimiser nor weight decay moves them.

    Raises:
        ConfigError: a prefix that names no parameter (the names are listed).
    """
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        layers = sorted({n.rsplit(".", 1)[0] for n in names})
        raise ConfigError(
            f"train.trainable: {unknown} name no parameter of the model ({', '.join(layers)})"
        )
    chosen = []
    for name, param in model.named_parameters():
        param.requires_grad_(not prefixes or any(name.startswith(p) for p in prefixes))
        if param.requires_grad:
            chosen.append(param)
    if prefixes:
        moved = sum(p.numel() for p in chosen)
        log.info(f"training moves {moved / 1e6:.2f}M parameters ({', '.join(prefixes)})")
    return chosen


def make_valid_decoder(
    path: str, tokenizer: Tokenizer
) -> tuple[GreedyDecoder | BeamDecoder | None, dict | None]:
    """``train.valid_decoder``'s decoder and what identifies its decoding (the config's values,
    LM and lexicon as absolute paths: a resume compares them, not the file's name), made before
    training starts, so that a missing LM or a bad config stops the run at once (named) rather
    than after its first epoch; ``(None, None)`` if unset (greedy chooses)."""
    if not path:
        return None, None
    try:
        dcfg = load_decoder_config(path)
        decoder = build_decoder(tokenizer, dcfg)
    except (ConfigError, DecoderError) as exc:
        raise type(exc)(f"train.valid_decoder: {exc}") from None
    measure = asdict(dcfg)
    for key in ("lm", "lexicon"):
        measure[key] = str(Path(measure[key]).resolve()) if measure[key] else ""
    what = f"{dcfg.kind} search" + (
        f", LM {dcfg.lm} at weight {dcfg.lm_weight:g}" if dcfg.lm else ""
    )
    log.info(f"validation also decodes with {path} ({what}): its WER chooses best.pt")
    return decoder, measure


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights that starts from its weights now
    (counted as the first of the average: the next update is ``decay x now + (1 - decay) x
    new``). Buffers are averaged too; the model has none that training changes."""
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.n_averaged.fill_(1)  # torch would copy the first update's weights instead
    for module in ema.module.modules():  # the deep copy left cuDNN's weight block in pieces
        if isinstance(module, torch.nn.RNNBase):
            module.flatten_parameters()
    return ema


def make_loaders(
    cfg: Config,
    tokenizer: Tokenizer,
    augment: Augment,
    out_frames: Callable[[float], int],
    ddp: Distributed,
) -> Loaders:
    """The training loader (augmented, this rank's share of the batches, one optimizer step's
    batches of neighbouring length) and the validation loader (this rank's share of the
    utterances, so none is dropped), each without the utterances that cannot train (counted in
    ``train.log``). ``out_frames``: seconds -> the model's output frames."""
    kept = {}
    for split, path in (("train", cfg.data.train), ("valid", cfg.data.valid)):
        # sped-up or cropped copies are shorter: a training transcript must fit the shortest one
        ratio = augment.min_length_ratio if split == "train" else 1.0
        utts, report = filter_utterances(
            normalized_utterances(path),
            tokenizer,
            cfg.data.min_duration,
            cfg.data.max_duration,
            lambda seconds, ratio=ratio: out_frames(seconds * ratio),
        )
        log.info(report.summary(f"{split} ({path})"))
        if not utts:
            raise ValueError(f"{path}: no usable utterances ({report.summary(split)})")
        kept[split] = utts
    weights = train_weights(kept["train"], cfg.data.train, cfg.data.train_weights)
    data, sr = cfg.data, cfg.features.sample_rate
    common = (tokenizer, sr, data.batch_seconds, data.max_batch_size, data.num_workers)
    train = make_loader(
        kept["train"],
        *common,
        shuffle=True,
        seed=cfg.train.seed,
        augment=augment.waves,
        num_replicas=ddp.world_size,
        rank=ddp.rank,
        step_batches=cfg.train.accumulate_grad,
        weights=weights,
    )
    if len(train) == 0:
        batches = len(train.batch_sampler.batches)
        raise ValueError(f"{data.train}: fewer batches ({batches}) than ranks ({ddp.world_size})")
    valid_share = kept["valid"][ddp.rank :: ddp.world_size]
    valid = make_loader(valid_share, *common, shuffle=False, seed=cfg.train.seed)
    return Loaders(train, valid, kept["valid"])
