r"""Price and Greeks of one option by every valid estimator, against QuantLib, resumable by chunk.

The study behind ``stochgrad greeks``: :class:`GreeksConfig` holds the contract, the model and the
simulation settings; :func:`greeks_study` computes QuantLib's reference
(:func:`~stochgrad.apps.finance.quantlib_reference`, when QuantLib is installed) and runs
:func:`~stochgrad.apps.finance.estimate_greeks` with every valid (Greek, method) on the same
paths. All estimators share one stream of paths, so the unit of work is a *chunk of paths*: the
study is one cell of :func:`~stochgrad.studies.scaffold.run_grid` whose mid-run state (the
running moments and the generator's state) is saved after every chunk. An interrupted study
resumes at the next chunk and ends with the numbers of an uninterrupted one.

A payoff of one's own is named as ``"module:function"`` (``payoff_fn``; :func:`load_payoff_fn`):
a function of the paths ``[n, steps + 1]`` -> ``[n]``, tried on a few paths when the settings
are made (:func:`~stochgrad.apps.finance.terms.check_path_payoff`), so a payoff that fails, has
the wrong shape or returns NaN is refused before any work.

>>> res = greeks_study(GreeksConfig(payoff="digital", paths=2000, chunk=1000))
>>> [e.method for e in res.result.estimates if e.greek == "delta"] == ["lr"]
True
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.finance import (
    MONITORING,
    PAYOFFS,
    GreekEstimate,
    GreeksResult,
    Heston,
    Market,
    Option,
    PathPayoff,
    estimate_greeks,
    quantlib_reference,
)
from stochgrad.apps.finance.market import DIRECTIONS, KINDS, KNOCKS
from stochgrad.apps.finance.terms import check_path_payoff
from stochgrad.studies.scaffold import run_grid

__all__ = [
    "MODELS",
    "GreeksCell",
    "GreeksConfig",
    "GreeksStudy",
    "default_barrier",
    "default_steps",
    "greeks_study",
    "load_payoff_fn",
]

#: The price dynamics: geometric Brownian motion, or Heston's stochastic variance.
MODELS: tuple[str, ...] = ("gbm", "heston")


def default_barrier(direction: str = "up", spot: float = 100.0) -> float:
    """The barrier when none is given: 20% above the spot (up), 20% below it (down).

    >>> default_barrier("up"), default_barrier("down", 50.0)
    (120.0, 40.0)
    """
    return (1.2 if direction == "up" else 0.8) * spot


def default_steps(payoff: str, monitoring: str = "bridge", model: str = "gbm") -> int:
    """Time steps when none are given: Heston 100, Asians 12 dates, a barrier 1 with the
    Brownian bridge (exact) and 250 dates monitored discretely, 1 otherwise (a payoff function
    of one's own too: give it its dates).

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
        barrier: the barrier level (barrier only); ``None``: :func:`default_barrier`.
        monitoring: ``"bridge"`` or ``"discrete"`` (barrier only).
        direction, knock, kind: ``"up"``/``"down"``, ``"out"``/``"in"``, ``"call"``/``"put"``
            (barrier only; default the up-and-out call).
        payoff_fn: ``"module:function"`` (or ``"file.py:function"``) of one's own payoff of the
            path, in place of ``payoff`` (:func:`load_payoff_fn`).
        reads_spot: the payoff function reads column 0, the spot
            (:class:`~stochgrad.apps.finance.PathPayoff`'s ``reads_spot``).
        lipschitz: the payoff function is Lipschitz in the path (``pathwise_ok``); ``False``
            refuses the pathwise and mixed estimators.
        steps: monitoring dates or time steps; ``None``: :func:`default_steps` (resolved here).
        model: ``"gbm"`` or ``"heston"``.
        v0, kappa, theta, xi, rho: Heston's parameters (``v0`` default ``vol**2``).
        paths: Monte Carlo paths.
        chunk: paths per chunk (and per checkpoint).
        seed: the seed of the normals (``numpy.random.default_rng(seed)``).
        float32: simulate in float32 (the moments are float64 always).
        continuity_correction: a discretely monitored barrier's reference is QuantLib's price at
            the Broadie-Glasserman-Kou shifted barrier (else the continuous one at :math:`H`);
            the estimates are the same either way.

    Raises:
        ValueError, TypeError: a setting out of range (naming it), a worthless barrier option
            (an up-and-out call with the barrier not above the strike), a spot already beyond
            the barrier, a barrier under Heston, a payoff function that cannot be imported or
            fails on a few paths.
    """

    payoff: str = "call"
    spot: float = 100.0
    strike: float = 100.0
    vol: float = 0.2
    rate: float = 0.05
    maturity: float = 1.0
    dividend: float = 0.0
    barrier: float | None = None
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
    direction: str = "up"
    knock: str = "out"
    kind: str = "call"
    payoff_fn: str | None = None
    reads_spot: bool = False
    lipschitz: bool = True
    continuity_correction: bool = False

    def __post_init__(self) -> None:
        check_choice("payoff", self.payoff, PAYOFFS)
        check_choice("monitoring", self.monitoring, MONITORING)
        check_choice("model", self.model, MODELS)
        check_choice("direction", self.direction, DIRECTIONS)
        check_choice("knock", self.knock, KNOCKS)
        check_choice("kind", self.kind, KINDS)
        if self.barrier is None:
            spot = self.market().spot  # checked first: the default is relative to it
            object.__setattr__(self, "barrier", default_barrier(self.direction, spot))
        if self.payoff_fn is not None and self.payoff != "call":
            raise ValueError(
                f"payoff_fn replaces payoff: give one of them, got payoff={self.payoff!r} and "
                f"payoff_fn={self.payoff_fn!r}"
            )
        if not isinstance(self.continuity_correction, bool):
            raise TypeError(
                f"continuity_correction must be a bool, got {self.continuity_correction!r}"
            )
        shape = {"direction": "up", "knock": "out", "kind": "call"}
        for name, default in shape.items():
            if self.payoff_fn is not None and getattr(self, name) != default:
                raise ValueError(f"{name} describes payoff 'barrier', not a payoff_fn")
        for flag, default in (("reads_spot", False), ("lipschitz", True)):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
            if self.payoff_fn is None and getattr(self, flag) != default:
                raise ValueError(f"{flag} describes a payoff function: give payoff_fn too")
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
        market, option, heston = self.market(), self.option(), self.heston()
        if self.model == "heston" and self.payoff == "barrier":
            raise ValueError(
                "payoff 'barrier' needs the GBM Brownian-bridge crossing probability; "
                "use model 'gbm'"
            )
        if isinstance(option, Option) and option.breached(self.spot):
            side = "above" if self.direction == "up" else "below"
            raise ValueError(
                f"spot {self.spot:g} is already at or {side} the {self.direction} barrier "
                f"{option.barrier:g}: the option is knocked {self.knock} from the start (give "
                f"a barrier {side} the spot, or direction="
                f"{'down' if self.direction == 'up' else 'up'!r})"
            )
        if isinstance(option, PathPayoff):  # a payoff that fails is refused before any work
            check_path_payoff(replace(option, fn=option.fn.fn), market, heston)

    def market(self) -> Market:
        """The :class:`~stochgrad.apps.finance.Market`."""
        return Market(self.spot, self.vol, self.rate, self.maturity, self.dividend)

    def option(self) -> Option | PathPayoff:
        """The :class:`~stochgrad.apps.finance.Option`, or the
        :class:`~stochgrad.apps.finance.PathPayoff` of ``payoff_fn``."""
        if self.payoff_fn is not None:
            return PathPayoff(
                _SaysWhenItFails(load_payoff_fn(self.payoff_fn), self.payoff_fn),
                steps=self.steps,
                name=self.payoff_fn.rpartition(":")[2],
                pathwise_ok=self.lipschitz,
                reads_spot=self.reads_spot,
            )
        return Option(
            self.payoff,
            self.strike,
            barrier=self.barrier if self.payoff == "barrier" else None,
            steps=self.steps,
            monitoring=self.monitoring,
            direction=self.direction,
            knock=self.knock,
            kind=self.kind,
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
        dividend yield only when not 0, a barrier's shape only when it is not the up-and-out call,
        a payoff function with a digest of its file (an edited payoff does not resume)."""
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
            shape = {"direction": self.direction, "knock": self.knock, "kind": self.kind}
            if shape != {"direction": "up", "knock": "out", "kind": "call"}:
                s.update(shape)  # only then: checkpoints of up-and-out calls still match
        if self.payoff_fn is not None:
            del s["payoff"], s["strike"]
            s.update(
                payoff_fn=self.payoff_fn,
                payoff_fn_digest=_source_digest(load_payoff_fn(self.payoff_fn)),
                reads_spot=self.reads_spot,
                lipschitz=self.lipschitz,
            )
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
        if config.continuity_correction:
            reference = quantlib_reference(option, market, heston, continuity_correction=True)
        else:
            reference = quantlib_reference(option, market, heston)
        quantlib = True
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


# ---------------------------------------------------------------------------------------------
# a payoff function of one's own, named "module:function"
# ---------------------------------------------------------------------------------------------
def _import_file(path: Path, spec: str) -> ModuleType:
    """The module of a ``.py`` file, executed once per file and process."""
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"payoff_fn {spec!r}: no file {str(path)!r}")
    name = "_stochgrad_payoff_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"payoff_fn {spec!r}: {str(path)!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(name: str, spec: str) -> ModuleType:
    """``import name``, the current folder first on the path (as ``python -m`` would have it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ValueError(
                f"payoff_fn {spec!r}: no module named {exc.name!r} in the current folder or on "
                "the Python path"
            ) from None
        raise
    finally:
        if added:
            sys.path.remove(cwd)


def load_payoff_fn(spec: str) -> Callable[[Tensor], Tensor]:
    """The payoff function named by ``spec``: ``"module:function"`` (importable from the current
    folder or the Python path; ``function`` may be dotted, ``"module:Class.method"``) or
    ``"path/to/file.py:function"``.

    Args:
        spec: ``"module:function"`` or ``"file.py:function"``.

    Returns:
        The callable (paths ``[n, steps + 1]`` -> ``[n]``).

    Raises:
        ValueError: ``spec`` is malformed, the module or file is not found or fails to import,
            it has no such attribute, or the attribute is not callable.

    >>> load_payoff_fn("math:hypot")(3.0, 4.0)
    5.0
    >>> load_payoff_fn("math:pi")
    Traceback (most recent call last):
    ...
    ValueError: payoff_fn 'math:pi': pi is not callable (type float)
    """
    if not isinstance(spec, str):
        raise TypeError(f"payoff_fn must be a str 'module:function', got {spec!r}")
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(f"payoff_fn must be 'module:function' or 'file.py:function', got {spec!r}")
    try:
        if where.endswith(".py"):
            obj: Any = _import_file(Path(where), spec)
        else:
            obj = _import_module(where, spec)
    except ValueError:
        raise
    except Exception as exc:  # the user's module failed while importing: say so in one line
        raise ValueError(
            f"payoff_fn {spec!r}: importing {where!r} failed ({type(exc).__name__}: {exc})"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"payoff_fn {spec!r}: {where!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"payoff_fn {spec!r}: {attr} is not callable (type {type(obj).__name__})")
    return obj


class _SaysWhenItFails:
    """A user's payoff function whose errors, on any chunk of paths, name it in one line
    (the check on 64 paths before the run cannot see a failure that only some paths cause)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], spec: str):
        self.fn, self.spec = fn, spec
        self.__name__ = getattr(fn, "__name__", spec)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, paths: Tensor) -> Tensor:
        try:
            return self.fn(paths)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else "(no message)"
            raise ValueError(
                f"payoff_fn {self.spec!r} failed on paths of shape {list(paths.shape)}: "
                f"{type(exc).__name__}: {first}"
            ) from exc


def _source_digest(fn: Callable[..., Any]) -> str:
    """A short digest of the file defining ``fn`` (``""`` when it has none)."""
    try:
        source = Path(inspect.getfile(fn)).read_bytes()
    except (TypeError, OSError):
        return ""
    return hashlib.sha256(source).hexdigest()[:16]
