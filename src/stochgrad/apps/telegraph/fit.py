r"""Maximum-likelihood burst kinetics per gene, batched over genes, with profile intervals.

:func:`fit_genes` maximises every gene's exact log-likelihood at once (a batched damped Newton
method in log-parameters inside :data:`BOUNDS`, started from :func:`moment_estimates`), computes
95 % profile-likelihood intervals for burst frequency :math:`k_{on}` and burst size
:math:`k_{syn}/k_{off}`, and flags each quantity as structurally or practically
non-identifiable (:data:`MAX_CI_RATIO`). Reference: Larsson et al., *Nature* 565, 251-254 (2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad.apps.telegraph.likelihood import DTYPE, _as_counts, log_pmf_table

__all__ = ["BOUNDS", "MAX_CI_RATIO", "GeneFits", "fit_genes", "moment_estimates"]

BOUNDS = {"k_on": (1e-3, 1e3), "k_off": (1e-3, 1e3), "k_syn": (1.0, 1e4)}
"""Box constraints of the fit, those of the ``txburst`` reference script."""

_LOG_LO = torch.tensor([math.log(BOUNDS[k][0]) for k in ("k_on", "k_off", "k_syn")], dtype=DTYPE)
_LOG_HI = torch.tensor([math.log(BOUNDS[k][1]) for k in ("k_on", "k_off", "k_syn")], dtype=DTYPE)


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

    >>> from stochgrad.apps.telegraph import sample_stationary
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
