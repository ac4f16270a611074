"""Logged contextual-bandit rounds: what an off-policy learner is given (and, for synthetic data,
the truth behind them)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["LoggedData"]


@dataclass(frozen=True)
class LoggedData:
    """Logged bandit rounds and, because the data are synthetic, the truth behind them.

    Attributes:
        contexts: ``[n, d]`` float64.
        actions: ``[n]`` int64 logged actions.
        rewards: ``[n]`` float64 observed rewards (0/1).
        propensities: ``[n]`` logging probabilities :math:`\\pi_0(a_i \\mid x_i)`.
        behavior: ``[n, A]`` the logging policy at each context.
        expected_rewards: ``[n, A]`` the true :math:`q(x_i, a)` (never shown to a learner).
    """

    contexts: Tensor
    actions: Tensor
    rewards: Tensor
    propensities: Tensor
    behavior: Tensor
    expected_rewards: Tensor

    def __len__(self) -> int:
        return int(self.actions.shape[0])
