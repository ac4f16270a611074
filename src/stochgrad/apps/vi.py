r"""Black-box variational inference for Bayesian logistic regression, five gradient estimators.

Model (Mohamed, Rosca, Figurnov & Mnih, JMLR 2020, Sec. 8, code ``mc_gradients/bayes_lr``): the
breast-cancer data of scikit-learn (:func:`load_data`: 569 points, 30 standardised features and
a bias column, :math:`D = 31`), labels :math:`y_n \in \{-1, +1\}`, prior
:math:`w \sim \mathcal N(0, I_D)`, likelihood :math:`p(y_n \mid x_n, w) = \sigma(y_n x_n^\top w)`.
The variational family is mean-field Gaussian, :math:`q(w) = \mathcal N(\mu,
\operatorname{diag}\sigma^2)` with :math:`\sigma = e^{\lambda}` (:math:`\lambda` = ``log_sigma``),
initialised at :math:`\mu = 0, \lambda = 0`. The evidence lower bound is

.. math::

    \mathcal L(\mu, \lambda) = \sum_{n=1}^N \mathbb{E}_{q}\big[\log\sigma(y_n x_n^\top w)\big]
      - \mathrm{KL}(q \,\|\, p), \qquad
    \mathrm{KL} = \tfrac12 \sum_d \big(\sigma_d^2 + \mu_d^2 - 1 - 2\lambda_d\big).

The KL term and its gradient are in closed form. The gradient of the expected log-likelihood of
a minibatch :math:`B` (scaled by :math:`N / |B|`), :math:`\nabla_{\mu,\lambda}
\mathbb{E}_q[f_B(w)]`, is estimated by the library's estimators (:data:`ESTIMATORS`): the score
function without baseline (``score``), with the leave-one-out baseline (``loo``), with the
delta-method control variate (``delta``), the pathwise estimator (``pathwise``) and the
measure-valued estimator (``mvd``).

Cost accounting (:func:`evaluations_per_step`): one *evaluation* is :math:`f_B` at one point
:math:`w`. The score-function estimators use one per sample; the delta method adds the gradient
and the Hessian of :math:`f_B` at :math:`\mu` (one evaluation and :math:`D` backward passes, not
counted); the pathwise estimator uses one evaluation and one gradient per sample; the
measure-valued estimator uses :math:`2 \times 2D` (two coupled points per scalar parameter,
:math:`2D` parameters) per sample. Two budgets are offered (:class:`BBVIConfig` ``budget``):
``"samples"``, every estimator draws the same number :math:`S` of samples from :math:`q` (the
paper's setup: the measure-valued estimator then costs :math:`4DS` evaluations), and
``"evaluations"``, every estimator gets the :math:`4DS` evaluations the measure-valued
estimator uses with :math:`S` samples (the others then draw :math:`4DS` samples).

Reference (:func:`optimal_elbo`): each datum's expectation depends on the one-dimensional
:math:`t_n = x_n^\top w \sim \mathcal N(x_n^\top\mu,\; \sum_d x_{nd}^2 \sigma_d^2)`, so
Gauss-Hermite quadrature (:func:`quadrature_elbo`) gives :math:`\mathcal L` to about
:math:`10^{-8}`; L-BFGS (scipy) on it gives the optimal mean-field ELBO and its
:math:`(\mu, \sigma)`. Training curves are evaluated exactly by this quadrature.

References:
    Mohamed, Rosca, Figurnov & Mnih (2020), "Monte Carlo gradient estimation in machine
    learning", JMLR 21(132), Sec. 8; Ranganath, Gerrish & Blei (2014), "Black box variational
    inference", AISTATS; Paisley, Blei & Jordan (2012), ICML (delta-method control variate).

>>> X, y = load_data()
>>> tuple(X.shape), int((y == 1).sum())
((569, 31), 357)
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import roots_hermitenorm
from torch import Tensor

import stochgrad as sg
from stochgrad.checkpoint import RunCheckpoint

__all__ = [
    "ESTIMATORS",
    "BBVICheckpoint",
    "BBVIConfig",
    "BBVIResult",
    "BBVIRun",
    "Optimum",
    "VarianceTable",
    "add_arguments",
    "elbo_gradient",
    "evaluations_per_step",
    "expected_loglik_gradient",
    "gradient_variance",
    "kl_to_prior",
    "load_data",
    "log_likelihood",
    "mc_elbo",
    "optimal_elbo",
    "quadrature_elbo",
    "run",
    "run_bbvi",
    "samples_per_step",
    "train",
    "variance_table",
    "variational",
]

#: Estimator names and what they are.
ESTIMATORS: dict[str, str] = {
    "score": "score function, no baseline",
    "loo": "score function, leave-one-out baseline",
    "delta": "score function, delta-method control variate",
    "pathwise": "pathwise (reparameterisation)",
    "mvd": "measure-valued (weak derivative)",
}

DTYPE = torch.float64


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_estimator(name: Any) -> str:
    if name not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {name!r}")
    return name


def _check_params(mu: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(mu, Tensor) or not isinstance(log_sigma, Tensor):
        raise TypeError("mu and log_sigma must be torch tensors")
    if mu.dim() != 1 or mu.shape != log_sigma.shape:
        raise ValueError(
            f"mu and log_sigma must be 1-D of equal length, got {tuple(mu.shape)} and "
            f"{tuple(log_sigma.shape)}"
        )
    if not (torch.isfinite(mu).all() and torch.isfinite(log_sigma).all()):
        raise ValueError("mu and log_sigma must be finite")
    return mu, log_sigma


def _check_data(X: Tensor, y: Tensor, dim: int | None = None) -> None:
    if X.dim() != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [N, D] and y [N], got {tuple(X.shape)} and {tuple(y.shape)}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"X has {X.shape[1]} columns, the parameters have {dim}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold labels -1 and +1")


# ---------------------------------------------------------------------------------------------
# data and model
# ---------------------------------------------------------------------------------------------


def load_data(dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor]:
    """The breast-cancer data of scikit-learn, standardised, with a bias column; labels +-1.

    Features are standardised by :class:`sklearn.preprocessing.StandardScaler` (population
    standard deviation) and a column of ones is appended, so ``X`` is ``[569, 31]``; ``y`` is
    ``+1`` for scikit-learn's target 1 (benign) and ``-1`` otherwise.

    Returns:
        ``(X, y)`` as tensors of ``dtype``.

    >>> X, y = load_data()
    >>> bool(X[:, :30].mean(0).abs().max() < 1e-12)
    True
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    Xs = StandardScaler().fit_transform(data.data)
    X = np.hstack([Xs, np.ones((Xs.shape[0], 1))])
    y = 2.0 * data.target - 1.0
    return torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=dtype)


def log_likelihood(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    r"""Log-likelihood :math:`\sum_n \log\sigma(y_n x_n^\top w)` for a batch of weights.

    Args:
        w: ``[S, D]`` weights (or ``[D]``).
        X: ``[N, D]`` features; y: ``[N]`` labels in {-1, +1}.

    Returns:
        ``[S]`` (or a scalar for ``w`` of shape ``[D]``); differentiable in ``w``.

    >>> X, y = load_data()
    >>> abs(float(log_likelihood(torch.zeros(31, dtype=X.dtype), X, y)) - 569 * math.log(0.5)) < 1e-9
    True
    """
    return torch.nn.functional.logsigmoid((w @ X.T) * y).sum(-1)


def variational(mu: Tensor, log_sigma: Tensor) -> torch.distributions.Distribution:
    r"""The mean-field Gaussian :math:`q = \mathcal N(\mu, \operatorname{diag} e^{2\lambda})`."""
    return torch.distributions.Independent(torch.distributions.Normal(mu, log_sigma.exp()), 1)


def kl_to_prior(mu: Tensor, log_sigma: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,\mathcal N(0, I)) = \tfrac12\sum_d(\sigma_d^2 + \mu_d^2 - 1 - 2\lambda_d)`.

    >>> float(kl_to_prior(torch.zeros(3), torch.zeros(3)))
    0.0
    """
    return 0.5 * ((2.0 * log_sigma).exp() + mu**2 - 1.0 - 2.0 * log_sigma).sum()


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
        mu, log_sigma: ``[D]`` variational parameters.
        X, y: data (:func:`load_data`).
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
    _check_data(X, y, mu.numel())
    nodes = _check_int("nodes", nodes, 2)
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
    _check_data(X, y, mu.numel())
    num_samples = _check_int("num_samples", num_samples, 2)
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
    nodes = _check_int("nodes", nodes, 2)
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


# ---------------------------------------------------------------------------------------------
# gradient estimators
# ---------------------------------------------------------------------------------------------


def samples_per_step(estimator: str, num_samples: int, dim: int, budget: str = "samples") -> int:
    r"""Samples of :math:`q` an estimator draws per step under a budget.

    ``"samples"``: ``num_samples`` for every estimator. ``"evaluations"``: the
    :math:`2 \cdot 2D \cdot S` evaluations of the measure-valued estimator with :math:`S`
    = ``num_samples`` samples, i.e. :math:`4DS` samples for the others.

    >>> samples_per_step("loo", 50, 31, "evaluations"), samples_per_step("mvd", 50, 31, "evaluations")
    (6200, 50)
    """
    _check_estimator(estimator)
    num_samples = _check_int("num_samples", num_samples)
    if budget == "samples" or estimator == "mvd":
        return num_samples
    if budget == "evaluations":
        return 4 * dim * num_samples
    raise ValueError(f"budget must be 'samples' or 'evaluations', got {budget!r}")


def evaluations_per_step(estimator: str, num_samples: int, dim: int) -> int:
    r"""Evaluations of :math:`f_B` per gradient step with ``num_samples`` samples.

    One per sample, except the measure-valued estimator: two coupled points for each of the
    :math:`2D` scalar parameters (:math:`\mu_d`, :math:`\sigma_d`), :math:`4D` per sample.

    >>> evaluations_per_step("mvd", 50, 31), evaluations_per_step("pathwise", 50, 31)
    (6200, 50)
    """
    _check_estimator(estimator)
    num_samples = _check_int("num_samples", num_samples)
    return 4 * dim * num_samples if estimator == "mvd" else num_samples


def _estimate(
    estimator: str, f: Callable[[Tensor], Tensor], mu: Tensor, log_sigma: Tensor, n: int, g
) -> sg.GradientEstimate:
    """One library estimate of the gradient of E_q[f] w.r.t. (mu, log_sigma)."""
    params = (mu, log_sigma)
    if estimator == "score":
        return sg.score_function(f, variational, params, num_samples=n, generator=g)
    if estimator == "loo":
        return sg.score_function(f, variational, params, num_samples=n, baseline="loo", generator=g)
    if estimator == "delta":
        return sg.score_function(
            f, variational, params, num_samples=n, control_variate="delta", generator=g
        )
    if estimator == "pathwise":
        return sg.pathwise(f, variational, params, num_samples=n, generator=g)
    return sg.measure_valued(f, variational, params, num_samples=n, generator=g)


def expected_loglik_gradient(
    estimator: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator,
    batch: Tensor | None = None,
) -> sg.GradientEstimate:
    r"""Library estimate of :math:`\nabla_{\mu,\lambda}\,\mathbb{E}_q[f_B(w)]`.

    .. math::

        f_B(w) = \frac{N}{|B|}\sum_{n\in B}\log\sigma(y_n x_n^\top w),

    by ``sg.score_function`` (``score``: no baseline; ``loo``: ``baseline="loo"``; ``delta``:
    ``control_variate="delta"``), ``sg.pathwise`` or ``sg.measure_valued`` with
    ``params = (mu, log_sigma)`` and ``dist_fn`` = :func:`variational`.

    Args:
        estimator: a key of :data:`ESTIMATORS`.
        mu, log_sigma: ``[D]`` variational parameters.
        X, y: data; batch: indices of the minibatch :math:`B` (default: all data, no scaling).
        num_samples: samples of :math:`q` (see :func:`evaluations_per_step` for the cost).
        generator: all randomness.

    Returns:
        The :class:`~stochgrad.gradient_estimate.GradientEstimate` (``grad`` is the pair
        ``(grad_mu, grad_log_sigma)``).

    Raises:
        ValueError: unknown estimator, bad shapes or labels, non-finite parameters,
            ``num_samples`` too small for the estimator (``loo`` and ``delta`` need 2).

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> est = expected_loglik_gradient("mvd", z, z, X, y, 2, generator=torch.Generator().manual_seed(0))
    >>> est.evaluations
    248
    """
    _check_estimator(estimator)
    mu, log_sigma = _check_params(mu, log_sigma)
    _check_data(X, y, mu.numel())
    num_samples = _check_int("num_samples", num_samples)
    if batch is None:
        Xb, yb, scale = X, y, 1.0
    else:
        Xb, yb = X[batch], y[batch]
        scale = X.shape[0] / Xb.shape[0]

    def f(w: Tensor) -> Tensor:
        return scale * log_likelihood(w, Xb, yb)

    return _estimate(estimator, f, mu.detach(), log_sigma.detach(), num_samples, generator)


def elbo_gradient(
    estimator: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator,
    batch: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Stochastic gradient of the ELBO w.r.t. ``(mu, log_sigma)``.

    .. math::

        \hat\nabla\mathcal L = \widehat{\nabla_{\mu,\lambda}\,\mathbb{E}_q[f_B(w)]}
          - \nabla_{\mu,\lambda}\mathrm{KL}, \qquad
        \nabla_\mu\mathrm{KL} = \mu,\; \nabla_\lambda\mathrm{KL} = \sigma^2 - 1,

    the first term by :func:`expected_loglik_gradient` (same arguments), the second exact.

    Returns:
        ``(grad_mu, grad_log_sigma)``, detached.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> gm, gl = elbo_gradient("pathwise", z, z, X, y, 10, generator=torch.Generator().manual_seed(0))
    >>> gm.shape, gl.shape
    (torch.Size([31]), torch.Size([31]))
    """
    est = expected_loglik_gradient(
        estimator, mu, log_sigma, X, y, num_samples, generator=generator, batch=batch
    )
    g_mu, g_ls = est.grad
    return g_mu - mu.detach(), g_ls - ((2.0 * log_sigma.detach()).exp() - 1.0)


def gradient_variance(
    estimator: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int,
    repeats: int,
    *,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    r"""Per-coordinate variance of the ``num_samples``-sample gradient estimate at a fixed q.

    The full-data expected log-likelihood (no minibatch noise) is estimated ``repeats`` times
    independently; the result is the sample variance over repeats, per coordinate of
    :math:`\mu` and :math:`\lambda` (the KL gradient is exact and adds nothing). This measures
    the estimator as used (baselines and control-variate coefficients estimated from the same
    ``num_samples`` samples), not just one per-sample term.

    Returns:
        ``(var_mu, var_log_sigma)``, each ``[D]``.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> v_mu, v_ls = gradient_variance("loo", z, z, X, y, 5, 4, generator=torch.Generator().manual_seed(0))
    >>> bool((v_mu > 0).all())
    True
    """
    repeats = _check_int("repeats", repeats, 2)
    draws = [
        torch.cat(elbo_gradient(estimator, mu, log_sigma, X, y, num_samples, generator=generator))
        for _ in range(repeats)
    ]
    var = torch.stack(draws).var(0)
    d = mu.numel()
    return var[:d], var[d:]


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


@dataclass
class BBVIConfig:
    """Settings of a study (defaults: the paper's ``bayes_lr`` setup).

    Attributes:
        steps: gradient steps.
        num_samples: samples of q per step (under ``budget="samples"``).
        batch_size: minibatch size (drawn without replacement each step).
        lr: initial learning rate; cosine decay to 0 over ``steps`` when ``schedule="cosine"``.
        optimizer: ``"sgd"`` (plain gradient ascent, the paper) or ``"adam"``.
        schedule: ``"cosine"`` or ``"constant"``.
        budget: ``"samples"`` or ``"evaluations"`` (:func:`samples_per_step`).
        eval_every: steps between exact (quadrature) ELBO evaluations of the curve.
        eval_samples: samples of the Monte Carlo ELBO reported at the end (as in the paper).
        nodes: Gauss-Hermite nodes.
        checkpoint_every: steps between saves of a run in progress.
    """

    steps: int = 5000
    num_samples: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "sgd"
    schedule: str = "cosine"
    budget: str = "samples"
    eval_every: int = 50
    eval_samples: int = 1000
    nodes: int = 4096
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        for name in ("steps", "num_samples", "batch_size", "eval_every", "checkpoint_every"):
            _check_int(name, getattr(self, name))
        _check_int("eval_samples", self.eval_samples, 2)
        _check_int("nodes", self.nodes, 2)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.budget not in ("samples", "evaluations"):
            raise ValueError(f"budget must be 'samples' or 'evaluations', got {self.budget!r}")


@dataclass
class BBVIRun:
    r"""One training run: estimator ``key``, ``seed``, the exact ELBO curve and the final q.

    A run whose parameters leave the range where q is defined (non-finite, or
    :math:`|\lambda| > 50`, i.e. :math:`\sigma` beyond :math:`e^{\pm 50}`) stops there:
    ``diverged_at`` is that step and the final ELBOs are ``-inf``.
    """

    key: str
    seed: int
    curve_steps: list[int]
    curve_elbo: list[float]
    mu: list[float]
    log_sigma: list[float]
    final_elbo: float
    mc_elbo: float
    mc_stderr: float
    samples_per_step: int
    evaluations_per_step: int
    seconds: float
    diverged_at: int | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain values for the checkpoint."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BBVIRun:
        """Inverse of :meth:`to_state`."""
        return cls(**state)


class BBVICheckpoint(RunCheckpoint):
    """Finished runs and states of runs in progress (:class:`~stochgrad.checkpoint.RunCheckpoint`)."""

    result_type = BBVIRun


def _finite_q(mu: Tensor, log_sigma: Tensor) -> bool:
    with torch.no_grad():
        return bool(torch.isfinite(mu).all() and (log_sigma.abs() <= 50.0).all())


def _lr(config: BBVIConfig, step: int) -> float:
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))


def train(
    estimator: str,
    X: Tensor,
    y: Tensor,
    config: BBVIConfig,
    seed: int,
    *,
    checkpoint: BBVICheckpoint | None = None,
    callback: Callable[[int], None] | None = None,
) -> BBVIRun:
    r"""Maximise the ELBO by stochastic gradients from :math:`\mu = 0, \lambda = 0`.

    Each step draws a minibatch of ``batch_size`` indices without replacement, estimates
    :math:`\nabla\mathcal L` (:func:`elbo_gradient`) and takes an ascent step with
    ``torch.optim.SGD`` or ``Adam`` at the (cosine-decayed) learning rate. All randomness comes
    from one ``torch.Generator`` seeded with ``seed``. The ELBO curve is exact (quadrature) every
    ``eval_every`` steps. With a ``checkpoint`` the state (parameters, optimiser, generator,
    curve) is saved every ``checkpoint_every`` steps and a saved state is resumed; the resumed
    run equals the uninterrupted one.

    Args:
        estimator: a key of :data:`ESTIMATORS`.
        X, y: data; config: the settings; seed: the run's seed.
        checkpoint: where to save and resume the state of this run (optional).
        callback: progress hook called with the number of steps just done.

    Returns:
        A :class:`BBVIRun` (``seconds``: wall time of the run, over all its resumed parts).

    >>> X, y = load_data()
    >>> r = train("pathwise", X, y, BBVIConfig(steps=3, eval_every=1, nodes=32, eval_samples=10), 0)
    >>> r.curve_steps
    [0, 1, 2, 3]
    """
    _check_estimator(estimator)
    _check_data(X, y)
    seed = _check_int("seed", seed, 0)
    start = time.perf_counter()
    dim, N = X.shape[1], X.shape[0]
    if config.batch_size > N:
        raise ValueError(f"batch_size must be <= {N} (the number of data), got {config.batch_size}")
    n = samples_per_step(estimator, config.num_samples, dim, config.budget)
    mu = torch.zeros(dim, dtype=X.dtype, requires_grad=True)
    log_sigma = torch.zeros(dim, dtype=X.dtype, requires_grad=True)
    opt_cls = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    opt = opt_cls([mu, log_sigma], lr=config.lr)
    g = torch.Generator().manual_seed(seed)
    curve_steps: list[int] = []
    curve_elbo: list[float] = []
    step = 0
    part = None if checkpoint is None else checkpoint.partial.get((estimator, seed))
    if part is not None:
        with torch.no_grad():
            mu.copy_(part["mu"])
            log_sigma.copy_(part["log_sigma"])
        opt.load_state_dict(part["optimizer"])
        g.set_state(part["rng"])
        curve_steps, curve_elbo = list(part["curve_steps"]), list(part["curve_elbo"])
        step = int(part["step"])
        start -= float(part["seconds"])
        if callback is not None and step:
            callback(step)

    def record() -> None:
        with torch.no_grad():
            curve_steps.append(step)
            curve_elbo.append(float(quadrature_elbo(mu, log_sigma, X, y, config.nodes)))

    if step == 0:
        record()
    diverged = None
    while step < config.steps:
        batch = torch.randperm(N, generator=g)[: config.batch_size]
        g_mu, g_ls = elbo_gradient(estimator, mu, log_sigma, X, y, n, generator=g, batch=batch)
        for group in opt.param_groups:
            group["lr"] = _lr(config, step)
        mu.grad, log_sigma.grad = -g_mu, -g_ls  # the optimisers minimise
        opt.step()
        step += 1
        if not _finite_q(mu, log_sigma):
            diverged = step
            if callback is not None:
                callback(config.steps - step + 1)
            break
        if step % config.eval_every == 0 or step == config.steps:
            record()
        if checkpoint is not None and step % config.checkpoint_every == 0 and step < config.steps:
            checkpoint.save_partial(
                estimator,
                seed,
                {
                    "step": step,
                    "mu": mu.detach().clone(),
                    "log_sigma": log_sigma.detach().clone(),
                    "optimizer": opt.state_dict(),
                    "rng": g.get_state(),
                    "curve_steps": list(curve_steps),
                    "curve_elbo": list(curve_elbo),
                    "seconds": time.perf_counter() - start,
                },
            )
        if callback is not None:
            callback(1)
    mu_f, ls_f = mu.detach(), log_sigma.detach()
    if diverged is None:
        mc, se = mc_elbo(mu_f, ls_f, X, y, config.eval_samples, generator=g)
        final = curve_elbo[-1]
    else:
        mc, se, final = -math.inf, 0.0, -math.inf
    run_ = BBVIRun(
        key=estimator,
        seed=seed,
        curve_steps=curve_steps,
        curve_elbo=curve_elbo,
        mu=mu_f.tolist(),
        log_sigma=ls_f.tolist(),
        final_elbo=final,
        mc_elbo=mc,
        mc_stderr=se,
        samples_per_step=n,
        evaluations_per_step=evaluations_per_step(estimator, n, dim),
        seconds=time.perf_counter() - start,
        diverged_at=diverged,
    )
    if checkpoint is not None:
        checkpoint.add(run_)
    return run_


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------


@dataclass
class VarianceTable:
    """Per-coordinate variance of the gradient estimates at one fixed q.

    ``var_mu[e]`` and ``var_log_sigma[e]`` are the variances (over ``repeats``) of estimator
    ``e``'s ``num_samples``-sample estimate; ``wins_*`` count the coordinates where ``e`` has the
    lowest variance at equal samples, ``wins_*_work`` at equal evaluations (variance times
    evaluations per step, :func:`evaluations_per_step`).
    """

    where: str
    num_samples: int
    repeats: int
    var_mu: dict[str, list[float]]
    var_log_sigma: dict[str, list[float]]
    evaluations: dict[str, int]
    wins_mu: dict[str, int]
    wins_log_sigma: dict[str, int]
    wins_mu_work: dict[str, int]
    wins_log_sigma_work: dict[str, int]


def _wins(table: dict[str, list[float]], weight: dict[str, int]) -> dict[str, int]:
    names = list(table)
    v = np.array([np.asarray(table[k]) * weight[k] for k in names])
    best = v.argmin(0)
    return {k: int((best == i).sum()) for i, k in enumerate(names)}


def variance_table(
    where: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    estimators: Sequence[str],
    num_samples: int,
    repeats: int,
    seed: int,
) -> VarianceTable:
    """:func:`gradient_variance` of every estimator at one q, seeded per estimator.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> t = variance_table("init", z, z, X, y, ["loo", "pathwise"], 4, 3, 0)
    >>> sum(t.wins_mu.values())
    31
    """
    var_mu, var_ls, evals = {}, {}, {}
    for i, e in enumerate(estimators):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        vm, vl = gradient_variance(e, mu, log_sigma, X, y, num_samples, repeats, generator=g)
        var_mu[e], var_ls[e] = vm.tolist(), vl.tolist()
        evals[e] = evaluations_per_step(e, num_samples, mu.numel())
    ones = dict.fromkeys(estimators, 1)
    return VarianceTable(
        where=where,
        num_samples=num_samples,
        repeats=repeats,
        var_mu=var_mu,
        var_log_sigma=var_ls,
        evaluations=evals,
        wins_mu=_wins(var_mu, ones),
        wins_log_sigma=_wins(var_ls, ones),
        wins_mu_work=_wins(var_mu, evals),
        wins_log_sigma_work=_wins(var_ls, evals),
    )


@dataclass
class BBVIResult:
    """Everything :func:`run_bbvi` measured (also written as ``bbvi.json``)."""

    config: dict
    seed: int
    optimum: Optimum
    runs: dict[str, BBVIRun]
    variance: list[VarianceTable]
    best: str
    best_gap: float
    resumed: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


def _color(name: str) -> str:
    """One colour per estimator in every figure."""
    return f"C{list(ESTIMATORS).index(name)}"


def _budget_words(budget: str, num_samples: int) -> str:
    if budget == "samples":
        return f"{num_samples} samples each"
    return f"{num_samples} samples for mvd, the same evaluations for the others"


def _plot_elbo(path: Path, result: BBVIResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result.config
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in result.runs.items():
        gap = np.maximum(result.optimum.elbo - np.asarray(r.curve_elbo), 1e-3)
        axes[0].plot(r.curve_steps, r.curve_elbo, color=_color(name), label=name)
        axes[1].plot(r.curve_steps, gap, color=_color(name), label=name)
    axes[0].axhline(result.optimum.elbo, color="k", ls="--", lw=0.8, label="optimum")
    axes[0].set_ylim(result.optimum.elbo - 400, result.optimum.elbo + 20)
    axes[0].set_ylabel("ELBO (exact, quadrature)")
    axes[1].axhline(0.5, color="k", ls=":", lw=0.8, label="0.5 nats")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("optimum - ELBO (nats)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"BBVI, Bayesian logistic regression (breast cancer): {c['optimizer']} lr {c['lr']:g} "
        f"({c['schedule']}),\nS = {c['num_samples']}, {c['budget']} budget "
        f"({_budget_words(c['budget'], c['num_samples'])}), batch {c['batch_size']}, "
        f"seed {result.seed}",
        fontsize=9,
    )
    # fixed margins: tight_layout costs seconds with log axes
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.86, wspace=0.22)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_variance(path: Path, result: BBVIResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = result.variance
    fig, axes = plt.subplots(len(tables), 2, figsize=(11, 3.6 * len(tables)), squeeze=False)
    for row, t in enumerate(tables):
        for col, (label, var) in enumerate((("mu", t.var_mu), ("log_sigma", t.var_log_sigma))):
            ax = axes[row, col]
            for name, v in var.items():
                ax.plot(np.arange(len(v)), v, "o-", ms=3, lw=0.8, color=_color(name), label=name)
            ax.set_yscale("log")
            ax.set_xlabel(f"coordinate d of {label}")
            ax.set_ylabel("variance of the gradient estimate")
            ax.set_title(f"{label}, q at {t.where} ({t.num_samples} samples, {t.repeats} repeats)")
            ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.95, wspace=0.22, hspace=0.35)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bbvi(
    config: BBVIConfig | None = None,
    estimators: Sequence[str] = tuple(ESTIMATORS),
    seed: int = 0,
    *,
    out_dir: str | Path | None = None,
    restart: bool = False,
    variance_repeats: int = 200,
    callback: Callable[[int], None] | None = None,
) -> BBVIResult:
    """The study: the optimum, one training run per estimator, variance tables, JSON and PNGs.

    Writes into ``out_dir`` (when given) ``bbvi.json``, ``bbvi_elbo.png`` (ELBO curves and the
    gap to the optimum), ``bbvi_variance.png`` (per-coordinate variance at the initialisation and
    at the optimum) and keeps ``bbvi_checkpoint.pt``: finished runs are reused and a run in
    progress continues from its last save (and ``bbvi_optimum.json``, the deterministic optimum,
    reused for the same ``nodes``); ``restart=True`` deletes both first.

    Args:
        config: settings (default :class:`BBVIConfig`).
        estimators: keys of :data:`ESTIMATORS`.
        seed: seed of every run (the variance tables use seeds derived from it).
        out_dir: output folder.
        restart: start afresh.
        variance_repeats: independent estimates per estimator for the variance tables.
        callback: progress hook, called with the number of steps just done.

    Returns:
        A :class:`BBVIResult`; ``best`` is the estimator with the highest final exact ELBO and
        ``best_gap`` its distance to the optimum in nats.

    >>> res = run_bbvi(BBVIConfig(steps=2, eval_every=1, nodes=32, eval_samples=10),
    ...                ["loo"], variance_repeats=2)
    >>> res.best
    'loo'
    """
    config = BBVIConfig() if config is None else config
    estimators = [_check_estimator(e) for e in estimators]
    if not estimators or len(set(estimators)) != len(estimators):
        raise ValueError(f"estimators must be a non-empty list without repeats, got {estimators}")
    variance_repeats = _check_int("variance_repeats", variance_repeats, 2)
    start = time.perf_counter()
    X, y = load_data()
    ckpt = None
    resumed = 0
    optimum = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "bbvi_checkpoint.pt"
        cached = out / "bbvi_optimum.json"
        if restart:
            path.unlink(missing_ok=True)
            cached.unlink(missing_ok=True)
        ckpt = BBVICheckpoint(path, config)
        try:
            resumed = ckpt.load()
        except ValueError as exc:
            raise ValueError(
                f"{exc} (here: pass --restart / restart=True, or another out_dir)"
            ) from exc
        if cached.exists():
            saved = Optimum(**json.loads(cached.read_text()))
            optimum = saved if saved.nodes == config.nodes else None
    if optimum is None:
        optimum = optimal_elbo(X, y, config.nodes)
        if out_dir is not None:
            (Path(out_dir) / "bbvi_optimum.json").write_text(json.dumps(asdict(optimum)))
    runs: dict[str, BBVIRun] = {}
    for e in estimators:
        if ckpt is not None and (e, seed) in ckpt.runs:
            runs[e] = ckpt.runs[(e, seed)]
            if callback is not None:
                callback(config.steps)
            continue
        runs[e] = train(e, X, y, config, seed, checkpoint=ckpt, callback=callback)
    zero = torch.zeros(X.shape[1], dtype=X.dtype)
    tables = [
        variance_table(
            where,
            m,
            s,
            X,
            y,
            estimators,
            config.num_samples,
            variance_repeats,
            seed,
        )
        for where, m, s in (
            ("init", zero, zero),
            (
                "optimum",
                torch.tensor(optimum.mu, dtype=X.dtype),
                torch.tensor(optimum.log_sigma, dtype=X.dtype),
            ),
        )
    ]
    best = max(runs, key=lambda k: runs[k].final_elbo)
    result = BBVIResult(
        config=asdict(config),
        seed=seed,
        optimum=optimum,
        runs=runs,
        variance=tables,
        best=best,
        best_gap=optimum.elbo - runs[best].final_elbo,
        resumed=resumed,
        seconds=time.perf_counter() - start,
    )
    if out_dir is not None:
        out = Path(out_dir)
        _plot_elbo(out / "bbvi_elbo.png", result)
        _plot_variance(out / "bbvi_variance.png", result)
        result.files = [str(out / n) for n in ("bbvi.json", "bbvi_elbo.png", "bbvi_variance.png")]
        (out / "bbvi.json").write_text(json.dumps(asdict(result), indent=1))
    return result


# ---------------------------------------------------------------------------------------------
# command line: `stochgrad bbvi`
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad bbvi``."""
    d = BBVIConfig()
    parser.add_argument("--steps", type=int, default=d.steps, help="gradient steps per run")
    parser.add_argument(
        "--samples", type=int, default=d.num_samples, help="samples of q per step (S)"
    )
    parser.add_argument("--batch", type=int, default=d.batch_size, help="minibatch size")
    parser.add_argument("--lr", type=float, default=d.lr, help="initial learning rate")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    parser.add_argument("--schedule", choices=("cosine", "constant"), default=d.schedule)
    parser.add_argument(
        "--budget",
        choices=("samples", "evaluations"),
        default=d.budget,
        help="equal samples S per step, or equal f evaluations (4*D*S, the measure-valued cost)",
    )
    parser.add_argument(
        "--estimators",
        default=",".join(ESTIMATORS),
        help="comma-separated subset of " + ",".join(ESTIMATORS),
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument(
        "--eval-every", type=int, default=d.eval_every, help="steps between exact ELBO points"
    )
    parser.add_argument(
        "--variance-repeats",
        type=int,
        default=200,
        help="independent estimates per estimator for the variance tables",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between saves of a run in progress",
    )
    parser.add_argument(
        "--nodes", type=int, default=d.nodes, help="Gauss-Hermite nodes of the exact ELBO"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bbvi"), help="output folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --out (the default when one exists)",
    )
    group.add_argument("--restart", action="store_true", help="delete the checkpoint, start afresh")


def run(args: argparse.Namespace, console: Any) -> int:
    """Run the BBVI study; print final ELBO vs the optimum and the variance tables."""
    from rich.table import Table

    from stochgrad.cli import progress_bar

    estimators = [e.strip() for e in str(args.estimators).split(",") if e.strip()]
    config = BBVIConfig(
        steps=args.steps,
        num_samples=args.samples,
        batch_size=args.batch,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        budget=args.budget,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        nodes=args.nodes,
    )
    with progress_bar(console) as progress:
        task = progress.add_task("BBVI steps", total=config.steps * len(estimators))
        res = run_bbvi(
            config,
            estimators,
            args.seed,
            out_dir=args.out,
            restart=args.restart,
            variance_repeats=args.variance_repeats,
            callback=lambda k: progress.advance(task, k),
        )
    if res.resumed:
        console.print(f"resumed: {res.resumed} finished run(s) loaded from {args.out}")
    opt = res.optimum
    table = Table(
        title=f"Final ELBO after {config.steps} steps ({config.optimizer}, lr {config.lr:g}, "
        f"{config.schedule}; {config.budget} budget) vs the optimum {opt.elbo:.4f}"
    )
    for col in (
        "estimator",
        "samples/step",
        "f evals/step",
        "ELBO (exact)",
        "ELBO (MC, ± se)",
        "gap (nats)",
    ):
        table.add_column(col, justify="right")
    for name, r in res.runs.items():
        gap = opt.elbo - r.final_elbo
        style = "green" if gap < 0.5 else None
        table.add_row(
            f"{name} ({ESTIMATORS[name]})",
            str(r.samples_per_step),
            str(r.evaluations_per_step),
            f"{r.final_elbo:.4f}" if r.diverged_at is None else f"diverged at {r.diverged_at}",
            f"{r.mc_elbo:.3f} ± {r.mc_stderr:.3f}" if r.diverged_at is None else "—",
            f"{gap:.4f}",
            style=style,
        )
    console.print(table)
    for t in res.variance:
        vt = Table(
            title=f"Gradient variance at q = {t.where} ({t.num_samples} samples, {t.repeats} "
            "repeats): median over coordinates; wins = coordinates with the lowest variance"
        )
        for col in (
            "estimator",
            "median var mu",
            "median var log_sigma",
            "wins mu",
            "wins log_sigma",
            "wins mu (equal evals)",
            "wins log_sigma (equal evals)",
        ):
            vt.add_column(col, justify="right")
        for name in t.var_mu:
            vt.add_row(
                name,
                f"{np.median(t.var_mu[name]):.3g}",
                f"{np.median(t.var_log_sigma[name]):.3g}",
                str(t.wins_mu[name]),
                str(t.wins_log_sigma[name]),
                str(t.wins_mu_work[name]),
                str(t.wins_log_sigma_work[name]),
            )
        console.print(vt)
    console.print(
        f"optimum {opt.elbo:.6f} (L-BFGS, {opt.nodes} Gauss-Hermite nodes, max |grad| "
        f"{opt.grad_norm:.1e}, quadrature change at {2 * opt.nodes} nodes "
        f"{opt.quadrature_change:.1e}); best: {res.best}, gap {res.best_gap:.4f} nats; "
        f"{res.seconds:.1f} s; wrote {', '.join(res.files)}"
    )
    return 0
