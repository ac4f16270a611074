r"""The EIG estimators of :mod:`stochgrad.apps.design` against their references, over replicates.

On one design of one model the study runs every estimator ``replicates`` times, each cell (an
estimator × a replicate) with its own random stream
(:func:`~stochgrad.studies.scaffold.cell_generator`), and sets the estimates beside the
reference: the closed form for the linear-Gaussian model of Pyro's OED tests (prior sds
(1, 1.5), noise sd 1, :math:`X = [[1,0],[0,1],[0,1]]`), Gauss-Hermite quadrature for the
logistic dose-response model at the given doses (``stochgrad design eig``).

The estimators (:data:`EIG_COMPARISON_ESTIMATORS`): the nested Monte Carlo EIG (an upper bound
in expectation), the PCE lower bound, and the design gradient of the PCE bound by the score
function and (linear model only: its outcomes reparameterise) pathwise.

Examples:
    >>> res = eig_comparison_study(EIGComparisonConfig(num_outer=64, num_inner=32))
    >>> [c.estimator for c in res.cells]
    ['nmc', 'pce', 'score', 'pathwise']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.design import (
    DESIGN_MODELS,
    PYRO_LINEAR_DESIGN,
    PYRO_PRIOR_SD,
    LinearGaussianModel,
    LogisticDoseResponse,
    eig_gradient,
    nmc_eig,
    pce_eig,
)
from stochgrad.checkpoint import saved_float, saved_int, saved_tensor, saved_value
from stochgrad.studies.scaffold import cell_generator, run_grid

__all__ = [
    "EIG_COMPARISON_ESTIMATORS",
    "EIGCell",
    "EIGComparison",
    "EIGComparisonConfig",
    "EIGSummary",
    "comparison_estimators",
    "eig_comparison_study",
]

#: Every estimator of the comparison: EIG by NMC and PCE, the PCE bound's gradient by the score
#: function and pathwise. The index of a name seeds its cells' streams.
EIG_COMPARISON_ESTIMATORS = ("nmc", "pce", "score", "pathwise")


def comparison_estimators(model: str) -> tuple[str, ...]:
    """The estimators that apply to ``model`` (pathwise needs continuous outcomes).

    >>> comparison_estimators("logistic")
    ('nmc', 'pce', 'score')
    """
    check_choice("model", model, DESIGN_MODELS)
    if model == "linear":
        return EIG_COMPARISON_ESTIMATORS
    return tuple(e for e in EIG_COMPARISON_ESTIMATORS if e != "pathwise")


@dataclass(frozen=True)
class EIGComparisonConfig:
    """Settings of :func:`eig_comparison_study`.

    Attributes:
        model: ``"linear"`` (Pyro's test model, closed form) or ``"logistic"`` (quadrature).
        doses: the logistic model's design (1 to 16 doses; unused by the linear model).
        num_outer: N outer samples per estimate (>= 2).
        num_inner: L inner (contrastive) samples per outer sample.
        seed: the study's seed.
        replicates: independent repeats of every estimator (a checkpoint made with fewer is
            extended, not refused).
    """

    model: str = "linear"
    doses: tuple[float, ...] = (-1.0, 0.0, 1.0, 2.0)
    num_outer: int = 4000
    num_inner: int = 1000
    seed: int = 0
    replicates: int = 1

    def __post_init__(self) -> None:
        check_choice("model", self.model, DESIGN_MODELS)
        check_int("num_outer", self.num_outer, minimum=2)
        check_int("num_inner", self.num_inner, minimum=1)
        check_seed("seed", self.seed)
        check_int("replicates", self.replicates, minimum=1)
        doses = tuple(check_float("doses", d) for d in self.doses)
        if self.model == "logistic" and not 1 <= len(doses) <= LogisticDoseResponse.max_doses:
            raise ValueError(
                f"doses: the logistic model takes 1 to {LogisticDoseResponse.max_doses} doses, "
                f"got {len(doses)}"
            )
        object.__setattr__(self, "doses", doses)

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must share with this run (the design, not unused doses; not the
        number of replicates)."""
        return {
            "model": self.model,
            "design": _design(self).tolist(),
            "num_outer": self.num_outer,
            "num_inner": self.num_inner,
            "seed": self.seed,
        }


def _design(config: EIGComparisonConfig) -> torch.Tensor:
    if config.model == "linear":
        return torch.tensor(PYRO_LINEAR_DESIGN, dtype=torch.float64)
    return torch.tensor(config.doses, dtype=torch.float64)


def _model(config: EIGComparisonConfig) -> LinearGaussianModel | LogisticDoseResponse:
    if config.model == "linear":
        sd = torch.tensor(PYRO_PRIOR_SD, dtype=torch.float64)
        return LinearGaussianModel(torch.diag(sd**2), noise_sd=1.0)
    return LogisticDoseResponse()


@dataclass(frozen=True)
class EIGCell:
    """One estimate of one estimator (one replicate), entry by entry.

    Attributes:
        estimator: a name of :data:`EIG_COMPARISON_ESTIMATORS`.
        replicate: the replicate's index.
        estimate: the estimate (one entry for the EIG, one per design entry for a gradient).
        stderr: its standard errors.
        seconds: wall time of the estimate.
    """

    estimator: str
    replicate: int
    estimate: np.ndarray
    stderr: np.ndarray
    seconds: float

    @property
    def quantity(self) -> str:
        """``"EIG"`` or ``"dEIG/dd"`` (a design gradient)."""
        return "EIG" if self.estimator in ("nmc", "pce") else "dEIG/dd"

    def to_state(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "replicate": self.replicate,
            "estimate": torch.from_numpy(self.estimate),
            "stderr": torch.from_numpy(self.stderr),
            "seconds": self.seconds,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EIGCell:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes."""
        estimate = saved_tensor(state, "estimate", shape=(None,), dtype=torch.float64, finite=True)
        stderr = saved_tensor(
            state,
            "stderr",
            shape=tuple(estimate.shape),
            dtype=torch.float64,
            finite=True,
            minimum=0.0,
        )
        return cls(
            check_choice("estimator", saved_value(state, "estimator"), EIG_COMPARISON_ESTIMATORS),
            saved_int(state, "replicate", minimum=0),
            estimate.numpy(),
            stderr.numpy(),
            saved_float(state, "seconds", minimum=0.0),
        )


@dataclass(frozen=True)
class EIGSummary:
    """An estimator over the replicates, entry by entry.

    Attributes:
        estimator: its name.
        estimate: mean over replicates.
        stderr: standard error of that mean, from the reported standard errors
            (:math:`\\sqrt{\\sum_r s_r^2} / R`).
        reference: the closed form or quadrature value.
        z: ``(estimate - reference) / stderr``.
        spread: standard deviation over replicates divided by the mean reported standard error
            (about 1 when the standard errors are right; NaN with one replicate).
    """

    estimator: str
    estimate: np.ndarray
    stderr: np.ndarray
    reference: np.ndarray
    z: np.ndarray
    spread: np.ndarray


@dataclass
class EIGComparison:
    """The outcome of :func:`eig_comparison_study`.

    Attributes:
        config: the settings.
        design: the design every estimator was evaluated at.
        reference_label: ``"closed form"`` or ``"quadrature"``.
        reference_eig: the reference EIG.
        reference_gradient: the reference design gradient (shaped like ``design``).
        cells: estimator by estimator, replicate by replicate.
        resumed: cells loaded from a checkpoint.
    """

    config: EIGComparisonConfig
    design: np.ndarray
    reference_label: str
    reference_eig: float
    reference_gradient: np.ndarray
    cells: list[EIGCell]
    resumed: int = 0

    @property
    def estimators(self) -> list[str]:
        """The estimators, in the order of the cells."""
        return list(dict.fromkeys(c.estimator for c in self.cells))

    def reference(self, estimator: str) -> np.ndarray:
        """The reference value(s) an estimator is compared with, flattened."""
        if estimator in ("nmc", "pce"):
            return np.array([self.reference_eig])
        return self.reference_gradient.reshape(-1)

    def summary(self, estimator: str) -> EIGSummary:
        """The estimator's replicates combined (see :class:`EIGSummary`)."""
        cells = [c for c in self.cells if c.estimator == estimator]
        if not cells:
            raise ValueError(f"estimator {estimator!r} is not in the study")
        est = np.stack([c.estimate for c in cells])
        se = np.stack([c.stderr for c in cells])
        r = len(cells)
        mean, stderr = est.mean(0), np.sqrt((se**2).sum(0)) / r
        ref = self.reference(estimator)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = est.std(0, ddof=1) / se.mean(0) if r > 1 else np.full_like(mean, np.nan)
        return EIGSummary(estimator, mean, stderr, ref, (mean - ref) / stderr, spread)


def eig_comparison_study(
    config: EIGComparisonConfig = EIGComparisonConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> EIGComparison:
    """Every estimator of :func:`comparison_estimators` × every replicate against the reference.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file saving each finished cell (``None``: none).
        resume: reuse the finished cells of ``checkpoint``.
        progress: advanced by one per cell.
        on_resume: called with the numbers of finished and partly run cells found in
            ``checkpoint``, before any work, when there are any.

    Returns:
        :class:`EIGComparison`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` was made with other settings.
    """
    model, design = _model(config), _design(config)
    design = model.check_design(design)
    if config.model == "linear":
        label = "closed form"
        ref, ref_grad = float(model.exact_eig(design)), model.exact_eig_gradient(design)
    else:
        label = "quadrature"
        ref, ref_grad = float(model.quadrature_eig(design)), model.quadrature_eig_gradient(design)
    names = comparison_estimators(config.model)
    keys = [(e, r) for e in names for r in range(config.replicates)]
    n, m = config.num_outer, config.num_inner

    def run_cell(key, state, save) -> EIGCell:
        name, rep = key
        gen = cell_generator(config.seed, rep, EIG_COMPARISON_ESTIMATORS.index(name))
        t0 = time.perf_counter()
        if name in ("nmc", "pce"):
            fn = nmc_eig if name == "nmc" else pce_eig
            e = fn(model, design, num_outer=n, num_inner=m, generator=gen)
            estimate, stderr = np.array([e.value]), np.array([e.stderr])
        else:
            g = eig_gradient(model, design, num_outer=n, num_inner=m, method=name, generator=gen)
            estimate, stderr = g.grad.reshape(-1).numpy(), g.stderr.reshape(-1).numpy()
        return EIGCell(name, rep, estimate, stderr, time.perf_counter() - t0)

    out = run_grid(
        keys,
        run_cell,
        config=config.settings(),
        result_type=EIGCell,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        on_resume=on_resume,
    )
    return EIGComparison(
        config,
        design.numpy(),
        label,
        ref,
        ref_grad.numpy(),
        [out.results[k] for k in keys],
        out.resumed,
    )
