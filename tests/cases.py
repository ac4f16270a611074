"""A registry of test problems with exact gradients from closed forms or exact enumeration.

Each case names the estimators that apply to it; ``tests/test_unbiased.py`` checks every
estimator on every case against the exact gradient within 5 standard errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import distributions as D

import stochgrad as sg

DT = torch.float64


@dataclass
class Case:
    name: str
    f: Callable
    dist_fn: Callable
    params: torch.Tensor | tuple
    exact: Callable[[], torch.Tensor | tuple]
    methods: tuple[str, ...]


def _autograd_of(expectation: Callable, params):
    """Gradient of a closed-form expectation by autograd (the closed form, not an estimate)."""
    if isinstance(params, tuple):
        leaves = tuple(p.detach().clone().requires_grad_(True) for p in params)
        return torch.autograd.grad(expectation(*leaves), leaves)
    leaf = params.detach().clone().requires_grad_(True)
    return torch.autograd.grad(expectation(leaf), leaf)[0]


def _normal(th):
    return D.Normal(th[0], th[1])


SF = ("score_function", "score_function:loo", "score_function:optimal")
CONT = (*SF, "pathwise")

CASES = [
    Case(
        "normal-quadratic",
        lambda x: (x - 2.0) ** 2,
        _normal,
        torch.tensor([0.5, 1.0], dtype=DT),
        lambda: torch.tensor([-3.0, 2.0], dtype=DT),
        (*CONT, "measure_valued", "score_function:delta"),
    ),
    Case(
        "normal-cos",
        lambda x: torch.cos(2.0 * x),
        _normal,
        torch.tensor([0.3, 0.7], dtype=DT),
        lambda: _autograd_of(
            lambda th: torch.cos(2 * th[0]) * torch.exp(-2.0 * th[1] ** 2),
            torch.tensor([0.3, 0.7], dtype=DT),
        ),
        (*CONT, "measure_valued", "score_function:delta"),
    ),
    Case(
        "normal-batch-softplus",
        lambda x: (x**2).sum(-1) + x[:, 0] * x[:, 1] + torch.sin(2.0 * x[:, 2]),
        lambda loc, rho: D.Independent(D.Normal(loc, F.softplus(rho)), 1),
        (torch.tensor([0.2, -0.4, 1.0], dtype=DT), torch.tensor([0.1, -0.3, 0.5], dtype=DT)),
        lambda: _autograd_of(
            lambda loc, rho: (
                (loc**2 + F.softplus(rho) ** 2).sum()
                + loc[0] * loc[1]
                + torch.sin(2.0 * loc[2]) * torch.exp(-2.0 * F.softplus(rho[2]) ** 2)
            ),
            (torch.tensor([0.2, -0.4, 1.0], dtype=DT), torch.tensor([0.1, -0.3, 0.5], dtype=DT)),
        ),
        (*CONT, "measure_valued", "score_function:delta"),
    ),
    Case(
        "bernoulli-probs",
        lambda b: (b - 0.499) ** 2,
        lambda p: D.Bernoulli(probs=p),
        torch.tensor(0.3, dtype=DT),
        lambda: torch.tensor((1 - 0.499) ** 2 - 0.499**2, dtype=DT),
        (*SF, "measure_valued"),
    ),
    Case(
        "bernoulli-logits",
        lambda b: (b - 0.45) ** 2,
        lambda logit: D.Bernoulli(logits=logit),
        torch.tensor(-0.4, dtype=DT),
        lambda: _autograd_of(
            lambda lg: torch.sigmoid(lg) * 0.55**2 + (1 - torch.sigmoid(lg)) * 0.45**2,
            torch.tensor(-0.4, dtype=DT),
        ),
        (*SF, "measure_valued"),
    ),
    Case(
        "categorical-logits",
        lambda k: (k.to(DT) - 1.3) ** 2,
        lambda lg: D.Categorical(logits=lg),
        torch.tensor([0.1, 0.5, -0.2, 0.3], dtype=DT),
        lambda: _autograd_of(
            lambda lg: (torch.softmax(lg, -1) * (torch.arange(4, dtype=DT) - 1.3) ** 2).sum(),
            torch.tensor([0.1, 0.5, -0.2, 0.3], dtype=DT),
        ),
        SF,
    ),
    Case(
        "onehot-categorical-probs",
        lambda x: x @ torch.tensor([1.0, -2.0, 0.5], dtype=DT),
        lambda p: D.OneHotCategorical(probs=p),
        torch.tensor([0.2, 0.3, 0.5], dtype=DT),
        lambda: _autograd_of(
            lambda p: (p / p.sum() * torch.tensor([1.0, -2.0, 0.5], dtype=DT)).sum(),
            torch.tensor([0.2, 0.3, 0.5], dtype=DT),
        ),
        SF,
    ),
    Case(
        "product-of-10-bernoullis",
        lambda b: (b.sum(-1) - 3.0) ** 2 + b[:, 0] * b[:, 9],
        lambda lg: D.Independent(D.Bernoulli(logits=lg), 1),
        torch.linspace(-1.5, 1.5, 10, dtype=DT),
        lambda: sg.exact_gradient(
            lambda b: (b.sum(-1) - 3.0) ** 2 + b[:, 0] * b[:, 9],
            lambda lg: D.Independent(D.Bernoulli(logits=lg), 1),
            torch.linspace(-1.5, 1.5, 10, dtype=DT),
        ),
        (*SF, "measure_valued"),
    ),
    Case(
        "binomial",
        lambda x: x**2,
        lambda p: D.Binomial(5, probs=p),
        torch.tensor(0.35, dtype=DT),
        lambda: _autograd_of(lambda p: 5 * p * (1 - p) + 25 * p**2, torch.tensor(0.35, dtype=DT)),
        SF,
    ),
    Case(
        "poisson",
        lambda x: x**2,
        lambda lam: D.Poisson(lam),
        torch.tensor(2.5, dtype=DT),
        lambda: torch.tensor(1 + 2 * 2.5, dtype=DT),
        (*SF, "measure_valued"),
    ),
    Case(
        "exponential",
        lambda x: x**2,
        lambda lam: D.Exponential(lam),
        torch.tensor(1.5, dtype=DT),
        lambda: torch.tensor(-4 / 1.5**3, dtype=DT),
        (*CONT, "measure_valued"),
    ),
    Case(
        "gamma",
        lambda x: (x - 2.0) ** 2,
        lambda th: D.Gamma(th[0], th[1]),
        torch.tensor([2.0, 1.5], dtype=DT),
        lambda: _autograd_of(
            lambda th: th[0] / th[1] ** 2 + (th[0] / th[1] - 2.0) ** 2,
            torch.tensor([2.0, 1.5], dtype=DT),
        ),
        CONT,
    ),
    Case(
        "dirichlet",
        lambda x: x[:, 0] ** 2,
        lambda a: D.Dirichlet(a),
        torch.tensor([1.5, 2.0, 0.7], dtype=DT),
        lambda: _autograd_of(
            lambda a: a[0] * (a[0] + 1) / (a.sum() * (a.sum() + 1)),
            torch.tensor([1.5, 2.0, 0.7], dtype=DT),
        ),
        CONT,
    ),
    Case(
        "mvn-scale-tril",
        lambda x: ((x - torch.tensor([1.0, -1.0], dtype=DT)) ** 2).sum(-1),
        lambda mu, t: D.MultivariateNormal(
            mu,
            scale_tril=torch.stack(
                [torch.stack([t[0].exp(), t[0] * 0]), torch.stack([t[1], t[2].exp()])]
            ),
        ),
        (torch.tensor([0.3, 0.2], dtype=DT), torch.tensor([0.1, 0.4, -0.2], dtype=DT)),
        lambda: _autograd_of(
            lambda mu, t: (
                ((mu - torch.tensor([1.0, -1.0], dtype=DT)) ** 2).sum()
                + (2 * t[0]).exp()
                + t[1] ** 2
                + (2 * t[2]).exp()
            ),
            (torch.tensor([0.3, 0.2], dtype=DT), torch.tensor([0.1, 0.4, -0.2], dtype=DT)),
        ),
        (*CONT, "score_function:delta"),
    ),
]
