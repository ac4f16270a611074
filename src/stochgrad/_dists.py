"""Per-distribution fast paths: seeded samplers and closed-form scores.

``torch.distributions`` samplers take no ``generator`` and its scores come only through autograd.
For the common distributions we sample with an explicit generator and write the score
:math:`\\partial \\log p(x; \\phi) / \\partial \\phi` in closed form with respect to the tensors
the distribution stores (``loc``, ``scale``, ``logits``, ...); the chain rule to the user's
parameters is applied afterwards (``_core.chain_to_params``). Anything else falls back to
torch's own sampler under a seeded RNG and to forward-mode autograd of ``log_prob``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Binomial,
    Categorical,
    Distribution,
    Exponential,
    Independent,
    Normal,
    OneHotCategorical,
    Poisson,
    Uniform,
)

from stochgrad import _core
from stochgrad._core import seeded_global_rng

Sampler = Callable[[Distribution, int, "torch.Generator | None"], Tensor]
# score(d, x) -> list of (stored parameter tensor, per-sample score [n, *param.shape])
Score = Callable[[Distribution, Tensor], list[tuple[Tensor, Tensor]]]

SAMPLERS: dict[type, Sampler] = {}
SCORES: dict[type, Score] = {}


def unwrap(d: Distribution) -> Distribution:
    """Strip ``Independent`` wrappers: they only change how ``log_prob`` sums, not the score."""
    while isinstance(d, Independent):
        d = d.base_dist
    return d


def _shape(d: Distribution, n: int) -> tuple[int, ...]:
    return (n, *d.batch_shape, *d.event_shape)


def _stored(d: Distribution, name: str) -> bool:
    return name in d.__dict__ and d._param is d.__dict__[name]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# samplers (no gradient: score-function and measure-valued use these)
# ---------------------------------------------------------------------------------------------
def _normal_sample(d: Normal, n: int, g) -> Tensor:
    eps = _core.randn(_shape(d, n), g, dtype=d.loc.dtype, device=d.loc.device)
    return eps.mul_(d.scale.detach()).add_(d.loc.detach())


def _bernoulli_sample(d: Bernoulli, n: int, g) -> Tensor:
    p = d.probs.detach()
    u = _core.rand(_shape(d, n), g, dtype=p.dtype, device=p.device)
    return (u < p).to(p.dtype)


def _categorical_index(d: Categorical, n: int, g) -> Tensor:
    p = d.probs.detach()
    k = p.shape[-1]
    idx = _core.with_generator(torch.multinomial, p.reshape(-1, k), n, True, generator=g)  # [B, n]
    return idx.T.reshape(n, *d.batch_shape)


def _onehot_sample(d: OneHotCategorical, n: int, g) -> Tensor:
    idx = _categorical_index(d._categorical, n, g)
    return F.one_hot(idx, d._categorical.probs.shape[-1]).to(d._categorical.probs.dtype)


def _poisson_sample(d: Poisson, n: int, g) -> Tensor:
    rate = d.rate.detach().expand(_shape(d, n)).contiguous()
    return _core.with_generator(torch.poisson, rate, generator=g)


def _exponential_sample(d: Exponential, n: int, g) -> Tensor:
    rate = d.rate.detach()
    return _core.exponential(_shape(d, n), g, dtype=rate.dtype, device=rate.device) / rate


def _uniform_sample(d: Uniform, n: int, g) -> Tensor:
    lo, hi = d.low.detach(), d.high.detach()
    u = _core.rand(_shape(d, n), g, dtype=lo.dtype, device=lo.device)
    return lo + (hi - lo) * u


def _binomial_sample(d: Binomial, n: int, g) -> Tensor:
    shape = _shape(d, n)
    count = d.total_count.detach().expand(shape).contiguous().to(d.probs.dtype)
    probs = d.probs.detach().expand(shape).contiguous()
    return _core.with_generator(torch.binomial, count, probs, generator=g)


SAMPLERS.update(
    {
        Normal: _normal_sample,
        Bernoulli: _bernoulli_sample,
        Categorical: lambda d, n, g: _categorical_index(d, n, g).to(torch.long),
        OneHotCategorical: _onehot_sample,
        Poisson: _poisson_sample,
        Exponential: _exponential_sample,
        Uniform: _uniform_sample,
        Binomial: _binomial_sample,
    }
)


def _check_registration(dist_type: object, fn: object, what: str) -> None:
    if not (isinstance(dist_type, type) and issubclass(dist_type, Distribution)):
        raise TypeError(
            f"dist_type must be a torch.distributions.Distribution subclass, got {dist_type!r}"
        )
    if not callable(fn):
        raise TypeError(f"fn must be callable {what}, got {fn!r}")


def register_sampler(dist_type: type, fn: Sampler) -> Sampler:
    """Register (or replace) the seeded sampler of a distribution type; returns ``fn``.

    The score-function and measure-valued estimators then draw with ``fn`` instead of
    ``d.sample`` under a seeded global generator.

    Args:
        dist_type: a ``torch.distributions.Distribution`` subclass (matched exactly, after
            ``Independent`` wrappers are stripped).
        fn: ``fn(d, n, generator)`` -> ``n`` samples ``[n, *batch_shape, *event_shape]`` without
            gradient; all randomness from ``generator`` (a ``torch.Generator`` or ``None``).

    >>> register_sampler(Normal, SAMPLERS[Normal]) is SAMPLERS[Normal]
    True
    """
    _check_registration(dist_type, fn, "(d, n, generator) -> samples")
    SAMPLERS[dist_type] = fn
    return fn


def sample(d: Distribution, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` samples ``[n, *batch_shape, *event_shape]`` without gradient, seeded by ``generator``."""
    base = unwrap(d)
    sampler = SAMPLERS.get(type(base))
    if sampler is not None:
        return sampler(base, n, generator)
    device = _device_of(d)
    with seeded_global_rng(generator, device), torch.no_grad():
        return d.sample((n,))


def _device_of(d: Distribution) -> torch.device:
    for v in vars(unwrap(d)).values():
        if isinstance(v, Tensor):
            return v.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# fast parameter checks: True when valid; on False the generic check names the culprit
# ---------------------------------------------------------------------------------------------
def _normal_valid(d: Normal) -> bool:
    loc, scale = d.loc.detach(), d.scale.detach()
    if scale.numel() == 1:  # the common scalar case without tensor ops: two reads
        s, m = float(scale), float(loc)
        return s > 0 and math.isfinite(s) and math.isfinite(m)
    return bool(((scale > 0) & torch.isfinite(scale) & torch.isfinite(loc)).all())


VALIDATORS: dict[type, Callable[[Distribution], bool]] = {Normal: _normal_valid}


# ---------------------------------------------------------------------------------------------
# closed-form scores with respect to the stored parameter tensors
# ---------------------------------------------------------------------------------------------
def _normal_score(d: Normal, x: Tensor):
    inv = d.scale.detach().reciprocal()
    z = (x - d.loc.detach()).mul_(inv)
    return [(d.loc, z * inv), (d.scale, z.square().sub_(1.0).mul_(inv))]


def _bernoulli_score(d: Bernoulli, x: Tensor):
    if _stored(d, "logits"):
        return [(d.logits, x - torch.sigmoid(d.logits.detach()))]
    p = d.probs.detach()
    return [(d.probs, x / p - (1.0 - x) / (1.0 - p))]


def _categorical_score(d: Categorical, idx: Tensor):
    k = d._num_events
    onehot = F.one_hot(idx.long(), k).to(d.logits.dtype if _stored(d, "logits") else d.probs.dtype)
    if _stored(d, "logits"):  # log p(x) = logits[x] of the stored (normalised) logits
        return [(d.logits, onehot)]
    return [(d.probs, onehot / d.probs.detach())]


def _onehot_score(d: OneHotCategorical, x: Tensor):
    return _categorical_score(d._categorical, x.argmax(-1))


def _poisson_score(d: Poisson, x: Tensor):
    rate = d.rate.detach()
    return [(d.rate, x / rate - 1.0)]


def _exponential_score(d: Exponential, x: Tensor):
    return [(d.rate, 1.0 / d.rate.detach() - x)]


def _binomial_score(d: Binomial, x: Tensor):
    count = d.total_count.detach()
    if _stored(d, "logits"):
        return [(d.logits, x - count * torch.sigmoid(d.logits.detach()))]
    p = d.probs.detach()
    return [(d.probs, x / p - (count - x) / (1.0 - p))]


SCORES.update(
    {
        Normal: _normal_score,
        Bernoulli: _bernoulli_score,
        Categorical: _categorical_score,
        OneHotCategorical: _onehot_score,
        Poisson: _poisson_score,
        Exponential: _exponential_score,
        Binomial: _binomial_score,
    }
)


def register_score(dist_type: type, fn: Score) -> Score:
    """Register (or replace) the closed-form score of a distribution type; returns ``fn``.

    The score-function estimator then uses ``fn`` instead of forward-mode autograd of
    ``log_prob`` (the chain rule to the caller's parameters is applied afterwards).

    Args:
        dist_type: a ``torch.distributions.Distribution`` subclass (matched exactly, after
            ``Independent`` wrappers are stripped).
        fn: ``fn(d, x)`` -> a list of ``(param, score)``: ``param`` a tensor the distribution
            stores (in the autograd graph of the caller's parameters), ``score`` the per-sample
            :math:`\\partial \\log p(x_i) / \\partial` ``param``, shaped ``[n, *param.shape]``
            for samples ``x`` ``[n, ...]``; stored tensors left out get no gradient. Return
            ``None`` to fall back to autograd of ``log_prob`` for this call.

    >>> register_score(Normal, SCORES[Normal]) is SCORES[Normal]
    True
    """
    _check_registration(dist_type, fn, "(d, x) -> [(param, per-sample score), ...]")
    SCORES[dist_type] = fn
    return fn


def closed_form_score(d: Distribution, x: Tensor) -> list[tuple[Tensor, Tensor]] | None:
    """Per-sample scores w.r.t. stored parameters, or ``None`` when no closed form is registered."""
    base = unwrap(d)
    fn = SCORES.get(type(base))
    return None if fn is None else fn(base, x)


# ---------------------------------------------------------------------------------------------
# reparameterised sampling (pathwise): x = loc + scale * eps with the noise returned
# ---------------------------------------------------------------------------------------------
def normal_noise(d: Distribution, n: int, generator) -> Tensor | None:
    """Standard-normal noise for a (possibly ``Independent``) ``Normal``; ``None`` otherwise."""
    base = unwrap(d)
    if type(base) is not Normal:
        return None
    return _core.randn(_shape(base, n), generator, dtype=base.loc.dtype, device=base.loc.device)
