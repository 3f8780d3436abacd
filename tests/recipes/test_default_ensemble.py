"""recipes/default/experiments/ensemble.py: how several models' frame posteriors are combined."""

from __future__ import annotations

import math

import torch

from tests.recipes.conftest import load_default_script

ensemble = load_default_script("experiments/ensemble")


def log_probs(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).log()


def test_mean_probability_by_hand():
    a = log_probs([0.5, 0.5, 0.0], [1.0, 0.0, 0.0])  # (T=2, V=3)
    b = log_probs([0.1, 0.3, 0.6], [0.0, 0.0, 1.0])
    got = ensemble.mean_probability([a, b]).exp()
    want = torch.tensor([[0.3, 0.4, 0.3], [0.5, 0.0, 0.5]])
    assert torch.allclose(got, want, atol=1e-6)


def test_mean_log_probability_is_the_normalised_geometric_mean():
    a = log_probs([0.5, 0.25, 0.25])
    b = log_probs([0.125, 0.5, 0.375])
    got = ensemble.mean_log_probability([a, b]).exp()
    geometric = torch.tensor(
        [math.sqrt(0.5 * 0.125), math.sqrt(0.25 * 0.5), math.sqrt(0.25 * 0.375)]
    )
    assert torch.allclose(got, geometric / geometric.sum(), atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(1))


def test_one_model_is_itself_both_ways():
    a = torch.randn(7, 29).log_softmax(-1)
    assert torch.allclose(ensemble.mean_probability([a]), a, atol=1e-6)
    assert torch.allclose(ensemble.mean_log_probability([a]), a, atol=1e-6)
