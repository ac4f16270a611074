"""The reward model :math:`\\hat q(x, a)` of the direct method and of doubly robust gradients:
one logistic regression per action for 0/1 rewards, one ridge regression per action for other
rewards (scikit-learn), cross-fitted over folds.

Reference: Chernozhukov et al. (2018), "Double/debiased machine learning" (cross-fitting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_numpy_generator
from stochgrad.apps.offpolicy.logged import LoggedData
from stochgrad.apps.offpolicy.policy import DTYPE as _DTYPE
from stochgrad.apps.offpolicy.policy import _features

__all__ = ["REWARD_MODEL_KINDS", "RewardModel", "cross_fitted_rewards", "fit_reward_model"]


def _reward_features(contexts: Tensor, actions: np.ndarray, num_actions: int) -> np.ndarray:
    """Features of (x, a): ``onehot(a) (x) (1, x)``: a logistic model per action, fitted jointly."""
    feats = _features(torch.as_tensor(contexts, dtype=_DTYPE)).numpy()
    out = np.zeros((feats.shape[0], num_actions, feats.shape[1]))
    out[np.arange(feats.shape[0]), actions] = feats
    return out.reshape(feats.shape[0], -1)


#: The reward models: logistic (0/1 rewards), linear (ridge, any rewards), or chosen from the
#: rewards (``"auto"``: logistic when they are 0/1 and take both values, else linear).
REWARD_MODEL_KINDS = ("logistic", "linear", "auto")


def _binary(r: np.ndarray) -> bool:
    return bool(np.isin(r, (0.0, 1.0)).all()) and np.unique(r).size == 2


@dataclass
class RewardModel:
    """A fitted reward model :math:`\\hat q(x, a)` on the features ``onehot(a) (x) (1, x)``:
    one regression per action, fitted jointly.

    ``kind="logistic"``: scikit-learn's ``LogisticRegression`` (0/1 rewards; the synthetic
    :math:`q` lies in this class; ``C`` is the inverse L2 penalty). ``kind="linear"``:
    ``Ridge`` with penalty ``1 / C`` (any real rewards).

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> env = SyntheticBandit(); d = env.sample(500, generator=np.random.default_rng(0))
    >>> fit_reward_model(d.contexts, d.actions, d.rewards, 10).predict(d.contexts).shape
    torch.Size([500, 10])
    """

    classifier: Any
    num_actions: int
    kind: str = "logistic"

    def predict(self, contexts: Tensor) -> Tensor:
        """``[n, A]`` predicted expected rewards."""
        n = contexts.shape[0]
        acts = np.repeat(np.arange(self.num_actions)[None, :], n, 0).reshape(-1)
        ctx = torch.as_tensor(contexts, dtype=_DTYPE).repeat_interleave(self.num_actions, 0)
        feats = _reward_features(ctx, acts, self.num_actions)
        if self.kind == "linear":
            p = self.classifier.predict(feats)
        else:
            p = self.classifier.predict_proba(feats)[:, 1]
        return torch.from_numpy(np.asarray(p, dtype=np.float64).reshape(n, self.num_actions))


def fit_reward_model(
    contexts: Tensor,
    actions: Tensor,
    rewards: Tensor,
    num_actions: int,
    *,
    C: float = 1.0,
    kind: str = "logistic",
) -> RewardModel:
    """Fit :class:`RewardModel` to logged rounds.

    ``"logistic"``: maximum penalised likelihood (L-BFGS); ``"linear"``: ridge least squares;
    ``"auto"``: logistic for 0/1 rewards that take both values, else linear.

    Raises:
        ValueError: ``kind="logistic"`` and the rewards are not 0/1 or take a single value;
            non-finite rewards.
    """
    num_actions = check_int("num_actions", num_actions, minimum=2)
    C = check_float("C", C, minimum=0.0, open_min=True)
    kind = check_choice("kind", kind, REWARD_MODEL_KINDS)
    r = np.asarray(rewards, dtype=np.float64)
    if not np.isfinite(r).all():
        raise ValueError("rewards must be finite to fit a reward model")
    if kind == "auto":
        kind = "logistic" if _binary(r) else "linear"
    feats = _reward_features(contexts, np.asarray(actions), num_actions)
    if kind == "logistic":
        if not _binary(r):
            raise ValueError(
                "rewards must be 0/1 and take both values to fit a reward model "
                "(kind='linear' or 'auto' for other rewards)"
            )
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, fit_intercept=False, max_iter=1000)
        clf.fit(feats, r.astype(int))
    else:
        from sklearn.linear_model import Ridge

        clf = Ridge(alpha=1.0 / C, fit_intercept=False)
        clf.fit(feats, r)
    return RewardModel(clf, num_actions, kind)


def cross_fitted_rewards(
    data: LoggedData,
    folds: int = 2,
    *,
    generator: np.random.Generator,
    C: float = 1.0,
    kind: str = "logistic",
) -> Tensor:
    """``[n, A]`` reward estimates where each round's row comes from a model fitted on the other
    folds (cross-fitting: the model is independent of the round it corrects).

    Only the logged contexts, actions and rewards are used (``data.behavior`` and
    ``data.expected_rewards`` may be ``None``).

    Args:
        data: the logged rounds.
        folds: number of folds (>= 2); fold ``k`` holds the rounds whose place in a random
            permutation is ``k`` modulo ``folds``.
        generator: draws the permutation.
        C: inverse penalty of the reward model.
        kind: :data:`REWARD_MODEL_KINDS` (see :func:`fit_reward_model`); ``"auto"`` decides once,
            on all the rewards, so every fold fits the same kind of model.

    Reference: Chernozhukov et al. (2018), "Double/debiased machine learning".

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> d = SyntheticBandit().sample(200, generator=np.random.default_rng(0))
    >>> cross_fitted_rewards(d, generator=np.random.default_rng(1)).shape
    torch.Size([200, 10])
    """
    folds = check_int("folds", folds, minimum=2)
    g = check_numpy_generator(generator)
    kind = check_choice("kind", kind, REWARD_MODEL_KINDS)
    n, A = len(data), data.num_actions
    if folds > n:
        raise ValueError(f"folds must be <= the {n} logged rounds, got {folds}")
    if kind == "auto":
        kind = "logistic" if _binary(data.rewards.numpy()) else "linear"
    fold = g.permutation(n) % folds
    out = torch.empty(n, A, dtype=_DTYPE)
    for k in range(folds):
        train, held = fold != k, fold == k
        model = fit_reward_model(
            data.contexts[train], data.actions[train], data.rewards[train], A, C=C, kind=kind
        )
        out[torch.from_numpy(held)] = model.predict(data.contexts[held])
    return out
