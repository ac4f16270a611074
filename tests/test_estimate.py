"""GradientEstimate: the summary statistics are the textbook ones."""

import numpy as np
import torch

from stochgrad import GradientEstimate


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    per = rng.normal(size=(50, 3))
    est = GradientEstimate.from_per_sample(torch.as_tensor(per), method="x")
    np.testing.assert_allclose(est.grad.numpy(), per.mean(0), rtol=1e-12)
    np.testing.assert_allclose(est.variance.numpy(), per.var(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(est.stderr.numpy(), np.sqrt(per.var(0, ddof=1) / 50), rtol=1e-12)
    assert est.num_samples == 50 and est.evaluations == 50


def test_tuple_and_flat():
    a, b = torch.arange(6.0).reshape(3, 2), torch.ones(3, 2, 2)
    est = GradientEstimate.from_per_sample((a, b), method="x")
    assert isinstance(est.grad, tuple) and est.grad[1].shape == (2, 2)
    assert torch.equal(est.flat(), torch.tensor([2.0, 3.0, 1.0, 1.0, 1.0, 1.0]))
    assert "num_samples=3" in repr(est)


def test_single_sample_variance_is_undefined():
    est = GradientEstimate.from_per_sample(torch.tensor([[1.0, 2.0]]), method="x")
    assert torch.equal(est.grad, torch.tensor([1.0, 2.0]))
    assert bool(torch.isnan(est.variance).all()) and bool(torch.isnan(est.stderr).all())
