r"""Path simulation: exact geometric Brownian motion, and Heston by full-truncation Euler.

GBM is simulated exactly in log space on the dates :math:`t_i = i\,\Delta t`,
:math:`\Delta t = T/m`:
:math:`\ln S_{t_{i+1}} = \ln S_{t_i} + (r - \tfrac12\sigma^2)\Delta t + \sigma\sqrt{\Delta t}\,Z_{i+1}`.
Heston uses the full-truncation Euler scheme of Lord, Koekkoek & van Dijk (2010) with
:math:`v^+ = \max(v, 0)`.

Randomness is explicit: a ``torch.Generator`` or a ``numpy.random.Generator`` (``seed=`` makes
the latter: numpy's ziggurat draws float64 normals faster than torch on CPUs).

>>> S, z = gbm_paths(Market(100.0, 0.2, 0.0, 1.0), 3, 2, seed=0)
>>> tuple(S.shape)
(3, 2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_int, check_seed
from stochgrad.apps.finance.market import Heston, Market

__all__ = ["gbm_paths", "heston_paths", "make_generator", "normals"]


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
    n = check_int("num_paths", num_paths, minimum=1)
    m = check_int("num_steps", num_steps, minimum=1)
    g = make_generator(generator, seed)
    z = normals(g, (n, m), dtype)
    dt = market.maturity / m
    return _gbm_from_normals(market.spot, market.vol, market.rate, dt, z), z


def make_generator(generator: Any, seed: int | None) -> torch.Generator | np.random.Generator:
    """``generator`` if given (torch or numpy), else ``numpy.random.default_rng(seed)``."""
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
    return np.random.default_rng(check_seed("seed", seed))


def normals(g: torch.Generator | np.random.Generator, shape: tuple, dtype: torch.dtype) -> Tensor:
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
    n = check_int("num_paths", num_paths, minimum=1)
    m = check_int("num_steps", num_steps, minimum=1)
    g = make_generator(generator, seed)
    z = normals(g, (n, m, 2), dtype)
    dt = market.maturity / m
    vp = _heston_variance(heston, dt, z[..., 0])
    return _heston_from_normals(market.spot, market.rate, heston, dt, z, vp), z
