r"""Reference prices and Greeks from QuantLib's analytic engines (the outside check).

``AnalyticEuropeanEngine`` (call, put, digital), ``AnalyticDiscreteGeometricAveragePriceAsianEngine``
(geometric Asian), ``AnalyticBarrierEngine`` (continuous barrier, up or down, in or out, call or
put; Greeks by central differences of its price; with the Broadie-Glasserman-Kou shift of the
barrier for discrete monitoring on request), ``AnalyticHestonEngine`` (Greeks by central
differences). QuantLib is an optional dependency (``pip install 'stochgrad[finance]'``), imported
when a reference is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from stochgrad.apps.finance.market import Heston, Market, Option

__all__ = ["BGK_BETA", "bgk_barrier", "quantlib_reference"]

#: :math:`\beta = -\zeta(1/2)/\sqrt{2\pi}`, the Broadie-Glasserman-Kou shift (Riemann zeta).
BGK_BETA = 0.5825971579390107


def bgk_barrier(option: Option, market: Market) -> float:
    r"""The continuous barrier that prices ``option``'s discretely monitored one, to first order.

    Broadie, Glasserman & Kou (1997): monitoring on :math:`m` dates :math:`\Delta t = T/m`
    apart is, up to :math:`o(1/\sqrt m)`, continuous monitoring of the barrier moved away from
    the spot, :math:`H e^{\pm\beta\sigma\sqrt{\Delta t}}` (``+`` up, ``-`` down).

    >>> h = bgk_barrier(Option("barrier", 100.0, barrier=120.0, steps=4), Market(100, 0.2, 0, 1))
    >>> abs(h - 120.0 * math.exp(0.5826 * 0.2 * math.sqrt(1 / 4))) < 1e-3
    True
    """
    if option.payoff != "barrier" or option.barrier is None:
        raise ValueError(f"option must be a barrier option, got payoff={option.payoff!r}")
    shift = BGK_BETA * market.vol * math.sqrt(market.maturity / option.steps)
    return option.barrier * math.exp(shift if option.direction == "up" else -shift)


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
    option: Option,
    market: Market,
    heston: Heston | None = None,
    *,
    continuity_correction: bool = False,
) -> dict[str, float]:
    r"""Price and Greeks from QuantLib's analytic engines; ``{}`` when none applies (arithmetic Asian).

    QuantLib works on calendar dates, so the maturity is mapped to exactly one year
    (Actual/365, 365 days) with the time-scaled parameters :math:`\sigma' = \sigma\sqrt T`,
    :math:`r' = rT` (Heston: :math:`v_0' = v_0T`, :math:`\kappa' = \kappa T`, :math:`\theta' =
    \theta T`, :math:`\xi' = \xi T`); prices and spot Greeks are unchanged by the time change,
    and vega and rho are mapped back by :math:`\partial_\sigma = \sqrt T\,\partial_{\sigma'}`,
    :math:`\partial_r = T\,\partial_{r'}`; the dividend yield likewise, :math:`q' = qT`.
    Europeans and digitals: ``AnalyticEuropeanEngine``
    Greeks. Geometric Asian: ``AnalyticDiscreteGeometricAveragePriceAsianEngine`` and its Greeks
    (the horizon is then a whole number of days per averaging date, scaled the same way).
    Barrier (up or down, in or out, call or put, no rebate): ``AnalyticBarrierEngine``
    (continuous monitoring, whatever ``option.monitoring`` says, unless
    ``continuity_correction``), Greeks by central differences of its price; a spot already at or
    beyond the barrier gives 0 (out) or the vanilla option (in). Heston call/put:
    ``AnalyticHestonEngine``, delta, gamma, rho and
    vega by central differences, vega being :math:`\partial V/\partial v_0` (the initial
    variance; time-scaled: :math:`\partial_{v_0} = T\,\partial_{v_0'}`, the difference is taken
    in :math:`v_0` directly).

    Args:
        option: the contract (one's own :class:`~stochgrad.apps.finance.PathPayoff` gives ``{}``).
        market: the market.
        heston: Heston dynamics (call and put only; ``{}`` otherwise).
        continuity_correction: for a discretely monitored barrier, price the continuous one at
            :func:`bgk_barrier` (Broadie, Glasserman & Kou 1997), an approximation to
            :math:`o(1/\sqrt m)`, instead of the continuous one at :math:`H`.

    Raises:
        ImportError: QuantLib is not installed (``pip install QuantLib``).

    >>> ref = quantlib_reference(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0))
    >>> round(ref["price"], 4), round(ref["delta"], 4)
    (10.4506, 0.6368)
    """
    import QuantLib as ql

    if not isinstance(option, Option):  # one's own payoff (a PathPayoff): no analytic engine
        return {}
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
    dividend = ql.SimpleQuote(market.dividend * T)
    div = ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(dividend), dc))
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
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(kind, option.strike), exercise)

        def priced(v0: float) -> Any:
            process = ql.HestonProcess(
                curve,
                div,
                ql.QuoteHandle(spot),
                v0 * T,
                heston.kappa * T,
                heston.theta * T,
                heston.xi * T,
                heston.rho,
            )
            model = ql.HestonModel(process)
            opt.setPricingEngine(ql.AnalyticHestonEngine(model, 1e-12, 100_000))
            return opt

        priced(heston.v0)
        price, delta, gamma = central(spot, 1e-3 * market.spot, opt.NPV)
        _, rho, _ = central(rate, 1e-5, opt.NPV)
        h = 1e-4 * heston.v0  # vega: dV/dv0 by central differences in v0
        vega = (priced(heston.v0 + h).NPV() - priced(heston.v0 - h).NPV()) / (2 * h)
        return {"price": price, "delta": delta, "gamma": gamma, "vega": vega, "rho": rho * T}

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
        return _barrier(ql, option, market, process, exercise, T, (spot, vol, rate), central,
                        continuity_correction and option.monitoring == "discrete")  # fmt: skip
    return {}


def _barrier(
    ql: Any,
    option: Option,
    market: Market,
    process: Any,
    exercise: Any,
    T: float,
    quotes: tuple[Any, Any, Any],
    central: Callable[..., tuple[float, float, float]],
    corrected: bool,
) -> dict[str, float]:
    """``AnalyticBarrierEngine``'s price and its central differences (the BGK barrier moving
    with the volatility when ``corrected``: vega then includes the shift's derivative)."""
    spot, vol, rate = quotes
    kind = ql.Option.Put if option.kind == "put" else ql.Option.Call
    pay = ql.PlainVanillaPayoff(kind, option.strike)
    types = {
        ("up", "out"): ql.Barrier.UpOut,
        ("up", "in"): ql.Barrier.UpIn,
        ("down", "out"): ql.Barrier.DownOut,
        ("down", "in"): ql.Barrier.DownIn,
    }
    sign = 1.0 if option.direction == "up" else -1.0

    def level() -> float:  # vol holds sigma sqrt(T), so sigma sqrt(T / m) = vol / sqrt(m)
        if not corrected:
            return float(option.barrier)
        return option.barrier * math.exp(sign * BGK_BETA * vol.value() / math.sqrt(option.steps))

    barrier = level()
    touched = market.spot >= barrier if option.direction == "up" else market.spot <= barrier
    if touched:  # QuantLib refuses these: knocked already, the option is 0 or the vanilla
        if option.knock == "out":
            return dict.fromkeys(("price", "delta", "gamma", "vega", "rho"), 0.0)
        opt = ql.VanillaOption(pay, exercise)
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        return _quantlib_greeks(opt, T)
    engine = ql.AnalyticBarrierEngine(process)

    def npv() -> float:
        opt = ql.BarrierOption(types[option.direction, option.knock], level(), 0.0, pay, exercise)
        opt.setPricingEngine(engine)
        return opt.NPV()

    # the spot's step stays short of the barrier: a difference across it mixes two regimes
    h_spot = min(1e-3 * market.spot, 0.5 * abs(market.spot - barrier))
    price, delta, gamma = central(spot, h_spot, npv)
    _, vega, _ = central(vol, 1e-5, npv)
    _, rho, _ = central(rate, 1e-5, npv)
    return {
        "price": price,
        "delta": delta,
        "gamma": gamma,
        "vega": vega * math.sqrt(T),
        "rho": rho * T,
    }
