"""Tests of the pathwise (reparameterisation) estimator: replay, unbiasedness, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import (
    Bernoulli,
    Beta,
    Exponential,
    Gamma,
    Independent,
    LogNormal,
    MultivariateNormal,
    Normal,
    Poisson,
)

import stochgrad as sg
from tests.helpers import assert_unbiased as _close_to
from tests.helpers import autograd_of as _autograd

F64 = torch.float64


def _normal(th):
    return Normal(th[0], th[1])


# ---------------------------------------------------------------------------------------------
# (1) seeded replay against the formula  f'(x) * dx/dtheta
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 7, 123])
def test_single_sample_replay_normal(seed):
    mu, sigma = 0.3, 1.7
    theta = torch.tensor([mu, sigma], dtype=F64)
    with pytest.warns(sg.SingleSampleWarning, match="variance and stderr are undefined"):
        est = sg.pathwise(torch.sin, _normal, theta, num_samples=1, seed=seed)

    eps = torch.randn((1,), generator=torch.Generator().manual_seed(seed), dtype=F64)
    x = theta[0] + theta[1] * eps
    expected = torch.stack([torch.cos(x), torch.cos(x) * eps], dim=1)  # f'(x) * (1, eps)
    assert est.per_sample.shape == (1, 2)
    assert torch.equal(est.per_sample, expected), (est.per_sample, expected)
    assert torch.equal(est.grad, expected[0])
    assert est.num_samples == 1 and est.method == "pathwise" and not est.biased
    assert bool(torch.isnan(est.variance).all())  # one sample: no spread to report


def test_replay_many_samples_and_generator_equals_seed():
    a = 2.0
    theta = torch.tensor([-0.4, 0.6], dtype=F64)
    n = 6
    est = sg.pathwise(
        lambda x: (x - a) ** 2,
        _normal,
        theta,
        num_samples=n,
        generator=torch.Generator().manual_seed(11),
    )
    eps = torch.randn((n,), generator=torch.Generator().manual_seed(11), dtype=F64)
    x = theta[0] + theta[1] * eps
    expected = torch.stack([2 * (x - a), 2 * (x - a) * eps], dim=1)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(est.grad, expected.mean(0), rtol=1e-15, atol=0)
    torch.testing.assert_close(est.variance, expected.var(0), rtol=1e-13, atol=0)
    torch.testing.assert_close(est.stderr, (expected.var(0) / n).sqrt(), rtol=1e-13, atol=0)
    same = sg.pathwise(lambda x: (x - a) ** 2, _normal, theta, num_samples=n, seed=11)
    assert torch.equal(same.per_sample, est.per_sample)


def test_replay_independent_normal_with_softplus_scale():
    # params [2, 3]: loc = th[0], scale = softplus(th[1]); dscale/dth1 = sigmoid(th1).
    theta = torch.tensor([[0.1, -0.5, 1.0], [0.3, -1.0, 0.0]], dtype=F64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=F64)

    def dist_fn(th):
        return Independent(Normal(th[0], F.softplus(th[1])), 1)

    def f(x):
        return (w * torch.sin(x)).sum(-1)

    n = 4
    est = sg.pathwise(f, dist_fn, theta, num_samples=n, seed=5)
    eps = torch.randn((n, 3), generator=torch.Generator().manual_seed(5), dtype=F64)
    x = theta[0] + F.softplus(theta[1]) * eps
    fprime = w * torch.cos(x)
    expected = torch.stack([fprime, fprime * eps * torch.sigmoid(theta[1])], dim=1)
    assert est.per_sample.shape == (n, 2, 3)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-14, atol=1e-15)


def test_generic_path_replay_exponential():
    # x = E / rate with E ~ Exp(1): f(x) = x gives per-sample dx/drate = -x / rate, so the
    # samples can be read back, and f(x) = x^2 on the same seed must give 2x * (-x / rate).
    rate = 1.7
    theta = torch.tensor(rate, dtype=F64)
    lin = sg.pathwise(lambda x: x, Exponential, theta, num_samples=50, seed=3)
    sq = sg.pathwise(lambda x: x**2, Exponential, theta, num_samples=50, seed=3)
    x = -rate * lin.per_sample
    assert bool((x > 0).all())
    assert x.unique().numel() == 50
    torch.testing.assert_close(sq.per_sample, -2 * x**2 / rate, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# (2) unbiasedness against exact references and closed forms
# ---------------------------------------------------------------------------------------------
def test_normal_scalar_unbiased_vs_exact_and_closed_form():
    theta = torch.tensor([0.3, 0.8], dtype=F64)

    def f(x):
        return torch.sin(2.0 * x) + 0.3 * x**2

    exact = sg.exact_gradient(f, _normal, theta)
    closed = _autograd(
        lambda t: torch.sin(2 * t[0]) * torch.exp(-2 * t[1] ** 2) + 0.3 * (t[0] ** 2 + t[1] ** 2),
        theta,
    )
    torch.testing.assert_close(exact, closed, rtol=0, atol=1e-8)  # the two references agree
    est = sg.pathwise(f, _normal, theta, num_samples=50_000, seed=1)
    _close_to(est, closed)
    assert est.grad.shape == theta.shape


def test_normal_tuple_params():
    mu = torch.tensor(0.5, dtype=F64)
    log_s = torch.tensor(-0.2, dtype=F64)
    est = sg.pathwise(
        lambda x: (x - 1.0) ** 2,
        lambda m, ls: Normal(m, ls.exp()),
        (mu, log_s),
        num_samples=40_000,
        seed=2,
    )
    assert isinstance(est.grad, tuple) and len(est.grad) == 2
    assert est.per_sample[0].shape == (40_000,)
    expected = _autograd(lambda m, ls: (m - 1.0) ** 2 + torch.exp(2 * ls), mu, log_s)
    _close_to(est, expected)


def test_independent_normal_batch_unbiased():
    theta = torch.tensor([[0.1, -0.5, 1.0], [0.3, -1.0, 0.0]], dtype=F64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=F64)

    def dist_fn(th):
        return Independent(Normal(th[0], F.softplus(th[1])), 1)

    def expectation(th):
        s = F.softplus(th[1])
        return (w * torch.sin(th[0]) * torch.exp(-(s**2) / 2)).sum()

    est = sg.pathwise(
        lambda x: (w * torch.sin(x)).sum(-1), dist_fn, theta, num_samples=40_000, seed=4
    )
    assert est.grad.shape == theta.shape
    _close_to(est, _autograd(expectation, theta))


def test_broadcast_scalar_scale_collects_all_coordinates():
    # One scale shared by three coordinates: its gradient sums over them.
    theta = torch.tensor([0.1, -0.3, 0.5, 0.7], dtype=F64)
    w = torch.tensor([1.0, 2.0, -1.0], dtype=F64)

    def expectation(t):
        return (w * torch.sin(t[:3]) * torch.exp(-(t[3] ** 2) / 2)).sum()

    est = sg.pathwise(
        lambda x: (w * torch.sin(x)).sum(-1),
        lambda t: Independent(Normal(t[:3], t[3]), 1),
        theta,
        num_samples=40_000,
        seed=6,
    )
    _close_to(est, _autograd(expectation, theta))


def test_gamma_generic_path_unbiased():
    # E[x^2] = a (a + 1) / b^2; also checked against the library's quadrature reference.
    theta = torch.tensor([2.0, 1.5], dtype=F64)
    closed = _autograd(lambda t: t[0] * (t[0] + 1) / t[1] ** 2, theta)
    exact = sg.exact_gradient(lambda x: x**2, lambda t: Gamma(t[0], t[1]), theta)
    torch.testing.assert_close(exact, closed, rtol=0, atol=1e-8)
    est = sg.pathwise(lambda x: x**2, lambda t: Gamma(t[0], t[1]), theta, num_samples=3000, seed=1)
    _close_to(est, closed)


def test_lognormal_generic_path_unbiased():
    # E[x] = exp(mu + s^2 / 2).
    theta = torch.tensor([0.2, 0.5], dtype=F64)
    est = sg.pathwise(
        lambda x: x, lambda t: LogNormal(t[0], t[1]), theta, num_samples=30_000, seed=1
    )
    _close_to(est, _autograd(lambda t: torch.exp(t[0] + t[1] ** 2 / 2), theta))


def test_exponential_generic_path_unbiased():
    # E[x^2] = 2 / r^2, d/dr = -4 / r^3.
    rate = 1.3
    est = sg.pathwise(
        lambda x: x**2, Exponential, torch.tensor(rate, dtype=F64), num_samples=30_000, seed=1
    )
    _close_to(est, torch.tensor(-4.0 / rate**3, dtype=F64))


def test_beta_generic_path_unbiased():
    theta = torch.tensor([2.0, 3.0], dtype=F64)

    def expectation(t):
        a, b = t[0], t[1]
        return a * (a + 1) / ((a + b) * (a + b + 1))

    est = sg.pathwise(lambda x: x**2, lambda t: Beta(t[0], t[1]), theta, num_samples=3000, seed=1)
    _close_to(est, _autograd(expectation, theta))


def test_multivariate_normal_scale_tril_from_params():
    # f = ||x - a||^2: E = ||mu - a||^2 + tr(Sigma), Sigma = L L^T with L from params.
    a = torch.tensor([1.0, 2.0], dtype=F64)
    mu = torch.tensor([0.3, -0.2], dtype=F64)
    raw = torch.tensor([0.1, 0.5, -0.3], dtype=F64)  # log diag, off-diagonal, log diag

    def tril(r):
        zero = torch.zeros((), dtype=r.dtype)
        return torch.stack([torch.stack([r[0].exp(), zero]), torch.stack([r[1], r[2].exp()])])

    def dist_fn(m, r):
        return MultivariateNormal(m, scale_tril=tril(r))

    def expectation(m, r):
        L = tril(r)
        return ((m - a) ** 2).sum() + (L * L).sum()  # tr(L L^T) = ||L||_F^2

    est = sg.pathwise(
        lambda x: ((x - a) ** 2).sum(-1), dist_fn, (mu, raw), num_samples=30_000, seed=1
    )
    assert est.grad[0].shape == (2,) and est.grad[1].shape == (3,)
    _close_to(est, _autograd(expectation, mu, raw))


# ---------------------------------------------------------------------------------------------
# (3) refusals and bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dist_fn", "param"),
    [(Bernoulli, torch.tensor(0.3)), (Poisson, torch.tensor(2.0))],
    ids=["bernoulli", "poisson"],
)
def test_no_rsample_refused_naming_score_function(dist_fn, param):
    with pytest.raises(ValueError, match="rsample") as info:
        sg.pathwise(lambda x: x, dist_fn, param, num_samples=10, seed=0)
    assert "score_function" in str(info.value)


def test_black_box_refused_naming_score_function():
    f = sg.black_box(np.sin)
    with pytest.raises(ValueError, match="score_function") as info:
        sg.pathwise(f, _normal, torch.tensor([0.0, 1.0]), num_samples=10, seed=0)
    assert "black box" in str(info.value)


def test_numpy_f_without_wrapper_refused():
    def f(x):
        return np.sin(x.numpy())  # fails on a tensor that requires grad

    with pytest.raises(ValueError, match="score_function"):
        sg.pathwise(f, _normal, torch.tensor([0.0, 1.0]), num_samples=10, seed=0)


@pytest.mark.parametrize(
    "f",
    [lambda x: (x > 0).float(), torch.floor, lambda x: torch.round(3 * x)],
    ids=["step", "floor", "round"],
)
def test_piecewise_constant_f_refused(f):
    with pytest.raises(ValueError, match="pathwise") as info:
        sg.pathwise(f, _normal, torch.tensor([0.2, 1.0]), num_samples=100, seed=0)
    msg = str(info.value)
    assert "score_function" in msg
    assert "piecewise constant" in msg or "differentiabl" in msg


def test_floor_refusal_says_piecewise_constant():
    with pytest.raises(ValueError, match="piecewise constant"):
        sg.pathwise(torch.floor, _normal, torch.tensor([0.2, 1.0]), num_samples=100, seed=0)


def test_baseline_refused():
    with pytest.raises(ValueError, match="baseline"):
        sg.pathwise(
            torch.sin, _normal, torch.tensor([0.2, 1.0]), num_samples=10, baseline="loo", seed=0
        )


def test_bad_arguments():
    theta = torch.tensor([0.2, 1.0])
    with pytest.raises(ValueError, match="num_samples"):
        sg.pathwise(torch.sin, _normal, theta, num_samples=0, seed=0)
    with pytest.raises(TypeError, match="num_samples"):
        sg.pathwise(torch.sin, _normal, theta, num_samples=10.0, seed=0)
    with pytest.raises(ValueError, match="generator or seed"):
        sg.pathwise(torch.sin, _normal, theta, num_samples=10, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="scale"):
        sg.pathwise(torch.sin, _normal, torch.tensor([0.2, -1.0]), num_samples=10, seed=0)
    with pytest.raises(ValueError, match="one value per sample"):
        sg.pathwise(lambda x: x.sum(), _normal, theta, num_samples=10, seed=0)
    with pytest.raises(TypeError, match="params"):
        sg.pathwise(torch.sin, _normal, [0.2, 1.0], num_samples=10, seed=0)


@pytest.fixture
def float32_default():
    """Run with float32 as torch's default dtype (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


# ---------------------------------------------------------------------------------------------
# reproducibility and dtype
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("f", "dist_fn", "theta"),
    [
        (torch.sin, _normal, torch.tensor([0.2, 1.0])),
        (lambda x: x**2, lambda t: Gamma(t[0], t[1]), torch.tensor([2.0, 1.5])),
        (lambda x: x**2, Exponential, torch.tensor(1.3)),
    ],
    ids=["normal", "gamma", "exponential"],
)
def test_same_seed_bit_identical(f, dist_fn, theta):
    a = sg.pathwise(f, dist_fn, theta, num_samples=200, seed=42)
    b = sg.pathwise(f, dist_fn, theta, num_samples=200, seed=42)
    c = sg.pathwise(f, dist_fn, theta, num_samples=200, seed=43)
    assert torch.equal(a.per_sample, b.per_sample)
    assert torch.equal(a.grad, b.grad)
    assert not torch.equal(a.per_sample, c.per_sample)


def test_seed_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    sg.pathwise(lambda x: x**2, Exponential, torch.tensor(1.3), num_samples=20, seed=1)
    sg.pathwise(torch.sin, _normal, torch.tensor([0.2, 1.0]), num_samples=20, seed=1)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("f", "dist_fn", "theta"),
    [
        (torch.sin, _normal, torch.tensor([0.2, 1.0], dtype=F64)),
        (lambda x: x**2, Exponential, torch.tensor(1.3, dtype=F64)),
    ],
    ids=["normal", "exponential"],
)
def test_float64_params_keep_float64(f, dist_fn, theta, float32_default):
    est = sg.pathwise(f, dist_fn, theta, num_samples=50, seed=0)
    for name in ("grad", "per_sample", "variance", "stderr"):
        assert getattr(est, name).dtype == F64, name


def test_float32_params_give_float32(float32_default):
    est = sg.pathwise(torch.sin, _normal, torch.tensor([0.2, 1.0]), num_samples=50, seed=0)
    assert est.grad.dtype == torch.float32
    assert math.isfinite(float(est.grad.sum()))
