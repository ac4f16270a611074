r"""Gradient estimation from samples the caller drew: a surrogate loss and its diagnostics.

Trajectories, token sequences, logged bandit data and posterior draws are sampled by the
application, not by a ``dist_fn``. Given, per sample, its log-probability under the model
(differentiable in the parameters), its value, optionally an importance weight and a group,
:func:`surrogate_loss` returns a loss whose gradient is the score-function estimate

.. math::

    \hat g = \frac1n \sum_{i=1}^n c_i\, \nabla_\theta \log p_\theta(x_i), \qquad
    c_i = w_i A_i \quad\text{or, self-normalised,}\quad c_i = \frac{n\, w_i}{\sum_j w_j} A_i,

with the advantage :math:`A_i` of a rule of :mod:`stochgrad.baselines` (``"loo"``, ``"grpo"``,
...) computed within each group, and importance weights :math:`w_i = \pi(x_i)/\mu(x_i)` for
samples drawn from another distribution :math:`\mu` (off-policy). The loss is
:math:`\frac1n\sum_i c_i \log p_\theta(x_i)` with :math:`c` held fixed, so ``loss.backward()``
puts :math:`\hat g` in the parameters' ``.grad`` (``maximize=True`` puts :math:`-\hat g`, for an
optimiser that should *increase* the expected value). :meth:`Surrogate.estimate` gives the same
estimate as a :class:`~stochgrad.gradient_estimate.GradientEstimate` (standard errors, variance,
signal-to-noise ratio) for the parameters named; it needs per-sample gradients, ``n`` times the
number of parameters in memory (64 samples x 1M float32 weights: 256 MB kept, a peak of about
530 MB), so it is computed only when asked; ``estimate(params, batches=B)`` keeps ``B`` batch
means instead (``B = 8``: 32 MB kept, a peak of about 84 MB; ``docs/training.md``).

With samples drawn from ``dist_fn(params)`` and the same advantage rule, the estimate's ``grad``
and ``per_sample`` equal :func:`stochgrad.score_function`'s exactly (``tests/test_surrogate.py``).
The standard errors of ``"loo"`` and ``"optimal"`` differ slightly at small ``n``:
``score_function`` adds the second-order variance of estimating the baseline from the same batch,
the surrogate reports the spread of the terms alone (at ``n = 10``: 1.157 against 1.202 for
``"loo"``; negligible at ``n = 500``).

>>> import torch
>>> logits = torch.zeros(3, requires_grad=True)
>>> d = torch.distributions.Categorical(logits=logits)
>>> x = d.sample((8,), )
>>> s = surrogate_loss(d.log_prob(x), (x == 2).double(), advantage="loo")
>>> s.loss.backward()
>>> logits.grad.shape
torch.Size([3])

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning". Schulman, Heess, Weber, Abbeel (2015), "Gradient estimation using
    stochastic computation graphs" (surrogate losses). Precup, Sutton, Singh (2000), "Eligibility
    traces for off-policy policy evaluation" (importance weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_bool, check_device, check_int, check_tensor
from stochgrad._core import _all_finite
from stochgrad.baselines import Baseline, Groups, OptimalBaseline, _values, resolve_baseline
from stochgrad.gradient_estimate import GradientEstimate

__all__ = ["Surrogate", "per_sample_gradients", "surrogate_loss"]

#: Rows of gradients taken in one batched backward pass.
CHUNK = 256
#: Up to this many samples, :meth:`Surrogate.estimate` keeps per-sample terms; above, batch means.
PER_SAMPLE_LIMIT = 1024
#: Batch means of :meth:`Surrogate.estimate` above :data:`PER_SAMPLE_LIMIT` samples.
BATCHES = 64


def _as_params(params: Tensor | Sequence[Tensor]) -> tuple[list[Tensor], bool]:
    """``params`` (a tensor, a sequence of tensors or an ``nn.Module``) as a list of tensors
    that require grad, on one device; ``TypeError``/``ValueError`` naming ``params``."""
    if isinstance(params, Tensor):
        if not params.requires_grad:
            raise ValueError("params: the tensor must require grad (the log-probabilities' input)")
        check_device("params", params)
        return [params], False
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    elif not isinstance(params, (list, tuple)):
        raise TypeError(
            "params must be a tensor, a sequence of tensors or an nn.Module, got "
            f"{type(params).__name__}"
        )
    params = list(params)
    if not params or not all(isinstance(p, Tensor) for p in params):
        raise TypeError(
            "params must be a tensor, a non-empty sequence of tensors or an nn.Module with "
            "parameters that require grad"
        )
    if not all(p.requires_grad for p in params):
        raise ValueError("params: every tensor must require grad (the log-probabilities' inputs)")
    for i, p in enumerate(params):
        check_device(f"params[{i}]", p, params[0].device, of="params[0]")
    return params, True


def _log_probs(log_probs: Any) -> Tensor:
    """``log_probs`` checked: a floating-point tensor ``[n >= 1, ...]`` on a real device."""
    check_tensor("log_probs", log_probs, finite=False)
    if log_probs.dim() == 0 or log_probs.shape[0] == 0:
        raise ValueError(
            f"log_probs must hold one log-probability per sample, [n >= 1], got shape "
            f"{list(log_probs.shape)}"
        )
    return log_probs


def _check_finite_log_probs(log_probs: Tensor) -> None:
    if not _all_finite(log_probs):
        bad = int((~torch.isfinite(log_probs.detach())).sum())
        raise ValueError(
            f"log_probs must be finite, got {bad} non-finite value(s) out of "
            f"{log_probs.shape[0]} (a sample of probability 0 under the parameters, or a NaN "
            "upstream)"
        )


def _weighted_gradients(log_probs: Tensor, leaves: list[Tensor], rows: Tensor) -> list[Tensor]:
    """``[R, *p.shape]`` per parameter: the gradient of ``rows[r] @ log_probs`` for each row.

    One batched backward pass per chunk of rows (``is_grads_batched``); the graph is kept.
    """
    out: list[list[Tensor]] = [[] for _ in leaves]
    for start in range(0, rows.shape[0], CHUNK):
        part = rows[start : start + CHUNK]
        try:
            grads = torch.autograd.grad(
                log_probs, leaves, part, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        except RuntimeError as exc:
            if "backward through the graph a second time" in str(exc):
                raise ValueError(
                    "the graph of log_probs was freed by loss.backward(): call estimate() before "
                    "backward(), or backward(retain_graph=True)"
                ) from None
            raise
        for j, (g, leaf) in enumerate(zip(grads, leaves, strict=True)):
            out[j].append(
                g
                if g is not None
                else torch.zeros(part.shape[0], *leaf.shape, dtype=leaf.dtype, device=leaf.device)
            )
    return [torch.cat(parts) for parts in out]


def per_sample_gradients(log_probs: Tensor, params: Tensor | Sequence[Tensor]) -> list[Tensor]:
    r"""``[n, *p.shape]`` per parameter: :math:`\nabla_\theta \log p_\theta(x_i)` for each sample.

    Batched backward passes over chunks of :data:`CHUNK` samples; the graph of ``log_probs`` is
    kept for a later ``backward``. Cost: ``n`` backward passes of the whole batch (quadratic in
    ``n``); memory ``n`` times the parameters' size.
    """
    leaves, _ = _as_params(params)
    _log_probs(log_probs)
    if log_probs.dim() != 1:
        raise ValueError(
            f"log_probs must be a tensor [n >= 1], one log-probability per sample, got shape "
            f"{list(log_probs.shape)}"
        )
    _check_finite_log_probs(log_probs)
    if not log_probs.requires_grad:
        raise ValueError(
            "log_probs must depend on params (computed from them, with autograd on), got a "
            "tensor without a gradient graph"
        )
    n = log_probs.shape[0]
    out: list[list[Tensor]] = [[] for _ in leaves]
    for start in range(0, n, CHUNK):
        c = min(CHUNK, n - start)
        rows = torch.zeros(c, n, dtype=log_probs.dtype, device=log_probs.device)
        rows[torch.arange(c), torch.arange(start, start + c)] = 1.0
        for j, g in enumerate(_weighted_gradients(log_probs, leaves, rows)):
            out[j].append(g)
    return [torch.cat(parts) for parts in out]


@dataclass
class Surrogate:
    """What :func:`surrogate_loss` returns.

    Attributes:
        loss: scalar whose gradient is the estimate (its negative with ``maximize=True``).
        coefficients: ``[n]`` the detached weights :math:`c_i` of :math:`\\log p_\\theta(x_i)`.
        advantages: ``[n]`` the advantages :math:`A_i` (before importance weighting).
        weights: ``[n]`` the importance weights used (normalised to mean 1 when
            self-normalised), or ``None``.
        rule: the advantage rule.
        self_normalized: whether the weights were self-normalised (a ratio estimator: the
            estimate is then flagged ``biased``, whatever the rule).
    """

    loss: Tensor
    coefficients: Tensor
    advantages: Tensor
    weights: Tensor | None
    rule: Baseline
    log_probs: Tensor = field(repr=False)
    maximize: bool = False
    self_normalized: bool = False
    correction: list[Tensor] | None = field(default=None, repr=False)
    groups_index: Tensor | None = field(default=None, repr=False)
    _params: Any = field(default=None, repr=False)

    @property
    def _biased(self) -> bool:
        return not self.rule.unbiased or self.self_normalized

    def estimate(
        self, params: Tensor | Sequence[Tensor] | None = None, *, batches: int | None = None
    ) -> GradientEstimate:
        r"""The estimate with its diagnostics, for ``params`` (a tensor, tensors or a module).

        With ``n`` up to :data:`PER_SAMPLE_LIMIT` samples (or ``batches=n``), the per-sample
        terms :math:`c_i \nabla_\theta \log p_\theta(x_i)`: ``n`` backward passes and ``n``
        times the parameters' size in memory. Above, the variance comes from ``batches``
        (default :data:`BATCHES`) batch means of whole groups: as many backward passes, as many
        rows in memory, the standard error with ``batches - 1`` degrees of freedom; ``grad``
        is the same either way (the loss's gradient). Call it before ``loss.backward()`` frees
        the graph (or ``backward(retain_graph=True)``). The estimate is of
        :math:`\nabla\,\mathbb{E}[f]` whatever ``maximize``.
        """
        params = self._params if params is None else params
        if params is None:
            raise ValueError("params: name the parameters whose gradient to diagnose")
        leaves, is_tuple = _as_params(params)
        n = self.coefficients.shape[0]
        if batches is None:  # one sample: its one term, variance NaN (from_per_sample warns)
            batches = n if n <= PER_SAMPLE_LIMIT else BATCHES
        else:
            batches = check_int("batches", batches, minimum=2, maximum=n)
        info = {
            "advantage": self.rule.name,
            "importance_weighted": self.weights is not None,
        }
        pack = tuple if is_tuple else (lambda xs: xs[0])
        if batches == n:
            grads = per_sample_gradients(self.log_probs, leaves)
            per = []
            for j, g in enumerate(grads):
                c = self.coefficients.to(g.dtype).reshape(n, *([1] * (g.dim() - 1)))
                term = c * g
                if self.correction is not None:
                    term = term - self.correction[j]
                per.append(term)
            return GradientEstimate.from_per_sample(
                pack(per), method="surrogate", biased=self._biased, info=info
            )
        # batch means: batch b holds whole groups; row b of `rows` sums c_i log p_i over it
        index = self.groups_index if self.groups_index is not None else torch.arange(n)
        count = int(index.max()) + 1
        if count < batches:
            raise ValueError(f"batches={batches} exceeds the {count} groups")
        batch = (index.to(self.coefficients.device) * batches) // count
        sizes = torch.bincount(batch, minlength=batches)
        rows = torch.zeros(batches, n, dtype=self.log_probs.dtype, device=self.log_probs.device)
        rows[batch, torch.arange(n)] = self.coefficients.to(rows.dtype)
        sums = _weighted_gradients(self.log_probs, leaves, rows)  # [B, *p]: sum over the batch
        if self.correction is not None:
            sums = [
                total - torch.zeros_like(total).index_add_(0, batch, corr)
                for total, corr in zip(sums, self.correction, strict=True)
            ]
        return GradientEstimate.from_batch_sums(
            pack(sums), sizes, method="surrogate", biased=self._biased, evaluations=n, info=info
        )


def surrogate_loss(
    log_probs: Tensor,
    values: Tensor,
    *,
    advantage: str | float | Baseline | None = None,
    groups: Tensor | None = None,
    weights: Tensor | None = None,
    self_normalize: bool = False,
    context: Tensor | None = None,
    params: Tensor | Sequence[Tensor] | None = None,
    maximize: bool = False,
) -> Surrogate:
    r"""A surrogate loss for samples the caller drew; its gradient is the score-function estimate.

    Args:
        log_probs: ``[n]`` (or ``[n, ...]``, summed over the trailing dimensions)
            :math:`\log p_\theta(x_i)`, differentiable in the parameters (a sequence's log-prob
            is the sum over its tokens; a trajectory's, over its actions).
        values: ``[n]`` the values :math:`f(x_i)` (rewards, costs; detached).
        advantage: the advantage rule of :mod:`stochgrad.baselines`: ``None``, a number,
            ``"mean"``, ``"loo"``, ``"grpo"``, ``"grpo_unscaled"``, ``"optimal"`` (needs
            ``params`` and the per-sample scores: ``n`` backward passes, for small batches),
            or a :class:`~stochgrad.baselines.Baseline` object (an
            :class:`~stochgrad.baselines.EMABaseline` or
            :class:`~stochgrad.baselines.LearnedBaseline` reused across calls).
        groups: ``[n]`` integer labels of the samples that share a prompt, a state or a
            datapoint; the advantage is computed within each group.
        weights: ``[n]`` importance weights :math:`\pi_\theta(x_i)/\mu(x_i)` of samples drawn
            from :math:`\mu` (detached; positive and finite).
        self_normalize: divide by :math:`\sum_i w_i / n` instead of :math:`1` (weighted
            importance sampling: biased, lower variance).
        context: ``[n, C]`` inputs of a :class:`~stochgrad.baselines.LearnedBaseline`.
        params: the parameters (a tensor, tensors or an ``nn.Module``): needed by
            ``"optimal"``, and the default of :meth:`Surrogate.estimate`.
        maximize: make ``loss.backward()`` give :math:`-\hat g`, so that an optimiser's step
            increases the expected value (rewards).

    Returns:
        :class:`Surrogate` with ``loss``, the coefficients and :meth:`Surrogate.estimate`.

    Raises:
        TypeError: an argument of the wrong type (a bool or complex tensor, a non-bool flag,
            an unknown kind of ``advantage`` or ``params``).
        ValueError: mismatched shapes, non-finite values or weights, negative weights, a group
            too small for the rule, a tensor on another device than ``log_probs`` (or on the
            ``meta`` device), ``params`` that do not require grad.
    """
    _log_probs(log_probs)
    n = log_probs.shape[0]
    if log_probs.dim() > 1:
        log_probs = log_probs.reshape(n, -1).sum(1)
    _check_finite_log_probs(log_probs)
    if not isinstance(values, Tensor):
        try:
            values = torch.as_tensor(values, dtype=log_probs.dtype, device=log_probs.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"values must be a tensor of [n] = [{n}] numbers, got {type(values).__name__}"
            ) from exc
    if values.dtype == torch.bool:
        values = values.to(log_probs.dtype)
    check_tensor(
        "values", values, kind="real", device=log_probs.device, of="log_probs", finite=False
    )
    if values.shape != (n,):
        raise ValueError(f"values must be [n] = [{n}], one per sample, got {tuple(values.shape)}")
    maximize = check_bool("maximize", maximize)
    self_normalize = check_bool("self_normalize", self_normalize)
    rule = resolve_baseline(advantage, "advantage")
    if params is not None:
        _as_params(params)  # refused now, not at estimate()
    values = values.detach().to(log_probs.dtype)
    correction = None
    if isinstance(rule, OptimalBaseline):
        if params is None:
            raise ValueError("advantage 'optimal' needs params= (the per-sample scores)")
        if groups is not None:
            raise ValueError("advantage 'optimal' does not work within groups; drop groups=")
        _values(values)  # finite (the other rules check it in advantages())
        adv, correction = _optimal(rule, log_probs, values, params)
    else:
        adv = rule.advantages(values, groups, context=context)
    w = None
    coef = adv
    if weights is not None:
        w = _weights(weights, n, log_probs)
        if self_normalize:
            w = w * (n / w.sum())
        coef = adv * w
    elif self_normalize:
        raise ValueError("self_normalize needs weights=")
    loss = (coef.detach() * log_probs).mean()
    if correction is not None:  # "optimal": the per-coordinate part enters as a linear term
        leaves, _ = _as_params(params)
        loss = loss - sum(
            (c.mean(0) * leaf).sum() for c, leaf in zip(correction, leaves, strict=True)
        )
    if maximize:
        loss = -loss
    return Surrogate(
        loss=loss,
        coefficients=coef.detach(),
        advantages=adv.detach(),
        weights=None if w is None else w.detach(),
        rule=rule,
        log_probs=log_probs,
        maximize=maximize,
        self_normalized=self_normalize,
        correction=correction,
        groups_index=None if groups is None else Groups(groups, n, log_probs.device).index,
        _params=params,
    )


def _weights(weights: Tensor, n: int, like: Tensor) -> Tensor:
    if not isinstance(weights, Tensor):
        try:
            weights = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"weights must be a tensor of [n] = [{n}] importance weights, got "
                f"{type(weights).__name__}"
            ) from exc
    check_tensor("weights", weights, kind="real", device=like.device, of="log_probs", finite=False)
    if weights.shape != (n,):
        raise ValueError(f"weights must be [n] = [{n}], one per sample, got {tuple(weights.shape)}")
    w = weights.detach().to(like.dtype)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and >= 0 (importance weights pi/mu)")
    if not bool((w > 0).any()):
        raise ValueError("weights: every weight is 0; no sample informs the estimate")
    return w


def _optimal(
    rule: OptimalBaseline, log_probs: Tensor, values: Tensor, params
) -> tuple[Tensor, list[Tensor]]:
    """The optimal rule through the surrogate: per-coordinate coefficients need the scores.

    Returns the scalar part (the values themselves) and, per parameter, the per-sample
    correction :math:`c_{k,-i} s_{ik}` subtracted from :math:`f_i s_{ik}`.
    """
    leaves, _ = _as_params(params)
    grads = per_sample_gradients(log_probs, leaves)
    n = values.shape[0]
    scores = torch.cat([g.reshape(n, -1) for g in grads], dim=1).detach()
    c = rule(values, scores, None)  # [n, P], leave-one-out
    corr = (c * scores).split([leaf.numel() for leaf in leaves], dim=1)
    return values, [
        part.reshape(n, *leaf.shape).to(leaf.dtype) for part, leaf in zip(corr, leaves, strict=True)
    ]
