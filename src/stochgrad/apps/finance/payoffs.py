r"""Payoffs per path, and the Brownian-bridge survival factor of the continuous barrier.

:func:`path_payoff` gives the payoff of an :class:`Option` as a function of the whole path
``[n, steps + 1]`` (column 0 the spot), the form the path laws (:mod:`~stochgrad.apps.finance.laws`)
draw and the core estimators differentiate; :func:`payoff` takes the dates after the spot.

The up-and-out call is monitored *continuously*: between two dates the GBM bridge crosses
:math:`H` with a known probability (Glasserman 2004, Sec. 6.4), so the simulated payoff
:math:`(S_T - K)^+ \prod_i (\cdot)` is unbiased for any number of dates (``monitoring="bridge"``).
``monitoring="discrete"`` (knock out only on a date at or above :math:`H`) keeps its bias of order
:math:`\sqrt{\Delta t}` (Broadie, Glasserman & Kou 1997).

>>> payoff(Option("call", 100.0), torch.tensor([[90.0], [120.0]]), 100.0)
tensor([ 0., 20.])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from stochgrad.apps.finance.market import Option

__all__ = ["barrier_survival", "path_payoff", "payoff"]


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
    # the spot: one number, or one per path ([n], column 0 of a whole path)
    s0 = torch.as_tensor(spot, dtype=paths.dtype).reshape(-1, 1).expand(paths.shape[0], 1)
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


def path_payoff(
    option: Option, vol: Tensor | float = 0.0, dt: float = 1.0
) -> Callable[[Tensor], Tensor]:
    r"""The undiscounted payoff of ``option`` as a function of paths ``[n, steps + 1]`` -> ``[n]``.

    Column 0 of a path is the spot, so the barrier's bridge factor reads it there (and the
    pathwise estimator differentiates it there). ``vol`` and ``dt`` are the bridge's
    :math:`\sigma` and :math:`\Delta t` (barrier only): the only explicit parameter dependence of
    a payoff here.

    >>> f = path_payoff(Option("call", 100.0))
    >>> f(torch.tensor([[100.0, 90.0], [100.0, 120.0]]))
    tensor([ 0., 20.])
    """
    if option.payoff == "call":
        k = option.strike
        return lambda x: (x[:, -1] - k).relu_()
    return lambda x: payoff(option, x[:, 1:], x[:, 0], vol, dt)
