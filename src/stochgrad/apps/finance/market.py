r"""The market models and the contracts: Black-Scholes (:class:`Market`), Heston variance
dynamics (:class:`Heston`) and the payoffs (:class:`Option`), each validated on construction.

>>> Market(100.0, 0.2, 0.05, 1.0).discount
0.951229424500714
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stochgrad._checks import check_choice, check_float, check_int

__all__ = ["DIRECTIONS", "KINDS", "KNOCKS", "MONITORING", "PAYOFFS", "Heston", "Market", "Option"]

#: The payoffs of :class:`Option`.
PAYOFFS: tuple[str, ...] = ("call", "put", "digital", "asian", "geometric", "barrier")
#: How a barrier is monitored: the Brownian bridge (continuous, exact) or on the dates only.
MONITORING: tuple[str, ...] = ("bridge", "discrete")
#: Where a barrier sits: above the spot (``"up"``) or below it (``"down"``).
DIRECTIONS: tuple[str, ...] = ("up", "down")
#: What touching the barrier does: kills the option (``"out"``) or brings it to life (``"in"``).
KNOCKS: tuple[str, ...] = ("out", "in")
#: The vanilla payoff a barrier option pays at maturity.
KINDS: tuple[str, ...] = ("call", "put")


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
    a check of the path simulation and of the multi-step weights) or ``"barrier"`` (a call or put
    knocked out, or in, when the price crosses :math:`H`; by default the up-and-out call).

    A knock-in pays the vanilla payoff unless the path never touched :math:`H`, so per path it
    is the vanilla payoff minus the knock-out's (in-out parity).

    Args:
        payoff: one of :data:`PAYOFFS`.
        strike: strike :math:`K > 0`.
        barrier: the level :math:`H` (barrier only). An up-and-out call needs :math:`H > K` and
            a down-and-out put :math:`H < K` (otherwise they are worthless).
        steps: monitoring dates (Asian average, barrier) or Heston time steps; GBM calls, puts
            and digitals always use one exact step.
        monitoring: ``"bridge"`` (continuous barrier, exact) or ``"discrete"`` (on the dates
            only); barrier only.
        cash: the digital's cash amount.
        direction: ``"up"`` (:math:`H` above the spot) or ``"down"``; barrier only.
        knock: ``"out"`` or ``"in"``; barrier only.
        kind: ``"call"`` or ``"put"``, the payoff at maturity; barrier only.

    >>> Option("barrier", 100.0, barrier=120.0).pathwise_ok
    True
    >>> Option("barrier", 100.0, barrier=80.0, direction="down", knock="in", kind="put").label
    'down-and-in put'
    >>> Option("digital", 100.0).pathwise_ok
    False
    """

    payoff: str
    strike: float
    barrier: float | None = None
    steps: int = 1
    monitoring: str = "bridge"
    cash: float = 1.0
    direction: str = "up"
    knock: str = "out"
    kind: str = "call"

    def __post_init__(self) -> None:
        check_choice("payoff", self.payoff, PAYOFFS)
        object.__setattr__(self, "strike", _positive("strike", self.strike))
        object.__setattr__(self, "cash", _positive("cash", self.cash))
        object.__setattr__(self, "steps", check_int("steps", self.steps, minimum=1))
        check_choice("monitoring", self.monitoring, MONITORING)
        check_choice("direction", self.direction, DIRECTIONS)
        check_choice("knock", self.knock, KNOCKS)
        check_choice("kind", self.kind, KINDS)
        if self.barrier is not None:  # checked whatever the payoff: a NaN level is never meant
            object.__setattr__(self, "barrier", _positive("barrier", self.barrier))
        if self.payoff != "barrier":
            # a put asked of an Asian, say, would otherwise be priced as a call without a word
            for name, default in (("direction", "up"), ("knock", "out"), ("kind", "call")):
                if getattr(self, name) != default:
                    raise ValueError(
                        f"{name} applies to payoff='barrier' only, got {name}="
                        f"{getattr(self, name)!r} with payoff={self.payoff!r}"
                    )
            return
        if self.barrier is None:
            raise ValueError("barrier is required for payoff='barrier'")
        h = _positive("barrier", self.barrier)
        if self.knock == "out" and self.direction == "up" and self.kind == "call":
            if h <= self.strike:
                raise ValueError(
                    f"barrier must exceed strike for an up-and-out call (else it is worthless), "
                    f"got barrier={h} <= strike={self.strike}"
                )
        if self.knock == "out" and self.direction == "down" and self.kind == "put":
            if h >= self.strike:
                raise ValueError(
                    f"barrier must be below strike for a down-and-out put (else it is "
                    f"worthless), got barrier={h} >= strike={self.strike}"
                )
        object.__setattr__(self, "barrier", h)

    @property
    def label(self) -> str:
        """The payoff in words: ``"up-and-out call"`` for a barrier, else :attr:`payoff`."""
        if self.payoff != "barrier":
            return self.payoff
        return f"{self.direction}-and-{self.knock} {self.kind}"

    @property
    def pathwise_ok(self) -> bool:
        """Whether the payoff is Lipschitz in the path (pathwise derivatives unbiased)."""
        if self.payoff == "digital":
            return False
        return not (self.payoff == "barrier" and self.monitoring == "discrete")

    def breached(self, spot: float) -> bool:
        """Whether ``spot`` is already at or beyond the barrier (an out option is then dead
        and an in option a vanilla one from the start); ``False`` without a barrier."""
        if self.payoff != "barrier":
            return False
        return spot >= self.barrier if self.direction == "up" else spot <= self.barrier

    def num_steps(self, heston: Heston | None = None) -> int:
        """Simulation steps: 1 for GBM calls, puts and digitals, ``steps`` otherwise."""
        if heston is None and self.payoff in ("call", "put", "digital"):
            return 1
        return self.steps
