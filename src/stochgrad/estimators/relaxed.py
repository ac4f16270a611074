r"""Relaxations of discrete distributions: Gumbel-max, Concrete, straight-through, REBAR, RELAX.

A Bernoulli or categorical sample is a hard threshold of continuous noise,

.. math::

    b = H(z), \qquad z = \theta + \operatorname{logit}(u) \ \text{(Bernoulli)}, \qquad
    b = \operatorname*{arg\,max}_k (\theta_k + G_k) \ \text{(categorical, Gumbel-max)},

with :math:`u \sim U(0,1)` and :math:`G_k = -\log(-\log u_k)` standard Gumbel noise. Replacing
:math:`H` by a smooth :math:`\sigma_\lambda` (a sigmoid or softmax at temperature :math:`\lambda`)
gives the Concrete / Gumbel-softmax relaxation, which is reparameterisable but changes the
objective: :func:`gumbel_softmax` and :func:`straight_through` are **biased**. REBAR and RELAX
use the relaxation only as a control variate, with the conditional relaxed sample
:math:`\tilde z \sim p(z \mid b)`, and stay unbiased for any temperature, scale and network:

.. math::

    \hat g = \big[f(b) - c(\tilde z)\big]\, \nabla_\theta \log p(b;\theta)
             + \nabla_\theta c(z) - \nabla_\theta c(\tilde z).

Supported distributions: ``Bernoulli`` (hard samples ``0.``/``1.``), ``OneHotCategorical``
(one-hot rows) and ``Categorical`` (indices), each with ``logits`` or ``probs`` and any batch
shape, optionally wrapped in ``Independent``. ``f`` sees samples in the distribution's own
representation and their relaxations in the same one: a probability in ``(0, 1)`` for a
Bernoulli, a point of the simplex for a one-hot categorical, and for a ``Categorical`` the
relaxed index :math:`\sum_k k\, y_k` of the relaxed one-hot :math:`y` (hard indices are passed as
floats; use ``OneHotCategorical`` when the categories are unordered).

References:
    Maddison, Mnih, Teh (ICLR 2017), "The Concrete distribution"; Jang, Gu, Poole (ICLR 2017),
    "Categorical reparameterization with Gumbel-softmax"; Bengio, Leonard, Courville (2013),
    "Estimating or propagating gradients through stochastic neurons"; Tucker, Mnih, Maddison,
    Lawson, Sohl-Dickstein (NeurIPS 2017), "REBAR"; Grathwohl, Choi, Wu, Roeder, Duvenaud
    (ICLR 2018), "Backpropagation through the void" (RELAX).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from stochgrad._checks import check_bool
from stochgrad.estimators._relaxation import (
    _check_temperature,
    _eval_differentiable,
    _finish,
    _grad_or_zeros,
    _setup,
    _st,
    _uniform,
)
from stochgrad.estimators.concrete import (
    concrete_sample,
    gumbel_max,
    relaxed_bernoulli_sample,
    straight_through_bernoulli,
    straight_through_categorical,
)
from stochgrad.estimators.rebar_relax import Relax, rebar
from stochgrad.gradient_estimate import GradientEstimate, Params

__all__ = [
    "Relax",
    "concrete_sample",
    "gumbel_max",
    "gumbel_softmax",
    "rebar",
    "relaxed_bernoulli_sample",
    "straight_through",
    "straight_through_bernoulli",
    "straight_through_categorical",
]


# ---------------------------------------------------------------------------------------------
# biased estimators: Gumbel-softmax and straight-through
# ---------------------------------------------------------------------------------------------
def gumbel_softmax(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    temperature: float = 0.5,
    hard: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""Gumbel-softmax (Concrete) estimate: the pathwise gradient of the relaxed objective. BIASED.

    .. math::

        \hat g = \nabla_\theta f\big(\sigma_\lambda(z(\theta, u))\big), \qquad
        \mathbb{E}[\hat g] = \nabla_\theta \mathbb{E}[f(\sigma_\lambda(z))]
        \neq \nabla_\theta \mathbb{E}[f(H(z))] \text{ in general,}

    with :math:`\sigma_\lambda` a sigmoid (Bernoulli) or softmax (categorical) at temperature
    :math:`\lambda`. The bias vanishes only as :math:`\lambda \to 0`, where the variance grows.
    With ``hard=True`` (straight-through Gumbel) ``f`` sees the exact discrete sample and the
    gradient is still that of the relaxed sample (also biased). The estimate has
    ``biased=True``.

    Args:
        f: differentiable torch function, batch ``[n, ...]`` -> ``[n]``, evaluated on relaxed
            samples (see the module notes for the representation per distribution); ``[n, *B]``
            with ``batch_dims``.
        dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or ``OneHotCategorical``
            (``logits`` or ``probs``, any batch shape, optionally ``Independent``).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n`` (with ``1``, ``variance`` and ``stderr`` are NaN
            and a :class:`~stochgrad.SingleSampleWarning` is issued).
        temperature: :math:`\lambda > 0`.
        hard: forward the exact sample, backward the relaxed gradient (ST-Gumbel); a bool.
        generator: explicit randomness.
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``); ``f`` then returns ``[n, *B]``, the value of
            problem ``b`` depending only on its own slice ``x[:, b]``, and the estimate is of the
            gradient of :math:`\sum_b \mathbb E[f_b]` (the pathwise gradient of each problem's
            value reaches only its own parameters).

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="gumbel_softmax"`` and
        ``biased=True``.

    Raises:
        ValueError: temperature not > 0, an unsupported distribution, or ``f`` not
            differentiable (the message names ``score_function`` and ``disarm``), ``f``
            changing its input in place, more memory needed than the memory available (or
            ``STOCHGRAD_MEMORY_LIMIT``).
        TypeError: ``f`` not callable, ``hard`` not a bool.

    >>> import torch
    >>> est = gumbel_softmax(lambda b: (b - 0.499) ** 2,
    ...                      lambda lg: torch.distributions.Bernoulli(logits=lg),
    ...                      torch.tensor(0.0), num_samples=100, seed=0)
    >>> est.biased
    True

    Reference: Jang, Gu, Poole (ICLR 2017); Maddison, Mnih, Teh (ICLR 2017).
    """
    lam = _check_temperature(temperature)
    hard = check_bool("hard", hard)
    s = _setup(f, dist_fn, params, num_samples, generator, seed, "gumbel_softmax", batch_dims)
    fam, n = s.fam, s.n
    phi_rep = fam.replicate(n)
    theta = fam.theta(phi_rep)
    z, y_hard = fam.hard(theta, _uniform(tuple(phi_rep.shape), phi_rep, s.g))
    y = fam.relax(z, lam)
    if hard:
        y = _st(y_hard, y)
    fx = _eval_differentiable(f, fam.to_f(y), n, "gumbel_softmax", s.problem)
    per_phi = _grad_or_zeros(fx.sum(), phi_rep)
    return _finish(
        s, per_phi, "gumbel_softmax", True, n, {"temperature": float(lam), "hard": bool(hard)}
    )


def straight_through(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""Straight-through estimate: exact samples forward, the gradient of their mean backward. BIASED.

    .. math::

        \hat g = \nabla_x f(x)\big|_{x = b}\; \nabla_\theta\, \mathbb{E}_\theta[b],
        \qquad b \sim p(b;\theta),

    i.e. the sampling step is treated as the identity :math:`b \approx \mathbb{E}[b]` in the
    backward pass (for a Bernoulli :math:`\partial b / \partial p := 1`). ``f`` is evaluated at
    the exact samples, but the estimate is biased whenever ``f`` is not linear on the support;
    the estimate has ``biased=True``. For the relaxed backward pass (ST-Gumbel) use
    :func:`gumbel_softmax` with ``hard=True``.

    Args:
        f: differentiable torch function, batch ``[n, ...]`` -> ``[n]`` (``[n, *B]`` with
            ``batch_dims``).
        dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or ``OneHotCategorical``.
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n`` (with ``1``, ``variance`` and ``stderr`` are NaN
            and a :class:`~stochgrad.SingleSampleWarning` is issued).
        generator: explicit randomness.
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``); ``f`` then returns ``[n, *B]``, the value of
            problem ``b`` depending only on its own slice ``x[:, b]``.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="straight_through"`` and
        ``biased=True``.

    Raises:
        ValueError: an unsupported distribution, or ``f`` not differentiable.

    >>> import torch
    >>> est = straight_through(lambda b: (b - 0.499) ** 2,
    ...                        lambda p: torch.distributions.Bernoulli(probs=p),
    ...                        torch.tensor(0.3), num_samples=8, seed=0)
    >>> est.per_sample.unique()  # f'(b) = 2 (b - 0.499) at b = 0, 1, times dE[b]/dp = 1
    tensor([-0.9980,  1.0020])

    Reference: Bengio, Leonard, Courville (2013), "Estimating or propagating gradients through
    stochastic neurons for conditional computation".
    """
    s = _setup(f, dist_fn, params, num_samples, generator, seed, "straight_through", batch_dims)
    fam, n = s.fam, s.n
    phi_rep = fam.replicate(n)
    theta = fam.theta(phi_rep)
    _, y_hard = fam.hard(theta, _uniform(tuple(phi_rep.shape), phi_rep, s.g))
    fx = _eval_differentiable(
        f, fam.to_f(_st(y_hard, fam.mean(theta))), n, "straight_through", s.problem
    )
    per_phi = _grad_or_zeros(fx.sum(), phi_rep)
    return _finish(s, per_phi, "straight_through", True, n, {})
