r"""Baselines for the score-function estimator.

A baseline :math:`b` turns the per-sample term :math:`f(x_i) s_i` (with the score
:math:`s_i = \nabla_\theta \log p(x_i; \theta)`) into :math:`(f(x_i) - b_i) s_i`. Because
:math:`\mathbb{E}[s] = 0`, this keeps the estimator unbiased whenever :math:`b_i` does not depend on
:math:`x_i`; it lowers the variance when :math:`b` tracks :math:`f`. Every baseline here is
unbiased except :class:`BatchMeanBaseline`, whose bias is the factor :math:`(n-1)/n` (documented
below).

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning". Kool, van Hoof, Welling (2019), "Buy 4 REINFORCE samples, get a
    baseline for free!" (leave-one-out). Mohamed et al. (2020, JMLR), Sec. 7 (optimal baseline).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Baseline:
    """Base class: ``__call__(fx, scores, params)`` returns ``b`` broadcastable to ``scores``.

    Args (of ``__call__``):
        fx: ``[n]`` objective values.
        scores: ``[n, P]`` per-sample scores, flattened over all parameters.
        params: ``[P]`` the current parameters, flattened (context for learned baselines).
    """

    name = "baseline"
    min_samples = 1
    unbiased = True

    def __call__(self, fx: Tensor, scores: Tensor, params: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_variance_of_mean(self, fx: Tensor, scores: Tensor) -> Tensor | None:
        """Variance of the mean beyond ``variance / n`` (terms made dependent by the baseline)."""
        return None

    def per_problem(self, fx: Tensor) -> Tensor:
        """The baseline of a factorised objective (``batch_dims > 0``), one per problem.

        Args:
            fx: ``[n, M]`` objective values, one column per independent problem.

        Returns:
            ``b`` broadcastable to ``[n, M]``; column ``m`` uses only column ``m`` of ``fx``.
        """
        raise ValueError(
            f"baseline: {type(self).__name__} is not supported with batch_dims > 0 (factorised "
            "objectives); use None, a number, 'mean', 'loo', 'optimal' or an EMABaseline"
        )

    def per_problem_spread(self, fx: Tensor) -> Tensor | None:
        r"""Per-problem analogue of :meth:`extra_variance_of_mean`: ``[M]`` weights or ``None``.

        When not ``None``, the score function adds the sample variance of the per-sample
        gradient of :math:`\sum_m w_m \log p_m(x_m)` over ``n (n - 1)`` to the variance of the
        mean (for LOO, :math:`w_m` is the standard deviation of problem ``m``'s values).
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoBaseline(Baseline):
    """Plain score function, :math:`f(x_i) s_i`."""

    name = "none"

    def __call__(self, fx, scores, params):
        return torch.zeros((), dtype=fx.dtype, device=fx.device)

    def per_problem(self, fx):
        return torch.zeros((), dtype=fx.dtype, device=fx.device)


class ConstantBaseline(Baseline):
    """A fixed number :math:`b`."""

    name = "constant"

    def __init__(self, value: float):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"baseline: a constant baseline must be finite, got {value}")
        self.value = value

    def __call__(self, fx, scores, params):
        return torch.tensor(self.value, dtype=fx.dtype, device=fx.device)

    def per_problem(self, fx):
        return torch.tensor(self.value, dtype=fx.dtype, device=fx.device)

    def __repr__(self) -> str:
        return f"ConstantBaseline({self.value})"


class EMABaseline(Baseline):
    r"""Exponential moving average of past batch means, :math:`b \leftarrow \beta b + (1-\beta)\bar f`.

    Stateful: reuse the same object across calls (e.g. across optimisation steps). The value used
    for a batch is computed before that batch is seen, so the estimator stays unbiased. The first
    call uses :math:`b = 0` (with ``init=None``) and then starts the average at that batch's mean.

    With a factorised objective (``batch_dims > 0``) the same update runs elementwise, one
    average per problem (``value`` becomes a tensor ``[M]``); such an object then serves only
    factorised calls with the same number of problems.

    >>> ema = EMABaseline(decay=0.9)
    >>> ema.value is None
    True
    """

    name = "ema"

    def __init__(self, decay: float = 0.9, init: float | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.value = None if init is None else float(init)

    def __call__(self, fx, scores, params):
        if isinstance(self.value, Tensor):
            raise ValueError(
                "baseline: this EMABaseline holds one average per problem (it was used with "
                "batch_dims > 0); use a separate EMABaseline for unfactorised objectives"
            )
        b = 0.0 if self.value is None else self.value
        mean = float(fx.mean())
        self.value = (
            mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        )
        return torch.tensor(b, dtype=fx.dtype, device=fx.device)

    def per_problem(self, fx):
        mean = fx.detach().mean(0)
        value = self.value
        if isinstance(value, Tensor) and value.shape != mean.shape:
            raise ValueError(
                f"baseline: this EMABaseline holds averages for {value.numel()} problems, got "
                f"{mean.numel()} (batch_dims problem shape); use one EMABaseline per problem shape"
            )
        if value is None:
            b = torch.zeros((), dtype=fx.dtype, device=fx.device)
            self.value = mean.clone()
        else:
            b = torch.as_tensor(value, dtype=fx.dtype, device=fx.device)
            self.value = self.decay * b + (1 - self.decay) * mean
        return b

    def __repr__(self) -> str:
        return f"EMABaseline(decay={self.decay}, value={self.value})"


class BatchMeanBaseline(Baseline):
    r"""The batch mean :math:`\bar f`, including the sample itself.

    Biased: since :math:`f_i - \bar f = \tfrac{n-1}{n}(f_i - \bar f_{-i})`, its expectation is
    :math:`\tfrac{n-1}{n}` times the true gradient. Use ``"loo"`` for the unbiased version.
    """

    name = "mean"
    min_samples = 2
    unbiased = False

    def __call__(self, fx, scores, params):
        return fx.mean()

    def per_problem(self, fx):
        return fx.mean(0, keepdim=True)


class LeaveOneOutBaseline(Baseline):
    r"""Leave-one-out mean :math:`b_i = \frac{1}{n-1}\sum_{j \ne i} f_j` (RLOO); unbiased."""

    name = "loo"
    min_samples = 2

    def __call__(self, fx, scores, params):
        n = fx.shape[0]
        return ((fx.sum() - fx) / (n - 1)).unsqueeze(1)

    def extra_variance_of_mean(self, fx, scores):
        r"""The second-order term of the variance of the mean.

        The LOO estimate equals the sample covariance of :math:`f` and :math:`s`, whose variance is
        :math:`(\mu_{22} - \sigma_{fs}^2)/n + \sigma_f^2\sigma_s^2/(n(n-1))`; the per-sample
        variance covers the first term only, which vanishes when :math:`(f - \mathbb{E}f)\,s` is
        nearly constant (a near-perfect baseline), so the second is added to the stderr.
        """
        n = fx.shape[0]
        return fx.var() * scores.var(0) / (n * (n - 1))

    def per_problem(self, fx):
        return (fx.sum(0, keepdim=True) - fx) / (fx.shape[0] - 1)

    def per_problem_spread(self, fx):
        return fx.std(0)


class OptimalBaseline(Baseline):
    r"""Variance-minimising per-coordinate coefficient :math:`c_k = \mathbb{E}[f s_k^2]/\mathbb{E}[s_k^2]`.

    Estimated leave-one-out, :math:`c_{k,-i} = \sum_{j\ne i} f_j s_{jk}^2 / \sum_{j\ne i} s_{jk}^2`, so
    that the coefficient applied to sample ``i`` is independent of it and the estimator stays
    unbiased. Costs O(n P).
    """

    name = "optimal"
    min_samples = 2

    def __call__(self, fx, scores, params):
        s2 = scores * scores
        fs2 = fx.unsqueeze(1) * s2
        num = fs2.sum(0) - fs2
        den = s2.sum(0) - s2
        # Coordinates whose other scores are all zero carry no information: fall back to LOO mean.
        loo = ((fx.sum() - fx) / (fx.shape[0] - 1)).unsqueeze(1)
        safe = den > 0
        return torch.where(safe, num / torch.where(safe, den, torch.ones_like(den)), loo)

    def extra_variance_of_mean(self, fx, scores):
        r"""The second-order term from estimating :math:`c` (delta method).

        :math:`\operatorname{Var}[\hat c_k] \approx \operatorname{Var}[(f - c_k) s_k^2] /
        (n\,\mathbb{E}[s_k^2]^2)`, multiplied by :math:`\operatorname{Var}[\bar s_k] =
        \mathbb{E}[s_k^2]/n`; it matters when the baseline is nearly perfect and the first-order
        variance vanishes.
        """
        n = fx.shape[0]
        s2 = scores * scores
        mean_s2 = s2.mean(0)
        safe = mean_s2 > 0
        denom = torch.where(safe, mean_s2, torch.ones_like(mean_s2))
        c = (fx.unsqueeze(1) * s2).mean(0) / denom
        spread = ((fx.unsqueeze(1) - c) * s2).var(0)
        return torch.where(safe, spread / (n * n * denom), torch.zeros_like(spread))

    def per_element(self, fx: Tensor, scores: Tensor) -> Tensor:
        r"""The coefficient per problem and per distribution-parameter element (``batch_dims``).

        Args:
            fx: ``[n, *problem_shape, 1, ...]``, each problem's values broadcast against
                ``scores``.
            scores: ``[n, *problem_shape, ...]`` per-sample scores of the elements of the stored
                distribution parameters of each problem.

        Returns:
            ``[n, *scores.shape[1:]]``: :math:`c_{k,-i}` as in the unfactorised formula, with
            problem ``m``'s own values; the leave-one-out mean where no other sample informs it.
        """
        n = fx.shape[0]
        s2 = scores * scores
        fs2 = fx * s2
        num = fs2.sum(0, keepdim=True) - fs2
        den = s2.sum(0, keepdim=True) - s2
        loo = (fx.sum(0, keepdim=True) - fx) / (n - 1)
        safe = den > 0
        return torch.where(safe, num / torch.where(safe, den, torch.ones_like(den)), loo)

    def per_problem(self, fx):
        raise ValueError(
            "baseline: 'optimal' with batch_dims > 0 needs a distribution with a closed-form "
            "score (Normal, Bernoulli, Categorical, ...); use 'loo' for this distribution"
        )


class LearnedBaseline(Baseline):
    r"""A baseline :math:`b_\psi(c)` given by a module of a context :math:`c`, fitted by regression.

    The context defaults to the flattened parameters :math:`\theta` (so the baseline learns how
    :math:`\mathbb{E}[f]` varies along an optimisation path); pass ``context_fn`` to use another
    (e.g. a VAE's observation). Each call first evaluates :math:`b` (unbiased: it does not see the
    current batch), then takes ``steps`` optimiser steps on the squared error to the batch's
    :math:`f` values.

    Args:
        module: maps a context ``[C]`` (or ``[1, C]``) to a scalar; ``None`` builds a small MLP
            on first use.
        lr: learning rate of the Adam optimiser.
        steps: regression steps per call.
        context_fn: ``params_flat -> context`` tensor.
    """

    name = "learned"

    def __init__(
        self,
        module: nn.Module | None = None,
        *,
        lr: float = 1e-2,
        steps: int = 1,
        context_fn=None,
    ):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.module = module
        self.lr = float(lr)
        self.steps = int(steps)
        self.context_fn = context_fn
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_loss: float | None = None

    def _ensure(self, ctx: Tensor) -> None:
        if self.module is None:
            self.module = nn.Sequential(nn.Linear(ctx.numel(), 32), nn.Tanh(), nn.Linear(32, 1))
            self.module.to(dtype=ctx.dtype, device=ctx.device)
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr)

    def __call__(self, fx, scores, params):
        ctx = (self.context_fn(params) if self.context_fn else params).detach().reshape(1, -1)
        self._ensure(ctx)
        with torch.no_grad():
            b = self.module(ctx).reshape(())
        target = fx.detach().reshape(-1, 1)
        for _ in range(self.steps):
            self.optimizer.zero_grad()
            loss = ((self.module(ctx).reshape(1, 1) - target) ** 2).mean()
            loss.backward()
            self.optimizer.step()
            self.last_loss = float(loss.detach())
        return b.to(fx.dtype)


_NAMED = {
    "none": NoBaseline,
    "mean": BatchMeanBaseline,
    "batch_mean": BatchMeanBaseline,
    "loo": LeaveOneOutBaseline,
    "leave_one_out": LeaveOneOutBaseline,
    "optimal": OptimalBaseline,
}

BASELINE_NAMES = tuple(_NAMED)


def resolve_baseline(spec) -> Baseline:
    """``None``, a name, a number or a :class:`Baseline` -> a :class:`Baseline`.

    >>> resolve_baseline("loo").name
    'loo'
    """
    if spec is None:
        return NoBaseline()
    if isinstance(spec, Baseline):
        return spec
    if isinstance(spec, bool):
        raise TypeError("baseline must be None, a name, a number or a Baseline, got a bool")
    if isinstance(spec, (int, float)):
        return ConstantBaseline(spec)
    if isinstance(spec, str):
        key = spec.lower()
        if key == "ema":
            raise ValueError(
                "baseline='ema' keeps state across calls: create it once with "
                "sg.EMABaseline(decay=0.9) and pass the same object to every call"
            )
        if key == "learned":
            raise ValueError(
                "baseline='learned' is fitted across calls: create it once with "
                "sg.LearnedBaseline() and pass the same object to every call"
            )
        if key in _NAMED:
            return _NAMED[key]()
        raise ValueError(
            f"baseline: unknown option {spec!r}; expected one of {sorted(set(_NAMED))}, a number, "
            "or a Baseline object (EMABaseline, LearnedBaseline, ...)"
        )
    raise TypeError(
        f"baseline must be None, a name, a number or a Baseline, got {type(spec).__name__}"
    )
