r"""The measure-valued (weak derivative) estimator.

The derivative of a density with respect to one scalar parameter :math:`\phi_j` is written as a
scaled difference of two densities, :math:`\partial_{\phi_j} p(x;\phi) = c_j\,(p^+_j(x) -
p^-_j(x))`, so that

.. math::

    \partial_{\phi_j} \mathbb{E}_{p(x;\phi)}[f(x)]
      = c_j \big(\mathbb{E}_{p^+_j}[f(x)] - \mathbb{E}_{p^-_j}[f(x)]\big).

Each sample :math:`x_i \sim p` gives one term per scalar parameter element,
:math:`c_j (f(x^+_{ij}) - f(x^-_{ij}))`, where :math:`x^\pm_{ij}` is :math:`x_i` with only
coordinate :math:`j` redrawn from :math:`p^\pm_j`; the two are coupled (they share randomness),
which lowers the variance. Like the score function it needs only values of :math:`f` (a black
box is fine), but it costs :math:`2 m` evaluations per sample for :math:`m` scalar parameters.
The chain rule from the distribution's own parameter tensors (``loc``, ``scale``, ``probs``, ...)
to ``params`` is applied afterwards.

Weak derivatives are registered per distribution type in :data:`WEAK_DERIVATIVES`; add one with
:func:`register_weak_derivative`.

References:
    Pflug (1989), "Sampling derivatives of probabilities"; Heidergott & Vázquez-Abad (2000);
    Mohamed, Rosca, Figurnov, Mnih (2020, JMLR), "Monte Carlo Gradient Estimation in Machine
    Learning", Sec. 6 (Table 1 and the coupled Gaussian estimators used in Sec. 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Exponential, Normal, Poisson

from stochgrad import _core, _dists
from stochgrad.gradient_estimate import GradientEstimate, Params


class WeakDerivativePiece(NamedTuple):
    r"""The weak derivative with respect to one stored parameter tensor ``param``.

    For flat element ``j`` of ``param`` (``param.reshape(-1)[j]``) and sample ``i``,
    ``positive[j, i]`` and ``negative[j, i]`` are the coupled points :math:`x^\pm_{ij}` (each shaped
    like one sample), and the per-sample term is ``const[j] * (f(positive[j, i]) -
    f(negative[j, i]))``.

    Attributes:
        param: the tensor the distribution stores (``d.loc``, ``d.logits``, ...), in the autograd
            graph of ``params``.
        positive: ``[param.numel(), n, *sample_shape]`` points from :math:`p^+_j`.
        negative: ``[param.numel(), n, *sample_shape]`` points from :math:`p^-_j`.
        const: the constant :math:`c_j`, broadcastable to ``param.shape`` (no gradient).
    """

    param: Tensor
    positive: Tensor
    negative: Tensor
    const: Tensor


# weak_derivative(base_dist, x, generator) -> pieces; x: [n, *batch_shape, *event_shape] samples
WeakDerivative = Callable[
    [Distribution, Tensor, "torch.Generator | None"], list[WeakDerivativePiece]
]

WEAK_DERIVATIVES: dict[type, WeakDerivative] = {}


def register_weak_derivative(dist_type: type, fn: WeakDerivative) -> WeakDerivative:
    """Register (or replace) the weak derivative of a distribution type; returns ``fn``.

    Args:
        dist_type: a subclass of ``torch.distributions.Distribution`` (matched exactly, after
            ``Independent`` wrappers are stripped).
        fn: ``fn(d, x, generator)`` -> list of :class:`WeakDerivativePiece`, one per stored
            parameter tensor; ``x`` is the batch of samples ``[n, *sample_shape]`` drawn from
            ``d``. All new randomness must come from ``generator``.
            :func:`replace_coordinate` builds the points for distributions with scalar events.

    Returns:
        ``fn`` unchanged.

    >>> import torch
    >>> from torch.distributions import Normal
    >>> register_weak_derivative(Normal, WEAK_DERIVATIVES[Normal]) is WEAK_DERIVATIVES[Normal]
    True
    """
    if not (isinstance(dist_type, type) and issubclass(dist_type, Distribution)):
        raise TypeError(
            f"dist_type must be a torch.distributions.Distribution subclass, got {dist_type!r}"
        )
    if not callable(fn):
        raise TypeError(f"fn must be callable (d, x, generator) -> pieces, got {fn!r}")
    WEAK_DERIVATIVES[dist_type] = fn
    return fn


def replace_coordinate(x: Tensor, values: Tensor) -> Tensor:
    """Copies of the samples with one coordinate replaced: the points of a weak derivative.

    Args:
        x: samples ``[n, *batch_shape]`` (scalar events).
        values: ``[n, *batch_shape]``, the value coordinate ``j`` of sample ``i`` takes.

    Returns:
        ``[m, n, *batch_shape]`` with ``m = prod(batch_shape)``: entry ``[j, i]`` is ``x[i]`` with
        flat coordinate ``j`` set to ``values[i]``'s flat coordinate ``j``.

    >>> import torch
    >>> replace_coordinate(torch.zeros(1, 2), torch.ones(1, 2))
    tensor([[[1., 0.]],
    <BLANKLINE>
            [[0., 1.]]])
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    m = flat.shape[1]
    pts = flat.unsqueeze(0).expand(m, n, m).clone()
    j = torch.arange(m, device=x.device)
    pts[j, :, j] = values.reshape(n, m).T.to(pts.dtype)
    return pts.reshape(m, *x.shape)


# ---------------------------------------------------------------------------------------------
# weak derivatives of the common distributions
# ---------------------------------------------------------------------------------------------
def _normal_weak(d: Normal, x: Tensor, g) -> list[WeakDerivativePiece]:
    r"""Gaussian: loc by Weibull (Rayleigh) points, scale by double-sided Maxwell vs. Gaussian.

    :math:`\partial_\mu N = \frac{1}{\sigma\sqrt{2\pi}}(\mu + \sigma W) - (\mu - \sigma W)` in law,
    :math:`W \sim \mathrm{Weibull}(\sqrt 2, 2)` (Rayleigh(1)), the same :math:`W` on both sides;
    :math:`\partial_\sigma N = \frac{1}{\sigma}\big(M(\mu,\sigma^2) - N(\mu,\sigma^2)\big)` with
    :math:`x^+ = \mu + \sigma M`, :math:`x^- = \mu + \sigma M U`, :math:`U \sim U(0,1)`
    (:math:`MU \sim N(0,1)`). Draw order (for replays): ``E ~ Exp(1)`` (``W = sqrt(2E)``),
    ``Z ~ N(0, I_3)`` per coordinate (last axis), the sign ``S`` (``rand < 0.5`` is negative),
    then ``U``.
    """
    loc, scale = d.loc.detach(), d.scale.detach()
    shape, dtype, dev = x.shape, x.dtype, x.device
    e = _core.exponential(shape, g, dtype=dtype, device=dev)
    w = (2.0 * e).sqrt()  # Weibull(scale sqrt 2, shape 2) by inversion
    z = _core.randn((*shape, 3), g, dtype=dtype, device=dev)
    neg_sign = _core.rand(shape, g, dtype=dtype, device=dev) < 0.5
    maxwell = torch.where(neg_sign, -1.0, 1.0).to(dtype) * z.norm(dim=-1)  # ±sqrt(chi2_3)
    u = _core.rand(shape, g, dtype=dtype, device=dev)
    return [
        WeakDerivativePiece(
            d.loc,
            replace_coordinate(x, loc + scale * w),
            replace_coordinate(x, loc - scale * w),
            1.0 / (scale * math.sqrt(2.0 * math.pi)),
        ),
        WeakDerivativePiece(
            d.scale,
            replace_coordinate(x, loc + scale * maxwell),
            replace_coordinate(x, loc + scale * maxwell * u),
            1.0 / scale,
        ),
    ]


def _bernoulli_weak(d: Bernoulli, x: Tensor, g) -> list[WeakDerivativePiece]:
    r""":math:`\partial_p \mathbb{E}[f] = \mathbb{E}[f(x; x_j=1)] - \mathbb{E}[f(x; x_j=0)]`.

    Built from logits, :math:`\partial p / \partial \ell = p(1-p)`, so the derivative with respect
    to the stored logits is :math:`p(1-p)` times that with respect to ``probs``.
    """
    ones, zeros = torch.ones_like(x), torch.zeros_like(x)
    pos, neg = replace_coordinate(x, ones), replace_coordinate(x, zeros)
    if _dists._stored(d, "logits"):
        p = torch.sigmoid(d.logits.detach())
        return [WeakDerivativePiece(d.logits, pos, neg, p * (1.0 - p))]
    return [WeakDerivativePiece(d.probs, pos, neg, torch.ones_like(d.probs.detach()))]


def _poisson_weak(d: Poisson, x: Tensor, g) -> list[WeakDerivativePiece]:
    r""":math:`\partial_\lambda \mathrm{Pois}(k) = \mathrm{Pois}(k-1) - \mathrm{Pois}(k)`: the
    points :math:`X + 1` and :math:`X` (coupled through the same :math:`X`), :math:`c = 1`."""
    rate = d.rate.detach()
    return [
        WeakDerivativePiece(
            d.rate, replace_coordinate(x, x + 1.0), replace_coordinate(x, x), torch.ones_like(rate)
        )
    ]


def _exponential_weak(d: Exponential, x: Tensor, g) -> list[WeakDerivativePiece]:
    r""":math:`p_\lambda(x) = \lambda e^{-\lambda x}`, so
    :math:`\partial_\lambda p = e^{-\lambda x}(1 - \lambda x) = \frac{1}{\lambda}\big(
    \lambda e^{-\lambda x} - \lambda^2 x e^{-\lambda x}\big)`: :math:`c = 1/\lambda`,
    :math:`p^+ = \mathrm{Exp}(\lambda)` (the sample :math:`X` itself), :math:`p^- =
    \mathrm{Gamma}(2, \lambda)` (:math:`X + X'` with an independent :math:`X' \sim
    \mathrm{Exp}(\lambda)`)."""
    rate = d.rate.detach()
    extra = _core.exponential(x.shape, g, dtype=x.dtype, device=x.device) / rate
    return [
        WeakDerivativePiece(
            d.rate, replace_coordinate(x, x), replace_coordinate(x, x + extra), 1.0 / rate
        )
    ]


WEAK_DERIVATIVES.update(
    {
        Normal: _normal_weak,
        Bernoulli: _bernoulli_weak,
        Poisson: _poisson_weak,
        Exponential: _exponential_weak,
    }
)


def _lookup(d: Distribution) -> tuple[Distribution, WeakDerivative]:
    base = _dists.unwrap(d)
    fn = WEAK_DERIVATIVES.get(type(base))
    if fn is None:
        supported = ", ".join(sorted(t.__name__ for t in WEAK_DERIVATIVES))
        raise ValueError(
            f"dist_fn: measure_valued has no weak derivative for {type(base).__name__} "
            f"(supported: {supported}; add one with register_weak_derivative). "
            "Use sg.score_function instead (any distribution with log_prob)."
        )
    return base, fn


def _check_piece(piece: WeakDerivativePiece, x: Tensor, fn: WeakDerivative) -> None:
    expected = (piece.param.numel(), *x.shape)
    for name in ("positive", "negative"):
        got = tuple(getattr(piece, name).shape)
        if got != expected:
            raise ValueError(
                f"weak derivative {getattr(fn, '__name__', fn)!r}: {name} points must have shape "
                f"{list(expected)} ([param.numel(), n, *sample_shape]), got {list(got)}"
            )


def measure_valued(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    baseline: None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batches: int | None = None,
) -> GradientEstimate:
    r"""Measure-valued (weak derivative) estimate of :math:`\nabla_\theta \mathbb{E}_p[f(x)]`.

    .. math::

        \partial_{\phi_j} \mathbb{E}_{p}[f]
          \approx \frac{1}{n} \sum_{i=1}^n c_j \big(f(x^+_{ij}) - f(x^-_{ij})\big),

    for every scalar element :math:`\phi_j` of the distribution's parameters, with coupled points
    :math:`x^\pm_{ij}` (sample :math:`x_i` with coordinate :math:`j` redrawn from the positive or
    negative part of the weak derivative); the chain rule maps :math:`\phi` to ``params``.
    ``f`` is evaluated once, on one batch of all :math:`2 m n` points (:math:`m` scalar
    parameter elements that depend on ``params``).

    Args:
        f: batch of points ``[k, ...]`` -> values ``[k]``, each row depending only on its own
            point; may be a black box (:func:`stochgrad.black_box`), is never differentiated.
        dist_fn: ``dist_fn(*params)`` -> a distribution with a registered weak derivative
            (``Normal``, ``Bernoulli``, ``Poisson``, ``Exponential``, possibly batch-shaped or
            wrapped in ``Independent``).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n`` (per-sample terms). With ``1``, ``variance`` and
            ``stderr`` are NaN (undefined) and a :class:`~stochgrad.SingleSampleWarning` is
            issued. A call whose memory (the ``2 m n`` coupled points, the per-sample terms),
            estimated before drawing, exceeds the memory available (or
            ``STOCHGRAD_MEMORY_LIMIT``) is refused.
        baseline: must be ``None`` (the coupled difference needs none).
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        batches: ``None`` (default) keeps one term per sample; an int ``B`` in ``[2, n]`` keeps
            ``B`` batch means of consecutive samples (summed before the chain rule to
            ``params``: memory ``O(B x params)``), with ``variance`` and ``stderr`` from their
            spread (see :meth:`GradientEstimate.from_batch_sums`).

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="measure_valued"`` and
        ``evaluations = 2 * m * n``; ``samples`` holds the samples :math:`x_i` the coupled
        points were built from (the points themselves, ``2 m n`` of them, are not kept).

    Raises:
        ValueError: for a distribution without a registered weak derivative (the message names
            ``sg.score_function``), a baseline, ``num_samples < 1``, ``f`` of the wrong shape,
            non-finite or changing its input in place, more memory needed than the limit.
            ``TypeError``: ``f`` not callable.

    >>> import torch
    >>> from stochgrad.estimators.weak_derivative import measure_valued
    >>> est = measure_valued(lambda x: (x - 2.0) ** 2,
    ...                      lambda th: torch.distributions.Normal(th[0], th[1]),
    ...                      torch.tensor([0.5, 1.0]), num_samples=10_000, seed=0)
    >>> est.method, est.evaluations
    ('measure_valued', 40000)
    >>> bool(((est.grad - torch.tensor([-3.0, 2.0])).abs() < 5 * est.stderr).all())
    True

    Reference: Mohamed, Rosca, Figurnov, Mnih (2020, JMLR), Sec. 6.
    """
    if baseline is not None:
        raise ValueError(
            "baseline: the measure-valued estimator takes no baseline; pass baseline=None"
        )
    _core.check_f(f)
    tensors, is_tuple = _core.as_params(params)
    n = _core.check_num_samples(num_samples)
    batches = _core.check_batches(batches, n)
    g = _core.make_generator(generator, seed, tensors[0].device)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    base, weak = _lookup(d)
    # at least one stored parameter element per coordinate: 2 m coupled points per sample
    m_low = int(base.batch_shape.numel())
    size = sum(t.numel() for t in tensors)
    _core.check_memory(
        "measure_valued",
        n,
        {
            "coupled points": 2 * m_low * (_core.sample_size(d) + 1),
            "per-sample terms": 0 if batches else size,
        },
        tensors[0],
        batches=True,
    )
    x = _dists.sample(d, n, g)
    # Pieces whose parameter does not depend on params contribute nothing: skip their points.
    pieces = [p for p in weak(base, x, g) if p.param.requires_grad]
    for piece in pieces:
        _check_piece(piece, x, weak)
    m = sum(p.param.numel() for p in pieces)
    grads_phi: list[Tensor] = []
    if m > 0:
        points = torch.cat(
            [p.positive.reshape(-1, *x.shape[1:]) for p in pieces]
            + [p.negative.reshape(-1, *x.shape[1:]) for p in pieces]
        )  # [2 * m * n, *sample_shape]
        try:
            fx = _core.evaluate_f(f, points, 2 * m * n)
        except ValueError as exc:
            raise ValueError(
                f"{exc} [measure_valued evaluates f once on all 2*m*n = 2*{m}*{n} coupled points]"
            ) from exc
        diff = (fx[: m * n] - fx[m * n :]).reshape(m, n)
        start = 0
        for p in pieces:
            k = p.param.numel()
            dtype = p.param.dtype
            c = torch.as_tensor(p.const, dtype=dtype, device=diff.device)
            c = c.detach().expand(p.param.shape).reshape(k, 1)
            term = c * diff[start : start + k].to(dtype)  # [k, n]
            grads_phi.append(term.T.reshape(n, *p.param.shape))
            start += k
    info = {"coupled": True, "points_per_sample": 2 * m}
    if batches is not None:  # summed within batches before the chain rule: O(B x params)
        index = _core.batch_index(n, batches, x.device)
        parts = _core.chain_to_params(
            [p.param for p in pieces],
            [_core.batch_sums(t, index, batches) for t in grads_phi],
            leaves,
            batches,
            max_jacobian_rows=min(batches, _core._MAX_JACOBIAN_ROWS),
        )
        return GradientEstimate.from_batch_sums(
            _core.pack(parts, is_tuple),
            torch.bincount(index, minlength=batches),
            method="measure_valued",
            evaluations=2 * m * n,
            info=info,
            samples=x,
        )
    parts = _core.chain_to_params([p.param for p in pieces], grads_phi, leaves, n)
    return GradientEstimate.from_per_sample(
        _core.pack(parts, is_tuple),
        method="measure_valued",
        evaluations=2 * m * n,
        info=info,
        samples=x,
    )
