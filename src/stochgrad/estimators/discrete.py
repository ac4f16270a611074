r"""Antithetic estimators for Bernoulli variables (ARM, DisARM) and REINFORCE leave-one-out.

For :math:`b \sim \mathrm{Bernoulli}(\sigma(\alpha))` (independent coordinates, logits
:math:`\alpha`) and one uniform vector :math:`u \sim U[0,1]^d`, the antithetic pair

.. math::

    b = \mathbb 1[u < \sigma(\alpha)], \qquad \tilde b = \mathbb 1[1 - u < \sigma(\alpha)]
      = \mathbb 1[u > \sigma(-\alpha)]

has the right marginal for each member. ARM (Augment-REINFORCE-Merge) and DisARM estimate
:math:`\nabla_\alpha \mathbb E[f(b)]` from the two values :math:`f(b), f(\tilde b)`:

.. math::

    g^{\mathrm{ARM}}_k = \big(f(\tilde b) - f(b)\big)\big(u_k - \tfrac12\big), \qquad
    g^{\mathrm{DisARM}}_k = \tfrac12 \big(f(b) - f(\tilde b)\big)
        (-1)^{\tilde b_k}\, \mathbb 1[b_k \ne \tilde b_k]\, \sigma(|\alpha_k|).

DisARM is ARM with :math:`u_k` integrated out given :math:`(b, \tilde b)` (Rao-Blackwellised), so
its variance is never larger, coordinate by coordinate. Both are unbiased, need ``f`` only as a
black box, and cost two evaluations of ``f`` per sample (one antithetic pair). The gradient with
respect to the stored logits is written in closed form; when the distribution stores ``probs``
it is converted by :math:`\partial/\partial p = (\partial/\partial\alpha) / (p(1-p))`, and the
chain rule to ``params`` is applied afterwards (``_core.chain_to_params``).

:func:`rloo` is REINFORCE with the leave-one-out baseline, the usual multi-sample baseline these
estimators are compared with.

References:
    Yin & Zhou (ICLR 2019), "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
    Networks"; Dong, Mnih, Tucker (NeurIPS 2020), "DisARM: An Antithetic Gradient Estimator for
    Binary Latent Variables"; Kool, van Hoof, Welling (ICLR 2019 workshop), "Buy 4 REINFORCE
    Samples, Get a Baseline for Free!".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch.distributions import Bernoulli, Distribution

from stochgrad import _core, _dists
from stochgrad.estimators.score import check_batch_dims, problem_shape, score_function
from stochgrad.gradient_estimate import GradientEstimate, Params


def _bernoulli_of(d: Distribution, method: str) -> Bernoulli:
    base = _dists.unwrap(d)
    if type(base) is not Bernoulli:
        raise ValueError(
            f"dist_fn: {method} supports only Bernoulli distributions (scalar, batch-shaped or "
            f"wrapped in Independent), got {type(base).__name__}; use sg.score_function for "
            "other distributions"
        )
    return base


def _antithetic(
    method: str,
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    num_samples: int,
    generator: torch.Generator | None,
    seed: int | None,
    batch_dims: int = 0,
) -> GradientEstimate:
    """The shared steps of ARM and DisARM; ``method`` picks the per-coordinate weight.

    With ``batch_dims = k > 0`` ``f`` returns ``[2n, *B]`` and each problem's coordinates are
    weighted by that problem's own antithetic difference.
    """
    _core.check_f(f)
    tensors, is_tuple = _core.as_params(params)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, tensors[0].device)
    check_batch_dims(batch_dims)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    base = _bernoulli_of(d, method)
    problem = problem_shape(batch_dims, d)
    size = sum(t.numel() for t in tensors)
    _core.check_memory(
        method,
        n,
        {"antithetic pairs": 5 * _core.sample_size(d) + 2, "per-sample terms": size},
        tensors[0],
    )
    logits_stored = _dists._stored(base, "logits")
    p = base.probs.detach()
    if not logits_stored and not bool(((p > 0) & (p < 1)).all()):
        raise ValueError(
            f"params: {method} needs Bernoulli probs strictly inside (0, 1) (the gradient with "
            f"respect to probs is d/dlogit / (p (1 - p))), got {p}"
        )

    u = _core.rand((n, *base.batch_shape), g, dtype=p.dtype, device=p.device)
    b = (u < p).to(p.dtype)  # b = 1[u < sigma(a)]
    b_anti = (1.0 - u < p).to(p.dtype)  # b~ = 1[1 - u < sigma(a)] = 1[u > sigma(-a)]
    fx = _core.evaluate_f(f, torch.cat([b, b_anti]), 2 * n, shape=(2 * n, *problem))
    diff = (fx[:n] - fx[n:]).to(p.dtype)  # f(b) - f(b~), [n, *B]
    diff = diff.reshape(n, *problem, *([1] * (len(base.batch_shape) - len(problem))))
    if method == "arm":
        per_logit = -diff * (u - 0.5)
    else:  # (-1)^{b~} 1[b != b~] = b - b~
        per_logit = 0.5 * diff * (b - b_anti) * torch.maximum(p, 1.0 - p)

    if logits_stored:
        phi, per_phi = base.logits, per_logit
    else:
        phi, per_phi = base.probs, per_logit / (p * (1.0 - p))
    parts = _core.chain_to_params([phi], [per_phi], leaves, n)
    info: dict = {"antithetic_pairs": n}
    if problem:
        info["batch_dims"] = len(problem)
    return GradientEstimate.from_per_sample(
        _core.pack(parts, is_tuple),
        method=method,
        evaluations=2 * n,
        info=info,
    )


def arm(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""ARM estimate of :math:`\nabla_\theta \mathbb{E}_{b \sim \mathrm{Bernoulli}}[f(b)]`.

    .. math::

        \nabla_\alpha \mathbb E[f(b)]
          = \mathbb E_{u}\big[\big(f(\mathbb 1[u > \sigma(-\alpha)])
            - f(\mathbb 1[u < \sigma(\alpha)])\big)\big(u - \tfrac12\big)\big]

    Args:
        f: batch of binary samples ``[m, ...]`` -> values ``[m]`` (``[m, *B]`` with
            ``batch_dims``); a black box is fine. It is called once, on the ``2 * num_samples``
            antithetic samples stacked.
        dist_fn: ``dist_fn(*params)`` -> a ``Bernoulli`` (logits or probs; a batch shape is a
            product of independent coordinates) or an ``Independent`` of one.
        params: a tensor or a tuple of tensors.
        num_samples: number of antithetic pairs ``n`` (``2 n`` evaluations of ``f``). With
            ``1``, ``variance`` and ``stderr`` are NaN (undefined) and a
            :class:`~stochgrad.SingleSampleWarning` is issued.
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``). With ``k > 0`` ``f`` returns ``[2n, *B]``, the
            value of problem ``b`` depending only on its own slice ``x[:, b]``; each problem's
            coordinates are then weighted by its own difference
            :math:`f_b(b) - f_b(\tilde b)`, an unbiased estimate of the gradient of
            :math:`\sum_b \mathbb E[f_b]`.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="arm"``, per-sample terms
        ``[n, *param.shape]`` (one per pair) and ``evaluations = 2 n``.

    Raises:
        ValueError: for a distribution other than Bernoulli, ``num_samples < 1``, ``f``
            returning the wrong shape or non-finite values or changing its input in place,
            probs outside ``(0, 1)``, more memory needed than the memory available (or
            ``STOCHGRAD_MEMORY_LIMIT``). ``TypeError``: ``f`` not callable.

    >>> import torch, stochgrad as sg
    >>> from stochgrad.estimators.discrete import arm
    >>> dist_fn = lambda lg: torch.distributions.Bernoulli(logits=lg)
    >>> est = arm(lambda b: (b - 0.45) ** 2, dist_fn, torch.tensor(0.0), num_samples=4, seed=0)
    >>> est.per_sample.shape, est.evaluations
    (torch.Size([4]), 8)

    Reference: Yin & Zhou (ICLR 2019), "ARM: Augment-REINFORCE-Merge Gradient for Stochastic
    Binary Networks", Theorem 1.
    """
    return _antithetic("arm", f, dist_fn, params, num_samples, generator, seed, batch_dims)


def disarm(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""DisARM estimate of :math:`\nabla_\theta \mathbb{E}_{b \sim \mathrm{Bernoulli}}[f(b)]`.

    .. math::

        g_k = \tfrac12\big(f(b) - f(\tilde b)\big)\,(-1)^{\tilde b_k}\,
              \mathbb 1[b_k \ne \tilde b_k]\,\sigma(|\alpha_k|),
        \quad b = \mathbb 1[u < \sigma(\alpha)],\ \tilde b = \mathbb 1[1 - u < \sigma(\alpha)]

    ARM with :math:`u` integrated out given the pair, so its variance is at most ARM's; with the
    same ``seed`` both use the same uniforms. At :math:`\sigma(\alpha_k) = 1/2` the pair always
    differs in coordinate ``k``; for one Bernoulli every term is then
    :math:`\tfrac14 (f(1) - f(0))`, the exact gradient, and the standard error of 0 is the truth,
    not a failure. With several coordinates that interact in ``f`` the difference
    :math:`f(b) - f(\tilde b)` still varies with the other coordinates, and so do the terms.

    Args:
        f: batch of binary samples ``[m, ...]`` -> values ``[m]`` (``[m, *B]`` with
            ``batch_dims``); a black box is fine. It is called once, on the ``2 * num_samples``
            antithetic samples stacked.
        dist_fn: ``dist_fn(*params)`` -> a ``Bernoulli`` (logits or probs; a batch shape is a
            product of independent coordinates) or an ``Independent`` of one.
        params: a tensor or a tuple of tensors.
        num_samples: number of antithetic pairs ``n`` (``2 n`` evaluations of ``f``). With
            ``1``, ``variance`` and ``stderr`` are NaN (undefined) and a
            :class:`~stochgrad.SingleSampleWarning` is issued.
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``). With ``k > 0`` ``f`` returns ``[2n, *B]``, the
            value of problem ``b`` depending only on its own slice ``x[:, b]``; each problem's
            coordinates are then weighted by its own difference
            :math:`f_b(b) - f_b(\tilde b)`, an unbiased estimate of the gradient of
            :math:`\sum_b \mathbb E[f_b]`.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="disarm"``, per-sample terms
        ``[n, *param.shape]`` (one per pair) and ``evaluations = 2 n``.

    Raises:
        ValueError: for a distribution other than Bernoulli, ``num_samples < 1``, ``f``
            returning the wrong shape or non-finite values or changing its input in place,
            probs outside ``(0, 1)``, more memory needed than the memory available (or
            ``STOCHGRAD_MEMORY_LIMIT``). ``TypeError``: ``f`` not callable.

    >>> import torch, stochgrad as sg
    >>> from stochgrad.estimators.discrete import disarm
    >>> dist_fn = lambda lg: torch.distributions.Bernoulli(logits=lg)
    >>> est = disarm(lambda b: (b - 0.499) ** 2, dist_fn, torch.tensor(0.0), num_samples=3, seed=0)
    >>> est.per_sample  # theta = 1/2: every term is the exact gradient 0.25 * 0.002
    tensor([0.0005, 0.0005, 0.0005])

    Reference: Dong, Mnih, Tucker (NeurIPS 2020), "DisARM: An Antithetic Gradient Estimator for
    Binary Latent Variables", Eq. 5.
    """
    return _antithetic("disarm", f, dist_fn, params, num_samples, generator, seed, batch_dims)


def rloo(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    parallel=None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""REINFORCE with the leave-one-out baseline (RLOO): ``score_function(..., baseline="loo")``.

    .. math::

        \hat g = \frac1n \sum_{i=1}^n \Big(f(x_i) - \frac1{n-1}\sum_{j \ne i} f(x_j)\Big)
                 \nabla_\theta \log p(x_i;\theta)

    Unbiased for any distribution with ``log_prob``; needs ``num_samples >= 2``. This is only a
    named entry point: the work is :func:`stochgrad.score_function`'s, and the result is the
    same except ``method="rloo"``.

    Args:
        f: batch of samples ``[n, ...]`` -> values ``[n]`` (``[n, *B]`` with ``batch_dims``);
            may be a black box.
        dist_fn: ``dist_fn(*params)`` -> a ``torch.distributions.Distribution``.
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n >= 2``.
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        parallel (str | ParallelMap | None): passed to :func:`stochgrad.score_function`.
        batch_dims: leading batch dimensions of the distribution that index independent
            problems; ``f`` then returns ``[n, *B]`` and the leave-one-out mean is taken per
            problem (see :func:`stochgrad.score_function`).

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="rloo"``.

    >>> import torch
    >>> from stochgrad.estimators.discrete import rloo
    >>> dist_fn = lambda lg: torch.distributions.Bernoulli(logits=lg)
    >>> est = rloo(lambda b: (b - 0.499) ** 2, dist_fn, torch.tensor(0.0), num_samples=8, seed=0)
    >>> est.method, est.info["baseline"]
    ('rloo', 'loo')

    Reference: Kool, van Hoof, Welling (ICLR 2019 DeepRLStructPred workshop), "Buy 4 REINFORCE
    Samples, Get a Baseline for Free!".
    """
    est = score_function(
        f,
        dist_fn,
        params,
        num_samples=num_samples,
        baseline="loo",
        generator=generator,
        seed=seed,
        parallel=parallel,
        batch_dims=batch_dims,
    )
    return dataclasses.replace(est, method="rloo")
