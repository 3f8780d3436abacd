"""The training loop, evaluation, checkpoints and exact resume.

An experiment folder holds ``config.yaml`` (the resolved config), ``train.log``, ``history.json``,
``curve.png`` (loss and validation WER by epoch), ``last.pt`` (written every epoch, for resume) and
``best.pt`` (lowest validation WER). Both ``.pt`` files are model files that ``asr transcribe`` and
``asr evaluate`` take as they are.

Distributed data-parallel training runs under ``torchrun`` (PyTorch's launcher): each process reads
its rank from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins the process group
(NCCL on CUDA, gloo on the CPU) and wraps the model in ``DistributedDataParallel``. The bucketing
sampler gives each rank every ``world_size``-th batch (all ranks the same number), validation is
sharded by utterance and gathered (the same WER as one process), and only rank 0 writes files.
The rank bookkeeping lives in :mod:`asr.distributed`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.augment import Augment
from asr.checkpoint import (
    ModelFileError,
    SaveError,
    atomic_save,
    model_record,
    read_model_file,
)
from asr.config import Config, config_to_dict, save_config
from asr.data import (
    BucketBatchSampler,
    filter_utterances,
    make_loader,
    normalized_utterances,
)
from asr.distributed import Distributed, all_gather, init_distributed
from asr.evaluate import evaluate
from asr.features import FeatureExtractor
from asr.model import AcousticModel, count_parameters, ctc_loss
from asr.plot import plot_history
from asr.precision import resolve_precision
from asr.text import SPACE, Tokenizer

log = logging.getLogger("asr.train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _setup_logging(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def train(cfg: Config, out_dir: str | Path, resume: bool = True, progress: bool = True) -> dict:
    """Train a model as ``cfg`` says, writing the experiment to ``out_dir``.

    Args:
        cfg: the resolved config (``data.train`` and ``data.valid`` must name manifests).
        out_dir: the experiment folder.
        resume: continue from ``out_dir/last.pt`` when it exists (exactly: weights, optimiser,
            schedule, epoch and random state).
        progress: show a progress bar.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run: every rank
    calls it with the same arguments; only rank 0 writes into ``out_dir``.

    Returns:
        the last epoch's history record (losses, WER, CER, timings), the same on every rank.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    joined = not dist.is_initialized()
    ddp, device = init_distributed(resolve_device(cfg.train.device))
    joined = joined and dist.is_initialized()
    handler = _setup_logging(out_dir) if ddp.is_main else None
    try:
        return _train(cfg, out_dir, resume, progress and ddp.is_main, ddp, device)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if joined:
            dist.destroy_process_group()


def _train(
    cfg: Config,
    out_dir: Path,
    resume: bool,
    progress: bool,
    ddp: Distributed,
    device: torch.device,
) -> dict:
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
    sr = cfg.features.sample_rate
    if ddp.rank > 0:  # augmentation draws differ between ranks; rank 0 keeps the 1-process stream
        seed_everything(cfg.train.seed + 1000 * ddp.rank)

    def out_frames(seconds: float) -> int:
        samples = torch.tensor([int(seconds * sr)])
        return int(model.output_lengths(features.output_lengths(samples)))

    augment = Augment(cfg.augment, sr, tokenizer.tokens.index(SPACE))
    loaders, kept = {}, {}
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
        loaders[split] = make_loader(
            # training shards batches by rank; validation shards utterances (none is dropped)
            utts if split == "train" else utts[ddp.rank :: ddp.world_size],
            tokenizer,
            sr,
            cfg.data.batch_seconds,
            cfg.data.max_batch_size,
            cfg.data.num_workers,
            shuffle=split == "train",
            seed=cfg.train.seed,
            augment=augment.waves if split == "train" else None,
            num_replicas=ddp.world_size if split == "train" else 1,
            rank=ddp.rank if split == "train" else 0,
            step_batches=accumulate if split == "train" else 1,
        )
    train_loader = loaders["train"]
    sampler: BucketBatchSampler = train_loader.batch_sampler  # type: ignore[assignment]
    if len(train_loader) == 0:
        raise ValueError(
            f"{cfg.data.train}: fewer batches ({len(sampler.batches)}) than ranks ({ddp.world_size})"
        )
    last_path = out_dir / "last.pt"
    resuming = resume and last_path.exists()
    if cfg.train.init_from and ddp.is_main and not resuming:
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

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_loader) / accumulate)
    schedule = lr_lambda(
        cfg.train.warmup_steps, cfg.train.epochs * steps_per_epoch, cfg.train.min_lr_ratio
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    precision = resolve_precision(cfg.train.precision, device)
    log.info(f"precision: {precision.reason}")
    # float16 needs its loss scaled so small gradients do not underflow; bfloat16 does not
    scaler = torch.amp.GradScaler("cuda", enabled=precision.dtype == torch.float16)

    start_epoch, history, best_wer = 0, [], float("inf")
    # rank 0 reads the checkpoint and sends it to the others: no shared file system needed
    ckpt = read_model_file(last_path) if resuming and ddp.is_main else None
    if ddp.enabled:
        box = [ckpt]
        dist.broadcast_object_list(box, src=0)
        ckpt = box[0]
    if ckpt is not None:
        state = ckpt["train_state"]
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ModelFileError(
                f"{last_path}: cannot resume: the config's model differs from the checkpoint's "
                f"({first} ...); use another --out, or --no-resume to start over"
            ) from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history, best_wer = state["epoch"], state["history"], state["best_wer"]
        if state.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch:
            # another number of ranks (or accumulation): keep the schedule's place by epochs
            scheduler.last_epoch = start_epoch * steps_per_epoch
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * schedule(scheduler.last_epoch)
            log.info(
                f"steps per epoch now {steps_per_epoch}: schedule moved to step {scheduler.last_epoch}"
            )
        per_rank = state.get("rng_per_rank", [state["rng"]])
        if len(per_rank) == ddp.world_size:
            set_rng_state(per_rank[ddp.rank])
        else:  # another number of ranks: rank 0 continues, the others start fresh streams
            if ddp.is_main:
                set_rng_state(state["rng"])
            else:
                seed_everything(cfg.train.seed + 1000 * ddp.rank + start_epoch)
        log.info(f"resumed from {last_path} after epoch {start_epoch}")

    if ddp.is_main:  # only now: a refused resume leaves the folder's config.yaml as it was
        save_config(cfg, out_dir / "config.yaml")
    n_params = count_parameters(model)
    log.info(
        f"model: {n_params / 1e6:.2f}M parameters, {cfg.model.num_layers} x {cfg.model.rnn_type} "
        f"{cfg.model.hidden_size}; device {device}; {ddp.world_size} rank(s) x "
        f"{len(train_loader)} batches per epoch, {accumulate} per optimizer step"
    )
    record = {}
    for epoch in range(start_epoch, cfg.train.epochs):
        model.train()
        sampler.set_epoch(epoch, sorted_first=cfg.train.sortagrad and epoch == 0)
        t0 = time.perf_counter()
        audio_seconds, loss_sum, n_batches, n_steps = 0.0, 0.0, 0, 0
        n_micro = len(train_loader)
        optimizer.zero_grad(set_to_none=True)
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not progress,
            dynamic_ncols=True,
            leave=False,
        )
        for i, batch in enumerate(bar):
            group_start = i - i % accumulate
            group_size = min(accumulate, n_micro - group_start)  # the epoch's last may be short
            steps_now = i - group_start == group_size - 1
            batch = batch.to(device)
            feats, feat_lens = augment.features(features, batch.waves, batch.wav_lens)
            # gradients are averaged across ranks only on a step's last micro-batch
            sync = nullcontext() if steps_now or not ddp.enabled else net.no_sync()
            with sync:
                with precision.autocast(device):
                    log_probs, out_lens = net(feats, feat_lens)
                loss = ctc_loss(log_probs, out_lens, batch.targets, batch.target_lens)
                finite = torch.isfinite(loss.detach()).float()
                if ddp.enabled:  # every rank skips together, or the all-reduce would hang
                    dist.all_reduce(finite, op=dist.ReduceOp.MIN)
                if not finite.item():
                    log.info(
                        f"epoch {epoch + 1}: non-finite loss on batch {batch.ids[:3]}..., skipped"
                    )
                    if steps_now:
                        optimizer.zero_grad(set_to_none=True)
                    continue
                scaler.scale(loss / group_size).backward()
            loss_sum += loss.item()
            n_batches += 1
            audio_seconds += float(batch.wav_lens.sum()) / sr
            if not steps_now:
                continue
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            speed = audio_seconds * ddp.world_size / (time.perf_counter() - t0)
            lr = scheduler.get_last_lr()[0]
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", audio_s_per_s=f"{speed:.0f}")
            n_steps += 1
            if n_steps % cfg.train.log_every == 0:
                log.info(
                    f"epoch {epoch + 1} step {n_steps}/{steps_per_epoch} loss {loss.item():.4f} "
                    f"grad_norm {float(grad_norm):.2f} lr {lr:.2e} audio_s/s {speed:.1f}"
                )
        if ddp.enabled:  # the epoch's loss and audio over all ranks
            totals = torch.tensor([loss_sum, n_batches, audio_seconds], dtype=torch.float64)
            totals = totals.to(device)
            dist.all_reduce(totals)
            loss_sum, n_batches, audio_seconds = totals.tolist()
        train_time = time.perf_counter() - t0
        result = evaluate(
            model, features, tokenizer, loaders["valid"], device, ddp=ddp, precision=precision
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, n_batches),
            "valid_loss": result.loss,
            "valid_wer": result.score.wer,
            "valid_cer": result.score.cer,
            "lr": scheduler.get_last_lr()[0],
            "train_seconds": train_time,
            "audio_seconds_per_second": audio_seconds / train_time,
        }
        history.append(record)
        log.info(
            f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}  valid loss "
            f"{result.loss:.4f}  {result.score.summary()}  ({train_time:.1f} s, "
            f"{record['audio_seconds_per_second']:.0f} audio s/s)"
        )
        if progress:
            tqdm.write(f"epoch {epoch + 1}: valid {result.score.summary()}")
        improved = result.score.wer < best_wer
        if improved:
            best_wer = result.score.wer
        rng_per_rank = all_gather(rng_state(), ddp)
        if ddp.is_main:
            _save_epoch(
                cfg,
                out_dir,
                model,
                optimizer,
                scheduler,
                scaler,
                tokenizer,
                history,
                best_wer,
                improved,
                steps_per_epoch,
                rng_per_rank,
            )
    if cfg.train.average_last > 0 and history and ddp.is_main:
        valid = make_loader(
            kept["valid"], tokenizer, sr, cfg.data.batch_seconds, cfg.data.max_batch_size, 0, False
        )
        _average_last(cfg, out_dir, model, features, tokenizer, valid, device, history)
    return record


def init_weights(model: AcousticModel, cfg: Config, tokenizer: Tokenizer, path: str) -> None:
    """Load the weights of the model file ``path`` into ``model`` (to fine-tune it).

    Raises:
        ModelFileError: the file is not a model file, or its features, model shape or
            vocabulary differ from ``cfg``'s (the weights would not mean the same thing).
    """
    record = read_model_file(path)
    wanted = {"features": asdict(cfg.features), "model": asdict(cfg.model)}
    for section, mine in wanted.items():
        theirs = record[section]
        # dropout does not change what the weights mean: fine-tuning may set its own
        differ = sorted(k for k in mine if k != "dropout" and k in theirs and theirs[k] != mine[k])
        if differ:
            shown = ", ".join(
                f"{section}.{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in differ
            )
            raise ModelFileError(f"{path}: cannot initialise from this model ({shown})")
    if record["tokens"] != tokenizer.to_list():
        raise ModelFileError(f"{path}: cannot initialise from this model (another vocabulary)")
    state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: cannot initialise from this model ({exc})") from None


def _save_epoch(
    cfg: Config,
    out_dir: Path,
    model: AcousticModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    tokenizer: Tokenizer,
    history: list[dict],
    best_wer: float,
    improved: bool,
    steps_per_epoch: int,
    rng_per_rank: list[dict],
) -> None:
    """Write ``best.pt`` (if improved), ``last.pt`` (for resume), the history and the plot."""
    record = history[-1]
    info = {
        "epoch": record["epoch"],
        "valid_wer": record["valid_wer"],
        "valid_cer": record["valid_cer"],
        "train_manifest": cfg.data.train,
        "valid_manifest": cfg.data.valid,
    }
    model_rec = model_record(
        asdict(cfg.features), asdict(cfg.model), tokenizer.to_list(), model.state_dict(), info
    )
    if improved:
        atomic_save(model_rec, out_dir / "best.pt")
    train_state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": record["epoch"],
        "history": history,
        "best_wer": best_wer,
        "config": config_to_dict(cfg),
        "rng": rng_per_rank[0],
        "rng_per_rank": rng_per_rank,
        "steps_per_epoch": steps_per_epoch,
    }
    if cfg.train.average_last > 0:
        epochs_dir = out_dir / "epochs"
        atomic_save(model.state_dict(), epochs_dir / f"epoch{record['epoch']}.pt")
        stale = epochs_dir / f"epoch{record['epoch'] - cfg.train.average_last}.pt"
        if stale.exists():
            stale.unlink()
    atomic_save({**model_rec, "train_state": train_state}, out_dir / "last.pt")
    history_path = out_dir / "history.json"
    tmp = history_path.with_name(".history.json.tmp")
    try:
        tmp.write_text(json.dumps(history, indent=1) + "\n")
        tmp.replace(history_path)
        plot_history(history, out_dir / "curve.png")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"{out_dir}: cannot write the history or its plot ({exc.strerror})") from None


def _average_last(
    cfg: Config,
    out_dir: Path,
    model: AcousticModel,
    features: FeatureExtractor,
    tokenizer: Tokenizer,
    valid: DataLoader,
    device: torch.device,
    history: list[dict],
) -> None:
    """Average the last epochs' weights into ``averaged.pt``; it becomes ``best.pt`` if no worse.

    Averaging the last few epochs (as in ESPnet and icefall) smooths the noise of the final steps.
    The choice between it and the best single epoch is made on the validation set.
    """
    last = history[-1]["epoch"]
    paths = [
        out_dir / "epochs" / f"epoch{e}.pt"
        for e in range(last - cfg.train.average_last + 1, last + 1)
    ]
    paths = [p for p in paths if p.exists()]
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    averaged = {
        k: (sum(s[k].float() for s in states) / len(states)).to(v.dtype)
        if v.is_floating_point()
        else v
        for k, v in states[-1].items()
    }
    model.load_state_dict(averaged)
    result = evaluate(model, features, tokenizer, valid, device)
    best_wer = min(h["valid_wer"] for h in history)
    info = {
        "epoch": last,
        "averaged_epochs": len(states),
        "valid_wer": result.score.wer,
        "valid_cer": result.score.cer,
        "train_manifest": cfg.data.train,
        "valid_manifest": cfg.data.valid,
    }
    record = model_record(
        asdict(cfg.features), asdict(cfg.model), tokenizer.to_list(), averaged, info
    )
    atomic_save(record, out_dir / "averaged.pt")
    log.info(f"average of epochs {last - len(states) + 1}-{last}: valid {result.score.summary()}")
    if result.score.wer <= best_wer:
        atomic_save(record, out_dir / "best.pt")
        log.info(
            f"the average is no worse than the best epoch ({100 * best_wer:.2f}%): best.pt is the average"
        )
