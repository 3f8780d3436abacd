"""Model files and training checkpoints: written atomically, read with ``weights_only=True``.

One format serves both. A model file holds everything needed to rebuild the recognizer::

    {"format": "asr-model", "version": 1,
     "features": {...FeatureConfig...}, "model": {...ModelConfig...}, "tokens": [...],
     "state_dict": {...}, "info": {...}}

and a training checkpoint adds ``"train_state"`` (optimizer, schedule, epoch, RNG, history) and the
full resolved config. Only tensors and plain Python values are stored, so loading runs no code.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

FORMAT = "asr-model"
VERSION = 1
# a file's tensors, against the model its config describes: none may hold more values than the
# model or than MIN_TENSOR_LIMIT (RNG states are larger than a toy model), nor all together more
# than MAX_COPIES such sizes (a checkpoint holds weights, two Adam moments and an average)
MIN_TENSOR_LIMIT = 1 << 20
MAX_COPIES = 8


class ModelFileError(ValueError):
    """A file that is not a readable asr model or checkpoint."""


class SaveError(ValueError):
    """A model file or checkpoint that could not be written (a full disk, no permission)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts): a temporary file or folder named
    after a process that is gone was left by a killed writer."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete ``.NAME.tmpPID`` files beside ``path`` left by writers that were killed."""
    for tmp in path.parent.glob(f".{path.name}.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file.

    Raises:
        SaveError: the file could not be written (the disk is full, ...); ``path`` as it was
            before is kept, and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        # through a Python file, so a failed write is an OSError with its errno (ENOSPC): given a
        # path, torch writes in C++ and says only "[enforce fail at inline_container.cc...]"
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        reason = _reason(exc)
        kept = (
            f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        )
        raise SaveError(f"{path}: cannot write it ({reason}); {kept}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _reason(exc: BaseException) -> str:
    """Why a write failed: the OS's words (``No space left on device``) where an OSError lies
    under torch's RuntimeError, else the error's first line."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def model_record(
    features: dict, model: dict, tokens: list[str], state_dict: dict, info: dict | None = None
) -> dict:
    """The dict a model file holds (see the module docstring)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "features": features,
        "model": model,
        "tokens": tokens,
        "state_dict": state_dict,
        "info": info or {},
    }


def read_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a model file or checkpoint.

    Raises:
        ModelFileError: the file is missing, is not a torch file, would need code to unpickle
            (``weights_only=True`` refuses it), is not in this project's format, or holds
            tensors that do not fit the model its config describes (:func:`check_sizes`).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    with path.open("rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither torch's zip archive nor a pickle
        raise ModelFileError(f"{path}: not a model file (neither a torch archive nor a pickle)")
    # first the shapes alone (tensors on the meta device: none of their bytes read), checked
    # against the model the file's config describes, so a forged config or tensor costs nothing
    check_sizes(_check_record(_torch_load(path, "meta"), path), path)
    return _check_record(_torch_load(path, map_location), path)


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelFileError(
            f"{path}: refused to load: the file holds objects other than tensors and plain values "
            f"(it was not written by asr; loading it could run code). {first}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({exc!r})") from None


def _check_record(record: Any, path: Path) -> dict:
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an asr model file (no '{FORMAT}' format marker)")
    if record.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: model file version {record.get('version')} is not supported (this asr reads {VERSION})"
        )
    for key in ("features", "model", "tokens", "state_dict"):
        if key not in record:
            raise ModelFileError(f"{path}: model file lacks '{key}'")
    return record


def check_sizes(record: dict, path: str | Path) -> None:
    """Check a record's tensors (as loaded on the meta device: shapes, no data) against the model
    its config describes, which is built on the meta device (no memory) to know its shapes.

    The state dict must have exactly the model's names and shapes; no tensor anywhere in the file
    (a checkpoint's optimizer state too) may hold more values than the model, and all of them
    together no more than :data:`MAX_COPIES` models' worth (weights, two Adam moments, an average).

    Raises:
        ModelFileError: a config that builds no model, weights that do not fit it, or a tensor too
            large for it (named, with both sizes).
    """
    from asr.config import FeatureConfig, ModelConfig, config_from_dict
    from asr.features import feature_size
    from asr.model import AcousticModel
    from asr.text import Tokenizer

    try:
        features = config_from_dict(FeatureConfig, record["features"], str(path))
        cfg = config_from_dict(ModelConfig, record["model"], str(path))
        with torch.device("meta"):
            vocab_size = len(Tokenizer.from_list(record["tokens"]))
            model = AcousticModel(cfg, feature_size(features), vocab_size)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ModelFileError(f"{path}: its config describes no model: {exc}") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    state = record["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: its state_dict is not a dict of tensors")
    got = {name: tuple(t.shape) if torch.is_tensor(t) else None for name, t in state.items()}
    for name in sorted(set(expected) | set(got)):
        if expected.get(name) != got.get(name):
            raise ModelFileError(
                f"{path}: weights do not fit the model it describes: {name} is "
                f"{_shape(got.get(name), 'missing')} in the file, {_shape(expected.get(name), 'absent')}"
                f" in the model its config describes ({_config_line(cfg)})"
            )
    size = sum(math.prod(shape) for shape in expected.values())
    largest, total = max(size, MIN_TENSOR_LIMIT), 0
    for where, tensor in _tensors(record):
        total += tensor.numel()
        if tensor.numel() > largest:
            raise ModelFileError(
                f"{path}: {where} holds {tensor.numel():,} values, more than the {size:,} "
                "parameters of the model its config describes: refused before loading it"
            )
    if total > MAX_COPIES * largest:
        raise ModelFileError(
            f"{path}: its tensors hold {total:,} values, more than {MAX_COPIES} times the "
            f"{size:,} parameters of the model its config describes: refused before loading them"
        )


def _shape(shape: tuple | None, absent: str) -> str:
    return absent if shape is None else f"({', '.join(map(str, shape))})"


def _config_line(cfg: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(cfg).items() if k != "dropout")


def _tensors(value: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a loaded record, with where it sits (``train_state.optimizer...``)."""
    if torch.is_tensor(value):
        yield where or "the file", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{where}[{i}]")


def strip_checkpoint(record: dict, half: bool = False, info: dict | None = None) -> dict:
    """A model-file record without the training state, optionally with float16 weights.

    float16 halves the file; :func:`asr.transcribe.build_recognizer` computes in float32 anyway.
    """
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in record["state_dict"].items()
    }
    merged = {**record.get("info", {}), **(info or {})}
    return model_record(record["features"], record["model"], record["tokens"], state, merged)


def moving_average_record(record: dict, path: str | Path) -> dict:
    """The model-file record of the moving average of the weights (``train.ema_decay``) that the
    training checkpoint ``record`` (read from ``path``) carries beside its trained weights.

    Raises:
        ModelFileError: ``record`` holds no moving average (not a checkpoint, or trained without).
    """
    saved = record.get("train_state", {}).get("ema")
    if not saved:
        raise ModelFileError(
            f"{path}: holds no moving average of the weights (a training checkpoint of a run "
            "with train.ema_decay, such as its last.pt, does)"
        )
    # AveragedModel's state: its count ("n_averaged") and the model's weights under "module."
    state = {k.removeprefix("module."): v for k, v in saved.items() if k.startswith("module.")}
    # the checkpoint's scores of the average (ema_valid_wer, ...) are this file's own, and win
    # over any of the trained weights' under the same name
    saved_info = record.get("info", {})
    info = {k: v for k, v in saved_info.items() if not k.startswith("ema_")}
    info |= {k.removeprefix("ema_"): v for k, v in saved_info.items() if k.startswith("ema_")}
    info["moving_average_of"] = str(path)
    return model_record(record["features"], record["model"], record["tokens"], state, info)


def without_lhuc(record: dict) -> dict:
    """A model-file record whose LHUC scales (``model.lhuc``), if any, are folded into the
    weights that read them (:func:`asr.model.fold_lhuc`, in float32): the same function as a
    plain model, which every tool takes; a record without them is returned as it is."""
    if not record["model"].get("lhuc"):
        return record
    from asr.model import fold_lhuc

    state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    return record | {"state_dict": fold_lhuc(state), "model": record["model"] | {"lhuc": False}}


def average_model_files(paths: list[str | Path]) -> dict:
    """One model file's record whose weights are the element-wise mean of ``paths``' weights.

    For stages of one staged training (each started from the last one's weights) or epochs of one
    run; the files must agree on features, model shape (dropout aside, LHUC scales folded into
    the weights first: :func:`without_lhuc`) and vocabulary. The mean is
    taken in float32 (a float16 release file counts as its float32 values) and stored in float32.
    A file named twice counts twice (``a b b``: one third ``a``, two thirds ``b``). ``info`` keeps
    what every file's info agrees on (e.g. the manifests), and ``averaged_from`` lists each file
    with its own info (its epoch, dev WER, seed): none of those describes the mean.

    Raises:
        ModelFileError: a file does not load, or differs from the first in shape or vocabulary.
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs two model files or more, got {len(paths)}")
    # LHUC scales folded into the weights: files with and without them average
    records = [without_lhuc(read_model_file(p)) for p in paths]
    first, first_path = records[0], paths[0]

    def shape(record: dict) -> dict:
        return {k: v for k, v in record["model"].items() if k not in ("dropout", "lhuc")}

    for path, record in zip(paths[1:], records[1:]):
        for key, part in (("features", lambda r: r["features"]), ("model", shape)):
            if part(record) != part(first):
                raise ModelFileError(
                    f"{path}: its {key} config differs from {first_path}'s "
                    f"({part(record)} against {part(first)}): only one model's files average"
                )
        if record["tokens"] != first["tokens"]:
            raise ModelFileError(f"{path}: its vocabulary differs from {first_path}'s")
        theirs, ours = record["state_dict"], first["state_dict"]
        bad = sorted(set(theirs) ^ set(ours)) or [
            k for k in ours if theirs[k].shape != ours[k].shape
        ]
        if bad:
            raise ModelFileError(f"{path}: its weights do not match {first_path}'s (e.g. {bad[0]})")
    state = mean_state_dict([r["state_dict"] for r in records])
    infos = [r.get("info", {}) for r in records]
    info = {k: v for k, v in infos[0].items() if all(i.get(k, object()) == v for i in infos)}
    info["averaged_from"] = [{"path": str(p), **i} for p, i in zip(paths, infos)]
    return model_record(first["features"], first["model"], first["tokens"], state, info)


def average_weights(paths: list[str | Path]) -> dict:
    """The element-wise mean of the state dicts saved in ``paths`` (non-float entries: the last's).

    Raises:
        ModelFileError: a file is not a readable state dict.
    """
    states = []
    for path in paths:
        try:
            states.append(torch.load(path, map_location="cpu", weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise ModelFileError(f"{path}: not a readable set of weights ({exc!r})") from None
    mean = mean_state_dict(states)
    return {k: v.to(states[-1][k].dtype) for k, v in mean.items()}


def mean_state_dict(states: list[dict]) -> dict:
    """The element-wise float32 mean of state dicts with the same keys (non-float entries: the
    last's)."""
    return {
        k: sum(s[k].float() for s in states) / len(states) if v.is_floating_point() else v
        for k, v in states[-1].items()
    }
