"""``asr enrol``: prompts, what recordings are refused and why, and a personal model that loads
wherever a model file is taken and decodes as the model it came from."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml

from asr.checkpoint import atomic_save, read_model_file
from asr.cli import main
from asr.config import ConfigError, FeatureConfig, ModelConfig, config_from_dict, load_config
from asr.enrol import EnrolSettings, _write_model, enrol
from asr.enrol_data import EnrolError, read_recordings, split_heldout
from asr.features import FeatureExtractor, feature_size
from asr.model import AcousticModel
from asr.prompts import arctic_prompts, choose_prompts, write_prompts
from asr.surgery import init_weights
from asr.text import Tokenizer
from asr.train import train
from asr.transcribe import load_model
from tests.conftest import DATA, ROOT, tone, write_audio


def _recordings(folder, example_records, copies: int = 8):
    """A folder of ``copies`` x the ten FSDD clips, each with its transcript beside it (~34 s)."""
    for k in range(copies):
        for r in example_records:
            name = f"{k}_{r['id']}"
            shutil.copy(DATA / r["audio"], folder / f"{name}.wav")
            (folder / f"{name}.txt").write_text(r["text"].capitalize() + ".\n")
    return folder


@pytest.fixture(scope="module")
def base_model(tiny_model, tmp_path_factory):
    """The tiny model, recording a decoder config (a lexicon-free beam search) as the one it
    decodes with."""
    out = tmp_path_factory.mktemp("base")
    decoder = out / "decoder.yaml"
    decoder.write_text(yaml.safe_dump({"decoder": {"kind": "beam", "beam_size": 4}}))
    record = read_model_file(tiny_model)
    record["info"]["decoder"] = str(decoder)
    atomic_save(record, out / "base.pt")
    return out / "base.pt"


def test_prompts_come_in_arctic_order_and_can_be_written_to_record_beside(tmp_path):
    prompts = arctic_prompts()
    assert len(prompts) == 1132 and prompts[0][0] == "a0001" and prompts[-1][0] == "b0539"
    assert choose_prompts(2, start=1) == prompts[1:3]
    with pytest.raises(ValueError, match="1132 prompts"):
        choose_prompts(2000)
    written = write_prompts(choose_prompts(3), tmp_path / "voice")
    assert [p.name for p in written] == ["arctic_a0001.txt", "arctic_a0002.txt", "arctic_a0003.txt"]
    assert written[0].read_text().strip() == prompts[0][1]
    assert write_prompts(choose_prompts(3), tmp_path / "voice") == []  # existing ones are kept


def test_prompts_command_prints_and_writes(tmp_path, capsys):
    assert main(["enrol", "--prompts", "2", "--write", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("a0001\tAuthor of the danger trail") and "asr enrol" in out
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "arctic_a0001.txt", "arctic_a0002.txt",
    ]  # fmt: skip


def test_a_recording_without_its_transcript_is_named(tmp_path, example_records):
    folder = _recordings(tmp_path, example_records)
    (folder / "0_0_jackson_0.txt").unlink()
    with pytest.raises(EnrolError, match=r"0_0_jackson_0\.wav: no transcript"):
        read_recordings(folder, Tokenizer())


def test_characters_the_model_cannot_spell_are_named_with_their_file(tmp_path, example_records):
    folder = _recordings(tmp_path, example_records)
    (folder / "1_2_theo_2.txt").write_text("I have 2 cats & a dog\n")
    with pytest.raises(EnrolError, match=r"numbers.*1_2_theo_2\.txt: '2'"):
        read_recordings(folder, Tokenizer())


def test_too_little_speech_says_how_much_more_is_needed(tmp_path):
    for i in range(3):
        write_audio(tmp_path / f"r{i}.wav", tone(3.0, 16_000, seed=i), 16_000)
        (tmp_path / f"r{i}.txt").write_text("hello there\n")
    with pytest.raises(EnrolError, match="9 s of speech in 3 recording.*at least 21 s more"):
        read_recordings(tmp_path, Tokenizer())


def test_a_few_recordings_spread_over_the_session_are_held_out(tmp_path, example_records):
    utts = read_recordings(_recordings(tmp_path, example_records), Tokenizer())
    train_utts, held = split_heldout(utts, 0.1)
    assert len(held) == 8 and len(train_utts) == 72
    assert {u.id for u in held}.isdisjoint(u.id for u in train_utts)
    positions = [utts.index(u) for u in held]
    assert positions[0] < 10 and positions[-1] > 70  # spread, not the last few
    with pytest.raises(EnrolError, match="at least 3"):
        split_heldout(utts[:2], 0.1)


def test_enrol_writes_a_model_that_loads_everywhere_and_decodes_as_its_base(
    tmp_path, example_records, base_model, capsys
):
    (tmp_path / "rec").mkdir()
    folder = _recordings(tmp_path / "rec", example_records)
    settings = EnrolSettings(epochs=2, trainable=["rnns.0"], lr=1e-3, batch_seconds=5.0)
    result = enrol(folder, tmp_path / "me", model=base_model, settings=settings, progress=False)
    assert result.model == tmp_path / "me" / "personal.pt" and result.heldout == 8
    assert 0 <= result.wer_after <= result.wer_before
    status = json.loads((tmp_path / "me" / "progress.json").read_text())
    assert (
        status["state"] == "done" and status["epoch"] == 2 and status["model"] == str(result.model)
    )
    # seconds of clips, not minutes: the note that the held-out check is rough
    assert "held-out recordings are a rough check" in status["note"]
    # load_model: the base's decoder config comes along
    rec = load_model(result.model)
    decoder = read_model_file(base_model)["info"]["decoder"]
    assert str(rec.decoder_config) == decoder
    assert rec.info["enrolled"]["heldout_wer_before"] == result.wer_before
    # only the layer asked for moved
    base = read_model_file(base_model)["state_dict"]
    tuned = read_model_file(result.model)["state_dict"]
    assert torch.equal(base["output.weight"], tuned["output.weight"])
    # asr transcribe and asr evaluate take the file
    clip = str(DATA / example_records[0]["audio"])
    assert main(["transcribe", "--model", str(result.model), clip]) == 0
    assert (
        main(["evaluate", "--model", str(result.model), "--manifest", str(DATA / "fsdd.jsonl")])
        == 0
    )
    # asr serve's app takes it
    from starlette.testclient import TestClient

    from asr.serve.app import create_app

    with TestClient(create_app(rec, model_name="personal.pt")) as client:
        with open(clip, "rb") as f:
            answer = client.post("/v1/transcribe", files={"file": ("a.wav", f, "audio/wav")})
        assert answer.status_code == 200 and "text" in answer.json()


def test_enrol_command_reports_before_and_after(tmp_path, example_records, base_model, capsys):
    (tmp_path / "rec").mkdir()
    folder = _recordings(tmp_path / "rec", example_records)
    argv = ["enrol", str(folder), "--out", str(tmp_path / "me"), "--model", str(base_model),
            "--epochs", "1", "--trainable", "rnns.0,output", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out WER" in out and "asr transcribe --model" in out
    assert "held-out recordings are a rough check" in out  # seconds of clips
    assert (tmp_path / "me" / "personal.pt").is_file()


def test_enrol_command_errors_are_one_line(tmp_path, capsys):
    assert main(["enrol", "--out", str(tmp_path)]) == 2
    assert "give a folder of recordings" in capsys.readouterr().err
    assert main(["enrol", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder or manifest" in capsys.readouterr().err


def test_trainable_names_what_moves_and_refuses_a_name_that_matches_nothing(tmp_path, base_model):
    manifest = DATA / "fsdd.jsonl"
    common = [f"data.train={manifest}", f"data.valid={manifest}", "data.num_workers=0",
              "data.batch_seconds=2.0", "train.epochs=1", "train.warmup_steps=1",
              f"train.init_from={base_model}"]  # fmt: skip
    cfg = load_config([ROOT / "conf/model/tiny.yaml"], [*common, "train.trainable=[output]"])
    train(cfg, tmp_path / "a", progress=False)
    base = read_model_file(base_model)["state_dict"]
    tuned = read_model_file(tmp_path / "a" / "last.pt")["state_dict"]
    assert not torch.equal(base["output.weight"], tuned["output.weight"])
    assert all(torch.equal(base[k], tuned[k]) for k in base if k.startswith("rnns."))
    bad = load_config([ROOT / "conf/model/tiny.yaml"], [*common, "train.trainable=[rnns.7]"])
    with pytest.raises(ConfigError, match=r"\['rnns.7'\] name no parameter.*rnns.0.fwd"):
        train(bad, tmp_path / "b", progress=False)


def test_lhuc_trains_only_the_scales_and_a_plain_model_starts_from_the_result(tmp_path, base_model):
    """model.lhuc with train.trainable=[lhuc]: a plain model file starts the scales at 1, only
    they move; a plain model initialised from that run's file, and load_model, compute the same
    outputs (the scales folded into the weights)."""
    manifest = DATA / "fsdd.jsonl"
    common = [f"data.train={manifest}", f"data.valid={manifest}", "data.num_workers=0",
              "data.batch_seconds=2.0", "train.epochs=1", "train.warmup_steps=1",
              "train.lr=0.1"]  # fmt: skip
    cfg = load_config(
        [ROOT / "conf/model/tiny.yaml"],
        [*common, f"train.init_from={base_model}", "model.lhuc=true", "train.trainable=[lhuc]"],
    )
    train(cfg, tmp_path / "a", progress=False)
    base = read_model_file(base_model)["state_dict"]
    tuned = read_model_file(tmp_path / "a" / "last.pt")["state_dict"]
    assert all(torch.equal(base[k], tuned[k]) for k in base)
    assert all(tuned[k].abs().max() > 0 for k in tuned if k.startswith("lhuc."))
    plain_cfg = load_config([ROOT / "conf/model/tiny.yaml"], common)
    num_features = FeatureExtractor(cfg.features).num_features
    plain = AcousticModel(plain_cfg.model, num_features, len(Tokenizer()))
    init_weights(plain, plain_cfg, Tokenizer(), str(tmp_path / "a" / "last.pt"))
    scaled = AcousticModel(cfg.model, num_features, len(Tokenizer()))
    scaled.load_state_dict(tuned)
    feats, lens = torch.randn(2, 60, num_features), torch.tensor([60, 41])
    with torch.no_grad():
        want = scaled.eval()(feats, lens)[0]
        assert torch.allclose(plain.eval()(feats, lens)[0], want, atol=1e-5)
        # a wider plain model (Net2WiderNet) starts from the folded weights: about the same outputs
        wider_cfg = load_config([ROOT / "conf/model/tiny.yaml"], [*common, "model.hidden_size=40"])
        wider = AcousticModel(wider_cfg.model, num_features, len(Tokenizer()))
        init_weights(wider, wider_cfg, Tokenizer(), str(tmp_path / "a" / "last.pt"))
        assert (wider.eval()(feats, lens)[0].exp() - want.exp()).abs().max() < 0.05
        # load_model runs the file as that plain model too
        loaded = load_model(tmp_path / "a" / "last.pt", precision="fp32").model
        assert loaded.lhuc is None
        assert torch.allclose(loaded(feats, lens)[0], want, atol=1e-5)


def test_an_lhuc_enrolment_writes_a_plain_model_file(tmp_path, example_records, base_model):
    """With EnrolSettings.lhuc the run trains the scales and personal.pt is a plain model file
    computing what the best epoch's scaled model computes."""
    (tmp_path / "rec").mkdir()
    folder = _recordings(tmp_path / "rec", example_records)
    settings = EnrolSettings(epochs=2, lhuc=True, trainable=["lhuc"], lr=0.1, batch_seconds=5.0)
    out = tmp_path / "me"
    result = enrol(folder, out, model=base_model, settings=settings, progress=False)
    assert read_model_file(result.model)["model"]["lhuc"] is False
    best = read_model_file(out / "run" / "best.pt")
    assert best["model"]["lhuc"] is True and "lhuc.0" in best["state_dict"]
    # whether or not the tiny model's held-out WER improved: written from the best epoch
    path, _, _ = _write_model(read_model_file(base_model), base_model, out, "", math.inf, 0.0)
    personal = read_model_file(path)
    assert personal["model"]["lhuc"] is False
    assert not any(k.startswith("lhuc") for k in personal["state_dict"])
    nf = feature_size(config_from_dict(FeatureConfig, best["features"]))
    vocab = len(Tokenizer.from_list(best["tokens"]))
    scaled = AcousticModel(config_from_dict(ModelConfig, best["model"]), nf, vocab)
    scaled.eval()
    scaled.load_state_dict(best["state_dict"])
    plain = load_model(path, precision="fp32").model
    feats, lens = torch.randn(2, 60, nf), torch.tensor([60, 37])
    with torch.no_grad():
        assert torch.allclose(plain(feats, lens)[0], scaled(feats, lens)[0], atol=1e-5)


def test_patience_stops_when_the_wer_stops_improving(tmp_path, base_model):
    manifest = DATA / "fsdd.jsonl"
    cfg = load_config(
        [ROOT / "conf/model/tiny.yaml"],
        [f"data.train={manifest}", f"data.valid={manifest}", "data.num_workers=0",
         "data.batch_seconds=2.0", "train.epochs=10", "train.lr=0", "train.patience=2",
         f"train.init_from={base_model}"],
    )  # fmt: skip
    seen = []
    train(cfg, tmp_path, progress=False, on_epoch=lambda r: seen.append(r.epoch))
    assert seen == [1, 2, 3]  # lr 0: epochs 2 and 3 cannot beat epoch 1
    assert "no better WER for 2 epochs" in (tmp_path / "train.log").read_text()


def test_enrolling_again_resumes_the_same_run_and_restarts_a_changed_one(
    tmp_path, example_records, base_model
):
    (tmp_path / "rec").mkdir()
    folder = _recordings(tmp_path / "rec", example_records)
    settings = EnrolSettings(epochs=1, batch_seconds=5.0)
    enrol(folder, tmp_path / "me", model=base_model, settings=settings, progress=False)
    history = tmp_path / "me" / "run" / "history.json"
    first = history.stat().st_mtime_ns
    # the same recordings and settings: the finished run is taken as it is
    enrol(folder, tmp_path / "me", model=base_model, settings=settings, progress=False)
    assert history.stat().st_mtime_ns == first
    # another recording: a new run, not a resume of the old one
    shutil.copy(folder / "0_0_jackson_0.wav", folder / "extra.wav")
    (folder / "extra.txt").write_text("zero\n")
    enrol(folder, tmp_path / "me", model=base_model, settings=settings, progress=False)
    assert history.stat().st_mtime_ns != first
