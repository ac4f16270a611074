r"""The telegraph (two-state) model of gene expression: exact likelihood, simulation, fitting.

A promoter switches on at rate :math:`k_{on}` and off at rate :math:`k_{off}`; while on it makes
mRNA at rate :math:`k_{syn}`; each mRNA is degraded at rate 1 (time in units of the mRNA
lifetime). The stationary law of the mRNA count (Peccoud & Ycart, *Theor. Popul. Biol.* 1995) is a
Beta-Poisson mixture: with :math:`a = k_{on}`, :math:`b = k_{off}`, :math:`k = k_{syn}`,

.. math::

    P(n) = \int_0^1 \mathrm{Beta}(x; a, b)\,\mathrm{Poisson}(n; k x)\,dx
         = \frac{k^n}{n!}\frac{(a)_n}{(a+b)_n}\,{}_1F_1(a+n; a+b+n; -k).

Burst frequency is :math:`k_{on}`, burst size :math:`k_{syn}/k_{off}` (Larsson et al.,
*Nature* 2019, whose ``txburst`` script fits the model with 50-node Gauss-Jacobi quadrature).

What is here:

- :func:`log_pmf`: :math:`\log P(n)` accurate to ~1e-12 relative in every regime, vectorised over
  counts and parameter sets, differentiable by autograd (see its docstring for the method: Kummer's
  transformation, a positive-term series at the top count and a stable backward recurrence in
  :math:`n`). :func:`pmf_gauss_jacobi` is the quadrature of the reference script, for contrast.
- :func:`simulate` (exact Gillespie, all cells advancing together) and :func:`sample_stationary`.
- :func:`fisher_gradient` / :func:`fisher_gradient_exact`: the gradient of :math:`\log P(n)` as a
  posterior expectation over the hidden promoter activity :math:`x` (Fisher's identity), by the
  score function with samples of :math:`x` (exact posterior samples or importance sampling from
  the Beta prior), and exactly.
- :func:`fit_genes`: maximum likelihood per gene, batched over genes (damped Newton with autograd
  Hessians), profile-likelihood confidence intervals for burst frequency and burst size, and
  per-quantity identifiability flags of two kinds, structural (profile flat to the parameter
  box) and practical (interval too wide for a 10 % estimate, :data:`MAX_CI_RATIO`);
  :func:`fit_counts` adds chunking across processes/Ray, a progress callback and a checkpoint.
- The ``stochgrad telegraph fit|simulate|recover`` jobs (bottom of the file).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad.checkpoint import RunCheckpoint

__all__ = [
    "BOUNDS",
    "FitConfig",
    "GeneFits",
    "MAX_CI_RATIO",
    "fisher_gradient",
    "fisher_gradient_exact",
    "fit_counts",
    "fit_genes",
    "log_kummer_m",
    "log_pmf",
    "log_pmf_table",
    "moment_estimates",
    "pmf_gauss_jacobi",
    "read_counts",
    "recovery_markdown",
    "recovery_study",
    "sample_stationary",
    "simulate",
]

DTYPE = torch.float64

BOUNDS = {"k_on": (1e-3, 1e3), "k_off": (1e-3, 1e3), "k_syn": (1.0, 1e4)}
"""Box constraints of the fit, those of the ``txburst`` reference script."""

_LOG_LO = torch.tensor([math.log(BOUNDS[k][0]) for k in ("k_on", "k_off", "k_syn")], dtype=DTYPE)
_LOG_HI = torch.tensor([math.log(BOUNDS[k][1]) for k in ("k_on", "k_off", "k_syn")], dtype=DTYPE)


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def _as_param(value: Any, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=DTYPE)
    if not torch.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return t


def _as_counts(n: Any, name: str = "n") -> Tensor:
    t = torch.as_tensor(n)
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError(f"{name} must hold non-negative integers, got non-integer values")
        t = t.long()
    elif t.dtype == torch.bool:
        raise TypeError(f"{name} must hold non-negative integers, got a bool tensor")
    if (t < 0).any():
        raise ValueError(f"{name} must hold non-negative integers, got a negative value")
    return t.long()


# ---------------------------------------------------------------------------------------------
# (b) the exact log-likelihood
# ---------------------------------------------------------------------------------------------
def _series_terms(k: Tensor) -> int:
    """Terms of the Kummer series that make the truncation error below ~1e-30 (see log_kummer_m)."""
    kmax = float(k.detach().max())
    return int(math.ceil(kmax + 12.0 * math.sqrt(kmax) + 60.0))


def log_kummer_m(b: Tensor, c: Tensor, k: Tensor, num_terms: int | None = None) -> Tensor:
    r""":math:`\log {}_1F_1(b; c; k)` for :math:`0 < b < c`, :math:`k \ge 0` by its positive series.

    .. math::

        {}_1F_1(b; c; k) = \sum_{j \ge 0} \frac{(b)_j}{(c)_j}\frac{k^j}{j!},

    summed in log space (``logsumexp`` of log-terms from ``lgamma``), so neither overflow nor
    cancellation occurs. The normalised terms are the law of :math:`j \sim
    \mathrm{Poisson}(k t)` with :math:`t` drawn from a tilted Beta on :math:`[0, 1]`, which
    :math:`\mathrm{Poisson}(k)` dominates stochastically: stopping at
    :math:`J = k + 12\sqrt k + 60` terms leaves a relative error below
    :math:`P(\mathrm{Poisson}(k) \ge J) < 10^{-30}`.

    Args:
        b, c, k: broadcastable float64 tensors with :math:`0 < b < c`, :math:`k \ge 0`.
        num_terms: series length; default as above from the largest ``k``.

    Returns:
        The broadcast shape of ``b, c, k``.

    >>> import torch
    >>> float(log_kummer_m(torch.tensor(1.0), torch.tensor(1.0 + 1e-12), torch.tensor(2.0)))
    2.0...
    """
    b, c, k = torch.broadcast_tensors(b, c, k)
    if num_terms is None and k.dim() == 1 and k.numel() > 1:
        # the window's width follows the largest k: evaluate groups of similar k separately,
        # so that one large-k problem does not make the whole batch expensive
        group = torch.floor(torch.log2(k.detach().clamp_min(1.0)) / 2.0)
        labels = torch.unique(group)
        if labels.numel() > 1:
            parts, order = [], []
            for lab in labels.tolist():
                idx = (group == lab).nonzero().flatten()
                parts.append(log_kummer_m(b[idx][None], c[idx][None], k[idx][None])[0])
                order.append(idx)
            perm = torch.cat(order)
            return torch.cat(parts)[torch.argsort(perm)]
    J = num_terms if num_terms is not None else _series_terms(k)
    if num_terms is None and k.numel() > 0:
        # Window of width 2W around the peak j* of the terms (root of t_{j+1}/t_j = 1); used
        # when clearly shorter, and only if the terms at both edges are below e^-50 of the sum
        # (checked below; otherwise the full series).
        kmax = float(k.detach().max())
        W = int(math.ceil(10.0 * math.sqrt(kmax) + 40.0))
        if 2 * W < J:
            with torch.no_grad():
                p = c + 1.0 - k
                disc = (p * p - 4.0 * (c - k * b)).clamp_min(0.0)
                jstar = ((-p + disc.sqrt()) / 2.0).clamp_min(0.0)
                j_lo = (jstar.floor() - W).clamp_min(0.0)
            j = j_lo[..., None] + torch.arange(2 * W, dtype=DTYPE)
            lt = _log_terms(b, c, k, j)
            lse = torch.logsumexp(lt, dim=-1)
            edge_ok = (lt[..., -1] < lse - 50.0) & ((j_lo == 0) | (lt[..., 0] < lse - 50.0))
            if bool(edge_ok.all()):
                return lse
    j = torch.arange(J, dtype=DTYPE)
    return torch.logsumexp(_log_terms(b, c, k, j), dim=-1)


def _log_terms(b: Tensor, c: Tensor, k: Tensor, j: Tensor) -> Tensor:
    """Log of the terms (b)_j / (c)_j k^j / j! for ``j`` [..., m] (consecutive integers per row).

    ``lgamma`` only at the first index of each row, then a cumulative sum of the logs of the
    term ratios (``log`` is several times cheaper than ``lgamma``; rounding stays ~1e-13).
    """
    b_, c_, k_ = b[..., None], c[..., None], k[..., None]
    j0 = j[..., :1]
    first = (
        torch.lgamma(b_ + j0)
        - torch.lgamma(b_)
        + torch.lgamma(c_)
        - torch.lgamma(c_ + j0)
        + j0 * torch.log(k_)
        - torch.lgamma(j0 + 1.0)
    )
    # the j = 0 term is exactly 1 (also when k = 0, where 0 * log 0 would be nan)
    first = torch.where(j0 == 0, torch.zeros_like(first), first)
    jr = j[..., :-1]
    ratios = torch.log(b_ + jr) - torch.log(c_ + jr) + torch.log(k_) - torch.log1p(jr)
    return torch.cat((first, first + torch.cumsum(ratios, dim=-1)), dim=-1)


def log_pmf_table(k_on: Tensor, k_off: Tensor, k_syn: Tensor, n_max: int) -> Tensor:
    r""":math:`\log P(n)` for :math:`n = 0, \dots, n_{max}` and every parameter set.

    Method. By Kummer's transformation :math:`{}_1F_1(a+n; c_n; -k) = e^{-k}\,M_n` with
    :math:`M_n = {}_1F_1(b; c_n; k)`, :math:`c_n = a + b + n`, whose series has only positive
    terms (:func:`log_kummer_m`), so

    .. math::

        \log P(n) = n\log k - \log n! + \log\frac{\Gamma(a+n)\Gamma(a+b)}{\Gamma(a)\Gamma(a+b+n)}
                    - k + \log M_n .

    The series costs :math:`O(k)` terms, so it is used only at the top, :math:`M_{N}` and
    :math:`M_{N+1}`; below, the contiguous relation (DLMF 13.3.2)
    :math:`c(c-1)M(b,c-1,k) + c(1-c-k)M(b,c,k) + k(c-b)M(b,c+1,k) = 0` is run downwards on the
    ratios :math:`\rho_n = M_n / M_{n+1}`:

    .. math::

        \rho_{n} = \frac{c_n + k}{c_n} - \frac{k\,(c_{n+1} - b)}{c_{n+1}\,c_n\,\rho_{n+1}},
        \qquad \log M_n = \log M_{n+1} + \log \rho_n .

    :math:`M_n` decreases to 1 as :math:`n` grows (it is the minimal solution of the
    recurrence), so the downward direction is the stable one; the ratios never overflow, and
    the subtraction loses no more than a few bits (the subtracted term is below
    :math:`k/(c_n + k)` of the first). Total cost :math:`O(k + N)` per parameter set instead of
    :math:`O(kN)`, every operation differentiable (autograd gives exact gradients). Why not
    the alternatives: scipy's ``hyp1f1(a+n, c, -k)`` cancels catastrophically (terms of size
    :math:`e^{k}` summing to :math:`e^{-k}`) and overflows at large :math:`k`; fixed
    Gauss-Jacobi quadrature cannot resolve :math:`\mathrm{Poisson}(n; kx)`, whose width in
    :math:`x` is :math:`\sqrt n / k` (:func:`pmf_gauss_jacobi` is 14 % off at
    :math:`a = 0.5, b = 5, k = 3000, n = 200`).

    Args:
        k_on, k_off, k_syn: broadcastable positive tensors (the batch of parameter sets).
        n_max: the largest count.

    Returns:
        ``[*batch, n_max + 1]`` float64.

    Raises:
        ValueError: non-positive or non-finite parameters, ``n_max < 0``.

    >>> t = log_pmf_table(torch.tensor(0.5), torch.tensor(5.0), torch.tensor(3000.0), 200)
    >>> round(float(t[200].exp()), 10)  # mpmath: 0.00120400149338...
    0.0012040015
    """
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 0:
        raise ValueError(f"n_max must be a non-negative int, got {n_max!r}")
    N = int(n_max)
    J = _series_terms(k)
    c_top = a + b + N
    log_m_top = log_kummer_m(b, c_top, k, J)
    log_m_next = log_kummer_m(b, c_top + 1.0, k, J)
    rho = torch.exp(log_m_top - log_m_next)
    if N > 0:
        # coefficients of all steps at once; the loop does one subtraction and one division
        c_n = (a + b)[..., None] + torch.arange(N, dtype=DTYPE)  # c_0 .. c_{N-1}
        k_ = k[..., None]
        alpha = ((c_n + k_) / c_n).unbind(-1)
        beta = (k_ * (c_n + 1.0 - b[..., None]) / ((c_n + 1.0) * c_n)).unbind(-1)
        rhos = []
        for n in range(N - 1, -1, -1):
            rho = alpha[n] - beta[n] / rho
            rhos.append(rho)
        log_rho = torch.log(torch.stack(rhos[::-1], dim=-1))  # log(M_n / M_{n+1}), n < N
        tail = torch.flip(torch.cumsum(torch.flip(log_rho, (-1,)), -1), (-1,))
        log_m_all = torch.cat((log_m_top[..., None] + tail, log_m_top[..., None]), dim=-1)
    else:
        log_m_all = log_m_top[..., None]
    n = torch.arange(N + 1, dtype=DTYPE)
    a_, b_, k_ = a[..., None], b[..., None], k[..., None]
    return (
        n * torch.log(k_)
        - torch.lgamma(n + 1.0)
        + torch.lgamma(a_ + n)
        - torch.lgamma(a_)
        + torch.lgamma(a_ + b_)
        - torch.lgamma(a_ + b_ + n)
        - k_
        + log_m_all
    )


def log_pmf(n: Any, k_on: Any, k_off: Any, k_syn: Any) -> Tensor:
    r""":math:`\log P(n \mid k_{on}, k_{off}, k_{syn})` of the telegraph model's stationary law.

    Vectorised: the parameters broadcast to a batch shape ``B``; ``n`` has shape ``[N]`` (the
    same counts for every parameter set) or ``[*B, N]``. Method and accuracy: see
    :func:`log_pmf_table` (this gathers from it). Differentiable in the parameters.

    Args:
        n: non-negative integer counts.
        k_on, k_off, k_syn: positive rates (mRNA degradation rate is 1).

    Returns:
        ``[*B, N]`` float64 log-probabilities (``[N]`` for scalar parameters).

    Raises:
        ValueError: negative or non-integer counts, non-positive or non-finite parameters.

    Reference: Peccoud & Ycart (1995), *Theor. Popul. Biol.* 48, 222-234.

    >>> p = log_pmf(torch.arange(400), 0.5, 5.0, 30.0).exp()
    >>> round(float(p.sum()), 12)
    1.0
    """
    counts = _as_counts(n)
    if counts.dim() == 0:
        counts = counts[None]
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    n_max = int(counts.max()) if counts.numel() else 0
    table = log_pmf_table(a, b, k, n_max)  # [*B, n_max+1]
    shape = torch.broadcast_shapes(table.shape[:-1], counts.shape[:-1])
    table = table.expand(*shape, table.shape[-1])
    idx = counts.expand(*shape, counts.shape[-1])
    return torch.gather(table, -1, idx)


def pmf_gauss_jacobi(
    n: Any, k_on: float, k_off: float, k_syn: float, nodes: int = 50
) -> np.ndarray:
    r"""The ``txburst`` likelihood: :math:`P(n)` by ``nodes``-point Gauss-Jacobi quadrature.

    With :math:`x = (1+y)/2`, :math:`P(n) = \frac{2^{1-a-b}}{B(a,b)}\int_{-1}^1
    (1-y)^{b-1}(1+y)^{a-1}\,\mathrm{Poisson}(n; k(1+y)/2)\,dy`, the Jacobi weight carrying the Beta
    density. Accurate when :math:`k` is small; fails when :math:`\mathrm{Poisson}(n;kx)` is
    narrower than the node spacing (large :math:`k`). Kept as the baseline the benchmark and the
    docs compare against (Larsson et al., *Nature* 2019, ``txburstML.py``).

    Args:
        n: counts (array-like of non-negative ints).
        k_on, k_off, k_syn: positive rates.
        nodes: quadrature nodes (50 in the reference script).

    Returns:
        ``P(n)`` as a numpy array.

    >>> float(pmf_gauss_jacobi([200], 0.5, 5.0, 3000.0)[0]) > 0
    True
    """
    from scipy.special import betaln, roots_jacobi
    from scipy.stats import poisson

    y, w = roots_jacobi(nodes, k_off - 1.0, k_on - 1.0)
    counts = np.asarray(n, dtype=float)[:, None]
    gs = np.sum(w * poisson.pmf(counts, k_syn * (1.0 + y) / 2.0), axis=1)
    return np.exp(-betaln(k_on, k_off) + (1.0 - k_on - k_off) * np.log(2.0)) * gs


# ---------------------------------------------------------------------------------------------
# (a) simulation
# ---------------------------------------------------------------------------------------------
def sample_stationary(
    k_on: Any, k_off: Any, k_syn: Any, num_cells: int, *, generator: torch.Generator
) -> Tensor:
    r"""Exact draws from the stationary law: :math:`x \sim \mathrm{Beta}(a, b)`,
    :math:`n \sim \mathrm{Poisson}(k x)`.

    Args:
        k_on, k_off, k_syn: positive rates, scalars or ``[G]`` (one gene each).
        num_cells: cells per gene.
        generator: the random stream.

    Returns:
        ``[G, num_cells]`` (``[num_cells]`` for scalar rates) int64 counts.

    >>> g = torch.Generator().manual_seed(0)
    >>> sample_stationary(1.0, 1.0, 10.0, 4, generator=g).shape
    torch.Size([4])
    """
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    _check_int(num_cells, "num_cells")
    shape = (*a.shape, num_cells)
    # Beta via two Gammas with the explicit generator (torch's Beta sampler takes none)
    ga = torch._standard_gamma(a[..., None].expand(shape).contiguous(), generator=generator)
    gb = torch._standard_gamma(b[..., None].expand(shape).contiguous(), generator=generator)
    x = ga / (ga + gb)
    x = torch.where(torch.isfinite(x), x, (ga > gb).to(DTYPE))  # both gammas underflow to 0
    return torch.poisson(k[..., None] * x, generator=generator).long()


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def simulate(
    k_on: Any,
    k_off: Any,
    k_syn: Any,
    num_cells: int,
    *,
    generator: torch.Generator,
    t_end: float | None = None,
    method: str = "gillespie",
) -> Tensor:
    r"""mRNA counts of ``num_cells`` independent cells per gene at time ``t_end``.

    ``method="gillespie"``: the exact stochastic simulation algorithm (Gillespie 1977) with
    the four reactions on (:math:`k_{on}`), off (:math:`k_{off}`), synthesis (:math:`k_{syn}`
    while on), degradation (rate 1 per molecule). All cells of all genes advance together, one
    event per cell per loop iteration (the loop is over events only); a cell whose next event
    falls after ``t_end`` stops. Each cell starts near stationarity: promoter activity
    :math:`x_0 \sim \mathrm{Beta}(a, b)`, promoter on with probability :math:`x_0`, count
    :math:`\mathrm{Poisson}(k x_0)`; the joint law then relaxes at rate
    :math:`\min(1, k_{on} + k_{off})`, so the default ``t_end = 12 / \min(1, k_{on}+k_{off})``
    leaves a memory of the start below :math:`e^{-12}`. ``method="exact"`` draws from the
    stationary law directly (:func:`sample_stationary`).

    Args:
        k_on, k_off, k_syn: positive rates, scalars or ``[G]``.
        num_cells: cells per gene.
        generator: the random stream (same seed, same counts).
        t_end: simulated time (scalar), default per gene as above.
        method: ``"gillespie"`` or ``"exact"``.

    Returns:
        ``[G, num_cells]`` (``[num_cells]`` for scalar rates) int64 counts.

    Raises:
        ValueError: bad rates, ``num_cells < 1``, ``t_end <= 0``, unknown ``method``.

    >>> g = torch.Generator().manual_seed(0)
    >>> simulate(1.0, 1.0, 10.0, 3, generator=g).shape
    torch.Size([3])
    """
    if method not in ("gillespie", "exact"):
        raise ValueError(f"method must be 'gillespie' or 'exact', got {method!r}")
    if method == "exact":
        return sample_stationary(k_on, k_off, k_syn, num_cells, generator=generator)
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    _check_int(num_cells, "num_cells")
    if t_end is not None and not (math.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end must be a positive finite time, got {t_end!r}")
    shape = (*a.shape, num_cells)
    a_, b_, k_ = (v[..., None].expand(shape) for v in (a, b, k))
    if t_end is None:
        horizon = (12.0 / torch.clamp(a + b, max=1.0))[..., None].expand(shape)
    else:
        horizon = torch.full(shape, float(t_end), dtype=DTYPE)
    # near-stationary start (see docstring)
    ga = torch._standard_gamma(a_.contiguous(), generator=generator)
    gb = torch._standard_gamma(b_.contiguous(), generator=generator)
    x0 = torch.nan_to_num(ga / (ga + gb), nan=0.5)
    on = torch.rand(shape, generator=generator, dtype=DTYPE) < x0
    m = torch.poisson(k_ * x0, generator=generator)
    t = torch.zeros(shape, dtype=DTYPE)
    active = torch.ones(shape, dtype=torch.bool)
    while bool(active.any()):
        onf = on.to(DTYPE)
        r_switch = torch.where(on, b_, a_)
        r_syn = k_ * onf
        total = r_switch + r_syn + m
        u = torch.rand((2, *shape), generator=generator, dtype=DTYPE)
        t = t - torch.log1p(-u[0]) / total
        active = active & (t <= horizon)
        pick = u[1] * total
        switch = active & (pick < r_switch)
        syn = active & ~switch & (pick < r_switch + r_syn)
        deg = active & ~switch & ~syn
        on = on ^ switch
        m = m + syn.to(DTYPE) - deg.to(DTYPE)
    return m.long()


# ---------------------------------------------------------------------------------------------
# (c) the gradient by Fisher's identity
# ---------------------------------------------------------------------------------------------
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
    S = _check_int(num_samples, "num_samples", 2)
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


# ---------------------------------------------------------------------------------------------
# (d) maximum likelihood, batched over genes
# ---------------------------------------------------------------------------------------------
def moment_estimates(counts: Tensor) -> Tensor:
    r"""Method-of-moments start of the fit (the ``txburst`` estimator), per gene.

    With factorial-moment ratios :math:`r_1 = m_1`, :math:`r_2 = m_2/m_1`, :math:`r_3 =
    m_3/m_2` (:math:`m_i = \mathbb E[n(n-1)\cdots(n-i+1)]`),
    :math:`k_{on} = 2r_1(r_3-r_2)/(r_1r_2 - 2r_1r_3 + r_2r_3)`,
    :math:`k_{off} = 2(r_3-r_2)(r_1-r_3)(r_2-r_1)/((r_1r_2-2r_1r_3+r_2r_3)(r_1-2r_2+r_3))`,
    :math:`k_{syn} = (-r_1r_2+2r_1r_3-r_2r_3)/(r_1-2r_2+r_3)`. Where these are not finite and
    positive (under-dispersed or tiny samples) the start is :math:`(1, 1, 2\bar n)`; all are
    clipped into :data:`BOUNDS`.

    Args:
        counts: ``[G, C]`` non-negative integer counts.

    Returns:
        ``[G, 3]`` float64 ``(k_on, k_off, k_syn)``.

    >>> moment_estimates(torch.tensor([[0, 1, 2, 8]])).shape
    torch.Size([1, 3])
    """
    x = _as_counts(counts, "counts").to(DTYPE)
    if x.dim() != 2:
        raise ValueError(f"counts must be [genes, cells], got shape {list(x.shape)}")
    m1 = x.mean(1)
    m2 = (x * (x - 1)).mean(1)
    m3 = (x * (x - 1) * (x - 2)).mean(1)
    with np.errstate(all="ignore"):
        r1, r2, r3 = m1, m2 / m1, m3 / m2
        den = r1 * r2 - 2 * r1 * r3 + r2 * r3
        k_on = 2 * r1 * (r3 - r2) / den
        k_off = 2 * (r3 - r2) * (r1 - r3) * (r2 - r1) / (den * (r1 - 2 * r2 + r3))
        k_syn = (-r1 * r2 + 2 * r1 * r3 - r2 * r3) / (r1 - 2 * r2 + r3)
    est = torch.stack((k_on, k_off, k_syn), -1)
    ok = torch.isfinite(est).all(-1) & (est > 0).all(-1)
    fallback = torch.stack((torch.ones_like(m1), torch.ones_like(m1), 2 * m1), -1)
    est = torch.where(ok[:, None], est, fallback)
    lo, hi = _LOG_LO.exp(), _LOG_HI.exp()
    return torch.minimum(torch.maximum(est, lo), hi)


def _histograms(counts: Tensor) -> Tensor:
    """``[G, n_max + 1]`` float64 histograms of the counts of each gene."""
    n_max = int(counts.max()) if counts.numel() else 0
    hist = torch.zeros(counts.shape[0], n_max + 1, dtype=DTYPE)
    hist.scatter_add_(1, counts, torch.ones_like(counts, dtype=DTYPE))
    return hist


def _nll(u: Tensor, hist: Tensor) -> Tensor:
    """Negative log-likelihood per problem from log-parameters ``u`` [P, 3] and histograms.

    ``u`` may stack several copies of the problems (``[r * P, 3]``); ``hist`` is then tiled.
    """
    if u.shape[0] != hist.shape[0]:
        hist = hist.repeat(u.shape[0] // hist.shape[0], 1)
    e = u.exp()
    table = log_pmf_table(e[:, 0], e[:, 1], e[:, 2], hist.shape[1] - 1)
    return -(hist * table).sum(1)


def _fgh(fn: Callable[[Tensor], Tensor], u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Values [P], gradients [P, d] and Hessians [P, d, d] of independent problems.

    Gradients by autograd; the Hessian by central differences of autograd gradients (step 1e-4
    in log-parameters, error ~1e-8 relative), all ``2d + 1`` points in one batch: double
    backward through the recurrence costs several times more and Newton needs no more accuracy.
    """
    P, d = u.shape
    h = 1e-4
    shifts = torch.cat(
        (
            torch.zeros(1, d, dtype=DTYPE),
            h * torch.eye(d, dtype=DTYPE),
            -h * torch.eye(d, dtype=DTYPE),
        )
    )
    pts = (u.detach()[None] + shifts[:, None, :]).reshape(-1, d).requires_grad_(True)
    f = fn(pts)  # fn tiles its data over the 2d + 1 copies (see _nll)
    (g,) = torch.autograd.grad(f.sum(), pts)
    g = g.reshape(2 * d + 1, P, d)
    H = ((g[1 : d + 1] - g[d + 1 :]) / (2 * h)).permute(1, 0, 2)
    H = 0.5 * (H + H.transpose(1, 2))
    return f.detach().reshape(2 * d + 1, P)[0], g[0], H


def _newton(
    fn: Callable[[Tensor, Tensor], Tensor],
    u0: Tensor,
    *,
    free: Tensor | None = None,
    lower: Tensor | None = None,
    upper: Tensor | None = None,
    max_iter: int = 60,
    tol: float = 1e-7,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Batched damped Newton (Levenberg-Marquardt on the absolute-eigenvalue Hessian).

    ``fn(u, idx)`` gives the values of problems ``idx`` at ``u`` (``[len(idx) * r, d]``, ``r``
    stacked copies). Each problem keeps its own damping :math:`\lambda`: the step solves
    :math:`(|H| + \lambda I)\delta = -g` (``|H|`` flips negative curvature, which makes the step
    a descent direction), is projected on the box, and is kept only if the value decreases;
    :math:`\lambda` shrinks after a success and grows after a failure. Converged problems leave
    the batch (later iterations cost less). Coordinates with ``free == False`` stay fixed
    (profile likelihoods). Returns the minimiser, the values and the Hessians there.
    """
    u = u0.clone().to(DTYPE)
    P, d = u.shape
    free = torch.ones(d, dtype=torch.bool) if free is None else free
    mask = free.to(DTYPE)
    lam = torch.full((P,), 1e-3, dtype=DTYPE)
    every = torch.arange(P)
    f, g, H = _fgh(lambda v: fn(v, every), u)
    done = torch.zeros(P, dtype=torch.bool)
    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if act.numel() == 0:
            break
        gm = g[act] * mask
        Hm = H[act] * mask[:, None] * mask[None, :] + torch.diag(1.0 - mask)
        w, V = torch.linalg.eigh(Hm)
        w = w.abs().clamp_min(1e-10)
        la = lam[act]
        step = -(
            V @ (((V.transpose(1, 2) @ gm[..., None])[..., 0] / (w + la[:, None]))[..., None])
        )[..., 0]
        step = step.clamp(-3.0, 3.0) * mask
        ua, fa = u[act], f[act]
        cand = ua + step
        if lower is not None:
            cand = torch.maximum(cand, lower)
        if upper is not None:
            cand = torch.minimum(cand, upper)
        with torch.no_grad():
            f_new = fn(cand, act)
        better = torch.isfinite(f_new) & (f_new <= fa)
        moved = (cand - ua).abs().amax(1)
        small = (moved < tol) | ((fa - f_new).abs() < 1e-10 * (1 + fa.abs()))
        done[act] = (better & small) | (~better & (la > 1e8))
        u[act] = torch.where(better[:, None], cand, ua)
        lam[act] = torch.where(better, la / 4, la * 8).clamp(1e-12, 1e12)
        upd = act[better & ~done[act]]
        if upd.numel():
            f[upd], g[upd], H[upd] = _fgh(lambda v, upd=upd: fn(v, upd), u[upd])
    f, g, H = _fgh(lambda v: fn(v, every), u)
    return u, f, H


@dataclass
class GeneFits:
    """Maximum-likelihood kinetics of a set of genes (arrays of length ``G``).

    Attributes:
        k_on, k_off, k_syn: the estimates.
        burst_frequency, burst_size: ``k_on`` and ``k_syn / k_off``.
        bf_low, bf_high, bs_low, bs_high: 95 % profile-likelihood intervals (0 / ``inf`` where
            the profile does not fall by 1.92 within the search, see :func:`_profile_ci`).
        bf_ci_ratio, bs_ci_ratio: interval ratios ``high / low`` (``inf`` if unbounded).
        log_likelihood: the maximised log-likelihood.
        bf_structural, bs_structural: the quantity is structurally non-identifiable: its
            profile likelihood is flat to the parameter box (see :func:`fit_genes`).
        bf_practical, bs_practical: identifiable in principle, but the interval is too wide
            (ratio above ``max_ci_ratio``) for a 10 % estimate at this sample size.
        non_identifiable: any of the four flags.
        converged: the optimiser stopped on its tolerance, not on the iteration limit.
    """

    k_on: np.ndarray
    k_off: np.ndarray
    k_syn: np.ndarray
    burst_frequency: np.ndarray
    burst_size: np.ndarray
    bf_low: np.ndarray
    bf_high: np.ndarray
    bs_low: np.ndarray
    bs_high: np.ndarray
    bf_ci_ratio: np.ndarray
    bs_ci_ratio: np.ndarray
    log_likelihood: np.ndarray
    bf_structural: np.ndarray
    bf_practical: np.ndarray
    bs_structural: np.ndarray
    bs_practical: np.ndarray
    non_identifiable: np.ndarray
    converged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    COLUMNS = (
        "k_on",
        "k_off",
        "k_syn",
        "burst_frequency",
        "burst_size",
        "bf_low",
        "bf_high",
        "bs_low",
        "bs_high",
        "bf_ci_ratio",
        "bs_ci_ratio",
        "log_likelihood",
        "bf_structural",
        "bf_practical",
        "bs_structural",
        "bs_practical",
        "non_identifiable",
    )
    FLAGS = ("bf_structural", "bf_practical", "bs_structural", "bs_practical", "non_identifiable")

    def to_state(self) -> dict[str, np.ndarray]:
        return {c: np.asarray(getattr(self, c)) for c in self.COLUMNS}

    @classmethod
    def concat(cls, parts: Sequence[GeneFits]) -> GeneFits:
        return cls(**{c: np.concatenate([getattr(p, c) for p in parts]) for c in cls.COLUMNS})

    def take(self, idx: np.ndarray) -> GeneFits:
        return GeneFits(**{c: getattr(self, c)[idx] for c in self.COLUMNS})


_CHI2_95 = 3.841458820694124  # chi-square(1) 95 % quantile


def _profile_ci(
    hist: Tensor, u_hat: Tensor, f_hat: Tensor, H: Tensor, *, steps: int = 3
) -> tuple[Tensor, Tensor, Tensor]:
    r"""95 % profile-likelihood intervals of log burst frequency and log burst size.

    Coordinates :math:`\phi = (\log k_{on}, \log k_{syn}/k_{off}, \log k_{off})`. For each
    quantity and side the endpoint solves :math:`2(\hat\ell - \ell_p(\psi)) = 3.84`, where the
    profile :math:`\ell_p` maximises over the two other coordinates (batched Newton, warm-started
    at the conditional optimum of the quadratic approximation). The root is found by secant
    steps on the signed root deviance, started at the Wald endpoint, searching no further than
    the feasible range of the quantity implied by :data:`BOUNDS`. The nuisance parameters are
    kept in the box by a steep quadratic wall (clamping them instead would change the
    quantity itself and fake a flat profile).

    A side is *flat to the box* (structurally non-identifiable) when its deviance stays below
    3.84 out to the end of the feasible range (reported as 0 or ``inf``), or when the wall
    rather than the data supplies most of the deviance at the endpoint: the likelihood runs
    along a ridge out of the parameter space, as in the Poisson limit :math:`k_{on} \gg
    k_{off}` (burst size :math:`\to \infty` with :math:`k_{off} \to 0`).

    Returns:
        ``[G, 2, 2]`` endpoints (quantity, side) in log space, ``[G, 2, 2]`` bounded flags and
        ``[G, 2, 2]`` flat-to-the-box flags.
    """
    G = u_hat.shape[0]
    A = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 1.0]], dtype=DTYPE)  # u = A phi
    phi_hat = torch.linalg.solve(A, u_hat.T).T
    H_phi = A.T @ H @ A
    cov = torch.linalg.pinv(H_phi)
    lo_u, hi_u = _LOG_LO, _LOG_HI
    # box for phi: ranges of log bf and log bs implied by the bounds
    psi_lo = torch.tensor([lo_u[0], lo_u[2] - hi_u[1]], dtype=DTYPE)
    psi_hi = torch.tensor([hi_u[0], hi_u[2] - lo_u[1]], dtype=DTYPE)
    out = torch.empty(G, 2, 2, dtype=DTYPE)
    bounded = torch.ones(G, 2, 2, dtype=torch.bool)
    flat = torch.zeros(G, 2, 2, dtype=torch.bool)
    for q in range(2):
        free = torch.ones(3, dtype=torch.bool)
        free[q] = False
        var_q = cov[:, q, q].clamp_min(1e-12)
        se = var_q.sqrt().clamp(0.01, 3.0)
        slope = cov[:, :, q] / var_q[:, None]  # conditional optimum per unit change of psi
        sides = torch.tensor([-1.0, 1.0], dtype=DTYPE)
        delta = (1.96 * se[:, None] * sides).reshape(-1)  # [2G], side-major within gene
        rep = lambda t: t.repeat_interleave(2, 0)  # noqa: E731
        ph, hh, sl, fh = rep(phi_hat), rep(hist), rep(slope), rep(f_hat)
        # search no further than the quantity's feasible range
        max_delta = torch.where(delta < 0, ph[:, q] - psi_lo[q], psi_hi[q] - ph[:, q])
        max_delta = max_delta.clamp_min(1e-6)
        hit_box = torch.zeros_like(delta, dtype=torch.bool)
        wall = torch.zeros_like(delta, dtype=torch.bool)
        every = torch.arange(2 * G)

        def nll_phi(phi: Tensor, idx: Tensor, hh=hh) -> Tensor:
            # a quadratic wall outside the box (clamping instead would change psi itself and
            # fake a flat profile); a nuisance pressed on the wall marks a flat-to-box side
            u = phi @ A.T
            uc = torch.minimum(torch.maximum(u, lo_u), hi_u)
            return _nll(uc, hh[idx]) + 1e3 * (u - uc).square().sum(1)

        for _ in range(steps):
            delta = torch.sign(delta) * delta.abs().minimum(max_delta)
            hit_box = delta.abs() >= max_delta - 1e-9
            # two starts: the quadratic model's conditional optimum, and the nuisance held at
            # the estimate (better where the Hessian is near singular, e.g. the bursty limit)
            quad = ph + sl * delta[:, None]
            quad[:, q] = ph[:, q] + delta
            held = ph.clone()
            held[:, q] = ph[:, q] + delta
            with torch.no_grad():
                f_quad = nll_phi(quad, every)
                f_held = nll_phi(held, every)
            use_quad = torch.isfinite(f_quad) & (f_quad <= f_held)
            start = torch.where(use_quad[:, None], quad, held)
            phi, f_p, _ = _newton(nll_phi, start, free=free, max_iter=40, tol=1e-6)
            with torch.no_grad():
                u_p = phi @ A.T
                uc = torch.minimum(torch.maximum(u_p, lo_u), hi_u)
                data_dev = _nll(uc, hh) - fh
            # the wall, not the data, made most of the deviance: flat to the box
            wall = (f_p - fh - data_dev) > data_dev.clamp_min(0.0)
            r = torch.sqrt((2.0 * (f_p - fh)).clamp_min(1e-12))
            delta = delta * math.sqrt(_CHI2_95) / r
        delta = torch.sign(delta) * delta.abs().minimum(max_delta)
        unbounded = hit_box & (delta.abs() >= max_delta - 1e-9)
        out[:, q, :] = (ph[:, q] + delta).reshape(G, 2)
        bounded[:, q, :] = ~unbounded.reshape(G, 2)
        flat[:, q, :] = (unbounded | wall).reshape(G, 2)
    return out, bounded, flat


MAX_CI_RATIO = math.exp(2 * 1.959964 * 0.10 / 0.674490)
r"""Widest 95 % interval (upper / lower) that supports a 10 % estimate, about 1.79.

A 95 % interval :math:`[L, U]` of a positive quantity gives a log-scale standard error
:math:`s \approx \ln(U/L) / (2 \cdot 1.96)`; with a normal error on the log scale the median
absolute relative error is about :math:`0.674\,s` (0.674 is the normal 75 % quantile). A median
error of at most 10 % thus needs :math:`U/L \le \exp(2 \cdot 1.96 \cdot 0.10 / 0.674)`.
"""


def fit_genes(
    counts: Any,
    *,
    ci: bool = True,
    max_iter: int = 60,
    max_ci_ratio: float = MAX_CI_RATIO,
) -> GeneFits:
    r"""Maximum-likelihood :math:`(k_{on}, k_{off}, k_{syn})` of every gene, all genes at once.

    The log-likelihood of gene :math:`g` is :math:`\sum_n h_{gn} \log P(n)` over the histogram
    :math:`h_g` of its counts (:func:`log_pmf_table`, exact). It is maximised in log-parameters
    inside :data:`BOUNDS` by a batched damped Newton method with autograd Hessians (independent
    3 x 3 problems, one per gene, each with its own step control), started from
    :func:`moment_estimates`.

    Confidence intervals (``ci=True``): 95 % profile likelihood for burst frequency and burst
    size (see :func:`_profile_ci`). Identifiability is judged per gene and per quantity, from
    that quantity's own profile (so :math:`k_{off}` and :math:`k_{syn}` may be individually
    loose, as in the bursty negative-binomial limit :math:`k_{off} \gg 1`, while burst size and
    frequency are well determined), in two kinds:

    - *structural* (``bf_structural``, ``bs_structural``): the profile likelihood stays within
      1.92 of its maximum out to the box, i.e. the interval reaches the end of the quantity's
      feasible range or the other parameters run onto :data:`BOUNDS` along a flat ridge. Typical:
      the Poisson limit :math:`k_{on} \gg k_{off}`, where only the mean
      :math:`k_{syn}k_{on}/(k_{on}+k_{off})` is determined. More cells do not help.
    - *practical* (``bf_practical``, ``bs_practical``): not structural, but the interval ratio
      upper/lower exceeds ``max_ci_ratio``, too wide to support a 10 % estimate with this many
      cells (e.g. a rarely bursting gene with a few expressing cells). More cells help.

    The default threshold follows from the 10 % target (:data:`MAX_CI_RATIO`): a 95 % interval
    :math:`[L, U]` means a log-scale standard error :math:`s \approx \ln(U/L)/(2\cdot 1.96)`, the
    median absolute relative error is about :math:`0.674\,s`, so a median error
    :math:`\le 10\,\%` needs :math:`U/L \le \exp(2\cdot 1.96\cdot 0.10/0.674) \approx 1.79`.
    Without intervals (``ci=False``) only an estimate on the end of its feasible range is
    flagged (structural) and the ratios are NaN.

    Args:
        counts: ``[G, C]`` non-negative integer counts (genes x cells), each gene with at least
            one non-zero count.
        ci: compute the profile-likelihood intervals (about 4x the cost of the fit).
        max_iter: Newton iterations at most.
        max_ci_ratio: interval ratio (upper/lower) above which a quantity is flagged practically
            non-identifiable; default :data:`MAX_CI_RATIO` (about 1.79, a 10 % median error).

    Returns:
        :class:`GeneFits`.

    Raises:
        ValueError: not a 2-D table of non-negative integers, or a gene with only zeros.

    Reference: Larsson et al., Genomic encoding of transcriptional burst kinetics, *Nature* 565,
    251-254 (2019).

    >>> g = torch.Generator().manual_seed(1)
    >>> x = sample_stationary(torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([50.0]), 500, generator=g)
    >>> fit = fit_genes(x, ci=False)
    >>> bool(0.2 < fit.k_on[0] < 1.0)
    True
    """
    x = _as_counts(counts, "counts")
    if x.dim() != 2:
        raise ValueError(f"counts must be [genes, cells], got shape {list(x.shape)}")
    if not (isinstance(max_ci_ratio, (int, float)) and max_ci_ratio > 1):
        raise ValueError(f"max_ci_ratio must be a number > 1, got {max_ci_ratio!r}")
    if x.shape[1] < 2:
        raise ValueError(f"counts needs at least 2 cells per gene, got {x.shape[1]}")
    empty = (x.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"counts: genes {empty[:5]} have only zero counts; drop them first")
    G = x.shape[0]
    hist = _histograms(x)
    u, f, H = _newton(
        lambda v, idx: _nll(v, hist[idx]),
        moment_estimates(x).log(),
        lower=_LOG_LO,
        upper=_LOG_HI,
        max_iter=max_iter,
    )
    e = u.exp()
    bf, bs = e[:, 0], e[:, 2] / e[:, 1]
    # estimates on the end of their feasible range (k_on on a bound; burst size on both)
    on_edge = torch.stack(
        (
            ((u[:, 0] - _LOG_LO[0]).abs() < 1e-3) | ((u[:, 0] - _LOG_HI[0]).abs() < 1e-3),
            ((u[:, 2] - u[:, 1] - (_LOG_LO[2] - _LOG_HI[1])).abs() < 1e-3)
            | ((u[:, 2] - u[:, 1] - (_LOG_HI[2] - _LOG_LO[1])).abs() < 1e-3),
        ),
        1,
    )
    nan = torch.full((G,), math.nan, dtype=DTYPE)
    if ci:
        ends, bounded, flat = _profile_ci(hist, u, f, H)
        ends = ends.exp()
        inf = torch.tensor(math.inf, dtype=DTYPE)
        ends[:, :, 1] = torch.where(bounded[:, :, 1], ends[:, :, 1], inf)
        ends[:, :, 0] = torch.where(
            bounded[:, :, 0], ends[:, :, 0], torch.zeros_like(ends[:, :, 0])
        )
        ratio = ends[:, :, 1] / ends[:, :, 0]  # inf where a side is unbounded
        structural = on_edge | flat.any(2)
        practical = ~structural & (ratio > max_ci_ratio)
        bf_lo, bf_hi, bs_lo, bs_hi = ends[:, 0, 0], ends[:, 0, 1], ends[:, 1, 0], ends[:, 1, 1]
    else:
        structural = on_edge
        practical = torch.zeros_like(on_edge)
        ratio = torch.stack((nan, nan), 1)
        bf_lo = bf_hi = bs_lo = bs_hi = nan
    np_ = lambda t: t.detach().numpy().copy()  # noqa: E731
    return GeneFits(
        k_on=np_(e[:, 0]),
        k_off=np_(e[:, 1]),
        k_syn=np_(e[:, 2]),
        burst_frequency=np_(bf),
        burst_size=np_(bs),
        bf_low=np_(bf_lo),
        bf_high=np_(bf_hi),
        bs_low=np_(bs_lo),
        bs_high=np_(bs_hi),
        bf_ci_ratio=np_(ratio[:, 0]),
        bs_ci_ratio=np_(ratio[:, 1]),
        log_likelihood=np_(-f),
        bf_structural=np_(structural[:, 0]),
        bf_practical=np_(practical[:, 0]),
        bs_structural=np_(structural[:, 1]),
        bs_practical=np_(practical[:, 1]),
        non_identifiable=np_((structural | practical).any(1)),
    )


# ---------------------------------------------------------------------------------------------
# many genes: chunks across workers, progress, checkpoint
# ---------------------------------------------------------------------------------------------
@dataclass
class FitConfig:
    """Settings of a fit; a checkpoint made with other settings (or other data) is refused."""

    data_sha1: str = ""
    num_genes: int = 0
    num_cells: int = 0
    chunk_size: int = 50
    ci: bool = True
    max_iter: int = 60
    max_ci_ratio: float = MAX_CI_RATIO


@dataclass
class _Chunk:
    key: str
    seed: int
    fits: GeneFits

    def to_state(self) -> dict[str, Any]:
        return {c: torch.from_numpy(np.asarray(v)) for c, v in self.fits.to_state().items()}


class _FitCheckpoint(RunCheckpoint):
    """Finished chunks of genes, one run per chunk (key ``chunk<i>``, seed 0)."""

    class result_type:  # noqa: N801 - the protocol RunCheckpoint expects
        @staticmethod
        def from_state(state: dict[str, Any]) -> GeneFits:
            return GeneFits(**{c: state[c].numpy() for c in GeneFits.COLUMNS})

    def load(self) -> int:
        count = super().load()
        self.runs = {key: _Chunk(key[0], key[1], run) for key, run in self.runs.items()}
        return count

    def add_chunk(self, index: int, fits: GeneFits) -> None:
        self.add(_Chunk(f"chunk{index}", 0, fits))

    def chunks(self) -> dict[int, GeneFits]:
        out = {}
        for (key, _), run in self.runs.items():
            out[int(key[5:])] = run.fits
        return out


def _fit_chunk(payload: tuple[np.ndarray, bool, int, float]) -> GeneFits:
    """Worker job: fit one chunk of genes (module level so worker processes can import it)."""
    counts, ci, max_iter, max_ci_ratio = payload
    return fit_genes(torch.from_numpy(counts), ci=ci, max_iter=max_iter, max_ci_ratio=max_ci_ratio)


def fit_counts(
    counts: Any,
    *,
    chunk_size: int = 50,
    ci: bool = True,
    max_iter: int = 60,
    max_ci_ratio: float = MAX_CI_RATIO,
    backend: str = "serial",
    num_workers: int | None = None,
    checkpoint: str | Path | None = None,
    restart: bool = False,
    progress: Callable[[int], None] | None = None,
) -> GeneFits:
    """:func:`fit_genes` over many genes in chunks, in parallel, resumable.

    Genes with only zero counts get NaN kinetics and every non-identifiability flag. The other genes
    are sorted by their largest count (so a chunk shares a similar recurrence length) and cut
    into chunks of ``chunk_size``; chunks run through :func:`stochgrad.parallel.map_items`.
    Each finished chunk is saved to ``checkpoint`` at once, so an interrupted fit resumed with
    the same data and settings redoes only unfinished chunks and gives the same numbers.

    Args:
        counts: ``[G, C]`` counts, genes x cells.
        chunk_size: genes per job.
        ci, max_iter, max_ci_ratio: as in :func:`fit_genes`.
        backend, num_workers: as in :func:`stochgrad.parallel.map_items`.
        checkpoint: a ``.pt`` file, or None for no checkpoint.
        restart: ignore (overwrite) an existing checkpoint.
        progress: called with the number of genes just finished (also for resumed chunks).

    Returns:
        :class:`GeneFits` in the order of the input genes.

    >>> x = torch.tensor([[0, 3, 1, 0, 7, 2, 0, 1]] * 2)
    >>> fit_counts(x, ci=False).k_on.shape
    (2,)
    """
    from stochgrad.parallel import map_items

    x = _as_counts(counts, "counts")
    if x.dim() != 2:
        raise ValueError(f"counts must be [genes, cells], got shape {list(x.shape)}")
    chunk_size = _check_int(chunk_size, "chunk_size")
    arr = np.ascontiguousarray(x.numpy())
    G = arr.shape[0]
    nonzero = np.flatnonzero(arr.sum(1) > 0)
    order = nonzero[np.argsort(arr[nonzero].max(1), kind="stable")]
    chunks = [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]
    config = FitConfig(
        data_sha1=hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest(),
        num_genes=G,
        num_cells=arr.shape[1],
        chunk_size=chunk_size,
        ci=ci,
        max_iter=max_iter,
        max_ci_ratio=float(max_ci_ratio),
    )
    ckpt = None
    done: dict[int, GeneFits] = {}
    if checkpoint is not None:
        ckpt = _FitCheckpoint(checkpoint, config)
        if restart and ckpt.path.exists():
            ckpt.path.unlink()
        ckpt.load()
        done = ckpt.chunks()
    todo = [i for i in range(len(chunks)) if i not in done]
    if progress is not None and done:
        progress(sum(len(chunks[i]) for i in done))

    def finished(j: int, fits: GeneFits) -> None:
        i = todo[j]
        done[i] = fits
        if ckpt is not None:
            ckpt.add_chunk(i, fits)
        if progress is not None:
            progress(len(chunks[i]))

    map_items(
        _fit_chunk,
        [(arr[chunks[i]], ci, max_iter, float(max_ci_ratio)) for i in todo],
        backend=backend,
        num_workers=num_workers,
        callback=finished,
    )
    nan = np.full(G, np.nan)
    out = GeneFits(**{c: nan.copy() for c in GeneFits.COLUMNS})
    for c in GeneFits.FLAGS:  # all-zero genes: nothing is identifiable
        setattr(out, c, np.ones(G, dtype=bool))
    for i, idx in enumerate(chunks):
        for c in GeneFits.COLUMNS:
            getattr(out, c)[idx] = getattr(done[i], c)
    return out


# ---------------------------------------------------------------------------------------------
# counts tables
# ---------------------------------------------------------------------------------------------
def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_counts(path: str | Path, genes_in: str | None = None) -> tuple[np.ndarray, list[str], str]:
    """Read a counts CSV as ``[genes, cells]``; detect its orientation unless ``genes_in`` is given.

    Detection, in order: a header whose first cell names genes (``gene...``) or cells
    (``cell...``); only row labels (genes in rows) or only a header (genes in columns); else
    genes in rows when the table has at least as many columns as rows (more cells than genes).

    Args:
        path: CSV file of non-negative integer counts, optional header row and label column.
        genes_in: ``"rows"``, ``"columns"`` or None (detect).

    Returns:
        ``(counts [G, C] int64, gene names, how the orientation was decided)``.

    Raises:
        ValueError: empty table, non-integer or negative counts, bad ``genes_in``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "c.csv")
    >>> _ = open(p, "w").write("gene,c1,c2,c3\\nA,0,1,2\\nB,3,0,1\\n")
    >>> read_counts(p)[0].shape
    (2, 3)
    """
    if genes_in not in (None, "rows", "columns"):
        raise ValueError(f"genes_in must be 'rows', 'columns' or None, got {genes_in!r}")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise ValueError(f"{path}: empty counts table")
    header = None
    if not all(_is_number(v) for v in rows[0][1:]) or not _is_number(rows[0][0]):
        header, rows = rows[0], rows[1:]
    labels = None
    if rows and not _is_number(rows[0][0]):
        labels = [r[0] for r in rows]
        rows = [r[1:] for r in rows]
        if header is not None:
            corner, header = header[0], header[1:]
        else:
            corner = ""
    else:
        corner = ""
    try:
        values = np.array([[float(v) for v in r] for r in rows])
    except ValueError as exc:
        raise ValueError(f"{path}: counts must be numbers ({exc})") from exc
    if values.size == 0 or values.ndim != 2:
        raise ValueError(f"{path}: no counts found")
    if not np.isfinite(values).all() or (values < 0).any() or (values != np.round(values)).any():
        raise ValueError(f"{path}: counts must be non-negative integers")
    if genes_in is not None:
        how = f"--genes-in {genes_in}"
    elif corner.lower().startswith("gene"):
        genes_in, how = "rows", "header's first cell names genes"
    elif corner.lower().startswith("cell"):
        genes_in, how = "columns", "header's first cell names cells"
    elif labels is not None and header is None:
        genes_in, how = "rows", "row labels only"
    elif header is not None and labels is None:
        genes_in, how = "columns", "column header only"
    else:
        genes_in = "rows" if values.shape[1] >= values.shape[0] else "columns"
        how = "more columns than rows" if genes_in == "rows" else "more rows than columns"
    if genes_in == "rows":
        names = labels or [f"gene{i}" for i in range(values.shape[0])]
        out = values
    else:
        names = header or [f"gene{i}" for i in range(values.shape[1])]
        out = values.T
    return out.astype(np.int64), list(names), f"genes in {genes_in} ({how})"


def write_fits(path: str | Path, names: Sequence[str], fits: GeneFits) -> None:
    """Write the kinetics table (one row per gene) as CSV."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gene", *GeneFits.COLUMNS])
        for i, name in enumerate(names):
            row = [name]
            for c in GeneFits.COLUMNS:
                v = getattr(fits, c)[i]
                row.append(str(bool(v)) if c in GeneFits.FLAGS else f"{float(v):.6g}")
            w.writerow(row)


# ---------------------------------------------------------------------------------------------
# parameter recovery
# ---------------------------------------------------------------------------------------------
@dataclass
class RecoveryResult:
    """Recovery of burst frequency (``bf``) and burst size (``bs``) per grid cell.

    Every array is ``[len(k_on), len(k_off)]``, a statistic over the replicates of a cell:
    ``*_error`` median relative error over all replicates, ``*_error_ident`` over those not
    flagged for that quantity (NaN if none), ``*_ratio`` median 95 % interval ratio,
    ``*_structural`` / ``*_practical`` fractions flagged, ``expressing`` median fraction of
    cells with a non-zero count.
    """

    k_on: list[float]
    k_off: list[float]
    k_syn: float
    num_cells: int
    replicates: int
    max_ci_ratio: float
    bf_error: np.ndarray
    bs_error: np.ndarray
    bf_error_ident: np.ndarray
    bs_error_ident: np.ndarray
    bf_ratio: np.ndarray
    bs_ratio: np.ndarray
    bf_structural: np.ndarray
    bs_structural: np.ndarray
    bf_practical: np.ndarray
    bs_practical: np.ndarray
    expressing: np.ndarray
    seconds: float

    ARRAYS = (
        "bf_error",
        "bs_error",
        "bf_error_ident",
        "bs_error_ident",
        "bf_ratio",
        "bs_ratio",
        "bf_structural",
        "bs_structural",
        "bf_practical",
        "bs_practical",
        "expressing",
    )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in self.ARRAYS:
            arr = np.asarray(d[key], dtype=float)
            # strict JSON: NaN (no identifiable replicate) -> null, an infinite ratio -> "inf"
            d[key] = [
                [None if np.isnan(v) else (float(v) if np.isfinite(v) else "inf") for v in row]
                for row in arr
            ]
        return d

    def verdict(self, q: str, i: int, j: int) -> str:
        """``"S"`` (mostly structural), ``"P"`` (mostly practical) or ``""`` for quantity ``q``."""
        s, p = getattr(self, f"{q}_structural")[i, j], getattr(self, f"{q}_practical")[i, j]
        if s + p <= 0.5:
            return ""
        return "S" if s >= p else "P"


def _median_where(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Median over the last axis of the kept entries (NaN where none is kept)."""
    v = np.where(keep, values, np.nan)
    out = np.full(v.shape[:-1], np.nan)
    some = keep.any(-1)
    out[some] = np.nanmedian(v[some], -1)
    return out


def recovery_study(
    k_on: Sequence[float],
    k_off: Sequence[float],
    *,
    k_syn: float = 100.0,
    num_cells: int = 1000,
    replicates: int = 10,
    seed: int = 0,
    method: str = "gillespie",
    max_ci_ratio: float = MAX_CI_RATIO,
    chunk_size: int = 16,
    backend: str = "serial",
    num_workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RecoveryResult:
    """Simulate every grid cell ``replicates`` times, fit with intervals, summarise the recovery.

    Per cell and quantity (burst frequency, burst size): the median relative error over all
    replicates and over the replicates judged identifiable for that quantity, the median
    profile-interval ratio and the fractions flagged structurally / practically
    (see :func:`fit_genes`). Genes simulated with no expressing cell count as flagged both ways
    with infinite error.

    Args:
        k_on, k_off: grid values.
        k_syn: synthesis rate of every gene.
        num_cells: cells per simulated gene.
        replicates: simulated genes per grid cell.
        seed: seed of the simulation.
        method: ``"gillespie"`` or ``"exact"`` (see :func:`simulate`).
        max_ci_ratio: as in :func:`fit_genes`.
        chunk_size, backend, num_workers, progress: as in :func:`fit_counts`.

    Returns:
        :class:`RecoveryResult`.

    >>> r = recovery_study([1.0], [1.0], k_syn=20.0, num_cells=200, replicates=1, method="exact")
    >>> r.bf_error.shape
    (1, 1)
    """
    replicates = _check_int(replicates, "replicates")
    t0 = time.perf_counter()
    kon = torch.tensor(k_on, dtype=DTYPE)
    koff = torch.tensor(k_off, dtype=DTYPE)
    A, B = torch.meshgrid(kon, koff, indexing="ij")
    a = A.reshape(-1).repeat_interleave(replicates)
    b = B.reshape(-1).repeat_interleave(replicates)
    k = torch.full_like(a, float(k_syn))
    g = torch.Generator().manual_seed(seed)
    x = simulate(a, b, k, num_cells, generator=g, method=method)
    fits = fit_counts(
        x,
        max_ci_ratio=max_ci_ratio,
        chunk_size=chunk_size,
        backend=backend,
        num_workers=num_workers,
        progress=progress,
    )
    shape = (len(k_on), len(k_off), replicates)
    r = lambda v: np.asarray(v).reshape(shape)  # noqa: E731
    inf_nan = lambda v: np.where(np.isnan(v), np.inf, v)  # noqa: E731 - all-zero genes
    bf_err = r(inf_nan(np.abs(fits.burst_frequency / a.numpy() - 1)))
    bs_err = r(inf_nan(np.abs(fits.burst_size / (k / b).numpy() - 1)))
    ok_bf = ~(r(fits.bf_structural) | r(fits.bf_practical))
    ok_bs = ~(r(fits.bs_structural) | r(fits.bs_practical))
    med = lambda v: np.median(r(inf_nan(v)), -1)  # noqa: E731
    return RecoveryResult(
        k_on=list(map(float, k_on)),
        k_off=list(map(float, k_off)),
        k_syn=float(k_syn),
        num_cells=num_cells,
        replicates=replicates,
        max_ci_ratio=float(max_ci_ratio),
        bf_error=np.median(bf_err, -1),
        bs_error=np.median(bs_err, -1),
        bf_error_ident=_median_where(bf_err, ok_bf),
        bs_error_ident=_median_where(bs_err, ok_bs),
        bf_ratio=med(fits.bf_ci_ratio),
        bs_ratio=med(fits.bs_ci_ratio),
        bf_structural=r(fits.bf_structural).mean(-1),
        bs_structural=r(fits.bs_structural).mean(-1),
        bf_practical=r(fits.bf_practical).mean(-1),
        bs_practical=r(fits.bs_practical).mean(-1),
        expressing=np.median(r((x > 0).double().mean(1).numpy()), -1),
        seconds=time.perf_counter() - t0,
    )


def plot_recovery(result: RecoveryResult, path: str | Path) -> None:
    """Heatmaps of the median relative errors of burst frequency and burst size.

    Each cell shows the median error over all replicates and, below it, the median interval
    ratio; cells where most replicates are flagged are hatched and marked ``S`` (structural) or
    ``P`` (practical).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    for ax, q, name in zip(axes, ("bf", "bs"), ("burst frequency", "burst size"), strict=True):
        err = 100 * np.minimum(getattr(result, f"{q}_error"), 10.0)
        ratio = getattr(result, f"{q}_ratio")
        im = ax.imshow(err, origin="lower", cmap="viridis", vmin=0, vmax=30)
        ax.set_xticks(range(len(result.k_off)), [f"{v:.3g}" for v in result.k_off])
        ax.set_yticks(range(len(result.k_on)), [f"{v:.3g}" for v in result.k_on])
        ax.set_xlabel("k_off")
        ax.set_ylabel("k_on")
        ax.set_title(f"median |rel. error| of {name} (%)")
        for i in range(len(result.k_on)):
            for j in range(len(result.k_off)):
                mark = result.verdict(q, i, j)
                if mark:
                    ax.add_patch(
                        plt.Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", ec="w", lw=0
                        )
                    )
                v = ratio[i, j]
                rt = "inf" if not np.isfinite(v) else (f"{v:.2f}" if v < 10 else f"{v:.0f}")
                ax.text(
                    j,
                    i,
                    f"{err[i, j]:.0f}{' ' + mark if mark else ''}\nx{rt}",
                    ha="center",
                    va="center",
                    color="w",
                    fontsize=9,
                    bbox={"fc": "k", "alpha": 0.45, "ec": "none", "pad": 1.5},
                )
        fig.colorbar(im, ax=ax)
    fig.suptitle(
        f"telegraph recovery: k_syn={result.k_syn:g}, {result.num_cells} cells, "
        f"{result.replicates} replicates\nx = median 95% interval ratio; hatched: mostly "
        f"non-identifiable (S structural, P practical: ratio > {result.max_ci_ratio:.2f})",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recovery_markdown(result: RecoveryResult) -> str:
    """The recovery tables as Markdown: errors, errors on identifiable replicates, ratios, flags."""

    def pct(v: float) -> str:
        return "-" if not np.isfinite(v) else f"{100 * v:.1f}"

    def rt(v: float) -> str:
        return "inf" if not np.isfinite(v) else f"{v:.2f}"

    head = "| k_on \\ k_off | " + " | ".join(f"{b:.3g}" for b in result.k_off) + " |"
    rule = "|---" * (len(result.k_off) + 1) + "|"
    tables = {
        "median relative error, all replicates, % (bf / bs; S/P = mostly flagged "
        "structurally/practically)": lambda i, j: (
            f"{pct(result.bf_error[i, j])}{result.verdict('bf', i, j)} / "
            f"{pct(result.bs_error[i, j])}{result.verdict('bs', i, j)}"
        ),
        "median relative error over the identifiable replicates, % (bf / bs; - = none)": (
            lambda i, j: f"{pct(result.bf_error_ident[i, j])} / {pct(result.bs_error_ident[i, j])}"
        ),
        "median 95 % interval ratio upper/lower (bf / bs)": lambda i, j: (
            f"{rt(result.bf_ratio[i, j])} / {rt(result.bs_ratio[i, j])}"
        ),
        "fraction flagged structural, practical (bf; bs)": lambda i, j: (
            f"{result.bf_structural[i, j]:.1f}, {result.bf_practical[i, j]:.1f}; "
            f"{result.bs_structural[i, j]:.1f}, {result.bs_practical[i, j]:.1f}"
        ),
        "median fraction of expressing cells (count > 0)": lambda i, j: (
            f"{result.expressing[i, j]:.3f}"
        ),
    }
    out = [
        f"k_syn = {result.k_syn:g}, {result.num_cells} cells, {result.replicates} replicates, "
        f"identifiable = interval ratio <= {result.max_ci_ratio:.2f} and not flat to the box",
        "",
    ]
    for title, cell in tables.items():
        out += [f"{title}:", "", head, rule]
        for i, a in enumerate(result.k_on):
            out.append(
                f"| {a:.3g} | " + " | ".join(cell(i, j) for j in range(len(result.k_off))) + " |"
            )
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# (e) command line
# ---------------------------------------------------------------------------------------------
def _parallel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=("process", "ray", "serial"), default="process", help="where to fit"
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes")
    parser.add_argument("--chunk-size", type=int, default=50, help="genes per job")


def _ratio_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-ci-ratio",
        type=float,
        default=MAX_CI_RATIO,
        help="widest 95%% interval ratio (upper/lower) counted as identifiable; default "
        f"{MAX_CI_RATIO:.2f} = exp(2*1.96*0.10/0.674), a 10%% median error",
    )


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad telegraph fit``."""
    parser.add_argument(
        "counts", type=Path, help="CSV counts table (genes x cells or cells x genes)"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("kinetics.csv"))
    parser.add_argument("--genes-in", choices=("rows", "columns"), default=None)
    _parallel_options(parser)
    parser.add_argument("--no-ci", action="store_true", help="skip profile-likelihood intervals")
    parser.add_argument("--max-iter", type=int, default=60, help="Newton iterations at most")
    _ratio_option(parser)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: <output>.ckpt.pt")
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")


def run_fit(args: argparse.Namespace, console: Any) -> int:
    """Fit burst kinetics per gene; write the kinetics CSV (resumes from its checkpoint)."""
    from stochgrad.cli import prepare_output, progress_bar

    counts, names, how = read_counts(args.counts, args.genes_in)
    console.print(f"{counts.shape[0]} genes x {counts.shape[1]} cells: {how}")
    out = prepare_output(args.output)
    ckpt = args.checkpoint or out.with_name(out.name + ".ckpt.pt")
    t0 = time.perf_counter()
    with progress_bar(console) as bar:
        task = bar.add_task("fitting genes", total=counts.shape[0])
        fits = fit_counts(
            counts,
            chunk_size=args.chunk_size,
            ci=not args.no_ci,
            max_iter=args.max_iter,
            max_ci_ratio=args.max_ci_ratio,
            backend=args.backend,
            num_workers=args.workers,
            checkpoint=ckpt,
            restart=args.restart,
            progress=lambda n: bar.advance(task, n),
        )
        bar.update(task, completed=counts.shape[0])
    write_fits(out, names, fits)
    n_struct = int(np.sum(fits.bf_structural | fits.bs_structural))
    n_pract = int(np.sum(fits.non_identifiable)) - n_struct
    console.print(
        f"wrote {out} ({counts.shape[0]} genes; {n_struct} structurally and {n_pract} only "
        "practically non-identifiable in burst frequency or size) in "
        f"{time.perf_counter() - t0:.1f} s; checkpoint {ckpt}"
    )
    return 0


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad telegraph simulate``."""
    parser.add_argument("--genes", type=int, default=100)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=Path("counts.csv"))
    parser.add_argument(
        "--kinetics",
        type=Path,
        default=None,
        help="CSV with columns k_on,k_off,k_syn (one row per gene); default random",
    )
    parser.add_argument("--method", choices=("gillespie", "exact"), default="gillespie")


def _random_kinetics(G: int, g: torch.Generator) -> Tensor:
    """log-uniform k_on in [0.05, 5], k_off in [0.5, 20], burst size in [5, 100]."""
    u = torch.rand(G, 3, generator=g, dtype=DTYPE)
    lo = torch.tensor([0.05, 0.5, 5.0], dtype=DTYPE).log()
    hi = torch.tensor([5.0, 20.0, 100.0], dtype=DTYPE).log()
    v = (lo + u * (hi - lo)).exp()
    return torch.stack((v[:, 0], v[:, 1], v[:, 2] * v[:, 1]), -1)


def simulate_table(G: int, C: int, seed: int, method: str = "gillespie") -> tuple[Tensor, Tensor]:
    """Random kinetics ``[G, 3]`` and their simulated counts ``[G, C]`` (seeded).

    >>> kin, x = simulate_table(2, 5, 0, method="exact")
    >>> kin.shape, x.shape
    (torch.Size([2, 3]), torch.Size([2, 5]))
    """
    g = torch.Generator().manual_seed(seed)
    kin = _random_kinetics(G, g)
    return kin, simulate(kin[:, 0], kin[:, 1], kin[:, 2], C, generator=g, method=method)


def run_simulate(args: argparse.Namespace, console: Any) -> int:
    """Simulate a genes x cells counts table; also write the true kinetics."""
    from stochgrad.cli import prepare_output

    _check_int(args.genes, "--genes")
    _check_int(args.cells, "--cells")
    g = torch.Generator().manual_seed(args.seed)
    if args.kinetics is not None:
        with open(args.kinetics, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"k_on", "k_off", "k_syn"} <= set(rows[0]):
            raise ValueError(f"--kinetics {args.kinetics}: needs columns k_on, k_off, k_syn")
        kin = torch.tensor([[float(r[c]) for c in ("k_on", "k_off", "k_syn")] for r in rows])
        kin = kin.to(DTYPE)
    else:
        kin = _random_kinetics(args.genes, g)
    t0 = time.perf_counter()
    x = simulate(kin[:, 0], kin[:, 1], kin[:, 2], args.cells, generator=g, method=args.method)
    out = prepare_output(args.output)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gene", *[f"cell{j}" for j in range(x.shape[1])]])
        for i, row in enumerate(x.tolist()):
            w.writerow([f"gene{i}", *row])
    kin_path = out.with_name(out.stem + "_kinetics.csv")
    with open(kin_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gene", "k_on", "k_off", "k_syn", "burst_frequency", "burst_size"])
        for i, (a, b, k) in enumerate(kin.tolist()):
            w.writerow([f"gene{i}", f"{a:.6g}", f"{b:.6g}", f"{k:.6g}", f"{a:.6g}", f"{k / b:.6g}"])
    console.print(
        f"wrote {out} ({x.shape[0]} genes x {x.shape[1]} cells, {args.method}) and {kin_path} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def add_recover_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad telegraph recover``."""
    parser.add_argument("--grid", type=int, default=4, help="points per axis")
    parser.add_argument("--k-syn", type=float, default=100.0)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=("gillespie", "exact"), default="gillespie")
    _ratio_option(parser)
    _parallel_options(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/telegraph_recovery"))


def run_recover(args: argparse.Namespace, console: Any) -> int:
    """Parameter recovery over k_on in logspace(-2, 1) x k_off in logspace(-1, 2)."""
    from rich.table import Table

    from stochgrad.cli import progress_bar

    n = _check_int(args.grid, "--grid", 2)
    k_on = np.logspace(-2, 1, n).tolist()
    k_off = np.logspace(-1, 2, n).tolist()
    with progress_bar(console) as bar:
        task = bar.add_task("recovery fits", total=n * n * args.replicates)
        res = recovery_study(
            k_on,
            k_off,
            k_syn=args.k_syn,
            num_cells=args.cells,
            replicates=args.replicates,
            seed=args.seed,
            method=args.method,
            max_ci_ratio=args.max_ci_ratio,
            chunk_size=args.chunk_size,
            backend=args.backend,
            num_workers=args.workers,
            progress=lambda m: bar.advance(task, m),
        )
    table = Table(
        title=f"median |relative error| % (burst frequency / burst size), k_syn={args.k_syn:g}, "
        f"{args.cells} cells, {args.replicates} replicates; all replicates [identifiable ones]; "
        "S/P = mostly structurally/practically non-identifiable"
    )
    table.add_column("k_on \\ k_off", justify="right")
    for b in k_off:
        table.add_column(f"{b:.3g}", justify="right")

    def pct(v: float) -> str:
        return "-" if not np.isfinite(v) else f"{100 * v:.1f}"

    for i, a in enumerate(k_on):
        table.add_row(
            f"{a:.3g}",
            *[
                f"{pct(res.bf_error[i, j])}{res.verdict('bf', i, j)} "
                f"[{pct(res.bf_error_ident[i, j])}] / "
                f"{pct(res.bs_error[i, j])}{res.verdict('bs', i, j)} "
                f"[{pct(res.bs_error_ident[i, j])}]"
                for j in range(len(k_off))
            ],
        )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recovery.json").write_text(json.dumps(res.to_json(), indent=2))
    (args.out / "recovery.md").write_text(recovery_markdown(res))
    plot_recovery(res, args.out / "recovery.png")
    console.print(f"wrote {args.out}/recovery.json, .md, .png in {res.seconds:.1f} s")
    return 0
