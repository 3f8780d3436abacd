"""The configuration tree: nested dataclasses are the schema and the defaults.

YAML files only set values (they never name classes to build), and ``key=value`` overrides from the
command line are checked against the schema: an unknown key or a value of the wrong type is an error
that names the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

SAMPLE_RATE = 16_000  # Hz: the features' rate unless a config says otherwise


class ConfigError(ValueError):
    """A config key or value that does not fit the schema."""


def bounded(
    default: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    below: bool = False,
) -> Any:
    """A field whose value must lie in ``[low, high]`` (``above``/``below``: strictly), checked
    where the value is set, so ``train.grad_clip=-1`` fails naming the key, not later."""
    return field(
        default=default, metadata={"low": low, "high": high, "above": above, "below": below}
    )


def _check_bounds(key: str, value: Any, meta: Any, where: str) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
    bad_low = low is not None and (value <= low if meta.get("above") else value < low)
    bad_high = high is not None and (value >= high if meta.get("below") else value > high)
    if bad_low or bad_high:
        lo = "" if low is None else f"{'>' if meta.get('above') else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if meta.get('below') else '<='} {high:g}"
        raise ConfigError(
            f"{where}: {key} must be {' and '.join(x for x in (lo, hi) if x)}, got {value!r}"
        )


@dataclass
class FeatureConfig:
    """The front end: waveform -> (T, F) features."""

    sample_rate: int = bounded(SAMPLE_RATE, 1_000, 768_000)
    kind: Literal["logmel", "linear"] = "logmel"
    # upper bounds: a model file's config builds the window and filterbank before its weights are
    # checked, and a forged one (win_ms: 1e6) would allocate gigabytes
    n_mels: int = bounded(80, 1, 512)
    win_ms: float = bounded(25.0, 0, 100, above=True)
    hop_ms: float = bounded(10.0, 0, 100, above=True)
    normalize: bool = True  # per-utterance mean/variance normalisation over the true frames


@dataclass
class SpecAugmentConfig:
    """Frequency and time masks applied to training batches only."""

    freq_masks: int = 2
    freq_width: int = 15  # bins
    time_masks: int = 2
    time_width: int = 20  # frames
    time_ratio: float = 0.1  # a time mask covers at most this fraction of the utterance


@dataclass
class AugmentConfig:
    """Training-only augmentation; all of it is off at evaluation."""

    speed_factors: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]
    noise_prob: float = 0.0  # chance of adding white noise to an utterance
    noise_snr_db: list[float] = field(default_factory=lambda: [10.0, 30.0])  # [low, high]
    # real noise: recordings mixed in at a random SNR (added after the pauses, so they fill them,
    # before any white noise); noise_sources are comma-separated manifests (Speech Commands'
    # noise.jsonl from `asr prepare speechcommands`) or folders of audio
    noise_sources: str = ""
    real_noise_prob: float = 0.0
    real_noise_snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])  # [low, high]
    # chance of band-limiting an utterance to 4 kHz, as 8 kHz corpora (telephone, FSDD) sound
    narrowband_prob: float = 0.0
    # isolated-word corpora, whose takes are sometimes clipped: chance of cutting off the clip's end,
    # and the largest fraction cut (never for sentences: it would cut words off their transcript)
    crop_end_prob: float = 0.0
    crop_end_max: float = 0.25
    # chance of adding a pause of 0..pad_max seconds before and after an utterance (noise at the
    # clip's own floor): tightly trimmed clips (FSDD) otherwise teach the model that a word's first
    # and last letters sit at the very edges of the audio. Batches may then exceed batch_seconds
    # by up to 2 x pad_max per utterance.
    pad_prob: float = 0.0
    pad_max: float = 0.5
    # chance that a training batch has its utterances joined in groups of 2..join_max (one size
    # drawn per batch), with a pause of join_pause [low, high] seconds after each but the last
    # (noise at the floor of the clip before it): a model trained on single utterances learns that
    # speech fills the recording, and fails on several words with pauses between them. A joined
    # batch holds fewer, longer utterances; its padded size exceeds batch_seconds by the pauses.
    join_prob: float = 0.0
    join_pause: list[float] = field(default_factory=lambda: [0.2, 1.0])
    join_max: int = 2
    # the pauses that pad_prob and join_prob add are noise at the clip's own floor, lowered by a
    # random 0..pause_quieter_db dB: recordings behind a noise gate, or clips joined with
    # silence, have pauses far quieter than the room the words were spoken in
    pause_quieter_db: float = 0.0
    # vocal tract length perturbation: each utterance's frequency axis scaled by a factor drawn
    # from [1 - warp, 1 + warp] (formants moved as a shorter or longer vocal tract moves them;
    # 0.1 is the usual range), independently of speed_factors, which move pitch and tempo too
    warp: float = 0.0
    spec_augment: bool = True
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)


@dataclass
class ModelConfig:
    """The acoustic model: subsampling front end, stacked recurrent layers, output projection."""

    subsample: Literal["stack", "conv"] = "stack"
    subsample_factor: int = bounded(3, 1)
    conv_channels: int = bounded(32, 1)
    rnn_type: Literal["lstm", "gru", "rnn"] = "lstm"
    hidden_size: int = bounded(256, 1)
    num_layers: int = bounded(3, 1)
    bidirectional: bool = True
    dropout: float = bounded(0.1, 0, 1, below=True)
    # a learnt scale per unit on each recurrent layer's output (LHUC, Swietojanski & Renals 2014):
    # 2 * sigmoid(r), r = 0 (a scale of 1) at the start; a few thousand parameters that adapt a
    # trained model to one speaker (``EnrolSettings.lhuc``). Loading, asr export and asr enrol
    # fold them into the weights that read them (asr.checkpoint.without_lhuc): a plain model
    lhuc: bool = False


@dataclass
class DataConfig:
    train: str = ""  # manifest paths (JSON Lines); several separated by commas
    # per training manifest, how often an epoch draws each of its utterances (empty: all 1):
    # [3, 0.5] draws the first manifest's utterances three times (augmented anew each time) and
    # half of the second's (a new half every epoch), to spend the updates where the error is
    train_weights: list[float] = field(default_factory=list)
    valid: str = ""
    # seconds; longer utterances are dropped with a count
    max_duration: float = bounded(30.0, 0, above=True)
    min_duration: float = bounded(0.05, 0)
    batch_seconds: float = bounded(60.0, 0, above=True)  # cap on the total audio in one batch
    max_batch_size: int = bounded(64, 1)
    num_workers: int = bounded(1, 0)


@dataclass
class TrainConfig:
    epochs: int = bounded(30, 1)
    lr: float = bounded(2e-3, 0)  # 0 keeps the weights (a fine-tuning check)
    weight_decay: float = bounded(1e-2, 0)
    warmup_steps: int = bounded(200, 0)
    min_lr_ratio: float = bounded(0.02, 0, 1)  # the cosine decay ends at lr * min_lr_ratio
    grad_clip: float = bounded(5.0, 0, above=True)  # max gradient norm
    sortagrad: bool = True  # epoch 1 runs batches shortest first
    # initial weights, batch order and every augmentation draw: (seed, epoch, utterance) fixes an
    # utterance's speed, noise, pauses and joins. A stage that starts from an earlier stage's
    # weights (init_from) should take another seed, or it replays that stage's batches and draws
    # epoch for epoch; model files record their seed, and asr train warns when init_from's is
    # this one
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # the dtype of the model's matrix products (asr/precision.py): auto = bf16 autocast where the
    # CPU or GPU multiplies bf16 natively, fp16 on older GPUs, fp32 elsewhere; weights, optimizer
    # state, log-softmax and CTC loss stay fp32 whatever this says
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # weight of a confidence penalty: the loss is CTC minus this times the mean per-frame entropy
    # of the output (asr.model.frame_entropy); 0 is plain CTC. The train loss logged is CTC alone
    confidence_penalty: float = bounded(0.0, 0)
    # weight of a pull towards init_from's outputs: the loss adds this times the mean per-frame
    # KL(init_from's output distribution || the model's), both on the same augmented input
    # (asr.model.frame_kl), so that fine-tuning on a little data (asr enrol) stays near what the
    # starting model did (Yu et al. 2013, "KL-divergence regularized deep neural network
    # adaptation"). Needs init_from; 0: off. The train loss logged is CTC alone
    kl_to_init: float = bounded(0.0, 0)
    log_every: int = bounded(20, 1)  # steps between log-file lines
    # at the end, average the weights of the last N epochs (0: off)
    average_last: int = bounded(0, 0)
    # an exponential moving average of the weights, updated after every optimizer step
    # (average = decay x average + (1 - decay) x weights) from the run's starting weights;
    # validation, best.pt and the epochs that average_last averages use it, last.pt keeps both.
    # 0: off; 0.999 remembers about the last 1,000 steps (torch.optim.swa_utils.AveragedModel).
    # The starting weights keep a share of decay^steps (0.999: 37% after 1,000 steps): meant for
    # fine-tuning from good weights (init_from), or runs many times longer than 1 / (1 - decay)
    ema_decay: float = bounded(0.0, 0, 1, below=True)
    # micro-batches whose gradients are summed into one optimizer step (the LR schedule, warm-up
    # included, counts optimizer steps); with N data-parallel ranks a step sees N x this many
    accumulate_grad: int = bounded(1, 1)
    # also write last.pt every N optimizer steps inside an epoch (0: only at each epoch's end), so
    # an interrupted long epoch resumes where it stopped and ends as an unbroken run would
    checkpoint_every_steps: int = bounded(0, 0)
    # start from this model file's weights (fine-tuning, e.g. asr/pretrained/default.pt); its
    # features, model shape and vocabulary must match this config's. Ignored when resuming.
    init_from: str = ""
    # parameter name prefixes that training moves (e.g. [rnns.0, rnns.1]: the first two recurrent
    # layers; names as in the model's state dict); every other weight stays as init_from left it.
    # Empty: all move. Fine-tuning on a little data (asr enrol) moves few
    trainable: list[str] = field(default_factory=list)
    # stop once the WER that chooses best.pt has not improved for this many epochs (0: run every
    # epoch); the schedule still decays over train.epochs, so an early stop leaves lr higher
    patience: int = bounded(0, 0)
    # a decoder config (a YAML file with a 'decoder:' section, as `asr lm tune` writes, e.g.
    # asr/pretrained/decoder.yaml): validation also decodes with it (the beam search and LM a
    # user of the model will run), and best.pt and average_last's choice go by its WER instead
    # of greedy's, which can fall while the beam search's rises. Empty: greedy chooses.
    valid_decoder: str = ""


@dataclass
class DecoderConfig:
    """How log-probabilities become text. ``beam`` uses flashlight-text through torchaudio."""

    kind: Literal["greedy", "beam"] = "greedy"
    beam_size: int = bounded(64, 1)
    # pruning, about as strong as pyctcdecode's defaults (token_min_logp -5, beam_prune_logp -10):
    # much faster than none for a small loss (docs/history.md)
    beam_size_token: int = bounded(10, 0)  # most likely tokens considered per frame; 0: all
    beam_threshold: float = 15.0  # prune hypotheses this far (log) below the best
    lexicon: str = ""  # word -> spelling file; empty: lexicon-free (any character string)
    lm: str = ""  # KenLM word n-gram (ARPA or binary); needs a lexicon
    lm_weight: float = 0.5
    word_score: float = 0.0  # insertion bonus per word
    unk_score: float = float("-inf")  # score of a word outside the lexicon
    sil_score: float = 0.0
    # merge the paths of one prefix by log-sum-exp, as CTC's sum over alignments does (True), or
    # keep the best (False); the sum decodes better at the same weights, as fast (docs/history.md)
    log_add: bool = True
    nbest: int = bounded(1, 1)


@dataclass
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # decoding is not part of a training config: a decoder config is its own YAML (a 'decoder:'
    # section, as `asr lm tune` writes; load_decoder_config)


def _check_value(key: str, value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` converted to ``annotation``'s type, or raise naming the key."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{where}: {key}={value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None) and value is None:
                return None
            try:
                return _check_value(key, value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {key}={value!r} does not fit {annotation}")
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item, where) for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    raise ConfigError(f"{where}: {key} has an unsupported type {annotation}")


def update_dataclass(obj: Any, values: dict[str, Any], where: str, prefix: str = "") -> None:
    """Set ``values`` (a nested dict) on the dataclass ``obj`` in place, checking keys and types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    names = set(fields)
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{full}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            update_dataclass(current, value, where, prefix=f"{full}.")
        else:
            value = _check_value(full, value, hints[key], where)
            _check_bounds(full, value, fields[key].metadata, where)
            setattr(obj, key, value)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``'model.num_layers=4'`` into (['model', 'num_layers'], 4); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def read_yaml(path: str | Path, what: str) -> Any:
    """A YAML file's content (``{}`` when empty), or a :class:`ConfigError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a {what} (a YAML file)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a {what}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_config(yaml_paths: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Build the config: dataclass defaults, then each YAML file in order, then ``key=value`` overrides.

    Args:
        yaml_paths: YAML files, each a nested mapping of values to set.
        overrides: strings like ``"train.lr=0.001"``.

    Returns:
        The resolved :class:`Config`.

    Raises:
        ConfigError: an unknown key or a value of the wrong type, naming the key and its source.
    """
    cfg = Config()
    for path in yaml_paths:
        update_dataclass(cfg, read_yaml(path, "config file"), str(path))
    for text in overrides:
        keys, value = parse_override(text)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        update_dataclass(cfg, nested, f"override '{text}'")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, values: dict[str, Any], where: str = "checkpoint") -> Any:
    """Rebuild a config dataclass of type ``cls`` from a plain dict (as saved in a checkpoint)."""
    obj = cls()
    update_dataclass(obj, values, where)
    return obj


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (a full disk leaves the old file whole).

    Raises:
        ConfigError: the file could not be written, naming it and why.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write it ({exc.strerror})") from None


def load_decoder_config(path: str | Path | None = None, **values: Any) -> DecoderConfig:
    """A :class:`DecoderConfig` from a YAML file's ``decoder:`` section, then ``values`` on top.

    Relative ``lm`` and ``lexicon`` paths in the file are taken relative to the file's folder, so
    a tuned config and its LM can move together. ``values`` that are ``None`` are ignored.
    """
    cfg = DecoderConfig()
    if path is not None:
        path = Path(path)
        data = read_yaml(path, "decoder config")
        if not isinstance(data, dict) or "decoder" not in data:
            raise ConfigError(f"{path}: expected a 'decoder:' section")
        update_dataclass(cfg, data["decoder"], str(path), prefix="decoder.")
        for key in ("lm", "lexicon"):
            value = getattr(cfg, key)
            if value and not Path(value).is_absolute():
                setattr(cfg, key, str(path.parent / value))
    update_dataclass(cfg, {k: v for k, v in values.items() if v is not None}, "command line")
    return cfg
