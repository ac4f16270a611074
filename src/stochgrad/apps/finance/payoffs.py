r"""Payoffs per path, and the Brownian-bridge survival factor of the continuous barrier.

:func:`path_payoff` gives the payoff of an :class:`Option` as a function of the whole path
``[n, steps + 1]`` (column 0 the spot), the form the path laws (:mod:`~stochgrad.apps.finance.laws`)
draw and the core estimators differentiate; :func:`payoff` takes the dates after the spot.

A barrier is monitored *continuously*: between two dates the GBM bridge touches :math:`H`
with a known probability (Glasserman 2004, Sec. 6.4), the same formula above and below the
path, so the knock-out payoff :math:`g(S_T) \prod_i (\cdot)` (:math:`g` the call's or put's) is
unbiased for any number of dates (``monitoring="bridge"``), and the knock-in one is
:math:`g(S_T)\,(1 - \prod_i (\cdot))`, the vanilla payoff minus the knock-out's on every path.
``monitoring="discrete"`` (knocked only on a date at or beyond :math:`H`) keeps its bias of
order :math:`\sqrt{\Delta t}` (Broadie, Glasserman & Kou 1997).

>>> payoff(Option("call", 100.0), torch.tensor([[90.0], [120.0]]), 100.0)
tensor([ 0., 20.])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float
from stochgrad.apps.finance.market import DIRECTIONS, Option

__all__ = ["barrier_survival", "path_payoff", "payoff"]


def barrier_survival(
    paths: Tensor,
    spot: Tensor | float,
    barrier: float,
    vol: Tensor | float,
    dt: float,
    direction: str = "up",
) -> Tensor:
    r"""Probability that the GBM bridge through ``spot, paths[:, 0], ..., paths[:, -1]`` never
    touches ``barrier``: stays below it (``direction="up"``) or above it (``"down"``).

    Given its end points, the log price between two dates is a Brownian bridge, whose maximum
    (minimum) passes :math:`\ln H` with probability :math:`e^{-2ab/(\sigma^2\Delta t)}`,
    :math:`a, b` the distances of the end points to :math:`\ln H` (Glasserman 2004, Sec. 6.4);
    the same product for both directions, only the side the path must stay on differs:

    .. math:: \prod_i \Big(1 - e^{-2\ln(H/S_{t_i})\ln(H/S_{t_{i+1}})/(\sigma^2\Delta t)}\Big)\,
              \mathbb 1\{S_{t_i} < H\ \forall i\}\quad(\text{up; } S_{t_i} > H \text{ down})

    Args:
        paths: prices on the dates after the spot, ``[n, m]``.
        spot: :math:`S_0`, one number or one per path ``[n]``.
        barrier: :math:`H`.
        vol: :math:`\sigma`.
        dt: :math:`\Delta t` between dates.
        direction: one of :data:`~stochgrad.apps.finance.market.DIRECTIONS`.

    Returns:
        ``[n]``, 0 on a path that is at or beyond the barrier on a date.

    >>> p = barrier_survival(torch.tensor([[110.0]], dtype=torch.float64), 100.0, 120.0, 0.2, 1.0)
    >>> round(float(p), 4) == round(1 - math.exp(-2 * math.log(1.2) * math.log(120 / 110) / 0.04), 4)
    True
    >>> float(barrier_survival(torch.tensor([[110.0]]), 100.0, 105.0, 0.2, 1.0, direction="down"))
    0.0
    """
    check_choice("direction", direction, DIRECTIONS)
    log_h = math.log(barrier)
    # the spot: one number, or one per path ([n], column 0 of a whole path)
    s0 = torch.as_tensor(spot, dtype=paths.dtype).reshape(-1, 1).expand(paths.shape[0], 1)
    prev = torch.cat([s0, paths[:, :-1]], dim=1)
    a = log_h - torch.log(prev)
    b = log_h - torch.log(paths)
    if direction == "up":
        alive = (paths < barrier).all(dim=1) & (prev[:, :1] < barrier).squeeze(1)
    else:
        alive = (paths > barrier).all(dim=1) & (prev[:, :1] > barrier).squeeze(1)
    # clamp: a*b < 0 only on dead paths, where exp would overflow
    cross = torch.exp(-2.0 * (a * b).clamp_min(0.0) / (vol * vol * dt))
    return torch.where(alive, torch.prod(1.0 - cross, dim=1), torch.zeros((), dtype=paths.dtype))


def _barrier(option: Option, paths: Tensor, spot: Tensor | float, vol, dt: float) -> Tensor:
    """The barrier option's payoff: the vanilla one times the survival (out) or its complement."""
    k, last = option.strike, paths[:, -1]
    vanilla = torch.relu(last - k) if option.kind == "call" else torch.relu(k - last)
    if option.monitoring == "discrete":
        h = option.barrier
        alive = (paths < h) if option.direction == "up" else (paths > h)
        survive = alive.all(dim=1).to(paths.dtype)
    else:
        survive = barrier_survival(paths, spot, option.barrier, vol, dt, option.direction)
    out = vanilla * survive
    # in = vanilla - out on every path (in-out parity), computed as such
    return out if option.knock == "out" else vanilla - out


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
    >>> down_in = Option("barrier", 100.0, barrier=85.0, direction="down", knock="in", kind="put",
    ...                  monitoring="discrete")
    >>> payoff(down_in, torch.tensor([[80.0, 90.0], [95.0, 90.0]]), 100.0)
    tensor([10.,  0.])
    """
    if not isinstance(option, Option):
        raise TypeError(f"option must be an Option, got {type(option).__name__}")
    if not isinstance(paths, Tensor) or not paths.is_floating_point():
        raise TypeError(
            f"paths must be a floating-point tensor [n, m], got "
            f"{getattr(paths, 'dtype', type(paths).__name__)}"
        )
    if paths.dim() != 2 or paths.shape[1] < 1:
        raise ValueError(f"paths must be [n, m] with m >= 1, got shape {list(paths.shape)}")
    if paths.device.type == "meta" or not bool((paths.detach() > 0).all()):
        raise ValueError("paths must hold prices, positive numbers (no NaN)")
    if not bool(torch.isfinite(paths.detach()).all()):
        raise ValueError("paths must be finite")
    if isinstance(spot, Tensor):
        if spot.device != paths.device:
            raise ValueError(
                f"spot must be on the device of paths ({paths.device}), got {spot.device}"
            )
        if not bool((torch.isfinite(spot.detach()) & (spot.detach() > 0)).all()):
            raise ValueError("spot must be positive and finite")
    else:
        check_float("spot", spot, minimum=0.0, open_min=True)
    return _payoff(option, paths, spot, vol, dt)


def _payoff(option: Option, paths: Tensor, spot, vol, dt: float) -> Tensor:
    """:func:`payoff` without the checks (the estimators' inner loop; their paths are valid)."""
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
    return _barrier(option, paths, spot, vol, dt)


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
    return lambda x: _payoff(option, x[:, 1:], x[:, 0], vol, dt)
