r"""Off-policy policy gradients from logged rounds: IPS, self-normalised IPS, doubly robust.

With :math:`w_i = \pi_\theta(a_i \mid x_i) / \pi_0(a_i \mid x_i)`:

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

Each returns a :class:`~stochgrad.gradient_estimate.GradientEstimate` (per-round terms, standard
error) and is the exact gradient of its value estimate.

References: Williams (1992); Swaminathan & Joachims (JMLR 2015; NeurIPS 2015); Dudík, Langford &
Li (ICML 2011).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.apps.offpolicy.policy import (
    _check_actions,
    _features,
    policy_probs,
    true_gradient,
)
from stochgrad.gradient_estimate import GradientEstimate

__all__ = ["dm_gradient", "dr_gradient", "ips_gradient", "snips_gradient"]


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

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
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

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
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

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
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
