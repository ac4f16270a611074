r"""Deprecated: the policy-gradient trainer's returns, advantages and loss come from the engine.

The private copies that lived here are gone; :class:`~stochgrad.apps.rl.gym_trainer.Trainer`
calls the core:

* the reward-to-go: :func:`stochgrad.reward_to_go` (``rewards, gamma, dones``, time first);
* GAE: :func:`stochgrad.gae` (``rewards, values, gamma, lam, dones, last_value``); an episode
  cut by a time limit is bootstrapped by adding :math:`\gamma V(s')` to its last reward;
* the REINFORCE loss: :func:`stochgrad.surrogate_loss` (``log_probs, values, advantage=...,
  maximize=True``), plus the entropy bonus.

``discounted_returns``, ``gae_advantages`` and ``reinforce_loss`` still work, with their old
arguments and numbers, through those functions, after a :class:`DeprecationWarning`; they will
be removed in the next release.

>>> import warnings, torch
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DeprecationWarning)
...     from stochgrad.apps.rl.returns import discounted_returns
>>> r = torch.tensor([[1.0], [1.0], [1.0]])
>>> d = torch.tensor([[False], [False], [True]])
>>> discounted_returns(r, d, gamma=0.5).squeeze(1).tolist()
[1.75, 1.5, 1.0]
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from stochgrad._checks import check_float, check_probability
from stochgrad.baselines import gae, reward_to_go
from stochgrad.surrogate import surrogate_loss

__all__: list[str] = []


def _bootstrapped(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    terminated: torch.Tensor | None,
    next_values: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards with :math:`\\gamma V(s')` added where an episode is cut (a done that is not a
    termination, or the rollout's last step), and the episode ends (the last step included)."""
    terminated = dones if terminated is None else terminated
    ends = dones.clone()
    ends[-1] = True
    if next_values is None:
        return rewards, ends
    cut = ends & ~terminated
    return rewards + gamma * torch.where(cut, next_values, torch.zeros_like(next_values)), ends


def _discounted_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    *,
    terminated: torch.Tensor | None = None,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reward-to-go of a ``[T, N]`` rollout, bootstrapped with ``next_values`` where an
    episode is cut (deprecated: :func:`stochgrad.reward_to_go`)."""
    check_probability("gamma", gamma)
    r, ends = _bootstrapped(rewards, dones, gamma, terminated, next_values)
    return reward_to_go(r, gamma, ends)


def _gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
    *,
    terminated: torch.Tensor | None = None,
) -> torch.Tensor:
    """GAE of a ``[T, N]`` rollout (deprecated: :func:`stochgrad.gae`)."""
    check_probability("gamma", gamma)
    check_probability("lam", lam)
    r, ends = _bootstrapped(rewards, dones, gamma, terminated, next_values)
    return gae(r, values, gamma, lam, ends)[0]


def _reinforce_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> torch.Tensor:
    """Minus the REINFORCE surrogate and the entropy bonus (deprecated:
    :func:`stochgrad.surrogate_loss` with ``maximize=True``)."""
    entropy_coef = check_float("entropy_coef", entropy_coef)
    loss = surrogate_loss(log_probs, advantages.detach(), maximize=True).loss
    if entropy is not None and entropy_coef:
        loss = loss - entropy_coef * entropy.mean()
    return loss


#: deprecated name -> (function, what to use instead)
DEPRECATED = {
    "discounted_returns": (_discounted_returns, "stochgrad.reward_to_go"),
    "gae_advantages": (_gae_advantages, "stochgrad.gae"),
    "reinforce_loss": (_reinforce_loss, "stochgrad.surrogate_loss"),
}


def deprecated(module: str, name: str) -> Any:
    """The deprecated function ``name``, after a :class:`DeprecationWarning` naming what to use.

    Raises:
        AttributeError: ``name`` is not one of :data:`DEPRECATED`.
    """
    if name not in DEPRECATED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    fn, instead = DEPRECATED[name]
    warnings.warn(
        f"{module}.{name} is deprecated: the trainer now uses {instead}; the old name will be "
        "removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return fn


def __getattr__(name: str) -> Any:
    return deprecated(__name__, name)
