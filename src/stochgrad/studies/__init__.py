"""Studies: the experiments built on the applications and the core.

A study loops over estimators × seeds × settings, checkpoints each finished cell through the
shared :mod:`~stochgrad.studies.scaffold`, and returns dataclasses; printing, plotting and files
are the command line's (:mod:`stochgrad.cli`).

- :mod:`~stochgrad.studies.variance`: closed forms, quadrature and Monte Carlo variances of the
  Gaussian estimators (``stochgrad demo``, ``stochgrad compare``);
- :mod:`~stochgrad.studies.relax_toy`: the RELAX toy problem (``stochgrad relax-toy``);
- one module per application study (recovery of telegraph kinetics, the discrete VAE, ...).
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat

# ``stochgrad.studies`` was the module now at ``stochgrad.studies.variance``
_VARIANCE_NAMES = (
    "COMPARE_ESTIMATORS",
    "FAMILIES",
    "Family",
    "LABELS",
    "MonteCarlo",
    "Moments",
    "Objective",
    "SHORT_LABELS",
    "TAIL",
    "cosine",
    "gaussian_bump",
    "maxwell_uniform_expectation",
    "monte_carlo",
    "normal_expectation",
    "quadratic",
    "quadratic_gradient",
    "quadratic_loo_sample_variance_mean",
    "quadratic_variance",
    "quadrature_moments",
    "quadrature_variance",
    "rayleigh_expectation",
    "run_estimator",
    "variance_standard_error",
)
_MOVED = {name: ("stochgrad.studies.variance", name) for name in _VARIANCE_NAMES}
_MOVED["ESTIMATORS"] = ("stochgrad.studies.variance", "VARIANCE_ESTIMATORS")
_MOVED["cell_generator"] = ("stochgrad.studies.scaffold", "cell_generator")
_MOVED["relative_difference"] = ("stochgrad.studies.scaffold", "relative_difference")


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
