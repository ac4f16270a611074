r"""Path simulation from the path laws: exact geometric Brownian motion, Heston by full-truncation Euler.

:func:`gbm_law` and :func:`heston_law` build the laws (:mod:`~stochgrad.apps.finance.laws`) of a
:class:`Market` (and :class:`Heston`); :func:`gbm_paths` and :func:`heston_paths` draw paths
from them. GBM is exact in log space on the dates :math:`t_i = i\,\Delta t`,
:math:`\Delta t = T/m`:
:math:`\ln S_{t_{i+1}} = \ln S_{t_i} + (r - q - \tfrac12\sigma^2)\Delta t + \sigma\sqrt{\Delta t}\,Z_{i+1}`.
Heston uses the full-truncation Euler scheme of Lord, Koekkoek & van Dijk (2010) with
:math:`v^+ = \max(v, 0)`.

Randomness is explicit: a ``torch.Generator`` or a ``numpy.random.Generator`` (``seed=`` makes
the latter: numpy's ziggurat draws float64 normals faster than torch on CPUs).

>>> S, z = gbm_paths(Market(100.0, 0.2, 0.0, 1.0), 3, 2, seed=0)
>>> tuple(S.shape)
(3, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_int, check_seed
from stochgrad.apps.finance.laws import GBMPaths, HestonPaths
from stochgrad.apps.finance.market import Heston, Market

__all__ = ["gbm_law", "gbm_paths", "heston_law", "heston_paths", "make_generator", "normals"]

#: The most normals :func:`gbm_paths` draws in one call (``num_paths * num_steps``).
MAX_NORMALS = 2**28


def gbm_paths(
    market: Market,
    num_paths: int,
    num_steps: int = 1,
    *,
    generator: torch.Generator | np.random.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    r"""Exact GBM paths on ``num_steps`` equal steps: :math:`S_{t_{i+1}} = S_{t_i} e^{(r-q-\sigma^2/2)\Delta t + \sigma\sqrt{\Delta t} Z}`.

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
    if not isinstance(market, Market):
        raise TypeError(f"market must be a Market, got {type(market).__name__}")
    n = check_int("num_paths", num_paths, minimum=1)
    m = check_int("num_steps", num_steps, minimum=1)
    if n * m > MAX_NORMALS:
        raise ValueError(
            f"num_paths * num_steps = {n} * {m} normals exceed the limit of {MAX_NORMALS} "
            "(two float64 tables of that size are returned); simulate in chunks"
        )
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
    g = make_generator(generator, seed)
    z = normals(g, (n, m), dtype)
    law = gbm_law(market, m, z)
    return law.sample((n,))[:, 1:], z


def gbm_law(market: Market, num_steps: int, noise: Tensor | None = None, **params) -> GBMPaths:
    """The :class:`~stochgrad.apps.finance.laws.GBMPaths` of ``market`` on ``num_steps`` steps.

    ``params`` replace the market's ``spot``, ``vol``, ``rate`` or ``dividend`` (tensors to
    differentiate); the others are tensors of the noise's dtype (float64 without noise).
    """
    dtype = noise.dtype if noise is not None else torch.float64
    values = {
        name: params.pop(name)
        if name in params
        else torch.tensor(getattr(market, name), dtype=dtype)
        for name in ("spot", "vol", "rate", "dividend")
    }
    if params:
        raise TypeError(f"gbm_law got unknown parameters {sorted(params)}")
    return GBMPaths(
        **values, maturity=market.maturity, steps=num_steps, noise=noise, validate_args=False
    )


def heston_law(
    market: Market, heston: Heston, num_steps: int, noise: Tensor | None = None, **params
) -> HestonPaths:
    """The :class:`~stochgrad.apps.finance.laws.HestonPaths` of ``market`` and ``heston``.

    ``params`` replace ``spot``, ``rate``, ``dividend``, ``v0``, ``kappa``, ``theta``, ``xi`` or
    ``rho`` (``market.vol`` is not used).
    """
    dtype = noise.dtype if noise is not None else torch.float64
    values = {}
    for name in ("spot", "rate", "dividend", "v0", "kappa", "theta", "xi", "rho"):
        source = market if name in ("spot", "rate", "dividend") else heston
        values[name] = (
            params.pop(name) if name in params else torch.tensor(getattr(source, name), dtype=dtype)
        )
    if params:
        raise TypeError(f"heston_law got unknown parameters {sorted(params)}")
    return HestonPaths(
        **values, maturity=market.maturity, steps=num_steps, noise=noise, validate_args=False
    )


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


def normals(
    g: torch.Generator | np.random.Generator,
    shape: tuple,
    dtype: torch.dtype,
    out: Tensor | None = None,
) -> Tensor:
    """Standard normals from a torch generator, or from numpy's ziggurat sampler (zero copy).

    ``out`` (contiguous, ``shape``, ``dtype``) receives them: a buffer reused from chunk to
    chunk spares the allocation of fresh memory (the same numbers either way).
    """
    if isinstance(g, np.random.Generator):
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        if out is not None:
            g.standard_normal(shape, dtype=np_dtype, out=out.numpy())
            return out
        return torch.from_numpy(g.standard_normal(shape, dtype=np_dtype))
    if out is not None:
        return torch.randn(*shape, generator=g, dtype=dtype, out=out)
    return torch.randn(*shape, generator=g, dtype=dtype)


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
    return heston_law(market, heston, m, z).sample((n,))[:, 1:, 0], z
