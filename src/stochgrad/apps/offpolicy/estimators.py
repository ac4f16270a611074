r"""Off-policy policy gradients from logged rounds: IPS, self-normalised IPS, doubly robust.

With :math:`w_i = \pi_\theta(a_i \mid x_i) / \pi_0(a_i \mid x_i)` (:func:`importance_weights`):

* IPS: :math:`\frac1n \sum_i w_i r_i \nabla \log \pi_\theta(a_i \mid x_i)`: unbiased when the
  propensities are correct, :math:`\pi_0 > 0` wherever :math:`\pi_\theta > 0` (overlap) and
  the logged action depends on nothing that also moves the reward beyond :math:`x`
  (ignorability, no unobserved confounding).
* SNIPS: the gradient of :math:`\sum_i w_i r_i / \sum_i w_i`,
  :math:`\sum_i w_i (r_i - \hat V_{\rm SN}) \nabla \log \pi_\theta(a_i \mid x_i) / \sum_i w_i`:
  biased by :math:`O(1/n)`, consistent, lower variance.
* DR: :math:`\frac1n \sum_i \big[\sum_a \pi_\theta(a \mid x_i) \hat q(x_i, a) \nabla \log
  \pi_\theta(a \mid x_i) + w_i (r_i - \hat q(x_i, a_i)) \nabla \log \pi_\theta(a_i \mid x_i)
  \big]`: unbiased when either the propensities or the reward model :math:`\hat q` is correct.

The gradients come from the engine: each is the gradient of :func:`offpolicy_objective`, an
importance-weighted :func:`stochgrad.surrogate_loss` of the logged actions' log-probabilities
(``weights=`` :math:`w`, ``self_normalize=True`` with the constant advantage
:math:`\hat V_{\rm SN}` for SNIPS), plus, for DR, the direct-method term, an exact
differentiable expectation over actions. :func:`ips_gradient`, :func:`snips_gradient` and
:func:`dr_gradient` return it as a :class:`~stochgrad.gradient_estimate.GradientEstimate`
(per-round terms, standard error) and it is the exact gradient of the value estimate;
:func:`~stochgrad.apps.offpolicy.train_policy` ascends the same loss.

References: Williams (1992); Swaminathan & Joachims (JMLR 2015; NeurIPS 2015); Dudík, Langford &
Li (ICML 2011).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stochgrad._checks import check_choice
from stochgrad.apps.offpolicy.policy import (
    _check_actions,
    _check_theta,
    _features,
    check_real,
    true_gradient,
)
from stochgrad.gradient_estimate import GradientEstimate
from stochgrad.surrogate import Surrogate, surrogate_loss

__all__ = [
    "OffPolicyObjective",
    "dm_gradient",
    "dr_gradient",
    "importance_weights",
    "ips_gradient",
    "offpolicy_objective",
    "snips_gradient",
]

#: The off-policy gradients of :func:`offpolicy_objective`.
OBJECTIVES = ("ips", "snips", "dr")


def _check_rounds(
    n: int, actions: Tensor, rewards: Tensor, propensities: Tensor, num_actions: int
) -> None:
    """``ValueError`` naming the first of the logged rounds' tensors that does not fit."""
    for name, t in (("rewards", rewards), ("propensities", propensities)):
        if not isinstance(t, Tensor) or t.shape != (n,):
            raise ValueError(f"{name} must be a tensor of shape [{n}], got {t!r}")
        check_real(
            name, t, like=actions if isinstance(actions, Tensor) else None, like_name="actions"
        )
    if not ((propensities > 0) & (propensities <= 1)).all():
        raise ValueError(
            "propensities must lie in (0, 1]: a logged action with propensity 0 breaks overlap"
        )
    _check_actions(actions, n, num_actions)


def _check_reward_estimates(reward_estimates: Tensor | None, shape: tuple[int, ...]) -> None:
    if not isinstance(reward_estimates, Tensor) or tuple(reward_estimates.shape) != shape:
        raise ValueError(
            f"reward_estimates must be a tensor of shape {shape}, got "
            f"{getattr(reward_estimates, 'shape', reward_estimates)}"
        )
    check_real("reward_estimates", reward_estimates)


def importance_weights(probs: Tensor, actions: Tensor, propensities: Tensor) -> Tensor:
    r"""Importance weights :math:`w_i = \pi(a_i \mid x_i) / \pi_0(a_i \mid x_i)` of logged rounds.

    The one place the weights are computed: the gradients of this module pass them to
    :func:`stochgrad.surrogate_loss` (``weights=``), and the value estimates
    (``info["value"]``, the confounding study's IPS values) are their averages.

    Args:
        probs: ``[n, A]`` the target policy's action probabilities at the logged contexts.
        actions: ``[n]`` int64 logged actions.
        propensities: ``[n]`` logging probabilities :math:`\pi_0(a_i \mid x_i)` in (0, 1].

    Returns:
        ``[n]`` the weights, detached.

    >>> importance_weights(torch.tensor([[0.25, 0.75]]), torch.tensor([1]), torch.tensor([0.5]))
    tensor([1.5000])
    """
    probs = probs.detach()
    return probs[torch.arange(probs.shape[0]), actions] / propensities


@dataclass
class OffPolicyObjective:
    r"""What :func:`offpolicy_objective` returns.

    Attributes:
        loss: scalar whose gradient is the off-policy gradient estimate (of the value, for
            ascent: an optimiser minimising must use ``-loss``).
        value: the value estimate (IPS, SNIPS or DR) whose exact gradient that is.
        weights: ``[n]`` the importance weights :math:`\pi_\theta(a_i \mid x_i)/\pi_0(a_i
            \mid x_i)`.
        surrogate: the importance-weighted score-function part
            (:class:`stochgrad.Surrogate`: coefficients, advantages, normalised weights).
        direct: the direct-method term :math:`\frac1n\sum_i\sum_a \pi_\theta(a \mid x_i)
            \hat q(x_i, a)` (differentiable; DR only), else ``None``.
    """

    loss: Tensor
    value: float
    weights: Tensor
    surrogate: Surrogate
    direct: Tensor | None = None


def offpolicy_objective(
    learner: str,
    logits: Tensor,
    actions: Tensor,
    rewards: Tensor,
    propensities: Tensor,
    reward_estimates: Tensor | None = None,
) -> OffPolicyObjective:
    r"""The IPS, SNIPS or DR off-policy gradient as a loss, built on :func:`stochgrad.surrogate_loss`.

    ``logits`` ``[n, A]`` are the target policy's logits at the logged contexts, differentiable
    in its parameters (any model: the linear softmax of this module, a network). With
    :math:`w_i` from :func:`importance_weights`:

    * ``"ips"``: ``surrogate_loss(log pi(a_i|x_i), r, weights=w)``;
    * ``"snips"``: the same with ``self_normalize=True`` and the constant advantage rule
      :math:`b = \hat V_{\rm SN}` (``advantage=`` :math:`\hat V_{\rm SN}`): the gradient of
      :math:`\hat V_{\rm SN} = \sum_i w_i r_i / \sum_i w_i`;
    * ``"dr"``: the direct-method term :math:`\frac1n\sum_i\sum_a \pi_\theta(a \mid x_i)\hat
      q_{ia}`, an exact (differentiable) expectation over actions, plus
      ``surrogate_loss(log pi(a_i|x_i), r - q_hat(x_i, a_i), weights=w)``.

    ``loss.backward()`` puts the gradient of the value estimate in the parameters' ``.grad``.

    Args:
        learner: ``"ips"``, ``"snips"`` or ``"dr"``.
        logits: ``[n, A]`` target-policy logits.
        actions: the logged actions, ``[n]``.
        rewards: the logged rewards, ``[n]``.
        propensities: the logging policy's probabilities of the logged actions, ``[n]``.
        reward_estimates: ``[n, A]`` :math:`\hat q(x_i, a)`, for ``"dr"``.

    Returns:
        :class:`OffPolicyObjective`.

    >>> logits = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    >>> obj = offpolicy_objective("ips", logits, torch.tensor([0, 1]),
    ...                           torch.tensor([1.0, 0.0], dtype=torch.float64),
    ...                           torch.tensor([0.5, 0.5], dtype=torch.float64))
    >>> obj.value, obj.weights.tolist()
    (0.5, [1.0, 1.0])
    """
    learner = check_choice("learner", learner, OBJECTIVES)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(
            f"logits must be a non-empty [n, A] tensor, got {getattr(logits, 'shape', logits)}"
        )
    _check_rounds(logits.shape[0], actions, rewards, propensities, logits.shape[1])
    probs = torch.softmax(logits, -1)
    rows = torch.arange(logits.shape[0])
    chosen = probs[rows, actions]
    if bool((chosen > 0).all()):
        log_probs = torch.log(chosen)  # one softmax serves the weights, the log-probs and DM
    else:  # a logged action's probability underflowed to 0: keep its log-probability finite
        log_probs = torch.log_softmax(logits, -1)[rows, actions]
    w = importance_weights(probs, actions, propensities)
    direct = None
    if learner == "ips":
        value = float((w * rewards).mean())
        s = surrogate_loss(log_probs, rewards, weights=w)
        loss = s.loss
    elif learner == "snips":
        value = float((w * rewards).sum() / w.sum())
        s = surrogate_loss(log_probs, rewards, advantage=value, weights=w, self_normalize=True)
        loss = s.loss
    else:
        _check_reward_estimates(reward_estimates, tuple(probs.shape))
        q_hat = reward_estimates.to(probs.dtype)
        resid = rewards - q_hat[rows, actions]
        direct = (probs * q_hat).sum(-1).mean()
        value = float(direct.detach() + (w * resid).mean())
        s = surrogate_loss(log_probs, resid, weights=w)
        loss = direct + s.loss
    return OffPolicyObjective(loss=loss, value=value, weights=w, surrogate=s, direct=direct)


def _estimate(
    learner: str,
    theta: Tensor,
    contexts: Tensor,
    actions: Tensor,
    rewards: Tensor,
    propensities: Tensor,
    reward_estimates: Tensor | None = None,
) -> GradientEstimate:
    """The learner's gradient with its per-round terms, as a ``GradientEstimate``.

    Rounds are independent, so each round's logits are computed from its own copy of
    :math:`\theta` (``[n, A, d + 1]``): the gradient of ``n * loss`` with respect to copy ``i``
    is the per-round term of round ``i``, all of them in one backward pass.
    """
    n = contexts.shape[0] if isinstance(contexts, Tensor) and contexts.ndim == 2 else -1
    if n < 1:
        raise ValueError(
            f"contexts must be a non-empty [n, d] tensor, got {getattr(contexts, 'shape', contexts)}"
        )
    _check_theta(theta, contexts)
    copies = theta.detach().expand(n, *theta.shape).clone().requires_grad_(True)
    with torch.enable_grad():
        logits = torch.einsum("nak,nk->na", copies, _features(contexts))
        obj = offpolicy_objective(learner, logits, actions, rewards, propensities, reward_estimates)
        (per_round,) = torch.autograd.grad(obj.loss * n, copies)
    return GradientEstimate.from_per_sample(
        per_round,
        method=learner,
        biased=learner == "snips",
        info={"value": obj.value, "max_weight": float(obj.weights.max()), "weights": obj.weights},
    )


def ips_gradient(
    theta: Tensor, contexts: Tensor, actions: Tensor, rewards: Tensor, propensities: Tensor
) -> GradientEstimate:
    r"""Inverse-propensity-score policy gradient :math:`\frac1n \sum_i w_i r_i \nabla \log
    \pi_\theta(a_i \mid x_i)`, :math:`w_i = \pi_\theta(a_i \mid x_i)/\pi_0(a_i \mid x_i)`.

    It is the gradient of the IPS value estimate :math:`\frac1n \sum_i w_i r_i`. Unbiased under
    overlap, ignorability and correct propensities.

    Args:
        theta: ``[A, d + 1]`` policy parameters.
        contexts: the logged contexts, ``[n, d]``.
        actions: the logged actions, ``[n]``.
        rewards: the logged rewards, ``[n]``.
        propensities: the logging policy's probabilities of the logged actions, ``[n]``.

    Returns:
        :class:`~stochgrad.gradient_estimate.GradientEstimate` with ``per_sample``
        ``[n, A, d + 1]``, ``info["value"]`` (the IPS value estimate), ``info["weights"]`` (the
        ``[n]`` importance weights) and ``info["max_weight"]``. :func:`snips_gradient` and
        :func:`dr_gradient` return the same fields.

    Raises:
        ValueError: shapes disagree, non-finite values, or a propensity outside (0, 1].

    Reference: Williams (1992); Swaminathan & Joachims (JMLR 2015).

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> env = SyntheticBandit(); d = env.sample(50, generator=np.random.default_rng(0))
    >>> est = ips_gradient(torch.zeros(10, 6, dtype=torch.float64), d.contexts, d.actions,
    ...                    d.rewards, d.propensities)
    >>> est.grad.shape, est.num_samples
    (torch.Size([10, 6]), 50)
    """
    return _estimate("ips", theta, contexts, actions, rewards, propensities)


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

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> env = SyntheticBandit(); d = env.sample(50, generator=np.random.default_rng(0))
    >>> est = snips_gradient(torch.zeros(10, 6, dtype=torch.float64), d.contexts, d.actions,
    ...                      d.rewards, d.propensities)
    >>> est.biased
    True
    """
    return _estimate("snips", theta, contexts, actions, rewards, propensities)


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

    the direct-method part an exact expectation over actions (differentiated by autograd), plus
    the importance-weighted correction of its residual through :func:`stochgrad.surrogate_loss`. Unbiased (given the contexts) when the propensities are correct and
    :math:`\hat q` does not depend on the round it corrects (cross-fit it:
    :func:`cross_fitted_rewards`), or when :math:`\hat q = q` whatever the propensities.

    Args:
        reward_estimates: ``[n, A]`` the reward model :math:`\hat q(x_i, a)`.

    Reference: Dudík, Langford & Li (ICML 2011), "Doubly robust policy evaluation and learning".

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> env = SyntheticBandit(); d = env.sample(50, generator=np.random.default_rng(0))
    >>> est = dr_gradient(torch.zeros(10, 6, dtype=torch.float64), d.contexts, d.actions,
    ...                   d.rewards, d.propensities, d.expected_rewards)
    >>> est.per_sample.shape
    torch.Size([50, 10, 6])
    """
    return _estimate("dr", theta, contexts, actions, rewards, propensities, reward_estimates)


def dm_gradient(theta: Tensor, contexts: Tensor, reward_estimates: Tensor) -> Tensor:
    r"""Direct-method gradient: :func:`true_gradient` with :math:`\hat q` in place of :math:`q`.

    >>> dm_gradient(torch.zeros(2, 2, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
    ...             torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    tensor([[ 0.2500,  0.2500],
            [-0.2500, -0.2500]], dtype=torch.float64)
    """
    return true_gradient(theta, contexts, reward_estimates)
