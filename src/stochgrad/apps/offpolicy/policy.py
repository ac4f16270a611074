r"""The linear softmax policy of off-policy learning, its true value and its exact gradient.

:math:`\pi_\theta(a \mid x) \propto \exp(\theta_a^\top \tilde x)`, :math:`\tilde x = (1, x)`;
its value on contexts :math:`x_i` with expected rewards :math:`q(x_i, a)` is
:math:`\frac1n \sum_i \sum_a \pi_\theta(a \mid x_i)\, q(x_i, a)` (:func:`policy_value`), and
:func:`true_gradient` is that value's gradient in closed form: the reference every off-policy
gradient estimate is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["policy_probs", "policy_value", "score", "true_gradient"]

DTYPE = torch.float64


def _features(contexts: Tensor) -> Tensor:
    """:math:`\\tilde x = (1, x)`: the policy's and the reward model's context features."""
    return torch.cat([torch.ones_like(contexts[:, :1]), contexts], 1)


def check_real(
    name: str, value: object, *, like: Tensor | None = None, like_name: str = ""
) -> Tensor:
    """``value`` if it is a finite tensor of real numbers (on the device of ``like``, named
    ``like_name``); ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got {value.dtype}")
    if like is not None and value.device != like.device:
        raise ValueError(
            f"{name} must be on the device of {like_name} ({like.device}), got {value.device}"
        )
    if value.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor: it holds no values")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite")
    return value


def _check_theta(theta: Tensor, contexts: Tensor) -> None:
    contexts = check_real("contexts", contexts)
    if not contexts.is_floating_point():
        raise TypeError(f"contexts must be a floating-point tensor, got {contexts.dtype}")
    if contexts.ndim != 2:
        raise ValueError(f"contexts must be an [n, d] tensor, got shape {list(contexts.shape)}")
    if not isinstance(theta, Tensor) or theta.ndim != 2:
        raise ValueError(f"theta must be a [A, d + 1] tensor, got {getattr(theta, 'shape', theta)}")
    check_real("theta", theta, like=contexts, like_name="contexts")
    if theta.dtype != contexts.dtype:
        raise TypeError(
            f"theta must have the dtype of contexts ({contexts.dtype}), got {theta.dtype}"
        )
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
