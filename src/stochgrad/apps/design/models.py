r"""Models of Bayesian experimental design, each with a reference EIG to test estimators against.

- :class:`LinearGaussianModel`: :math:`y = X\theta + \varepsilon`, :math:`\theta\sim N(0,\Sigma)`,
  :math:`\varepsilon\sim N(0,s^2 I)`, closed form
  :math:`\mathrm{EIG} = \frac12\log\det(I + X\Sigma X^\top/s^2)` and its autograd design gradient;
  for one unit-norm observation :math:`y = d^\top\theta + \varepsilon` the optimum is the top
  eigenvector of :math:`\Sigma` (:func:`anisotropic_prior_cov` is the test problem's prior).
- :class:`LogisticDoseResponse`: Bernoulli outcomes at :math:`K` dose levels,
  :math:`P(y_k = 1) = \sigma(a(x_k - c))`, Gaussian prior on :math:`(a, c)`; EIG by 2-D
  Gauss-Hermite quadrature over :math:`\theta` and an exact sum over the :math:`2^K` outcomes,
  and :func:`quadrature_optimum`, the deterministic optimum of that quadrature.

>>> model = LinearGaussianModel(torch.diag(torch.tensor([1.0, 2.25], dtype=torch.float64)))
>>> X = torch.tensor(PYRO_LINEAR_DESIGN, dtype=torch.float64)
>>> round(float(model.exact_eig(X)), 4)
1.1989
"""

from __future__ import annotations

import functools
import math
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from stochgrad._checks import check_float, check_int

__all__ = [
    "PYRO_LINEAR_DESIGN",
    "PYRO_PRIOR_SD",
    "DesignModel",
    "LinearGaussianModel",
    "LogisticDoseResponse",
    "anisotropic_prior_cov",
    "quadrature_optimum",
    "uniform_doses",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: The linear model of Pyro's own OED tests: X = [[1,0],[0,1],[0,1]] ...
PYRO_LINEAR_DESIGN = ((1.0, 0.0), (0.0, 1.0), (0.0, 1.0))
#: ... with prior standard deviations (1, 1.5) and noise sd 1 (EIG = log(11) / 2).
PYRO_PRIOR_SD = (1.0, 1.5)


def _as_tensor(name: str, value: Any, dtype: torch.dtype) -> Tensor:
    """``value`` as a finite floating CPU tensor (``dtype`` when it was not a float tensor);
    the models compute on the CPU."""
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
        if value.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU like the model, got {value.device}")
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
        if prior_cov.dtype not in (torch.float32, torch.float64):  # half: no Cholesky
            prior_cov = prior_cov.to(torch.float64)
        if prior_cov.ndim != 2 or prior_cov.shape[0] != prior_cov.shape[1]:
            raise ValueError(
                f"prior_cov must be a square [p, p] matrix, got {tuple(prior_cov.shape)}"
            )
        if not torch.allclose(prior_cov, prior_cov.T, atol=1e-10):
            raise ValueError("prior_cov must be symmetric")
        chol, info = torch.linalg.cholesky_ex(prior_cov)
        if int(info) != 0:
            raise ValueError("prior_cov must be positive definite")
        self.prior_cov = prior_cov
        self.prior_chol = chol
        self.noise_sd = check_float("noise_sd", noise_sd, minimum=0.0, open_min=True)
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
                f"design must be a vector of 1..{self.max_doses} doses, "
                f"got shape {tuple(design.shape)}"
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
        order = check_int("order", order, minimum=2)
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
    num_doses = check_int("num_doses", num_doses, minimum=1, maximum=2**24)
    low, high = check_float("low", low), check_float("high", high)
    if not low < high:
        raise ValueError(f"need low < high, got low={low!r}, high={high!r}")
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
