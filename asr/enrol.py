"""Personal models: a model fine-tuned on one speaker's recordings (``asr enrol``).

A speaker records a few minutes (their own transcripts, or prompts from :mod:`asr.prompts`);
:func:`enrol` holds a few recordings out, fine-tunes a model file on the rest with
:func:`asr.train.train` (at a small learning rate, with SpecAugment, stopping early when the
held-out recordings stop improving) and writes
``personal.pt``: a model file that ``asr transcribe --model``, ``asr serve --model`` and
:func:`asr.load_model` take, decoding with the same beam search and LM as the model it came from.

The defaults (:class:`EnrolSettings`) were chosen by measurement on a held-out LibriSpeech reader
(``benchmarks/enrol.py``, ``docs/enrol.md``). Progress goes to a bar and to ``progress.json`` in
the output folder, which ``asr serve`` reads to show it on the page.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from asr.checkpoint import atomic_save, read_model_file, strip_checkpoint, without_lhuc
from asr.config import (
    Config,
    FeatureConfig,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    load_decoder_config,
    update_dataclass,
)
from asr.data import Utterance, make_loader, write_manifest
from asr.decode import build_decoder
from asr.enrol_data import few_speech_note, read_recordings, split_heldout
from asr.evaluate import evaluate
from asr.text import Tokenizer
from asr.train_state import EpochRecord
from asr.transcribe import (
    BUNDLED_DECODER,
    DEFAULT_DECODER,
    DEFAULT_MODEL,
    build_recognizer,
    default_decoder_config,
)


@dataclass
class EnrolSettings:
    """How :func:`enrol` fine-tunes (the defaults are measured: ``docs/enrol.md``)."""

    lr: float = 3e-4
    epochs: int = 30
    patience: int = 6  # epochs without a better held-out WER before stopping
    # what moves: parameter name prefixes (train.trainable), the rest keeping the base model's
    # weights; empty: all of it (on a dev reader, all at 3e-4 beat the lower two layers at 5e-4
    # and 1e-3: docs/enrol.md)
    trainable: list[str] = field(default_factory=list)
    heldout_share: float = 0.1  # of the recordings, evenly spread, at least 2
    batch_seconds: float = 30.0
    spec_augment: bool = True
    speed_factors: list[float] = field(default_factory=list)  # augment.speed_factors
    # train.kl_to_init: a pull towards the base model's outputs (0: off)
    kl_weight: float = 0.0
    # train.average_last: the last N epochs' weights averaged, kept if no worse on the held-out
    # recordings (0: off)
    average_last: int = 0
    # train LHUC scales (model.lhuc: one per unit of each recurrent layer), folded into the
    # weights of personal.pt; with trainable ["lhuc"], only they move
    lhuc: bool = False
    dropout: float | None = None  # between recurrent layers while fine-tuning (None: the model's)
    seed: int = 1


@dataclass
class EnrolResult:
    """What :func:`enrol` measured and wrote."""

    model: Path  # personal.pt
    train_seconds: float  # of speech trained on
    heldout: int  # recordings held out
    wer_before: float  # held-out WER of the base model, decoded as the personal model decodes
    wer_after: float
    epochs: int
    minutes: float  # wall time of the fine-tuning

    @property
    def note(self) -> str:
        """A caution about the result for the user ("" when none): :func:`few_speech_note`."""
        return few_speech_note(self.train_seconds, self.heldout)


def enrol(
    source: str | Path,
    out_dir: str | Path,
    model: str | Path | None = None,
    settings: EnrolSettings | None = None,
    progress: bool = True,
) -> EnrolResult:
    """Fine-tune ``model`` (default: the bundled one) on the recordings of ``source`` into
    ``out_dir/personal.pt``; ``out_dir`` also holds the manifests, the training run (``run/``)
    and ``progress.json``. A run interrupted part-way resumes from ``run/last.pt``.

    Raises:
        EnrolError: recordings that cannot be used (:func:`read_recordings`).
        ModelFileError: ``model`` is not a model file.
    """
    settings = settings or EnrolSettings()
    out_dir = Path(out_dir)
    base = Path(model) if model is not None else DEFAULT_MODEL
    record = read_model_file(base)
    bundled = base.resolve() == DEFAULT_MODEL.resolve()
    decoder = default_decoder_config(record.get("info", {}), bundled)
    decoder_path = str(decoder) if decoder is not None else ""
    status = _Status(out_dir / "progress.json", settings.epochs)
    try:
        utts = read_recordings(source, Tokenizer(record["tokens"]))
        train_utts, held = split_heldout(utts, settings.heldout_share)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_manifest(train_utts, out_dir / "train.jsonl")
        write_manifest(held, out_dir / "heldout.jsonl")
        cfg = _config(record, base, out_dir, decoder_path, settings, train_utts)
        _resume_only_the_same(out_dir, cfg)
        status.update(state="checking", message="scoring the held-out recordings")
        before = _heldout_wer(record, str(base), held, decoder_path)
        status.update(state="training", wer_before=before, best_wer=before, message="")
        started = time.monotonic()
        _fine_tune(cfg, out_dir / "run", status, before, progress)
        minutes = (time.monotonic() - started) / 60
        path, after, epochs = _write_model(record, base, out_dir, decoder_path, before, minutes)
        seconds = sum(u.duration for u in train_utts)
        result = EnrolResult(path, seconds, len(held), before, after, epochs, minutes)
    except Exception as exc:
        status.update(state="failed", message=str(exc).splitlines()[0] if str(exc) else repr(exc))
        raise
    status.update(state="done", model=str(result.model), message="", note=result.note)
    return result


def _resume_only_the_same(out_dir: Path, cfg: Config) -> None:
    """Keep ``out_dir/run`` (an interrupted enrolment resumes from its ``last.pt``) only when it
    was started on the same recordings with the same settings; otherwise start over."""
    what = {
        "config": config_to_dict(cfg),
        "train": (out_dir / "train.jsonl").read_text(encoding="utf-8"),
        "heldout": (out_dir / "heldout.jsonl").read_text(encoding="utf-8"),
    }
    fingerprint = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
    stamp = out_dir / "run" / "enrolment.sha256"
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return
    shutil.rmtree(out_dir / "run", ignore_errors=True)
    stamp.parent.mkdir(parents=True)
    stamp.write_text(fingerprint + "\n")


def _config(
    record: dict,
    base: Path,
    out_dir: Path,
    decoder_path: str,
    settings: EnrolSettings,
    train_utts: list[Utterance],
) -> Config:
    """The training config of an enrolment: the base model's shape, the settings' schedule."""
    cfg = Config()
    cfg.features = config_from_dict(FeatureConfig, record["features"], str(base))
    cfg.model = config_from_dict(ModelConfig, record["model"], str(base))
    seconds = sum(u.duration for u in train_utts)
    steps_per_epoch = max(1, math.ceil(seconds / settings.batch_seconds))
    model = {"lhuc": settings.lhuc}
    if settings.dropout is not None:
        model["dropout"] = settings.dropout
    values = {
        "model": model,
        "data": {
            "train": str(out_dir / "train.jsonl"),
            "valid": str(out_dir / "heldout.jsonl"),
            "batch_seconds": settings.batch_seconds,
            "num_workers": 0,
        },
        "augment": {
            "spec_augment": settings.spec_augment,
            "speed_factors": list(settings.speed_factors),
        },
        "train": {
            "init_from": str(base),
            "valid_decoder": decoder_path,
            "lr": settings.lr,
            "epochs": settings.epochs,
            "patience": settings.patience,
            "seed": settings.seed,
            "trainable": list(settings.trainable),
            "kl_to_init": settings.kl_weight,
            "average_last": settings.average_last,
            "warmup_steps": min(50, 2 * steps_per_epoch),
            "log_every": steps_per_epoch,
        },
    }
    update_dataclass(cfg, values, "asr enrol")  # checked as a config file's values are
    return cfg


def _heldout_wer(record: dict, where: str, utts: list[Utterance], decoder_path: str) -> float:
    """The WER of a model record on ``utts`` (transcripts normalised), decoded with
    ``decoder_path`` (greedy if '')."""
    rec = build_recognizer(record, where).set_precision("auto")
    loader = make_loader(utts, rec.tokenizer, rec.sample_rate, 60.0, 16, 0, shuffle=False)
    decoder = build_decoder(rec.tokenizer, load_decoder_config(decoder_path or None))
    result = evaluate(
        rec.model, rec.features, rec.tokenizer, loader, rec.device,
        decoder=decoder, precision=rec.precision,
    )  # fmt: skip
    return result.score.wer


def _fine_tune(cfg: Config, run_dir: Path, status: _Status, before: float, progress: bool) -> None:
    """:func:`asr.train.train` with a bar of its own: one step an epoch, the held-out WER shown."""
    from asr.train import train  # the training loop, only when an enrolment runs

    bar = tqdm(total=cfg.train.epochs, desc="enrol", unit="epoch", disable=not progress)
    if progress:
        bar.write(
            f"held-out WER {100 * before:.1f}% before fine-tuning; at most {cfg.train.epochs} "
            f"epochs, stopping after {cfg.train.patience} without a better one"
        )
    bar.set_postfix_str(f"held-out WER {100 * before:.1f}% before")

    def on_epoch(record) -> None:
        wer = record.selection_wer
        status.update(epoch=record.epoch, wer=wer, best_wer=min(status.best_wer, wer))
        bar.n = record.epoch
        bar.set_postfix_str(
            f"held-out WER {100 * wer:.1f}% (best {100 * status.best_wer:.1f}%, "
            f"before {100 * before:.1f}%)"
        )

    try:
        train(cfg, run_dir, resume=True, progress=False, on_epoch=on_epoch)
    finally:
        bar.close()


def _write_model(
    record: dict,
    base: Path,
    out_dir: Path,
    decoder_path: str,
    before: float,
    minutes: float,
) -> tuple[Path, float, int]:
    """``personal.pt``: the best epoch's weights, or the base model's when no epoch beat them."""
    history = json.loads((out_dir / "run" / "history.json").read_text())
    best = read_model_file(out_dir / "run" / "best.pt")
    after = min(EpochRecord(**h).selection_wer for h in history)
    chosen = without_lhuc(best if after < before else record)  # a plain model file
    info = {
        "enrolled": {
            "base": str(base),
            "heldout_wer_before": before,
            "heldout_wer_after": min(after, before),
            "epochs": len(history),
            "minutes": round(minutes, 2),
        },
        "decoder": BUNDLED_DECODER if decoder_path == str(DEFAULT_DECODER) else decoder_path,
    }
    path = out_dir / "personal.pt"
    atomic_save(strip_checkpoint(chosen, half=False, info=info), path)
    return path, min(after, before), len(history)


class _Status:
    """``progress.json``: where an enrolment stands, rewritten atomically at each change."""

    def __init__(self, path: Path, epochs: int) -> None:
        self.path = path
        self.values: dict = {"state": "starting", "epoch": 0, "epochs": epochs, "message": ""}
        self.values |= {"wer_before": None, "wer": None, "best_wer": None, "model": None}
        self.values["note"] = ""  # when done: EnrolResult.note
        self.started = time.time()

    @property
    def best_wer(self) -> float:
        return self.values["best_wer"] if self.values["best_wer"] is not None else math.inf

    def update(self, **values) -> None:
        self.values |= values
        self.values["elapsed_s"] = round(time.time() - self.started, 1)
        if not self.path.parent.is_dir():
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.values) + "\n")
        tmp.replace(self.path)
