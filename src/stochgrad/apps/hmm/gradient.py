r"""The gradient of an HMM's log-likelihood by Fisher's identity, computed by the core.

The log-derivative trick turns the gradient of the marginal likelihood into a posterior
expectation of the gradient of the complete-data log-likelihood:

.. math::

    \nabla_\theta \log p(y;\theta) = \frac{\nabla_\theta \sum_z p(y, z;\theta)}{p(y;\theta)}
    = \mathbb E_{z \sim p(z \mid y;\theta)}\big[\nabla_\theta \log p(y, z;\theta)\big].

For an HMM the complete-data log-likelihood is a sum of factors,

.. math::

    \log p(y, z) = \log \pi_{z_1} + \sum_{t<T} \log P_{z_t z_{t+1}}
    + \sum_t \log p(y_t \mid z_t),

so the expectation is exact given the posterior marginals of each factor's variables: the
first state :math:`\gamma_1`, the pairs :math:`\xi_t(i, j)` and the states :math:`\gamma_t(k)`
(forward-backward). :func:`likelihood_gradient` hands the factors and these marginals to
:func:`stochgrad.fisher_gradient` (its factor mode), which differentiates
:math:`\sum_f \sum_{z_f} q_f(z_f)\, \phi_f(z_f;\theta)` with the marginals :math:`q_f` held
fixed. :func:`sampled_likelihood_gradient` draws paths :math:`z^{(s)} \sim p(z \mid y)` by
forward-filtering backward-sampling and hands :math:`\log p(y, z^{(s)})`
(:func:`joint_log_prob`) to :func:`stochgrad.fisher_gradient` with ``samples=True``: the mean
of the per-path gradients, with a standard error. Both return a
:class:`~stochgrad.gradient_estimate.GradientEstimate` whose fields are tuples in the order of
``hmm.params()`` (start logits, transition logits, then log-rates, or means and log-sds).

References:
    Fisher (1925), "Theory of statistical estimation" (the score identity); Louis (1982),
    JRSS B 44; Cappé, Moulines & Rydén (2005), *Inference in Hidden Markov Models*, Sec. 10.1;
    Frühwirth-Schnatter (1994) and Carter & Kohn (1994) (FFBS).

>>> from stochgrad.apps.hmm.model import HMM
>>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], rates=[1.0, 5.0])
>>> est = likelihood_gradient(hmm, [0.0, 6.0, 4.0])
>>> [tuple(g.shape) for g in est.grad], est.method
([(2,), (2, 2), (2,)], 'fisher_exact')
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_int
from stochgrad.apps.hmm.emissions import _as_batch, _stacked_emission
from stochgrad.apps.hmm.inference import (
    Posterior,
    _posterior_marginals,
    forward_backward,
    sample_posterior,
)
from stochgrad.apps.hmm.model import HMM
from stochgrad.fisher import fisher_gradient
from stochgrad.gradient_estimate import GradientEstimate
from stochgrad.surrogate import per_sample_gradients

__all__ = ["joint_log_prob", "likelihood_gradient", "sampled_likelihood_gradient"]


def _stacked_log_factors(
    start: Tensor, trans: Tensor, emis: list[Tensor], yb: Tensor, lgamma_y: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``log pi [R, 1, K]``, ``log P [R, K, K]``, ``log p(y_t | k) [R, B, T, K]`` of ``R``
    stacked models (differentiable)."""
    return (
        torch.log_softmax(start, -1)[:, None, :],
        torch.log_softmax(trans, -1),
        _stacked_emission(yb, emis, lgamma_y),
    )


def _factor_gradient(
    params: list[Tensor], factors: tuple[Tensor, Tensor, Tensor], gamma: Tensor, xi: Tensor
) -> GradientEstimate:
    r"""Fisher's identity in the core's factor mode for ``R`` stacked models.

    The factors :math:`\log \pi_{z_1}` ``[R, B, K]``, :math:`\log P_{z_t z_{t+1}}`
    ``[R, B, T-1, K, K]`` and :math:`\log p(y_t \mid z_t)` ``[R, B, T, K]``, with their posterior
    marginals :math:`\gamma_1`, :math:`\xi_t`, :math:`\gamma_t`, flattened side by side; each
    restart's gradient lands in its own rows of the stacked ``params``.
    """
    log_start, log_P, log_e = factors
    R, B, T, K = log_e.shape
    log_joint = torch.cat(
        [
            log_start.expand(R, B, K).reshape(R, -1),
            log_P[:, None, None].expand(R, B, T - 1, K, K).reshape(R, -1),
            log_e.reshape(R, -1),
        ],
        1,
    )
    posterior = torch.cat(
        [gamma[:, :, 0].reshape(R, -1), xi.reshape(R, -1), gamma.reshape(R, -1)], 1
    )
    return fisher_gradient(log_joint, params, posterior=posterior)


def _stack(params: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, list[Tensor]]:
    """One model's parameters as a stack of ``R = 1``."""
    start, trans, *emis = (p[None] for p in params)
    return start, trans, emis


def _lgamma(hmm: HMM, yb: Tensor) -> Tensor | None:
    return torch.lgamma(yb + 1.0)[..., None] if hmm.emission == "poisson" else None


def likelihood_gradient(
    hmm: HMM, y: Any, *, posterior: Posterior | None = None
) -> GradientEstimate:
    r"""Exact :math:`\nabla_\theta \sum_b \log p(y_b)` by Fisher's identity (factor marginals).

    The factors of :math:`\log p(y, z)` (start, transitions, emissions) weighted by their
    forward-backward marginals go to :func:`stochgrad.fisher_gradient` ``(factors, params,
    posterior=marginals)``; the result is exact (``variance`` zero).

    Args:
        hmm: the model.
        y: ``[T]``/``[B, T]`` (Poisson) or ``[T]``/``[T, D]``/``[B, T, D]`` (Gaussian).
        posterior: reuse a :func:`~stochgrad.apps.hmm.inference.forward_backward` result for
            the same ``hmm`` and ``y``.

    Returns:
        :class:`~stochgrad.gradient_estimate.GradientEstimate`, ``method="fisher_exact"``,
        tuple fields in the order of ``hmm.params()``; ``info["log_likelihood"]`` is
        :math:`\sum_b \log p(y_b)`.

    Raises:
        ValueError: ``y`` does not fit the model, or ``posterior`` does not match ``y``.

    Reference: Fisher (1925); Louis (1982), JRSS B 44, eq. (3.1).

    Examples:
        >>> from stochgrad.apps.hmm.model import HMM
        >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], rates=[1.0, 5.0])
        >>> [tuple(g.shape) for g in likelihood_gradient(hmm, [0.0, 6.0, 4.0]).grad]
        [(2,), (2, 2), (2,)]
    """
    yb = _as_batch(hmm, y)
    leaves = [p.detach().clone().requires_grad_() for p in hmm.params()]
    start, trans, emis = _stack(tuple(leaves))
    with torch.enable_grad():
        factors = _stacked_log_factors(start, trans, emis, yb, _lgamma(hmm, yb))
        if posterior is None:
            marg = _posterior_marginals(*(f.detach() for f in factors))
            ll, gamma, xi = marg.log_likelihood, marg.gamma, marg.xi
        else:
            if not isinstance(posterior, Posterior):
                raise TypeError(f"posterior must be a Posterior, got {type(posterior).__name__}")
            if posterior.gamma.shape[:2] != yb.shape[:2]:
                raise ValueError("posterior does not match y's batch and length")
            ll, gamma, xi = (
                posterior.log_likelihood[None],
                posterior.gamma[None],
                posterior.xi[None],
            )
        est = _factor_gradient(leaves, factors, gamma, xi)
    return dataclasses.replace(est, info={**est.info, "log_likelihood": float(ll.sum())})


def joint_log_prob(hmm: HMM, y: Any, z: Tensor) -> Tensor:
    r"""``[S]``: :math:`\sum_b \log p(y_b, z^{(s)}_b)` for state paths ``z`` (differentiable).

    Args:
        hmm: the model (its parameters may require grad).
        y: observations (as in :func:`likelihood_gradient`), batch ``B``, length ``T``.
        z: int64 state paths ``[S, B, T]`` (``[B, T]`` is taken as one path).

    Raises:
        ValueError: ``z`` of the wrong shape or not integer states of the model.

    >>> from stochgrad.apps.hmm.model import HMM
    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]], rates=[1.0, 2.0])
    >>> round(float(joint_log_prob(hmm, [0.0], torch.tensor([[0]]))[0]), 6)  # log(0.5) - 1
    -1.693147
    """
    yb = _as_batch(hmm, y)
    z = torch.as_tensor(z)
    if z.ndim == 2:
        z = z[None]
    K = hmm.num_states
    if z.ndim != 3 or z.shape[1:] != yb.shape[:2]:
        raise ValueError(
            f"z must be [S, B, T] with [B, T] = {tuple(yb.shape[:2])}, got {tuple(z.shape)}"
        )
    if z.dtype.is_floating_point or z.dtype == torch.bool or (z < 0).any() or (z >= K).any():
        raise ValueError(f"z must hold integer states in 0..{K - 1}")
    z = z.long()
    start, trans, emis = _stack(hmm.params())
    log_start, log_P, log_e = _stacked_log_factors(start, trans, emis, yb, _lgamma(hmm, yb))
    B, T = z.shape[1:]
    first = log_start[0, 0][z[:, :, 0]].sum(-1)
    moves = log_P[0][z[:, :, :-1], z[:, :, 1:]].sum((-1, -2))
    # index, not gather over an expanded copy: the backward pass then stays [B, T, K] per row
    emitted = log_e[0][torch.arange(B)[:, None], torch.arange(T), z]  # [S, B, T]
    return first + moves + emitted.sum((-1, -2))


def sampled_likelihood_gradient(
    hmm: HMM, y: Any, num_samples: int, *, generator: torch.Generator | None = None
) -> GradientEstimate:
    r"""Monte Carlo Fisher identity: the mean of :math:`\nabla \log p(y, z^{(s)})` over
    :math:`z^{(s)} \sim p(z \mid y)` drawn by forward-filtering backward-sampling.

    The paths are exact, independent posterior draws
    (:func:`~stochgrad.apps.hmm.inference.sample_posterior`); :func:`joint_log_prob` at them
    goes to :func:`stochgrad.fisher_gradient` ``(log_joint, params, samples=True)``. Unbiased
    for :func:`likelihood_gradient`. Up to 1024 paths the per-path gradients are the
    per-sample terms; above, the variance comes from 64 batch means (the core's rule).

    Args:
        hmm: the model.
        y: observations (as in :func:`likelihood_gradient`).
        num_samples: posterior paths ``S >= 2``.
        generator: the random stream of the draws.

    Returns:
        :class:`~stochgrad.gradient_estimate.GradientEstimate`, ``method="fisher_sampled"``,
        tuple fields in the order of ``hmm.params()``, with a standard error;
        ``info["log_likelihood"]`` as in :func:`likelihood_gradient`.

    Reference: Frühwirth-Schnatter (1994), J. Time Ser. Anal. 15; Carter & Kohn (1994),
    Biometrika 81.

    >>> from stochgrad.apps.hmm.model import HMM
    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[1.0, 10.0])
    >>> g = torch.Generator().manual_seed(0)
    >>> est = sampled_likelihood_gradient(hmm, [0.0, 11.0, 9.0], 64, generator=g)
    >>> est.num_samples, est.method
    (64, 'fisher_sampled')
    """
    num_samples = check_int("num_samples", num_samples, minimum=2)
    yb = _as_batch(hmm, y)
    with torch.no_grad():
        post = forward_backward(hmm, yb)
        z = sample_posterior(hmm, yb, num_samples, generator=generator, posterior=post)
    leaves = [p.detach().clone().requires_grad_() for p in hmm.params()]
    with torch.enable_grad():
        log_joint = joint_log_prob(hmm.with_params(leaves), yb, z)
        est = fisher_gradient(log_joint, leaves, samples=True)
    return dataclasses.replace(
        est, info={**est.info, "log_likelihood": float(post.log_likelihood.sum())}
    )


def _complete_data_score(hmm: HMM, y: Any, z: Tensor) -> tuple[Tensor, ...]:
    """Deprecated: ``[S, *param.shape]`` per parameter, :math:`\\nabla \\log p(y, z^{(s)})`,
    by the core's :func:`~stochgrad.surrogate.per_sample_gradients` of :func:`joint_log_prob`."""
    leaves = [p.detach().clone().requires_grad_() for p in hmm.params()]
    with torch.enable_grad():
        log_joint = joint_log_prob(hmm.with_params(leaves), y, z)
        return tuple(g.detach() for g in per_sample_gradients(log_joint, leaves))


def _deprecated_complete_data_score(module: str) -> Any:
    warnings.warn(
        f"{module}.complete_data_score is deprecated: use "
        "stochgrad.per_sample_gradients(joint_log_prob(hmm, y, z), params), or the per-sample "
        "terms of sampled_likelihood_gradient; it will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return _complete_data_score
