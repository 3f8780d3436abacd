"""recipes/default/experiments/adapt.py: per-utterance feature maps fitted at test time."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from asr.config import ModelConfig
from asr.model import AcousticModel
from tests.recipes.conftest import load_default_script

adapt = load_default_script("experiments/adapt")


def tiny_model() -> AcousticModel:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=16, num_layers=1, subsample_factor=2)
    model = AcousticModel(cfg, num_features=8, vocab_size=5).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def padded(lens: list[int], F: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    feats = torch.zeros(len(lens), max(lens), F)
    for b, n in enumerate(lens):
        feats[b, :n] = torch.randn(n, F)
    return feats, torch.tensor(lens)


def test_entropy_by_hand_counts_only_real_non_blank_frames():
    probs = torch.tensor(
        [
            [
                [0.25, 0.25, 0.25, 0.25],
                [0.1, 0.6, 0.2, 0.1],
                [0.9, 0.1, 0.0, 0.0],
                [0.0, 1.0, 0, 0],
            ],
            [[0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 1.0], [0.25] * 4, [0.25] * 4],
        ]
    )  # (B=2, T=4, V=4); id 0 the blank
    log_probs = probs.clamp(min=1e-30).log()
    got = adapt.speech_frame_entropy(log_probs, torch.tensor([3, 1]))
    # utterance 0: frames 0 (a tie: argmax is the blank) and 2 are blank, frame 3 is padding
    middle = -sum(p * math.log(p) for p in (0.1, 0.6, 0.2, 0.1))
    assert got[0].item() == pytest.approx(middle, abs=1e-5)
    assert got[1].item() == 0.0  # its one real frame is the blank: nothing to fit


def test_zero_steps_leave_the_features_as_they_are():
    model = tiny_model()
    feats, feat_lens = padded([9, 6])
    out = adapt.fit_features(model, feats, feat_lens, adapt.speech_frame_entropy, 0, 1e-2)
    assert torch.equal(out, feats)


def test_fitting_lowers_the_loss_and_leaves_the_model_alone():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feats, feat_lens = padded([12, 7])
    loss = adapt.speech_frame_entropy
    start = loss(*model(feats, feat_lens))
    out = adapt.fit_features(model, feats, feat_lens, loss, 20, 3e-2)
    end = loss(*model(out, feat_lens))
    assert (end <= start).all() and (end < start - 1e-3).any()
    assert out[1, 7:].abs().sum() == 0  # padding stays zero
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_a_batch_adapts_as_its_utterances_alone():
    model = tiny_model()
    feats, feat_lens = padded([12, 7])
    together = adapt.fit_features(model, feats, feat_lens, adapt.speech_frame_entropy, 5, 1e-2)
    for b, n in enumerate(feat_lens.tolist()):
        alone = adapt.fit_features(
            model, feats[b : b + 1, :n], feat_lens[b : b + 1], adapt.speech_frame_entropy, 5, 1e-2
        )
        assert torch.allclose(together[b, :n], alone[0], atol=1e-4)


def test_first_pass_loss_is_the_ctc_loss_per_frame_and_zero_for_no_words():
    model = tiny_model()
    feats, feat_lens = padded([12, 10])
    log_probs, out_lens = model(feats, feat_lens)
    targets = torch.tensor([[1, 2, 1], [0, 0, 0]])
    target_lens = torch.tensor([3, 0])
    got = adapt.hypothesis_ctc(targets, target_lens)(log_probs, out_lens)
    want = torch.nn.functional.ctc_loss(
        log_probs[:1, : out_lens[0]].transpose(0, 1), targets[:1], out_lens[:1], target_lens[:1]
    )  # 'mean' divides by the target length: undo it, then divide by the frames
    assert got[0].item() == pytest.approx(want.item() * 3 / out_lens[0].item(), rel=1e-5)
    assert got[1].item() == 0.0


def test_methods_are_parsed_and_bad_ones_named():
    assert adapt.parse_method("entropy") == ("entropy", None)
    assert adapt.parse_method("first-pass") == ("first-pass", None)
    assert adapt.parse_method("warp:0.92") == ("warp", 0.92)
    for bad in ("warp", "warp:", "warp:abc", "warp:-1", "fmllr", "none:1"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected none, entropy"):
            adapt.parse_method(bad)


def test_warp_scales_the_frequency_axis_of_real_emissions():
    """``warp:A`` runs the bundled model on warped features: A = 1 is the unadapted model, another
    factor changes the emissions."""
    from asr.transcribe import load_model
    from tests.conftest import ROOT

    rec = load_model(precision="fp32")
    manifest = str(ROOT / "tests" / "data" / "fsdd.jsonl")
    ids, _, plain = adapt.adapted_emissions(rec, manifest, ("none", None), 0, 0.0, None)
    _, _, same = adapt.adapted_emissions(rec, manifest, ("warp", 1.0), 0, 0.0, None)
    _, _, warped = adapt.adapted_emissions(rec, manifest, ("warp", 0.85), 0, 0.0, None)
    assert len(ids) == len(plain) == len(warped) > 0
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(plain, same))
    assert not all(torch.allclose(a, b, atol=1e-2) for a, b in zip(plain, warped))
