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


@pytest.mark.parametrize(
    "cfg,wider",
    [
        (CASES[0], 24),  # lstm, some units copied once
        (ModelConfig(hidden_size=8, num_layers=3, rnn_type="gru"), 20),  # more than doubled
        (ModelConfig(hidden_size=8, num_layers=2, rnn_type="rnn", bidirectional=False), 13),
        (ModelConfig(hidden_size=8, num_layers=2, subsample="conv", conv_channels=4), 12),
    ],
    ids=["lstm", "gru-x2.5", "rnn-uni", "lstm-conv"],
)
def test_widening_keeps_the_function(cfg, wider):
    """Net2WiderNet: the widened model computes the narrower one's outputs (noise 0), padding and
    all; with the default noise it stays close."""
    from dataclasses import replace

    from asr.surgery import GATES, widen_state_dict

    torch.manual_seed(0)
    narrow = AcousticModel(cfg, num_features=20, vocab_size=7).eval()
    wide_cfg = replace(cfg, hidden_size=wider)
    lens = torch.tensor([40, 23])
    feats = torch.randn(2, 40, 20) * (torch.arange(40)[None, :, None] < lens[:, None, None])
    with torch.no_grad():
        want, want_lens = narrow(feats, lens)
        for noise, atol in ((0.0, 1e-5), (0.01, 0.05)):
            wide = AcousticModel(wide_cfg, num_features=20, vocab_size=7).eval()
            g = torch.Generator().manual_seed(1)
            wide.load_state_dict(
                widen_state_dict(narrow.state_dict(), wide_cfg, cfg.hidden_size, g, noise)
            )
            got, got_lens = wide(feats, lens)
            assert torch.equal(got_lens, want_lens)
            for b in range(2):
                n = int(want_lens[b])
                assert torch.allclose(got[b, :n], want[b, :n], atol=atol), (noise, b)
        assert wide.rnns[0].fwd.weight_ih_l0.shape[0] == GATES[cfg.rnn_type] * wider
    with pytest.raises(ValueError, match="fewer"):
        widen_state_dict(
            narrow.state_dict(), replace(cfg, hidden_size=cfg.hidden_size - 1), cfg.hidden_size
        )


@pytest.mark.parametrize(
    "cfg,deeper",
    [
        (ModelConfig(hidden_size=8, num_layers=1), 3),  # lstm, two layers added
        (ModelConfig(hidden_size=8, num_layers=2, rnn_type="gru"), 3),
        (ModelConfig(hidden_size=8, num_layers=1, rnn_type="rnn", bidirectional=False), 2),
        (ModelConfig(hidden_size=8, num_layers=2, subsample="conv", conv_channels=4), 3),
    ],
    ids=["lstm+2", "gru", "rnn-uni", "lstm-conv"],
)
def test_deepening_keeps_the_function(cfg, deeper):
    """Net2DeeperNet for recurrent layers: new layers on top pass their input through, so the
    deepened model's outputs stay within a few percent of the shallower one's (padding and all),
    and every new weight gets a gradient (none is stuck at its start)."""
    from dataclasses import replace

    from asr.surgery import deepen_state_dict

    torch.manual_seed(0)
    shallow = AcousticModel(cfg, num_features=20, vocab_size=7).eval()
    deep_cfg = replace(cfg, num_layers=deeper)
    deep = AcousticModel(deep_cfg, num_features=20, vocab_size=7).eval()
    deep.load_state_dict(deepen_state_dict(shallow.state_dict(), deep_cfg, cfg.num_layers))
    lens = torch.tensor([40, 23])
    feats = torch.randn(2, 40, 20) * (torch.arange(40)[None, :, None] < lens[:, None, None])
    want, want_lens = shallow(feats, lens)
    got, got_lens = deep(feats, lens)
    assert torch.equal(got_lens, want_lens)
    for b in range(2):
        n = int(want_lens[b])
        p, q = want[b, :n].exp(), got[b, :n].exp()  # (T', V) posteriors
        assert (p - q).abs().max() < 0.01, (b, (p - q).abs().max())
        # the same greedy output wherever the shallower model's choice is not a near-tie
        top2 = p.topk(2, -1).values  # (T', 2)
        clear = top2[:, 0] - top2[:, 1] > 0.04
        assert torch.equal(p.argmax(-1)[clear], q.argmax(-1)[clear])
    # a new layer not set up to pass its input through (random, as AcousticModel starts one)
    # changes the outputs far more: the test above has teeth
    fresh = AcousticModel(deep_cfg, num_features=20, vocab_size=7).eval()
    fresh.load_state_dict(shallow.state_dict(), strict=False)
    off = (got.exp() - want.exp()).abs().max()
    assert (fresh(feats, lens)[0].exp() - want.exp()).abs().max() > 5 * off
    # the old layers' weights are the shallower model's own
    for name, value in shallow.state_dict().items():
        if name != "output.weight":
            assert torch.equal(deep.state_dict()[name], value), name
    got.sum().backward()
    for name, param in deep.named_parameters():
        if name.startswith(f"rnns.{deeper - 1}."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="fewer"):
        deepen_state_dict(deep.state_dict(), cfg, deeper)


def test_widening_then_deepening_keeps_the_function():
    """A file both narrower and shallower than the model (as init_weights handles it): widened
    layer by layer, then deepened, it still computes about the same outputs."""
    from dataclasses import replace

    from asr.surgery import deepen_state_dict, widen_state_dict

    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=8, num_layers=2)
    small = AcousticModel(cfg, num_features=20, vocab_size=7).eval()
    big_cfg = replace(cfg, hidden_size=12, num_layers=3)
    g = torch.Generator().manual_seed(0)
    state = widen_state_dict(small.state_dict(), replace(big_cfg, num_layers=2), 8, g, noise=0.0)
    big = AcousticModel(big_cfg, num_features=20, vocab_size=7).eval()
    big.load_state_dict(deepen_state_dict(state, big_cfg, 2))
    feats, lens = torch.randn(2, 30, 20), torch.tensor([30, 17])
    feats = feats * (torch.arange(30)[None, :, None] < lens[:, None, None])
    with torch.no_grad():
        want, got = small(feats, lens)[0].exp(), big(feats, lens)[0].exp()
    for b in range(2):
        n = int(small.output_lengths(lens)[b])
        assert (want[b, :n] - got[b, :n]).abs().max() < 0.01


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
