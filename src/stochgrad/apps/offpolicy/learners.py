"""Learning a policy from logged rounds by Adam ascent on an off-policy gradient: the ascent
itself (:func:`train_policy`), and the whole job on a log with nothing but contexts, actions,
rewards and propensities (:func:`learn_policy`: split, reward model, ascent, evaluation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad._optim import Adam
from stochgrad.apps.offpolicy.estimators import (
    OBJECTIVES,
    _check_reward_estimates,
    offpolicy_objective,
)
from stochgrad.apps.offpolicy.evaluation import ValueEstimate, offpolicy_value, on_policy_value
from stochgrad.apps.offpolicy.logged import LoggedData
from stochgrad.apps.offpolicy.policy import DTYPE as _DTYPE
from stochgrad.apps.offpolicy.policy import _features, policy_probs, policy_value
from stochgrad.apps.offpolicy.reward_model import cross_fitted_rewards, fit_reward_model
from stochgrad.checkpoint import saved_int, saved_tensor

__all__ = [
    "GRADIENT_LEARNERS",
    "LEARNERS",
    "REWARD_MODELS",
    "LearnedPolicy",
    "learn_policy",
    "split_rounds",
    "train_policy",
]

#: The learners of the comparison: policy gradient with an off-policy gradient, or the direct
#: method (greedy on a fitted reward model).
LEARNERS: tuple[str, ...] = ("ips", "snips", "dr", "dm")
#: The learners that follow an off-policy gradient (:func:`train_policy`).
GRADIENT_LEARNERS: tuple[str, ...] = OBJECTIVES


#: The most optimiser steps of one training run.
MAX_ITERATIONS = 10**7


def train_policy(
    data: LoggedData,
    learner: str,
    *,
    iterations: int = 300,
    lr: float = 0.05,
    reward_estimates: Tensor | None = None,
    progress: Callable[[int], None] | None = None,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    save_every: int = 50,
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
        iterations: Adam steps (at most :data:`MAX_ITERATIONS`).
        lr: Adam step size.
        reward_estimates: ``[n, A]`` :math:`\\hat q` for ``"dr"`` (cross-fitted).
        progress: called with 1 after every step (with the number of steps already done,
            first, when continuing from ``state``).
        state: a mid-run state given earlier to ``save``: continue from it (the result equals
            that of an uninterrupted run).
        save: called with the mid-run state (tensors and ints) every ``save_every`` steps.
        save_every: steps between two calls of ``save``.

    Returns:
        ``[A, d + 1]`` learned parameters.

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> env = SyntheticBandit(); d = env.sample(200, generator=np.random.default_rng(0))
    >>> train_policy(d, "ips", iterations=3).shape
    torch.Size([10, 6])
    """
    learner = check_choice("learner", learner, GRADIENT_LEARNERS)
    iterations = check_int("iterations", iterations, minimum=1, maximum=MAX_ITERATIONS)
    lr = check_float("lr", lr, minimum=0.0, open_min=True)
    save_every = check_int("save_every", save_every, minimum=1)
    if learner == "dr" and reward_estimates is None:
        raise ValueError(
            "learner 'dr' needs reward_estimates (learn_policy fits them from the logged rewards)"
        )
    A, d = data.num_actions, data.contexts.shape[1]
    opt = Adam(torch.zeros(A, d + 1, dtype=_DTYPE), lr=lr, maximize=True)
    if state is not None:
        _load_adam(opt, state, iterations)
        if progress is not None and opt.k:
            progress(opt.k)
    x1 = _features(data.contexts)
    logged = (data.actions, data.rewards, data.propensities)
    while opt.k < iterations:
        theta = opt.value.detach().requires_grad_(True)
        with torch.enable_grad():
            obj = offpolicy_objective(learner, x1 @ theta.T, *logged, reward_estimates)
            (grad,) = torch.autograd.grad(obj.loss, theta)
        opt.step(grad)  # the gradient of the value estimate
        if save is not None and opt.k % save_every == 0 and opt.k < iterations:
            save(opt.state_dict())
        if progress is not None:
            progress(1)
    return opt.value


def _load_adam(opt: Adam, state: dict[str, Any], iterations: int) -> None:
    """Restore Adam from a mid-run ``state``, checked against the run it continues (the point
    and both moments: the parameters' shape and dtype, finite; the second moment >= 0)."""
    try:
        for name in ("value", "m", "v"):
            saved_tensor(
                state,
                name,
                shape=tuple(opt.value.shape),
                dtype=opt.value.dtype,
                finite=True,
                minimum=0.0 if name == "v" else None,
            )
        saved_int(state, "k", minimum=0, maximum=iterations)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"state is not a mid-run state of this training ([{', '.join(map(str, opt.value.shape))}]"
            f" parameters, at most {iterations} steps): {exc}"
        ) from None
    opt.load_state_dict(state)


#: How :func:`learn_policy` gets the reward model: cross-fitted from the logged rewards, or none
#: (DR's correction then has nothing to correct: it is IPS).
REWARD_MODELS: tuple[str, ...] = ("cross-fit", "none")


@dataclass
class LearnedPolicy:
    r"""What :func:`learn_policy` returns.

    Attributes:
        theta: ``[A, d + 1]`` the learned linear softmax policy (column 0 the per-action bias):
            :func:`~stochgrad.apps.offpolicy.policy_probs` gives its action probabilities.
        estimator: the off-policy gradient it ascended (``"ips"``, ``"snips"``, ``"dr"``).
        reward_model: ``"cross-fit"``, ``"none"`` or ``"given"``.
        value: the learned policy's value by ``estimator`` on the evaluation rounds.
        values: its value by every estimator available there (``"dr"`` needs a reward model).
        logging_value: the logging policy's value there: the mean logged reward.
        train_rounds, eval_rounds: the rounds learned from and evaluated on.
        in_sample: whether the evaluation rounds are the training rounds (``holdout=0``): then
            the values flatter the learned policy.
        true_value: its true value on the evaluation rounds' contexts, when the data carry the
            true expected rewards (simulated logs), else ``None``.
        true_logging_value: the logging policy's, when the data also carry ``behavior``.
    """

    theta: Tensor
    estimator: str
    reward_model: str
    value: ValueEstimate
    values: dict[str, ValueEstimate]
    logging_value: ValueEstimate
    train_rounds: int
    eval_rounds: int
    in_sample: bool
    true_value: float | None = None
    true_logging_value: float | None = None

    @property
    def gain(self) -> ValueEstimate:
        """Learned minus logging value, with the standard error of the paired difference."""
        return self.value - self.logging_value


def split_rounds(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, eval)`` row indices, each in increasing order: a random ``holdout`` fraction
    (rounded, drawn with ``numpy.random.default_rng([seed, 0])``) for evaluation; with
    ``holdout=0`` both are every row.

    Examples:
        >>> [r.tolist() for r in split_rounds(5, 0.4, seed=0)]
        [[0, 1, 3], [2, 4]]
    """
    n = check_int("n", n, minimum=2, maximum=2**31)
    holdout = check_float("holdout", holdout, minimum=0.0, maximum=1.0, open_max=True)
    seed = check_seed("seed", seed)
    if holdout == 0:
        every = np.arange(n)
        return every, every
    n_eval = round(holdout * n)
    if n_eval < 2 or n - n_eval < 2:
        raise ValueError(
            f"holdout={holdout} of {n} rounds leaves {n - n_eval} to learn from and {n_eval} to "
            "evaluate on; each needs at least 2"
        )
    perm = np.random.default_rng([seed, 0]).permutation(n)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def learn_policy(
    data: LoggedData,
    estimator: str = "snips",
    *,
    reward_model: str | Tensor = "cross-fit",
    holdout: float = 0.2,
    iterations: int = 300,
    lr: float = 0.05,
    folds: int = 2,
    C: float = 1.0,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> LearnedPolicy:
    r"""Learn a policy from logged rounds alone, and estimate its value against the logger's.

    Needs only contexts, actions, rewards and propensities (a real log); true expected rewards,
    when ``data`` carries them, are used for evaluation only. Steps:

    1. :func:`split_rounds`: a random ``holdout`` fraction of the rounds is kept aside.
    2. The reward model :math:`\hat q` for ``"dr"``: with ``"cross-fit"``,
       :func:`~stochgrad.apps.offpolicy.cross_fitted_rewards` on the training rounds (logistic
       for 0/1 rewards, ridge otherwise); with ``"none"``, :math:`\hat q \equiv 0`, and the DR
       gradient is exactly the IPS gradient; a ``[n, A]`` tensor is taken as given.
    3. :func:`train_policy` (Adam ascent on the estimator's value estimate from
       :math:`\theta = 0`, the uniform policy) on the training rounds.
    4. :func:`~stochgrad.apps.offpolicy.offpolicy_value` of the learned policy on the held-out
       rounds by IPS, SNIPS and (with a reward model, fitted on all training rounds) DR, and the
       logging policy's value there (the mean logged reward), each with its standard error.

    Everything is a deterministic function of the data and the arguments.

    Args:
        data: the logged rounds.
        estimator: ``"ips"``, ``"snips"`` or ``"dr"``.
        reward_model: :data:`REWARD_MODELS` or a ``[n, A]`` tensor of :math:`\hat q`.
        holdout: the fraction of rounds for evaluation, in [0, 1); 0 evaluates on the
            training rounds (optimistic: ``in_sample``).
        iterations: Adam steps (at most :data:`MAX_ITERATIONS`).
        lr: Adam step size.
        folds: cross-fitting folds.
        C: inverse L2 penalty of the reward model.
        seed: the split (``[seed, 0]``) and the folds (``[seed, 1]``) of numpy's generator.
        progress: advanced by one per Adam step.
        state: a mid-run state to continue from (see :func:`train_policy`).
        save: called with the mid-run state (see :func:`train_policy`).

    Returns:
        :class:`LearnedPolicy`.

    Raises:
        ValueError: an unknown estimator or reward model, a holdout leaving fewer than 2
            rounds on either side, a reward tensor of the wrong shape.

    References: Swaminathan & Joachims (JMLR 2015); Dudík, Langford & Li (ICML 2011);
    Chernozhukov et al. (2018) (cross-fitting).

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> d = SyntheticBandit().sample(400, generator=np.random.default_rng(0))
    >>> res = learn_policy(d, "ips", reward_model="none", iterations=5)
    >>> res.theta.shape, res.train_rounds, res.eval_rounds, sorted(res.values)
    (torch.Size([10, 6]), 320, 80, ['ips', 'snips'])
    """
    if not isinstance(data, LoggedData):
        raise TypeError(f"data must be a LoggedData, got {type(data).__name__}")
    estimator = check_choice("estimator", estimator, GRADIENT_LEARNERS)
    if isinstance(reward_model, Tensor):
        _check_reward_estimates(reward_model, (len(data), data.num_actions))
        given, model_name = reward_model.to(_DTYPE), "given"
    else:
        given, model_name = None, check_choice("reward_model", reward_model, REWARD_MODELS)
    folds = check_int("folds", folds, minimum=2, maximum=len(data))
    C = check_float("C", C, minimum=0.0, open_min=True)
    check_int("iterations", iterations, minimum=1, maximum=MAX_ITERATIONS)
    train_rows, eval_rows = split_rounds(len(data), holdout, seed)
    in_sample = eval_rows is train_rows  # holdout 0: split_rounds gives one array for both
    train = data.select(train_rows)
    held = train if in_sample else data.select(eval_rows)
    q_train = q_eval = None
    if model_name == "given":
        q_train, q_eval = given[train_rows], given[eval_rows]
    elif model_name == "cross-fit":
        if estimator == "dr" or in_sample:
            g = np.random.default_rng([seed, 1])
            q_train = cross_fitted_rewards(train, folds, generator=g, C=C, kind="auto")
        if in_sample:
            q_eval = q_train
        else:  # a model of every training round, independent of the held-out ones
            model = fit_reward_model(
                train.contexts, train.actions, train.rewards, data.num_actions, C=C, kind="auto"
            )
            q_eval = model.predict(held.contexts)
    elif estimator == "dr":
        q_train = torch.zeros(len(train), data.num_actions, dtype=_DTYPE)
    theta = train_policy(
        train,
        estimator,
        iterations=iterations,
        lr=lr,
        reward_estimates=q_train if estimator == "dr" else None,
        progress=progress,
        state=state,
        save=save,
    )
    probs = policy_probs(theta, held.contexts)
    logged = (held.actions, held.rewards, held.propensities)
    values = {k: offpolicy_value(k, probs, *logged) for k in ("ips", "snips")}
    if q_eval is not None:
        values["dr"] = offpolicy_value("dr", probs, *logged, q_eval)
    value = values.get(estimator, values["ips"])  # "dr" without a reward model is IPS
    true_value = true_logging = None
    if held.expected_rewards is not None:
        true_value = policy_value(probs, held.expected_rewards)
        if held.behavior is not None:
            true_logging = policy_value(held.behavior, held.expected_rewards)
    return LearnedPolicy(
        theta=theta,
        estimator=estimator,
        reward_model=model_name,
        value=value,
        values=values,
        logging_value=on_policy_value(held.rewards),
        train_rounds=len(train),
        eval_rounds=len(held),
        in_sample=in_sample,
        true_value=true_value,
        true_logging_value=true_logging,
    )
