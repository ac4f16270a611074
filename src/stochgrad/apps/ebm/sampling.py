r"""The two-phase gradient with a sampled negative phase: exact samples, or CD-k's Gibbs chains.

.. math::

    \nabla_\theta \log p(v) = -\mathbb E_{h \mid v}[\nabla_\theta E(v, h)]
        + \mathbb E_{(v', h') \sim p}[\nabla_\theta E(v', h')],

because :math:`\nabla_\theta \log Z = \mathbb E_p[-\nabla_\theta E]`. Both phases come from the
core (:mod:`stochgrad.apps.ebm.phases`, Fisher's identity with the hidden units' posterior
marginals): the positive phase is exact; the negative phase is estimated from samples
:math:`v'` (with :math:`h'` Rao-Blackwellised to :math:`\sigma(c + W^\top v')`).

References:
    Hinton (2002), Neural Computation 14 (contrastive divergence); Carreira-Perpiñán & Hinton
    (AISTATS 2005), "On contrastive divergence learning".
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_int, check_torch_generator
from stochgrad.apps.ebm.exact import MAX_SAMPLES, sample_model
from stochgrad.apps.ebm.model import RBM, _check_binary, check_rbm, gibbs_step
from stochgrad.apps.ebm.phases import two_phase_gradient
from stochgrad.gradient_estimate import GradientEstimate

__all__ = ["negative_samples", "sampled_gradient"]


#: The most Gibbs sweeps of one chain in one call.
MAX_SWEEPS = 10**6


def negative_samples(rbm: RBM, start: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """``k`` block-Gibbs sweeps from ``start`` [N, V] (CD-k's negative samples; PCD's chains).

    >>> g = torch.Generator().manual_seed(0)
    >>> negative_samples(RBM.init(3, 2, generator=g), torch.ones(4, 3), 2, generator=g).shape
    torch.Size([4, 3])
    """
    check_rbm(rbm)
    k = check_int("k", k, minimum=1, maximum=MAX_SWEEPS)
    check_torch_generator(generator)
    v = _check_binary("start", start, rbm.num_visible, rbm.W.device)
    for _ in range(k):  # a Markov chain: steps are sequential
        v, _ = gibbs_step(rbm, v, generator=generator)
    return v


def sampled_gradient(
    rbm: RBM,
    data: Tensor,
    num_samples: int,
    *,
    method: str = "exact",
    k: int = 1,
    generator: torch.Generator,
) -> GradientEstimate:
    r"""Positive phase minus a sampled negative phase, with per-sample terms and stderr.

    :func:`~stochgrad.apps.ebm.phases.two_phase_gradient` at the negative samples drawn here.
    Per-sample term :math:`s`: the exact positive phase of ``data`` (its mean over rows) minus
    :math:`(v'_s\,\sigma(c + W^\top v'_s)^\top, v'_s, \sigma(c + W^\top v'_s))`, where
    :math:`v'_s` is

    - ``"exact"``: an exact sample of :math:`p(v)` (:func:`~stochgrad.apps.ebm.exact.sample_model`):
      the terms are i.i.d. with mean the exact gradient;
    - ``"cd"``: ``k`` Gibbs sweeps from a data row drawn uniformly: the mean is CD-k's expected
      update, which differs from the gradient (its bias).

    Args:
        rbm: the model.
        data: [N, V] binary data.
        num_samples: negative samples (>= 2 for a standard error).
        method: ``"exact"`` or ``"cd"``.
        k: Gibbs sweeps for ``"cd"``.
        generator: source of all randomness.

    Returns:
        A :class:`~stochgrad.gradient_estimate.GradientEstimate` over ``(W, b, c)``; ``biased`` is true for
        ``"cd"``.

    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM.init(4, 2, generator=g, std=1.0)
    >>> est = sampled_gradient(rbm, torch.ones(3, 4), 100, generator=g)
    >>> est.grad[0].shape, est.num_samples
    (torch.Size([4, 2]), 100)
    """
    data = _check_binary("data", data, check_rbm(rbm).num_visible, rbm.W.device)
    num_samples = check_int("num_samples", num_samples, minimum=2, maximum=MAX_SAMPLES)
    check_choice("method", method, ("exact", "cd"))
    k = check_int("k", k, minimum=1, maximum=MAX_SWEEPS)
    check_torch_generator(generator)
    if method == "exact":
        v_neg = sample_model(rbm, num_samples, generator=generator)
    else:
        start = data[torch.randint(data.shape[0], (num_samples,), generator=generator)]
        v_neg = negative_samples(rbm, start, k, generator=generator)
    return two_phase_gradient(
        rbm,
        data,
        v_neg,
        method=f"rbm_{method}" + (f"{k}" if method == "cd" else ""),
        biased=method == "cd",
    )
