"""End to end: a tiny model trains on the shipped example clips, saves, reloads and resumes exactly."""

import logging
import math

import pytest
import torch

from asr.config import load_config
from asr.train import train
from asr.train_setup import lr_lambda
from asr.transcribe import load_model
from tests.conftest import DATA, ROOT


def _cfg(example_manifest, **over):
    overrides = [
        f"data.train={example_manifest}",
        f"data.valid={example_manifest}",
        "data.num_workers=0",
        "data.batch_seconds=2.0",
        "data.max_batch_size=4",
        "train.warmup_steps=5",
        "train.lr=0.005",
        "train.log_every=1",
    ] + [f"{k}={v}" for k, v in over.items()]
    return load_config([ROOT / "conf/model/tiny.yaml"], overrides)


def test_loss_falls_and_model_reloads(tmp_path, example_manifest, example_records):
    cfg = _cfg(example_manifest, **{"train.epochs": 6})
    train(cfg, tmp_path, progress=False)
    import json

    history = json.loads((tmp_path / "history.json").read_text())
    losses = [h["train_loss"] for h in history]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0], losses
    for name in ("config.yaml", "train.log", "curve.png", "last.pt", "best.pt"):
        assert (tmp_path / name).is_file(), name
    assert "epoch 6:" in (tmp_path / "train.log").read_text()

    files = [DATA / r["audio"] for r in example_records[:4]]
    a, b = load_model(tmp_path / "last.pt"), load_model(tmp_path / "last.pt")
    from asr.audio import load_audio
    from asr.data import Example, collate

    batch = collate([Example(str(i), load_audio(f), [], "") for i, f in enumerate(files)])
    lp_a, lens_a = a.log_probs(batch.waves, batch.wav_lens)
    lp_b, lens_b = b.log_probs(batch.waves, batch.wav_lens)
    assert torch.equal(lp_a, lp_b) and torch.equal(lens_a, lens_b)
    # transcribing a file alone gives the greedy text of its own log-probs
    alone = a.transcribe(files[0])
    from asr.decode import greedy_decode

    assert alone.text == greedy_decode(lp_a[:1, : lens_a[0]], lens_a[:1], a.tokenizer)[0].text


def test_seeded_runs_are_bit_identical(tmp_path, example_manifest):
    for name in ("a", "b"):
        train(_cfg(example_manifest, **{"train.epochs": 2}), tmp_path / name, progress=False)
    a = load_model(tmp_path / "a" / "last.pt").model.state_dict()
    b = load_model(tmp_path / "b" / "last.pt").model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fine_tuning_starts_from_the_given_weights(tmp_path, example_manifest):
    """``train.init_from`` loads a model file's weights; a model of another shape is refused by name."""
    from asr.checkpoint import ModelFileError

    train(_cfg(example_manifest, **{"train.epochs": 2}), tmp_path / "base", progress=False)
    base = tmp_path / "base" / "last.pt"
    # lr 0: the fine-tuned model keeps the weights it started from (dropout may differ)
    cfg = _cfg(
        example_manifest,
        **{"train.epochs": 1, "train.lr": 0.0, "train.init_from": base, "model.dropout": 0.3},
    )
    train(cfg, tmp_path / "tuned", progress=False)
    a = load_model(base).model.state_dict()
    b = load_model(tmp_path / "tuned" / "last.pt").model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (tmp_path / "tuned" / "train.log").read_text()
    assert f"weights from {base}" in log
    # the same seed as the run it starts from: warned that it replays that run's draws
    assert f"{base} was trained with train.seed 1234 too: this run replays" in log

    # an average of stages (asr export --average) warns if any of its parts had the seed
    from asr.checkpoint import average_model_files
    from asr.features import FeatureExtractor
    from asr.model import AcousticModel
    from asr.surgery import init_weights
    from asr.text import Tokenizer

    record = torch.load(base, weights_only=True)
    other = tmp_path / "other.pt"
    torch.save({**record, "info": {**record["info"], "seed": 5}}, other)
    mean = tmp_path / "mean.pt"
    torch.save(average_model_files([other, base]), mean)
    assert "seed" not in torch.load(mean, weights_only=True)["info"]  # the parts' seeds differ
    for seed, warned in ((1234, True), (5, True), (7, False)):
        cfg = _cfg(example_manifest, **{"train.seed": seed})
        tokenizer = Tokenizer()
        model = AcousticModel(
            cfg.model, FeatureExtractor(cfg.features).num_features, len(tokenizer)
        )
        handler = _Records()
        logging.getLogger("asr").addHandler(handler)
        try:
            init_weights(model, cfg, tokenizer, str(mean))
        finally:
            logging.getLogger("asr").removeHandler(handler)
        said = any(f"train.seed {seed} too" in m for m in handler.messages)
        assert said == warned, (seed, handler.messages)

    narrower = _cfg(example_manifest, **{"train.init_from": base, "model.hidden_size": 24})
    with pytest.raises(ModelFileError, match=r"last\.pt: cannot initialise.*model\.hidden_size"):
        train(narrower, tmp_path / "narrower", progress=False)

    # a wider model starts from the narrower one's function (its units copied), then trains on
    wider = _cfg(
        example_manifest,
        **{
            "train.epochs": 1,
            "train.lr": 0.0,
            "train.init_from": base,
            "model.hidden_size": 48,
            "train.seed": 8,
        },
    )
    train(wider, tmp_path / "wider", progress=False)
    log = (tmp_path / "wider" / "train.log").read_text()
    assert "32 units per layer and direction widened to 48" in log
    assert "replays" not in log  # a seed of its own
    narrow, wide = load_model(base), load_model(tmp_path / "wider" / "last.pt")
    assert wide.model.rnns[0].fwd.weight_hh_l0.shape == (4 * 48, 48)
    wave = torch.randn(1, 16_000) * 0.1
    lp_n, _ = narrow.log_probs(wave, torch.tensor([16_000]))
    lp_w, _ = wide.log_probs(wave, torch.tensor([16_000]))
    assert torch.allclose(lp_n, lp_w, atol=0.05)

    # a deeper model starts from the shallower one's function (new layers on top pass their
    # input through), then trains on; a shallower one cannot start from it
    over = {"train.epochs": 1, "train.lr": 0.0, "train.init_from": base, "train.seed": 9}
    train(
        _cfg(example_manifest, **over, **{"model.num_layers": 2}),
        tmp_path / "deeper",
        progress=False,
    )
    log = (tmp_path / "deeper" / "train.log").read_text()
    assert "1 recurrent layers deepened to 2" in log
    deep = load_model(tmp_path / "deeper" / "last.pt")
    assert len(deep.model.rnns) == 2
    lp_d, _ = deep.log_probs(wave, torch.tensor([16_000]))
    assert (lp_n.exp() - lp_d.exp()).abs().max() < 0.05
    over["train.init_from"] = tmp_path / "deeper" / "last.pt"
    with pytest.raises(ModelFileError, match=r"last\.pt: cannot initialise.*model\.num_layers"):
        train(_cfg(example_manifest, **over), tmp_path / "shallower", progress=False)


def _crash_then_resume(cfg, out, after_epoch, monkeypatch, at_batch=None):
    """Run ``cfg`` into ``out``, stopping as a crash would: after ``after_epoch`` epochs (the
    epoch's files written), or, with ``at_batch``, as the run's training batch ``at_batch``
    (counted from 1 over all epochs) starts its loss, so what was trained since the last
    mid-epoch checkpoint is lost. Then run it again: it resumes from ``last.pt``."""
    import asr.train as T
    import asr.train_state as S

    real_plot, real_loss, batches = S.plot_history, T.ctc_loss, [0]

    def crash(history, path):
        real_plot(history, path)
        if len(history) == after_epoch:
            raise KeyboardInterrupt

    def crash_in_epoch(*args):
        batches[0] += 1
        if batches[0] == at_batch:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(S, "plot_history", crash)
    monkeypatch.setattr(T, "ctc_loss", crash_in_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)
    monkeypatch.setattr(S, "plot_history", real_plot)
    monkeypatch.setattr(T, "ctc_loss", real_loss)
    train(cfg, out, progress=False)


def _assert_same_weights(a_dir, b_dir):
    a = load_model(a_dir / "last.pt").model.state_dict()
    b = load_model(b_dir / "last.pt").model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, example_manifest, monkeypatch):
    """Stop a 3-epoch run after epoch 2 (as a crash would), resume it, compare with an unbroken run."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(_cfg(example_manifest, **{"train.epochs": 3}), straight, progress=False)
    _crash_then_resume(_cfg(example_manifest, **{"train.epochs": 3}), broken, 2, monkeypatch)
    _assert_same_weights(straight, broken)
    assert "resumed from" in (broken / "train.log").read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_is_exact_with_loader_workers_and_augmentation(
    tmp_path, example_manifest, monkeypatch, workers
):
    """As above, with loader workers drawing speed, noise and joins, and SpecAugment on."""
    over = {
        "train.epochs": 3,
        "data.num_workers": workers,
        "augment.spec_augment": True,
        "augment.speed_factors": "[0.9,1.0,1.1]",
        "augment.noise_prob": 0.5,
        "augment.join_prob": 0.5,
        "augment.pad_prob": 0.5,
    }
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(_cfg(example_manifest, **over), straight, progress=False)
    _crash_then_resume(_cfg(example_manifest, **over), broken, 1, monkeypatch)
    _assert_same_weights(straight, broken)


@pytest.mark.parametrize("workers, accumulate, every", [(0, 1, 2), (2, 2, 1)])
def test_a_run_stopped_inside_an_epoch_resumes_to_the_same_weights(
    tmp_path, example_manifest, monkeypatch, workers, accumulate, every
):
    """``train.checkpoint_every_steps`` writes ``last.pt`` inside an epoch. A run stopped in
    epoch 2 as a crash would, one batch after such a checkpoint (that batch's work lost; with
    accumulation, in the middle of a step), resumes at the checkpoint's batch and ends with the
    weights and the history of a run never interrupted nor checkpointed inside an epoch. (A real
    ``kill -9`` inside an epoch: tests/test_robustness.py.)"""
    import json

    over = {
        "train.epochs": 2,
        "data.max_batch_size": 2,  # 10 clips: 5 batches an epoch
        "data.num_workers": workers,
        "train.accumulate_grad": accumulate,
        "augment.speed_factors": "[0.9,1.0,1.1]",
        "augment.noise_prob": 0.5,
        "augment.join_prob": 0.5,
        "augment.warp": 0.1,
    }
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(_cfg(example_manifest, **over), straight, progress=False)
    cfg = _cfg(example_manifest, **over, **{"train.checkpoint_every_steps": every})
    _crash_then_resume(cfg, broken, None, monkeypatch, at_batch=5 + 4)  # epoch 2, batch 4
    _assert_same_weights(straight, broken)
    steps = 2 // accumulate  # the last checkpoint before batch 4: after batch 2
    assert f"in epoch 2 after step {steps} (2 batches)" in (broken / "train.log").read_text()
    a, b = (json.loads((d / "history.json").read_text()) for d in (straight, broken))
    for key in ("train_loss", "valid_loss", "valid_wer", "lr"):
        assert [h[key] for h in a] == [h[key] for h in b], key


def test_moving_average_starts_from_the_weights_and_follows_them():
    from asr.train_setup import make_ema

    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = make_ema(model, 0.75)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)
    for k, v in ema.module.state_dict().items():
        assert torch.allclose(v, 0.75 * start[k] + 0.25 * (start[k] + 1.0)), k
    ema.update_parameters(model)  # a second step moves a quarter of the rest of the way
    for k, v in ema.module.state_dict().items():
        assert torch.allclose(v, start[k] + 0.25 + 0.75 * 0.25), k


def test_moving_average_is_validated_saved_and_resumed_exactly(
    tmp_path, example_manifest, monkeypatch, capsys
):
    """With ``train.ema_decay`` validation and the epochs' weights (and ``best.pt``) are the
    moving average, ``last.pt`` trains on from the raw weights (those of a run without it), and a
    run stopped inside an epoch resumes to the same raw weights and the same average as an
    unbroken run."""
    import json

    over = {
        "train.epochs": 2,
        "data.max_batch_size": 2,  # 10 clips: 5 batches an epoch, 3 steps of 2 (the last 1)
        "train.accumulate_grad": 2,
        "train.ema_decay": 0.8,
        "train.average_last": 1,
        "augment.speed_factors": "[0.9,1.0,1.1]",
    }
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(_cfg(example_manifest, **over), straight, progress=False)
    cfg = _cfg(example_manifest, **over, **{"train.checkpoint_every_steps": 1})
    _crash_then_resume(cfg, broken, None, monkeypatch, at_batch=5 + 4)
    assert "in epoch 2 after step 1 (2 batches)" in (broken / "train.log").read_text()
    _assert_same_weights(straight, broken)
    averages = [
        torch.load(d / "last.pt", weights_only=True)["train_state"]["ema"]
        for d in (straight, broken)
    ]
    assert int(averages[0]["n_averaged"]) == 1 + 2 * 3  # the start, then once per step
    epoch2 = torch.load(straight / "epochs" / "epoch2.pt", weights_only=True)
    # the tiny model's WER is 100% after either epoch: best.pt is the last epoch's average
    best = torch.load(straight / "best.pt", weights_only=True)
    assert best["info"]["epoch"] == 2 and best["info"]["valid_wer"] == 1.0
    for k, v in epoch2.items():
        assert torch.equal(best["state_dict"][k], v), k
    raw = load_model(straight / "last.pt").model.state_dict()
    moved = 0
    for k, v in epoch2.items():
        assert torch.equal(averages[0][f"module.{k}"], averages[1][f"module.{k}"]), k
        assert torch.equal(v, averages[0][f"module.{k}"]), k
        moved += not torch.equal(v, raw[k])
    assert moved > 0  # the average lags the trained weights
    a, b = (json.loads((d / "history.json").read_text()) for d in (straight, broken))
    assert [h["valid_loss"] for h in a] == [h["valid_loss"] for h in b]
    assert "moving average of the weights (decay 0.8)" in (straight / "train.log").read_text()
    # best.pt written as an epoch improves (no average_last): the average too
    one = tmp_path / "one"
    train(_cfg(example_manifest, **{**over, "train.epochs": 1, "train.average_last": 0}), one)
    best = torch.load(one / "best.pt", weights_only=True)
    last = torch.load(one / "last.pt", weights_only=True)
    assert "valid_wer" in best["info"] and "ema_valid_wer" in last["info"]
    for k, v in best["state_dict"].items():
        assert torch.equal(last["train_state"]["ema"][f"module.{k}"], v), k
    # the average changes what is validated, not what is trained
    plain = tmp_path / "plain"
    train(_cfg(example_manifest, **{**over, "train.ema_decay": 0}), plain, progress=False)
    _assert_same_weights(straight, plain)
    c = json.loads((plain / "history.json").read_text())
    assert [h["valid_loss"] for h in a] != [h["valid_loss"] for h in c]

    # asr export --ema: the average as a model file of its own; a file without one is refused
    from asr.cli import main

    out = tmp_path / "ema.pt"
    assert main(["export", "--model", str(straight / "last.pt"), "--ema", "--out", str(out)]) == 0
    exported = load_model(out).model.state_dict()
    for k, v in exported.items():
        assert torch.equal(v, averages[0][f"module.{k}"]), k
    info = torch.load(out, weights_only=True)["info"]
    assert info["valid_wer"] == a[-1]["valid_wer"] and "ema_valid_wer" not in info
    assert main(["export", "--model", str(plain / "last.pt"), "--ema", "--out", str(out)]) == 2
    assert "holds no moving average of the weights" in capsys.readouterr().err


def test_a_moving_average_turned_on_or_off_at_a_resume_is_said(tmp_path, example_manifest, caplog):
    """Resumed with ``train.ema_decay`` from a checkpoint without an average, the average starts
    from the resumed weights; resumed without it, the checkpoint's average is dropped. Both said."""
    from types import SimpleNamespace

    from asr.train_setup import make_ema
    from asr.train_state import _restore_ema

    resumed, other = torch.nn.LSTM(3, 4), torch.nn.LSTM(3, 4)  # different random weights
    run = SimpleNamespace(model=resumed, ema=make_ema(other, 0.9))
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        _restore_ema(run, None, tmp_path / "last.pt")
    for k, v in resumed.state_dict().items():
        assert torch.equal(run.ema.module.state_dict()[k], v), k
    assert "has no moving average of the weights: it starts from these weights" in caplog.text

    # the same through asr train: off, then on, then off again
    train(_cfg(example_manifest, **{"train.epochs": 1}), tmp_path, progress=False)
    on = {"train.epochs": 2, "train.ema_decay": 0.9}
    train(_cfg(example_manifest, **on), tmp_path, progress=False)
    assert "ema" in torch.load(tmp_path / "last.pt", weights_only=True)["train_state"]
    train(_cfg(example_manifest, **{"train.epochs": 3}), tmp_path, progress=False)
    log_text = (tmp_path / "train.log").read_text()
    assert "has no moving average of the weights: it starts from these weights" in log_text
    assert "written with train.ema_decay=0, resumed with 0.9" in log_text
    assert "its moving average of the weights is dropped (train.ema_decay=0)" in log_text
    assert "ema" not in torch.load(tmp_path / "last.pt", weights_only=True)["train_state"]


def test_schedule_warms_up_then_decays():
    f = lr_lambda(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_missing_manifests_are_named(tmp_path):
    cfg = load_config([], ["data.train=nope.jsonl", "data.valid=nope.jsonl"])
    with pytest.raises(ValueError, match="nope.jsonl: manifest not found"):
        train(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="data.train and data.valid"):
        train(load_config(), tmp_path, progress=False)


@pytest.mark.gpu
def test_cuda_mixed_precision_training_and_padding(tmp_path, example_manifest):
    cfg = _cfg(
        example_manifest, **{"train.epochs": 2, "train.device": "cuda", "train.precision": "auto"}
    )
    record = train(cfg, tmp_path, progress=False)
    assert math.isfinite(record.train_loss)
    rec = load_model(tmp_path / "last.pt", device="cuda")
    waves, lens = torch.randn(2, 16_000), torch.tensor([16_000, 7_000])
    batched, out_lens = rec.log_probs(waves, lens)
    alone, _ = rec.log_probs(waves[1:, :7_000], lens[1:])
    assert torch.allclose(batched[1, : out_lens[1]], alone[0], atol=1e-4)


def test_average_of_the_last_epochs(tmp_path, example_manifest):
    train(
        _cfg(example_manifest, **{"train.epochs": 3, "train.average_last": 2}),
        tmp_path,
        progress=False,
    )
    epochs = [torch.load(tmp_path / "epochs" / f"epoch{e}.pt", weights_only=True) for e in (2, 3)]
    assert not (tmp_path / "epochs" / "epoch1.pt").exists()  # only the last two are kept
    averaged = load_model(tmp_path / "averaged.pt").model.state_dict()
    for k, v in averaged.items():
        if v.is_floating_point():
            assert torch.allclose(v, (epochs[0][k] + epochs[1][k]) / 2, atol=1e-6), k
    assert "average of epochs 2-3" in (tmp_path / "train.log").read_text()


def test_confidence_penalty_softens_the_outputs(tmp_path, example_manifest, example_records):
    """The same seeded run with a confidence penalty ends with higher-entropy outputs."""
    from asr.audio import load_audio
    from asr.data import Example, collate
    from asr.model import frame_entropy

    files = [DATA / r["audio"] for r in example_records[:4]]
    batch = collate([Example(str(i), load_audio(f), [], "") for i, f in enumerate(files)])
    entropy = {}
    for penalty in (0.0, 3.0):
        out = tmp_path / str(penalty)
        cfg = _cfg(example_manifest, **{"train.epochs": 6, "train.confidence_penalty": penalty})
        train(cfg, out, progress=False)
        log_probs, out_lens = load_model(out / "last.pt").log_probs(batch.waves, batch.wav_lens)
        entropy[penalty] = float(frame_entropy(log_probs, out_lens))
    assert entropy[3.0] > entropy[0.0] + 0.1, entropy  # nats


def test_the_logged_loss_is_ctc_alone_under_a_penalty(tmp_path, example_manifest):
    """lr 0 keeps the weights, so the same batches give the same CTC loss with or without the
    penalty: the training loss logged leaves the entropy term out."""
    import json

    losses = []
    for penalty in (0.0, 3.0):
        out = tmp_path / str(penalty)
        over = {"train.epochs": 1, "train.lr": 0.0, "train.confidence_penalty": penalty}
        train(_cfg(example_manifest, **over), out, progress=False)
        losses.append(json.loads((out / "history.json").read_text())[0]["train_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6), losses
    assert "loss: CTC - 3 x the outputs' mean frame entropy" in (out / "train.log").read_text()
    # resuming with another weight is allowed (a schedule change), but said where it happens
    same = {**over, "train.epochs": 2, "train.confidence_penalty": 0.0}
    train(_cfg(example_manifest, **same), tmp_path / "0.0", progress=False)
    log_text = (tmp_path / "0.0" / "train.log").read_text()
    assert "written with train.confidence_penalty=0, resumed with 3" not in log_text
    over = {**over, "train.epochs": 3, "train.confidence_penalty": 3.0}
    train(_cfg(example_manifest, **over), tmp_path / "0.0", progress=False)
    log_text = (tmp_path / "0.0" / "train.log").read_text()
    assert "written with train.confidence_penalty=0, resumed with 3" in log_text


def test_kl_to_init_keeps_a_fine_tuned_model_near_its_start(
    tmp_path, example_manifest, example_records
):
    """Fine-tuned from the same weights with the same seed, a run pulled towards init_from's
    outputs ends nearer them (mean frame KL) than one without; without init_from it is refused."""
    from asr.audio import load_audio
    from asr.data import Example, collate
    from asr.model import frame_kl

    train(_cfg(example_manifest, **{"train.epochs": 2}), tmp_path / "base", progress=False)
    base = tmp_path / "base" / "last.pt"
    files = [DATA / r["audio"] for r in example_records[:4]]
    batch = collate([Example(str(i), load_audio(f), [], "") for i, f in enumerate(files)])
    ref, out_lens = load_model(base).log_probs(batch.waves, batch.wav_lens)
    kl = {}
    for weight in (0.0, 20.0):
        out = tmp_path / str(weight)
        over = {"train.epochs": 4, "train.init_from": base, "train.kl_to_init": weight}
        train(_cfg(example_manifest, **over), out, progress=False)
        tuned, _ = load_model(out / "last.pt").log_probs(batch.waves, batch.wav_lens)
        kl[weight] = float(frame_kl(tuned, ref, out_lens))
    assert kl[20.0] < 0.5 * kl[0.0], kl
    assert "loss: CTC + 20 x the mean frame KL" in (tmp_path / "20.0" / "train.log").read_text()
    with pytest.raises(ValueError, match="kl_to_init needs train.init_from"):
        train(_cfg(example_manifest, **{"train.kl_to_init": 1.0}), tmp_path / "x", progress=False)


def test_frame_kl_is_zero_for_equal_outputs_and_ignores_padding():
    from asr.model import frame_kl

    a = torch.randn(2, 6, 5).log_softmax(-1)
    b = torch.randn(2, 6, 5).log_softmax(-1)
    assert float(frame_kl(a, a, torch.tensor([6, 4]))) == pytest.approx(0.0, abs=1e-6)
    padded = b.clone()
    padded[1, 4:] = a[1, 4:]  # frames past the second utterance's length differ: not counted
    lens = torch.tensor([6, 4])
    assert float(frame_kl(a, b, lens)) == pytest.approx(float(frame_kl(a, padded, lens)))
    assert float(frame_kl(a, b, lens)) > 0
    # a token the reference gives no probability (-inf, an fp16 overflow) adds nothing, not nan;
    # one the model gives none where the reference does is an infinite divergence (batch skipped)
    silent = a.clone()
    silent[0, 0] = torch.tensor([0.0, -float("inf"), -float("inf"), -float("inf"), -float("inf")])
    assert math.isfinite(float(frame_kl(a, silent, lens)))
    assert float(frame_kl(silent, a, lens)) == float("inf")


def test_two_gloo_ranks_match_one_process_with_accumulation(tmp_path, example_manifest):
    """torchrun, 2 CPU processes (gloo) x 1 utterance per step == 1 process accumulating 2,
    fine-tuning (rank 0 reads ``init_from``) with a moving average of the weights, which every
    rank must start from the same weights: validation shards score it.

    Then the 2-rank run resumes on 1 process and ends where the 1-process run ends.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys

    from asr.lm import build_arpa

    start = tmp_path / "start"  # weights unlike any seed's initial ones
    train(_cfg(example_manifest, **{"train.epochs": 1, "train.seed": 99}), start, progress=False)
    # validation also beam-decodes (train.valid_decoder): each rank decodes its share
    texts = [json.loads(line)["text"].split() for line in example_manifest.read_text().splitlines()]
    (tmp_path / "digits.arpa").write_text(build_arpa(texts, order=2))
    decoder_yaml = tmp_path / "decoder.yaml"
    decoder_yaml.write_text(
        "decoder:\n  kind: beam\n  beam_size: 8\n  lm: digits.arpa\n  word_score: 3\n"
    )
    same = {
        "data.max_batch_size": 1,
        "augment.spec_augment": False,
        "train.epochs": 1,
        "train.init_from": start / "last.pt",
        "train.ema_decay": 0.8,
        "train.valid_decoder": decoder_yaml,
    }
    one = tmp_path / "one"
    train(_cfg(example_manifest, **same, **{"train.accumulate_grad": 2}), one, progress=False)

    two = tmp_path / "two"
    overrides = [
        f"data.train={example_manifest}",
        f"data.valid={example_manifest}",
        "data.num_workers=0",
        "data.batch_seconds=2.0",
        "train.warmup_steps=5",
        "train.lr=0.005",
        "train.log_every=1",
        "train.device=cpu",
    ] + [f"{k}={v}" for k, v in same.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "asr", "train", "--out", str(two), "--no-progress"]
        + ["-c", str(ROOT / "conf/model/tiny.yaml"), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("valid WER") == 1  # only rank 0 prints
    a, b = (json.loads((d / "history.json").read_text())[0] for d in (one, two))
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-4)
    assert b["valid_wer"] == a["valid_wer"]  # sharded validation, gathered: the same set
    assert b["valid_decoder_wer"] == a["valid_decoder_wer"] is not None
    log = (two / "train.log").read_text()
    assert "2 rank(s) x 5 batches per epoch" in log
    wa = load_model(one / "last.pt").model.state_dict()
    wb = load_model(two / "last.pt").model.state_dict()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    ea, eb = (
        torch.load(d / "last.pt", weights_only=True)["train_state"]["ema"] for d in (one, two)
    )
    for k in ea:
        assert torch.allclose(ea[k].float(), eb[k].float(), atol=1e-5), k

    # resume either run for a second epoch on one process: the same weights at the end
    shutil.copytree(one, tmp_path / "one2")
    more = {**same, "train.epochs": 2, "train.accumulate_grad": 2}
    train(_cfg(example_manifest, **more), tmp_path / "one2", progress=False)
    train(_cfg(example_manifest, **more), two, progress=False)
    assert "another decoding" not in (two / "train.log").read_text()  # the same decoder, resumed
    wa = load_model(tmp_path / "one2" / "last.pt").model.state_dict()
    wb = load_model(two / "last.pt").model.state_dict()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k


def test_accumulation_counts_optimizer_steps(tmp_path, example_manifest):
    cfg = _cfg(example_manifest, **{"train.epochs": 1, "data.max_batch_size": 1})
    cfg.train.accumulate_grad = 3  # 10 batches -> steps of 3, 3, 3 and 1
    train(cfg, tmp_path, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=False)["train_state"]
    assert state["steps_per_epoch"] == 4 and state["scheduler"]["last_epoch"] == 4


class _Records(logging.Handler):
    """Collects the messages logged to it."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _scripted_decoder(monkeypatch, texts: list[str]) -> None:
    """``train.valid_decoder`` made a decoder that answers every utterance of the ``k``-th
    validation (each call of ``evaluate`` from the training loop) with ``texts[k]``: WERs
    chosen by the test, whatever the tiny model puts out."""
    import asr.train as train_module
    import asr.train_setup as setup_module
    from asr.decode import Hypothesis

    calls = [-1]
    real_evaluate = train_module.evaluate

    def counted(*args, **kwargs):
        calls[0] += 1
        return real_evaluate(*args, **kwargs)

    def make(path, tokenizer):
        if not path:  # greedy chooses
            return None, None

        def decode(log_probs, lens):
            return [Hypothesis(texts[calls[0]]) for _ in range(log_probs.shape[0])]

        return decode, {"scripted": str(path)}

    monkeypatch.setattr(train_module, "evaluate", counted)
    monkeypatch.setattr(setup_module, "make_valid_decoder", make)


def test_a_valid_decoder_chooses_best_pt_and_the_average(tmp_path, example_manifest, monkeypatch):
    """With ``train.valid_decoder``, best.pt is the epoch its WER ranks first, whatever greedy
    says (the tiny model's greedy WER is 100% throughout), and the average of the last epochs
    is compared by it too: replaced when no worse, kept when worse."""
    import json

    def info(path):
        return torch.load(path, weights_only=True)["info"]

    # the ten digits "zero" .. "nine": "" is WER 1.0 (all deleted), "zero" each 0.9
    _scripted_decoder(monkeypatch, ["", "zero", "zero", ""])  # epochs 1-3, then the average
    over = {"train.epochs": 3, "train.valid_decoder": "scripted.yaml", "train.average_last": 2}
    train(_cfg(example_manifest, **over), tmp_path / "a", progress=False)
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert [h["valid_decoder_wer"] for h in history] == pytest.approx([1.0, 0.9, 0.9])
    best = info(tmp_path / "a" / "best.pt")
    assert best["epoch"] == 2 and "averaged_epochs" not in best  # the first of the two 0.9s
    assert best["valid_decoder_wer"] == pytest.approx(0.9)
    assert best["valid_decoder"] == "scripted.yaml"
    assert best["valid_wer"] == history[1]["valid_wer"]  # greedy's, of the same epoch
    assert info(tmp_path / "a" / "averaged.pt")["valid_decoder_wer"] == pytest.approx(1.0)
    log_text = (tmp_path / "a" / "train.log").read_text()
    assert "epoch 2:" in log_text and "with scripted.yaml: WER 90.00%" in log_text

    # resumed with greedy choosing again: said, and the next epoch replaces best.pt
    train(_cfg(example_manifest, **{"train.epochs": 4}), tmp_path / "a", progress=False)
    log_text = (tmp_path / "a" / "train.log").read_text()
    assert "written with train.valid_decoder=scripted.yaml, resumed with (greedy)" in log_text
    best = info(tmp_path / "a" / "best.pt")
    assert best["epoch"] == 4 and "valid_decoder_wer" not in best

    # an average as good as the best epoch by the decoder replaces it (greedy: 1.0 > 0.9)
    _scripted_decoder(monkeypatch, ["", "zero", "zero", "zero"])
    train(_cfg(example_manifest, **over), tmp_path / "b", progress=False)
    best = info(tmp_path / "b" / "best.pt")
    assert best["averaged_epochs"] == 2 and best["valid_decoder_wer"] == pytest.approx(0.9)

    # a finished greedy run resumed with a decoder, nothing left to train: best.pt is scored
    # that way (0.9) before the average (1.0) may replace it, and stays
    greedy = {"train.epochs": 2, "train.average_last": 2}
    train(_cfg(example_manifest, **greedy), tmp_path / "c", progress=False)
    before = info(tmp_path / "c" / "best.pt")
    _scripted_decoder(monkeypatch, ["", "zero"])  # the average, then best.pt
    train(
        _cfg(example_manifest, **greedy, **{"train.valid_decoder": "scripted.yaml"}),
        tmp_path / "c",
        progress=False,
    )
    assert info(tmp_path / "c" / "best.pt") == before
    assert info(tmp_path / "c" / "averaged.pt")["valid_decoder_wer"] == pytest.approx(1.0)


def test_a_valid_decoder_scores_what_evaluate_gives(tmp_path, example_manifest, example_records):
    """A real beam search with an LM as ``train.valid_decoder``: the WER training records is the
    one ``evaluate`` gives the saved weights with that decoder; a missing config stops the run
    before it trains, named."""
    import json

    from asr.config import ConfigError, load_decoder_config
    from asr.data import make_loader
    from asr.decode import BeamDecoder
    from asr.evaluate import evaluate, scoring_utterances
    from asr.lm import build_arpa

    lm = tmp_path / "lm" / "digits.arpa"
    lm.parent.mkdir()
    lm.write_text(build_arpa([r["text"].split() for r in example_records], order=2))
    decoder_yaml = tmp_path / "decoder.yaml"
    decoder_yaml.write_text(
        "decoder:\n  kind: beam\n  beam_size: 8\n  lm: lm/digits.arpa\n  lm_weight: 1.0\n  word_score: 3.0\n"
    )
    over = {"train.epochs": 2, "train.valid_decoder": decoder_yaml, "train.precision": "fp32"}
    train(_cfg(example_manifest, **over), tmp_path / "run", progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(h["valid_decoder_wer"] is not None for h in history)
    assert "validation also decodes with" in (tmp_path / "run" / "train.log").read_text()
    assert history[-1]["valid_decoder_wer"] < 1.0  # the beam search put words out: not vacuous

    rec = load_model(tmp_path / "run" / "last.pt")
    loader = make_loader(
        scoring_utterances(str(example_manifest), rec.tokenizer),
        rec.tokenizer,
        rec.sample_rate,
        30.0,
        64,
        0,
        shuffle=False,
    )
    beam = BeamDecoder(rec.tokenizer, load_decoder_config(decoder_yaml))
    result = evaluate(
        rec.model, rec.features, rec.tokenizer, loader, torch.device("cpu"), decoder=beam
    )
    assert result.score.wer == pytest.approx(history[-1]["valid_decoder_wer"])

    missing = {"train.valid_decoder": tmp_path / "none.yaml"}
    with pytest.raises(ConfigError, match=r"none\.yaml: decoder config not found"):
        train(_cfg(example_manifest, **missing), tmp_path / "missing", progress=False)
    assert not (tmp_path / "missing" / "last.pt").exists()
