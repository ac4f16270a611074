r"""The policy-gradient trainer on vectorised gymnasium environments: settings, one update.

:class:`Trainer` holds the environments, networks, optimisers and generator of one run;
:meth:`Trainer.update` collects one rollout of ``n_steps`` steps of ``num_envs`` environments
and takes one policy step: REINFORCE or TRPO, then fits the critic. The gradient comes from the
engine: the returns or advantages from :func:`stochgrad.baselines.reward_to_go` or
:func:`stochgrad.baselines.gae` (with the critic's values), the advantage rule of
:mod:`stochgrad.baselines` (the batch mean, or the batch standardisation of
``normalize_advantages``), the loss from :func:`stochgrad.surrogate.surrogate_loss` (for TRPO
with the importance weights :math:`\pi_\theta/\pi_{\text{old}}`), the natural-gradient step
from :mod:`stochgrad.natural`; each update records the policy gradient's signal-to-noise ratio
(:meth:`stochgrad.surrogate.Surrogate.estimate`, :data:`SNR_BATCHES` batch means; see
:meth:`Trainer.update`). :meth:`Trainer.state` and
:meth:`Trainer.load_state` save and restore a run exactly, the environments by replaying the
actions sent to them (:mod:`stochgrad.apps.rl.gym_envs`). Running it, with checkpoints, is
:func:`stochgrad.apps.rl.policy_gradient.train`.

>>> t = Trainer(Config(num_envs=2, n_steps=8))
>>> t.update()["env_steps"]
16
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from stochgrad._checks import (
    check_choice,
    check_float,
    check_int,
    check_probability,
    check_seed,
)
from stochgrad.apps.rl.gym_envs import env_action, make_envs, replay
from stochgrad.apps.rl.networks import make_policy, mlp
from stochgrad.baselines import (
    Baseline,
    GroupNormalizedBaseline,
    gae,
    resolve_baseline,
    reward_to_go,
)
from stochgrad.surrogate import Surrogate, surrogate_loss

__all__ = [
    "ADVANTAGE_BASELINES",
    "ALGOS",
    "SNR_BATCHES",
    "TARGET_WINDOW",
    "Config",
    "History",
    "TargetReached",
    "Trainer",
    "default_config",
]


#: The policy-gradient algorithms of :func:`train`.
ALGOS = ("reinforce", "trpo")
#: The names :class:`Config` accepts as ``baseline`` (the advantage estimate).
ADVANTAGE_BASELINES = ("none", "mean", "value", "gae")
#: Batch means of the gradient diagnostic (:meth:`Trainer.update`).
SNR_BATCHES = 8
#: Added to the standard deviation by ``normalize_advantages``.
NORMALIZE_EPS = 1e-8
#: Finished episodes whose mean return is compared with ``Config.target_return`` (gymnasium's
#: "solved" rule: the average over 100 consecutive episodes).
TARGET_WINDOW = 100


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    r"""Settings of one training run (all but ``threads``, ``snr_every`` and ``target_return``
    must match on resume).

    Defaults are for REINFORCE; :func:`default_config` gives TRPO the sb3-contrib CartPole
    zoo settings (2 envs, 512 steps, lambda 0.98, cg_damping 1e-3, 20 critic updates).

    Attributes:
        env_id: a gymnasium id with flat ``Box`` observations.
        algo: ``"reinforce"`` or ``"trpo"`` (:data:`ALGOS`).
        seed: seeds environments, action sampling and initialisation.
        num_envs, n_steps: the rollout of one update is ``n_steps`` steps of each of
            ``num_envs`` environments.
        baseline: the advantage: ``none`` (the reward-to-go), ``mean`` (the reward-to-go minus
            the batch mean, the rule ``"mean"`` of :mod:`stochgrad.baselines`), ``value`` (GAE
            with lambda 1 on the critic's values: the bootstrapped reward-to-go minus
            :math:`V_\phi(s_t)`) or ``gae`` (``gae_lambda``); TRPO needs ``value`` or ``gae``.
        normalize_advantages: standardise the advantages over the batch (the rule ``"grpo"``
            of :mod:`stochgrad.baselines` with one group, the batch, and ``eps`` 1e-8; biased,
            as every batch standardisation, and customary).
        lr, max_grad_norm: Adam step and gradient-norm clip of the REINFORCE policy update
            (one step per rollout).
        value_lr, value_iters, value_batch: the critic's Adam learning rate, epochs per
            rollout and minibatch size (None: one full-batch step per epoch).
        target_kl, cg_damping, cg_iters, line_search_steps, line_search_shrink: TRPO.
        threads: torch threads during :func:`train` (restored afterwards).
        snr_every: updates between the policy gradient's signal-to-noise diagnostics
            (``grad_snr``, :meth:`Trainer.update`; the first update has one; 0: none). It
            changes no number of the run, so, like ``threads``, it may differ on resume.
        target_return: stop training once the mean return of the last :data:`TARGET_WINDOW`
            (100) finished episodes is at least this (:meth:`Trainer.reached_target`, checked
            after every update; fewer than 100 episodes never count); ``None``: train for all
            the steps asked. Like the number of steps it says when to stop, not how to train,
            so it may differ on resume; :meth:`History.target_reached` finds the update that
            first reached it.

    Raises:
        TypeError, ValueError: a setting of the wrong type or out of range, named.
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
    snr_every: int = 8
    target_return: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id must be a gymnasium id (str), got {self.env_id!r}")
        check_choice("algo", self.algo, ALGOS)
        check_choice("baseline", self.baseline, ADVANTAGE_BASELINES)
        check_seed("seed", self.seed)
        for name in ("num_envs", "n_steps", "hidden", "value_iters", "cg_iters",
                     "line_search_steps", "threads"):  # fmt: skip
            check_int(name, getattr(self, name), minimum=1)
        check_probability("gamma", self.gamma)
        check_probability("gae_lambda", self.gae_lambda)
        check_int("snr_every", self.snr_every, minimum=0)
        if self.target_return is not None:
            self.target_return = check_float("target_return", self.target_return)
        if self.value_batch is not None:
            check_int("value_batch", self.value_batch, minimum=1)
        for name in ("lr", "value_lr", "target_kl", "max_grad_norm"):
            check_float(name, getattr(self, name), minimum=0.0, open_min=True)
        check_float("entropy_coef", self.entropy_coef)
        check_float("cg_damping", self.cg_damping, minimum=0.0)
        check_probability("line_search_shrink", self.line_search_shrink, open_low=True,
                          open_high=True)  # fmt: skip
        if not isinstance(self.normalize_advantages, bool):
            raise TypeError(
                f"normalize_advantages must be a bool, got {self.normalize_advantages!r}"
            )
        if self.algo == "trpo" and self.baseline in ("none", "mean"):
            raise ValueError(f"baseline must be 'value' or 'gae' for TRPO, got {self.baseline!r}")
        if self.baseline == "mean" and self.batch < 2:
            raise ValueError(
                "baseline 'mean' needs num_envs * n_steps >= 2 (a batch mean of other steps)"
            )

    def advantage_rule(self) -> Baseline:
        """The advantage rule of :mod:`stochgrad.baselines` applied to the batch's returns or
        critic advantages: the batch standardisation (``normalize_advantages``), else the batch
        mean (``baseline="mean"``) or none."""
        if self.normalize_advantages and self.batch > 1:
            return GroupNormalizedBaseline(scale=True, eps=NORMALIZE_EPS)
        return resolve_baseline("mean" if self.baseline == "mean" else None)

    @property
    def batch(self) -> int:
        """Environment steps per update."""
        return self.num_envs * self.n_steps


def default_config(env_id: str, algo: str, seed: int = 0, **overrides: Any) -> Config:
    """The default :class:`Config` of ``algo`` on ``env_id`` with ``overrides`` applied.

    >>> default_config("CartPole-v1", "trpo").gae_lambda
    0.98
    """
    check_choice("algo", algo, ALGOS)
    if algo == "trpo":
        base: dict[str, Any] = dict(
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


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetReached:
    """When a run first reached a target return (:meth:`History.target_reached`).

    Attributes:
        env_steps: environment steps (all environments) after the update that reached it.
        updates: updates done by then (that one included).
        episodes: episodes finished by then.
        mean_return: the mean return of the last 100 of them.
    """

    env_steps: int
    updates: int
    episodes: int
    mean_return: float


@dataclass
class History:
    """What a run has produced so far (plain lists, saved in checkpoints).

    Attributes:
        episode_returns, episode_lengths: of every finished episode, in order of finishing.
        episode_end_steps: total environment steps (all envs) when each episode finished.
        update_steps: total environment steps after each update.
        update_mean100: mean return of the last 100 finished episodes after each update.
        update_wall: seconds of training (rollouts and updates) after each update.
        update_stats: per update, e.g. ``policy_loss``, ``entropy``, ``value_loss``,
            ``grad_snr`` (see :meth:`Trainer.update`); for TRPO ``kl``, ``accepted``,
            ``step_fraction``, ``num_backtracks``, ``loss_old/new``.
    """

    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    update_steps: list[int] = field(default_factory=list)
    update_mean100: list[float] = field(default_factory=list)
    update_wall: list[float] = field(default_factory=list)
    update_stats: list[dict[str, float]] = field(default_factory=list)

    def target_reached(self, target: float, window: int = TARGET_WINDOW) -> TargetReached | None:
        """The first update after which the last ``window`` finished episodes averaged at least
        ``target`` (with at least ``window`` episodes finished), or ``None``.

        This is the rule of ``Config.target_return``: a run given that target stops at this
        update.

        >>> h = History(episode_returns=[1.0, 3.0, 5.0], episode_end_steps=[4, 8, 16],
        ...             update_steps=[8, 16], update_mean100=[2.0, 3.0])
        >>> h.target_reached(2.5, window=2)
        TargetReached(env_steps=16, updates=2, episodes=3, mean_return=4.0)
        >>> h.target_reached(4.5, window=2) is None
        True
        """
        target = check_float("target", target)
        window = check_int("window", window, minimum=1)
        returns = np.asarray(self.episode_returns, dtype=np.float64)
        # episodes finished by the end of each update (their end steps never decrease)
        done = np.searchsorted(np.asarray(self.episode_end_steps), self.update_steps, "right")
        for u in np.flatnonzero(done >= window):
            n = int(done[u])
            mean = float(np.mean(returns[n - window : n]))  # as Trainer.mean_return computes it
            if mean >= target:
                return TargetReached(int(self.update_steps[u]), int(u) + 1, n, mean)
        return None


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
        self.rule = c.advantage_rule()
        self.reset_seeds = [c.seed + i for i in range(c.num_envs)]
        obs, _ = self.envs.reset(seed=self.reset_seeds)
        self.obs = torch.as_tensor(obs, dtype=torch.float32)
        self.env_actions: list[np.ndarray] = []  # per rollout, [n_steps, num_envs, ...]
        self.ep_return = np.zeros(c.num_envs, dtype=np.float64)
        self.ep_length = np.zeros(c.num_envs, dtype=np.int64)
        self.env_steps = 0
        self.updates = 0
        self.wall = 0.0
        self.history = History()

    # -- rollout ----------------------------------------------------------------------------
    def _rollout(self) -> dict[str, torch.Tensor]:
        T, N = self.config.n_steps, self.config.num_envs
        # numpy buffers, one tensor each at the end (the same float32 values as tensor buffers)
        obs_buf = np.empty((T, N, self.obs.shape[-1]), dtype=np.float32)
        next_obs_buf = np.empty_like(obs_buf)
        acts = []
        rew = np.empty((T, N), dtype=np.float32)
        term = np.empty((T, N), dtype=bool)
        done = np.empty((T, N), dtype=bool)
        h = self.history
        sent_buf: list[np.ndarray] = []
        for t in range(T):
            obs_buf[t] = self.obs.numpy()
            with torch.no_grad():
                action = self.policy.sample(self.obs, self.generator)
            acts.append(action)
            sent = env_action(self.policy, action, self.envs)
            sent_buf.append(sent)
            obs, r, te, tr, info = self.envs.step(sent)
            d = np.logical_or(te, tr)
            next_obs_buf[t] = obs
            if d.any():
                for i in np.flatnonzero(d):
                    next_obs_buf[t, i] = info["final_obs"][i]
            rew[t] = r
            term[t] = te
            done[t] = d
            self.ep_return += r
            self.ep_length += 1
            self.env_steps += N
            for i in np.flatnonzero(d):
                h.episode_returns.append(float(self.ep_return[i]))
                h.episode_lengths.append(int(self.ep_length[i]))
                h.episode_end_steps.append(int(self.env_steps - N + i + 1))
                self.ep_return[i] = 0.0
                self.ep_length[i] = 0
            self.obs = torch.as_tensor(obs, dtype=torch.float32)
        self.env_actions.append(np.stack(sent_buf))
        return dict(
            obs=torch.from_numpy(obs_buf),
            next_obs=torch.from_numpy(next_obs_buf),
            actions=torch.stack(acts),
            rewards=torch.from_numpy(rew),
            terminated=torch.from_numpy(term),
            dones=torch.from_numpy(done),
        )

    def _advantages(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(returns or critic advantages, value targets) of a rollout, both ``[T, N]``.

        ``none``/``mean``: the reward-to-go within each episode
        (:func:`stochgrad.baselines.reward_to_go`), an episode still running at the end of the
        rollout truncated. ``value``/``gae``: :func:`stochgrad.baselines.gae` on the critic's
        values, every episode ended at the rollout's end, and one cut by a time limit or by
        the rollout's end bootstrapped with :math:`V_\phi` of its next state by adding
        :math:`\gamma V_\phi(s'_t)` to its last reward (a true termination is not).
        """
        c = self.config
        rewards, dones = b["rewards"], b["dones"]
        if c.baseline in ("none", "mean"):
            ret = reward_to_go(rewards, c.gamma, dones)
            return ret, ret
        with torch.no_grad():
            v = self.value(b["obs"]).squeeze(-1)
            nv = self.value(b["next_obs"]).squeeze(-1)
        ends = dones.clone()
        ends[-1] = True  # the rollout ends every episode; those still running are bootstrapped
        cut = ends & ~b["terminated"]
        rewards = rewards + c.gamma * torch.where(cut, nv, torch.zeros_like(nv))
        lam = 1.0 if c.baseline == "value" else c.gae_lambda
        return gae(rewards, v, c.gamma, lam, ends)

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
        r"""One rollout and one policy update; returns this update's statistics.

        The policy gradient is :func:`stochgrad.surrogate.surrogate_loss` of the steps' log-
        probabilities, the returns or critic advantages of :meth:`_advantages` and the
        advantage rule of :meth:`Config.advantage_rule`. ``grad_snr`` in the statistics (of
        every ``snr_every``-th update, :class:`Config`) is that gradient's signal-to-noise
        ratio :math:`\lVert\hat g\rVert / \lVert
        \mathrm{se}(\hat g)\rVert` (:meth:`~stochgrad.gradient_estimate.GradientEstimate.
        snr_of_mean`), from :data:`SNR_BATCHES` batch means (one batched backward pass of 8
        rows): the steps are ordered environment by environment, so with 8 environments each
        batch is one environment's rollout (independent of the others); with fewer, the
        batches split an environment's rollout in consecutive pieces, whose correlation (an
        episode across two pieces) the ratio ignores. Below about 1 the step is mostly noise.
        It costs about an eighth of a REINFORCE update on CartPole (8 x 64 steps: 4 ms of
        34 ms, measured), hence every 8th update by default.
        """
        c = self.config
        start = time.perf_counter()
        b = self._rollout()
        values, targets = self._advantages(b)
        # environment-major: the batch means of the diagnostic are whole environments
        obs = b["obs"].transpose(0, 1).reshape(-1, b["obs"].shape[-1])
        actions = b["actions"].transpose(0, 1).reshape(-1, *b["actions"].shape[2:])
        values, targets = values.T.reshape(-1), targets.T.reshape(-1)
        if c.algo == "trpo":
            stats = self._trpo_step(obs, actions, values)
        else:
            dist = self.policy.dist(obs)
            s = surrogate_loss(dist.log_prob(actions), values, advantage=self.rule, maximize=True)
            snr = self._snr(s)
            entropy = dist.entropy().mean()
            loss = s.loss - c.entropy_coef * entropy if c.entropy_coef else s.loss
            self.policy_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
            self.policy_opt.step()
            stats = {"policy_loss": float(loss.detach()), "entropy": float(entropy.detach())}
            if snr is not None:
                stats["grad_snr"] = snr
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

    def _snr(self, s: Surrogate) -> float | None:
        """The signal-to-noise ratio of the policy gradient of ``s`` (before its backward), or
        None when this update has no diagnostic."""
        every, n = self.config.snr_every, s.coefficients.shape[0]
        if not every or self.updates % every or n < 2:
            return None
        est = s.estimate(list(self.policy.parameters()), batches=min(SNR_BATCHES, n))
        return est.snr_of_mean()

    def mean_return(self, last: int = 100) -> float:
        """Mean episodic return of the last ``last`` finished episodes (nan before the first)."""
        r = self.history.episode_returns[-last:]
        return float(np.mean(r)) if r else float("nan")

    def reached_target(self) -> bool:
        """Whether ``config.target_return`` is set and the last :data:`TARGET_WINDOW` finished
        episodes average at least it (at least that many finished): the run stops here."""
        target = self.config.target_return
        if target is None or len(self.history.episode_returns) < TARGET_WINDOW:
            return False
        return self.mean_return(TARGET_WINDOW) >= target

    # -- TRPO -------------------------------------------------------------------------------
    def _trpo_step(self, obs: torch.Tensor, actions: torch.Tensor, values: torch.Tensor) -> dict:
        r"""One TRPO policy step (Schulman et al. 2015): maximise
        :math:`L(\theta) = \mathbb E[\rho_\theta\, \hat A]`, :math:`\rho_\theta =
        \pi_\theta(a|s)/\pi_{\text{old}}(a|s)`, subject to
        :math:`\overline{KL}(\pi_{\text{old}} \| \pi_\theta) \le` ``target_kl``, with the
        KL-Hessian Fisher-vector product, conjugate gradient and backtracking of
        :mod:`stochgrad.natural`.

        The surrogate is :func:`stochgrad.surrogate.surrogate_loss` with the importance weights
        :math:`\rho` (detached): its gradient :math:`\frac1n\sum_i \rho_i \hat A_i
        \nabla\log\pi_\theta(a_i|s_i) = \nabla L`, and the mean of its coefficients
        :math:`\rho_i \hat A_i` is :math:`L` itself, the value the line search compares."""
        from stochgrad import natural

        c = self.config
        params = list(self.policy.parameters())
        theta0 = natural.flat_params(params)
        with torch.no_grad():
            old_dist = self.policy.dist(obs)
            old_logp = old_dist.log_prob(actions)

        logp = self.policy.dist(obs).log_prob(actions)
        s = surrogate_loss(
            logp,
            values,
            advantage=self.rule,
            weights=torch.exp(logp.detach() - old_logp),  # 1 here; the form for any theta
            maximize=True,
        )
        adv = s.advantages
        snr = self._snr(s)
        grad = natural.flat_grad(s.loss, params)

        def loss_at(theta: torch.Tensor) -> torch.Tensor:
            natural.set_flat_params(params, theta)
            lp = self.policy.dist(obs).log_prob(actions)
            ratio = torch.exp(lp - old_logp)
            if not bool(torch.isfinite(ratio).all() and (ratio > 0).any()):
                return torch.tensor(float("inf"))  # a step this far is rejected
            return -surrogate_loss(lp, adv, weights=ratio).coefficients.mean()

        def kl_at(theta: torch.Tensor) -> torch.Tensor:
            natural.set_flat_params(params, theta)
            return torch.distributions.kl_divergence(old_dist, self.policy.dist(obs)).mean()

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
        stats = dict({k: float(info[k]) for k in keys}, entropy=entropy)
        if snr is not None:
            stats["grad_snr"] = snr
        return stats

    # -- checkpoints ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as tensors and plain values (see
        :meth:`load_state`); the environments are represented by the actions sent to them."""
        if self.env_actions:
            actions = torch.from_numpy(np.concatenate(self.env_actions))
        else:
            space = self.envs.single_action_space
            actions = torch.zeros((0, self.config.num_envs, *space.shape))
        return {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "policy_opt": self.policy_opt.state_dict(),
            "value_opt": self.value_opt.state_dict(),
            "generator": self.generator.get_state(),
            "env_actions": actions,
            "obs": self.obs.clone(),
            "ep_return": torch.as_tensor(self.ep_return),
            "ep_length": torch.as_tensor(self.ep_length),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall": self.wall,
            "history": asdict(self.history),
        }

    def load_state(self, state: dict[str, Any], *, restore_envs: bool = True) -> None:
        """Restore :meth:`state`.

        With ``restore_envs`` the environments are rebuilt from their seeds and the recorded
        actions replayed (nothing is unpickled); a replay that does not end in the saved
        observations raises ``ValueError`` (a file from another gymnasium version, say).
        """
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.generator.set_state(state["generator"])
        actions = state["env_actions"].numpy()
        obs = torch.as_tensor(state["obs"], dtype=torch.float32)
        if restore_envs:
            final = replay(self.envs, self.reset_seeds, actions)
            if not torch.equal(torch.as_tensor(final, dtype=torch.float32), obs):
                raise ValueError(
                    f"the environments did not replay to the saved state after "
                    f"{actions.shape[0]} steps (another gymnasium version?)"
                )
        self.env_actions = [actions.copy()] if actions.shape[0] else []
        self.obs = obs.clone()
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self.wall = float(state["wall"])
        self.history = History(**state["history"])
