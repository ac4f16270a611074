r"""Reference prices and Greeks from QuantLib's analytic engines (the outside check).

``AnalyticEuropeanEngine`` (call, put, digital), ``AnalyticDiscreteGeometricAveragePriceAsianEngine``
(geometric Asian), ``AnalyticBarrierEngine`` (continuous barrier; Greeks by central differences of
its price), ``AnalyticHestonEngine`` (Greeks by central differences). QuantLib is an optional
dependency (``pip install 'stochgrad[finance]'``), imported when a reference is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from stochgrad.apps.finance.market import Heston, Market, Option

__all__ = ["quantlib_reference"]


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
    :math:`\partial_r = T\,\partial_{r'}`; the dividend yield likewise, :math:`q' = qT`.
    Europeans and digitals: ``AnalyticEuropeanEngine``
    Greeks. Geometric Asian: ``AnalyticDiscreteGeometricAveragePriceAsianEngine`` and its Greeks
    (the horizon is then a whole number of days per averaging date, scaled the same way). Barrier: ``AnalyticBarrierEngine`` (continuous monitoring), Greeks by central
    differences of its price. Heston call/put: ``AnalyticHestonEngine``, delta, gamma, rho and
    vega by central differences, vega being :math:`\partial V/\partial v_0` (the initial
    variance; time-scaled: :math:`\partial_{v_0} = T\,\partial_{v_0'}`, the difference is taken
    in :math:`v_0` directly).

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
