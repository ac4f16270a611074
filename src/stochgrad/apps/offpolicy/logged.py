"""Logged contextual-bandit rounds: what an off-policy learner is given (and, for synthetic data,
the truth behind them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["LoggedData"]

_DTYPE = torch.float64
#: How far a row of the logging policy may sum from 1 (probabilities written as text).
_SUM_TOL = 1e-6


#: The most actions of a log (tables of ``[n, num_actions]`` probabilities are built).
MAX_ACTIONS = 2**20


def _float_tensor(name: str, value: object, shape: tuple[int, ...]) -> Tensor:
    """``value`` as a float64 tensor of ``shape`` with finite entries, else ``ValueError``."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got {value.dtype}")
    if value.device.type != "cpu":
        raise ValueError(
            f"{name} must be on the CPU (logged data are kept there), got {value.device}"
        )
    value = value.to(_DTYPE)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite (NaN or infinity at index {_first_bad(value)})")
    return value


def _first_bad(value: Tensor) -> str:
    """Where the first non-finite entry is, for the message."""
    idx = np.argwhere(~np.isfinite(value.detach().cpu().numpy()))[0]
    return ", ".join(str(int(i)) for i in idx)


@dataclass(frozen=True)
class LoggedData:
    """Logged bandit rounds, and the truth behind them when the data are simulated.

    A learner uses only the contexts, actions, rewards and logging propensities: what a real
    log holds. ``behavior`` (the logging policy's probabilities of every action) and
    ``expected_rewards`` (the true :math:`q`) are optional: a simulator knows them, a real log
    rarely has the first and never the second. When present they serve checks and evaluation
    (:func:`~stochgrad.apps.offpolicy.learn_policy` reports true values), never the learner.

    The tensors are checked and converted on construction (float64, actions int64); a bad
    one raises ``ValueError``/``TypeError`` naming it.

    Attributes:
        contexts: ``[n, d]`` float64.
        actions: ``[n]`` int64 logged actions, in ``0 .. num_actions - 1``.
        rewards: ``[n]`` float64 observed rewards (any finite numbers; 0/1 for clicks).
        propensities: ``[n]`` logging probabilities :math:`\\pi_0(a_i \\mid x_i)` in (0, 1].
        behavior: ``[n, A]`` the logging policy at each context, or ``None``.
        expected_rewards: ``[n, A]`` the true :math:`q(x_i, a)`, or ``None``.
        num_actions: the number of actions :math:`A`; by default the width of ``behavior`` or
            ``expected_rewards``, else the largest logged action plus one (pass it when some
            actions were never logged).
        context_names: the names of the ``d`` context features (a log file's columns); by
            default ``x_0 .. x_{d-1}``.

    >>> d = LoggedData(torch.zeros(2, 1), torch.tensor([0, 2]), torch.tensor([1.0, 0.0]),
    ...                torch.tensor([0.5, 0.25]))
    >>> d.num_actions, d.behavior is None, len(d)
    (3, True, 2)
    """

    contexts: Tensor
    actions: Tensor
    rewards: Tensor
    propensities: Tensor
    behavior: Tensor | None = None
    expected_rewards: Tensor | None = None
    num_actions: int | None = None
    context_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x = self.contexts
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(
                f"contexts must be a non-empty [n, d] tensor, got {getattr(x, 'shape', x)!r}"
            )
        n = x.shape[0]
        set_ = object.__setattr__  # frozen: the checked, converted tensors replace the given
        set_(self, "contexts", _float_tensor("contexts", x, tuple(x.shape)))
        a = self.actions
        if (
            not isinstance(a, Tensor)
            or a.dtype.is_floating_point
            or a.is_complex()
            or a.dtype == torch.bool
        ):
            raise TypeError(f"actions must be an integer tensor, got {getattr(a, 'dtype', a)!r}")
        if tuple(a.shape) != (n,):
            raise ValueError(f"actions must have shape [{n}], got {list(a.shape)}")
        if a.device.type != "cpu":
            raise ValueError(
                f"actions must be on the CPU (logged data are kept there), got {a.device}"
            )
        set_(self, "actions", a.to(torch.int64))
        set_(self, "rewards", _float_tensor("rewards", self.rewards, (n,)))
        p = _float_tensor("propensities", self.propensities, (n,))
        bad = ~((p > 0) & (p <= 1))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"propensities must lie in (0, 1] (a logged action with propensity 0 breaks "
                f"overlap), got {float(p[i])!r} at index {i}"
            )
        set_(self, "propensities", p)
        widths = {}
        for name in ("behavior", "expected_rewards"):
            t = getattr(self, name)
            if t is None:
                continue
            if not isinstance(t, Tensor) or t.ndim != 2:
                raise ValueError(f"{name} must be an [n, A] tensor or None, got {t!r}")
            set_(self, name, _float_tensor(name, t, (n, t.shape[1])))
            widths[name] = t.shape[1]
        A = self.num_actions
        if A is None:
            A = next(iter(widths.values()), int(self.actions.max()) + 1)
        if isinstance(A, bool) or not isinstance(A, (int, np.integer)) or not 2 <= A <= MAX_ACTIONS:
            raise ValueError(f"num_actions must be an int in [2, {MAX_ACTIONS}], got {A!r}")
        set_(self, "num_actions", int(A))
        for name, width in widths.items():
            if width != A:
                raise ValueError(f"{name} has {width} columns, but there are {A} actions")
        lo, hi = int(self.actions.min()), int(self.actions.max())
        if lo < 0 or hi >= A:
            i = int(((self.actions < 0) | (self.actions >= A)).nonzero()[0, 0])
            raise ValueError(
                f"actions must lie in 0..{A - 1}, got {int(self.actions[i])} at index {i}"
            )
        if self.behavior is not None:
            self._check_behavior()
        d = self.contexts.shape[1]
        names = self.context_names
        names = tuple(f"x_{j}" for j in range(d)) if names is None else tuple(map(str, names))
        if len(names) != d:
            raise ValueError(f"context_names must name the {d} context features, got {names}")
        set_(self, "context_names", names)

    def _check_behavior(self) -> None:
        """The logging policy: probabilities summing to 1, agreeing with the propensities."""
        b = self.behavior
        if bool((b < 0).any()):
            i, j = (int(v) for v in (b < 0).nonzero()[0])
            raise ValueError(f"behavior must be >= 0, got {float(b[i, j])!r} at row {i}")
        off = (b.sum(1) - 1).abs() > _SUM_TOL
        if bool(off.any()):
            i = int(off.nonzero()[0, 0])
            raise ValueError(
                f"behavior's rows must sum to 1, row {i} sums to {float(b[i].sum())!r}"
            )
        chosen = b[torch.arange(len(self)), self.actions]
        off = (chosen - self.propensities).abs() > _SUM_TOL
        if bool(off.any()):
            i = int(off.nonzero()[0, 0])
            raise ValueError(
                f"propensities disagree with behavior at index {i}: propensity "
                f"{float(self.propensities[i])!r}, behavior of action {int(self.actions[i])} "
                f"{float(chosen[i])!r}"
            )

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def has_truth(self) -> bool:
        """Whether the true expected rewards are known (simulated data)."""
        return self.expected_rewards is not None

    def select(self, rows: Tensor | np.ndarray) -> LoggedData:
        """The rounds ``rows`` (an index or boolean mask), with the same number of actions.

        >>> d = LoggedData(torch.zeros(3, 1), torch.tensor([0, 1, 1]), torch.ones(3),
        ...                torch.full((3,), 0.5))
        >>> d.select(torch.tensor([2, 0])).actions.tolist()
        [1, 0]
        """
        rows = torch.as_tensor(rows)

        def take(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[rows]

        return LoggedData(
            contexts=self.contexts[rows],
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            propensities=self.propensities[rows],
            behavior=take(self.behavior),
            expected_rewards=take(self.expected_rewards),
            num_actions=self.num_actions,
            context_names=self.context_names,
        )
