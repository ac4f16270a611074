r"""The RBM's log-likelihood gradient from the core: Fisher's identity in both phases.

With :math:`\log p(v, h) = -E(v, h) - \log Z` and :math:`-E(v, h) = b^\top v + \sum_j h_j
(c_j + v^\top W_{:,j})`, a sum of factors each holding one hidden unit, Fisher's identity

.. math::

    \nabla_\theta \log p(v) = \mathbb E_{h \mid v}[\nabla_\theta \log p(v, h)]
        = \underbrace{\mathbb E_{h \mid v}[-\nabla_\theta E(v, h)]}_{\text{positive phase}}
        - \underbrace{\mathbb E_{(v', h') \sim p}[-\nabla_\theta E(v', h')]}_{\nabla_\theta
          \log Z,\ \text{negative phase}}

needs only the posterior marginals :math:`p(h_j = 1 \mid v) = \sigma(c_j + v^\top W_{:,j})`
(the hidden units are conditionally independent given :math:`v`).
:func:`stochgrad.fisher.fisher_gradient` takes the factors :math:`h_j (c_j + v^\top W_{:,j})` at
:math:`h_j = 1` (at 0 they vanish) with these marginals (its factor mode) and differentiates:

- :func:`positive_phase`: the data rows' factors, exact;
- :func:`negative_phase`: the same factors at model samples :math:`v'` (exact samples, CD-k's or
  PCD's chain states), :math:`h'` summed out by its marginals (Rao-Blackwellised): one
  per-sample term per chain state;
- :func:`two_phase_gradient`: positive minus negative, a
  :class:`~stochgrad.gradient_estimate.GradientEstimate` over ``(W, b, c)`` with the standard
  error of the sampled negative phase.

The per-sample terms come from one backward pass with one copy of the parameters per sample
(each sample's factors read only its own copy), so :math:`10^5` samples cost one pass, not
:math:`10^5` (the same trick as the core's ``samples=True, copies=True``, in factor mode).

References:
    Hinton (2002), Neural Computation 14; Tieleman (ICML 2008); Fisher (1925); Louis (1982).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.apps.ebm.model import RBM, _check_binary, check_rbm
from stochgrad.fisher import fisher_gradient
from stochgrad.gradient_estimate import GradientEstimate

__all__ = ["negative_phase", "positive_phase", "two_phase_gradient"]


def _factors(W: Tensor, b: Tensor, c: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    r"""Factors of :math:`-E(v, h)` and their posterior marginals, ``[N, H + 1]`` each.

    Per hidden unit the factor :math:`h_j (c_j + v^\top W_{:,j})` at :math:`h_j = 1`, with
    marginal :math:`\sigma(c_j + v^\top W_{:,j})` (at :math:`h_j = 0` the factor is the
    constant 0, which adds nothing to the gradient and is left out); then :math:`b^\top v` (no
    latent, probability 1). ``W`` is ``[V, H]`` (shared) or ``[N, V, H]`` (one copy per row),
    likewise ``b``, ``c``.
    """
    if W.dim() == 2:
        act = v @ W + c
        vis = v @ b
    else:
        act = torch.bmm(v[:, None, :], W)[:, 0] + c
        vis = (v * b).sum(-1)
    with torch.no_grad():
        marginals = torch.sigmoid(act)
        marginals = torch.cat((marginals, torch.ones_like(vis)[:, None]), 1)
    return torch.cat((act, vis[:, None]), 1), marginals


def positive_phase(rbm: RBM, data: Tensor) -> GradientEstimate:
    r"""Exact :math:`\frac1N \sum_n \mathbb E_{h \mid v_n}[-\nabla_\theta E(v_n, h)]`:
    :math:`(\overline{v\,\sigma^\top},\ \bar v,\ \bar\sigma)` with
    :math:`\sigma = \sigma(c + W^\top v)`, by :func:`stochgrad.fisher.fisher_gradient` with the
    hidden posterior marginals (``method="fisher_exact"``, zero variance).

    Args:
        rbm: the model.
        data: ``[N, V]`` binary rows.

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> positive_phase(rbm, torch.ones(3, 2)).grad[0]
    tensor([[0.5000],
            [0.5000]], dtype=torch.float64)
    """
    return _phase_mean(rbm, _check_binary("data", data, check_rbm(rbm).num_visible, rbm.W.device))


def _phase_mean(rbm: RBM, v: Tensor) -> GradientEstimate:
    r""":math:`\frac1N \sum_n \mathbb E_{h \mid v_n}[-\nabla_\theta E(v_n, h)]`, one core call."""
    params = tuple(t.detach().requires_grad_(True) for t in rbm.params())
    factors, marginals = _factors(*params, v)
    return fisher_gradient(factors / v.shape[0], params, posterior=marginals)


def negative_phase(rbm: RBM, samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per-sample :math:`\mathbb E_{h' \mid v'_m}[-\nabla_\theta E(v'_m, h')]` at model samples.

    The factors of each sample read their own copy of ``(W, b, c)``; one call of
    :func:`stochgrad.fisher.fisher_gradient` (factor mode, the marginals of :math:`h' \mid v'_m`)
    gives every sample's term at once.

    Args:
        rbm: the model.
        samples: ``[M, V]`` binary model samples (exact, or Gibbs chain states).

    Returns:
        ``([M, V, H], [M, V], [M, H])``: :math:`(v'_m \sigma_m^\top, v'_m, \sigma_m)`.

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> negative_phase(rbm, torch.tensor([[1.0, 0.0]]))[0]
    tensor([[[0.5000],
             [0.0000]]], dtype=torch.float64)
    """
    return _negative_terms(
        rbm, _check_binary("samples", samples, check_rbm(rbm).num_visible, rbm.W.device)
    )


def _negative_terms(rbm: RBM, samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    m = samples.shape[0]
    copies = tuple(
        t.detach().expand(m, *t.shape).clone().requires_grad_(True) for t in rbm.params()
    )
    factors, marginals = _factors(*copies, samples)
    return fisher_gradient(factors, copies, posterior=marginals).grad


def two_phase_gradient(
    rbm: RBM,
    data: Tensor,
    samples: Tensor,
    *,
    method: str,
    biased: bool,
    weight_decay: float = 0.0,
) -> GradientEstimate:
    r"""Positive phase of ``data`` minus the negative phase at ``samples``, with its stderr.

    Per-sample term :math:`m`: :func:`positive_phase` (the mean over the rows) minus
    :func:`negative_phase` at :math:`v'_m`, minus ``weight_decay`` :math:`\cdot W` for ``W`` (an
    L2 penalty; deterministic). With exact model samples the mean is the gradient of the mean
    log-likelihood (unbiased); with CD-k's or PCD's chain states it is their update (biased: the
    chains are not at the model's distribution).

    Args:
        rbm: the model.
        data: ``[N, V]`` binary rows.
        samples: ``[M, V]`` negative samples (``M >= 2`` for a standard error).
        method: the estimate's name (``"rbm_exact"``, ``"rbm_cd1"``, ``"rbm_pcd1"``, ...).
        biased: whether the samples are not exact model samples.
        weight_decay: :math:`\lambda \ge 0` of the penalty :math:`-\lambda W`.

    Returns:
        A :class:`~stochgrad.gradient_estimate.GradientEstimate` over ``(W, b, c)``.

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> est = two_phase_gradient(rbm, torch.ones(3, 2), torch.eye(2), method="demo", biased=False)
    >>> est.grad[1]
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    data = _check_binary("data", data, check_rbm(rbm).num_visible, rbm.W.device)
    samples = _check_binary("samples", samples, check_rbm(rbm).num_visible, rbm.W.device)
    pos = _phase_mean(rbm, data).grad
    neg = _negative_terms(rbm, samples)
    terms = [p - n for p, n in zip(pos, neg, strict=True)]
    if weight_decay:
        terms[0] = terms[0] - weight_decay * rbm.W
    m = int(samples.shape[0])
    return GradientEstimate.from_per_sample(
        tuple(terms),
        method=method,
        biased=biased,
        evaluations=m,
        info={"positive_rows": int(data.shape[0]), "negative_samples": m},
    )


def _step(rbm: RBM, data: Tensor, samples: Tensor, weight_decay: float) -> list[Tensor]:
    r"""The direction of a training step: :func:`two_phase_gradient`'s ``grad`` on checked rows.

    One core call, without per-sample terms (a step needs only the mean): the factors of the
    data rows weighted :math:`+1/N` and those of the samples :math:`-1/M`, so that the sum of
    marginals times gradients of factors is positive minus negative phase.
    """
    n, m = int(data.shape[0]), int(samples.shape[0])
    params = tuple(t.detach().requires_grad_(True) for t in rbm.params())
    factors, marginals = _factors(*params, torch.cat((data, samples)))
    sign = torch.full((n + m, 1), 1.0 / n, dtype=factors.dtype)
    sign[n:] = -1.0 / m
    grad = list(fisher_gradient(factors * sign, params, posterior=marginals).grad)
    if weight_decay:
        grad[0] = grad[0] - weight_decay * rbm.W
    return grad
