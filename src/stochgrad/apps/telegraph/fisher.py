r"""The gradient of the telegraph log-likelihood by Fisher's identity, sampled and exact.

The count is Poisson given the hidden promoter activity :math:`x \sim \mathrm{Beta}(a, b)`, so
:math:`\nabla_\theta \log P(n)` is the posterior expectation of the complete-data score.
:func:`fisher_gradient` estimates it by the score function with samples of :math:`x` (exact
posterior samples or importance sampling from the Beta prior); :func:`fisher_gradient_exact`
evaluates it in closed form over the exact posterior mixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_int
from stochgrad.apps.telegraph.likelihood import DTYPE, _as_counts, _as_param, _series_terms

__all__ = ["FisherEstimate", "fisher_gradient", "fisher_gradient_exact"]


def _posterior_mixture(n: Tensor, a: Tensor, b: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    r"""Weights :math:`\pi_j` and index ``j`` of the exact posterior mixture (see fisher_gradient)."""
    J = _series_terms(k)
    j = torch.arange(J, dtype=DTYPE)
    c = a + b + n
    lt = (
        torch.lgamma(b[..., None] + j)
        - torch.lgamma(c[..., None] + j)
        + j * torch.log(k[..., None])
        - torch.lgamma(j + 1.0)
    )
    return torch.softmax(lt, dim=-1), j


def _score_terms(x: Tensor, n: Tensor, a: Tensor, b: Tensor, k: Tensor) -> Tensor:
    r""":math:`\nabla_{(a,b,k)}[\log \mathrm{Beta}(x;a,b) + \log \mathrm{Poisson}(n;kx)]`."""
    psi_ab = torch.digamma(a + b)
    return torch.stack(
        (
            torch.log(x) - torch.digamma(a) + psi_ab,
            torch.log1p(-x) - torch.digamma(b) + psi_ab,
            n / k - x,
        ),
        dim=-1,
    )


@dataclass(frozen=True)
class FisherEstimate:
    """Monte Carlo estimate of ``grad log P(n)`` w.r.t. ``(k_on, k_off, k_syn)``.

    Attributes:
        grad: ``[..., 3]`` the estimate.
        stderr: ``[..., 3]`` its standard error.
        per_sample: ``[S, ..., 3]`` the terms averaged (for ``"prior"``: weight-scaled, see
            :func:`fisher_gradient`).
        ess: ``[...]`` effective sample size (``S`` for exact posterior samples).
    """

    grad: Tensor
    stderr: Tensor
    per_sample: Tensor
    ess: Tensor


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
    r"""Score-function estimate of :math:`\nabla_\theta \log P(n)` by Fisher's identity.

    The count is Poisson given the hidden promoter activity :math:`x \sim \mathrm{Beta}(a,b)`,
    so (Fisher's identity, the score of the marginal is the posterior mean of the complete-data
    score)

    .. math::

        \nabla_\theta \log P(n) = \mathbb E_{x \mid n}\big[\nabla_\theta \log \mathrm{Beta}(x; a, b)
            + \nabla_\theta \log \mathrm{Poisson}(n; k x)\big],

    with :math:`\partial_a \log\mathrm{Beta} = \log x - \psi(a) + \psi(a+b)`,
    :math:`\partial_b = \log(1-x) - \psi(b) + \psi(a+b)`, :math:`\partial_k \log\mathrm{Poisson}
    = n/k - x`.

    ``method="posterior"`` (default) samples :math:`x \mid n` exactly: expanding
    :math:`e^{-kx} = e^{-k}\sum_j k^j (1-x)^j / j!` gives the posterior as the mixture
    :math:`\sum_j \pi_j \mathrm{Beta}(x; a+n, b+j)` with :math:`\pi_j \propto
    \frac{(b)_j}{(a+b+n)_j}\frac{k^j}{j!}` (the Kummer series of :func:`log_kummer_m`); draw
    :math:`j`, then :math:`x`. The estimate is the sample mean, its stderr the sample standard
    deviation over :math:`\sqrt S`.

    ``method="prior"``: self-normalised importance sampling from the prior
    :math:`\mathrm{Beta}(a, b)` with weights :math:`w_i \propto \mathrm{Poisson}(n; k x_i)` (the
    score-function form: :math:`\nabla P(n) = \mathbb E_{\mathrm{Beta}}[\mathrm{Poisson}(n;kx)\,
    \nabla \log(\ldots)]`, divided by the estimate of :math:`P(n)`); stderr by the delta method,
    :math:`\sqrt{\sum_i \bar w_i^2 (h_i - \hat g)^2}`. It degrades when the likelihood is much
    narrower than the prior (large :math:`k`): watch ``ess``.

    Args:
        n: one count (int) or ``[...]`` counts broadcasting with the rates.
        k_on, k_off, k_syn: positive rates.
        num_samples: samples of :math:`x` per count (>= 2).
        generator: the random stream.
        method: ``"posterior"`` or ``"prior"``.

    Returns:
        A :class:`FisherEstimate` with ``grad`` of shape ``[..., 3]``.

    Raises:
        ValueError: bad counts, rates, ``num_samples < 2`` or unknown ``method``.

    >>> g = torch.Generator().manual_seed(0)
    >>> est = fisher_gradient(3, 1.0, 2.0, 10.0, num_samples=1000, generator=g)
    >>> est.grad.shape, bool((est.stderr > 0).all())
    (torch.Size([3]), True)
    """
    if method not in ("posterior", "prior"):
        raise ValueError(f"method must be 'posterior' or 'prior', got {method!r}")
    S = check_int("num_samples", num_samples, minimum=2)
    counts = _as_counts(n).to(DTYPE)
    a, b, k, counts = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn"), counts
    )
    shape = (S, *a.shape)
    if method == "posterior":
        pi, _ = _posterior_mixture(counts, a, b, k)  # [..., J]
        flat = pi.reshape(-1, pi.shape[-1])
        jj = torch.multinomial(flat, S, replacement=True, generator=generator)  # [M, S]
        jj = jj.T.reshape(shape).to(DTYPE)
        alpha = (a + counts).expand(shape)
        beta = b + jj
        ga = torch._standard_gamma(alpha.contiguous(), generator=generator)
        gb = torch._standard_gamma(beta.contiguous(), generator=generator)
        # log x and log(1-x) from the gammas directly: no rounding of x near 0 or 1
        x = ga / (ga + gb)
        h = _score_terms(x, counts, a, b, k)
        h = torch.stack(
            (
                torch.log(ga) - torch.log(ga + gb) - torch.digamma(a) + torch.digamma(a + b),
                torch.log(gb) - torch.log(ga + gb) - torch.digamma(b) + torch.digamma(a + b),
                h[..., 2],
            ),
            dim=-1,
        )
        grad = h.mean(0)
        stderr = h.std(0) / math.sqrt(S)
        return FisherEstimate(grad, stderr, h, torch.full(a.shape, float(S), dtype=DTYPE))
    ga = torch._standard_gamma(a.expand(shape).contiguous(), generator=generator)
    gb = torch._standard_gamma(b.expand(shape).contiguous(), generator=generator)
    log_x = torch.log(ga) - torch.log(ga + gb)
    log_1mx = torch.log(gb) - torch.log(ga + gb)
    x = torch.exp(log_x)
    logw = counts * torch.log(k * x) - k * x - torch.lgamma(counts + 1.0)
    wbar = torch.softmax(logw, dim=0)
    psi_ab = torch.digamma(a + b)
    h = torch.stack(
        (
            log_x - torch.digamma(a) + psi_ab,
            log_1mx - torch.digamma(b) + psi_ab,
            counts / k - x,
        ),
        dim=-1,
    )
    grad = (wbar[..., None] * h).sum(0)
    stderr = torch.sqrt((wbar[..., None] ** 2 * (h - grad) ** 2).sum(0))
    ess = 1.0 / (wbar**2).sum(0)
    return FisherEstimate(grad, stderr, S * wbar[..., None] * h, ess)


def fisher_gradient_exact(n: Any, k_on: Any, k_off: Any, k_syn: Any) -> Tensor:
    r"""The posterior expectation of Fisher's identity in closed form, over the exact mixture.

    With the mixture :math:`x \mid n \sim \sum_j \pi_j \mathrm{Beta}(a+n, b+j)` (see
    :func:`fisher_gradient`), :math:`\mathbb E[\log x \mid j] = \psi(a+n) - \psi(a+b+n+j)`,
    :math:`\mathbb E[\log(1-x) \mid j] = \psi(b+j) - \psi(a+b+n+j)` and
    :math:`\mathbb E[x \mid j] = (a+n)/(a+b+n+j)`; averaging over :math:`\pi_j` gives
    :math:`\nabla_\theta \log P(n)` without sampling.

    Args:
        n, k_on, k_off, k_syn: as in :func:`fisher_gradient`.

    Returns:
        ``[..., 3]`` gradient w.r.t. ``(k_on, k_off, k_syn)``.

    >>> from stochgrad.apps.telegraph import log_pmf
    >>> g = fisher_gradient_exact(3, 1.0, 2.0, 10.0)
    >>> a = torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64, requires_grad=True)
    >>> log_pmf([3], a[0], a[1], a[2]).sum().backward()
    >>> bool(torch.allclose(g, a.grad, rtol=1e-10))
    True
    """
    counts = _as_counts(n).to(DTYPE)
    a, b, k, counts = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn"), counts
    )
    pi, j = _posterior_mixture(counts, a, b, k)
    c = (a + b + counts)[..., None] + j
    e_logx = (torch.digamma((a + counts)[..., None]) - torch.digamma(c) * 1.0) * pi
    e_log1mx = (torch.digamma(b[..., None] + j) - torch.digamma(c)) * pi
    e_x = (a + counts)[..., None] / c * pi
    psi_ab = torch.digamma(a + b)
    return torch.stack(
        (
            e_logx.sum(-1) - torch.digamma(a) + psi_ab,
            e_log1mx.sum(-1) - torch.digamma(b) + psi_ab,
            counts / k - e_x.sum(-1),
        ),
        dim=-1,
    )
