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

estimated from the logged rounds without ever acting (:func:`ips_gradient`,
:func:`snips_gradient`, :func:`dr_gradient`), with :math:`w_i = \pi_\theta(a_i \mid x_i) /
\pi_0(a_i \mid x_i)`:

* IPS: :math:`\frac1n \sum_i w_i r_i \nabla \log \pi_\theta(a_i \mid x_i)`: unbiased when the
  propensities are correct, :math:`\pi_0 > 0` wherever :math:`\pi_\theta > 0` (overlap) and
  the logged action depends on nothing that also moves the reward beyond :math:`x`
  (ignorability, no unobserved confounding).
* SNIPS: the gradient of :math:`\sum_i w_i r_i / \sum_i w_i`,
  :math:`\sum_i w_i (r_i - \hat V_{\rm SN}) \nabla \log \pi_\theta(a_i \mid x_i) / \sum_i w_i`:
  biased by :math:`O(1/n)`, consistent, lower variance.
* DR: :math:`\frac1n \sum_i \big[\sum_a \pi_\theta(a \mid x_i) \hat q(x_i, a) \nabla \log
  \pi_\theta(a \mid x_i) + w_i (r_i - \hat q(x_i, a_i)) \nabla \log \pi_\theta(a_i \mid x_i)
  \big]`: unbiased when either the propensities or the reward model :math:`\hat q` is correct
  (the model is fitted on the logged data, cross-fitted so that it is independent of the round
  it corrects).

The direct method (:func:`fit_reward_model`, then act greedily on :math:`\hat q`) is the
supervised baseline.

Synthetic data (:class:`SyntheticBandit`) are written in the style of Open Bandit Pipeline's
``SyntheticBanditDataset`` (Saito et al. 2021) with ``reward_function=logistic_reward_function``
and the default logging policy :math:`\pi_0 = \mathrm{softmax}(\beta\, q)`: contexts
:math:`x \sim N(0, I_5)`, 10 actions, binary rewards with
:math:`q(x, a) = \sigma(f(x, a))`, where :math:`f` is OBP's degree-1 base reward function (the
coefficients are drawn as OBP draws them, uniform on :math:`[-1, 1]` from
``RandomState(12345)``) z-scored. It is not bit-identical: OBP z-scores :math:`f` with the mean
and standard deviation of each generated batch, so its :math:`q` changes from batch to batch;
here the exact population mean and standard deviation (over :math:`x \sim N(0, I)` and a uniform
action) are used, so :math:`q` is one fixed function and the true value of any policy on any set
of contexts is computable exactly (:func:`policy_value`). The rounds are drawn from a
``numpy.random.Generator`` per seed, not from OBP's streams.

Confounding (:class:`ConfoundedBandit`): a hidden coin :math:`u \in \{0, 1\}` pushes the logging
policy and the reward in the same direction for half of the actions. With the propensities of
the observed-context logging policy :math:`\pi_0(a \mid x) = \mathbb E_u \pi_0(a \mid x, u)`,
IPS estimates :math:`\mathbb E_x \sum_a \pi_\theta\, \mathbb E[r \mid x, A = a]\, \nabla \log
\pi_\theta`, not the gradient with :math:`\mathbb E_u q(x, a, u)`: biased. With
:math:`\pi_0(a \mid x, u)` it is unbiased again (ignorability given :math:`(x, u)`)
(:func:`confounding_study`).

Measured (``stochgrad offpolicy --confounding``: 10 000 logged rounds, 5 seeds, true values on
10 000 fresh contexts, 300 Adam steps): logging policy 0.392, uniform 0.500, IPS 0.738, SNIPS
0.768, DR 0.768, direct method 0.794, optimum 0.799; OBP's published values for its example
are 0.500 (random), 0.782 (IPWLearner) and 0.736 (NNPolicyLearner, IPW objective). Confounding
(200 000 rounds): max |z| of the IPS gradient against the truth over the 60 parameters is 1.9
with :math:`u` in the propensities and 24 without.

References:
    Williams (1992), "Simple statistical gradient-following algorithms", Machine Learning 8;
    Swaminathan & Joachims (JMLR 2015), "Batch learning from logged bandit feedback through
    counterfactual risk minimization"; Swaminathan & Joachims (NeurIPS 2015), "The
    self-normalized estimator for counterfactual learning"; Dudík, Langford & Li (ICML 2011),
    "Doubly robust policy evaluation and learning"; Chernozhukov et al. (2018),
    "Double/debiased machine learning" (cross-fitting); Saito, Aihara, Matsutani & Narita
    (NeurIPS 2021 Datasets and Benchmarks), "Open Bandit Dataset and Pipeline".

>>> env = SyntheticBandit()
>>> data = env.sample(100, generator=np.random.default_rng(0))
>>> data.contexts.shape, data.expected_rewards.shape
(torch.Size([100, 5]), torch.Size([100, 10]))
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad.checkpoint import RunCheckpoint
from stochgrad.gradient_estimate import GradientEstimate

__all__ = [
    "LEARNERS",
    "ConfoundedBandit",
    "ConfoundedData",
    "LoggedData",
    "RewardModel",
    "StudyConfig",
    "SyntheticBandit",
    "add_arguments",
    "confounding_study",
    "cross_fitted_rewards",
    "dm_gradient",
    "dr_gradient",
    "fit_reward_model",
    "ips_gradient",
    "policy_probs",
    "policy_value",
    "run",
    "run_study",
    "score",
    "snips_gradient",
    "train_policy",
    "true_gradient",
]

#: Learners of :func:`run_study`: policy gradient with an off-policy gradient, or the direct method.
LEARNERS: tuple[str, ...] = ("ips", "snips", "dr", "dm")
_DTYPE = torch.float64


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_generator(generator: Any) -> np.random.Generator:
    if not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"generator must be a numpy.random.Generator, got {type(generator).__name__}"
        )
    return generator


def _sample_categorical(probs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one action per row (OBP's ``sample_action_fast``)."""
    return np.minimum((uniform[:, None] > np.cumsum(probs, -1)).sum(-1), probs.shape[1] - 1)


def _features(contexts: Tensor) -> Tensor:
    """:math:`\\tilde x = (1, x)`: the policy's and the reward model's context features."""
    return torch.cat([torch.ones_like(contexts[:, :1]), contexts], 1)


# ---------------------------------------------------------------------------------------------
# logged data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedData:
    """Logged bandit rounds and, because the data are synthetic, the truth behind them.

    Attributes:
        contexts: ``[n, d]`` float64.
        actions: ``[n]`` int64 logged actions.
        rewards: ``[n]`` float64 observed rewards (0/1).
        propensities: ``[n]`` logging probabilities :math:`\\pi_0(a_i \\mid x_i)`.
        behavior: ``[n, A]`` the logging policy at each context.
        expected_rewards: ``[n, A]`` the true :math:`q(x_i, a)` (never shown to a learner).
    """

    contexts: Tensor
    actions: Tensor
    rewards: Tensor
    propensities: Tensor
    behavior: Tensor
    expected_rewards: Tensor

    def __len__(self) -> int:
        return int(self.actions.shape[0])


class SyntheticBandit:
    r"""Synthetic logged bandit data in the style of OBP's ``SyntheticBanditDataset``.

    :math:`x \sim N(0, I_d)`; with :math:`\tilde x = (1, x)` and :math:`\tilde a = (1, e_a)`, the
    base reward function is
    :math:`f(x, a) = c^\top \tilde x + \alpha^\top \tilde a + \tilde x^\top M \tilde a` with
    :math:`c, \alpha, M` uniform on :math:`[-1, 1]`, drawn in that order from
    ``numpy.random.RandomState(random_state)`` (OBP's ``sample_random_uniform_coefficients``);
    :math:`q(x, a) = \sigma\big((f(x,a) - m) / s\big)` with :math:`m, s` the exact mean and
    standard deviation of :math:`f` over :math:`x \sim N(0, I)` and a uniform action;
    :math:`\pi_0(\cdot \mid x) = \mathrm{softmax}(\beta\, q(x, \cdot))`; :math:`r \sim
    \mathrm{Bernoulli}(q(x, a))`.

    Args:
        n_actions: number of actions (>= 2).
        dim_context: context dimension (>= 1).
        beta: inverse temperature of the logging policy (OBP's example: -3, a poor logger).
        random_state: seed of the reward function's coefficients.

    Reference: Saito et al. (2021), Open Bandit Pipeline, ``obp.dataset.SyntheticBanditDataset``.

    >>> env = SyntheticBandit()
    >>> q = env.expected_reward(torch.zeros(1, 5, dtype=torch.float64))
    >>> q.shape, bool(((q > 0) & (q < 1)).all())
    (torch.Size([1, 10]), True)
    """

    def __init__(
        self,
        n_actions: int = 10,
        dim_context: int = 5,
        beta: float = -3.0,
        random_state: int = 12345,
    ) -> None:
        self.n_actions = _check_int("n_actions", n_actions, 2)
        self.dim_context = _check_int("dim_context", dim_context, 1)
        self.beta = _check_float("beta", beta)
        self.random_state = _check_int("random_state", random_state, 0)
        rs = np.random.RandomState(self.random_state)
        d1, a1 = self.dim_context + 1, self.n_actions + 1
        c = rs.uniform(-1, 1, size=d1)
        alpha = rs.uniform(-1, 1, size=a1)
        M = rs.uniform(-1, 1, size=(d1, a1))
        # f(x, a) = bias[a] + x . weight[:, a]  (f is linear in x for each action)
        bias = c[0] + alpha[0] + alpha[1:] + M[0, 0] + M[0, 1:]
        weight = c[1:, None] + M[1:, :1] + M[1:, 1:]
        mean = bias.mean()
        std = math.sqrt(((bias - mean) ** 2).mean() + (weight**2).sum(0).mean())
        # z-scored logits as one linear map of (1, x): coef[:, a] . (1, x)
        self.coef = torch.tensor(
            np.vstack([(bias - mean)[None, :], weight]) / std, dtype=_DTYPE
        )  # [d + 1, A]

    def logits(self, contexts: Tensor) -> Tensor:
        """The z-scored base reward :math:`(f(x, a) - m)/s`, ``[n, A]``."""
        contexts = torch.as_tensor(contexts, dtype=_DTYPE)
        if contexts.ndim != 2 or contexts.shape[1] != self.dim_context:
            raise ValueError(
                f"contexts must have shape [n, {self.dim_context}], got {tuple(contexts.shape)}"
            )
        return _features(contexts) @ self.coef

    def expected_reward(self, contexts: Tensor) -> Tensor:
        """:math:`q(x, a) = \\sigma(\\text{logits})`, ``[n, A]``."""
        return torch.sigmoid(self.logits(contexts))

    def behavior_policy(self, contexts: Tensor) -> Tensor:
        """:math:`\\pi_0(\\cdot \\mid x) = \\mathrm{softmax}(\\beta q(x, \\cdot))`, ``[n, A]``."""
        return torch.softmax(self.beta * self.expected_reward(contexts), -1)

    def sample_contexts(self, n: int, *, generator: np.random.Generator) -> Tensor:
        """``n`` contexts :math:`x \\sim N(0, I_d)`."""
        n = _check_int("n", n)
        g = _check_generator(generator)
        return torch.from_numpy(g.standard_normal((n, self.dim_context)))

    def sample(self, n: int, *, generator: np.random.Generator) -> LoggedData:
        """``n`` logged rounds: contexts, then actions from :math:`\\pi_0`, then rewards."""
        g = _check_generator(generator)
        x = self.sample_contexts(n, generator=g)
        q = self.expected_reward(x)
        pi0 = self.behavior_policy(x)
        a = _sample_categorical(pi0.numpy(), g.random(n))
        rows = np.arange(n)
        r = (g.random(n) < q.numpy()[rows, a]).astype(np.float64)
        a_t = torch.from_numpy(a)
        return LoggedData(
            contexts=x,
            actions=a_t,
            rewards=torch.from_numpy(r),
            propensities=pi0[rows, a_t],
            behavior=pi0,
            expected_rewards=q,
        )


# ---------------------------------------------------------------------------------------------
# the softmax policy and the true value and gradient
# ---------------------------------------------------------------------------------------------


def _check_theta(theta: Tensor, contexts: Tensor) -> None:
    if not isinstance(theta, Tensor) or theta.ndim != 2:
        raise ValueError(f"theta must be a [A, d + 1] tensor, got {getattr(theta, 'shape', theta)}")
    if contexts.ndim != 2 or theta.shape[1] != contexts.shape[1] + 1:
        raise ValueError(
            f"theta has shape {tuple(theta.shape)}: it needs d + 1 = {contexts.shape[-1] + 1} "
            "columns (a bias and one per context feature)"
        )
    if not torch.isfinite(theta).all():
        raise ValueError("theta must be finite")


def policy_probs(theta: Tensor, contexts: Tensor) -> Tensor:
    r"""The linear softmax policy :math:`\pi_\theta(a \mid x) \propto \exp(\theta_a^\top (1, x))`.

    Args:
        theta: ``[A, d + 1]`` parameters (column 0 the per-action bias).
        contexts: ``[n, d]``.

    Returns:
        ``[n, A]`` action probabilities.

    >>> policy_probs(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    tensor([[0.3333, 0.3333, 0.3333]], dtype=torch.float64)
    """
    _check_theta(theta, contexts)
    return torch.softmax(_features(contexts) @ theta.T, -1)


def score(theta: Tensor, contexts: Tensor, actions: Tensor) -> Tensor:
    r"""Per-round score :math:`\nabla_\theta \log \pi_\theta(a_i \mid x_i) = (e_{a_i} - \pi_\theta(\cdot
    \mid x_i))\, \tilde x_i^\top`.

    Returns:
        ``[n, A, d + 1]``.

    >>> s = score(torch.zeros(2, 2, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
    ...           torch.tensor([0]))
    >>> s[0]
    tensor([[ 0.5000,  0.5000],
            [-0.5000, -0.5000]], dtype=torch.float64)
    """
    probs = policy_probs(theta, contexts)
    _check_actions(actions, len(contexts), theta.shape[0])
    onehot = torch.nn.functional.one_hot(actions, theta.shape[0]).to(probs.dtype)
    return (onehot - probs)[:, :, None] * _features(contexts)[:, None, :]


def _check_actions(actions: Tensor, n: int, num_actions: int) -> None:
    if not isinstance(actions, Tensor) or actions.dtype != torch.int64 or actions.shape != (n,):
        raise ValueError(f"actions must be an int64 tensor of shape [{n}], got {actions!r}")
    if n and (actions.min() < 0 or actions.max() >= num_actions):
        raise ValueError(f"actions must lie in 0..{num_actions - 1}")


def policy_value(probs: Tensor, expected_rewards: Tensor) -> float:
    r"""True value of a policy on a set of contexts: :math:`\frac1n \sum_i \sum_a \pi(a \mid x_i)\,
    q(x_i, a)`.

    Args:
        probs: ``[n, A]`` the policy's action probabilities (one-hot for a deterministic policy).
        expected_rewards: ``[n, A]`` the true :math:`q`.

    >>> policy_value(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]))
    0.5
    """
    if probs.shape != expected_rewards.shape or probs.ndim != 2:
        raise ValueError(
            f"probs and expected_rewards must both be [n, A], got {tuple(probs.shape)} and "
            f"{tuple(expected_rewards.shape)}"
        )
    return float((probs * expected_rewards).sum(-1).mean())


def true_gradient(theta: Tensor, contexts: Tensor, expected_rewards: Tensor) -> Tensor:
    r"""The exact gradient of the policy value on the given contexts.

    .. math::

        \nabla_\theta \frac1n \sum_i \sum_a \pi_\theta(a \mid x_i)\, q(x_i, a)
        = \frac1n \sum_i \big[\pi_\theta(\cdot \mid x_i) \odot (q_i - v_i)\big]\, \tilde x_i^\top,
        \qquad v_i = \sum_a \pi_\theta(a \mid x_i) q(x_i, a).

    Conditionally on the logged contexts, IPS and DR are unbiased for this; averaged over
    contexts, for :math:`\nabla_\theta V(\theta)`.

    Returns:
        ``[A, d + 1]``.

    >>> true_gradient(torch.zeros(2, 2, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
    ...               torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    tensor([[ 0.2500,  0.2500],
            [-0.2500, -0.2500]], dtype=torch.float64)
    """
    probs = policy_probs(theta, contexts)
    if expected_rewards.shape != probs.shape:
        raise ValueError(
            f"expected_rewards must have shape {tuple(probs.shape)}, got {tuple(expected_rewards.shape)}"
        )
    v = (probs * expected_rewards).sum(-1, keepdim=True)
    return (probs * (expected_rewards - v)).T @ _features(contexts) / contexts.shape[0]


# ---------------------------------------------------------------------------------------------
# off-policy gradient estimators
# ---------------------------------------------------------------------------------------------


def _coefficients(
    method: str,
    theta: Tensor,
    contexts: Tensor,
    actions: Tensor,
    rewards: Tensor,
    propensities: Tensor,
    reward_estimates: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """``(c, x1, info)`` with per-sample gradient terms ``c[i, :, None] * x1[i, None, :]``.

    Every estimator here is linear in the score :math:`(e_{a_i} - \\pi_i)\\tilde x_i^\\top`, so
    its per-round term is an outer product; training uses ``c.T @ x1 / n`` directly and never
    builds the ``[n, A, d + 1]`` tensor.
    """
    n = contexts.shape[0] if isinstance(contexts, Tensor) and contexts.ndim == 2 else -1
    if n < 1:
        raise ValueError(
            f"contexts must be a non-empty [n, d] tensor, got {getattr(contexts, 'shape', contexts)}"
        )
    for name, t in (("rewards", rewards), ("propensities", propensities)):
        if not isinstance(t, Tensor) or t.shape != (n,):
            raise ValueError(f"{name} must be a tensor of shape [{n}], got {t!r}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite")
    if not ((propensities > 0) & (propensities <= 1)).all():
        raise ValueError(
            "propensities must lie in (0, 1]: a logged action with propensity 0 breaks overlap"
        )
    probs = policy_probs(theta, contexts)
    A = theta.shape[0]
    _check_actions(actions, n, A)
    rows = torch.arange(n)
    w = probs[rows, actions] / propensities
    centred = torch.nn.functional.one_hot(actions, A).to(probs.dtype) - probs  # e_a - pi
    if method == "ips":
        value = (w * rewards).mean()
        coef = (w * rewards)[:, None] * centred
    elif method == "snips":
        value = (w * rewards).sum() / w.sum()
        coef = (w * (rewards - value) / w.mean())[:, None] * centred
    else:
        if not isinstance(reward_estimates, Tensor) or reward_estimates.shape != probs.shape:
            raise ValueError(
                f"reward_estimates must be a tensor of shape {tuple(probs.shape)}, got "
                f"{getattr(reward_estimates, 'shape', reward_estimates)}"
            )
        if not torch.isfinite(reward_estimates).all():
            raise ValueError("reward_estimates must be finite")
        q_hat = reward_estimates.to(probs.dtype)
        v_hat = (probs * q_hat).sum(-1, keepdim=True)
        resid = rewards - q_hat[rows, actions]
        value = (v_hat[:, 0] + w * resid).mean()
        coef = probs * (q_hat - v_hat) + (w * resid)[:, None] * centred
    info = {"value": float(value), "max_weight": float(w.max())}
    return coef, _features(contexts), info


def ips_gradient(
    theta: Tensor, contexts: Tensor, actions: Tensor, rewards: Tensor, propensities: Tensor
) -> GradientEstimate:
    r"""Inverse-propensity-score policy gradient :math:`\frac1n \sum_i w_i r_i \nabla \log
    \pi_\theta(a_i \mid x_i)`, :math:`w_i = \pi_\theta(a_i \mid x_i)/\pi_0(a_i \mid x_i)`.

    It is the gradient of the IPS value estimate :math:`\frac1n \sum_i w_i r_i`. Unbiased under
    overlap, ignorability and correct propensities.

    Args:
        theta: ``[A, d + 1]`` policy parameters.
        contexts, actions, rewards, propensities: the logged rounds (``[n, d]``, ``[n]`` ...).

    Returns:
        :class:`~stochgrad.gradient_estimate.GradientEstimate` with ``per_sample`` ``[n, A, d + 1]`` and
        ``info["value"]``, the IPS value estimate.

    Raises:
        ValueError: shapes disagree, non-finite values, or a propensity outside (0, 1].

    Reference: Williams (1992); Swaminathan & Joachims (JMLR 2015).

    >>> env = SyntheticBandit(); d = env.sample(50, generator=np.random.default_rng(0))
    >>> est = ips_gradient(torch.zeros(10, 6, dtype=torch.float64), d.contexts, d.actions,
    ...                    d.rewards, d.propensities)
    >>> est.grad.shape, est.num_samples
    (torch.Size([10, 6]), 50)
    """
    coef, x1, info = _coefficients("ips", theta, contexts, actions, rewards, propensities)
    return GradientEstimate.from_per_sample(
        coef[:, :, None] * x1[:, None, :], method="ips", info=info
    )


def snips_gradient(
    theta: Tensor, contexts: Tensor, actions: Tensor, rewards: Tensor, propensities: Tensor
) -> GradientEstimate:
    r"""Self-normalised IPS policy gradient: the gradient of
    :math:`\hat V_{\rm SN} = \sum_i w_i r_i / \sum_i w_i`,

    .. math:: \nabla \hat V_{\rm SN} = \frac{\sum_i w_i (r_i - \hat V_{\rm SN})\,
              \nabla \log \pi_\theta(a_i \mid x_i)}{\sum_i w_i}.

    ``per_sample`` are the terms :math:`w_i (r_i - \hat V_{\rm SN}) \nabla \log \pi_\theta / \bar w`
    (their mean is the gradient; their spread gives the delta-method standard error). Biased by
    :math:`O(1/n)`, consistent; the self-normalisation acts as a baseline and keeps the
    estimate equivariant to adding a constant to the rewards.

    Reference: Swaminathan & Joachims (NeurIPS 2015), "The self-normalized estimator for
    counterfactual learning".

    >>> env = SyntheticBandit(); d = env.sample(50, generator=np.random.default_rng(0))
    >>> est = snips_gradient(torch.zeros(10, 6, dtype=torch.float64), d.contexts, d.actions,
    ...                      d.rewards, d.propensities)
    >>> est.biased
    True
    """
    coef, x1, info = _coefficients("snips", theta, contexts, actions, rewards, propensities)
    return GradientEstimate.from_per_sample(
        coef[:, :, None] * x1[:, None, :], method="snips", biased=True, info=info
    )


def dr_gradient(
    theta: Tensor,
    contexts: Tensor,
    actions: Tensor,
    rewards: Tensor,
    propensities: Tensor,
    reward_estimates: Tensor,
) -> GradientEstimate:
    r"""Doubly robust policy gradient: the gradient of the DR value estimate
    :math:`\frac1n\sum_i [\sum_a \pi_\theta(a \mid x_i) \hat q_{ia} + w_i (r_i - \hat q_{i a_i})]`,

    .. math::

        \frac1n \sum_i \Big[\big(\pi_\theta(\cdot \mid x_i) \odot (\hat q_i - \hat v_i)\big)
        \tilde x_i^\top + w_i\,(r_i - \hat q_{i a_i})\, \nabla \log \pi_\theta(a_i \mid x_i)\Big],

    the direct-method part in closed form (a sum over actions) plus the IPS correction of its
    residual. Unbiased (given the contexts) when the propensities are correct and
    :math:`\hat q` does not depend on the round it corrects (cross-fit it:
    :func:`cross_fitted_rewards`), or when :math:`\hat q = q` whatever the propensities.

    Args:
        reward_estimates: ``[n, A]`` the reward model :math:`\hat q(x_i, a)`.

    Reference: Dudík, Langford & Li (ICML 2011), "Doubly robust policy evaluation and learning".

    >>> env = SyntheticBandit(); d = env.sample(50, generator=np.random.default_rng(0))
    >>> est = dr_gradient(torch.zeros(10, 6, dtype=torch.float64), d.contexts, d.actions,
    ...                   d.rewards, d.propensities, d.expected_rewards)
    >>> est.per_sample.shape
    torch.Size([50, 10, 6])
    """
    coef, x1, info = _coefficients(
        "dr", theta, contexts, actions, rewards, propensities, reward_estimates
    )
    return GradientEstimate.from_per_sample(
        coef[:, :, None] * x1[:, None, :], method="dr", info=info
    )


def dm_gradient(theta: Tensor, contexts: Tensor, reward_estimates: Tensor) -> Tensor:
    r"""Direct-method gradient: :func:`true_gradient` with :math:`\hat q` in place of :math:`q`.

    >>> dm_gradient(torch.zeros(2, 2, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
    ...             torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    tensor([[ 0.2500,  0.2500],
            [-0.2500, -0.2500]], dtype=torch.float64)
    """
    return true_gradient(theta, contexts, reward_estimates)


# ---------------------------------------------------------------------------------------------
# reward model (direct method) by scikit-learn
# ---------------------------------------------------------------------------------------------


def _design(contexts: Tensor, actions: np.ndarray, num_actions: int) -> np.ndarray:
    """Features of (x, a): ``onehot(a) (x) (1, x)``: a logistic model per action, fitted jointly."""
    feats = _features(torch.as_tensor(contexts, dtype=_DTYPE)).numpy()
    out = np.zeros((feats.shape[0], num_actions, feats.shape[1]))
    out[np.arange(feats.shape[0]), actions] = feats
    return out.reshape(feats.shape[0], -1)


@dataclass
class RewardModel:
    """A fitted reward model :math:`\\hat q(x, a)`: scikit-learn's ``LogisticRegression`` on
    ``onehot(a) (x) (1, x)``, i.e. one logistic regression per action (the synthetic
    :math:`q` lies in this class; ``C`` is the inverse L2 penalty).

    >>> env = SyntheticBandit(); d = env.sample(500, generator=np.random.default_rng(0))
    >>> fit_reward_model(d.contexts, d.actions, d.rewards, 10).predict(d.contexts).shape
    torch.Size([500, 10])
    """

    classifier: Any
    num_actions: int

    def predict(self, contexts: Tensor) -> Tensor:
        """``[n, A]`` predicted expected rewards."""
        n = contexts.shape[0]
        acts = np.repeat(np.arange(self.num_actions)[None, :], n, 0).reshape(-1)
        ctx = torch.as_tensor(contexts, dtype=_DTYPE).repeat_interleave(self.num_actions, 0)
        p = self.classifier.predict_proba(_design(ctx, acts, self.num_actions))[:, 1]
        return torch.from_numpy(p.reshape(n, self.num_actions))


def fit_reward_model(
    contexts: Tensor, actions: Tensor, rewards: Tensor, num_actions: int, *, C: float = 1.0
) -> RewardModel:
    """Fit :class:`RewardModel` to logged rounds (maximum penalised likelihood, L-BFGS).

    Raises:
        ValueError: the rewards are not 0/1 or take a single value.
    """
    num_actions = _check_int("num_actions", num_actions, 2)
    r = np.asarray(rewards, dtype=np.float64)
    if not np.isin(r, (0.0, 1.0)).all() or np.unique(r).size < 2:
        raise ValueError("rewards must be 0/1 and take both values to fit a reward model")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=float(C), fit_intercept=False, max_iter=1000)
    clf.fit(_design(contexts, np.asarray(actions), num_actions), r.astype(int))
    return RewardModel(clf, num_actions)


def cross_fitted_rewards(
    data: LoggedData, folds: int = 2, *, generator: np.random.Generator, C: float = 1.0
) -> Tensor:
    """``[n, A]`` reward estimates where each round's row comes from a model fitted on the other
    folds (cross-fitting: the model is independent of the round it corrects).

    Reference: Chernozhukov et al. (2018), "Double/debiased machine learning".
    """
    folds = _check_int("folds", folds, 2)
    g = _check_generator(generator)
    n, A = data.behavior.shape
    fold = g.permutation(n) % folds
    out = torch.empty(n, A, dtype=_DTYPE)
    for k in range(folds):
        train, held = fold != k, fold == k
        model = fit_reward_model(
            data.contexts[train], data.actions[train], data.rewards[train], A, C=C
        )
        out[torch.from_numpy(held)] = model.predict(data.contexts[held])
    return out


# ---------------------------------------------------------------------------------------------
# learning
# ---------------------------------------------------------------------------------------------


def train_policy(
    data: LoggedData,
    learner: str,
    *,
    iterations: int = 300,
    lr: float = 0.05,
    reward_estimates: Tensor | None = None,
) -> Tensor:
    """Learn a linear softmax policy by Adam ascent on an off-policy gradient.

    Full-batch: every iteration uses all logged rounds, starting from :math:`\\theta = 0` (the
    uniform policy), so the result is a deterministic function of the data.

    Args:
        data: the logged rounds (only contexts, actions, rewards and propensities are used).
        learner: ``"ips"``, ``"snips"`` or ``"dr"``.
        iterations: Adam steps.
        lr: Adam step size.
        reward_estimates: ``[n, A]`` :math:`\\hat q` for ``"dr"`` (cross-fitted).

    Returns:
        ``[A, d + 1]`` learned parameters.

    >>> env = SyntheticBandit(); d = env.sample(200, generator=np.random.default_rng(0))
    >>> train_policy(d, "ips", iterations=3).shape
    torch.Size([10, 6])
    """
    if learner not in ("ips", "snips", "dr"):
        raise ValueError(f"learner must be 'ips', 'snips' or 'dr', got {learner!r}")
    iterations = _check_int("iterations", iterations)
    lr = _check_float("lr", lr)
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if learner == "dr" and reward_estimates is None:
        raise ValueError("learner 'dr' needs reward_estimates")
    A, d = data.behavior.shape[1], data.contexts.shape[1]
    theta = torch.zeros(A, d + 1, dtype=_DTYPE, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    logged = (data.contexts, data.actions, data.rewards, data.propensities)
    n = len(data)
    for _ in range(iterations):
        with torch.no_grad():
            coef, x1, _ = _coefficients(learner, theta, *logged, reward_estimates)
        theta.grad = -(coef.T @ x1) / n  # ascent on the value
        opt.step()
    return theta.detach()


# ---------------------------------------------------------------------------------------------
# the study: learned policies' true values over seeds
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyConfig:
    """Settings of :func:`run_study` (stored in its checkpoint; the seeds are not).

    Attributes:
        rounds: logged training rounds per seed (OBP's example: 10 000).
        test_rounds: fresh contexts on which true values are computed.
        iterations, lr: Adam steps and step size of the policy-gradient learners.
        folds: cross-fitting folds of the DR reward model.
        C: inverse L2 penalty of the reward model.
        n_actions, dim_context, beta, random_state: the :class:`SyntheticBandit`.
    """

    rounds: int = 10_000
    test_rounds: int = 10_000
    iterations: int = 300
    lr: float = 0.05
    folds: int = 2
    C: float = 1.0
    n_actions: int = 10
    dim_context: int = 5
    beta: float = -3.0
    random_state: int = 12345


@dataclass
class StudyRun:
    """True values of one learner's policy for one seed (``key`` is the learner)."""

    key: str
    seed: int
    value: float = float("nan")
    greedy_value: float = float("nan")
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StudyRun:
        return cls(**state)


class _Checkpoint(RunCheckpoint):
    result_type = StudyRun


def _seed_data(config: StudyConfig, seed: int) -> tuple[SyntheticBandit, LoggedData, Tensor]:
    env = SyntheticBandit(config.n_actions, config.dim_context, config.beta, config.random_state)
    g = np.random.default_rng([seed, 0])
    train = env.sample(config.rounds, generator=g)
    test_x = env.sample_contexts(config.test_rounds, generator=np.random.default_rng([seed, 1]))
    return env, train, test_x


def run_one(key: str, seed: int, config: StudyConfig) -> StudyRun:
    """Learn with ``key`` (a :data:`LEARNERS` entry or ``"logging"``/``"random"``) on seed
    ``seed``'s logged data; return the true values of the policy on the test contexts.

    ``value`` is the learned (softmax) policy's; ``greedy_value`` that of acting on its most
    probable action (for ``"dm"``, both are the greedy policy on :math:`\\hat q`).

    >>> r = run_one("random", 0, StudyConfig(rounds=50, test_rounds=50))
    >>> 0 < r.value < 1
    True
    """
    start = time.perf_counter()
    env, train, test_x = _seed_data(config, seed)
    q = env.expected_reward(test_x)
    A = config.n_actions
    if key == "logging":
        probs = env.behavior_policy(test_x)
        greedy = probs
    elif key == "random":
        probs = torch.full_like(q, 1.0 / A)
        greedy = probs
    elif key == "dm":
        model = fit_reward_model(train.contexts, train.actions, train.rewards, A, C=config.C)
        probs = torch.nn.functional.one_hot(model.predict(test_x).argmax(-1), A).to(_DTYPE)
        greedy = probs
    elif key in ("ips", "snips", "dr"):
        q_hat = None
        if key == "dr":
            q_hat = cross_fitted_rewards(
                train, config.folds, generator=np.random.default_rng([seed, 2]), C=config.C
            )
        theta = train_policy(
            train, key, iterations=config.iterations, lr=config.lr, reward_estimates=q_hat
        )
        probs = policy_probs(theta, test_x)
        greedy = torch.nn.functional.one_hot(probs.argmax(-1), A).to(_DTYPE)
    else:
        raise ValueError(f"key must be one of {LEARNERS + ('logging', 'random')}, got {key!r}")
    return StudyRun(
        key,
        seed,
        value=policy_value(probs, q),
        greedy_value=policy_value(greedy, q),
        seconds=time.perf_counter() - start,
    )


@dataclass
class StudyResult:
    """Summary of :func:`run_study` (also written as ``offpolicy.json``)."""

    config: dict
    seeds: list[int]
    keys: list[str]
    value: dict[str, list[float]]
    greedy_value: dict[str, list[float]]
    optimal_value: list[float]
    published: dict[str, float]
    confounding: dict | None = None
    seconds: float = 0.0
    runs: list[dict] = field(default_factory=list, repr=False)


#: Published values of OBP's off-policy learning example (10k train / 10k test rounds).
PUBLISHED = {"random": 0.500, "ips (OBP IPWLearner)": 0.782, "OBP NNPolicyLearner (IPW)": 0.736}


def run_study(
    config: StudyConfig | None = None,
    seeds: Sequence[int] | int = 5,
    learners: Sequence[str] = LEARNERS,
    *,
    out_dir: str | Path | None = None,
    callback: Callable[[StudyRun], None] | None = None,
    restart: bool = False,
) -> StudyResult:
    """True values of the learned policies, the logging policy and a uniform random one, per seed.

    Every (learner, seed) is one run, saved to ``out_dir/offpolicy_checkpoint.pt`` as soon as
    it ends; a rerun with the same settings skips finished runs (``restart=True`` deletes the
    checkpoint first). Runs are deterministic functions of (key, seed, config), so a resumed
    study equals an uninterrupted one.

    Args:
        config: :class:`StudyConfig`.
        seeds: list of seeds or their number.
        learners: a subset of :data:`LEARNERS`.
        out_dir: folder for the checkpoint (nothing saved when ``None``).
        callback: called with each finished :class:`StudyRun`.
        restart: delete an existing checkpoint first.

    >>> res = run_study(StudyConfig(rounds=100, test_rounds=100, iterations=2), [0], ["ips"])
    >>> sorted(res.value)
    ['ips', 'logging', 'random']
    """
    config = StudyConfig() if config is None else config
    seed_list = (
        list(range(_check_int("seeds", seeds)))
        if isinstance(seeds, (int, np.integer))
        else [int(s) for s in seeds]
    )
    bad = [k for k in learners if k not in LEARNERS]
    if bad or not learners:
        raise ValueError(f"learners must be a non-empty subset of {LEARNERS}, got {list(learners)}")
    keys = ["logging", "random", *learners]
    start = time.perf_counter()
    ckpt = None
    if out_dir is not None:
        path = Path(out_dir) / "offpolicy_checkpoint.pt"
        if restart and path.exists():
            path.unlink()
        ckpt = _Checkpoint(path, config)
        ckpt.load()
    runs: dict[tuple[str, int], StudyRun] = {} if ckpt is None else ckpt.runs
    for seed in seed_list:
        for key in keys:
            if (key, seed) not in runs:
                r = run_one(key, seed, config)
                if ckpt is None:
                    runs[(key, seed)] = r
                else:
                    ckpt.add(r)
            if callback is not None:
                callback(runs[(key, seed)])
    optimal = []
    for seed in seed_list:
        env, _, test_x = _seed_data(config, seed)
        optimal.append(float(env.expected_reward(test_x).max(-1).values.mean()))
    return StudyResult(
        config=asdict(config),
        seeds=seed_list,
        keys=keys,
        value={k: [runs[(k, s)].value for s in seed_list] for k in keys},
        greedy_value={k: [runs[(k, s)].greedy_value for s in seed_list] for k in keys},
        optimal_value=optimal,
        published=dict(PUBLISHED),
        seconds=time.perf_counter() - start,
        runs=[runs[(k, s)].to_state() for s in seed_list for k in keys],
    )


# ---------------------------------------------------------------------------------------------
# confounding
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfoundedData:
    """Logged rounds with a hidden confounder ``u`` (0/1).

    Attributes:
        logged: the rounds; ``logged.propensities`` are :math:`\\pi_0(a_i \\mid x_i)`, the
            observed-context logging policy (``u`` averaged out), and ``logged.expected_rewards``
            is :math:`\\bar q(x, a) = \\mathbb E_u q(x, a, u)`.
        confounder: ``[n]`` the hidden ``u``.
        propensities_given_u: ``[n]`` :math:`\\pi_0(a_i \\mid x_i, u_i)`.
    """

    logged: LoggedData
    confounder: Tensor
    propensities_given_u: Tensor


class ConfoundedBandit:
    r""":class:`SyntheticBandit` with a hidden coin :math:`u \sim \mathrm{Bernoulli}(1/2)`
    driving both the logged action and the reward.

    With :math:`s_a = 1` for the first half of the actions and :math:`0` for the rest and
    :math:`\epsilon = 2u - 1`:

    .. math::

        \pi_0(\cdot \mid x, u) = \mathrm{softmax}\big(\beta q_0(x, \cdot) + \kappa \epsilon s\big),
        \qquad q(x, a, u) = \sigma\big(f_0(x, a) + \lambda \epsilon s_a\big),

    :math:`f_0, q_0 = \sigma(f_0)` the base bandit's logits and rewards. For
    :math:`\kappa \lambda > 0` an action of the first half is logged more often exactly when
    it pays more, so :math:`\mathbb E[r \mid x, A = a] > \bar q(x, a)` for those actions and not
    for the others: a bias that differs between actions, so the gradient feels it (a shift
    common to all actions would cancel against the score's zero mean).

    Args:
        base: the unconfounded bandit (default :class:`SyntheticBandit`).
        action_strength: :math:`\kappa`.
        reward_strength: :math:`\lambda`.

    >>> env = ConfoundedBandit()
    >>> d = env.sample(4, generator=np.random.default_rng(0))
    >>> bool((d.logged.propensities > 0).all()), d.confounder.shape
    (True, torch.Size([4]))
    """

    def __init__(
        self,
        base: SyntheticBandit | None = None,
        action_strength: float = 1.5,
        reward_strength: float = 1.5,
    ) -> None:
        self.base = SyntheticBandit() if base is None else base
        self.action_strength = _check_float("action_strength", action_strength)
        self.reward_strength = _check_float("reward_strength", reward_strength)
        A = self.base.n_actions
        self.sign = (torch.arange(A) < A // 2).to(_DTYPE)

    def _given_u(self, contexts: Tensor) -> tuple[Tensor, Tensor]:
        """``(pi0, q)``, each ``[2, n, A]``: index 0 for ``u = 0``, 1 for ``u = 1``."""
        f = self.base.logits(contexts)
        eps = torch.tensor([-1.0, 1.0], dtype=_DTYPE)[:, None, None]
        logits0 = self.base.beta * torch.sigmoid(f)
        pi0 = torch.softmax(logits0 + self.action_strength * eps * self.sign, -1)
        q = torch.sigmoid(f + self.reward_strength * eps * self.sign)
        return pi0, q

    def expected_reward(self, contexts: Tensor) -> Tensor:
        r""":math:`\bar q(x, a) = \mathbb E_u q(x, a, u)`, ``[n, A]``: what a policy acting on
        :math:`x` alone gets."""
        return self._given_u(contexts)[1].mean(0)

    def behavior_policy(self, contexts: Tensor) -> Tensor:
        r""":math:`\pi_0(a \mid x) = \mathbb E_u \pi_0(a \mid x, u)`, ``[n, A]``."""
        return self._given_u(contexts)[0].mean(0)

    def sample(self, n: int, *, generator: np.random.Generator) -> ConfoundedData:
        """``n`` rounds: context, hidden ``u``, action from :math:`\\pi_0(\\cdot \\mid x, u)`,
        reward from :math:`q(x, a, u)`."""
        g = _check_generator(generator)
        x = self.base.sample_contexts(n, generator=g)
        u = (g.random(n) < 0.5).astype(np.int64)
        pi0, q = self._given_u(x)
        rows = np.arange(n)
        pi0_u, q_u = pi0[u, rows], q[u, rows]
        a = _sample_categorical(pi0_u.numpy(), g.random(n))
        r = (g.random(n) < q_u.numpy()[rows, a]).astype(np.float64)
        a_t = torch.from_numpy(a)
        marginal = pi0.mean(0)
        logged = LoggedData(
            contexts=x,
            actions=a_t,
            rewards=torch.from_numpy(r),
            propensities=marginal[rows, a_t],
            behavior=marginal,
            expected_rewards=q.mean(0),
        )
        return ConfoundedData(logged, torch.from_numpy(u), pi0_u[rows, a_t])


def confounding_study(
    rounds: int = 200_000,
    *,
    seed: int = 0,
    env: ConfoundedBandit | None = None,
    theta: Tensor | None = None,
) -> dict[str, Any]:
    r"""IPS gradient with and without the confounder in the propensities, against the truth.

    One logged data set of ``rounds`` rounds; the policy :math:`\theta` (default: seeded
    :math:`N(0, 0.5^2)` entries) is fixed. The truth is :func:`true_gradient` with
    :math:`\bar q` on the logged contexts (exact: ``u`` is summed out). ``z`` are
    (estimate - truth) / stderr per parameter.

    Returns:
        A dict with ``true``, ``observed`` (IPS with :math:`\pi_0(a \mid x, u)`), ``hidden``
        (IPS with :math:`\pi_0(a \mid x)`), each estimate's ``*_stderr`` and ``*_z`` (lists,
        ``[A, d + 1]``), the value versions (``true_value``, ``observed_value``,
        ``hidden_value``, ``*_value_stderr``), ``max_abs_z`` per case and the settings.

    >>> res = confounding_study(2000, seed=0)
    >>> sorted(res["max_abs_z"])
    ['hidden', 'observed']
    """
    rounds = _check_int("rounds", rounds, 2)
    env = ConfoundedBandit() if env is None else env
    A, d = env.base.n_actions, env.base.dim_context
    if theta is None:
        gen = torch.Generator().manual_seed(seed)
        theta = 0.5 * torch.randn(A, d + 1, generator=gen, dtype=_DTYPE)
    data = env.sample(rounds, generator=np.random.default_rng([seed, 3]))
    lg = data.logged
    truth = true_gradient(theta, lg.contexts, lg.expected_rewards)
    true_value = policy_value(policy_probs(theta, lg.contexts), lg.expected_rewards)
    out: dict[str, Any] = {
        "rounds": rounds,
        "seed": seed,
        "action_strength": env.action_strength,
        "reward_strength": env.reward_strength,
        "true": truth.tolist(),
        "true_value": true_value,
        "max_abs_z": {},
    }
    for name, prop in (("observed", data.propensities_given_u), ("hidden", lg.propensities)):
        est = ips_gradient(theta, lg.contexts, lg.actions, lg.rewards, prop)
        z = (est.grad - truth) / est.stderr
        w = policy_probs(theta, lg.contexts)[torch.arange(rounds), lg.actions] / prop
        vals = w * lg.rewards
        out[name] = est.grad.tolist()
        out[f"{name}_stderr"] = est.stderr.tolist()
        out[f"{name}_z"] = z.tolist()
        out["max_abs_z"][name] = float(z.abs().max())
        out[f"{name}_value"] = float(vals.mean())
        out[f"{name}_value_stderr"] = float(vals.std() / math.sqrt(rounds))
    return out


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


def _plot_values(path: Path, res: StudyResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = res.keys
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, k in enumerate(keys):
        v = np.asarray(res.value[k])
        ax.scatter(np.full(v.size, i), v, color="C0", s=14, alpha=0.7)
        ax.errorbar(i, v.mean(), yerr=v.std(ddof=1) if v.size > 1 else 0, color="k", capsize=4)
        if k in ("ips", "snips", "dr"):
            gv = np.asarray(res.greedy_value[k])
            ax.scatter(np.full(gv.size, i + 0.2), gv, color="C1", s=14, marker="^", alpha=0.7)
    ax.axhline(np.mean(res.optimal_value), color="C3", ls="--", label="optimal (greedy on q)")
    ax.axhline(0.782, color="C2", ls=":", label="OBP IPWLearner, published 0.782")
    ax.axhline(0.736, color="C4", ls=":", label="OBP NNPolicyLearner, published 0.736")
    ax.scatter([], [], color="C0", s=14, label="policy (per seed)")
    ax.scatter([], [], color="C1", s=14, marker="^", label="its greedy version")
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylabel("true policy value")
    ax.set_title(
        f"Off-policy learning, {res.config['rounds']} logged rounds, {len(res.seeds)} seeds"
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_confounding(path: Path, conf: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    truth = np.asarray(conf["true"]).ravel()
    zs = {k: np.asarray(conf[f"{k}_z"]).ravel() for k in ("hidden", "observed")}
    top = max(5.0, *(float(np.abs(z).max()) for z in zs.values()))
    bins = np.linspace(-top, top, 41)
    axes[1].axvspan(-3, 3, color="0.92", zorder=0)
    for name, color in (("hidden", "C3"), ("observed", "C0")):
        est = np.asarray(conf[name]).ravel()
        se = np.asarray(conf[f"{name}_stderr"]).ravel()
        label = "u hidden: pi0(a|x)" if name == "hidden" else "u observed: pi0(a|x,u)"
        axes[0].errorbar(truth, est, yerr=2 * se, fmt="o", ms=3, color=color, label=label)
        axes[1].hist(zs[name], bins=bins, alpha=0.7, color=color, label=label, zorder=2)
    lim = [truth.min() - 0.01, truth.max() + 0.01]
    axes[0].plot(lim, lim, "k--", lw=0.8)
    axes[0].set_xlabel("true gradient component")
    axes[0].set_ylabel("IPS estimate (± 2 se)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[1].set_xlabel("z = (estimate - truth) / se")
    axes[1].set_ylabel("parameters")
    fig.suptitle(f"IPS gradient under a hidden confounder ({conf['rounds']} rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# command line: `stochgrad offpolicy`
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad offpolicy``."""
    d = StudyConfig()
    parser.add_argument("--rounds", type=int, default=d.rounds, help="logged training rounds")
    parser.add_argument(
        "--test-rounds", type=int, default=d.test_rounds, help="contexts for the true values"
    )
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..n-1")
    parser.add_argument(
        "--learners",
        default=",".join(LEARNERS),
        help=f"comma-separated subset of {','.join(LEARNERS)}",
    )
    parser.add_argument("--iterations", type=int, default=d.iterations, help="Adam steps")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam step size")
    parser.add_argument(
        "--confounding", action="store_true", help="also run the confounding demonstration"
    )
    parser.add_argument(
        "--confounding-rounds", type=int, default=200_000, help="rounds of that demonstration"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--restart", action="store_true", help="ignore (delete) a checkpoint in --out"
    )


def run(args: argparse.Namespace, console: Any) -> int:
    """Learn policies from logged bandit data; print their true values (and the confounding table)."""
    from rich.table import Table

    from stochgrad.cli import progress_bar

    learners = [s.strip() for s in str(args.learners).split(",") if s.strip()]
    bad = [k for k in learners if k not in LEARNERS]
    if bad or not learners:
        console.print(
            f"[red]--learners must be a subset of {','.join(LEARNERS)}, got {args.learners}[/red]"
        )
        return 2
    minimum = {"rounds": 2, "test_rounds": 1, "seeds": 1, "iterations": 1, "confounding_rounds": 2}
    for name, low in minimum.items():
        if getattr(args, name) < low:
            console.print(f"[red]--{name.replace('_', '-')} must be >= {low}[/red]")
            return 2
    config = StudyConfig(
        rounds=args.rounds, test_rounds=args.test_rounds, iterations=args.iterations, lr=args.lr
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(console) as progress:
        task = progress.add_task("off-policy learning", total=args.seeds * (len(learners) + 2))
        res = run_study(
            config,
            args.seeds,
            learners,
            out_dir=out,
            callback=lambda _: progress.advance(task),
            restart=args.restart,
        )
        if args.confounding:
            ctask = progress.add_task("confounding", total=1)
            res.confounding = confounding_study(args.confounding_rounds, seed=0)
            progress.advance(ctask)
    table = Table(
        title=f"True policy values ({args.rounds} logged rounds, {args.test_rounds} test "
        f"contexts, {args.seeds} seeds)"
    )
    for col in ("policy", "mean value", "sd over seeds", "greedy version", "per seed"):
        table.add_column(col, justify="right")
    for k in res.keys:
        v, gv = np.asarray(res.value[k]), np.asarray(res.greedy_value[k])
        sd = f"{v.std(ddof=1):.4f}" if v.size > 1 else "—"
        table.add_row(k, f"{v.mean():.4f}", sd, f"{gv.mean():.4f}", " ".join(f"{x:.3f}" for x in v))
    table.add_row("optimal (greedy on q)", f"{np.mean(res.optimal_value):.4f}", "", "", "")
    console.print(table)
    console.print(
        "published (OBP off-policy learning example): random 0.500, IPWLearner 0.782, "
        "NNPolicyLearner (IPW) 0.736"
    )
    if res.confounding is not None:
        c = res.confounding
        A = len(c["true"])
        t = Table(
            title=f"IPS gradient under a hidden confounder ({c['rounds']} rounds): bias column "
            "(d value / d bias of action a)"
        )
        for col in ("action", "true", "u observed", "z", "u hidden", "z"):
            t.add_column(col, justify="right")
        for a in range(A):
            t.add_row(
                str(a),
                f"{c['true'][a][0]:+.4f}",
                f"{c['observed'][a][0]:+.4f} ± {c['observed_stderr'][a][0]:.4f}",
                f"{c['observed_z'][a][0]:+.1f}",
                f"{c['hidden'][a][0]:+.4f} ± {c['hidden_stderr'][a][0]:.4f}",
                f"{c['hidden_z'][a][0]:+.1f}",
            )
        console.print(t)
        console.print(
            f"max |z| over all {A * len(c['true'][0])} parameters: u observed "
            f"{c['max_abs_z']['observed']:.2f}, u hidden {c['max_abs_z']['hidden']:.2f}; value: "
            f"true {c['true_value']:.4f}, IPS u observed {c['observed_value']:.4f} ± "
            f"{c['observed_value_stderr']:.4f}, u hidden {c['hidden_value']:.4f} ± "
            f"{c['hidden_value_stderr']:.4f}"
        )
        _plot_confounding(out / "offpolicy_confounding.png", c)
    _plot_values(out / "offpolicy_values.png", res)
    (out / "offpolicy.json").write_text(json.dumps(asdict(res), indent=1, default=float))
    console.print(f"{res.seconds:.1f} s; wrote {out}/offpolicy.json and PNG figures")
    return 0
