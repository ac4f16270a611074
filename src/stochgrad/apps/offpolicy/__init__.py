r"""Off-policy learning from logged bandit data, and what an unobserved confounder does to it.

Logged contextual-bandit data are rounds :math:`(x_i, a_i, r_i, \pi_0(a_i \mid x_i))`: a context,
the action a logging policy :math:`\pi_0` took, the reward it got, and the logging propensity.
A softmax policy :math:`\pi_\theta(a \mid x) \propto \exp(\theta_a^\top \tilde x)`,
:math:`\tilde x = (1, x)`, is learned by gradient ascent on its value
:math:`V(\theta) = \mathbb E_x \sum_a \pi_\theta(a \mid x)\, q(x, a)`, whose gradient is the score
function (log-derivative) identity

.. math::

    \nabla_\theta V(\theta) = \mathbb E_x \sum_a \pi_\theta(a \mid x)\, q(x, a)\,
        \nabla_\theta \log \pi_\theta(a \mid x),

estimated from the logged rounds without ever acting.

- :mod:`~stochgrad.apps.offpolicy.logged`: :class:`LoggedData` (contexts, actions, rewards,
  propensities; the logging policy and the true expected rewards only when known);
- :mod:`~stochgrad.apps.offpolicy.logfile`: :func:`read_log` (a CSV or Parquet log, checked
  row by row) and :func:`log_columns`;
- :mod:`~stochgrad.apps.offpolicy.synthetic`: :class:`SyntheticBandit` (Open Bandit Pipeline
  style) and :class:`ConfoundedBandit` (a hidden confounder of action and reward);
- :mod:`~stochgrad.apps.offpolicy.policy`: the softmax policy, :func:`policy_value` and the
  closed-form :func:`true_gradient`;
- :mod:`~stochgrad.apps.offpolicy.estimators`: :func:`ips_gradient`, :func:`snips_gradient`,
  :func:`dr_gradient` (:class:`~stochgrad.GradientEstimate` s from
  :func:`offpolicy_objective`, an importance-weighted :func:`stochgrad.surrogate_loss` plus,
  for DR, the direct-method term), :func:`importance_weights`, :func:`dm_gradient`;
- :mod:`~stochgrad.apps.offpolicy.evaluation`: :func:`offpolicy_value` (IPS, SNIPS, DR values
  with standard errors) and :func:`on_policy_value`;
- :mod:`~stochgrad.apps.offpolicy.reward_model`: :func:`fit_reward_model` (the direct method's
  reward model) and :func:`cross_fitted_rewards`;
- :mod:`~stochgrad.apps.offpolicy.learners`: :func:`train_policy` and, for a log with nothing
  but contexts, actions, rewards and propensities, :func:`learn_policy` (held-out rounds, a
  cross-fitted reward model for DR, the learned and the logging policy's values).

The learners' comparison over seeds and the confounding demonstration are the studies of
:mod:`stochgrad.studies.offpolicy`; the command line is :mod:`stochgrad.cli.offpolicy`.

References:
    Williams (1992), "Simple statistical gradient-following algorithms", Machine Learning 8;
    Swaminathan & Joachims (JMLR 2015), "Batch learning from logged bandit feedback through
    counterfactual risk minimization"; Swaminathan & Joachims (NeurIPS 2015), "The
    self-normalized estimator for counterfactual learning"; Dudík, Langford & Li (ICML 2011),
    "Doubly robust policy evaluation and learning"; Chernozhukov et al. (2018),
    "Double/debiased machine learning" (cross-fitting); Saito, Aihara, Matsutani & Narita
    (NeurIPS 2021 Datasets and Benchmarks), "Open Bandit Dataset and Pipeline".

>>> import numpy as np
>>> env = SyntheticBandit()
>>> data = env.sample(100, generator=np.random.default_rng(0))
>>> data.contexts.shape, data.expected_rewards.shape
(torch.Size([100, 5]), torch.Size([100, 10]))
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.offpolicy.estimators import (
    OffPolicyObjective,
    dm_gradient,
    dr_gradient,
    importance_weights,
    ips_gradient,
    offpolicy_objective,
    snips_gradient,
)
from stochgrad.apps.offpolicy.evaluation import (
    VALUE_ESTIMATORS,
    ValueEstimate,
    offpolicy_value,
    on_policy_value,
)
from stochgrad.apps.offpolicy.learners import (
    GRADIENT_LEARNERS,
    LEARNERS,
    REWARD_MODELS,
    LearnedPolicy,
    learn_policy,
    split_rounds,
    train_policy,
)
from stochgrad.apps.offpolicy.logfile import LOG_SUFFIXES, log_columns, read_log
from stochgrad.apps.offpolicy.logged import LoggedData
from stochgrad.apps.offpolicy.policy import policy_probs, policy_value, score, true_gradient
from stochgrad.apps.offpolicy.reward_model import (
    REWARD_MODEL_KINDS,
    RewardModel,
    cross_fitted_rewards,
    fit_reward_model,
)
from stochgrad.apps.offpolicy.synthetic import ConfoundedBandit, ConfoundedData, SyntheticBandit

__all__ = [
    "GRADIENT_LEARNERS",
    "LEARNERS",
    "LOG_SUFFIXES",
    "REWARD_MODELS",
    "REWARD_MODEL_KINDS",
    "VALUE_ESTIMATORS",
    "ConfoundedBandit",
    "ConfoundedData",
    "LearnedPolicy",
    "LoggedData",
    "OffPolicyObjective",
    "RewardModel",
    "SyntheticBandit",
    "ValueEstimate",
    "cross_fitted_rewards",
    "dm_gradient",
    "dr_gradient",
    "fit_reward_model",
    "importance_weights",
    "ips_gradient",
    "learn_policy",
    "log_columns",
    "offpolicy_objective",
    "offpolicy_value",
    "on_policy_value",
    "policy_probs",
    "policy_value",
    "read_log",
    "score",
    "snips_gradient",
    "split_rounds",
    "train_policy",
    "true_gradient",
]

_STUDY = "stochgrad.studies.offpolicy"
#: The study's names, moved to :mod:`stochgrad.studies.offpolicy` (removed in the next release).
_MOVED = {
    "add_arguments": ("stochgrad.cli.offpolicy", "add_arguments"),
    "run": ("stochgrad.cli.offpolicy", "run"),
    "StudyConfig": (_STUDY, "LearnersConfig"),
    "StudyRun": (_STUDY, "LearnerRun"),
    "StudyResult": (_STUDY, "LearnersResult"),
    "PUBLISHED": (_STUDY, "PUBLISHED"),
    "run_one": (_STUDY, "learner_run"),
    "run_study": (_STUDY, "run_study"),
    "confounding_study": (_STUDY, "confounding_demonstration"),
}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
