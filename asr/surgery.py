"""Weight surgery: a smaller model's weights grown into a larger one that starts out computing
the same function, and a training run's start from a model file (``train.init_from``).

A narrower model (fewer units per layer) is widened by :func:`widen_state_dict`, a shallower one
(fewer recurrent layers) deepened by :func:`deepen_state_dict`; :func:`init_weights` checks the
file against the config and applies whichever is needed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import torch

from asr.checkpoint import ModelFileError, read_model_file, without_lhuc
from asr.config import Config, ModelConfig
from asr.model import AcousticModel
from asr.text import Tokenizer

# the log lines of a run's start belong to the training run's log
log = logging.getLogger("asr.train")

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def widen_state_dict(
    state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    old_hidden: int,
    generator: torch.Generator | None = None,
    noise: float = 0.01,
) -> dict[str, torch.Tensor]:
    """A state dict of an :class:`AcousticModel` with ``hidden_size`` ``old_hidden``, widened to
    ``cfg.hidden_size`` units per direction and layer so that the wider model computes the same
    function (Net2WiderNet, Chen et al. 2016).

    Each new unit copies the incoming weights (all gates, input and recurrent) of an old unit
    chosen at random; every weight *leaving* a unit that now has ``c`` copies (the next layer's
    input, the recurrent matrix, the output layer) is divided by ``c``. Copies see the same inputs
    and start from the same state, so their outputs are equal and the sum that reads them is
    unchanged. ``noise`` (relative to each matrix's standard deviation) is added to the new
    copies' incoming weights so that they can drift apart; with ``noise=0`` the widened model's
    output equals the old one's to rounding. Dropout between layers breaks the symmetry too.

    Args:
        state: the narrower model's state dict (float tensors).
        cfg: the wider model's shape; only ``hidden_size`` may differ from the narrower one's.
        old_hidden: the narrower model's ``hidden_size`` (H); ``cfg.hidden_size`` (H') >= H.
    """
    new_hidden = cfg.hidden_size
    if new_hidden < old_hidden:
        raise ValueError(f"cannot widen {old_hidden} units to fewer ({new_hidden})")
    gates = GATES[cfg.rnn_type]
    dirs = ("fwd", "bwd") if cfg.bidirectional else ("fwd",)
    extra = new_hidden - old_hidden
    # source[j]: the old unit new unit j copies; units 0..H-1 keep their place
    picks = torch.randperm(old_hidden, generator=generator)[:extra]
    if extra > old_hidden:  # more than doubling: draw the rest with replacement
        more = torch.randint(old_hidden, (extra - old_hidden,), generator=generator)
        picks = torch.cat([picks, more])
    source = torch.cat([torch.arange(old_hidden), picks])  # (H',)
    copies = torch.bincount(source, minlength=old_hidden).float()  # (H,)
    share = 1.0 / copies[source]  # (H',): what each copy passes on of its unit's output
    rows = torch.cat([k * old_hidden + source for k in range(gates)])  # (gates*H',)

    def split_inputs(w: torch.Tensor) -> torch.Tensor:
        """Columns that read a layer's ``len(dirs) * H`` outputs -> ``len(dirs) * H'`` columns."""
        cols = torch.cat([d * old_hidden + source for d in range(len(dirs))])
        return w[:, cols] * share.repeat(len(dirs))[None, :]

    def jitter(w: torch.Tensor) -> torch.Tensor:
        """Noise on the rows of the new units only (``w`` has gates*H' rows)."""
        if noise <= 0 or extra == 0:
            return w
        fresh = torch.zeros(gates, new_hidden, 1, dtype=torch.bool)
        fresh[:, old_hidden:] = True
        scale = noise * w.std()
        eps = torch.randn(w.shape, generator=generator, dtype=w.dtype) * scale
        return w + eps * fresh.reshape(gates * new_hidden, 1)

    out = dict(state)
    for layer in range(cfg.num_layers):
        for d in dirs:
            p = f"rnns.{layer}.{d}."
            w_ih = state[p + "weight_ih_l0"][rows]  # (gates*H', I)
            if layer > 0:
                w_ih = split_inputs(w_ih)  # (gates*H', D*H')
            w_hh = state[p + "weight_hh_l0"][rows][:, source] * share[None, :]  # (gates*H', H')
            out[p + "weight_ih_l0"] = jitter(w_ih)
            out[p + "weight_hh_l0"] = jitter(w_hh)
            out[p + "bias_ih_l0"] = state[p + "bias_ih_l0"][rows]
            out[p + "bias_hh_l0"] = state[p + "bias_hh_l0"][rows]
    out["output.weight"] = split_inputs(state["output.weight"])  # (V, D*H')
    return out


def deepen_state_dict(
    state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    old_layers: int,
    gain: float = 0.25,
    gate_bias: float = 4.0,
) -> dict[str, torch.Tensor]:
    """A state dict of an :class:`AcousticModel` with ``old_layers`` recurrent layers, deepened to
    ``cfg.num_layers`` by new layers on top that start out passing their input through (the
    recurrent counterpart of Net2DeeperNet, Chen et al. 2016).

    A recurrent layer cannot be an identity exactly: each new direction's cell reads its own
    direction's half of the layer below (the forward cell the forward units, the backward cell the
    backward ones) through ``gain * I`` into its candidate, with no recurrence, and its gates are
    held open or shut by their biases (LSTM: input and output gates open, forget gate shut; GRU:
    update gate shut). A unit's output is then about ``s * tanh(gain * x)`` for its input ``x``
    (``s`` the open gates' product), near ``s * gain * x`` for a recurrent layer's outputs in
    (-1, 1): the output layer's weights are divided by ``s * gain`` for each new layer. With
    ``gain`` 0.25 the deepened model's outputs are within about 4% of the shallower one's at the
    extremes of ``tanh``; training takes it from there (every new weight has a nonzero gradient).

    Args:
        state: the shallower model's state dict (float tensors).
        cfg: the deeper model's shape; only ``num_layers`` may differ from the shallower one's.
        old_layers: the shallower model's ``num_layers`` (L); ``cfg.num_layers`` (L') >= L.
        gain: the new layers' input gain (smaller: closer to an identity, smaller outputs).
        gate_bias: how far the new gates' biases hold them open or shut.
    """
    if cfg.num_layers < old_layers:
        raise ValueError(f"cannot deepen {old_layers} layers to fewer ({cfg.num_layers})")
    hidden, gates = cfg.hidden_size, GATES[cfg.rnn_type]
    dirs = ("fwd", "bwd") if cfg.bidirectional else ("fwd",)
    size = hidden * len(dirs)  # a recurrent layer's output size, and the new layers' input
    open_ = torch.sigmoid(torch.tensor(gate_bias)).item()
    # which block of rows is the candidate, and each gate's bias (+: open, -: shut), by cell
    candidate, biases, scale = {
        "lstm": (2, {0: gate_bias, 1: -gate_bias, 3: gate_bias}, open_**2),  # i, f, g, o
        "gru": (2, {1: -gate_bias}, open_),  # r, z, n: z shut keeps the candidate
        "rnn": (0, {}, 1.0),
    }[cfg.rnn_type]
    out = dict(state)
    for layer in range(old_layers, cfg.num_layers):
        for d, name in enumerate(dirs):
            p = f"rnns.{layer}.{name}."
            w_ih = torch.zeros(gates * hidden, size)
            rows = slice(candidate * hidden, (candidate + 1) * hidden)
            w_ih[rows, d * hidden : (d + 1) * hidden] = gain * torch.eye(hidden)
            bias = torch.zeros(gates, hidden)
            for gate, value in biases.items():
                bias[gate] = value
            out[p + "weight_ih_l0"] = w_ih
            out[p + "weight_hh_l0"] = torch.zeros(gates * hidden, hidden)
            out[p + "bias_ih_l0"] = bias.reshape(-1)
            out[p + "bias_hh_l0"] = torch.zeros(gates * hidden)
    # each new layer scales what passes through it by about scale * gain
    out["output.weight"] = state["output.weight"] / (scale * gain) ** (cfg.num_layers - old_layers)
    return out


def init_weights(model: AcousticModel, cfg: Config, tokenizer: Tokenizer, path: str) -> None:
    """Load the weights of the model file ``path`` into ``model`` (to fine-tune it).

    A model file of the same shape but fewer units per layer (``model.hidden_size``) is widened
    into ``model`` by :func:`widen_state_dict`, one with fewer recurrent layers
    (``model.num_layers``) deepened by :func:`deepen_state_dict` (new layers on top,
    passing their input through): the larger model starts out computing what the smaller one did
    (exactly when widened, to a few percent when deepened), and its new weights train from there.
    A model with LHUC scales (``model.lhuc``) starts them at 1; a file's own scales are folded
    into its weights first (:func:`asr.checkpoint.without_lhuc`).

    Raises:
        ModelFileError: the file is not a model file, or its features, model shape or
            vocabulary differ from ``cfg``'s (the weights would not mean the same thing).
    """
    record = without_lhuc(read_model_file(path))  # a file's own LHUC scales, into its weights
    wanted = {"features": asdict(cfg.features), "model": asdict(cfg.model)}
    theirs_hidden = record["model"].get("hidden_size", cfg.model.hidden_size)
    theirs_layers = record["model"].get("num_layers", cfg.model.num_layers)
    widen = theirs_hidden < cfg.model.hidden_size
    deepen = theirs_layers < cfg.model.num_layers
    for section, mine in wanted.items():
        theirs = record[section]
        # dropout does not change what the weights mean: fine-tuning may set its own; a narrower
        # or shallower model is widened or deepened into this one (below)
        free = {"dropout", "lhuc"} | ({"hidden_size"} if widen else set())
        free |= {"num_layers"} if deepen else set()
        differ = sorted(k for k in mine if k not in free and k in theirs and theirs[k] != mine[k])
        if differ:
            shown = ", ".join(
                f"{section}.{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in differ
            )
            raise ModelFileError(f"{path}: cannot initialise from this model ({shown})")
    if record["tokens"] != tokenizer.to_list():
        raise ModelFileError(f"{path}: cannot initialise from this model (another vocabulary)")
    state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    if widen:
        generator = torch.Generator().manual_seed(cfg.train.seed)
        # widened layer by layer as they are in the file; deepened after (below) if it has fewer
        wider = replace(cfg.model, num_layers=theirs_layers)
        state = widen_state_dict(state, wider, theirs_hidden, generator)
        log.info(
            f"{path}: {theirs_hidden} units per layer and direction widened to "
            f"{cfg.model.hidden_size} (each new unit a copy of an old one: the same outputs)"
        )
    if deepen:
        state = deepen_state_dict(state, cfg.model, theirs_layers)
        log.info(
            f"{path}: {theirs_layers} recurrent layers deepened to {cfg.model.num_layers} (the "
            "new layers on top pass their input through: about the same outputs)"
        )
    if model.lhuc is not None:  # starting at a scale of 1: the same function
        state |= {f"lhuc.{i}": torch.zeros_like(r) for i, r in enumerate(model.lhuc)}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: cannot initialise from this model ({exc})") from None
    info = record.get("info", {})
    seeds = [info.get("seed")] + [part.get("seed") for part in info.get("averaged_from", [])]
    if cfg.train.seed in seeds:  # an averaged file: any of its parts' seeds replays draws
        log.warning(
            f"{path} was trained with train.seed {cfg.train.seed} too: this run replays its batch "
            "order and augmentation draws, epoch for epoch (set another train.seed for new ones)"
        )
