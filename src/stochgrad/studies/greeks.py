r"""Price and Greeks of one option by every valid estimator, against QuantLib, resumable by chunk.

The study behind ``stochgrad greeks``: :class:`GreeksConfig` holds the contract, the model and the
simulation settings; :func:`greeks_study` computes QuantLib's reference
(:func:`~stochgrad.apps.finance.quantlib_reference`, when QuantLib is installed) and runs
:func:`~stochgrad.apps.finance.estimate_greeks` with every valid (Greek, method) on the same
paths. All estimators share one stream of paths, so the unit of work is a *chunk of paths*: the
study is one cell of :func:`~stochgrad.studies.scaffold.run_grid` whose mid-run state (the
running moments and the generator's state) is saved after every chunk. An interrupted study
resumes at the next chunk and ends with the numbers of an uninterrupted one.

>>> res = greeks_study(GreeksConfig(payoff="digital", paths=2000, chunk=1000))
>>> [e.method for e in res.result.estimates if e.greek == "delta"]
['lr']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.finance import (
    MONITORING,
    PAYOFFS,
    GreekEstimate,
    GreeksResult,
    Heston,
    Market,
    Option,
    estimate_greeks,
    quantlib_reference,
)
from stochgrad.studies.scaffold import run_grid

__all__ = ["MODELS", "GreeksCell", "GreeksConfig", "GreeksStudy", "default_steps", "greeks_study"]

#: The price dynamics: geometric Brownian motion, or Heston's stochastic variance.
MODELS: tuple[str, ...] = ("gbm", "heston")


def default_steps(payoff: str, monitoring: str = "bridge", model: str = "gbm") -> int:
    """Time steps when none are given: Heston 100, Asians 12 dates, a barrier 1 with the
    Brownian bridge (exact) and 250 dates monitored discretely, 1 otherwise.

    >>> default_steps("asian"), default_steps("barrier", "discrete"), default_steps("call", model="heston")
    (12, 250, 100)
    """
    if model == "heston":
        return 100
    if payoff in ("asian", "geometric"):
        return 12
    if payoff == "barrier":
        return 1 if monitoring == "bridge" else 250
    return 1


@dataclass(frozen=True)
class GreeksConfig:
    """Settings of :func:`greeks_study` (the defaults are those of ``stochgrad greeks``).

    Attributes:
        payoff: one of :data:`~stochgrad.apps.finance.PAYOFFS`.
        spot, strike, vol, rate, maturity: the market and the strike (``vol`` is GBM's; under
            Heston it sets ``v0`` when ``v0`` is ``None``).
        dividend: the continuous dividend yield :math:`q` (the drift is :math:`r - q`).
        barrier: the up-and-out level (barrier only).
        monitoring: ``"bridge"`` or ``"discrete"`` (barrier only).
        steps: monitoring dates or time steps; ``None``: :func:`default_steps` (resolved here).
        model: ``"gbm"`` or ``"heston"``.
        v0, kappa, theta, xi, rho: Heston's parameters (``v0`` default ``vol**2``).
        paths: Monte Carlo paths.
        chunk: paths per chunk (and per checkpoint).
        seed: the seed of the normals (``numpy.random.default_rng(seed)``).
        float32: simulate in float32 (the moments are float64 always).

    Raises:
        ValueError, TypeError: a setting out of range (naming it), a barrier not above the
            strike, a barrier under Heston.
    """

    payoff: str = "call"
    spot: float = 100.0
    strike: float = 100.0
    vol: float = 0.2
    rate: float = 0.05
    maturity: float = 1.0
    dividend: float = 0.0
    barrier: float = 120.0
    monitoring: str = "bridge"
    steps: int | None = None
    model: str = "gbm"
    v0: float | None = None
    kappa: float = 1.5
    theta: float = 0.04
    xi: float = 0.5
    rho: float = -0.7
    paths: int = 1_000_000
    chunk: int = 1 << 18
    seed: int = 0
    float32: bool = False

    def __post_init__(self) -> None:
        check_choice("payoff", self.payoff, PAYOFFS)
        check_choice("monitoring", self.monitoring, MONITORING)
        check_choice("model", self.model, MODELS)
        if self.steps is None:
            object.__setattr__(
                self, "steps", default_steps(self.payoff, self.monitoring, self.model)
            )
        check_int("steps", self.steps, minimum=1)
        check_int("paths", self.paths, minimum=1)
        check_int("chunk", self.chunk, minimum=1)
        check_seed("seed", self.seed)
        check_float("barrier", self.barrier, minimum=0.0, open_min=True)
        if self.v0 is not None:
            check_float("v0", self.v0, minimum=0.0, open_min=True)
        self.market()
        self.option()
        self.heston()
        if self.model == "heston" and self.payoff == "barrier":
            raise ValueError(
                "payoff 'barrier' needs the GBM Brownian-bridge crossing probability; "
                "use model 'gbm'"
            )

    def market(self) -> Market:
        """The :class:`~stochgrad.apps.finance.Market`."""
        return Market(self.spot, self.vol, self.rate, self.maturity, self.dividend)

    def option(self) -> Option:
        """The :class:`~stochgrad.apps.finance.Option`."""
        return Option(
            self.payoff,
            self.strike,
            barrier=self.barrier if self.payoff == "barrier" else None,
            steps=self.steps,
            monitoring=self.monitoring,
        )

    def heston(self) -> Heston | None:
        """The :class:`~stochgrad.apps.finance.Heston` dynamics (``None`` under GBM)."""
        if self.model != "heston":
            return None
        v0 = self.vol**2 if self.v0 is None else self.v0
        return Heston(v0, self.kappa, self.theta, self.xi, self.rho)

    @property
    def dtype(self) -> torch.dtype:
        """The simulation's dtype."""
        return torch.float32 if self.float32 else torch.float64

    def settings(self) -> dict[str, Any]:
        """The settings that determine the numbers (what a checkpoint is compared on): the
        barrier and monitoring only for a barrier, Heston's parameters only under Heston, the
        dividend yield only when not 0."""
        s: dict[str, Any] = {
            "payoff": self.payoff,
            "spot": self.spot,
            "strike": self.strike,
            "rate": self.rate,
            "maturity": self.maturity,
            "steps": self.option().num_steps(self.heston()),
            "model": self.model,
            "paths": self.paths,
            "chunk": self.chunk,
            "seed": self.seed,
            "float32": self.float32,
        }
        if self.dividend:  # only when there is one: checkpoints from before dividends still match
            s["dividend"] = self.dividend
        if self.payoff == "barrier":
            s.update(barrier=self.barrier, monitoring=self.monitoring)
        h = self.heston()
        if h is None:
            s["vol"] = self.vol
        else:
            s.update(asdict(h))
        return s


@dataclass(frozen=True)
class GreeksCell:
    """The estimates of one run, as stored in the checkpoint (references are attached later)."""

    estimates: tuple[GreekEstimate, ...]
    refused: dict[str, dict[str, str]]
    seconds: float
    dtype: str

    def to_state(self) -> dict[str, Any]:
        return {
            "estimates": [e.to_dict() for e in self.estimates],
            "refused": self.refused,
            "seconds": self.seconds,
            "dtype": self.dtype,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GreeksCell:
        return cls(
            tuple(GreekEstimate.from_dict(e) for e in state["estimates"]),
            {g: dict(ms) for g, ms in state["refused"].items()},
            float(state["seconds"]),
            str(state["dtype"]),
        )


@dataclass
class GreeksStudy:
    """The outcome of :func:`greeks_study`.

    Attributes:
        config: the settings.
        result: every estimate, with QuantLib's value attached where one exists.
        reference: QuantLib's ``{greek: value}`` (empty without QuantLib or an analytic engine).
        quantlib: whether QuantLib was installed.
        resumed_paths: paths found finished in the checkpoint.
    """

    config: GreeksConfig
    result: GreeksResult
    reference: dict[str, float] = field(default_factory=dict)
    quantlib: bool = True
    resumed_paths: int = 0


def greeks_study(
    config: GreeksConfig = GreeksConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> GreeksStudy:
    """Price and every valid Greek estimate of ``config``'s option, against QuantLib.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file saved after every chunk of paths (``None``: none).
        resume: continue from ``checkpoint`` (otherwise it is started afresh).
        progress: advanced by the paths of each chunk, after the chunk is saved.
        on_resume: called once, before any work, with the paths already done and the total,
            when the checkpoint holds some.

    Returns:
        :class:`GreeksStudy`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other settings.
    """
    option, market, heston = config.option(), config.market(), config.heston()
    try:
        reference, quantlib = quantlib_reference(option, market, heston), True
    except ImportError:
        reference, quantlib = {}, False
    resumed = 0

    def found(finished: int, partial: int) -> None:
        nonlocal resumed
        if finished:
            resumed = config.paths
            if on_resume is not None:
                on_resume(config.paths, config.paths)

    def run_cell(key, state, save) -> GreeksCell:
        nonlocal resumed
        if state is not None:
            resumed = int(state.get("done", 0))
            if on_resume is not None:
                on_resume(resumed, config.paths)
        res = estimate_greeks(
            option,
            market,
            config.paths,
            heston=heston,
            seed=config.seed,
            chunk_size=config.chunk,
            dtype=config.dtype,
            progress=progress,
            state=state,
            save=save,
        )
        return GreeksCell(tuple(res.estimates), res.refused, res.seconds, res.dtype)

    grid = run_grid(
        [("paths",)],
        run_cell,
        config=config.settings(),
        result_type=GreeksCell,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        cell_units=lambda key: config.paths,
        on_resume=found,
    )
    cell = grid.results[("paths",)]
    estimates = [replace(e, reference=reference.get(e.greek)) for e in cell.estimates]
    result = GreeksResult(
        option=option,
        market=market,
        heston=heston,
        num_paths=config.paths,
        estimates=estimates,
        refused=cell.refused,
        seconds=cell.seconds,
        dtype=cell.dtype,
    )
    return GreeksStudy(config, result, reference, quantlib, resumed)
