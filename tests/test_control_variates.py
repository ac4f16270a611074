"""Tests of the delta-method (second-order Taylor) control variate of the score-function estimator.

Layers: the per-sample terms replayed by hand from a seeded draw; unbiasedness and the variance
reduction predicted by quadrature; refusals of non-Gaussian distributions, black-box objectives
and unknown names.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

import stochgrad as sg
from tests.helpers import assert_unbiased as _close_to
from tests.helpers import autograd_of as _autograd

F64 = torch.float64


def _normal(th):
    return Normal(th[0], th[1])


def _delta(f, dist_fn, theta, n, seed, **kw):
    return sg.score_function(
        f, dist_fn, theta, num_samples=n, seed=seed, control_variate="delta", **kw
    )


# ---------------------------------------------------------------------------------------------
# (1) replay of the per-sample terms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 9])
def test_delta_terms_replayed_by_hand(seed):
    mu, sigma, n = 0.3, 0.8, 4
    theta = torch.tensor([mu, sigma], dtype=F64)
    est = _delta(torch.sin, _normal, theta, n, seed)

    eps = torch.randn((n,), generator=torch.Generator().manual_seed(seed), dtype=F64)
    x = eps * sigma + mu
    z = (x - mu) / sigma
    score = torch.stack([z / sigma, (z * z - 1) / sigma], 1)  # d log N / d(mu, sigma)
    g = torch.sin(x).unsqueeze(1) * score  # plain score-function terms
    dx = x - mu
    taylor = math.sin(mu) + math.cos(mu) * dx - 0.5 * math.sin(mu) * dx**2
    h = taylor.unsqueeze(1) * score
    # d/d(mu, sigma) of E[taylor] = f'(mu) (mu - mu0) + f''(mu)/2 ((mu - mu0)^2 + sigma^2) at mu0 = mu
    h_mean = torch.tensor([math.cos(mu), -math.sin(mu) * sigma], dtype=F64)
    c = h - h_mean
    beta = ((g * c).sum(0) - g * c) / ((c * c).sum(0) - c * c)  # leave-one-out regression
    expected = g - beta * c

    assert est.info["control_variate"] == "delta"
    assert est.per_sample.shape == (n, 2)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(est.grad, expected.mean(0), rtol=1e-12, atol=1e-14)


def test_control_variate_object_equals_name():
    theta = torch.tensor([0.3, 0.8], dtype=F64)
    a = _delta(torch.sin, _normal, theta, 100, 3)
    b = sg.score_function(
        torch.sin, _normal, theta, num_samples=100, seed=3, control_variate=sg.DeltaMethod()
    )
    c = _delta(torch.sin, _normal, theta, 100, 3)
    assert torch.equal(a.per_sample, b.per_sample)
    assert torch.equal(a.per_sample, c.per_sample)  # same seed, same numbers
    # work: f at the 100 samples and once at the mean
    assert a.evaluations == b.evaluations == 101 and a.info["control_variate_evaluations"] == 1
    plain = sg.score_function(torch.sin, _normal, theta, num_samples=100, seed=3)
    assert plain.evaluations == 100


# ---------------------------------------------------------------------------------------------
# (2) unbiasedness and variance reduction
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("f", "expectation"),
    [
        (torch.sin, lambda t: torch.sin(t[0]) * torch.exp(-(t[1] ** 2) / 2)),
        (
            lambda x: torch.exp(-(x**2) / 2),
            lambda t: torch.exp(-(t[0] ** 2) / (2 * (1 + t[1] ** 2))) / torch.sqrt(1 + t[1] ** 2),
        ),
        (
            # x^4 - 2 x^3 + x with E x^3 = mu^3 + 3 mu s^2, E x^4 = mu^4 + 6 mu^2 s^2 + 3 s^4
            lambda x: x**4 - 2 * x**3 + x,
            lambda t: (
                (t[0] ** 4 + 6 * t[0] ** 2 * t[1] ** 2 + 3 * t[1] ** 4)
                - 2 * (t[0] ** 3 + 3 * t[0] * t[1] ** 2)
                + t[0]
            ),
        ),
    ],
    ids=["sin", "gaussian_bump", "quartic"],
)
def test_delta_unbiased_on_normal(f, expectation):
    theta = torch.tensor([0.3, 0.8], dtype=F64)
    closed = _autograd(expectation, theta)
    torch.testing.assert_close(sg.exact_gradient(f, _normal, theta), closed, rtol=0, atol=1e-8)
    est = _delta(f, _normal, theta, 20_000, 1)
    _close_to(est, closed)


def _optimal_variance_ratio(mu: float, s: float) -> list[float]:
    """1 - corr(g, h)^2 per coordinate for f = sin by quadrature: the best ratio a CV can give."""

    def expect(fun):
        pdf = lambda x: math.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
        return integrate.quad(
            lambda x: fun(x) * pdf(x), mu - 12 * s, mu + 12 * s, epsabs=1e-13, epsrel=1e-12
        )[0]

    scores = [lambda x: (x - mu) / s**2, lambda x: (((x - mu) / s) ** 2 - 1) / s]
    taylor = lambda x: math.sin(mu) + math.cos(mu) * (x - mu) - 0.5 * math.sin(mu) * (x - mu) ** 2  # noqa: E731
    out = []
    for sc in scores:
        g = lambda x, sc=sc: math.sin(x) * sc(x)  # noqa: E731
        h = lambda x, sc=sc: taylor(x) * sc(x)  # noqa: E731
        mg, mh = expect(g), expect(h)
        vg = expect(lambda x, g=g: g(x) ** 2) - mg**2
        vh = expect(lambda x, h=h: h(x) ** 2) - mh**2
        cov = expect(lambda x, g=g, h=h: g(x) * h(x)) - mg * mh
        out.append(1.0 - cov * cov / (vg * vh))
    return out


def test_delta_variance_reduction_matches_quadrature():
    mu, s = 0.3, 0.5
    optimal = np.array(_optimal_variance_ratio(mu, s))
    assert (optimal < 0.1).all(), optimal  # sin is nearly quadratic over +-0.5: a strong CV
    theta = torch.tensor([mu, s], dtype=F64)
    plain = sg.score_function(torch.sin, _normal, theta, num_samples=20_000, seed=2)
    cv = _delta(torch.sin, _normal, theta, 20_000, 2)
    ratio = (cv.variance / plain.variance).numpy()
    assert (ratio < 0.5).all(), ratio
    # The estimated (leave-one-out) coefficient costs a little over the optimum; the sample
    # variances of heavy-tailed score terms are themselves noisy, hence the loose band.
    assert (ratio > 0.5 * optimal).all() and (ratio < 3.0 * optimal).all(), (ratio, optimal)
    # And the CV beats the leave-one-out baseline too.
    loo = sg.score_function(torch.sin, _normal, theta, num_samples=20_000, seed=2, baseline="loo")
    assert (cv.variance < 0.5 * loo.variance).all()


def test_exactly_quadratic_f_leaves_only_coefficient_noise():
    # For quadratic f the Taylor CV h equals the score-function term g itself, so with c = g - grad
    # the terms are grad + (1 - beta_{-i}) c_i, and 1 - beta_{-i} ~ -grad * mean(c) / Var(c) is
    # (nearly) one shared draw of size grad Z / sqrt(n Var c), Z ~ N(0, 1): the sample variance
    # is about grad^2 Z^2 / n. Allow Z^2 up to 25 (5 sigma), plus the beta * grad wobble.
    a, n = 1.5, 20_000
    theta = torch.tensor([0.3, 0.8], dtype=F64)
    exact = torch.tensor([2 * (0.3 - a), 2 * 0.8], dtype=F64)
    plain = sg.score_function(lambda x: (x - a) ** 2, _normal, theta, num_samples=n, seed=3)
    cv = _delta(lambda x: (x - a) ** 2, _normal, theta, n, 3)
    bound = 25.0 * exact**2 * (1.0 + exact**2 / plain.variance) / n
    assert (cv.variance < bound).all(), (cv.variance, bound)
    assert (cv.variance < 1e-3 * plain.variance).all()
    _close_to(cv, exact)
    torch.testing.assert_close(cv.grad, exact, rtol=0, atol=1e-2)


def test_independent_normal_three_coordinates():
    theta = torch.tensor([[0.1, -0.4, 0.7], [-1.0, -0.5, -1.5]], dtype=F64)
    w = torch.tensor([1.0, -0.5, 2.0], dtype=F64)

    def dist_fn(th):
        return Independent(Normal(th[0], F.softplus(th[1])), 1)

    def f(x):  # the cross term gives an off-diagonal Hessian
        return (w * torch.sin(x)).sum(-1) + x[:, 0] * x[:, 1]

    def expectation(th):
        s = F.softplus(th[1])
        return (w * torch.sin(th[0]) * torch.exp(-(s**2) / 2)).sum() + th[0, 0] * th[0, 1]

    closed = _autograd(expectation, theta)
    cv = _delta(f, dist_fn, theta, 20_000, 4)
    assert cv.grad.shape == theta.shape
    _close_to(cv, closed)
    plain = sg.score_function(f, dist_fn, theta, num_samples=20_000, seed=4)
    assert float(cv.variance.sum()) < 0.1 * float(plain.variance.sum())


def test_multivariate_normal_scale_tril():
    c = torch.tensor([0.7, -0.4], dtype=F64)
    mu = torch.tensor([0.2, -0.3], dtype=F64)
    raw = torch.tensor([-0.5, 0.2, -0.8], dtype=F64)

    def tril(r):
        zero = torch.zeros((), dtype=r.dtype)
        return torch.stack([torch.stack([r[0].exp(), zero]), torch.stack([r[1], r[2].exp()])])

    def dist_fn(m, r):
        return MultivariateNormal(m, scale_tril=tril(r))

    def f(x):
        return torch.sin(x @ c) + 0.5 * (x * x).sum(-1)

    def expectation(m, r):
        L = tril(r)
        cov = L @ L.T
        return torch.sin(c @ m) * torch.exp(-(c @ cov @ c) / 2) + 0.5 * (
            (m * m).sum() + cov.trace()
        )

    closed = _autograd(expectation, mu, raw)
    cv = _delta(f, dist_fn, (mu, raw), 20_000, 5)
    assert isinstance(cv.grad, tuple) and cv.grad[1].shape == (3,)
    _close_to(cv, closed)
    plain = sg.score_function(f, dist_fn, (mu, raw), num_samples=20_000, seed=5)
    assert float(cv.flat("variance").sum()) < 0.1 * float(plain.flat("variance").sum())


# ---------------------------------------------------------------------------------------------
# (3) refusals
# ---------------------------------------------------------------------------------------------
def test_non_gaussian_refused():
    with pytest.raises(ValueError, match="Gaussian") as info:
        _delta(lambda b: b, Bernoulli, torch.tensor(0.3), 100, 0)
    assert "control_variate" in str(info.value)


def test_black_box_f_refused():
    f = sg.black_box(np.sin)
    with pytest.raises(ValueError, match="differentiable") as info:
        _delta(f, _normal, torch.tensor([0.3, 0.8]), 100, 0)
    assert "control_variate" in str(info.value)


def test_unknown_name_refused():
    with pytest.raises(ValueError, match="control_variate") as info:
        sg.score_function(
            torch.sin,
            _normal,
            torch.tensor([0.3, 0.8]),
            num_samples=100,
            seed=0,
            control_variate="taylor3",
        )
    assert "delta" in str(info.value)


def test_one_sample_refused():
    with pytest.raises(ValueError, match="num_samples"):
        _delta(torch.sin, _normal, torch.tensor([0.3, 0.8]), 1, 0)
