r"""Per-path terms of the three Greek estimators: likelihood ratio, pathwise and mixed.

Each function returns, for one chunk of normals, a tensor of per-path terms per
``(greek, method)`` whose mean is the estimate (or ``(terms, scale)``: the constant factor is
applied to the chunk's moments, one pass less).

- likelihood ratio: the payoff times the score of the log-normal path density
  (:func:`lr_weights`), plus the explicit derivative of a payoff that depends on the parameter
  (the bridge factor depends on :math:`S_0` and :math:`\sigma`);
- pathwise: the derivative of the discounted payoff along the path, per path by forward-mode
  autodiff (``torch.func.jvp``);
- mixed (gamma): the likelihood ratio applied to the pathwise delta.

Reference: Glasserman (2004), *Monte Carlo Methods in Financial Engineering*, Ch. 7.

>>> w = lr_weights(torch.tensor([[1.0]], dtype=torch.float64), Market(100.0, 0.2, 0.0, 1.0), 1.0)
>>> float(w["rho"])
5.0
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from stochgrad.apps.finance.market import Heston, Market, Option
from stochgrad.apps.finance.paths import _gbm_from_normals, _heston_from_normals, _heston_variance
from stochgrad.apps.finance.payoffs import payoff

__all__ = ["gbm_terms", "heston_terms", "lr_weights"]

Terms = dict[tuple[str, str], Tensor | tuple[Tensor, float]]


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


def _jvp(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-path derivative of ``fn`` (``[n]``) w.r.t. the scalar ``x`` (forward mode)."""
    return torch.func.jvp(fn, (x,), (torch.ones_like(x),))[1]


def gbm_terms(option: Option, market: Market, z: Tensor, wanted: dict[str, list[str]]) -> Terms:
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
    out: Terms = {("price", "mc"): (f, disc)}
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


def heston_terms(
    option: Option, market: Market, heston: Heston, z: Tensor, wanted: dict[str, list[str]]
) -> Terms:
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
    out: Terms = {("price", "mc"): f}
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
