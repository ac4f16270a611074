r"""Multi-objective RL on Deep Sea Treasure by linear scalarisation and the score function.

For each weight :math:`w` the scalarised MDP of Deep Sea Treasure
(:mod:`stochgrad.apps.rl.deep_sea`: the environment, its exact model, the front, hypervolume)
has reward :math:`w r_0 + (1 - w) r_1`. :func:`train_reinforce` learns it by REINFORCE with a
baseline (Williams 1992, Sutton & Barto 2018, sec. 13.4) on a tabular softmax policy
:math:`\pi_\theta(a \mid s) \propto e^{\theta_{s,a}}`, all weights at once. The estimator is the
score function of the trajectory distribution,

.. math::

    \nabla_\theta J = \mathbb E\Big[\sum_t \gamma^t\,(G_t - b(s_t))\,
    \nabla_\theta \log \pi_\theta(a_t \mid s_t)\Big], \qquad
    G_t = \sum_{k \ge t} \gamma^{k - t} r_k,

with a tabular Monte-Carlo baseline :math:`b(s)` (a critic fitted to the returns). The gradient
is the engine's: :func:`stochgrad.baselines.gae` with :math:`\lambda = 1` on the critic's values
gives :math:`G_t - b(s_t)` (and, as its returns, :math:`G_t`), and
:func:`stochgrad.surrogate.surrogate_loss` the loss. Episodes start in uniformly random sea cells
(a restart distribution with full support, Kakade & Langford 2002): from the single start cell,
the random walk finds the nearest treasure first and the gradient stays in that local optimum.

The names of :mod:`stochgrad.apps.rl.deep_sea` are importable from here too. The sweep over
weights and seeds, with the greedy policies rolled out in the environment and compared with the
true front, is :func:`stochgrad.studies.pareto.pareto_study` (``stochgrad rl pareto``).

References: Williams (1992), "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8; Kakade & Langford (ICML 2002),
"Approximately optimal approximate reinforcement learning".
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad import checkpoint as _ckpt
from stochgrad._checks import check_float, check_int, check_probability, check_seed
from stochgrad._compat import moved_attribute
from stochgrad.apps.rl._threads import torch_threads
from stochgrad.apps.rl.deep_sea import (
    ENV_ID,
    REFERENCE_POINT,
    DeepSeaMDP,
    check_gamma,
    check_mdp,
    check_weights,
    evaluate_in_env,
    front_matches,
    hypervolume_2d,
    make_env,
    parse_weights,
    supported_points,
    tabulate,
    true_front,
    value_iteration,
)
from stochgrad.baselines import gae
from stochgrad.surrogate import surrogate_loss

__all__ = [
    "ENV_ID",
    "REFERENCE_POINT",
    "DeepSeaMDP",
    "ReinforceConfig",
    "check_gamma",
    "check_weights",
    "evaluate_in_env",
    "front_matches",
    "hypervolume_2d",
    "make_env",
    "parse_weights",
    "supported_points",
    "tabulate",
    "train_reinforce",
    "true_front",
    "value_iteration",
]

#: What a training state of :func:`train_reinforce` says it is.
STATE_FORMAT = "stochgrad.rl.multi_objective/2"

#: Names that moved to the studies: old name -> (module, new name).
_MOVED = {
    "add_arguments": ("stochgrad.cli.rl", "add_pareto_arguments"),
    "run": ("stochgrad.cli.rl", "run_pareto"),
    "ParetoResult": ("stochgrad.studies.pareto", "ParetoResult"),
    "run_pareto": ("stochgrad.studies.pareto", "run_pareto"),
}


def __getattr__(name: str) -> Any:
    return moved_attribute(__name__, name, _MOVED)


@dataclass
class ReinforceConfig:
    """Hyper-parameters of :func:`train_reinforce`.

    Attributes:
        iterations: REINFORCE steps.
        batch: episodes per weight and iteration.
        lr: Adam's step size on the logits.
        baseline_lr: step of the tabular baseline towards the mean return per state, in (0, 1].
        horizon: the environment's time limit.
        restarts: independent policies per weight in the sweep; the best greedy one is kept.

    Raises:
        TypeError, ValueError: a setting of the wrong type or out of range, named.
    """

    iterations: int = 6000
    batch: int = 32
    lr: float = 0.1
    baseline_lr: float = 0.5
    horizon: int = 100
    restarts: int = 3

    def __post_init__(self) -> None:
        for name in ("iterations", "batch", "horizon", "restarts"):
            check_int(name, getattr(self, name), minimum=1)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_probability("baseline_lr", self.baseline_lr, open_low=True)


def train_reinforce(
    mdp: DeepSeaMDP,
    weights: Any,
    gamma: float,
    config: ReinforceConfig | None = None,
    *,
    seed: int = 0,
    callback: Callable[[int, np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    threads: int | None = 1,
) -> tuple[torch.Tensor, np.ndarray]:
    r"""Train one tabular softmax policy per weight by REINFORCE with a state baseline.

    Per iteration and weight, ``batch`` episodes from uniformly random sea cells are simulated on
    the tabular model (all weights in one batched tensor program); the surrogate

    .. math::

        L(\theta) = -\frac1B \sum_{b, t} \gamma^t\,(G_{b,t} - b(s_{b,t}))\,
                    \log \pi_\theta(a_{b,t} \mid s_{b,t})

    is differentiated (its gradient is the score-function estimate of :math:`-\nabla J`; the
    engine's :func:`~stochgrad.surrogate.surrogate_loss`, a mean over the ``K * B * T`` steps,
    times ``K * T``) and Adam takes a step; then
    :math:`b(s) \mathrel{+}= \beta\,(\bar G(s) - b(s))` for every
    visited state (:math:`\bar G(s)` the mean return-to-go from ``s`` in the batch).

    Args:
        mdp: the tabular model (:func:`~stochgrad.apps.rl.deep_sea.tabulate`).
        weights: ``K`` weights in ``[0, 1]`` on the treasure objective.
        gamma: discount in ``(0, 1]``.
        config: :class:`ReinforceConfig`.
        seed: seed of the torch generator (same seed, same numbers).
        callback: called after every iteration with (iteration, mean scalarised return from the
            random starts per weight, ``[K]``). A resumed run calls it for the iterations it
            loaded first, with their saved returns.
        progress: ``progress(n)``: ``n`` iterations done (1 per iteration, after its
            checkpoint when one is due; a resumed run first reports the iterations it loaded).
        checkpoint: ``.pt`` file. When it exists (written with the same weights, gamma, config
            and seed) training continues from it; the whole state (logits, baseline, Adam
            moments, random generator, learning curve) is rewritten atomically through
            :mod:`stochgrad.checkpoint` every ``checkpoint_every`` iterations and at the end, so
            a resumed run gives the numbers of an uninterrupted one, bit for bit.
        checkpoint_every: iterations between checkpoints (or calls of ``save``).
        state: a training state passed to ``save`` by an earlier call, to continue from
            (instead of ``checkpoint``; :func:`stochgrad.studies.scaffold.run_grid` keeps it).
        save: called with the training state (tensors and plain values) every
            ``checkpoint_every`` iterations and at the end (instead of ``checkpoint``).
        threads: torch threads while training (the caller's setting is restored afterwards;
            ``None`` leaves it alone). One is the fastest for these small tensor programs.

    Returns:
        ``(logits, curve)``: ``[K, S, A]`` trained logits and ``[iterations, K]`` mean
        scalarised returns of the training episodes.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint or state was made with other
            settings (named).
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.

    >>> logits, curve = train_reinforce(tabulate(), [0.0, 1.0], 0.99, ReinforceConfig(iterations=2))
    >>> tuple(logits.shape), curve.shape
    ((2, 62, 4), (2, 2))
    """
    check_mdp(mdp)
    w = check_weights(weights)
    gamma = check_gamma(gamma)
    cfg = ReinforceConfig() if config is None else config
    if not isinstance(cfg, ReinforceConfig):
        raise TypeError(f"config must be a ReinforceConfig, got {type(cfg).__name__}")
    seed = check_seed("seed", seed)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if checkpoint is not None and (state is not None or save is not None):
        raise ValueError("give checkpoint, or state and save, not both")
    where = "state"
    if checkpoint is not None:
        path = Path(checkpoint)
        where = str(path)
        state = _ckpt.load_state(path) if path.exists() else None

        def save(st: dict[str, Any]) -> None:
            _ckpt.save_state(st, path)

    settings = {"weights": w.tolist(), "gamma": float(gamma), "seed": int(seed)} | asdict(cfg)
    with torch_threads(threads):
        return _train(mdp, w, gamma, cfg, seed, settings, state, where, save,
                      checkpoint_every, callback, progress)  # fmt: skip


def _train(mdp, w, gamma, cfg, seed, settings, state, where, save, every, callback, progress):
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
    start = 0
    if state is not None:
        start = _load(state, where, settings, theta, base, opt, g, curve)
        if callback is not None:
            for it in range(start):
                callback(it, curve[it])
        if progress is not None and start:
            progress(start)

    def snapshot(done: int) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "settings": settings,
            "done": done,
            "theta": theta.detach().clone(),
            "base": base.clone(),
            "adam": copy.deepcopy(opt.state_dict()),  # a snapshot, not the live moments
            "generator": g.get_state(),
            "curve": torch.from_numpy(curve[:done].copy()),
        }

    # near-deterministic softmax rows give denormal Adam moments, which are very slow on CPUs
    flushing = torch.set_flush_denormal(True)
    try:
        for it in range(start, cfg.iterations):
            s = torch.randint(S, (K, B), generator=g)
            with torch.no_grad():
                probs = torch.softmax(theta, -1)
            states, actions, rewards, alive_t, ends_t = [], [], [], [], []
            alive = torch.ones(K, B, dtype=torch.bool)
            for _ in range(H):
                a = torch.multinomial(probs[kk, s].reshape(-1, A), 1, generator=g).reshape(K, B)
                states.append(s)
                actions.append(a)
                rewards.append(rew[kk, s, a] * alive)
                alive_t.append(alive)
                ends_t.append(alive & term[s, a])
                alive = alive & ~term[s, a]
                s = nxt[s, a]
                if not alive.any():
                    break
            T = len(states)
            st, ac = torch.stack(states, -1), torch.stack(actions, -1)  # [K, B, T]
            r, m = torch.stack(rewards, -1), torch.stack(alive_t, -1).double()
            ends = torch.stack(ends_t, -1)  # the step that reached a terminal state
            kidx = kk[..., None].expand(K, B, T)
            # the engine's advantage: GAE(lambda = 1) on the tabular critic's values, i.e. the
            # reward-to-go minus b(s_t); its returns are the reward-to-go (time first, [T, K*B])
            adv, G = gae(_time_first(r), _time_first(base[kidx, st]), gamma, 1.0, _time_first(ends))
            adv, G = _batch_first(adv, K, B), _batch_first(G, K, B)
            disc = gamma ** torch.arange(T, dtype=torch.float64)
            logp = torch.log_softmax(theta, -1)[kidx, st, ac]
            sur = surrogate_loss(logp.reshape(-1), (disc * adv * m).reshape(-1), maximize=True)
            loss = sur.loss * (K * T)  # the surrogate's mean over K * B * T steps: per weight,
            # the sum over steps and the mean over episodes, as before (Adam sees its scale)
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
            if save is not None and (done % every == 0 or done == cfg.iterations):
                save(snapshot(done))
            if callback is not None:
                callback(it, curve[it])
            if progress is not None:
                progress(1)
    finally:
        if flushing:
            torch.set_flush_denormal(False)
    return theta.detach(), curve


def _time_first(x: torch.Tensor) -> torch.Tensor:
    """``[K, B, T]`` -> ``[T, K * B]``."""
    return x.permute(2, 0, 1).reshape(x.shape[2], -1)


def _batch_first(x: torch.Tensor, K: int, B: int) -> torch.Tensor:
    """``[T, K * B]`` -> ``[K, B, T]``."""
    return x.reshape(-1, K, B).permute(1, 2, 0)


def _load(state, where, settings, theta, base, opt, g, curve) -> int:
    """Restore a state of :func:`train_reinforce` in place; return the iterations done."""
    if not isinstance(state, dict) or "settings" not in state:
        raise _ckpt.CheckpointError(
            f"{where}: not a multi-objective REINFORCE state; {_ckpt.RESTART_HINT}"
        )
    _ckpt.check_settings(state["settings"], settings, where)
    try:  # every field checked before anything is restored: copy_ would cast and broadcast
        t = _ckpt.saved_tensor(
            state, "theta", shape=tuple(theta.shape), dtype=theta.dtype, finite=True
        )
        b = _ckpt.saved_tensor(
            state, "base", shape=tuple(base.shape), dtype=base.dtype, finite=True
        )
        done = _ckpt.saved_int(state, "done", minimum=0, maximum=len(curve))
        c = _ckpt.saved_tensor(state, "curve", shape=(None, *curve.shape[1:]), finite=True)
        if c.shape[0] < done:
            raise ValueError(f"curve holds {c.shape[0]} iterations, not the {done} done")
        gen = _ckpt.saved_tensor(state, "generator", dtype=torch.uint8)
        adam = _ckpt.saved_value(state, "adam", dict)
        with torch.no_grad():
            theta.copy_(t)
        base.copy_(b)
        opt.load_state_dict(adam)
        g.set_state(gen)
        curve[:done] = c[:done].numpy()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _ckpt.CheckpointError(
            f"{where}: a REINFORCE state that cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); {_ckpt.RESTART_HINT}"
        ) from None
    return done


def _skip_examples_without_env() -> None:
    """Mark the examples that need mo-gymnasium as skipped when it is not installed."""
    import importlib.util
    import re

    if importlib.util.find_spec("mo_gymnasium") is not None:
        return
    if train_reinforce.__doc__:
        train_reinforce.__doc__ = re.sub(
            r"^(\s*>>> .*)$", r"\1  # doctest: +SKIP", train_reinforce.__doc__, flags=re.M
        )


_skip_examples_without_env()
