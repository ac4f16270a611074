"""Tests of the measure-valued (weak derivative) estimator: replay, unbiasedness, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Exponential,
    Gamma,
    Independent,
    Normal,
    Poisson,
    Uniform,
)

from stochgrad import _core
from stochgrad.estimators.weak_derivative import (
    WEAK_DERIVATIVES,
    WeakDerivativePiece,
    measure_valued,
    register_weak_derivative,
    replace_coordinate,
)
from tests.helpers import assert_unbiased as _close_to
from tests.helpers import autograd_of as _autograd_exact


def _normal(th):
    return Normal(th[0], th[1])


# ---------------------------------------------------------------------------------------------
# (1) seeded replay and deterministic identities
# ---------------------------------------------------------------------------------------------
def test_normal_single_sample_replay():
    mu, sigma, a = 0.3, 1.7, 2.0
    theta = torch.tensor([mu, sigma])

    def f(x):
        return torch.sin(x) + (x - a) ** 2

    est = measure_valued(f, _normal, theta, num_samples=3, seed=123)

    # Replay the draws in the documented order with the same generator sequence.
    g = torch.Generator().manual_seed(123)
    _x = torch.randn(3, generator=g)  # the base samples (not used for a scalar Normal)
    e = torch.empty(3).exponential_(generator=g)
    w = (2.0 * e).sqrt()
    z = torch.randn(3, 3, generator=g)
    sign = torch.where(torch.rand(3, generator=g) < 0.5, -1.0, 1.0)
    m = sign * z.norm(dim=-1)
    u = torch.rand(3, generator=g)
    mu_t, sig_t = torch.tensor(mu), torch.tensor(sigma)
    d_mu = (f(mu_t + sig_t * w) - f(mu_t - sig_t * w)) / (sig_t * math.sqrt(2 * math.pi))
    d_sigma = (f(mu_t + sig_t * m) - f(mu_t + sig_t * m * u)) / sig_t
    expected = torch.stack([d_mu, d_sigma], dim=1)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-6, atol=1e-6)
    assert est.evaluations == 2 * 2 * 3
    assert est.method == "measure_valued"
    assert not est.biased


def test_exponential_single_sample_replay():
    lam = 1.5

    def f(x):
        return x**2

    est = measure_valued(f, lambda r: Exponential(r), torch.tensor(lam), num_samples=4, seed=7)
    g = torch.Generator().manual_seed(7)
    x = torch.empty(4).exponential_(generator=g) / lam
    extra = torch.empty(4).exponential_(generator=g) / lam
    expected = (f(x) - f(x + extra)) / lam  # Exp(lam) minus Gamma(2, lam), c = 1 / lam
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-6, atol=1e-6)


def test_deterministic_identities():
    # f linear in one coordinate: the positive and negative points differ by exactly one unit.
    p = torch.tensor([0.2, 0.5, 0.9])
    est = measure_valued(
        lambda x: x.sum(1), lambda q: Independent(Bernoulli(probs=q), 1), p, num_samples=50, seed=0
    )
    torch.testing.assert_close(est.per_sample, torch.ones(50, 3))
    assert est.evaluations == 2 * 3 * 50

    logits = torch.tensor([-1.0, 0.0, 2.0])
    est = measure_valued(
        lambda x: x.sum(1), lambda lg: Independent(Bernoulli(logits=lg), 1), logits, num_samples=8
    )
    q = torch.sigmoid(logits)
    torch.testing.assert_close(est.per_sample, (q * (1 - q)).expand(8, 3))

    est = measure_valued(lambda x: 3.0 * x, lambda r: Poisson(r), torch.tensor(4.0), num_samples=20)
    torch.testing.assert_close(est.per_sample, torch.full((20,), 3.0))

    # A parameter not depending on params costs no evaluations; f constant gives zero gradient.
    est = measure_valued(
        lambda x: torch.zeros(x.shape[0]),
        lambda loc: Normal(loc, 2.0),
        torch.tensor(0.0),
        num_samples=5,
        seed=1,
    )
    assert est.evaluations == 2 * 1 * 5
    torch.testing.assert_close(est.per_sample, torch.zeros(5))


def test_replace_coordinate():
    x = torch.arange(6.0).reshape(2, 3)
    v = -torch.arange(1.0, 7.0).reshape(2, 3)
    pts = replace_coordinate(x, v)
    assert pts.shape == (3, 2, 3)
    for j in range(3):
        want = x.clone()
        want[:, j] = v[:, j]
        torch.testing.assert_close(pts[j], want)


def test_same_seed_bit_identical_and_global_rng_untouched():
    theta = torch.tensor([0.5, 1.0])

    def f(x):
        return torch.cos(2.0 * x)

    state = torch.get_rng_state()
    a = measure_valued(f, _normal, theta, num_samples=500, seed=11)
    b = measure_valued(f, _normal, theta, num_samples=500, seed=11)
    c = measure_valued(
        f, _normal, theta, num_samples=500, generator=torch.Generator().manual_seed(11)
    )
    d = measure_valued(f, _normal, theta, num_samples=500, seed=12)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.per_sample, b.per_sample)
    assert torch.equal(a.per_sample, c.per_sample)
    assert not torch.equal(a.per_sample, d.per_sample)


# ---------------------------------------------------------------------------------------------
# (2) unbiasedness against closed forms
# ---------------------------------------------------------------------------------------------
def test_normal_quadratic():
    mu, sigma, a = 0.5, 1.3, 2.0
    est = measure_valued(
        lambda x: (x - a) ** 2, _normal, torch.tensor([mu, sigma]), num_samples=20_000, seed=0
    )
    _close_to(est, torch.tensor([2 * (mu - a), 2 * sigma]))


@pytest.mark.parametrize("k", [0.5, 2.0, 5.0])
def test_normal_cos(k):
    theta = torch.tensor([1.0, 1.0])
    est = measure_valued(lambda x: torch.cos(k * x), _normal, theta, num_samples=20_000, seed=1)
    exact = _autograd_exact(
        lambda t: torch.cos(k * t[0]) * torch.exp(-(k**2) * t[1] ** 2 / 2), theta
    )
    _close_to(est, exact)


@pytest.mark.parametrize("k", [0.1, 1.0, 10.0])
def test_normal_exp_square(k):
    theta = torch.tensor([1.0, 1.0])

    def expectation(t):
        s = 1 + 2 * k * t[1] ** 2
        return s ** (-0.5) * torch.exp(-k * t[0] ** 2 / s)

    est = measure_valued(lambda x: torch.exp(-k * x**2), _normal, theta, num_samples=20_000, seed=2)
    _close_to(est, _autograd_exact(expectation, theta))


def test_batch_normal_tuple_params():
    loc = torch.tensor([0.4, -0.7, 1.1])
    log_scale = torch.tensor([0.1, -0.3, 0.2])

    def dist_fn(lc, ls):
        return Independent(Normal(lc, ls.exp()), 1)

    def f(x):  # couples coordinates: the other coordinates must stay at their sampled values
        return x[:, 0] * x[:, 1] + x[:, 2] ** 2 + torch.cos(x[:, 0])

    def expectation(lc, ls):
        s = ls.exp()
        return (
            lc[0] * lc[1] + lc[2] ** 2 + s[2] ** 2 + torch.cos(lc[0]) * torch.exp(-(s[0] ** 2) / 2)
        )

    est = measure_valued(f, dist_fn, (loc, log_scale), num_samples=20_000, seed=3)
    assert isinstance(est.grad, tuple) and est.grad[0].shape == (3,)
    assert est.per_sample[1].shape == (20_000, 3)
    assert est.evaluations == 2 * 6 * 20_000
    _close_to(est, _autograd_exact(expectation, loc, log_scale))


def test_broadcast_scalar_param_to_batch():
    # One scalar loc shared by three coordinates: the chain rule sums the coordinates' terms.
    theta = torch.tensor([0.3, 0.8])

    def f(x):
        return (x**2).sum(1) + x[:, 0] * x[:, 2]

    def dist_fn(t):
        return Independent(Normal(t[0].expand(3), t[1]), 1)

    est = measure_valued(f, dist_fn, theta, num_samples=20_000, seed=4)
    exact = _autograd_exact(lambda t: 3 * (t[0] ** 2 + t[1] ** 2) + t[0] ** 2, theta)
    _close_to(est, exact)


def _bernoulli_expectation(probs, f):
    total = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=probs.numel()):
        b = torch.tensor(bits)
        weight = torch.prod(torch.where(b > 0, probs, 1 - probs))
        total = total + weight * f(b.unsqueeze(0))[0]
    return total


def _bern_f(x):
    return (x[:, 0] + 2 * x[:, 1] - x[:, 2] - 0.4) ** 2


def test_bernoulli_probs():
    probs = torch.tensor([0.3, 0.6, 0.8])
    est = measure_valued(
        _bern_f, lambda p: Independent(Bernoulli(probs=p), 1), probs, num_samples=20_000, seed=5
    )
    _close_to(est, _autograd_exact(lambda p: _bernoulli_expectation(p, _bern_f), probs))


def test_bernoulli_logits():
    logits = torch.tensor([-0.5, 0.4, 1.5])
    est = measure_valued(
        _bern_f, lambda lg: Independent(Bernoulli(logits=lg), 1), logits, num_samples=20_000, seed=6
    )
    exact = _autograd_exact(lambda lg: _bernoulli_expectation(torch.sigmoid(lg), _bern_f), logits)
    _close_to(est, exact)


def test_poisson_square():
    lam = torch.tensor(2.5)
    est = measure_valued(lambda x: x**2, lambda r: Poisson(r), lam, num_samples=20_000, seed=7)
    _close_to(est, 1 + 2 * lam)  # d/dlam (lam + lam^2)


def test_exponential_square():
    lam = torch.tensor(1.5)
    est = measure_valued(lambda x: x**2, lambda r: Exponential(r), lam, num_samples=20_000, seed=8)
    _close_to(est, -4 / lam**3)  # d/dlam (2 / lam^2)


def test_exponential_batch_log_rate():
    log_rate = torch.tensor([0.0, 0.5])

    def f(x):
        return x[:, 0] * x[:, 1] + x[:, 1]

    est = measure_valued(
        f, lambda lr: Independent(Exponential(lr.exp()), 1), log_rate, num_samples=20_000, seed=9
    )
    exact = _autograd_exact(lambda lr: 1 / lr.exp().prod() + 1 / lr[1].exp(), log_rate)
    _close_to(est, exact)


def test_black_box_numpy_f():
    theta = torch.tensor([0.5, 1.3])
    f = _core.black_box(lambda x: (x - 2.0) ** 2 + np.zeros_like(x))
    est = measure_valued(f, _normal, theta, num_samples=20_000, seed=10)
    _close_to(est, torch.tensor([2 * (0.5 - 2.0), 2 * 1.3]))


def test_register_weak_derivative_uniform():
    # d/dhigh E f = (f(high) - E f(U)) / (high - low); d/dlow = (E f(U) - f(low)) / (high - low).
    def uniform_weak(d, x, g):
        lo, hi = d.low.detach(), d.high.detach()
        c = 1.0 / (hi - lo)
        return [
            WeakDerivativePiece(
                d.low, replace_coordinate(x, x), replace_coordinate(x, lo.expand_as(x)), c
            ),
            WeakDerivativePiece(
                d.high, replace_coordinate(x, hi.expand_as(x)), replace_coordinate(x, x), c
            ),
        ]

    assert Uniform not in WEAK_DERIVATIVES
    assert register_weak_derivative(Uniform, uniform_weak) is uniform_weak
    try:
        theta = torch.tensor([0.5, 2.0])
        est = measure_valued(
            lambda x: x**3, lambda t: Uniform(t[0], t[1]), theta, num_samples=20_000, seed=11
        )
        exact = _autograd_exact(lambda t: (t[1] ** 4 - t[0] ** 4) / (4 * (t[1] - t[0])), theta)
        _close_to(est, exact)
    finally:
        WEAK_DERIVATIVES.pop(Uniform, None)


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------
def test_unsupported_distribution():
    with pytest.raises(ValueError, match="score_function") as info:
        measure_valued(
            lambda x: x, lambda t: Gamma(t[0], t[1]), torch.tensor([2.0, 1.0]), num_samples=10
        )
    assert "Gamma" in str(info.value) and "Normal" in str(info.value)


def test_baseline_refused():
    with pytest.raises(ValueError, match="baseline"):
        measure_valued(
            lambda x: x, _normal, torch.tensor([0.0, 1.0]), num_samples=10, baseline="loo"
        )


def test_num_samples_zero():
    with pytest.raises(ValueError, match="num_samples"):
        measure_valued(lambda x: x, _normal, torch.tensor([0.0, 1.0]), num_samples=0)


def test_f_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        measure_valued(lambda x: x.unsqueeze(1), _normal, torch.tensor([0.0, 1.0]), num_samples=10)


def test_f_non_finite():
    with pytest.raises(ValueError, match="non-finite"):
        measure_valued(lambda x: x / 0.0, _normal, torch.tensor([0.0, 1.0]), num_samples=10)


def test_param_outside_constraint():
    with pytest.raises(ValueError, match="scale"):
        measure_valued(lambda x: x, _normal, torch.tensor([0.0, -1.0]), num_samples=10)


def test_register_rejects_non_distribution():
    with pytest.raises(TypeError):
        register_weak_derivative(int, lambda d, x, g: [])
    with pytest.raises(TypeError):
        register_weak_derivative(Normal, "not callable")


def test_bad_registered_shapes():
    def broken(d, x, g):
        return [WeakDerivativePiece(d.low, x, x, 1.0)]  # missing the coordinate axis

    register_weak_derivative(Uniform, broken)
    try:
        with pytest.raises(ValueError, match="positive points must have shape"):
            measure_valued(
                lambda x: x,
                lambda t: Uniform(t[0], t[1]),
                torch.tensor([0.0, 1.0]),
                num_samples=4,
            )
    finally:
        WEAK_DERIVATIVES.pop(Uniform, None)
