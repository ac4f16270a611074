r"""Returns, advantages and the REINFORCE surrogate loss of a rollout (the policy-gradient
estimator's pieces, on ``[T, N]`` tensors: ``T`` steps of ``N`` environments).

* :func:`discounted_returns`: the reward-to-go :math:`G_t`, bootstrapped where an episode is cut;
* :func:`gae_advantages`: GAE(:math:`\gamma, \lambda`) (Schulman et al. 2016);
* :func:`reinforce_loss`: the surrogate whose gradient is minus the score-function estimate
  (Williams 1992), with an optional entropy bonus.

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8; Schulman, Moritz, Levine, Jordan, Abbeel
    (ICLR 2016), "High-dimensional continuous control using generalized advantage estimation".

>>> import torch
>>> r = torch.tensor([[1.0], [1.0], [1.0]])
>>> d = torch.tensor([[False], [False], [True]])
>>> discounted_returns(r, d, gamma=0.5).squeeze(1).tolist()
[1.75, 1.5, 1.0]
"""

from __future__ import annotations

import torch

from stochgrad._checks import check_float, check_probability

__all__ = ["discounted_returns", "gae_advantages", "reinforce_loss"]


def discounted_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    *,
    terminated: torch.Tensor | None = None,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Discounted reward-to-go of every step of a ``[T, N]`` rollout.

    .. math::

        G_t = r_t + \gamma\big[(1 - d_t)\, G_{t+1} + d_t (1 - e_t)\, V(s'_t)\big],
        \qquad G_T := V(s'_{T-1}),

    where :math:`d_t` marks the end of an episode after step :math:`t` (terminated or
    truncated), :math:`e_t` a true termination, and :math:`V(s'_t)` (``next_values``) the value
    of the state reached by step :math:`t` (0 when ``next_values`` is None: no bootstrap).

    Args:
        rewards: ``[T, N]`` rewards.
        dones: ``[T, N]`` bool, the episode ended after this step.
        gamma: discount in [0, 1].
        terminated: ``[T, N]`` bool, true terminations (default: ``dones``).
        next_values: ``[T, N]`` values of the next states, or None.

    Returns:
        ``[T, N]`` returns :math:`G_t`.

    >>> r = torch.ones(2, 1); d = torch.zeros(2, 1, dtype=torch.bool)
    >>> discounted_returns(r, d, 0.5, next_values=torch.full((2, 1), 4.0)).squeeze(1).tolist()
    [2.5, 3.0]
    """
    check_probability("gamma", gamma)
    terminated = dones if terminated is None else terminated
    nv = torch.zeros_like(rewards) if next_values is None else next_values
    done = dones.to(rewards.dtype)
    live = 1.0 - terminated.to(rewards.dtype)
    out = torch.empty_like(rewards)
    last = rewards.shape[0] - 1
    for t in range(last, -1, -1):
        boot = nv[t] * live[t]  # value of the next state, 0 after a true termination
        carry = boot if t == last else (1.0 - done[t]) * out[t + 1] + done[t] * boot
        out[t] = rewards[t] + gamma * carry
    return out


def gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
    *,
    terminated: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Generalised advantage estimates GAE(:math:`\gamma, \lambda`) of a ``[T, N]`` rollout.

    .. math::

        \delta_t = r_t + \gamma (1 - e_t) V(s'_t) - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma\lambda (1 - d_t)\, \hat A_{t+1}, \quad \hat A_T = 0.

    :math:`\lambda = 1` gives the bootstrapped discounted return minus :math:`V(s_t)`,
    :math:`\lambda = 0` the one-step TD error (Schulman et al. 2016, eqs. 16-18).

    Args:
        rewards, values, next_values: ``[T, N]``; ``values`` are :math:`V(s_t)`,
            ``next_values`` :math:`V(s'_t)` of the state reached by step ``t`` (its final
            observation when the episode ended).
        dones: ``[T, N]`` bool, episode ended (terminated or truncated) after step ``t``.
        gamma: discount in [0, 1]; lam: :math:`\lambda` in [0, 1].
        terminated: ``[T, N]`` bool, true terminations (default: ``dones``).

    Returns:
        ``[T, N]`` advantages.

    >>> r = torch.ones(2, 1); v = torch.zeros(2, 1); d = torch.tensor([[False], [True]])
    >>> gae_advantages(r, v, v, d, 0.5, 1.0).squeeze(1).tolist()
    [1.5, 1.0]
    """
    check_probability("gamma", gamma)
    check_probability("lam", lam)
    terminated = dones if terminated is None else terminated
    live = 1.0 - terminated.to(rewards.dtype)
    cont = 1.0 - dones.to(rewards.dtype)
    delta = rewards + gamma * live * next_values - values
    out = torch.empty_like(rewards)
    acc = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        acc = delta[t] + gamma * lam * cont[t] * acc
        out[t] = acc
    return out


def reinforce_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> torch.Tensor:
    r"""The surrogate loss whose gradient is minus the REINFORCE estimate (Williams 1992).

    .. math::

        \mathcal L(\theta) = -\frac1M \sum_i \log\pi_\theta(a_i \mid s_i)\,
            \mathrm{sg}(\hat A_i) - \beta \frac1M \sum_i \mathcal H_i,

    so :math:`-\nabla\mathcal L = \frac1M\sum_i \nabla\log\pi_\theta(a_i|s_i) \hat A_i + \beta
    \nabla \bar{\mathcal H}`. Advantages are detached.

    >>> lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    >>> reinforce_loss(lp, torch.tensor([1.0, 3.0])).backward(); lp.grad.tolist()
    [-0.5, -1.5]
    """
    entropy_coef = check_float("entropy_coef", entropy_coef)
    loss = -(log_probs * advantages.detach()).mean()
    if entropy is not None and entropy_coef:
        loss = loss - entropy_coef * entropy.mean()
    return loss
