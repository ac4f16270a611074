r"""Black-box variational inference for Bayesian logistic regression, five gradient estimators.

Model (Mohamed, Rosca, Figurnov & Mnih, JMLR 2020, Sec. 8, code ``mc_gradients/bayes_lr``): the
breast-cancer data of scikit-learn (:func:`load_data`: 569 points, 30 standardised features and
a bias column, :math:`D = 31`), labels :math:`y_n \in \{-1, +1\}`, prior
:math:`w \sim \mathcal N(0, I_D)`, likelihood :math:`p(y_n \mid x_n, w) = \sigma(y_n x_n^\top w)`.
The variational family is mean-field Gaussian, :math:`q(w) = \mathcal N(\mu,
\operatorname{diag}\sigma^2)` with :math:`\sigma = e^{\lambda}` (:math:`\lambda` = ``log_sigma``),
initialised at :math:`\mu = 0, \lambda = 0`. The evidence lower bound is

.. math::

    \mathcal L(\mu, \lambda) = \sum_{n=1}^N \mathbb{E}_{q}\big[\log\sigma(y_n x_n^\top w)\big]
      - \mathrm{KL}(q \,\|\, p), \qquad
    \mathrm{KL} = \tfrac12 \sum_d \big(\sigma_d^2 + \mu_d^2 - 1 - 2\lambda_d\big).

The KL term and its gradient are in closed form. The gradient of the expected log-likelihood of
a minibatch :math:`B` (scaled by :math:`N / |B|`), :math:`\nabla_{\mu,\lambda}
\mathbb{E}_q[f_B(w)]`, is estimated by the library's estimators (:data:`ELBO_ESTIMATORS`): the score
function without baseline (``score``), with the leave-one-out baseline (``loo``), with the
delta-method control variate (``delta``), the pathwise estimator (``pathwise``) and the
measure-valued estimator (``mvd``).

Cost accounting (:func:`evaluations_per_step`): one *evaluation* is :math:`f_B` at one point
:math:`w`. The score-function estimators use one per sample; the delta method adds the gradient
and the Hessian of :math:`f_B` at :math:`\mu` (one evaluation and :math:`D` backward passes, not
counted); the pathwise estimator uses one evaluation and one gradient per sample; the
measure-valued estimator uses :math:`2 \times 2D` (two coupled points per scalar parameter,
:math:`2D` parameters) per sample. Two budgets are offered (:class:`BBVIConfig` ``budget``):
``"samples"``, every estimator draws the same number :math:`S` of samples from :math:`q` (the
paper's setup: the measure-valued estimator then costs :math:`4DS` evaluations), and
``"evaluations"``, every estimator gets the :math:`4DS` evaluations the measure-valued
estimator uses with :math:`S` samples (the others then draw :math:`4DS` samples).

Reference (:func:`optimal_elbo`): each datum's expectation depends on the one-dimensional
:math:`t_n = x_n^\top w \sim \mathcal N(x_n^\top\mu,\; \sum_d x_{nd}^2 \sigma_d^2)`, so
Gauss-Hermite quadrature (:func:`quadrature_elbo`) gives :math:`\mathcal L` to about
:math:`10^{-8}`; L-BFGS (scipy) on it gives the optimal mean-field ELBO and its
:math:`(\mu, \sigma)`. Training curves are evaluated exactly by this quadrature.

Modules: :mod:`~stochgrad.apps.vi.model` (data, likelihood, q, KL),
:mod:`~stochgrad.apps.vi.optimum` (the exact ELBO by quadrature and the mean-field optimum),
:mod:`~stochgrad.apps.vi.estimators` (the ELBO-gradient estimators, their cost and variance),
:mod:`~stochgrad.apps.vi.trainer` (:func:`train`, with ``progress=`` and a resumable state). The
comparison of the estimators is the study :mod:`stochgrad.studies.bbvi`; the command is
``stochgrad bbvi`` (:mod:`stochgrad.cli.bbvi`).

References:
    Mohamed, Rosca, Figurnov & Mnih (2020), "Monte Carlo gradient estimation in machine
    learning", JMLR 21(132), Sec. 8; Ranganath, Gerrish & Blei (2014), "Black box variational
    inference", AISTATS; Paisley, Blei & Jordan (2012), ICML (delta-method control variate).

>>> X, y = load_data()
>>> tuple(X.shape), int((y == 1).sum())
((569, 31), 357)
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.vi.estimators import (
    BUDGETS,
    ELBO_ESTIMATORS,
    elbo_gradient,
    evaluations_per_step,
    expected_loglik_gradient,
    gradient_variance,
    samples_per_step,
)
from stochgrad.apps.vi.model import DTYPE, kl_to_prior, load_data, log_likelihood, variational
from stochgrad.apps.vi.optimum import Optimum, mc_elbo, optimal_elbo, quadrature_elbo
from stochgrad.apps.vi.trainer import (
    OPTIMIZERS,
    SCHEDULES,
    BBVICheckpoint,
    BBVIConfig,
    BBVIRun,
    train,
)

__all__ = [
    "BUDGETS",
    "DTYPE",
    "ELBO_ESTIMATORS",
    "OPTIMIZERS",
    "SCHEDULES",
    "BBVICheckpoint",
    "BBVIConfig",
    "BBVIRun",
    "Optimum",
    "elbo_gradient",
    "evaluations_per_step",
    "expected_loglik_gradient",
    "gradient_variance",
    "kl_to_prior",
    "load_data",
    "log_likelihood",
    "mc_elbo",
    "optimal_elbo",
    "quadrature_elbo",
    "samples_per_step",
    "train",
    "variational",
]

# names that moved (removed in the next release)
_MOVED = {
    "add_arguments": ("stochgrad.cli.bbvi", "add_arguments"),
    "run": ("stochgrad.cli.bbvi", "run"),
    "ESTIMATORS": ("stochgrad.apps.vi.estimators", "ELBO_ESTIMATORS"),
    "BBVIResult": ("stochgrad.studies.bbvi", "BBVIResult"),
    "VarianceTable": ("stochgrad.studies.bbvi", "VarianceTable"),
    "run_bbvi": ("stochgrad.studies.bbvi", "run_bbvi"),
    "variance_table": ("stochgrad.studies.bbvi", "variance_table"),
}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
