"""Precision: what ``auto`` picks and says, and that bf16 keeps padding-invariance and transcripts."""

import json

import pytest
import torch

from asr import load_model
from asr.audio import load_audio
from asr.config import FeatureConfig, ModelConfig
from asr.features import FeatureExtractor
from asr.metrics import score
from asr.model import AcousticModel
from asr.precision import cpu_bf16_native, resolve_precision
from asr.text import Tokenizer
from asr.train import train
from asr.transcribe import Recognizer
from tests.conftest import DATA, ROOT
from tests.test_train import _cfg

NATIVE, _ = cpu_bf16_native()


def _caps(monkeypatch, **flags):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, **flags})


def test_auto_picks_bf16_only_where_the_cpu_multiplies_it(monkeypatch):
    _caps(monkeypatch, amx_bf16=True)
    choice = resolve_precision("auto", "cpu")
    assert choice.dtype == torch.bfloat16 and "AMX-BF16" in choice.reason
    _caps(monkeypatch, avx512_bf16=True)
    assert "AVX512-BF16" in resolve_precision("auto", "cpu").reason
    _caps(monkeypatch)  # neither: fall back and say so
    choice = resolve_precision("auto", "cpu")
    assert choice.dtype is None and choice.name == "fp32"
    assert choice.reason == "fp32: this CPU has no AMX-BF16 or AVX512-BF16"
    forced = resolve_precision("bf16", "cpu")  # asked for: done, and called slow
    assert forced.dtype == torch.bfloat16 and "emulated" in forced.reason
    assert resolve_precision("fp32", "cpu").dtype is None


def test_bad_precisions_are_named():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int4", "cpu")
    with pytest.raises(ValueError, match="precision fp16 is for CUDA devices"):
        resolve_precision("fp16", "cpu")


def test_training_log_says_what_was_chosen(tmp_path, example_manifest, monkeypatch):
    _caps(monkeypatch)
    train(_cfg(example_manifest, **{"train.epochs": 1}), tmp_path / "auto", progress=False)
    assert "precision: fp32: this CPU has no AMX-BF16" in (tmp_path / "auto/train.log").read_text()
    cfg = _cfg(example_manifest, **{"train.epochs": 1, "train.precision": "bf16"})
    train(cfg, tmp_path / "bf16", progress=False)
    log = (tmp_path / "bf16/train.log").read_text()
    assert "precision: bf16 autocast: asked for" in log and "epoch 1:" in log


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_bf16_padding_changes_no_output_beyond_bf16_rounding(rnn_type):
    """An utterance alone and in a padded batch, under bf16 autocast.

    bf16 keeps 8 bits of mantissa (relative rounding 2**-9 = 0.2%); the kernels block the batch
    differently for other batch sizes, so roundings differ, and they compound over the layers and
    time steps. Log-probabilities of O(1-10) may then move by a few hundredths: the bound is 0.1
    (an error of ~10% in a probability, far below what changes a decision), and frames whose
    best class leads by more than 0.5 must keep it. In float32 the same check holds to 1e-5
    (tests/test_model.py).
    """
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=64, num_layers=3, rnn_type=rnn_type)
    model = AcousticModel(cfg, num_features=20, vocab_size=29).eval()
    lens = torch.tensor([300, 211, 57, 300])
    feats = torch.randn(4, 300, 20) * (torch.arange(300)[None, :, None] < lens[:, None, None])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        batched, out_lens = model(feats, lens)
        for b in range(4):
            alone, _ = model(feats[b : b + 1, : lens[b]], lens[b : b + 1])
            diff = (batched[b, : out_lens[b]] - alone[0]).abs().max()
            assert diff < 0.1, (b, float(diff))
            top2 = alone[0].topk(2, dim=-1).values
            clear = (top2[:, 0] - top2[:, 1]) > 0.5
            assert torch.equal(
                batched[b, : out_lens[b]].argmax(-1)[clear], alone[0].argmax(-1)[clear]
            )
    assert batched.dtype == torch.float32  # log-softmax stays float32


def test_bf16_transcripts_match_fp32_on_real_clips():
    """The bundled model on the shipped real clips, bf16 against fp32.

    bf16 rounds to 8 bits of mantissa, so a frame whose two best classes are nearly tied may
    flip; every frame where fp32's best class leads by more than 0.5 (in log-probability) must
    keep it. The beam search can then turn one near-tie into another word, so the transcripts
    may differ by one word in one clip (one 13-s LibriSpeech clip has such a tie: "six co" /
    "six clock" for "six o'clock", both wrong), and by no more.
    """
    records = [json.loads(line) for line in (DATA / "fsdd.jsonl").read_text().splitlines()]
    examples = [
        json.loads(line) for line in (ROOT / "examples/examples.jsonl").read_text().splitlines()
    ]
    paths = [DATA / r["audio"] for r in records] + [
        ROOT / "examples" / r["audio"] for r in examples
    ]
    fp32 = load_model(precision="fp32")
    bf16 = load_model(precision="bf16")
    assert bf16.precision.dtype == torch.bfloat16 and fp32.precision.dtype is None
    for path in paths:
        wave = load_audio(path)
        lp32, _ = fp32.log_probs(wave[None], torch.tensor([len(wave)]))
        lp16, _ = bf16.log_probs(wave[None], torch.tensor([len(wave)]))
        top2 = lp32[0].topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 0.5
        assert torch.equal(lp16[0].argmax(-1)[clear], lp32[0].argmax(-1)[clear]), path
    texts = {}
    for name, rec in (("fp32", fp32), ("bf16", bf16)):
        texts[name] = {
            str(p): t.text for p, t in rec.transcribe_files(paths, word_timestamps=False)
        }
    assert len(texts["fp32"]) == len(paths)
    keys = sorted(texts["fp32"])
    apart = score(keys, [texts["fp32"][k] for k in keys], [texts["bf16"][k] for k in keys])
    assert apart.word.errors <= 1, apart.word
    assert sum(u.char.errors > 0 for u in apart.utterances) <= 1


@pytest.mark.parametrize("subsample", ["stack", "conv"])
def test_bf16_inference_copy_computes_what_autocast_does(subsample):
    """A recognizer in bf16 runs a bf16 copy of its model (no per-call weight casts): the same
    log-probabilities as autocast over the float32 model, bit for bit, and a change to the
    float32 weights reaches it."""
    torch.manual_seed(0)
    features = FeatureExtractor(FeatureConfig(n_mels=20))
    cfg = ModelConfig(hidden_size=32, num_layers=2, subsample=subsample, conv_channels=4)
    model = AcousticModel(cfg, features.num_features, len(Tokenizer())).eval()
    rec = Recognizer(features, model, Tokenizer(), info={}).set_precision("bf16")
    waves = torch.randn(2, 16_000) * 0.1
    wav_lens = torch.tensor([16_000, 9_000])

    def autocast():  # the features stay float32, as in Recognizer.log_probs
        with torch.no_grad():
            feats, feat_lens = features(waves, wav_lens)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(feats, feat_lens)

    for step in range(2):
        lp, lens = rec.log_probs(waves, wav_lens)
        ref, ref_lens = autocast()
        assert torch.equal(lp, ref) and torch.equal(lens, ref_lens), step
        assert lp.dtype == torch.float32
        with torch.no_grad():  # as fine-tuning or load_state_dict would change them
            model.output.bias.add_(1.0)
            model.rnns[0].fwd.weight_hh_l0.mul_(0.5)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(
        rec.set_precision("fp32").log_probs(waves, wav_lens)[0],
        model(*features(waves, wav_lens))[0].detach(),
    )
