r"""Tabular option-critic on the four-rooms grid (Bacon, Harb & Precup 2017, Algorithm 1).

Option-critic (:func:`train_option_critic`, tabular): per option
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
function of the softmax weighted by :math:`Q_U` with the baseline :math:`Q_\Omega`: the
gradient of the engine's surrogate (:func:`stochgrad.surrogate.surrogate_loss`, one sample per
agent and step, the critic's advantage :math:`Q_U - Q_\Omega`); the factor
:math:`T` is the convention of the authors' code (the step is taken in the logits
:math:`\theta/T`). Published values (``jeanharb/option_critic``, ``fourrooms`` config):
:math:`\alpha_c = 0.5`, :math:`\alpha_\theta = 0.25`, :math:`\alpha_\vartheta = 0.25`,
:math:`\epsilon = 0.1`, :math:`T = 0.01`, 4 options, 1000 steps per episode at most; the
termination regulariser :math:`\xi` is 0 there (it was introduced for the Atari experiments).
All are the defaults here except the temperature, :math:`T = 1`: with :math:`T = 0.01` the
intra-option policies become deterministic within a few visits (the score :math:`e_a - \pi`
vanishes) and freeze on sub-optimal actions. Measured as exact greedy mean steps / optimum
per seed: :math:`T = 1`, 5000 episodes, seeds 0 to 9 (each on its own stream): 1.008 to 1.048,
mean 1.023. In an earlier release, whose seeds shared one random stream (so single seeds
differ now; the ranges are indicative), 2000 episodes, 6 seeds unless said:
:math:`T = 0.01`: 1.15 to 2.25 (10 seeds); :math:`T = 0.03`: 1.13 to 1.83; :math:`T = 0.1`:
1.04 to 1.09; :math:`T = 0.3`: 1.01 to 1.03 (but 1.01 to 1.20 with 10 seeds, 1.02 to 1.10
after 5000 episodes); :math:`T = 0.5`, 4000 episodes, 10 seeds: 1.01 to 1.18; :math:`T = 1`,
5000 episodes, 10 seeds: 1.007 to 1.072, mean 1.029. The critic's constant step size 0.5
keeps :math:`Q_\Omega` noisy, so the greedy agent of a single seed fluctuates by a few per cent
from one episode to the next. The learning curve (steps of the exploring agent, softmax with
:math:`T = 1` plus :math:`\epsilon`-greedy options) levels off near 30 steps; the greedy agent is
what is compared.

Evaluation (:func:`evaluate_greedy`): the learned greedy agent (greedy option on
:math:`Q_\Omega`, greedy action within it, call-and-return with the learned terminations) is a
Markov chain over (state, option); its expected steps to the goal are solved exactly and
compared with the optimum.

Randomness: every agent has its own stream, ``numpy.random.default_rng(seed)`` of its seed, so
an agent's training does not depend on which other seeds are trained beside it (nor on a
resume); a run of ``n`` episodes is the start of any longer run of the same seed.

References:
    Sutton, Precup & Singh (1999), "Between MDPs and semi-MDPs", Artificial Intelligence 112;
    Bacon, Harb & Precup (AAAI 2017), "The option-critic architecture".

>>> from stochgrad.apps.rl.fourrooms import FourRooms
>>> agent, steps = train_option_critic(FourRooms(), 3, [0, 1])
>>> steps.shape
(2, 3)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad import checkpoint as _ckpt
from stochgrad._checks import check_float, check_int, check_probability, check_seed
from stochgrad.apps.rl._threads import torch_threads
from stochgrad.apps.rl.fourrooms import FourRooms, hitting_times, transition_matrix
from stochgrad.surrogate import surrogate_loss

__all__ = [
    "GreedyEvaluation",
    "OptionCritic",
    "OptionCriticConfig",
    "evaluate_greedy",
    "train_option_critic",
]

#: What a training state of :func:`train_option_critic` says it is.
STATE_FORMAT = "stochgrad.rl.option_critic/2"
#: Rows of uniforms drawn at once from an agent's generator (the stream does not depend on it).
_BLOCK = 256
#: The most episodes per agent (the lengths of all of them are kept: 8 bytes each).
MAX_EPISODES = 10**8


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

    Raises:
        TypeError, ValueError: a setting of the wrong type or out of range, named.
    """

    num_options: int = 4
    lr_critic: float = 0.5
    lr_intra: float = 0.25
    lr_term: float = 0.25
    epsilon: float = 0.1
    temperature: float = 1.0
    xi: float = 0.0
    max_steps: int = 1000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``TypeError``/``ValueError`` naming the first bad field."""
        check_int("num_options", self.num_options, minimum=1)
        check_int("max_steps", self.max_steps, minimum=1)
        for name in ("lr_critic", "lr_intra", "lr_term", "temperature"):
            check_float(name, getattr(self, name), minimum=0.0, open_min=True)
        check_probability("epsilon", self.epsilon)
        check_float("xi", self.xi)


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

    def select(self, rows: Sequence[int]) -> OptionCritic:
        """The agents ``rows`` (copies), in that order."""
        rows = list(rows)
        return OptionCritic(
            self.theta[rows].copy(),
            self.vartheta[rows].copy(),
            self.q_u[rows].copy(),
            self.q_omega[rows].copy(),
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _policy_gradient(logits: np.ndarray, actions: np.ndarray, advantages: np.ndarray) -> np.ndarray:
    r"""Each agent's :math:`A_i \nabla_z \log \mathrm{softmax}(z_i)_{a_i}` ``[n, A]``, ``z`` the
    logits ``[n, A]`` of its current state and option: the gradient of the engine's surrogate
    (:func:`stochgrad.surrogate.surrogate_loss`, one sample per agent, the critic's advantage
    :math:`Q_U - Q_\Omega`) times ``n`` (the surrogate is a mean; each agent's logits are its
    own)."""
    z = torch.from_numpy(logits).requires_grad_(True)
    log_probs = torch.log_softmax(z, -1).gather(1, torch.from_numpy(actions)[:, None])
    surrogate = surrogate_loss(log_probs.squeeze(1), torch.from_numpy(advantages))
    (grad,) = torch.autograd.grad(surrogate.loss * len(actions), z)
    return grad.numpy()


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


class _Streams:
    """One generator per agent, read row by row (rows of ``width`` uniforms), drawn in blocks.

    Drawing ``n`` rows at once gives the numbers of ``n`` single draws, so the block size does
    not change an agent's stream.
    """

    def __init__(self, seeds: Sequence[int], width: int):
        self.gens = [np.random.default_rng(s) for s in seeds]
        self.width = width
        self.buf = np.zeros((len(seeds), _BLOCK, width))
        self.pos = np.full(len(seeds), _BLOCK, dtype=np.int64)  # empty: the first read refills

    def first(self, width: int) -> np.ndarray:
        """``[R, width]``: one row of another width from every agent (before any :meth:`rows`)."""
        return np.stack([g.random(width) for g in self.gens])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """The next row of the agents ``idx``, ``[len(idx), width]``."""
        for r in idx[self.pos[idx] >= _BLOCK]:
            self.buf[r] = self.gens[r].random((_BLOCK, self.width))
            self.pos[r] = 0
        out = self.buf[idx, self.pos[idx]]
        self.pos[idx] += 1
        return out

    def state(self) -> dict[str, Any]:
        return {
            "generators": [json.dumps(g.bit_generator.state) for g in self.gens],
            "buffer": torch.from_numpy(self.buf.copy()),
            "position": torch.from_numpy(self.pos.copy()),
        }

    def load(self, state: dict[str, Any]) -> None:
        gens = _ckpt.saved_value(state, "generators", list)
        if len(gens) != len(self.gens) or not all(isinstance(s, str) for s in gens):
            raise ValueError(f"generators must be {len(self.gens)} JSON strings")
        buf = _saved_like(state, "buffer", self.buf, finite=True)
        pos = _saved_like(state, "position", self.pos)
        if ((pos < 0) | (pos > _BLOCK)).any():
            raise ValueError(f"position must lie in [0, {_BLOCK}]")
        states = [json.loads(s) for s in gens]
        for g, st in zip(self.gens, states, strict=True):
            g.bit_generator.state = st  # numpy checks the bit generator's own fields
        self.buf, self.pos = buf, pos


def _saved_like(
    state: dict[str, Any], key: str, like: np.ndarray, *, finite: bool = False
) -> np.ndarray:
    """``state[key]`` as a numpy array of ``like``'s shape and dtype, checked."""
    dtype = torch.from_numpy(np.zeros(0, dtype=like.dtype)).dtype
    t = _ckpt.saved_tensor(state, key, shape=tuple(like.shape), dtype=dtype, finite=finite)
    return t.numpy().copy()


def _seed_list(seeds: Sequence[int] | int) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(check_int("seeds", seeds, minimum=1)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence | np.ndarray):
        raise TypeError(f"seeds must be a count or a list of ints, got {type(seeds).__name__}")
    out = [check_seed("seeds", s) for s in seeds]
    if not out:
        raise ValueError("seeds must be a positive count or a non-empty list of integers")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {out}")
    return out


class _Training:
    """The state of ``R`` agents being trained together, and the batched loop."""

    def __init__(self, env: FourRooms, episodes: int, seeds: list[int], config, agent):
        self.env, self.episodes, self.seeds, self.config = env, episodes, seeds, config
        R, S, A, O = len(seeds), env.num_states, env.num_actions, config.num_options
        self.agent = OptionCritic.zeros(R, S, O, A) if agent is None else agent
        # per-step row: action, slip, termination, option choice (2 + O), reset (3 + O)
        self.streams = _Streams(seeds, 8 + 2 * O)
        self.steps = np.zeros((R, episodes), dtype=np.int64)
        self.ep = np.zeros(R, dtype=np.int64)
        self.t_ep = np.zeros(R, dtype=np.int64)
        self.state, self.option = self._reset(np.arange(R), self.streams.first(3 + O))

    def settings(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "config": asdict(self.config), "goal": self.env.goal,
                "gamma": self.env.gamma, "p_intended": self.env.p_intended}  # fmt: skip

    def _reset(self, e: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = self.env.starts
        s = starts[np.minimum((u[:, 0] * len(starts)).astype(np.int64), len(starts) - 1)]
        return s, _choose_options(self.agent.q_omega[e, s], self.config.epsilon, u[:, 1:])

    # -- saving -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        a = self.agent
        done = int(self.ep.max()) if self.ep.size else 0
        return {
            "format": STATE_FORMAT,
            "settings": self.settings(),
            "theta": torch.from_numpy(a.theta.copy()),
            "vartheta": torch.from_numpy(a.vartheta.copy()),
            "q_u": torch.from_numpy(a.q_u.copy()),
            "q_omega": torch.from_numpy(a.q_omega.copy()),
            "steps": torch.from_numpy(self.steps[:, :done].copy()),
            "ep": torch.from_numpy(self.ep.copy()),
            "t_ep": torch.from_numpy(self.t_ep.copy()),
            "state": torch.from_numpy(self.state.copy()),
            "option": torch.from_numpy(self.option.copy()),
            "streams": self.streams.state(),
        }

    def load(self, st: dict[str, Any], where: str) -> None:
        """Continue from ``st`` (:meth:`to_state`); ``where`` names it in errors."""
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
            raise _ckpt.CheckpointError(
                f"{where}: not an option-critic training state; {_ckpt.RESTART_HINT}"
            )
        _ckpt.check_settings(st["settings"], self.settings(), where)
        try:  # every field checked before anything is restored
            steps = _ckpt.saved_tensor(st, "steps", shape=(self.steps.shape[0], None))
            saved = int(steps.shape[1])
            if saved > self.episodes:
                raise _ckpt.CheckpointError(
                    f"episodes must be >= the {saved} episodes already trained in {where}, "
                    f"got {self.episodes}"
                )
            params = {
                name: _saved_like(st, name, getattr(self.agent, name), finite=True)
                for name in ("theta", "vartheta", "q_u", "q_omega")
            }
            steps = steps.numpy()
            if steps.dtype != self.steps.dtype or (steps < 0).any():
                raise ValueError(f"steps must be non-negative {self.steps.dtype} counts")
            rest = {
                n: _saved_like(st, n, getattr(self, n)) for n in ("ep", "t_ep", "state", "option")
            }
            self.streams.load(_ckpt.saved_value(st, "streams", dict))
        except _ckpt.CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise _ckpt.CheckpointError(
                f"{where}: an option-critic state that cannot be read ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); {_ckpt.RESTART_HINT}"
            ) from None
        for name, value in params.items():
            getattr(self.agent, name)[...] = value
        self.steps[:, :saved] = steps
        for name, value in rest.items():
            setattr(self, name, value)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress, save, save_every: int) -> None:
        env, config = self.env, self.config
        agent = self.agent
        theta, vartheta, q_u, q_omega = agent.theta, agent.vartheta, agent.q_u, agent.q_omega
        A, O = env.num_actions, config.num_options
        gamma, T, eps = env.gamma, config.temperature, config.epsilon
        steps, ep, t_ep, state, option = self.steps, self.ep, self.t_ep, self.state, self.option
        c_opt, c_reset = 3, 5 + O
        since_save = 0
        while True:
            idx = np.flatnonzero(ep < self.episodes)
            if idx.size == 0:
                break
            U = self.streams.rows(idx)
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
            theta[idx, s, o] += config.lr_intra * _policy_gradient(theta[idx, s, o] / T, a, adv)
            # ... and the termination gradient at s' (not at the goal)
            live = ~done
            step_term = config.lr_term * beta2 * (1.0 - beta2) * (q2_o - v2 + config.xi)
            vartheta[idx[live], s2[live], o[live]] -= step_term[live]
            # termination and choice of the next option
            beta2 = _sigmoid(vartheta[idx, s2, o])
            terminate = U[:, 2] < beta2
            o_next = np.where(
                terminate, _choose_options(q_omega[idx, s2], eps, U[:, c_opt:c_reset]), o
            )
            # episode ends: at the goal or when cut at max_steps
            ended = done | (t_ep[idx] >= config.max_steps)
            state[idx], option[idx] = s2, o_next
            if ended.any():
                e = idx[ended]
                steps[e, ep[e]] = t_ep[e]
                ep[e] += 1
                t_ep[e] = 0
                state[e], option[e] = self._reset(e, U[ended, c_reset:])
                since_save += e.size
                if save is not None and since_save >= save_every:
                    save(self.to_state())
                    since_save = 0
                if progress is not None:
                    progress(int(e.size))
        if save is not None:
            save(self.to_state())


def train_option_critic(
    env: FourRooms,
    episodes: int,
    seeds: Sequence[int] | int,
    config: OptionCriticConfig | None = None,
    *,
    agent: OptionCritic | None = None,
    progress: Callable[[int], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    callback: Callable[[int], None] | None = None,
) -> tuple[OptionCritic, np.ndarray]:
    """Train one option-critic agent per seed, all stepped together in one batched loop.

    Each agent runs its own environment, its own episodes and its own random stream (Bacon et
    al. 2017, Algorithm 1); the loop is vectorised over agents, with one torch thread (the
    caller's setting restored afterwards). An agent that has finished
    ``episodes`` episodes stops updating while the others go on. An agent's numbers depend on
    its seed alone: the same seed gives the same agent whatever seeds are trained beside it.

    Args:
        env: the environment.
        episodes: episodes per agent (>= 1, at most :data:`MAX_EPISODES`).
        seeds: one seed per agent (a list of distinct ints), or the number of agents (seeds
            ``0..n-1``); agent ``r``'s generator is ``numpy.random.default_rng(seeds[r])``.
        config: hyper-parameters (default: :class:`OptionCriticConfig`).
        agent: parameters to continue from (updated in place); fresh zeros otherwise.
        progress: called with the number of episodes just finished (over all agents), after
            the checkpoint that includes them when one is due; a resumed run first reports the
            episodes it loaded.
        checkpoint: ``.pt`` file holding the whole training state (parameters, episode
            lengths, environments, generators), written through :mod:`stochgrad.checkpoint`.
            If it exists, training resumes from it (same seeds and config required,
            ``episodes`` at least the saved number); it is rewritten atomically every
            ``checkpoint_every`` finished episodes (over all agents) and at the end. An
            interrupted and resumed run equals an uninterrupted one.
        checkpoint_every: finished episodes between checkpoints (or calls of ``save``).
        state: a training state passed to ``save`` by an earlier call, to continue from
            (instead of ``checkpoint``; :func:`stochgrad.studies.scaffold.run_grid` keeps it).
        save: called with the training state (tensors and plain values) every
            ``checkpoint_every`` finished episodes and at the end (instead of ``checkpoint``).
        callback: deprecated name of ``progress``.

    Returns:
        ``(agent, steps)``: the trained parameters and the length of every episode [R, episodes].

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint or state was made with other
            seeds or settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.

    >>> agent, steps = train_option_critic(FourRooms(), 3, [0, 1])
    >>> steps.shape
    (2, 3)
    """
    if callback is not None:
        warnings.warn(
            "train_option_critic(callback=) is now progress=; callback will be removed in the "
            "next release",
            DeprecationWarning,
            stacklevel=2,
        )
        if progress is not None:
            raise ValueError("give progress or callback (its old name), not both")
        progress = callback
    config = OptionCriticConfig() if config is None else config
    if not isinstance(config, OptionCriticConfig):
        raise TypeError(f"config must be an OptionCriticConfig, got {type(config).__name__}")
    config.validate()
    if not isinstance(env, FourRooms):
        raise TypeError(f"env must be a FourRooms, got {type(env).__name__}")
    episodes = check_int("episodes", episodes, minimum=1, maximum=MAX_EPISODES)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    seeds = _seed_list(seeds)
    runs = len(seeds)
    S, A, O = env.num_states, env.num_actions, config.num_options
    if agent is not None and agent.theta.shape != (runs, S, O, A):
        raise ValueError(
            f"agent must have parameters of shape {(runs, S, O, A)}, got {agent.theta.shape}"
        )
    if checkpoint is not None and (state is not None or save is not None):
        raise ValueError("give checkpoint, or state and save, not both")
    where = "state"
    if checkpoint is not None:
        path = Path(checkpoint)
        where = str(path)
        state = _ckpt.load_state(path) if path.exists() else None

        def save(st: dict[str, Any]) -> None:
            _ckpt.save_state(st, path)

    if state is not None and agent is not None:
        raise ValueError("give either agent or an existing checkpoint (state), not both")
    run = _Training(env, episodes, seeds, config, agent)
    if state is not None:
        try:
            run.load(state, where)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise _ckpt.CheckpointError(
                f"{where}: an option-critic state that cannot be read ({exc!r}); "
                f"{_ckpt.RESTART_HINT}"
            ) from None
        done = int(np.minimum(run.ep, episodes).sum())
        if progress is not None and done:
            progress(done)
    with torch_threads(1):  # tiny tensor programs: more threads only spin (60x slower, measured)
        run.run(progress, save, checkpoint_every)
    return run.agent, run.steps


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
            f"agent has {S} states and {A} actions, the environment {env.num_states} and "
            f"{env.num_actions}"
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
