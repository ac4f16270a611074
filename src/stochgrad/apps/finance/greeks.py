r"""Price and Greeks by Monte Carlo in chunks of paths, each with its standard error.

:func:`estimate_greeks` streams chunks of paths; on each chunk every Greek is a call of a core
estimator (:func:`stochgrad.score_function`, :func:`stochgrad.pathwise`) on the payoff of the
path under the model's path law (:mod:`~stochgrad.apps.finance.terms`), whose
:class:`~stochgrad.gradient_estimate.GradientEstimate` is merged into running float64 moments
(Chan et al. 1979). It returns the mean, the standard error :math:`s/\sqrt n` and a 95% interval
of every valid ``(greek, method)``, each carrying a ``GradientEstimate`` of the whole run.
After every chunk its state (the moments and the generator's state) can be saved, through a
``save=`` callback or to a ``checkpoint=`` file (:mod:`stochgrad.checkpoint`), and a run resumed
from it ends with the numbers of an uninterrupted one.

>>> res = estimate_greeks(Option("digital", 100.0), Market(100.0, 0.2, 0.05, 1.0), 10_000,
...                       greeks=["delta"], seed=1)
>>> [e.method for e in res.estimates], sorted(res.refused["delta"])
(['mc', 'lr'], ['pathwise'])
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_int
from stochgrad._memory import reuse_freed_memory
from stochgrad.apps.finance.market import Heston, Market, Option
from stochgrad.apps.finance.paths import make_generator, normals
from stochgrad.apps.finance.terms import PathPayoff, chunk_terms
from stochgrad.checkpoint import CheckpointError, check_settings, load_json, save_json
from stochgrad.gradient_estimate import GradientEstimate, SingleSampleWarning

__all__ = [
    "ESTIMATORS",
    "GREEKS",
    "MAX_PATHS",
    "METHODS",
    "GreekEstimate",
    "GreeksResult",
    "available_methods",
    "estimate_greeks",
]

GREEKS: tuple[str, ...] = ("price", "delta", "gamma", "vega", "rho")
#: Ways to estimate a Greek: plain Monte Carlo (the price), likelihood ratio, pathwise, mixed.
METHODS: tuple[str, ...] = ("mc", "lr", "pathwise", "mixed")

Z95 = 1.959963984540054

#: The core estimator behind each method (``GradientEstimate.method``).
ESTIMATORS: dict[str, str] = {
    "mc": "monte_carlo",
    "lr": "score_function",
    "pathwise": "pathwise",
    "mixed": "pathwise+score_function",
}


def available_methods(
    option: Option | PathPayoff, heston: Heston | None = None
) -> dict[str, dict[str, str]]:
    """For each Greek, the methods that apply and, for the others, why they are refused.

    Under Heston, vega is :math:`\\partial V/\\partial v_0` (the initial variance).

    Returns:
        ``{greek: {method: ""}}`` for valid methods, the reason text for refused ones.

    Examples:
        >>> available_methods(Option("digital", 100.0))["delta"]["pathwise"][:30]
        'refused: the digital payoff is'
    """
    out: dict[str, dict[str, str]] = {g: {} for g in GREEKS}
    out["price"]["mc"] = ""
    if option.pathwise_ok:
        pw = ""
    elif isinstance(option, PathPayoff):
        pw = (
            f"refused: the payoff {option.name!r} is marked discontinuous (pathwise_ok=False); use "
            "the likelihood ratio ('lr') (the mixed estimator needs a pathwise delta and is "
            "refused too)"
        )
    elif option.payoff == "digital":
        pw = (
            "refused: the digital payoff is discontinuous, its pathwise derivative is 0 almost "
            "surely while the Greek is not; use the likelihood ratio ('lr') (the mixed estimator "
            "needs a pathwise delta and is refused too)"
        )
    else:
        pw = (
            "refused: the discretely monitored barrier is discontinuous in the path; use the "
            "likelihood ratio ('lr'), or monitoring='bridge' (continuous in the path: pathwise and "
            "mixed then apply)"
        )
    for g in ("delta", "vega", "rho"):
        out[g]["lr"] = ""
        out[g]["pathwise"] = pw
    out["gamma"]["lr"] = ""
    out["gamma"]["pathwise"] = (
        "refused: the payoff has a kink, its second pathwise derivative misses the point mass; "
        "use 'mixed' (LR of the pathwise delta) or 'lr'"
    )
    out["gamma"]["mixed"] = pw
    if heston is not None:
        out["rho"]["lr"] = (
            "not available under Heston: the conditional log-price density degenerates where the "
            "truncated variance is 0"
        )
    return out


@dataclass(frozen=True)
class GreekEstimate:
    """One Monte Carlo estimate: mean of per-path terms, their standard deviation, the standard error.

    ``gradient`` is the same estimate as the core reports it
    (:class:`~stochgrad.gradient_estimate.GradientEstimate`: ``grad`` = ``value``, ``variance`` =
    ``std**2`` per path, ``stderr``, ``num_samples`` = ``num_paths``, ``method`` the core
    estimator, e.g. ``"score_function"`` for ``"lr"``); its ``per_sample`` holds one row per
    chunk of paths (rows whose mean is ``grad``; ``info["chunks"]``), as the surrogate layer's
    batch means do. Built from the other fields when not given.
    """

    greek: str
    method: str
    value: float
    stderr: float
    std: float
    num_paths: int
    reference: float | None = None
    gradient: GradientEstimate | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.gradient is None:
            object.__setattr__(self, "gradient", _as_gradient(self, [(self.num_paths, self.value)]))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON): the fields, the chunk rows of ``gradient``, the interval and z."""
        g = self.gradient
        return {
            "greek": self.greek,
            "method": self.method,
            "value": self.value,
            "stderr": self.stderr,
            "std": self.std,
            "num_paths": self.num_paths,
            "reference": self.reference,
            "estimator": g.method,
            "chunks": g.info.get("chunk_means", []),
            "ci95": list(self.ci95),
            "z": None if math.isnan(self.z) else self.z,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GreekEstimate:
        """The inverse of :meth:`to_dict` (extra keys ignored)."""
        fields = ("greek", "method", "value", "stderr", "std", "num_paths", "reference")
        e = cls(**{k: data[k] for k in fields if k in data})
        chunks = [(int(b), float(m)) for b, m in data.get("chunks") or []]
        return replace(e, gradient=_as_gradient(e, chunks)) if chunks else e

    @property
    def ci95(self) -> tuple[float, float]:
        """95% normal confidence interval."""
        return (self.value - Z95 * self.stderr, self.value + Z95 * self.stderr)

    @property
    def z(self) -> float:
        """``(value - reference) / stderr`` (nan without a reference)."""
        if self.reference is None or self.stderr == 0.0:
            return float("nan")
        return (self.value - self.reference) / self.stderr


@dataclass
class GreeksResult:
    """All estimates of one run (:func:`estimate_greeks`)."""

    option: Option | PathPayoff
    market: Market
    heston: Heston | None
    num_paths: int
    estimates: list[GreekEstimate]
    refused: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0
    dtype: str = "float64"

    def get(self, greek: str, method: str) -> GreekEstimate:
        """The estimate of ``greek`` by ``method``; ``KeyError`` if it was not computed."""
        for e in self.estimates:
            if e.greek == greek and e.method == method:
                return e
        raise KeyError(f"no estimate of {greek!r} by {method!r}")

    def to_dict(self) -> dict:
        """Plain-data form (for JSON)."""
        return {
            "option": option_dict(self.option),
            "market": asdict(self.market),
            "heston": None if self.heston is None else asdict(self.heston),
            "num_paths": self.num_paths,
            "seconds": self.seconds,
            "dtype": self.dtype,
            "estimates": [e.to_dict() for e in self.estimates],
            "refused": self.refused,
        }


def option_dict(option: Option | PathPayoff) -> dict[str, Any]:
    """The option as plain data (a :class:`PathPayoff`: its label, steps and flags)."""
    if isinstance(option, PathPayoff):
        fn = getattr(option.fn, "__qualname__", type(option.fn).__name__)
        return {
            "payoff": option.name,
            "steps": option.steps,
            "pathwise_ok": option.pathwise_ok,
            "reads_spot": option.reads_spot,
            "fn": fn,
        }
    data = asdict(option)
    # the barrier's shape at its defaults (the up-and-out call) is left out, so that the
    # checkpoints of runs started before these fields existed still resume
    for name, default in (("direction", "up"), ("knock", "out"), ("kind", "call")):
        if data.get(name) == default:
            del data[name]
    return data


def _as_gradient(e: GreekEstimate, chunks: list[tuple[int, float]]) -> GradientEstimate:
    """The run's estimate as a ``GradientEstimate``: one ``per_sample`` row per chunk."""
    dtype = torch.float64
    n, k = e.num_paths, len(chunks)
    rows = torch.tensor([b * mean * k / n for b, mean in chunks], dtype=dtype)
    return GradientEstimate(
        grad=torch.tensor(e.value, dtype=dtype),
        per_sample=rows,
        variance=torch.tensor(e.std * e.std, dtype=dtype),
        stderr=torch.tensor(e.stderr, dtype=dtype),
        num_samples=n,
        method=ESTIMATORS.get(e.method, e.method),
        evaluations=n,
        info={"greek": e.greek, "chunks": k, "chunk_means": [list(c) for c in chunks]},
    )


class _Running:
    """Streaming mean and sum of squared deviations (Chan et al. 1979 merge), float64, and the
    mean of every chunk (the rows of the run's ``GradientEstimate``)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.chunks: list[tuple[int, float]] = []

    def update(self, x: Tensor | GradientEstimate, scale: float = 1.0) -> None:
        """Add the values ``scale * x``, or a chunk's ``GradientEstimate`` scaled by ``scale``
        (the scale is applied to the chunk's moments: one pass less)."""
        if isinstance(x, GradientEstimate):
            nb = x.num_samples
            mean_b = float(x.grad)
            m2_b = float(x.variance) * (nb - 1) if nb > 1 else 0.0
        else:
            x = x.to(torch.float64)
            nb = x.numel()
            # sum and dot: one BLAS pass each, ~10x faster than var_mean; the cancellation in
            # m2 = x.x - n mean^2 costs eps * (1 + mean^2 / var) relative, negligible here
            total, sq = float(x.sum()), float(torch.dot(x, x))
            mean_b = total / nb
            m2_b = max(sq - total * mean_b, 0.0)
        m2_b *= scale * scale
        mean_b *= scale
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean += delta * nb / n
        self.m2 += m2_b + delta * delta * self.n * nb / n
        self.n = n
        self.chunks.append((nb, mean_b))

    def result(self) -> tuple[float, float, float]:
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else float("nan")
        return self.mean, std / math.sqrt(self.n), std


# ---------------------------------------------------------------------------------------------
# the state of a run in progress
# ---------------------------------------------------------------------------------------------
def _state(config: dict, done: int, acc: dict, g: torch.Generator | np.random.Generator) -> dict:
    """The running sums and the generator's state, as plain values (JSON and ``.pt`` alike)."""
    if isinstance(g, np.random.Generator):
        gen: Any = {"numpy": g.bit_generator.state}
    else:
        gen = {"torch": g.get_state().tolist()}
    return {
        "config": config,
        "done": done,
        "acc": {f"{k[0]}|{k[1]}": [r.n, r.mean, r.m2, r.chunks] for k, r in acc.items()},
        "generator": gen,
    }


def _restore(
    state: Any,
    config: dict,
    acc: dict,
    g: torch.Generator | np.random.Generator,
    where: str | Path,
) -> int:
    """Restore the running sums and the generator's state; return the paths already done.

    Raises:
        CheckpointMismatch: the state was saved with other settings.
        CheckpointError: it is not such a state.
    """
    from stochgrad.checkpoint import field

    check_settings(field(state, "config", where, dict), config, where)
    try:
        for key, (cnt, mean, m2, *chunks) in field(state, "acc", where, dict).items():
            r = _Running()
            r.n, r.mean, r.m2 = int(cnt), float(mean), float(m2)
            r.chunks = [(int(b), float(c)) for b, c in (chunks[0] if chunks else [(cnt, mean)])]
            acc[tuple(key.split("|"))] = r
        gen = field(state, "generator", where, dict)
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = gen["numpy"]
        else:
            g.set_state(torch.tensor(gen["torch"], dtype=torch.uint8))
        return int(field(state, "done", where))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where}: not a state of estimate_greeks ({type(exc).__name__}: {exc}); delete it, "
            "or rerun with --restart (restart=True), to start afresh"
        ) from None


def _select(
    option: Option | PathPayoff,
    heston: Heston | None,
    greeks: Sequence[str] | None,
    methods: Sequence[str] | None,
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The (greek -> methods) to compute, and the refused ones with their reasons."""
    avail = available_methods(option, heston)
    explicit_greeks = greeks is not None
    for name, given, allowed in (("greeks", greeks, GREEKS), ("methods", methods, METHODS)):
        if given is not None and (isinstance(given, str) or not list(given)):
            raise ValueError(f"{name} must be a non-empty list drawn from {allowed}, got {given!r}")
    greeks = list(GREEKS) if greeks is None else list(greeks)
    for g in greeks:
        if g not in GREEKS:
            raise ValueError(f"greeks must be among {GREEKS}, got {g!r}")
    if methods is not None:
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"methods must be among {METHODS}, got {m!r}")
    wanted: dict[str, list[str]] = {}
    refused: dict[str, dict[str, str]] = {}
    for g in dict.fromkeys(["price", *greeks]):
        for m, why in avail[g].items():
            if methods is not None and m not in methods and m != "mc":
                continue
            if why:
                discontinuous = not option.pathwise_ok and m in ("pathwise", "mixed")
                if methods is not None and (explicit_greeks or discontinuous):
                    raise ValueError(f"{g} by {m!r} for payoff {option.payoff!r}: {why}")
                refused.setdefault(g, {})[m] = why
            else:
                wanted.setdefault(g, []).append(m)
    return wanted, refused


MAX_PATHS = 10**10
"""The most paths :func:`estimate_greeks` takes (about 10 s per 10^8 paths and Greek on a CPU
core: 10^10 is already hours; a larger number is a typing slip)."""


def estimate_greeks(
    option: Option | PathPayoff,
    market: Market,
    num_paths: int,
    *,
    greeks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    heston: Heston | None = None,
    generator: torch.Generator | np.random.Generator | None = None,
    seed: int | None = None,
    chunk_size: int = 1 << 20,
    dtype: torch.dtype = torch.float64,
    reference: dict[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
    checkpoint: str | Path | None = None,
    restart: bool = False,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    callback: Callable[[int], None] | None = None,
) -> GreeksResult:
    r"""Price and Greeks of ``option`` by Monte Carlo, in chunks of paths (bounded memory).

    The price is always estimated (method ``"mc"``). Each estimate is the mean of per-path terms
    accumulated over chunks in float64 (streaming mean and variance), with its standard error
    :math:`s/\sqrt n` and a 95% interval.

    Every estimate is a call of a core estimator on the payoff of the path under the model's
    path law, per chunk (:func:`~stochgrad.apps.finance.terms.chunk_terms`): ``"lr"`` is
    :func:`stochgrad.score_function`, ``"pathwise"`` :func:`stochgrad.pathwise`, ``"mixed"``
    (gamma) the score function of the pathwise delta; each result carries the run's
    ``GradientEstimate`` (``GreekEstimate.gradient``).

    Args:
        option: the payoff: an :class:`~stochgrad.apps.finance.market.Option`, or a
            :class:`~stochgrad.apps.finance.terms.PathPayoff` (a function of the path
            ``[n, steps + 1]`` of one's own).
        market: spot, volatility (ignored under Heston), rate, maturity, dividend yield.
        num_paths: total number of paths, at least 2 (every estimate has a standard error).
        greeks: subset of :data:`GREEKS` (default all).
        methods: subset of ``("lr", "pathwise", "mixed")``; default: every method valid for the
            payoff (invalid ones are listed in ``result.refused``). Asking explicitly for an
            invalid method (pathwise on a digital, say) raises ``ValueError``.
        heston: simulate the Heston model instead of GBM (vega is then
            :math:`\\partial V/\\partial v_0`).
        generator: torch generator (or give ``seed``); chunks draw from it in order. A
            ``numpy.random.Generator`` is accepted too: its ziggurat normal sampler is about
            twice as fast as torch's float64 CPU sampler, which dominates the cost of
            terminal-only payoffs.
        seed: shorthand for ``numpy.random.default_rng(seed)``.
        chunk_size: paths per chunk.
        dtype: ``torch.float64`` or ``torch.float32`` for the simulation.
        reference: ``{greek: value}`` attached to the estimates (e.g. :func:`quantlib_reference`).
        progress: called with the number of paths of each finished chunk, after the chunk is
            saved (progress bars; on resuming, first with the paths already done).
        checkpoint: a JSON file rewritten (atomically, :func:`stochgrad.checkpoint.save_json`)
            after every chunk with the running sums and the generator's state; if it exists, the
            run resumes from it, so an interrupted run loses no finished chunk and ends with the
            same numbers as an uninterrupted one.
        restart: delete ``checkpoint`` first and start afresh.
        state: instead of ``checkpoint``: a state given earlier to ``save``, to resume from.
        save: instead of ``checkpoint``: called with the state (plain values) after every chunk.
        callback: deprecated name of ``progress``.

    Returns:
        :class:`GreeksResult`.

    Raises:
        ValueError: bad sizes (``num_paths`` below 2 or above :data:`MAX_PATHS`, ``chunk_size < 1``),
            empty or unknown greeks or methods,
            an invalid method asked for explicitly, a barrier under Heston.
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` (or ``state``) was saved with
            other settings (a ``ValueError``).
        stochgrad.checkpoint.CheckpointError: ``checkpoint`` is corrupt or not such a file.

    >>> res = estimate_greeks(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), 20_000, seed=0)
    >>> est = res.get("delta", "pathwise")
    >>> abs(est.value - 0.6368) < 5 * est.stderr
    True
    """
    if callback is not None:
        warnings.warn(
            "estimate_greeks(callback=) is deprecated; pass progress=", DeprecationWarning, 2
        )
        progress = callback if progress is None else progress
    n = check_int("num_paths", num_paths)
    if n > MAX_PATHS:
        raise ValueError(
            f"num_paths must be at most MAX_PATHS = {MAX_PATHS:.0e} (about 10 s per 10^8 paths "
            f"and Greek: more is hours of work), got {n:.3g}"
        )
    if n < 2:
        raise ValueError(
            f"num_paths must be >= 2 (a price or Greek with a standard error needs at least 2 "
            f"paths), got {n}"
        )
    chunk = check_int("chunk_size", chunk_size, minimum=1)
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
    if not isinstance(option, (Option, PathPayoff)):
        raise TypeError(f"option must be an Option or a PathPayoff, got {type(option).__name__}")
    if not isinstance(market, Market):
        raise TypeError(f"market must be a Market, got {type(market).__name__}")
    if heston is not None and not isinstance(heston, Heston):
        raise TypeError(f"heston must be a Heston or None, got {type(heston).__name__}")
    if heston is not None and isinstance(option, Option) and option.payoff == "barrier":
        raise ValueError(
            "payoff='barrier' needs the GBM Brownian-bridge crossing probability; use heston=None"
        )
    if checkpoint is not None and (state is not None or save is not None):
        raise ValueError("give checkpoint= or state=/save=, not both")
    g = make_generator(generator, seed)
    wanted, refused = _select(option, heston, greeks, methods)
    m = option.num_steps(heston)
    acc: dict[tuple[str, str], _Running] = {}
    start = time.perf_counter()
    done = 0
    market_config = asdict(market)
    if not market.dividend:  # as before dividends existed: earlier checkpoints still match
        del market_config["dividend"]
    config = {
        "option": option_dict(option),
        "market": market_config,
        "heston": None if heston is None else asdict(heston),
        "num_paths": n,
        "chunk_size": chunk,
        "dtype": str(dtype),
        "wanted": {k: sorted(v) for k, v in sorted(wanted.items())},
        "generator": type(g).__name__,
    }
    where: str | Path = "state"
    if checkpoint is not None:
        where = ckpt = Path(checkpoint)
        if restart:
            ckpt.unlink(missing_ok=True)
        state = load_json(ckpt) if ckpt.exists() else None

        def save(st: dict[str, Any]) -> None:
            save_json(st, ckpt, indent=None)

    if state is not None:
        done = _restore(state, config, acc, g, where)
        if progress is not None and done:
            progress(done)
    buffer: Tensor | None = None
    reuse_freed_memory()  # the chunks' large temporaries reuse pages instead of faulting anew
    while done < n:
        b = min(chunk, n - done)
        shape = (b, m) if heston is None else (b, m, 2)
        if buffer is None:  # one buffer for every chunk's normals (nothing keeps them)
            buffer = torch.empty((min(chunk, n), *shape[1:]), dtype=dtype)
        z = normals(g, shape, dtype, out=buffer[:b])
        with warnings.catch_warnings():  # a last chunk of one path: its spread is not used
            warnings.simplefilter("ignore", SingleSampleWarning)
            terms = chunk_terms(option, market, heston, z, wanted)
        for key, (t, scale) in terms.items():
            acc.setdefault(key, _Running()).update(t, scale)
            # a nan or inf anywhere in the chunk makes its mean or spread non-finite
            if not (math.isfinite(acc[key].mean) and math.isfinite(acc[key].m2)):
                what = option.name if isinstance(option, PathPayoff) else option.payoff
                raise ValueError(
                    f"option {what!r} gave non-finite per-path terms for {key[0]} by {key[1]} "
                    "(a payoff returning NaN or inf on some paths?)"
                )
        done += b
        if save is not None:
            save(_state(config, done, acc, g))
        if progress is not None:
            progress(b)
    reference = reference or {}
    estimates = []
    for g_name in GREEKS:
        for meth in METHODS:
            if (g_name, meth) in acc:
                r = acc[(g_name, meth)]
                mean, se, std = r.result()
                e = GreekEstimate(g_name, meth, mean, se, std, n, reference.get(g_name))
                estimates.append(replace(e, gradient=_as_gradient(e, r.chunks)))
    return GreeksResult(
        option=option,
        market=market,
        heston=heston,
        num_paths=n,
        estimates=estimates,
        refused=refused,
        seconds=time.perf_counter() - start,
        dtype=str(dtype).replace("torch.", ""),
    )
