r"""Policy-gradient training on vectorised gymnasium environments: REINFORCE (and TRPO).

The score-function (REINFORCE) estimator of the policy gradient over rollouts of length
:math:`T` from :math:`N` environments,

.. math::

    \hat g = \frac{1}{NT} \sum_{n,t} \nabla_\theta \log \pi_\theta(a_{t,n} \mid s_{t,n})\,
        \hat A_{t,n}
        \;+\; \beta\, \nabla_\theta \frac{1}{NT}\sum_{n,t}
            \mathcal H[\pi_\theta(\cdot \mid s_{t,n})],

is the gradient of the engine's surrogate (:func:`stochgrad.surrogate.surrogate_loss`, one
sample per step), with the advantage :math:`\hat A` one of (``Config.baseline``):

* ``"none"``: the discounted reward-to-go :math:`G_t = \sum_{k \ge t} \gamma^{k-t} r_k`
  (within the episode; :func:`stochgrad.baselines.reward_to_go`);
* ``"mean"``: :math:`G_t - \bar G` (the batch mean, the rule ``"mean"`` of
  :mod:`stochgrad.baselines`);
* ``"value"``: :math:`G_t - V_\phi(s_t)` with an MLP :math:`V_\phi` regressed on :math:`G_t`
  (:func:`stochgrad.baselines.gae` with :math:`\lambda = 1` on the critic's values);
* ``"gae"``: GAE(:math:`\lambda`), :math:`\hat A_t = \sum_k (\gamma\lambda)^k \delta_{t+k}`,
  :math:`\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)` (:func:`stochgrad.baselines.gae`);
  :math:`V_\phi` regressed on :math:`\hat A_t + V(s_t)`.

Rollouts have fixed length; an episode still running at the end of a rollout (or cut by a time
limit) is bootstrapped with :math:`V_\phi` of its next state when a value function is learned
(``value``/``gae``), and simply truncated otherwise (``none``/``mean``: a small bias when
``n_steps`` is much longer than an episode). As usual in practice the :math:`\gamma^t` factor of
the exact discounted policy gradient is dropped. Advantages may be normalised to mean 0, sd 1
(the rule ``"grpo"`` of :mod:`stochgrad.baselines` over the batch). Every update records the
policy gradient's signal-to-noise ratio (``grad_snr`` in ``History.update_stats``,
:meth:`~stochgrad.apps.rl.gym_trainer.Trainer.update`).

TRPO takes the natural-gradient step of the surrogate :math:`L(\theta) = \mathbb E[\rho_t \hat
A_t]` (the engine's surrogate with the importance weights :math:`\rho_t =
\pi_\theta/\pi_{\text{old}}`) under :math:`\overline{KL}(\pi_{\text{old}} \| \pi_\theta)
\le \delta`, with Fisher-vector products of the KL Hessian, conjugate gradient and a
backtracking line search
(:func:`stochgrad.natural.kl_fvp`, :func:`~stochgrad.natural.trust_region_step`); the critic
is fitted afterwards, as in sb3-contrib's TRPO.

Randomness is explicit: environment ``i`` is reset once with seed ``seed + i`` (later resets
continue its own generator), action sampling uses a ``torch.Generator`` seeded with ``seed``
and network initialisation a forked global generator seeded with ``seed`` (the caller's
global RNG is left untouched). Checkpoints (:func:`save_checkpoint`, through
:mod:`stochgrad.checkpoint`: atomic, read back with ``weights_only=True``) hold the networks,
optimisers, generator, the current observations, the full history and every action sent to the
environments; the environments are not pickled but rebuilt from their seeds and the recorded
actions replayed (:func:`stochgrad.apps.rl.gym_envs.replay`), which restores their physical
state, time-limit counters and random generators exactly. A resumed run therefore repeats the
uninterrupted one bit for bit (same episode returns on the same machine and threads), and a
checkpoint file cannot run code. An interrupted run loses at most the updates since its last
checkpoint.

The pieces live in their own modules and are re-exported here:
:mod:`~stochgrad.apps.rl.networks` (policies),
:mod:`~stochgrad.apps.rl.gym_envs` (environments) and :mod:`~stochgrad.apps.rl.gym_trainer`
(:class:`Config`, :class:`Trainer`: one update). This module runs the trainer: :func:`train`
with checkpoints, :func:`evaluate`.

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8; Schulman, Levine, Moritz, Jordan, Abbeel
    (ICML 2015), "Trust region policy optimization"; Schulman, Moritz, Levine, Jordan, Abbeel
    (ICLR 2016), "High-dimensional continuous control using generalized advantage estimation".

>>> r = train("CartPole-v1", "reinforce", 64, num_envs=2, n_steps=32)
>>> r.trainer.env_steps, len(r.history.update_steps)
(64, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad import checkpoint as _ckpt
from stochgrad._checks import check_choice, check_int, check_seed
from stochgrad._compat import moved_attribute
from stochgrad.apps.rl import returns as _returns
from stochgrad.apps.rl._threads import torch_threads
from stochgrad.apps.rl.gym_envs import check_env_id, make_envs
from stochgrad.apps.rl.gym_trainer import (
    ADVANTAGE_BASELINES,
    ALGOS,
    SNR_BATCHES,
    Config,
    History,
    Trainer,
    default_config,
)
from stochgrad.apps.rl.networks import CategoricalPolicy, GaussianPolicy, make_policy, mlp

__all__ = [
    "ADVANTAGE_BASELINES",
    "ALGOS",
    "SNR_BATCHES",
    "CategoricalPolicy",
    "Config",
    "GaussianPolicy",
    "History",
    "TrainResult",
    "Trainer",
    "default_config",
    "evaluate",
    "load_checkpoint",
    "make_envs",
    "make_policy",
    "mlp",
    "save_checkpoint",
    "train",
]

#: Names that moved: old name -> (module, new name); see :func:`__getattr__`.
_MOVED = {
    "add_train_arguments": ("stochgrad.cli.rl", "add_train_arguments"),
    "run_train": ("stochgrad.cli.rl", "run_train"),
    "add_eval_arguments": ("stochgrad.cli.rl", "add_eval_arguments"),
    "run_eval": ("stochgrad.cli.rl", "run_eval"),
    "BASELINES": (__name__, "ADVANTAGE_BASELINES"),
    "plot_learning_curve": ("stochgrad.cli.rl", "plot_learning_curve"),
}

#: What a checkpoint written by :func:`save_checkpoint` says it is.
CHECKPOINT_FORMAT = "stochgrad.rl.policy_gradient/2"


def __getattr__(name: str) -> Any:
    if name in _returns.DEPRECATED:  # discounted_returns, gae_advantages, reinforce_loss
        return _returns.deprecated(__name__, name)
    return moved_attribute(__name__, name, _MOVED)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _comparable(config: Config) -> dict[str, Any]:
    d = asdict(config)
    d.pop("threads", None)
    d.pop("snr_every", None)  # a diagnostic: changes no number of the run
    d.pop("target_return", None)  # when to stop, as ``steps``: a run may go on to another
    return d


def save_checkpoint(trainer: Trainer, path: str | Path) -> Path:
    """Write the trainer's config and state to ``path`` atomically
    (:func:`stochgrad.checkpoint.save_state`: tensors and plain values only)."""
    path = Path(path)
    _ckpt.save_state(
        {"format": CHECKPOINT_FORMAT, "config": asdict(trainer.config), "state": trainer.state()},
        path,
    )
    return path


def _refuse(path: Path, what: str) -> _ckpt.CheckpointError:
    return _ckpt.CheckpointError(f"{path}: {what}; {_ckpt.RESTART_HINT}")


def load_checkpoint(path: str | Path, *, resumable: bool = True) -> tuple[Config, dict[str, Any]]:
    """``(config, state)`` stored in a checkpoint written by :func:`save_checkpoint`.

    The file is read with ``weights_only=True`` (:func:`stochgrad.checkpoint.load_state`):
    nothing in it is unpickled as code. With ``resumable=False`` (enough to evaluate the
    policy) a checkpoint of an earlier release is accepted too; its pickled environments are
    left unread.

    Raises:
        stochgrad.checkpoint.CheckpointError: a missing, empty, corrupt or foreign file, or one
            written by an earlier release (which pickled the environments), in one line naming
            the file.
    """
    path = Path(path)
    blob = _ckpt.load_state(path)
    state = _ckpt.field(blob, "state", path, dict)
    if resumable and "env_actions" not in state:
        if "envs" in state:
            raise _refuse(
                path,
                "written by an earlier release, which pickled the environments; not loaded, "
                "for safety",
            )
        raise _refuse(path, "not a policy-gradient checkpoint (no 'env_actions' field)")
    saved = _ckpt.field(blob, "config", path, dict)
    try:
        config = Config(**saved)
    except (TypeError, ValueError) as exc:
        raise _refuse(path, f"its settings are not valid here ({exc})") from None
    _ckpt.field(state, "policy", path, dict)
    if resumable:
        for key in ("value", "policy_opt", "value_opt", "history"):
            _ckpt.field(state, key, path, dict)
        for key in ("generator", "env_actions", "obs", "ep_return", "ep_length"):
            _ckpt.field(state, key, path, torch.Tensor)
    return config, state


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
    progress: Callable[[int], None] | None = None,
    on_update: Callable[[Trainer, dict[str, float]], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``algo`` on ``env_id`` until at least ``steps`` environment steps.

    Updates continue while ``env_steps < steps``, so the run ends at the first multiple of the
    batch (``num_envs * n_steps``) at or above ``steps``, or earlier, after the update that
    brings the mean return of the last 100 episodes to ``target_return`` when that override
    is given (:meth:`Trainer.reached_target`). With ``checkpoint`` the state is saved
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
        progress: ``progress(n)`` after each update (after its checkpoint, when one is due),
            ``n`` the environment steps it added towards ``steps``; a resumed run first
            reports the steps it loaded.
        on_update: ``on_update(trainer, stats)`` after each update (``stats`` as returned by
            :meth:`Trainer.update`).
        on_resume: called with the environment steps loaded from ``checkpoint``.
        **overrides: fields of :class:`Config`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` was made with other settings.
        stochgrad.checkpoint.CheckpointError: ``checkpoint`` is corrupt, foreign or unsafe.

    >>> r = train("CartPole-v1", "reinforce", 64, num_envs=2, n_steps=32)
    >>> r.trainer.env_steps
    64
    """
    check_choice("algo", algo, ALGOS)
    steps = check_int("steps", steps, minimum=1)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if algo == "trpo" and not _natural_available():
        raise ValueError("algo 'trpo' needs stochgrad.natural, which is not available")
    config = default_config(env_id, algo, seed, **overrides)
    check_env_id(config.env_id)
    with torch_threads(config.threads):
        return _train(
            config, steps, checkpoint, checkpoint_every, resume, progress, on_update, on_resume
        )


def _restore(config: Config, path: Path) -> Trainer:
    saved_config, state = load_checkpoint(path)
    _ckpt.check_settings(_comparable(saved_config), _comparable(config), path)
    trainer = Trainer(config)
    try:
        trainer.load_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        trainer.envs.close()
        raise _refuse(path, f"could not be restored ({_first_line(exc)})") from None
    return trainer


def _train(
    config, steps, checkpoint, checkpoint_every, resume, progress, on_update, on_resume
) -> TrainResult:
    ckpt = Path(checkpoint) if checkpoint is not None else None
    resumed = 0
    if resume and ckpt is not None and ckpt.exists():
        trainer = _restore(config, ckpt)
        resumed = trainer.env_steps
        if on_resume is not None:
            on_resume(resumed)
    else:
        trainer = Trainer(config)
    counted = min(trainer.env_steps, steps)
    if progress is not None and counted:
        progress(counted)
    last_saved = trainer.updates if resumed else -1
    while trainer.env_steps < steps and not trainer.reached_target():
        stats = trainer.update()
        if ckpt is not None and trainer.updates % checkpoint_every == 0:
            save_checkpoint(trainer, ckpt)
            last_saved = trainer.updates
        if on_update is not None:
            on_update(trainer, stats)
        if progress is not None:
            now = min(trainer.env_steps, steps)
            progress(now - counted)
            counted = now
    if ckpt is not None and last_saved != trainer.updates:
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

    Raises:
        stochgrad.checkpoint.CheckpointError: ``checkpoint`` is missing, corrupt or foreign.
    """
    import gymnasium as gym

    episodes = check_int("episodes", episodes, minimum=1)
    seed = check_seed("seed", seed)
    path = Path(checkpoint)
    config, state = load_checkpoint(path, resumable=False)
    env = gym.make(config.env_id)
    vec = make_envs(config.env_id, 1)
    policy = make_policy(vec, config.hidden)
    vec.close()
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as exc:
        env.close()
        raise _refuse(path, f"its policy does not fit ({_first_line(exc)})") from None
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
