r"""Policy gradients on a small tabular MDP, where the exact gradient is a linear solve.

A finite MDP with states :math:`S`, actions :math:`A`, transition kernel :math:`P(s'|s,a)`,
expected reward :math:`r(s,a)`, start distribution :math:`\rho_0` and discount
:math:`\gamma \in [0, 1)`, with the softmax policy :math:`\pi_\theta(a|s) \propto
\exp\theta_{sa}` (a logits table :math:`\theta \in \mathbb{R}^{S\times A}`). The objective is

.. math::

    J(\theta) = \mathbb{E}\Big[\sum_{t\ge0}\gamma^t r(s_t,a_t)\Big] = \rho_0^\top V^\pi,
    \qquad (I - \gamma P_\pi) V^\pi = r_\pi,\quad Q^\pi = r + \gamma P V^\pi,

and the policy-gradient theorem gives it exactly,

.. math::

    \nabla_\theta J = \sum_s d^\pi(s) \sum_a \nabla_\theta \pi(a|s)\, Q^\pi(s,a),
    \qquad d^\pi = \rho_0^\top (I - \gamma P_\pi)^{-1},

with :math:`d^\pi` the *unnormalised* discounted visitation (it sums to :math:`1/(1-\gamma)`;
the normalised :math:`(1-\gamma)d^\pi` is a distribution). For the softmax,
:math:`\partial J/\partial\theta_{sa} = d^\pi(s)\,\pi(a|s)\,(Q^\pi(s,a) - V^\pi(s))`.

:func:`reinforce` estimates the same gradient from sampled trajectories, all simulated at once,
through the engine (:func:`stochgrad.surrogate.surrogate_loss` and the advantage rules of
:mod:`stochgrad.baselines`), which makes the MDP an exact check of those rules.

References:
    Sutton, McAllester, Singh, Mansour (2000), "Policy gradient methods for reinforcement
    learning with function approximation"; Williams (1992), "Simple statistical
    gradient-following algorithms for connectionist reinforcement learning".
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad._compat import moved_attribute
from stochgrad._core import make_generator
from stochgrad.baselines import Baseline, OptimalBaseline, resolve_baseline
from stochgrad.baselines import gae as _gae
from stochgrad.baselines import reward_to_go as _reward_to_go
from stochgrad.gradient_estimate import GradientEstimate, warn_single_sample
from stochgrad.surrogate import per_sample_gradients, surrogate_loss

__all__ = [
    "REINFORCE_BASELINES",
    "TabularMDP",
    "default_horizon",
    "discounted_visitation",
    "exact_policy_gradient",
    "objective",
    "policy_evaluation",
    "reinforce",
    "softmax_policy",
]

DTYPE = torch.float64
#: The baselines :func:`reinforce` accepts by name (also a number or a ``Baseline`` object):
#: the rules of :mod:`stochgrad.baselines` and ``"value"`` (the exact critic); ``"mean"``, the
#: old name of ``"loo"``, is accepted with a ``DeprecationWarning``.
REINFORCE_BASELINES = ("none", "loo", "optimal", "value", "batch_mean", "grpo", "grpo_unscaled")

#: Names that were renamed: old name -> (module, new name).
_MOVED = {"BASELINES": (__name__, "REINFORCE_BASELINES")}


def __getattr__(name: str):
    return moved_attribute(__name__, name, _MOVED)


@dataclass(frozen=True)
class TabularMDP:
    r"""A finite discounted MDP: transitions ``[S, A, S]``, rewards ``[S, A]``, start ``[S]``.

    Args:
        transitions: :math:`P(s'|s,a)`, ``[S, A, S]``, rows non-negative and summing to one.
        rewards: the expected reward :math:`r(s,a)`, ``[S, A]`` (the simulator pays it
            deterministically).
        initial: the start distribution :math:`\rho_0`, ``[S]``.
        gamma: the discount, in ``[0, 1)``.

    >>> mdp = TabularMDP.random(num_states=3, num_actions=2, gamma=0.9, seed=0)
    >>> mdp.num_states, mdp.num_actions, mdp.transitions.shape
    (3, 2, torch.Size([3, 2, 3]))
    """

    transitions: Tensor
    rewards: Tensor
    initial: Tensor
    gamma: float

    def __post_init__(self) -> None:
        P = _as_table("transitions", self.transitions)
        R = _as_table("rewards", self.rewards)
        rho = _as_table("initial", self.initial)
        if P.dim() != 3 or P.shape[0] != P.shape[2] or P.shape[0] < 1 or P.shape[1] < 1:
            raise ValueError(f"transitions must have shape [S, A, S], got {list(P.shape)}")
        S, A = P.shape[0], P.shape[1]
        if not _is_distribution(P):
            raise ValueError("transitions must be non-negative with rows P[s, a, :] summing to 1")
        if R.shape != (S, A) or not bool(torch.isfinite(R).all()):
            raise ValueError(f"rewards must be finite with shape [{S}, {A}], got {list(R.shape)}")
        if rho.shape != (S,) or not _is_distribution(rho):
            raise ValueError(f"initial must be a probability vector of shape [{S}]")
        g = check_float("gamma", self.gamma, minimum=0.0, maximum=1.0, open_max=True)
        object.__setattr__(self, "transitions", P)
        object.__setattr__(self, "rewards", R)
        object.__setattr__(self, "initial", rho)
        object.__setattr__(self, "gamma", float(g))

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.transitions.shape[1])

    @classmethod
    def random(
        cls, num_states: int = 4, num_actions: int = 3, gamma: float = 0.9, *, seed: int = 0
    ) -> TabularMDP:
        """A random MDP: Dirichlet(1) transition rows and start, rewards uniform on [0, 1]."""
        for name, v in (("num_states", num_states), ("num_actions", num_actions)):
            check_int(name, v, minimum=1)
        g = torch.Generator().manual_seed(check_seed("seed", seed))
        S, A = int(num_states), int(num_actions)
        P = -torch.rand(S, A, S, generator=g, dtype=DTYPE).log()  # Exp(1), normalised: Dirichlet
        rho = -torch.rand(S, generator=g, dtype=DTYPE).log()
        R = torch.rand(S, A, generator=g, dtype=DTYPE)
        return cls(P / P.sum(-1, keepdim=True), R, rho / rho.sum(), gamma)


def _as_table(name: str, value) -> Tensor:
    """``value`` as a float64 CPU tensor; ``TypeError`` naming ``name`` for anything but real
    numbers on the CPU (the MDP is simulated with numpy)."""
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
        if value.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got a tensor on {value.device}")
    try:
        out = torch.as_tensor(value, dtype=DTYPE)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be a tensor of real numbers, got {type(value).__name__}"
        ) from exc
    return out


def _is_distribution(p: Tensor) -> bool:
    return bool(
        torch.isfinite(p).all()
        and (p >= 0).all()
        and torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-8)
    )


#: The most steps :func:`reinforce` simulates in one call (``num_trajectories * horizon``):
#: states, actions, rewards and returns take about 100 bytes per step.
MAX_STEPS = 2**25


def _check_theta(mdp: TabularMDP, theta) -> Tensor:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    if not isinstance(theta, Tensor):
        raise TypeError(f"theta must be a tensor of logits [S, A], got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(
            f"theta must be a floating-point tensor of logits [S, A], got {theta.dtype}"
        )
    if theta.device.type != "cpu":
        raise ValueError(f"theta must be on the CPU like the MDP, got a tensor on {theta.device}")
    if theta.shape != (mdp.num_states, mdp.num_actions):
        raise ValueError(
            f"theta must have shape [{mdp.num_states}, {mdp.num_actions}] ([S, A]), got "
            f"{list(theta.shape)}"
        )
    if not bool(torch.isfinite(theta.detach()).all()):
        raise ValueError("theta must be finite")
    return theta.to(DTYPE)


def softmax_policy(theta: Tensor) -> Tensor:
    r"""The policy table :math:`\pi(a|s) = \exp\theta_{sa} / \sum_b \exp\theta_{sb}`, ``[S, A]``.

    >>> softmax_policy(torch.zeros(2, 2))
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    """
    return torch.softmax(theta, dim=-1)


def policy_evaluation(mdp: TabularMDP, theta: Tensor) -> tuple[Tensor, Tensor]:
    r"""Exact :math:`V^\pi` ``[S]`` and :math:`Q^\pi` ``[S, A]`` by one linear solve.

    .. math::

        (I - \gamma P_\pi) V = r_\pi, \quad P_\pi(s'|s) = \sum_a \pi(a|s) P(s'|s,a),\quad
        r_\pi(s) = \sum_a \pi(a|s) r(s,a), \quad Q = r + \gamma P V.

    Differentiable in ``theta`` (``torch.linalg.solve``).

    >>> mdp = TabularMDP.random(3, 2, gamma=0.5, seed=1)
    >>> V, Q = policy_evaluation(mdp, torch.zeros(3, 2, dtype=torch.float64))
    >>> bool(torch.allclose(V, (softmax_policy(torch.zeros(3, 2)).double() * Q).sum(-1)))
    True
    """
    th = _check_theta(mdp, theta)
    pi = softmax_policy(th)
    P_pi = torch.einsum("sa,sat->st", pi, mdp.transitions)
    r_pi = (pi * mdp.rewards).sum(-1)
    eye = torch.eye(mdp.num_states, dtype=DTYPE)
    V = torch.linalg.solve(eye - mdp.gamma * P_pi, r_pi)
    Q = mdp.rewards + mdp.gamma * torch.einsum("sat,t->sa", mdp.transitions, V)
    return V, Q


def discounted_visitation(mdp: TabularMDP, theta: Tensor) -> Tensor:
    r"""Unnormalised discounted state visitation :math:`d^\pi = \rho_0^\top (I-\gamma P_\pi)^{-1}`.

    :math:`d^\pi(s) = \sum_t \gamma^t \Pr(s_t = s)`, summing to :math:`1/(1-\gamma)`.

    >>> mdp = TabularMDP.random(3, 2, gamma=0.75, seed=1)
    >>> round(float(discounted_visitation(mdp, torch.zeros(3, 2)).sum()), 10)
    4.0
    """
    th = _check_theta(mdp, theta)
    P_pi = torch.einsum("sa,sat->st", softmax_policy(th), mdp.transitions)
    eye = torch.eye(mdp.num_states, dtype=DTYPE)
    return torch.linalg.solve((eye - mdp.gamma * P_pi).T, mdp.initial)


def objective(mdp: TabularMDP, theta: Tensor) -> Tensor:
    r"""The discounted return :math:`J(\theta) = \rho_0^\top V^\pi`, differentiable in ``theta``.

    >>> mdp = TabularMDP.random(3, 2, gamma=0.9, seed=0)
    >>> theta = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    >>> objective(mdp, theta).backward()
    >>> bool(torch.allclose(theta.grad, exact_policy_gradient(mdp, theta)))
    True
    """
    V, _ = policy_evaluation(mdp, theta)
    return mdp.initial @ V


def exact_policy_gradient(mdp: TabularMDP, theta: Tensor) -> Tensor:
    r"""The exact :math:`\nabla_\theta J` ``[S, A]`` by the policy-gradient theorem.

    .. math::

        \frac{\partial J}{\partial \theta_{sa}} = d^\pi(s)\,\pi(a|s)\,
        \big(Q^\pi(s,a) - V^\pi(s)\big),

    (the softmax form of :math:`\sum_s d^\pi(s) \sum_a \nabla\pi(a|s) Q^\pi(s,a)`), from two
    linear solves; no autograd.

    >>> mdp = TabularMDP.random(3, 2, gamma=0.9, seed=0)
    >>> g = exact_policy_gradient(mdp, torch.zeros(3, 2))
    >>> g.shape, bool(g.sum(-1).abs().max() < 1e-12)  # softmax: each row sums to 0
    (torch.Size([3, 2]), True)

    Reference: Sutton et al. (2000), Theorem 1.
    """
    th = _check_theta(mdp, theta).detach()
    with torch.no_grad():
        V, Q = policy_evaluation(mdp, th)
        d = discounted_visitation(mdp, th)
        pi = softmax_policy(th)
        grad = d[:, None] * pi * (Q - V[:, None])
    return grad


def default_horizon(mdp: TabularMDP, tol: float = 1e-10) -> int:
    r"""A truncation horizon :math:`H` whose tail :math:`\gamma^H \max|r| / (1-\gamma)` is below
    ``tol``.

    >>> default_horizon(TabularMDP.random(3, 2, gamma=0.5, seed=0), tol=1e-3) >= 10
    True
    """
    check_float("tol", tol, minimum=0.0, open_min=True)
    rmax = float(mdp.rewards.abs().max())
    if mdp.gamma == 0 or rmax == 0:
        return 1
    bound = tol * (1 - mdp.gamma) / rmax
    if bound >= 1:
        return 1
    return max(1, math.ceil(math.log(bound) / math.log(mdp.gamma)))


def _stacked_cdf(probs: Tensor) -> np.ndarray:
    """Rows of probabilities ``[R, K]`` as one increasing array ``r + cdf_r(k)``, ``[R * K]``.

    Drawing from row ``r`` with a uniform ``u`` is then one search of ``r + u`` in one sorted
    array (:func:`_draw`), for all trajectories at once whatever their rows.
    """
    rows = probs.shape[0]
    offsets = torch.arange(rows, dtype=DTYPE)[:, None]
    return (probs.cumsum(-1) + offsets).reshape(-1).numpy()


def _draw(stacked: np.ndarray, k: int, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse CDF per draw: the first bin of row ``rows[i]`` whose cumulative probability
    exceeds ``u[i]`` (the last bin if rounding leaves none)."""
    idx = np.searchsorted(stacked, rows + u, side="right") - rows * k
    return np.minimum(idx, k - 1)


def _rule(baseline) -> tuple[Baseline | None, str]:
    """The advantage rule of ``baseline`` and its name; ``None`` for ``"value"``."""
    if baseline is None:
        baseline = "none"
    if isinstance(baseline, str):
        if baseline == "mean":
            warnings.warn(
                "reinforce(baseline='mean') is the leave-one-out mean, now spelt 'loo' (the "
                "engine's 'mean' includes the sample itself and is biased: 'batch_mean' here); "
                "'mean' will mean the batch mean in the next release",
                DeprecationWarning,
                stacklevel=3,
            )
            baseline = "loo"
        check_choice("baseline", baseline, REINFORCE_BASELINES)
        if baseline == "value":
            return None, "value"
    rule = resolve_baseline(baseline)
    return rule, baseline if isinstance(baseline, str) else rule.name


def reinforce(
    mdp: TabularMDP,
    theta: Tensor,
    num_trajectories: int,
    *,
    horizon: int | None = None,
    baseline: str | float | Baseline | None = "none",
    reward_to_go: bool = True,
    group_size: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> GradientEstimate:
    r"""REINFORCE over ``num_trajectories`` trajectories simulated in parallel, through the engine.

    Trajectories are truncated at ``horizon`` :math:`H`; the estimate is unbiased for the
    truncated discounted objective :math:`J_H = \mathbb{E}[\sum_{t<H}\gamma^t r(s_t,a_t)]`,
    whose gap to :math:`J` is at most :math:`\gamma^H\max|r|/(1-\gamma)` (the default :math:`H`,
    :func:`default_horizon`, makes it below ``1e-10``). The per-trajectory term is

    .. math::

        \hat g_i = \sum_{t<H} \nabla_\theta\log\pi(a_t|s_t)\,A_t, \qquad
        A_t = G_t - b_t, \quad G_t = \sum_{t'=t}^{H-1} \gamma^{t'} r(s_{t'}, a_{t'})

    with ``reward_to_go`` (discounted from time 0: dropping the :math:`\gamma^t` would bias
    it), or, without, :math:`\hat g_i = (G_0 - b)\sum_t \nabla_\theta\log\pi(a_t|s_t)` (the
    score of the whole trajectory times its return).

    The gradient comes from :func:`stochgrad.surrogate.surrogate_loss` (one sample per step
    with ``reward_to_go``, one per trajectory without: the trajectory's log-probability is the
    sum over its actions), the returns from :func:`stochgrad.baselines.reward_to_go`, the
    advantage from a rule of :mod:`stochgrad.baselines` (``baseline``), applied across
    episodes: within groups of ``group_size`` consecutive episodes (all of them by default),
    and with ``reward_to_go`` also per time step (the baseline of :math:`G_t` is computed
    from the other episodes' :math:`G_t`). The per-trajectory terms :math:`\hat g_i` are
    :meth:`stochgrad.surrogate.Surrogate.estimate`'s (``N`` per-sample gradients: about 10 s
    for 20,000 trajectories), or, with ``reward_to_go``, :math:`\sum_t c_t
    \nabla_\theta\log\pi(a_t|s_t)` with the surrogate's coefficients :math:`c_t = A_t` and
    the scores of the :math:`S \times A` table entries from
    :func:`stochgrad.surrogate.per_sample_gradients`; their mean is :math:`H` times the gradient
    of the surrogate's (per-step mean) loss.

    Baselines: ``"none"``; a number :math:`c`; ``"loo"`` (the leave-one-out mean over the
    other episodes of the group; needs groups of at least 2); ``"optimal"`` (per-coordinate
    variance-minimising coefficient, leave-one-out; without ``reward_to_go`` only, since the
    steps of one trajectory are not independent samples); an
    :class:`~stochgrad.baselines.EMABaseline` object (the average of earlier calls' values;
    reuse it across calls; not within groups); ``"value"``, :math:`b_t = \gamma^t
    V^\pi(s_t)` with the exact :math:`V^\pi` (a perfect critic: the advantage is
    :func:`stochgrad.baselines.gae` with :math:`\lambda = 1` on its values; with
    ``reward_to_go`` only). These keep the estimate unbiased. Biased, for comparison:
    ``"batch_mean"`` (the group mean including the episode itself: :math:`(n_g-1)/n_g` times the
    gradient), ``"grpo"`` (divided by the group's standard deviation) and ``"grpo_unscaled"``.
    ``"mean"`` is the old name of ``"loo"`` (deprecated: it will mean ``"batch_mean"``).

    Random numbers, in order: ``rand(N)`` for :math:`s_0`, then for each :math:`t < H` one
    ``rand(N, 2)``, column 0 for :math:`a_t` and column 1 for :math:`s_{t+1}`, each turned
    into an index by the inverse CDF (first bin with cumulative probability above the draw).

    Args:
        mdp: the MDP.
        theta: policy logits ``[S, A]``.
        num_trajectories: :math:`N \ge 1` (``>= 2`` per group for the leave-one-out and group
            rules; with 1, ``variance`` and ``stderr`` are NaN and a
            :class:`~stochgrad.SingleSampleWarning` says so).
        horizon: :math:`H \ge 1`; default :func:`default_horizon`. At most
            :data:`MAX_STEPS` steps in all (``num_trajectories * horizon``).
        baseline: a name of :data:`REINFORCE_BASELINES`, a number, or a
            :class:`~stochgrad.baselines.Baseline` object.
        reward_to_go: credit each action with the rewards after it only (default), or the
            whole trajectory with its return.
        group_size: episodes per group of the advantage rule (it must divide
            ``num_trajectories``); ``None``: all of them.
        generator: the random generator (or give ``seed``).
        seed: shorthand for a fresh generator.

    Returns:
        :class:`~stochgrad.gradient_estimate.GradientEstimate` with ``per_sample`` ``[N, S, A]``
        (one term per trajectory), ``method="reinforce"``, ``biased`` from the rule, and
        ``info`` holding ``states``, ``actions`` ``[N, H]``, ``rewards`` ``[N, H]``,
        ``returns`` (:math:`G_0`, ``[N]``), ``horizon``, ``baseline``, ``reward_to_go``,
        ``group_size``, the ``surrogate`` (:class:`~stochgrad.surrogate.Surrogate`) and the
        ``logits`` it differentiates (a copy of ``theta``).

    Raises:
        ValueError, TypeError: a bad argument, named.

    >>> mdp = TabularMDP.random(3, 2, gamma=0.8, seed=0)
    >>> theta = torch.zeros(3, 2, dtype=torch.float64)
    >>> est = reinforce(mdp, theta, 4000, baseline="value", seed=0)
    >>> z = (est.grad - exact_policy_gradient(mdp, theta)) / est.stderr
    >>> est.per_sample.shape, bool(z.abs().max() < 5)
    (torch.Size([4000, 3, 2]), True)

    Reference: Williams (1992); Sutton et al. (2000).
    """
    th = _check_theta(mdp, theta).detach()
    N = check_int("num_trajectories", num_trajectories, minimum=1)
    rule, name = _rule(baseline)
    if not isinstance(reward_to_go, bool):
        raise TypeError(f"reward_to_go must be a bool, got {type(reward_to_go).__name__}")
    if group_size is not None:
        group_size = check_int("group_size", group_size, minimum=1)
        if N % group_size:
            raise ValueError(f"group_size must divide num_trajectories = {N}, got {group_size}")
    size = N if group_size is None else group_size
    if rule is not None and rule.min_samples > size:
        raise ValueError(
            f"num_trajectories must be >= {rule.min_samples} per group with baseline {name!r} "
            f"(a mean over the other episodes), got {size}"
        )
    if not reward_to_go and rule is None:
        raise ValueError("baseline 'value' is a per-step baseline: it needs reward_to_go=True")
    if reward_to_go and isinstance(rule, OptimalBaseline):
        raise ValueError(
            "baseline 'optimal' needs reward_to_go=False: its leave-one-out coefficient would "
            "use the other steps of the same trajectory, which depend on the action"
        )
    if group_size is not None and rule is not None and not rule.grouped:
        raise ValueError(f"baseline {name!r} does not work within groups; drop group_size")
    H = default_horizon(mdp) if horizon is None else check_int("horizon", horizon, minimum=1)
    if N * H > MAX_STEPS:
        raise ValueError(
            f"num_trajectories * horizon = {N} * {H} steps exceeds the limit of {MAX_STEPS} "
            "simulated steps (about 100 bytes each); use fewer trajectories or a shorter horizon"
        )
    gen = make_generator(generator, seed)
    warn_single_sample("reinforce", N)  # one trajectory: no spread, variance and stderr NaN

    S, A, gamma = mdp.num_states, mdp.num_actions, mdp.gamma
    pi = softmax_policy(th)
    # numpy for the sequential part: one sorted-array search per draw, no per-draw gather
    cdf_pi = _stacked_cdf(pi)  # row s
    cdf_P = _stacked_cdf(mdp.transitions.reshape(S * A, S))  # row s * A + a
    states_np = np.empty((N, H), dtype=np.int64)
    actions_np = np.empty((N, H), dtype=np.int64)
    u0 = torch.rand(N, generator=gen, dtype=DTYPE).numpy()
    s = _draw(_stacked_cdf(mdp.initial[None]), S, np.zeros(N, dtype=np.int64), u0)
    for t in range(H):
        u = torch.rand(N, 2, generator=gen, dtype=DTYPE).numpy()
        a = _draw(cdf_pi, A, s, u[:, 0])
        states_np[:, t] = s
        actions_np[:, t] = a
        s = _draw(cdf_P, S, s * A + a, u[:, 1])
    states = torch.from_numpy(states_np)
    actions = torch.from_numpy(actions_np)
    rewards = mdp.rewards[states, actions]  # [N, H]
    discounts = gamma ** torch.arange(H, dtype=DTYPE)
    returns = _reward_to_go(rewards.T, gamma).T  # [N, H]: discounted from t

    leaf = th.clone().requires_grad_(True)
    log_pi = torch.log_softmax(leaf, -1).reshape(-1)  # [S * A]
    flat = states * A + actions  # [N, H]
    episode_group = torch.arange(N) // size  # [N]
    if reward_to_go:
        if rule is None:  # the exact critic: GAE(lambda = 1) on V(s_t)
            V, _ = policy_evaluation(mdp, th)
            values = discounts * _gae(rewards.T, V.detach()[states].T, gamma, 1.0)[0].T
        else:
            values = discounts * returns
        groups = None
        if rule is not None and rule.grouped:  # the episodes of a group at one time step
            groups = (episode_group[:, None] * H + torch.arange(H)).reshape(-1)
        sur = surrogate_loss(log_pi[flat.reshape(-1)], values.reshape(-1), advantage=rule,
                             groups=groups, params=leaf)  # fmt: skip
        # trajectory i's term sum_t c_it score(s_t, a_t) = W_i @ scores, W_i[s, a] the sum of
        # its coefficients at (s, a), scores[(s, a)] the gradient of log pi(a|s) (S * A rows)
        weights = torch.zeros(N, S * A, dtype=DTYPE)
        weights.scatter_add_(1, flat, sur.coefficients.reshape(N, H))
        scores = per_sample_gradients(log_pi, leaf)[0].reshape(S * A, S * A)
        per_sample = (weights @ scores).reshape(N, S, A)
        est = GradientEstimate.from_per_sample(
            per_sample, method="reinforce", biased=not sur.rule.unbiased
        )
    else:
        counts = torch.zeros(N, S * A, dtype=DTYPE)
        counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=DTYPE))
        groups = None if group_size is None else episode_group
        sur = surrogate_loss(counts @ log_pi, returns[:, 0],  # G_0, the discounted return
                             advantage=rule, groups=groups, params=leaf)  # fmt: skip
        if N > 1:
            est = sur.estimate(leaf, batches=N)
        else:  # one trajectory: its term, without a spread
            per = per_sample_gradients(sur.coefficients * sur.log_probs, leaf)[0]
            est = GradientEstimate.from_per_sample(per, method="reinforce")
    return dataclasses.replace(
        est,
        method="reinforce",
        evaluations=N * H,
        info={
            "states": states,
            "actions": actions,
            "rewards": rewards,
            "returns": returns[:, 0],
            "horizon": H,
            "baseline": name,
            "reward_to_go": reward_to_go,
            "group_size": group_size,
            "surrogate": sur,
            "logits": leaf,
        },
    )
