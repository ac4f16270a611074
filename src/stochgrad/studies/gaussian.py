r"""The two Gaussian variance studies, as grids of checkpointed cells.

- :func:`demo_study`: the five estimators of :math:`\nabla_{(\theta, \sigma)} \mathbb E[(x-a)^2]`,
  :math:`x \sim \mathcal N(\theta, \sigma^2)`, measured by Monte Carlo and set beside their closed
  forms (``stochgrad demo``; derivations in ``docs/variance.md``).
- :func:`compare_study`: the variance study of Mohamed et al. (JMLR 2020, Sec. 3, Figs. 2-3):
  three families of :math:`f` over a grid of :math:`k`, quadrature against Monte Carlo
  (``stochgrad compare``).

Each cell (a grid point × an estimator) has its own random stream
(:func:`~stochgrad.studies.scaffold.cell_generator`), so a resumed study gives the numbers of an
uninterrupted one.

>>> res = demo_study(DemoConfig(samples=200, deltas=(1.0,), sigmas=(0.5,)))
>>> len(res.cells)
5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.checkpoint import saved_float, saved_numbers, saved_tensor, saved_value
from stochgrad.studies import variance as V
from stochgrad.studies.scaffold import cell_generator, relative_difference, run_grid

__all__ = [
    "CompareCell",
    "CompareConfig",
    "CompareResult",
    "DemoCell",
    "DemoConfig",
    "DemoResult",
    "compare_study",
    "demo_study",
]


def _z(measured: float, reference: float, se: float) -> float:
    if abs(reference) <= 1e-20 or se <= 0:
        return float("nan")
    return (measured - reference) / se


def _pair(state: dict[str, Any], key: str, minimum: float | None = None) -> np.ndarray:
    """A saved per-coordinate ``(theta, sigma)`` record: a float64 tensor of 2 finite values."""
    t = saved_tensor(state, key, shape=(2,), dtype=torch.float64, finite=True, minimum=minimum)
    return t.numpy()


def _floats(state: dict[str, Any], key: str, minimum: float | None = None) -> tuple[float, ...]:
    return tuple(saved_numbers(state, key, float, length=2, minimum=minimum))


def _same(name: str, saved: Any, expected: Any) -> None:
    """Refuse a saved cell whose grid point is not the one its key stands for."""
    if saved != expected:
        raise ValueError(f"{name} is {saved!r}, but this cell's is {expected!r}")


def _tensors(obj: Any) -> dict[str, Any]:
    return {
        k: (torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v)
        for k, v in asdict(obj).items()
    }


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`demo_study`.

    Attributes:
        samples: samples per estimator and grid point (>= 2: leave-one-out baselines).
        seed: the study's seed.
        deltas: values of :math:`\\theta - a` in the table.
        sigmas: values of :math:`\\sigma` (> 0).
        target: :math:`a` in :math:`f(x) = (x - a)^2`.
        plot_delta: :math:`\\theta - a` of the plot's sweep over ``sigmas`` (measured separately
            when it is not one of ``deltas``).
    """

    samples: int = 1_000_000
    seed: int = 0
    deltas: tuple[float, ...] = (0.0, 1.0, 3.0)
    sigmas: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0)
    target: float = 2.0
    plot_delta: float = 1.0

    def __post_init__(self) -> None:
        check_int("samples", self.samples, minimum=2)
        check_seed("seed", self.seed)
        if not self.deltas or not self.sigmas:
            raise ValueError("deltas and sigmas must each hold at least one value")
        for s in self.sigmas:
            check_float("sigmas", s, minimum=0.0, open_min=True)
        for d in self.deltas:
            check_float("deltas", d)
        check_float("target", self.target)
        check_float("plot_delta", self.plot_delta)
        object.__setattr__(self, "deltas", tuple(float(d) for d in self.deltas))
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))


@dataclass(frozen=True)
class DemoCell:
    """Measured and closed-form numbers for one estimator at one grid point (per coordinate
    :math:`(\\theta, \\sigma)`)."""

    delta: float
    sigma: float
    estimator: str
    true_grad: tuple[float, float]
    grad: np.ndarray
    stderr: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    closed: tuple[float, float]

    def rel(self, i: int) -> float:
        """Relative difference of the measured variance from the closed form."""
        return relative_difference(float(self.variance[i]), self.closed[i])

    def z(self, i: int) -> float:
        """(measured - closed form) / standard error of the measured variance."""
        return _z(float(self.variance[i]), self.closed[i], float(self.variance_se[i]))

    def to_state(self) -> dict[str, Any]:
        return _tensors(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DemoCell:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes."""
        return cls(
            delta=saved_float(state, "delta"),
            sigma=saved_float(state, "sigma", minimum=0.0),
            estimator=check_choice(
                "estimator", saved_value(state, "estimator"), V.VARIANCE_ESTIMATORS
            ),
            true_grad=_floats(state, "true_grad"),
            grad=_pair(state, "grad"),
            stderr=_pair(state, "stderr", minimum=0.0),
            variance=_pair(state, "variance", minimum=0.0),
            variance_se=_pair(state, "variance_se", minimum=0.0),
            closed=_floats(state, "closed", minimum=0.0),
        )


@dataclass
class DemoResult:
    """The outcome of :func:`demo_study`.

    Attributes:
        config: the settings.
        cells: the table's cells, grid point by grid point, estimator by estimator.
        plot_sigmas: the sorted sigmas of the plot's sweep.
        measured: estimator -> measured variances ``[len(plot_sigmas), 2]`` at ``plot_delta``.
        resumed: cells loaded from a checkpoint.
    """

    config: DemoConfig
    cells: list[DemoCell]
    plot_sigmas: np.ndarray
    measured: dict[str, np.ndarray]
    resumed: int = 0


def demo_study(
    config: DemoConfig = DemoConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Measure every estimator's single-sample variance at every grid point.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file saving each finished cell (``None``: none).
        resume: reuse the finished cells of ``checkpoint``.
        progress: advanced by one per cell.
        on_resume: called with the numbers of finished and partly run cells found in
            ``checkpoint``, before any work, when there are any.

    Returns:
        :class:`DemoResult`.
    """
    ests = V.VARIANCE_ESTIMATORS
    grid = [(d, s) for d in config.deltas for s in config.sigmas]
    plot_sigmas = np.array(sorted(set(config.sigmas)))
    extra = (
        [] if config.plot_delta in config.deltas else [(config.plot_delta, s) for s in plot_sigmas]
    )
    points = {0: grid, 1: extra}
    keys = [(part, gi, ei) for part, pts in points.items() for gi in range(len(pts))
            for ei in range(len(ests))]  # fmt: skip
    a = config.target

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x - a) ** 2

    def run_cell(key, state, save) -> DemoCell:
        part, gi, ei = key
        d, s = points[part][gi]
        est = ests[ei]
        gen = cell_generator(config.seed, part, gi, ei)
        mc = V.monte_carlo(est, f, a + d, s, num_samples=config.samples, generator=gen)
        return DemoCell(
            d,
            s,
            est,
            V.quadratic_gradient(d, s),
            mc.grad,
            mc.stderr,
            mc.variance,
            mc.variance_se,
            V.quadratic_variance(est, d, s, num_samples=config.samples),
        )

    def check_cell(key, cell: DemoCell) -> None:
        part, gi, ei = key
        d, s = points[part][gi]
        _same("delta", cell.delta, d)
        _same("sigma", cell.sigma, s)
        _same("estimator", cell.estimator, ests[ei])

    out = run_grid(
        keys,
        run_cell,
        config=config,
        result_type=DemoCell,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        on_resume=on_resume,
        check_result=check_cell,
    )
    cells = [out.results[k] for k in keys if k[0] == 0]
    every = list(out.results.values())
    measured = {
        e: np.array(
            [
                next(
                    c.variance
                    for c in every
                    if c.estimator == e and c.delta == config.plot_delta and c.sigma == s
                )
                for s in plot_sigmas
            ]
        )
        for e in ests
    }
    return DemoResult(config, cells, plot_sigmas, measured, out.resumed)


def demo_cells(config: DemoConfig) -> int:
    """The number of cells of :func:`demo_study` (for a progress bar)."""
    extra = 0 if config.plot_delta in config.deltas else len(set(config.sigmas))
    return (len(config.deltas) * len(config.sigmas) + extra) * len(V.VARIANCE_ESTIMATORS)


# ---------------------------------------------------------------------------------------------
# compare (Mohamed et al. 2020, Sec. 3)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareConfig:
    """Settings of :func:`compare_study`.

    Attributes:
        samples: Monte Carlo samples per estimator and grid point (>= 2: optimal baseline).
        seed: the study's seed.
        points: values of ``k`` per family of functions.
        mu, sigma: the Gaussian's mean and standard deviation.
    """

    samples: int = 200_000
    seed: int = 0
    points: int = 20
    mu: float = 1.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        check_int("samples", self.samples, minimum=2)
        check_seed("seed", self.seed)
        check_int("points", self.points, minimum=1)
        check_float("mu", self.mu)
        check_float("sigma", self.sigma, minimum=0.0, open_min=True)


@dataclass(frozen=True)
class CompareCell:
    """Quadrature and Monte Carlo variances for one estimator, one function, one ``k``."""

    family: str
    k: float
    estimator: str
    quad: tuple[float, float]
    mc: np.ndarray
    mc_se: np.ndarray

    def z(self, i: int) -> float:
        """(Monte Carlo - quadrature) / standard error of the Monte Carlo variance."""
        return _z(float(self.mc[i]), self.quad[i], float(self.mc_se[i]))

    def rel(self, i: int) -> float:
        """Relative difference of Monte Carlo from quadrature (NaN at a zero reference)."""
        if abs(self.quad[i]) <= 1e-20:
            return float("nan")
        return relative_difference(float(self.mc[i]), self.quad[i])

    def to_state(self) -> dict[str, Any]:
        return _tensors(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CompareCell:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes."""
        return cls(
            family=check_choice("family", saved_value(state, "family"), V.FAMILIES),
            k=saved_float(state, "k"),
            estimator=check_choice(
                "estimator", saved_value(state, "estimator"), V.COMPARE_ESTIMATORS
            ),
            quad=_floats(state, "quad", minimum=0.0),
            mc=_pair(state, "mc", minimum=0.0),
            mc_se=_pair(state, "mc_se", minimum=0.0),
        )


@dataclass
class CompareResult:
    """The outcome of :func:`compare_study`: every cell, and how many came from a checkpoint."""

    config: CompareConfig
    cells: list[CompareCell]
    resumed: int = 0


def compare_study(
    config: CompareConfig = CompareConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> CompareResult:
    """Quadrature and Monte Carlo variances over the three families and their ``k`` grids.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file saving each finished cell (``None``: none).
        resume: reuse the finished cells of ``checkpoint``.
        progress: advanced by one per cell.
        on_resume: called with the numbers of finished and partly run cells found in
            ``checkpoint``, before any work, when there are any.

    Returns:
        :class:`CompareResult`.
    """
    ests = V.COMPARE_ESTIMATORS
    fams = list(V.FAMILIES.values())
    grids = [fam.grid(config.points) for fam in fams]
    keys = [(fi, ki, ei) for fi in range(len(fams)) for ki in range(config.points)
            for ei in range(len(ests))]  # fmt: skip

    def run_cell(key, state, save) -> CompareCell:
        fi, ki, ei = key
        k = float(grids[fi][ki])
        obj = fams[fi].make(k)
        est = ests[ei]
        quad = V.quadrature_variance(est, obj, config.mu, config.sigma)
        gen = cell_generator(config.seed, fi, ki, ei)
        mc = V.monte_carlo(
            est, obj.torch_f, config.mu, config.sigma, num_samples=config.samples, generator=gen
        )
        return CompareCell(fams[fi].key, k, est, quad, mc.variance, mc.variance_se)

    def check_cell(key, cell: CompareCell) -> None:
        fi, ki, ei = key
        _same("family", cell.family, fams[fi].key)
        _same("k", cell.k, float(grids[fi][ki]))
        _same("estimator", cell.estimator, ests[ei])

    out = run_grid(
        keys,
        run_cell,
        config=config,
        result_type=CompareCell,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        on_resume=on_resume,
        check_result=check_cell,
    )
    return CompareResult(config, [out.results[k] for k in keys], out.resumed)
