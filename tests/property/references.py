"""Independent references for the checks of accepted calls: Gauss-Hermite quadrature for a
Normal, enumeration for Bernoulli coordinates, and the z-test an unbiased estimate must pass.

None of these call the library's estimators: the expectation is computed here from the
distribution's own parameters and differentiated by autograd.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch

from tests.property.harness import Wrong

#: Unbiased estimates must land within this many standard errors of the reference.
Z = 6.0
#: Below this many samples the spread estimate is too rough for the z-test (shape and
#: finiteness are still checked).
MIN_SAMPLES_FOR_Z = 100


def _leaves(params):
    if isinstance(params, torch.Tensor):
        return (params.detach().double().requires_grad_(True),), False
    return tuple(p.detach().double().requires_grad_(True) for p in params), True


def normal_expectation_grad(
    f: Callable, dist_fn: Callable, params, nodes: int = 120
) -> torch.Tensor | tuple:
    r"""Gradient of :math:`\mathbb E_{N(\mu,\sigma)}[f(x)]` by Gauss-Hermite quadrature
    (probabilists' nodes), for a ``dist_fn`` returning a scalar ``Normal``."""
    leaves, is_tuple = _leaves(params)
    d = dist_fn(*leaves)
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    z = torch.as_tensor(z, dtype=torch.float64)
    w = torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64)
    x = d.loc + d.scale * z
    values = torch.as_tensor(f(x.clone()), dtype=torch.float64)
    grads = torch.autograd.grad((w * values).sum(), leaves, allow_unused=True)
    grads = tuple(
        torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves, strict=True)
    )
    return grads if is_tuple else grads[0]


def bernoulli_expectation_grad(f: Callable, dist_fn: Callable, params) -> torch.Tensor | tuple:
    r"""Gradient of :math:`\mathbb E[f(b)]` for independent Bernoulli coordinates (the
    distribution's batch shape), by enumerating every configuration."""
    leaves, is_tuple = _leaves(params)
    d = dist_fn(*leaves)
    while isinstance(d, torch.distributions.Independent):
        d = d.base_dist
    probs = d.probs.reshape(-1)
    k = probs.numel()
    configs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)), dtype=torch.float64)
    weight = (configs * probs + (1 - configs) * (1 - probs)).prod(1)
    values = torch.as_tensor(
        f(configs.reshape(-1, *d.batch_shape).clone()), dtype=torch.float64
    ).reshape(-1)
    grads = torch.autograd.grad((weight * values).sum(), leaves, allow_unused=True)
    grads = tuple(
        torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves, strict=True)
    )
    return grads if is_tuple else grads[0]


def _flat(value) -> torch.Tensor:
    if isinstance(value, tuple):
        return torch.cat([torch.as_tensor(v).detach().double().reshape(-1) for v in value])
    return torch.as_tensor(value).detach().double().reshape(-1)


def check_shape_like(grad, params, what: str = "grad") -> None:
    """``grad`` shaped like ``params`` (tuples matching)."""
    if isinstance(params, (tuple, list)):
        if not isinstance(grad, tuple) or len(grad) != len(params):
            raise Wrong(f"{what} is not a tuple of {len(params)} like params")
        pairs = zip(grad, params, strict=True)
    else:
        pairs = [(grad, params)]
    for g, p in pairs:
        if tuple(g.shape) != tuple(torch.as_tensor(p).shape):
            raise Wrong(f"{what} shape {tuple(g.shape)} differs from params {tuple(p.shape)}")


def z_bound(dof: int) -> float:
    """The Student-t quantile with the tail probability of :data:`Z` standard normal errors:
    a standard error estimated from few terms (``batches=2``) gets a wide bound."""
    from scipy import stats

    tail = stats.norm.sf(Z)
    return float(stats.t.isf(tail, max(dof, 1)))


def check_close(est, exact, *, z: float | None = None, atol: float = 1e-6) -> None:
    """``est.grad`` within ``z`` standard errors (plus ``atol``) of ``exact`` elementwise;
    ``z`` defaults to :func:`z_bound` of the estimate's degrees of freedom."""
    if z is None:
        terms = est.info.get("batch_means") or est.num_samples
        z = z_bound(int(terms) - 1)
    g, se, ex = _flat(est.grad), _flat(est.stderr), _flat(exact)
    if g.shape != ex.shape:
        raise Wrong(f"grad has {g.numel()} entries, the reference {ex.numel()}")
    tol = z * se + atol * (1 + ex.abs())
    if not bool(((g - ex).abs() <= tol).all()):
        raise Wrong(f"grad {g.tolist()} vs reference {ex.tolist()} (stderr {se.tolist()})")


def check_estimate(est, call, reference: Callable, *, biased: bool = False) -> None:
    """The checks of a :class:`~stochgrad.GradientEstimate` from an estimator call: ``grad``
    shaped like ``params`` and, for an unbiased estimate of enough samples, within
    :data:`Z` standard errors of ``reference(f, dist_fn, params)``."""
    import stochgrad as sg

    if not isinstance(est, sg.GradientEstimate):
        raise Wrong(f"returned {type(est).__name__}, not a GradientEstimate")
    params = call.kwargs["params"]
    check_shape_like(est.grad, params)
    if est.biased or biased or est.num_samples < MIN_SAMPLES_FOR_Z:
        return
    check_close(est, reference(call.exact, call.kwargs["dist_fn"], params))
