r"""Policy-gradient training on vectorised gymnasium environments: REINFORCE (and TRPO).

The score-function (REINFORCE) estimator of the policy gradient over rollouts of length
:math:`T` from :math:`N` environments,

.. math::

    \hat g = \frac{1}{NT} \sum_{n,t} \nabla_\theta \log \pi_\theta(a_{t,n} \mid s_{t,n})\,
        \hat A_{t,n}
        \;+\; \beta\, \nabla_\theta \frac{1}{NT}\sum_{n,t} \mathcal H[\pi_\theta(\cdot \mid s_{t,n})],

with the advantage :math:`\hat A` one of (``Config.baseline``):

* ``"none"``: the discounted reward-to-go :math:`G_t = \sum_{k \ge t} \gamma^{k-t} r_k`
  (within the episode);
* ``"mean"``: :math:`G_t - \bar G` (batch mean);
* ``"value"``: :math:`G_t - V_\phi(s_t)` with an MLP :math:`V_\phi` regressed on :math:`G_t`;
* ``"gae"``: GAE(:math:`\lambda`), :math:`\hat A_t = \sum_k (\gamma\lambda)^k \delta_{t+k}`,
  :math:`\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)`; :math:`V_\phi` regressed on
  :math:`\hat A_t + V(s_t)`.

Rollouts have fixed length; an episode still running at the end of a rollout (or cut by a time
limit) is bootstrapped with :math:`V_\phi` of its next state when a value function is learned
(``value``/``gae``), and simply truncated otherwise (``none``/``mean``: a small bias when
``n_steps`` is much longer than an episode). As usual in practice the :math:`\gamma^t` factor of
the exact discounted policy gradient is dropped. Advantages may be normalised to mean 0, sd 1.

TRPO takes the natural-gradient step of the surrogate :math:`L(\theta) = \mathbb E[\rho_t \hat
A_t]` under :math:`\overline{KL}(\pi_{\text{old}} \| \pi_\theta) \le \delta`, with
Fisher-vector products of the KL Hessian, conjugate gradient and a backtracking line search
(:func:`stochgrad.natural.kl_fvp`, :func:`~stochgrad.natural.trust_region_step`); the critic
is fitted afterwards, as in sb3-contrib's TRPO.

Randomness is explicit: environment ``i`` is reset once with seed ``seed + i`` (later resets
continue its own generator), action sampling uses a ``torch.Generator`` seeded with ``seed``
and network initialisation a forked global generator seeded with ``seed`` (the caller's
global RNG is left untouched). Checkpoints hold the networks,
optimisers, generator, the pickled sub-environments (their physical state, time-limit counter
and random generator), the current observations and the full history, so a resumed run repeats
the uninterrupted one exactly (same episode returns, bit for bit, on the same machine/threads).
An interrupted run loses at most the updates since its last checkpoint. Resuming unpickles the
saved environments: resume only from checkpoints you wrote (evaluation does not unpickle).

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8; Schulman, Levine, Moritz, Jordan, Abbeel
    (ICML 2015), "Trust region policy optimization"; Schulman, Moritz, Levine, Jordan, Abbeel
    (ICLR 2016), "High-dimensional continuous control using generalized advantage estimation".

>>> import torch
>>> r = torch.tensor([[1.0], [1.0], [1.0]])
>>> d = torch.tensor([[False], [False], [True]])
>>> discounted_returns(r, d, gamma=0.5).squeeze(1).tolist()
[1.75, 1.5, 1.0]
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stochgrad.argtypes import positive_int

ALGOS = ("reinforce", "trpo")
BASELINES = ("none", "mean", "value", "gae")


# ---------------------------------------------------------------------------------------------
# estimators: returns, GAE, the REINFORCE loss
# ---------------------------------------------------------------------------------------------
def discounted_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    *,
    terminated: torch.Tensor | None = None,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Discounted reward-to-go of every step of a ``[T, N]`` rollout.

    .. math::

        G_t = r_t + \gamma\big[(1 - d_t)\, G_{t+1} + d_t (1 - e_t)\, V(s'_t)\big],
        \qquad G_T := V(s'_{T-1}),

    where :math:`d_t` marks the end of an episode after step :math:`t` (terminated or
    truncated), :math:`e_t` a true termination, and :math:`V(s'_t)` (``next_values``) the value
    of the state reached by step :math:`t` (0 when ``next_values`` is None: no bootstrap).

    Args:
        rewards: ``[T, N]`` rewards.
        dones: ``[T, N]`` bool, the episode ended after this step.
        gamma: discount in [0, 1].
        terminated: ``[T, N]`` bool, true terminations (default: ``dones``).
        next_values: ``[T, N]`` values of the next states, or None.

    Returns:
        ``[T, N]`` returns :math:`G_t`.

    >>> r = torch.ones(2, 1); d = torch.zeros(2, 1, dtype=torch.bool)
    >>> discounted_returns(r, d, 0.5, next_values=torch.full((2, 1), 4.0)).squeeze(1).tolist()
    [2.5, 3.0]
    """
    _check_gamma(gamma)
    terminated = dones if terminated is None else terminated
    nv = torch.zeros_like(rewards) if next_values is None else next_values
    done = dones.to(rewards.dtype)
    live = 1.0 - terminated.to(rewards.dtype)
    out = torch.empty_like(rewards)
    last = rewards.shape[0] - 1
    for t in range(last, -1, -1):
        boot = nv[t] * live[t]  # value of the next state, 0 after a true termination
        carry = boot if t == last else (1.0 - done[t]) * out[t + 1] + done[t] * boot
        out[t] = rewards[t] + gamma * carry
    return out


def gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
    *,
    terminated: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Generalised advantage estimates GAE(:math:`\gamma, \lambda`) of a ``[T, N]`` rollout.

    .. math::

        \delta_t = r_t + \gamma (1 - e_t) V(s'_t) - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma\lambda (1 - d_t)\, \hat A_{t+1}, \quad \hat A_T = 0.

    :math:`\lambda = 1` gives the bootstrapped discounted return minus :math:`V(s_t)`,
    :math:`\lambda = 0` the one-step TD error (Schulman et al. 2016, eqs. 16-18).

    Args:
        rewards, values, next_values: ``[T, N]``; ``values`` are :math:`V(s_t)`,
            ``next_values`` :math:`V(s'_t)` of the state reached by step ``t`` (its final
            observation when the episode ended).
        dones: ``[T, N]`` bool, episode ended (terminated or truncated) after step ``t``.
        gamma: discount in [0, 1]; lam: :math:`\lambda` in [0, 1].
        terminated: ``[T, N]`` bool, true terminations (default: ``dones``).

    Returns:
        ``[T, N]`` advantages.

    >>> r = torch.ones(2, 1); v = torch.zeros(2, 1); d = torch.tensor([[False], [True]])
    >>> gae_advantages(r, v, v, d, 0.5, 1.0).squeeze(1).tolist()
    [1.5, 1.0]
    """
    _check_gamma(gamma)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    terminated = dones if terminated is None else terminated
    live = 1.0 - terminated.to(rewards.dtype)
    cont = 1.0 - dones.to(rewards.dtype)
    delta = rewards + gamma * live * next_values - values
    out = torch.empty_like(rewards)
    acc = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        acc = delta[t] + gamma * lam * cont[t] * acc
        out[t] = acc
    return out


def reinforce_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> torch.Tensor:
    r"""The surrogate loss whose gradient is minus the REINFORCE estimate (Williams 1992).

    .. math::

        \mathcal L(\theta) = -\frac1M \sum_i \log\pi_\theta(a_i \mid s_i)\,
            \mathrm{sg}(\hat A_i) - \beta \frac1M \sum_i \mathcal H_i,

    so :math:`-\nabla\mathcal L = \frac1M\sum_i \nabla\log\pi_\theta(a_i|s_i) \hat A_i + \beta
    \nabla \bar{\mathcal H}`. Advantages are detached.

    >>> lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    >>> reinforce_loss(lp, torch.tensor([1.0, 3.0])).backward(); lp.grad.tolist()
    [-0.5, -1.5]
    """
    loss = -(log_probs * advantages.detach()).mean()
    if entropy is not None and entropy_coef:
        loss = loss - entropy_coef * entropy.mean()
    return loss


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


# ---------------------------------------------------------------------------------------------
# policies and value functions
# ---------------------------------------------------------------------------------------------
def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]``, ``activation`` between."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class CategoricalPolicy(nn.Module):
    """:math:`\\pi(a|s) = \\mathrm{softmax}(f_\\theta(s))_a` over ``n_actions`` actions."""

    discrete = True

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.net = mlp([obs_dim, hidden, hidden, n_actions])

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Categorical(logits=self.net(obs))

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(self.net(obs), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).argmax(-1)


class GaussianPolicy(nn.Module):
    """:math:`\\pi(a|s) = \\mathcal N(\\mu_\\theta(s), \\mathrm{diag}\\, e^{2\\ell})`, state-free log-sd."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64, log_std: float = 0.0):
        super().__init__()
        self.net = mlp([obs_dim, hidden, hidden, act_dim])
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std)))

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        mean = self.net(obs)
        return torch.distributions.Independent(
            torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean)), 1
        )

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = self.net(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + self.log_std.exp() * noise

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


# ---------------------------------------------------------------------------------------------
# configuration and environments
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    """Settings of one training run (all but ``steps`` must match when resuming).

    Defaults are for REINFORCE; :func:`default_config` gives TRPO the sb3-contrib CartPole
    zoo settings (2 envs, 512 steps, lambda 0.98, cg_damping 1e-3, 20 critic updates).

    Attributes:
        num_envs, n_steps: the rollout of one update is ``n_steps`` steps of each of
            ``num_envs`` environments.
        baseline: ``none``, ``mean``, ``value`` (GAE with lambda 1) or ``gae``
            (``gae_lambda``); TRPO needs ``value`` or ``gae``.
        lr, max_grad_norm: Adam step and gradient-norm clip of the REINFORCE policy update
            (one step per rollout).
        value_lr, value_iters, value_batch: the critic's Adam learning rate, epochs per
            rollout and minibatch size (None: one full-batch step per epoch).
        target_kl, cg_damping, cg_iters, line_search_steps, line_search_shrink: TRPO.
        threads: torch threads during :func:`train` (restored afterwards).
    """

    env_id: str = "CartPole-v1"
    algo: str = "reinforce"
    seed: int = 0
    num_envs: int = 8
    n_steps: int = 64
    gamma: float = 0.99
    baseline: str = "value"
    gae_lambda: float = 1.0
    normalize_advantages: bool = True
    entropy_coef: float = 0.0
    hidden: int = 64
    lr: float = 1e-3
    value_lr: float = 1e-3
    value_iters: int = 5
    value_batch: int | None = None
    max_grad_norm: float = 0.5
    # TRPO
    target_kl: float = 0.01
    cg_damping: float = 1e-3
    cg_iters: int = 15
    line_search_steps: int = 10
    line_search_shrink: float = 0.8
    threads: int = 1

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        for name in ("num_envs", "n_steps", "hidden", "value_iters", "cg_iters", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        _check_gamma(self.gamma)
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if self.value_batch is not None and self.value_batch < 1:
            raise ValueError(f"value_batch must be >= 1 or None, got {self.value_batch}")
        for name in ("lr", "value_lr", "target_kl", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.algo == "trpo" and self.baseline in ("none", "mean"):
            raise ValueError(f"baseline must be 'value' or 'gae' for TRPO, got {self.baseline!r}")

    @property
    def batch(self) -> int:
        """Environment steps per update."""
        return self.num_envs * self.n_steps


def default_config(env_id: str, algo: str, seed: int = 0, **overrides: Any) -> Config:
    """The default :class:`Config` of ``algo`` on ``env_id`` with ``overrides`` applied."""
    if algo == "trpo":
        base = dict(
            num_envs=2,
            n_steps=512,
            gamma=0.99,
            baseline="gae",
            gae_lambda=0.98,
            value_lr=1e-3,
            value_iters=20,
            value_batch=512,
            cg_damping=1e-3,
            target_kl=0.01,
            normalize_advantages=True,
        )
    else:
        base = {}
    base.update(overrides)
    return Config(env_id=env_id, algo=algo, seed=seed, **base)


def make_envs(env_id: str, num_envs: int):
    """``num_envs`` copies of ``env_id`` in a ``SyncVectorEnv`` with same-step autoreset."""
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except Exception as exc:  # gymnasium raises its own NameNotFound/VersionNotFound errors
        raise ValueError(f"env_id: unknown gymnasium environment {env_id!r} ({exc})") from None
    return gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def _vector_from_envs(envs_list: list):
    import gymnasium as gym

    return gym.vector.SyncVectorEnv(
        [lambda e=e: e for e in envs_list], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def make_policy(env, hidden: int) -> nn.Module:
    """A categorical policy for ``Discrete`` actions, a Gaussian one for ``Box`` actions."""
    import gymnasium as gym

    obs_space, act_space = env.single_observation_space, env.single_action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"env_id: expected a flat Box observation space, got {obs_space}")
    obs_dim = int(obs_space.shape[0])
    if isinstance(act_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(act_space.n), hidden)
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return GaussianPolicy(obs_dim, int(act_space.shape[0]), hidden)
    raise ValueError(f"env_id: expected Discrete or flat Box actions, got {act_space}")


def _env_action(policy: nn.Module, action: torch.Tensor, env) -> np.ndarray:
    a = action.numpy()
    if policy.discrete:
        return a.astype(np.int64)
    space = env.single_action_space
    return np.clip(a, space.low, space.high).astype(space.dtype)


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------
@dataclass
class History:
    """What a run has produced so far (plain lists, saved in checkpoints).

    Attributes:
        episode_returns, episode_lengths: of every finished episode, in order of finishing.
        episode_end_steps: total environment steps (all envs) when each episode finished.
        update_steps: total environment steps after each update.
        update_mean100: mean return of the last 100 finished episodes after each update.
        update_wall: seconds of training (rollouts and updates) after each update.
        update_stats: per update, e.g. ``policy_loss``, ``entropy``, ``value_loss``; for
            TRPO ``kl``, ``accepted``, ``step_fraction``, ``num_backtracks``, ``loss_old/new``.
    """

    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    update_steps: list[int] = field(default_factory=list)
    update_mean100: list[float] = field(default_factory=list)
    update_wall: list[float] = field(default_factory=list)
    update_stats: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Holds the environments, networks, optimisers and generator of one run; ``update()``
    collects one rollout and takes one policy step (plus critic steps).

    >>> t = Trainer(Config(num_envs=2, n_steps=8))
    >>> t.update()["env_steps"]
    16
    """

    def __init__(self, config: Config):
        self.config = c = config
        self.envs = make_envs(c.env_id, c.num_envs)
        obs_dim = self.envs.single_observation_space.shape[0]
        with torch.random.fork_rng():  # seeded initialisation, global RNG left as it was
            torch.manual_seed(c.seed)
            self.policy = make_policy(self.envs, c.hidden)
            self.value = mlp([obs_dim, c.hidden, c.hidden, 1])
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=c.lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=c.value_lr)
        self.generator = torch.Generator().manual_seed(c.seed)
        obs, _ = self.envs.reset(seed=[c.seed + i for i in range(c.num_envs)])
        self.obs = torch.as_tensor(obs, dtype=torch.float32)
        self.ep_return = np.zeros(c.num_envs, dtype=np.float64)
        self.ep_length = np.zeros(c.num_envs, dtype=np.int64)
        self.env_steps = 0
        self.updates = 0
        self.wall = 0.0
        self.history = History()

    # -- rollout ----------------------------------------------------------------------------
    def _rollout(self) -> dict[str, torch.Tensor]:
        T, N = self.config.n_steps, self.config.num_envs
        obs_buf = torch.empty((T, N, self.obs.shape[-1]))
        next_obs_buf = torch.empty_like(obs_buf)
        acts = []
        rew = torch.empty((T, N))
        term = torch.empty((T, N), dtype=torch.bool)
        done = torch.empty((T, N), dtype=torch.bool)
        h = self.history
        for t in range(T):
            obs_buf[t] = self.obs
            with torch.no_grad():
                action = self.policy.sample(self.obs, self.generator)
            acts.append(action)
            obs, r, te, tr, info = self.envs.step(_env_action(self.policy, action, self.envs))
            d = np.logical_or(te, tr)
            nxt = torch.as_tensor(obs, dtype=torch.float32)
            next_obs_buf[t] = nxt
            if d.any():
                for i in np.flatnonzero(d):
                    next_obs_buf[t, i] = torch.as_tensor(info["final_obs"][i], dtype=torch.float32)
            rew[t] = torch.as_tensor(r, dtype=torch.float32)
            term[t] = torch.as_tensor(te)
            done[t] = torch.as_tensor(d)
            self.ep_return += r
            self.ep_length += 1
            self.env_steps += N
            for i in np.flatnonzero(d):
                h.episode_returns.append(float(self.ep_return[i]))
                h.episode_lengths.append(int(self.ep_length[i]))
                h.episode_end_steps.append(int(self.env_steps - N + i + 1))
                self.ep_return[i] = 0.0
                self.ep_length[i] = 0
            self.obs = nxt
        return dict(
            obs=obs_buf,
            next_obs=next_obs_buf,
            actions=torch.stack(acts),
            rewards=rew,
            terminated=term,
            dones=done,
        )

    def _advantages(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, value targets) of a rollout, both ``[T, N]``."""
        c = self.config
        if c.baseline in ("none", "mean"):
            ret = discounted_returns(b["rewards"], b["dones"], c.gamma, terminated=b["terminated"])
            adv = ret - ret.mean() if c.baseline == "mean" else ret
            return adv, ret
        with torch.no_grad():
            v = self.value(b["obs"]).squeeze(-1)
            nv = self.value(b["next_obs"]).squeeze(-1)
        lam = 1.0 if c.baseline == "value" else c.gae_lambda
        adv = gae_advantages(
            b["rewards"], v, nv, b["dones"], c.gamma, lam, terminated=b["terminated"]
        )
        return adv, adv + v

    def _fit_value(self, obs: torch.Tensor, targets: torch.Tensor) -> float:
        """``value_iters`` epochs of Adam on the squared error, full batch or minibatches of
        ``value_batch`` (shuffled with the run's generator)."""
        c, n = self.config, obs.shape[0]
        loss = torch.tensor(float("nan"))
        for _ in range(c.value_iters):
            if c.value_batch is None or c.value_batch >= n:
                batches = [slice(None)]
            else:
                perm = torch.randperm(n, generator=self.generator)
                batches = [perm[i : i + c.value_batch] for i in range(0, n, c.value_batch)]
            for idx in batches:
                loss = (self.value(obs[idx]).squeeze(-1) - targets[idx]).pow(2).mean()
                self.value_opt.zero_grad()
                loss.backward()
                self.value_opt.step()
        return float(loss.detach())

    def update(self) -> dict[str, float]:
        """One rollout and one policy update; returns this update's statistics."""
        c = self.config
        start = time.perf_counter()
        b = self._rollout()
        adv, targets = self._advantages(b)
        obs = b["obs"].reshape(-1, b["obs"].shape[-1])
        actions = b["actions"].reshape(-1, *b["actions"].shape[2:])
        adv, targets = adv.reshape(-1), targets.reshape(-1)
        if c.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        if c.algo == "trpo":
            stats = self._trpo_step(obs, actions, adv)
        else:
            dist = self.policy.dist(obs)
            loss = reinforce_loss(dist.log_prob(actions), adv, dist.entropy(), c.entropy_coef)
            self.policy_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
            self.policy_opt.step()
            stats = {
                "policy_loss": float(loss.detach()),
                "entropy": float(dist.entropy().mean().detach()),
            }
        if c.baseline in ("value", "gae"):
            stats["value_loss"] = self._fit_value(obs, targets)
        self.updates += 1
        self.wall += time.perf_counter() - start
        h = self.history
        h.update_steps.append(self.env_steps)
        h.update_mean100.append(self.mean_return())
        h.update_wall.append(self.wall)
        h.update_stats.append(stats)
        return dict(
            stats,
            env_steps=self.env_steps,
            updates=self.updates,
            mean_return_100=self.mean_return(),
            episodes=len(h.episode_returns),
            wall=self.wall,
        )

    def mean_return(self, last: int = 100) -> float:
        """Mean episodic return of the last ``last`` finished episodes (nan before the first)."""
        r = self.history.episode_returns[-last:]
        return float(np.mean(r)) if r else float("nan")

    # -- TRPO -------------------------------------------------------------------------------
    def _trpo_step(self, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor) -> dict:
        r"""One TRPO policy step (Schulman et al. 2015): maximise
        :math:`\mathbb E[\pi_\theta(a|s)/\pi_{\text{old}}(a|s)\, \hat A]` subject to
        :math:`\overline{KL}(\pi_{\text{old}} \| \pi_\theta) \le` ``target_kl``, with the
        KL-Hessian Fisher-vector product, conjugate gradient and backtracking of
        :mod:`stochgrad.natural`."""
        from stochgrad import natural

        c = self.config
        params = list(self.policy.parameters())
        theta0 = natural.flat_params(params)
        with torch.no_grad():
            old_dist = self.policy.dist(obs)
            old_logp = old_dist.log_prob(actions)

        def loss_at(theta: torch.Tensor) -> torch.Tensor:
            natural.set_flat_params(params, theta)
            ratio = torch.exp(self.policy.dist(obs).log_prob(actions) - old_logp)
            return -(ratio * adv).mean()

        def kl_at(theta: torch.Tensor) -> torch.Tensor:
            natural.set_flat_params(params, theta)
            return torch.distributions.kl_divergence(old_dist, self.policy.dist(obs)).mean()

        ratio = torch.exp(self.policy.dist(obs).log_prob(actions) - old_logp)
        grad = natural.flat_grad(-(ratio * adv).mean(), params)
        fvp = natural.kl_fvp(lambda: self.policy.dist(obs), params, damping=c.cg_damping)
        new, info = natural.trust_region_step(
            loss_at,
            kl_at,
            theta0,
            grad,
            fvp,
            c.target_kl,
            c.line_search_shrink,
            c.line_search_steps,
            cg_iters=c.cg_iters,
        )
        natural.set_flat_params(params, new)
        with torch.no_grad():
            entropy = float(self.policy.dist(obs).entropy().mean())
        keys = ("accepted", "step_fraction", "num_backtracks", "kl", "loss_old", "loss_new")
        return dict({k: float(info[k]) for k in keys}, entropy=entropy)

    # -- checkpoints ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see :meth:`load_state`)."""
        envs = pickle.dumps(self.envs.envs)
        return {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "policy_opt": self.policy_opt.state_dict(),
            "value_opt": self.value_opt.state_dict(),
            "generator": self.generator.get_state(),
            "envs": torch.frombuffer(bytearray(envs), dtype=torch.uint8),
            "obs": self.obs.clone(),
            "ep_return": torch.as_tensor(self.ep_return),
            "ep_length": torch.as_tensor(self.ep_length),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall": self.wall,
            "history": asdict(self.history),
        }

    def load_state(self, state: dict[str, Any], *, restore_envs: bool = True) -> None:
        """Restore :meth:`state`; the environments come back pickled (trusted files only)."""
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.generator.set_state(state["generator"])
        if restore_envs:
            self.envs.close()
            self.envs = _vector_from_envs(pickle.loads(state["envs"].numpy().tobytes()))
        self.obs = state["obs"].clone()
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self.wall = float(state["wall"])
        self.history = History(**state["history"])


def _comparable(config: Config) -> dict[str, Any]:
    d = asdict(config)
    d.pop("threads", None)
    return d


def save_checkpoint(trainer: Trainer, path: str | Path) -> Path:
    """Write the trainer's config and state to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": asdict(trainer.config), "state": trainer.state()}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[Config, dict[str, Any]]:
    """``(config, state)`` stored in a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint: no file {path}")
    blob = torch.load(path, weights_only=True)
    return Config(**blob["config"]), blob["state"]


# ---------------------------------------------------------------------------------------------
# train / evaluate
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` returns: the config, the trainer (networks, history) and paths."""

    config: Config
    trainer: Trainer
    checkpoint: Path | None
    resumed_from_steps: int = 0

    @property
    def history(self) -> History:
        return self.trainer.history


def train(
    env_id: str,
    algo: str,
    steps: int,
    seed: int = 0,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``algo`` on ``env_id`` until at least ``steps`` environment steps.

    Updates continue while ``env_steps < steps``, so the run ends at the first multiple of the
    batch (``num_envs * n_steps``) at or above ``steps``. With ``checkpoint`` the state is saved
    every ``checkpoint_every`` updates and at the end; ``resume=True`` loads it (the settings
    other than ``steps`` must match) and continues exactly where it stopped.

    Args:
        env_id: a gymnasium id with flat Box observations (``CartPole-v1``, ``Pendulum-v1``...).
        algo: ``"reinforce"`` or ``"trpo"``.
        steps: total environment steps (>= 1).
        seed: seeds environments, action sampling and initialisation.
        checkpoint: ``.pt`` path, or None for no checkpoints.
        checkpoint_every: updates between checkpoints.
        resume: continue from ``checkpoint`` if it exists.
        progress: called with ``(trainer, stats)`` after each update.
        **overrides: fields of :class:`Config`.

    >>> r = train("CartPole-v1", "reinforce", 64, num_envs=2, n_steps=32)
    >>> r.trainer.env_steps
    64
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if algo == "trpo" and not _natural_available():
        raise ValueError("algo 'trpo' needs stochgrad.natural, which is not available")
    config = default_config(env_id, algo, seed, **overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, steps, checkpoint, checkpoint_every, resume, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config, steps, checkpoint, checkpoint_every, resume, progress) -> TrainResult:
    resumed = 0
    saved = None
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved_config, saved = load_checkpoint(checkpoint)
        if _comparable(saved_config) != _comparable(config):
            a, b = _comparable(saved_config), _comparable(config)
            diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
            raise ValueError(
                f"checkpoint {checkpoint} was made with other settings (saved, now): {diff}"
            )
    trainer = Trainer(config)
    if saved is not None:
        trainer.load_state(saved)
        resumed = trainer.env_steps
    ckpt = Path(checkpoint) if checkpoint is not None else None
    last_saved = trainer.updates
    while trainer.env_steps < steps:
        stats = trainer.update()
        if progress is not None:
            progress(trainer, stats)
        if ckpt is not None and trainer.updates % checkpoint_every == 0:
            save_checkpoint(trainer, ckpt)
            last_saved = trainer.updates
    if ckpt is not None and (last_saved != trainer.updates or not ckpt.exists()):
        save_checkpoint(trainer, ckpt)
    return TrainResult(config, trainer, ckpt, resumed)


def _natural_available() -> bool:
    try:
        from stochgrad import natural  # noqa: F401
    except ImportError:
        return False
    return hasattr(natural, "trust_region_step")


def evaluate(
    checkpoint: str | Path, episodes: int = 10, *, seed: int = 10_000, deterministic: bool = True
) -> list[float]:
    """Returns of ``episodes`` fresh episodes of the checkpoint's policy.

    Episode ``k`` starts from ``reset(seed=seed + k)``; actions are the policy's mode
    (``deterministic``) or samples from a generator seeded with ``seed``.
    """
    import gymnasium as gym

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    config, state = load_checkpoint(checkpoint)
    env = gym.make(config.env_id)
    vec = make_envs(config.env_id, 1)
    policy = make_policy(vec, config.hidden)
    vec.close()
    policy.load_state_dict(state["policy"])
    gen = torch.Generator().manual_seed(seed)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            with torch.no_grad():
                a = policy.mode(o) if deterministic else policy.sample(o, gen)
            act = a.squeeze(0).numpy()
            if policy.discrete:
                act = int(act)
            else:
                act = np.clip(act, env.action_space.low, env.action_space.high)
            obs, r, te, tr, _ = env.step(act)
            total += float(r)
            done = te or tr
        returns.append(total)
    env.close()
    return returns


def plot_learning_curve(history: History, path: str | Path, title: str = "") -> Path:
    """PNG of episodic returns and their mean over the last 100 episodes against env steps."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    if history.episode_returns:
        ax.plot(
            history.episode_end_steps,
            history.episode_returns,
            ".",
            ms=2,
            alpha=0.3,
            color="C0",
            label="episode return",
        )
    ax.plot(history.update_steps, history.update_mean100, color="C1", label="mean of last 100")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.savefig(path, dpi=120)
    return path


# ---------------------------------------------------------------------------------------------
# command line (registered by stochgrad.cli as `stochgrad rl train` / `stochgrad rl eval`)
# ---------------------------------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl train``."""
    p.add_argument("--env", default="CartPole-v1", help="gymnasium id (default CartPole-v1)")
    p.add_argument("--algo", choices=ALGOS, default="reinforce", help="default reinforce")
    p.add_argument("--steps", type=positive_int, default=100_000, help="env steps (100000)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--baseline", choices=BASELINES, default=None, help="default value (reinforce), gae (trpo)"
    )
    p.add_argument("--gae-lambda", type=float, default=None, help="GAE lambda")
    p.add_argument("--num-envs", type=positive_int, default=None, help="parallel envs")
    p.add_argument("--n-steps", type=positive_int, default=None, help="rollout steps per env")
    p.add_argument("--lr", type=float, default=None, help="policy Adam learning rate")
    p.add_argument("--entropy-coef", type=float, default=None, help="entropy bonus")
    p.add_argument(
        "--no-normalize", action="store_true", help="do not normalise advantages per batch"
    )
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=50, help="updates between checkpoints"
    )
    p.add_argument(
        "--out",
        default=None,
        help="PNG path (default stochgrad-out/rl_<env>_<algo>_s<seed>.png); the checkpoint "
        "goes next to it as <name>.pt",
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for name in ("baseline", "gae_lambda", "num_envs", "n_steps", "lr", "entropy_coef"):
        v = getattr(args, name, None)
        if v is not None:
            o[name] = v
    if getattr(args, "no_normalize", False):
        o["normalize_advantages"] = False
    return o


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    out = Path(args.out or f"stochgrad-out/rl_{args.env}_{args.algo}_s{args.seed}.png")
    return out, out.with_suffix(".pt")


def run_train(args: argparse.Namespace, console) -> int:
    """Train a policy by REINFORCE (baselines, GAE) or TRPO on a gymnasium environment.

    Shows a progress bar over environment steps, saves a checkpoint every --checkpoint-every
    updates (--resume continues it exactly), prints a summary table and writes the learning
    curve (episodic return and its mean over the last 100 episodes) as a PNG.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    out, ckpt = _paths(args)
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{args.algo} {args.env}", total=args.steps, info="")

        def progress(trainer: Trainer, stats: dict) -> None:
            bar.update(
                task,
                completed=min(trainer.env_steps, args.steps),
                info=f"mean100 {stats['mean_return_100']:.1f}",
            )

        try:
            result = train(
                args.env,
                args.algo,
                args.steps,
                args.seed,
                checkpoint=ckpt,
                checkpoint_every=args.checkpoint_every,
                resume=args.resume,
                progress=progress,
                **_overrides(args),
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
    wall = time.perf_counter() - start
    t, h = result.trainer, result.history
    if result.resumed_from_steps:
        console.print(f"resumed from [bold]{ckpt}[/bold] at {result.resumed_from_steps:,} steps")
    table = Table(title=f"{args.algo} on {args.env}, seed {args.seed}", header_style="bold")
    for col in ("env steps", "updates", "episodes", "mean return (last 100)", "best mean100"):
        table.add_column(col, justify="right")
    table.add_column("steps/s", justify="right")
    best = np.nanmax(h.update_mean100) if h.episode_returns else float("nan")
    table.add_row(
        f"{t.env_steps:,}",
        f"{t.updates:,}",
        f"{len(h.episode_returns):,}",
        f"{t.mean_return():.1f}",
        f"{best:.1f}",
        f"{t.env_steps / max(t.wall, 1e-9):,.0f}",
    )
    console.print(table)
    if Path(out).suffix == "":  # name the file matplotlib writes
        out = Path(out).with_suffix(".png")
    plot_learning_curve(h, out, f"{args.algo} on {args.env} (seed {args.seed})")
    console.print(f"learning curve: [bold]{out}[/bold]; checkpoint: [bold]{ckpt}[/bold]")
    console.print(f"wall time {wall:.1f} s ({t.wall:.1f} s training in total)")
    return 0


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl eval``."""
    p.add_argument("checkpoint", help="a .pt file written by `stochgrad rl train`")
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes (default 10)")
    p.add_argument("--seed", type=int, default=10_000, help="first reset seed (default 10000)")
    p.add_argument("--stochastic", action="store_true", help="sample actions (default: mode)")


def run_eval(args: argparse.Namespace, console) -> int:
    """Run a trained policy for --episodes fresh episodes and print the returns."""
    from rich.table import Table

    try:
        returns = evaluate(
            args.checkpoint, args.episodes, seed=args.seed, deterministic=not args.stochastic
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    r = np.asarray(returns)
    table = Table(title=f"evaluation of {args.checkpoint}", header_style="bold")
    for col in ("episodes", "mean return", "sd", "min", "max"):
        table.add_column(col, justify="right")
    sd = r.std(ddof=1) if r.size > 1 else float("nan")
    table.add_row(str(r.size), f"{r.mean():.2f}", f"{sd:.2f}", f"{r.min():.1f}", f"{r.max():.1f}")
    console.print(table)
    return 0


__all__ = [
    "ALGOS",
    "BASELINES",
    "Config",
    "History",
    "Trainer",
    "TrainResult",
    "add_eval_arguments",
    "add_train_arguments",
    "default_config",
    "discounted_returns",
    "evaluate",
    "gae_advantages",
    "load_checkpoint",
    "plot_learning_curve",
    "reinforce_loss",
    "run_eval",
    "run_train",
    "save_checkpoint",
    "train",
]
