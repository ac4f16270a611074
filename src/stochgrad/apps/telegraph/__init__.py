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

The modules:

- :mod:`~stochgrad.apps.telegraph.likelihood`: :func:`log_pmf`, :func:`log_pmf_table`,
  :func:`log_kummer_m` (exact to ~1e-12 in every regime, differentiable), :func:`histogram_nll`
  (with its exact gradient and Hessian) and :data:`MAX_COUNT`.
- :mod:`~stochgrad.apps.telegraph.reference`: a ``txburst``-style per-gene fit and
  :func:`pmf_gauss_jacobi` (the reference script's quadrature, for contrast).
- :mod:`~stochgrad.apps.telegraph.simulation`: :func:`simulate` (exact Gillespie, all cells
  advancing together), :func:`sample_stationary`, :func:`simulate_table`.
- :mod:`~stochgrad.apps.telegraph.fisher`: :func:`fisher_gradient` /
  :func:`fisher_gradient_exact`, the gradient of :math:`\log P(n)` as a posterior expectation
  over the hidden promoter activity (Fisher's identity), sampled and exact: the complete-data
  log-likelihood goes to the core's :func:`stochgrad.fisher.fisher_gradient`, and the sampled
  result (:class:`FisherEstimate`) is a :class:`~stochgrad.gradient_estimate.GradientEstimate`.
- :mod:`~stochgrad.apps.telegraph.fit`: :func:`fit_genes`, maximum likelihood per gene batched
  over genes, profile-likelihood intervals for burst frequency and size, structural and
  practical identifiability flags (:data:`MAX_CI_RATIO`).
- :mod:`~stochgrad.apps.telegraph.chunked`: :func:`fit_counts`, chunks of genes across
  processes or Ray with a progress callback and a resumable checkpoint.
- :mod:`~stochgrad.apps.telegraph.io`: :func:`read_counts`, :func:`read_kinetics`.

The parameter-recovery study is :mod:`stochgrad.studies.telegraph_recovery`; the command
``stochgrad telegraph fit|simulate|recover`` is :mod:`stochgrad.cli.telegraph`.
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.telegraph.chunked import (
    CHUNK_SIZE,
    CountsInfo,
    FitConfig,
    auto_chunk_size,
    describe_counts,
    fit_counts,
)
from stochgrad.apps.telegraph.fisher import FisherEstimate, fisher_gradient, fisher_gradient_exact
from stochgrad.apps.telegraph.fit import (
    BOUNDS,
    MAX_CI_RATIO,
    MIN_CELLS,
    FewCellsWarning,
    GeneFits,
    fit_genes,
    moment_estimates,
)
from stochgrad.apps.telegraph.intervals import profile_intervals
from stochgrad.apps.telegraph.io import read_counts, read_kinetics
from stochgrad.apps.telegraph.likelihood import (
    DTYPE,
    MAX_COUNT,
    MAX_RATE,
    histogram_nll,
    log_kummer_m,
    log_pmf,
    log_pmf_table,
)
from stochgrad.apps.telegraph.reference import pmf_gauss_jacobi
from stochgrad.apps.telegraph.simulation import sample_stationary, simulate, simulate_table

__all__ = [
    "BOUNDS",
    "CHUNK_SIZE",
    "DTYPE",
    "MAX_CI_RATIO",
    "MAX_COUNT",
    "MAX_RATE",
    "MIN_CELLS",
    "CountsInfo",
    "FewCellsWarning",
    "FisherEstimate",
    "FitConfig",
    "GeneFits",
    "auto_chunk_size",
    "describe_counts",
    "fisher_gradient",
    "fisher_gradient_exact",
    "fit_counts",
    "fit_genes",
    "histogram_nll",
    "log_kummer_m",
    "log_pmf",
    "log_pmf_table",
    "moment_estimates",
    "pmf_gauss_jacobi",
    "profile_intervals",
    "read_counts",
    "read_kinetics",
    "sample_stationary",
    "simulate",
    "simulate_table",
]

_STUDY = "stochgrad.studies.telegraph_recovery"
_CLI = "stochgrad.cli.telegraph"

#: names that moved out of the application (removed in the next release)
_MOVED = {
    "RecoveryResult": (_STUDY, "RecoveryResult"),
    "recovery_study": (_STUDY, "recovery_study"),
    "recovery_markdown": (_CLI, "recovery_markdown"),
    "plot_recovery": (_CLI, "plot_recovery"),
    "write_fits": (_CLI, "write_fits"),
}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
