r"""Parameter recovery of the telegraph model over a grid of :math:`(k_{on}, k_{off})`.

Every grid cell simulates ``replicates`` genes with the cell's kinetics (its own random stream,
:func:`~stochgrad.studies.scaffold.cell_generator`), fits them with profile-likelihood
intervals (:func:`~stochgrad.apps.telegraph.fit_counts`), and the study summarises, per cell
and per quantity (burst frequency ``bf`` = :math:`k_{on}`, burst size ``bs`` =
:math:`k_{syn}/k_{off}`), the median relative error over all replicates and over those judged
identifiable, the median interval ratio and the fractions flagged structurally / practically
non-identifiable. Each finished cell is checkpointed (``stochgrad telegraph recover``), and a
resumed study gives the numbers of an uninterrupted one.

>>> cfg = RecoveryConfig(k_on=(1.0,), k_off=(1.0,), k_syn=20.0, num_cells=200, replicates=1,
...                      method="exact")
>>> telegraph_recovery_study(cfg).bf_error.shape
(1, 1)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.telegraph import (
    DTYPE,
    MAX_CI_RATIO,
    GeneFits,
    fit_counts,
    simulate,
)
from stochgrad.studies.scaffold import cell_generator, run_grid

__all__ = [
    "RecoveryCell",
    "RecoveryConfig",
    "RecoveryResult",
    "recovery_study",
    "telegraph_recovery_study",
]

METHODS = ("gillespie", "exact")


def _grid_values(name: str, values: Sequence[float]) -> tuple[float, ...]:
    values = tuple(check_float(name, v, minimum=0.0, open_min=True) for v in values)
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value, got {list(values)}")
    return values


@dataclass(frozen=True)
class RecoveryConfig:
    """Settings of :func:`telegraph_recovery_study` (stored in its checkpoint).

    Attributes:
        k_on, k_off: the grid (positive rates); the default is that of
            ``stochgrad telegraph recover``: ``logspace(-2, 1, 4)`` x ``logspace(-1, 2, 4)``.
        k_syn: synthesis rate of every gene.
        num_cells: cells per simulated gene.
        replicates: simulated genes per grid cell.
        seed: the study's seed (each cell draws from its own stream of it).
        method: ``"gillespie"`` or ``"exact"`` (see :func:`~stochgrad.apps.telegraph.simulate`).
        max_ci_ratio: as in :func:`~stochgrad.apps.telegraph.fit_genes`.
    """

    k_on: tuple[float, ...] = tuple(np.logspace(-2, 1, 4).tolist())
    k_off: tuple[float, ...] = tuple(np.logspace(-1, 2, 4).tolist())
    k_syn: float = 100.0
    num_cells: int = 1000
    replicates: int = 10
    seed: int = 0
    method: str = "gillespie"
    max_ci_ratio: float = MAX_CI_RATIO

    def __post_init__(self) -> None:
        object.__setattr__(self, "k_on", _grid_values("k_on", self.k_on))
        object.__setattr__(self, "k_off", _grid_values("k_off", self.k_off))
        object.__setattr__(
            self, "k_syn", check_float("k_syn", self.k_syn, minimum=0.0, open_min=True)
        )
        object.__setattr__(self, "num_cells", check_int("num_cells", self.num_cells, minimum=2))
        object.__setattr__(self, "replicates", check_int("replicates", self.replicates, minimum=1))
        object.__setattr__(self, "seed", check_seed("seed", self.seed))
        check_choice("method", self.method, METHODS)
        ratio = self.max_ci_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 1:
            raise ValueError(f"max_ci_ratio must be a number > 1, got {ratio!r}")
        object.__setattr__(self, "max_ci_ratio", float(ratio))


@dataclass(frozen=True)
class RecoveryCell:
    """The fits of one grid cell's replicates.

    Attributes:
        k_on, k_off, k_syn: the true kinetics of the cell.
        fits: the replicates' :class:`~stochgrad.apps.telegraph.GeneFits` (NaN kinetics and
            every flag for a gene simulated with no expressing cell).
        expressing: ``[replicates]`` fraction of each replicate's cells with a non-zero count.
    """

    k_on: float
    k_off: float
    k_syn: float
    fits: GeneFits
    expressing: np.ndarray

    def errors(self, q: str) -> np.ndarray:
        """``[replicates]`` relative errors of burst frequency (``q="bf"``) or size (``"bs"``);
        infinite for a gene with no expressing cell."""
        if q == "bf":
            err = np.abs(self.fits.burst_frequency / self.k_on - 1)
        else:
            err = np.abs(self.fits.burst_size / (self.k_syn / self.k_off) - 1)
        return np.where(np.isnan(err), np.inf, err)

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            c: torch.from_numpy(np.asarray(v)) for c, v in self.fits.to_state().items()
        }
        state.update(
            true_kinetics=torch.tensor([self.k_on, self.k_off, self.k_syn], dtype=DTYPE),
            expressing=torch.from_numpy(np.asarray(self.expressing, dtype=np.float64)),
        )
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RecoveryCell:
        k_on, k_off, k_syn = (float(v) for v in state["true_kinetics"])
        fits = GeneFits.from_state(
            {c: v.numpy() for c, v in state.items() if c in GeneFits.COLUMNS}
        )
        return cls(k_on, k_off, k_syn, fits, state["expressing"].numpy())


@dataclass
class RecoveryResult:
    """Recovery of burst frequency (``bf``) and burst size (``bs``) per grid cell.

    Every array is ``[len(k_on), len(k_off)]``, a statistic over the replicates of a cell:
    ``*_error`` median relative error over all replicates, ``*_error_ident`` over those not
    flagged for that quantity (NaN if none), ``*_ratio`` median 95 % interval ratio,
    ``*_structural`` / ``*_practical`` fractions flagged, ``expressing`` median fraction of
    cells with a non-zero count. ``cells`` holds every replicate's fit, by grid index
    ``(i, j)``; ``resumed`` counts the cells loaded from a checkpoint; ``seconds`` is the wall
    time of the work done now.
    """

    k_on: list[float]
    k_off: list[float]
    k_syn: float
    num_cells: int
    replicates: int
    max_ci_ratio: float
    bf_error: np.ndarray
    bs_error: np.ndarray
    bf_error_ident: np.ndarray
    bs_error_ident: np.ndarray
    bf_ratio: np.ndarray
    bs_ratio: np.ndarray
    bf_structural: np.ndarray
    bs_structural: np.ndarray
    bf_practical: np.ndarray
    bs_practical: np.ndarray
    expressing: np.ndarray
    seconds: float
    config: RecoveryConfig | None = None
    cells: dict[tuple[int, int], RecoveryCell] = field(default_factory=dict, repr=False)
    resumed: int = 0

    ARRAYS = (
        "bf_error",
        "bs_error",
        "bf_error_ident",
        "bs_error_ident",
        "bf_ratio",
        "bs_ratio",
        "bf_structural",
        "bs_structural",
        "bf_practical",
        "bs_practical",
        "expressing",
    )

    def verdict(self, q: str, i: int, j: int) -> str:
        """``"S"`` (mostly structural), ``"P"`` (mostly practical) or ``""`` for quantity ``q``."""
        s, p = getattr(self, f"{q}_structural")[i, j], getattr(self, f"{q}_practical")[i, j]
        if s + p <= 0.5:
            return ""
        return "S" if s >= p else "P"


def _median_where(values: np.ndarray, keep: np.ndarray) -> float:
    """Median of the kept entries (NaN when none is kept)."""
    return float(np.median(values[keep])) if keep.any() else math.nan


def _summaries(cell: RecoveryCell) -> dict[str, float]:
    f = cell.fits
    out: dict[str, float] = {}
    for q in ("bf", "bs"):
        err = cell.errors(q)
        structural, practical = getattr(f, f"{q}_structural"), getattr(f, f"{q}_practical")
        ratio = getattr(f, f"{q}_ci_ratio")
        out[f"{q}_error"] = float(np.median(err))
        out[f"{q}_error_ident"] = _median_where(err, ~(structural | practical))
        out[f"{q}_ratio"] = float(np.median(np.where(np.isnan(ratio), np.inf, ratio)))
        out[f"{q}_structural"] = float(np.mean(structural))
        out[f"{q}_practical"] = float(np.mean(practical))
    out["expressing"] = float(np.median(cell.expressing))
    return out


def _default_chunk_size(replicates: int, backend: str, num_workers: int | None) -> int:
    """One chunk per worker: a cell's replicates spread over the pool."""
    if backend == "serial":
        return replicates
    workers = num_workers or os.cpu_count() or 1
    return max(1, math.ceil(replicates / workers))


def telegraph_recovery_study(
    config: RecoveryConfig = RecoveryConfig(),
    *,
    chunk_size: int | None = None,
    backend: str = "serial",
    num_workers: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
) -> RecoveryResult:
    """Simulate every grid cell ``replicates`` times, fit with intervals, summarise the recovery.

    Per cell and quantity (burst frequency, burst size): the median relative error over all
    replicates and over the replicates judged identifiable for that quantity, the median
    profile-interval ratio and the fractions flagged structurally / practically (see
    :func:`~stochgrad.apps.telegraph.fit_genes`). Genes simulated with no expressing cell count
    as flagged both ways with infinite error.

    Args:
        config: the settings.
        chunk_size: genes per fitting job (default: a cell's replicates spread over the
            workers); ``backend``, ``num_workers``: as in
            :func:`~stochgrad.apps.telegraph.fit_counts`. They change the numbers only by
            rounding (~1e-12 relative: a batch's series length follows its largest rate).
        checkpoint: a ``.pt`` file saving each finished cell (``None``: none).
        resume: reuse the finished cells of ``checkpoint``.
        progress: advanced by ``replicates`` (the cell's simulated genes) per finished cell,
            after it is saved; at once for the cells found finished in ``checkpoint``.
        on_resume: called with the numbers of finished and partly run cells found in
            ``checkpoint``, before any work, when there are any.
        timeout: seconds one fitting job may run (``None``: no limit); past it,
            :class:`stochgrad.parallel.ChunkTimeout` stops the study, the finished cells saved.

    Returns:
        :class:`RecoveryResult`.
    """
    if chunk_size is None:
        chunk_size = _default_chunk_size(config.replicates, backend, num_workers)
    keys = [(i, j) for i in range(len(config.k_on)) for j in range(len(config.k_off))]

    def run_cell(key, state, save) -> RecoveryCell:
        i, j = key
        a, b = config.k_on[i], config.k_off[j]
        rates = torch.tensor([[a, b, config.k_syn]] * config.replicates, dtype=DTYPE)
        x = simulate(
            *rates.T,
            config.num_cells,
            generator=cell_generator(config.seed, i, j),
            method=config.method,
        )
        fits = fit_counts(
            x,
            max_ci_ratio=config.max_ci_ratio,
            chunk_size=chunk_size,
            backend=backend,
            num_workers=num_workers,
            timeout=timeout,
        )
        expressing = (x > 0).to(DTYPE).mean(1).numpy()
        return RecoveryCell(a, b, config.k_syn, fits, expressing)

    def finished(key, cell: RecoveryCell) -> None:  # after the cell is saved
        if progress is not None:
            progress(config.replicates)

    grid = run_grid(
        keys,
        run_cell,
        config=config,
        result_type=RecoveryCell,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        cell_units=lambda key: config.replicates,
        on_result=finished,
        on_resume=on_resume,
    )
    shape = (len(config.k_on), len(config.k_off))
    arrays = {name: np.full(shape, math.nan) for name in RecoveryResult.ARRAYS}
    for (i, j), cell in grid.results.items():
        for name, value in _summaries(cell).items():
            arrays[name][i, j] = value
    return RecoveryResult(
        k_on=list(config.k_on),
        k_off=list(config.k_off),
        k_syn=config.k_syn,
        num_cells=config.num_cells,
        replicates=config.replicates,
        max_ci_ratio=config.max_ci_ratio,
        seconds=grid.seconds,
        config=config,
        cells=dict(grid.results),
        resumed=grid.resumed,
        **arrays,
    )


def recovery_study(
    k_on: Sequence[float],
    k_off: Sequence[float],
    *,
    k_syn: float = 100.0,
    num_cells: int = 1000,
    replicates: int = 10,
    seed: int = 0,
    method: str = "gillespie",
    max_ci_ratio: float = MAX_CI_RATIO,
    chunk_size: int | None = None,
    backend: str = "serial",
    num_workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RecoveryResult:
    """:func:`telegraph_recovery_study` with the settings as keywords (the signature of
    ``stochgrad.apps.telegraph.recovery_study`` of earlier releases); no checkpoint.

    ``progress`` is advanced by the number of genes of each finished grid cell.

    >>> r = recovery_study([1.0], [1.0], k_syn=20.0, num_cells=200, replicates=1, method="exact")
    >>> r.bf_error.shape
    (1, 1)
    """
    config = RecoveryConfig(
        k_on=tuple(k_on),
        k_off=tuple(k_off),
        k_syn=k_syn,
        num_cells=num_cells,
        replicates=replicates,
        seed=seed,
        method=method,
        max_ci_ratio=max_ci_ratio,
    )
    return telegraph_recovery_study(
        config,
        chunk_size=chunk_size,
        backend=backend,
        num_workers=num_workers,
        progress=progress,
    )
