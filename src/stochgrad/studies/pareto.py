r"""Deep Sea Treasure by linear scalarisation: REINFORCE over weights × seeds vs the true front.

For every seed, one tabular softmax policy per weight and restart is trained by REINFORCE
(:func:`~stochgrad.apps.rl.multi_objective.train_reinforce`, all weights in one batch); the
greedy policy of each is rolled out *in the mo-gymnasium environment* and, per weight, the
restart with the best scalarised greedy return is kept. The recovered points are compared with
the environment's Pareto front (which points are reached, by which weights) and scored by the
2-D hypervolume; the exact solve of every weight (value iteration) is the reference. The kept
policies themselves come back too (``ParetoCell.policy_logits``: their tabular logits, whose
greedy actions, rolled out again by :func:`~stochgrad.apps.rl.deep_sea.evaluate_in_env`, give
the returns reported). The cells of the grid are the seeds; a cell's mid-run training state is
checkpointed every ``checkpoint_every`` iterations, so an interrupted study resumes where it
stopped and gives the numbers of an uninterrupted one, bit for bit.

Why three restarts and the ``auto`` weights: evenly spaced weights miss the narrow intervals
(21 weights step 0.05 find neither treasure 15.1 nor 20.3 even exactly), so ``auto`` adds, per
supported point, the weight of largest scalarised margin
(:func:`~stochgrad.apps.rl.deep_sea.parse_weights`); and since a single REINFORCE run at the
margin-0.006 weight of treasure 20.3 sometimes settles on its neighbour 19.6, three runs per
weight are trained in the same batch and the best greedy one is kept.

Measured (``stochgrad rl pareto`` defaults: :math:`\gamma = 0.99`, 19 ``auto`` weights, 6000
iterations of 32 episodes, Adam 0.1, 3 runs per weight; 2 shared CPU cores, 72 to 74 s per seed
at normal load, 245 s once under heavy load): for seeds 0, 1, 2 the greedy policies recover all
10 front points, hypervolume 360.4010 against 360.4009 for the env's front (the difference is
the environment's float32 rewards). Single runs reaching their weight's exact optimum: 48, 55, 53
of 57; the misses are at the small-margin weights (0.4, 0.525, 0.6, 0.670, 0.684, 0.7). With one
run per weight and the midpoint weights, seeds 1 and 2 missed treasure 20.3 (9/10, hypervolume
359.26). Evenly spaced weights, solved exactly: 21 weights give 8/10 points (hypervolume 358.44).

The study runs with one torch thread (the caller's setting is restored afterwards): these small
tensor programs run fastest so, whoever calls.

>>> cfg = ParetoConfig(weights="0,1", reinforce=ReinforceConfig(iterations=1, batch=2))
>>> res = pareto_study(cfg)
>>> res.exact_recovered[[0, -1]].tolist()
[True, True]
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
from stochgrad.apps.rl._threads import torch_threads
from stochgrad.apps.rl.deep_sea import (
    DeepSeaMDP,
    check_gamma,
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
from stochgrad.apps.rl.multi_objective import ReinforceConfig, train_reinforce
from stochgrad.checkpoint import save_json, saved_float, saved_tensor, saved_value
from stochgrad.studies.scaffold import run_grid

__all__ = [
    "ParetoCell",
    "ParetoConfig",
    "ParetoResult",
    "ParetoStudyResult",
    "pareto_study",
    "run_pareto",
]


@dataclass(frozen=True)
class ParetoConfig:
    """Settings of :func:`pareto_study`.

    Attributes:
        weights: ``"auto"``, ``"N"`` (evenly spaced), ``"a,b,c"``, or a tuple of weights in
            [0, 1] (:func:`~stochgrad.apps.rl.deep_sea.parse_weights`).
        gamma: discount in (0, 1].
        seeds: one training run (all weights) per seed.
        reinforce: REINFORCE's settings (``restarts`` runs per weight, the best kept).
    """

    weights: str | tuple[float, ...] = "auto"
    gamma: float = 0.99
    seeds: tuple[int, ...] = (0,)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)

    def __post_init__(self) -> None:
        if isinstance(self.weights, str):
            if self.weights.strip() != "auto":
                parse_weights(self.weights, None, 0.99)  # "N" or a list: checked without the env
        else:
            object.__setattr__(self, "weights", tuple(check_weights(self.weights).tolist()))
        object.__setattr__(self, "gamma", check_gamma(self.gamma))
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Sequence):
            raise TypeError(f"seeds must be a sequence of ints, got {self.seeds!r}")
        seeds = tuple(check_seed("seeds", s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.reinforce, ReinforceConfig):
            raise TypeError(
                f"reinforce must be a ReinforceConfig, got {type(self.reinforce).__name__}"
            )


@dataclass(frozen=True)
class ParetoCell:
    """One seed's sweep: the greedy returns of every weight's restarts and what they recover.

    Attributes:
        seed: the training seed.
        restart_returns: ``[K, R, 2]`` discounted (treasure, time) return of each restart's
            greedy policy, rolled out in the environment.
        returns: ``[K, 2]`` the kept (best scalarised) restart per weight.
        restarts_optimal: ``[K]`` restarts reaching their weight's exact optimum alone.
        recovered: ``[n_front]`` whether some weight's kept policy reaches each front point.
        hypervolume: of ``returns``.
        policy_logits: ``[K, S, A]`` float64 logits of the kept policy per weight (a softmax
            over the actions of each state of :func:`~stochgrad.apps.rl.deep_sea.tabulate`);
            their greedy policies (:meth:`greedy_policies`) gave ``returns``. ``None`` for a
            seed finished by an earlier release, which did not keep them.
    """

    seed: int
    restart_returns: np.ndarray
    returns: np.ndarray
    restarts_optimal: np.ndarray
    recovered: np.ndarray
    hypervolume: float
    policy_logits: np.ndarray | None = None

    def greedy_policies(self) -> np.ndarray:
        """``[K, S]`` the greedy action of each kept policy in every state.

        Raises:
            ValueError: the cell holds no policies (finished by an earlier release).
        """
        if self.policy_logits is None:
            raise ValueError(
                f"seed {self.seed}: no policies kept (finished by an earlier release); "
                "rerun the study with restart to train them again"
            )
        return self.policy_logits.argmax(-1)

    def to_state(self) -> dict[str, Any]:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                for k, v in asdict(self).items()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ParetoCell:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (the arrays' shapes agreeing on the weights)."""
        f64 = torch.float64
        restart_returns = saved_tensor(
            state, "restart_returns", shape=(None, None, 2), dtype=f64, finite=True
        )
        k, restarts = restart_returns.shape[:2]
        optimal = saved_tensor(state, "restarts_optimal", shape=(k,), dtype=torch.int64, minimum=0)
        if bool((optimal > restarts).any()):
            raise ValueError(f"restarts_optimal must be <= {restarts} (the restarts)")
        logits = None
        if state.get("policy_logits") is not None:  # None: finished by an earlier release
            logits = saved_tensor(
                state, "policy_logits", shape=(k, None, None), dtype=f64, finite=True
            ).numpy()
        return cls(
            seed=check_seed("seed", saved_value(state, "seed")),
            restart_returns=restart_returns.numpy(),
            returns=saved_tensor(state, "returns", shape=(k, 2), dtype=f64, finite=True).numpy(),
            restarts_optimal=optimal.numpy(),
            recovered=saved_tensor(state, "recovered", shape=(None,), dtype=torch.bool).numpy(),
            hypervolume=saved_float(state, "hypervolume", minimum=0.0),
            policy_logits=logits,
        )


@dataclass
class ParetoStudyResult:
    """The outcome of :func:`pareto_study`.

    Attributes:
        config: the settings.
        weights: ``[K]`` the weights swept.
        front: ``[n, 2]`` the environment's Pareto front.
        exact_returns: ``[K, 2]`` value iteration's policy per weight, rolled out in the env.
        exact_recovered: ``[n]`` front points some weight's exact policy reaches.
        supported: ``(point, w_low, w_high)`` of every supported point (exact search).
        front_intervals: per front point, its optimality interval ``(w_low, w_high)`` or None.
        hypervolume_exact, hypervolume_front: of the exact returns and of the front.
        cells: one :class:`ParetoCell` per seed.
        resumed: seeds loaded finished from a checkpoint.
        seconds: wall time of this call.
    """

    config: ParetoConfig
    weights: np.ndarray
    front: np.ndarray
    exact_returns: np.ndarray
    exact_recovered: np.ndarray
    supported: list[tuple[np.ndarray, float, float]]
    front_intervals: list[tuple[float, float] | None]
    hypervolume_exact: float
    hypervolume_front: float
    cells: list[ParetoCell]
    resumed: int = 0
    seconds: float = 0.0

    def recovered_by(self, cell: ParetoCell) -> list[list[float]]:
        """Per front point, the weights whose kept policy in ``cell`` reaches it."""
        hit = front_matches(cell.returns, self.front)
        return [self.weights[h].tolist() for h in hit]


@dataclass
class _Exact:
    env: Any
    mdp: DeepSeaMDP
    weights: np.ndarray
    front: np.ndarray
    exact: np.ndarray
    supported: list


def _exact(weights: Any, gamma: float) -> _Exact:
    env = make_env()
    mdp = tabulate(env)
    w = parse_weights(weights, mdp, gamma)
    front = true_front(gamma, env)
    _, pi_exact = value_iteration(mdp, w, gamma)
    exact = evaluate_in_env(mdp, pi_exact, gamma, env)
    return _Exact(env, mdp, w, front, exact, supported_points(mdp, gamma))


def _sweep_cell(ex: _Exact, gamma: float, restarts: int, seed: int, logits) -> ParetoCell:
    """Roll out every restart's greedy policy; keep the best per weight; score it."""
    w, K = ex.weights, ex.weights.size
    every = evaluate_in_env(ex.mdp, logits.argmax(-1).numpy(), gamma, ex.env)
    every = every.reshape(K, restarts, 2)
    scal = w[:, None] * every[..., 0] + (1 - w[:, None]) * every[..., 1]
    best = scal.argmax(1)
    learned = every[np.arange(K), best]
    exact_scal = w * ex.exact[:, 0] + (1 - w) * ex.exact[:, 1]
    optimal = (scal >= exact_scal[:, None] - 1e-4).sum(1)
    recovered = front_matches(learned, ex.front).any(1)
    kept = logits.detach().reshape(K, restarts, *logits.shape[1:])[np.arange(K), best]
    return ParetoCell(
        int(seed), every, learned, optimal, recovered, hypervolume_2d(learned),
        kept.numpy().copy(),
    )  # fmt: skip


def _intervals(ex: _Exact) -> list[tuple[float, float] | None]:
    return [
        next(((lo, hi) for p, lo, hi in ex.supported if np.allclose(p, f, atol=1e-6)), None)
        for f in ex.front
    ]


def pareto_study(
    config: ParetoConfig = ParetoConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    checkpoint_every: int = 500,
    threads: int | None = 1,
) -> ParetoStudyResult:
    """Sweep the weights for every seed and compare the greedy returns with the true front.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file keeping each finished seed and the running seed's training
            state (``None``: none).
        resume: reuse what ``checkpoint`` holds (a checkpoint of other settings is refused).
        progress: ``progress(n)``: ``n`` more REINFORCE iterations done
            (``iterations * len(seeds)`` in all), after the checkpoint that keeps them when one
            is due.
        on_resume: called with the numbers of finished and partly trained seeds found in
            ``checkpoint``, before any work, when there are any.
        checkpoint_every: iterations between mid-run checkpoints.
        threads: torch threads for the study's duration (the caller's setting is restored
            afterwards; ``None`` leaves it alone).

    Returns:
        :class:`ParetoStudyResult`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.
    """
    if not isinstance(config, ParetoConfig):
        raise TypeError(f"config must be a ParetoConfig, got {type(config).__name__}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    with torch_threads(threads):
        start = time.perf_counter()
        ex = _exact(config.weights, config.gamma)
        cfg, R = config.reinforce, config.reinforce.restarts

        def run_cell(key, state, save) -> ParetoCell:
            logits, _ = train_reinforce(
                ex.mdp, np.repeat(ex.weights, R), config.gamma, cfg, seed=key[0],
                progress=progress, state=state, save=save, checkpoint_every=checkpoint_every,
                threads=None,
            )  # fmt: skip
            return _sweep_cell(ex, config.gamma, R, key[0], logits)

        grid = run_grid(
            [(s,) for s in config.seeds],
            run_cell,
            config=config,
            result_type=ParetoCell,
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
            cell_units=lambda key: cfg.iterations,
            on_resume=on_resume,
        )
        return ParetoStudyResult(
            config=config,
            weights=ex.weights,
            front=ex.front,
            exact_returns=ex.exact,
            exact_recovered=front_matches(ex.exact, ex.front).any(1),
            supported=ex.supported,
            front_intervals=_intervals(ex),
            hypervolume_exact=hypervolume_2d(ex.exact),
            hypervolume_front=hypervolume_2d(ex.front),
            cells=[grid.results[(s,)] for s in config.seeds],
            resumed=grid.resumed,
            seconds=time.perf_counter() - start,
        )


# ---------------------------------------------------------------------------------------------
# the earlier interface (kept for one release)
# ---------------------------------------------------------------------------------------------
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
    policy_logits: list = field(default_factory=list)  # [K, S, A] the kept policies' logits


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
    """The earlier interface of :func:`pareto_study`, one seed (kept for one release).

    Runs with one torch thread (the caller's setting restored afterwards). Keeps the training
    state in ``out_dir/pareto_checkpoint.pt`` (resumed when present, deleted first with
    ``restart``) and writes ``out_dir/pareto.json``; the figure is now drawn by
    ``stochgrad rl pareto``.

    >>> res = run_pareto("0,1", config=ReinforceConfig(iterations=1, batch=2))
    >>> res.exact_recovered[0], res.exact_recovered[-1]
    (True, True)
    """
    cfg = ReinforceConfig() if config is None else config
    gamma = check_gamma(gamma)
    with torch_threads(1):
        t0 = time.perf_counter()
        ex = _exact(weights, gamma)
        R = cfg.restarts
        ckpt = None if out_dir is None else Path(out_dir) / "pareto_checkpoint.pt"
        if restart and ckpt is not None and ckpt.exists():
            ckpt.unlink()
        logits, _ = train_reinforce(
            ex.mdp, np.repeat(ex.weights, R), gamma, cfg, seed=seed, callback=callback,
            checkpoint=ckpt, checkpoint_every=checkpoint_every, threads=None,
        )  # fmt: skip
        cell = _sweep_cell(ex, gamma, R, seed, logits)
        hit = front_matches(cell.returns, ex.front)
        result = ParetoResult(
            gamma=float(gamma),
            weights=ex.weights.tolist(),
            reinforce_returns=cell.returns.tolist(),
            restarts_optimal=cell.restarts_optimal.tolist(),
            exact_returns=ex.exact.tolist(),
            front=ex.front.tolist(),
            recovered=cell.recovered.tolist(),
            recovered_by=[ex.weights[h].tolist() for h in hit],
            exact_recovered=front_matches(ex.exact, ex.front).any(1).tolist(),
            supported=[[float(p[0]), float(p[1]), lo, hi] for p, lo, hi in ex.supported],
            front_intervals=[None if iv is None else list(iv) for iv in _intervals(ex)],
            hypervolume_reinforce=cell.hypervolume,
            hypervolume_exact=hypervolume_2d(ex.exact),
            hypervolume_front=hypervolume_2d(ex.front),
            config=asdict(cfg) | {"seed": seed},
            policy_logits=cell.policy_logits.tolist(),
        )
        result.seconds = time.perf_counter() - t0
    if out_dir is not None:
        save_json(asdict(result), Path(out_dir) / "pareto.json")
    return result
