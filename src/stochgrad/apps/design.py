r"""Bayesian experimental design: expected information gain (EIG) and its gradient in the design.

The expected information gain of a design :math:`d` is the mutual information between the
parameters :math:`\theta` and the outcome :math:`y`,

.. math::

    \mathrm{EIG}(d) = \mathbb E_{p(\theta)\,p(y\mid\theta,d)}
        \big[\log p(y\mid\theta,d) - \log p(y\mid d)\big],
    \qquad p(y\mid d) = \mathbb E_{p(\theta)}[p(y\mid\theta,d)].

Estimators (:func:`nmc_eig`, :func:`pce_eig`): draw :math:`\theta_{n,0}\sim p(\theta)`,
:math:`y_n \sim p(y\mid\theta_{n,0},d)` and, per outer sample, :math:`L` fresh contrastive
:math:`\theta_{n,1..L}\sim p(\theta)`. With :math:`\ell_{n,l} = \log p(y_n\mid\theta_{n,l},d)`,

.. math::

    g^{\mathrm{NMC}}_n = \ell_{n,0} - \log\tfrac1L\textstyle\sum_{l=1}^{L} e^{\ell_{n,l}},
    \qquad
    g^{\mathrm{PCE}}_n = \ell_{n,0} - \log\tfrac1{L+1}\textstyle\sum_{l=0}^{L} e^{\ell_{n,l}}.

Nested Monte Carlo (Rainforth et al. 2018) is consistent and biased upwards (:math:`O(1/L)`); it is
also the upper bound of Foster et al. (2020) with the prior as proposal, which is why
``pce_eig(..., bound="upper")`` and :func:`nmc_eig` are one estimator. Prior contrastive
estimation (PCE, Foster et al. 2020) includes :math:`\theta_{n,0}` in its own contrast and is a
lower bound, :math:`\mathbb E[g^{\mathrm{PCE}}] \le \mathrm{EIG} \le \mathbb E[g^{\mathrm{NMC}}]`,
never above :math:`\log(L+1)`. The :math:`g_n` are independent, so the standard error is their
sample standard deviation over :math:`\sqrt N`.

Design gradients (:func:`eig_gradient`) of the bound :math:`B(d) = \mathbb E[g(y,\theta,d)]`:

* score function, valid for any likelihood (discrete :math:`y` included): :math:`y` is sampled
  from :math:`p(y\mid\theta,d)`, which depends on :math:`d`, so

  .. math::

      \nabla_d B = \mathbb E\big[(g - b)\,\nabla_d \log p(y\mid\theta_0,d)\big]
                 + \mathbb E\big[\nabla_d g\big],

  with the leave-one-out baseline :math:`b_n = \frac1{N-1}\sum_{m\ne n} g_m` (it keeps the
  estimate unbiased because :math:`\mathbb E[\nabla_d\log p(y\mid\theta_0,d)] = 0`);
* pathwise, when :math:`y = \mu(\theta,d) + \sigma\varepsilon` reparameterises:
  :math:`\nabla_d B = \mathbb E[\nabla_d\, g(\mu(\theta_0,d) + \sigma\varepsilon, \theta, d)]`.

Per-sample gradients come from one backward pass through a design copied per outer sample (row
:math:`n` of the copy touches :math:`g_n` only). :func:`optimize_design` ascends the bound with
Adam followed by a projection (unit norm, or a box), with a checkpoint that resumes exactly.

Models with a reference: :class:`LinearGaussianModel` (:math:`y = X\theta + \varepsilon`,
:math:`\theta\sim N(0,\Sigma)`, :math:`\varepsilon\sim N(0,s^2 I)`, closed form
:math:`\mathrm{EIG} = \frac12\log\det(I + X\Sigma X^\top/s^2)` and its autograd design gradient;
for one unit-norm observation :math:`y = d^\top\theta + \varepsilon` the optimum is the top
eigenvector of :math:`\Sigma`) and :class:`LogisticDoseResponse` (Bernoulli outcomes at
:math:`K` dose levels, :math:`P(y_k = 1) = \sigma(a(x_k - c))`, Gaussian prior on
:math:`(a, c)`; EIG by 2-D Gauss-Hermite quadrature over :math:`\theta` and an exact sum over the
:math:`2^K` outcomes).

References:
    Rainforth, Cornish, Yang, Warrington & Wood (ICML 2018), "On nesting Monte Carlo estimators";
    Foster, Jankowiak, O'Meara, Teh & Rainforth (AISTATS 2020), "A unified stochastic gradient
    approach to designing Bayesian-optimal experiments".

>>> model = LinearGaussianModel(torch.diag(torch.tensor([1.0, 2.25], dtype=torch.float64)))
>>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
>>> round(float(model.exact_eig(X)), 4)
1.1989
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from stochgrad.argtypes import float_list, positive_int
from stochgrad.gradient_estimate import GradientEstimate

__all__ = [
    "DesignConfig",
    "DesignModel",
    "EIGEstimate",
    "LinearGaussianModel",
    "LogisticDoseResponse",
    "OptimizationResult",
    "add_eig_arguments",
    "add_optimize_arguments",
    "anisotropic_prior_cov",
    "eig_gradient",
    "make_problem",
    "nmc_eig",
    "optimize_design",
    "pce_eig",
    "project",
    "quadrature_optimum",
    "run_eig",
    "run_optimize",
    "uniform_doses",
]

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_generator(generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (randomness is explicit), got {type(generator).__name__}"
        )
    return generator


def _as_tensor(name: str, value: Any, dtype: torch.dtype) -> Tensor:
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value, dtype=dtype)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor of numbers, got {value!r}") from None
    if not value.is_floating_point():
        value = value.to(dtype)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
class DesignModel(Protocol):
    r"""What the estimators need of a model: a prior sampler and a batched likelihood.

    Leading dimensions broadcast: ``theta [..., dim]``, ``design [..., *design_shape]``,
    ``y [..., num_observations]``. A reparameterisable model (``reparameterizable = True``) also
    has ``mean(theta, design)`` and ``noise_sd``: :math:`y = \mu(\theta, d) + s\,\varepsilon`.
    """

    dim: int
    dtype: torch.dtype
    reparameterizable: bool

    def check_design(self, design: Tensor) -> Tensor:
        """The design as the model's float tensor; ``ValueError`` for a bad shape or value."""
        ...

    def sample_prior(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """``[*shape, dim]`` draws from the prior."""
        ...

    def log_likelihood(self, y: Tensor, theta: Tensor, design: Tensor) -> Tensor:
        r""":math:`\log p(y \mid \theta, d)` summed over observations, broadcast."""
        ...

    def sample(self, theta: Tensor, design: Tensor, generator: torch.Generator) -> Tensor:
        r"""Draw :math:`y \sim p(y \mid \theta, d)`."""
        ...


class LinearGaussianModel:
    r"""The linear-Gaussian model :math:`y = X\theta + \varepsilon`.

    :math:`\theta\sim N(0,\Sigma)` in :math:`\mathbb R^p`, :math:`\varepsilon\sim N(0, s^2 I_n)`.
    A design is the matrix :math:`X` ``[n, p]`` (``n`` observations), or a vector ``[p]`` for one
    observation :math:`y = d^\top\theta + \varepsilon`. Closed form (Lindley 1956; Chaloner &
    Verdinelli 1995):

    .. math:: \mathrm{EIG}(X) = \tfrac12 \log\det\big(I_n + X\Sigma X^\top / s^2\big).

    Args:
        prior_cov: :math:`\Sigma`, ``[p, p]`` symmetric positive definite.
        noise_sd: :math:`s > 0`.

    Raises:
        ValueError: ``prior_cov`` not square, not symmetric or not positive definite;
            ``noise_sd`` not positive.

    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64), noise_sd=1.0)
    >>> round(float(m.exact_eig(torch.tensor([1.0, 0.0], dtype=torch.float64))), 6)  # log(2)/2
    0.346574
    """

    reparameterizable = True

    def __init__(self, prior_cov: Tensor, noise_sd: float = 1.0) -> None:
        prior_cov = _as_tensor("prior_cov", prior_cov, torch.float64)
        if prior_cov.ndim != 2 or prior_cov.shape[0] != prior_cov.shape[1]:
            raise ValueError(
                f"prior_cov must be a square [p, p] matrix, got {tuple(prior_cov.shape)}"
            )
        if not torch.allclose(prior_cov, prior_cov.T, atol=1e-10):
            raise ValueError("prior_cov must be symmetric")
        chol, info = torch.linalg.cholesky_ex(prior_cov)
        if int(info) != 0:
            raise ValueError("prior_cov must be positive definite")
        noise_sd = float(noise_sd)
        if not (math.isfinite(noise_sd) and noise_sd > 0):
            raise ValueError(f"noise_sd must be a finite number > 0, got {noise_sd!r}")
        self.prior_cov = prior_cov
        self.prior_chol = chol
        self.noise_sd = noise_sd
        self.dim = prior_cov.shape[0]
        self.dtype = prior_cov.dtype

    def check_design(self, design: Tensor) -> Tensor:
        """``design`` as a float ``[n, p]`` matrix (a ``[p]`` vector becomes ``[1, p]``)."""
        design = _as_tensor("design", design, self.dtype).to(self.dtype)
        if design.ndim == 1:
            design = design[None]
        if design.ndim != 2 or design.shape[-1] != self.dim or design.shape[0] < 1:
            raise ValueError(
                f"design must be [n, {self.dim}] (or [{self.dim}] for one observation), "
                f"got {tuple(design.shape)}"
            )
        return design

    def sample_prior(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """:math:`\\theta = L z`, ``z`` standard normal: ``[*shape, p]``."""
        z = torch.randn(*shape, self.dim, generator=generator, dtype=self.dtype)
        return z @ self.prior_chol.T

    def mean(self, theta: Tensor, design: Tensor) -> Tensor:
        """:math:`X\\theta`: ``theta [..., p]``, ``design [..., n, p]`` -> ``[..., n]``."""
        return (design @ theta.unsqueeze(-1)).squeeze(-1)

    def log_likelihood(self, y: Tensor, theta: Tensor, design: Tensor) -> Tensor:
        """:math:`\\log N(y; X\\theta, s^2 I)` summed over observations, broadcast over ``[...]``."""
        r = (y - self.mean(theta, design)) / self.noise_sd
        n = y.shape[-1]
        return -0.5 * (r * r).sum(-1) - n * (math.log(self.noise_sd) + 0.5 * _LOG_2PI)

    def sample(self, theta: Tensor, design: Tensor, generator: torch.Generator) -> Tensor:
        """Draw :math:`y \\sim N(X\\theta, s^2 I)`."""
        mu = self.mean(theta, design)
        return mu + self.noise_sd * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)

    def exact_eig(self, design: Tensor) -> Tensor:
        r""":math:`\frac12\log\det(I + X\Sigma X^\top/s^2)`, differentiable in ``design``."""
        X = self.check_design(design)
        n = X.shape[-2]
        eye = torch.eye(n, dtype=X.dtype)
        return 0.5 * torch.logdet(eye + X @ self.prior_cov @ X.transpose(-1, -2) / self.noise_sd**2)

    def exact_eig_gradient(self, design: Tensor) -> Tensor:
        """The design gradient of :meth:`exact_eig` (autograd of the closed form)."""
        d = design.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.exact_eig(d), d)
        return grad


@functools.lru_cache(maxsize=8)
def _gauss_hermite(order: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of E[f(Z)], Z ~ N(0, 1) (numpy's probabilists' Hermite rule)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    w = weights / math.sqrt(2.0 * math.pi)
    return torch.as_tensor(nodes, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64)


class LogisticDoseResponse:
    r"""Bernoulli outcomes at :math:`K` dose levels: :math:`P(y_k = 1\mid a, c) = \sigma(a(x_k - c))`.

    :math:`\theta = (a, c)` (slope, threshold) with independent Gaussian priors. A design is the
    vector of doses :math:`x \in \mathbb R^K`; the outcome is :math:`y\in\{0,1\}^K`, discrete, so
    only the score-function gradient applies. The reference EIG (:meth:`quadrature_eig`):
    Gauss-Hermite quadrature of order :math:`Q` in each coordinate of :math:`\theta` (probabilists'
    nodes, :func:`numpy.polynomial.hermite_e.hermegauss`) and an exact sum over the :math:`2^K`
    outcomes,

    .. math::

        \mathrm{EIG}(x) = H\Big[\sum_q w_q\, p(y\mid\theta_q,x)\Big]
                        - \sum_q w_q \sum_k h\big(\sigma(a_q(x_k - c_q))\big),

    with :math:`H` the entropy over :math:`y` and :math:`h` the binary entropy.

    Args:
        prior_mean: ``(slope, threshold)`` prior means.
        prior_sd: ``(slope, threshold)`` prior standard deviations, > 0.

    >>> m = LogisticDoseResponse()
    >>> float(m.quadrature_eig(torch.tensor([0.0, 0.0], dtype=torch.float64))) > 0
    True
    """

    reparameterizable = False
    max_doses = 16  # 2^K outcomes in the exact sum

    def __init__(
        self,
        prior_mean: tuple[float, float] = (2.0, 0.0),
        prior_sd: tuple[float, float] = (0.5, 1.0),
    ) -> None:
        mean = _as_tensor("prior_mean", prior_mean, torch.float64).to(torch.float64)
        sd = _as_tensor("prior_sd", prior_sd, torch.float64).to(torch.float64)
        if mean.shape != (2,) or sd.shape != (2,):
            raise ValueError(
                f"prior_mean and prior_sd must have 2 entries (slope, threshold), got "
                f"{tuple(mean.shape)} and {tuple(sd.shape)}"
            )
        if not bool((sd > 0).all()):
            raise ValueError(f"prior_sd must be > 0, got {sd.tolist()}")
        self.prior_mean, self.prior_sd = mean, sd
        self.dim = 2
        self.dtype = torch.float64

    def check_design(self, design: Tensor) -> Tensor:
        """``design`` as a float vector of ``1..16`` doses."""
        design = _as_tensor("design", design, self.dtype).to(self.dtype)
        if design.ndim != 1 or not (1 <= design.shape[0] <= self.max_doses):
            raise ValueError(
                f"design must be a vector of 1..{self.max_doses} doses, got shape {tuple(design.shape)}"
            )
        return design

    def sample_prior(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """``[*shape, 2]`` draws of (slope, threshold)."""
        z = torch.randn(*shape, 2, generator=generator, dtype=self.dtype)
        return self.prior_mean + self.prior_sd * z

    def logits(self, theta: Tensor, design: Tensor) -> Tensor:
        """:math:`a(x_k - c)`: ``theta [..., 2]``, ``design [..., K]`` -> ``[..., K]``."""
        return theta[..., :1] * (design - theta[..., 1:])

    def log_likelihood(self, y: Tensor, theta: Tensor, design: Tensor) -> Tensor:
        """Bernoulli log-likelihood summed over the ``K`` doses (``log σ`` for stability)."""
        z = self.logits(theta, design)
        return (y * F.logsigmoid(z) + (1.0 - y) * F.logsigmoid(-z)).sum(-1)

    def sample(self, theta: Tensor, design: Tensor, generator: torch.Generator) -> Tensor:
        """Draw :math:`y_k \\sim \\mathrm{Bernoulli}(\\sigma(a(x_k - c)))`."""
        p = torch.sigmoid(self.logits(theta, design))
        return (torch.rand(p.shape, generator=generator, dtype=p.dtype) < p).to(p.dtype)

    def quadrature_eig(self, design: Tensor, order: int = 40) -> Tensor:
        """EIG by Gauss-Hermite quadrature (order ``order`` per axis) and the exact outcome sum.

        Differentiable in ``design`` (the design gradient of the reference is its autograd).
        """
        order = _check_int("order", order, 2)
        x = self.check_design(design)
        z, w = _gauss_hermite(order)
        slope = self.prior_mean[0] + self.prior_sd[0] * z
        thr = self.prior_mean[1] + self.prior_sd[1] * z
        theta = torch.stack(torch.meshgrid(slope, thr, indexing="ij"), -1).reshape(-1, 2)
        logw = torch.log(torch.outer(w, w).reshape(-1))
        logits = self.logits(theta, x)  # [Q, K]
        lp1, lp0 = F.logsigmoid(logits), F.logsigmoid(-logits)
        cond_entropy = -(lp1.exp() * lp1 + lp0.exp() * lp0).sum(-1)  # H(y | theta_q)
        k = x.shape[-1]
        ys = ((torch.arange(2**k)[:, None] >> torch.arange(k)) & 1).to(self.dtype)  # [2^K, K]
        log_py_theta = ys @ lp1.T + (1.0 - ys) @ lp0.T  # [2^K, Q]
        log_py = torch.logsumexp(log_py_theta + logw, dim=1)
        marginal_entropy = -(log_py.exp() * log_py).sum()
        return marginal_entropy - (logw.exp() * cond_entropy).sum()

    def quadrature_eig_gradient(self, design: Tensor, order: int = 40) -> Tensor:
        """The design gradient of :meth:`quadrature_eig` (autograd)."""
        d = self.check_design(design).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.quadrature_eig(d, order), d)
        return grad


def anisotropic_prior_cov() -> Tensor:
    """The 3 x 3 anisotropic prior covariance of the unit-norm design problem (float64).

    Its eigenvectors are not aligned with the axes; the optimal unit-norm design for one
    observation is the top eigenvector (:func:`torch.linalg.eigh` gives the reference).

    >>> bool((torch.linalg.eigvalsh(anisotropic_prior_cov()) > 0).all())
    True
    """
    return torch.tensor([[2.5, 1.2, 0.3], [1.2, 1.5, 0.2], [0.3, 0.2, 0.5]], dtype=torch.float64)


def uniform_doses(num_doses: int, low: float = -4.0, high: float = 4.0) -> Tensor:
    """``num_doses`` equally spaced doses on ``[low, high]``, ends included (the baseline design).

    >>> uniform_doses(3).tolist()
    [-4.0, 0.0, 4.0]
    """
    num_doses = _check_int("num_doses", num_doses, 1)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")
    if num_doses == 1:
        return torch.tensor([(low + high) / 2], dtype=torch.float64)
    return torch.linspace(low, high, num_doses, dtype=torch.float64)


def quadrature_optimum(
    model: LogisticDoseResponse, initial: Tensor, box: tuple[float, float] = (-4.0, 4.0)
) -> tuple[Tensor, float]:
    """The dose design maximising the quadrature EIG, by L-BFGS-B (scipy) from ``initial``.

    A deterministic reference for the stochastic ascent: the objective and its gradient are
    :meth:`LogisticDoseResponse.quadrature_eig` and its autograd; the doses stay in ``box``.
    The EIG surface is not concave, so this is a local optimum near ``initial``.

    Returns:
        ``(design, eig)``.

    >>> d, eig = quadrature_optimum(LogisticDoseResponse(), uniform_doses(2))
    >>> eig > float(LogisticDoseResponse().quadrature_eig(uniform_doses(2)))
    True
    """
    from scipy.optimize import minimize

    x0 = model.check_design(initial).detach().numpy()

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = torch.as_tensor(x, dtype=model.dtype).requires_grad_(True)
        value = model.quadrature_eig(d)
        (grad,) = torch.autograd.grad(value, d)
        return -float(value.detach()), -grad.numpy()

    res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=[box] * len(x0))
    best = torch.as_tensor(res.x, dtype=model.dtype)
    return best, float(model.quadrature_eig(best))


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EIGEstimate:
    """An EIG estimate: mean of independent per-outer-sample terms, with its standard error.

    Attributes:
        value: the estimate (nats).
        stderr: standard error of ``value`` (sample sd of ``per_sample`` over sqrt(N)).
        per_sample: ``[N]`` terms :math:`g_n`.
        method: ``"nmc"``, ``"pce"`` (lower bound) or ``"pce_upper"``.
        num_outer: N.
        num_inner: L, contrastive (inner) prior samples per outer sample.
    """

    value: float
    stderr: float
    per_sample: Tensor
    method: str
    num_outer: int
    num_inner: int


def _check_bound(bound: str) -> str:
    if bound not in ("lower", "upper"):
        raise ValueError(f"bound must be 'lower' (PCE) or 'upper' (NMC), got {bound!r}")
    return bound


def _contrast(lp0: Tensor, lpc: Tensor, bound: str) -> Tensor:
    """``g_n`` from ``lp0 [N]`` and the contrastive log-likelihoods ``lpc [N, L]``."""
    if bound == "lower":
        all_lp = torch.cat([lp0.unsqueeze(1), lpc], dim=1)
        return lp0 - (torch.logsumexp(all_lp, 1) - math.log(all_lp.shape[1]))
    return lp0 - (torch.logsumexp(lpc, 1) - math.log(lpc.shape[1]))


def _terms(
    model: DesignModel,
    design: Tensor,
    num_outer: int,
    num_inner: int,
    bound: str,
    generator: torch.Generator,
    *,
    pathwise: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(g [N], log p(y_n | theta_n0, d_n) [N])`` for a per-sample design ``[N, *shape]``.

    ``y`` is sampled without gradient (score function), or reparameterised through ``design``
    (``pathwise=True``). Row ``n`` of ``design`` only touches term ``n``.
    """
    theta0 = model.sample_prior((num_outer,), generator)
    if pathwise:
        mu = model.mean(theta0, design)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        y = mu + model.noise_sd * eps
    else:
        y = model.sample(theta0, design.detach(), generator)
    theta_c = model.sample_prior((num_outer, num_inner), generator)
    lp0 = model.log_likelihood(y, theta0, design)
    lpc = model.log_likelihood(y.unsqueeze(1), theta_c, design.unsqueeze(1))
    return _contrast(lp0, lpc, bound), lp0


def pce_eig(
    model: DesignModel,
    design: Tensor,
    *,
    num_outer: int,
    num_inner: int,
    bound: str = "lower",
    generator: torch.Generator,
) -> EIGEstimate:
    r"""Prior contrastive estimation of the EIG: the lower bound, or the upper (NMC) bound.

    .. math::

        \hat B_{\mathrm{lower}} = \frac1N\sum_n \Big[\ell_{n,0} -
            \log\frac{1}{L+1}\sum_{l=0}^{L} p(y_n\mid\theta_{n,l},d)\Big]
        \le \mathrm{EIG}(d) \quad\text{(in expectation; and} \le \log(L+1)\text{)}

    ``bound="upper"`` drops :math:`l = 0` from the contrast: the nested Monte Carlo estimator.

    Args:
        model: a :class:`LinearGaussianModel`, :class:`LogisticDoseResponse` or any object with
            ``check_design``, ``sample_prior``, ``sample`` and ``log_likelihood``.
        design: the design (see the model).
        num_outer: N >= 2 outer samples :math:`(\theta_{n,0}, y_n)`.
        num_inner: L >= 1 contrastive prior samples per outer sample.
        bound: ``"lower"`` (PCE) or ``"upper"`` (NMC).
        generator: all randomness is drawn from it.

    Returns:
        An :class:`EIGEstimate`.

    Raises:
        ValueError: bad sizes, bound or design; TypeError: no generator.

    Reference: Foster et al. (AISTATS 2020), eq. (9) and (10).

    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64))
    >>> est = pce_eig(m, torch.tensor([1.0, 0.0]), num_outer=500, num_inner=200,
    ...               generator=torch.Generator().manual_seed(0))
    >>> abs(est.value - math.log(2) / 2) < 4 * est.stderr
    True
    """
    design = model.check_design(design)
    num_outer = _check_int("num_outer", num_outer, 2)
    num_inner = _check_int("num_inner", num_inner, 1)
    bound = _check_bound(bound)
    generator = _check_generator(generator)
    with torch.no_grad():
        expanded = design.expand(num_outer, *design.shape)
        g, _ = _terms(model, expanded, num_outer, num_inner, bound, generator)
    if not bool(torch.isfinite(g).all()):
        raise ValueError("the EIG terms are not finite; check the model's log-likelihood")
    var, mean = torch.var_mean(g)
    return EIGEstimate(
        value=float(mean),
        stderr=float((var / num_outer).sqrt()),
        per_sample=g,
        method="pce" if bound == "lower" else "pce_upper",
        num_outer=num_outer,
        num_inner=num_inner,
    )


def nmc_eig(
    model: DesignModel,
    design: Tensor,
    *,
    num_outer: int,
    num_inner: int,
    generator: torch.Generator,
) -> EIGEstimate:
    r"""Nested Monte Carlo EIG estimate (Rainforth et al. 2018), fresh inner samples per outer.

    .. math::

        \hat\mu_{\mathrm{NMC}} = \frac1N\sum_{n=1}^N\Big[\log p(y_n\mid\theta_n,d)
            - \log\frac1M\sum_{m=1}^M p(y_n\mid\theta_{n,m},d)\Big],

    biased upwards by :math:`O(1/M)`; the same estimator as ``pce_eig(..., bound="upper")``.

    Args:
        model: see :func:`pce_eig`.
        design: the design.
        num_outer: N >= 2.
        num_inner: M >= 1.
        generator: all randomness is drawn from it.

    Returns:
        An :class:`EIGEstimate` with ``method="nmc"``.

    Reference: Rainforth et al. (ICML 2018), section 5.

    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64))
    >>> est = nmc_eig(m, torch.tensor([1.0, 0.0]), num_outer=500, num_inner=200,
    ...               generator=torch.Generator().manual_seed(0))
    >>> est.method, abs(est.value - math.log(2) / 2) < 4 * est.stderr
    ('nmc', True)
    """
    est = pce_eig(
        model,
        design,
        num_outer=num_outer,
        num_inner=num_inner,
        bound="upper",
        generator=generator,
    )
    return EIGEstimate(est.value, est.stderr, est.per_sample, "nmc", est.num_outer, est.num_inner)


def eig_gradient(
    model: DesignModel,
    design: Tensor,
    *,
    num_outer: int,
    num_inner: int,
    method: str = "score",
    bound: str = "lower",
    generator: torch.Generator,
) -> GradientEstimate:
    r"""Design gradient of the PCE (``bound="lower"``) or NMC (``"upper"``) objective.

    ``method="score"``: per-sample terms
    :math:`(g_n - b_n)\,\nabla_d \log p(y_n\mid\theta_{n,0},d) + \nabla_d g_n` with the
    leave-one-out baseline :math:`b_n`; valid for discrete outcomes. ``method="pathwise"``:
    :math:`\nabla_d g(\mu(\theta_{n,0},d) + \sigma\varepsilon_n, \theta_n, d)`; needs a
    reparameterisable model (:class:`LinearGaussianModel`). Both are unbiased for the gradient of
    the bound, which tends to :math:`\nabla_d\mathrm{EIG}` as :math:`L\to\infty`.

    Args:
        model: the model.
        design: the design at which to differentiate.
        num_outer: N >= 2.
        num_inner: L >= 1.
        method: ``"score"`` or ``"pathwise"``.
        bound: ``"lower"`` or ``"upper"``.
        generator: all randomness is drawn from it.

    Returns:
        A :class:`~stochgrad.GradientEstimate` shaped like the checked design (``[n, p]`` for a
        linear model); ``info["eig"]`` and ``info["eig_stderr"]`` hold the bound's estimate from
        the same samples.

    Raises:
        ValueError: unknown method, ``pathwise`` on a model without reparameterisation, bad sizes.

    Reference: Foster et al. (AISTATS 2020), section 3.2 (score function and reparameterisation
    gradients of the bounds).

    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64))
    >>> est = eig_gradient(m, torch.tensor([1.0, 0.0]), num_outer=64, num_inner=32,
    ...                    method="pathwise", generator=torch.Generator().manual_seed(0))
    >>> est.grad.shape
    torch.Size([1, 2])
    """
    design = model.check_design(design)
    num_outer = _check_int("num_outer", num_outer, 2)
    num_inner = _check_int("num_inner", num_inner, 1)
    bound = _check_bound(bound)
    generator = _check_generator(generator)
    if method not in ("score", "pathwise"):
        raise ValueError(f"method must be 'score' or 'pathwise', got {method!r}")
    if method == "pathwise" and not getattr(model, "reparameterizable", False):
        raise ValueError(
            f"method='pathwise' needs outcomes y = mu(theta, d) + sigma * eps; "
            f"{type(model).__name__} has discrete outcomes: use method='score'"
        )
    # One copy of the design per outer sample: the gradient of sum_n(.) w.r.t. row n is
    # the per-sample gradient of term n.
    d = design.detach().expand(num_outer, *design.shape).clone().requires_grad_(True)
    with torch.enable_grad():
        g, lp0 = _terms(
            model, d, num_outer, num_inner, bound, generator, pathwise=method == "pathwise"
        )
        if not bool(torch.isfinite(g).all()):
            raise ValueError("the EIG terms are not finite; check the model's log-likelihood")
        if method == "score":
            gd = g.detach()
            baseline = (gd.sum() - gd) / (num_outer - 1)
            surrogate = ((gd - baseline) * lp0 + g).sum()
        else:
            surrogate = g.sum()
        (per_sample,) = torch.autograd.grad(surrogate, d)
    var, mean = torch.var_mean(g.detach())
    return GradientEstimate.from_per_sample(
        per_sample,
        method=f"eig_{method}",
        biased=True,
        evaluations=num_outer * (num_inner + 1),
        info={
            "eig": float(mean),
            "eig_stderr": float((var / num_outer).sqrt()),
            "bound": bound,
        },
    )


# ---------------------------------------------------------------------------------------------
# design optimisation
# ---------------------------------------------------------------------------------------------
def project(design: Tensor, constraint: str, box: tuple[float, float] = (-4.0, 4.0)) -> Tensor:
    """Project a design onto its feasible set.

    ``"unit_norm"``: :math:`d / \\lVert d\\rVert` (rows of a matrix design, each an observation);
    ``"box"``: clamp to ``[low, high]``; ``"none"``: unchanged.

    >>> project(torch.tensor([3.0, 4.0]), "unit_norm").tolist()
    [0.6000000238418579, 0.800000011920929]
    """
    if constraint == "unit_norm":
        norm = design.norm(dim=-1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError("a unit-norm design cannot be projected from the zero vector")
        return design / norm
    if constraint == "box":
        return design.clamp(box[0], box[1])
    if constraint == "none":
        return design
    raise ValueError(f"constraint must be 'unit_norm', 'box' or 'none', got {constraint!r}")


@dataclass(frozen=True)
class DesignConfig:
    """Settings of one design optimisation (stored in, and compared with, the checkpoint).

    Attributes:
        model: ``"linear"`` (one unit-norm observation, prior :func:`anisotropic_prior_cov`,
            noise sd 1) or ``"logistic"`` (:class:`LogisticDoseResponse`, doses in a box).
        steps: Adam steps.
        lr: Adam learning rate.
        num_outer: N per gradient estimate.
        num_inner: L contrastive samples.
        method: ``"score"`` or ``"pathwise"``.
        bound: ``"lower"`` (PCE) or ``"upper"`` (NMC).
        seed: seeds the initial design and step ``t``'s generator (``seed * 1_000_003 + t``).
        num_doses: K (logistic only).
        average_last: the returned design averages the iterates of this final fraction of the
            steps (Polyak-Ruppert averaging, then projected); 0 keeps the last iterate.
        checkpoint_every: steps between checkpoints.
    """

    model: str = "linear"
    steps: int = 400
    lr: float = 0.05
    num_outer: int = 256
    num_inner: int = 256
    method: str = "pathwise"
    bound: str = "lower"
    seed: int = 0
    num_doses: int = 4
    average_last: float = 0.5
    checkpoint_every: int = 25

    def __post_init__(self) -> None:
        if self.model not in ("linear", "logistic"):
            raise ValueError(f"model must be 'linear' or 'logistic', got {self.model!r}")
        _check_int("steps", self.steps, 1)
        _check_int("num_outer", self.num_outer, 2)
        _check_int("num_inner", self.num_inner, 1)
        _check_int("num_doses", self.num_doses, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        _check_int("seed", self.seed, 0)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (0.0 <= self.average_last < 1.0):
            raise ValueError(f"average_last must lie in [0, 1), got {self.average_last!r}")
        if self.method not in ("score", "pathwise"):
            raise ValueError(f"method must be 'score' or 'pathwise', got {self.method!r}")
        _check_bound(self.bound)
        if self.model == "logistic" and self.method == "pathwise":
            raise ValueError(
                "method='pathwise' needs continuous outcomes; the logistic model's are Bernoulli: "
                "use method='score'"
            )
        if self.model == "logistic" and self.num_doses > LogisticDoseResponse.max_doses:
            raise ValueError(
                f"num_doses must be <= {LogisticDoseResponse.max_doses}, got {self.num_doses}"
            )


@dataclass
class Problem:
    """A model, its constraint, an initial design, and the reference EIG of any design."""

    model: Any
    constraint: str
    initial: Tensor
    exact_eig: Callable[[Tensor], float]
    optimum: Tensor | None = None  # known optimal design (linear)
    baseline: Tensor | None = None  # design to beat (logistic: uniform doses)


def make_problem(config: DesignConfig) -> Problem:
    """The model, constraint, seeded initial design and reference EIG for ``config.model``.

    ``linear``: unit-norm :math:`d\\in\\mathbb R^3`, one observation, prior
    :func:`anisotropic_prior_cov`, noise sd 1; initial design a seeded random unit vector; the
    optimum is the top eigenvector of the prior covariance. ``logistic``: ``num_doses`` doses in
    ``[-4, 4]``, starting from (and compared with) :func:`uniform_doses`.

    >>> p = make_problem(DesignConfig(model="linear"))
    >>> round(float(p.initial.norm()), 6), p.constraint
    (1.0, 'unit_norm')
    """
    if config.model == "linear":
        model = LinearGaussianModel(anisotropic_prior_cov(), noise_sd=1.0)
        g = torch.Generator().manual_seed(config.seed)
        init = project(torch.randn(3, generator=g, dtype=torch.float64), "unit_norm")
        evals, evecs = torch.linalg.eigh(model.prior_cov)
        top = evecs[:, -1]
        top = top * torch.sign(top @ init)  # the sign is free: take the closer one
        return Problem(model, "unit_norm", init, lambda d: float(model.exact_eig(d)), optimum=top)
    model = LogisticDoseResponse()
    init = uniform_doses(config.num_doses)
    return Problem(
        model, "box", init.clone(), lambda d: float(model.quadrature_eig(d)), baseline=init
    )


@dataclass
class OptimizationResult:
    """History and outcome of :func:`optimize_design`.

    Attributes:
        config: the settings, as a dict.
        designs: ``[steps + 1, *shape]`` iterates (the initial design first).
        estimates: ``[steps]`` bound estimates at the iterate each step differentiated.
        stderrs: ``[steps]`` their standard errors.
        exact: ``[steps + 1]`` reference EIG (closed form or quadrature) of each iterate.
        final_design: the averaged (or last) design; ``final_eig`` its reference EIG.
        optimum_design / optimum_eig: the known optimum (linear: the top eigenvector; logistic:
            the L-BFGS-B maximiser of the quadrature EIG, :func:`quadrature_optimum`).
        baseline_design / baseline_eig: the design to beat (logistic uniform doses) or None.
        angle_deg: angle between the final design and the optimum (linear), else None.
        relative_gap: (optimum EIG - final EIG) / optimum EIG.
        seconds: wall time of this call (a resumed call counts its own time only).
        resumed_from: the step the checkpoint restored (0 for a fresh start).
    """

    config: dict[str, Any]
    designs: Tensor
    estimates: Tensor
    stderrs: Tensor
    exact: Tensor
    final_design: Tensor
    final_eig: float
    optimum_design: Tensor | None = None
    optimum_eig: float | None = None
    baseline_design: Tensor | None = None
    baseline_eig: float | None = None
    angle_deg: float | None = None
    relative_gap: float | None = None
    seconds: float = 0.0
    resumed_from: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain values for ``json.dumps``."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = value.tolist() if isinstance(value, Tensor) else value
        return out


class _Adam:
    """Adam (Kingma & Ba, ICLR 2015) for one tensor, ascending.

    Written out because ``torch.optim.Adam``'s first step imports ``torch._dynamo`` (seconds of
    start-up for a three-line update) and its state is just the two moments and the step count.
    """

    def __init__(self, like: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.lr, self.betas, self.eps = lr, betas, 1e-8
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)
        self.t = 0

    def step(self, value: Tensor, grad: Tensor) -> Tensor:
        """``value`` moved up ``grad`` by one Adam step (bias-corrected moments)."""
        b1, b2 = self.betas
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        return value + self.lr * m_hat / (v_hat.sqrt() + self.eps)

    def state(self) -> dict[str, Any]:
        return {"m": self.m.clone(), "v": self.v.clone(), "t": self.t}

    def load(self, state: dict[str, Any]) -> None:
        self.m, self.v, self.t = state["m"].clone(), state["v"].clone(), int(state["t"])


def _checkpoint_state(
    config: DesignConfig, step: int, design: Tensor, opt: _Adam, hist: dict
) -> dict[str, Any]:
    return {
        "config": asdict(config),
        "step": step,
        "design": design.detach().clone(),
        "optimizer": opt.state(),
        "history": {k: torch.stack(v) if v else torch.empty(0) for k, v in hist.items()},
    }


def optimize_design(
    config: DesignConfig,
    *,
    checkpoint: str | Path | None = None,
    callback: Callable[[int], None] | None = None,
) -> OptimizationResult:
    r"""Projected stochastic gradient ascent (Adam) of the PCE/NMC bound over designs.

    Step :math:`t`: estimate :math:`\nabla_d B(d_t)` (:func:`eig_gradient`, generator seeded
    with ``seed * 1_000_003 + t``), keep its tangent part :math:`(I - d d^\top)\nabla_d B` on the
    unit sphere, take an Adam step on :math:`-B`, project onto the feasible set
    (:func:`project`). The reference EIG of every iterate is recorded. With ``checkpoint``,
    the state (design, Adam moments, history) is saved every ``checkpoint_every`` steps and at
    the end, and a later call with the same settings continues from it: the result equals an
    uninterrupted run.

    Args:
        config: a :class:`DesignConfig`.
        checkpoint: ``.pt`` file to resume from and save to (None: no checkpoint).
        callback: called with the number of steps just done (progress bars).

    Returns:
        An :class:`OptimizationResult`.

    Raises:
        ValueError: the checkpoint was made with other settings.

    Reference: Foster et al. (AISTATS 2020), section 3 (stochastic gradient design optimisation).

    >>> res = optimize_design(DesignConfig(steps=3, num_outer=16, num_inner=16))
    >>> res.designs.shape
    torch.Size([4, 3])
    """
    start = time.perf_counter()
    problem = make_problem(config)
    model = problem.model
    param = problem.initial.detach().clone()
    opt = _Adam(param, lr=config.lr)
    hist: dict[str, list[Tensor]] = {"designs": [], "estimates": [], "stderrs": [], "exact": []}
    step0 = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        if state["config"] != asdict(config):
            now = asdict(config)
            diff = {
                k: (state["config"].get(k), v)
                for k, v in now.items()
                if state["config"].get(k) != v
            }
            raise ValueError(
                f"checkpoint {ckpt} was made with other settings (saved, now): {diff}; "
                "rerun with the same options, or with --restart to start afresh"
            )
        step0 = int(state["step"])
        param = state["design"].clone()
        opt.load(state["optimizer"])
        hist = {k: list(v.unbind(0)) if v.numel() else [] for k, v in state["history"].items()}
    if not hist["designs"]:
        hist["designs"].append(param.detach().clone())
        hist["exact"].append(torch.tensor(problem.exact_eig(param.detach())))

    def save(step: int) -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(ckpt.suffix + ".tmp")
        torch.save(_checkpoint_state(config, step, param, opt, hist), tmp)
        tmp.replace(ckpt)

    for t in range(step0, config.steps):
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + t)
        est = eig_gradient(
            model,
            param.detach(),
            num_outer=config.num_outer,
            num_inner=config.num_inner,
            method=config.method,
            bound=config.bound,
            generator=gen,
        )
        grad = est.grad.reshape(param.shape)
        if problem.constraint == "unit_norm":
            # Tangent component only: Adam's per-coordinate scaling of the radial part (which
            # the projection discards anyway) would otherwise bend the path.
            grad = grad - (grad * param).sum(-1, keepdim=True) * param
        param = project(opt.step(param, grad), problem.constraint)
        hist["designs"].append(param.detach().clone())
        hist["estimates"].append(torch.tensor(est.info["eig"], dtype=torch.float64))
        hist["stderrs"].append(torch.tensor(est.info["eig_stderr"], dtype=torch.float64))
        hist["exact"].append(torch.tensor(problem.exact_eig(param.detach()), dtype=torch.float64))
        if (t + 1) % config.checkpoint_every == 0 and t + 1 < config.steps:
            save(t + 1)
        if callback is not None:
            callback(1)
    save(config.steps)

    designs = torch.stack(hist["designs"])
    tail = max(1, int(round(config.average_last * config.steps)))
    final = project(designs[-tail:].mean(0), problem.constraint)
    final_eig = problem.exact_eig(final)
    result = OptimizationResult(
        config=asdict(config),
        designs=designs,
        estimates=torch.stack(hist["estimates"]),
        stderrs=torch.stack(hist["stderrs"]),
        exact=torch.stack(hist["exact"]),
        final_design=final,
        final_eig=final_eig,
        seconds=time.perf_counter() - start,
        resumed_from=step0,
    )
    if problem.optimum is not None:
        best = problem.exact_eig(problem.optimum)
        cos = float((final @ problem.optimum).abs().clamp(max=1.0))
        result.optimum_design = problem.optimum
        result.optimum_eig = best
        result.angle_deg = math.degrees(math.acos(cos))
        result.relative_gap = (best - final_eig) / best
    if problem.baseline is not None:
        result.baseline_design = problem.baseline
        result.baseline_eig = problem.exact_eig(problem.baseline)
        best, best_eig = quadrature_optimum(model, problem.initial)
        result.optimum_design, result.optimum_eig = best, best_eig
        result.relative_gap = (best_eig - final_eig) / best_eig
    return result


def plot_optimization(result: OptimizationResult, path: str | Path) -> None:
    """Two panels: reference EIG of the iterates (and the bound estimates), and the design path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.arange(result.exact.shape[0])
    est = result.estimates.numpy()
    ax1.plot(
        steps[:-1], est, color="C1", lw=0.6, alpha=0.4, label=f"bound estimate ({cfg['bound']})"
    )
    window = min(25, len(est))
    smooth = np.convolve(est, np.ones(window) / window, mode="valid")
    ax1.plot(
        steps[window - 1 : -1],
        smooth,
        color="C1",
        lw=1.5,
        label=f"its {window}-step moving average",
    )
    ref = "closed form" if cfg["model"] == "linear" else "quadrature"
    ax1.plot(steps, result.exact.numpy(), color="C0", lw=1.5, label=f"EIG of iterate ({ref})")
    if result.optimum_eig is not None:
        what = "top eigenvector" if cfg["model"] == "linear" else "L-BFGS-B on quadrature"
        ax1.axhline(result.optimum_eig, color="k", ls="--", lw=1, label=f"optimum ({what})")
    if result.baseline_eig is not None:
        ax1.axhline(result.baseline_eig, color="k", ls=":", lw=1, label="uniform doses")
    ax1.set_xlabel("step")
    ax1.set_ylabel("EIG (nats)")
    ax1.legend(fontsize=8)
    ax1.set_title(
        f"{cfg['model']}: {cfg['method']} gradient, N={cfg['num_outer']}, L={cfg['num_inner']}"
    )
    designs = result.designs.reshape(result.designs.shape[0], -1).numpy()
    for j in range(designs.shape[1]):
        ax2.plot(steps, designs[:, j], lw=1.2, color=f"C{j}", label=f"d[{j}]")
        if result.optimum_design is not None and cfg["model"] == "linear":
            ax2.axhline(float(result.optimum_design.reshape(-1)[j]), color=f"C{j}", ls="--", lw=0.8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("design component" if cfg["model"] == "linear" else "dose")
    ax2.set_title(
        "design path (dashed: top eigenvector)" if cfg["model"] == "linear" else "dose levels"
    )
    ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# command line: stochgrad design eig / stochgrad design optimize
# ---------------------------------------------------------------------------------------------
#: The linear model of Pyro's own tests: prior sds (1, 1.5), noise sd 1, X = [[1,0],[0,1],[0,1]].
PYRO_LINEAR_DESIGN = ((1.0, 0.0), (0.0, 1.0), (0.0, 1.0))
PYRO_PRIOR_SD = (1.0, 1.5)


def add_eig_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad design eig``."""
    parser.add_argument("--model", choices=("linear", "logistic"), default="linear")
    parser.add_argument(
        "--doses",
        type=float_list,
        default=[-1.0, 0.0, 1.0, 2.0],
        help="logistic: comma-separated dose levels (default -1,0,1,2)",
    )
    parser.add_argument(
        "--outer", type=positive_int, default=4000, help="outer samples N (default 4000)"
    )
    parser.add_argument(
        "--inner", type=positive_int, default=1000, help="inner samples L (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="optional JSON of the table")


def _eig_rows(args: argparse.Namespace) -> tuple[str, float, list[dict[str, Any]], dict[str, Any]]:
    gen = torch.Generator().manual_seed(args.seed)
    if args.model == "linear":
        model: Any = LinearGaussianModel(
            torch.diag(torch.tensor(PYRO_PRIOR_SD, dtype=torch.float64) ** 2)
        )
        design = torch.tensor(PYRO_LINEAR_DESIGN, dtype=torch.float64)
        ref, ref_grad = float(model.exact_eig(design)), model.exact_eig_gradient(design)
        label = "closed form"
        methods = ("score", "pathwise")
    else:
        model = LogisticDoseResponse()
        design = model.check_design(torch.tensor(args.doses, dtype=torch.float64))
        ref, ref_grad = float(model.quadrature_eig(design)), model.quadrature_eig_gradient(design)
        label = "quadrature"
        methods = ("score",)
    rows = []
    n, m = args.outer, args.inner
    for name, fn in (
        ("NMC (upper)", lambda: nmc_eig(model, design, num_outer=n, num_inner=m, generator=gen)),
        ("PCE (lower)", lambda: pce_eig(model, design, num_outer=n, num_inner=m, generator=gen)),
    ):
        t0 = time.perf_counter()
        est = fn()
        rows.append(
            {
                "quantity": "EIG",
                "estimator": name,
                "estimate": [est.value],
                "stderr": [est.stderr],
                "reference": [ref],
                "z": [(est.value - ref) / est.stderr],
                "seconds": time.perf_counter() - t0,
            }
        )
    for method in methods:
        t0 = time.perf_counter()
        g = eig_gradient(model, design, num_outer=n, num_inner=m, method=method, generator=gen)
        ge, se, rg = g.grad.reshape(-1), g.stderr.reshape(-1), ref_grad.reshape(-1)
        rows.append(
            {
                "quantity": "dEIG/dd",
                "estimator": f"PCE {method}",
                "estimate": ge.tolist(),
                "stderr": se.tolist(),
                "reference": rg.tolist(),
                "z": ((ge - rg) / se).tolist(),
                "seconds": time.perf_counter() - t0,
            }
        )
    meta = {
        "model": args.model,
        "design": design.tolist(),
        "reference": label,
        "outer": n,
        "inner": m,
    }
    return label, ref, rows, meta


def _component_names(quantity: str, meta: dict[str, Any]) -> list[str]:
    """``dEIG/dd[i,j]`` labels for the entries of a design gradient."""
    shape = np.asarray(meta["design"]).shape
    return [f"{quantity}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def run_eig(args: argparse.Namespace, console: Any) -> int:
    """EIG and design-gradient estimates against the closed form (linear) or quadrature (logistic)."""
    from rich.table import Table

    try:
        label, ref, rows, meta = _eig_rows(args)
    except (ValueError, TypeError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    table = Table(
        title=(
            f"design eig, {args.model} model, design {meta['design']}: N = {args.outer}, "
            f"L = {args.inner}, seed {args.seed}; reference = {label}"
        ),
        header_style="bold",
    )
    for col in ("quantity", "estimator", "estimate", "stderr", label, "z"):
        table.add_column(col, justify="left" if col in ("quantity", "estimator") else "right")
    for r in rows:
        names = [r["quantity"]] if len(r["z"]) == 1 else _component_names(r["quantity"], meta)
        for i, name in enumerate(names):
            table.add_row(
                name,
                r["estimator"],
                f"{r['estimate'][i]:.4f}",
                f"{r['stderr'][i]:.4f}",
                f"{r['reference'][i]:.4f}",
                f"{r['z'][i]:+.2f}",
            )
    console.print(table)
    zmax = max(abs(z) for r in rows for z in r["z"])
    console.print(f"max |z| = {zmax:.2f} over {sum(len(r['z']) for r in rows)} numbers")
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
        console.print(f"results written to [bold]{out}[/bold]")
    return 0


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad design optimize``."""
    d = DesignConfig()
    parser.add_argument("--model", choices=("linear", "logistic"), default="linear")
    parser.add_argument(
        "--steps", type=positive_int, default=d.steps, help=f"Adam steps (default {d.steps})"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="seed (default 0)")
    parser.add_argument(
        "--lr",
        type=float,
        default=DesignConfig().lr,
        help=f"Adam learning rate (default {DesignConfig().lr})",
    )
    parser.add_argument(
        "--outer",
        type=positive_int,
        default=d.num_outer,
        help=f"outer samples N (default {d.num_outer})",
    )
    parser.add_argument(
        "--inner",
        type=positive_int,
        default=d.num_inner,
        help=f"contrastive samples L (default {d.num_inner})",
    )
    parser.add_argument(
        "--method",
        choices=("score", "pathwise"),
        default=None,
        help="gradient (default pathwise for linear, score for logistic)",
    )
    parser.add_argument(
        "--bound", choices=("lower", "upper"), default="lower", help="PCE lower or NMC upper"
    )
    parser.add_argument(
        "--doses",
        type=positive_int,
        default=d.num_doses,
        help=f"logistic: number of doses K (default {d.num_doses})",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=d.checkpoint_every,
        help=f"steps between checkpoints (default {d.checkpoint_every})",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/design"), help="output folder")
    parser.add_argument(
        "--restart", action="store_true", help="ignore (delete) a checkpoint in --out"
    )


def run_optimize(args: argparse.Namespace, console: Any) -> int:
    """Gradient ascent of the PCE bound over designs; resumes from the checkpoint in --out."""
    from rich.table import Table

    from stochgrad.cli import progress_bar

    method = args.method or ("pathwise" if args.model == "linear" else "score")
    try:
        config = DesignConfig(
            model=args.model,
            steps=args.steps,
            lr=args.lr,
            num_outer=args.outer,
            num_inner=args.inner,
            method=method,
            bound=args.bound,
            seed=args.seed,
            num_doses=args.doses,
            checkpoint_every=args.checkpoint_every,
        )
    except (ValueError, TypeError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"design_{config.model}"
    ckpt = out / f"{stem}_checkpoint.pt"
    if args.restart and ckpt.exists():
        ckpt.unlink()
    with progress_bar(console) as progress:
        task = progress.add_task(f"design optimize ({config.model})", total=config.steps)
        if ckpt.exists():
            try:
                done = int(torch.load(ckpt, weights_only=True)["step"])
            except Exception:  # an unreadable checkpoint is reported by optimize_design
                done = 0
            progress.advance(task, min(done, config.steps))
        try:
            res = optimize_design(
                config, checkpoint=ckpt, callback=lambda k: progress.advance(task, k)
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
    if res.resumed_from:
        console.print(f"resumed from [bold]{ckpt}[/bold] at step {res.resumed_from}")
    table = Table(
        title=(
            f"design optimize, {config.model}: {config.steps} Adam steps (lr {config.lr}), "
            f"{config.method} gradient of the {'PCE' if config.bound == 'lower' else 'NMC'} bound, "
            f"N = {config.num_outer}, L = {config.num_inner}, seed {config.seed}"
        ),
        header_style="bold",
    )
    table.add_column("design")
    table.add_column("value", justify="right")
    table.add_column(
        "EIG (" + ("closed form" if config.model == "linear" else "quadrature") + ")",
        justify="right",
    )

    def fmt(d: Tensor) -> str:
        return "[" + ", ".join(f"{v:.4f}" for v in d.reshape(-1).tolist()) + "]"

    table.add_row("initial", fmt(res.designs[0]), f"{float(res.exact[0]):.5f}")
    table.add_row("optimised (averaged)", fmt(res.final_design), f"{res.final_eig:.5f}")
    if res.optimum_design is not None:
        what = "optimum: top eigenvector" if config.model == "linear" else "L-BFGS-B on quadrature"
        table.add_row(what, fmt(res.optimum_design), f"{res.optimum_eig:.5f}")
    if res.baseline_design is not None:
        table.add_row("uniform doses", fmt(res.baseline_design), f"{res.baseline_eig:.5f}")
    console.print(table)
    if res.angle_deg is not None:
        console.print(
            f"angle to the optimum {res.angle_deg:.3f} deg; EIG relative gap {100 * res.relative_gap:.4f}%"
        )
    if res.baseline_eig is not None:
        console.print(
            f"optimised vs uniform: {res.final_eig:.5f} vs {res.baseline_eig:.5f} nats "
            f"({100 * (res.final_eig / res.baseline_eig - 1):+.1f}%); EIG gap to the "
            f"quadrature optimum {100 * res.relative_gap:.3f}%"
        )
    (out / f"{stem}.json").write_text(json.dumps(res.to_json(), indent=1))
    plot_optimization(res, out / f"{stem}.png")
    console.print(
        f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}; {res.seconds:.1f} s"
    )
    return 0
