r"""The pathwise (reparameterisation) estimator.

Write :math:`x = g(\epsilon; \theta)` with noise :math:`\epsilon \sim p(\epsilon)` free of
:math:`\theta`; then

.. math::

    \nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)]
      = \mathbb{E}_{p(\epsilon)}\big[\nabla_x f(x)\big|_{x = g(\epsilon;\theta)}\,
        \nabla_\theta g(\epsilon; \theta)\big].

It needs a differentiable :math:`f` and a distribution with ``has_rsample``. A piecewise-constant
:math:`f` (a step, a rounding) has zero derivative almost everywhere and would give a silently
wrong zero gradient: it is refused.

References:
    Kingma & Welling (2014), "Auto-encoding variational Bayes"; Rezende, Mohamed, Wierstra
    (2014); Mohamed et al. (2020, JMLR), Sec. 5.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from stochgrad import _core, _dists
from stochgrad.gradient_estimate import GradientEstimate, Params

_SAMPLE_CHUNK = 512


def _not_differentiable(reason: str) -> ValueError:
    return ValueError(
        f"pathwise: {reason}; the pathwise estimator needs f differentiable in x. "
        "Use sg.score_function (any f, even a black box) or sg.measure_valued instead."
    )


def _eval_differentiable(f: Callable, x: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``f(x)`` and ``df/dx`` per sample (f maps samples independently)."""
    if getattr(f, "black_box", False):
        raise _not_differentiable("f is a black box (numpy)")
    try:
        fx = _core.evaluate_f(f, x, n, keep_graph=True)
    except RuntimeError as exc:  # e.g. f calls .numpy() on a tensor that requires grad
        if "in-place" in str(exc) or "inplace" in str(exc):  # x is a leaf: autograd refused
            raise _core.inplace_error(str(exc)) from exc
        raise _not_differentiable(f"f could not be differentiated ({exc})") from exc
    if not fx.requires_grad:
        raise _not_differentiable("f's output does not depend differentiably on x")
    (gx,) = torch.autograd.grad(fx.sum(), x, allow_unused=True)
    fx = fx.detach()
    if gx is None or (not bool(gx.any()) and bool((fx != fx[0]).any())):
        raise _not_differentiable(
            "f appears piecewise constant in x (zero derivative at every sample while its values "
            "vary), so the pathwise gradient would be a biased zero"
        )
    return fx, gx


def _device(tensors) -> torch.device:
    return next((t.device for t in tensors if isinstance(t, Tensor)), torch.device("cpu"))


def _rsample(dist_fn, args, seeds: list[int], n: int) -> Tensor:
    """``n`` reparameterised samples drawn in chunks, chunk ``j`` under seed ``seeds[j]``.

    Seeding each chunk makes every redraw (the forward-mode passes, the reverse-mode fallback)
    reproduce exactly the samples ``f`` was evaluated at.
    """
    d = dist_fn(*args)
    chunks = []
    for j, seed in enumerate(seeds):
        size = min(_SAMPLE_CHUNK, n - j * _SAMPLE_CHUNK)
        with torch.random.fork_rng(devices=[]):
            _core.seed_global(seed, _device(args))
            chunks.append(d.rsample((size,)))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, 0)


def _forward_mode(
    dist_fn, leaves, seeds: list[int], n: int, gx: Tensor, batch: tuple[Tensor, int] | None = None
) -> list[Tensor]:
    """Per-sample gradients by one forward-mode pass of ``rsample`` per scalar parameter.

    With ``batch = (index, B)`` each column is summed within the batches: ``[B, *leaf]``.
    """
    import torch.autograd.forward_ad as fwad

    base = [leaf.detach() for leaf in leaves]
    outs = []
    for i, leaf in enumerate(base):
        cols = []
        for k in range(leaf.numel()):
            tangent = torch.zeros(leaf.numel(), dtype=leaf.dtype, device=leaf.device)
            tangent[k] = 1.0
            with fwad.dual_level():
                args = list(base)
                args[i] = fwad.make_dual(leaf, tangent.reshape(leaf.shape))
                t = fwad.unpack_dual(_rsample(dist_fn, args, seeds, n)).tangent
            col = torch.zeros(n, dtype=gx.dtype) if t is None else _core.sum_event(gx * t, n)
            cols.append(col if batch is None else _core.batch_sums(col, *batch))
        rows = n if batch is None else batch[1]
        outs.append(torch.stack(cols, 1).reshape(rows, *leaf.shape))
    return outs


def _reverse_chunks(
    dist_fn, leaves, seeds: list[int], n: int, gx: Tensor, batch: tuple[Tensor, int] | None = None
) -> list[Tensor]:
    """Per-sample VJPs, chunk by chunk, with block-diagonal cotangents: ``O(n * chunk)`` work.

    The fallback for distributions whose ``rsample`` has no forward-mode derivative (Gamma,
    Beta and Dirichlet use implicit reparameterisation gradients defined for reverse mode only).
    With ``batch = (index, B)`` the cotangent rows are batches instead of samples, summed into
    ``[B, *leaf]``.
    """
    if batch is not None:
        return _reverse_batches(dist_fn, leaves, seeds, n, gx, *batch)
    outs: list[list[Tensor]] = [[] for _ in leaves]
    d = dist_fn(*leaves)
    for j, seed in enumerate(seeds):
        start = j * _SAMPLE_CHUNK
        c = min(_SAMPLE_CHUNK, n - start)
        with torch.random.fork_rng(devices=[]):
            _core.seed_global(seed, _device(leaves))
            x_chunk = d.rsample((c,))
        cot = torch.zeros(c, *x_chunk.shape, dtype=gx.dtype, device=gx.device)
        idx = torch.arange(c)
        cot[idx, idx] = gx[start : start + c]
        g = torch.autograd.grad(
            x_chunk, leaves, cot, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        for k, (gk, leaf) in enumerate(zip(g, leaves, strict=True)):
            outs[k].append(gk if gk is not None else torch.zeros(c, *leaf.shape, dtype=gx.dtype))
    return [torch.cat(o, 0) for o in outs]


def _reverse_batches(
    dist_fn, leaves, seeds: list[int], n: int, gx: Tensor, index: Tensor, batches: int
) -> list[Tensor]:
    """:func:`_reverse_chunks` summed within batches: one cotangent row per batch of a chunk."""
    sums = [torch.zeros(batches, *leaf.shape, dtype=gx.dtype, device=gx.device) for leaf in leaves]
    d = dist_fn(*leaves)
    for j, seed in enumerate(seeds):
        start = j * _SAMPLE_CHUNK
        c = min(_SAMPLE_CHUNK, n - start)
        with torch.random.fork_rng(devices=[]):
            _core.seed_global(seed, _device(leaves))
            x_chunk = d.rsample((c,))
        owner = index[start : start + c]
        first = int(owner[0])
        rows = int(owner[-1]) - first + 1  # the batches this chunk touches
        cot = torch.zeros(rows, *x_chunk.shape, dtype=gx.dtype, device=gx.device)
        cot[owner - first, torch.arange(c, device=gx.device)] = gx[start : start + c]
        g = torch.autograd.grad(
            x_chunk, leaves, cot, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        for total, gk in zip(sums, g, strict=True):
            if gk is not None:
                total[first : first + rows] += gk
    return sums


def pathwise(
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
    r"""Pathwise (reparameterisation) estimate of :math:`\nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)]`.

    Args:
        f: differentiable torch function, batch ``[n, ...]`` -> ``[n]``, each row depending only
            on its own sample.
        dist_fn: ``dist_fn(*params)`` -> a distribution with ``has_rsample``.
        params: a tensor or a tuple of tensors.
        num_samples: number of samples. With ``1``, ``variance`` and ``stderr`` are NaN
            (undefined) and a :class:`~stochgrad.SingleSampleWarning` is issued. A call whose
            memory (samples, their gradients, per-sample terms), estimated before drawing,
            exceeds the memory available (or ``STOCHGRAD_MEMORY_LIMIT``) is refused.
        baseline: must be ``None`` (a baseline has no meaning for the pathwise estimator).
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        batches: ``None`` (default) keeps one term per sample in ``per_sample``: memory ``n``
            times the parameters' size. An int ``B`` in ``[2, n]`` keeps ``B`` batch means of
            consecutive samples instead (the terms are summed within each batch before the
            chain rule to ``params``): memory ``O(B x params)``, ``grad`` the same to rounding,
            ``variance`` and ``stderr`` from the batch means (``B - 1`` degrees of freedom),
            ``info["batch_means"] = B`` (see :meth:`GradientEstimate.from_batch_sums`).

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="pathwise"``; ``samples``
        holds the samples :math:`x_i = g(\epsilon_i;\theta)` ``f`` was evaluated at (detached).

    Raises:
        ValueError: when the distribution has no ``rsample`` or ``f`` is not differentiable
            (black box, piecewise constant); the message names ``score_function``. A bad
            ``num_samples`` or ``batches`` (``TypeError`` for a non-int), more memory needed
            than the limit, ``f`` changing its input in place. ``TypeError``: ``f`` not
            callable.

    >>> import torch, stochgrad as sg
    >>> est = sg.pathwise(lambda x: (x - 2.0) ** 2,
    ...                   lambda th: torch.distributions.Normal(th[0], th[1]),
    ...                   torch.tensor([0.5, 1.0]), num_samples=10_000, seed=0)
    >>> est.method
    'pathwise'
    >>> sg.pathwise(lambda x: (x - 2.0) ** 2,
    ...             lambda th: torch.distributions.Normal(th[0], th[1]),
    ...             torch.tensor([0.5, 1.0]), num_samples=10_000, seed=0,
    ...             batches=16).per_sample.shape
    torch.Size([16, 2])
    """
    if baseline is not None:
        raise ValueError("baseline: the pathwise estimator takes no baseline; pass baseline=None")
    _core.check_f(f)
    tensors, is_tuple = _core.as_params(params)
    n = _core.check_num_samples(num_samples)
    batches = _core.check_batches(batches, n)
    g = _core.make_generator(generator, seed, tensors[0].device)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    if not d.has_rsample:
        raise ValueError(
            f"pathwise: {type(d).__name__} has no rsample (it is not reparameterisable); "
            "use sg.score_function or sg.measure_valued instead"
        )
    size = sum(t.numel() for t in tensors)
    _core.check_memory(
        "pathwise",
        n,
        {"samples": 3 * _core.sample_size(d) + 1, "per-sample terms": 0 if batches else size},
        tensors[0],
        batches=True,
    )
    batch = None if batches is None else (_core.batch_index(n, batches, tensors[0].device), batches)
    eps = _dists.normal_noise(d, n, g)
    if eps is not None:
        base = _dists.unwrap(d)
        x = (base.loc.detach() + base.scale.detach() * eps).requires_grad_(True)
        fx, gx = _eval_differentiable(f, x, n)
        if batch is None:
            parts = _core.chain_to_params([base.loc, base.scale], [gx, gx * eps], leaves, n)
        else:  # summed within batches before the chain rule: O(B x params)
            parts = _core.chain_to_params(
                [base.loc, base.scale],
                [_core.batch_sums(gx, *batch), _core.batch_sums(gx * eps, *batch)],
                leaves,
                batches,
                max_jacobian_rows=min(batches, _core._MAX_JACOBIAN_ROWS),
            )
    else:
        source = g if g is not None else torch.default_generator
        chunks = -(-n // _SAMPLE_CHUNK)
        seeds = torch.randint(0, 2**62, (chunks,), generator=source, device=source.device)
        seeds = seeds.tolist()
        with torch.no_grad():
            x = _rsample(dist_fn, leaves, seeds, n)
        x = x.detach().requires_grad_(True)
        fx, gx = _eval_differentiable(f, x, n)
        try:
            parts = _forward_mode(dist_fn, leaves, seeds, n, gx, batch)
        except (NotImplementedError, RuntimeError):
            parts = _reverse_chunks(dist_fn, leaves, seeds, n, gx, batch)
    samples = x.detach()
    if batch is not None:
        sizes = torch.bincount(batch[0], minlength=batches)
        return GradientEstimate.from_batch_sums(
            _core.pack(parts, is_tuple), sizes, method="pathwise", info={}, samples=samples
        )
    return GradientEstimate.from_per_sample(
        _core.pack(parts, is_tuple), method="pathwise", evaluations=n, info={}, samples=samples
    )
