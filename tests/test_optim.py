"""The one hand-written Adam against torch.optim.Adam."""

from __future__ import annotations

import pytest
import torch

from stochgrad._optim import Adam


def _gradients(steps: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(steps)]


@pytest.mark.parametrize("maximize", [False, True])
def test_matches_torch_adam(maximize):
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.Adam([p], lr=0.05, betas=(0.8, 0.99), eps=1e-6, maximize=maximize)
    ours = Adam(torch.zeros(4, dtype=torch.float64), lr=0.05, betas=(0.8, 0.99), eps=1e-6,
                maximize=maximize)  # fmt: skip
    for grad in _gradients(200):
        p.grad = grad.clone()
        ref.step()
        ours.step(grad)
    torch.testing.assert_close(ours.value, p.detach(), rtol=1e-12, atol=1e-12)


def test_float_and_tensor_agree_and_state_resumes():
    grads = [float(g[0]) for g in _gradients(50)]
    a = Adam(0.3, lr=0.01)
    b = Adam(torch.tensor(0.3, dtype=torch.float64), lr=0.01)
    for g in grads[:20]:
        a.step(g)
        b.step(torch.tensor(g, dtype=torch.float64))
    resumed = Adam(0.0, lr=0.01)
    resumed.load_state_dict(a.state_dict())
    for g in grads[20:]:
        a.step(g)
        resumed.step(g)
        b.step(torch.tensor(g, dtype=torch.float64))
    assert resumed.value == a.value  # exact continuation
    assert abs(float(b.value) - a.value) < 1e-12


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr must be > 0"):
        Adam(0.0, lr=0.0)
    with pytest.raises(ValueError, match=r"betas\[1\] must be < 1"):
        Adam(0.0, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="lr must be a real number"):
        Adam(0.0, lr="0.1")
