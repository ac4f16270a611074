r"""Energy-based models: a Bernoulli-Bernoulli restricted Boltzmann machine, exact where it can be.

The model (Smolensky 1986; Hinton 2002) over visible :math:`v \in \{0,1\}^V` and hidden
:math:`h \in \{0,1\}^H` units, with weights :math:`W` [V, H] and biases :math:`b` [V], :math:`c` [H]:

.. math::

    E(v, h) = -v^\top W h - b^\top v - c^\top h, \qquad
    p(v, h) = e^{-E(v,h)} / Z, \qquad
    F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + v^\top W_{:,j}),

with :math:`p(v) = e^{-F(v)} / Z` (:func:`free_energy`). The log-derivative trick splits the
gradient of the log-likelihood into a *positive phase* (data) and a *negative phase* (model):

.. math::

    \nabla_\theta \log p(v) = -\mathbb E_{h \mid v}[\nabla_\theta E(v, h)]
        + \mathbb E_{(v', h') \sim p}[\nabla_\theta E(v', h')].

The gradient comes from the core: Fisher's identity with the hidden units' exact posterior
marginals (they are conditionally independent given :math:`v`),
:func:`stochgrad.fisher.fisher_gradient`, at the data (positive phase, exact) and at model
samples or chain states (negative phase, one term per sample), in
:func:`~stochgrad.apps.ebm.phases.two_phase_gradient`, a
:class:`~stochgrad.gradient_estimate.GradientEstimate`.

- :mod:`~stochgrad.apps.ebm.model`: :class:`RBM`, energies, conditionals, block Gibbs;
- :mod:`~stochgrad.apps.ebm.phases`: :func:`positive_phase`, :func:`negative_phase`,
  :func:`two_phase_gradient`, through the core;
- :mod:`~stochgrad.apps.ebm.exact`: exact :math:`\log Z`, log-likelihood, samples and gradient
  by enumerating the smaller layer (at most :data:`MAX_ENUMERATE` units);
- :mod:`~stochgrad.apps.ebm.sampling`: the sampled negative phase (exact samples, CD-k);
- :mod:`~stochgrad.apps.ebm.training`: SGD with CD-k or persistent CD (:func:`train_rbm`,
  checkpointed per epoch), and scikit-learn's :class:`~sklearn.neural_network.BernoulliRBM`
  (:func:`fit_sklearn`);
- the digits: :func:`stochgrad.apps.datasets.load_binary_digits`.

The experiments (the bias of CD-k, ours against scikit-learn on the digits) are in
:mod:`stochgrad.studies.rbm`.

References:
    Smolensky (1986), "Information processing in dynamical systems: foundations of harmony
    theory"; Younes (1989), Probability Theory and Related Fields 82; Hinton (2002), "Training
    products of experts by minimizing contrastive divergence", Neural Computation 14;
    Carreira-Perpiñán & Hinton (AISTATS 2005), "On contrastive divergence learning"; Tieleman
    (ICML 2008), "Training restricted Boltzmann machines using approximations to the likelihood
    gradient"; Hinton (2010), "A practical guide to training restricted Boltzmann machines",
    UTML TR 2010-003.

>>> rbm = RBM.init(6, 4, generator=torch.Generator().manual_seed(0), std=1.0)
>>> v = all_binary(6)
>>> float(log_likelihood(rbm, v).exp().sum())  # a normalised distribution over 2^6 states
1.0...
"""

from __future__ import annotations

from typing import Any

import torch  # noqa: F401 - used by the example above

from stochgrad import _compat
from stochgrad.apps.datasets import PIXEL_THRESHOLD, SPLIT_SEED, TEST_SIZE, load_binary_digits
from stochgrad.apps.ebm.exact import (
    MAX_ENUMERATE,
    exact_gradient,
    log_likelihood,
    log_partition,
    sample_model,
)
from stochgrad.apps.ebm.model import (
    DTYPE,
    RBM,
    all_binary,
    energy,
    free_energy,
    gibbs_step,
    hidden_probs,
    visible_probs,
)
from stochgrad.apps.ebm.phases import negative_phase, positive_phase, two_phase_gradient
from stochgrad.apps.ebm.sampling import negative_samples, sampled_gradient
from stochgrad.apps.ebm.training import (
    DEFAULT_CHAINS,
    TRAIN_METHODS,
    TrainConfig,
    TrainResult,
    fit_sklearn,
    train_rbm,
)

__all__ = [
    "DEFAULT_CHAINS",
    "DTYPE",
    "MAX_ENUMERATE",
    "PIXEL_THRESHOLD",
    "RBM",
    "SPLIT_SEED",
    "TEST_SIZE",
    "TRAIN_METHODS",
    "TrainConfig",
    "TrainResult",
    "all_binary",
    "energy",
    "exact_gradient",
    "fit_sklearn",
    "free_energy",
    "gibbs_step",
    "hidden_probs",
    "load_binary_digits",
    "log_likelihood",
    "log_partition",
    "negative_phase",
    "negative_samples",
    "positive_phase",
    "sample_model",
    "sampled_gradient",
    "train_rbm",
    "two_phase_gradient",
    "visible_probs",
]

#: Names that moved out of this package (kept for one release, with a DeprecationWarning).
_MOVED = {
    "cd_bias_study": ("stochgrad.studies.rbm", "cd_bias_study"),
    "add_arguments": ("stochgrad.cli.rbm", "add_arguments"),
    "run": ("stochgrad.cli.rbm", "run"),
    "run_rbm": ("stochgrad.studies.rbm", "run_rbm"),
}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
