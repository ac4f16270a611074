r"""The score-function estimator (log-derivative trick, REINFORCE, likelihood ratio).

.. math::

    \nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)]
      = \mathbb{E}_{p(x;\theta)}\big[(f(x) - b)\, \nabla_\theta \log p(x;\theta)\big]

for any baseline :math:`b` independent of :math:`x`. It needs only samples of :math:`x` and values
of :math:`f`, so :math:`f` may be a black box and :math:`x` discrete.

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning"; Glynn (1990), "Likelihood ratio gradient estimation for stochastic
    systems"; Mohamed, Rosca, Figurnov, Mnih (2020, JMLR), Sec. 4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from stochgrad import _core, _dists
from stochgrad.baselines import Baseline, NoBaseline, resolve_baseline
from stochgrad.estimate import GradientEstimate, Params


def scores_per_sample(
    dist_fn: Callable[..., Distribution],
    d: Distribution,
    leaves: tuple[Tensor, ...],
    x: Tensor,
) -> list[Tensor]:
    r"""Per-sample scores :math:`\nabla_\theta \log p(x_i;\theta)`, one ``[n, *leaf.shape]`` per leaf.

    Closed forms for the common distributions (chain rule through ``dist_fn`` applied once),
    forward-mode autograd of ``log_prob`` otherwise.
    """
    n = x.shape[0]
    closed = _dists.closed_form_score(d, x)
    if closed is not None:
        phis = [p for p, _ in closed]
        return _core.chain_to_params(phis, [s for _, s in closed], leaves, n)
    return _core.per_sample_log_prob_grads(dist_fn, leaves, x)


def score_function(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    baseline: str | float | Baseline | None = None,
    control_variate=None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    parallel=None,
) -> GradientEstimate:
    r"""Score-function estimate of :math:`\nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)]`.

    Args:
        f: batch of samples ``[n, ...]`` -> values ``[n]``; may be a black box (numpy in and out
            via :func:`stochgrad.black_box`), need not be differentiable.
        dist_fn: ``dist_fn(*params)`` -> a ``torch.distributions.Distribution`` (any with
            ``log_prob``; a batch shape is treated as a product of independent factors).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n``.
        baseline: ``None``, ``"loo"``, ``"mean"``, ``"optimal"``, a number, or a
            :class:`~stochgrad.baselines.Baseline` (e.g. a reused ``EMABaseline``).
        control_variate: ``None``, ``"delta"`` (second-order Taylor control variate, Gaussians
            only) or a :class:`~stochgrad.control_variates.ControlVariate`.
        generator: the random generator (or give ``seed``).
        seed: shorthand for ``generator=torch.Generator().manual_seed(seed)``.
        parallel: evaluate ``f`` over sample chunks in parallel: ``"process"``, ``"ray"``,
            ``"serial"`` or a :class:`~stochgrad.parallel.ParallelMap` (the control variate, if
            any, still uses ``f`` itself).

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="score_function"``.

    >>> import torch, stochgrad as sg
    >>> theta = torch.tensor([0.5, 1.0])
    >>> est = sg.score_function(lambda x: (x - 2.0) ** 2,
    ...                         lambda th: torch.distributions.Normal(th[0], th[1]), theta,
    ...                         num_samples=100_000, baseline="loo", seed=0)
    >>> est.grad.shape
    torch.Size([2])
    """
    tensors, is_tuple = _core.as_params(params)
    bl = resolve_baseline(baseline)
    n = _core.check_num_samples(
        num_samples, bl.min_samples, why=f"baseline {bl.name!r} needs at least 2 samples"
    )
    g = _core.make_generator(generator, seed)
    f_values = f
    if parallel is not None:
        from stochgrad.parallel import as_parallel

        f_values = as_parallel(f, parallel)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    x = _dists.sample(d, n, g)
    fx = _core.evaluate_f(f_values, x, n)
    parts = scores_per_sample(dist_fn, d, leaves, x)

    sizes = [leaf.numel() for leaf in leaves]
    scores = (
        parts[0].reshape(n, -1)
        if len(parts) == 1
        else torch.cat([p.reshape(n, -1) for p in parts], dim=1)
    )
    fx = fx.to(scores.dtype)
    flat_params = (
        tensors[0].reshape(-1) if len(tensors) == 1 else torch.cat([t.reshape(-1) for t in tensors])
    )
    extra = None
    if type(bl) is NoBaseline:
        per = fx.unsqueeze(1) * scores
    else:
        per = (fx.unsqueeze(1) - bl(fx, scores, flat_params)) * scores
        extra = bl.extra_variance_of_mean(fx, scores)
    info: dict = {"baseline": bl.name}
    if control_variate is not None:
        from stochgrad.control_variates import apply_control_variate

        per, cv_info = apply_control_variate(control_variate, f, dist_fn, leaves, d, x, scores, per)
        info.update(cv_info)
    if control_variate is not None:
        extra = None  # the control variate changes the terms; the correction no longer applies
    extra_parts = None
    if extra is not None:
        split = [extra] if len(leaves) == 1 else list(extra.split(sizes))
        extra_parts = _core.pack(
            [e.reshape(leaf.shape) for e, leaf in zip(split, leaves, strict=True)], is_tuple
        )
    if len(leaves) == 1:
        out = [per.reshape(n, *leaves[0].shape)]
    else:
        out = [
            c.reshape(n, *leaf.shape) for c, leaf in zip(per.split(sizes, 1), leaves, strict=True)
        ]
    return GradientEstimate.from_per_sample(
        _core.pack(out, is_tuple),
        method="score_function",
        biased=not bl.unbiased,
        evaluations=n,
        info=info,
        extra_variance_of_mean=extra_parts,
    )
