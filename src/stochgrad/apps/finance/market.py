r"""The market models and the contracts: Black-Scholes (:class:`Market`), Heston variance
dynamics (:class:`Heston`) and the payoffs (:class:`Option`), each validated on construction.

>>> Market(100.0, 0.2, 0.05, 1.0).discount
0.951229424500714
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stochgrad._checks import check_choice, check_float, check_int

__all__ = ["MONITORING", "PAYOFFS", "Heston", "Market", "Option"]

#: The payoffs of :class:`Option`.
PAYOFFS: tuple[str, ...] = ("call", "put", "digital", "asian", "geometric", "barrier")
#: How a barrier is monitored: the Brownian bridge (continuous, exact) or on the dates only.
MONITORING: tuple[str, ...] = ("bridge", "discrete")


def _positive(name: str, value: object) -> float:
    return check_float(name, value, minimum=0.0, open_min=True)


@dataclass(frozen=True)
class Market:
    """Black-Scholes market: spot :math:`S_0`, volatility :math:`\\sigma`, rate :math:`r`,
    maturity :math:`T`, continuous dividend yield :math:`q` (default 0; the drift is
    :math:`r - q`).

    >>> Market(100.0, 0.2, 0.05, 1.0).discount
    0.951229424500714
    >>> Market(100.0, 0.2, 0.05, 1.0, dividend=0.03).dividend
    0.03
    """

    spot: float
    vol: float
    rate: float
    maturity: float
    dividend: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spot", _positive("spot", self.spot))
        object.__setattr__(self, "vol", _positive("vol", self.vol))
        object.__setattr__(self, "rate", check_float("rate", self.rate))
        object.__setattr__(self, "maturity", _positive("maturity", self.maturity))
        object.__setattr__(self, "dividend", check_float("dividend", self.dividend))

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
        rho = check_float("rho", self.rho, minimum=-1.0, maximum=1.0, open_min=True, open_max=True)
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
        check_choice("payoff", self.payoff, PAYOFFS)
        object.__setattr__(self, "strike", _positive("strike", self.strike))
        object.__setattr__(self, "cash", _positive("cash", self.cash))
        object.__setattr__(self, "steps", check_int("steps", self.steps, minimum=1))
        check_choice("monitoring", self.monitoring, MONITORING)
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
