r"""The likelihood gradient by Fisher's identity: exact (forward-backward) and Monte Carlo (FFBS).

The log-derivative trick turns the gradient of the marginal likelihood into a posterior
expectation of the complete-data score:

.. math::

    \nabla_\theta \log p(y;\theta) = \frac{\nabla_\theta \sum_z p(y, z;\theta)}{p(y;\theta)}
    = \mathbb E_{z \sim p(z \mid y;\theta)}\big[\nabla_\theta \log p(y, z;\theta)\big].

The complete-data score is linear in the sufficient statistics :math:`\mathbb 1\{z_1 = k\}`,
:math:`\mathbb 1\{z_t = k\}` and :math:`\mathbb 1\{z_t = i, z_{t+1} = j\}`, so the expectation is
exact given the posterior marginals :math:`\gamma_{t}(k)` and pairwise marginals
:math:`\xi_t(i, j)` (:func:`fisher_gradient`):

.. math::

    \partial_{a_k} = \gamma_1(k) - \pi_k, \quad
    \partial_{A_{ij}} = \textstyle\sum_t \xi_t(i,j) - P_{ij} \sum_{t<T} \gamma_t(i), \quad
    \partial_{\eta_k} = \textstyle\sum_t \gamma_t(k)\,(y_t - \lambda_k),

    \partial_{\mu_{kd}} = \textstyle\sum_t \gamma_t(k)\,\frac{y_{td} - \mu_{kd}}{\sigma_{kd}^2},
    \quad
    \partial_{s_{kd}} = \textstyle\sum_t \gamma_t(k)\,\Big[\frac{(y_{td} - \mu_{kd})^2}
    {\sigma_{kd}^2} - 1\Big].

The Monte Carlo version (:func:`monte_carlo_gradient`) draws :math:`z \sim p(z \mid y)` by
forward-filtering backward-sampling and averages the same score with one-hot statistics.

References:
    Fisher (1925), "Theory of statistical estimation" (the score identity); Louis (1982),
    JRSS B 44; Frühwirth-Schnatter (1994) and Carter & Kohn (1994) (FFBS).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stochgrad.apps.hmm.emissions import _as_batch
from stochgrad.apps.hmm.inference import Posterior, forward_backward, sample_posterior
from stochgrad.apps.hmm.model import HMM
from stochgrad.gradient_estimate import GradientEstimate

__all__ = ["complete_data_score", "fisher_gradient", "monte_carlo_gradient"]


def _score_from_stats(
    hmm: HMM, y: Tensor, g0: Tensor, g: Tensor, n_trans: Tensor
) -> tuple[Tensor, ...]:
    """Complete-data score from (expected) statistics, summed over the batch axis.

    ``g0`` ``[..., B, K]`` (first state), ``g`` ``[..., B, T, K]`` (state indicators),
    ``n_trans`` ``[..., B, K, K]`` (transition counts); leading axes are kept.
    """
    pi = hmm.startprob
    P = hmm.transmat
    d_start = (g0 - pi).sum(-2)
    n_from = g[..., :-1, :].sum(-2)  # [..., B, K]
    d_trans = (n_trans - n_from[..., None] * P).sum(-3)
    if hmm.emission == "poisson":
        d_eta = (g * (y[..., None] - hmm.rates)).sum((-3, -2))
        return d_start, d_trans, d_eta
    r = (y[:, :, None, :] - hmm.means) / hmm.sds  # [B, T, K, D]
    gk = g[..., None]
    d_mu = (gk * r / hmm.sds).sum((-4, -3))
    d_s = (gk * (r.square() - 1.0)).sum((-4, -3))
    return d_start, d_trans, d_mu, d_s


def fisher_gradient(hmm: HMM, y: Any, posterior: Posterior | None = None) -> tuple[Tensor, ...]:
    r"""Exact :math:`\nabla_\theta \sum_b \log p(y_b)` by Fisher's identity from forward-backward.

    :math:`\nabla \log p(y) = \mathbb E_{z\mid y}[\nabla \log p(y, z)]`, the complete-data score
    with indicators replaced by the posterior marginals (formulas in the module docstring).

    Args:
        hmm: the model.
        y: ``[T]``/``[B, T]`` (Poisson) or ``[T]``/``[T, D]``/``[B, T, D]`` (Gaussian).
        posterior: reuse a :func:`forward_backward` result for the same ``hmm`` and ``y``.

    Returns:
        Tensors shaped like ``hmm.params()``: start logits, transition logits, then log-rates,
        or means and log-sds.

    Reference: Fisher (1925); Louis (1982), JRSS B 44, eq. (3.1).

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], rates=[1.0, 5.0])
    >>> [tuple(g.shape) for g in fisher_gradient(hmm, [0.0, 6.0, 4.0])]
    [(2,), (2, 2), (2,)]
    """
    yb = _as_batch(hmm, y)
    post = forward_backward(hmm, yb) if posterior is None else posterior
    if post.gamma.shape[:2] != yb.shape[:2]:
        raise ValueError("posterior does not match y's batch and length")
    return _score_from_stats(hmm, yb, post.gamma[:, 0], post.gamma, post.xi.sum(1))


def complete_data_score(hmm: HMM, y: Any, z: Tensor) -> tuple[Tensor, ...]:
    r"""Per-sample :math:`\nabla_\theta \log p(y, z)` (summed over the batch) for paths ``z``.

    Args:
        hmm: the model.
        y: observations (as in :func:`fisher_gradient`), batch ``B``.
        z: int64 state paths ``[S, B, T]`` (``[B, T]`` is taken as one sample).

    Returns:
        Tensors ``[S, *param.shape]``, one per parameter.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]], rates=[1.0, 2.0])
    >>> complete_data_score(hmm, [1.0], torch.tensor([[0]]))[2].tolist()
    [[0.0, 0.0]]
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
    if z.dtype.is_floating_point or (z < 0).any() or (z >= K).any():
        raise ValueError(f"z must hold integer states in 0..{K - 1}")
    g = torch.nn.functional.one_hot(z, K).to(hmm.start_logits.dtype)  # [S, B, T, K]
    n_trans = torch.einsum("sbti,sbtj->sbij", g[:, :, :-1], g[:, :, 1:])
    return _score_from_stats(hmm, yb, g[:, :, 0], g, n_trans)


def monte_carlo_gradient(
    hmm: HMM, y: Any, num_samples: int, *, generator: torch.Generator | None = None
) -> GradientEstimate:
    r"""Monte Carlo Fisher identity: average :math:`\nabla \log p(y, z^{(s)})`, :math:`z^{(s)} \sim p(z \mid y)`.

    Unbiased for :func:`fisher_gradient`; the posterior draws are exact (FFBS), independent.

    Returns:
        A :class:`~stochgrad.gradient_estimate.GradientEstimate` with tuple fields in the order of
        ``hmm.params()`` and per-sample terms ``[S, *param.shape]``.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[1.0, 10.0])
    >>> est = monte_carlo_gradient(hmm, [0.0, 11.0, 9.0], 64, generator=torch.Generator().manual_seed(0))
    >>> est.num_samples, est.method
    (64, 'fisher_ffbs')
    """
    yb = _as_batch(hmm, y)
    post = forward_backward(hmm, yb)
    z = sample_posterior(hmm, yb, num_samples, generator=generator, posterior=post)
    per_sample = complete_data_score(hmm, yb, z)
    return GradientEstimate.from_per_sample(
        per_sample,
        method="fisher_ffbs",
        evaluations=num_samples,
        info={"log_likelihood": float(post.log_likelihood.sum())},
    )
