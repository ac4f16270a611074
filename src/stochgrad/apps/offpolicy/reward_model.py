"""The reward model :math:`\\hat q(x, a)` of the direct method and of doubly robust gradients:
one logistic regression per action (scikit-learn), cross-fitted over folds.

Reference: Chernozhukov et al. (2018), "Double/debiased machine learning" (cross-fitting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_float, check_int, check_numpy_generator
from stochgrad.apps.offpolicy.logged import LoggedData
from stochgrad.apps.offpolicy.policy import DTYPE as _DTYPE
from stochgrad.apps.offpolicy.policy import _features

__all__ = ["RewardModel", "cross_fitted_rewards", "fit_reward_model"]


def _reward_features(contexts: Tensor, actions: np.ndarray, num_actions: int) -> np.ndarray:
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

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
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
        p = self.classifier.predict_proba(_reward_features(ctx, acts, self.num_actions))[:, 1]
        return torch.from_numpy(p.reshape(n, self.num_actions))


def fit_reward_model(
    contexts: Tensor, actions: Tensor, rewards: Tensor, num_actions: int, *, C: float = 1.0
) -> RewardModel:
    """Fit :class:`RewardModel` to logged rounds (maximum penalised likelihood, L-BFGS).

    Raises:
        ValueError: the rewards are not 0/1 or take a single value.
    """
    num_actions = check_int("num_actions", num_actions, minimum=2)
    C = check_float("C", C, minimum=0.0, open_min=True)
    r = np.asarray(rewards, dtype=np.float64)
    if not np.isin(r, (0.0, 1.0)).all() or np.unique(r).size < 2:
        raise ValueError("rewards must be 0/1 and take both values to fit a reward model")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, fit_intercept=False, max_iter=1000)
    clf.fit(_reward_features(contexts, np.asarray(actions), num_actions), r.astype(int))
    return RewardModel(clf, num_actions)


def cross_fitted_rewards(
    data: LoggedData, folds: int = 2, *, generator: np.random.Generator, C: float = 1.0
) -> Tensor:
    """``[n, A]`` reward estimates where each round's row comes from a model fitted on the other
    folds (cross-fitting: the model is independent of the round it corrects).

    Reference: Chernozhukov et al. (2018), "Double/debiased machine learning".
    """
    folds = check_int("folds", folds, minimum=2)
    g = check_numpy_generator(generator)
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
