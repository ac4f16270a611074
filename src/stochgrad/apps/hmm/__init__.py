r"""Hidden Markov models: forward-backward, Viterbi, and the likelihood gradient by Fisher's identity.

A hidden Markov model with :math:`K` states has a start distribution :math:`\pi`, a transition
matrix :math:`P` and per-state emissions :math:`p(y_t \mid z_t = k)`, Poisson (rate
:math:`\lambda_k`) or Gaussian with diagonal covariance (means :math:`\mu_k`, standard deviations
:math:`\sigma_k`). Everything here works on a batch of equal-length sequences ``[B, T]`` (Poisson)
or ``[B, T, D]`` (Gaussian); forward-backward, Viterbi and FFBS loop over time in log space,
and EM and the gradient fit replace that loop by a parallel prefix scan over the stacked
restarts.

- :mod:`~stochgrad.apps.hmm.model`: :class:`HMM`, the unconstrained parametrisation (start
  logits, transition-row logits, log-rates or means and log-sds);
- :mod:`~stochgrad.apps.hmm.emissions`: emission log-probabilities;
- :mod:`~stochgrad.apps.hmm.inference`: forward-backward, Viterbi, forward-filtering
  backward-sampling;
- :mod:`~stochgrad.apps.hmm.gradient`: the gradient of the marginal likelihood by Fisher's
  identity :math:`\nabla_\theta \log p(y) = \mathbb E_{z \mid y}[\nabla_\theta \log p(y, z)]`,
  computed by the core's :func:`stochgrad.fisher_gradient`: exact from the forward-backward
  marginals of the model's factors (:func:`likelihood_gradient`) or by Monte Carlo over FFBS
  paths (:func:`sampled_likelihood_gradient`), each a
  :class:`~stochgrad.gradient_estimate.GradientEstimate`;
- :mod:`~stochgrad.apps.hmm.em`: EM (Baum-Welch) from many starts at once, resumable;
- :mod:`~stochgrad.apps.hmm.gradient_fit`: L-BFGS on the Fisher gradient, many starts at once;
- :mod:`~stochgrad.apps.hmm.fitting`: seeded random restarts, checkpointed (:func:`fit_hmm`);
- :mod:`~stochgrad.apps.hmm.data`: a series from a CSV file, the earthquake counts.

References:
    Baum, Petrie, Soules & Weiss (1970), "A maximization technique occurring in the statistical
    analysis of probabilistic functions of Markov chains", Ann. Math. Statist. 41;
    Rabiner (1989), "A tutorial on hidden Markov models", Proc. IEEE 77;
    Fisher (1925), "Theory of statistical estimation" (the score identity); Louis (1982), JRSS B 44;
    Frühwirth-Schnatter (1994) and Carter & Kohn (1994) (forward-filtering backward-sampling);
    Zucchini & MacDonald (2009), *Hidden Markov Models for Time Series* (the earthquake series).

>>> y = load_earthquakes()
>>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 25.0])
>>> round(float(log_likelihood(hmm, y)), 3) < 0
True
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.hmm.data import TIME_COLUMNS, earthquakes_path, load_earthquakes, load_series
from stochgrad.apps.hmm.em import EMState, baum_welch, baum_welch_batched
from stochgrad.apps.hmm.emissions import emission_log_prob
from stochgrad.apps.hmm.fit_result import FitResult
from stochgrad.apps.hmm.fitting import FIT_METHODS, fit_hmm, information_criteria, random_hmm
from stochgrad.apps.hmm.gradient import (
    _deprecated_complete_data_score,
    joint_log_prob,
    likelihood_gradient,
    sampled_likelihood_gradient,
)
from stochgrad.apps.hmm.gradient_fit import fit_gradient, fit_gradient_batched
from stochgrad.apps.hmm.inference import (
    Posterior,
    forward_backward,
    log_likelihood,
    sample_posterior,
    viterbi,
)
from stochgrad.apps.hmm.model import EMISSIONS, HMM

__all__ = [
    "EMISSIONS",
    "FIT_METHODS",
    "HMM",
    "TIME_COLUMNS",
    "EMState",
    "FitResult",
    "Posterior",
    "baum_welch",
    "baum_welch_batched",
    "earthquakes_path",
    "emission_log_prob",
    "fit_gradient",
    "fit_gradient_batched",
    "fit_hmm",
    "forward_backward",
    "information_criteria",
    "joint_log_prob",
    "likelihood_gradient",
    "load_earthquakes",
    "load_series",
    "log_likelihood",
    "random_hmm",
    "sample_posterior",
    "sampled_likelihood_gradient",
    "viterbi",
]

# moved or replaced names (removed in the next release): the command-line functions are in the
# command line's package; the Fisher-identity gradients are computed by the core and return a
# GradientEstimate (the old tuple of fisher_gradient is its .grad)
_MOVED = {
    "add_fit_arguments": ("stochgrad.cli.hmm", "add_fit_arguments"),
    "run_fit": ("stochgrad.cli.hmm", "run_fit"),
    "fisher_gradient": ("stochgrad.apps.hmm.gradient", "likelihood_gradient"),
    "monte_carlo_gradient": ("stochgrad.apps.hmm.gradient", "sampled_likelihood_gradient"),
}


def __getattr__(name: str) -> Any:
    if name == "complete_data_score":  # replaced by joint_log_prob and the core's gradients
        return _deprecated_complete_data_score(__name__)
    return _compat.moved_attribute(__name__, name, _MOVED)
