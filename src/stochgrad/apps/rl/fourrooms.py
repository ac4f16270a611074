r"""The four-rooms MDP of the option-critic experiment, and its exact solution.

The environment is the 13 x 13 four-rooms layout of Sutton, Precup & Singh (1999) as used by
Bacon, Harb & Precup (2017) (:data:`LAYOUT`, walls included, 104 free cells). The goal is the
east doorway, cell :math:`(7, 9)` (row, col, zero-based): the single free cell in row 7 between
the north-east and south-east rooms (``www www``). It is the goal of the published tabular
experiment (state 62 in the row-major numbering of free cells). Reaching it gives reward 1 and
ends the episode; every other transition gives 0; :math:`\gamma = 0.99`. The chosen move
happens with probability 2/3 and each of the three other directions with probability 1/9; a
move into a wall leaves the agent in place. Episodes start in a uniformly random free non-goal
cell. (Many public copies of the original code instead pick, with probability 1/3, a random
*empty neighbour*; that is not the paper's dynamics and is not used here.)

Exact solution (:func:`transition_matrix`, :func:`value_iteration`, :func:`hitting_times`):
value iteration on :math:`P[a, s, s']` solves

.. math::

    V^*(s) = \max_a \sum_{s'} P(s' \mid s, a)\,\big[\mathbb 1\{s' = g\} + \gamma\,
             \mathbb 1\{s' \neq g\}\, V^*(s')\big],

and the expected number of steps :math:`t` to the goal under a policy solves the hitting-time
system :math:`t = \mathbf 1 + Q t` on the non-goal states (:math:`Q` the policy's transition
matrix restricted to them).


The learner, tabular option-critic, is :mod:`stochgrad.apps.rl.option_critic`; its names
(:func:`train_option_critic`, :func:`evaluate_greedy`, :class:`OptionCriticConfig`, ...) are
importable from here too. The experiment over seeds is
:func:`stochgrad.studies.fourrooms.fourrooms_study` (``stochgrad rl options``).

References:
    Sutton, Precup & Singh (1999), "Between MDPs and semi-MDPs", Artificial Intelligence 112;
    Bacon, Harb & Precup (AAAI 2017), "The option-critic architecture".

>>> env = FourRooms()
>>> env.num_states, env.goal_cell
(104, (7, 9))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from stochgrad._checks import check_float, check_int, check_probability
from stochgrad._compat import moved_attribute

__all__ = [
    "ACTIONS",
    "GOAL_CELL",
    "LAYOUT",
    "P_INTENDED",
    "FourRooms",
    "GreedyEvaluation",  # noqa: F822 - from option_critic, see __getattr__
    "OptimalSolution",
    "OptionCritic",  # noqa: F822 - from option_critic, see __getattr__
    "OptionCriticConfig",  # noqa: F822 - from option_critic, see __getattr__
    "evaluate_greedy",  # noqa: F822 - from option_critic, see __getattr__
    "hitting_times",
    "optimal_solution",
    "policy_hitting_times",
    "train_option_critic",  # noqa: F822 - from option_critic, see __getattr__
    "transition_matrix",
    "value_iteration",
]

#: The learner's names, importable from here (kept in :mod:`stochgrad.apps.rl.option_critic`).
_OPTION_CRITIC = ("GreedyEvaluation", "OptionCritic", "OptionCriticConfig", "evaluate_greedy",
                  "train_option_critic")  # fmt: skip

#: Names that moved to the studies: old name -> (module, new name).
_MOVED = {
    "add_arguments": ("stochgrad.cli.rl", "add_options_arguments"),
    "run": ("stochgrad.cli.rl", "run_options"),
    "FourRoomsResult": ("stochgrad.studies.fourrooms", "FourRoomsResult"),
    "run_fourrooms": ("stochgrad.studies.fourrooms", "run_fourrooms"),
}


def __getattr__(name: str) -> Any:
    if name in _OPTION_CRITIC:
        return getattr(importlib.import_module("stochgrad.apps.rl.option_critic"), name)
    return moved_attribute(__name__, name, _MOVED)


#: The four-rooms map of Sutton, Precup & Singh (1999) / Bacon et al. (2017); ``w`` is a wall.
LAYOUT: tuple[str, ...] = (
    "wwwwwwwwwwwww",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "w     w     w",
    "ww wwww     w",
    "w     www www",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "wwwwwwwwwwwww",
)

#: (row, col) of the goal: the east doorway, between the north-east and south-east rooms.
GOAL_CELL: tuple[int, int] = (7, 9)

#: Moves in (d_row, d_col): up, down, left, right (the order of the authors' code).
ACTIONS: np.ndarray = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])

#: Probability that the chosen move happens; each other direction has (1 - P_INTENDED) / 3.
P_INTENDED = 2.0 / 3.0


class FourRooms:
    """The four-rooms MDP: exact tables and a batched, seeded simulator.

    States are the free cells numbered row-major (``cells[s]`` is ``(row, col)``); actions are
    :data:`ACTIONS`. ``next_state[s, d]`` is the cell reached by moving in direction ``d``
    (``s`` itself when blocked by a wall).

    Args:
        goal: (row, col) of the goal cell (default :data:`GOAL_CELL`, the east doorway).
        gamma: discount factor in (0, 1].
        p_intended: probability that the chosen move happens (default 2/3).

    Reference: Sutton, Precup & Singh (1999); Bacon, Harb & Precup (AAAI 2017).

    >>> env = FourRooms()
    >>> s = env.reset(3, generator=np.random.default_rng(0))
    >>> s.shape, bool(np.all(s != env.goal))
    ((3,), True)
    """

    def __init__(
        self,
        goal: tuple[int, int] = GOAL_CELL,
        gamma: float = 0.99,
        p_intended: float = P_INTENDED,
    ) -> None:
        grid = np.array([[c == "w" for c in row] for row in LAYOUT])
        self.walls = grid
        self.cells = [tuple(int(v) for v in rc) for rc in np.argwhere(~grid)]
        self.num_states = len(self.cells)
        assert self.num_states == 104, "the four-rooms map has 104 free cells"
        self.num_actions = len(ACTIONS)
        self.index = {rc: i for i, rc in enumerate(self.cells)}
        try:
            goal = tuple(int(v) for v in goal)
        except (TypeError, ValueError):
            raise TypeError(f"goal must be a (row, col) pair of ints, got {goal!r}") from None
        if goal not in self.index:
            raise ValueError(f"goal must be a free (row, col) cell of the map, got {goal!r}")
        self.goal_cell = goal
        self.goal = self.index[goal]
        self.gamma = check_float("gamma", gamma, minimum=0.0, maximum=1.0, open_min=True)
        self.p_intended = check_probability("p_intended", p_intended)
        nxt = np.empty((self.num_states, self.num_actions), dtype=np.int64)
        for s, (r, c) in enumerate(self.cells):
            for d, (dr, dc) in enumerate(ACTIONS):
                nxt[s, d] = self.index.get((r + dr, c + dc), s)
        self.next_state = nxt
        self.starts = np.array([s for s in range(self.num_states) if s != self.goal])

    def direction_probabilities(self) -> np.ndarray:
        """``D[a, d]``: probability that action ``a`` moves in direction ``d`` (by default 2/3 or
        1/9)."""
        other = (1.0 - self.p_intended) / (self.num_actions - 1)
        return np.where(np.eye(self.num_actions, dtype=bool), self.p_intended, other)

    def reset(self, num_envs: int, *, generator: np.random.Generator) -> np.ndarray:
        """Draw ``num_envs`` start states uniformly among the free non-goal cells."""
        num_envs = check_int("num_envs", num_envs, minimum=1)
        return self.starts[generator.integers(len(self.starts), size=num_envs)]

    def step(
        self, states: np.ndarray, actions: np.ndarray, *, generator: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batched transition.

        The move is the chosen one with probability ``p_intended``; otherwise one of the three
        other directions, uniformly.

        Args:
            states: int array [N] of state indices (not the goal).
            actions: int array [N] in ``0..3``.
            generator: the numpy generator all randomness is drawn from.

        Returns:
            ``(next_states, rewards, done)``: reward 1.0 and ``done`` True on entering the goal.
        """
        states = np.asarray(states)
        actions = np.asarray(actions)
        if states.shape != actions.shape or states.ndim != 1:
            raise ValueError(
                "states and actions must be 1-D arrays of equal shape, got "
                f"{states.shape} and {actions.shape}"
            )
        if np.any((states < 0) | (states >= self.num_states)):
            raise ValueError(f"states must lie in 0..{self.num_states - 1}")
        if np.any((actions < 0) | (actions >= self.num_actions)):
            raise ValueError(f"actions must lie in 0..{self.num_actions - 1}")
        return self._step_uniform(states, actions, generator.random(states.shape))

    def _step_uniform(
        self, states: np.ndarray, actions: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`step` with the uniform draws ``u`` (shape of ``states``) given."""
        # u < p: intended; otherwise offset 1, 2 or 3 (mod 4) with equal probability. The
        # slip offsets are computed only where a slip happens (no division by 1 - p = 0 when
        # every move is intended).
        slip = u >= self.p_intended
        offset = np.zeros(states.shape, dtype=np.int64)
        if slip.any():
            scaled = (u[slip] - self.p_intended) / (1.0 - self.p_intended) * 3
            offset[slip] = 1 + np.minimum(scaled, 2).astype(np.int64)
        directions = (actions + offset) % self.num_actions
        nxt = self.next_state[states, directions]
        done = nxt == self.goal
        return nxt, done.astype(np.float64), done


def transition_matrix(env: FourRooms) -> np.ndarray:
    r"""``P[a, s, s']`` of the four-rooms MDP; the goal is absorbing (``P[a, g, g] = 1``).

    .. math:: P(s' \mid s, a) = \sum_d D[a, d]\, \mathbb 1\{\mathrm{next}(s, d) = s'\}

    >>> P = transition_matrix(FourRooms())
    >>> P.shape, bool(np.allclose(P.sum(-1), 1.0))
    ((4, 104, 104), True)
    """
    n, k = env.num_states, env.num_actions
    D = env.direction_probabilities()
    P = np.zeros((k, n, n))
    for a in range(k):
        for d in range(k):
            np.add.at(P[a], (np.arange(n), env.next_state[:, d]), D[a, d])
    P[:, env.goal, :] = 0.0
    P[:, env.goal, env.goal] = 1.0
    return P


def value_iteration(
    env: FourRooms, P: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 100_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Optimal values by value iteration, to ``max |V_{k+1} - V_k| < tol``.

    .. math::

        Q^*(s,a) = \sum_{s'} P(s'\mid s,a)\,[\mathbb 1\{s'=g\}
            + \gamma\,\mathbb 1\{s'\ne g\}V^*(s')]

    Returns:
        ``(V, Q, policy)``: ``V`` [S] (0 at the goal), ``Q`` [S, A], greedy ``policy`` [S].

    >>> V, Q, pi = value_iteration(FourRooms())
    >>> round(float(V.max()), 4) <= 1.0
    True
    """
    check_float("tol", tol, minimum=0.0, open_min=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    P = transition_matrix(env) if P is None else P
    g = env.goal
    reward = P[:, :, g].T  # [S, A]: probability of entering the goal
    cont = P.copy()
    cont[:, :, g] = 0.0
    V = np.zeros(env.num_states)
    for _ in range(max_iter):
        Q = reward + env.gamma * np.einsum("ast,t->sa", cont, V)
        Q[g] = 0.0
        V_new = Q.max(axis=1)
        if np.max(np.abs(V_new - V)) < tol:
            V = V_new
            break
        V = V_new
    else:
        raise RuntimeError(f"value iteration did not reach tol={tol} in {max_iter} iterations")
    Q = reward + env.gamma * np.einsum("ast,t->sa", cont, V)
    Q[g] = 0.0
    return V, Q, Q.argmax(axis=1)


def hitting_times(chain: np.ndarray, absorbing: np.ndarray) -> np.ndarray:
    r"""Expected steps to reach the ``absorbing`` set from each state of a Markov chain.

    Solves :math:`(I - Q)\,t = \mathbf 1` on the transient states that reach the absorbing set
    with probability 1; states that may never reach it get ``inf``; absorbing states get 0.

    Args:
        chain: [N, N] row-stochastic matrix.
        absorbing: bool [N].

    >>> hitting_times(np.array([[0.5, 0.5], [0.0, 1.0]]), np.array([False, True]))
    array([2., 0.])
    """
    chain = np.asarray(chain, dtype=np.float64)
    absorbing = np.asarray(absorbing, dtype=bool)
    n = chain.shape[0]
    if chain.shape != (n, n) or absorbing.shape != (n,):
        raise ValueError(
            f"chain must be [N, N] and absorbing [N], got {chain.shape} and {absorbing.shape}"
        )
    if np.any(chain < -1e-12) or not np.allclose(chain.sum(1), 1.0, atol=1e-9):
        raise ValueError("chain must be row-stochastic (non-negative rows summing to 1)")
    # States from which the absorbing set is reached with probability 1: iterate "can escape to
    # a bad state" (a state that cannot reach the absorbing set at all) to a fixed point.
    reach = absorbing.copy()
    edges = chain > 0
    while True:
        new = reach | (edges & reach[None, :]).any(1)
        if np.array_equal(new, reach):
            break
        reach = new
    good = reach.copy()
    while True:
        new = good & ~((edges & ~good[None, :]).any(1) & ~absorbing)
        if np.array_equal(new, good):
            break
        good = new
    t = np.full(n, np.inf)
    t[absorbing] = 0.0
    idx = np.flatnonzero(good & ~absorbing)
    if idx.size:
        Q = chain[np.ix_(idx, idx)]
        t[idx] = np.linalg.solve(np.eye(idx.size) - Q, np.ones(idx.size))
    return t


def policy_hitting_times(
    env: FourRooms, policy: np.ndarray, P: np.ndarray | None = None
) -> np.ndarray:
    """Expected steps to the goal from each state under a deterministic state policy [S]."""
    policy = np.asarray(policy)
    if policy.shape != (env.num_states,) or np.any((policy < 0) | (policy >= env.num_actions)):
        raise ValueError(f"policy must be an int array [{env.num_states}] of actions in 0..3")
    P = transition_matrix(env) if P is None else P
    chain = P[policy, np.arange(env.num_states)]
    absorbing = np.zeros(env.num_states, dtype=bool)
    absorbing[env.goal] = True
    return hitting_times(chain, absorbing)


@dataclass
class OptimalSolution:
    """The exact solution of the four-rooms MDP.

    Attributes:
        values: optimal discounted values V* [S].
        policy: greedy optimal policy [S].
        steps: expected steps to the goal from each state under ``policy`` [S].
        mean_steps: mean of ``steps`` over the start distribution (uniform, non-goal cells).
        min_mean_steps: the smallest achievable mean steps (stochastic-shortest-path optimum,
            value iteration on unit costs); equals ``mean_steps`` up to discounting effects.
    """

    values: np.ndarray
    policy: np.ndarray
    steps: np.ndarray
    mean_steps: float
    min_mean_steps: float


def optimal_solution(env: FourRooms, tol: float = 1e-10) -> OptimalSolution:
    """Value iteration, the optimal policy and its exact expected steps to the goal.

    >>> sol = optimal_solution(FourRooms())
    >>> 10 < sol.mean_steps < 30
    True
    """
    P = transition_matrix(env)
    V, _, policy = value_iteration(env, P, tol=tol)
    steps = policy_hitting_times(env, policy, P)
    # Stochastic shortest path: T(s) = 1 + min_a sum P T, T(g) = 0.
    T = np.zeros(env.num_states)
    for _ in range(100_000):
        T_new = 1.0 + np.einsum("ast,t->sa", P, T).min(1)
        T_new[env.goal] = 0.0
        if np.max(np.abs(T_new - T)) < tol:
            T = T_new
            break
        T = T_new
    return OptimalSolution(
        values=V,
        policy=policy,
        steps=steps,
        mean_steps=float(steps[env.starts].mean()),
        min_mean_steps=float(T[env.starts].mean()),
    )
