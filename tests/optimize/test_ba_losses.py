"""Robust penalties: hand-computed values, continuity, gradcheck in float64."""

from __future__ import annotations

import pytest
import torch

from optimize.losses import bounded, bounded_huber, hinge, huber, safe_norm, squared_norm


def _sq(values):
    return torch.tensor(values, dtype=torch.float64) ** 2


def test_huber_hand_values():
    # delta 4: n=2 -> 4/8 = 0.5 ; n=4 -> 2 ; n=10 -> 10 - 2 = 8
    out = huber(_sq([0.0, 2.0, 4.0, 10.0]), 4.0)
    assert torch.allclose(out, torch.tensor([0.0, 0.5, 2.0, 8.0], dtype=torch.float64))


def test_hinge_hand_values():
    # margin 5, smoothing 2: n<=5 -> 0 ; n=6 -> 1/4 ; n=7 -> 1 ; n=15 -> 10 - 1 = 9
    out = hinge(_sq([0.0, 3.0, 5.0, 6.0, 7.0, 15.0]), 5.0, 2.0)
    expected = torch.tensor([0.0, 0.0, 0.0, 0.25, 1.0, 9.0], dtype=torch.float64)
    assert torch.allclose(out, expected)


def test_hinge_is_l1_far_out():
    n = torch.tensor([100.0, 200.0], dtype=torch.float64)
    out = hinge(n**2, 5.0, 2.0)
    assert torch.allclose(out[1] - out[0], torch.tensor(100.0, dtype=torch.float64))


def test_bounded_and_bounded_huber():
    assert torch.equal(bounded(torch.tensor([1.0, 7.0]), 5.0), torch.tensor([1.0, 5.0]))
    # delta 2, bound 10 -> cap = 9; n=3 -> 2 ; n=50 -> 9
    out = bounded_huber(_sq([3.0, 50.0]), 2.0, 10.0)
    assert torch.allclose(out, torch.tensor([2.0, 9.0], dtype=torch.float64))
    bound = torch.tensor([10.0, 100.0], dtype=torch.float64)
    out = bounded_huber(_sq([50.0, 50.0]), 2.0, bound)
    assert torch.allclose(out, torch.tensor([9.0, 49.0], dtype=torch.float64))


def test_bounded_penalty_has_zero_gradient_beyond_cap():
    r = torch.tensor([[30.0, 40.0]], dtype=torch.float64, requires_grad=True)
    bounded_huber(squared_norm(r), 2.0, 10.0).sum().backward()
    assert torch.equal(r.grad, torch.zeros_like(r))


def test_gradients_finite_at_zero():
    r = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    (huber(squared_norm(r), 1.0) + hinge(squared_norm(r), 5.0, 2.0) + safe_norm(squared_norm(r))).sum().backward()
    assert torch.isfinite(r.grad).all()


@pytest.mark.parametrize(
    "fn",
    [
        lambda r: huber(squared_norm(r), 3.0),
        lambda r: hinge(squared_norm(r), 5.0, 2.0),
        lambda r: bounded_huber(squared_norm(r), 3.0, 20.0),
    ],
    ids=["huber", "hinge", "bounded_huber"],
)
def test_gradcheck(fn):
    torch.manual_seed(0)
    # norms spread over all the pieces: quadratic zone, margin, linear zone, beyond caps
    r = (torch.randn(40, 2, dtype=torch.float64) * torch.linspace(0.5, 30, 40, dtype=torch.float64)[:, None])
    r.requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (r,))
