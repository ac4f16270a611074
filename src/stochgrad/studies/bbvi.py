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
    train,
)
from stochgrad.checkpoint import RunCheckpoint
from stochgrad.studies.scaffold import run_grid

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
        kind = state.get("kind", "run")
        if kind == "run":
            return cls("run", BBVIRun.from_state(state))
        if kind == "optimum":
            return cls("optimum", Optimum(**state["value"]))
        if kind == "variance":
            return cls("variance", [list(v) for v in state["value"]])
        raise ValueError(f"unknown kind {kind!r}")


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
            keys, run_cell, config=tc, result_type=_Cell, checkpoint=checkpoint, **kw
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
