"""Learning a policy from logged rounds by Adam ascent on an off-policy gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int
from stochgrad._optim import Adam
from stochgrad.apps.offpolicy.estimators import OBJECTIVES, offpolicy_objective
from stochgrad.apps.offpolicy.logged import LoggedData
from stochgrad.apps.offpolicy.policy import DTYPE as _DTYPE
from stochgrad.apps.offpolicy.policy import _features

__all__ = ["GRADIENT_LEARNERS", "LEARNERS", "train_policy"]

#: The learners of the comparison: policy gradient with an off-policy gradient, or the direct
#: method (greedy on a fitted reward model).
LEARNERS: tuple[str, ...] = ("ips", "snips", "dr", "dm")
#: The learners that follow an off-policy gradient (:func:`train_policy`).
GRADIENT_LEARNERS: tuple[str, ...] = OBJECTIVES


def train_policy(
    data: LoggedData,
    learner: str,
    *,
    iterations: int = 300,
    lr: float = 0.05,
    reward_estimates: Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """Learn a linear softmax policy by Adam ascent on an off-policy gradient.

    Full-batch: every iteration uses all logged rounds, starting from :math:`\\theta = 0` (the
    uniform policy), so the result is a deterministic function of the data. The step is
    :class:`stochgrad._optim.Adam` (``maximize=True``) on the gradient of the learner's value
    estimate: the gradient of :func:`~stochgrad.apps.offpolicy.estimators.offpolicy_objective`'s
    loss (an importance-weighted :func:`stochgrad.surrogate_loss`, plus the direct-method term
    for ``"dr"``), the mean of the per-round terms that
    :func:`~stochgrad.apps.offpolicy.ips_gradient` & co. report.

    Args:
        data: the logged rounds (only contexts, actions, rewards and propensities are used).
        learner: ``"ips"``, ``"snips"`` or ``"dr"``.
        iterations: Adam steps.
        lr: Adam step size.
        reward_estimates: ``[n, A]`` :math:`\\hat q` for ``"dr"`` (cross-fitted).
        progress: called with 1 after every step.

    Returns:
        ``[A, d + 1]`` learned parameters.

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> env = SyntheticBandit(); d = env.sample(200, generator=np.random.default_rng(0))
    >>> train_policy(d, "ips", iterations=3).shape
    torch.Size([10, 6])
    """
    learner = check_choice("learner", learner, GRADIENT_LEARNERS)
    iterations = check_int("iterations", iterations, minimum=1)
    lr = check_float("lr", lr, minimum=0.0, open_min=True)
    if learner == "dr" and reward_estimates is None:
        raise ValueError("learner 'dr' needs reward_estimates")
    A, d = data.behavior.shape[1], data.contexts.shape[1]
    opt = Adam(torch.zeros(A, d + 1, dtype=_DTYPE), lr=lr, maximize=True)
    x1 = _features(data.contexts)
    logged = (data.actions, data.rewards, data.propensities)
    for _ in range(iterations):
        theta = opt.value.detach().requires_grad_(True)
        with torch.enable_grad():
            obj = offpolicy_objective(learner, x1 @ theta.T, *logged, reward_estimates)
            (grad,) = torch.autograd.grad(obj.loss, theta)
        opt.step(grad)  # the gradient of the value estimate
        if progress is not None:
            progress(1)
    return opt.value
