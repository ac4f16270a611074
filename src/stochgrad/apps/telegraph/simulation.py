r"""Simulating the telegraph model: exact Gillespie paths and exact stationary draws.

A promoter switches on at rate :math:`k_{on}` and off at rate :math:`k_{off}`; while on it makes
mRNA at rate :math:`k_{syn}`; each mRNA is degraded at rate 1 (time in units of the mRNA
lifetime). :func:`simulate` runs the exact stochastic simulation algorithm for every cell of
every gene at once; :func:`sample_stationary` draws from the stationary Beta-Poisson law;
:func:`simulate_table` makes a seeded table of random kinetics and their counts.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_int
from stochgrad._core import check_memory
from stochgrad.apps.telegraph.likelihood import DTYPE, _as_param

__all__ = ["MAX_EVENTS", "sample_stationary", "simulate", "simulate_table"]

MAX_EVENTS = 1_000_000
"""Most events one cell of :func:`simulate` may be expected to go through (the loop runs once
per event of the busiest cell, about 0.1 ms each): beyond it ``method="exact"`` is the way."""


def _check_generator(generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator (randomness is explicit: "
            f"torch.Generator().manual_seed(0), say), got {type(generator).__name__}"
        )
    return generator


def _cells(num_cells: Any, genes: int, like: Tensor) -> int:
    """``num_cells`` checked, and the draws' memory checked before it is allocated."""
    num_cells = check_int("num_cells", num_cells, minimum=1)
    try:  # the core's estimate names num_samples: say num_cells instead
        check_memory("the telegraph simulation", num_cells, {"draws": 6 * max(genes, 1)}, like)
    except ValueError as exc:
        raise ValueError(str(exc).replace("num_samples=", "num_cells=", 1)) from None
    return num_cells


def sample_stationary(
    k_on: Any, k_off: Any, k_syn: Any, num_cells: int, *, generator: torch.Generator
) -> Tensor:
    r"""Exact draws from the stationary law: :math:`x \sim \mathrm{Beta}(a, b)`,
    :math:`n \sim \mathrm{Poisson}(k x)`.

    Args:
        k_on: positive rates, scalars or ``[G]`` (one gene each).
        k_off: positive rates, scalars or ``[G]`` (one gene each).
        k_syn: positive rates, scalars or ``[G]`` (one gene each).
        num_cells: cells per gene.
        generator: the random stream.

    Returns:
        ``[G, num_cells]`` (``[num_cells]`` for scalar rates) int64 counts.

    Raises:
        ValueError: bad rates (or above :data:`~stochgrad.apps.telegraph.likelihood.MAX_RATE`),
            ``num_cells < 1`` or more than memory holds.
        TypeError: ``generator`` not a :class:`torch.Generator`.

    >>> g = torch.Generator().manual_seed(0)
    >>> sample_stationary(1.0, 1.0, 10.0, 4, generator=g).shape
    torch.Size([4])
    """
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    _check_generator(generator)
    num_cells = _cells(num_cells, a.numel(), a)
    shape = (*a.shape, num_cells)
    # Beta via two Gammas with the explicit generator (torch's Beta sampler takes none)
    ga = torch._standard_gamma(a[..., None].expand(shape).contiguous(), generator=generator)
    gb = torch._standard_gamma(b[..., None].expand(shape).contiguous(), generator=generator)
    x = ga / (ga + gb)
    x = torch.where(torch.isfinite(x), x, (ga > gb).to(DTYPE))  # both gammas underflow to 0
    return torch.poisson(k[..., None] * x, generator=generator).long()


def simulate(
    k_on: Any,
    k_off: Any,
    k_syn: Any,
    num_cells: int,
    *,
    generator: torch.Generator,
    t_end: float | None = None,
    method: str = "gillespie",
) -> Tensor:
    r"""mRNA counts of ``num_cells`` independent cells per gene at time ``t_end``.

    ``method="gillespie"``: the exact stochastic simulation algorithm (Gillespie 1977) with
    the four reactions on (:math:`k_{on}`), off (:math:`k_{off}`), synthesis (:math:`k_{syn}`
    while on), degradation (rate 1 per molecule). All cells of all genes advance together, one
    event per cell per loop iteration (the loop is over events only); a cell whose next event
    falls after ``t_end`` stops. Each cell starts near stationarity: promoter activity
    :math:`x_0 \sim \mathrm{Beta}(a, b)`, promoter on with probability :math:`x_0`, count
    :math:`\mathrm{Poisson}(k x_0)`; the joint law then relaxes at rate
    :math:`\min(1, k_{on} + k_{off})`, so the default ``t_end = 12 / \min(1, k_{on}+k_{off})``
    leaves a memory of the start below :math:`e^{-12}`. ``method="exact"`` draws from the
    stationary law directly (:func:`sample_stationary`).

    Args:
        k_on: positive rates, scalars or ``[G]``.
        k_off: positive rates, scalars or ``[G]``.
        k_syn: positive rates, scalars or ``[G]``.
        num_cells: cells per gene.
        generator: the random stream (same seed, same counts).
        t_end: simulated time (scalar), default per gene as above.
        method: ``"gillespie"`` or ``"exact"``.

    Returns:
        ``[G, num_cells]`` (``[num_cells]`` for scalar rates) int64 counts.

    Raises:
        ValueError: bad rates (or above :data:`~stochgrad.apps.telegraph.likelihood.MAX_RATE`),
            ``num_cells < 1`` or more than memory holds, ``t_end <= 0``, more than
            :data:`MAX_EVENTS` expected events per cell, unknown ``method``.
        TypeError: ``generator`` not a :class:`torch.Generator`.

    >>> g = torch.Generator().manual_seed(0)
    >>> simulate(1.0, 1.0, 10.0, 3, generator=g).shape
    torch.Size([3])
    """
    if method not in ("gillespie", "exact"):
        raise ValueError(f"method must be 'gillespie' or 'exact', got {method!r}")
    if method == "exact":
        return sample_stationary(k_on, k_off, k_syn, num_cells, generator=generator)
    a, b, k = torch.broadcast_tensors(
        _as_param(k_on, "k_on"), _as_param(k_off, "k_off"), _as_param(k_syn, "k_syn")
    )
    _check_generator(generator)
    num_cells = _cells(num_cells, a.numel(), a)
    if t_end is not None and (
        isinstance(t_end, bool)
        or not isinstance(t_end, (int, float))
        or not (math.isfinite(t_end) and t_end > 0)
    ):
        raise ValueError(f"t_end must be a positive finite time, got {t_end!r}")
    # expected events per cell: switches 2ab/(a+b) and synthesis and degradation k a/(a+b) each
    span = 12.0 / torch.clamp(a + b, max=1.0) if t_end is None else torch.full_like(a, t_end)
    events = float((span * (2 * a * b + 2 * k * a) / (a + b)).max()) if a.numel() else 0.0
    if events > MAX_EVENTS:
        raise ValueError(
            f"t_end and the rates ask for about {events:.3g} events per cell (most allowed: "
            f"MAX_EVENTS = {MAX_EVENTS:,}, at ~0.1 ms each); use method='exact' (the stationary "
            "law, no time steps) or a shorter t_end"
        )
    shape = (*a.shape, num_cells)
    a_, b_, k_ = (v[..., None].expand(shape) for v in (a, b, k))
    if t_end is None:
        horizon = (12.0 / torch.clamp(a + b, max=1.0))[..., None].expand(shape)
    else:
        horizon = torch.full(shape, float(t_end), dtype=DTYPE)
    # near-stationary start (see docstring)
    ga = torch._standard_gamma(a_.contiguous(), generator=generator)
    gb = torch._standard_gamma(b_.contiguous(), generator=generator)
    x0 = torch.nan_to_num(ga / (ga + gb), nan=0.5)
    on = torch.rand(shape, generator=generator, dtype=DTYPE) < x0
    m = torch.poisson(k_ * x0, generator=generator)
    t = torch.zeros(shape, dtype=DTYPE)
    active = torch.ones(shape, dtype=torch.bool)
    while bool(active.any()):
        onf = on.to(DTYPE)
        r_switch = torch.where(on, b_, a_)
        r_syn = k_ * onf
        total = r_switch + r_syn + m
        u = torch.rand((2, *shape), generator=generator, dtype=DTYPE)
        t = t - torch.log1p(-u[0]) / total
        active = active & (t <= horizon)
        pick = u[1] * total
        switch = active & (pick < r_switch)
        syn = active & ~switch & (pick < r_switch + r_syn)
        deg = active & ~switch & ~syn
        on = on ^ switch
        m = m + syn.to(DTYPE) - deg.to(DTYPE)
    return m.long()


def _random_kinetics(G: int, g: torch.Generator) -> Tensor:
    """log-uniform k_on in [0.05, 5], k_off in [0.5, 20], burst size in [5, 100]."""
    u = torch.rand(G, 3, generator=g, dtype=DTYPE)
    lo = torch.tensor([0.05, 0.5, 5.0], dtype=DTYPE).log()
    hi = torch.tensor([5.0, 20.0, 100.0], dtype=DTYPE).log()
    v = (lo + u * (hi - lo)).exp()
    return torch.stack((v[:, 0], v[:, 1], v[:, 2] * v[:, 1]), -1)


def simulate_table(G: int, C: int, seed: int, method: str = "gillespie") -> tuple[Tensor, Tensor]:
    """Random kinetics ``[G, 3]`` and their simulated counts ``[G, C]`` (seeded).

    >>> kin, x = simulate_table(2, 5, 0, method="exact")
    >>> kin.shape, x.shape
    (torch.Size([2, 3]), torch.Size([2, 5]))
    """
    g = torch.Generator().manual_seed(seed)
    kin = _random_kinetics(G, g)
    return kin, simulate(kin[:, 0], kin[:, 1], kin[:, 2], C, generator=g, method=method)
