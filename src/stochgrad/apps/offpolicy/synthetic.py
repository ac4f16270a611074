r"""Synthetic logged bandit data: the Open Bandit Pipeline-style bandit, and a confounded one.

:class:`SyntheticBandit` is written in the style of Open Bandit Pipeline's
``SyntheticBanditDataset`` (Saito et al. 2021) with ``reward_function=logistic_reward_function``
and the default logging policy :math:`\pi_0 = \mathrm{softmax}(\beta\, q)`: contexts
:math:`x \sim N(0, I_5)`, 10 actions, binary rewards with :math:`q(x, a) = \sigma(f(x, a))`, where
:math:`f` is OBP's degree-1 base reward function (the coefficients are drawn as OBP draws them,
uniform on :math:`[-1, 1]` from ``RandomState(12345)``) z-scored. It is not bit-identical: OBP
z-scores :math:`f` with the mean and standard deviation of each generated batch, so its :math:`q`
changes from batch to batch; here the exact population mean and standard deviation (over
:math:`x \sim N(0, I)` and a uniform action) are used, so :math:`q` is one fixed function and the
true value of any policy on any set of contexts is computable exactly
(:func:`~stochgrad.apps.offpolicy.policy_value`). The rounds are drawn from a
``numpy.random.Generator`` per seed, not from OBP's streams.

:class:`ConfoundedBandit`: a hidden coin :math:`u \in \{0, 1\}` pushes the logging policy and the
reward in the same direction for half of the actions. With the propensities of the
observed-context logging policy :math:`\pi_0(a \mid x) = \mathbb E_u \pi_0(a \mid x, u)`, IPS
estimates :math:`\mathbb E_x \sum_a \pi_\theta\, \mathbb E[r \mid x, A = a]\, \nabla \log
\pi_\theta`, not the gradient with :math:`\mathbb E_u q(x, a, u)`: biased. With
:math:`\pi_0(a \mid x, u)` it is unbiased again (ignorability given :math:`(x, u)`); the study
:func:`stochgrad.studies.offpolicy.confounding_study` measures both.

Reference: Saito, Aihara, Matsutani & Narita (NeurIPS 2021 Datasets and Benchmarks), "Open
Bandit Dataset and Pipeline".

>>> env = SyntheticBandit()
>>> data = env.sample(100, generator=np.random.default_rng(0))
>>> data.contexts.shape, data.expected_rewards.shape
(torch.Size([100, 5]), torch.Size([100, 10]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_float, check_int, check_numpy_generator
from stochgrad.apps.offpolicy.logged import LoggedData
from stochgrad.apps.offpolicy.policy import DTYPE as _DTYPE
from stochgrad.apps.offpolicy.policy import _features

__all__ = ["ConfoundedBandit", "ConfoundedData", "SyntheticBandit"]


def _sample_categorical(probs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one action per row (OBP's ``sample_action_fast``)."""
    return np.minimum((uniform[:, None] > np.cumsum(probs, -1)).sum(-1), probs.shape[1] - 1)


class SyntheticBandit:
    r"""Synthetic logged bandit data in the style of OBP's ``SyntheticBanditDataset``.

    :math:`x \sim N(0, I_d)`; with :math:`\tilde x = (1, x)` and :math:`\tilde a = (1, e_a)`, the
    base reward function is
    :math:`f(x, a) = c^\top \tilde x + \alpha^\top \tilde a + \tilde x^\top M \tilde a` with
    :math:`c, \alpha, M` uniform on :math:`[-1, 1]`, drawn in that order from
    ``numpy.random.RandomState(random_state)`` (OBP's ``sample_random_uniform_coefficients``);
    :math:`q(x, a) = \sigma\big((f(x,a) - m) / s\big)` with :math:`m, s` the exact mean and
    standard deviation of :math:`f` over :math:`x \sim N(0, I)` and a uniform action;
    :math:`\pi_0(\cdot \mid x) = \mathrm{softmax}(\beta\, q(x, \cdot))`; :math:`r \sim
    \mathrm{Bernoulli}(q(x, a))`.

    Args:
        n_actions: number of actions (>= 2).
        dim_context: context dimension (>= 1).
        beta: inverse temperature of the logging policy (OBP's example: -3, a poor logger).
        random_state: seed of the reward function's coefficients.

    Reference: Saito et al. (2021), Open Bandit Pipeline, ``obp.dataset.SyntheticBanditDataset``.

    >>> env = SyntheticBandit()
    >>> q = env.expected_reward(torch.zeros(1, 5, dtype=torch.float64))
    >>> q.shape, bool(((q > 0) & (q < 1)).all())
    (torch.Size([1, 10]), True)
    """

    def __init__(
        self,
        n_actions: int = 10,
        dim_context: int = 5,
        beta: float = -3.0,
        random_state: int = 12345,
    ) -> None:
        self.n_actions = check_int("n_actions", n_actions, minimum=2, maximum=2**16)
        self.dim_context = check_int("dim_context", dim_context, minimum=1, maximum=2**16)
        self.beta = check_float("beta", beta)
        self.random_state = check_int("random_state", random_state, minimum=0, maximum=2**32 - 1)
        rs = np.random.RandomState(self.random_state)
        d1, a1 = self.dim_context + 1, self.n_actions + 1
        c = rs.uniform(-1, 1, size=d1)
        alpha = rs.uniform(-1, 1, size=a1)
        M = rs.uniform(-1, 1, size=(d1, a1))
        # f(x, a) = bias[a] + x . weight[:, a]  (f is linear in x for each action)
        bias = c[0] + alpha[0] + alpha[1:] + M[0, 0] + M[0, 1:]
        weight = c[1:, None] + M[1:, :1] + M[1:, 1:]
        mean = bias.mean()
        std = math.sqrt(((bias - mean) ** 2).mean() + (weight**2).sum(0).mean())
        # z-scored logits as one linear map of (1, x): coef[:, a] . (1, x)
        self.coef = torch.tensor(
            np.vstack([(bias - mean)[None, :], weight]) / std, dtype=_DTYPE
        )  # [d + 1, A]

    def logits(self, contexts: Tensor) -> Tensor:
        """The z-scored base reward :math:`(f(x, a) - m)/s`, ``[n, A]``."""
        contexts = torch.as_tensor(contexts, dtype=_DTYPE)
        if contexts.ndim != 2 or contexts.shape[1] != self.dim_context:
            raise ValueError(
                f"contexts must have shape [n, {self.dim_context}], got {tuple(contexts.shape)}"
            )
        return _features(contexts) @ self.coef

    def expected_reward(self, contexts: Tensor) -> Tensor:
        """:math:`q(x, a) = \\sigma(\\text{logits})`, ``[n, A]``."""
        return torch.sigmoid(self.logits(contexts))

    def behavior_policy(self, contexts: Tensor) -> Tensor:
        """:math:`\\pi_0(\\cdot \\mid x) = \\mathrm{softmax}(\\beta q(x, \\cdot))`, ``[n, A]``."""
        return torch.softmax(self.beta * self.expected_reward(contexts), -1)

    def sample_contexts(self, n: int, *, generator: np.random.Generator) -> Tensor:
        """``n`` contexts :math:`x \\sim N(0, I_d)`."""
        n = check_int("n", n, minimum=1)
        g = check_numpy_generator(generator)
        return torch.from_numpy(g.standard_normal((n, self.dim_context)))

    def sample(self, n: int, *, generator: np.random.Generator) -> LoggedData:
        """``n`` logged rounds: contexts, then actions from :math:`\\pi_0`, then rewards."""
        g = check_numpy_generator(generator)
        x = self.sample_contexts(n, generator=g)
        q = self.expected_reward(x)
        pi0 = self.behavior_policy(x)
        a = _sample_categorical(pi0.numpy(), g.random(n))
        rows = np.arange(n)
        r = (g.random(n) < q.numpy()[rows, a]).astype(np.float64)
        a_t = torch.from_numpy(a)
        return LoggedData(
            contexts=x,
            actions=a_t,
            rewards=torch.from_numpy(r),
            propensities=pi0[rows, a_t],
            behavior=pi0,
            expected_rewards=q,
        )


@dataclass(frozen=True)
class ConfoundedData:
    """Logged rounds with a hidden confounder ``u`` (0/1).

    Attributes:
        logged: the rounds; ``logged.propensities`` are :math:`\\pi_0(a_i \\mid x_i)`, the
            observed-context logging policy (``u`` averaged out), and ``logged.expected_rewards``
            is :math:`\\bar q(x, a) = \\mathbb E_u q(x, a, u)`.
        confounder: ``[n]`` the hidden ``u``.
        propensities_given_u: ``[n]`` :math:`\\pi_0(a_i \\mid x_i, u_i)`.
    """

    logged: LoggedData
    confounder: Tensor
    propensities_given_u: Tensor


class ConfoundedBandit:
    r""":class:`SyntheticBandit` with a hidden coin :math:`u \sim \mathrm{Bernoulli}(1/2)`
    driving both the logged action and the reward.

    With :math:`s_a = 1` for the first half of the actions and :math:`0` for the rest and
    :math:`\epsilon = 2u - 1`:

    .. math::

        \pi_0(\cdot \mid x, u) = \mathrm{softmax}\big(\beta q_0(x, \cdot) + \kappa \epsilon s\big),
        \qquad q(x, a, u) = \sigma\big(f_0(x, a) + \lambda \epsilon s_a\big),

    :math:`f_0, q_0 = \sigma(f_0)` the base bandit's logits and rewards. For
    :math:`\kappa \lambda > 0` an action of the first half is logged more often exactly when
    it pays more, so :math:`\mathbb E[r \mid x, A = a] > \bar q(x, a)` for those actions and not
    for the others: a bias that differs between actions, so the gradient feels it (a shift
    common to all actions would cancel against the score's zero mean).

    Args:
        base: the unconfounded bandit (default :class:`SyntheticBandit`).
        action_strength: :math:`\kappa`.
        reward_strength: :math:`\lambda`.

    >>> env = ConfoundedBandit()
    >>> d = env.sample(4, generator=np.random.default_rng(0))
    >>> bool((d.logged.propensities > 0).all()), d.confounder.shape
    (True, torch.Size([4]))
    """

    def __init__(
        self,
        base: SyntheticBandit | None = None,
        action_strength: float = 1.5,
        reward_strength: float = 1.5,
    ) -> None:
        self.base = SyntheticBandit() if base is None else base
        self.action_strength = check_float("action_strength", action_strength)
        self.reward_strength = check_float("reward_strength", reward_strength)
        A = self.base.n_actions
        self.sign = (torch.arange(A) < A // 2).to(_DTYPE)

    def _given_u(self, contexts: Tensor) -> tuple[Tensor, Tensor]:
        """``(pi0, q)``, each ``[2, n, A]``: index 0 for ``u = 0``, 1 for ``u = 1``."""
        f = self.base.logits(contexts)
        eps = torch.tensor([-1.0, 1.0], dtype=_DTYPE)[:, None, None]
        logits0 = self.base.beta * torch.sigmoid(f)
        pi0 = torch.softmax(logits0 + self.action_strength * eps * self.sign, -1)
        q = torch.sigmoid(f + self.reward_strength * eps * self.sign)
        return pi0, q

    def expected_reward(self, contexts: Tensor) -> Tensor:
        r""":math:`\bar q(x, a) = \mathbb E_u q(x, a, u)`, ``[n, A]``: what a policy acting on
        :math:`x` alone gets."""
        return self._given_u(contexts)[1].mean(0)

    def behavior_policy(self, contexts: Tensor) -> Tensor:
        r""":math:`\pi_0(a \mid x) = \mathbb E_u \pi_0(a \mid x, u)`, ``[n, A]``."""
        return self._given_u(contexts)[0].mean(0)

    def sample(self, n: int, *, generator: np.random.Generator) -> ConfoundedData:
        """``n`` rounds: context, hidden ``u``, action from :math:`\\pi_0(\\cdot \\mid x, u)`,
        reward from :math:`q(x, a, u)`."""
        g = check_numpy_generator(generator)
        x = self.base.sample_contexts(n, generator=g)
        u = (g.random(n) < 0.5).astype(np.int64)
        pi0, q = self._given_u(x)
        rows = np.arange(n)
        pi0_u, q_u = pi0[u, rows], q[u, rows]
        a = _sample_categorical(pi0_u.numpy(), g.random(n))
        r = (g.random(n) < q_u.numpy()[rows, a]).astype(np.float64)
        a_t = torch.from_numpy(a)
        marginal = pi0.mean(0)
        logged = LoggedData(
            contexts=x,
            actions=a_t,
            rewards=torch.from_numpy(r),
            propensities=marginal[rows, a_t],
            behavior=marginal,
            expected_rewards=q.mean(0),
        )
        return ConfoundedData(logged, torch.from_numpy(u), pi0_u[rows, a_t])
