"""Weight surgery: a smaller model's weights grown into a larger one keep its function."""

from dataclasses import replace

import pytest
import torch

from asr.config import ModelConfig
from asr.model import AcousticModel, fold_lhuc
from asr.surgery import GATES, deepen_state_dict, widen_state_dict


@pytest.mark.parametrize(
    "cfg,wider",
    [
        # lstm, some units copied once
        (ModelConfig(hidden_size=16, num_layers=2, subsample="stack", subsample_factor=3), 24),
        (ModelConfig(hidden_size=8, num_layers=3, rnn_type="gru"), 20),  # more than doubled
        (ModelConfig(hidden_size=8, num_layers=2, rnn_type="rnn", bidirectional=False), 13),
        (ModelConfig(hidden_size=8, num_layers=2, subsample="conv", conv_channels=4), 12),
    ],
    ids=["lstm", "gru-x2.5", "rnn-uni", "lstm-conv"],
)
def test_widening_keeps_the_function(cfg, wider):
    """Net2WiderNet: the widened model computes the narrower one's outputs (noise 0), padding and
    all; with the default noise it stays close."""
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


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(hidden_size=8, num_layers=3),
        ModelConfig(hidden_size=8, num_layers=1, rnn_type="gru", bidirectional=False),
    ],
    ids=["lstm-3", "gru-uni-1"],
)
def test_lhuc_scales_start_at_one_and_fold_into_a_plain_model(cfg):
    """LHUC (model.lhuc): a model with the scales computes a plain model's function when they
    are 0 (a scale of 1); trained scales fold into the weights that read them, exactly, giving a
    plain state dict (every tool takes it); the scales take gradients."""
    torch.manual_seed(0)
    plain = AcousticModel(cfg, num_features=20, vocab_size=7).eval()
    lhuc_cfg = replace(cfg, lhuc=True)
    adapted = AcousticModel(lhuc_cfg, num_features=20, vocab_size=7).eval()
    state = plain.state_dict() | {
        f"lhuc.{i}": torch.zeros(r.shape) for i, r in enumerate(adapted.lhuc)
    }
    adapted.load_state_dict(state)
    lens = torch.tensor([40, 23])
    feats = torch.randn(2, 40, 20) * (torch.arange(40)[None, :, None] < lens[:, None, None])
    want = plain(feats, lens)[0]
    assert torch.allclose(adapted(feats, lens)[0], want, atol=1e-6)
    adapted(feats, lens)[0].sum().backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in adapted.lhuc)
    with torch.no_grad():
        for r in adapted.lhuc:
            r.normal_()
        scaled = adapted(feats, lens)[0]
    assert (scaled - want).abs().max() > 0.01  # the scales change the function
    folded = fold_lhuc(adapted.state_dict())
    assert not any(k.startswith("lhuc") for k in folded)
    plain.load_state_dict(folded)  # strict: exactly a plain model's names and shapes
    with torch.no_grad():
        assert torch.allclose(plain(feats, lens)[0], scaled, atol=1e-5)
