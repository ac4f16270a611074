r"""Option prices and Greeks by likelihood-ratio, pathwise and mixed Monte Carlo estimators.

Models. Geometric Brownian motion (:class:`Market`) is simulated exactly in log space on the
monitoring dates :math:`t_i = i\,\Delta t`, :math:`\Delta t = T/m`,

.. math:: \ln S_{t_{i+1}} = \ln S_{t_i} + (r - \tfrac12\sigma^2)\Delta t + \sigma\sqrt{\Delta t}\,Z_{i+1},

with :math:`m = 1` (terminal value only) for the payoffs that need only :math:`S_T`. Heston
(:class:`Heston`) uses the full-truncation Euler scheme of Lord, Koekkoek & van Dijk (2010) with
:math:`v^+ = \max(v, 0)`; its time-discretisation bias is :math:`O(\Delta t)` (measured against
QuantLib's ``AnalyticHestonEngine`` in ``docs/greeks.md``).

Payoffs (:class:`Option`): European call and put, cash-or-nothing digital call, arithmetic-average
Asian call (average of :math:`S_{t_1},\dots,S_{t_m}`), the geometric-average Asian call (closed
form, so it checks the multi-step simulation and weights), up-and-out call with a *continuously*
monitored barrier :math:`H`. The barrier is handled by the Brownian-bridge crossing probability
between monitoring dates, exact for GBM (Glasserman 2004, Sec. 6.4):

.. math::

    \mathbb P(\text{no crossing} \mid S_{t_i}, S_{t_{i+1}}) = 1 - \exp\Big(-\frac{2\ln(H/S_{t_i})
    \ln(H/S_{t_{i+1}})}{\sigma^2\Delta t}\Big), \qquad S_{t_i}, S_{t_{i+1}} < H,

so the simulated payoff :math:`(S_T - K)^+ \prod_i (\cdot)` is unbiased for every :math:`m`
(``monitoring="bridge"``). ``monitoring="discrete"`` (knock out only if a monitoring date is at
or above :math:`H`) is kept to show its bias, which is of order :math:`\sqrt{\Delta t}`.

Greeks of :math:`V = e^{-rT}\,\mathbb E[f(S)]` (:func:`estimate_greeks`), each per path so that
the mean, the standard error and a 95% confidence interval come together:

* likelihood ratio (``"lr"``): :math:`\partial_\theta V = e^{-rT}\mathbb E[f\,\partial_\theta
  \ln p(S;\theta)]` with the score of the log-normal path density written out by hand (vectorised,
  for speed: a few passes over the paths; the weights are what :func:`stochgrad.score_function`
  computes on the log-normal density, see the tests), e.g. for the first step :math:`\partial_{S_0}\ln p = Z_1/(S_0\sigma\sqrt{\Delta t})`,
  :math:`\partial_\sigma \ln p = \sum_i [(Z_i^2 - 1)/\sigma - Z_i\sqrt{\Delta t}]`,
  :math:`\partial_r \ln p = \sqrt{\Delta t}\sum_i Z_i/\sigma`, and for gamma the second-order
  weight :math:`\partial^2_{S_0} p / p = (Z_1^2 - 1)/(S_0^2\sigma^2\Delta t) - Z_1/(S_0^2\sigma
  \sqrt{\Delta t})`. A payoff that depends on a parameter explicitly (the bridge factor depends on
  :math:`S_0` and :math:`\sigma`) adds its own derivative (:math:`\mathbb E[\partial_\theta f +
  f\,w]`, and :math:`\mathbb E[\partial^2 f + 2\,\partial f\,w_1 + f\,w_2]` for gamma);
* pathwise (``"pathwise"``): :math:`\partial_\theta V = \mathbb E[\partial_\theta (e^{-rT}
  f(S(\theta, Z)))]`, per path by forward-mode autodiff (``torch.func.jvp``). Valid when
  :math:`f` is Lipschitz in the path: calls, puts, Asians and the bridge-weighted barrier (its
  factor vanishes continuously as :math:`S \to H`); refused with a ``ValueError`` for the digital
  (pathwise derivative zero almost surely, the Greek is not) and for the discretely monitored
  barrier (the pathwise derivative misses the knock-out jump: biased);
* mixed LR-pathwise gamma (``"mixed"``): the likelihood ratio applied to the pathwise delta
  :math:`h(S; S_0)`, :math:`\Gamma = \mathbb E[h\,\partial_{S_0}\ln p + \partial_{S_0} h|_S]`,
  which for GBM payoffs of the path only is :math:`\mathbb E[h\,(\partial_{S_0}\ln p - 1/S_0)]`.

Under Heston the estimators are: delta and gamma by LR (the first log-price step is Gaussian given
the variance noise, with standard deviation :math:`\sqrt{(1-\rho^2)v_0\Delta t}`), pathwise delta,
mixed gamma, pathwise rho.

References are QuantLib's analytic engines (:func:`quantlib_reference`): ``AnalyticEuropeanEngine``
(call, put, digital), ``AnalyticDiscreteGeometricAveragePriceAsianEngine`` (geometric Asian),
``AnalyticBarrierEngine`` (continuous barrier; Greeks by central
differences of its price), ``AnalyticHestonEngine`` (Greeks by central differences).

References:
    Broadie & Glasserman (1996), "Estimating security price derivatives using simulation",
    Management Science 42; Glasserman (2004), *Monte Carlo Methods in Financial Engineering*,
    Ch. 7 (and Sec. 6.4 for the bridge); Beaglehole, Dybvig & Zhou (1997), "Going to extremes";
    Broadie, Glasserman & Kou (1997), "A continuity correction for discrete barrier options",
    Mathematical Finance 7;
    Lord, Koekkoek & van Dijk (2010), "A comparison of biased simulation schemes for stochastic
    volatility models", Quantitative Finance 10.

>>> res = estimate_greeks(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), 20_000, seed=0)
>>> est = res.get("delta", "pathwise")
>>> abs(est.value - 0.6368) < 5 * est.stderr
True
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GREEKS",
    "METHODS",
    "PAYOFFS",
    "GreekEstimate",
    "GreeksResult",
    "Heston",
    "Market",
    "Option",
    "add_arguments",
    "available_methods",
    "barrier_survival",
    "estimate_greeks",
    "gbm_paths",
    "heston_paths",
    "lr_weights",
    "payoff",
    "quantlib_reference",
    "run",
]

PAYOFFS: tuple[str, ...] = ("call", "put", "digital", "asian", "geometric", "barrier")
GREEKS: tuple[str, ...] = ("price", "delta", "gamma", "vega", "rho")
METHODS: tuple[str, ...] = ("mc", "lr", "pathwise", "mixed")


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _positive(name: str, value: Any) -> float:
    v = _finite(name, value)
    if v <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Market:
    """Black-Scholes market: spot :math:`S_0`, volatility :math:`\\sigma`, rate :math:`r`, maturity :math:`T` (no dividends).

    >>> Market(100.0, 0.2, 0.05, 1.0).discount
    0.951229424500714
    """

    spot: float
    vol: float
    rate: float
    maturity: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "spot", _positive("spot", self.spot))
        object.__setattr__(self, "vol", _positive("vol", self.vol))
        object.__setattr__(self, "rate", _finite("rate", self.rate))
        object.__setattr__(self, "maturity", _positive("maturity", self.maturity))

    @property
    def discount(self) -> float:
        """:math:`e^{-rT}`."""
        return math.exp(-self.rate * self.maturity)


@dataclass(frozen=True)
class Heston:
    r"""Heston variance dynamics :math:`dv = \kappa(\theta - v)dt + \xi\sqrt v\,dW^v`, :math:`d\langle W^v, W^S\rangle = \rho\,dt`.

    >>> Heston(0.04, 1.5, 0.04, 0.5, -0.7).feller
    False
    """

    v0: float
    kappa: float
    theta: float
    xi: float
    rho: float

    def __post_init__(self) -> None:
        for name in ("v0", "kappa", "theta", "xi"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        rho = _finite("rho", self.rho)
        if not -1.0 < rho < 1.0:
            raise ValueError(f"rho must lie in (-1, 1), got {self.rho!r}")
        object.__setattr__(self, "rho", rho)

    @property
    def feller(self) -> bool:
        r"""Whether :math:`2\kappa\theta \ge \xi^2` (the variance then never reaches 0)."""
        return 2.0 * self.kappa * self.theta >= self.xi**2


@dataclass(frozen=True)
class Option:
    """A payoff: ``"call"``, ``"put"``, ``"digital"`` (cash-or-nothing call), ``"asian"``
    (arithmetic-average call), ``"geometric"`` (geometric-average call, which has a closed form:
    a check of the path simulation and of the multi-step weights) or ``"barrier"`` (up-and-out
    call).

    Args:
        payoff: one of :data:`PAYOFFS`.
        strike: strike :math:`K > 0`.
        barrier: the up-and-out level :math:`H` (barrier only; must exceed the strike).
        steps: monitoring dates (Asian average, barrier) or Heston time steps; GBM calls, puts
            and digitals always use one exact step.
        monitoring: ``"bridge"`` (continuous barrier, exact) or ``"discrete"`` (biased, for
            comparison); barrier only.
        cash: the digital's cash amount.

    >>> Option("barrier", 100.0, barrier=120.0).pathwise_ok
    True
    >>> Option("digital", 100.0).pathwise_ok
    False
    """

    payoff: str
    strike: float
    barrier: float | None = None
    steps: int = 1
    monitoring: str = "bridge"
    cash: float = 1.0

    def __post_init__(self) -> None:
        if self.payoff not in PAYOFFS:
            raise ValueError(f"payoff must be one of {PAYOFFS}, got {self.payoff!r}")
        object.__setattr__(self, "strike", _positive("strike", self.strike))
        object.__setattr__(self, "cash", _positive("cash", self.cash))
        _count("steps", self.steps)
        if self.monitoring not in ("bridge", "discrete"):
            raise ValueError(f"monitoring must be 'bridge' or 'discrete', got {self.monitoring!r}")
        if self.payoff == "barrier":
            if self.barrier is None:
                raise ValueError("barrier is required for payoff='barrier'")
            h = _positive("barrier", self.barrier)
            if h <= self.strike:
                raise ValueError(
                    f"barrier must exceed strike for an up-and-out call (else it is worthless), "
                    f"got barrier={h} <= strike={self.strike}"
                )
            object.__setattr__(self, "barrier", h)

    @property
    def pathwise_ok(self) -> bool:
        """Whether the payoff is Lipschitz in the path (pathwise derivatives unbiased)."""
        if self.payoff == "digital":
            return False
        return not (self.payoff == "barrier" and self.monitoring == "discrete")

    def num_steps(self, heston: Heston | None = None) -> int:
        """Simulation steps: 1 for GBM calls, puts and digitals, ``steps`` otherwise."""
        if heston is None and self.payoff in ("call", "put", "digital"):
            return 1
        return self.steps


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------


def _gbm_from_normals(
    s0: Tensor | float, vol: Tensor | float, rate: Tensor | float, dt: float, z: Tensor
) -> Tensor:
    """``S[:, i]`` at ``t_{i+1}`` from standard normals ``z`` ``[n, m]`` (differentiable in s0, vol, rate)."""
    incr = (rate - 0.5 * vol * vol) * dt + vol * math.sqrt(dt) * z
    return s0 * torch.exp(torch.cumsum(incr, dim=1))


def gbm_paths(
    market: Market,
    num_paths: int,
    num_steps: int = 1,
    *,
    generator: torch.Generator | np.random.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    r"""Exact GBM paths on ``num_steps`` equal steps: :math:`S_{t_{i+1}} = S_{t_i} e^{(r-\sigma^2/2)\Delta t + \sigma\sqrt{\Delta t} Z}`.

    Args:
        market: spot, volatility, rate, maturity.
        num_paths: number of paths ``n``.
        num_steps: number of steps ``m`` (1: the terminal value only).
        generator: a ``torch.Generator`` or ``numpy.random.Generator`` (or give ``seed``).
        seed: shorthand for ``numpy.random.default_rng(seed)`` (numpy draws normals faster).
        dtype: ``torch.float64`` or ``torch.float32``.

    Returns:
        ``(paths, z)``: ``paths[:, i]`` is :math:`S_{t_{i+1}}` (``[n, m]``, :math:`S_0` excluded)
        and ``z`` the normals that made them.

    >>> S, z = gbm_paths(Market(100.0, 0.2, 0.0, 1.0), 3, 2, seed=0)
    >>> S.shape, bool(torch.allclose(S[:, 0], 100 * torch.exp(-0.01 + 0.2 * 0.5**0.5 * z[:, 0])))
    (torch.Size([3, 2]), True)
    """
    n = _count("num_paths", num_paths)
    m = _count("num_steps", num_steps)
    g = _generator(generator, seed)
    z = _normals(g, (n, m), dtype)
    dt = market.maturity / m
    return _gbm_from_normals(market.spot, market.vol, market.rate, dt, z), z


def _generator(generator: Any, seed: int | None) -> torch.Generator | np.random.Generator:
    if generator is not None and seed is not None:
        raise ValueError("give generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, (torch.Generator, np.random.Generator)):
            raise TypeError(
                "generator must be a torch.Generator or a numpy.random.Generator, got "
                f"{type(generator).__name__}"
            )
        return generator
    if seed is None:
        raise ValueError("randomness must be explicit: give generator= or seed=")
    # numpy's ziggurat draws float64 normals about 1.7x faster than torch.randn on CPUs, and
    # normal generation is most of the cost of a terminal-value Greek
    return np.random.default_rng(int(seed))


def _normals(g: torch.Generator | np.random.Generator, shape: tuple, dtype: torch.dtype) -> Tensor:
    """Standard normals from a torch generator, or from numpy's ziggurat sampler (zero copy)."""
    if isinstance(g, np.random.Generator):
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        return torch.from_numpy(g.standard_normal(shape, dtype=np_dtype))
    return torch.randn(*shape, generator=g, dtype=dtype)


def _heston_variance(heston: Heston, dt: float, zv: Tensor) -> Tensor:
    """Full-truncation Euler variances :math:`v^+_{t_i}`, ``i = 0..m-1`` (``[n, m]``)."""
    n, m = zv.shape
    zt = zv.T.contiguous()  # time-major: each step reads and writes contiguous memory
    out = torch.empty_like(zt)
    v = torch.full((n,), heston.v0, dtype=zv.dtype)
    sdt = math.sqrt(dt)
    for i in range(m):  # a loop over time steps, vectorised over paths
        vp = v.clamp_min(0.0)
        out[i] = vp
        v = v + heston.kappa * (heston.theta - vp) * dt + heston.xi * vp.sqrt() * sdt * zt[i]
    return out.T


def _heston_from_normals(
    s0: Tensor | float, rate: Tensor | float, heston: Heston, dt: float, z: Tensor, vp: Tensor
) -> Tensor:
    """Heston prices at the steps from normals ``z[..., 0]`` (variance) and ``z[..., 1]`` (independent)."""
    rho = heston.rho
    shock = (vp * dt).sqrt() * (rho * z[..., 0] + math.sqrt(1.0 - rho * rho) * z[..., 1])
    return s0 * torch.exp(torch.cumsum((rate - 0.5 * vp) * dt + shock, dim=1))


def heston_paths(
    market: Market,
    heston: Heston,
    num_paths: int,
    num_steps: int,
    *,
    generator: torch.Generator | np.random.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    r"""Heston paths by full-truncation Euler in log price (``market.vol`` is not used).

    .. math::

        v_{i+1} = v_i + \kappa(\theta - v_i^+)\Delta t + \xi\sqrt{v_i^+\Delta t}\,Z^v_i, \quad
        \ln S_{i+1} = \ln S_i + (r - \tfrac12 v_i^+)\Delta t + \sqrt{v_i^+\Delta t}\,
        (\rho Z^v_i + \sqrt{1-\rho^2} Z^\perp_i).

    Returns:
        ``(paths, z)``: ``paths`` ``[n, m]`` at :math:`t_1..t_m`; ``z`` ``[n, m, 2]``.

    Reference: Lord, Koekkoek & van Dijk (2010).

    >>> S, z = heston_paths(Market(100.0, 0.2, 0.0, 1.0), Heston(0.04, 1.5, 0.04, 0.5, -0.7), 4, 8, seed=0)
    >>> S.shape, z.shape
    (torch.Size([4, 8]), torch.Size([4, 8, 2]))
    """
    n = _count("num_paths", num_paths)
    m = _count("num_steps", num_steps)
    g = _generator(generator, seed)
    z = _normals(g, (n, m, 2), dtype)
    dt = market.maturity / m
    vp = _heston_variance(heston, dt, z[..., 0])
    return _heston_from_normals(market.spot, market.rate, heston, dt, z, vp), z


# ---------------------------------------------------------------------------------------------
# payoffs and weights
# ---------------------------------------------------------------------------------------------


def barrier_survival(
    paths: Tensor, spot: Tensor | float, barrier: float, vol: Tensor | float, dt: float
) -> Tensor:
    r"""Probability that the GBM bridge through ``spot, paths[:, 0], ..., paths[:, -1]`` stays below ``barrier``.

    .. math:: \prod_i \Big(1 - e^{-2\ln(H/S_{t_i})\ln(H/S_{t_{i+1}})/(\sigma^2\Delta t)}\Big)\,
              \mathbb 1\{S_{t_i} < H\ \forall i\}

    >>> p = barrier_survival(torch.tensor([[110.0]], dtype=torch.float64), 100.0, 120.0, 0.2, 1.0)
    >>> round(float(p), 4) == round(1 - math.exp(-2 * math.log(1.2) * math.log(120 / 110) / 0.04), 4)
    True
    """
    log_h = math.log(barrier)
    s0 = torch.as_tensor(spot, dtype=paths.dtype).reshape(1, 1).expand(paths.shape[0], 1)
    prev = torch.cat([s0, paths[:, :-1]], dim=1)
    a = log_h - torch.log(prev)
    b = log_h - torch.log(paths)
    alive = (paths < barrier).all(dim=1) & (prev[:, :1] < barrier).squeeze(1)
    # clamp: a*b < 0 only on dead paths, where exp would overflow
    cross = torch.exp(-2.0 * (a * b).clamp_min(0.0) / (vol * vol * dt))
    return torch.where(alive, torch.prod(1.0 - cross, dim=1), torch.zeros((), dtype=paths.dtype))


def payoff(
    option: Option,
    paths: Tensor,
    spot: Tensor | float,
    vol: Tensor | float = 0.0,
    dt: float = 1.0,
) -> Tensor:
    """Undiscounted payoff per path ``[n]`` of ``paths`` ``[n, m]`` (``spot``, ``vol``, ``dt`` for the bridge).

    >>> payoff(Option("asian", 100.0), torch.tensor([[90.0, 120.0], [80.0, 90.0]]), 100.0)
    tensor([5., 0.])
    """
    k = option.strike
    last = paths[:, -1]
    if option.payoff == "call":
        return (last - k).relu_()
    if option.payoff == "put":
        return torch.relu(k - last)
    if option.payoff == "digital":
        return option.cash * (last > k).to(paths.dtype)
    if option.payoff == "asian":
        return torch.relu(paths.mean(dim=1) - k)
    if option.payoff == "geometric":
        return torch.relu(torch.exp(torch.log(paths).mean(dim=1)) - k)
    if option.monitoring == "discrete":
        return torch.relu(last - k) * (paths < option.barrier).all(dim=1).to(paths.dtype)
    return torch.relu(last - k) * barrier_survival(paths, spot, option.barrier, vol, dt)


def lr_weights(z: Tensor, market: Market, dt: float) -> dict[str, Tensor]:
    r"""Likelihood-ratio weights of a GBM path from its normals ``z`` ``[n, m]``.

    ``delta`` :math:`=Z_1/(S_0\sigma\sqrt{\Delta t})`, ``vega`` :math:`=\sum_i[(Z_i^2-1)/\sigma -
    Z_i\sqrt{\Delta t}]`, ``rho`` :math:`=\sqrt{\Delta t}\sum_i Z_i/\sigma` (discounting not
    included), ``gamma`` :math:`=(Z_1^2-1)/(S_0^2\sigma^2\Delta t) - Z_1/(S_0^2\sigma\sqrt{\Delta t})`
    (the second-order weight :math:`\partial^2_{S_0}p/p`).

    >>> w = lr_weights(torch.tensor([[1.0]], dtype=torch.float64), Market(100.0, 0.2, 0.0, 1.0), 1.0)
    >>> float(w["delta"]), float(w["vega"])
    (0.05, -1.0)
    """
    return {name: _lr_weight(name, z, market, dt) for name in ("delta", "vega", "rho", "gamma")}


def _lr_weight(name: str, z: Tensor, market: Market, dt: float) -> Tensor:
    """One weight of :func:`lr_weights` (computed only when needed: they cost a pass each)."""
    s0, vol = market.spot, market.vol
    sdt = math.sqrt(dt)
    z1 = z[:, 0]
    if name == "delta":
        return z1 * (1.0 / (s0 * vol * sdt))
    if name == "vega":
        return ((z * z - 1.0) / vol - z * sdt).sum(dim=1)
    if name == "rho":
        return z.sum(dim=1) * (sdt / vol)
    return (z1 * z1 - 1.0) / (s0 * s0 * vol * vol * dt) - z1 / (s0 * s0 * vol * sdt)


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------


def available_methods(option: Option, heston: Heston | None = None) -> dict[str, dict[str, str]]:
    """For each Greek, the methods that apply and, for the others, why they are refused.

    Returns:
        ``{greek: {method: ""}}`` for valid methods, the reason text for refused ones.

    >>> available_methods(Option("digital", 100.0))["delta"]["pathwise"][:30]
    'refused: the digital payoff is'
    """
    out: dict[str, dict[str, str]] = {g: {} for g in GREEKS}
    out["price"]["mc"] = ""
    if option.pathwise_ok:
        pw = ""
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
        out["vega"] = {
            m: "not defined: Heston has no single volatility parameter" for m in ("lr", "pathwise")
        }
        out["rho"]["lr"] = (
            "not available under Heston: the conditional log-price density degenerates where the "
            "truncated variance is 0"
        )
    return out


@dataclass(frozen=True)
class GreekEstimate:
    """One Monte Carlo estimate: mean of per-path terms, their standard deviation, the standard error."""

    greek: str
    method: str
    value: float
    stderr: float
    std: float
    num_paths: int
    reference: float | None = None

    @property
    def ci95(self) -> tuple[float, float]:
        """95% normal confidence interval."""
        return (
            self.value - 1.959963984540054 * self.stderr,
            self.value + 1.959963984540054 * self.stderr,
        )

    @property
    def z(self) -> float:
        """``(value - reference) / stderr`` (nan without a reference)."""
        if self.reference is None or self.stderr == 0.0:
            return float("nan")
        return (self.value - self.reference) / self.stderr


@dataclass
class GreeksResult:
    """All estimates of one run (:func:`estimate_greeks`)."""

    option: Option
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
            "option": asdict(self.option),
            "market": asdict(self.market),
            "heston": None if self.heston is None else asdict(self.heston),
            "num_paths": self.num_paths,
            "seconds": self.seconds,
            "dtype": self.dtype,
            "estimates": [
                asdict(e) | {"ci95": list(e.ci95), "z": None if math.isnan(e.z) else e.z}
                for e in self.estimates
            ],
            "refused": self.refused,
        }


class _Running:
    """Streaming mean and sum of squared deviations (Chan et al. 1979 merge), float64."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, x: Tensor, scale: float = 1.0) -> None:
        """Add the values ``scale * x`` (the scale is applied to the chunk's moments: one pass less)."""
        x = x.to(torch.float64)
        nb = x.numel()
        # sum and dot: one BLAS pass each, ~10x faster than var_mean; the cancellation in
        # m2 = x.x - n mean^2 costs eps * (1 + mean^2 / var) relative, negligible here
        total, sq = float(x.sum()), float(torch.dot(x, x))
        mean_b = total / nb
        m2_b = max(sq - total * mean_b, 0.0) * scale * scale
        mean_b *= scale
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean += delta * nb / n
        self.m2 += m2_b + delta * delta * self.n * nb / n
        self.n = n

    def result(self) -> tuple[float, float, float]:
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else float("nan")
        return self.mean, std / math.sqrt(self.n), std


def _jvp(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-path derivative of ``fn`` (``[n]``) w.r.t. the scalar ``x`` (forward mode)."""
    return torch.func.jvp(fn, (x,), (torch.ones_like(x),))[1]


def _gbm_terms(
    option: Option, market: Market, z: Tensor, wanted: dict[str, list[str]]
) -> dict[tuple[str, str], Tensor | tuple[Tensor, float]]:
    """Per-path terms of the requested (greek, method) pairs for one chunk of GBM normals."""
    dt = market.maturity / z.shape[1]
    T = market.maturity
    c = lambda v: torch.tensor(v, dtype=z.dtype)  # noqa: E731
    s0, vol, r = c(market.spot), c(market.vol), c(market.rate)
    disc = market.discount
    explicit = option.payoff == "barrier" and option.monitoring == "bridge"
    if z.shape[1] == 1:  # terminal only: no cumulative sum, in-place passes (the fast path)
        a = (market.rate - 0.5 * market.vol**2) * dt
        S = (z * (market.vol * math.sqrt(dt))).add_(a).exp_().mul_(market.spot)
    else:
        S = _gbm_from_normals(market.spot, market.vol, market.rate, dt, z)
    f = payoff(option, S, s0, vol, dt)
    # (tensor, scale): the accumulator applies the constant factor to the chunk's moments
    out: dict[tuple[str, str], Tensor | tuple[Tensor, float]] = {("price", "mc"): (f, disc)}
    lr = [g for g, ms in wanted.items() if "lr" in ms]
    if lr:
        w = lambda name: _lr_weight(name, z, market, dt)  # noqa: E731
        f_s0 = _jvp(lambda u: payoff(option, S, u, vol, dt), s0) if explicit else None
        if "delta" in lr:
            if explicit:
                out[("delta", "lr")] = disc * (f * w("delta") + f_s0)
            else:  # disc * f * z1 / (s0 vol sqrt(dt)), in two passes
                c0 = disc / (market.spot * market.vol * math.sqrt(dt))
                out[("delta", "lr")] = (z[:, 0] * f, c0)
        if "vega" in lr:
            f_vol = _jvp(lambda u: payoff(option, S, s0, u, dt), vol) if explicit else 0.0
            out[("vega", "lr")] = disc * (f * w("vega") + f_vol)
        if "rho" in lr:
            out[("rho", "lr")] = disc * f * (w("rho") - T)
        if "gamma" in lr:
            term = f * w("gamma")
            if explicit:
                f_ss = _jvp(lambda v: _jvp(lambda u: payoff(option, S, u, vol, dt), v), s0)
                term = term + 2.0 * f_s0 * w("delta") + f_ss
            out[("gamma", "lr")] = disc * term

    def value(s: Tensor, v: Tensor, rr: Tensor) -> Tensor:
        return torch.exp(-rr * T) * payoff(option, _gbm_from_normals(s, v, rr, dt, z), s, v, dt)

    if "pathwise" in wanted.get("delta", []) or "mixed" in wanted.get("gamma", []):
        h = _jvp(lambda u: value(u, vol, r), s0)
        if "pathwise" in wanted.get("delta", []):
            out[("delta", "pathwise")] = h
        if "mixed" in wanted.get("gamma", []):
            if explicit:
                # h as a function of (path, S0): d/du of the value along S = u * (path / S0)
                def h_at(v: Tensor) -> Tensor:
                    return _jvp(lambda u: disc * payoff(option, u * (S / v), u, vol, dt), v)

                dh = _jvp(h_at, s0)
            else:
                dh = -h / s0
            out[("gamma", "mixed")] = h * _lr_weight("delta", z, market, dt) + dh
    if "pathwise" in wanted.get("vega", []):
        out[("vega", "pathwise")] = _jvp(lambda u: value(s0, u, r), vol)
    if "pathwise" in wanted.get("rho", []):
        out[("rho", "pathwise")] = _jvp(lambda u: value(s0, vol, u), r)
    return out


def _heston_terms(
    option: Option, market: Market, heston: Heston, z: Tensor, wanted: dict[str, list[str]]
) -> dict[tuple[str, str], Tensor]:
    """Per-path terms under Heston (price, delta lr/pathwise, gamma lr/mixed, rho pathwise)."""
    m = z.shape[1]
    dt = market.maturity / m
    T = market.maturity
    c = lambda v: torch.tensor(v, dtype=z.dtype)  # noqa: E731
    s0, r = c(market.spot), c(market.rate)
    vp = _heston_variance(heston, dt, z[..., 0])

    def value(s: Tensor, rr: Tensor) -> Tensor:
        paths = _heston_from_normals(s, rr, heston, dt, z, vp)
        return torch.exp(-rr * T) * payoff(option, paths, s)

    f = value(s0, r)
    out = {("price", "mc"): f}
    # x_1 given the variance noise is Gaussian with sd s1: the score w.r.t. S0
    s1 = math.sqrt((1.0 - heston.rho**2) * heston.v0 * dt)
    zp = z[:, 0, 1]
    w1 = zp / (market.spot * s1)
    if "lr" in wanted.get("delta", []):
        out[("delta", "lr")] = f * w1
    if "lr" in wanted.get("gamma", []):
        w2 = (zp * zp - 1.0) / (market.spot**2 * s1 * s1) - zp / (market.spot**2 * s1)
        out[("gamma", "lr")] = f * w2
    if "pathwise" in wanted.get("delta", []) or "mixed" in wanted.get("gamma", []):
        h = _jvp(lambda u: value(u, r), s0)
        if "pathwise" in wanted.get("delta", []):
            out[("delta", "pathwise")] = h
        if "mixed" in wanted.get("gamma", []):
            out[("gamma", "mixed")] = h * (w1 - 1.0 / market.spot)
    if "pathwise" in wanted.get("rho", []):
        out[("rho", "pathwise")] = _jvp(lambda u: value(s0, u), r)
    return out


def _save_checkpoint(
    path: Path, config: dict, done: int, acc: dict, g: torch.Generator | np.random.Generator
) -> None:
    """Write the running sums and the generator's state; atomic (temporary file, then rename)."""
    if isinstance(g, np.random.Generator):
        state: Any = {"numpy": g.bit_generator.state}
    else:
        state = {"torch": g.get_state().tolist()}
    data = {
        "config": config,
        "done": done,
        "acc": {f"{k[0]}|{k[1]}": [r.n, r.mean, r.m2] for k, r in acc.items()},
        "generator": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _load_checkpoint(
    path: Path, config: dict, acc: dict, g: torch.Generator | np.random.Generator
) -> int:
    """Restore the running sums and the generator's state; return the paths already done."""
    data = json.loads(path.read_text())
    if data.get("config") != config:
        saved = data.get("config", {})
        diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        raise ValueError(
            f"checkpoint {path} was made with other settings (saved, now): {diff}; use the same "
            "settings, or restart=True (--restart) to start afresh"
        )
    for key, (cnt, mean, m2) in data["acc"].items():
        r = _Running()
        r.n, r.mean, r.m2 = int(cnt), float(mean), float(m2)
        acc[tuple(key.split("|"))] = r
    if isinstance(g, np.random.Generator):
        g.bit_generator.state = data["generator"]["numpy"]
    else:
        g.set_state(torch.tensor(data["generator"]["torch"], dtype=torch.uint8))
    return int(data["done"])


def _select(
    option: Option,
    heston: Heston | None,
    greeks: Sequence[str] | None,
    methods: Sequence[str] | None,
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The (greek -> methods) to compute, and the refused ones with their reasons."""
    avail = available_methods(option, heston)
    explicit_greeks = greeks is not None
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


def estimate_greeks(
    option: Option,
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
    callback: Callable[[int], None] | None = None,
    checkpoint: str | Path | None = None,
    restart: bool = False,
) -> GreeksResult:
    r"""Price and Greeks of ``option`` by Monte Carlo, in chunks of paths (bounded memory).

    The price is always estimated (method ``"mc"``). Each estimate is the mean of per-path terms
    accumulated over chunks in float64 (streaming mean and variance), with its standard error
    :math:`s/\sqrt n` and a 95% interval.

    Args:
        option: the payoff.
        market: spot, volatility (ignored under Heston), rate, maturity.
        num_paths: total number of paths.
        greeks: subset of :data:`GREEKS` (default all).
        methods: subset of ``("lr", "pathwise", "mixed")``; default: every method valid for the
            payoff (invalid ones are listed in ``result.refused``). Asking explicitly for an
            invalid method (pathwise on a digital, say) raises ``ValueError``.
        heston: simulate the Heston model instead of GBM.
        generator: torch generator (or give ``seed``); chunks draw from it in order. A
            ``numpy.random.Generator`` is accepted too: its ziggurat normal sampler is about
            twice as fast as torch's float64 CPU sampler, which dominates the cost of
            terminal-only payoffs.
        seed: shorthand for a fresh generator.
        chunk_size: paths per chunk.
        dtype: ``torch.float64`` or ``torch.float32`` for the simulation.
        reference: ``{greek: value}`` attached to the estimates (e.g. :func:`quantlib_reference`).
        callback: called with the number of paths of each finished chunk (progress bars;
            on resuming, first with the paths already done).
        checkpoint: a JSON file rewritten (atomically) after every chunk with the running sums
            and the generator's state; if it exists, the run resumes from it, so an interrupted
            run loses no finished chunk and ends with the same numbers as an uninterrupted one.
            A checkpoint made with other settings raises ``ValueError``.
        restart: delete ``checkpoint`` first and start afresh.

    Returns:
        :class:`GreeksResult`.

    Raises:
        ValueError: bad sizes, unknown greek or method, an invalid method asked for explicitly,
            a barrier under Heston.

    >>> res = estimate_greeks(Option("digital", 100.0), Market(100.0, 0.2, 0.05, 1.0), 10_000,
    ...                       greeks=["delta"], seed=1)
    >>> [e.method for e in res.estimates], sorted(res.refused["delta"])
    (['mc', 'lr'], ['pathwise'])
    """
    n = _count("num_paths", num_paths)
    chunk = _count("chunk_size", chunk_size)
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
    if heston is not None and option.payoff == "barrier":
        raise ValueError(
            "payoff='barrier' needs the GBM Brownian-bridge crossing probability; use heston=None"
        )
    g = _generator(generator, seed)
    wanted, refused = _select(option, heston, greeks, methods)
    m = option.num_steps(heston)
    acc: dict[tuple[str, str], _Running] = {}
    start = time.perf_counter()
    done = 0
    ckpt = None if checkpoint is None else Path(checkpoint)
    config = {
        "option": asdict(option),
        "market": asdict(market),
        "heston": None if heston is None else asdict(heston),
        "num_paths": n,
        "chunk_size": chunk,
        "dtype": str(dtype),
        "wanted": {k: sorted(v) for k, v in sorted(wanted.items())},
        "generator": type(g).__name__,
    }
    if ckpt is not None and restart and ckpt.exists():
        ckpt.unlink()
    if ckpt is not None and ckpt.exists():
        done = _load_checkpoint(ckpt, config, acc, g)
        if callback is not None and done:
            callback(done)
    while done < n:
        b = min(chunk, n - done)
        if heston is None:
            z = _normals(g, (b, m), dtype)
            terms = _gbm_terms(option, market, z, wanted)
        else:
            z = _normals(g, (b, m, 2), dtype)
            terms = _heston_terms(option, market, heston, z, wanted)
        for key, t in terms.items():
            t, scale = t if isinstance(t, tuple) else (t, 1.0)
            acc.setdefault(key, _Running()).update(t, scale)
            # a nan or inf anywhere in the chunk makes its mean or spread non-finite
            if not (math.isfinite(acc[key].mean) and math.isfinite(acc[key].m2)):
                raise ValueError(f"non-finite per-path terms for {key[0]} by {key[1]}")
        done += b
        if ckpt is not None:
            _save_checkpoint(ckpt, config, done, acc, g)
        if callback is not None:
            callback(b)
    reference = reference or {}
    estimates = []
    for g_name in GREEKS:
        for meth in METHODS:
            if (g_name, meth) in acc:
                mean, se, std = acc[(g_name, meth)].result()
                estimates.append(
                    GreekEstimate(g_name, meth, mean, se, std, n, reference.get(g_name))
                )
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


# ---------------------------------------------------------------------------------------------
# QuantLib references
# ---------------------------------------------------------------------------------------------


def _quantlib_greeks(opt: Any, T: float) -> dict[str, float]:
    """Price and Greeks of a QuantLib option priced on the time-changed clock (factor ``T``)."""
    return {
        "price": opt.NPV(),
        "delta": opt.delta(),
        "gamma": opt.gamma(),
        "vega": opt.vega() * math.sqrt(T),
        "rho": opt.rho() * T,
    }


def quantlib_reference(
    option: Option, market: Market, heston: Heston | None = None
) -> dict[str, float]:
    r"""Price and Greeks from QuantLib's analytic engines; ``{}`` when none applies (arithmetic Asian).

    QuantLib works on calendar dates, so the maturity is mapped to exactly one year
    (Actual/365, 365 days) with the time-scaled parameters :math:`\sigma' = \sigma\sqrt T`,
    :math:`r' = rT` (Heston: :math:`v_0' = v_0T`, :math:`\kappa' = \kappa T`, :math:`\theta' =
    \theta T`, :math:`\xi' = \xi T`); prices and spot Greeks are unchanged by the time change,
    and vega and rho are mapped back by :math:`\partial_\sigma = \sqrt T\,\partial_{\sigma'}`,
    :math:`\partial_r = T\,\partial_{r'}`. Europeans and digitals: ``AnalyticEuropeanEngine``
    Greeks. Geometric Asian: ``AnalyticDiscreteGeometricAveragePriceAsianEngine`` and its Greeks
    (the horizon is then a whole number of days per averaging date, scaled the same way). Barrier: ``AnalyticBarrierEngine`` (continuous monitoring), Greeks by central
    differences of its price. Heston call/put: ``AnalyticHestonEngine``, delta, gamma and rho by
    central differences.

    Raises:
        ImportError: QuantLib is not installed (``pip install QuantLib``).

    >>> ref = quantlib_reference(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0))
    >>> round(ref["price"], 4), round(ref["delta"], 4)
    (10.4506, 0.6368)
    """
    import QuantLib as ql

    # the QuantLib horizon: one year, or whole days per averaging date for the geometric Asian
    m = option.steps
    days = m * math.ceil(365 / m) if option.payoff == "geometric" else 365
    T = market.maturity * 365 / days  # the time-change factor (the maturity if days = 365)
    today = ql.Date(1, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    maturity = today + days
    dc = ql.Actual365Fixed()
    spot = ql.SimpleQuote(market.spot)
    vol = ql.SimpleQuote(market.vol * math.sqrt(T))
    rate = ql.SimpleQuote(market.rate * T)
    curve = ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc))
    div = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc))
    kind = ql.Option.Put if option.payoff == "put" else ql.Option.Call
    exercise = ql.EuropeanExercise(maturity)

    def central(quote: Any, h: float, npv: Callable[[], float]) -> tuple[float, float, float]:
        x = quote.value()
        quote.setValue(x + h)
        up = npv()
        quote.setValue(x - h)
        down = npv()
        quote.setValue(x)
        mid = npv()
        return mid, (up - down) / (2 * h), (up - 2 * mid + down) / (h * h)

    if heston is not None:
        if option.payoff not in ("call", "put"):
            return {}
        process = ql.HestonProcess(
            curve,
            div,
            ql.QuoteHandle(spot),
            heston.v0 * T,
            heston.kappa * T,
            heston.theta * T,
            heston.xi * T,
            heston.rho,
        )
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(kind, option.strike), exercise)
        opt.setPricingEngine(ql.AnalyticHestonEngine(ql.HestonModel(process), 1e-12, 100_000))
        price, delta, gamma = central(spot, 1e-3 * market.spot, opt.NPV)
        _, rho, _ = central(rate, 1e-5, opt.NPV)
        return {"price": price, "delta": delta, "gamma": gamma, "rho": rho * T}

    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        div,
        curve,
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)
        ),
    )
    if option.payoff in ("call", "put", "digital"):
        pay = (
            ql.CashOrNothingPayoff(kind, option.strike, option.cash)
            if option.payoff == "digital"
            else ql.PlainVanillaPayoff(kind, option.strike)
        )
        opt = ql.VanillaOption(pay, exercise)
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        return _quantlib_greeks(opt, T)
    if option.payoff == "geometric":
        fixings = [today + (i + 1) * (days // m) for i in range(m)]
        opt = ql.DiscreteAveragingAsianOption(
            ql.Average.Geometric,
            1.0,
            0,
            fixings,
            ql.PlainVanillaPayoff(ql.Option.Call, option.strike),
            exercise,
        )
        opt.setPricingEngine(ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(process))
        return _quantlib_greeks(opt, T)
    if option.payoff == "barrier":
        opt = ql.BarrierOption(
            ql.Barrier.UpOut,
            option.barrier,
            0.0,
            ql.PlainVanillaPayoff(ql.Option.Call, option.strike),
            exercise,
        )
        opt.setPricingEngine(ql.AnalyticBarrierEngine(process))
        price, delta, gamma = central(spot, 1e-3 * market.spot, opt.NPV)
        _, vega, _ = central(vol, 1e-5, opt.NPV)
        _, rho, _ = central(rate, 1e-5, opt.NPV)
        return {
            "price": price,
            "delta": delta,
            "gamma": gamma,
            "vega": vega * math.sqrt(T),
            "rho": rho * T,
        }
    return {}


# ---------------------------------------------------------------------------------------------
# command line: stochgrad greeks
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad greeks``."""
    from stochgrad.cli import positive_int

    parser.add_argument("--payoff", choices=PAYOFFS, default="call")
    parser.add_argument("--spot", type=float, default=100.0)
    parser.add_argument("--strike", type=float, default=100.0)
    parser.add_argument("--vol", type=float, default=0.2, help="GBM volatility")
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--maturity", type=float, default=1.0, help="in years")
    parser.add_argument("--barrier", type=float, default=120.0, help="up-and-out level")
    parser.add_argument(
        "--monitoring",
        choices=("bridge", "discrete"),
        default="bridge",
        help="barrier: Brownian-bridge correction (exact) or naive discrete monitoring",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="monitoring dates / time steps (default: asian 12, barrier 1 with the bridge "
        "and 250 discrete, heston 100)",
    )
    parser.add_argument("--paths", type=positive_int, default=1_000_000)
    parser.add_argument("--chunk", type=positive_int, default=1 << 18, help="paths per chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float32", action="store_true", help="simulate in float32")
    parser.add_argument("--model", choices=("gbm", "heston"), default="gbm")
    parser.add_argument("--v0", type=float, default=None, help="Heston v0 (default vol^2)")
    parser.add_argument("--kappa", type=float, default=1.5)
    parser.add_argument("--theta", type=float, default=0.04)
    parser.add_argument("--xi", type=float, default=0.5)
    parser.add_argument("--rho", type=float, default=-0.7)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of estimates vs QuantLib")
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="JSON file saved after every chunk; an interrupted run resumes from it",
    )
    parser.add_argument(
        "--restart", action="store_true", help="delete the --checkpoint file and start afresh"
    )


def _default_steps(payoff_name: str, monitoring: str, model: str) -> int:
    if model == "heston":
        return 100
    if payoff_name in ("asian", "geometric"):
        return 12
    if payoff_name == "barrier":
        return 1 if monitoring == "bridge" else 250
    return 1


def _plot(path: Path, res: GreeksResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [g for g in GREEKS if any(e.greek == g for e in res.estimates)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.2))
    axes = [axes] if len(names) == 1 else list(axes)
    for ax, g in zip(axes, names, strict=True):
        ests = [e for e in res.estimates if e.greek == g]
        xs = range(len(ests))
        ax.errorbar(
            xs,
            [e.value for e in ests],
            yerr=[1.959963984540054 * e.stderr for e in ests],
            fmt="o",
            capsize=4,
        )
        if ests[0].reference is not None:
            ax.axhline(ests[0].reference, color="C3", ls="--", label="QuantLib")
            ax.legend(fontsize=7)
        ax.set_xticks(list(xs), [e.method for e in ests])
        ax.set_title(g)
    fig.suptitle(f"{res.option.payoff}, {res.num_paths:,} paths, 95% intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace, console: Any) -> int:
    """Price and Greeks by likelihood ratio, pathwise and mixed estimators, against QuantLib."""
    from rich.table import Table

    from stochgrad.cli import fmt, prepare_output, progress_bar, z_style

    steps = args.steps or _default_steps(args.payoff, args.monitoring, args.model)
    try:
        market = Market(args.spot, args.vol, args.rate, args.maturity)
        option = Option(
            args.payoff,
            args.strike,
            barrier=args.barrier if args.payoff == "barrier" else None,
            steps=steps,
            monitoring=args.monitoring,
        )
        heston = None
        if args.model == "heston":
            v0 = args.vol**2 if args.v0 is None else args.v0
            heston = Heston(v0, args.kappa, args.theta, args.xi, args.rho)
    except (ValueError, TypeError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    try:
        reference = quantlib_reference(option, market, heston)
    except ImportError:
        console.print("[yellow]QuantLib not installed: no reference values[/yellow]")
        reference = {}
    with progress_bar(console) as progress:
        task = progress.add_task("paths", total=args.paths)
        try:
            res = estimate_greeks(
                option,
                market,
                args.paths,
                heston=heston,
                seed=args.seed,
                chunk_size=args.chunk,
                dtype=torch.float32 if args.float32 else torch.float64,
                reference=reference,
                callback=lambda b: progress.advance(task, b),
                checkpoint=args.checkpoint,
                restart=args.restart,
            )
        except ValueError as err:
            console.print(f"[red]error:[/red] {err}")
            return 2
    model = "GBM" if heston is None else "Heston (full-truncation Euler)"
    title = (
        f"{option.payoff} K={option.strike:g}"
        + (f" H={option.barrier:g} ({option.monitoring})" if option.payoff == "barrier" else "")
        + f", {model}, S0={market.spot:g} r={market.rate:g} T={market.maturity:g}"
        + ("" if heston else f" vol={market.vol:g}")
        + f", {res.num_paths:,} paths, {steps if option.num_steps(heston) > 1 else 1} step(s)"
    )
    table = Table(title=title)
    for col in ("greek", "method", "value", "stderr", "95% CI", "per-path sd", "QuantLib", "z"):
        table.add_column(col, justify="right" if col not in ("greek", "method") else "left")
    for e in res.estimates:
        lo, hi = e.ci95
        z = e.z
        table.add_row(
            e.greek,
            e.method,
            fmt(e.value, 6),
            fmt(e.stderr, 3),
            f"[{fmt(lo, 5)}, {fmt(hi, 5)}]",
            fmt(e.std, 3),
            "—" if e.reference is None else fmt(e.reference, 6),
            f"[{z_style(z)}]{'—' if math.isnan(z) else f'{z:+.2f}'}[/]",
        )
    console.print(table)
    for g, ms in res.refused.items():
        for meth, why in ms.items():
            console.print(f"[dim]{g} by {meth}: {why}[/dim]")
    console.print(f"{res.seconds:.2f} s, {res.dtype}, seed {args.seed}")
    if args.plot is not None:
        _plot(prepare_output(args.plot), res)
        console.print(f"wrote {args.plot}")
    if args.json is not None:
        prepare_output(args.json).write_text(json.dumps(res.to_dict(), indent=1))
        console.print(f"wrote {args.json}")
    return 0
