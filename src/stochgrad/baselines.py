r"""Baselines and advantage rules: one implementation for every estimator and application.

A baseline :math:`b` turns the per-sample term :math:`f(x_i) s_i` (with the score
:math:`s_i = \nabla_\theta \log p(x_i; \theta)`) into :math:`A_i s_i` with the *advantage*
:math:`A_i = f(x_i) - b_i`. Because :math:`\mathbb{E}[s] = 0`, this keeps the estimator unbiased
whenever :math:`b_i` does not depend on :math:`x_i`; it lowers the variance when :math:`b` tracks
:math:`f`.

Each rule serves two callers: :func:`stochgrad.score_function` (``rule(fx, scores, params)``
gives :math:`b`) and the surrogate layer (:func:`stochgrad.surrogate_loss`, trainers in the
applications), which hands values drawn elsewhere to :meth:`Baseline.advantages`, optionally in
*groups* (the samples that share a prompt, a state or a datapoint: the rule then works within
each group). Reward-to-go and generalised advantage estimation for trajectories are
:func:`reward_to_go` and :func:`gae`.

========================  ==========================================  ==========================
rule                      :math:`A_i`                                 unbiased
========================  ==========================================  ==========================
``None`` / ``"none"``     :math:`f_i`                                 yes
a number :math:`c`        :math:`f_i - c`                             yes
:class:`EMABaseline`      :math:`f_i - \bar f_{\text{past}}`          yes (state from past calls)
``"mean"``                :math:`f_i - \bar f_g`                      no: :math:`(n_g-1)/n_g` times
``"loo"`` (RLOO)          :math:`f_i - \bar f_{g,-i}`                 yes
``"grpo"``                :math:`(f_i - \bar f_g)/(s_g + \epsilon)`    no (see below)
``"grpo_unscaled"``       :math:`f_i - \bar f_g`                      no: as ``"mean"``
``"optimal"``             :math:`f_i - c_{k,-i}` per coordinate        yes
:class:`LearnedBaseline`  :math:`f_i - b_\psi(\text{context}_i)`      yes (fitted after use)
========================  ==========================================  ==========================

The group-normalised rule of GRPO (Shao et al. 2024) divides by the group's sample standard
deviation :math:`s_g`, which depends on every sample of the group, :math:`f_i` included: the
estimate is no longer proportional to the gradient of :math:`\mathbb{E}[f]`
(``tests/test_surrogate.py`` measures by how much on an enumerable problem). Its unscaled variant
(Liu et al. 2025, "Dr. GRPO") is the batch mean within each group, biased by the factor
:math:`(n_g-1)/n_g`; ``"loo"`` is the unbiased rule with the same cost.

References:
    Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning". Kool, van Hoof, Welling (2019), "Buy 4 REINFORCE samples, get a
    baseline for free!" (leave-one-out). Mohamed et al. (2020, JMLR), Sec. 7 (optimal baseline).
    Schulman, Moritz, Levine, Jordan, Abbeel (2016), "High-dimensional continuous control using
    generalized advantage estimation". Shao et al. (2024), "DeepSeekMath" (GRPO). Liu et al.
    (2025), "Understanding R1-Zero-like training: a critical perspective" (Dr. GRPO).

>>> import torch
>>> values = torch.tensor([1.0, 3.0, 2.0, 6.0])
>>> resolve_baseline("loo").advantages(values, groups=torch.tensor([0, 0, 1, 1]))
tensor([-2.,  2., -4.,  4.])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stochgrad._checks import check_bool, check_device, check_float, check_int, check_tensor

__all__ = [
    "BASELINE_NAMES",
    "Baseline",
    "BatchMeanBaseline",
    "ConstantBaseline",
    "EMABaseline",
    "GroupNormalizedBaseline",
    "LearnedBaseline",
    "LeaveOneOutBaseline",
    "NoBaseline",
    "OptimalBaseline",
    "gae",
    "resolve_baseline",
    "reward_to_go",
]


# ---------------------------------------------------------------------------------------------
# value tensors and groups
# ---------------------------------------------------------------------------------------------
def _values(values: Tensor) -> Tensor:
    """``values`` as a detached floating-point ``[n]`` tensor of finite numbers."""
    check_tensor("values", values, kind="real", finite=False)
    if values.dim() != 1 or values.shape[0] == 0:
        raise ValueError(
            f"values must be one value per sample, [n] with n >= 1, got {tuple(values.shape)}"
        )
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values must be finite (a NaN or infinite value was given)")
    return values.detach()


class Groups:
    """Which samples share a group (a prompt, a state, a datapoint), as indices ``0..G-1``.

    Args:
        groups: ``[n]`` integer labels (any values; equal labels form a group).
        n: the number of samples.
    """

    def __init__(self, groups: Tensor | None, n: int, device: torch.device):
        self.whole = groups is None
        self.n = n
        if groups is None:  # one group: no index needed (sums and sizes are scalars)
            self.index = None
            self.count = 1
            self.sizes = torch.tensor([n], device=device)
            return
        else:
            if not isinstance(groups, Tensor):
                try:
                    groups = torch.as_tensor(groups, device=device)
                except (TypeError, ValueError, RuntimeError) as exc:
                    raise TypeError(
                        f"groups must be [n] = [{n}] integer labels, one per sample, got "
                        f"{type(groups).__name__}"
                    ) from exc
            check_tensor("groups", groups, kind="integer", device=device, of="values")
            if groups.shape != (n,):
                raise ValueError(
                    f"groups must be [n] = [{n}] integer labels, one per sample, got shape "
                    f"{tuple(groups.shape)}"
                )
            _, self.index = torch.unique(groups, return_inverse=True)
            self.count = int(self.index.max()) + 1
        self.sizes = torch.bincount(self.index, minlength=self.count)

    def sums(self, values: Tensor) -> Tensor:
        """Per-sample sum of its group's values, ``[n]`` (a scalar for one group)."""
        if self.whole:
            return values.sum()
        total = torch.zeros(self.count, dtype=values.dtype, device=values.device)
        return total.index_add_(0, self.index, values)[self.index]

    def size(self, dtype: torch.dtype) -> Tensor | float:
        """Per-sample size of its group, ``[n]`` (a number for one group)."""
        if self.whole:
            return float(self.n)
        return self.sizes[self.index].to(dtype)

    def require(self, minimum: int, who: str) -> None:
        smallest = self.n if self.whole else int(self.sizes.min())
        if smallest < minimum:
            raise ValueError(
                f"advantage {who!r} needs at least {minimum} samples per group, but a group has "
                f"{smallest}; draw more samples per group or choose another rule"
            )


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
    #: whether :meth:`advantages` can work within groups
    grouped = True

    def __call__(self, fx: Tensor, scores: Tensor, params: Tensor) -> Tensor:
        return fx - self._advantages(fx, Groups(None, fx.shape[0], fx.device), scores, None)

    def advantages(
        self,
        values: Tensor,
        groups: Tensor | None = None,
        *,
        scores: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """Advantages of values drawn by the caller: :math:`A_i = f_i - b_i`.

        Args:
            values: ``[n]`` one value per sample (detached).
            groups: ``[n]`` integer labels; the rule works within each group (``None``: one
                group).
            scores: ``[n, P]`` per-sample scores, for the rules that need them (``"optimal"``).
            context: ``[n, C]`` per-sample inputs of a :class:`LearnedBaseline` (a state).

        Returns:
            ``[n]`` advantages (``[n, P]`` for ``"optimal"``: one per coordinate).
        """
        values = _values(values)
        g = Groups(groups, values.shape[0], values.device)
        if groups is not None and not self.grouped:
            raise ValueError(f"advantage {self.name!r} does not work within groups; drop groups=")
        if values.shape[0] < self.min_samples:
            raise ValueError(
                f"advantage {self.name!r} needs at least {self.min_samples} samples, got "
                f"{values.shape[0]}"
            )
        return self._advantages(values, g, scores, context)

    def _advantages(
        self, values: Tensor, groups: Groups, scores: Tensor | None, context: Tensor | None
    ) -> Tensor:
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

    def _advantages(self, values, groups, scores, context):
        return values

    def per_problem(self, fx):
        return torch.zeros((), dtype=fx.dtype, device=fx.device)


class ConstantBaseline(Baseline):
    """A fixed number :math:`b`."""

    name = "constant"

    def __init__(self, value: float):
        self.value = check_float("value", value)

    def __call__(self, fx, scores, params):
        return torch.tensor(self.value, dtype=fx.dtype, device=fx.device)

    def _advantages(self, values, groups, scores, context):
        return values - self.value

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
    grouped = False

    def __init__(self, decay: float = 0.9, init: float | None = None):
        decay = check_float("decay", decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.value = None if init is None else check_float("init", init)

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

    def _advantages(self, values, groups, scores, context):
        return values - self(values, None, None)

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

    def _advantages(self, values, groups, scores, context):
        groups.require(2, self.name)
        return values - groups.sums(values) / groups.size(values.dtype)

    def per_problem(self, fx):
        return fx.mean(0, keepdim=True)


class LeaveOneOutBaseline(Baseline):
    r"""Leave-one-out mean :math:`b_i = \frac{1}{n-1}\sum_{j \ne i} f_j` (RLOO); unbiased."""

    name = "loo"
    min_samples = 2

    def __call__(self, fx, scores, params):
        n = fx.shape[0]
        return ((fx.sum() - fx) / (n - 1)).unsqueeze(1)

    def _advantages(self, values, groups, scores, context):
        groups.require(2, self.name)
        return values - (groups.sums(values) - values) / (groups.size(values.dtype) - 1)

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


class GroupNormalizedBaseline(Baseline):
    r"""GRPO's group-normalised advantage :math:`A_i = (f_i - \bar f_g)/(s_g + \epsilon)`.

    With ``scale=False`` the advantage is :math:`f_i - \bar f_g` ("Dr. GRPO"). Both are biased:
    the unscaled one by the factor :math:`(n_g-1)/n_g`, as :class:`BatchMeanBaseline`; the scaled
    one because :math:`s_g` depends on :math:`f_i` itself (and rescales each group's gradient by
    a random amount). Use ``"loo"`` for the unbiased rule.

    Args:
        scale: divide by the group's sample standard deviation (ddof 1).
        eps: added to the standard deviation (a group of equal values gets advantages 0).

    >>> GroupNormalizedBaseline().advantages(torch.tensor([1.0, 3.0]))
    tensor([-0.7071,  0.7071])
    """

    min_samples = 2
    unbiased = False

    def __init__(self, scale: bool = True, eps: float = 1e-4):
        self.scale = check_bool("scale", scale)
        self.eps = check_float("eps", eps, minimum=0.0)
        self.name = "grpo" if scale else "grpo_unscaled"

    def __call__(self, fx, scores, params):
        return (
            fx - self._advantages(fx.detach(), Groups(None, fx.shape[0], fx.device), None, None)
        ).unsqueeze(1)

    def _advantages(self, values, groups, scores, context):
        groups.require(2, self.name)
        size = groups.size(values.dtype)
        centred = values - groups.sums(values) / size
        if not self.scale:
            return centred
        std = (groups.sums(centred * centred) / (size - 1)).sqrt()
        return centred / (std + self.eps)

    def __repr__(self) -> str:
        return f"GroupNormalizedBaseline(scale={self.scale}, eps={self.eps})"


class OptimalBaseline(Baseline):
    r"""Variance-minimising per-coordinate coefficient :math:`c_k = \mathbb{E}[f s_k^2]/\mathbb{E}[s_k^2]`.

    Estimated leave-one-out, :math:`c_{k,-i} = \sum_{j\ne i} f_j s_{jk}^2 / \sum_{j\ne i} s_{jk}^2`, so
    that the coefficient applied to sample ``i`` is independent of it and the estimator stays
    unbiased. Costs O(n P).
    """

    name = "optimal"
    min_samples = 2
    grouped = False

    def _advantages(self, values, groups, scores, context):
        if scores is None:
            raise ValueError(
                "advantage 'optimal' needs the per-sample scores (scores=[n, P]); through the "
                "surrogate layer, pass params= so that they can be computed"
            )
        return values.unsqueeze(1) - self(values, scores, None)

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
        context_fn (Callable[[Tensor], Tensor] | None): ``params_flat -> context`` tensor.
    """

    name = "learned"
    grouped = False

    def __init__(
        self,
        module: nn.Module | None = None,
        *,
        lr: float = 1e-2,
        steps: int = 1,
        context_fn=None,
    ):
        steps = check_int("steps", steps, minimum=1)
        lr = check_float("lr", lr, minimum=0.0, open_min=True)
        if module is not None and not callable(module):
            raise TypeError(f"module must be an nn.Module (callable), got {type(module).__name__}")
        if context_fn is not None and not callable(context_fn):
            raise TypeError(f"context_fn must be callable, got {type(context_fn).__name__}")
        self.module = module
        self.lr = lr
        self.steps = steps
        self.context_fn = context_fn
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_loss: float | None = None

    def _ensure(self, ctx: Tensor) -> None:
        if self.module is None:
            self.module = nn.Sequential(nn.Linear(ctx.numel(), 32), nn.Tanh(), nn.Linear(32, 1))
            self.module.to(dtype=ctx.dtype, device=ctx.device)
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr)

    def _advantages(self, values, groups, scores, context):
        if context is None:
            raise ValueError(
                "LearnedBaseline needs context= through the surrogate layer: one row per sample "
                "(e.g. the state), [n, C]"
            )
        ctx = context.detach().reshape(values.shape[0], -1).to(values.dtype)
        self._ensure(ctx[:1])
        with torch.no_grad():
            b = self.module(ctx).reshape(-1)
        self._fit(ctx, values.reshape(-1, 1))
        return values - b

    def _fit(self, ctx: Tensor, target: Tensor) -> None:
        for _ in range(self.steps):
            self.optimizer.zero_grad()
            loss = ((self.module(ctx).reshape(-1, 1) - target) ** 2).mean()
            loss.backward()
            self.optimizer.step()
            self.last_loss = loss.item()

    def __call__(self, fx, scores, params):
        ctx = (self.context_fn(params) if self.context_fn else params).detach().reshape(1, -1)
        self._ensure(ctx)
        with torch.no_grad():
            b = self.module(ctx).reshape(())
        self._fit(ctx, fx.detach().reshape(-1, 1))  # one context, every value: [1, 1] vs [n, 1]
        return b.to(fx.dtype)


_NAMED = {
    "none": NoBaseline,
    "mean": BatchMeanBaseline,
    "batch_mean": BatchMeanBaseline,
    "loo": LeaveOneOutBaseline,
    "leave_one_out": LeaveOneOutBaseline,
    "rloo": LeaveOneOutBaseline,
    "optimal": OptimalBaseline,
    "grpo": GroupNormalizedBaseline,
    "grpo_unscaled": lambda: GroupNormalizedBaseline(scale=False),
}

BASELINE_NAMES = tuple(_NAMED)


def resolve_baseline(spec, name: str = "baseline") -> Baseline:
    """``None``, a name, a number or a :class:`Baseline` -> a :class:`Baseline`.

    Args:
        spec: the rule.
        name: the caller's argument, for the messages (``"advantage"`` in the surrogate layer).

    >>> resolve_baseline("loo").name
    'loo'
    >>> resolve_baseline(float("nan"), "advantage")
    Traceback (most recent call last):
    ...
    ValueError: advantage must be finite, got nan
    """
    if spec is None:
        return NoBaseline()
    if isinstance(spec, Baseline):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key == "ema":
            raise ValueError(
                f"{name}='ema' keeps state across calls: create it once with "
                "sg.EMABaseline(decay=0.9) and pass the same object to every call"
            )
        if key == "learned":
            raise ValueError(
                f"{name}='learned' is fitted across calls: create it once with "
                "sg.LearnedBaseline() and pass the same object to every call"
            )
        if key in _NAMED:
            return _NAMED[key]()
        raise ValueError(
            f"{name} must be one of {sorted(set(_NAMED))}, a number, or a Baseline object "
            f"(EMABaseline, LearnedBaseline, ...), got {spec!r}"
        )
    if isinstance(spec, type) and issubclass(spec, Baseline):
        raise TypeError(
            f"{name} must be a Baseline object, got the class {spec.__name__}: pass an "
            f"instance, {spec.__name__}()"
        )
    if not isinstance(spec, bool) and isinstance(spec, (int, float, np.integer, np.floating)):
        return ConstantBaseline(check_float(name, spec))
    raise TypeError(
        f"{name} must be None, a name, a number or a Baseline, got {type(spec).__name__} "
        f"{spec!r:.80}"
    )


# ---------------------------------------------------------------------------------------------
# trajectories: reward-to-go and generalised advantage estimation
# ---------------------------------------------------------------------------------------------
def _time_major(name: str, t: Tensor, like: Tensor | None = None) -> Tensor:
    """``t`` as a floating-point ``[T]`` or ``[T, B]`` tensor of finite numbers (integers are
    converted to ``like``'s floating dtype, else the default one), on ``like``'s device."""
    check_tensor(name, t, kind="real", device=None if like is None else like.device, of="rewards")
    if t.dim() not in (1, 2) or t.shape[0] == 0:
        raise ValueError(f"{name} must be [T] or [T, B] (time first), got {tuple(t.shape)}")
    if not t.is_floating_point():  # integer rewards: the discounted sums are not integers
        t = t.to(like.dtype if like is not None else torch.get_default_dtype())
    return t


def _check_discount(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__} {value!r}")
    if not 0 <= value <= 1:  # NaN fails too
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def reward_to_go(rewards: Tensor, gamma: float = 1.0, dones: Tensor | None = None) -> Tensor:
    r"""Discounted reward-to-go :math:`G_t = \sum_{k \ge t} \gamma^{k-t} r_k`, per trajectory.

    The return from step :math:`t` on is what :math:`\log\pi(a_t \mid s_t)` is credited with in
    REINFORCE: rewards before :math:`t` do not depend on :math:`a_t`, so leaving them out keeps the
    estimate unbiased and lowers its variance.

    Args:
        rewards: ``[T]`` or ``[T, B]`` (time first, ``B`` trajectories side by side).
        gamma: discount in [0, 1].
        dones: like ``rewards``, true where an episode ends at that step (the sum restarts after
            it); ``None``: one episode per column.

    Returns:
        Like ``rewards``.

    >>> reward_to_go(torch.tensor([1.0, 1.0, 1.0]), gamma=0.5)
    tensor([1.7500, 1.5000, 1.0000])
    """
    rewards = _time_major("rewards", rewards)
    gamma = _check_discount("gamma", gamma)
    keep = _continues(dones, rewards)
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):  # a loop over time, batched over trajectories
        running = rewards[t] + gamma * keep[t] * running
        out[t] = running
    return out


def _continues(dones: Tensor | None, like: Tensor) -> Tensor:
    """``1 - dones`` in ``like``'s dtype; ``dones`` must be booleans or 0/1 shaped like it."""
    if dones is None:
        return torch.ones_like(like)
    if not isinstance(dones, Tensor):
        raise TypeError(f"dones must be a tensor of booleans or 0/1, got {type(dones).__name__}")
    if dones.dtype == torch.bool:
        check_device("dones", dones, like.device, of="rewards")
    else:
        check_tensor("dones", dones, kind="real", device=like.device, of="rewards", finite=False)
    if dones.shape != like.shape:
        raise ValueError(
            f"dones must be shaped like rewards {tuple(like.shape)}, got {tuple(dones.shape)}"
        )
    if dones.dtype != torch.bool and not bool(((dones == 0) | (dones == 1)).all()):
        raise ValueError(f"dones must hold booleans or 0/1 (1 where an episode ends), got {dones}")
    return 1.0 - dones.to(like.dtype)


def _last_value(last_value: Any, rewards: Tensor) -> Tensor:
    """``last_value`` (a number or a tensor broadcastable to ``rewards[0]``) as a tensor like
    ``rewards[0]``; finite in ``rewards``' dtype."""
    dtype = rewards.dtype
    if isinstance(last_value, Tensor):
        check_tensor("last_value", last_value, kind="real", device=rewards.device, of="rewards")
        try:
            nxt = last_value.detach().to(dtype).expand_as(rewards[0]).clone()
        except RuntimeError as exc:
            shape = tuple(rewards[0].shape)
            raise ValueError(
                f"last_value must be a number or a tensor broadcastable to {shape} (one value "
                f"per trajectory), got shape {tuple(last_value.shape)}"
            ) from exc
    else:
        value = check_float("last_value", last_value)
        if abs(value) > torch.finfo(dtype).max:
            raise ValueError(f"last_value must be finite in {dtype}, got {value}")
        nxt = torch.full_like(rewards[0], value)
    if not bool(torch.isfinite(nxt).all()):
        raise ValueError(f"last_value must be finite in {dtype}, got {last_value}")
    return nxt


def gae(
    rewards: Tensor,
    values: Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
    dones: Tensor | None = None,
    last_value: Tensor | float = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""Generalised advantage estimation (Schulman et al. 2016).

    .. math::

        \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t), \qquad
        \hat A_t = \sum_{k \ge 0} (\gamma\lambda)^k \delta_{t+k}.

    ``lam = 1`` gives the reward-to-go minus :math:`V(s_t)` (unbiased for any :math:`V`); ``lam <
    1`` trades bias for variance unless :math:`V` is the true value function.

    Args:
        rewards: ``[T]`` or ``[T, B]``, time first.
        values: :math:`V(s_t)`, like ``rewards`` (detached).
        gamma: the discount, in [0, 1].
        lam: the GAE parameter :math:`\lambda`, in [0, 1].
        dones: true where an episode ends at that step (no bootstrap across it).
        last_value: :math:`V` of the state after the last step (``[B]`` or a number; 0 when the
            trajectories end there).

    Returns:
        ``(advantages, returns)``, both like ``rewards``; ``returns = advantages + values`` are
        the regression targets of the value function.

    >>> adv, ret = gae(torch.tensor([1.0, 1.0]), torch.zeros(2), gamma=1.0, lam=1.0)
    >>> adv
    tensor([2., 1.])
    """
    integer = isinstance(rewards, Tensor) and not rewards.is_floating_point()
    rewards = _time_major("rewards", rewards)
    values = _time_major("values", values, rewards).detach()
    if integer:  # integer rewards take the values' floating dtype
        rewards = rewards.to(values.dtype)
    if values.shape != rewards.shape:
        raise ValueError(f"values must be shaped like rewards {tuple(rewards.shape)}")
    gamma = _check_discount("gamma", gamma)
    lam = _check_discount("lam", lam)
    keep = _continues(dones, rewards)
    nxt = _last_value(last_value, rewards)
    adv = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    # the TD errors at once; only the discounted sum runs backwards in time
    following = torch.cat([values[1:], nxt.unsqueeze(0)])
    delta = rewards + gamma * keep * following - values
    decay = gamma * lam * keep
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = delta[t] + decay[t] * running
        adv[t] = running
    return adv, adv + values
