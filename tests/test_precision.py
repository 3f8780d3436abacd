"""Precision: what ``auto`` picks and says, and that bf16 keeps padding-invariance and transcripts."""

import json

import pytest
import torch

from asr import load_model
from asr.config import ModelConfig
from asr.model import AcousticModel
from asr.precision import cpu_bf16_native, resolve_precision
from asr.train import train
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
    """The bundled model's greedy transcripts of the shipped real clips: bf16 == fp32."""
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
    texts = {}
    for name, rec in (("fp32", fp32), ("bf16", bf16)):
        texts[name] = {
            str(p): t.text for p, t in rec.transcribe_files(paths, word_timestamps=False)
        }
    assert len(texts["fp32"]) == len(paths)
    assert texts["bf16"] == texts["fp32"]
