r"""Option-critic on the four-rooms grid over seeds, against the exact optimum (value iteration).

Each seed trains one tabular option-critic agent
(:func:`~stochgrad.apps.rl.option_critic.train_option_critic`, its own random stream); the
learned greedy agent's expected steps to the goal are solved exactly
(:func:`~stochgrad.apps.rl.option_critic.evaluate_greedy`) and divided by the optimum's
(:func:`~stochgrad.apps.rl.fourrooms.optimal_solution`). The cells of the grid are the seeds.

The seeds not yet finished are trained together in one batched loop (an agent's numbers do not
depend on the agents beside it, so this changes no number and is several times faster than one
seed after another); the loop's mid-run state is checkpointed every ``checkpoint_every``
finished episodes, and each seed's result as the loop ends, so an interrupted study resumes
where it stopped and gives the numbers of an uninterrupted one.

>>> res = fourrooms_study(FourRoomsConfig(episodes=3, seeds=(0, 1)))
>>> len(res.cells), res.optimal_mean_steps > 0
(2, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_int, check_seed
from stochgrad.apps.rl.fourrooms import FourRooms, optimal_solution, transition_matrix
from stochgrad.apps.rl.option_critic import (
    OptionCritic,
    OptionCriticConfig,
    evaluate_greedy,
    train_option_critic,
)
from stochgrad.checkpoint import save_json, saved_float, saved_tensor, saved_value
from stochgrad.studies.scaffold import run_grid

__all__ = [
    "FourRoomsCell",
    "FourRoomsConfig",
    "FourRoomsResult",
    "fourrooms_study",
    "run_fourrooms",
]


@dataclass(frozen=True)
class FourRoomsConfig:
    """Settings of :func:`fourrooms_study`.

    Attributes:
        episodes: episodes per seed.
        seeds: one agent per seed (distinct).
        agent: option-critic hyper-parameters.
    """

    episodes: int = 5000
    seeds: tuple[int, ...] = tuple(range(10))
    agent: OptionCriticConfig = field(default_factory=OptionCriticConfig)

    def __post_init__(self) -> None:
        check_int("episodes", self.episodes, minimum=1)
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Sequence):
            raise TypeError(f"seeds must be a sequence of ints, got {self.seeds!r}")
        seeds = tuple(check_seed("seeds", s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.agent, OptionCriticConfig):
            raise TypeError(f"agent must be an OptionCriticConfig, got {type(self.agent).__name__}")


@dataclass(frozen=True)
class FourRoomsCell:
    """One seed's agent: its episode lengths, parameters and exact greedy evaluation.

    Attributes:
        seed: the agent's seed.
        steps: steps of every training episode, ``[episodes]``.
        mean_steps: exact mean steps to the goal of the greedy call-and-return agent.
        mean_steps_state_policy: the same with the greedy option re-chosen at every step.
        theta, vartheta, q_u, q_omega: the agent's parameters (see
            :class:`~stochgrad.apps.rl.option_critic.OptionCritic`, without the leading axis).
    """

    seed: int
    steps: np.ndarray
    mean_steps: float
    mean_steps_state_policy: float
    theta: np.ndarray
    vartheta: np.ndarray
    q_u: np.ndarray
    q_omega: np.ndarray

    def agent(self) -> OptionCritic:
        """The parameters as a one-agent :class:`OptionCritic`."""
        return OptionCritic(self.theta[None], self.vartheta[None], self.q_u[None],
                            self.q_omega[None])  # fmt: skip

    def to_state(self) -> dict[str, Any]:
        return {
            k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FourRoomsCell:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (the parameters' shapes agreeing)."""
        f64 = torch.float64
        theta = saved_tensor(state, "theta", shape=(None, None, None), dtype=f64, finite=True)
        states, options, actions = theta.shape
        return cls(
            seed=check_seed("seed", saved_value(state, "seed")),
            steps=saved_tensor(state, "steps", shape=(None,), dtype=torch.int64, minimum=0).numpy(),
            mean_steps=_mean_steps(state, "mean_steps"),
            mean_steps_state_policy=_mean_steps(state, "mean_steps_state_policy"),
            theta=theta.numpy(),
            vartheta=saved_tensor(
                state, "vartheta", shape=(states, options), dtype=f64, finite=True
            ).numpy(),
            q_u=saved_tensor(
                state, "q_u", shape=(states, options, actions), dtype=f64, finite=True
            ).numpy(),
            q_omega=saved_tensor(
                state, "q_omega", shape=(states, options), dtype=f64, finite=True
            ).numpy(),
        )


def _mean_steps(state: dict[str, Any], key: str) -> float:
    """Exact mean steps to the goal: >= 0, infinite for a policy that never gets there."""
    value = saved_float(state, key, finite=False, minimum=0.0)
    if value != value:  # NaN
        raise ValueError(f"{key} must be a number of steps, got nan")
    return value


@dataclass
class FourRoomsResult:
    """The outcome of :func:`fourrooms_study` (the summary fields also in :meth:`summary`).

    Attributes:
        episodes, seeds: as configured.
        config: the settings.
        optimal_mean_steps: exact mean steps to the goal of the optimal policy (uniform start).
        min_mean_steps: the stochastic-shortest-path optimum (equal up to discounting).
        learned_mean_steps, learned_mean_steps_state_policy: per seed (see
            :class:`FourRoomsCell`).
        ratio: learned / optimal mean steps, per seed; mean_ratio: their mean.
        steps_per_episode_mean: training steps per episode, mean over seeds.
        seconds: wall time of this call.
        cells: every seed's :class:`FourRoomsCell`.
        resumed: seeds loaded finished from a checkpoint.
    """

    episodes: int
    seeds: list[int]
    config: Any
    optimal_mean_steps: float
    min_mean_steps: float
    learned_mean_steps: list[float]
    learned_mean_steps_state_policy: list[float]
    ratio: list[float]
    mean_ratio: float
    steps_per_episode_mean: list[float] = field(repr=False)
    seconds: float = 0.0
    cells: list[FourRoomsCell] = field(default_factory=list, repr=False)
    resumed: int = 0

    def summary(self) -> dict[str, Any]:
        """The result as plain JSON values (without the agents' parameters)."""
        config = self.config if isinstance(self.config, dict) else asdict(self.config)
        return {
            "episodes": self.episodes,
            "seeds": list(self.seeds),
            "config": config,
            "optimal_mean_steps": self.optimal_mean_steps,
            "min_mean_steps": self.min_mean_steps,
            "learned_mean_steps": list(self.learned_mean_steps),
            "learned_mean_steps_state_policy": list(self.learned_mean_steps_state_policy),
            "ratio": list(self.ratio),
            "mean_ratio": self.mean_ratio,
            "steps_per_episode_mean": list(self.steps_per_episode_mean),
            "seconds": self.seconds,
        }


def _cells(env, P, agent: OptionCritic, steps: np.ndarray, seeds) -> list[FourRoomsCell]:
    ev = evaluate_greedy(env, agent, P)
    return [
        FourRoomsCell(int(s), steps[r].copy(), float(ev.mean_steps[r]),
                      float(ev.mean_steps_state_policy[r]), agent.theta[r].copy(),
                      agent.vartheta[r].copy(), agent.q_u[r].copy(), agent.q_omega[r].copy())
        for r, s in enumerate(seeds)
    ]  # fmt: skip


def _result(config, episodes, seeds, sol, cells, start, resumed) -> FourRoomsResult:
    learned = np.array([c.mean_steps for c in cells])
    ratio = learned / sol.mean_steps
    return FourRoomsResult(
        episodes=episodes,
        seeds=[int(s) for s in seeds],
        config=config,
        optimal_mean_steps=sol.mean_steps,
        min_mean_steps=sol.min_mean_steps,
        learned_mean_steps=learned.tolist(),
        learned_mean_steps_state_policy=[c.mean_steps_state_policy for c in cells],
        ratio=ratio.tolist(),
        mean_ratio=float(ratio.mean()),
        steps_per_episode_mean=np.mean([c.steps for c in cells], axis=0).tolist(),
        seconds=time.perf_counter() - start,
        cells=cells,
        resumed=resumed,
    )


def fourrooms_study(
    config: FourRoomsConfig = FourRoomsConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    checkpoint_every: int = 500,
) -> FourRoomsResult:
    """Train option-critic for every seed and compare each greedy agent with the optimum.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file keeping each finished seed and the training loop's mid-run
            state (``None``: none).
        resume: reuse what ``checkpoint`` holds (a checkpoint of other settings is refused).
        progress: ``progress(n)``: ``n`` more episodes done (``episodes * len(seeds)`` in all),
            called after the checkpoint that keeps them when one is due.
        on_resume: called with the numbers of finished and partly trained seeds found in
            ``checkpoint``, before any work, when there are any.
        checkpoint_every: finished episodes (over all seeds) between mid-run checkpoints.

    Returns:
        :class:`FourRoomsResult`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.
    """
    if not isinstance(config, FourRoomsConfig):
        raise TypeError(f"config must be a FourRoomsConfig, got {type(config).__name__}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    start = time.perf_counter()
    env = FourRooms()
    P = transition_matrix(env)
    sol = optimal_solution(env)
    keys = [(s,) for s in config.seeds]
    trained: dict[int, FourRoomsCell] = {}  # trained in a batch, not yet handed to the grid

    def run_cell(key, state, save) -> FourRoomsCell:
        seed = key[0]
        if seed not in trained:
            # this seed and every later one: the seeds not finished (finished ones are a prefix)
            batch = list(config.seeds[config.seeds.index(seed) :])
            agent, steps = train_option_critic(
                env, config.episodes, batch, config.agent, progress=progress, state=state,
                save=save, checkpoint_every=checkpoint_every,
            )  # fmt: skip
            trained.update((c.seed, c) for c in _cells(env, P, agent, steps, batch))
        return trained.pop(seed)

    grid = run_grid(
        keys,
        run_cell,
        config=config,
        result_type=FourRoomsCell,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        cell_units=lambda key: config.episodes,
        on_resume=on_resume,
    )
    cells = [grid.results[k] for k in keys]
    return _result(config, config.episodes, config.seeds, sol, cells, start, grid.resumed)


def run_fourrooms(
    episodes: int = 5000,
    seeds: Sequence[int] | int = 10,
    config: OptionCriticConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    callback: Callable[[int], None] | None = None,
    restart: bool = False,
) -> FourRoomsResult:
    """The earlier interface of :func:`fourrooms_study` (kept for one release).

    Trains every seed in one run of
    :func:`~stochgrad.apps.rl.option_critic.train_option_critic`, keeping its state in
    ``out_dir/fourrooms_checkpoint.pt`` (resumed when present, deleted first with ``restart``)
    and writing ``out_dir/fourrooms.json``. The figure is now drawn by ``stochgrad rl options``.

    >>> res = run_fourrooms(5, [0])
    >>> res.optimal_mean_steps > 0
    True
    """
    config = OptionCriticConfig() if config is None else config
    start = time.perf_counter()
    env = FourRooms()
    P = transition_matrix(env)
    sol = optimal_solution(env)
    seed_list = (
        list(range(check_int("seeds", seeds, minimum=1)))
        if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool)
        else [int(s) for s in seeds]
    )
    ckpt = None if out_dir is None else Path(out_dir) / "fourrooms_checkpoint.pt"
    if restart and ckpt is not None and ckpt.exists():
        ckpt.unlink()
    agent, steps = train_option_critic(
        env, episodes, seed_list, config, progress=callback, checkpoint=ckpt
    )
    cells = _cells(env, P, agent, steps, seed_list)
    result = _result(asdict(config), episodes, seed_list, sol, cells, start, 0)
    if out_dir is not None:
        save_json(_json_safe(result.summary()), Path(out_dir) / "fourrooms.json")
    return result


def _json_safe(value: Any) -> Any:
    """``value`` with infinities and NaN (an agent that never reaches the goal) as ``None``."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
