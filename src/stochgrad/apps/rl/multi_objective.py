r"""Multi-objective RL on Deep Sea Treasure by linear scalarisation and the score function.

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

For each weight :math:`w` the scalarised MDP has reward :math:`w r_0 + (1 - w) r_1`. It is solved

* exactly, by value iteration on the deterministic dynamics read off the environment itself
  (:func:`tabulate`, :func:`value_iteration`), and
* by REINFORCE with a baseline (:func:`train_reinforce`; Williams 1992, Sutton & Barto 2018,
  sec. 13.4) on a tabular softmax policy :math:`\pi_\theta(a \mid s) \propto e^{\theta_{s,a}}`,
  all weights at once. The estimator is the score function of the trajectory distribution,

  .. math::

      \nabla_\theta J = \mathbb E\Big[\sum_t \gamma^t\,(G_t - b(s_t))\,
      \nabla_\theta \log \pi_\theta(a_t \mid s_t)\Big], \qquad
      G_t = \sum_{k \ge t} \gamma^{k - t} r_k,

  with a tabular Monte-Carlo baseline :math:`b(s)`. Episodes start in uniformly random sea cells
  (a restart distribution with full support, Kakade & Langford 2002): from the single start cell,
  the random walk finds the nearest treasure first and the gradient stays in that local optimum.

The greedy policy of each trained weight is then rolled out *in the mo-gymnasium environment*
and its discounted vector return recorded. Evenly spaced weights miss the narrow intervals (21
weights step 0.05 find neither treasure 15.1 nor 20.3 even exactly), so the default weight set
``auto`` adds, per supported point, the weight of largest scalarised margin
(:func:`parse_weights`); and since a single REINFORCE run at the margin-0.006 weight of treasure
20.3 sometimes settles on its neighbour 19.6, three runs per weight are trained in the same batch
and the one with the best scalarised greedy return is kept (``ReinforceConfig.restarts``). The recovered set is compared with the true front by
the 2-D hypervolume (:func:`hypervolume_2d`) with the usual reference point :math:`(0, -25)`.

Measured (``stochgrad rl pareto`` defaults: :math:`\gamma = 0.99`, 19 ``auto`` weights, 6000
iterations of 32 episodes, Adam 0.1, 3 runs per weight; 2 shared CPU cores, 72 to 74 s per seed
at normal load, 245 s once under heavy load): for seeds 0, 1, 2 the greedy policies recover all
10 front points, hypervolume 360.4010 against 360.4009 for the env's front (the difference is
the environment's float32 rewards). Single runs reaching their weight's exact optimum: 48, 55, 53
of 57; the misses are at the small-margin weights (0.4, 0.525, 0.6, 0.670, 0.684, 0.7). With one
run per weight and the midpoint weights, seeds 1 and 2 missed treasure 20.3 (9/10, hypervolume
359.26). Evenly spaced weights, solved exactly: 21 weights give 8/10 points (hypervolume 358.44).

References: Yang, Sun & Narasimhan, "A generalized algorithm for multi-objective RL and policy
adaptation", NeurIPS 2019 (the convex map); Vamplew et al., "Empirical evaluation methods for
multiobjective reinforcement learning algorithms", Machine Learning 2011 (Deep Sea Treasure,
hypervolume); Roijers, Whiteson & Oliehoek, "Computing convex coverage sets for faster
multi-objective coordination", JAIR 2015 (optimistic linear support, the corner-weight search of
:func:`supported_points`).
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
import torch

ENV_ID = "deep-sea-treasure-v0"
REFERENCE_POINT = (0.0, -25.0)

__all__ = [
    "ENV_ID",
    "REFERENCE_POINT",
    "DeepSeaMDP",
    "ParetoResult",
    "ReinforceConfig",
    "add_arguments",
    "evaluate_in_env",
    "hypervolume_2d",
    "make_env",
    "parse_weights",
    "run",
    "run_pareto",
    "supported_points",
    "tabulate",
    "train_reinforce",
    "true_front",
    "value_iteration",
]


# ---------------------------------------------------------------------------------------------
# hypervolume
# ---------------------------------------------------------------------------------------------


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
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        return 0.0
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected shape [n, 2], got {p.shape}")
    r = np.asarray(ref, dtype=np.float64)
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

    >>> make_env().unwrapped.map_name
    'convex'
    """
    import mo_gymnasium as mo_gym

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
    _check_gamma(gamma)
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


def _check_gamma(gamma: float) -> None:
    if not (0.0 < float(gamma) <= 1.0):
        raise ValueError(f"gamma: expected a number in (0, 1], got {gamma}")


def _check_weights(weights: Any) -> np.ndarray:
    w = np.atleast_1d(np.asarray(weights, dtype=np.float64))
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights: expected a non-empty 1-D list, got shape {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all() and (w <= 1).all()):
        raise ValueError(f"weights: expected numbers in [0, 1], got {w.tolist()}")
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
        tol: stop when the largest change of a value is below this.
        max_iter: iteration cap.

    Returns:
        ``(V, policy)``: ``[K, S]`` optimal values and ``[K, S]`` greedy actions (lowest index
        among ties).

    >>> mdp = tabulate()
    >>> V, pi = value_iteration(mdp, [0.0], 0.99)
    >>> round(float(V[0, mdp.start]), 6)  # the nearest treasure, one step away
    -1.0
    """
    w = _check_weights(weights)
    _check_gamma(gamma)
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
    _check_gamma(gamma)
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


# ---------------------------------------------------------------------------------------------
# REINFORCE with a baseline, vectorised over weights
# ---------------------------------------------------------------------------------------------


@dataclass
class ReinforceConfig:
    """Hyper-parameters of :func:`train_reinforce`."""

    iterations: int = 6000
    batch: int = 32  # episodes per weight and iteration
    lr: float = 0.1  # Adam on the logits
    baseline_lr: float = 0.5  # step of the tabular baseline towards the mean return per state
    horizon: int = 100  # the environment's time limit
    restarts: int = 3  # independent policies per weight in run_pareto; the best greedy one is kept


def train_reinforce(
    mdp: DeepSeaMDP,
    weights: Any,
    gamma: float,
    config: ReinforceConfig | None = None,
    *,
    seed: int = 0,
    callback: Callable[[int, np.ndarray], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
) -> tuple[torch.Tensor, np.ndarray]:
    r"""Train one tabular softmax policy per weight by REINFORCE with a state baseline.

    Per iteration and weight, ``batch`` episodes from uniformly random sea cells are simulated on
    the tabular model (all weights in one batched tensor program); the surrogate

    .. math::

        L(\theta) = -\frac1B \sum_{b, t} \gamma^t\,(G_{b,t} - b(s_{b,t}))\,
                    \log \pi_\theta(a_{b,t} \mid s_{b,t})

    is differentiated (its gradient is the score-function estimate of :math:`-\nabla J`) and
    Adam takes a step; then :math:`b(s) \mathrel{+}= \beta\,(\bar G(s) - b(s))` for every
    visited state (:math:`\bar G(s)` the mean return-to-go from ``s`` in the batch).

    Args:
        mdp: the tabular model (:func:`tabulate`).
        weights: ``K`` weights in ``[0, 1]`` on the treasure objective.
        gamma: discount in ``(0, 1]``.
        config: :class:`ReinforceConfig`.
        seed: seed of the torch generator (same seed, same numbers).
        callback: called after every iteration with (iteration, mean scalarised return from the
            random starts per weight, ``[K]``). A resumed run calls it for the iterations it
            loaded first, with their saved returns.
        checkpoint: ``.pt`` file. When it exists (written with the same weights, gamma, config
            and seed) training continues from it; the whole state (logits, baseline, Adam
            moments, random generator, learning curve) is rewritten atomically every
            ``checkpoint_every`` iterations and at the end, so a resumed run gives the numbers
            of an uninterrupted one, bit for bit.
        checkpoint_every: iterations between checkpoints.

    Returns:
        ``(logits, curve)``: ``[K, S, A]`` trained logits and ``[iterations, K]`` mean
        scalarised returns of the training episodes.

    >>> logits, curve = train_reinforce(tabulate(), [0.0, 1.0], 0.99, ReinforceConfig(iterations=2))
    >>> tuple(logits.shape), curve.shape
    ((2, 62, 4), (2, 2))
    """
    w = _check_weights(weights)
    _check_gamma(gamma)
    cfg = ReinforceConfig() if config is None else config
    if cfg.iterations < 1 or cfg.batch < 1 or cfg.horizon < 1:
        raise ValueError("config: iterations, batch and horizon must be >= 1")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise TypeError(f"checkpoint_every must be an int, got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    g = torch.Generator().manual_seed(int(seed))
    K, S, A, B, H = w.size, mdp.num_states, mdp.num_actions, cfg.batch, cfg.horizon
    nxt = torch.as_tensor(mdp.next_state)
    term = torch.as_tensor(mdp.terminal)
    wt = torch.as_tensor(w, dtype=torch.float64)
    rew = wt[:, None, None] * torch.as_tensor(mdp.treasure)[None] - (1 - wt)[:, None, None]
    theta = torch.zeros(K, S, A, dtype=torch.float64, requires_grad=True)
    base = torch.zeros(K, S, dtype=torch.float64)
    opt = torch.optim.Adam([theta], lr=cfg.lr)
    kk = torch.arange(K)[:, None].expand(K, B)
    curve = np.zeros((cfg.iterations, K))
    ckpt = None if checkpoint is None else Path(checkpoint)
    settings = {"weights": w.tolist(), "gamma": float(gamma), "seed": int(seed)} | asdict(cfg)
    start = 0
    if ckpt is not None and ckpt.exists():
        start = _load_training(ckpt, settings, theta, base, opt, g, curve)
        if callback is not None:
            for it in range(start):
                callback(it, curve[it])
    # near-deterministic softmax rows give denormal Adam moments, which are very slow on CPUs
    flushing = torch.set_flush_denormal(True)
    try:
        for it in range(start, cfg.iterations):
            s = torch.randint(S, (K, B), generator=g)
            with torch.no_grad():
                probs = torch.softmax(theta, -1)
            states, actions, rewards, alive_t = [], [], [], []
            alive = torch.ones(K, B, dtype=torch.bool)
            for _ in range(H):
                a = torch.multinomial(probs[kk, s].reshape(-1, A), 1, generator=g).reshape(K, B)
                states.append(s)
                actions.append(a)
                rewards.append(rew[kk, s, a] * alive)
                alive_t.append(alive)
                alive = alive & ~term[s, a]
                s = nxt[s, a]
                if not alive.any():
                    break
            T = len(states)
            st, ac = torch.stack(states, -1), torch.stack(actions, -1)  # [K, B, T]
            r, m = torch.stack(rewards, -1), torch.stack(alive_t, -1).double()
            G = torch.zeros_like(r)
            run = torch.zeros(K, B, dtype=torch.float64)
            for t in reversed(range(T)):
                run = r[..., t] + gamma * run
                G[..., t] = run
            disc = gamma ** torch.arange(T, dtype=torch.float64)
            kidx = kk[..., None].expand(K, B, T)
            adv = (G - base[kidx, st]) * m
            logp = torch.log_softmax(theta, -1)[kidx, st, ac]
            loss = -(disc * adv * logp).sum() / B
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                flat = (kidx * S + st)[m.bool()]
                tot = torch.zeros(K * S, dtype=torch.float64).index_add_(0, flat, G[m.bool()])
                cnt = torch.zeros(K * S, dtype=torch.float64).index_add_(
                    0, flat, torch.ones_like(tot[flat])
                )
                seen = cnt > 0
                b = base.view(-1)
                b[seen] += cfg.baseline_lr * (tot[seen] / cnt[seen] - b[seen])
            curve[it] = G[..., 0].mean(1).numpy()
            done = it + 1
            if ckpt is not None and (done % checkpoint_every == 0 or done == cfg.iterations):
                _save_training(ckpt, settings, done, theta, base, opt, g, curve)
            if callback is not None:
                callback(it, curve[it])
    finally:
        if flushing:
            torch.set_flush_denormal(False)
    return theta.detach(), curve


def _save_training(path, settings, done, theta, base, opt, g, curve) -> None:
    """Write the training state atomically (a crash mid-write leaves the previous file)."""
    state = {
        "settings": settings,
        "done": done,
        "theta": theta.detach().clone(),
        "base": base.clone(),
        "adam": opt.state_dict(),
        "generator": g.get_state(),
        "curve": torch.from_numpy(curve[:done].copy()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_training(path, settings, theta, base, opt, g, curve) -> int:
    """Restore a state saved by :func:`_save_training` in place; return the iterations done."""
    state = torch.load(path, weights_only=True)
    saved = state["settings"]
    if saved != settings:
        diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        raise ValueError(
            f"checkpoint {path} was made with other settings (saved, now): {diff}; "
            "rerun with the same options, or with --restart to start afresh"
        )
    with torch.no_grad():
        theta.copy_(state["theta"])
    base.copy_(state["base"])
    opt.load_state_dict(state["adam"])
    g.set_state(state["generator"])
    done = int(state["done"])
    curve[:done] = state["curve"].numpy()
    return done


# ---------------------------------------------------------------------------------------------
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
                return _check_weights([float(x) for x in spec.split(",")])
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        try:
            spec = int(spec)
        except ValueError:
            raise ValueError(f"weights: expected N, a comma list or 'auto', got {spec!r}") from None
    if isinstance(spec, (int, np.integer)):
        if spec < 2:
            raise ValueError(f"weights: expected at least 2 evenly spaced weights, got {spec}")
        return np.linspace(0.0, 1.0, int(spec))
    return _check_weights(spec)


@dataclass
class ParetoResult:
    """Outcome of :func:`run_pareto` (all returns discounted, from the start cell)."""

    gamma: float
    weights: list[float]
    reinforce_returns: list[list[float]]  # [K, 2] best greedy policy, rolled out in the env
    restarts_optimal: list[int]  # [K] how many of the restarts reach the exact optimum alone
    exact_returns: list[list[float]]  # [K, 2] value-iteration policy, rolled out in the env
    front: list[list[float]]  # [n, 2] env.unwrapped.pareto_front(gamma)
    recovered: list[bool]  # per front point: some weight's REINFORCE policy reaches it
    recovered_by: list[list[float]]  # per front point: the weights that reach it
    exact_recovered: list[bool]  # per front point: some weight's exact policy reaches it
    supported: list[list[float]]  # [m, 4] (point0, point1, w_low, w_high) from the exact search
    front_intervals: list[list[float] | None]  # per front point: its [w_low, w_high] or None
    hypervolume_reinforce: float
    hypervolume_exact: float
    hypervolume_front: float
    config: dict = field(default_factory=dict)
    seconds: float = 0.0


def _match(points: np.ndarray, front: np.ndarray, atol: float = 1e-4) -> np.ndarray:
    """``[n_front, K]``: which points equal which front point."""
    return np.isclose(front[:, None, :], points[None, :, :], atol=atol).all(-1)


def run_pareto(
    weights: str | int | Sequence[float] = "auto",
    gamma: float = 0.99,
    config: ReinforceConfig | None = None,
    *,
    seed: int = 0,
    out_dir: str | Path | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
    restart: bool = False,
    checkpoint_every: int = 500,
) -> ParetoResult:
    """Sweep weights, train REINFORCE per weight, compare greedy returns with the true front.

    Per weight, ``config.restarts`` policies are trained (one batched run) and the one whose greedy
    policy has the best scalarised return in the environment is kept. Writes ``pareto.json`` and
    ``pareto.png`` (true front, exact and REINFORCE points) into
    ``out_dir`` when given, and keeps the training state in ``out_dir/pareto_checkpoint.pt``
    (every ``checkpoint_every`` iterations): an interrupted sweep run again with the same
    settings continues where it stopped; ``restart=True`` deletes the checkpoint first.

    Args:
        weights: see :func:`parse_weights`.
        gamma: discount in ``(0, 1]``.
        config: :class:`ReinforceConfig`.
        seed: training seed.
        out_dir: output folder (created); nothing written when ``None``.
        callback: progress hook passed to :func:`train_reinforce`.
        restart: delete an existing checkpoint in ``out_dir`` and train from scratch.
        checkpoint_every: iterations between checkpoints.

    Returns:
        A :class:`ParetoResult`.

    >>> res = run_pareto("0,1", config=ReinforceConfig(iterations=1, batch=2))
    >>> res.exact_recovered[0], res.exact_recovered[-1]
    (True, True)
    """
    t0 = time.perf_counter()
    _check_gamma(gamma)
    cfg = ReinforceConfig() if config is None else config
    env = make_env()
    mdp = tabulate(env)
    w = parse_weights(weights, mdp, gamma)
    front = true_front(gamma, env)
    sup = supported_points(mdp, gamma)
    _, pi_exact = value_iteration(mdp, w, gamma)
    exact = evaluate_in_env(mdp, pi_exact, gamma, env)
    R = int(cfg.restarts)
    if R < 1:
        raise ValueError(f"config: restarts must be >= 1, got {R}")
    ckpt = None if out_dir is None else Path(out_dir) / "pareto_checkpoint.pt"
    if restart and ckpt is not None and ckpt.exists():
        ckpt.unlink()
    logits, _ = train_reinforce(
        mdp,
        np.repeat(w, R),
        gamma,
        cfg,
        seed=seed,
        callback=callback,
        checkpoint=ckpt,
        checkpoint_every=checkpoint_every,
    )
    every = evaluate_in_env(mdp, logits.argmax(-1).numpy(), gamma, env).reshape(w.size, R, 2)
    scal = w[:, None] * every[..., 0] + (1 - w[:, None]) * every[..., 1]
    learned = every[np.arange(w.size), scal.argmax(1)]
    exact_scal = w * exact[:, 0] + (1 - w) * exact[:, 1]
    restart_optimal = (scal >= exact_scal[:, None] - 1e-4).sum(1)
    hit = _match(learned, front)
    result = ParetoResult(
        gamma=float(gamma),
        weights=w.tolist(),
        reinforce_returns=learned.tolist(),
        restarts_optimal=restart_optimal.tolist(),
        exact_returns=exact.tolist(),
        front=front.tolist(),
        recovered=hit.any(1).tolist(),
        recovered_by=[w[h].tolist() for h in hit],
        exact_recovered=_match(exact, front).any(1).tolist(),
        supported=[[float(p[0]), float(p[1]), lo, hi] for p, lo, hi in sup],
        front_intervals=[
            next(([lo, hi] for p, lo, hi in sup if np.allclose(p, f, atol=1e-6)), None)
            for f in front
        ],
        hypervolume_reinforce=hypervolume_2d(learned),
        hypervolume_exact=hypervolume_2d(exact),
        hypervolume_front=hypervolume_2d(front),
        config=asdict(cfg) | {"seed": seed},
    )
    result.seconds = time.perf_counter() - t0
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pareto.json").write_text(json.dumps(asdict(result), indent=1))
        _plot(out / "pareto.png", result)
    return result


def _plot(path: Path, res: ParetoResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = np.array(res.front)
    learned = np.array(res.reinforce_returns)
    exact = np.array(res.exact_returns)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(front[:, 1], front[:, 0], "o-", color="0.6", ms=9, label="true front (env)")
    ax.plot(exact[:, 1], exact[:, 0], "s", mfc="none", color="C0", ms=7, label="exact (VI)")
    ax.plot(learned[:, 1], learned[:, 0], "x", color="C3", ms=8, label="REINFORCE greedy")
    ax.set_xlabel(f"discounted time penalty (gamma = {res.gamma})")
    ax.set_ylabel("discounted treasure")
    ax.set_title(
        f"Deep Sea Treasure, {len(res.weights)} weights: "
        f"{sum(res.recovered)}/{len(res.recovered)} front points; "
        f"HV {res.hypervolume_reinforce:.1f} / {res.hypervolume_front:.1f}",
        fontsize=10,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# command line (registered in stochgrad.cli as `stochgrad rl pareto`)
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl pareto``."""
    d = ReinforceConfig()
    parser.add_argument(
        "--weights",
        default="auto",
        help="N evenly spaced weights, a comma list, or 'auto' (11 + one per front point)",
    )
    parser.add_argument("--iterations", type=int, default=d.iterations, help="REINFORCE steps")
    parser.add_argument("--batch", type=int, default=d.batch, help="episodes per weight and step")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam step size on the logits")
    parser.add_argument(
        "--restarts", type=int, default=d.restarts, help="policies per weight (best kept)"
    )
    parser.add_argument("--gamma", type=float, default=0.99, help="discount")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--out", type=Path, default=Path("runs/pareto"), help="output folder")
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, help="iterations between checkpoints"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="ignore (delete) a checkpoint in --out; by default an interrupted run resumes",
    )


def run(args: argparse.Namespace, console: Any) -> int:
    """Weight sweep on Deep Sea Treasure; print the front points recovered and the hypervolumes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    cfg = ReinforceConfig(
        iterations=args.iterations, batch=args.batch, lr=args.lr, restarts=args.restarts
    )
    try:
        with Progress(
            TextColumn("REINFORCE, all weights"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("iterations", total=cfg.iterations)
            res = run_pareto(
                args.weights,
                args.gamma,
                cfg,
                seed=args.seed,
                out_dir=args.out,
                callback=lambda i, _: progress.advance(task, 1),
                restart=args.restart,
                checkpoint_every=args.checkpoint_every,
            )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    table = Table(
        title=f"Deep Sea Treasure (convex), gamma {res.gamma}, {len(res.weights)} weights"
    )
    for col in ("treasure", "time", "optimal for w in", "exact", "REINFORCE", "by weights"):
        table.add_column(col, justify="right")
    for n, p in enumerate(res.front):
        iv = res.front_intervals[n]
        table.add_row(
            f"{p[0]:.3f}",
            f"{p[1]:.3f}",
            "not supported" if iv is None else f"[{iv[0]:.4f}, {iv[1]:.4f}]",
            "yes" if res.exact_recovered[n] else "[red]no[/red]",
            "yes" if res.recovered[n] else "[red]no[/red]",
            ", ".join(f"{x:.3f}" for x in res.recovered_by[n]),
        )
    console.print(table)
    off = [
        (wk, r)
        for wk, r in zip(res.weights, res.reinforce_returns, strict=True)
        if not _match(np.array([r]), np.array(res.front)).any()
    ]
    for wk, r in off:
        console.print(
            f"[yellow]w = {wk:.4f}: REINFORCE greedy return {r} is not a front point[/yellow]"
        )
    console.print(
        f"single REINFORCE runs reaching their weight's exact optimum: "
        f"{sum(res.restarts_optimal)}/{len(res.weights) * cfg.restarts}"
    )
    console.print(
        f"front points recovered: REINFORCE {sum(res.recovered)}/{len(res.front)}, "
        f"exact {sum(res.exact_recovered)}/{len(res.front)}; hypervolume (ref {REFERENCE_POINT}): "
        f"REINFORCE {res.hypervolume_reinforce:.4f}, exact {res.hypervolume_exact:.4f}, "
        f"true front {res.hypervolume_front:.4f}; {res.seconds:.1f} s; "
        f"wrote {args.out}/pareto.json and .png"
    )
    return 0


def _skip_examples_without_env() -> None:
    """Mark the examples that need mo-gymnasium as skipped when it is not installed."""
    import importlib.util
    import re

    if importlib.util.find_spec("mo_gymnasium") is not None:
        return
    for obj in (make_env, true_front, tabulate, value_iteration, evaluate_in_env,
                supported_points, train_reinforce, run_pareto):  # fmt: skip
        if obj.__doc__:
            obj.__doc__ = re.sub(r"^(\s*>>> .*)$", r"\1  # doctest: +SKIP", obj.__doc__, flags=re.M)


_skip_examples_without_env()
