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
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from stochgrad import _core, _dists
from stochgrad.baselines import Baseline, NoBaseline, OptimalBaseline, resolve_baseline
from stochgrad.gradient_estimate import (
    GradientEstimate,
    Params,
    batch_variance,
)

if TYPE_CHECKING:  # annotations only: both modules import the estimators' helpers
    from stochgrad.control_variates import ControlVariate
    from stochgrad.parallel import ParallelMap


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


def check_batch_dims(batch_dims) -> int:
    """``batch_dims`` as an ``int >= 0``; ``ValueError`` naming it otherwise."""
    if isinstance(batch_dims, bool) or not isinstance(batch_dims, (int, np.integer)):
        raise ValueError(
            f"batch_dims must be an int >= 0 (how many leading batch dimensions of the "
            f"distribution index independent problems), got {batch_dims!r}"
        )
    if batch_dims < 0:
        raise ValueError(f"batch_dims must be >= 0, got {batch_dims}")
    return int(batch_dims)


def problem_shape(batch_dims: int, d: Distribution) -> tuple[int, ...]:
    """The problem shape ``d.batch_shape[:batch_dims]``, checking ``batch_dims`` fits ``d``."""
    k = check_batch_dims(batch_dims)
    if k > len(d.batch_shape):
        raise ValueError(
            f"batch_dims={k} exceeds the distribution's batch rank {len(d.batch_shape)} (batch "
            f"shape {list(d.batch_shape)}); the problems must index leading batch dimensions "
            "(event dimensions of an Independent do not count)"
        )
    return tuple(d.batch_shape[:k])


def _expand_to(t: Tensor, like: Tensor, k: int) -> Tensor:
    """View ``t`` (``[r, *problem]`` with ``k`` problem dims) with trailing singleton dims."""
    return t.reshape(*t.shape[: k + 1], *([1] * (like.dim() - 1 - k)))


def _factorised(
    fx: Tensor,
    bl: Baseline,
    dist_fn: Callable[..., Distribution],
    d: Distribution,
    leaves: tuple[Tensor, ...],
    x: Tensor,
    problem: tuple[int, ...],
) -> tuple[list[Tensor], list[Tensor] | None]:
    r"""Per-sample :math:`\sum_m (f_m(x_{im}) - b_{im}) \nabla_\theta \log p_m(x_{im};\theta)`.

    ``fx`` is ``[n, *problem]``. The baseline works per problem (``Baseline.per_problem``; the
    optimal one per problem and per element of the stored distribution parameters). Returns
    the per-sample terms per leaf and, for baselines that correlate the terms (LOO), the extra
    variance of the mean per leaf (else ``None``).
    """
    n, k = x.shape[0], len(problem)
    m = int(np.prod(problem)) if problem else 1
    optimal = type(bl) is OptimalBaseline
    closed = _dists.closed_form_score(d, x)
    if closed is not None and not all(
        tuple(p.shape[:k]) == problem and tuple(sc.shape) == (n, *p.shape) for p, sc in closed
    ):
        closed = None  # stored parameters not laid out by problem: use the general path
    if optimal and closed is None:
        bl.per_problem(fx.reshape(n, m))  # raises: needs scores per parameter element
    if optimal:
        adv = None
        spread = None
    else:
        fxm = fx.reshape(n, m)
        adv = (fxm - bl.per_problem(fxm)).reshape(n, *problem)
        spread = bl.per_problem_spread(fxm)
    rows = 2 if spread is not None else 1
    if closed is not None:
        phis, weighted = [], []
        for phi, sc in closed:
            if optimal:
                fb = _expand_to(fx.to(sc.dtype), sc, k)
                w = (fb - bl.per_element(fb, sc)) * sc
            else:
                w = _expand_to(adv.to(sc.dtype), sc, k) * sc
            if spread is not None:
                sp = _expand_to(spread.to(sc.dtype).reshape(1, *problem), sc, k)
                w = torch.cat([w, sp * sc])
            phis.append(phi)
            weighted.append(w)
        parts = _core.chain_to_params(phis, weighted, leaves, rows * n)
    else:
        weights = adv.reshape(1, n, m)
        if spread is not None:
            weights = torch.cat([weights, spread.reshape(1, 1, m).expand(1, n, m)])
        parts = _core.per_sample_log_prob_grads(dist_fn, leaves, x, weights)
    if spread is None:
        return parts, None
    per = [p[:n] for p in parts]
    extra = [p[n:].var(0) / (n * (n - 1)) for p in parts]
    return per, extra


def _batch_sums(
    weights: Tensor,
    dist_fn: Callable[..., Distribution],
    d: Distribution,
    leaves: tuple[Tensor, ...],
    x: Tensor,
    problem: tuple[int, ...],
    index: Tensor,
    batches: int,
) -> list[Tensor]:
    r"""``[R * B, *leaf.shape]`` per leaf: :math:`\sum_{i \in b} \sum_m w_{rim} \nabla_\theta
    \log p_m(x_{im};\theta)` for each weighting ``r`` and batch ``b`` (row ``r * B + b``).

    ``weights`` is ``[R, n, *problem]``. Memory ``O(R B P)``, never ``O(n P)``: closed-form
    scores are weighted and summed within each batch before the chain rule to ``params``;
    other distributions differentiate :math:`\sum_{i \in b} w_{ri} \log p(x_i)` by one batched
    reverse pass (``R B`` rows).
    """
    n, k, r = x.shape[0], len(problem), weights.shape[0]
    rows = r * batches
    closed = _dists.closed_form_score(d, x)
    if closed is not None and all(
        tuple(p.shape[:k]) == problem and tuple(sc.shape) == (n, *p.shape) for p, sc in closed
    ):
        phis, sums = [], []
        for phi, sc in closed:
            w = weights.to(sc.dtype)
            parts = [
                _core.batch_sums(_expand_to(w[j], sc, k) * sc, index, batches) for j in range(r)
            ]
            phis.append(phi)
            sums.append(parts[0] if r == 1 else torch.cat(parts))
        return _core.chain_to_params(
            phis, sums, leaves, rows, max_jacobian_rows=min(rows, _core._MAX_JACOBIAN_ROWS)
        )
    m = int(np.prod(problem)) if problem else 1
    lp = dist_fn(*leaves).log_prob(x).reshape(n, m, -1).sum(-1)  # [n, M]
    cot = torch.zeros(r, batches, n, m, dtype=lp.dtype, device=lp.device)
    cot[:, index, torch.arange(n, device=index.device)] = weights.reshape(r, n, m).to(lp.dtype)
    return _core.weighted_grads(lp, leaves, cot.reshape(rows, n, m))


def _batched(
    adv: Tensor,
    spread: Tensor | None,
    dist_fn: Callable[..., Distribution],
    d: Distribution,
    leaves: tuple[Tensor, ...],
    x: Tensor,
    problem: tuple[int, ...],
    batches: int,
) -> tuple[list[Tensor], Tensor, list[Tensor] | None]:
    """Batch sums of the terms ``adv * score`` per leaf, the batch sizes, and the extra variance
    of the mean per leaf from the ``spread`` rows (LOO's second-order term), else ``None``."""
    n = x.shape[0]
    index = _core.batch_index(n, batches, adv.device)
    sizes = torch.bincount(index, minlength=batches)
    extra = None
    if spread is not None:  # a pass of its own: only [P] of it is kept
        rows = _batch_sums(
            spread.reshape(1, 1, *problem).expand(1, *adv.shape),
            dist_fn,
            d,
            leaves,
            x,
            problem,
            index,
            batches,
        )
        extra = [batch_variance(r, sizes) / (n * (n - 1)) for r in rows]
        del rows
    sums = _batch_sums(adv.unsqueeze(0), dist_fn, d, leaves, x, problem, index, batches)
    return sums, sizes, extra


def _own_copy(pm: ParallelMap) -> Callable[[Tensor], Tensor]:
    """``pm``, or for the in-process (serial) backend ``pm`` on a copy of the samples.

    The serial backend hands ``f`` tensors that share the samples' memory but not their version
    counter, so an in-place change would go unseen; workers of the other backends receive
    copies anyway.
    """
    if getattr(pm, "backend", None) != "serial":
        return pm
    return lambda x: pm(x.clone())


def _check_batched(bl: Baseline, control_variate) -> None:
    if isinstance(bl, OptimalBaseline):
        raise ValueError(
            "batches: baseline 'optimal' needs the per-sample scores (n times the parameters' "
            "size); use baseline='loo' with batches=, or batches=None"
        )
    if control_variate is not None:
        raise ValueError(
            "batches: a control variate needs the per-sample terms; pass batches=None with "
            "control_variate="
        )


def score_function(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    baseline: str | float | Baseline | None = None,
    control_variate: str | ControlVariate | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    parallel: str | ParallelMap | None = None,
    batch_dims: int = 0,
    batches: int | None = None,
) -> GradientEstimate:
    r"""Score-function estimate of :math:`\nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)]`.

    With ``batch_dims = k > 0`` the objective is factorised over a batch of independent
    problems :math:`B` = ``d.batch_shape[:k]`` (e.g. the datapoints of a VAE's minibatch),
    :math:`f(x) = \sum_b f_b(x_b)`, and each problem's score is weighted by its own value only:

    .. math::

        \hat g = \frac1n \sum_{i=1}^n \sum_b \big(f_b(x_{ib}) - \beta_{ib}\big)\,
                  \nabla_\theta \log p_b(x_{ib};\theta),

    an unbiased estimate of :math:`\nabla_\theta \sum_b \mathbb{E}[f_b(x_b)]` whose variance
    does not grow with the other problems' values.

    Args:
        f: batch of samples ``[n, ...]`` -> values ``[n]``; may be a black box (numpy in and out
            via :func:`stochgrad.black_box`), need not be differentiable. With ``batch_dims=k``
            it returns ``[n, *B]``, one value per sample and per problem, and the value of
            problem ``b`` may depend only on its own slice ``x[:, b]`` (otherwise the estimate
            is biased).
        dist_fn: ``dist_fn(*params)`` -> a ``torch.distributions.Distribution`` (any with
            ``log_prob``; a batch shape is treated as a product of independent factors).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n``. With ``n = 1`` the estimate has no spread:
            ``variance`` and ``stderr`` are NaN and a :class:`~stochgrad.SingleSampleWarning`
            is issued. Before drawing, the memory the call needs is estimated (samples times
            their size, plus ``n`` times the parameters' size twice when the per-sample terms
            are kept) and a call above the memory available is refused (the limit can be set
            with the environment variable ``STOCHGRAD_MEMORY_LIMIT``, e.g. ``8G``).
        baseline: ``None``, ``"loo"``, ``"mean"``, ``"optimal"``, a number, or a
            :class:`~stochgrad.baselines.Baseline` (e.g. a reused ``EMABaseline``).
        control_variate: ``None``, ``"delta"`` (second-order Taylor control variate, Gaussians
            only) or a :class:`~stochgrad.control_variates.ControlVariate`.
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        parallel: evaluate ``f`` over sample chunks in parallel: ``"process"``, ``"ray"``,
            ``"serial"`` or a :class:`~stochgrad.parallel.ParallelMap` (the control variate, if
            any, still uses ``f`` itself).
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems (default ``0``: one problem, ``f`` returns ``[n]``). Baselines then apply per
            problem (``"loo"`` and ``"mean"`` over each problem's own samples, a constant or an
            ``EMABaseline`` elementwise, ``"optimal"`` per problem and per element of the
            distribution's stored parameters, closed-form scores only); control variates and
            ``LearnedBaseline`` are not supported.
        batches: ``None`` (default) keeps one term per sample in ``per_sample``: memory
            ``n`` times the parameters' size (64 samples of a 1M-weight float32 network:
            256 MB). An int ``B`` in ``[2, n]`` keeps ``B`` batch means of consecutive samples
            instead: the scores are weighted and summed within each batch before the chain
            rule to ``params``, so memory and backward passes are ``O(B x params)``; ``grad``
            is the same to rounding, ``variance`` and ``stderr`` come from the spread of the
            batch means (``B - 1`` degrees of freedom), ``per_sample`` holds ``B`` rows whose
            mean is ``grad`` and ``info["batch_means"] = B`` (see
            :meth:`GradientEstimate.from_batch_sums`). Not with ``baseline="optimal"`` or a
            control variate (both need the per-sample terms); the baseline is called with
            ``scores=None``.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="score_function"`` (and
        ``info["batch_dims"]`` when ``batch_dims > 0``); ``samples`` is the batch ``f``
        received.

    Raises:
        ValueError: a bad ``num_samples``, ``batch_dims`` or ``batches`` (``TypeError`` for the
            wrong type), ``f`` of the wrong shape or non-finite, ``f`` changing its input in
            place, a parameter off its constraint, an option that does not combine with the
            others, more memory needed than the limit. ``TypeError``: ``f`` not callable.

    >>> import torch, stochgrad as sg
    >>> theta = torch.tensor([0.5, 1.0])
    >>> est = sg.score_function(lambda x: (x - 2.0) ** 2,
    ...                         lambda th: torch.distributions.Normal(th[0], th[1]), theta,
    ...                         num_samples=100_000, baseline="loo", seed=0)
    >>> est.grad.shape
    torch.Size([2])

    A batch of 4 independent problems, each with 3 binary latents and its own target:

    >>> t = torch.tensor([0.0, 1.0, 2.0, 3.0])
    >>> bern = lambda lg: torch.distributions.Independent(
    ...     torch.distributions.Bernoulli(logits=lg), 1)
    >>> est = sg.score_function(lambda z: (z.sum(-1) - t) ** 2, bern, torch.zeros(4, 3),
    ...                         num_samples=1000, baseline="loo", seed=0, batch_dims=1)
    >>> est.grad.shape, est.info["batch_dims"]
    (torch.Size([4, 3]), 1)

    Eight batch means instead of 1000 per-sample terms, and the samples drawn:

    >>> est = sg.score_function(lambda z: (z.sum(-1) - t) ** 2, bern, torch.zeros(4, 3),
    ...                         num_samples=1000, baseline="loo", seed=0, batch_dims=1,
    ...                         batches=8)
    >>> est.per_sample.shape, est.info["batch_means"], est.samples.shape
    (torch.Size([8, 4, 3]), 8, torch.Size([1000, 4, 3]))
    """
    _core.check_f(f)
    tensors, is_tuple = _core.as_params(params)
    bl = resolve_baseline(baseline)
    if control_variate is not None and bl.min_samples < 2:
        minimum, why = 2, "a control variate's coefficient is estimated from at least 2 samples"
    else:
        minimum = bl.min_samples
        why = f"baseline {bl.name!r} needs at least {minimum} samples" if minimum > 1 else ""
    n = _core.check_num_samples(num_samples, minimum, why=why)
    g = _core.make_generator(generator, seed, tensors[0].device)
    batches = _core.check_batches(batches, n)
    if batches is not None:
        _check_batched(bl, control_variate)
    if check_batch_dims(batch_dims) > 0 and control_variate is not None:
        raise ValueError(
            "control_variate is not supported with batch_dims > 0 (factorised objectives); "
            "use a per-problem baseline such as 'loo' instead"
        )
    f_values = f
    if parallel is not None:
        from stochgrad.parallel import as_parallel

        f_values = _own_copy(as_parallel(f, parallel))
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    size = sum(t.numel() for t in tensors)
    _core.check_memory(
        "score_function",
        n,
        {"samples": _core.sample_size(d) + 1, "per-sample terms": 0 if batches else 2 * size},
        tensors[0],
        batches=True,
    )
    if batch_dims:
        problem = problem_shape(batch_dims, d)
        x = _dists.sample(d, n, g)
        fx = _core.evaluate_f(f_values, x, n, shape=(n, *problem))
        info = {"baseline": bl.name, "batch_dims": len(problem)}
        if batches is not None:
            fxm = fx.reshape(n, -1)
            adv = (fxm - bl.per_problem(fxm)).reshape(n, *problem)
            spread = bl.per_problem_spread(fxm)
            sums, sizes, extra_list = _batched(adv, spread, dist_fn, d, leaves, x, problem, batches)
            return GradientEstimate.from_batch_sums(
                _core.pack(sums, is_tuple),
                sizes,
                method="score_function",
                biased=not bl.unbiased,
                evaluations=n,
                info=info,
                extra_variance_of_mean=_shaped(extra_list, leaves, is_tuple),
                samples=x,
            )
        out, extra_list = _factorised(fx, bl, dist_fn, d, leaves, x, problem)
        extra_f = None
        if extra_list is not None:
            extra_f = _core.pack(
                [e.reshape(leaf.shape) for e, leaf in zip(extra_list, leaves, strict=True)],
                is_tuple,
            )
        return GradientEstimate.from_per_sample(
            _core.pack(out, is_tuple),
            method="score_function",
            biased=not bl.unbiased,
            evaluations=n,
            info=info,
            extra_variance_of_mean=extra_f,
            samples=x,
        )
    x = _dists.sample(d, n, g)
    fx = _core.evaluate_f(f_values, x, n)
    if batches is not None:
        return _score_batched(fx, bl, dist_fn, d, tensors, leaves, x, batches, is_tuple)
    parts = scores_per_sample(dist_fn, d, leaves, x)

    sizes = [leaf.numel() for leaf in leaves]
    scores = (
        parts[0].reshape(n, -1)
        if len(parts) == 1
        else torch.cat([p.reshape(n, -1) for p in parts], dim=1)
    )
    if fx.dtype != scores.dtype:
        fx = fx.to(scores.dtype)
    extra = None
    if type(bl) is NoBaseline:
        per = fx.unsqueeze(1) * scores
    else:
        flat_params = torch.cat([t.reshape(-1) for t in tensors])
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
        evaluations=n + info.get("control_variate_evaluations", 0),
        info=info,
        extra_variance_of_mean=extra_parts,
        samples=x,
    )


def _shaped(parts: list[Tensor] | None, leaves: tuple[Tensor, ...], is_tuple: bool):
    if parts is None:
        return None
    return _core.pack(
        [p.reshape(leaf.shape) for p, leaf in zip(parts, leaves, strict=True)], is_tuple
    )


def _score_batched(
    fx: Tensor,
    bl: Baseline,
    dist_fn: Callable[..., Distribution],
    d: Distribution,
    tensors: tuple[Tensor, ...],
    leaves: tuple[Tensor, ...],
    x: Tensor,
    batches: int,
    is_tuple: bool,
) -> GradientEstimate:
    """``score_function`` with ``batches=B`` and one problem: batch sums, never per-sample terms."""
    n = x.shape[0]
    flat_params = torch.cat([t.reshape(-1) for t in tensors])
    try:
        b = bl(fx, None, flat_params)
    except (TypeError, AttributeError) as exc:
        raise ValueError(
            f"batches: baseline {bl.name!r} failed without per-sample scores ({exc}); pass "
            "batches=None"
        ) from exc
    adv = fx.unsqueeze(1) - b
    if adv.shape != (n, 1):
        raise ValueError(
            f"batches: baseline {bl.name!r} gives one value per coordinate (shape "
            f"{list(adv.shape)}), which needs the per-sample scores; pass batches=None"
        )
    spread = bl.per_problem_spread(fx.reshape(n, 1))  # LOO: the second-order term of the stderr
    sums, sizes, extra = _batched(adv.reshape(n), spread, dist_fn, d, leaves, x, (), batches)
    return GradientEstimate.from_batch_sums(
        _core.pack(sums, is_tuple),
        sizes,
        method="score_function",
        biased=not bl.unbiased,
        evaluations=n,
        info={"baseline": bl.name},
        extra_variance_of_mean=_shaped(extra, leaves, is_tuple),
        samples=x,
    )
