r"""Bayesian experimental design: expected information gain (EIG) and its gradient in the design.

The expected information gain of a design :math:`d` is the mutual information between the
parameters :math:`\theta` and the outcome :math:`y`,

.. math::

    \mathrm{EIG}(d) = \mathbb E_{p(\theta)\,p(y\mid\theta,d)}
        \big[\log p(y\mid\theta,d) - \log p(y\mid d)\big],
    \qquad p(y\mid d) = \mathbb E_{p(\theta)}[p(y\mid\theta,d)].

- :mod:`~stochgrad.apps.design.models`: :class:`LinearGaussianModel` (closed-form EIG) and
  :class:`LogisticDoseResponse` (quadrature EIG), the references the estimators are tested on;
- :mod:`~stochgrad.apps.design.eig`: :func:`nmc_eig` (nested Monte Carlo, an upper bound in
  expectation), :func:`pce_eig` (prior contrastive estimation, a lower bound) and
  :func:`eig_gradient` (their design gradients, score function or pathwise, built on the
  engine's :func:`stochgrad.surrogate_loss`; also ``pce_eig(..., gradient=...)``, whose
  :class:`EIGEstimate` carries the gradient as a :class:`~stochgrad.GradientEstimate`);
- :mod:`~stochgrad.apps.design.optimize`: :func:`optimize_design`, projected Adam ascent of a
  bound with a ``progress=`` callback and a checkpoint that resumes exactly.

The comparison of the estimators against the references (``stochgrad design eig``) is the study
:mod:`stochgrad.studies.design`; the command line is :mod:`stochgrad.cli.design`.

References:
    Rainforth, Cornish, Yang, Warrington & Wood (ICML 2018), "On nesting Monte Carlo estimators";
    Foster, Jankowiak, O'Meara, Teh & Rainforth (AISTATS 2020), "A unified stochastic gradient
    approach to designing Bayesian-optimal experiments".

>>> import torch
>>> model = LinearGaussianModel(torch.diag(torch.tensor([1.0, 2.25], dtype=torch.float64)))
>>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
>>> round(float(model.exact_eig(X)), 4)
1.1989
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.design.eig import (
    BOUNDS,
    GRADIENT_METHODS,
    EIGEstimate,
    eig_gradient,
    nmc_eig,
    pce_eig,
)
from stochgrad.apps.design.models import (
    PYRO_LINEAR_DESIGN,
    PYRO_PRIOR_SD,
    DesignModel,
    LinearGaussianModel,
    LogisticDoseResponse,
    anisotropic_prior_cov,
    quadrature_optimum,
    uniform_doses,
)
from stochgrad.apps.design.optimize import (
    CONSTRAINTS,
    DESIGN_MODELS,
    DesignConfig,
    OptimizationResult,
    Problem,
    make_problem,
    optimize_design,
    project,
)

__all__ = [
    "BOUNDS",
    "CONSTRAINTS",
    "DESIGN_MODELS",
    "GRADIENT_METHODS",
    "PYRO_LINEAR_DESIGN",
    "PYRO_PRIOR_SD",
    "DesignConfig",
    "DesignModel",
    "EIGEstimate",
    "LinearGaussianModel",
    "LogisticDoseResponse",
    "OptimizationResult",
    "Problem",
    "anisotropic_prior_cov",
    "eig_gradient",
    "make_problem",
    "nmc_eig",
    "optimize_design",
    "pce_eig",
    "project",
    "quadrature_optimum",
    "uniform_doses",
]

# the command-line functions moved to the command line's package (removed in the next release)
_MOVED = {
    "add_eig_arguments": ("stochgrad.cli.design", "add_eig_arguments"),
    "run_eig": ("stochgrad.cli.design", "run_eig"),
    "add_optimize_arguments": ("stochgrad.cli.design", "add_optimize_arguments"),
    "run_optimize": ("stochgrad.cli.design", "run_optimize"),
}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
