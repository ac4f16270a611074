r"""The gradient of the telegraph log-likelihood by Fisher's identity, exact and sampled.

The count is Poisson given the hidden promoter activity :math:`x \sim \mathrm{Beta}(a, b)`, so
:math:`\nabla_\theta \log P(n)` is the posterior expectation of the complete-data score
(Fisher's identity). Both functions build the complete-data log-likelihood and hand it to the
core, :func:`stochgrad.fisher.fisher_gradient`, which differentiates it and takes the posterior
expectation:

- :func:`fisher_gradient_exact`: the posterior of :math:`x` is a Beta mixture whose components
  integrate in closed form; the latent is the mixture index :math:`j`, enumerated (exact);
- :func:`fisher_gradient`: :math:`\log p(n, x_i)` at exact posterior draws (``samples=True``) or
  at draws from the Beta prior with importance weights (self-normalised), with standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_int
from stochgrad._core import check_memory
from stochgrad.apps.telegraph.likelihood import DTYPE, _as_counts, _as_param, _series_terms
from stochgrad.fisher import fisher_gradient as core_fisher_gradient
from stochgrad.gradient_estimate import GradientEstimate

__all__ = ["FisherEstimate", "fisher_gradient", "fisher_gradient_exact"]


def _lbeta(p: Tensor, q: Tensor) -> Tensor:
    return torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)


def _mixture_log_joint(n: Tensor, a: Tensor, b: Tensor, k: Tensor) -> Tensor:
    r""":math:`\log p(n, j)` for :math:`j = 0, \dots, J-1`: ``[..., J]``, differentiable in the rates.

    Expanding :math:`e^{-kx} = e^{-k}\sum_j k^j (1-x)^j / j!` in
    :math:`p(n, x) = \mathrm{Beta}(x; a, b)\,\mathrm{Poisson}(n; kx)` and integrating :math:`x`
    out of each term,

    .. math::

        p(n, j) = \frac{B(a+n, b+j)}{B(a, b)} \frac{k^{n+j} e^{-k}}{n!\, j!}, \qquad
        \textstyle\sum_j p(n, j) = P(n),

    and :math:`x \mid n, j \sim \mathrm{Beta}(a+n, b+j)`: the posterior of :math:`x` is the
    mixture :math:`\sum_j p(j \mid n)\,\mathrm{Beta}(a+n, b+j)` (the terms of the Kummer series
    of :func:`~stochgrad.apps.telegraph.likelihood.log_kummer_m`; :math:`J` as there).
    """
    j = torch.arange(_series_terms(k), dtype=DTYPE)
    n_, a_, b_, k_ = n[..., None], a[..., None], b[..., None], k[..., None]
    return (
        _lbeta(a_ + n_, b_ + j)
        - _lbeta(a_, b_)
        + (n_ + j) * torch.log(k_)
        - k_
        - torch.lgamma(n_ + 1.0)
        - torch.lgamma(j + 1.0)
    )


def _log_joint(
    n: Tensor, a: Tensor, b: Tensor, k: Tensor, log_x: Tensor, log_1mx: Tensor
) -> Tensor:
    r""":math:`\log \mathrm{Beta}(x; a, b) + \log \mathrm{Poisson}(n; kx)` at given :math:`x`
    (by :math:`\log x` and :math:`\log(1-x)`, exact near 0 and 1), differentiable in the rates."""
    return (
        (a - 1.0) * log_x
        + (b - 1.0) * log_1mx
        - _lbeta(a, b)
        + n * (torch.log(k) + log_x)
        - k * log_x.exp()
        - torch.lgamma(n + 1.0)
    )


def _rates(n: Any, k_on: Any, k_off: Any, k_syn: Any) -> tuple[Tensor, Tensor]:
    """Counts and ``[..., 3]`` rates (k_on, k_off, k_syn), broadcast together, checked."""
    counts = _as_counts(n).to(DTYPE)
    a, b, k, counts = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn"), counts
    )
    return counts, torch.stack((a, b, k), dim=-1)


@dataclass(frozen=True, repr=False)
class FisherEstimate(GradientEstimate):
    """The :class:`~stochgrad.gradient_estimate.GradientEstimate` of ``grad log P(n)`` w.r.t.
    ``(k_on, k_off, k_syn)`` that :func:`fisher_gradient` returns, with the effective sample
    size.

    The parameters are the ``[..., 3]`` rates of each count (one row per count), so ``grad``,
    ``variance`` and ``stderr`` are ``[..., 3]`` and ``per_sample`` is ``[S, ..., 3]``. Every estimate diagnostic
    (``snr``, ``snr_of_mean``, ``flat``) applies.

    Attributes:
        ess: ``[...]`` effective sample size (``S`` for exact posterior samples,
            :math:`1/\\sum_i \\bar w_i^2` for importance sampling).
    """

    ess: Tensor | None = None


def fisher_gradient(
    n: Any,
    k_on: Any,
    k_off: Any,
    k_syn: Any,
    *,
    num_samples: int,
    generator: torch.Generator,
    method: str = "posterior",
) -> FisherEstimate:
    r"""Sampled :math:`\nabla_\theta \log P(n)` by Fisher's identity, through the core.

    .. math::

        \nabla_\theta \log P(n) = \mathbb E_{x \mid n}\big[\nabla_\theta
            \log\big(\mathrm{Beta}(x; a, b)\, \mathrm{Poisson}(n; k x)\big)\big]

    The complete-data log-likelihood at the draws :math:`x_i` goes to
    :func:`stochgrad.fisher.fisher_gradient` with ``samples=True``, which differentiates it
    (each draw of each count reads its own copy of the rates, ``copies=True``: one backward
    pass for all)
    (:math:`\partial_a = \log x - \psi(a) + \psi(a+b)`, :math:`\partial_b = \log(1-x) - \psi(b)
    + \psi(a+b)`, :math:`\partial_k = n/k - x`) and returns the mean with its standard error.

    ``method="posterior"`` (default) draws :math:`x \mid n` exactly from the Beta mixture
    :math:`\sum_j \pi_j \mathrm{Beta}(a+n, b+j)` (see :func:`fisher_gradient_exact`): draw
    :math:`j`, then :math:`x` (from two gammas, so :math:`\log x` and :math:`\log(1-x)` are exact
    near 0 and 1). The estimate is the sample mean; its stderr the sample standard deviation over
    :math:`\sqrt S`.

    ``method="prior"``: draws from the prior :math:`\mathrm{Beta}(a, b)` with importance weights
    :math:`w_i \propto \mathrm{Poisson}(n; k x_i) = p(n, x_i) / \mathrm{Beta}(x_i; a, b)`,
    self-normalised per count (``biased``: the ratio estimator; stderr of the terms
    :math:`S \bar w_i h_i`, the coefficients the core's self-normalised surrogate gives). It
    degrades when the likelihood is much narrower than the prior (large :math:`k`): watch
    ``ess``.

    Args:
        n: one count (int) or ``[...]`` counts broadcasting with the rates.
        k_on: positive rate of promoter activation.
        k_off: positive rate of promoter inactivation.
        k_syn: positive transcription rate while active.
        num_samples: samples of :math:`x` per count (>= 2).
        generator: the random stream.
        method: ``"posterior"`` or ``"prior"``.

    Returns:
        A :class:`FisherEstimate` (a :class:`~stochgrad.gradient_estimate.GradientEstimate`,
        ``method="fisher_sampled"``) with ``grad`` of shape ``[..., 3]``.

    Raises:
        ValueError: bad or no counts, rates, ``num_samples < 2`` or unknown ``method``.

    >>> g = torch.Generator().manual_seed(0)
    >>> est = fisher_gradient(3, 1.0, 2.0, 10.0, num_samples=1000, generator=g)
    >>> est.grad.shape, bool((est.stderr > 0).all())
    (torch.Size([3]), True)

    References:
        Fisher (1925); Louis (1982), "Finding the observed information matrix when using the EM
        algorithm"; Peccoud & Ycart (1995), *Theor. Popul. Biol.* 48.
    """
    if method not in ("posterior", "prior"):
        raise ValueError(f"method must be 'posterior' or 'prior', got {method!r}")
    S = check_int("num_samples", num_samples, minimum=2)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (randomness is explicit), got "
            f"{type(generator).__name__}"
        )
    counts, rates = _rates(n, k_on, k_off, k_syn)
    if counts.numel() == 0:
        raise ValueError("n must hold at least one count")
    # draws, log-terms and the per-draw copies of the rates with their gradients
    check_memory("telegraph.fisher_gradient", S, {"per-sample terms": 16 * counts.numel()}, rates)
    a, b, k = rates.unbind(-1)
    shape = (S, *a.shape)
    if method == "posterior":
        with torch.no_grad():
            pi = torch.softmax(_mixture_log_joint(counts, a, b, k), dim=-1)  # [..., J]
        flat = pi.reshape(-1, pi.shape[-1])
        jj = torch.multinomial(flat, S, replacement=True, generator=generator)  # [M, S]
        jj = jj.T.reshape(shape).to(DTYPE)
        ga = torch._standard_gamma((a + counts).expand(shape).contiguous(), generator=generator)
        gb = torch._standard_gamma((b + jj).contiguous(), generator=generator)
    else:
        ga = torch._standard_gamma(a.expand(shape).contiguous(), generator=generator)
        gb = torch._standard_gamma(b.expand(shape).contiguous(), generator=generator)
    log_x = torch.log(ga) - torch.log(ga + gb)
    log_1mx = torch.log(gb) - torch.log(ga + gb)

    # one core call for every count and draw: draw i of count m reads its own copy of the rates
    # (copies=True), so one backward pass gives every per-sample term
    M = counts.numel()
    cnt, lx, l1 = counts.reshape(M), log_x.reshape(S, M), log_1mx.reshape(S, M)
    theta = rates.reshape(M, 3).expand(S, M, 3).clone().requires_grad_(True)
    lj = _log_joint(cnt, *theta.unbind(-1), lx, l1)  # [S, M]
    if method == "prior":
        # each count normalises its own weights: the coefficients S * wbar[i, m] go into the
        # log-joint (detached), the terms of the self-normalised estimator of every count
        log_w = cnt * (torch.log(theta[0, :, 2].detach()) + lx) - theta[0, :, 2].detach() * lx.exp()
        wbar = torch.softmax(log_w, dim=0)
        lj = lj * (S * wbar)
        ess = (1.0 / (wbar**2).sum(0)).reshape(a.shape)
    else:
        ess = torch.full(a.shape, float(S), dtype=DTYPE)
    est = core_fisher_gradient(lj.sum(-1), theta, samples=True, copies=True)
    batch = tuple(a.shape)
    return FisherEstimate(
        grad=est.grad.reshape(*batch, 3),
        per_sample=est.per_sample.reshape(S, *batch, 3),
        variance=est.variance.reshape(*batch, 3),
        stderr=est.stderr.reshape(*batch, 3),
        num_samples=S,
        method=est.method,
        biased=method == "prior",
        evaluations=S * M,
        info={**est.info, "importance_weighted": method == "prior", "method": method},
        ess=ess,
    )


def fisher_gradient_exact(n: Any, k_on: Any, k_off: Any, k_syn: Any) -> Tensor:
    r"""Exact :math:`\nabla_\theta \log P(n)` by Fisher's identity over the mixture index.

    The joint :math:`p(n, j)` of the count and the index :math:`j` of the posterior's Beta
    mixture component (:math:`x` integrated out in closed form: :math:`p(n, j) =
    \frac{B(a+n, b+j)}{B(a,b)} \frac{k^{n+j} e^{-k}}{n!\,j!}`) is enumerated over the
    :math:`J = k + 12\sqrt k + 60` terms that leave less than :math:`10^{-30}` of the sum, and
    :func:`stochgrad.fisher.fisher_gradient` returns
    :math:`\sum_j p(j \mid n)\,\nabla_\theta \log p(n, j)`, i.e.
    :math:`\partial_a = \mathbb E[\psi(a+n) - \psi(a+b+n+j)] - \psi(a) + \psi(a+b)`,
    :math:`\partial_b = \mathbb E[\psi(b+j) - \psi(a+b+n+j)] - \psi(b) + \psi(a+b)`,
    :math:`\partial_k = (n + \mathbb E[j])/k - 1 = n/k - \mathbb E[x \mid n]`.

    Quadrature over :math:`x` instead (the 50 Gauss-Jacobi nodes of
    :func:`~stochgrad.apps.telegraph.reference.pmf_gauss_jacobi`) is not exact: the
    :math:`\mathrm{Poisson}(n; kx)` factor is narrower than the nodes when :math:`k` is large
    (at :math:`a = 0.3, b = 4, k = 800, n = 0` its gradient is off by 1.6 of 5.4).

    Args:
        n: as in :func:`fisher_gradient`.
        k_on: as in :func:`fisher_gradient`.
        k_off: as in :func:`fisher_gradient`.
        k_syn: as in :func:`fisher_gradient`.

    Returns:
        ``[..., 3]`` gradient w.r.t. ``(k_on, k_off, k_syn)``.

    >>> from stochgrad.apps.telegraph import log_pmf
    >>> g = fisher_gradient_exact(3, 1.0, 2.0, 10.0)
    >>> a = torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64, requires_grad=True)
    >>> log_pmf([3], a[0], a[1], a[2]).sum().backward()
    >>> bool(torch.allclose(g, a.grad, rtol=1e-10))
    True
    """
    counts, rates = _rates(n, k_on, k_off, k_syn)
    theta = rates.clone().requires_grad_(True)
    est = core_fisher_gradient(_mixture_log_joint(counts, *theta.unbind(-1)), theta)
    return est.grad
