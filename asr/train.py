"""The training loop as named steps.

:func:`train` builds the run (:func:`~asr.train_setup.build`, :mod:`asr.train_setup`), picks it
up from ``last.pt`` (:func:`~asr.train_state.restore`), then for each epoch calls :func:`train_one_epoch`,
:func:`validate` and :func:`~asr.train_state.save`. An experiment folder holds ``config.yaml``
(the resolved config), ``train.log``, ``history.json``, ``curve.png`` (loss and validation WER by
epoch), ``last.pt`` (written every epoch, and every ``train.checkpoint_every_steps`` optimizer
steps inside one; resume continues from it exactly, see :mod:`asr.train_state`) and ``best.pt``
(lowest validation WER). Both ``.pt`` files are model files that ``asr transcribe`` and
``asr evaluate`` take as they are.

Distributed data-parallel training runs under ``torchrun`` (PyTorch's launcher): each process reads
its rank from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins the process group
(NCCL on CUDA, gloo on the CPU) and wraps the model in ``DistributedDataParallel``. The bucketing
sampler gives each rank every ``world_size``-th batch (all ranks the same number), validation is
sharded by utterance and gathered (the same WER as one process), and only rank 0 writes files.
The rank bookkeeping lives in :mod:`asr.distributed`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.checkpoint import atomic_save, average_weights, model_record, read_model_file
from asr.config import Config, save_config
from asr.data import Batch, BucketBatchSampler, Utterance, make_loader
from asr.distributed import Distributed, init_distributed
from asr.evaluate import EvalResult, evaluate
from asr.metrics import Score
from asr.model import count_parameters, ctc_loss, frame_entropy, frame_kl
from asr.train_setup import Loaders, build
from asr.train_state import EpochProgress, EpochRecord, Run, TrainState, restore, save

log = logging.getLogger("asr.train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available")
    return device


def _setup_logging(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> EpochRecord | None:
    """Train a model as ``cfg`` says, writing the experiment to ``out_dir``.

    Args:
        cfg: the resolved config (``data.train`` and ``data.valid`` must name manifests).
        out_dir: the experiment folder.
        resume: continue from ``out_dir/last.pt`` when it exists (exactly: weights, optimiser,
            schedule, epoch, place in the epoch and random state).
        progress: show a progress bar.
        on_epoch: called with each epoch's history record once it is validated and saved (on
            rank 0 alone).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run: every rank
    calls it with the same arguments; only rank 0 writes into ``out_dir``.

    Returns:
        the last epoch's history record, the same on every rank (None if no epoch was left).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    joined = not dist.is_initialized()
    ddp, device = init_distributed(resolve_device(cfg.train.device))
    joined = joined and dist.is_initialized()
    handler = _setup_logging(out_dir) if ddp.is_main else None
    finished = False
    try:
        report = on_epoch if ddp.is_main else None
        record = _train(cfg, out_dir, resume, progress and ddp.is_main, ddp, device, report)
        finished = True
        return record
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if joined:
            if finished:
                # every rank reaches this point before any tears its group down: rank 0 may
                # still be averaging checkpoints, and a rank that leaves early can abort gloo's
                # threads in the others ("terminate called without an active exception")
                dist.barrier()
            dist.destroy_process_group()


def _train(
    cfg: Config,
    out_dir: Path,
    resume: bool,
    progress: bool,
    ddp: Distributed,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> EpochRecord | None:
    last_path = out_dir / "last.pt"
    resuming = resume and last_path.exists()
    run, loaders = build(cfg, out_dir, ddp, device, progress, resuming)
    state = restore(run, loaders.train, last_path) if resuming else TrainState()
    if ddp.is_main:  # only now: a refused resume leaves the folder's config.yaml as it was
        save_config(cfg, out_dir / "config.yaml")
    log.info(
        f"model: {count_parameters(run.model) / 1e6:.2f}M parameters, {cfg.model.num_layers} x "
        f"{cfg.model.rnn_type} {cfg.model.hidden_size}; device {device}; {ddp.world_size} rank(s) "
        f"x {len(loaders.train)} batches per epoch, {cfg.train.accumulate_grad} per optimizer step"
    )
    record = None
    while state.epoch < cfg.train.epochs and not _out_of_patience(state, cfg.train.patience):
        train_one_epoch(run, loaders.train, state)
        record = _end_epoch(run, loaders, state)
        if on_epoch is not None:
            on_epoch(record)
    if _out_of_patience(state, cfg.train.patience) and state.epoch < cfg.train.epochs:
        log.info(
            f"stopped after epoch {state.epoch}: no better WER for {cfg.train.patience} epochs "
            "(train.patience)"
        )
    if cfg.train.average_last > 0 and state.history and ddp.is_main:
        _average_last(run, loaders.valid_utts, state)
    return record


def _out_of_patience(state: TrainState, patience: int) -> bool:
    """Whether the last ``patience`` epochs all failed to beat the best before them (the same
    on every rank: the history is; and after a resume, as it was before)."""
    if not patience or len(state.history) <= patience:
        return False
    best_before = min(r.selection_wer for r in state.history[:-patience])
    return all(r.selection_wer >= best_before for r in state.history[-patience:])


def train_one_epoch(run: Run, loader: DataLoader, state: TrainState) -> None:
    """Train epoch ``state.epoch + 1`` from where ``state.progress`` stands (its start, or a
    mid-epoch checkpoint's place) to its end: one optimizer step per ``train.accumulate_grad``
    micro-batches, ``last.pt`` every ``train.checkpoint_every_steps`` steps."""
    cfg, progress, epoch = run.cfg.train, state.progress, state.epoch
    sampler: BucketBatchSampler = loader.batch_sampler  # type: ignore[assignment]
    sampler.set_epoch(epoch, sorted_first=cfg.sortagrad and epoch == 0, start=progress.batches)
    run.model.train()
    n_micro = len(loader)  # this rank's batches in the whole epoch
    t0 = time.perf_counter() - progress.seconds
    bar = tqdm(
        total=n_micro,
        initial=progress.batches,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not run.show_progress,
        dynamic_ncols=True,
        leave=False,
    )
    batches = iter(loader)
    run.optimizer.zero_grad(set_to_none=True)
    while progress.batches < n_micro:
        group = min(cfg.accumulate_grad, n_micro - progress.batches)  # the last may be short
        for micro in range(group):
            loss = _forward_backward(run, state, next(batches), group, micro == group - 1)
            bar.update()
        if loss is None:  # a step needs its last micro-batch: its backward averages the ranks'
            run.optimizer.zero_grad(set_to_none=True)
            continue
        grad_norm = _optimizer_step(run)
        if (
            run.ema is not None
        ):  # also after a step fp16's scaler skipped: a step towards the same weights
            run.ema.update_parameters(run.model)
        progress.steps += 1
        speed = progress.audio_seconds * run.ddp.world_size / (time.perf_counter() - t0)
        lr = run.scheduler.get_last_lr()[0]
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", audio_s_per_s=f"{speed:.0f}")
        if progress.steps % cfg.log_every == 0:
            log.info(
                f"epoch {epoch + 1} step {progress.steps}/{run.steps_per_epoch} loss {loss:.4f} "
                f"grad_norm {grad_norm:.2f} lr {lr:.2e} audio_s/s {speed:.1f}"
            )
        every = cfg.checkpoint_every_steps
        if every and progress.steps % every == 0 and progress.batches < n_micro:
            progress.seconds = time.perf_counter() - t0
            save(run, state, loader)
    assert next(batches, None) is None, "the sampler gave more batches than its length"
    bar.close()
    progress.seconds = time.perf_counter() - t0


def _forward_backward(
    run: Run, state: TrainState, batch: Batch, group: int, last: bool
) -> float | None:
    """One micro-batch's loss and its gradient (scaled by ``1 / group``), added to the step's.

    Returns:
        the loss, or None when it is not finite on some rank: every rank then skips the batch.
    """
    batch = batch.to(run.device)
    state.progress.batches += 1
    feats, feat_lens = run.augment.features(run.features, batch.waves, batch.wav_lens)
    # gradients are averaged across ranks only on a step's last micro-batch
    sync = nullcontext() if last or not run.ddp.enabled else run.net.no_sync()
    with sync:
        with run.precision.autocast(run.device):
            log_probs, out_lens = run.net(feats, feat_lens)
        loss = ctc_loss(log_probs, out_lens, batch.targets, batch.target_lens)
        objective = loss
        if run.cfg.train.confidence_penalty:
            objective = loss - run.cfg.train.confidence_penalty * frame_entropy(log_probs, out_lens)
        if run.reference is not None:
            with torch.no_grad(), run.precision.autocast(run.device):
                ref_log_probs, _ = run.reference(feats, feat_lens)
            kl = frame_kl(log_probs, ref_log_probs, out_lens)
            objective = objective + run.cfg.train.kl_to_init * kl
        finite = torch.isfinite(objective.detach()).float()
        if run.ddp.enabled:  # every rank skips together, or the all-reduce would hang
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite.item():
            log.info(
                f"epoch {state.epoch + 1}: non-finite loss on batch {batch.ids[:3]}... "
                f"(CTC {loss.item():g}, objective {objective.item():g}), skipped"
            )
            return None
        run.scaler.scale(objective / group).backward()
    state.progress.loss_sum += loss.item()
    state.progress.finite_batches += 1
    state.progress.audio_seconds += float(batch.wav_lens.sum()) / run.cfg.features.sample_rate
    return loss.item()


def _optimizer_step(run: Run) -> float:
    """Clip the summed gradients, step, move the schedule on; the norm before clipping."""
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.train.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def validate(run: Run, loader: DataLoader) -> EvalResult:
    """CTC loss, greedy WER and CER on the validation set (every rank scores its share; all
    get the whole set's result), of the moving average of the weights when there is one."""
    return evaluate(
        run.scored_model,
        run.features,
        run.tokenizer,
        loader,
        run.device,
        ddp=run.ddp,
        precision=run.precision,
        also_decoder=run.valid_decoder,
    )


def _end_epoch(run: Run, loaders: Loaders, state: TrainState) -> EpochRecord:
    """Validate the epoch just trained, log and record it, and :func:`save`."""
    p = state.progress
    totals = [p.loss_sum, p.finite_batches, p.audio_seconds]
    if run.ddp.enabled:  # the epoch's loss and audio over all ranks
        summed = torch.tensor(totals, dtype=torch.float64, device=run.device)
        dist.all_reduce(summed)
        totals = summed.tolist()
    loss_sum, n_batches, audio_seconds = totals
    result = validate(run, loaders.valid)
    record = EpochRecord(
        epoch=state.epoch + 1,
        train_loss=loss_sum / max(1, n_batches),
        valid_loss=result.loss,
        valid_wer=result.score.wer,
        valid_cer=result.score.cer,
        lr=run.scheduler.get_last_lr()[0],
        train_seconds=p.seconds,
        audio_seconds_per_second=audio_seconds / p.seconds,
    )
    decoded = ""
    if result.also is not None:
        record.valid_decoder_wer, record.valid_decoder_cer = result.also.wer, result.also.cer
        decoded = f"  with {run.cfg.train.valid_decoder}: {result.also.summary()}"
    log.info(
        f"epoch {record.epoch}: train loss {record.train_loss:.4f}  valid loss "
        f"{result.loss:.4f}  {result.score.summary()}{decoded}  ({p.seconds:.1f} s, "
        f"{record.audio_seconds_per_second:.0f} audio s/s)"
    )
    if run.show_progress:
        tqdm.write(f"epoch {record.epoch}: valid {result.score.summary()}{decoded}")
    improved = record.selection_wer < state.best_wer
    state.best_wer = min(state.best_wer, record.selection_wer)
    state.history.append(record)
    state.epoch, state.progress = record.epoch, EpochProgress()
    save(run, state, loaders.train, improved)
    return record


def _selection(result: EvalResult) -> Score:
    """The score that chooses best.pt: train.valid_decoder's when it ran, else greedy's."""
    return result.score if result.also is None else result.also


def _average_last(run: Run, valid_utts: list[Utterance], state: TrainState) -> None:
    """Average the last epochs' weights into ``averaged.pt``; it becomes ``best.pt`` if no worse.

    Averaging the last few epochs (as in ESPnet and icefall) smooths the noise of the final steps.
    The choice between it and the best single epoch is made on the validation set, by the WER
    that chose that epoch (``train.valid_decoder``'s when set).
    """
    cfg, out_dir, last = run.cfg, run.out_dir, state.history[-1].epoch
    paths = [
        out_dir / "epochs" / f"epoch{e}.pt"
        for e in range(last - cfg.train.average_last + 1, last + 1)
    ]
    paths = [p for p in paths if p.exists()]
    averaged = average_weights(paths)
    run.model.load_state_dict(averaged)
    data = cfg.data
    common = (data.batch_seconds, data.max_batch_size, 0)  # all of the set, in this process
    valid = make_loader(valid_utts, run.tokenizer, cfg.features.sample_rate, *common, False)
    result = evaluate(
        run.model, run.features, run.tokenizer, valid, run.device, also_decoder=run.valid_decoder
    )
    chosen_by = _selection(result)  # as the epochs were
    best_wer = state.best_wer
    if math.isinf(best_wer) and (out_dir / "best.pt").exists():
        # a finished run resumed with another train.valid_decoder: no epoch was scored this
        # way, so best.pt is, before the average may replace it
        run.model.load_state_dict(read_model_file(out_dir / "best.pt")["state_dict"])
        best_wer = _selection(
            evaluate(
                run.model,
                run.features,
                run.tokenizer,
                valid,
                run.device,
                also_decoder=run.valid_decoder,
            )
        ).wer
        run.model.load_state_dict(averaged)
    info = {
        "epoch": last,
        "averaged_epochs": len(paths),
        "valid_wer": result.score.wer,
        "valid_cer": result.score.cer,
        "train_manifest": data.train,
        "valid_manifest": data.valid,
        "seed": cfg.train.seed,
    }
    decoded = ""
    if result.also is not None:
        info |= {
            "valid_decoder_wer": result.also.wer,
            "valid_decoder_cer": result.also.cer,
            "valid_decoder": cfg.train.valid_decoder,
        }
        decoded = f"; with {cfg.train.valid_decoder}: {result.also.summary()}"
    record = model_record(
        asdict(cfg.features), asdict(cfg.model), run.tokenizer.to_list(), averaged, info
    )
    atomic_save(record, out_dir / "averaged.pt")
    log.info(
        f"average of epochs {last - len(paths) + 1}-{last}: valid {result.score.summary()}{decoded}"
    )
    how = cfg.train.valid_decoder or "greedy"
    if chosen_by.wer <= best_wer:
        atomic_save(record, out_dir / "best.pt")
        log.info(
            f"the average is no worse than best.pt ({100 * best_wer:.2f}%, {how}): "
            "best.pt is the average"
        )
