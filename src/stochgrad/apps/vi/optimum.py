r"""The exact ELBO by Gauss-Hermite quadrature, a Monte Carlo ELBO, and the mean-field optimum.

Each datum's expectation depends on the one-dimensional
:math:`t_n = x_n^\top w \sim \mathcal N(x_n^\top\mu,\; \sum_d x_{nd}^2 \sigma_d^2)`, so
Gauss-Hermite quadrature (:func:`quadrature_elbo`) gives :math:`\mathcal L` to about
:math:`10^{-8}`; L-BFGS (scipy) on it gives the optimal mean-field ELBO and its
:math:`(\mu, \sigma)` (:func:`optimal_elbo`).

>>> X, y = load_data()
>>> z = torch.zeros(31, dtype=X.dtype)
>>> round(float(quadrature_elbo(z, z, X, y, 64)), 2) < 0
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import roots_hermitenorm
from torch import Tensor

from stochgrad._checks import check_int, check_torch_generator
from stochgrad.apps.vi.model import (
    MAX_SAMPLES,
    _check_data,
    _check_params,
    kl_to_prior,
    load_data,  # noqa: F401  (the doctests use it)
    log_likelihood,
)

__all__ = ["Optimum", "mc_elbo", "optimal_elbo", "quadrature_elbo"]


@functools.lru_cache(maxsize=8)
def _hermite_nodes(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = roots_hermitenorm(nodes)
    return t, w / w.sum()


def _hermite(nodes: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    r"""Nodes and weights for :math:`\mathbb{E}_{Z\sim N(0,1)}[g(Z)] \approx \sum_k w_k g(z_k)`.

    scipy's ``roots_hermitenorm`` (stable for thousands of nodes, unlike numpy's ``hermgauss``
    beyond a few hundred); cached, as one set is reused for every evaluation.
    """
    t, w = _hermite_nodes(nodes)
    return torch.as_tensor(t, dtype=dtype), torch.as_tensor(w, dtype=dtype)


def quadrature_elbo(
    mu: Tensor, log_sigma: Tensor, X: Tensor, y: Tensor, nodes: int = 4096
) -> Tensor:
    r"""The ELBO by Gauss-Hermite quadrature of each datum's one-dimensional expectation.

    .. math::

        \mathbb{E}_q[\log\sigma(y_n x_n^\top w)] = \mathbb{E}_{Z}\big[\log\sigma\big(y_n(m_n
        + s_n Z)\big)\big],\quad m_n = x_n^\top\mu,\; s_n^2 = \textstyle\sum_d x_{nd}^2\sigma_d^2,

    with ``nodes`` Gauss-Hermite nodes, minus the closed-form KL. Differentiable in
    ``mu`` and ``log_sigma`` (torch autograd).

    Args:
        mu: ``[D]`` variational means.
        log_sigma: ``[D]`` variational log standard deviations.
        X: ``[N, D]`` design matrix (:func:`load_data`).
        y: ``[N]`` labels, ``-1`` or ``1`` (:func:`load_data`).
        nodes: number of Gauss-Hermite nodes. :math:`\log\sigma` bends sharply on the scale of
            :math:`s_n` (up to 20 at the initialisation), so convergence is slow: measured at
            :math:`\mu = 0, \lambda = 0`, 256 nodes are off by 4e-3, 1024 by 1e-5, 4096 (the
            default) by 3e-10 (against 8192); see :func:`optimal_elbo` for the optimum.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: for ``nodes < 2`` or mismatched shapes.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> abs(float(quadrature_elbo(z, z - 30.0, X, y)) - 569 * math.log(0.5) + 0.5 * 31 * 59) < 1e-6
    True
    """
    mu, log_sigma = _check_params(mu, log_sigma)
    _check_data(X, y, mu.numel(), mu)
    nodes = check_int("nodes", nodes, minimum=2)
    z, wts = _hermite(nodes, mu.dtype)
    m = X @ mu
    s = ((X**2) @ (2.0 * log_sigma).exp()).sqrt()
    t = y[:, None] * (m[:, None] + s[:, None] * z[None, :])  # [N, K]
    expected = (torch.nn.functional.logsigmoid(t) * wts).sum()
    return expected - kl_to_prior(mu, log_sigma)


def mc_elbo(
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int = 1000,
    *,
    generator: torch.Generator,
) -> tuple[float, float]:
    r"""Monte Carlo ELBO with ``num_samples`` draws of :math:`w \sim q` and its standard error.

    :math:`\hat{\mathcal L} = \frac1S\sum_s \log p(y \mid X, w_s) - \mathrm{KL}`,
    :math:`w_s = \mu + \sigma\odot\epsilon_s`, :math:`\epsilon_s` drawn by ``torch.randn`` from
    ``generator`` as one ``[S, D]`` block.

    Returns:
        ``(estimate, stderr)``.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> est, se = mc_elbo(z, z, X, y, 100, generator=torch.Generator().manual_seed(0))
    >>> se > 0
    True
    """
    mu, log_sigma = _check_params(mu, log_sigma)
    _check_data(X, y, mu.numel(), mu)
    num_samples = check_int("num_samples", num_samples, minimum=2, maximum=MAX_SAMPLES)
    check_torch_generator(generator)
    with torch.no_grad():
        eps = torch.randn(num_samples, mu.numel(), generator=generator, dtype=mu.dtype)
        ll = log_likelihood(mu + log_sigma.exp() * eps, X, y)
        kl = float(kl_to_prior(mu, log_sigma))
    return float(ll.mean()) - kl, float(ll.std() / math.sqrt(num_samples))


@dataclass
class Optimum:
    """The optimal mean-field ELBO (:func:`optimal_elbo`)."""

    elbo: float
    mu: list[float]
    log_sigma: list[float]
    grad_norm: float
    nodes: int
    quadrature_change: float
    iterations: int
    elbo_at_init: float


def optimal_elbo(
    X: Tensor, y: Tensor, nodes: int = 4096, *, tol: float = 1e-15, max_iter: int = 5000
) -> Optimum:
    r"""Maximise :func:`quadrature_elbo` over :math:`(\mu, \lambda)` by L-BFGS (scipy).

    The start is the initialisation of the stochastic runs (:math:`\mu = 0, \lambda = 0`).
    ``quadrature_change`` is :math:`|\mathcal L_{K}-\mathcal L_{2K}|` at the optimum with
    :math:`K` = ``nodes``, the quadrature's convergence check; ``grad_norm`` is the largest
    absolute component of the gradient there.

    Returns:
        An :class:`Optimum`.

    >>> X, y = load_data()
    >>> opt = optimal_elbo(X[:40, :3], y[:40], nodes=32)
    >>> opt.grad_norm < 1e-5
    True
    """
    from scipy.optimize import minimize

    _check_data(X, y)
    nodes = check_int("nodes", nodes, minimum=2)
    dim = X.shape[1]

    def neg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.as_tensor(theta, dtype=X.dtype).requires_grad_(True)
        value = -quadrature_elbo(t[:dim], t[dim:], X, y, nodes)
        (g,) = torch.autograd.grad(value, t)
        return float(value.detach()), g.numpy().astype(np.float64)

    res = minimize(
        neg,
        np.zeros(2 * dim),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-10, "maxcor": 50},
    )
    value, grad = neg(res.x)
    mu = torch.as_tensor(res.x[:dim], dtype=X.dtype)
    ls = torch.as_tensor(res.x[dim:], dtype=X.dtype)
    finer = float(quadrature_elbo(mu, ls, X, y, 2 * nodes))
    zero = torch.zeros(dim, dtype=X.dtype)
    return Optimum(
        elbo=-value,
        mu=mu.tolist(),
        log_sigma=ls.tolist(),
        grad_norm=float(np.abs(grad).max()),
        nodes=nodes,
        quadrature_change=abs(finer + value),
        iterations=int(res.nit),
        elbo_at_init=float(quadrature_elbo(zero, zero, X, y, nodes)),
    )
