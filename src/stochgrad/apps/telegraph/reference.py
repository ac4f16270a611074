r"""A ``txburst``-style fit, one gene at a time: the reference the batched fit is checked against.

A reimplementation (not a copy) of the maximum-likelihood step of the ``txburstML.py`` script
of Larsson et al., Genomic encoding of transcriptional burst kinetics, *Nature* 565, 251-254
(2019), github.com/sandberg-lab/txburst:

- likelihood: :math:`-\sum_{cells} \log(P(n) + 10^{-10})` with :math:`P(n)` by 50-node
  Gauss-Jacobi quadrature (:func:`pmf_gauss_jacobi`),
  evaluated cell by cell as the script does;
- optimiser: ``scipy.optimize.minimize(method="L-BFGS-B")`` with scipy's defaults (gradient by
  finite differences) inside the box :data:`TXBURST_BOUNDS`;
- start: the method-of-moments estimate (:func:`txburst_start`; the formulas of
  :func:`~stochgrad.apps.telegraph.fit.moment_estimates`), replaced by
  :data:`TXBURST_FALLBACK` where a moment ratio divides by zero or the estimate is NaN or has a
  negative component; L-BFGS-B moves a start outside the box onto it;
- missing cells (NaN) are left out, as the script does.

:func:`fit_genes_txburst` runs one job per gene through :func:`stochgrad.parallel.map_items`
(the script uses joblib), so the reference runs on as many processes as the batched fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "TXBURST_BOUNDS",
    "TXBURST_FALLBACK",
    "ReferenceFits",
    "fit_gene_txburst",
    "fit_genes_txburst",
    "pmf_gauss_jacobi",
    "txburst_nll",
    "txburst_start",
]


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
        k_on: positive rates; likewise ``k_off``, ``k_syn``.
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


TXBURST_BOUNDS = ((1e-3, 1e3), (1e-3, 1e3), (1.0, 1e4))
"""``((k_on), (k_off), (k_syn))`` lower and upper bounds of the script's L-BFGS-B box."""

TXBURST_FALLBACK = (10.0, 10.0, 10.0)
"""The script's start where the moment estimate is unusable."""


def _as_table(counts: Any, name: str = "counts") -> np.ndarray:
    """Counts as a float64 ``[G, C]`` array (NaN: a missing cell), checked."""
    if hasattr(counts, "detach"):
        counts = counts.detach().cpu().numpy()
    x = np.asarray(counts)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.number)):
        raise TypeError(f"{name} must hold non-negative integer counts, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be [cells] or [genes, cells], got shape {list(x.shape)}")
    seen = ~np.isnan(x)
    bad = seen & (~np.isfinite(x) | (x < 0) | (x != np.round(x)))
    if bad.any():
        g, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must hold non-negative integers (NaN marks a missing cell), got "
            f"{x[g, c]:g} at gene {g}, cell {c}"
        )
    few = np.flatnonzero(seen.sum(1) < 2)
    if few.size:
        raise ValueError(f"{name}: genes {few[:5].tolist()} have fewer than 2 observed cells")
    empty = np.flatnonzero(np.nansum(x, 1) == 0)
    if empty.size:
        raise ValueError(f"{name}: genes {empty[:5].tolist()} have only zero counts")
    return x


def txburst_start(counts: Any) -> np.ndarray:
    r"""The script's start per gene: moments, or :data:`TXBURST_FALLBACK`; not clipped.

    With :math:`m_i` the factorial moments of the observed cells, :math:`r_1 = m_1`,
    :math:`r_2 = m_2/m_1`, :math:`r_3 = m_3/m_2`, :math:`D = r_1r_2 - 2r_1r_3 + r_2r_3`,
    :math:`E = r_1 - 2r_2 + r_3`: :math:`k_{on} = 2r_1(r_3-r_2)/D`,
    :math:`k_{off} = 2(r_3-r_2)(r_1-r_3)(r_2-r_1)/(DE)`, :math:`k_{syn} = (2r_1r_3 - r_1r_2 -
    r_2r_3)/E`. The fallback is used where :math:`m_1`, :math:`m_2`, :math:`D` or :math:`E` is
    zero, or where the estimate is NaN or has a negative component (a zero component is kept:
    L-BFGS-B then starts on the bound).

    Args:
        counts: ``[C]`` or ``[G, C]`` non-negative integer counts; NaN marks a missing cell.

    Returns:
        ``[G, 3]`` float64 ``(k_on, k_off, k_syn)`` (``G = 1`` for one gene).

    Raises:
        ValueError: negative or non-integer counts, fewer than 2 observed cells, only zeros.

    >>> txburst_start([0, 0, 0, 5]).tolist()  # r = (1.25, 4, 3): k_on < 0, so the fallback
    [[10.0, 10.0, 10.0]]
    """
    x = _as_table(counts)
    with np.errstate(all="ignore"):
        m1 = np.nanmean(x, 1)
        m2 = np.nanmean(x * (x - 1), 1)
        m3 = np.nanmean(x * (x - 1) * (x - 2), 1)
        r1, r2, r3 = m1, m2 / m1, m3 / m2
        D = r1 * r2 - 2 * r1 * r3 + r2 * r3
        E = r1 - 2 * r2 + r3
        est = np.stack(
            (
                2 * r1 * (r3 - r2) / D,
                2 * (r3 - r2) * (r1 - r3) * (r2 - r1) / (D * E),
                (2 * r1 * r3 - r1 * r2 - r2 * r3) / E,
            ),
            1,
        )
    unusable = (m1 == 0) | (m2 == 0) | (D == 0) | (D * E == 0) | (E == 0)
    unusable |= np.isnan(est).any(1) | (est < 0).any(1)
    return np.where(unusable[:, None], np.array(TXBURST_FALLBACK), est)


def txburst_nll(params: Any, values: np.ndarray) -> float:
    r"""The script's objective: :math:`-\sum_i \log(P(n_i) + 10^{-10})`, :math:`P` by 50-node
    Gauss-Jacobi quadrature.

    >>> round(txburst_nll([1.0, 1.0, 10.0], np.array([0.0, 3.0, 9.0])), 6) > 0
    True
    """
    k_on, k_off, k_syn = (float(v) for v in params)
    return -float(np.sum(np.log(pmf_gauss_jacobi(values, k_on, k_off, k_syn) + 1e-10)))


def fit_gene_txburst(counts: Any) -> tuple[np.ndarray, float, np.ndarray, bool, int]:
    """One gene as the script fits it.

    Args:
        counts: ``[C]`` counts of one gene; NaN marks a missing cell.

    Returns:
        ``(estimate [3], objective at it, start [3], L-BFGS-B success, function evaluations)``.

    Raises:
        ValueError: as :func:`txburst_start`, or more than one gene.

    >>> est, nll, start, ok, nfev = fit_gene_txburst([0, 2, 7, 1, 0, 12, 3, 0])
    >>> est.shape, bool(nll > 0)
    ((3,), True)
    """
    from scipy.optimize import minimize

    x = _as_table(counts)
    if x.shape[0] != 1:
        raise ValueError(f"counts must hold one gene, got {x.shape[0]}")
    values = x[0][~np.isnan(x[0])]
    start = txburst_start(x)[0]
    lo = np.array([b[0] for b in TXBURST_BOUNDS])
    hi = np.array([b[1] for b in TXBURST_BOUNDS])
    # L-BFGS-B projects a start outside the box onto it (scipy warns); done here, silently
    res = minimize(
        txburst_nll,
        np.clip(start, lo, hi),
        args=(values,),
        method="L-BFGS-B",
        bounds=TXBURST_BOUNDS,
    )
    return np.asarray(res.x, dtype=np.float64), float(res.fun), start, bool(res.success), res.nfev


@dataclass
class ReferenceFits:
    """Per-gene results of :func:`fit_genes_txburst` (arrays of length ``G``).

    Attributes:
        k_on, k_off, k_syn: the estimates.
        start: ``[G, 3]`` the starts (:func:`txburst_start`, before L-BFGS-B's projection).
        objective: the script's objective (:func:`txburst_nll`) at the estimate.
        success: L-BFGS-B reported convergence.
        evaluations: objective evaluations (finite-difference gradients included).
    """

    k_on: np.ndarray
    k_off: np.ndarray
    k_syn: np.ndarray
    start: np.ndarray
    objective: np.ndarray
    success: np.ndarray
    evaluations: np.ndarray

    @property
    def params(self) -> np.ndarray:
        """``[G, 3]`` estimates ``(k_on, k_off, k_syn)``."""
        return np.stack((self.k_on, self.k_off, self.k_syn), 1)


def fit_genes_txburst(
    counts: Any, *, backend: str = "serial", num_workers: int | None = None
) -> ReferenceFits:
    """:func:`fit_gene_txburst` for every gene, one job per gene.

    Args:
        counts: ``[G, C]`` counts (NaN: a missing cell).
        backend: as in :func:`stochgrad.parallel.map_items`.
        num_workers: as in :func:`stochgrad.parallel.map_items`.

    Returns:
        :class:`ReferenceFits` in the order of the genes.

    Raises:
        ValueError: as :func:`txburst_start`.

    >>> fits = fit_genes_txburst([[0, 2, 7, 1, 0, 12], [1, 1, 0, 3, 2, 0]])
    >>> fits.params.shape
    (2, 3)
    """
    from stochgrad.parallel import map_items

    x = _as_table(counts)
    out = map_items(fit_gene_txburst, list(x), backend=backend, num_workers=num_workers)
    est = np.stack([o[0] for o in out])
    return ReferenceFits(
        k_on=est[:, 0],
        k_off=est[:, 1],
        k_syn=est[:, 2],
        start=np.stack([o[2] for o in out]),
        objective=np.array([o[1] for o in out]),
        success=np.array([o[3] for o in out]),
        evaluations=np.array([o[4] for o in out]),
    )
