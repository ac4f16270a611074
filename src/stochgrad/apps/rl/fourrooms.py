r"""Option-critic on the four-rooms grid, checked against the exact solution of the MDP.

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

Option-critic (:func:`train_option_critic`, Bacon et al. 2017, Algorithm 1, tabular): per option
:math:`o` a softmax intra-option policy :math:`\pi_{o}(a \mid s) \propto \exp(\theta_{s,o,a}/T)`,
a sigmoid termination :math:`\beta_o(s) = \sigma(\vartheta_{s,o})` and an
:math:`\epsilon`-greedy policy over options on :math:`Q_\Omega`. After each transition
:math:`(s, o, a, r, s')`, with
:math:`U(s', o) = (1 - \beta_o(s')) Q_\Omega(s', o) + \beta_o(s') \max_{o'} Q_\Omega(s', o')`,

.. math::

    Q_U(s,o,a) &\mathrel{+}= \alpha_c\,[r + \gamma U(s',o) - Q_U(s,o,a)], \qquad
    Q_\Omega(s,o) \mathrel{+}= \alpha_c\,[r + \gamma U(s',o) - Q_\Omega(s,o)],\\
    \theta_{s,o} &\mathrel{+}= \alpha_\theta\, T\,\nabla_{\theta_{s,o}} \log \pi_o(a \mid s)\,
        [Q_U(s,o,a) - Q_\Omega(s,o)],\\
    \vartheta_{s',o} &\mathrel{-}= \alpha_\vartheta\, \beta_o(s')(1 - \beta_o(s'))\,
        [Q_\Omega(s',o) - V_\Omega(s') + \xi], \qquad V_\Omega(s') = \max_{o'} Q_\Omega(s',o'),

(:math:`U` is replaced by 0 when :math:`s'` is the goal). The intra-option step is the score
function of the softmax (the policy-gradient estimator of :mod:`stochgrad.estimators.score` in its
tabular, one-sample form) weighted by :math:`Q_U` with the baseline :math:`Q_\Omega`; the factor
:math:`T` is the convention of the authors' code (the step is taken in the logits
:math:`\theta/T`). Published values (``jeanharb/option_critic``, ``fourrooms`` config):
:math:`\alpha_c = 0.5`, :math:`\alpha_\theta = 0.25`, :math:`\alpha_\vartheta = 0.25`,
:math:`\epsilon = 0.1`, :math:`T = 0.01`, 4 options, 1000 steps per episode at most; the
termination regulariser :math:`\xi` is 0 there (it was introduced for the Atari experiments).
All are the defaults here except the temperature, :math:`T = 1`: with :math:`T = 0.01` the
intra-option policies become deterministic within a few visits (the score :math:`e_a - \pi`
vanishes) and freeze on sub-optimal actions. Measured (exact greedy mean steps / optimum, per
seed; 2000 episodes, 6 seeds unless said): :math:`T = 0.01`: 1.15 to 2.25 (10 seeds);
:math:`T = 0.03`: 1.13 to 1.83; :math:`T = 0.1`: 1.04 to 1.09; :math:`T = 0.3`: 1.01 to 1.03
(but 1.01 to 1.20 with 10 seeds, 1.02 to 1.10 after 5000 episodes); :math:`T = 0.5`, 4000
episodes, 10 seeds: 1.01 to 1.18; :math:`T = 1`, 5000 episodes, 10 seeds: 1.007 to 1.072,
mean 1.029. The critic's constant step size 0.5 keeps :math:`Q_\Omega` noisy, so the greedy
agent of a single seed fluctuates by a few per cent from one episode to the next. The
learning curve (steps of the exploring agent, softmax with :math:`T = 1` plus
:math:`\epsilon`-greedy options) levels off near 30 steps; the greedy agent is what is compared.

Evaluation (:func:`evaluate_greedy`): the learned greedy agent (greedy option on
:math:`Q_\Omega`, greedy action within it, call-and-return with the learned terminations) is a
Markov chain over (state, option); its expected steps to the goal are solved exactly and
compared with the optimum.

References:
    Sutton, Precup & Singh (1999), "Between MDPs and semi-MDPs", Artificial Intelligence 112;
    Bacon, Harb & Precup (AAAI 2017), "The option-critic architecture".

>>> env = FourRooms()
>>> env.num_states, env.goal_cell
(104, (7, 9))
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ACTIONS",
    "GOAL_CELL",
    "LAYOUT",
    "FourRooms",
    "FourRoomsResult",
    "GreedyEvaluation",
    "OptionCritic",
    "OptionCriticConfig",
    "OptimalSolution",
    "add_arguments",
    "evaluate_greedy",
    "hitting_times",
    "optimal_solution",
    "policy_hitting_times",
    "run",
    "run_fourrooms",
    "train_option_critic",
    "transition_matrix",
    "value_iteration",
]

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


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_probability(name: str, value: Any, open_low: bool = False) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0.0 or value > 1.0 or (open_low and value == 0.0):
        raise ValueError(
            f"{name} must be a probability in {'(0' if open_low else '[0'}, 1], got {value!r}"
        )
    return value


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
        goal = tuple(int(v) for v in goal)
        if goal not in self.index:
            raise ValueError(f"goal must be a free (row, col) cell of the map, got {goal!r}")
        self.goal_cell = goal
        self.goal = self.index[goal]
        gamma = float(gamma)
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
        self.gamma = gamma
        self.p_intended = _check_probability("p_intended", p_intended)
        nxt = np.empty((self.num_states, self.num_actions), dtype=np.int64)
        for s, (r, c) in enumerate(self.cells):
            for d, (dr, dc) in enumerate(ACTIONS):
                nxt[s, d] = self.index.get((r + dr, c + dc), s)
        self.next_state = nxt
        self.starts = np.array([s for s in range(self.num_states) if s != self.goal])

    def direction_probabilities(self) -> np.ndarray:
        """``D[a, d]``: probability that action ``a`` moves in direction ``d`` (2/3 or 1/9 by default)."""
        other = (1.0 - self.p_intended) / (self.num_actions - 1)
        return np.where(np.eye(self.num_actions, dtype=bool), self.p_intended, other)

    def reset(self, num_envs: int, *, generator: np.random.Generator) -> np.ndarray:
        """Draw ``num_envs`` start states uniformly among the free non-goal cells."""
        num_envs = _check_positive_int("num_envs", num_envs)
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
                f"states and actions must be 1-D arrays of equal shape, got {states.shape} and {actions.shape}"
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
        # u < p: intended; otherwise offset 1, 2 or 3 (mod 4) with equal probability.
        offset = np.where(
            u < self.p_intended,
            0,
            1 + np.minimum((u - self.p_intended) / (1.0 - self.p_intended) * 3, 2).astype(np.int64),
        )
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

    .. math:: Q^*(s,a) = \sum_{s'} P(s'\mid s,a)\,[\mathbb 1\{s'=g\} + \gamma\,\mathbb 1\{s'\ne g\}V^*(s')]

    Returns:
        ``(V, Q, policy)``: ``V`` [S] (0 at the goal), ``Q`` [S, A], greedy ``policy`` [S].

    >>> V, Q, pi = value_iteration(FourRooms())
    >>> round(float(V.max()), 4) <= 1.0
    True
    """
    if not (tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
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


# ---------------------------------------------------------------------------------------------
# option-critic
# ---------------------------------------------------------------------------------------------


@dataclass
class OptionCriticConfig:
    """Hyper-parameters of tabular option-critic (the published four-rooms values, except T).

    The published temperature is ``1e-2``; the default here is ``1.0`` (see the module
    docstring for the measured effect).

    Attributes:
        num_options: number of options.
        lr_critic: step size of the intra-option critic (Q_U and Q_Omega).
        lr_intra: step size of the intra-option policy gradient.
        lr_term: step size of the termination gradient.
        epsilon: exploration of the epsilon-greedy policy over options.
        temperature: softmax temperature of the intra-option policies.
        xi: termination regulariser added to the advantage.
        max_steps: steps per episode before it is cut (no terminal update).
    """

    num_options: int = 4
    lr_critic: float = 0.5
    lr_intra: float = 0.25
    lr_term: float = 0.25
    epsilon: float = 0.1
    temperature: float = 1.0
    xi: float = 0.0
    max_steps: int = 1000

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        _check_positive_int("num_options", self.num_options)
        _check_positive_int("max_steps", self.max_steps)
        for name in ("lr_critic", "lr_intra", "lr_term"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        _check_probability("epsilon", self.epsilon)
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not np.isfinite(self.xi):
            raise ValueError(f"xi must be finite, got {self.xi!r}")


@dataclass
class OptionCritic:
    """Parameters of ``R`` independent tabular option-critic agents (one per seed).

    Attributes:
        theta: intra-option policy logits [R, S, O, A].
        vartheta: termination logits [R, S, O].
        q_u: critic Q_U [R, S, O, A].
        q_omega: critic Q_Omega [R, S, O].
    """

    theta: np.ndarray
    vartheta: np.ndarray
    q_u: np.ndarray
    q_omega: np.ndarray

    @classmethod
    def zeros(cls, runs: int, num_states: int, num_options: int, num_actions: int) -> OptionCritic:
        """All-zero parameters (uniform policies, terminations 1/2), as in the authors' code."""
        return cls(
            theta=np.zeros((runs, num_states, num_options, num_actions)),
            vartheta=np.zeros((runs, num_states, num_options)),
            q_u=np.zeros((runs, num_states, num_options, num_actions)),
            q_omega=np.zeros((runs, num_states, num_options)),
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _choose_options(q: np.ndarray, epsilon: float, u: np.ndarray) -> np.ndarray:
    """Epsilon-greedy options from ``q`` [N, O] and uniforms ``u`` [N, 2 + O].

    ``u[:, 0]`` decides exploration, ``u[:, 1]`` the random option, ``u[:, 2:]`` breaks ties.
    """
    O = q.shape[-1]
    greedy = np.where(q >= q.max(-1, keepdims=True), u[:, 2:], -1.0).argmax(-1)
    random = np.minimum((u[:, 1] * O).astype(np.int64), O - 1)
    return np.where(u[:, 0] < epsilon, random, greedy)


def train_option_critic(
    env: FourRooms,
    episodes: int,
    seeds: Sequence[int] | int,
    config: OptionCriticConfig | None = None,
    *,
    agent: OptionCritic | None = None,
    callback: Callable[[int], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
) -> tuple[OptionCritic, np.ndarray]:
    """Train one option-critic agent per seed, all stepped together in one batched loop.

    Each agent runs its own environment and its own episodes (Bacon et al. 2017, Algorithm 1);
    the loop is vectorised over agents. An agent that has finished ``episodes`` episodes stops
    updating while the others go on. Every step draws the same block of uniforms for every
    agent, so a run is a prefix of any longer run with the same seed list.

    Args:
        env: the environment.
        episodes: episodes per agent (>= 1).
        seeds: one seed per agent (a list), or the number of agents (seeds ``0..n-1``); the
            generator is ``numpy.random.default_rng(seeds)``.
        config: hyper-parameters (default: :class:`OptionCriticConfig`).
        agent: parameters to continue from (updated in place); fresh zeros otherwise.
        callback: called with the number of episodes just finished (over all agents).
        checkpoint: ``.npz`` file holding the whole training state (parameters, episode
            lengths, environments, generator). If it exists, training resumes from it (same
            seeds and config required, ``episodes`` at least the saved number); it is
            rewritten atomically every ``checkpoint_every`` finished episodes (over all agents)
            and at the end. An interrupted and resumed run equals an uninterrupted one.
        checkpoint_every: finished episodes between checkpoints.

    Returns:
        ``(agent, steps)``: the trained parameters and the length of every episode [R, episodes].

    >>> agent, steps = train_option_critic(FourRooms(), 3, [0, 1])
    >>> steps.shape
    (2, 3)
    """
    config = OptionCriticConfig() if config is None else config
    config.validate()
    episodes = _check_positive_int("episodes", episodes)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = list(range(_check_positive_int("seeds", seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a positive count or a non-empty list of integers")
    runs = len(seeds)
    rng = np.random.default_rng(seeds)
    S, A, O = env.num_states, env.num_actions, config.num_options
    user_agent = agent is not None
    if agent is None:
        agent = OptionCritic.zeros(runs, S, O, A)
    elif agent.theta.shape != (runs, S, O, A):
        raise ValueError(
            f"agent must have parameters of shape {(runs, S, O, A)}, got {agent.theta.shape}"
        )
    theta, vartheta, q_u, q_omega = agent.theta, agent.vartheta, agent.q_u, agent.q_omega
    gamma, T, eps = env.gamma, config.temperature, config.epsilon
    n_starts = len(env.starts)

    def reset(e: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = env.starts[np.minimum((u[:, 0] * n_starts).astype(np.int64), n_starts - 1)]
        return s, _choose_options(q_omega[e, s], eps, u[:, 1:])

    checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    ckpt = None if checkpoint is None else Path(checkpoint)
    config_json = json.dumps(asdict(config), sort_keys=True)
    if ckpt is not None and ckpt.exists():
        with np.load(ckpt, allow_pickle=False) as z:
            if z["seeds"].tolist() != seeds or str(z["config"]) != config_json:
                raise ValueError(f"checkpoint {ckpt} was written with other seeds or config")
            if z["steps"].shape[1] > episodes:
                raise ValueError(
                    f"episodes must be >= the {z['steps'].shape[1]} episodes in checkpoint {ckpt}"
                )
            if user_agent:
                raise ValueError("give either agent or an existing checkpoint, not both")
            agent = OptionCritic(z["theta"], z["vartheta"], z["q_u"], z["q_omega"])
            theta, vartheta, q_u, q_omega = agent.theta, agent.vartheta, agent.q_u, agent.q_omega
            steps = np.zeros((runs, episodes), dtype=np.int64)
            steps[:, : z["steps"].shape[1]] = z["steps"]
            ep, t_ep, state, option = z["ep"], z["t_ep"], z["state"], z["option"]
            rng.bit_generator.state = json.loads(str(z["rng"]))
        if callback is not None and ep.sum() > 0:
            callback(int(np.minimum(ep, episodes).sum()))
    else:
        steps = np.zeros((runs, episodes), dtype=np.int64)
        ep = np.zeros(runs, dtype=np.int64)
        t_ep = np.zeros(runs, dtype=np.int64)
        state, option = reset(np.arange(runs), rng.random((runs, 3 + O)))

    def save() -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                theta=theta,
                vartheta=vartheta,
                q_u=q_u,
                q_omega=q_omega,
                steps=steps,
                ep=ep,
                t_ep=t_ep,
                state=state,
                option=option,
                seeds=np.array(seeds),
                config=np.array(config_json),
                rng=np.array(json.dumps(rng.bit_generator.state)),
            )
        os.replace(tmp, ckpt)

    since_save = 0
    # columns of the per-step uniforms: action, slip, termination, option choice (2 + O),
    # reset (3 + O)
    c_opt, c_reset = 3, 5 + O
    while True:
        idx = np.flatnonzero(ep < episodes)
        if idx.size == 0:
            break
        U = rng.random((runs, 8 + 2 * O))[idx]
        rows = np.arange(idx.size)
        s, o = state[idx], option[idx]
        pi = _softmax(theta[idx, s, o] / T)
        a = (U[:, :1] > np.cumsum(pi, -1)).sum(-1).clip(max=A - 1)
        s2, r, done = env._step_uniform(s, a, U[:, 1])
        t_ep[idx] += 1
        # 1. options evaluation (intra-option Q-learning of Q_U and Q_Omega)
        beta2 = _sigmoid(vartheta[idx, s2, o])
        q2 = q_omega[idx, s2]
        q2_o = q2[rows, o]
        v2 = q2.max(-1)
        u2 = (1.0 - beta2) * q2_o + beta2 * v2
        target = r + gamma * np.where(done, 0.0, u2)
        q_u[idx, s, o, a] += config.lr_critic * (target - q_u[idx, s, o, a])
        q_omega[idx, s, o] += config.lr_critic * (target - q_omega[idx, s, o])
        # 2. options improvement: intra-option policy gradient (baseline Q_Omega) ...
        adv = q_u[idx, s, o, a] - q_omega[idx, s, o]
        score = -pi
        score[rows, a] += 1.0
        theta[idx, s, o] += config.lr_intra * adv[:, None] * score
        # ... and the termination gradient at s' (not at the goal)
        live = ~done
        step_term = config.lr_term * beta2 * (1.0 - beta2) * (q2_o - v2 + config.xi)
        vartheta[idx[live], s2[live], o[live]] -= step_term[live]
        # termination and choice of the next option
        beta2 = _sigmoid(vartheta[idx, s2, o])
        terminate = U[:, 2] < beta2
        o_next = np.where(terminate, _choose_options(q_omega[idx, s2], eps, U[:, c_opt:c_reset]), o)
        # episode ends: at the goal or when cut at max_steps
        ended = done | (t_ep[idx] >= config.max_steps)
        state[idx], option[idx] = s2, o_next
        if ended.any():
            e = idx[ended]
            steps[e, ep[e]] = t_ep[e]
            ep[e] += 1
            t_ep[e] = 0
            state[e], option[e] = reset(e, U[ended, c_reset:])
            since_save += e.size
            if since_save >= checkpoint_every:
                save()
                since_save = 0
            if callback is not None:
                callback(int(e.size))
    save()
    return agent, steps


@dataclass
class GreedyEvaluation:
    """Exact expected steps to the goal of the learned greedy agents (one entry per agent).

    Attributes:
        mean_steps: call-and-return execution: greedy option on Q_Omega, greedy action within it,
            the option kept until its (stochastic) termination fires.
        mean_steps_state_policy: the greedy option re-chosen at every step (a state policy).
    """

    mean_steps: np.ndarray
    mean_steps_state_policy: np.ndarray


def evaluate_greedy(
    env: FourRooms, agent: OptionCritic, P: np.ndarray | None = None
) -> GreedyEvaluation:
    r"""Exact mean steps to the goal (uniform start) of each agent's greedy policy.

    Call-and-return chain over (state, option): in :math:`(s, o)` the action
    :math:`\arg\max_a \theta_{s,o,a}` is taken; in the next state :math:`s'` the option ends with
    probability :math:`\beta_o(s')` and is replaced by :math:`\arg\max_{o'} Q_\Omega(s', o')`.
    The start option is :math:`\arg\max_o Q_\Omega(s_0, o)`. Unreachable goal gives ``inf``.

    >>> agent, _ = train_option_critic(FourRooms(), 2, [0])
    >>> evaluate_greedy(FourRooms(), agent).mean_steps.shape
    (1,)
    """
    P = transition_matrix(env) if P is None else P
    R, S, O, A = agent.theta.shape
    if S != env.num_states or A != env.num_actions:
        raise ValueError(
            f"agent has {S} states and {A} actions, the environment {env.num_states} and {env.num_actions}"
        )
    out_cr, out_state = np.empty(R), np.empty(R)
    absorbing = np.zeros(S * O, dtype=bool)
    absorbing[env.goal * O : (env.goal + 1) * O] = True
    state_absorbing = np.zeros(S, dtype=bool)
    state_absorbing[env.goal] = True
    for r in range(R):
        act = agent.theta[r].argmax(-1)  # [S, O]
        best = agent.q_omega[r].argmax(-1)  # [S]
        beta = _sigmoid(agent.vartheta[r])  # [S, O]
        Ps = P[act, np.arange(S)[:, None]]  # [S, O, S']
        chain = np.zeros((S, O, S, O))
        for o in range(O):
            chain[:, o, :, o] += Ps[:, o, :] * (1.0 - beta[:, o])[None, :]
            chain[:, o, np.arange(S), best] += Ps[:, o, :] * beta[:, o][None, :]
        chain = chain.reshape(S * O, S * O)
        chain[absorbing] = 0.0
        chain[absorbing, absorbing] = 1.0
        t = hitting_times(chain, absorbing).reshape(S, O)
        out_cr[r] = t[env.starts, best[env.starts]].mean()
        ts = hitting_times(P[act[np.arange(S), best], np.arange(S)], state_absorbing)
        out_state[r] = ts[env.starts].mean()
    return GreedyEvaluation(mean_steps=out_cr, mean_steps_state_policy=out_state)


# ---------------------------------------------------------------------------------------------
# the experiment
# ---------------------------------------------------------------------------------------------


@dataclass
class FourRoomsResult:
    """Summary of :func:`run_fourrooms` (also written as JSON)."""

    episodes: int
    seeds: list[int]
    config: dict
    optimal_mean_steps: float
    min_mean_steps: float
    learned_mean_steps: list[float]
    learned_mean_steps_state_policy: list[float]
    ratio: list[float]
    mean_ratio: float
    steps_per_episode_mean: list[float] = field(repr=False)
    seconds: float = 0.0


def _plot(path: Path, steps: np.ndarray, optimum: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = steps.mean(0)
    k = max(1, steps.shape[1] // 100)
    smooth = np.convolve(mean, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, mean.size + 1), mean, color="0.75", lw=0.5, label="mean over seeds")
    ax.plot(np.arange(k, mean.size + 1), smooth, color="C0", label=f"running mean ({k} episodes)")
    ax.axhline(optimum, color="C3", ls="--", label=f"optimal policy ({optimum:.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("episode")
    ax.set_ylabel("steps to goal")
    ax.set_title(f"Option-critic, four rooms ({steps.shape[0]} seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_fourrooms(
    episodes: int = 5000,
    seeds: Sequence[int] | int = 10,
    config: OptionCriticConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    callback: Callable[[int], None] | None = None,
    restart: bool = False,
) -> FourRoomsResult:
    """Train option-critic on four rooms for several seeds and compare with the exact optimum.

    Writes ``fourrooms.json`` (the result) and ``fourrooms.png`` (steps per episode, mean over
    seeds, the optimum as a line) into ``out_dir`` when given, and keeps the training state in
    ``out_dir/fourrooms_checkpoint.npz``: an interrupted run resumes from it (see
    :func:`train_option_critic`); ``restart=True`` deletes it first. ``seconds`` is the time of
    this call only.

    Args:
        episodes: episodes per seed.
        seeds: list of seeds or their number.
        config: option-critic hyper-parameters (default: :class:`OptionCriticConfig`).
        out_dir: folder for the JSON and PNG (created); nothing written when ``None``.
        callback: progress hook, called with the number of episodes just finished.
        restart: delete an existing checkpoint in ``out_dir`` and train from scratch.

    Returns:
        A :class:`FourRoomsResult`; ``ratio`` is learned / optimal mean steps per seed.

    >>> res = run_fourrooms(5, [0])
    >>> res.optimal_mean_steps > 0
    True
    """
    env = FourRooms()
    config = OptionCriticConfig() if config is None else config
    start = time.perf_counter()
    sol = optimal_solution(env)
    ckpt = None if out_dir is None else Path(out_dir) / "fourrooms_checkpoint.npz"
    if restart and ckpt is not None and ckpt.exists():
        ckpt.unlink()
    agent, steps = train_option_critic(
        env, episodes, seeds, config, callback=callback, checkpoint=ckpt
    )
    ev = evaluate_greedy(env, agent)
    seconds = time.perf_counter() - start
    seed_list = (
        list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    )
    ratio = ev.mean_steps / sol.mean_steps
    result = FourRoomsResult(
        episodes=episodes,
        seeds=seed_list,
        config=asdict(config),
        optimal_mean_steps=sol.mean_steps,
        min_mean_steps=sol.min_mean_steps,
        learned_mean_steps=ev.mean_steps.tolist(),
        learned_mean_steps_state_policy=ev.mean_steps_state_policy.tolist(),
        ratio=ratio.tolist(),
        mean_ratio=float(np.mean(ratio)),
        steps_per_episode_mean=steps.mean(0).tolist(),
        seconds=seconds,
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fourrooms.json").write_text(json.dumps(asdict(result), indent=1, default=float))
        _plot(out / "fourrooms.png", steps, sol.mean_steps)
    return result


# ---------------------------------------------------------------------------------------------
# command line (registered in stochgrad.cli as `stochgrad rl options`)
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl options``."""
    d = OptionCriticConfig()
    parser.add_argument("--episodes", type=int, default=5000, help="episodes per seed")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (agents), 0..n-1")
    parser.add_argument("--options", type=int, default=d.num_options, help="number of options")
    parser.add_argument(
        "--temperature", type=float, default=d.temperature, help="softmax temperature"
    )
    parser.add_argument("--epsilon", type=float, default=d.epsilon, help="epsilon over options")
    parser.add_argument("--xi", type=float, default=d.xi, help="termination regulariser")
    parser.add_argument("--out", type=Path, default=Path("runs/fourrooms"), help="output folder")
    parser.add_argument(
        "--restart", action="store_true", help="ignore (delete) a checkpoint in --out"
    )


def run(args: argparse.Namespace, console: Any) -> int:
    """Train option-critic on four rooms; print exact optimal vs learned mean steps to the goal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    config = OptionCriticConfig(
        num_options=args.options, temperature=args.temperature, epsilon=args.epsilon, xi=args.xi
    )
    with Progress(
        TextColumn("option-critic"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("episodes", total=args.episodes * args.seeds)
        res = run_fourrooms(
            args.episodes,
            args.seeds,
            config,
            out_dir=args.out,
            callback=lambda n: progress.advance(task, n),
            restart=args.restart,
        )
    table = Table(title=f"Four rooms, option-critic ({args.episodes} episodes, {args.seeds} seeds)")
    for col in ("seed", "learned mean steps", "state-policy steps", "ratio to optimum"):
        table.add_column(col, justify="right")
    for s, m, ms, r in zip(
        res.seeds,
        res.learned_mean_steps,
        res.learned_mean_steps_state_policy,
        res.ratio,
        strict=True,
    ):
        table.add_row(str(s), f"{m:.3f}", f"{ms:.3f}", f"{r:.4f}")
    console.print(table)
    console.print(
        f"optimal mean steps {res.optimal_mean_steps:.4f} (shortest-path optimum {res.min_mean_steps:.4f}); "
        f"mean ratio {res.mean_ratio:.4f}; {res.seconds:.1f} s; wrote {args.out}/fourrooms.json and .png"
    )
    return 0
