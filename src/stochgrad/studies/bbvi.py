r"""The BBVI comparison: five ELBO-gradient estimators train the same q, against the optimum.

The study of Mohamed, Rosca, Figurnov & Mnih (JMLR 2020, Sec. 8) on
:mod:`stochgrad.apps.vi`: the optimal mean-field ELBO (deterministic, by quadrature and L-BFGS),
one training run per estimator and seed (:func:`~stochgrad.apps.vi.train`), and the
per-coordinate variance of every estimator at two fixed q (the initialisation and the optimum).

Everything is checkpointed in one file through :func:`~stochgrad.studies.scaffold.run_grid`,
under the training settings (:class:`~stochgrad.apps.vi.BBVIConfig`): the optimum, each finished
run (keyed by estimator and seed, as in earlier releases), the state of a run in progress every
``checkpoint_every`` steps, and each variance cell. A rerun with more estimators or seeds reuses
what is there; a resumed study gives the numbers of an uninterrupted one.

>>> from stochgrad.apps.vi import BBVIConfig
>>> cfg = BBVIStudyConfig(BBVIConfig(steps=2, eval_every=1, nodes=32, eval_samples=10),
...                       estimators=("loo",), variance_repeats=2)
>>> bbvi_study(cfg).best
'loo'
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_int, check_seed
from stochgrad.apps.vi import (
    ELBO_ESTIMATORS,
    BBVIConfig,
    BBVIRun,
    Optimum,
    evaluations_per_step,
    gradient_variance,
    load_data,
    optimal_elbo,
    samples_per_step,
    train,
)
from stochgrad.checkpoint import (
    RunCheckpoint,
    saved_float,
    saved_int,
    saved_numbers,
    saved_tensor,
    saved_value,
)
from stochgrad.studies.scaffold import (
    run_grid,
    saved_generator_state,
    saved_optimizer_state,
)

__all__ = [
    "WHERE",
    "BBVIResult",
    "BBVIStudy",
    "BBVIStudyConfig",
    "VarianceTable",
    "bbvi_study",
    "run_bbvi",
    "study_units",
    "variance_table",
]

#: The fixed q of the variance tables.
WHERE: tuple[str, ...] = ("init", "optimum")


# ---------------------------------------------------------------------------------------------
# variance tables
# ---------------------------------------------------------------------------------------------
@dataclass
class VarianceTable:
    """Per-coordinate variance of the gradient estimates at one fixed q.

    ``var_mu[e]`` and ``var_log_sigma[e]`` are the variances (over ``repeats``) of estimator
    ``e``'s ``num_samples``-sample estimate; ``wins_*`` count the coordinates where ``e`` has the
    lowest variance at equal samples, ``wins_*_work`` at equal evaluations (variance times
    evaluations per step, :func:`~stochgrad.apps.vi.evaluations_per_step`).
    """

    where: str
    num_samples: int
    repeats: int
    var_mu: dict[str, list[float]]
    var_log_sigma: dict[str, list[float]]
    evaluations: dict[str, int]
    wins_mu: dict[str, int]
    wins_log_sigma: dict[str, int]
    wins_mu_work: dict[str, int]
    wins_log_sigma_work: dict[str, int]


def _wins(table: dict[str, list[float]], weight: dict[str, int]) -> dict[str, int]:
    names = list(table)
    v = np.array([np.asarray(table[k]) * weight[k] for k in names])
    best = v.argmin(0)
    return {k: int((best == i).sum()) for i, k in enumerate(names)}


def _variance_seed(seed: int, index: int) -> int:
    """The seed of estimator number ``index``'s variance estimates (as in earlier releases)."""
    return seed * 1000 + index


def _table(
    where: str,
    num_samples: int,
    repeats: int,
    dim: int,
    variances: dict[str, tuple[list[float], list[float]]],
) -> VarianceTable:
    var_mu = {e: v[0] for e, v in variances.items()}
    var_ls = {e: v[1] for e, v in variances.items()}
    evals = {e: evaluations_per_step(e, num_samples, dim) for e in variances}
    ones = dict.fromkeys(variances, 1)
    return VarianceTable(
        where=where,
        num_samples=num_samples,
        repeats=repeats,
        var_mu=var_mu,
        var_log_sigma=var_ls,
        evaluations=evals,
        wins_mu=_wins(var_mu, ones),
        wins_log_sigma=_wins(var_ls, ones),
        wins_mu_work=_wins(var_mu, evals),
        wins_log_sigma_work=_wins(var_ls, evals),
    )


def variance_table(
    where: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    estimators: Sequence[str],
    num_samples: int,
    repeats: int,
    seed: int,
) -> VarianceTable:
    """:func:`~stochgrad.apps.vi.gradient_variance` of every estimator at one q, seeded per
    estimator (``seed * 1000 + index``).

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> t = variance_table("init", z, z, X, y, ["loo", "pathwise"], 4, 3, 0)
    >>> sum(t.wins_mu.values())
    31
    """
    variances = {}
    for i, e in enumerate(estimators):
        g = torch.Generator().manual_seed(_variance_seed(seed, i))
        vm, vl = gradient_variance(e, mu, log_sigma, X, y, num_samples, repeats, generator=g)
        variances[e] = (vm.tolist(), vl.tolist())
    return _table(where, num_samples, repeats, mu.numel(), variances)


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------
def _names(name: str, values: Sequence[Any]) -> tuple[Any, ...]:
    values = tuple(values)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{name} must be a non-empty list without repeats, got {list(values)}")
    return values


@dataclass(frozen=True)
class BBVIStudyConfig:
    """Settings of :func:`bbvi_study`.

    Attributes:
        training: the settings of every training run (the checkpoint is kept under these).
        estimators: keys of :data:`~stochgrad.apps.vi.ELBO_ESTIMATORS`, in the tables' order.
        seeds: the seeds of the training runs; the variance tables use the first.
        variance_repeats: independent estimates per estimator for the variance tables (>= 2).
    """

    training: BBVIConfig = field(default_factory=BBVIConfig)
    estimators: tuple[str, ...] = tuple(ELBO_ESTIMATORS)
    seeds: tuple[int, ...] = (0,)
    variance_repeats: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.training, BBVIConfig):
            raise TypeError(f"training must be a BBVIConfig, got {type(self.training).__name__}")
        estimators = _names("estimators", self.estimators)
        for e in estimators:
            check_choice("estimators", e, ELBO_ESTIMATORS)
        seeds = _names("seeds", self.seeds)
        for s in seeds:
            check_seed("seeds", s)
        object.__setattr__(self, "estimators", estimators)
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        check_int("variance_repeats", self.variance_repeats, minimum=2)


@dataclass
class BBVIStudy:
    """The outcome of :func:`bbvi_study`.

    Attributes:
        config: the settings.
        optimum: the optimal mean-field ELBO and its q.
        runs: ``(estimator, seed) -> run``.
        variance: a table at the initialisation and one at the optimum (seed ``seeds[0]``).
        best: the estimator with the highest final exact ELBO (mean over seeds).
        best_gap: the optimum minus that ELBO, in nats.
        resumed: finished runs loaded from the checkpoint.
        seconds: wall time of the work done now.
    """

    config: BBVIStudyConfig
    optimum: Optimum
    runs: dict[tuple[str, int], BBVIRun]
    variance: list[VarianceTable]
    best: str
    best_gap: float
    resumed: int = 0
    seconds: float = 0.0

    def runs_of(self, seed: int) -> dict[str, BBVIRun]:
        """``estimator -> run`` for one seed."""
        return {e: r for (e, s), r in self.runs.items() if s == seed}


@dataclass
class _Cell:
    """What the checkpoint holds under a key: the optimum, a run or a variance cell."""

    kind: str
    value: Any

    def to_state(self) -> dict[str, Any]:
        if self.kind == "run":  # as BBVICheckpoint stored runs: earlier files resume
            return self.value.to_state()
        value = self.value if self.kind == "variance" else asdict(self.value)
        return {"kind": self.kind, "value": value}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Cell:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (:func:`bbvi_study` also checks the sizes against
        its settings)."""
        if not isinstance(state, dict):
            raise TypeError(f"a cell must be a dict, got {type(state).__name__}")
        kind = state.get("kind", "run")
        if kind == "run":
            return cls("run", _run_from_state(state))
        if kind == "optimum":
            return cls("optimum", _optimum_from_state(saved_value(state, "value", dict)))
        if kind == "variance":
            return cls("variance", _variance_from_state(state))
        raise ValueError(f"unknown kind {kind!r}")


def _elbo(state: dict[str, Any], key: str, finite: bool = True) -> float:
    """A saved ELBO: finite, or (``finite=False``: a diverged run's) ``-inf``; never NaN."""
    value = saved_float(state, key, finite=finite)
    if math.isnan(value) or value == math.inf:
        raise ValueError(f"{key} must be finite or -inf, got {value}")
    return value


def _run_from_state(state: dict[str, Any]) -> BBVIRun:
    diverged = state.get("diverged_at")  # files of earlier releases may lack it
    if diverged is not None:
        diverged = saved_int(state, "diverged_at", minimum=1)
    steps = saved_numbers(state, "curve_steps", int, minimum=0)
    if (
        not steps
        or steps[0] != 0
        or any(b <= a for a, b in zip(steps[:-1], steps[1:], strict=True))
    ):
        raise ValueError("curve_steps must increase from 0")
    elbo = saved_numbers(state, "curve_elbo", length=len(steps), finite=False)
    if any(math.isnan(e) or e == math.inf for e in elbo):
        raise ValueError("curve_elbo must hold finite values or -inf")
    ok = diverged is None  # a diverged run's q may hold non-finite values, its ELBOs -inf
    mu, log_sigma = _pair(state, "mu", "log_sigma", finite=ok)
    return BBVIRun(
        key=check_choice("key", saved_value(state, "key"), ELBO_ESTIMATORS),
        seed=check_seed("seed", saved_value(state, "seed")),
        curve_steps=steps,
        curve_elbo=elbo,
        mu=mu,
        log_sigma=log_sigma,
        final_elbo=_elbo(state, "final_elbo", ok),
        mc_elbo=_elbo(state, "mc_elbo", ok),
        mc_stderr=saved_float(state, "mc_stderr", minimum=0.0),
        samples_per_step=saved_int(state, "samples_per_step", minimum=1),
        evaluations_per_step=saved_int(state, "evaluations_per_step", minimum=1),
        seconds=saved_float(state, "seconds", minimum=0.0),
        diverged_at=diverged,
    )


def _pair(
    state: dict[str, Any], a: str, b: str, finite: bool = True, minimum: float | None = None
) -> tuple[list[float], list[float]]:
    """Two saved lists of numbers, one per feature each (``mu`` and ``log_sigma``)."""
    first = saved_numbers(state, a, finite=finite, minimum=minimum)
    second = saved_numbers(state, b, finite=finite, minimum=minimum)
    if len(first) != len(second):
        raise ValueError(
            f"{a} and {b} must hold as many values, got {len(first)} and {len(second)}"
        )
    return first, second


def _optimum_from_state(state: dict[str, Any]) -> Optimum:
    mu, log_sigma = _pair(state, "mu", "log_sigma")
    return Optimum(
        elbo=saved_float(state, "elbo"),
        mu=mu,
        log_sigma=log_sigma,
        grad_norm=saved_float(state, "grad_norm", minimum=0.0),
        nodes=saved_int(state, "nodes", minimum=2),
        quadrature_change=saved_float(state, "quadrature_change", minimum=0.0),
        iterations=saved_int(state, "iterations", minimum=0),
        elbo_at_init=saved_float(state, "elbo_at_init"),
    )


def _variance_from_state(state: dict[str, Any]) -> list[list[float]]:
    value = saved_value(state, "value", (list, tuple))
    if len(value) != 2:
        raise ValueError(f"value must hold 2 lists (mu, log_sigma), got {len(value)}")
    var_mu, var_log_sigma = _pair(
        {"var_mu": value[0], "var_log_sigma": value[1]}, "var_mu", "var_log_sigma", minimum=0.0
    )
    return [var_mu, var_log_sigma]


def _curve_steps(config: BBVIConfig, last: int) -> list[int]:
    """The steps at which :func:`~stochgrad.apps.vi.train` records the ELBO, up to ``last``."""
    every = config.eval_every
    return [s for s in range(last + 1) if s % every == 0 or s == config.steps]


def _check_cell(key: tuple, cell: _Cell, config: BBVIConfig, dim: int) -> None:
    """Raise ``ValueError`` unless ``cell`` is what :func:`bbvi_study` computes under ``key``
    with training settings ``config`` on ``dim`` features."""
    kind = {"optimum": "optimum", "variance": "variance"}.get(key[0], "run")
    if cell.kind != kind:
        raise ValueError(f"it holds a {cell.kind} cell, not a {kind} cell")
    value = cell.value
    if kind == "optimum":
        if value.nodes != config.nodes or len(value.mu) != dim:
            raise ValueError(f"its optimum is for {value.nodes} nodes and {len(value.mu)} features")
    elif kind == "variance":
        if len(value[0]) != dim:
            raise ValueError(f"its variances are for {len(value[0])} features, not {dim}")
    else:
        estimator, seed = key
        if (value.key, value.seed) != (estimator, seed):
            raise ValueError(f"it holds the run {value.key}/{value.seed}")
        if len(value.mu) != dim:
            raise ValueError(f"mu holds {len(value.mu)} values, not {dim} (the features)")
        if value.diverged_at is not None and value.diverged_at > config.steps:
            raise ValueError(f"diverged_at {value.diverged_at} is past the {config.steps} steps")
        last = config.steps if value.diverged_at is None else value.diverged_at - 1
        if value.curve_steps != _curve_steps(config, last):
            raise ValueError("curve_steps are not those of steps and eval_every")
        n = samples_per_step(estimator, config.num_samples, dim, config.budget)
        if (value.samples_per_step, value.evaluations_per_step) != (
            n,
            evaluations_per_step(estimator, n, dim),
        ):
            raise ValueError("samples_per_step or evaluations_per_step are not this estimator's")


def _check_run_state(state: Any, config: BBVIConfig, X: Tensor) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``state`` is a mid-run state of
    :func:`~stochgrad.apps.vi.train` under ``config`` on data ``X``."""
    dim = X.shape[1]
    step = saved_int(state, "step", minimum=1, maximum=config.steps - 1)
    mu = saved_tensor(state, "mu", shape=(dim,), dtype=X.dtype, finite=True)
    log_sigma = saved_tensor(state, "log_sigma", shape=(dim,), dtype=X.dtype, finite=True)
    if bool((log_sigma.abs() > 50.0).any()):  # train stops a run there (diverged)
        raise ValueError("log_sigma must lie in [-50, 50]")
    params = [
        torch.zeros_like(mu, requires_grad=True),
        torch.zeros_like(log_sigma, requires_grad=True),
    ]
    opt_cls = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    saved_optimizer_state(state, "optimizer", opt_cls(params, lr=config.lr), lr=False)
    saved_generator_state(state, "rng")
    steps = saved_numbers(state, "curve_steps", int)
    if steps != _curve_steps(config, step):
        raise ValueError(f"curve_steps are not those of eval_every up to step {step}")
    elbo = saved_numbers(state, "curve_elbo", length=len(steps), finite=False)
    if any(math.isnan(e) or e == math.inf for e in elbo):
        raise ValueError("curve_elbo must hold finite values or -inf")
    saved_float(state, "seconds", minimum=0.0)


def study_units(config: BBVIStudyConfig) -> int:
    """The progress units of :func:`bbvi_study`: the training steps of every run, then the
    gradient estimates of the variance tables."""
    runs = len(config.estimators) * len(config.seeds)
    return runs * config.training.steps + len(WHERE) * len(config.estimators) * (
        config.variance_repeats
    )


def bbvi_study(
    config: BBVIStudyConfig = BBVIStudyConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> BBVIStudy:
    """The optimum, a training run per estimator and seed, and the variance tables.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file holding the optimum, the finished runs, the state of a run in
            progress and the variance cells (``None``: nothing is saved).
        resume: reuse what ``checkpoint`` holds (otherwise it is deleted first).
        progress: advanced by :func:`study_units`: one per training step (after any save of
            it), then ``variance_repeats`` per variance cell once it is saved.
        on_resume: called once, before any work, with the numbers of finished and of partly
            run training runs of this study found in ``checkpoint``, when it holds anything.

    Returns:
        :class:`BBVIStudy`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other training
            settings (naming them).
    """
    start = time.perf_counter()
    tc = config.training
    X, y = load_data()
    if tc.batch_size > X.shape[0]:  # before any work (train would refuse it later)
        raise ValueError(
            f"batch_size must be <= {X.shape[0]} (the number of data), got {tc.batch_size}"
        )
    wanted = [(e, s) for e in config.estimators for s in config.seeds]
    if checkpoint is not None:
        ckpt = RunCheckpoint(checkpoint, tc, _Cell)
        if resume:
            ckpt.load()  # refuses other settings before any work
        else:
            ckpt.clear()
        if on_resume is not None and (ckpt.runs or ckpt.partial):
            on_resume(
                sum(k in ckpt.runs for k in wanted),
                sum(k in ckpt.partial and k not in ckpt.runs for k in wanted),
            )

    def grid(keys, run_cell, **kw):
        return run_grid(
            keys,
            run_cell,
            config=tc,
            result_type=_Cell,
            checkpoint=checkpoint,
            check_result=lambda key, cell: _check_cell(key, cell, tc, X.shape[1]),
            check_state=lambda key, state: _check_run_state(state, tc, X),
            **kw,
        ).results

    optimum = grid(
        [("optimum",)], lambda key, state, save: _Cell("optimum", optimal_elbo(X, y, tc.nodes))
    )[("optimum",)].value

    def run_cell(key, state, save) -> _Cell:
        estimator, seed = key
        run = train(estimator, X, y, tc, seed, state=state, save=save, progress=progress)
        return _Cell("run", run)

    found = {}
    runs = grid(
        wanted,
        run_cell,
        progress=progress,
        cell_units=lambda key: tc.steps,
        on_resume=lambda done, partial: found.update(done=done),
    )
    runs = {k: c.value for k, c in runs.items()}

    seed, repeats = config.seeds[0], config.variance_repeats
    zero = torch.zeros(X.shape[1], dtype=X.dtype)
    points = {
        "init": (zero, zero),
        "optimum": (
            torch.tensor(optimum.mu, dtype=X.dtype),
            torch.tensor(optimum.log_sigma, dtype=X.dtype),
        ),
    }
    vkeys = [("variance", w, e, i, seed, repeats) for w in WHERE
             for i, e in enumerate(config.estimators)]  # fmt: skip

    def variance_cell(key, state, save) -> _Cell:
        _, where, estimator, index, seed, repeats = key
        g = torch.Generator().manual_seed(_variance_seed(seed, index))
        mu, ls = points[where]
        vm, vl = gradient_variance(estimator, mu, ls, X, y, tc.num_samples, repeats, generator=g)
        return _Cell("variance", [vm.tolist(), vl.tolist()])

    cells = grid(
        vkeys,
        variance_cell,
        progress=progress,
        cell_units=lambda key: repeats,
        on_result=(lambda key, r: progress(repeats)) if progress is not None else None,
    )
    tables = [
        _table(
            w,
            tc.num_samples,
            repeats,
            X.shape[1],
            {k[2]: tuple(c.value) for k, c in cells.items() if k[1] == w},
        )
        for w in WHERE
    ]
    mean = {e: float(np.mean([runs[(e, s)].final_elbo for s in config.seeds]))
            for e in config.estimators}  # fmt: skip
    best = max(mean, key=mean.get)
    return BBVIStudy(
        config,
        optimum,
        runs,
        tables,
        best,
        optimum.elbo - mean[best],
        found.get("done", 0),
        time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------------
# the function of earlier releases
# ---------------------------------------------------------------------------------------------
@dataclass
class BBVIResult:
    """What :func:`run_bbvi` returns (one seed; ``runs`` by estimator)."""

    config: dict
    seed: int
    optimum: Optimum
    runs: dict[str, BBVIRun]
    variance: list[VarianceTable]
    best: str
    best_gap: float
    resumed: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


def run_bbvi(
    config: BBVIConfig | None = None,
    estimators: Sequence[str] = tuple(ELBO_ESTIMATORS),
    seed: int = 0,
    *,
    out_dir: str | Path | None = None,
    restart: bool = False,
    variance_repeats: int = 200,
    callback: Callable[[int], None] | None = None,
) -> BBVIResult:
    """Deprecated: :func:`bbvi_study` for one seed (``stochgrad bbvi`` draws the figures).

    With ``out_dir`` the study is checkpointed in ``out_dir/bbvi_checkpoint.pt`` and the result
    written to ``out_dir/bbvi.json``.
    """
    warnings.warn(
        "run_bbvi is deprecated; use stochgrad.studies.bbvi.bbvi_study (figures: stochgrad bbvi)",
        DeprecationWarning,
        stacklevel=2,
    )
    from stochgrad.checkpoint import save_json

    cfg = BBVIStudyConfig(
        BBVIConfig() if config is None else config,
        tuple(estimators),
        (seed,),
        variance_repeats,
    )
    out = None if out_dir is None else Path(out_dir)
    study = bbvi_study(
        cfg,
        checkpoint=None if out is None else out / "bbvi_checkpoint.pt",
        resume=not restart,
        progress=callback,
    )
    result = BBVIResult(
        config=asdict(cfg.training),
        seed=seed,
        optimum=study.optimum,
        runs=study.runs_of(seed),
        variance=study.variance,
        best=study.best,
        best_gap=study.best_gap,
        resumed=study.resumed,
        seconds=study.seconds,
    )
    if out is not None:
        result.files = [str(out / "bbvi.json")]
        save_json(_finite(asdict(result)), out / "bbvi.json")
    return result


def _finite(value: Any) -> Any:
    """JSON has no infinities: a diverged run's ``-inf`` becomes ``None``."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
