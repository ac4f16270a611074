r"""Reference gradients: exact enumeration for finite support, adaptive quadrature in one dimension.

.. math::

    \nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)] = \sum_{x} f(x)\, \nabla_\theta p(x;\theta)
    \quad\text{or}\quad \int f(x)\, p(x;\theta)\, \nabla_\theta \log p(x;\theta)\, dx .

These are the ground truth that every estimator is tested against (bias z-scores in
:func:`stochgrad.compare`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Binomial,
    Categorical,
    Distribution,
    OneHotCategorical,
    constraints,
)

from stochgrad import _core, _dists
from stochgrad._checks import check_bool, check_float, check_int
from stochgrad.gradient_estimate import Params

MAX_CONFIGURATIONS = 2**20


def _support_values(base: Distribution) -> tuple[int, Callable[[Tensor], Tensor]] | None:
    """(number of values per coordinate, index -> sample value) for finite-support families."""
    if isinstance(base, Bernoulli):
        return 2, lambda idx: idx.to(base.probs.dtype)
    if isinstance(base, OneHotCategorical):
        k = base._categorical._num_events
        return k, lambda idx: torch.nn.functional.one_hot(idx, k).to(base.probs.dtype)
    if isinstance(base, Categorical):
        return base._num_events, lambda idx: idx
    if isinstance(base, Binomial):
        counts = base.total_count.detach()
        if not bool((counts == counts.round()).all()):
            return None
        top = int(counts.max())
        return top + 1, lambda idx: idx.to(base.probs.dtype)
    return None


def _enumerate(f, d: Distribution, dist_fn, leaves, max_configurations: int):
    base = _dists.unwrap(d)
    spec = _support_values(base)
    if spec is None:
        return None
    k, to_value = spec
    coords = int(np.prod(base.batch_shape)) if len(base.batch_shape) else 1
    total = k**coords
    if total > max_configurations:
        raise ValueError(
            f"exact_gradient: enumerating {type(base).__name__} with batch shape "
            f"{tuple(base.batch_shape)} needs {k}^{coords} = {total} configurations, more than "
            f"max_configurations={max_configurations}"
        )
    # All joint configurations as mixed-radix digits of 0..total-1: [total, coords].
    device = _dists._device_of(d)
    codes = torch.arange(total, device=device)
    powers = k ** torch.arange(coords - 1, -1, -1, device=device)
    idx = (codes.unsqueeze(1) // powers) % k
    x = to_value(idx.reshape(total, *base.batch_shape))
    if isinstance(base, Binomial):  # drop counts above a coordinate's own total
        keep = (x <= base.total_count.detach()).reshape(total, -1).all(1)
        x = x[keep]
    lp = _core.sum_event(d.log_prob(x), x.shape[0])
    fx = _core.evaluate_f(f, x, x.shape[0])
    p = lp.exp()
    value = (p * fx.to(p.dtype)).sum()
    return value


def _interval(d: Distribution) -> tuple[float, float]:
    support = d.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    for bound in ("lower_bound", "upper_bound"):
        value = getattr(support, bound, None)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            # d/dtheta of the integral then has a boundary term that f p grad log p misses.
            raise ValueError(
                f"exact_gradient: the support of {type(d).__name__} depends on params (its "
                f"{bound} does); quadrature of f p grad log p would miss the boundary term"
            )
    if support is constraints.real:
        return -math.inf, math.inf
    if support in (constraints.positive, constraints.nonnegative):
        return 0.0, math.inf
    if support is constraints.unit_interval:
        return 0.0, 1.0
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    if lower is not None or upper is not None:
        lo = -math.inf if lower is None else float(torch.as_tensor(lower).detach().reshape(()))
        hi = math.inf if upper is None else float(torch.as_tensor(upper).detach().reshape(()))
        return lo, hi
    raise ValueError(f"exact_gradient: cannot integrate over the support {support}")


def _transform(lo: float, hi: float, scale: float = 1.0):
    """Map t in a finite interval to x in (lo, hi): returns (t_lo, t_hi, x(t), dx/dt).

    An infinite end is reached as ``scale * t / (1 - t)``: ``scale`` (the distribution's
    standard deviation) keeps its tail at t of order one, away from 1 where float64 runs out.
    """
    c = scale
    if math.isinf(lo) and math.isinf(hi):
        return (
            -1.0,
            1.0,
            lambda t: c * t / (1 - t * t),
            lambda t: c * (1 + t * t) / (1 - t * t) ** 2,
        )
    if math.isinf(hi):
        return 0.0, 1.0, lambda t: lo + c * t / (1 - t), lambda t: c / (1 - t) ** 2
    if math.isinf(lo):
        return 0.0, 1.0, lambda t: hi - c * t / (1 - t), lambda t: c / (1 - t) ** 2
    return lo, hi, lambda t: t, lambda t: np.ones_like(t)


def _adaptive_gauss(
    integrand, a: float, b: float, epsrel: float, epsabs: float = 1e-14, max_intervals: int = 20000
) -> np.ndarray:
    """Globally adaptive Gauss-Legendre quadrature of a vector-valued integrand, batched.

    scipy's adaptive rules (quad, quad_vec) call the integrand one point at a time; here every
    evaluation builds the distribution and its score, so all nodes of all open intervals are
    evaluated in one batched call instead (a 20-point rule, error estimated against 10 points).
    """
    hi_x, hi_w = np.polynomial.legendre.leggauss(20)
    lo_x, lo_w = np.polynomial.legendre.leggauss(10)
    nodes = np.concatenate([hi_x, lo_x])

    def rules(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid, half = (edges[:, 0] + edges[:, 1]) / 2, (edges[:, 1] - edges[:, 0]) / 2
        t = (mid[:, None] + half[:, None] * nodes[None, :]).reshape(-1)
        vals = integrand(t).reshape(len(edges), len(nodes), -1)
        hi = np.einsum("inc,n->ic", vals[:, :20], hi_w) * half[:, None]
        lo = np.einsum("inc,n->ic", vals[:, 20:], lo_w) * half[:, None]
        return hi, np.abs(hi - lo)  # per interval and component

    edges = np.linspace(a, b, 9)
    edges = np.stack([edges[:-1], edges[1:]], 1)
    values, errors = rules(edges)
    while True:
        if not (np.isfinite(values).all() and np.isfinite(errors).all()):
            raise ValueError(
                "exact_gradient: the quadrature met a non-finite value of f p grad log p; params "
                "may put the distribution where f or its density overflows"
            )
        total = values.sum(0)
        # Every component to its own relative accuracy (a small component of the gradient
        # next to a large one must not inherit the large one's tolerance).
        tol = np.maximum(epsabs, epsrel * np.abs(total))
        if (errors.sum(0) <= tol).all() or len(edges) >= max_intervals:
            return total
        share = (errors / tol).max(1)  # how far each interval is from its share of the budget
        split = share > 1.0 / (4 * len(edges))
        if not split.any():
            split = share >= share.max()
        mids = edges[split].mean(1)
        halves = np.concatenate(
            [np.stack([edges[split, 0], mids], 1), np.stack([mids, edges[split, 1]], 1)]
        )
        new_values, new_errors = rules(halves)
        edges = np.concatenate([edges[~split], halves])
        values = np.concatenate([values[~split], new_values])
        errors = np.concatenate([errors[~split], new_errors])


#: The quadrature refuses a distribution whose bulk (12 standard deviations about the mean)
#: reaches beyond this magnitude, where float64 no longer resolves unit steps of x.
MAX_ABS_X = 2.0**53


def _check_resolution(mean: float, sd: float) -> None:
    """Refuse a distribution the float64 grid of the quadrature cannot resolve."""
    reach = abs(mean) + 12 * sd
    if reach > MAX_ABS_X:
        raise ValueError(
            f"params: exact_gradient integrates on float64 points, which resolve |x| up to "
            f"2**53 (about 9.0e15); this distribution reaches {reach:.3g} (mean {mean:.3g}, "
            f"standard deviation {sd:.3g}): rescale x"
        )
    if sd < 1e-12 * abs(mean):
        raise ValueError(
            f"params: a standard deviation of {sd:.3g} about a mean of {mean:.3g} is below the "
            "resolution of float64 there (relative 1e-12): exact_gradient cannot integrate it; "
            "centre x"
        )


def _quadrature(f, d: Distribution, dist_fn, leaves, epsrel: float):
    from stochgrad.estimators.score import scores_per_sample

    lo, hi = _interval(d)
    sizes = [leaf.numel() for leaf in leaves]
    dtype, device = leaves[0].dtype, leaves[0].device
    width = sum(sizes) + 1
    shape = (*d.batch_shape, *d.event_shape)

    shift = 0.0  # f - f(mean) in the integrand: the same gradient (E grad log p = 0), less
    # cancellation between the two sides of the mean when f is large there

    def at(x_np: np.ndarray) -> np.ndarray:
        """[M] points -> [M, 1 + P] values of ((f - shift) p, (f - shift) p grad log p)."""
        m = len(x_np)
        x = torch.as_tensor(x_np, dtype=dtype, device=device).reshape(m, *shape)
        with torch.no_grad():
            lp = d.log_prob(x).reshape(m)
        out = np.zeros((m, width))
        keep = torch.isfinite(lp) & (lp > -700)
        if not bool(keep.any()):
            return out
        xk = x[keep]
        k = xk.shape[0]
        fx = _core.evaluate_f(f, xk, k).to(dtype)
        weight = (fx - shift) * lp[keep].exp()
        s = scores_per_sample(dist_fn, d, leaves, xk)
        flat = torch.cat([si.reshape(k, -1) for si in s], 1).detach()
        vals = torch.cat([weight.unsqueeze(1), weight.unsqueeze(1) * flat], 1)
        out[keep.cpu().numpy()] = vals.double().cpu().numpy()
        return out

    # Cut the tails off the bulk of the mass (not at the mean: pieces on either side of it carry
    # large, cancelling score integrals), then map each piece to a finite interval.
    try:
        with torch.no_grad():
            mean, sd = float(d.mean.reshape(())), float(d.stddev.reshape(()))
        finite = math.isfinite(mean) and math.isfinite(sd) and sd > 0
    except (NotImplementedError, RuntimeError, ValueError):
        finite = False
    edges = [lo, hi]
    if finite:
        _check_resolution(mean, sd)
        if lo < mean < hi:
            centre = torch.full((1, *shape), mean, dtype=dtype, device=device)
            shift = float(_core.evaluate_f(f, centre, 1)[0])
        inner = [c for c in (mean - 12 * sd, mean + 12 * sd) if lo < c < hi]
        edges = [lo, *inner, hi]
    total = np.zeros(width)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        t_lo, t_hi, x_of, dx_dt = _transform(a, b, sd if finite else 1.0)

        def integrand(t: np.ndarray, x_of=x_of, dx_dt=dx_dt) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                x, dx = x_of(t), dx_dt(t)
            # a node rounded onto an infinite end of the support: the density vanishes there
            inside = np.isfinite(x) & np.isfinite(dx)
            out = np.zeros((len(t), width))
            if inside.any():
                out[inside] = at(x[inside]) * dx[inside][:, None]
            return out

        total += _adaptive_gauss(integrand, t_lo, t_hi, epsrel)
    value = float(total[0] + shift)
    grads = np.split(total[1:], np.cumsum(sizes)[:-1])
    return value, [
        torch.as_tensor(g, dtype=dtype, device=device).reshape(leaf.shape)
        for g, leaf in zip(grads, leaves, strict=True)
    ]


def exact_gradient(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    max_configurations: int = MAX_CONFIGURATIONS,
    epsrel: float = 1e-10,
    return_value: bool = False,
):
    r"""The exact gradient of :math:`\mathbb{E}_{p(x;\theta)}[f(x)]`, a reference for the estimators.

    Finite support (``Bernoulli``, ``Categorical``, ``OneHotCategorical``, ``Binomial``, and
    ``Independent`` products or batch shapes of them, up to ``max_configurations`` joint
    configurations) is enumerated and differentiated by autograd; a one-dimensional continuous
    distribution is integrated by globally adaptive Gauss-Legendre quadrature (20 points, error
    against 10, at most 20,000 intervals per piece) of :math:`(f - f(\mu))\,p\,\nabla_\theta
    \log p` (the shift by ``f`` at the mean changes nothing but the roundings). The quadrature
    runs in float64 whatever the dtype of ``params`` (``f`` receives float64 points; the
    gradient comes back in ``params``' dtype) and refuses a distribution reaching beyond
    :data:`MAX_ABS_X` (:math:`2^{53}`), where float64 no longer resolves unit steps of x.

    Args:
        f: batch ``[n, ...]`` -> ``[n]``; may be a black box.
        dist_fn: ``dist_fn(*params)`` -> distribution.
        params: a tensor or a tuple of tensors.
        max_configurations: the largest joint support enumerated (default :math:`2^{20}`), an
            int ``>= 1``.
        epsrel: relative tolerance of the quadrature, in ``(0, 1)``.
        return_value: also return :math:`\mathbb{E}[f]` (a bool).

    Returns:
        (Tensor | tuple): The gradient shaped like ``params`` (a tuple for tuple params); with
            ``return_value``, ``(value, gradient)``.

    Raises:
        ValueError: no exact reference exists for this distribution (continuous and more than
            one-dimensional, or an unsupported discrete family), the support is too large or
            beyond the resolution of float64,
            ``epsrel`` outside ``(0, 1)``, ``max_configurations < 1``, ``f`` of the wrong
            shape, non-finite or changing its input in place.
        TypeError: ``f`` not callable, an argument of the wrong type.

    >>> import torch
    >>> g = exact_gradient(lambda b: (b - 0.499) ** 2, lambda p: torch.distributions.Bernoulli(p),
    ...                    torch.tensor(0.3))
    >>> round(float(g), 6)
    0.002
    """
    _core.check_f(f)
    max_configurations = check_int("max_configurations", max_configurations, minimum=1)
    epsrel = check_float("epsrel", epsrel, minimum=0.0, maximum=1.0, open_min=True, open_max=True)
    return_value = check_bool("return_value", return_value)
    tensors, is_tuple = _core.as_params(params)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    value_t = _enumerate(f, d, dist_fn, leaves, max_configurations)
    if value_t is not None:
        grads = torch.autograd.grad(value_t, leaves, allow_unused=True)
        grads = [
            g if g is not None else torch.zeros_like(leaf)
            for g, leaf in zip(grads, leaves, strict=True)
        ]
        value = float(value_t.detach())
    else:
        is_scalar = d.event_shape.numel() == 1 and d.batch_shape.numel() == 1
        discrete = d.support.is_discrete if hasattr(d.support, "is_discrete") else False
        if not is_scalar or discrete:
            raise ValueError(
                f"exact_gradient: no exact reference for {type(d).__name__} with batch shape "
                f"{tuple(d.batch_shape)} and event shape {tuple(d.event_shape)}: enumeration "
                "needs a finite-support family (Bernoulli, Categorical, OneHotCategorical, "
                "Binomial), quadrature a one-dimensional continuous distribution"
            )
        # in float64 whatever params' dtype: f p grad log p cancels between the tails, and
        # float32 roundings of f alone can swamp the result (a scale of 1e10)
        wide = tuple(leaf.detach().double().requires_grad_(True) for leaf in leaves)
        value, grads = _quadrature(f, _core.build_dist(dist_fn, wide), dist_fn, wide, epsrel)
        grads = [g.to(leaf.dtype) for g, leaf in zip(grads, leaves, strict=True)]
    grads = [g.detach() for g in grads]
    out = _core.pack(grads, is_tuple)
    return (value, out) if return_value else out
