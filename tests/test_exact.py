"""Tests of the exact reference gradients: enumeration and quadrature against closed forms.

Every expected value here is a closed form (differentiated by hand or by torch autograd of the
closed form) or a brute-force enumeration written in the test; nothing is a recorded output of
the library.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Exponential,
    Gamma,
    Independent,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
    Poisson,
    Uniform,
)

import stochgrad as sg
from tests.helpers import autograd_of as _autograd

F64 = torch.float64


def _normal(th):
    return Normal(th[0], th[1])


# ---------------------------------------------------------------------------------------------
# enumeration (finite support)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.3, 0.85])
@pytest.mark.parametrize("t", [0.0, 0.499, 2.0])
def test_bernoulli_probs_closed_form(p, t):
    # E[(b - t)^2] = p (1 - t)^2 + (1 - p) t^2, so d/dp = (1 - t)^2 - t^2 = 1 - 2t.
    value, grad = sg.exact_gradient(
        lambda b: (b - t) ** 2, Bernoulli, torch.tensor(p, dtype=F64), return_value=True
    )
    assert grad.shape == ()
    assert grad.dtype == F64
    assert float(grad) == pytest.approx(1.0 - 2.0 * t, abs=1e-12)
    assert value == pytest.approx(p * (1 - t) ** 2 + (1 - p) * t**2, abs=1e-12)


def test_bernoulli_logits_chain_rule():
    # With logits l: p = sigmoid(l), dE/dl = (1 - 2t) p (1 - p).
    t, logit = 0.2, torch.tensor(-0.7, dtype=F64)
    grad = sg.exact_gradient(lambda b: (b - t) ** 2, lambda l: Bernoulli(logits=l), logit)
    p = torch.sigmoid(logit)
    assert float(grad) == pytest.approx(float((1 - 2 * t) * p * (1 - p)), abs=1e-12)


def test_categorical_logits_closed_form():
    g = torch.tensor([1.5, -0.3, 2.0, 0.7], dtype=F64)
    logits = torch.tensor([0.2, -1.0, 0.5, 0.0], dtype=F64)
    grad = sg.exact_gradient(lambda k: g[k], lambda l: Categorical(logits=l), logits)
    expected = _autograd(lambda l: (torch.softmax(l, -1) * g).sum(), logits)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    # Hand-derived: d/dl_j sum_k s_k g_k = s_j (g_j - sum_k s_k g_k).
    s = torch.softmax(logits, -1)
    torch.testing.assert_close(grad, s * (g - (s * g).sum()), rtol=0, atol=1e-12)


def test_categorical_probs_closed_form_unnormalised():
    # Categorical normalises probs, so E = sum_k (p_k / sum p) g_k: the gradient sees that.
    g = torch.tensor([1.5, -0.3, 2.0], dtype=F64)
    probs = torch.tensor([0.2, 0.5, 0.6], dtype=F64)
    grad = sg.exact_gradient(lambda k: g[k], lambda p: Categorical(probs=p), probs)
    expected = _autograd(lambda p: (p / p.sum() * g).sum(), probs)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_batch_of_categoricals_enumerated_jointly():
    # Two independent categoricals: E[g[k0] g[k1]] = (s0 . g)(s1 . g).
    g = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    logits = torch.tensor([[0.1, 0.5, -0.2], [0.3, -0.4, 0.0]], dtype=F64)
    grad = sg.exact_gradient(
        lambda k: g[k[:, 0]] * g[k[:, 1]], lambda l: Categorical(logits=l), logits
    )

    def expectation(l):
        s = torch.softmax(l, -1)
        return (s[0] * g).sum() * (s[1] * g).sum()

    torch.testing.assert_close(grad, _autograd(expectation, logits), rtol=0, atol=1e-12)


def test_onehot_categorical_closed_form():
    g = torch.tensor([0.5, -2.0, 1.0], dtype=F64)
    logits = torch.tensor([0.3, 0.1, -0.4], dtype=F64)

    def f(x):
        assert x.shape[-1] == 3  # one-hot samples
        return (x * g).sum(-1) ** 2  # = g_k^2 at the one-hot vector e_k

    value, grad = sg.exact_gradient(
        f, lambda l: OneHotCategorical(logits=l), logits, return_value=True
    )
    expected = _autograd(lambda l: (torch.softmax(l, -1) * g**2).sum(), logits)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    assert value == pytest.approx(float((torch.softmax(logits, -1) * g**2).sum()), abs=1e-12)


@pytest.mark.parametrize("n_trials", [1, 4, 9])
def test_binomial_second_moment(n_trials):
    # E[x^2] = N p (1 - p) + N^2 p^2, d/dp = N (1 - 2p) + 2 N^2 p.
    p = 0.37
    grad = sg.exact_gradient(
        lambda x: x**2,
        lambda q: Binomial(total_count=n_trials, probs=q),
        torch.tensor(p, dtype=F64),
    )
    expected = n_trials * (1 - 2 * p) + 2 * n_trials**2 * p
    assert float(grad) == pytest.approx(expected, abs=1e-10)


def test_binomial_batch_with_unequal_counts():
    # Two independent binomials with counts 3 and 5; E[x0 * x1] = 3 p0 * 5 p1.
    counts = torch.tensor([3.0, 5.0], dtype=F64)
    p = torch.tensor([0.2, 0.6], dtype=F64)
    grad = sg.exact_gradient(
        lambda x: x[:, 0] * x[:, 1] + x[:, 1] ** 2,
        lambda q: Binomial(total_count=counts, probs=q),
        p,
    )

    def expectation(q):
        m = counts * q
        second = counts * q * (1 - q) + m**2
        return m[0] * m[1] + second[1]

    torch.testing.assert_close(grad, _autograd(expectation, p), rtol=0, atol=1e-10)


def test_independent_bernoulli_product_against_bruteforce():
    d = 10
    logits = torch.linspace(-1.2, 1.5, d, dtype=F64)
    w = torch.linspace(0.5, -0.8, d, dtype=F64)

    def f(x):
        s = x @ w
        return torch.sin(3.0 * s) + x[:, 0] * x[:, -1] * torch.exp(0.1 * x.sum(-1))

    grad = sg.exact_gradient(f, lambda l: Independent(Bernoulli(logits=l), 1), logits)

    # Brute force, independent of the library: sum over all 2^10 configurations.
    configs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=F64)
    assert configs.shape == (2**d, d)
    fx = f(configs)

    def expectation(l):
        p = torch.sigmoid(l)
        prob = (configs * p + (1 - configs) * (1 - p)).prod(-1)
        return (prob * fx).sum()

    torch.testing.assert_close(grad, _autograd(expectation, logits), rtol=0, atol=1e-12)


def test_batch_of_bernoullis_is_a_joint_product():
    # A batch shape (no Independent) is enumerated jointly: E[x0 x1 + 2 x2] = p0 p1 + 2 p2.
    p = torch.tensor([0.2, 0.7, 0.4], dtype=F64)
    value, grad = sg.exact_gradient(
        lambda x: x[:, 0] * x[:, 1] + 2.0 * x[:, 2], Bernoulli, p, return_value=True
    )
    torch.testing.assert_close(grad, torch.tensor([0.7, 0.2, 2.0], dtype=F64), rtol=0, atol=1e-12)
    assert value == pytest.approx(0.2 * 0.7 + 2 * 0.4, abs=1e-12)


def test_tuple_params_enumeration():
    # Bernoulli(probs = a * b) with params (a, b): dE/da = (1 - 2t) b, dE/db = (1 - 2t) a.
    t = 0.1
    a = torch.tensor(0.5, dtype=F64)
    b = torch.tensor(0.8, dtype=F64)
    grad = sg.exact_gradient(lambda x: (x - t) ** 2, lambda a, b: Bernoulli(a * b), (a, b))
    assert isinstance(grad, tuple) and len(grad) == 2
    assert float(grad[0]) == pytest.approx((1 - 2 * t) * 0.8, abs=1e-12)
    assert float(grad[1]) == pytest.approx((1 - 2 * t) * 0.5, abs=1e-12)


def test_black_box_f_is_fine_for_enumeration():
    import numpy as np

    p = torch.tensor([0.3, 0.6], dtype=F64)
    f = sg.black_box(lambda x: np.cos(x).sum(-1))
    grad = sg.exact_gradient(f, lambda q: Independent(Bernoulli(q), 1), p)
    # E = sum_k [p_k cos 1 + (1 - p_k)], so dE/dp_k = cos 1 - 1.
    torch.testing.assert_close(
        grad, torch.full((2,), math.cos(1.0) - 1.0, dtype=F64), rtol=0, atol=1e-12
    )


def test_too_many_configurations_raises():
    p = torch.full((21,), 0.5, dtype=F64)
    with pytest.raises(ValueError, match="max_configurations"):
        sg.exact_gradient(lambda x: x.sum(-1), lambda q: Independent(Bernoulli(q), 1), p)
    # The limit is a parameter: 2^4 = 16 configurations exceed max_configurations=10.
    with pytest.raises(ValueError, match="max_configurations=10"):
        sg.exact_gradient(
            lambda x: x.sum(-1), Bernoulli, torch.full((4,), 0.5), max_configurations=10
        )


# ---------------------------------------------------------------------------------------------
# quadrature (one-dimensional continuous)
# ---------------------------------------------------------------------------------------------
MU, SIGMA = 0.4, 0.7


@pytest.mark.parametrize(
    ("name", "f", "expectation"),
    [
        ("quadratic", lambda x: (x - 1.7) ** 2, lambda t: (t[0] - 1.7) ** 2 + t[1] ** 2),
        (
            "cos",
            lambda x: torch.cos(3.0 * x),
            lambda t: torch.cos(3.0 * t[0]) * torch.exp(-9.0 * t[1] ** 2 / 2),
        ),
        (
            "gaussian_bump",
            lambda x: torch.exp(-2.0 * x**2),
            lambda t: (
                torch.exp(-2.0 * t[0] ** 2 / (1 + 4 * t[1] ** 2)) / torch.sqrt(1 + 4 * t[1] ** 2)
            ),
        ),
    ],
)
def test_normal_quadrature_closed_forms(name, f, expectation):
    theta = torch.tensor([MU, SIGMA], dtype=F64)
    value, grad = sg.exact_gradient(f, _normal, theta, return_value=True)
    torch.testing.assert_close(grad, _autograd(expectation, theta), rtol=0, atol=1e-8)
    assert value == pytest.approx(float(expectation(theta)), abs=1e-8)


def test_normal_quadratic_by_hand():
    # E[(x - a)^2] = (mu - a)^2 + s^2: gradient (2 (mu - a), 2 s).
    a = -0.6
    grad = sg.exact_gradient(lambda x: (x - a) ** 2, _normal, torch.tensor([MU, SIGMA], dtype=F64))
    torch.testing.assert_close(
        grad, torch.tensor([2 * (MU - a), 2 * SIGMA], dtype=F64), rtol=0, atol=1e-8
    )


def test_normal_tuple_params_and_independent_wrapper():
    mu = torch.tensor(MU, dtype=F64)
    log_s = torch.tensor(math.log(SIGMA), dtype=F64)
    grad = sg.exact_gradient(
        lambda x: torch.sin(x[:, 0]),
        lambda m, ls: Independent(Normal(m.reshape(1), ls.exp().reshape(1)), 1),
        (mu, log_s),
    )
    assert isinstance(grad, tuple)
    expected = _autograd(lambda m, ls: torch.sin(m) * torch.exp(-torch.exp(2 * ls) / 2), mu, log_s)
    for got, want in zip(grad, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-8)


def test_exponential_second_moment():
    # E[x^2] = 2 / r^2, d/dr = -4 / r^3.
    rate = 1.3
    value, grad = sg.exact_gradient(
        lambda x: x**2, Exponential, torch.tensor(rate, dtype=F64), return_value=True
    )
    assert float(grad) == pytest.approx(-4.0 / rate**3, abs=1e-8)
    assert value == pytest.approx(2.0 / rate**2, abs=1e-8)


def test_gamma_second_moment():
    # E[x^2] = a (a + 1) / b^2.
    theta = torch.tensor([2.5, 1.5], dtype=F64)
    grad = sg.exact_gradient(lambda x: x**2, lambda t: Gamma(t[0], t[1]), theta)
    a, b = 2.5, 1.5
    expected = torch.tensor([(2 * a + 1) / b**2, -2 * a * (a + 1) / b**3], dtype=F64)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("ab", [(2.0, 3.0), (0.6, 0.8)])
def test_beta_second_moment(ab):
    # E[x^2] = a (a + 1) / ((a + b)(a + b + 1)), differentiated by autograd.
    theta = torch.tensor(ab, dtype=F64)

    def expectation(t):
        a, b = t[0], t[1]
        return a * (a + 1) / ((a + b) * (a + b + 1))

    value, grad = sg.exact_gradient(
        lambda x: x**2, lambda t: Beta(t[0], t[1]), theta, return_value=True
    )
    torch.testing.assert_close(grad, _autograd(expectation, theta), rtol=0, atol=1e-8)
    assert value == pytest.approx(float(expectation(theta)), abs=1e-8)


def test_narrow_normal_far_from_zero():
    # sd 1e-3 at mean 50: quadrature must find the bulk of the mass.
    a = 49.0
    theta = torch.tensor([50.0, 1e-3], dtype=F64)
    value, grad = sg.exact_gradient(lambda x: (x - a) ** 2, _normal, theta, return_value=True)
    torch.testing.assert_close(grad, torch.tensor([2.0, 2e-3], dtype=F64), rtol=0, atol=1e-8)
    assert value == pytest.approx(1.0 + 1e-6, abs=1e-9)


def test_narrow_normal_small_component_relative_accuracy():
    # d/ds E[sin x] = -sin(mu) s exp(-s^2/2) = -8.27e-5 here; the library is off by 2.6%.
    mu, s = 1000.0, 1e-4
    grad = sg.exact_gradient(torch.sin, _normal, torch.tensor([mu, s], dtype=F64))
    expected_s = -math.sin(mu) * s * math.exp(-s * s / 2)
    assert float(grad[1]) == pytest.approx(expected_s, rel=1e-6)


def test_return_value_flag():
    theta = torch.tensor([MU, SIGMA], dtype=F64)
    grad_only = sg.exact_gradient(torch.sin, _normal, theta)
    out = sg.exact_gradient(torch.sin, _normal, theta, return_value=True)
    assert isinstance(out, tuple) and len(out) == 2
    value, grad = out
    assert isinstance(value, float)
    assert value == pytest.approx(math.sin(MU) * math.exp(-(SIGMA**2) / 2), abs=1e-9)
    torch.testing.assert_close(grad, grad_only, rtol=0, atol=0)
    assert isinstance(grad_only, torch.Tensor) and grad_only.shape == theta.shape


def test_uniform_with_parameter_dependent_support_is_right_or_refused():
    # E[x] = h / 2 under Uniform(0, h): d/dh = 1/2. A clear refusal would also be acceptable.
    try:
        grad = sg.exact_gradient(
            lambda x: x,
            lambda h: Uniform(torch.zeros((), dtype=F64), h),
            torch.tensor(2.0, dtype=F64),
        )
    except ValueError:
        return
    assert float(grad) == pytest.approx(0.5, abs=1e-8)


# ---------------------------------------------------------------------------------------------
# no reference available
# ---------------------------------------------------------------------------------------------
def test_multivariate_normal_is_refused():
    loc = torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="enumeration") as info:
        sg.exact_gradient(
            lambda x: (x**2).sum(-1),
            lambda m: MultivariateNormal(m, torch.eye(2, dtype=F64)),
            loc,
        )
    assert "quadrature" in str(info.value)


def test_batch_of_normals_is_refused():
    with pytest.raises(ValueError, match="quadrature"):
        sg.exact_gradient(
            lambda x: x.sum(-1),
            lambda m: Independent(Normal(m, 1.0), 1),
            torch.zeros(3, dtype=F64),
        )


def test_poisson_infinite_support_is_refused():
    with pytest.raises(ValueError, match="Poisson"):
        sg.exact_gradient(lambda x: x**2, Poisson, torch.tensor(2.0, dtype=F64))


def test_bad_params_raise():
    with pytest.raises(TypeError, match="params"):
        sg.exact_gradient(lambda x: x, Bernoulli, 0.3)
    with pytest.raises(ValueError, match="probs"):
        sg.exact_gradient(lambda x: x, Bernoulli, torch.tensor(1.5))


def test_f_with_wrong_shape_raises():
    with pytest.raises(ValueError, match="one value per sample"):
        sg.exact_gradient(lambda x: x.sum(), Bernoulli, torch.tensor([0.3, 0.4]))
