r"""Deep Sea Treasure: the environment, its exact tabular model, the Pareto front, hypervolume.

The environment is mo-gymnasium's ``deep-sea-treasure-v0`` (version 1.3.2): an 11 x 11 grid,
start at the top-left cell, actions up/down/left/right, a move into a rock or off the grid leaves
the submarine in place. The registered id uses ``DEFAULT_MAP``, the *convex* map of Yang et al.
(2019) (``env.unwrapped.map_name == "convex"``). Every step gives the vector reward
:math:`r = (\text{treasure}, -1)`; reaching a treasure ends the episode. The episode is truncated
after 100 steps. ``env.unwrapped.pareto_front(gamma)`` returns, for the ten treasures
:math:`T_i` at shortest-path distance :math:`n_i`, the discounted points

.. math::

    F_i(\gamma) = \Big(T_i\,\gamma^{n_i - 1},\; -\sum_{t=0}^{n_i - 1} \gamma^t\Big).

For :math:`\gamma = 0.99` (the default here) all ten points are *supported*: each maximises the
scalarised value :math:`w F_{i,0} + (1 - w) F_{i,1}` on a weight interval of positive length
(found exactly by :func:`supported_points`; the narrowest, treasure 20.3, is
:math:`w \in [0.6658, 0.6721]`). (With :math:`\gamma = 1` treasure 20.3 lies on the segment
between 19.6 and 22.4, and with :math:`\gamma \le 0.95` the method returns points that are not
even Pareto-optimal, so those discounts are not used for the comparison.)

For each weight :math:`w` the scalarised MDP has reward :math:`w r_0 + (1 - w) r_1`; it is solved
exactly by value iteration on the deterministic dynamics read off the environment itself
(:func:`tabulate`, :func:`value_iteration`), and a set of recovered points is scored by the 2-D
hypervolume (:func:`hypervolume_2d`) with the usual reference point :math:`(0, -25)`. Evenly
spaced weights miss the narrow intervals (21 weights step 0.05 find neither treasure 15.1 nor
20.3 even exactly), so the weight set ``auto`` of :func:`parse_weights` adds, per supported
point, the weight of largest scalarised margin. The learner is
:func:`stochgrad.apps.rl.multi_objective.train_reinforce`; the sweep over weights and seeds is
:func:`stochgrad.studies.pareto.pareto_study` (``stochgrad rl pareto``).

References: Yang, Sun & Narasimhan, "A generalized algorithm for multi-objective RL and policy
adaptation", NeurIPS 2019 (the convex map); Vamplew et al., "Empirical evaluation methods for
multiobjective reinforcement learning algorithms", Machine Learning 2011 (Deep Sea Treasure,
hypervolume); Roijers, Whiteson & Oliehoek, "Computing convex coverage sets for faster
multi-objective coordination", JAIR 2015 (optimistic linear support, the corner-weight search of
:func:`supported_points`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stochgrad._checks import check_float, check_int, check_probability

__all__ = [
    "ENV_ID",
    "REFERENCE_POINT",
    "DeepSeaMDP",
    "check_gamma",
    "check_weights",
    "evaluate_in_env",
    "front_matches",
    "hypervolume_2d",
    "make_env",
    "parse_weights",
    "supported_points",
    "tabulate",
    "true_front",
    "value_iteration",
]

#: The mo-gymnasium id.
ENV_ID = "deep-sea-treasure-v0"
#: The hypervolume's reference point (treasure, time penalty).
REFERENCE_POINT = (0.0, -25.0)

# ---------------------------------------------------------------------------------------------
# hypervolume
# ---------------------------------------------------------------------------------------------


def real_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; ``TypeError`` naming ``name`` for anything that is not real
    numbers (strings, complex or boolean values, tensors off the CPU).

    >>> real_array("ref", (0.0, -25.0))
    array([  0., -25.])
    """
    device = getattr(value, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        raise TypeError(f"{name} must be numbers on the CPU, got a tensor on {device}")
    if hasattr(value, "detach"):  # a tensor: its values, whatever its autograd graph
        value = value.detach()
    try:
        a = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be an array of real numbers, got {type(value).__name__}"
        ) from exc
    if a.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of real numbers, got {type(value).__name__} of dtype {a.dtype}"
        )
    return a.astype(np.float64)


def hypervolume_2d(points: Any, ref: Sequence[float] = REFERENCE_POINT) -> float:
    r"""Hypervolume (area) dominated by a set of 2-D points, both objectives maximised.

    .. math::

        \mathrm{HV}(P; r) = \lambda\Big(\bigcup_{p \in P} [r_0, p_0] \times [r_1, p_1]\Big),

    computed by a sweep over the points sorted by the first objective, largest first. Points that
    do not strictly dominate the reference point contribute nothing; dominated points and
    duplicates are harmless.

    Args:
        points: array-like of shape ``[n, 2]`` (``n`` may be 0).
        ref: the reference point ``(r0, r1)``.

    Returns:
        The area as a float.

    Raises:
        ValueError: if ``points`` is not ``[n, 2]``, or ``points`` or ``ref`` is not finite.

    >>> hypervolume_2d([[1.0, 1.0]], ref=(0.0, 0.0))
    1.0
    >>> hypervolume_2d([[2.0, 1.0], [1.0, 2.0]], ref=(0.0, 0.0))
    3.0

    Reference: Zitzler & Thiele, "Multiobjective optimization using evolutionary algorithms: a
    comparative case study", PPSN 1998.
    """
    p = real_array("points", points)
    r = real_array("ref", ref)
    if p.size == 0:
        return 0.0
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected shape [n, 2], got {p.shape}")
    if r.shape != (2,):
        raise ValueError(f"ref: expected two numbers, got shape {r.shape}")
    if not (np.isfinite(p).all() and np.isfinite(r).all()):
        raise ValueError("points and ref must be finite")
    p = p[(p[:, 0] > r[0]) & (p[:, 1] > r[1])]
    order = np.lexsort((-p[:, 1], -p[:, 0]))  # first objective descending, ties: best y first
    area, best_y = 0.0, r[1]
    for x, y in p[order]:
        if y > best_y:
            area += (x - r[0]) * (y - best_y)
            best_y = y
    return float(area)


# ---------------------------------------------------------------------------------------------
# environment, exact tabular model
# ---------------------------------------------------------------------------------------------


def make_env(env_id: str = ENV_ID) -> Any:
    """The mo-gymnasium environment (import deferred: mo-gymnasium is an optional extra).

    Gymnasium's warning that the environment's float64 reward bound is cast to float32 (a
    harmless declaration of mo-gymnasium 1.3) is silenced.

    >>> make_env().unwrapped.map_name
    'convex'
    """
    import mo_gymnasium as mo_gym

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32")
        return mo_gym.make(env_id)


def true_front(gamma: float, env: Any | None = None) -> np.ndarray:
    """The discounted Pareto front as reported by the environment, ``[10, 2]``, sorted by time.

    Args:
        gamma: discount in ``(0, 1]``.
        env: a Deep Sea Treasure environment (default: :func:`make_env`).

    Returns:
        ``[n, 2]`` array of (discounted treasure, discounted time penalty).

    >>> true_front(1.0)[0].tolist()
    [0.7, -1.0]
    """
    check_gamma(gamma)
    env = make_env() if env is None else env
    front = np.array(env.unwrapped.pareto_front(gamma), dtype=np.float64)
    return front[np.argsort(-front[:, 1], kind="stable")]


@dataclass
class DeepSeaMDP:
    """Deterministic tabular model of Deep Sea Treasure, read off the environment's ``step``.

    States are the sea cells (neither rock nor treasure); ``next_state[s, a]`` is the index of
    the cell reached (meaningless when ``terminal[s, a]``), ``treasure[s, a]`` the first reward
    component, ``terminal[s, a]`` whether the move ends on a treasure. The time penalty is -1 on
    every step.
    """

    cells: np.ndarray  # [S, 2] (row, col)
    next_state: np.ndarray  # [S, A] int
    treasure: np.ndarray  # [S, A] float
    terminal: np.ndarray  # [S, A] bool
    start: int

    @property
    def num_states(self) -> int:
        """Number of sea cells."""
        return int(self.cells.shape[0])

    @property
    def num_actions(self) -> int:
        """Number of actions (4)."""
        return int(self.next_state.shape[1])


def tabulate(env: Any | None = None) -> DeepSeaMDP:
    """Build :class:`DeepSeaMDP` by calling the environment's own ``step`` from every sea cell.

    Args:
        env: a Deep Sea Treasure environment (default: :func:`make_env`).

    Returns:
        The tabular model; the start cell is the one ``reset`` puts the submarine in.

    >>> mdp = tabulate()
    >>> mdp.num_states, mdp.num_actions, len(set(mdp.treasure[mdp.terminal].tolist()))
    (62, 4, 10)
    """
    env = make_env() if env is None else env
    u = env.unwrapped
    start_obs, _ = u.reset(seed=0)
    sea = u.sea_map
    cells = np.argwhere(sea == 0)
    index = {(int(r), int(c)): i for i, (r, c) in enumerate(cells)}
    S, A = len(cells), int(u.action_space.n)
    next_state = np.zeros((S, A), dtype=np.int64)
    treasure = np.zeros((S, A))
    terminal = np.zeros((S, A), dtype=bool)
    for s, (r, c) in enumerate(cells):
        for a in range(A):
            u.current_state = np.array([r, c], dtype=np.int32)
            obs, rew, term, _, _ = u.step(a)
            treasure[s, a] = float(rew[0])
            terminal[s, a] = bool(term)
            next_state[s, a] = s if term else index[(int(obs[0]), int(obs[1]))]
            if float(rew[1]) != -1.0:
                raise RuntimeError(f"unexpected time penalty {rew[1]}")
    u.reset(seed=0)
    start = index[(int(start_obs[0]), int(start_obs[1]))]
    return DeepSeaMDP(cells, next_state, treasure, terminal, start)


def check_gamma(gamma: Any) -> float:
    """``gamma`` as a float in ``(0, 1]``; else ``TypeError``/``ValueError`` naming it."""
    return check_float("gamma", gamma, minimum=0.0, maximum=1.0, open_min=True)


def check_mdp(mdp: Any) -> DeepSeaMDP:
    """``mdp`` if it is a :class:`DeepSeaMDP`; ``TypeError`` naming it otherwise."""
    if not isinstance(mdp, DeepSeaMDP):
        raise TypeError(f"mdp must be a DeepSeaMDP (see tabulate()), got {type(mdp).__name__}")
    return mdp


def check_weights(weights: Any) -> np.ndarray:
    """``weights`` as a non-empty 1-D float array of numbers in ``[0, 1]``."""
    w = np.atleast_1d(real_array("weights", weights))
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D list, got shape {w.shape}")
    for x in w:
        check_probability("weights", x)
    return w


def value_iteration(
    mdp: DeepSeaMDP, weights: Any, gamma: float, *, tol: float = 1e-10, max_iter: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    r"""Optimal values and greedy policies of the scalarised MDPs, all weights at once.

    .. math::

        Q_w(s, a) = w\,T(s, a) - (1 - w) + \gamma\,\mathbb 1\{\neg\text{terminal}(s, a)\}
                    \max_{a'} Q_w(s'(s, a), a').

    Args:
        mdp: the tabular model (:func:`tabulate`).
        weights: ``K`` weights in ``[0, 1]`` on the treasure objective.
        gamma: discount in ``(0, 1]``.
        tol: stop when the largest change of a value is below this (> 0).
        max_iter: iteration cap (>= 1).

    Returns:
        ``(V, policy)``: ``[K, S]`` optimal values and ``[K, S]`` greedy actions (lowest index
        among ties).

    >>> mdp = tabulate()
    >>> V, pi = value_iteration(mdp, [0.0], 0.99)
    >>> round(float(V[0, mdp.start]), 6)  # the nearest treasure, one step away
    -1.0
    """
    check_mdp(mdp)
    w = check_weights(weights)
    gamma = check_gamma(gamma)
    tol = check_float("tol", tol, minimum=0.0, open_min=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    r = w[:, None, None] * mdp.treasure[None] - (1.0 - w)[:, None, None]  # [K, S, A]
    cont = gamma * (~mdp.terminal)[None].astype(np.float64)
    V = np.zeros((w.size, mdp.num_states))
    for _ in range(max_iter):
        Q = r + cont * V[:, mdp.next_state]
        V_new = Q.max(-1)
        if np.abs(V_new - V).max() < tol:
            V = V_new
            break
        V = V_new
    Q = r + cont * V[:, mdp.next_state]
    return V, Q.argmax(-1)


def _rollout_table(mdp: DeepSeaMDP, policy: np.ndarray, gamma: float, max_steps: int = 100):
    """Vector return of deterministic policies ``[K, S]`` from the start, on the table."""
    K = policy.shape[0]
    out = np.zeros((K, 2))
    for k in range(K):
        s, disc = mdp.start, 1.0
        for _ in range(max_steps):
            a = policy[k, s]
            out[k] += disc * np.array([mdp.treasure[s, a], -1.0])
            if mdp.terminal[s, a]:
                break
            s, disc = mdp.next_state[s, a], disc * gamma
    return out


def evaluate_in_env(
    mdp: DeepSeaMDP, policy: np.ndarray, gamma: float, env: Any | None = None
) -> np.ndarray:
    """Discounted vector return of deterministic policies, rolled out in the environment.

    Runs each policy for one episode of ``env`` (truncated at its time limit, 100 steps).

    Args:
        mdp: the tabular model, for the cell-to-state index.
        policy: ``[K, S]`` actions.
        gamma: discount in ``(0, 1]``.
        env: the environment (default: :func:`make_env`).

    Returns:
        ``[K, 2]``: (discounted treasure, discounted time penalty) per policy.

    >>> mdp = tabulate()
    >>> _, pi = value_iteration(mdp, [1.0], 0.99)
    >>> evaluate_in_env(mdp, pi, 0.99).round(3).tolist()
    [[19.778, -17.383]]
    """
    check_gamma(gamma)
    env = make_env() if env is None else env
    index = {(int(r), int(c)): i for i, (r, c) in enumerate(mdp.cells)}
    policy = np.asarray(policy)
    out = np.zeros((policy.shape[0], 2))
    for k in range(policy.shape[0]):
        obs, _ = env.reset(seed=0)
        disc, done = 1.0, False
        while not done:
            a = int(policy[k, index[(int(obs[0]), int(obs[1]))]])
            obs, rew, term, trunc, _ = env.step(a)
            out[k] += disc * np.asarray(rew, dtype=np.float64)
            disc *= gamma
            done = term or trunc
    return out


def supported_points(
    mdp: DeepSeaMDP, gamma: float, *, tol: float = 1e-9
) -> list[tuple[np.ndarray, float, float]]:
    r"""The supported front points and the weight interval on which each is optimal.

    Corner-weight search (optimistic linear support, Roijers et al. 2015, in two objectives):
    solve at :math:`w = 0` and :math:`w = 1`; for two neighbouring points :math:`p, q` solve at
    the weight where their scalarised values are equal; a strictly better solution there is a
    new point, searched on both sides in turn. Each solve is :func:`value_iteration`.

    Args:
        mdp: the tabular model.
        gamma: discount in ``(0, 1]``.
        tol: improvement below this is a tie.

    Returns:
        ``(point, w_low, w_high)`` per supported point, sorted by increasing weight.

    Examples:
        >>> pts = supported_points(tabulate(), 0.99)
        >>> len(pts), pts[0][1], pts[-1][2]
        (10, 0.0, 1.0)
    """

    def solve(w: float) -> np.ndarray:
        _, pi = value_iteration(mdp, [w], gamma)
        return _rollout_table(mdp, pi, gamma)[0]

    def corner(p: np.ndarray, q: np.ndarray) -> float:
        # w p0 + (1 - w) p1 = w q0 + (1 - w) q1
        return float((q[1] - p[1]) / ((p[0] - p[1]) - (q[0] - q[1])))

    def scal(w: float, x: np.ndarray) -> float:
        return float(w * x[0] + (1 - w) * x[1])

    points = [solve(0.0), solve(1.0)]
    stack = [(0, 1)]
    while stack:
        i, j = stack.pop()
        p, q = points[i], points[j]
        if np.allclose(p, q):
            continue
        w = corner(p, q)
        x = solve(w)
        if scal(w, x) > scal(w, p) + tol:
            points.append(x)
            stack += [(i, len(points) - 1), (len(points) - 1, j)]
    pts = sorted({tuple(np.round(p, 12)) for p in points}, key=lambda t: -t[1])
    arr = [np.array(p) for p in pts]
    out = []
    for n, p in enumerate(arr):
        lo = 0.0 if n == 0 else corner(arr[n - 1], p)
        hi = 1.0 if n == len(arr) - 1 else corner(p, arr[n + 1])
        out.append((p, lo, hi))
    return out


# the sweep
# ---------------------------------------------------------------------------------------------


def parse_weights(spec: str | int | Sequence[float], mdp: DeepSeaMDP, gamma: float) -> np.ndarray:
    r"""Weights from a spec: ``N`` (evenly spaced in [0, 1]), ``a,b,c`` (a list) or ``auto``.

    ``auto`` is 11 evenly spaced weights together with, for every supported point
    (:func:`supported_points`), the weight in its optimality interval at which its scalarised
    value exceeds that of every other supported point by the most (the easiest weight at which to
    find it; for treasure 20.3 at :math:`\gamma = 0.99` the margin is only 0.006).

    >>> parse_weights("3", None, 0.99).tolist()
    [0.0, 0.5, 1.0]
    """
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "auto":
            sup = supported_points(mdp, gamma)
            pts = np.array([p for p, _, _ in sup])
            best = []
            for i, (_, lo, hi) in enumerate(sup):
                ws = np.linspace(lo, hi, 1001)
                val = ws[:, None] * pts[:, 0] + (1 - ws[:, None]) * pts[:, 1]
                margin = val[:, i] - np.delete(val, i, 1).max(1)
                best.append(ws[margin.argmax()])
            return np.unique(np.round(np.concatenate([np.linspace(0, 1, 11), best]), 6))
        if "," in spec:
            try:
                values = [float(x) for x in spec.split(",")]
            except ValueError:
                raise ValueError(
                    f"weights: expected numbers in [0, 1] separated by commas, got {spec!r}"
                ) from None
            return check_weights(values)
        try:
            spec = int(spec)
        except ValueError:
            raise ValueError(f"weights: expected N, a comma list or 'auto', got {spec!r}") from None
    if isinstance(spec, (int, np.integer)):
        spec = check_int("weights", spec)
        if spec < 2:
            raise ValueError(f"weights: expected at least 2 evenly spaced weights, got {spec}")
        return np.linspace(0.0, 1.0, int(spec))
    return check_weights(spec)


def front_matches(points: Any, front: Any, atol: float = 1e-4) -> np.ndarray:
    """``[n_front, K]`` bool: which of ``K`` points equal (to ``atol``) which front point."""
    points, front = np.asarray(points, dtype=np.float64), np.asarray(front, dtype=np.float64)
    return np.isclose(front[:, None, :], points[None, :, :], atol=atol).all(-1)


def _skip_examples_without_env() -> None:
    """Mark the examples that need mo-gymnasium as skipped when it is not installed."""
    import importlib.util
    import re

    if importlib.util.find_spec("mo_gymnasium") is not None:
        return
    for obj in (make_env, true_front, tabulate, value_iteration, evaluate_in_env,
                supported_points):  # fmt: skip
        if obj.__doc__:
            obj.__doc__ = re.sub(r"^(\s*>>> .*)$", r"\1  # doctest: +SKIP", obj.__doc__, flags=re.M)


_skip_examples_without_env()
