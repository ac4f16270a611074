r"""The exact stationary likelihood of the telegraph model, and the quadrature it replaces.

The stationary law of the mRNA count (Peccoud & Ycart, *Theor. Popul. Biol.* 1995) is a
Beta-Poisson mixture: with :math:`a = k_{on}`, :math:`b = k_{off}`, :math:`k = k_{syn}`,

.. math::

    P(n) = \int_0^1 \mathrm{Beta}(x; a, b)\,\mathrm{Poisson}(n; k x)\,dx
         = \frac{k^n}{n!}\frac{(a)_n}{(a+b)_n}\,{}_1F_1(a+n; a+b+n; -k).

- :func:`log_pmf` / :func:`log_pmf_table`: :math:`\log P(n)` accurate to ~1e-12 relative in
  every regime, vectorised over counts and parameter sets, differentiable by autograd (Kummer's
  transformation, a positive-term series at the top count, a stable backward recurrence in
  :math:`n`); :func:`log_kummer_m` is the series.
- :func:`pmf_gauss_jacobi`: the 50-node Gauss-Jacobi quadrature of the ``txburst`` script
  (Larsson et al., *Nature* 2019), kept for contrast.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad.apps.telegraph._counts import (
    DTYPE,
    MAX_COUNT,
    MAX_RATE,
    _as_counts,
    _as_param,
    _on_cpu,
    _too_large,
)

__all__ = [
    "DTYPE",
    "MAX_COUNT",
    "MAX_RATE",
    "histogram_nll",
    "log_kummer_m",
    "log_pmf",
    "log_pmf_table",
]


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
        b: float64 tensor, :math:`0 < b < c`, broadcasting with ``c`` and ``k >= 0``.
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
        k_on: positive tensor, a batch of parameter sets; likewise ``k_off``, ``k_syn``.
        n_max: the largest count.

    Returns:
        ``[*batch, n_max + 1]`` float64.

    Raises:
        ValueError: non-positive or non-finite parameters, ``n_max`` below 0 or above
            :data:`MAX_COUNT`.

    >>> t = log_pmf_table(torch.tensor(0.5), torch.tensor(5.0), torch.tensor(3000.0), 200)
    >>> round(float(t[200].exp()), 10)  # mpmath: 0.00120400149338...
    0.0012040015
    """
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 0:
        raise ValueError(f"n_max must be a non-negative int, got {n_max!r}")
    if n_max > MAX_COUNT:
        raise _too_large("n_max", float(n_max))
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
        k_on: positive rate (mRNA degradation rate is 1); likewise ``k_off``, ``k_syn``.

    Returns:
        ``[*B, N]`` float64 log-probabilities (``[N]`` for scalar parameters).

    Raises:
        ValueError: negative or non-integer counts, a count above :data:`MAX_COUNT`,
            non-positive or non-finite parameters.

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


# ---------------------------------------------------------------------------------------------
# (c) the log-likelihood of count histograms with its exact gradient and Hessian
# ---------------------------------------------------------------------------------------------
_BLOCK = 250_000  # rows x counts per block of the recurrence: ~50 MB at most

# (c, b, k) -> (a, b, k) with c = a + b + N
_CB = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=DTYPE)


def _trigamma(x: Tensor) -> Tensor:
    """:math:`\\psi'(x)`, ``x > 0``: ten steps of the recurrence, then the asymptotic series
    (relative error below 1e-14; ``torch.polygamma(1, .)`` is several times slower)."""
    acc = sum((x + i).reciprocal().square() for i in range(10))
    iz = (x + 10.0).reciprocal()
    iz2 = iz * iz
    tail = 1.0 / 42 + iz2 * (-1.0 / 30 + iz2 * 5.0 / 66)
    return acc + iz * (1.0 + iz * (0.5 + iz * (1.0 / 6 + iz2 * (-1.0 / 30 + iz2 * tail))))


def _series_window(b: Tensor, c: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per row, the first index and length of a window of the Kummer-series terms that holds
    them, the largest term's index :math:`j^*` (see :func:`log_kummer_m`) and their spread
    there (from the curvature of their logarithm, at most :math:`\\sqrt k + 1`): centred on
    :math:`j^*`, half-width nine spreads plus 30, rounded up to a power of 2 or 1.5 times one
    (rows share few lengths); the whole series where that is not shorter."""
    p = c + 1.0 - k
    disc = (p * p - 4.0 * (c - k * b)).clamp_min(0.0)
    jstar = ((-p + disc.sqrt()) / 2.0).clamp_min(0.0)
    curv = 1.0 / (jstar + 1.0) + 1.0 / (c + jstar) - 1.0 / (b + jstar)
    sd = torch.where(curv > 0, curv.clamp_min(1e-300).rsqrt(), torch.full_like(curv, math.inf))
    sd = torch.minimum(sd, k.sqrt() + 1.0)

    def rounded(w: Tensor) -> Tensor:
        base = 2.0 ** torch.floor(torch.log2(w))
        return torch.where(w <= base, base, torch.where(w <= 1.5 * base, 1.5 * base, 2 * base))

    width = rounded(18.0 * sd + 60.0)
    j_lo = (jstar.floor() - width / 2).clamp_min(0.0)
    full = rounded(k + 12.0 * k.sqrt() + 60.0)
    whole = width >= full
    return torch.where(whole, 0.0, j_lo), torch.where(whole, full, width), jstar, sd


_NODES = 48
"""Nodes of the coarse rule for a wide series (see :func:`_top_series`)."""


def _series_terms_at(
    b: Tensor, c: Tensor, k: Tensor, x: Tensor, order: int
) -> tuple[Tensor, Tensor, tuple[Tensor, ...] | None]:
    """Log-terms :math:`\\ell(x)` of :math:`M(b; c; k)` at real points ``x`` [P, m] (lgamma),
    the factor :math:`c/(c+x)` to those of :math:`M(b; c+1; k)`, and (``order`` 2) the
    derivatives of :math:`\\ell` (digamma and trigamma differences)."""
    b_, c_, k_ = b[:, None], c[:, None], k[:, None]
    bx, cx = b_ + x, c_ + x
    lt = (
        torch.lgamma(bx)
        - torch.lgamma(b_)
        + torch.lgamma(c_)
        - torch.lgamma(cx)
        + x * torch.log(k_)
        - torch.lgamma(x + 1.0)
    )
    r = c_ / cx
    if not order:
        return lt, r, None
    # one call per special function (each is a dozen tensor operations)
    at = torch.cat((bx, cx, b_, c_), 1)
    m = x.shape[1]
    psi, tri = torch.digamma(at), _trigamma(at)
    d_b = psi[:, :m] - psi[:, -2:-1]
    d_c = psi[:, -1:] - psi[:, m : 2 * m]
    d_bb = tri[:, :m] - tri[:, -2:-1]
    d_cc = tri[:, -1:] - tri[:, m : 2 * m]
    return lt, r, (d_c, d_b, d_cc, d_bb)


def _series_sums(
    lt: Tensor, r: Tensor, x: Tensor, c: Tensor, k: Tensor, d: tuple[Tensor, ...] | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """From log-terms over a window: :math:`\\log M(b; c; k)`, :math:`\\log M(b; c+1; k)`,
    whether the window held the sum (edge terms below 1e-19 of it), and (given the log-terms'
    derivatives ``d``) their gradients ``[2, P, 3]`` and Hessians ``[2, P, 3, 3]`` in (c, b, k).

    Each is a log-sum-exp of log-terms :math:`\\ell_j`, so its gradient is the term-weighted
    mean of :math:`\\partial \\ell_j` and its Hessian the weighted mean of
    :math:`\\partial^2 \\ell_j` plus the weighted covariance of :math:`\\partial \\ell_j`
    (:math:`\\partial_b \\ell_j = \\psi(b+j) - \\psi(b)`, :math:`\\partial_c \\ell_j = \\psi(c) -
    \\psi(c+j)`, :math:`\\partial_k \\ell_j = j/k`). The terms of :math:`M(b; c+1; k)` are
    those of :math:`M(b; c; k)` times :math:`c/(c+j)`.
    """
    lse = torch.logsumexp(lt, -1)
    w = torch.exp(lt - lse[:, None])
    s1 = (w * r).sum(-1)
    lse2 = torch.stack((lse, lse + torch.log(s1)))
    ok = (w[:, -1] < 1e-19) & ((x[:, 0] == 0) | (w[:, 0] < 1e-19))
    if d is None:
        return lse2, ok, None, None
    d_c, d_b, d_cc, d_bb = d
    x0 = x[:, :1]
    xc = x - x0  # covariances are shift invariant: centred for accuracy
    ic, ik = c.reciprocal()[:, None], k.reciprocal()
    grads, hessians = [], []
    for plus in (False, True):
        if plus:
            w = w * r / s1[:, None]
            icx = r * ic  # 1 / (c + x)
            dc, dcc = d_c + (ic - icx), d_cc - ic * ic + icx * icx
        else:
            dc, dcc = d_c, d_cc
        F = torch.stack((dc, d_b, xc), 1)  # [P, 3, m]
        mean = (F * w[:, None]).sum(-1)
        Fc = F - mean[..., None]
        H = ((Fc * w[:, None])[:, :, None] * Fc[:, None]).sum(-1)  # not bmm: see _sum0
        ex = mean[:, 2] + x0[:, 0]
        H[:, :, 2] *= ik[:, None]
        H[:, 2, :] *= ik[:, None]
        H[:, 0, 0] += (w * dcc).sum(-1)
        H[:, 1, 1] += (w * d_bb).sum(-1)
        H[:, 2, 2] -= ex * ik * ik
        grads.append(torch.stack((mean[:, 0], mean[:, 1], ex * ik), -1))
        hessians.append(H)
    return lse2, ok, torch.stack(grads), torch.stack(hessians)


def _series_block(
    b: Tensor, c: Tensor, k: Tensor, j_lo: Tensor, m: int, order: int
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """:func:`_series_sums` over the ``m`` terms from ``j_lo`` of each row: ``lgamma`` at the
    first, then running sums of the term ratios' logs (and of digamma, trigamma steps)."""
    P = b.shape[0]
    j = j_lo[:, None] + torch.arange(m, dtype=DTYPE)
    b_, c_ = b[:, None], c[:, None]
    bj, cj = b_ + j[:, :-1], c_ + j
    log_cj = torch.log(cj)
    first = _series_terms_at(b, c, k, j_lo[:, None], order)
    ratios = torch.log(bj) - log_cj[:, :-1] + torch.log(k)[:, None] - torch.log1p(j[:, :-1])
    lt = torch.cat((first[0], first[0] + ratios.cumsum(-1)), -1)
    r = torch.exp(torch.log(c_) - log_cj)  # c / (c + j)
    if not order:
        return _series_sums(lt, r, j, c, k, None)
    z = torch.zeros(P, 1, dtype=DTYPE)
    inv_b, inv_c = bj.reciprocal(), (cj[:, :-1]).reciprocal()
    d0_c, d0_b, d0_cc, d0_bb = first[2]
    d = (
        d0_c - torch.cat((z, inv_c.cumsum(-1)), -1),
        d0_b + torch.cat((z, inv_b.cumsum(-1)), -1),
        d0_cc + torch.cat((z, (inv_c * inv_c).cumsum(-1)), -1),
        d0_bb - torch.cat((z, (inv_b * inv_b).cumsum(-1)), -1),
    )
    return _series_sums(lt, r, j, c, k, d)


def _top_series(
    b: Tensor, c: Tensor, k: Tensor, order: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """:math:`\\log M(b; c; k)`, :math:`\\log M(b; c+1; k)` and their derivatives, each row by
    the cheapest exact means:

    - a wide series (spread :math:`\\sigma \\ge 6` of its terms, all of them away from
      :math:`j = 0`) by the trapezoid rule with :data:`_NODES` nodes over :math:`j^* \\pm
      11\\sigma` applied to the terms' continuation to real :math:`j` (``lgamma``): the terms are
      an analytic, nearly Gaussian function of :math:`j`, so by Poisson's summation formula
      their sum equals their integral, and the trapezoid rule with step :math:`h` gives that
      integral, both up to errors of order :math:`e^{-2\\pi^2\\sigma^2/h^2}` (below
      :math:`10^{-38}` here, :math:`h \\approx 0.47\\sigma`) -- a few dozen nodes instead of
      :math:`18\\sigma` terms;
    - the others term by term (:func:`_series_block`), rows grouped by window length (a group
      too small to be worth its own pass joins the next longer one);
    - the whole series for a row whose window did not hold the sum (edge terms above 1e-19 of
      it).
    """
    j_lo, width, jstar, sd = _series_window(b, c, k)
    P = b.shape[0]
    lse = torch.empty(2, P, dtype=DTYPE)
    g = torch.empty(2, P, 3, dtype=DTYPE) if order else None
    H = torch.empty(2, P, 3, 3, dtype=DTYPE) if order else None
    coarse = (sd >= 6.0) & (jstar - 11.0 * sd > 0) & (width > _NODES)
    width = torch.where(coarse, 0.0, width)
    # each row's own window (never widened to share a pass with other rows: a row's value
    # must not depend on the rows beside it, so that a fit does not depend on its chunk)
    for m in torch.unique(width).tolist():
        idx = (width == m).nonzero().flatten()
        if m == 0:
            s = torch.linspace(-11.0, 11.0, _NODES, dtype=DTYPE)
            x = jstar[idx, None] + sd[idx, None] * s
            lt, r, d = _series_terms_at(b[idx], c[idx], k[idx], x, order)
            out = _series_sums(lt, r, x, c[idx], k[idx], d)
            lse_m = out[0] + torch.log(sd[idx] * (s[1] - s[0]))  # the step h
        else:
            out = _series_block(b[idx], c[idx], k[idx], j_lo[idx], int(m), order)
            lse_m = out[0]
        ok, g_m, H_m = out[1], out[2], out[3]
        if not bool(ok.all()):
            sel_all = (~ok).nonzero().flatten()
            fulls = torch.tensor(
                [2 ** math.ceil(math.log2(_series_terms(k[i]))) for i in idx[sel_all]]
            )
            for full in torch.unique(fulls).tolist():  # each row's own length, as above
                sel = sel_all[fulls == full]
                bad = idx[sel]
                zero = torch.zeros_like(b[bad])
                redo = _series_block(b[bad], c[bad], k[bad], zero, int(full), order)
                lse_m[:, sel] = redo[0]
                if order:
                    g_m[:, sel], H_m[:, sel] = redo[2], redo[3]
        lse[:, idx] = lse_m
        if order:
            g[:, idx], H[:, idx] = g_m, H_m
    return lse, g, H


# the upper triangle of a 3 x 3 matrix, and where each of its 9 entries is in it
_PAIRS = (torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([0, 1, 2, 1, 2, 2]))
_SYM = torch.tensor([[0, 1, 2], [1, 3, 4], [2, 4, 5]])


def _sum0(x: Tensor) -> Tensor:
    """``x.sum(0)`` with each column summed in the same order whatever the other columns: torch
    vectorises a sum over the first dimension across columns, so a column's rounding would
    depend on its position and the batch's width (and a fit on its chunk); a sum over the last,
    contiguous dimension does not (nor does ``bmm`` for long inner dimensions)."""
    return x.movedim(0, -1).contiguous().sum(-1)


def _nll_block(
    a: Tensor, b: Tensor, k: Tensor, hist: Tensor, order: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """:func:`histogram_nll` of rows sharing the top count ``N = hist.shape[1] - 1``."""
    P, N1 = hist.shape
    N = N1 - 1
    ctot = hist.sum(1)
    n = torch.arange(N1, dtype=DTYPE)
    nsum = (hist * n).sum(1)  # not a matrix product: its sums may depend on the rows beside
    ll = nsum * torch.log(k) - (hist * torch.lgamma(n + 1.0)).sum(1) - k * ctot
    lse, gs, Hs = _top_series(b, a + b + N, k, order)
    ll = ll + ctot * lse[0]
    if order:
        gs, Hs = gs @ _CB, _CB.T @ Hs @ _CB
        g, H = ctot[:, None] * gs[0], ctot[:, None, None] * Hs[0]
        g[:, 2] += nsum / k - ctot
        H[:, 2, 2] -= nsum / k**2
    if N == 0:
        return (-ll, -g, -H) if order else (-ll, None, None)
    # sum_n h_n log M_n = C log M_N + sum_{m<N} Hc_m log rho_m, Hc_m = #cells with count <= m;
    # sum_n h_n log[(a)_n / (a+b)_n] = sum_{i<N} S_i log[(a+i) / (a+b+i)], S_i = C - Hc_i
    Hc = hist.cumsum(1)[:, :N].T.contiguous()  # [N, P]
    S = ctot - Hc
    i = torch.arange(N, dtype=DTYPE)[:, None]
    ai, cn = a + i, (a + b) + i
    alpha = 1.0 + k / cn
    beta = k * (ai + 1.0) / (cn * (cn + 1.0))
    # rho_n = M_n / M_{n+1}, downwards (stable); one fused operation per count (the loops run
    # over unbound rows: indexing a tensor in the loop would cost as much as the arithmetic)
    rho = torch.exp(lse[0] - lse[1])
    rhos = [rho]
    for al, be in zip(reversed(alpha.unbind(0)), reversed(beta.unbind(0)), strict=True):
        rho = torch.addcdiv(al, be, rho, value=-1.0)
        rhos.append(rho)
    R = torch.stack(rhos[::-1])
    ll = ll + _sum0(Hc * torch.log(R[:N]) + S * (torch.log(ai) - torch.log(cn)))
    if not order:
        return -ll, None, None
    ia, ic = ai.reciprocal(), cn.reciprocal()
    sc, scc = _sum0(S * ic), _sum0(S * ic * ic)
    g[:, 0] += _sum0(S * ia) - sc
    g[:, 1] -= sc
    H[:, :2, :2] += scc[:, None, None]
    H[:, 0, 0] -= _sum0(S * ia * ia)
    # first derivatives X_n of rho_n = alpha_n - beta_n / rho_{n+1}, a linear recurrence:
    # X_n = dalpha_n - r_n dlog(beta_n) + B_n X_{n+1}, r_n = beta_n/rho_{n+1}, B_n = r_n/rho_{n+1}
    Rp = R[1:]
    r = beta / Rp
    B = r / Rp
    ic1, iq = (cn + 1.0).reciprocal(), (ai + 1.0).reciprocal()
    lb = torch.stack((iq - ic - ic1, -ic - ic1, k.reciprocal().expand(N, P)), -1)
    A1 = -r[..., None] * lb
    kc2 = k * ic * ic
    A1[..., 0] -= kc2
    A1[..., 1] -= kc2
    A1[..., 2] += ic
    dlr = gs[0] - gs[1]  # dlog rho_N
    x = R[N, :, None] * dlr
    xs = [x]
    for a1, bx in zip(reversed(A1.unbind(0)), reversed(B[..., None].unbind(0)), strict=True):
        x = torch.addcmul(a1, bx, x)
        xs.append(x)
    X = torch.stack(xs[::-1])
    y = X / R[..., None]  # dlog rho_n
    g += _sum0(Hc[..., None] * y[:N])
    # second derivatives without their recurrence: sum_n w_n X2_n = sum_m lam_m A2_m + mu X2_N
    # with the adjoint lam_m = w_m + B_{m-1} lam_{m-1}, w_n = Hc_n / rho_n, and
    # A2_m = d2alpha_m - r_m [d2log(beta_m) + v v^T + y' y'^T], v = dlog(beta_m) - y', y' = y_{m+1}
    w = Hc / R[:N]
    ws, Bs = w.unbind(0), B.unbind(0)
    lams = [ws[0]]
    for t in range(1, N):
        lams.append(torch.addcmul(ws[t], Bs[t - 1], lams[-1]))
    lam = torch.stack(lams)
    yp = y[1:]
    v = lb - yp
    lr = lam * r

    # sum_n [lr_n (v_n v_n^T + y'_n y'_n^T) + Hc_n y_n y_n^T]: the six distinct entries of the
    # symmetric sum, all in one sum over n
    i, j = _PAIRS
    yn = y[:N]
    six = lr[..., None] * (v[..., i] * v[..., j] + yp[..., i] * yp[..., j])
    six = _sum0(six + Hc[..., None] * (yn[..., i] * yn[..., j]))
    H2 = -six[:, _SYM]
    s2 = _sum0(lr * (ic * ic + ic1 * ic1))
    H2[:, :2, :2] -= s2[:, None, None]
    H2[:, 0, 0] += _sum0(lr * iq * iq)
    H2[:, 2, 2] += _sum0(lr * (1.0 / k) ** 2)
    H2[:, :2, :2] += (2.0 * k * _sum0(lam * ic**3))[:, None, None]
    c2 = _sum0(lam * ic * ic)
    H2[:, :2, 2] -= c2[:, None]
    H2[:, 2, :2] -= c2[:, None]
    d2lr = Hs[0] - Hs[1]
    mu = B[N - 1] * lam[N - 1]
    H2 += (mu * R[N])[:, None, None] * (d2lr + dlr[:, :, None] * dlr[:, None, :])
    return -ll, -(g), -(H + H2)


def histogram_nll(
    k_on: Tensor, k_off: Tensor, k_syn: Tensor, hist: Tensor, *, order: int = 2
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    r"""Negative log-likelihood of count histograms, with its exact gradient and Hessian.

    Row :math:`p` is :math:`-\sum_n h_{pn} \log P(n \mid a_p, b_p, k_p)` (the same quantity as
    ``-(hist * log_pmf_table(...)).sum(1)``, to ~1e-12 relative), and with ``order=2`` its
    gradient ``[P, 3]`` and Hessian ``[P, 3, 3]`` in :math:`(k_{on}, k_{off}, k_{syn})`, in
    closed form rather than by automatic differentiation, all in one downward pass:

    - the top of :func:`log_pmf_table`'s recurrence, :math:`\log M_N` and :math:`\log M_{N+1}`,
      and its derivatives come from the series (:func:`_top_series`);
    - :math:`\rho_n = \alpha_n - \beta_n / \rho_{n+1}` gives first derivatives by the linear
      recurrence :math:`\dot\rho_n = \dot\alpha_n - (\beta_n/\rho_{n+1})\,\dot{\log\beta_n} +
      (\beta_n/\rho_{n+1}^2)\,\dot\rho_{n+1}`; the second derivatives enter the likelihood only
      through a weighted sum over :math:`n`, which one scalar adjoint recurrence gives without
      the :math:`3\times 3` recurrence itself;
    - the Gamma-function factors are sums :math:`\sum_i S_i \log(a+i)` over the numbers
      :math:`S_i` of cells with a count above :math:`i`.

    Rows are grouped by their largest count (rounded up to :math:`2^j - 1`, at least 127) and
    cut into blocks of at most ``_BLOCK`` rows x counts; the loops over counts are one fused
    tensor operation per count for all rows. A row's value does not depend on the other rows
    passed with it (the same bits alone or in any batch), so neither does a fit.

    Args:
        k_on: ``[P]`` positive rates; likewise ``k_off``, ``k_syn``.
        hist: ``[P, n_max + 1]`` non-negative weights (cells per count).
        order: 0 for the value only, 2 for value, gradient and Hessian.

    Returns:
        ``(nll [P], grad [P, 3] or None, hessian [P, 3, 3] or None)``, float64.

    Raises:
        ValueError: non-positive or non-finite rates, a histogram that is not ``[P, n + 1]``
            with non-negative finite entries, a count above :data:`MAX_COUNT` with a
            non-zero weight, ``order`` not 0 or 2.

    >>> h = torch.tensor([[3.0, 1.0, 0.0, 2.0]])
    >>> a, b, k = torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([9.0])
    >>> f, g, H = histogram_nll(a, b, k, h)
    >>> ref = -(h * log_pmf_table(a, b, k, 3)).sum(1)
    >>> bool(torch.allclose(f, ref, rtol=1e-12)), g.shape, H.shape
    (True, torch.Size([1, 3]), torch.Size([1, 3, 3]))
    """
    a, b, k = (_as_param(v, n) for v, n in ((k_on, "k_on"), (k_off, "k_off"), (k_syn, "k_syn")))
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in (0, 2):
        raise ValueError(f"order must be the int 0 or 2, got {order!r}")
    try:
        h = _on_cpu(torch.as_tensor(hist), "hist")
        if h.dtype == torch.bool or h.is_complex():
            raise TypeError(f"hist must hold real non-negative weights, got dtype {h.dtype}")
        h = h.to(DTYPE)
    except (TypeError, ValueError, RuntimeError) as exc:
        if "hist must" in str(exc):
            raise
        raise TypeError(
            f"hist must be a [P, n_max + 1] tensor of weights, got {type(hist).__name__}"
        ) from None
    if h.dim() != 2 or h.shape[1] == 0 or any(t.shape != (h.shape[0],) for t in (a, b, k)):
        raise ValueError(
            f"hist must be [P, n_max + 1] with k_on, k_off, k_syn of shape [P], got hist "
            f"{list(h.shape)} and rates {list(a.shape)}, {list(b.shape)}, {list(k.shape)}"
        )
    if not bool(torch.isfinite(h).all()) or bool((h < 0).any()):
        raise ValueError("hist must hold non-negative finite weights")
    if h.shape[1] - 1 > MAX_COUNT:
        top = int(torch.where(h > 0, torch.arange(h.shape[1]), 0).max())
        if top > MAX_COUNT:
            raise _too_large("hist's largest count", float(top))
        h = h[:, : MAX_COUNT + 1]
    P = h.shape[0]
    f = torch.empty(P, dtype=DTYPE)
    g = torch.empty(P, 3, dtype=DTYPE) if order else None
    H = torch.empty(P, 3, 3, dtype=DTYPE) if order else None
    if P == 0:
        return f, g, H
    # each row runs its recurrence from its own bucket's top, 2^j - 1 >= its largest count (at
    # least 127: a pass costs about as much as 100 counts), never from its batch's: a row's
    # value then does not depend on the rows beside it, so a fit does not depend on its chunk
    top = torch.where(h > 0, torch.arange(h.shape[1]), 0).amax(1)
    bucket = torch.where(top > 0, (2 ** torch.ceil(torch.log2(top + 1.0))).long() - 1, 0)
    bucket = torch.where(top > 0, bucket.clamp_min(127), 0)
    for N in torch.unique(bucket).tolist():
        idx = (bucket == N).nonzero().flatten()
        step = max(1, _BLOCK // (N + 1))
        for s in range(0, idx.numel(), step):
            rows = idx[s : s + step]
            hr = h[rows, : N + 1]
            if hr.shape[1] < N + 1:
                hr = torch.nn.functional.pad(hr, (0, N + 1 - hr.shape[1]))
            out = _nll_block(a[rows], b[rows], k[rows], hr, order)
            f[rows] = out[0]
            if order:
                g[rows], H[rows] = out[1], out[2]
    return f, g, H
