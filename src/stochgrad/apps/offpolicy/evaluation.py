r"""Off-policy evaluation: the value of a target policy estimated from logged rounds, with its
standard error.

With :math:`w_i = \pi(a_i \mid x_i) / \pi_0(a_i \mid x_i)`
(:func:`~stochgrad.apps.offpolicy.importance_weights`), each estimate is the mean of per-round
terms :math:`t_i`, and its standard error is their standard deviation over :math:`\sqrt n`:

* IPS: :math:`t_i = w_i r_i`;
* SNIPS: :math:`\hat V_{\rm SN} = \sum_i w_i r_i / \sum_i w_i`, with the delta method's
  linearised terms :math:`t_i = \hat V_{\rm SN} + w_i (r_i - \hat V_{\rm SN}) / \bar w`
  (their mean is :math:`\hat V_{\rm SN}`);
* DR: :math:`t_i = \sum_a \pi(a \mid x_i)\, \hat q(x_i, a) + w_i (r_i - \hat q(x_i, a_i))`;
* on-policy (the logging policy's value): :math:`t_i = r_i`.

They are the values whose gradients :func:`~stochgrad.apps.offpolicy.offpolicy_objective`
returns (``OffPolicyObjective.value`` is the same number). Open Bandit Pipeline's
``InverseProbabilityWeighting``, ``SelfNormalizedInverseProbabilityWeighting`` and
``DoublyRobust`` compute the same point estimates (checked in the tests when ``obp`` is
installed).

References: Horvitz & Thompson (1952); Swaminathan & Joachims (NeurIPS 2015); Dudík, Langford &
Li (ICML 2011); Saito et al. (NeurIPS 2021), "Open Bandit Dataset and Pipeline".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stochgrad._checks import check_choice
from stochgrad.apps.offpolicy.estimators import (
    _check_reward_estimates,
    _check_rounds,
    importance_weights,
)
from stochgrad.apps.offpolicy.policy import check_real

__all__ = ["VALUE_ESTIMATORS", "ValueEstimate", "offpolicy_value", "on_policy_value"]

#: The estimators of :func:`offpolicy_value`.
VALUE_ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class ValueEstimate:
    """A policy value estimated from logged rounds.

    Attributes:
        estimator: ``"ips"``, ``"snips"``, ``"dr"`` or ``"on-policy"``.
        value: the estimate (the mean of ``terms``).
        stderr: its standard error, ``terms.std() / sqrt(n)``.
        terms: ``[n]`` the per-round terms (SNIPS: the delta method's linearised terms).
        max_weight: the largest importance weight (1 on-policy).
        effective_rounds: Kish's effective sample size of the weights,
            :math:`(\\sum_i w_i)^2 / \\sum_i w_i^2` (``n`` on-policy): few effective rounds
            mean a noisy estimate, whatever ``stderr`` says.
    """

    estimator: str
    value: float
    stderr: float
    terms: Tensor
    max_weight: float = 1.0
    effective_rounds: float = float("nan")

    def __sub__(self, other: ValueEstimate) -> ValueEstimate:
        """The difference of two estimates on the same rounds, its standard error from the
        paired per-round differences (the two share the rounds' noise)."""
        if not isinstance(other, ValueEstimate) or other.terms.shape != self.terms.shape:
            raise ValueError("only estimates on the same rounds can be subtracted")
        return _from_terms(f"{self.estimator} - {other.estimator}", self.terms - other.terms)


def _from_terms(
    estimator: str, terms: Tensor, weights: Tensor | None = None, value: float | None = None
) -> ValueEstimate:
    n = terms.shape[0]
    stderr = float(terms.std()) / math.sqrt(n) if n > 1 else float("nan")
    if weights is None:
        max_w, ess = 1.0, float(n)
    else:
        max_w = float(weights.max())
        sq = float((weights**2).sum())
        ess = float(weights.sum()) ** 2 / sq if sq > 0 else 0.0
    return ValueEstimate(
        estimator=estimator,
        value=float(terms.mean()) if value is None else value,
        stderr=stderr,
        terms=terms,
        max_weight=max_w,
        effective_rounds=ess,
    )


def offpolicy_value(
    estimator: str,
    probs: Tensor,
    actions: Tensor,
    rewards: Tensor,
    propensities: Tensor,
    reward_estimates: Tensor | None = None,
) -> ValueEstimate:
    r"""The value of a target policy from logged rounds: IPS, SNIPS or DR, with its stderr.

    Args:
        estimator: ``"ips"``, ``"snips"`` or ``"dr"``.
        probs: ``[n, A]`` the target policy's action probabilities at the logged contexts.
        actions: the logged rounds (``[n]`` each).
        rewards: the logged rounds (``[n]`` each).
        propensities: the logged rounds (``[n]`` each).
        reward_estimates: ``[n, A]`` :math:`\hat q(x_i, a)`, for ``"dr"`` (independent of the
            rounds it corrects: cross-fitted or fitted on other rounds).

    Returns:
        :class:`ValueEstimate`.

    Raises:
        ValueError: shapes disagree, non-finite values, a propensity outside (0, 1], ``"dr"``
            without ``reward_estimates``.

    >>> v = offpolicy_value("ips", torch.tensor([[0.25, 0.75], [1.0, 0.0]]),
    ...                     torch.tensor([1, 0]), torch.tensor([1.0, 0.0]),
    ...                     torch.tensor([0.5, 0.5]))
    >>> v.value, v.terms.tolist()
    (0.75, [1.5, 0.0])
    """
    estimator = check_choice("estimator", estimator, VALUE_ESTIMATORS)
    if not isinstance(probs, Tensor) or probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(
            f"probs must be a non-empty [n, A] tensor, got {getattr(probs, 'shape', probs)}"
        )
    n, A = probs.shape
    check_real("probs", probs)
    if not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor, got {probs.dtype}")
    ones = torch.ones((), dtype=probs.dtype, device=probs.device)
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(-1), ones, atol=1e-6):
        raise ValueError("probs must hold probabilities: rows of numbers >= 0 that sum to 1")
    _check_rounds(n, actions, rewards, propensities, A)
    probs = probs.detach()
    w = importance_weights(probs, actions, propensities)
    if estimator == "ips":
        return _from_terms("ips", w * rewards, w)
    if estimator == "snips":
        v = float((w * rewards).sum() / w.sum())
        return _from_terms("snips", v + w * (rewards - v) / w.mean(), w, value=v)
    _check_reward_estimates(reward_estimates, (n, A))
    q_hat = reward_estimates.to(probs.dtype)
    rows = torch.arange(n)
    terms = (probs * q_hat).sum(-1) + w * (rewards - q_hat[rows, actions])
    return _from_terms("dr", terms, w)


def on_policy_value(rewards: Tensor) -> ValueEstimate:
    """The logging policy's value from its own rounds: the mean logged reward, with its stderr.

    >>> on_policy_value(torch.tensor([1.0, 0.0, 1.0, 0.0])).value
    0.5
    """
    if not isinstance(rewards, Tensor) or rewards.ndim != 1 or rewards.shape[0] < 1:
        raise ValueError(f"rewards must be a non-empty [n] tensor, got {rewards!r}")
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards must be finite")
    return _from_terms("on-policy", rewards.to(torch.float64))
