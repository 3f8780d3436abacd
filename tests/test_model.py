import math

import pytest
import torch

from asr.config import FeatureConfig, ModelConfig
from asr.features import FeatureExtractor
from asr.model import AcousticModel, frame_entropy, reverse_padded


def test_reverse_padded():
    x = torch.arange(12.0).reshape(2, 6, 1)
    lens = torch.tensor([6, 4])
    r = reverse_padded(x, lens)
    assert r[0, :, 0].tolist() == [5, 4, 3, 2, 1, 0]
    assert r[1, :, 0].tolist() == [9, 8, 7, 6, 10, 11]  # padding stays in place
    assert torch.equal(reverse_padded(r, lens), x)


CASES = [
    ModelConfig(
        hidden_size=16, num_layers=2, rnn_type="lstm", subsample="stack", subsample_factor=3
    ),
    ModelConfig(
        hidden_size=16, num_layers=2, rnn_type="gru", subsample="stack", subsample_factor=2
    ),
    ModelConfig(
        hidden_size=16, num_layers=1, rnn_type="rnn", subsample="stack", subsample_factor=1
    ),
    ModelConfig(
        hidden_size=16,
        num_layers=2,
        rnn_type="lstm",
        subsample="conv",
        subsample_factor=2,
        conv_channels=4,
    ),
    ModelConfig(
        hidden_size=16,
        num_layers=1,
        rnn_type="gru",
        subsample="conv",
        subsample_factor=3,
        conv_channels=4,
    ),
    ModelConfig(hidden_size=16, num_layers=2, rnn_type="lstm", bidirectional=False),
]


@pytest.mark.parametrize(
    "cfg",
    CASES,
    ids=lambda c: f"{c.rnn_type}-{c.subsample}{c.subsample_factor}-bi{c.bidirectional}",
)
def test_padding_never_changes_an_output(cfg):
    torch.manual_seed(0)
    model = AcousticModel(cfg, num_features=20, vocab_size=7).eval()
    lens = torch.tensor([50, 37, 11])
    feats = torch.randn(3, 50, 20) * (torch.arange(50)[None, :, None] < lens[:, None, None])
    with torch.no_grad():
        batched, out_lens = model(feats, lens)
        for b in range(3):
            alone, alone_len = model(feats[b : b + 1, : lens[b]], lens[b : b + 1])
            assert int(out_lens[b]) == int(alone_len[0]) == alone.shape[1]
            assert torch.allclose(batched[b, : out_lens[b]], alone[0], atol=1e-5), b


@pytest.mark.parametrize("cfg", CASES[:5], ids=lambda c: f"{c.subsample}{c.subsample_factor}")
def test_output_lengths_match_real_frames(cfg):
    model = AcousticModel(cfg, num_features=20, vocab_size=7).eval()
    for t in range(1, 40):
        out, out_lens = model(torch.randn(1, t, 20), torch.tensor([t]))
        assert out.shape[1] == int(out_lens[0]) == int(model.output_lengths(torch.tensor([t]))[0])


def test_log_probs_are_normalised_and_shapes():
    fe = FeatureExtractor(FeatureConfig())
    model = AcousticModel(ModelConfig(hidden_size=8, num_layers=1), fe.num_features, 29)
    feats, feat_lens = fe(torch.randn(2, 16_000), torch.tensor([16_000, 8_000]))
    log_probs, out_lens = model(feats, feat_lens)
    assert log_probs.shape == (2, 34, 29) and out_lens.tolist() == [34, 17]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 34), atol=1e-5)


def test_bad_model_config():
    with pytest.raises(ValueError, match="rnn_type"):
        AcousticModel(ModelConfig(rnn_type="transformer"), 20, 5)
    with pytest.raises(ValueError, match="num_layers"):
        AcousticModel(ModelConfig(num_layers=0), 20, 5)


def test_frame_entropy_by_hand_and_blind_to_padding():
    """Uniform frames carry log V nats, certain ones none; each utterance is the mean over its own
    frames, and frames past out_lens (or a -inf log-probability) do not make it wrong."""
    V = 5
    uniform = torch.full((1, 3, V), -math.log(V))
    certain = torch.log_softmax(torch.tensor([[[50.0, 0, 0, 0, 0]] * 3]), -1)
    assert torch.allclose(frame_entropy(uniform, torch.tensor([3])), torch.tensor(math.log(V)))
    assert frame_entropy(certain, torch.tensor([3])) < 1e-6
    # utterance 1: a certain frame, a uniform one, then uniform padding: (0 + log V) / 2 frames;
    # dividing by T' instead would give log V / 3, counting the padding 2 log V / 3
    mixed = torch.cat([certain[:, :1], uniform[:, :2]], 1)
    both = torch.cat([uniform, mixed])
    expected = (math.log(V) + math.log(V) / 2) / 2
    assert torch.allclose(frame_entropy(both, torch.tensor([3, 2])), torch.tensor(expected))
    # an fp16 logit overflowing gives a -inf log-probability: its frame still counts, finitely
    spiky = certain.clone()
    spiky[0, 0, 1] = -math.inf
    spiky.requires_grad_(True)
    value = frame_entropy(spiky, torch.tensor([3]))
    value.backward()
    assert torch.isfinite(value) and value < 1e-6 and torch.isfinite(spiky.grad).all()
