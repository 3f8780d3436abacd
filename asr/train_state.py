"""A training run's state and its checkpoint: what ``last.pt`` carries beyond the model, written
(:func:`save`) and put back (:func:`restore`) so a run resumes exactly, also from inside an epoch.

:class:`TrainState` is where a run stands (epochs done, history, best WER, the place inside the
current epoch); :class:`Run` holds the parts :func:`asr.train_setup.build` makes (model, optimiser,
schedule, ...). ``last.pt`` adds to the model file the optimiser, schedule and loss-scaler states,
the moving average of the weights (``train.ema_decay``), every rank's random state and place in
the epoch, and the training loader's generator. Each
utterance's augmentation is seeded by ``(train.seed, epoch, utterance)``
(:class:`asr.data.BucketBatchSampler`), so nothing else is needed. Only the training loop
(:mod:`asr.train`, :mod:`asr.train_setup`) imports this module.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from asr.augment import Augment
from asr.checkpoint import ModelFileError, SaveError, atomic_save, model_record, read_model_file
from asr.config import Config, config_to_dict
from asr.distributed import Distributed, all_gather
from asr.features import FeatureExtractor
from asr.model import AcousticModel
from asr.plot import plot_history
from asr.precision import PrecisionChoice
from asr.text import Tokenizer

log = logging.getLogger("asr.train")


@dataclass
class EpochRecord:
    """One epoch's line of ``history.json``."""

    epoch: int  # counted from 1
    train_loss: float  # mean CTC loss of the epoch's finite batches, all ranks
    valid_loss: float
    valid_wer: float
    valid_cer: float
    lr: float  # at the epoch's end
    train_seconds: float
    audio_seconds_per_second: float  # training speed, all ranks together
    # WER and CER under train.valid_decoder (None without one): what chooses best.pt then
    valid_decoder_wer: float | None = None
    valid_decoder_cer: float | None = None

    @property
    def selection_wer(self) -> float:
        """The WER that chooses ``best.pt``: train.valid_decoder's where it ran, else greedy's."""
        return self.valid_wer if self.valid_decoder_wer is None else self.valid_decoder_wer


@dataclass
class EpochProgress:
    """How far this rank is into the current epoch: what a mid-epoch checkpoint resumes from."""

    batches: int = 0  # micro-batches taken from the sampler, skipped non-finite ones included
    steps: int = 0  # optimizer steps taken
    loss_sum: float = 0.0  # over the finite micro-batches
    finite_batches: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0  # training time spent on the epoch so far


@dataclass
class TrainState:
    """Where a run stands: what ``last.pt`` carries besides weights, optimiser and schedule."""

    epoch: int = 0  # epochs finished
    history: list[EpochRecord] = field(default_factory=list)
    best_wer: float = math.inf
    progress: EpochProgress = field(default_factory=EpochProgress)  # into epoch ``epoch + 1``


@dataclass
class Run:
    """The parts of one training run (what :func:`asr.train_setup.build` makes), handed to each step
    and to :func:`save` and :func:`restore`; it does nothing itself."""

    cfg: Config
    out_dir: Path
    ddp: Distributed
    device: torch.device
    tokenizer: Tokenizer
    features: FeatureExtractor
    model: AcousticModel
    net: torch.nn.Module  # the model, or the model wrapped in DistributedDataParallel
    augment: Augment
    precision: PrecisionChoice
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    show_progress: bool
    # the moving average of the weights (train.ema_decay), None when off; its ``module`` is a
    # model like ``model``
    ema: AveragedModel | None = None
    # train.valid_decoder's decoder (a beam search with its LM), None when greedy chooses, and
    # what identifies its decoding (saved in last.pt: a resume that decodes otherwise is said)
    valid_decoder: Callable[[torch.Tensor, torch.Tensor], list] | None = None
    valid_measure: dict | None = None
    # train.kl_to_init's reference: init_from's model, frozen in eval mode; None when off
    reference: AcousticModel | None = None

    @property
    def scored_model(self) -> AcousticModel:
        """The weights validation scores and ``best.pt`` holds: the moving average when on."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]


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


def save(run: Run, state: TrainState, loader: DataLoader, improved: bool = False) -> None:
    """Write ``last.pt``: the model and all that resume needs (random states and ``loader``'s
    generator included). At an epoch's end (``state.progress`` empty) first ``best.pt`` if
    ``improved`` and the epoch's weights for ``train.average_last``, then after ``last.pt`` the
    history and its plot. Every rank calls it (the ranks' states are gathered); rank 0 writes."""
    train_state = _train_state(run, state, loader)
    if not run.ddp.is_main:
        return
    cfg, out_dir, epoch = run.cfg, run.out_dir, state.epoch
    inside = state.progress.batches > 0
    info: dict = {"epoch": epoch}
    scores: dict = {}  # of what was validated: the moving average, when on
    if inside:
        info["steps_into_next_epoch"] = state.progress.steps
    elif state.history:
        last = state.history[-1]
        scores = {"valid_wer": last.valid_wer, "valid_cer": last.valid_cer}
        if last.valid_decoder_wer is not None:
            scores |= {
                "valid_decoder_wer": last.valid_decoder_wer,
                "valid_decoder_cer": last.valid_decoder_cer,
            }
            info["valid_decoder"] = cfg.train.valid_decoder
    # last.pt's own weights are the trained ones: the average's scores are named as such there
    info.update({f"ema_{k}": v for k, v in scores.items()} if run.ema is not None else scores)
    info.update(train_manifest=cfg.data.train, valid_manifest=cfg.data.valid, seed=cfg.train.seed)
    meta = (asdict(cfg.features), asdict(cfg.model), run.tokenizer.to_list())
    record = model_record(*meta, run.model.state_dict(), info)
    scored = run.scored_model.state_dict()
    if improved:
        best = {k: v for k, v in info.items() if not k.startswith("ema_")} | scores
        atomic_save(model_record(*meta, scored, best), out_dir / "best.pt")
    if cfg.train.average_last > 0 and not inside:
        atomic_save(scored, out_dir / "epochs" / f"epoch{epoch}.pt")
        stale = out_dir / "epochs" / f"epoch{epoch - cfg.train.average_last}.pt"
        stale.unlink(missing_ok=True)
    atomic_save({**record, "train_state": train_state}, out_dir / "last.pt")
    if not inside:
        _save_history(out_dir, [asdict(r) for r in state.history])


def _train_state(run: Run, state: TrainState, loader: DataLoader) -> dict:
    """What ``last.pt`` holds besides the model (every rank's random state and place gathered)."""
    per_rank = all_gather((rng_state(), asdict(state.progress)), run.ddp)
    saved = {
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": state.epoch,
        "history": [asdict(r) for r in state.history],
        "best_wer": state.best_wer,
        "config": config_to_dict(run.cfg),
        "rng": per_rank[0][0],
        "rng_per_rank": [rng for rng, _ in per_rank],
        "steps_per_epoch": run.steps_per_epoch,
        "loader_generator": loader.generator.get_state(),
        "valid_measure": run.valid_measure,
    }
    if run.ema is not None:
        saved["ema"] = run.ema.state_dict()
    if state.progress.batches:  # inside an epoch: where each rank stands in it
        saved["progress_per_rank"] = [progress for _, progress in per_rank]
    return saved


def _save_history(out_dir: Path, history: list[dict]) -> None:
    history_path = out_dir / "history.json"
    tmp = history_path.with_name(".history.json.tmp")
    try:
        tmp.write_text(json.dumps(history, indent=1) + "\n")
        tmp.replace(history_path)
        plot_history(history, out_dir / "curve.png")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SaveError(
            f"{out_dir}: cannot write the history or its plot ({exc.strerror})"
        ) from None


def restore(run: Run, loader: DataLoader, path: Path) -> TrainState:
    """Load the checkpoint ``path`` into ``run`` and ``loader``'s generator; the state it holds.

    Rank 0 reads the file and sends it to the others (no shared file system needed). Resumed
    with another number of ranks or accumulation, the schedule keeps its place by epochs, and an
    epoch the checkpoint was written inside starts over (its batches are dealt out otherwise).

    Raises:
        ModelFileError: the config's model differs from the checkpoint's.
    """
    ddp = run.ddp
    box = [read_model_file(path) if ddp.is_main else None]
    if ddp.enabled:
        dist.broadcast_object_list(box, src=0)
    ckpt = box[0]
    saved = ckpt["train_state"]
    try:
        run.model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(
            f"{path}: cannot resume: the config's model differs from the checkpoint's "
            f"({first} ...); use another --out, or --no-resume to start over"
        ) from None
    written = saved.get("config", {}).get("train", {})
    changed = (
        ("confidence_penalty", "the loss"),
        ("kl_to_init", "the loss"),
        ("ema_decay", "the moving average"),
    )
    for key, what in changed:
        before, now = written.get(key, 0.0), getattr(run.cfg.train, key)
        if before != now:
            log.warning(
                f"{path}: written with train.{key}={before:g}, resumed with {now:g}: "
                f"{what} changes from here"
            )
    _restore_ema(run, saved.get("ema"), path)
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.scaler.load_state_dict(saved["scaler"])
    history = [EpochRecord(**record) for record in saved["history"]]
    state = TrainState(saved["epoch"], history, saved["best_wer"])
    # a file from before train.valid_decoder has no valid_measure: greedy chose (None)
    if saved.get("valid_measure") != run.valid_measure:  # best.pt's WER is another measure
        state.best_wer = math.inf
        before, now = written.get("valid_decoder", ""), run.cfg.train.valid_decoder
        log.warning(
            f"{path}: written with train.valid_decoder={before or '(greedy)'}, resumed with "
            f"{now or '(greedy)'} (another decoding): the next epoch's weights replace best.pt, "
            "and from there on the new decoding chooses"
        )
    _restore_place(run, state, saved)
    _restore_random(run, loader, state, saved)
    where = f"after epoch {state.epoch}"
    if state.progress.batches:
        where = (
            f"in epoch {state.epoch + 1} after step {state.progress.steps} "
            f"({state.progress.batches} batches)"
        )
    log.info(f"resumed from {path} {where}")
    return state


def _restore_place(run: Run, state: TrainState, saved: dict) -> None:
    """Put the run where the checkpoint stood: this rank's place inside the epoch, or, resumed
    with another number of ranks or accumulation, the schedule's place by epochs (an epoch the
    checkpoint was written inside then starts over)."""
    spe, ddp = run.steps_per_epoch, run.ddp
    moved = saved.get("steps_per_epoch", spe) != spe  # another number of ranks or accumulation
    inside = saved.get("progress_per_rank")  # written inside an epoch: each rank's place
    restart = inside is not None and (moved or len(inside) != ddp.world_size)
    if inside is not None and not restart:
        state.progress = EpochProgress(**inside[ddp.rank])
    if moved or restart:  # keep the schedule's place by epochs
        run.scheduler.last_epoch = state.epoch * spe
        for group, base in zip(run.optimizer.param_groups, run.scheduler.base_lrs):
            group["lr"] = base * run.scheduler.lr_lambdas[0](run.scheduler.last_epoch)
        if moved:
            log.info(
                f"steps per epoch now {spe}: schedule moved to step {run.scheduler.last_epoch}"
            )
        if restart:
            log.info(
                f"epoch {state.epoch + 1} starts over: its batches are dealt out otherwise now"
            )


def _restore_random(run: Run, loader: DataLoader, state: TrainState, saved: dict) -> None:
    """Put back this rank's random state and the training loader's generator."""
    ddp = run.ddp
    per_rank = saved.get("rng_per_rank", [saved["rng"]])
    if len(per_rank) == ddp.world_size:
        set_rng_state(per_rank[ddp.rank])
    elif ddp.is_main:  # another number of ranks: rank 0 continues, the others start fresh streams
        set_rng_state(saved["rng"])
    else:
        seed_everything(run.cfg.train.seed + 1000 * ddp.rank + state.epoch)
    if "loader_generator" in saved:
        loader.generator.set_state(saved["loader_generator"])


def _restore_ema(run: Run, saved: dict | None, path: Path) -> None:
    """Put back the moving average of the weights; one that the checkpoint lacks (the run was
    written with train.ema_decay=0) starts from the resumed weights."""
    if run.ema is None:
        if saved is not None:
            log.warning(f"{path}: its moving average of the weights is dropped (train.ema_decay=0)")
        return
    if saved is None:
        log.warning(f"{path}: has no moving average of the weights: it starts from these weights")
        run.ema.module.load_state_dict(run.model.state_dict())
        return
    run.ema.load_state_dict(saved)
